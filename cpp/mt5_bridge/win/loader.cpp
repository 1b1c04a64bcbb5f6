// kb_loader.exe: loads kairos_bridge.dll the way MetaTrader 5 does (LoadLibraryW, GetProcAddress of
// the undecorated exports) and drives it the way the Expert Advisor does: OnTimer-style batches of
// real ticks (server time, with the server offset set), polling order commands, reporting results and
// transactions, reading counters, and closing. Run under Wine by the bridge's Wine test against a
// real TCP peer on 127.0.0.1 that checks every tick and result.
//
// usage: kb_loader.exe <dll> <collector host:port> <execution host:port> <ticks.csv> <commands expected>
// Prints one "counters {...}" JSON line and "loader: ok" on success; exit code 0 only if every step
// passed.
#include <windows.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "kairos_bridge.h"

namespace {

using ApiVersionFn = int32_t (*)();
using OpenFn = int32_t (*)(const wchar_t*, const wchar_t*, const wchar_t*, int32_t, const wchar_t*,
                           const wchar_t*, int64_t, const wchar_t*, int32_t, const wchar_t*, int64_t,
                           const wchar_t*, const KbOptions*, int64_t*);
using DefaultOptionsFn = int32_t (*)(KbOptions*);
using SetOffsetFn = int32_t (*)(int64_t, int64_t);
using PushFn = int32_t (*)(int64_t, const wchar_t*, int32_t, const KbMqlTick*, int32_t);
using PollFn = int32_t (*)(int64_t, KbCommand*);
using ResultFn = int32_t (*)(int64_t, const KbOrderResult*, const wchar_t*, const wchar_t*);
using TxFn = int32_t (*)(int64_t, const KbTransaction*, const wchar_t*, const wchar_t*);
using CountersFn = int32_t (*)(int64_t, KbCounters*);
using LogFn = int32_t (*)(int64_t, wchar_t*, int32_t);
using CloseFn = int32_t (*)(int64_t);
using PollHistoryFn = int32_t (*)(int64_t, KbHistoryRequest*);
using HistoryTicksFn = int32_t (*)(int64_t, uint64_t, const KbMqlTick*, int32_t);
using HistoryEndFn = int32_t (*)(int64_t, uint64_t, int32_t, int64_t, const wchar_t*);
using CheckFn = int32_t (*)(int64_t, const KbTerminalCheck*, const wchar_t*);

int failures = 0;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "loader: FAILED: %s\n", what);
    failures++;
  }
}

template <typename T>
T Get(HMODULE dll, const char* name) {
  FARPROC p = GetProcAddress(dll, name);
  if (p == nullptr) {
    std::fprintf(stderr, "loader: GetProcAddress(%s) failed: %lu\n", name, GetLastError());
    std::exit(3);
  }
  return reinterpret_cast<T>(reinterpret_cast<void*>(p));
}

std::vector<KbMqlTick> ReadTicks(const wchar_t* path, int64_t offset_ms) {
  std::vector<KbMqlTick> out;
  FILE* f = _wfopen(path, L"r");
  if (f == nullptr) return out;
  char line[256];
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    int y, mo, d, hh, mm, ss, ms;
    double bid, ask;
    if (std::sscanf(line, "%4d%2d%2d %2d%2d%2d%3d,%lf,%lf", &y, &mo, &d, &hh, &mm, &ss, &ms, &bid, &ask) != 9)
      continue;
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    const int64_t secs = static_cast<int64_t>(_mkgmtime(&tm));
    KbMqlTick t{};
    t.time_msc = secs * 1000 + ms + offset_ms;  // MT5 reports trade-server time
    t.time = t.time_msc / 1000;
    t.bid = bid;
    t.ask = ask;
    t.flags = 2 | 4;
    out.push_back(t);
  }
  std::fclose(f);
  return out;
}

}  // namespace

int wmain(int argc, wchar_t** argv) {
  if (argc != 6 && argc != 7) {
    std::fprintf(stderr,
                 "usage: kb_loader <dll> <collector> <execution> <ticks.csv> <commands> [bridge key]\n");
    return 2;
  }
  HMODULE dll = LoadLibraryW(argv[1]);
  if (dll == nullptr) {
    std::fprintf(stderr, "loader: LoadLibraryW failed: error %lu\n", GetLastError());
    return 3;
  }
  auto api_version = Get<ApiVersionFn>(dll, "kb_api_version");
  auto default_options = Get<DefaultOptionsFn>(dll, "kb_default_options");
  auto open = Get<OpenFn>(dll, "kb_open_with_key");
  auto set_offset = Get<SetOffsetFn>(dll, "kb_set_server_offset");
  auto push = Get<PushFn>(dll, "kb_push_ticks");
  auto poll = Get<PollFn>(dll, "kb_poll_command");
  auto report = Get<ResultFn>(dll, "kb_report_result");
  auto report_tx = Get<TxFn>(dll, "kb_report_transaction");
  auto counters = Get<CountersFn>(dll, "kb_get_counters");
  auto poll_log = Get<LogFn>(dll, "kb_poll_log");
  auto close = Get<CloseFn>(dll, "kb_close");
  auto poll_history = Get<PollHistoryFn>(dll, "kb_poll_history");
  auto history_ticks = Get<HistoryTicksFn>(dll, "kb_history_ticks");
  auto history_end = Get<HistoryEndFn>(dll, "kb_history_end");
  auto report_check = Get<CheckFn>(dll, "kb_report_check");

  Check(api_version() == KB_API_VERSION, "api version");
  KbOptions options{};
  options.struct_size = sizeof(options);
  Check(default_options(&options) == KB_OK, "default options");
  int64_t h = 0;
  Check(open(argv[2], argv[3], L"MetaTrader 5 (Wine)", 4410, L"Kairos Test Broker", L"Kairos-Demo", 5550001,
             L"USD", 1, L"EURUSD", 20261121, argc == 7 ? argv[6] : L"", &options, &h) == KB_OK,
        "kb_open_with_key");
  if (h == 0) return 4;

  // Bad input the EA could produce must come back as status codes, never crash the terminal.
  Check(push(h, L"EURUSD", 5, nullptr, 10) == KB_E_NULL, "push NULL ticks");
  KbMqlTick nan_tick{};
  nan_tick.bid = std::strtod("nan", nullptr);
  Check(push(h, L"EURUSD", 5, &nan_tick, 1) == KB_E_NON_FINITE, "push NaN tick");
  Check(push(h, L"EURUSD", 5, &nan_tick, 0) == KB_E_BAD_COUNT, "push count 0");
  const wchar_t lone[] = {L'E', static_cast<wchar_t>(0xD800), 0};
  Check(push(h, lone, 5, &nan_tick, 1) == KB_E_BAD_UTF16, "push invalid UTF-16 symbol");

  const int64_t offset_ms = 2 * 3600 * 1000;
  Check(set_offset(h, offset_ms) == KB_OK, "server offset");
  const std::vector<KbMqlTick> ticks = ReadTicks(argv[4], offset_ms);
  Check(!ticks.empty(), "ticks file read");
  const long commands_expected = std::wcstol(argv[5], nullptr, 10);

  // OnTimer: push what CopyTicks returned since the watermark, then serve commands.
  size_t next = 0;
  long commands_done = 0;
  const DWORD start = GetTickCount();
  while ((next < ticks.size() || commands_done < commands_expected) && GetTickCount() - start < 20000) {
    if (next < ticks.size()) {
      const int32_t n = static_cast<int32_t>(ticks.size() - next < 100 ? ticks.size() - next : 100);
      const int32_t rc = push(h, L"EURUSD", 5, ticks.data() + next, n);
      if (rc == KB_OK) next += static_cast<size_t>(n);  // on KB_E_QUEUE_FULL the watermark stays
    }
    KbCommand cmd;
    while (poll(h, &cmd) == KB_OK) {
      KbOrderResult r{};
      r.command_id = cmd.command_id;
      r.status = 1;
      r.retcode = 10009;
      r.order_ticket = 70000 + cmd.command_id;
      r.deal_ticket = 80000 + cmd.command_id;
      r.volume = cmd.volume;
      r.price = 1.12172;
      r.bid = 1.1212;
      r.ask = 1.12172;
      r.price_digits = 5;
      r.volume_digits = 2;
      r.received_time_us = cmd.received_time_us;
      Check(
          report(h, &r, reinterpret_cast<const wchar_t*>(cmd.client_order_id), L"Request executed") == KB_OK,
          "report result");
      KbTransaction t{};
      t.type = 4;  // DEAL_ADD
      t.side = cmd.side;
      t.order_ticket = r.order_ticket;
      t.deal_ticket = r.deal_ticket;
      t.price = r.price;
      t.volume = r.volume;
      t.price_digits = 5;
      t.volume_digits = 2;
      Check(report_tx(h, &t, reinterpret_cast<const wchar_t*>(cmd.client_order_id),
                      reinterpret_cast<const wchar_t*>(cmd.symbol)) == KB_OK,
            "report transaction");
      commands_done++;
    }
    Sleep(next < ticks.size() ? 0 : 10);
  }
  Check(next == ticks.size(), "all ticks pushed");
  Check(commands_done == commands_expected, "all commands served");

  // The EA's self-check, reported once (API 3).
  KbTerminalCheck tc{};
  tc.dlls_allowed = tc.ea_trade_allowed = tc.account_trade_allowed = tc.account_expert_allowed = 1;
  tc.symbols_checked = 1;
  tc.time_msc = 1577898000000;
  Check(
      report_check(h, &tc, L"Algo Trading is off in the terminal: press the 'Algo Trading' button") == KB_OK,
      "report self-check");

  // History (API 3): answer the collector's requests as the EA's ServeHistory does, with the same
  // ticks (CopyTicksRange over trade-server time), until one request has been answered.
  int answered = 0;
  const DWORD hist_start = GetTickCount();
  while (answered < 1 && GetTickCount() - hist_start < 20000) {
    KbHistoryRequest req;
    if (poll_history(h, &req) != KB_OK) {
      Sleep(5);
      continue;
    }
    std::vector<KbMqlTick> rows;
    for (const KbMqlTick& t : ticks)
      if (t.time_msc >= req.from_msc + offset_ms && t.time_msc < req.to_msc + offset_ms) rows.push_back(t);
    for (size_t at = 0; at < rows.size();) {
      const int32_t n = static_cast<int32_t>(rows.size() - at < 4096 ? rows.size() - at : 4096);
      const int32_t rc = history_ticks(h, req.request_id, rows.data() + at, n);
      if (rc == KB_E_QUEUE_FULL) {
        Sleep(5);
        continue;
      }
      Check(rc == KB_OK, "history ticks");
      at += static_cast<size_t>(n);
    }
    Check(history_end(h, req.request_id, rows.empty() ? 3 : 2, 0, L"") == KB_OK, "history end");
    answered++;
  }
  Check(answered == 1, "a history request answered");

  KbCounters c{};
  c.struct_size = sizeof(c);
  const DWORD wait_start = GetTickCount();
  do {
    counters(h, &c);
    if (c.ticks_acked == ticks.size() && c.reports_acked >= static_cast<uint64_t>(2 * commands_expected + 1))
      break;
    Sleep(10);
  } while (GetTickCount() - wait_start < 10000);
  Check(c.ticks_sent == ticks.size(), "every tick sent");
  Check(c.ticks_acked == ticks.size(), "every tick acknowledged by the collector");
  Check(c.ticks_dropped == 0, "no tick dropped");
  Check(c.reports_acked >= static_cast<uint64_t>(2 * commands_expected + 1),
        "results, transactions and the self-check acknowledged");
  std::printf(
      "counters {\"ticks_queued\": %llu, \"ticks_sent\": %llu, \"ticks_acked\": %llu, \"ticks_dropped\": "
      "%llu, \"ticks_rejected\": "
      "%llu, "
      "\"commands_received\": %llu, \"reports_acked\": %llu, \"reconnects\": %llu, \"malformed_frames\": "
      "%llu}\n",
      static_cast<unsigned long long>(c.ticks_queued), static_cast<unsigned long long>(c.ticks_sent),
      static_cast<unsigned long long>(c.ticks_acked), static_cast<unsigned long long>(c.ticks_dropped),
      static_cast<unsigned long long>(c.ticks_rejected), static_cast<unsigned long long>(c.commands_received),
      static_cast<unsigned long long>(c.reports_acked), static_cast<unsigned long long>(c.reconnects),
      static_cast<unsigned long long>(c.malformed_frames));
  wchar_t line[512];
  while (poll_log(h, line, 512) == KB_OK) std::printf("bridge log: %ls\n", line);

  const DWORD close_start = GetTickCount();
  Check(close(h) == KB_OK, "close");
  Check(GetTickCount() - close_start < 2500, "close within 2.5 s");
  Check(close(h) == KB_E_BAD_HANDLE, "double close");
  Check(push(h, L"EURUSD", 5, ticks.data(), 1) == KB_E_BAD_HANDLE, "push after close");
  Check(FreeLibrary(dll) != 0, "FreeLibrary");
  std::fflush(stdout);
  if (failures != 0) return 1;
  std::printf("loader: ok\n");
  return 0;
}
