//+------------------------------------------------------------------+
//| KairosBridge.mq5: the Kairos bridge Expert Advisor                |
//|                                                                   |
//| Forwards every tick of a symbol list to the Kairos collector and  |
//| executes the execution service's order commands, through          |
//| kairos_bridge.dll (docs/bridge.md).                               |
//|                                                                   |
//| Ticks: OnTimer copies them with CopyTicks(from_msc) from a        |
//| per-symbol watermark, so none is skipped (OnTick events are       |
//| dropped while the EA is busy, and sample only the chart symbol).  |
//| Commands: polled on every timer, executed with CTrade, the result |
//| (retcode, order and deal tickets) reported back; trade            |
//| transactions are mapped back to Kairos client order ids.          |
//| No DLL call waits on the network: the DLL's own thread does I/O.  |
//| Strategy Tester (MQL_TESTER, InpTesterLockstep): OnTick forwards   |
//| the tick and waits, bounded, for the stack's decision on it       |
//| (kb_tester_wait, docs/adr/0095-strategy-tester-lockstep.md); its   |
//| orders fill through the tester. The one call that blocks.         |
//+------------------------------------------------------------------+
#property copyright "Kairos contributors"
#property version   "0.10"
#property description "Kairos MT5 bridge: ticks to the collector, orders from the execution service"
#property strict

#include <Trade/Trade.mqh>
#include <Generic/HashMap.mqh>
#include <KairosBridge.mqh>

input string InpCollector     = "127.0.0.1:7400";   // Collector endpoint (host:port, empty = off)
input string InpExecution     = "127.0.0.1:7600";   // Execution endpoint (host:port, empty = off)
input string InpBridgeKey     = "";                 // Bridge key (printed by `kairos up`; both services must have it)
input string InpSymbols       = "";                 // Symbols to forward, comma-separated (empty = chart symbol)
input int    InpTimerMs       = 20;                 // Timer period, milliseconds
input int    InpMaxTicksCopy  = 20000;              // Ticks per CopyTicks call
input long   InpMagic         = 20261121;           // Magic number of Kairos orders
input int    InpSnapshotSec   = 5;                  // Account/positions report period, seconds
input bool   InpTesterLockstep = true;              // Strategy Tester: each tick waits for the stack's decision
input int    InpTesterTimeoutMs = 5000;             // Strategy Tester: longest wait per tick, milliseconds (1..60000)

long     g_handle = 0;
string   g_symbols[];
int      g_digits[];
long     g_watermark[];    // time_msc of the last tick forwarded, per symbol (server time)
int      g_at_watermark[]; // ticks with time_msc == watermark already forwarded
CTrade   g_trade;
CHashMap<ulong, string> g_order_coid;  // order ticket -> client order id
datetime g_last_snapshot = 0;
int      g_was_trading_connected = 0;
bool     g_lockstep = false;           // Strategy Tester lockstep (OnTick waits for each decision)
long     g_tester_timeouts = 0;
ENUM_ORDER_TYPE_FILLING g_filling[];   // the filling mode orders of each symbol use (self-check)
string   g_last_check = "";             // the last self-check reported, to report only changes
KbHistoryRequest g_hist;                // the history chunk being answered (request_id 0: none)
MqlTick  g_hist_ticks[];                // its rows, handed to the DLL from g_hist_at on
MqlRates g_hist_rates[];
int      g_hist_count = 0;
int      g_hist_at = 0;
int      g_hist_status = 0;             // its verdict, sent once every row is queued
long     g_hist_first = 0;
string   g_hist_message = "";

//--- Milliseconds between trade-server time and UTC; the DLL sends UTC.
long ServerOffsetMs()
  {
   return (long)(TimeTradeServer() - TimeGMT()) * 1000;
  }

//--- UTC in microseconds from the DLL's clock (the clock of KbCommand.received_time_us).
long NowUtcUs()
  {
   long now = 0;
   if(kb_now_us(now) != KB_OK)
      now = (long)TimeGMT() * 1000000;
   return now;
  }

int VolumeDigits(const string symbol)
  {
   double step = SymbolInfoDouble(symbol, SYMBOL_VOLUME_STEP);
   int d = 0;
   while(d < 8 && MathAbs(step * MathPow(10, d) - MathRound(step * MathPow(10, d))) > 1e-9)
      d++;
   return d;
  }

//--- An order comment is a Kairos client order id only if it fits the 31-byte wire field.
string CoidFromComment(const string comment)
  {
   uchar bytes[];
   int n = StringToCharArray(comment, bytes, 0, WHOLE_ARRAY, CP_UTF8) - 1;
   return n <= 31 ? comment : "";
  }

void PrintBridgeLog()
  {
   ushort buf[];
   ArrayResize(buf, 512);
   int guard = 0;
   while(g_handle != 0 && kb_poll_log(g_handle, buf, 512) == KB_OK && guard++ < 100)
      Print("kairos bridge: ", ShortArrayToString(buf));
  }

//+------------------------------------------------------------------+
int OnInit()
  {
   if(!TerminalInfoInteger(TERMINAL_DLLS_ALLOWED) || !MQLInfoInteger(MQL_DLLS_ALLOWED))
     {
      // Without DLL imports nothing can reach the stack: this line is the whole report.
      Print("Kairos self-check FAILED: DLL imports are not allowed. Open the EA's properties (F7), Dependencies tab, "
            "tick 'Allow DLL imports' (and Tools > Options > Expert Advisors > 'Allow DLL imports'), then attach the EA again.");
      return INIT_FAILED;
     }
   if(kb_api_version() != KB_API_VERSION)
     {
      PrintFormat("Kairos bridge: kairos_bridge.dll has ABI %d, this EA needs %d", kb_api_version(), KB_API_VERSION);
      return INIT_FAILED;
     }
   string list = InpSymbols == "" ? _Symbol : InpSymbols;
   string parts[];
   int n = StringSplit(list, ',', parts);
   ArrayResize(g_symbols, 0);
   for(int i = 0; i < n; i++)
     {
      string s = parts[i];
      StringTrimLeft(s);
      StringTrimRight(s);
      if(s == "" || !SymbolSelect(s, true))
        {
         if(s != "")
            PrintFormat("Kairos bridge: unknown symbol '%s' skipped", s);
         continue;
        }
      int k = ArraySize(g_symbols);
      ArrayResize(g_symbols, k + 1);
      g_symbols[k] = s;
     }
   int count = ArraySize(g_symbols);
   ArrayResize(g_digits, count);
   ArrayResize(g_watermark, count);
   ArrayResize(g_at_watermark, count);
   ArrayResize(g_filling, count);

   KbOptions options;
   ZeroMemory(options);
   options.struct_size = sizeof(KbOptions);
   kb_default_options(options);
   // In the Strategy Tester the bridge runs in lockstep with the stack (ADR 0095); live, never.
   g_lockstep = MQLInfoInteger(MQL_TESTER) != 0 && InpTesterLockstep;
   options.lockstep = g_lockstep ? 1 : 0;
   if(g_lockstep && (InpTesterTimeoutMs < 1 || InpTesterTimeoutMs > 60000))
     {
      PrintFormat("Kairos tester: InpTesterTimeoutMs %d is out of range (1..60000)", InpTesterTimeoutMs);
      return INIT_PARAMETERS_INCORRECT;
     }
   if(InpBridgeKey == "")
      Print("Kairos bridge: no BridgeKey set; the Kairos services refuse the connection unless they run with --bridge-insecure");
   // The key proves the EA to the services and the services to the EA (an HMAC challenge); it is
   // never sent.
   int rc = kb_open_with_key(InpCollector, InpExecution, TerminalInfoString(TERMINAL_NAME), (int)TerminalInfoInteger(TERMINAL_BUILD),
                             AccountInfoString(ACCOUNT_COMPANY), AccountInfoString(ACCOUNT_SERVER), AccountInfoInteger(ACCOUNT_LOGIN),
                             AccountInfoString(ACCOUNT_CURRENCY), TradeModeNumber(), _Symbol, InpMagic, InpBridgeKey, options, g_handle);
   if(rc != KB_OK)
     {
      PrintFormat("Kairos bridge: kb_open failed: %s (%d)", KbStatusText(rc), rc);
      return INIT_FAILED;
     }
   kb_set_server_offset(g_handle, ServerOffsetMs());
   for(int i = 0; i < count; i++)
     {
      string s = g_symbols[i];
      g_digits[i] = (int)SymbolInfoInteger(s, SYMBOL_DIGITS);
      kb_announce_symbol(g_handle, s, g_digits[i], SymbolInfoDouble(s, SYMBOL_POINT),
                         SymbolInfoDouble(s, SYMBOL_TRADE_CONTRACT_SIZE), SymbolInfoDouble(s, SYMBOL_VOLUME_MIN),
                         SymbolInfoDouble(s, SYMBOL_VOLUME_MAX), SymbolInfoDouble(s, SYMBOL_VOLUME_STEP),
                         SymbolInfoDouble(s, SYMBOL_TRADE_TICK_SIZE), SymbolInfoDouble(s, SYMBOL_TRADE_TICK_VALUE),
                         SymbolInfoString(s, SYMBOL_CURRENCY_BASE), SymbolInfoString(s, SYMBOL_CURRENCY_PROFIT),
                         SymbolInfoString(s, SYMBOL_DESCRIPTION));
      MqlTick last;
      // Start at the current tick (inclusive): from here on every tick is forwarded.
      g_watermark[i] = SymbolInfoTick(s, last) ? (long)last.time_msc : (long)TimeCurrent() * 1000;
      g_at_watermark[i] = 0;
     }
   g_trade.SetExpertMagicNumber((ulong)InpMagic);
   g_trade.SetAsyncMode(false);
   ZeroMemory(g_hist);
   SelfCheck(true);
   if(g_lockstep)
      PrintFormat("Kairos tester: lockstep, each tick waits at most %d ms for the stack's decision", InpTesterTimeoutMs);
   else if(!EventSetMillisecondTimer(InpTimerMs))
     {
      Print("Kairos bridge: cannot start the timer");
      return INIT_FAILED;
     }
   PrintFormat("Kairos bridge: open, %d symbols, collector %s, execution %s", count, InpCollector, InpExecution);
   return INIT_SUCCEEDED;
  }

//+------------------------------------------------------------------+
void OnDeinit(const int reason)
  {
   EventKillTimer();
   if(g_handle != 0 && g_lockstep)
     {
      KbCounters c;
      ZeroMemory(c);
      c.struct_size = sizeof(KbCounters);
      if(kb_get_counters(g_handle, c) == KB_OK)
         PrintFormat("Kairos tester: %I64u steps decided, %I64u timeouts, %I64u decisions, %I64u ticks without a decision, %I64u dropped at the lockstep bounds",
                     c.tester_steps, c.tester_timeouts, c.tester_decisions, c.tester_no_decision, c.tester_dropped);
     }
   if(g_handle != 0)
     {
      PrintBridgeLog();
      // Flushes for at most close_flush_ms and joins the network thread, well within the 2.5 s
      // the terminal allows OnDeinit.
      kb_close(g_handle);
      g_handle = 0;
     }
  }

int TradeModeNumber()
  {
   switch((ENUM_ACCOUNT_TRADE_MODE)AccountInfoInteger(ACCOUNT_TRADE_MODE))
     {
      case ACCOUNT_TRADE_MODE_DEMO:    return 1;
      case ACCOUNT_TRADE_MODE_CONTEST: return 2;
      case ACCOUNT_TRADE_MODE_REAL:    return 3;
     }
   return 0;
  }

//+------------------------------------------------------------------+
//| Self-check: what must be set for the stack to trade, each        |
//| failure one line naming the setting to change (docs/mt5.md).     |
//+------------------------------------------------------------------+
string FillingName(const ENUM_ORDER_TYPE_FILLING f)
  {
   switch(f)
     {
      case ORDER_FILLING_FOK:    return "FOK";
      case ORDER_FILLING_IOC:    return "IOC";
      case ORDER_FILLING_RETURN: return "RETURN";
     }
   return "?";
  }

//--- The filling mode a market order of the symbol uses: FOK if the broker allows it (all or
//--- nothing, as the stack's market orders mean), else IOC, else RETURN (only where the execution
//--- mode is not market execution, which refuses RETURN). false: no usable mode.
bool DetectFilling(const string symbol, ENUM_ORDER_TYPE_FILLING &mode, string &allowed)
  {
   long modes = SymbolInfoInteger(symbol, SYMBOL_FILLING_MODE);
   long exec = SymbolInfoInteger(symbol, SYMBOL_TRADE_EXEMODE);
   allowed = "";
   if((modes & SYMBOL_FILLING_FOK) != 0)
      allowed += "FOK ";
   if((modes & SYMBOL_FILLING_IOC) != 0)
      allowed += "IOC ";
   if(exec != SYMBOL_TRADE_EXECUTION_MARKET)
      allowed += "RETURN";
   if((modes & SYMBOL_FILLING_FOK) != 0)
      mode = ORDER_FILLING_FOK;
   else if((modes & SYMBOL_FILLING_IOC) != 0)
      mode = ORDER_FILLING_IOC;
   else if(exec != SYMBOL_TRADE_EXECUTION_MARKET)
      mode = ORDER_FILLING_RETURN;
   else
      return false;
   return true;
  }

//--- The filling mode for an order of symbol (the self-check's; RETURN for pending orders, which
//--- rest on the book whatever the market-order mode is).
ENUM_ORDER_TYPE_FILLING FillingFor(const string symbol, const bool pending)
  {
   if(pending)
      return ORDER_FILLING_RETURN;
   for(int i = 0; i < ArraySize(g_symbols); i++)
      if(g_symbols[i] == symbol)
         return g_filling[i];
   ENUM_ORDER_TYPE_FILLING mode = ORDER_FILLING_FOK;
   string allowed;
   DetectFilling(symbol, mode, allowed);
   return mode;
  }

//--- Runs every check, prints each failure (at start-up, or when the result changed) and reports
//--- the result to the execution service (kb_report_check), which shows it in its metrics.
void SelfCheck(const bool startup)
  {
   KbTerminalCheck k;
   ZeroMemory(k);
   string problems = "";
   k.dlls_allowed = 1;  // this code runs: the DLL is loaded
   k.terminal_trade_allowed = (int)TerminalInfoInteger(TERMINAL_TRADE_ALLOWED);
   k.ea_trade_allowed = (int)MQLInfoInteger(MQL_TRADE_ALLOWED);
   k.account_trade_allowed = (int)AccountInfoInteger(ACCOUNT_TRADE_ALLOWED);
   k.account_expert_allowed = (int)AccountInfoInteger(ACCOUNT_TRADE_EXPERT);
   k.tester = (int)MQLInfoInteger(MQL_TESTER);
   if(k.terminal_trade_allowed == 0)
      problems += "Algo Trading is off in the terminal: press the 'Algo Trading' button in the toolbar (Tools > Options > Expert Advisors > 'Allow algorithmic trading').\n";
   if(k.ea_trade_allowed == 0)
      problems += "This EA may not trade: open its properties (F7), Common tab, tick 'Allow Algo Trading'.\n";
   if(k.account_trade_allowed == 0)
      problems += "The account cannot trade (ACCOUNT_TRADE_ALLOWED false): log in with the trading password, not the investor password.\n";
   if(k.account_expert_allowed == 0)
      problems += "The broker does not let expert advisors trade on this account (ACCOUNT_TRADE_EXPERT false): ask the broker to enable it.\n";
   string fills = "";
   for(int i = 0; i < ArraySize(g_symbols); i++)
     {
      string s = g_symbols[i];
      k.symbols_checked++;
      long mode = SymbolInfoInteger(s, SYMBOL_TRADE_MODE);
      string allowed = "";
      ENUM_ORDER_TYPE_FILLING f = ORDER_FILLING_FOK;
      if(mode == SYMBOL_TRADE_MODE_DISABLED || mode == SYMBOL_TRADE_MODE_CLOSEONLY)
        {
         k.symbols_failed++;
         problems += StringFormat("%s: trading is %s for the symbol at this broker: remove it from InpSymbols or use another account.\n",
                                  s, mode == SYMBOL_TRADE_MODE_DISABLED ? "disabled" : "close-only");
        }
      else if(!DetectFilling(s, f, allowed))
        {
         k.symbols_failed++;
         problems += StringFormat("%s: no filling mode this EA can use (the broker allows none of FOK, IOC, RETURN): ask the broker.\n", s);
        }
      g_filling[i] = f;
      fills += StringFormat("%s %s (broker allows %s), ", s, FillingName(f), allowed);
     }
   k.time_msc = (long)TimeGMT() * 1000;
   string summary = StringFormat("%d%d%d%d%d/%d/%s", k.terminal_trade_allowed, k.ea_trade_allowed, k.account_trade_allowed,
                                 k.account_expert_allowed, k.tester, k.symbols_failed, problems);
   if(!startup && summary == g_last_check)
      return;
   g_last_check = summary;
   if(problems == "")
      PrintFormat("Kairos self-check passed: DLL imports, Algo Trading (terminal and EA), account and expert trading; fills: %s"
                  "server time is UTC%+.1f h%s", fills, ServerOffsetMs() / 3600000.0, k.tester != 0 ? "; running in the Strategy Tester" : "");
   else
     {
      string lines[];
      int n = StringSplit(problems, '\n', lines);
      for(int i = 0; i < n; i++)
         if(lines[i] != "")
            Print("Kairos self-check FAILED: ", lines[i]);
      PrintFormat("Kairos self-check: fills %s", fills);
     }
   int rc = kb_report_check(g_handle, k, problems);
   if(rc != KB_OK && rc != KB_E_NO_CHANNEL)
      PrintFormat("Kairos bridge: kb_report_check failed: %s (%d)", KbStatusText(rc), rc);
  }

//+------------------------------------------------------------------+
//| History through the bridge (docs/bridge.md): the collector asks  |
//| for a chunk, the EA copies it (CopyTicksRange / CopyRates) and   |
//| hands it to the DLL in slices, then the verdict. One chunk at a  |
//| time; a full DLL queue leaves the rest for the next timer.       |
//+------------------------------------------------------------------+
void StartHistory()
  {
   string symbol = ShortArrayToString(g_hist.symbol);
   long offset = ServerOffsetMs();
   // The request is UTC; the terminal's history is in trade-server time.
   ulong from = (ulong)(g_hist.from_msc + offset), to = (ulong)(g_hist.to_msc + offset - 1);
   g_hist_count = 0;
   g_hist_at = 0;
   g_hist_first = 0;
   g_hist_message = "";
   g_hist_status = KB_HISTORY_DONE;
   if(!SymbolSelect(symbol, true))
     {
      g_hist_status = KB_HISTORY_ERROR;
      g_hist_message = "unknown symbol " + symbol;
      return;
     }
   ResetLastError();
   if(g_hist.kind == KB_HISTORY_TICKS)
     {
      g_hist_count = CopyTicksRange(symbol, g_hist_ticks, COPY_TICKS_ALL, from, to);
      g_hist_first = (long)SeriesInfoInteger(symbol, PERIOD_M1, SERIES_TERMINAL_FIRSTDATE) * 1000;
     }
   else
     {
      ENUM_TIMEFRAMES tf = PeriodOf(g_hist.period_s);
      if(tf == PERIOD_CURRENT)
        {
         g_hist_status = KB_HISTORY_ERROR;
         g_hist_message = StringFormat("no MT5 timeframe of %d s", g_hist.period_s);
         return;
        }
      g_hist_count = CopyRates(symbol, tf, (datetime)(from / 1000), (datetime)(to / 1000), g_hist_rates);
      g_hist_first = (long)SeriesInfoInteger(symbol, tf, SERIES_TERMINAL_FIRSTDATE) * 1000;
     }
   int err = GetLastError();
   if(g_hist_count < 0)
     {
      g_hist_count = 0;
      g_hist_status = KB_HISTORY_ERROR;
      g_hist_message = StringFormat("%s failed: error %d (the terminal may still be loading history: retry)",
                                    g_hist.kind == KB_HISTORY_TICKS ? "CopyTicksRange" : "CopyRates", err);
     }
   else if(g_hist_first > 0 && (ulong)g_hist_first > from)
     {
      g_hist_status = KB_HISTORY_PARTIAL;
      g_hist_message = "the terminal's history starts later (SERIES_TERMINAL_FIRSTDATE); raise 'Max bars in history' or download from then";
     }
   else if(g_hist_count == 0)
     {
      g_hist_status = KB_HISTORY_EMPTY;
      g_hist_message = StringFormat("%s returned nothing (error %d)", g_hist.kind == KB_HISTORY_TICKS ? "CopyTicksRange" : "CopyRates", err);
     }
  }

ENUM_TIMEFRAMES PeriodOf(const int seconds)
  {
   switch(seconds)
     {
      case 60:    return PERIOD_M1;
      case 120:   return PERIOD_M2;
      case 300:   return PERIOD_M5;
      case 600:   return PERIOD_M10;
      case 900:   return PERIOD_M15;
      case 1800:  return PERIOD_M30;
      case 3600:  return PERIOD_H1;
      case 14400: return PERIOD_H4;
      case 86400: return PERIOD_D1;
     }
   return PERIOD_CURRENT;
  }

void ServeHistory()
  {
   for(int guard = 0; guard < 4; guard++)
     {
      if(g_hist.request_id == 0)
        {
         if(kb_poll_history(g_handle, g_hist) != KB_OK)
            return;
         StartHistory();
        }
      while(g_hist_at < g_hist_count)
        {
         int n = MathMin(4096, g_hist_count - g_hist_at);
         int rc;
         if(g_hist.kind == KB_HISTORY_TICKS)
           {
            MqlTick slice[];
            ArrayCopy(slice, g_hist_ticks, 0, g_hist_at, n);
            rc = kb_history_ticks(g_handle, g_hist.request_id, slice, n);
           }
         else
           {
            MqlRates slice[];
            ArrayCopy(slice, g_hist_rates, 0, g_hist_at, n);
            rc = kb_history_bars(g_handle, g_hist.request_id, slice, n);
           }
         if(rc == KB_E_QUEUE_FULL)
            return;  // the next timer goes on from here
         if(rc != KB_OK)
           {
            PrintFormat("Kairos bridge: history %I64u: %s (%d)", g_hist.request_id, KbStatusText(rc), rc);
            g_hist_status = KB_HISTORY_ERROR;
            g_hist_message = "the bridge refused the rows: " + KbStatusText(rc);
            g_hist_at = g_hist_count;
            break;
           }
         g_hist_at += n;
        }
      int rc = kb_history_end(g_handle, g_hist.request_id, g_hist_status, g_hist_first, g_hist_message);
      if(rc == KB_E_QUEUE_FULL)
         return;
      if(g_hist_status != KB_HISTORY_DONE)
         PrintFormat("Kairos bridge: history of %s: %s", ShortArrayToString(g_hist.symbol), g_hist_message);
      g_hist.request_id = 0;
      ArrayFree(g_hist_ticks);
      ArrayFree(g_hist_rates);
     }
  }

//+------------------------------------------------------------------+
//| Forward the ticks of one symbol since its watermark.             |
//+------------------------------------------------------------------+
void ForwardTicks(const int i)
  {
   for(int round = 0; round < 8; round++)
     {
      MqlTick ticks[];
      int n = CopyTicks(g_symbols[i], ticks, COPY_TICKS_ALL, (ulong)g_watermark[i], InpMaxTicksCopy);
      if(n <= 0)
         return;
      // CopyTicks(from) includes the ticks at the watermark millisecond: skip those already sent.
      int first = 0;
      while(first < n && first < g_at_watermark[i] && ticks[first].time_msc == g_watermark[i])
         first++;
      int count = n - first;
      if(count <= 0)
         return;
      MqlTick batch[];
      ArrayCopy(batch, ticks, 0, first, count);
      int rc = kb_push_ticks(g_handle, g_symbols[i], g_digits[i], batch, count);
      if(rc == KB_E_QUEUE_FULL)
         return;  // nothing was queued: the watermark stays and the next timer sends them
      if(rc != KB_OK && rc != KB_PARTIAL)
        {
         PrintFormat("Kairos bridge: kb_push_ticks(%s) failed: %s (%d)", g_symbols[i], KbStatusText(rc), rc);
         return;
        }
      long last = batch[count - 1].time_msc;
      int same = 0;
      for(int k = count - 1; k >= 0 && batch[k].time_msc == last; k--)
         same++;
      if(last == g_watermark[i])
         g_at_watermark[i] += same;
      else
        {
         g_watermark[i] = last;
         g_at_watermark[i] = same;
        }
      if(n < InpMaxTicksCopy)
         return;
     }
  }

//+------------------------------------------------------------------+
void OnTimer()
  {
   if(g_handle == 0)
      return;
   kb_set_server_offset(g_handle, ServerOffsetMs());
   for(int i = 0; i < ArraySize(g_symbols); i++)
      ForwardTicks(i);
   if(InpCollector != "")
      ServeHistory();
   if(InpExecution != "")
     {
      KbCommand cmd;
      int guard = 0;
      while(guard++ < 64 && kb_poll_command(g_handle, cmd) == KB_OK)
         Execute(cmd);
      KbCounters c;
      ZeroMemory(c);
      c.struct_size = sizeof(KbCounters);
      if(kb_get_counters(g_handle, c) == KB_OK)
        {
         // Reconcile right after every (re)connect, then periodically.
         bool connected_now = c.trading_connected == 1 && g_was_trading_connected == 0;
         g_was_trading_connected = c.trading_connected;
         if(connected_now || TimeCurrent() - g_last_snapshot >= InpSnapshotSec)
           {
            SelfCheck(false);  // reported again only when a result changed
            ReportAccount();
            ReportPositions();
            g_last_snapshot = TimeCurrent();
           }
        }
     }
   PrintBridgeLog();
  }

//+------------------------------------------------------------------+
//| Strategy Tester: the tick forwarded, then the bounded wait for the |
//| stack's decision; its commands are carried out (through the       |
//| tester's CTrade) while it waits.                                  |
//+------------------------------------------------------------------+
void OnTick()
  {
   if(g_handle == 0 || !g_lockstep)
      return;  // live: OnTimer does the work and nothing waits
   OnTimer();
   uint start = GetTickCount();
   for(int guard = 0; guard < 100000; guard++)
     {
      int left = InpTesterTimeoutMs - (int)(GetTickCount() - start);
      int rc = kb_tester_wait(g_handle, left > 0 ? left : 1);
      if(rc == KB_COMMAND)
        {
         KbCommand cmd;
         while(kb_poll_command(g_handle, cmd) == KB_OK)
            Execute(cmd);
         continue;
        }
      if(rc == KB_E_TIMEOUT)
        {
         g_tester_timeouts++;
         PrintFormat("Kairos tester: no decision on the tick at %s within %d ms (KB_E_TIMEOUT), %I64d so far",
                     TimeToString(TimeCurrent(), TIME_DATE | TIME_SECONDS), InpTesterTimeoutMs, g_tester_timeouts);
         PrintBridgeLog();  // the DLL's line says what the step still waited for
        }
      else if(rc != KB_OK)
         PrintFormat("Kairos tester: kb_tester_wait failed: %s (%d)", KbStatusText(rc), rc);
      return;
     }
  }

//+------------------------------------------------------------------+
void Report(const KbCommand &cmd, const int status, const string comment)
  {
   KbOrderResult r;
   ZeroMemory(r);
   string symbol = ShortArrayToString(cmd.symbol);
   r.command_id = cmd.command_id;
   r.status = status;
   r.received_time_us = cmd.received_time_us;
   r.completed_time_us = NowUtcUs();
   r.price_digits = symbol == "" ? 5 : (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
   r.volume_digits = symbol == "" ? 2 : VolumeDigits(symbol);
   int rc = kb_report_result(g_handle, r, ShortArrayToString(cmd.client_order_id), comment);
   if(rc != KB_OK)
      PrintFormat("Kairos bridge: kb_report_result failed: %s (%d)", KbStatusText(rc), rc);
  }

void ReportTrade(const KbCommand &cmd, const bool sent)
  {
   KbOrderResult r;
   ZeroMemory(r);
   string symbol = ShortArrayToString(cmd.symbol);
   string coid = ShortArrayToString(cmd.client_order_id);
   r.command_id = cmd.command_id;
   r.status = KB_STATUS_SENT;
   r.retcode = sent || g_trade.ResultRetcode() != 0 ? (int)g_trade.ResultRetcode() : GetLastError();
   r.order_ticket = g_trade.ResultOrder();
   r.deal_ticket = g_trade.ResultDeal();
   r.volume = g_trade.ResultVolume();
   r.price = g_trade.ResultPrice();
   r.bid = g_trade.ResultBid();
   r.ask = g_trade.ResultAsk();
   r.request_id = g_trade.ResultRequestId();
   r.price_digits = symbol == "" ? 5 : (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
   r.volume_digits = symbol == "" ? 2 : VolumeDigits(symbol);
   r.received_time_us = cmd.received_time_us;
   r.completed_time_us = NowUtcUs();
   if(r.order_ticket != 0 && coid != "")
      g_order_coid.TrySetValue(r.order_ticket, coid);
   int rc = kb_report_result(g_handle, r, coid, g_trade.ResultComment());
   if(rc != KB_OK)
      PrintFormat("Kairos bridge: kb_report_result failed: %s (%d)", KbStatusText(rc), rc);
  }

ENUM_ORDER_TYPE_TIME TimeType(const KbCommand &cmd)
  {
   return cmd.expiration_msc > 0 ? ORDER_TIME_SPECIFIED : ORDER_TIME_GTC;
  }

datetime Expiration(const KbCommand &cmd)
  {
   // The command carries UTC; MT5 expects trade-server time.
   return cmd.expiration_msc > 0 ? (datetime)((cmd.expiration_msc + ServerOffsetMs()) / 1000) : 0;
  }

//+------------------------------------------------------------------+
//| Carry out one order command and report what happened.            |
//+------------------------------------------------------------------+
void Execute(const KbCommand &cmd)
  {
   string symbol = ShortArrayToString(cmd.symbol);
   string coid = ShortArrayToString(cmd.client_order_id);
   if(cmd.deadline_time_us != 0 && NowUtcUs() > cmd.deadline_time_us)
     {
      Report(cmd, KB_STATUS_EXPIRED, "deadline passed before execution");
      return;
     }
   bool trading = cmd.kind != KB_COMMAND_QUERY_ORDER && cmd.kind != KB_COMMAND_SNAPSHOT;
   if(trading && (!TerminalInfoInteger(TERMINAL_TRADE_ALLOWED) || !MQLInfoInteger(MQL_TRADE_ALLOWED) ||
                  !AccountInfoInteger(ACCOUNT_TRADE_EXPERT)))
     {
      Report(cmd, KB_STATUS_TRADING_DISABLED, "algo trading is disabled");
      return;
     }
   if(symbol != "" && !SymbolSelect(symbol, true))
     {
      Report(cmd, KB_STATUS_INVALID, "unknown symbol");
      return;
     }
   g_trade.SetDeviationInPoints(cmd.deviation_points);
   if(cmd.kind == KB_COMMAND_PLACE)
      g_trade.SetTypeFilling(FillingFor(symbol, cmd.order_type != KB_ORDER_MARKET));
   bool ok = false;
   switch(cmd.kind)
     {
      case KB_COMMAND_PLACE:
        {
         bool buy = cmd.side == KB_SIDE_BUY;
         if(cmd.order_type == KB_ORDER_MARKET)
            ok = buy ? g_trade.Buy(cmd.volume, symbol, 0.0, cmd.stop_loss, cmd.take_profit, coid)
                     : g_trade.Sell(cmd.volume, symbol, 0.0, cmd.stop_loss, cmd.take_profit, coid);
         else if(cmd.order_type == KB_ORDER_LIMIT)
            ok = buy ? g_trade.BuyLimit(cmd.volume, cmd.price, symbol, cmd.stop_loss, cmd.take_profit, TimeType(cmd), Expiration(cmd), coid)
                     : g_trade.SellLimit(cmd.volume, cmd.price, symbol, cmd.stop_loss, cmd.take_profit, TimeType(cmd), Expiration(cmd), coid);
         else if(cmd.order_type == KB_ORDER_STOP)
            ok = buy ? g_trade.BuyStop(cmd.volume, cmd.price, symbol, cmd.stop_loss, cmd.take_profit, TimeType(cmd), Expiration(cmd), coid)
                     : g_trade.SellStop(cmd.volume, cmd.price, symbol, cmd.stop_loss, cmd.take_profit, TimeType(cmd), Expiration(cmd), coid);
         else
            ok = g_trade.OrderOpen(symbol, buy ? ORDER_TYPE_BUY_STOP_LIMIT : ORDER_TYPE_SELL_STOP_LIMIT, cmd.volume,
                                   cmd.stop_limit_price, cmd.price, cmd.stop_loss, cmd.take_profit, TimeType(cmd),
                                   Expiration(cmd), coid);
         ReportTrade(cmd, ok);
         return;
        }
      case KB_COMMAND_CANCEL:
         ok = g_trade.OrderDelete(cmd.order_ticket);
         ReportTrade(cmd, ok);
         return;
      case KB_COMMAND_MODIFY:
         ok = g_trade.OrderModify(cmd.order_ticket, cmd.price, cmd.stop_loss, cmd.take_profit, TimeType(cmd),
                                  Expiration(cmd), cmd.stop_limit_price);
         ReportTrade(cmd, ok);
         return;
      case KB_COMMAND_CLOSE_POSITION:
         ok = cmd.volume > 0 ? g_trade.PositionClosePartial(cmd.position_ticket, cmd.volume)
                             : g_trade.PositionClose(cmd.position_ticket);
         ReportTrade(cmd, ok);
         return;
      case KB_COMMAND_MODIFY_POSITION:
         ModifyPositions(cmd, symbol);
         return;
      case KB_COMMAND_QUERY_ORDER:
         QueryOrder(cmd);
         return;
      case KB_COMMAND_SNAPSHOT:
         ReportAccount();
         ReportPositions();
         Report(cmd, KB_STATUS_QUERY_RESULT, "snapshot sent");
         return;
     }
   Report(cmd, KB_STATUS_INVALID, "unknown command kind");
  }

//--- MODIFY_POSITION: stop loss and take profit (0 removes) of position_ticket, or of every open
//--- position of the symbol carrying our magic, set at the broker with CTrade.PositionModify so they
//--- hold if the stack stops. The result carries the last PositionModify's retcode; with no such
//--- position, retcode 0 and "no position".
void ModifyPositions(const KbCommand &cmd, const string symbol)
  {
   int done = 0;
   bool ok = true;
   for(int i = PositionsTotal() - 1; i >= 0; i--)
     {
      ulong ticket = PositionGetTicket(i);
      if(ticket == 0)
         continue;
      if(cmd.position_ticket != 0 ? ticket != cmd.position_ticket
                                  : (PositionGetString(POSITION_SYMBOL) != symbol || PositionGetInteger(POSITION_MAGIC) != InpMagic))
         continue;
      done++;
      if(!g_trade.PositionModify(ticket, cmd.stop_loss, cmd.take_profit))
        {
         ok = false;
         PrintFormat("Kairos bridge: PositionModify %I64u sl %.5f tp %.5f failed: retcode %u %s", ticket, cmd.stop_loss,
                     cmd.take_profit, g_trade.ResultRetcode(), g_trade.ResultComment());
         break;
        }
     }
   if(done == 0)
     {
      Report(cmd, KB_STATUS_SENT, "no position");
      return;
     }
   ReportTrade(cmd, ok);
  }

//--- Answers QUERY_ORDER: the order's state (retcode = ENUM_ORDER_STATE) and its deal, if any.
void QueryOrder(const KbCommand &cmd)
  {
   KbOrderResult r;
   ZeroMemory(r);
   string symbol = ShortArrayToString(cmd.symbol);
   string coid = ShortArrayToString(cmd.client_order_id);
   r.command_id = cmd.command_id;
   r.status = KB_STATUS_QUERY_RESULT;
   r.retcode = -1;  // not found
   r.price_digits = symbol == "" ? 5 : (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
   r.volume_digits = symbol == "" ? 2 : VolumeDigits(symbol);
   r.received_time_us = cmd.received_time_us;
   ulong ticket = cmd.order_ticket;
   HistorySelect(TimeCurrent() - 7 * 86400, TimeCurrent() + 86400);
   if(ticket == 0 && coid != "")
     {
      for(int i = HistoryOrdersTotal() - 1; i >= 0 && ticket == 0; i--)
        {
         ulong t = HistoryOrderGetTicket(i);
         if(HistoryOrderGetString(t, ORDER_COMMENT) == coid)
            ticket = t;
        }
      for(int i = OrdersTotal() - 1; i >= 0 && ticket == 0; i--)
        {
         ulong t = OrderGetTicket(i);
         if(OrderGetString(ORDER_COMMENT) == coid)
            ticket = t;
        }
     }
   if(ticket != 0 && OrderSelect(ticket))
     {
      r.order_ticket = ticket;
      r.retcode = (int)OrderGetInteger(ORDER_STATE);
      r.volume = OrderGetDouble(ORDER_VOLUME_CURRENT);
      r.price = OrderGetDouble(ORDER_PRICE_OPEN);
     }
   else if(ticket != 0 && HistoryOrderSelect(ticket))
     {
      r.order_ticket = ticket;
      r.retcode = (int)HistoryOrderGetInteger(ticket, ORDER_STATE);
      r.volume = HistoryOrderGetDouble(ticket, ORDER_VOLUME_INITIAL) - HistoryOrderGetDouble(ticket, ORDER_VOLUME_CURRENT);
      for(int i = HistoryDealsTotal() - 1; i >= 0; i--)
        {
         ulong d = HistoryDealGetTicket(i);
         if((ulong)HistoryDealGetInteger(d, DEAL_ORDER) == ticket)
           {
            r.deal_ticket = d;
            r.price = HistoryDealGetDouble(d, DEAL_PRICE);
            break;
           }
        }
     }
   r.completed_time_us = NowUtcUs();
   kb_report_result(g_handle, r, coid, r.retcode < 0 ? "order not found" : "order state in retcode");
  }

//+------------------------------------------------------------------+
void ReportAccount()
  {
   KbAccount a;
   ZeroMemory(a);
   a.login = AccountInfoInteger(ACCOUNT_LOGIN);
   a.balance = AccountInfoDouble(ACCOUNT_BALANCE);
   a.equity = AccountInfoDouble(ACCOUNT_EQUITY);
   a.margin = AccountInfoDouble(ACCOUNT_MARGIN);
   a.margin_free = AccountInfoDouble(ACCOUNT_MARGIN_FREE);
   a.margin_level = AccountInfoDouble(ACCOUNT_MARGIN_LEVEL);
   a.money_digits = (int)AccountInfoInteger(ACCOUNT_CURRENCY_DIGITS);
   a.leverage = (uint)AccountInfoInteger(ACCOUNT_LEVERAGE);
   a.trade_allowed = AccountInfoInteger(ACCOUNT_TRADE_ALLOWED) && AccountInfoInteger(ACCOUNT_TRADE_EXPERT) ? 1 : 0;
   a.time_msc = (long)TimeGMT() * 1000;
   kb_report_account(g_handle, a, AccountInfoString(ACCOUNT_CURRENCY));
  }

int SideOfOrderType(const long type)
  {
   switch((ENUM_ORDER_TYPE)type)
     {
      case ORDER_TYPE_BUY: case ORDER_TYPE_BUY_LIMIT: case ORDER_TYPE_BUY_STOP: case ORDER_TYPE_BUY_STOP_LIMIT:
         return KB_SIDE_BUY;
      case ORDER_TYPE_SELL: case ORDER_TYPE_SELL_LIMIT: case ORDER_TYPE_SELL_STOP: case ORDER_TYPE_SELL_STOP_LIMIT:
         return KB_SIDE_SELL;
     }
   return 0;
  }

int KairosOrderType(const long type)
  {
   switch((ENUM_ORDER_TYPE)type)
     {
      case ORDER_TYPE_BUY_LIMIT: case ORDER_TYPE_SELL_LIMIT: return KB_ORDER_LIMIT;
      case ORDER_TYPE_BUY_STOP: case ORDER_TYPE_SELL_STOP: return KB_ORDER_STOP;
      case ORDER_TYPE_BUY_STOP_LIMIT: case ORDER_TYPE_SELL_STOP_LIMIT: return KB_ORDER_STOP_LIMIT;
     }
   return KB_ORDER_MARKET;
  }

void ReportPositions()
  {
   int money = (int)AccountInfoInteger(ACCOUNT_CURRENCY_DIGITS);
   if(kb_positions_begin(g_handle, (long)TimeGMT() * 1000) != KB_OK)
      return;
   for(int i = 0; i < PositionsTotal(); i++)
     {
      ulong ticket = PositionGetTicket(i);
      if(ticket == 0)
         continue;
      string symbol = PositionGetString(POSITION_SYMBOL);
      KbPosition p;
      ZeroMemory(p);
      p.ticket = ticket;
      p.side = PositionGetInteger(POSITION_TYPE) == POSITION_TYPE_BUY ? KB_SIDE_BUY : KB_SIDE_SELL;
      p.price_digits = (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
      p.volume_digits = VolumeDigits(symbol);
      p.money_digits = money;
      p.volume = PositionGetDouble(POSITION_VOLUME);
      p.price_open = PositionGetDouble(POSITION_PRICE_OPEN);
      p.stop_loss = PositionGetDouble(POSITION_SL);
      p.take_profit = PositionGetDouble(POSITION_TP);
      p.profit = PositionGetDouble(POSITION_PROFIT);
      p.swap = PositionGetDouble(POSITION_SWAP);
      p.magic = PositionGetInteger(POSITION_MAGIC);
      p.time_msc = PositionGetInteger(POSITION_TIME_MSC) - ServerOffsetMs();
      kb_positions_add_position(g_handle, p, symbol, CoidFromComment(PositionGetString(POSITION_COMMENT)));
     }
   for(int i = 0; i < OrdersTotal(); i++)
     {
      ulong ticket = OrderGetTicket(i);
      if(ticket == 0)
         continue;
      string symbol = OrderGetString(ORDER_SYMBOL);
      KbWorkingOrder o;
      ZeroMemory(o);
      o.ticket = ticket;
      o.side = SideOfOrderType(OrderGetInteger(ORDER_TYPE));
      o.order_type = KairosOrderType(OrderGetInteger(ORDER_TYPE));
      o.price_digits = (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
      o.volume_digits = VolumeDigits(symbol);
      o.volume = OrderGetDouble(ORDER_VOLUME_CURRENT);
      o.price = OrderGetDouble(ORDER_PRICE_OPEN);
      o.time_msc = OrderGetInteger(ORDER_TIME_SETUP_MSC) - ServerOffsetMs();
      kb_positions_add_order(g_handle, o, symbol, CoidFromComment(OrderGetString(ORDER_COMMENT)));
     }
   kb_positions_end(g_handle);
  }

//+------------------------------------------------------------------+
//| Trade transactions, mapped back to Kairos client order ids.       |
//+------------------------------------------------------------------+
int TransactionTypeNumber(const ENUM_TRADE_TRANSACTION_TYPE type)
  {
   switch(type)
     {
      case TRADE_TRANSACTION_ORDER_ADD:      return 1;
      case TRADE_TRANSACTION_ORDER_UPDATE:   return 2;
      case TRADE_TRANSACTION_ORDER_DELETE:   return 3;
      case TRADE_TRANSACTION_DEAL_ADD:       return 4;
      case TRADE_TRANSACTION_DEAL_UPDATE:    return 5;
      case TRADE_TRANSACTION_DEAL_DELETE:    return 6;
      case TRADE_TRANSACTION_HISTORY_ADD:    return 7;
      case TRADE_TRANSACTION_HISTORY_UPDATE: return 8;
      case TRADE_TRANSACTION_HISTORY_DELETE: return 9;
      case TRADE_TRANSACTION_POSITION:       return 10;
      case TRADE_TRANSACTION_REQUEST:        return 11;
     }
   return 0;
  }

//--- A deal the trade server made on a stop loss, take profit or stop-out of one of our positions is
//--- reported as "sl:<position>", "tp:<position>" or "so:<position>" (docs/execution.md): the
//--- execution service books it as an order of its own. Empty for every other deal or order.
string ProtectiveId(const MqlTradeTransaction &trans)
  {
   long reason = -1;
   long magic = 0;
   if(trans.deal != 0 && HistoryDealSelect(trans.deal))
     {
      reason = HistoryDealGetInteger(trans.deal, DEAL_REASON);
      magic = HistoryDealGetInteger(trans.deal, DEAL_MAGIC);
     }
   else if(trans.order != 0 && HistoryOrderSelect(trans.order))
     {
      reason = HistoryOrderGetInteger(trans.order, ORDER_REASON);
      magic = HistoryOrderGetInteger(trans.order, ORDER_MAGIC);
     }
   else if(trans.order != 0 && OrderSelect(trans.order))
     {
      reason = OrderGetInteger(ORDER_REASON);
      magic = OrderGetInteger(ORDER_MAGIC);
     }
   if(trans.position == 0 || (reason != DEAL_REASON_SL && reason != DEAL_REASON_TP && reason != DEAL_REASON_SO))
      return "";
   if(magic != InpMagic && HistorySelectByPosition(trans.position) && HistoryDealsTotal() > 0)
      magic = HistoryDealGetInteger(HistoryDealGetTicket(0), DEAL_MAGIC); // the deal that opened it
   if(magic != InpMagic)
      return "";
   if(reason == DEAL_REASON_SL)
      return StringFormat("sl:%I64u", trans.position);
   if(reason == DEAL_REASON_TP)
      return StringFormat("tp:%I64u", trans.position);
   if(reason == DEAL_REASON_SO)
      return StringFormat("so:%I64u", trans.position);
   return "";
  }

string ClientOrderId(const MqlTradeTransaction &trans)
  {
   string protective = ProtectiveId(trans);
   if(protective != "")
      return protective;
   string coid = "";
   if(trans.order != 0 && g_order_coid.TryGetValue(trans.order, coid))
      return coid;
   // Not placed by this EA session (e.g. after a restart): the order comment carries the id.
   if(trans.order != 0)
     {
      if(OrderSelect(trans.order))
         coid = OrderGetString(ORDER_COMMENT);
      else if(HistoryOrderSelect(trans.order))
         coid = HistoryOrderGetString(trans.order, ORDER_COMMENT);
     }
   if(coid == "" && trans.deal != 0 && HistoryDealSelect(trans.deal))
     {
      ulong order = (ulong)HistoryDealGetInteger(trans.deal, DEAL_ORDER);
      if(!g_order_coid.TryGetValue(order, coid) && HistoryOrderSelect(order))
         coid = HistoryOrderGetString(order, ORDER_COMMENT);
     }
   return CoidFromComment(coid);
  }

void OnTradeTransaction(const MqlTradeTransaction &trans, const MqlTradeRequest &request, const MqlTradeResult &result)
  {
   if(g_handle == 0 || InpExecution == "")
      return;
   KbTransaction t;
   ZeroMemory(t);
   string symbol = trans.symbol;
   t.type = TransactionTypeNumber(trans.type);
   t.order_ticket = trans.order;
   t.deal_ticket = trans.deal;
   t.position_ticket = trans.position;
   t.mt5_order_type = (int)trans.order_type;
   t.mt5_order_state = (int)trans.order_state;
   t.mt5_deal_type = (int)trans.deal_type;
   t.side = trans.deal != 0 ? (trans.deal_type == DEAL_TYPE_BUY ? KB_SIDE_BUY : (trans.deal_type == DEAL_TYPE_SELL ? KB_SIDE_SELL : 0))
                            : SideOfOrderType(trans.order_type);
   t.price_digits = symbol == "" ? 5 : (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS);
   t.volume_digits = symbol == "" ? 2 : VolumeDigits(symbol);
   t.money_digits = (int)AccountInfoInteger(ACCOUNT_CURRENCY_DIGITS);
   t.price = trans.price;
   t.volume = trans.volume;
   t.stop_loss = trans.price_sl;
   t.take_profit = trans.price_tp;
   t.time_msc = (long)TimeGMT() * 1000;
   if(trans.type == TRADE_TRANSACTION_DEAL_ADD && HistoryDealSelect(trans.deal))
     {
      t.commission = HistoryDealGetDouble(trans.deal, DEAL_COMMISSION);
      t.time_msc = HistoryDealGetInteger(trans.deal, DEAL_TIME_MSC) - ServerOffsetMs();
     }
   int rc = kb_report_transaction(g_handle, t, ClientOrderId(trans), symbol);
   if(rc != KB_OK)
      PrintFormat("Kairos bridge: kb_report_transaction failed: %s (%d)", KbStatusText(rc), rc);
  }
//+------------------------------------------------------------------+
