// The bridge codec: string conversions at the ABI edge, fixed-point conversion, frame composition
// (byte-identical to nanopb's own delimited encoding) and the checks on incoming order commands.
#include "codec.h"

#include <gtest/gtest.h>
#include <pb_encode.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace kb = kairos::bridge;

TEST(Codec, Utf16ToUtf8HandlesSurrogatePairsAndRefusesLoneSurrogates) {
  const kb_char16 euro_and_emoji[] = {0x20AC, 0xD83D, 0xDE00, 'A', 0};
  std::string out;
  ASSERT_EQ(kb::Utf16ToUtf8(euro_and_emoji, 31, &out), KB_OK);
  EXPECT_EQ(out,
            "\xE2\x82\xAC\xF0\x9F\x98\x80"
            "A");
  const kb_char16 lone_low[] = {'a', 0xDC00, 0};
  EXPECT_EQ(kb::Utf16ToUtf8(lone_low, 31, &out), KB_E_BAD_UTF16);
  const kb_char16 high_at_end[] = {'a', 0xD800, 0};
  EXPECT_EQ(kb::Utf16ToUtf8(high_at_end, 31, &out), KB_E_BAD_UTF16);
  EXPECT_EQ(kb::Utf16ToUtf8(nullptr, 31, &out), KB_E_NULL);
  EXPECT_EQ(kb::Utf16ToUtf8(euro_and_emoji, 6, &out), KB_E_STRING_TOO_LONG);
  ASSERT_EQ(kb::Utf16ToUtf8Truncate(euro_and_emoji, 6, &out), KB_OK);
  EXPECT_EQ(out, "\xE2\x82\xAC") << "cut at a character boundary";
}

TEST(Codec, Utf8ToUtf16NeverWritesPastCapacity) {
  kb_char16 buf[6];
  std::fill(std::begin(buf), std::end(buf), 0x7777);
  EXPECT_EQ(kb::Utf8ToUtf16("EURUSD", 6, buf, 4), KB_E_TRUNCATED);
  EXPECT_EQ(buf[3], 0);
  EXPECT_EQ(buf[4], 0x7777);
  const char emoji[] = "\xF0\x9F\x98\x80";
  EXPECT_EQ(kb::Utf8ToUtf16(emoji, 4, buf, 3), KB_OK);
  EXPECT_EQ(buf[0], 0xD83D);
  EXPECT_EQ(buf[1], 0xDE00);
  EXPECT_EQ(kb::Utf8ToUtf16(emoji, 4, buf, 2), KB_E_TRUNCATED) << "a pair is never split";
  EXPECT_EQ(buf[0], 0);
  for (const char* bad : {"\xC3", "\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF"})
    EXPECT_EQ(kb::Utf8ToUtf16(bad, std::strlen(bad), buf, 6), KB_E_BAD_ARG) << bad;
}

TEST(Codec, DecimalsRoundToTheGivenScale) {
  struct Case {
    double v;
    int scale;
    bool ok;
    int64_t units;
  } cases[] = {{1.12172, 5, true, 112172},  {0.1, 2, true, 10},   {-3.5, 1, true, -35},
               {10000.5, 2, true, 1000050}, {1e300, 5, false, 0}, {std::nan(""), 5, false, 0},
               {1.0, 19, false, 0},         {1.0, -1, false, 0}};
  for (const auto& c : cases) {
    kairos_types_v1_Decimal d{};
    EXPECT_EQ(kb::ToDecimal(c.v, c.scale, &d), c.ok) << c.v;
    if (c.ok) {
      EXPECT_EQ(d.units, c.units) << c.v;
      EXPECT_EQ(d.scale, static_cast<uint32_t>(c.scale));
    }
  }
  EXPECT_DOUBLE_EQ(kb::FromDecimal({112172, 5}), 1.12172);
}

TEST(Codec, ComposedFrameIsByteIdenticalToNanopbDelimited) {
  kairos_bridge_v1_Frame f = kairos_bridge_v1_Frame_init_zero;
  f.sequence = 300;
  f.ack = 7;
  f.sent_time_us = 1577898000123456;
  f.which_body = kairos_bridge_v1_Frame_heartbeat_tag;
  f.body.heartbeat.time_us = 1577898000123456;
  f.body.heartbeat.echo_time_us = 1577898000000001;
  std::vector<uint8_t> expected(512);
  pb_ostream_t s = pb_ostream_from_buffer(expected.data(), expected.size());
  ASSERT_TRUE(pb_encode_ex(&s, kairos_bridge_v1_Frame_fields, &f, PB_ENCODE_DELIMITED));
  expected.resize(s.bytes_written);
  std::vector<uint8_t> body, got;
  ASSERT_TRUE(kb::EncodeBody(f, &body));
  kb::AppendFrame(f.sequence, f.ack, f.sent_time_us, body.data(), body.size(), &got);
  EXPECT_EQ(got, expected);

  kairos_bridge_v1_Frame back;
  size_t used = 0;
  ASSERT_EQ(kb::ReadFrame(got.data(), got.size(), &back, &used), kb::ReadStatus::kFrame);
  EXPECT_EQ(used, got.size());
  EXPECT_EQ(back.sequence, 300u);
  EXPECT_EQ(back.body.heartbeat.echo_time_us, 1577898000000001);
  for (size_t cut = 0; cut < got.size(); cut++)
    EXPECT_EQ(kb::ReadFrame(got.data(), cut, &back, &used), kb::ReadStatus::kNeedMore) << cut;
}

TEST(Codec, ReadFrameRefusesOversizedAndUndecodableFrames) {
  kairos_bridge_v1_Frame f;
  size_t used = 0;
  const uint8_t two_mib[] = {0x80, 0x80, 0x80, 0x01};
  EXPECT_EQ(kb::ReadFrame(two_mib, sizeof(two_mib), &f, &used), kb::ReadStatus::kOversized);
  const uint8_t junk[] = {0x03, 0xFF, 0xFF, 0xFF};
  EXPECT_EQ(kb::ReadFrame(junk, sizeof(junk), &f, &used), kb::ReadStatus::kMalformed);
  const uint8_t long_varint[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
  EXPECT_NE(kb::ReadFrame(long_varint, sizeof(long_varint), &f, &used), kb::ReadStatus::kFrame);
}

TEST(Codec, CommandChecksRefuseWhatTheEaCouldNotExecute) {
  auto place = [] {
    kairos_bridge_v1_OrderCommand c = kairos_bridge_v1_OrderCommand_init_zero;
    c.command_id = 1;
    std::strcpy(c.client_order_id, "K-1");
    std::strcpy(c.symbol, "EURUSD");
    c.kind = kairos_bridge_v1_CommandKind_COMMAND_KIND_PLACE;
    c.side = kairos_bridge_v1_Side_SIDE_SELL;
    c.order_type = kairos_bridge_v1_OrderType_ORDER_TYPE_LIMIT;
    c.has_volume = true;
    c.volume = {25, 2};
    c.has_price = true;
    c.price = {112500, 5};
    return c;
  };
  KbCommand out;
  std::string why;
  ASSERT_TRUE(kb::CommandToKb(place(), &out, &why)) << why;
  EXPECT_DOUBLE_EQ(out.volume, 0.25);
  EXPECT_DOUBLE_EQ(out.price, 1.125);
  struct Case {
    const char* name;
    void (*mutate)(kairos_bridge_v1_OrderCommand*);
  } cases[] = {
      {"zero id", [](kairos_bridge_v1_OrderCommand* c) { c->command_id = 0; }},
      {"no kind",
       [](kairos_bridge_v1_OrderCommand* c) {
         c->kind = kairos_bridge_v1_CommandKind_COMMAND_KIND_UNSPECIFIED;
       }},
      {"no side", [](kairos_bridge_v1_OrderCommand* c) { c->side = kairos_bridge_v1_Side_SIDE_UNSPECIFIED; }},
      {"no symbol", [](kairos_bridge_v1_OrderCommand* c) { c->symbol[0] = 0; }},
      {"no coid", [](kairos_bridge_v1_OrderCommand* c) { c->client_order_id[0] = 0; }},
      {"zero volume", [](kairos_bridge_v1_OrderCommand* c) { c->volume.units = 0; }},
      {"negative price", [](kairos_bridge_v1_OrderCommand* c) { c->price.units = -1; }},
      {"limit without price", [](kairos_bridge_v1_OrderCommand* c) { c->has_price = false; }},
      {"scale 19", [](kairos_bridge_v1_OrderCommand* c) { c->volume.scale = 19; }},
      {"bad utf8", [](kairos_bridge_v1_OrderCommand* c) { c->symbol[0] = static_cast<char>(0xFF); }},
      {"cancel without ticket",
       [](kairos_bridge_v1_OrderCommand* c) { c->kind = kairos_bridge_v1_CommandKind_COMMAND_KIND_CANCEL; }},
      {"close without ticket",
       [](kairos_bridge_v1_OrderCommand* c) {
         c->kind = kairos_bridge_v1_CommandKind_COMMAND_KIND_CLOSE_POSITION;
       }},
      {"unknown kind",
       [](kairos_bridge_v1_OrderCommand* c) { c->kind = static_cast<kairos_bridge_v1_CommandKind>(99); }},
      {"modify position without symbol or ticket",
       [](kairos_bridge_v1_OrderCommand* c) {
         c->kind = kairos_bridge_v1_CommandKind_COMMAND_KIND_MODIFY_POSITION;
         c->symbol[0] = 0;
       }},
  };
  for (const auto& c : cases) {
    auto cmd = place();
    c.mutate(&cmd);
    why.clear();
    EXPECT_FALSE(kb::CommandToKb(cmd, &out, &why)) << c.name;
    EXPECT_FALSE(why.empty()) << c.name;
  }
}

// MODIFY_POSITION (API 2, no new ABI): the symbol's positions, or one ticket, with the new stop
// loss and take profit (zero removes them).
TEST(Codec, ModifyPositionCarriesTheSymbolAndTheStops) {
  kairos_bridge_v1_OrderCommand c = kairos_bridge_v1_OrderCommand_init_zero;
  c.command_id = 9;
  c.kind = kairos_bridge_v1_CommandKind_COMMAND_KIND_MODIFY_POSITION;
  std::strcpy(c.symbol, "EURUSD");
  c.has_stop_loss = true;
  c.stop_loss = {109500, 5};
  c.has_take_profit = true;
  c.take_profit = {0, 0};
  KbCommand out;
  std::string why;
  ASSERT_TRUE(kb::CommandToKb(c, &out, &why)) << why;
  EXPECT_EQ(out.kind, 7);
  EXPECT_DOUBLE_EQ(out.stop_loss, 1.095);
  EXPECT_DOUBLE_EQ(out.take_profit, 0.0);
  EXPECT_EQ(out.symbol[0], 'E');
  c.symbol[0] = 0;
  c.position_ticket = 4242;
  ASSERT_TRUE(kb::CommandToKb(c, &out, &why)) << why;
  EXPECT_EQ(out.position_ticket, 4242u);
}

namespace {

std::vector<uint8_t> Golden(const std::string& name) {
  std::ifstream in(std::string(KAIROS_GOLDEN_DIR) + "/" + name, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

// The bridge writes frames as header fields around a body encoded alone; for every golden frame
// that must give the checked-in bytes exactly (the bytes Go and Python produce).
TEST(Codec, EveryGoldenFrameIsRecomposedByteForByte) {
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(KAIROS_GOLDEN_DIR)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("frame_", 0) != 0 || entry.path().extension() != ".binpb") continue;
    const std::vector<uint8_t> wire = Golden(name);
    std::vector<uint8_t> delimited;
    kb::AppendFrame(0, 0, 0, wire.data(), wire.size(), &delimited);  // varint length + the frame
    auto f = std::make_unique<kairos_bridge_v1_Frame>();
    size_t used = 0;
    ASSERT_EQ(kb::ReadFrame(delimited.data(), delimited.size(), f.get(), &used), kb::ReadStatus::kFrame)
        << name;
    std::vector<uint8_t> body, again;
    ASSERT_TRUE(kb::EncodeBody(*f, &body)) << name;
    kb::AppendFrame(f->sequence, f->ack, f->sent_time_us, body.data(), body.size(), &again);
    EXPECT_EQ(again, delimited) << name;
    seen++;
  }
  EXPECT_GE(seen, 10);
}

TEST(Codec, GoldenOrderCommandBecomesTheEasCommand) {
  const std::vector<uint8_t> wire = Golden("frame_order_command.binpb");
  std::vector<uint8_t> delimited;
  kb::AppendFrame(0, 0, 0, wire.data(), wire.size(), &delimited);
  auto f = std::make_unique<kairos_bridge_v1_Frame>();
  size_t used = 0;
  ASSERT_EQ(kb::ReadFrame(delimited.data(), delimited.size(), f.get(), &used), kb::ReadStatus::kFrame);
  KbCommand cmd;
  std::string why;
  ASSERT_TRUE(kb::CommandToKb(f->body.order_command, &cmd, &why)) << why;
  EXPECT_EQ(cmd.command_id, 7u);
  EXPECT_EQ(cmd.kind, 1);
  EXPECT_EQ(cmd.side, 1);
  EXPECT_EQ(cmd.order_type, 2);
  EXPECT_DOUBLE_EQ(cmd.volume, 0.10);
  EXPECT_DOUBLE_EQ(cmd.price, 1.121);
  EXPECT_DOUBLE_EQ(cmd.stop_loss, 1.116);
  EXPECT_DOUBLE_EQ(cmd.take_profit, 1.131);
  EXPECT_EQ(cmd.deviation_points, 10u);
  EXPECT_EQ(cmd.expiration_msc, 1577984400000);
  EXPECT_EQ(cmd.deadline_time_us, 1577898002500000);
  const char* coid = "K-20200101-000007";
  for (size_t i = 0; i <= std::strlen(coid); i++)
    EXPECT_EQ(cmd.client_order_id[i], static_cast<kb_char16>(coid[i]));
}

// The hand-written tick batch encoder must produce nanopb's bytes exactly, for full and partial
// batches, with and without the optional last/volume columns, and for extreme values.
TEST(Codec, FastTickEncoderMatchesNanopbByteForByte) {
  auto f = std::make_unique<kairos_bridge_v1_Frame>();
  for (uint32_t n : {1u, 2u, 100u, 255u, 256u}) {
    for (int variant = 0; variant < 3; variant++) {
      *f = kairos_bridge_v1_Frame_init_zero;
      f->which_body = kairos_bridge_v1_Frame_ticks_tag;
      auto& b = f->body.ticks;
      std::snprintf(b.symbol, sizeof(b.symbol), "%s", variant == 2 ? "" : "EURUSD.r");
      for (uint32_t i = 0; i < n; i++) {
        b.time_msc[i] = variant == 1 ? -1 - static_cast<int64_t>(i) : 1577898000065 + i * 37;
        b.bid[i] = 1.12120 + i * 1e-5;
        b.ask[i] = 1.12172 + i * 1e-5;
        b.last[i] = variant == 1 ? std::numeric_limits<double>::max() : 0;
        b.volume[i] = 0.01 * i;
        b.flags[i] = variant == 1 ? 0xFFFFFFFFu : 6;
        b.sequence[i] = variant == 1 ? UINT64_MAX - i : i + 1;
      }
      b.time_msc_count = b.bid_count = b.ask_count = b.flags_count = b.sequence_count =
          static_cast<pb_size_t>(n);
      b.last_count = variant == 1 ? static_cast<pb_size_t>(n) : 0;
      b.volume_count = variant == 0 ? 0 : static_cast<pb_size_t>(n);
      std::vector<uint8_t> expected, got;
      ASSERT_TRUE(kb::EncodeBody(*f, &expected));
      kb::EncodeTicksBody(b, &got);
      EXPECT_EQ(got, expected) << "n=" << n << " variant=" << variant;
    }
  }
}
