// Bridge benchmark (make bench-bridge -> bench/results/bridge.json).
//
// Pushes real EURUSD ticks (shared/data) through the C ABI in batches of 100, as the EA's OnTimer
// does, into one bridge connected to a TCP sink on 127.0.0.1 (the test peer: Welcome, acks, counts
// ticks and checks their sequences without a full decode).
//  1. paced: 1,000,000 ticks/s for 4 s; every kb_push_ticks call is timed. Reports the per-tick cost
//     (p50 of call time / 100), the per-call p99, the rate sustained (every tick delivered to the
//     sink, drain_ms after the last push) and the drops.
//  2. max: unpaced for 3 s, the producer keeping its ticks when the ring is full (as the EA keeps its
//     watermark); reports the highest rate the library delivered to the sink.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "kairos_bridge.h"
#include "test_peer.h"
#include "test_util.h"

using Clock = std::chrono::steady_clock;
using kairos::bridge::testing::Counters;
using kairos::bridge::testing::TestPeer;

// The benchmark runs the authenticated link, as deployed (docs/adr/0015): the handshake is once per
// connection, so the numbers measure what the EA pays.
const char* const kBenchKey = "bridge-bench-key-0123456789abcdef";
using kairos::bridge::testing::W;

namespace {

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

struct Result {
  uint64_t pushed = 0;
  double seconds_to_deliver = 0;  // first push to the last tick at the sink
  double push_seconds = 0;        // first push to the last push
  double drain_ms = 0;            // last push to the last tick at the sink
  uint64_t refused = 0;
  uint64_t wakeups = 0;  // pushes that had to wake the network thread           // ticks refused with
                         // KB_E_QUEUE_FULL and pushed again (max phase)
  uint64_t dropped = 0;
  uint64_t gaps = 0;
  uint64_t duplicates = 0;
  std::vector<double> call_ns;
};

Result Run(const std::vector<KbMqlTick>& base, double rate, double seconds) {
  TestPeer::Options po;
  po.keep_ticks = false;
  po.light_ticks = true;
  po.key = kBenchKey;
  TestPeer sink(po);
  int64_t h = 0;
  if (kairos::bridge::testing::OpenWithKey(sink.endpoint(), "", kBenchKey, &h) != KB_OK) {
    std::fprintf(stderr, "kb_open failed\n");
    std::exit(1);
  }
  sink.WaitFor([&] { return Counters(h).market_data_connected == 1; }, 5000);
  const auto sym = W("EURUSD");
  // A long stream of real ticks: the file repeated, times shifted so they keep increasing.
  std::vector<KbMqlTick> batch(100);
  Result r;
  r.call_ns.reserve(static_cast<size_t>(rate > 0 ? rate * seconds / 100 + 16 : 1 << 20));
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  const double batch_interval_s = rate > 0 ? 100.0 / rate : 0;
  size_t cursor = 0;
  int64_t shift = 0;
  uint64_t batches = 0;
  for (;;) {
    const auto now = Clock::now();
    if (now >= end) break;
    if (rate > 0) {
      const auto due = start + std::chrono::duration<double>(static_cast<double>(batches) * batch_interval_s);
      if (now < due) continue;  // busy pacing: a sleep's granularity would distort the rate
    }
    for (auto& t : batch) {
      t = base[cursor];
      t.time_msc += shift;
      if (++cursor == base.size()) {
        cursor = 0;
        shift += 24LL * 3600 * 1000;
      }
    }
    const auto t0 = Clock::now();
    const int rc = kb_push_ticks(h, sym.data(), 5, batch.data(), 100);
    const auto t1 = Clock::now();
    if (rc == KB_E_QUEUE_FULL && rate == 0) {
      // The producer keeps the ticks (like the EA's watermark) and tries again.
      cursor = (cursor + base.size() - 100) % base.size();
      r.refused += 100;
      std::this_thread::yield();
      continue;
    }
    if (rc != KB_OK && rc != KB_E_QUEUE_FULL) {
      std::fprintf(stderr, "kb_push_ticks: %d\n", rc);
      std::exit(1);
    }
    r.call_ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
    if (rc == KB_OK) r.pushed += 100;
    batches++;
  }
  const auto pushed_at = Clock::now();
  r.push_seconds = std::chrono::duration<double>(pushed_at - start).count();
  sink.WaitFor([&] { return sink.tick_count() >= r.pushed; }, 30000);
  const auto delivered_at = Clock::now();
  r.seconds_to_deliver = std::chrono::duration<double>(delivered_at - start).count();
  r.drain_ms = std::chrono::duration<double, std::milli>(delivered_at - pushed_at).count();
  const KbCounters c = Counters(h);
  r.dropped = rate == 0 ? 0 : c.ticks_dropped;
  r.wakeups = c.wakeups;
  r.gaps = sink.tick_gaps();
  r.duplicates = sink.duplicates();
  if (sink.tick_count() != r.pushed) {
    std::fprintf(stderr, "sink received %llu of %llu ticks\n",
                 static_cast<unsigned long long>(sink.tick_count()),
                 static_cast<unsigned long long>(r.pushed));
    r.dropped += r.pushed - sink.tick_count();
  }
  kb_close(h);
  return r;
}

// Pushes into a bridge whose collector is not reachable (so its network thread sleeps and nothing
// drains or wakes): the cost of the call itself, without scheduling noise from our own threads.
std::vector<double> Isolated(const std::vector<KbMqlTick>& base, int calls) {
  TestPeer::Options po;
  std::string dead;
  {
    TestPeer gone(po);
    dead = gone.endpoint();
  }
  KbOptions o{};
  kb_default_options(&o);
  o.tick_queue_capacity = calls * 100;
  int64_t h = 0;
  if (kairos::bridge::testing::Open(dead, "", &h, &o) != KB_OK) std::exit(1);
  const auto sym = W("EURUSD");
  std::vector<double> ns;
  ns.reserve(static_cast<size_t>(calls));
  for (int i = 0; i < calls; i++) {
    const KbMqlTick* batch = base.data() + (static_cast<size_t>(i) * 100) % (base.size() - 100);
    const auto t0 = Clock::now();
    const int rc = kb_push_ticks(h, sym.data(), 5, batch, 100);
    const auto t1 = Clock::now();
    if (rc != KB_OK) std::exit(1);
    ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  kb_close(h);
  return ns;
}

// The peer restarts (down 300 ms, state kept) while ticks keep flowing at 100k/s; each time, how long
// from the listener being back to the bridge's Welcome, and at the end whether every tick arrived
// exactly once.
struct Reconnects {
  std::vector<double> ms;
  uint64_t pushed = 0, received = 0, gaps = 0, duplicates = 0;
};

Reconnects Restarts(const std::vector<KbMqlTick>& base, int restarts) {
  TestPeer::Options po;
  po.keep_ticks = false;
  po.light_ticks = true;
  po.key = kBenchKey;
  TestPeer peer(po);
  int64_t h = 0;
  if (kairos::bridge::testing::OpenWithKey(peer.endpoint(), "", kBenchKey, &h) != KB_OK) std::exit(1);
  const auto sym = W("EURUSD");
  Reconnects r;
  size_t cursor = 0;
  auto push_for = [&](double seconds) {
    const auto until = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < until) {
      const int rc = kb_push_ticks(h, sym.data(), 5, base.data() + cursor, 100);
      if (rc == KB_OK) {
        r.pushed += 100;
        cursor = (cursor + 100) % (base.size() - 100);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };
  peer.WaitFor([&] { return Counters(h).market_data_connected == 1; }, 5000);
  for (int i = 0; i < restarts; i++) {
    push_for(0.2);
    peer.Restart(300, false);
    peer.WaitFor([&] { return Counters(h).market_data_connected == 0; }, 5000);
    const auto down_at = Clock::now();
    while (Counters(h).market_data_connected == 0 && Clock::now() - down_at < std::chrono::seconds(10)) {
      const int rc = kb_push_ticks(h, sym.data(), 5, base.data() + cursor, 100);
      if (rc == KB_OK) {
        r.pushed += 100;
        cursor = (cursor + 100) % (base.size() - 100);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const int64_t up =
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
    r.ms.push_back(static_cast<double>(up - peer.listening_since_ns()) / 1e6);
  }
  push_for(0.2);
  peer.WaitFor([&] { return peer.tick_count() >= r.pushed; }, 10000);
  r.received = peer.tick_count();
  r.gaps = peer.tick_gaps();
  r.duplicates = peer.duplicates();
  kb_close(h);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::string out = "bench/results/bridge.json";
  for (int i = 1; i + 1 < argc; i++)
    if (std::strcmp(argv[i], "--out") == 0) out = argv[i + 1];
  const auto base = kairos::bridge::testing::LoadEurusdTicks(KAIROS_DATA_DIR);
  if (base.size() < 100) {
    std::fprintf(stderr, "no ticks in %s\n", KAIROS_DATA_DIR);
    return 1;
  }
  Run(base, 200000, 0.5);  // warm-up: page in the ring, the sink, the caches
  const double target = 1000000;
  const Result paced = Run(base, target, 4.0);
  const Result max = Run(base, 0, 3.0);
  const std::vector<double> isolated = Isolated(base, 20000);
  const Reconnects rc = Restarts(base, 5);

  std::vector<double> per_tick;
  per_tick.reserve(paced.call_ns.size());
  for (double ns : paced.call_ns) per_tick.push_back(ns / 100);
  std::string json = "{\n";
  auto add = [&json](const char* key, double value, int decimals) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "  \"%s\": %.*f,\n", key, decimals, value);
    json += buf;
  };
  add("push_ns_per_tick_p50", Percentile(per_tick, 0.5), 1);
  add("push_ns_per_tick_p99", Percentile(per_tick, 0.99), 1);
  add("push_call_ns_p50", Percentile(paced.call_ns, 0.5), 0);
  add("push_call_ns_p99", Percentile(paced.call_ns, 0.99), 0);
  add("push_call_ns_p999", Percentile(paced.call_ns, 0.999), 0);
  add("push_calls", static_cast<double>(paced.call_ns.size()), 0);
  add("push_wakeups", static_cast<double>(paced.wakeups), 0);
  add("push_call_ns_p50_isolated", Percentile(isolated, 0.5), 0);
  add("push_call_ns_p99_isolated", Percentile(isolated, 0.99), 0);
  add("push_call_ns_p999_isolated", Percentile(isolated, 0.999), 0);
  add("target_ticks_per_s", target, 0);
  add("ticks_per_s", static_cast<double>(paced.pushed) / paced.push_seconds, 0);
  add("ticks_per_s_incl_drain", static_cast<double>(paced.pushed) / paced.seconds_to_deliver, 0);
  add("drain_ms", paced.drain_ms, 1);
  add("ticks", static_cast<double>(paced.pushed), 0);
  add("dropped", static_cast<double>(paced.dropped), 0);
  add("sequence_gaps", static_cast<double>(paced.gaps), 0);
  add("duplicates", static_cast<double>(paced.duplicates), 0);
  add("max_ticks_per_s", static_cast<double>(max.pushed) / max.seconds_to_deliver, 0);
  add("max_refused_and_repushed", static_cast<double>(max.refused), 0);
  add("max_ticks", static_cast<double>(max.pushed), 0);
  add("max_sequence_gaps", static_cast<double>(max.gaps), 0);
  add("batch_ticks", 100, 0);
  add("reconnect_ms_p50", Percentile(rc.ms, 0.5), 1);
  add("reconnect_ms_max", Percentile(rc.ms, 1.0), 1);
  add("reconnect_restarts", static_cast<double>(rc.ms.size()), 0);
  add("reconnect_ticks_lost", static_cast<double>(rc.pushed - std::min(rc.pushed, rc.received)), 0);
  add("reconnect_ticks_duplicated", static_cast<double>(rc.duplicates), 0);
  add("reconnect_sequence_gaps", static_cast<double>(rc.gaps), 0);
  double load = 0;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = 0;
    std::fclose(f);
  }
  add("machine_load_avg_1m", load, 2);
  add("machine_cores", std::thread::hardware_concurrency(), 0);
  json += "  \"machine_cpu_model\": \"" + CpuModel() + "\"\n}\n";
  std::fputs(json.c_str(), stdout);
  std::ofstream(out) << json;
  return paced.dropped == 0 && paced.gaps == 0 ? 0 : 2;
}
