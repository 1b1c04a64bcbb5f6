// Helpers shared by the bridge tests and the benchmark: UTF-16 literals for the C ABI, the real
// EURUSD ticks from shared/data as MqlTick records, and RAII for handles.
#pragma once

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kairos_bridge.h"

namespace kairos::bridge::testing {

inline std::vector<kb_char16> W(const std::string& s) {
  std::vector<kb_char16> out(s.begin(), s.end());  // ASCII only in tests
  out.push_back(0);
  return out;
}

// Reads shared/data/eurusd-ticks-2020-01-01.csv ("YYYYMMDD HHMMSSmmm,bid,ask,0") as MqlTicks with
// time_msc in UTC and flags bid|ask, as MT5 reports a quote update.
inline std::vector<KbMqlTick> LoadEurusdTicks(const std::string& dir) {
  std::ifstream in(dir + "/eurusd-ticks-2020-01-01.csv");
  std::vector<KbMqlTick> out;
  std::string line;
  while (std::getline(in, line)) {
    int y, mo, d, hh, mm, ss, ms;
    double bid, ask;
    if (std::sscanf(line.c_str(), "%4d%2d%2d %2d%2d%2d%3d,%lf,%lf", &y, &mo, &d, &hh, &mm, &ss, &ms, &bid,
                    &ask) != 9)
      continue;
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    const int64_t secs = static_cast<int64_t>(timegm(&tm));
    KbMqlTick t{};
    t.time = secs;
    t.time_msc = secs * 1000 + ms;
    t.bid = bid;
    t.ask = ask;
    t.flags = 2 | 4;
    out.push_back(t);
  }
  return out;
}

struct Handle {
  int64_t h = 0;
  ~Handle() {
    if (h != 0) kb_close(h);
  }
};

inline int Open(const std::string& collector, const std::string& execution, int64_t* handle,
                const KbOptions* options = nullptr) {
  return kb_open(W(collector).data(), W(execution).data(), W("MetaTrader 5").data(), 4410,
                 W("Test Broker").data(), W("Test-Demo").data(), 1234567, W("USD").data(), 1,
                 W("EURUSD").data(), 77, options, handle);
}

inline int OpenWithKey(const std::string& collector, const std::string& execution, const std::string& key,
                       int64_t* handle, const KbOptions* options = nullptr) {
  return kb_open_with_key(W(collector).data(), W(execution).data(), W("MetaTrader 5").data(), 4410,
                          W("Test Broker").data(), W("Test-Demo").data(), 1234567, W("USD").data(), 1,
                          W("EURUSD").data(), 77, W(key).data(), options, handle);
}

inline KbCounters Counters(int64_t h) {
  KbCounters c{};
  c.struct_size = sizeof(c);
  kb_get_counters(h, &c);
  return c;
}

}  // namespace kairos::bridge::testing
