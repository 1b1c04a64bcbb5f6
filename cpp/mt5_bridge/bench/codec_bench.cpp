// nanopb codec cost per tick for a TickBatch, the frame the DLL encodes on its network thread.
// Run by `make bench` (bench/contracts.py) with the batch file it writes from real EURUSD ticks;
// prints flat JSON metrics. Each figure is the best of 5 rounds of at least 0.2 s.
#include <pb_decode.h>
#include <pb_encode.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "kairos/marketdata/v1/marketdata.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

template <typename F>
double BestNsPerCall(F&& call) {
  double best = 1e300;
  for (int round = 0; round < 5; round++) {
    long calls = 0;
    const auto start = Clock::now();
    auto now = start;
    do {
      for (int i = 0; i < 256; i++) call();
      calls += 256;
      now = Clock::now();
    } while (now - start < std::chrono::milliseconds(200));
    best = std::min(best, std::chrono::duration<double, std::nano>(now - start).count() / calls);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: codec_bench tickbatch.binpb\n");
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  const std::vector<uint8_t> wire{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto batch = std::make_unique<kairos_marketdata_v1_TickBatch>();
  pb_istream_t is = pb_istream_from_buffer(wire.data(), wire.size());
  if (wire.empty() || !pb_decode(&is, kairos_marketdata_v1_TickBatch_fields, batch.get())) {
    std::fprintf(stderr, "codec_bench: cannot decode %s\n", argv[1]);
    return 1;
  }
  const double ticks = batch->time_msc_count;
  std::vector<uint8_t> buf(wire.size() + 64);
  auto decoded = std::make_unique<kairos_marketdata_v1_TickBatch>();

  const double encode = BestNsPerCall([&] {
    pb_ostream_t os = pb_ostream_from_buffer(buf.data(), buf.size());
    pb_encode(&os, kairos_marketdata_v1_TickBatch_fields, batch.get());
  });
  const double decode = BestNsPerCall([&] {
    pb_istream_t s = pb_istream_from_buffer(wire.data(), wire.size());
    pb_decode(&s, kairos_marketdata_v1_TickBatch_fields, decoded.get());
  });
  std::printf(
      "{\"c_nanopb_tickbatch_encode_ns_per_tick\": %.2f, \"c_nanopb_tickbatch_decode_ns_per_tick\": %.2f}\n",
      encode / ticks, decode / ticks);
  return 0;
}
