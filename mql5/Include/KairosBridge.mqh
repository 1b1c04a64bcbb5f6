//+------------------------------------------------------------------+
//| KairosBridge.mqh: imports of kairos_bridge.dll                    |
//|                                                                   |
//| Mirrors cpp/mt5_bridge/include/kairos_bridge.h exactly: every     |
//| function, struct field and status code. python/tests/bridge/      |
//| test_mql_header_drift.py fails if the two differ.                 |
//| Structs are packed to 1 byte (the MQL5 default), as in the DLL.   |
//+------------------------------------------------------------------+
#property strict

#define KB_API_VERSION 4

#define KB_OK 0
#define KB_EMPTY 1
#define KB_PARTIAL 2
#define KB_COMMAND 3
#define KB_E_NULL -1
#define KB_E_BAD_HANDLE -2
#define KB_E_BAD_COUNT -3
#define KB_E_STRING_TOO_LONG -4
#define KB_E_BAD_UTF16 -5
#define KB_E_NON_FINITE -6
#define KB_E_QUEUE_FULL -7
#define KB_E_BAD_ENDPOINT -8
#define KB_E_BAD_ARG -9
#define KB_E_TOO_MANY -10
#define KB_E_TRUNCATED -11
#define KB_E_INTERNAL -12
#define KB_E_NO_CHANNEL -13
#define KB_E_STATE -14
#define KB_E_TIMEOUT -15
#define KB_E_CONNECT -20
#define KB_E_PEER_CLOSED -21
#define KB_E_MALFORMED_FRAME -22
#define KB_E_HEARTBEAT_TIMEOUT -23
#define KB_E_PEER_ERROR -24
#define KB_E_AUTH -25

#define KB_MAX_HANDLES 64
#define KB_MAX_SYMBOLS 256
#define KB_MAX_PUSH_TICKS 1000000

// Enum numbers of proto/kairos/bridge/v1/bridge.proto used by the EA.
#define KB_COMMAND_PLACE 1
#define KB_COMMAND_CANCEL 2
#define KB_COMMAND_MODIFY 3
#define KB_COMMAND_CLOSE_POSITION 4
#define KB_COMMAND_QUERY_ORDER 5
#define KB_COMMAND_SNAPSHOT 6
#define KB_COMMAND_MODIFY_POSITION 7
#define KB_HISTORY_TICKS 1
#define KB_HISTORY_BARS 2
#define KB_HISTORY_DONE 2
#define KB_HISTORY_EMPTY 3
#define KB_HISTORY_ERROR 4
#define KB_HISTORY_PARTIAL 5
#define KB_SIDE_BUY 1
#define KB_SIDE_SELL 2
#define KB_ORDER_MARKET 1
#define KB_ORDER_LIMIT 2
#define KB_ORDER_STOP 3
#define KB_ORDER_STOP_LIMIT 4
#define KB_STATUS_SENT 1
#define KB_STATUS_INVALID 2
#define KB_STATUS_EXPIRED 3
#define KB_STATUS_TRADING_DISABLED 4
#define KB_STATUS_QUERY_RESULT 6

struct KbOptions
  {
   int               struct_size;
   int               tick_queue_capacity;
   int               command_queue_capacity;
   int               tick_resend_frames;
   int               report_queue_capacity;
   int               heartbeat_interval_ms;
   int               reconnect_min_ms;
   int               reconnect_max_ms;
   int               connect_timeout_ms;
   int               close_flush_ms;
   int               max_batch_ticks;
   int               idle_spin_us;
   int               warm_poll_us;
   int               lockstep;
  };

struct KbCommand
  {
   ulong             command_id;
   int               kind;
   int               side;
   int               order_type;
   uint              deviation_points;
   double            volume;
   double            price;
   double            stop_limit_price;
   double            stop_loss;
   double            take_profit;
   ulong             order_ticket;
   ulong             position_ticket;
   long              expiration_msc;
   long              deadline_time_us;
   long              received_time_us;
   ushort            client_order_id[32];
   ushort            symbol[32];
  };

struct KbOrderResult
  {
   ulong             command_id;
   int               status;
   int               retcode;
   ulong             order_ticket;
   ulong             deal_ticket;
   double            volume;
   double            price;
   double            bid;
   double            ask;
   uint              request_id;
   int               price_digits;
   int               volume_digits;
   long              received_time_us;
   long              completed_time_us;
  };

struct KbTransaction
  {
   int               type;
   int               side;
   ulong             order_ticket;
   ulong             deal_ticket;
   ulong             position_ticket;
   int               mt5_order_type;
   int               mt5_order_state;
   int               mt5_deal_type;
   int               price_digits;
   int               volume_digits;
   int               money_digits;
   double            price;
   double            volume;
   double            stop_loss;
   double            take_profit;
   double            commission;
   long              time_msc;
  };

struct KbAccount
  {
   long              login;
   double            balance;
   double            equity;
   double            margin;
   double            margin_free;
   double            margin_level;
   int               money_digits;
   uint              leverage;
   int               trade_allowed;
   long              time_msc;
  };

struct KbHistoryRequest
  {
   ulong             request_id;
   int               kind;
   int               period_s;
   long              from_msc;
   long              to_msc;
   ushort            symbol[32];
  };

struct KbTerminalCheck
  {
   int               dlls_allowed;
   int               terminal_trade_allowed;
   int               ea_trade_allowed;
   int               account_trade_allowed;
   int               account_expert_allowed;
   int               symbols_checked;
   int               symbols_failed;
   int               tester;
   long              time_msc;
  };

struct KbPosition
  {
   ulong             ticket;
   int               side;
   int               price_digits;
   int               volume_digits;
   int               money_digits;
   double            volume;
   double            price_open;
   double            stop_loss;
   double            take_profit;
   double            profit;
   double            swap;
   long              magic;
   long              time_msc;
  };

struct KbWorkingOrder
  {
   ulong             ticket;
   int               side;
   int               order_type;
   int               price_digits;
   int               volume_digits;
   double            volume;
   double            price;
   long              time_msc;
  };

struct KbCounters
  {
   int               struct_size;
   int               last_error;
   ulong             ticks_queued;
   ulong             ticks_sent;
   ulong             ticks_dropped;
   ulong             ticks_rejected;
   ulong             ticks_resent;
   ulong             ticks_resend_dropped;
   ulong             tick_queue_depth;
   ulong             frames_sent;
   ulong             frames_received;
   ulong             bytes_sent;
   ulong             bytes_received;
   ulong             reconnects;
   ulong             connect_failures;
   ulong             malformed_frames;
   ulong             heartbeats_sent;
   ulong             heartbeats_received;
   ulong             duplicate_frames;
   ulong             commands_received;
   ulong             commands_polled;
   ulong             commands_duplicate;
   ulong             commands_dropped;
   ulong             reports_queued;
   ulong             reports_acked;
   ulong             reports_resent;
   ulong             reports_dropped;
   int               market_data_connected;
   int               trading_connected;
   long              market_data_rtt_us;
   long              trading_rtt_us;
   ulong             ticks_acked;
   ulong             wakeups;
   ulong             tester_steps;
   ulong             tester_timeouts;
   ulong             tester_decisions;
   ulong             tester_no_decision;
   ulong             tester_dropped;
  };

#import "kairos_bridge.dll"
int kb_api_version();
int kb_version(ushort &buffer[], int capacity);
int kb_status_text(int status, ushort &buffer[], int capacity);
int kb_now_us(long &now_us);
int kb_default_options(KbOptions &options);
int kb_open(string collector_endpoint, string execution_endpoint, string terminal_name, int terminal_build, string company, string server, long account_login, string account_currency, int trade_mode, string ea_symbol, long magic, const KbOptions &options, long &handle);
int kb_open_with_key(string collector_endpoint, string execution_endpoint, string terminal_name, int terminal_build, string company, string server, long account_login, string account_currency, int trade_mode, string ea_symbol, long magic, string bridge_key, const KbOptions &options, long &handle);
int kb_set_server_offset(long handle, long server_minus_utc_ms);
int kb_announce_symbol(long handle, string symbol, int digits, double point, double contract_size, double volume_min, double volume_max, double volume_step, double tick_size, double tick_value, string currency_base, string currency_profit, string description);
int kb_push_ticks(long handle, string symbol, int digits, const MqlTick &ticks[], int count);
int kb_poll_command(long handle, KbCommand &command);
int kb_report_result(long handle, const KbOrderResult &result, string client_order_id, string comment);
int kb_report_transaction(long handle, const KbTransaction &transaction, string client_order_id, string symbol);
int kb_report_account(long handle, const KbAccount &account, string currency);
int kb_report_check(long handle, const KbTerminalCheck &check, string problems);
int kb_poll_history(long handle, KbHistoryRequest &request);
int kb_history_ticks(long handle, ulong request_id, const MqlTick &ticks[], int count);
int kb_history_bars(long handle, ulong request_id, const MqlRates &rates[], int count);
int kb_history_end(long handle, ulong request_id, int status, long first_available_msc, string message);
int kb_positions_begin(long handle, long time_msc);
int kb_positions_add_position(long handle, const KbPosition &position, string symbol, string client_order_id);
int kb_positions_add_order(long handle, const KbWorkingOrder &order, string symbol, string client_order_id);
int kb_positions_end(long handle);
int kb_tester_wait(long handle, int timeout_ms);
int kb_get_counters(long handle, KbCounters &counters);
int kb_last_error(long handle, ushort &buffer[], int capacity);
int kb_poll_log(long handle, ushort &buffer[], int capacity);
int kb_close(long handle);
#import

//--- Text of a status code, for the Experts log.
string KbStatusText(const int status)
  {
   ushort buf[];
   ArrayResize(buf, 128);
   kb_status_text(status, buf, 128);
   return ShortArrayToString(buf);
  }
//+------------------------------------------------------------------+
