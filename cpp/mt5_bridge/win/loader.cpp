// kb_loader.exe: loads kairos_bridge.dll the way MetaTrader 5 does (LoadLibraryW, GetProcAddress of
// the undecorated exports) and drives it the way the Expert Advisor does: OnTimer-style batches of
// real ticks (server time, with the server offset set), polling order commands, reporting results and
// transactions, reading counters, and closing. Run under Wine by the bridge's Wine test against a
// real TCP peer on 127.0.0.1 that checks every tick and result.
//
// usage: kb_loader.exe <dll> <collector host:port> <execution host:port> <ticks.csv> <commands expected>
// Prints one "counters {...}" JSON line and "loader: ok" on success; exit code 0 only if every step
// passed.
//
// Strategy Tester mode (ADR 0095): kb_loader.exe --tester <dll> <collector> <execution> <ticks.csv>
// <bridge key> <timeout ms> <symbol> drives the DLL as the MT5 tester drives the EA: the bridge opened with
// KbOptions.lockstep, one tick per OnTick on the ticks' own (virtual) time, kb_tester_wait after each
// with the commands served in between, market orders filled at the tick's prices on a netting
// account, as the tester fills them. Prints "fill ..." per deal, "position ..." and one
// "tester {...}" JSON line, then "loader: ok".
#include <windows.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cwchar>
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
using TesterWaitFn = int32_t (*)(int64_t, int32_t);
using AccountFn = int32_t (*)(int64_t, const KbAccount*, const wchar_t*);
using PosBeginFn = int32_t (*)(int64_t, int64_t);
using PosAddFn = int32_t (*)(int64_t, const KbPosition*, const wchar_t*, const wchar_t*);
using PosEndFn = int32_t (*)(int64_t);

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

// The tester's netting account: one position per symbol (the loader trades one).
struct TesterAccount {
  double net = 0;  // lots, + long, - short
  double avg = 0;
  uint64_t position_ticket = 0;
  uint64_t next_ticket = 5000000;
  double stop_loss = 0, take_profit = 0;
};

int RunTester(int argc, wchar_t** argv) {
  if (argc != 9) {
    std::fprintf(
        stderr,
        "usage: kb_loader --tester <dll> <collector> <execution> <ticks.csv> <key> <timeout ms> <symbol>\n");
    return 2;
  }
  HMODULE dll = LoadLibraryW(argv[2]);
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
  auto report_account = Get<AccountFn>(dll, "kb_report_account");
  auto pos_begin = Get<PosBeginFn>(dll, "kb_positions_begin");
  auto pos_add = Get<PosAddFn>(dll, "kb_positions_add_position");
  auto pos_end = Get<PosEndFn>(dll, "kb_positions_end");
  auto counters = Get<CountersFn>(dll, "kb_get_counters");
  auto poll_log = Get<LogFn>(dll, "kb_poll_log");
  auto close = Get<CloseFn>(dll, "kb_close");
  auto tester_wait = Get<TesterWaitFn>(dll, "kb_tester_wait");

  Check(api_version() == KB_API_VERSION, "api version");
  KbOptions options{};
  options.struct_size = sizeof(options);
  Check(default_options(&options) == KB_OK, "default options");
  options.lockstep = 1;  // MQLInfoInteger(MQL_TESTER) and InpTesterLockstep
  int64_t h = 0;
  Check(open(argv[3], argv[4], L"MetaTrader 5 Strategy Tester (Wine)", 4410, L"Kairos Test Broker",
             L"Kairos-Demo", 5550001, L"USD", 1, argv[8], 20261121, argv[6], &options, &h) == KB_OK,
        "kb_open_with_key (lockstep)");
  if (h == 0) return 4;
  Check(tester_wait(h, 0) == KB_E_BAD_ARG, "tester wait: timeout 0 refused");
  const int64_t offset_ms = 2 * 3600 * 1000;
  Check(set_offset(h, offset_ms) == KB_OK, "server offset");
  const std::vector<KbMqlTick> ticks = ReadTicks(argv[5], offset_ms);
  Check(!ticks.empty(), "ticks file read");
  const int32_t timeout_ms = static_cast<int32_t>(std::wcstol(argv[7], nullptr, 10));
  const wchar_t* sym = argv[8];

  TesterAccount acct;
  const KbMqlTick* cur = nullptr;
  long served = 0, fills = 0, timeouts = 0;
  wchar_t line[512];
  auto drain_log = [&] {
    while (poll_log(h, line, 512) == KB_OK) std::printf("bridge log: %ls\n", line);
  };
  // What the EA's ServeCommands does, with the tester filling market orders at the current tick.
  auto serve = [&] {
    KbCommand cmd;
    while (poll(h, &cmd) == KB_OK) {
      served++;
      KbOrderResult r{};
      r.command_id = cmd.command_id;
      r.status = 1;  // SENT
      r.retcode = 10009;
      r.price_digits = 5;
      r.volume_digits = 2;
      r.received_time_us = cmd.received_time_us;
      r.bid = cur != nullptr ? cur->bid : 0;
      r.ask = cur != nullptr ? cur->ask : 0;
      const wchar_t* coid = reinterpret_cast<const wchar_t*>(cmd.client_order_id);
      if (cmd.kind == 6) {  // SNAPSHOT: account and positions, as at the EA's reconciliation
        KbAccount a{};
        a.login = 5550001;
        a.balance = a.equity = a.margin_free = 1000000;
        a.money_digits = 2;
        a.leverage = 100;
        a.trade_allowed = 1;
        a.time_msc = cur != nullptr ? cur->time_msc - offset_ms : 0;
        Check(report_account(h, &a, L"USD") == KB_OK, "report account");
        Check(pos_begin(h, a.time_msc) == KB_OK, "positions begin");
        if (acct.net != 0) {
          KbPosition p{};
          p.ticket = acct.position_ticket;
          p.side = acct.net > 0 ? 1 : 2;
          p.price_digits = 5;
          p.volume_digits = 2;
          p.money_digits = 2;
          p.volume = acct.net > 0 ? acct.net : -acct.net;
          p.price_open = acct.avg;
          p.stop_loss = acct.stop_loss;
          p.take_profit = acct.take_profit;
          p.magic = 20261121;
          Check(pos_add(h, &p, sym, L"") == KB_OK, "positions add");
        }
        Check(pos_end(h) == KB_OK, "positions end");
      } else if (cmd.kind == 1 && cmd.order_type == 1 && cur != nullptr) {  // PLACE market: fills now
        const double price = cmd.side == 1 ? cur->ask : cur->bid;
        const double signed_vol = cmd.side == 1 ? cmd.volume : -cmd.volume;
        const double before = acct.net;
        acct.net = std::round((acct.net + signed_vol) * 100) / 100;
        if (before == 0 || (before > 0) != (acct.net > 0)) {
          if (acct.net != 0) acct.position_ticket = ++acct.next_ticket;  // opened or reversed
          acct.avg = price;
        } else if ((before > 0) == (signed_vol > 0)) {
          acct.avg = (acct.avg * std::fabs(before) + price * cmd.volume) / std::fabs(acct.net);
        }
        if (cmd.stop_loss != 0) acct.stop_loss = cmd.stop_loss;
        if (cmd.take_profit != 0) acct.take_profit = cmd.take_profit;
        if (acct.net == 0) acct.stop_loss = acct.take_profit = 0;
        r.order_ticket = ++acct.next_ticket;
        r.deal_ticket = ++acct.next_ticket;
        r.volume = cmd.volume;
        r.price = price;
        KbTransaction t{};
        t.type = 4;  // DEAL_ADD
        t.side = cmd.side;
        t.order_ticket = r.order_ticket;
        t.deal_ticket = r.deal_ticket;
        t.position_ticket = acct.position_ticket;
        t.mt5_deal_type = cmd.side == 1 ? 0 : 1;
        t.price = price;
        t.volume = cmd.volume;
        t.price_digits = 5;
        t.volume_digits = 2;
        t.money_digits = 2;
        t.time_msc = cur->time_msc - offset_ms;
        Check(report(h, &r, coid, L"Request executed") == KB_OK, "report result");
        Check(report_tx(h, &t, coid, sym) == KB_OK, "report deal");
        fills++;
        std::printf("fill %lld %s %.2f %.5f %ls\n", static_cast<long long>(cur->time_msc - offset_ms),
                    cmd.side == 1 ? "buy" : "sell", cmd.volume, price, coid);
        continue;
      } else if (cmd.kind == 5) {  // QUERY_ORDER: the tester never loses a result
        r.status = 6;
        r.retcode = 0;
      }
      Check(report(h, &r, coid, L"") == KB_OK, "report result");
    }
  };

  for (const KbMqlTick& t : ticks) {
    cur = &t;
    // OnTick: the tester's one new tick, then the bounded wait for the stack's decision on it.
    Check(push(h, sym, 5, &t, 1) == KB_OK, "push tick");
    const DWORD deadline = GetTickCount() + static_cast<DWORD>(timeout_ms);
    for (;;) {
      const int32_t left = static_cast<int32_t>(deadline - GetTickCount());
      const int32_t rc = tester_wait(h, left > 0 && left <= timeout_ms ? left : 1);
      if (rc == KB_COMMAND) {
        serve();
        continue;
      }
      if (rc == KB_E_TIMEOUT) {
        timeouts++;
        // The EA's log line (docs/mt5.md): the tester moves on, nothing is dropped.
        std::printf(
            "Kairos tester: no decision on the tick at %lld within %d ms (KB_E_TIMEOUT), %ld so far\n",
            static_cast<long long>(t.time_msc - offset_ms), timeout_ms, timeouts);
        drain_log();
      } else {
        Check(rc == KB_OK, "tester wait");
      }
      break;
    }
  }
  // The end of the test: what is still on its way is served (bounded), as OnDeinit's last calls.
  long end_timeouts = 0;
  for (int i = 0; i < 1000; i++) {
    const int32_t rc = tester_wait(h, timeout_ms);
    if (rc == KB_COMMAND) {
      serve();
      continue;
    }
    if (rc == KB_E_TIMEOUT) end_timeouts++;
    break;
  }
  KbCounters c{};
  c.struct_size = sizeof(c);
  Check(counters(h, &c) == KB_OK, "counters");
  drain_log();
  std::printf("position %ls %.2f\n", sym, acct.net);
  std::printf(
      "tester {\"ticks\": %llu, \"ticks_acked\": %llu, \"steps\": %llu, \"timeouts\": %llu, "
      "\"tick_timeouts\": %ld, "
      "\"decisions\": %llu, "
      "\"no_decision\": %llu, \"commands\": %ld, \"fills\": %ld, \"reports_acked\": %llu, "
      "\"reports_dropped\": %llu}\n",
      static_cast<unsigned long long>(ticks.size()), static_cast<unsigned long long>(c.ticks_acked),
      static_cast<unsigned long long>(c.tester_steps), static_cast<unsigned long long>(c.tester_timeouts),
      timeouts, static_cast<unsigned long long>(c.tester_decisions),
      static_cast<unsigned long long>(c.tester_no_decision), served, fills,
      static_cast<unsigned long long>(c.reports_acked), static_cast<unsigned long long>(c.reports_dropped));
  Check(static_cast<long>(c.tester_timeouts) == timeouts + end_timeouts, "every timeout counted");
  Check(close(h) == KB_OK, "close");
  Check(FreeLibrary(dll) != 0, "FreeLibrary");
  std::fflush(stdout);
  if (failures != 0) return 1;
  std::printf("loader: ok\n");
  return 0;
}

}  // namespace

int wmain(int argc, wchar_t** argv) {
  if (argc >= 2 && std::wcscmp(argv[1], L"--tester") == 0) return RunTester(argc, argv);
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
