/* Kairos MT5 bridge: the C ABI the MQL5 Expert Advisor imports (mql5/Include/KairosBridge.mqh).
 *
 * Rules of this ABI (see docs/bridge.md and docs/adr/0010-bridge-c-abi.md):
 * - Every function is extern "C", never throws, and returns an int32 status (KB_OK or a KB_* code
 *   below); no call blocks on I/O. A background thread per handle does all network work. The one
 *   exception is kb_tester_wait, and only for a bridge opened in Strategy Tester lockstep: it waits,
 *   bounded by its timeout, for the stack's decision (docs/adr/0095-strategy-tester-lockstep.md).
 * - A handle is an int64 naming one bridge instance (one per EA); handles are never reused, so a call
 *   with a closed handle returns KB_E_BAD_HANDLE instead of touching freed memory.
 * - Strings in are NUL-terminated UTF-16 (`const kb_char16*`, which is `const wchar_t*` on Windows,
 *   exactly what MQL5 passes for `string`); they are copied, never kept. Strings out are written to a
 *   caller-sized buffer (capacity in UTF-16 units, including the NUL), never past its capacity.
 * - Structs are packed to 1 byte and hold no pointers or strings, as MQL5 requires; each one has a
 *   static size check below that the MQL5 side repeats.
 * - The API only grows: new functions and new trailing struct fields (guarded by struct_size); the
 *   version below counts such additions.
 */
#ifndef KAIROS_BRIDGE_H_
#define KAIROS_BRIDGE_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#define KB_NOEXCEPT noexcept
#else
#define KB_NOEXCEPT
#endif

#if defined(_WIN32)
#include <wchar.h>
typedef wchar_t kb_char16;
#define KB_API __declspec(dllexport)
#else
typedef uint16_t kb_char16;
#define KB_API __attribute__((visibility("default")))
#endif

/* Version of this ABI; sent in Hello.api_version.
 * 2: kb_open_with_key and KB_E_AUTH; the handshake starts with the server's Challenge and the
 *    bridge key's HMAC proofs both ways (docs/adr/0015-bridge-authentication.md).
 * 3: kb_report_check (the EA's start-up self-check, a TerminalCheck frame to the execution service);
 *    COMMAND_KIND_MODIFY_POSITION reaches the EA. Servers of this release accept versions 2 and 3
 *    (docs/adr/0016-bridge-ea-self-check-and-position-stops.md). */
/* 4: Strategy Tester lockstep: KbOptions.lockstep, kb_tester_wait, KB_COMMAND and KB_E_TIMEOUT, the
 *    tester_* counters (docs/adr/0095-strategy-tester-lockstep.md). Servers accept 2 to 4. */
#define KB_API_VERSION 4

/* History kinds and kb_history_end verdicts (kairos.marketdata.v1.HistoryKind, HistoryStatus). */
#define KB_HISTORY_TICKS 1
#define KB_HISTORY_BARS 2
#define KB_HISTORY_DONE 2
#define KB_HISTORY_EMPTY 3
#define KB_HISTORY_ERROR 4
#define KB_HISTORY_PARTIAL 5

/* ---- Status codes ------------------------------------------------------------------------------ */
#define KB_OK 0                   /* done */
#define KB_EMPTY 1                /* kb_poll_command: no command is waiting (not an error) */
#define KB_PARTIAL 2              /* kb_push_ticks: some ticks were invalid and refused, the others queued */
#define KB_COMMAND 3              /* kb_tester_wait: an order command waits for the EA */
#define KB_E_NULL (-1)            /* a required pointer argument is NULL */
#define KB_E_BAD_HANDLE (-2)      /* unknown handle, or already closed (also a second kb_close) */
#define KB_E_BAD_COUNT (-3)       /* count <= 0 or above KB_MAX_PUSH_TICKS */
#define KB_E_STRING_TOO_LONG (-4) /* a string does not fit its wire field (sizes in docs/bridge.md) */
#define KB_E_BAD_UTF16 (-5)       /* a string is not valid UTF-16 (lone surrogate) */
#define KB_E_NON_FINITE (-6)      /* a price or volume is NaN, infinite or negative */
#define KB_E_QUEUE_FULL (-7)      /* the bounded queue is full: nothing was queued, counted as dropped */
#define KB_E_BAD_ENDPOINT (-8)    /* an endpoint is not "host:port" */
#define KB_E_BAD_ARG (-9)         /* an argument is out of range (digits, struct_size, empty symbol) */
#define KB_E_TOO_MANY (-10)       /* too many open handles (KB_MAX_HANDLES) or symbols (KB_MAX_SYMBOLS) */
#define KB_E_TRUNCATED (-11)      /* a string out did not fit the buffer: written truncated, NUL-ended */
#define KB_E_INTERNAL (-12)       /* an unexpected failure inside the bridge (out of memory, a bug) */
#define KB_E_NO_CHANNEL (-13)     /* the call needs a channel that was not configured at kb_open */
#define KB_E_STATE (-14)          /* call out of order (e.g. kb_positions_add without kb_positions_begin) */
#define KB_E_TIMEOUT (-15)        /* kb_tester_wait: the stack did not decide within the timeout (counted) */
/* Network conditions, reported in KbCounters.last_error (never returned by a call). */
#define KB_E_CONNECT (-20)           /* connect failed or timed out */
#define KB_E_PEER_CLOSED (-21)       /* the peer closed the connection or a socket error occurred */
#define KB_E_MALFORMED_FRAME (-22)   /* the peer sent an undecodable, oversized or unexpected frame */
#define KB_E_HEARTBEAT_TIMEOUT (-23) /* nothing heard from the peer for three heartbeat intervals */
#define KB_E_PEER_ERROR (-24)        /* the peer sent an Error frame */
#define KB_E_AUTH (-25)              /* bridge key: the server refused ours, or could not prove it knows it */

#define KB_MAX_HANDLES 64
#define KB_MAX_SYMBOLS 256
#define KB_MAX_PUSH_TICKS 1000000
#define KB_MAX_FRAME_BYTES (1024 * 1024)

/* Values of KbCommand.kind, .side, .order_type and KbOrderResult.status: the numbers of the enums
 * CommandKind, Side, OrderType and BridgeStatus in proto/kairos/bridge/v1/bridge.proto. */

#pragma pack(push, 1)

/* MQL5 MqlTick, 60 bytes. time and time_msc are trade-server time (see kb_set_server_offset). */
typedef struct KbMqlTick {
  int64_t time;
  double bid;
  double ask;
  double last;
  uint64_t volume;
  int64_t time_msc;
  uint32_t flags;
  double volume_real;
} KbMqlTick;

/* Tuning of one bridge; kb_default_options fills the defaults (docs/bridge.md has the reference). */
typedef struct KbOptions {
  int32_t struct_size;            /* sizeof(KbOptions) */
  int32_t tick_queue_capacity;    /* ticks the push ring holds (rounded up to a power of two): 262144 */
  int32_t command_queue_capacity; /* order commands waiting for kb_poll_command: 1024 */
  int32_t tick_resend_frames;     /* unacknowledged tick frames kept for resend: 4096 */
  int32_t report_queue_capacity;  /* unacknowledged results/transactions/snapshots kept: 65536 */
  int32_t heartbeat_interval_ms;  /* until the server's Welcome says otherwise: 1000 */
  int32_t reconnect_min_ms;       /* first reconnect delay; doubles per failure (with jitter): 100 */
  int32_t reconnect_max_ms;       /* cap of the reconnect delay: 1000 */
  int32_t connect_timeout_ms;     /* TCP connect plus Welcome: 2000 */
  int32_t close_flush_ms;         /* kb_close waits at most this long to flush queued data: 500 (max 2000) */
  int32_t max_batch_ticks;        /* ticks per TickBatch frame, 1..256: 256 */
  int32_t idle_spin_us;           /* after sending ticks, poll the ring this long before sleeping, so
                                     pushes in a burst need no wake-up system call: 200 (0 = off) */
  int32_t warm_poll_us;           /* while ticks flow (sent in the last second) look at the ring this
                                     often instead of being woken, so pushes make no system call:
                                     1000 (0 = always wake: lowest latency, a syscall per idle push) */
  int32_t lockstep;               /* API 4: 1 = Strategy Tester lockstep (kb_tester_wait), 0 = live: 0.
                                     A caller of API 3 passes struct_size 52 and gets 0. */
} KbOptions;

/* An order command for the EA (execution service -> bridge), written by kb_poll_command. */
typedef struct KbCommand {
  uint64_t command_id;
  int32_t kind;       /* CommandKind */
  int32_t side;       /* Side */
  int32_t order_type; /* OrderType */
  uint32_t deviation_points;
  double volume; /* lots */
  double price;
  double stop_limit_price;
  double stop_loss;
  double take_profit;
  uint64_t order_ticket;
  uint64_t position_ticket;
  int64_t expiration_msc;        /* 0 = good till cancel */
  int64_t deadline_time_us;      /* 0 = none; report BRIDGE_STATUS_EXPIRED when passed */
  int64_t received_time_us;      /* when the bridge received the command */
  kb_char16 client_order_id[32]; /* NUL-terminated UTF-16 */
  kb_char16 symbol[32];          /* NUL-terminated UTF-16 */
} KbCommand;

/* What the EA reports for a command (MqlTradeResult plus the bridge's verdict). */
typedef struct KbOrderResult {
  uint64_t command_id;
  int32_t status;  /* BridgeStatus */
  int32_t retcode; /* MqlTradeResult.retcode */
  uint64_t order_ticket;
  uint64_t deal_ticket;
  double volume;
  double price;
  double bid;
  double ask;
  uint32_t request_id;
  int32_t price_digits;  /* decimals of price/bid/ask on the wire (symbol digits), 0..18 */
  int32_t volume_digits; /* decimals of volume on the wire (from the volume step), 0..18 */
  int64_t received_time_us;
  int64_t completed_time_us;
} KbOrderResult;

/* An MqlTradeTransaction seen by OnTradeTransaction. */
typedef struct KbTransaction {
  int32_t type; /* TransactionType */
  int32_t side; /* Side */
  uint64_t order_ticket;
  uint64_t deal_ticket;
  uint64_t position_ticket;
  int32_t mt5_order_type;
  int32_t mt5_order_state;
  int32_t mt5_deal_type;
  int32_t price_digits;
  int32_t volume_digits;
  int32_t money_digits;
  double price;
  double volume;
  double stop_loss;
  double take_profit;
  double commission;
  int64_t time_msc;
} KbTransaction;

/* Account state (AccountInfo*). */
typedef struct KbAccount {
  int64_t login;
  double balance;
  double equity;
  double margin;
  double margin_free;
  double margin_level;
  int32_t money_digits; /* decimals of money on the wire (currency digits), 0..18 */
  uint32_t leverage;
  int32_t trade_allowed; /* 0 or 1 */
  int64_t time_msc;
} KbAccount;

/* One open position (PositionGet*). */
typedef struct KbPosition {
  uint64_t ticket;
  int32_t side;
  int32_t price_digits;
  int32_t volume_digits;
  int32_t money_digits;
  double volume;
  double price_open;
  double stop_loss;
  double take_profit;
  double profit;
  double swap;
  int64_t magic;
  int64_t time_msc;
} KbPosition;

/* One pending order (OrderGet*). */
typedef struct KbWorkingOrder {
  uint64_t ticket;
  int32_t side;
  int32_t order_type; /* OrderType */
  int32_t price_digits;
  int32_t volume_digits;
  double volume;
  double price;
  int64_t time_msc;
} KbWorkingOrder;

/* MQL5 MqlRates, 60 bytes; time is trade-server time in seconds. */
typedef struct KbMqlRates {
  int64_t time;
  double open;
  double high;
  double low;
  double close;
  int64_t tick_volume;
  int32_t spread;
  int64_t real_volume;
} KbMqlRates;

/* A chunk of history the collector asks for (kb_poll_history); times UTC milliseconds. */
typedef struct KbHistoryRequest {
  uint64_t request_id;
  int32_t kind;     /* KB_HISTORY_TICKS (1) or KB_HISTORY_BARS (2) */
  int32_t period_s; /* bars: 60 for M1 */
  int64_t from_msc; /* inclusive */
  int64_t to_msc;   /* exclusive */
  kb_char16 symbol[32];
} KbHistoryRequest;

/* The EA's start-up self-check (kb_report_check): each flag 1 when the check passed, 0 when not. */
typedef struct KbTerminalCheck {
  int32_t dlls_allowed;           /* TERMINAL_DLLS_ALLOWED and MQL_DLLS_ALLOWED */
  int32_t terminal_trade_allowed; /* TERMINAL_TRADE_ALLOWED: the Algo Trading button */
  int32_t ea_trade_allowed;       /* MQL_TRADE_ALLOWED: "Allow Algo Trading" in the EA's settings */
  int32_t account_trade_allowed;  /* ACCOUNT_TRADE_ALLOWED */
  int32_t account_expert_allowed; /* ACCOUNT_TRADE_EXPERT */
  int32_t symbols_checked;        /* symbols checked (>= 0) */
  int32_t symbols_failed;         /* of which cannot be traded (0..symbols_checked) */
  int32_t tester;                 /* MQL_TESTER */
  int64_t time_msc;               /* when the check ran, UTC milliseconds */
} KbTerminalCheck;

/* Counters of one handle, a consistent-enough snapshot (each field is read atomically). */
typedef struct KbCounters {
  int32_t struct_size;           /* sizeof(KbCounters) */
  int32_t last_error;            /* last KB_E_* condition (0 if none); text from kb_last_error */
  uint64_t ticks_queued;         /* ticks accepted by kb_push_ticks */
  uint64_t ticks_sent;           /* ticks written to the collector (first transmission) */
  uint64_t ticks_dropped;        /* ticks refused because the ring was full */
  uint64_t ticks_rejected;       /* ticks refused as invalid (NaN, negative price) */
  uint64_t ticks_resent;         /* ticks written again after a reconnect */
  uint64_t ticks_resend_dropped; /* unacknowledged ticks pushed out of the resend buffer */
  uint64_t tick_queue_depth;     /* ticks waiting in the ring now */
  uint64_t frames_sent;
  uint64_t frames_received;
  uint64_t bytes_sent;
  uint64_t bytes_received;
  uint64_t reconnects; /* successful connections after the first, both channels */
  uint64_t connect_failures;
  uint64_t malformed_frames; /* frames from a peer that closed the connection */
  uint64_t heartbeats_sent;
  uint64_t heartbeats_received;
  uint64_t duplicate_frames; /* peer frames with a sequence already processed, ignored */
  uint64_t commands_received;
  uint64_t commands_polled;
  uint64_t commands_duplicate; /* commands whose command_id was already received */
  uint64_t commands_dropped;   /* commands refused: queue full or invalid */
  uint64_t reports_queued;     /* results, transactions and snapshots accepted */
  uint64_t reports_acked;
  uint64_t reports_resent;
  uint64_t reports_dropped;      /* refused because the report queue was full */
  int32_t market_data_connected; /* 1 once Welcome was received on the current connection */
  int32_t trading_connected;
  int64_t market_data_rtt_us; /* last heartbeat round trip, -1 if none yet */
  int64_t trading_rtt_us;
  uint64_t ticks_acked; /* ticks in frames the collector acknowledged (processed) */
  uint64_t wakeups;     /* calls that had to wake the sleeping network thread (one system call each) */
  /* API 4, lockstep only (all 0 in live mode). */
  uint64_t tester_steps;       /* kb_tester_wait calls that ended with the step decided (KB_OK) */
  uint64_t tester_timeouts;    /* kb_tester_wait calls that ended with KB_E_TIMEOUT */
  uint64_t tester_decisions;   /* decisions the execution service reported (TesterDecision) */
  uint64_t tester_no_decision; /* tick frames the collector answered with no decision (TesterStep) */
  /* API 4, appended after the above (struct_size 288; a 280-byte caller gets the fields before it). */
  uint64_t tester_dropped; /* lockstep bookkeeping the bounds cost: TesterStep frames refused for a
                              symbol beyond KB_MAX_SYMBOLS answered, and decisions awaited or reported
                              early forgotten, oldest first, beyond 4096 outstanding (each logged) */
} KbCounters;

#pragma pack(pop)

#if defined(__cplusplus)
static_assert(sizeof(KbMqlTick) == 60, "MqlTick is 60 bytes");
static_assert(sizeof(KbOptions) == 56, "KbOptions layout");
static_assert(sizeof(KbCommand) == 232, "KbCommand layout");
static_assert(sizeof(KbOrderResult) == 92, "KbOrderResult layout");
static_assert(sizeof(KbTransaction) == 104, "KbTransaction layout");
static_assert(sizeof(KbAccount) == 68, "KbAccount layout");
static_assert(sizeof(KbPosition) == 88, "KbPosition layout");
static_assert(sizeof(KbWorkingOrder) == 48, "KbWorkingOrder layout");
static_assert(sizeof(KbCounters) == 288, "KbCounters layout");
static_assert(sizeof(KbTerminalCheck) == 40, "KbTerminalCheck layout");
static_assert(sizeof(KbMqlRates) == 60, "MqlRates is 60 bytes");
static_assert(sizeof(KbHistoryRequest) == 96, "KbHistoryRequest layout");
#endif

/* ---- Calls ------------------------------------------------------------------------------------- */

/* KB_API_VERSION of the loaded library. */
KB_API int32_t kb_api_version(void) KB_NOEXCEPT;
/* The library's version string, e.g. "0.1.0". */
KB_API int32_t kb_version(kb_char16* buffer, int32_t capacity) KB_NOEXCEPT;
/* A short English text for a status code. */
KB_API int32_t kb_status_text(int32_t status, kb_char16* buffer, int32_t capacity) KB_NOEXCEPT;
/* The bridge's wall clock, microseconds since the Unix epoch (UTC): MQL5 has no sub-second UTC clock,
 * and deadlines and result times must agree with received_time_us. */
KB_API int32_t kb_now_us(int64_t* now_us) KB_NOEXCEPT;
/* Fills *options with the defaults (struct_size must be set by the caller, or 0 for the current). */
KB_API int32_t kb_default_options(KbOptions* options) KB_NOEXCEPT;

/* Opens a bridge and starts its network thread. Endpoints are "host:port" (IPv4 or a name); an
 * empty endpoint disables that channel (at least one is required). terminal_name .. magic fill the
 * Hello. options may be NULL for the defaults. On KB_OK *handle names the bridge. */
KB_API int32_t kb_open(const kb_char16* collector_endpoint, const kb_char16* execution_endpoint,
                       const kb_char16* terminal_name, int32_t terminal_build, const kb_char16* company,
                       const kb_char16* server, int64_t account_login, const kb_char16* account_currency,
                       int32_t trade_mode, const kb_char16* ea_symbol, int64_t magic,
                       const KbOptions* options, int64_t* handle) KB_NOEXCEPT;

/* kb_open with the bridge key (the EA's BridgeKey input; API version 2). Each connection answers
 * the server's Challenge with HMAC-SHA256(key, ...) and accepts the server only if its Welcome
 * proves the same key, so neither a client without the key nor a server without it gets anywhere.
 * The key is the text as given, without surrounding white space, at least 16 and at most 256 bytes
 * in UTF-8 (KB_E_BAD_ARG otherwise); an empty key is kb_open (no proof; only a server running
 * without a key accepts it). The key is copied and never logged. */
KB_API int32_t kb_open_with_key(const kb_char16* collector_endpoint, const kb_char16* execution_endpoint,
                                const kb_char16* terminal_name, int32_t terminal_build,
                                const kb_char16* company, const kb_char16* server, int64_t account_login,
                                const kb_char16* account_currency, int32_t trade_mode,
                                const kb_char16* ea_symbol, int64_t magic, const kb_char16* bridge_key,
                                const KbOptions* options, int64_t* handle) KB_NOEXCEPT;

/* Trade-server time minus UTC in milliseconds (TimeTradeServer() - TimeGMT()); tick times are
 * shifted by it before they are sent. Cheap: the EA may call it on every timer. */
KB_API int32_t kb_set_server_offset(int64_t handle, int64_t server_minus_utc_ms) KB_NOEXCEPT;

/* Announces a symbol with its metadata (SymbolInfo frame); re-sent after every reconnect. Symbols
 * first seen in kb_push_ticks are announced with digits and point only. */
KB_API int32_t kb_announce_symbol(int64_t handle, const kb_char16* symbol, int32_t digits, double point,
                                  double contract_size, double volume_min, double volume_max,
                                  double volume_step, double tick_size, double tick_value,
                                  const kb_char16* currency_base, const kb_char16* currency_profit,
                                  const kb_char16* description) KB_NOEXCEPT;

/* Queues count ticks of one symbol (oldest first) for the collector; never waits. Invalid ticks
 * (NaN/infinite/negative prices or volume) are refused and counted (KB_PARTIAL, or KB_E_NON_FINITE
 * when none is valid). If the valid ticks do not all fit the ring, none is queued: KB_E_QUEUE_FULL,
 * counted in ticks_dropped, so the EA may keep its CopyTicks watermark and push them again. */
KB_API int32_t kb_push_ticks(int64_t handle, const kb_char16* symbol, int32_t digits, const KbMqlTick* ticks,
                             int32_t count) KB_NOEXCEPT;

/* Moves the oldest waiting order command into *command: KB_OK, or KB_EMPTY when none waits. */
KB_API int32_t kb_poll_command(int64_t handle, KbCommand* command) KB_NOEXCEPT;

/* Reports the outcome of a command. Kept until the execution service acknowledges it, resent after
 * a reconnect, never sent twice on one connection. comment longer than 63 bytes is truncated. */
KB_API int32_t kb_report_result(int64_t handle, const KbOrderResult* result, const kb_char16* client_order_id,
                                const kb_char16* comment) KB_NOEXCEPT;

/* Reports a trade transaction (client_order_id may be empty when it is not a Kairos order). */
KB_API int32_t kb_report_transaction(int64_t handle, const KbTransaction* transaction,
                                     const kb_char16* client_order_id, const kb_char16* symbol) KB_NOEXCEPT;

/* Reports the account state. */
KB_API int32_t kb_report_account(int64_t handle, const KbAccount* account,
                                 const kb_char16* currency) KB_NOEXCEPT;

/* Reports the EA's self-check to the execution service (API 3). problems: one line per failed check
 * (cut at a character boundary beyond 511 UTF-8 bytes). KB_E_NO_CHANNEL without a trading channel. */
KB_API int32_t kb_report_check(int64_t handle, const KbTerminalCheck* check,
                               const kb_char16* problems) KB_NOEXCEPT;

/* History through the bridge (API 3, docs/bridge.md). kb_poll_history: KB_OK with the next chunk the
 * collector asks for, or KB_EMPTY. The EA answers it with rows (kb_history_ticks / kb_history_bars,
 * any number of calls, times in trade-server time as MT5 gives them; the bridge sends UTC in parts of
 * 256 ticks or 64 bars) and one kb_history_end with the verdict: KB_HISTORY_DONE, KB_HISTORY_EMPTY,
 * KB_HISTORY_ERROR or KB_HISTORY_PARTIAL (first_available_msc, trade-server time, 0 unknown;
 * message cut at a character boundary beyond 255 bytes). KB_E_QUEUE_FULL queues nothing: call again
 * later with the same rows. KB_E_BAD_ARG for a request id the bridge does not know. */
KB_API int32_t kb_poll_history(int64_t handle, KbHistoryRequest* request) KB_NOEXCEPT;
KB_API int32_t kb_history_ticks(int64_t handle, uint64_t request_id, const KbMqlTick* ticks,
                                int32_t count) KB_NOEXCEPT;
KB_API int32_t kb_history_bars(int64_t handle, uint64_t request_id, const KbMqlRates* rates,
                               int32_t count) KB_NOEXCEPT;
KB_API int32_t kb_history_end(int64_t handle, uint64_t request_id, int32_t status,
                              int64_t first_available_msc, const kb_char16* message) KB_NOEXCEPT;

/* Reports all open positions and pending orders as one snapshot: begin, add each, end. The bridge
 * splits it into PositionSnapshot frames of at most 64 positions and 64 orders. */
KB_API int32_t kb_positions_begin(int64_t handle, int64_t time_msc) KB_NOEXCEPT;
KB_API int32_t kb_positions_add_position(int64_t handle, const KbPosition* position, const kb_char16* symbol,
                                         const kb_char16* client_order_id) KB_NOEXCEPT;
KB_API int32_t kb_positions_add_order(int64_t handle, const KbWorkingOrder* order, const kb_char16* symbol,
                                      const kb_char16* client_order_id) KB_NOEXCEPT;
KB_API int32_t kb_positions_end(int64_t handle) KB_NOEXCEPT;

/* Strategy Tester lockstep (API 4, docs/adr/0095-strategy-tester-lockstep.md): the one call that
 * blocks, and only for a bridge opened with KbOptions.lockstep = 1 (KB_E_STATE otherwise). Waits at
 * most timeout_ms (1..60000) until the stack has decided on every tick pushed so far: the collector
 * answered each tick frame, the execution service decided on every signal those ticks produced, no
 * order command waits for the EA and every report was acknowledged. KB_OK: the tester may move on.
 * KB_COMMAND: a command waits; kb_poll_command, carry it out, report, then wait again. KB_E_TIMEOUT:
 * counted in tester_timeouts and logged; nothing is dropped (what arrives later counts towards the
 * next step). */
KB_API int32_t kb_tester_wait(int64_t handle, int32_t timeout_ms) KB_NOEXCEPT;

/* Reads the counters of a handle (counters->struct_size must be set, or 0 for the current size). */
KB_API int32_t kb_get_counters(int64_t handle, KbCounters* counters) KB_NOEXCEPT;

/* Text of the last error condition of a handle ("" if none). */
KB_API int32_t kb_last_error(int64_t handle, kb_char16* buffer, int32_t capacity) KB_NOEXCEPT;

/* Moves the oldest log line of a handle into buffer (KB_OK), or KB_EMPTY; the EA Print()s them. */
KB_API int32_t kb_poll_log(int64_t handle, kb_char16* buffer, int32_t capacity) KB_NOEXCEPT;

/* Flushes queued data for at most options.close_flush_ms, stops and joins the network thread and
 * frees the handle. A second close, or any call after it, returns KB_E_BAD_HANDLE. */
KB_API int32_t kb_close(int64_t handle) KB_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif /* KAIROS_BRIDGE_H_ */
