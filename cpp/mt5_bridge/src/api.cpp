// The exported C ABI (include/kairos_bridge.h): argument checks, UTF-16 conversion, struct-to-proto
// mapping and the handle registry. Every entry point catches everything: no exception crosses into
// the terminal.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>

#include "client.h"
#include "codec.h"
#include "kairos_bridge.h"

using kairos::bridge::Client;
using kairos::bridge::Config;

namespace {

constexpr const char* kVersion = "0.1.0";
// sizeof(KbOptions) of API 3, before the lockstep field: such callers keep working.
constexpr int32_t kOptionsSizeV3 = 52;

// Never destroyed: at DLL unload the loader lock forbids joining threads, so a handle the EA did not
// close is left alone rather than torn down under the terminal (docs/bridge.md: always kb_close).
struct Registry {
  std::mutex mu;
  std::unordered_map<int64_t, std::shared_ptr<Client>> clients;
  int64_t next = 1;
};

Registry& Reg() {
  static Registry* r = new Registry;
  return *r;
}

std::shared_ptr<Client> Find(int64_t handle) {
  Registry& r = Reg();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.clients.find(handle);
  return it == r.clients.end() ? nullptr : it->second;
}

template <typename F>
int32_t Guard(F&& f) noexcept {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return KB_E_INTERNAL;
  } catch (...) {
    return KB_E_INTERNAL;
  }
}

int32_t WriteOut(const std::string& text, kb_char16* buffer, int32_t capacity) {
  if (buffer == nullptr) return KB_E_NULL;
  if (capacity <= 0) return KB_E_BAD_ARG;
  return kairos::bridge::Utf8ToUtf16(text.data(), text.size(), buffer, static_cast<size_t>(capacity));
}

// Copies a UTF-16 string into a fixed nanopb char field (size includes the NUL).
template <size_t N>
int Field(const kb_char16* in, char (&out)[N], bool required = false, bool truncate = false) {
  std::string s;
  int rc = truncate ? kairos::bridge::Utf16ToUtf8Truncate(in, N - 1, &s)
                    : kairos::bridge::Utf16ToUtf8(in, N - 1, &s);
  if (rc != KB_OK) return rc;
  if (required && s.empty()) return KB_E_BAD_ARG;
  std::memset(out, 0, N);
  std::memcpy(out, s.data(), s.size());
  return KB_OK;
}

bool Dec(double v, int32_t digits, bool* has, kairos_types_v1_Decimal* out) {
  if (!kairos::bridge::ToDecimal(v, digits, out)) return false;
  *has = true;
  return true;
}

bool DigitsOk(int32_t d) { return d >= 0 && d <= 18; }

#define KB_TRY(expr)              \
  do {                            \
    int rc_ = (expr);             \
    if (rc_ != KB_OK) return rc_; \
  } while (0)

}  // namespace

extern "C" {

int32_t kb_api_version(void) noexcept { return KB_API_VERSION; }

int32_t kb_version(kb_char16* buffer, int32_t capacity) noexcept {
  return Guard([&] { return WriteOut(kVersion, buffer, capacity); });
}

int32_t kb_status_text(int32_t status, kb_char16* buffer, int32_t capacity) noexcept {
  return Guard([&] {
    const char* t = "unknown status";
    switch (status) {
      case KB_OK:
        t = "ok";
        break;
      case KB_EMPTY:
        t = "nothing waiting";
        break;
      case KB_COMMAND:
        t = "an order command waits for the EA";
        break;
      case KB_E_TIMEOUT:
        t = "the stack did not decide on the tick within the timeout";
        break;
      case KB_PARTIAL:
        t = "some ticks were invalid and refused; the others were queued";
        break;
      case KB_E_NULL:
        t = "a required pointer argument is NULL";
        break;
      case KB_E_BAD_HANDLE:
        t = "unknown or closed handle";
        break;
      case KB_E_BAD_COUNT:
        t = "count must be between 1 and 1000000";
        break;
      case KB_E_STRING_TOO_LONG:
        t = "a string is longer than its wire field";
        break;
      case KB_E_BAD_UTF16:
        t = "a string is not valid UTF-16";
        break;
      case KB_E_NON_FINITE:
        t = "a price or volume is NaN, infinite or negative";
        break;
      case KB_E_QUEUE_FULL:
        t = "queue full: nothing queued, counted as dropped";
        break;
      case KB_E_BAD_ENDPOINT:
        t = "endpoint is not host:port";
        break;
      case KB_E_BAD_ARG:
        t = "an argument is out of range";
        break;
      case KB_E_TOO_MANY:
        t = "too many handles or symbols";
        break;
      case KB_E_TRUNCATED:
        t = "output truncated to the buffer";
        break;
      case KB_E_INTERNAL:
        t = "internal error";
        break;
      case KB_E_NO_CHANNEL:
        t = "that channel was not configured at open";
        break;
      case KB_E_STATE:
        t = "call out of order";
        break;
      case KB_E_CONNECT:
        t = "connect failed";
        break;
      case KB_E_PEER_CLOSED:
        t = "peer closed the connection";
        break;
      case KB_E_MALFORMED_FRAME:
        t = "malformed frame from the peer";
        break;
      case KB_E_HEARTBEAT_TIMEOUT:
        t = "heartbeat timeout";
        break;
      case KB_E_PEER_ERROR:
        t = "the peer reported an error";
        break;
      case KB_E_AUTH:
        t = "bridge key refused by the server, or the server could not prove it";
        break;
      default:
        break;
    }
    return WriteOut(t, buffer, capacity);
  });
}

int32_t kb_now_us(int64_t* now_us) noexcept {
  if (now_us == nullptr) return KB_E_NULL;
  *now_us = kairos::bridge::NowMicros();
  return KB_OK;
}

int32_t kb_default_options(KbOptions* options) noexcept {
  if (options == nullptr) return KB_E_NULL;
  return Guard([&] {
    const int32_t size = options->struct_size;
    if (size != 0 && size != static_cast<int32_t>(sizeof(KbOptions)) && size != kOptionsSizeV3)
      return KB_E_BAD_ARG;
    // An API 3 caller's struct ends before lockstep: only its prefix is written.
    const KbOptions d = kairos::bridge::DefaultOptions();
    std::memcpy(options, &d,
                size == kOptionsSizeV3 ? static_cast<size_t>(kOptionsSizeV3) : sizeof(KbOptions));
    if (size == kOptionsSizeV3) options->struct_size = kOptionsSizeV3;
    return KB_OK;
  });
}

int32_t kb_open(const kb_char16* collector_endpoint, const kb_char16* execution_endpoint,
                const kb_char16* terminal_name, int32_t terminal_build, const kb_char16* company,
                const kb_char16* server, int64_t account_login, const kb_char16* account_currency,
                int32_t trade_mode, const kb_char16* ea_symbol, int64_t magic, const KbOptions* options,
                int64_t* handle) noexcept {
  static const kb_char16 kNoKey[1] = {0};
  return kb_open_with_key(collector_endpoint, execution_endpoint, terminal_name, terminal_build, company,
                          server, account_login, account_currency, trade_mode, ea_symbol, magic, kNoKey,
                          options, handle);
}

int32_t kb_open_with_key(const kb_char16* collector_endpoint, const kb_char16* execution_endpoint,
                         const kb_char16* terminal_name, int32_t terminal_build, const kb_char16* company,
                         const kb_char16* server, int64_t account_login, const kb_char16* account_currency,
                         int32_t trade_mode, const kb_char16* ea_symbol, int64_t magic,
                         const kb_char16* bridge_key, const KbOptions* options, int64_t* handle) noexcept {
  if (handle == nullptr || collector_endpoint == nullptr || execution_endpoint == nullptr ||
      terminal_name == nullptr || company == nullptr || server == nullptr || account_currency == nullptr ||
      ea_symbol == nullptr || bridge_key == nullptr)
    return KB_E_NULL;
  return Guard([&]() -> int32_t {
    *handle = 0;
    Config cfg;
    KB_TRY(kairos::bridge::Utf16ToUtf8(bridge_key, 1024, &cfg.key));
    // Surrounding white space is not part of the key (a pasted newline), as the services read it.
    const char* ws = " \t\r\n";
    const size_t first = cfg.key.find_first_not_of(ws);
    cfg.key = first == std::string::npos ? std::string()
                                         : cfg.key.substr(first, cfg.key.find_last_not_of(ws) - first + 1);
    if (!cfg.key.empty() && (cfg.key.size() < 16 || cfg.key.size() > 256)) return KB_E_BAD_ARG;
    std::string md, ex;
    KB_TRY(kairos::bridge::Utf16ToUtf8(collector_endpoint, 255, &md));
    KB_TRY(kairos::bridge::Utf16ToUtf8(execution_endpoint, 255, &ex));
    if (md.empty() && ex.empty()) return KB_E_BAD_ENDPOINT;
    if (!md.empty() && !kairos::bridge::net::ParseEndpoint(md, &cfg.collector_host, &cfg.collector_port))
      return KB_E_BAD_ENDPOINT;
    if (!ex.empty() && !kairos::bridge::net::ParseEndpoint(ex, &cfg.execution_host, &cfg.execution_port))
      return KB_E_BAD_ENDPOINT;
    kairos_bridge_v1_Hello& h = cfg.hello;
    h.api_version = KB_API_VERSION;
    std::snprintf(h.bridge_version, sizeof(h.bridge_version), "%s", kVersion);
    KB_TRY(Field(terminal_name, h.terminal_name));
    KB_TRY(Field(company, h.company));
    KB_TRY(Field(server, h.server));
    KB_TRY(Field(account_currency, h.account_currency));
    KB_TRY(Field(ea_symbol, h.ea_symbol));
    if (terminal_build < 0 || trade_mode < 0 || trade_mode > 3) return KB_E_BAD_ARG;
    h.terminal_build = static_cast<uint32_t>(terminal_build);
    h.account_login = account_login;
    h.trade_mode = static_cast<kairos_bridge_v1_TradeMode>(trade_mode);
    h.magic = magic;
    if (options != nullptr) {
      const int32_t size = options->struct_size;
      if (size != static_cast<int32_t>(sizeof(KbOptions)) && size != kOptionsSizeV3) return KB_E_BAD_ARG;
      cfg.options = KbOptions{};
      std::memcpy(&cfg.options, options, static_cast<size_t>(size));
      if (cfg.options.lockstep != 0 && cfg.options.lockstep != 1) return KB_E_BAD_ARG;
      h.lockstep = cfg.options.lockstep == 1;
    } else {
      cfg.options = kairos::bridge::DefaultOptions();
    }
    kairos::bridge::NormalizeOptions(&cfg.options);
    Registry& r = Reg();
    {
      std::lock_guard<std::mutex> lock(r.mu);
      if (r.clients.size() >= KB_MAX_HANDLES) return KB_E_TOO_MANY;
    }
    auto client = std::make_shared<Client>(cfg);
    KB_TRY(client->Start());
    std::lock_guard<std::mutex> lock(r.mu);
    const int64_t h_id = r.next++;
    r.clients[h_id] = std::move(client);
    *handle = h_id;
    return KB_OK;
  });
}

int32_t kb_set_server_offset(int64_t handle, int64_t server_minus_utc_ms) noexcept {
  return Guard([&] {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (server_minus_utc_ms < -86400000LL || server_minus_utc_ms > 86400000LL) return KB_E_BAD_ARG;
    c->SetServerOffset(server_minus_utc_ms);
    return KB_OK;
  });
}

int32_t kb_announce_symbol(int64_t handle, const kb_char16* symbol, int32_t digits, double point,
                           double contract_size, double volume_min, double volume_max, double volume_step,
                           double tick_size, double tick_value, const kb_char16* currency_base,
                           const kb_char16* currency_profit, const kb_char16* description) noexcept {
  if (symbol == nullptr || currency_base == nullptr || currency_profit == nullptr || description == nullptr)
    return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (!DigitsOk(digits)) return KB_E_BAD_ARG;
    for (double v : {point, contract_size, volume_min, volume_max, volume_step, tick_size, tick_value})
      if (!std::isfinite(v) || v < 0) return KB_E_NON_FINITE;
    kairos_marketdata_v1_SymbolInfo info = kairos_marketdata_v1_SymbolInfo_init_zero;
    KB_TRY(Field(symbol, info.symbol, true));
    KB_TRY(Field(currency_base, info.currency_base));
    KB_TRY(Field(currency_profit, info.currency_profit));
    KB_TRY(Field(description, info.description, false, true));
    info.digits = static_cast<uint32_t>(digits);
    info.point = point;
    info.contract_size = contract_size;
    info.volume_min = volume_min;
    info.volume_max = volume_max;
    info.volume_step = volume_step;
    info.tick_size = tick_size;
    info.tick_value = tick_value;
    return c->AnnounceSymbol(info);
  });
}

int32_t kb_push_ticks(int64_t handle, const kb_char16* symbol, int32_t digits, const KbMqlTick* ticks,
                      int32_t count) noexcept {
  if (symbol == nullptr || ticks == nullptr) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    if (count <= 0 || count > KB_MAX_PUSH_TICKS) return KB_E_BAD_COUNT;
    if (!DigitsOk(digits)) return KB_E_BAD_ARG;
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    std::string sym;
    KB_TRY(kairos::bridge::Utf16ToUtf8(symbol, 31, &sym));
    if (sym.empty()) return KB_E_BAD_ARG;
    return c->PushTicks(sym, digits, ticks, count);
  });
}

int32_t kb_poll_command(int64_t handle, KbCommand* command) noexcept {
  if (command == nullptr) return KB_E_NULL;
  return Guard([&] {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    return c->PollCommand(command);
  });
}

int32_t kb_report_result(int64_t handle, const KbOrderResult* result, const kb_char16* client_order_id,
                         const kb_char16* comment) noexcept {
  if (result == nullptr || client_order_id == nullptr || comment == nullptr) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (!DigitsOk(result->price_digits) || !DigitsOk(result->volume_digits)) return KB_E_BAD_ARG;
    if (result->status < 0 || result->status > 6) return KB_E_BAD_ARG;
    std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
    f->which_body = kairos_bridge_v1_Frame_order_result_tag;
    kairos_bridge_v1_OrderResult& r = f->body.order_result;
    KB_TRY(Field(client_order_id, r.client_order_id));
    KB_TRY(Field(comment, r.comment, false, true));
    r.command_id = result->command_id;
    r.status = static_cast<kairos_bridge_v1_BridgeStatus>(result->status);
    r.retcode = result->retcode;
    r.order_ticket = result->order_ticket;
    r.deal_ticket = result->deal_ticket;
    r.request_id = result->request_id;
    r.received_time_us = result->received_time_us;
    r.completed_time_us = result->completed_time_us;
    if (!Dec(result->volume, result->volume_digits, &r.has_volume, &r.volume) ||
        !Dec(result->price, result->price_digits, &r.has_price, &r.price) ||
        !Dec(result->bid, result->price_digits, &r.has_bid, &r.bid) ||
        !Dec(result->ask, result->price_digits, &r.has_ask, &r.ask))
      return KB_E_NON_FINITE;
    std::vector<std::vector<uint8_t>> bodies(1);
    if (!kairos::bridge::EncodeBody(*f, &bodies[0])) return KB_E_INTERNAL;
    r.status = kairos_bridge_v1_BridgeStatus_BRIDGE_STATUS_DUPLICATE;
    std::vector<uint8_t> dup;
    if (!kairos::bridge::EncodeBody(*f, &dup)) return KB_E_INTERNAL;
    return c->QueueReports(&bodies, result->command_id, std::move(dup));
  });
}

int32_t kb_report_transaction(int64_t handle, const KbTransaction* t, const kb_char16* client_order_id,
                              const kb_char16* symbol) noexcept {
  if (t == nullptr || client_order_id == nullptr || symbol == nullptr) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (!DigitsOk(t->price_digits) || !DigitsOk(t->volume_digits) || !DigitsOk(t->money_digits))
      return KB_E_BAD_ARG;
    if (t->type < 0 || t->type > 11 || t->side < 0 || t->side > 2) return KB_E_BAD_ARG;
    std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
    f->which_body = kairos_bridge_v1_Frame_trade_transaction_tag;
    kairos_bridge_v1_TradeTransaction& x = f->body.trade_transaction;
    KB_TRY(Field(client_order_id, x.client_order_id));
    KB_TRY(Field(symbol, x.symbol));
    x.type = static_cast<kairos_bridge_v1_TransactionType>(t->type);
    x.side = static_cast<kairos_bridge_v1_Side>(t->side);
    x.order_ticket = t->order_ticket;
    x.deal_ticket = t->deal_ticket;
    x.position_ticket = t->position_ticket;
    x.mt5_order_type = t->mt5_order_type;
    x.mt5_order_state = t->mt5_order_state;
    x.mt5_deal_type = t->mt5_deal_type;
    x.time_msc = t->time_msc;
    if (!Dec(t->price, t->price_digits, &x.has_price, &x.price) ||
        !Dec(t->volume, t->volume_digits, &x.has_volume, &x.volume) ||
        !Dec(t->stop_loss, t->price_digits, &x.has_stop_loss, &x.stop_loss) ||
        !Dec(t->take_profit, t->price_digits, &x.has_take_profit, &x.take_profit) ||
        !Dec(t->commission, t->money_digits, &x.has_commission, &x.commission))
      return KB_E_NON_FINITE;
    std::vector<std::vector<uint8_t>> bodies(1);
    if (!kairos::bridge::EncodeBody(*f, &bodies[0])) return KB_E_INTERNAL;
    return c->QueueReports(&bodies, 0, {});
  });
}

int32_t kb_report_account(int64_t handle, const KbAccount* a, const kb_char16* currency) noexcept {
  if (a == nullptr || currency == nullptr) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (!DigitsOk(a->money_digits)) return KB_E_BAD_ARG;
    std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
    f->which_body = kairos_bridge_v1_Frame_account_tag;
    kairos_bridge_v1_AccountSnapshot& s = f->body.account;
    KB_TRY(Field(currency, s.currency));
    s.login = a->login;
    s.leverage = a->leverage;
    s.trade_allowed = a->trade_allowed != 0;
    s.time_msc = a->time_msc;
    if (!Dec(a->balance, a->money_digits, &s.has_balance, &s.balance) ||
        !Dec(a->equity, a->money_digits, &s.has_equity, &s.equity) ||
        !Dec(a->margin, a->money_digits, &s.has_margin, &s.margin) ||
        !Dec(a->margin_free, a->money_digits, &s.has_margin_free, &s.margin_free) ||
        !Dec(a->margin_level, 2, &s.has_margin_level, &s.margin_level))
      return KB_E_NON_FINITE;
    std::vector<std::vector<uint8_t>> bodies(1);
    if (!kairos::bridge::EncodeBody(*f, &bodies[0])) return KB_E_INTERNAL;
    return c->QueueReports(&bodies, 0, {});
  });
}

int32_t kb_report_check(int64_t handle, const KbTerminalCheck* k, const kb_char16* problems) noexcept {
  if (k == nullptr || problems == nullptr) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (k->symbols_checked < 0 || k->symbols_failed < 0 || k->symbols_failed > k->symbols_checked)
      return KB_E_BAD_ARG;
    std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
    f->which_body = kairos_bridge_v1_Frame_terminal_check_tag;
    kairos_bridge_v1_TerminalCheck& s = f->body.terminal_check;
    KB_TRY(Field(problems, s.problems, false, true));
    s.dlls_allowed = k->dlls_allowed != 0;
    s.terminal_trade_allowed = k->terminal_trade_allowed != 0;
    s.ea_trade_allowed = k->ea_trade_allowed != 0;
    s.account_trade_allowed = k->account_trade_allowed != 0;
    s.account_expert_allowed = k->account_expert_allowed != 0;
    s.symbols_checked = static_cast<uint32_t>(k->symbols_checked);
    s.symbols_failed = static_cast<uint32_t>(k->symbols_failed);
    s.tester = k->tester != 0;
    s.time_msc = k->time_msc;
    std::vector<std::vector<uint8_t>> bodies(1);
    if (!kairos::bridge::EncodeBody(*f, &bodies[0])) return KB_E_INTERNAL;
    return c->QueueReports(&bodies, 0, {});
  });
}

int32_t kb_poll_history(int64_t handle, KbHistoryRequest* request) noexcept {
  if (request == nullptr) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    return c->PollHistory(request);
  });
}

int32_t kb_history_ticks(int64_t handle, uint64_t request_id, const KbMqlTick* ticks,
                         int32_t count) noexcept {
  if (ticks == nullptr && count != 0) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (count < 0 || count > KB_MAX_PUSH_TICKS) return KB_E_BAD_COUNT;
    return c->HistoryTicks(request_id, ticks, count);
  });
}

int32_t kb_history_bars(int64_t handle, uint64_t request_id, const KbMqlRates* rates,
                        int32_t count) noexcept {
  if (rates == nullptr && count != 0) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (count < 0 || count > KB_MAX_PUSH_TICKS) return KB_E_BAD_COUNT;
    return c->HistoryBars(request_id, rates, count);
  });
}

int32_t kb_history_end(int64_t handle, uint64_t request_id, int32_t status, int64_t first_available_msc,
                       const kb_char16* message) noexcept {
  if (message == nullptr) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    std::string text;
    if (kairos::bridge::Utf16ToUtf8Truncate(message, 255, &text) != KB_OK) return KB_E_BAD_UTF16;
    return c->HistoryEnd(request_id, status, first_available_msc, text);
  });
}

int32_t kb_positions_begin(int64_t handle, int64_t time_msc) noexcept {
  return Guard([&] {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    return c->PositionsBegin(time_msc);
  });
}

int32_t kb_positions_add_position(int64_t handle, const KbPosition* p, const kb_char16* symbol,
                                  const kb_char16* client_order_id) noexcept {
  if (p == nullptr || symbol == nullptr || client_order_id == nullptr) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (!DigitsOk(p->price_digits) || !DigitsOk(p->volume_digits) || !DigitsOk(p->money_digits) ||
        p->side < 0 || p->side > 2)
      return KB_E_BAD_ARG;
    kairos_bridge_v1_Position x = kairos_bridge_v1_Position_init_zero;
    KB_TRY(Field(symbol, x.symbol, true));
    KB_TRY(Field(client_order_id, x.client_order_id));
    x.ticket = p->ticket;
    x.side = static_cast<kairos_bridge_v1_Side>(p->side);
    x.magic = p->magic;
    x.time_msc = p->time_msc;
    if (!Dec(p->volume, p->volume_digits, &x.has_volume, &x.volume) ||
        !Dec(p->price_open, p->price_digits, &x.has_price_open, &x.price_open) ||
        !Dec(p->stop_loss, p->price_digits, &x.has_stop_loss, &x.stop_loss) ||
        !Dec(p->take_profit, p->price_digits, &x.has_take_profit, &x.take_profit) ||
        !Dec(p->profit, p->money_digits, &x.has_profit, &x.profit) ||
        !Dec(p->swap, p->money_digits, &x.has_swap, &x.swap))
      return KB_E_NON_FINITE;
    return c->PositionsAdd(&x, nullptr);
  });
}

int32_t kb_positions_add_order(int64_t handle, const KbWorkingOrder* o, const kb_char16* symbol,
                               const kb_char16* client_order_id) noexcept {
  if (o == nullptr || symbol == nullptr || client_order_id == nullptr) return KB_E_NULL;
  return Guard([&]() -> int32_t {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    if (!DigitsOk(o->price_digits) || !DigitsOk(o->volume_digits) || o->side < 0 || o->side > 2 ||
        o->order_type < 0 || o->order_type > 4)
      return KB_E_BAD_ARG;
    kairos_bridge_v1_WorkingOrder x = kairos_bridge_v1_WorkingOrder_init_zero;
    KB_TRY(Field(symbol, x.symbol, true));
    KB_TRY(Field(client_order_id, x.client_order_id));
    x.ticket = o->ticket;
    x.side = static_cast<kairos_bridge_v1_Side>(o->side);
    x.order_type = static_cast<kairos_bridge_v1_OrderType>(o->order_type);
    x.time_msc = o->time_msc;
    if (!Dec(o->volume, o->volume_digits, &x.has_volume, &x.volume) ||
        !Dec(o->price, o->price_digits, &x.has_price, &x.price))
      return KB_E_NON_FINITE;
    return c->PositionsAdd(nullptr, &x);
  });
}

int32_t kb_positions_end(int64_t handle) noexcept {
  return Guard([&] {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    return c->PositionsEnd();
  });
}

int32_t kb_tester_wait(int64_t handle, int32_t timeout_ms) noexcept {
  return Guard([&]() -> int32_t {
    if (timeout_ms < 1 || timeout_ms > 60000) return KB_E_BAD_ARG;
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    return c->TesterWait(timeout_ms);
  });
}

int32_t kb_get_counters(int64_t handle, KbCounters* counters) noexcept {
  if (counters == nullptr) return KB_E_NULL;
  return Guard([&] {
    if (counters->struct_size == 0) counters->struct_size = sizeof(KbCounters);
    if (counters->struct_size < 8 || counters->struct_size > static_cast<int32_t>(sizeof(KbCounters)))
      return KB_E_BAD_ARG;
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    c->GetCounters(counters);
    return KB_OK;
  });
}

int32_t kb_last_error(int64_t handle, kb_char16* buffer, int32_t capacity) noexcept {
  return Guard([&] {
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    return WriteOut(c->LastError(), buffer, capacity);
  });
}

int32_t kb_poll_log(int64_t handle, kb_char16* buffer, int32_t capacity) noexcept {
  if (buffer == nullptr) return KB_E_NULL;
  return Guard([&] {
    if (capacity <= 0) return KB_E_BAD_ARG;
    auto c = Find(handle);
    if (!c) return KB_E_BAD_HANDLE;
    std::string line;
    if (!c->PollLog(&line)) {
      buffer[0] = 0;
      return KB_EMPTY;
    }
    return WriteOut(line, buffer, capacity);
  });
}

int32_t kb_close(int64_t handle) noexcept {
  return Guard([&] {
    std::shared_ptr<Client> c;
    {
      Registry& r = Reg();
      std::lock_guard<std::mutex> lock(r.mu);
      auto it = r.clients.find(handle);
      if (it == r.clients.end()) return KB_E_BAD_HANDLE;
      c = std::move(it->second);
      r.clients.erase(it);
    }
    c->Stop();
    return KB_OK;
  });
}

}  // extern "C"
