// Cross-language golden vectors, C side: the nanopb code the DLL uses must decode every checked-in
// bridge and marketdata vector and re-encode it to the identical bytes. nanopb drops unknown fields
// and fails on anything over its max_size/max_count, so byte identity proves every field was read.
#include <gtest/gtest.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "kairos/bridge/v1/bridge.pb.h"
#include "kairos/marketdata/v1/marketdata.pb.h"

namespace fs = std::filesystem;

namespace {

struct MessageType {
  const char* name;
  const pb_msgdesc_t* fields;
  size_t size;
};

const MessageType kTypes[] = {
    {"kairos.bridge.v1.Frame", kairos_bridge_v1_Frame_fields, sizeof(kairos_bridge_v1_Frame)},
    {"kairos.marketdata.v1.Tick", kairos_marketdata_v1_Tick_fields, sizeof(kairos_marketdata_v1_Tick)},
    {"kairos.marketdata.v1.TickBatch", kairos_marketdata_v1_TickBatch_fields,
     sizeof(kairos_marketdata_v1_TickBatch)},
    {"kairos.marketdata.v1.Bar", kairos_marketdata_v1_Bar_fields, sizeof(kairos_marketdata_v1_Bar)},
    {"kairos.marketdata.v1.BarBatch", kairos_marketdata_v1_BarBatch_fields,
     sizeof(kairos_marketdata_v1_BarBatch)},
    {"kairos.marketdata.v1.SymbolInfo", kairos_marketdata_v1_SymbolInfo_fields,
     sizeof(kairos_marketdata_v1_SymbolInfo)},
};

struct Vector {
  std::string name;
  const MessageType* type;
  std::vector<uint8_t> wire;
};

std::vector<uint8_t> ReadBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<Vector> LoadVectors() {
  std::vector<Vector> out;
  for (const auto& entry : fs::directory_iterator(KAIROS_GOLDEN_DIR)) {
    if (entry.path().extension() != ".txtpb") continue;
    std::ifstream text(entry.path());
    std::string line, message;
    while (std::getline(text, line)) {
      const std::string prefix = "# proto-message: ";
      if (line.rfind(prefix, 0) == 0) {
        message = line.substr(prefix.size());
        break;
      }
    }
    const MessageType* type = nullptr;
    for (const auto& t : kTypes) {
      if (message == t.name) type = &t;
    }
    if (type == nullptr) {
      ADD_FAILURE() << entry.path() << ": message type '" << message << "' has no nanopb mapping";
      continue;
    }
    fs::path bin = entry.path();
    bin.replace_extension(".binpb");
    out.push_back({entry.path().stem().string(), type, ReadBytes(bin)});
  }
  return out;
}

// Decoded message storage: frames are large (a TickBatch holds 256 ticks), so keep them off the stack.
using Storage = std::unique_ptr<uint8_t[]>;

Storage Decode(const MessageType& t, const std::vector<uint8_t>& wire, std::string* error) {
  Storage msg(new uint8_t[t.size]());
  pb_istream_t in = pb_istream_from_buffer(wire.data(), wire.size());
  if (!pb_decode(&in, t.fields, msg.get())) {
    *error = PB_GET_ERROR(&in);
    return nullptr;
  }
  return msg;
}

std::vector<uint8_t> Encode(const MessageType& t, const void* msg) {
  size_t size = 0;
  EXPECT_TRUE(pb_get_encoded_size(&size, t.fields, msg));
  std::vector<uint8_t> out(size);
  pb_ostream_t os = pb_ostream_from_buffer(out.data(), out.size());
  EXPECT_TRUE(pb_encode(&os, t.fields, msg)) << PB_GET_ERROR(&os);
  out.resize(os.bytes_written);
  return out;
}

template <typename T>
std::unique_ptr<T> DecodeAs(const char* vector_name) {
  for (const auto& v : LoadVectors()) {
    if (v.name != vector_name) continue;
    auto msg = std::make_unique<T>();
    pb_istream_t in = pb_istream_from_buffer(v.wire.data(), v.wire.size());
    EXPECT_TRUE(pb_decode(&in, v.type->fields, msg.get())) << PB_GET_ERROR(&in);
    return msg;
  }
  ADD_FAILURE() << "no golden vector " << vector_name;
  return std::make_unique<T>();
}

TEST(GoldenVectors, EveryVectorReencodesByteIdentically) {
  const auto vectors = LoadVectors();
  ASSERT_GE(vectors.size(), 19u);
  for (const auto& v : vectors) {
    SCOPED_TRACE(v.name);
    std::string error;
    Storage msg = Decode(*v.type, v.wire, &error);
    ASSERT_NE(msg, nullptr) << "decode failed: " << error;
    EXPECT_EQ(Encode(*v.type, msg.get()), v.wire);
  }
}

TEST(GoldenVectors, HelloKeepsMaxUint64SessionAndUtf8Company) {
  auto f = DecodeAs<kairos_bridge_v1_Frame>("frame_hello");
  ASSERT_EQ(f->which_body, kairos_bridge_v1_Frame_hello_tag);
  EXPECT_EQ(f->body.hello.session_id, UINT64_MAX);
  EXPECT_EQ(f->body.hello.channel, kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA);
  EXPECT_STREQ(f->body.hello.company,
               "\xD0\x91\xD1\x80\xD0\xBE\xD0\xBA\xD0\xB5\xD1\x80 Ltd");  // "Брокер Ltd"
}

TEST(GoldenVectors, AmbiguousResultKeepsNegativeRetcode) {
  auto f = DecodeAs<kairos_bridge_v1_Frame>("frame_order_result_ambiguous");
  ASSERT_EQ(f->which_body, kairos_bridge_v1_Frame_order_result_tag);
  EXPECT_EQ(f->body.order_result.retcode, -11);
  EXPECT_STREQ(f->body.order_result.client_order_id, "K-20200101-000009");
}

TEST(GoldenVectors, TickBatchColumnsDecodeInOrder) {
  auto b = DecodeAs<kairos_marketdata_v1_TickBatch>("tick_batch");
  ASSERT_EQ(b->time_msc_count, 5);
  ASSERT_EQ(b->bid_count, 5);
  EXPECT_EQ(b->last_count, 0);
  EXPECT_EQ(b->time_msc[4], 1577898004999);
  EXPECT_DOUBLE_EQ(b->bid[3], 1.1213);
  EXPECT_EQ(b->sequence[0], 41u);
}

TEST(GoldenVectors, PositionSnapshotKeepsNegativeDecimals) {
  auto f = DecodeAs<kairos_bridge_v1_Frame>("frame_positions");
  ASSERT_EQ(f->which_body, kairos_bridge_v1_Frame_positions_tag);
  ASSERT_EQ(f->body.positions.positions_count, 2);
  EXPECT_EQ(f->body.positions.positions[0].profit.units, -800);
  EXPECT_EQ(f->body.positions.positions[0].profit.scale, 2u);
  EXPECT_EQ(f->body.positions.orders_count, 1);
}

TEST(GoldenVectors, FramesSurviveVarintDelimitedStream) {
  const MessageType& frame = kTypes[0];
  std::vector<std::vector<uint8_t>> frames;
  std::vector<uint8_t> stream(1 << 16);
  pb_ostream_t os = pb_ostream_from_buffer(stream.data(), stream.size());
  for (const auto& v : LoadVectors()) {
    if (v.type != &frame) continue;
    std::string error;
    Storage msg = Decode(frame, v.wire, &error);
    ASSERT_NE(msg, nullptr) << v.name << ": " << error;
    ASSERT_TRUE(pb_encode_ex(&os, frame.fields, msg.get(), PB_ENCODE_DELIMITED)) << PB_GET_ERROR(&os);
    frames.push_back(v.wire);
  }
  ASSERT_GE(frames.size(), 10u);
  pb_istream_t in = pb_istream_from_buffer(stream.data(), os.bytes_written);
  for (const auto& want : frames) {
    Storage msg(new uint8_t[frame.size]());
    ASSERT_TRUE(pb_decode_ex(&in, frame.fields, msg.get(), PB_DECODE_DELIMITED)) << PB_GET_ERROR(&in);
    EXPECT_EQ(Encode(frame, msg.get()), want);
  }
  EXPECT_EQ(in.bytes_left, 0u);
}

TEST(GoldenVectors, BatchOverMaxCountIsRefusedNotOverflowed) {
  // TickBatch.time_msc (field 2, packed) with 257 entries: one more than bridge.options allows.
  std::vector<uint8_t> wire = {0x12, 0x81, 0x02};  // tag, length 257 as a varint
  wire.insert(wire.end(), 257, 0x01);
  std::string error;
  Storage msg = Decode(kTypes[2], wire, &error);
  EXPECT_EQ(msg, nullptr);
  EXPECT_EQ(error, "array overflow");
}

}  // namespace
