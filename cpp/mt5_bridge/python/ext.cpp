// kairos_bridge_ext: the bridge client for Python, a thin pybind11 layer over the same C ABI the DLL
// exports (kb_* in kairos_bridge.h, linked from the same kairos_bridge_core), so Python tools drive
// exactly the EA's code path. Calls return the raw KB_* status codes; kairos.bridge (python/bridge)
// turns them into exceptions and enums.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <string>
#include <vector>

#include "kairos_bridge.h"

namespace py = pybind11;

namespace {

const kb_char16* U(const std::u16string& s) { return reinterpret_cast<const kb_char16*>(s.c_str()); }

std::u16string FromBuf(const kb_char16* buf) {
  std::u16string out;
  for (; *buf != 0; buf++) out.push_back(static_cast<char16_t>(*buf));
  return out;
}

py::str ToStr(const std::u16string& s) {
  return py::reinterpret_steal<py::str>(PyUnicode_DecodeUTF16(
      reinterpret_cast<const char*>(s.data()), static_cast<Py_ssize_t>(s.size() * 2), "replace", nullptr));
}

py::str StatusText(int status) {
  kb_char16 buf[128];
  kb_status_text(status, buf, 128);
  return ToStr(FromBuf(buf));
}

class Bridge {
 public:
  Bridge(const std::u16string& collector, const std::u16string& execution,
         const std::u16string& terminal_name, int32_t terminal_build, const std::u16string& company,
         const std::u16string& server, int64_t account_login, const std::u16string& account_currency,
         int32_t trade_mode, const std::u16string& ea_symbol, int64_t magic, const py::dict& options,
         const std::u16string& bridge_key) {
    KbOptions o{};
    o.struct_size = sizeof(o);
    kb_default_options(&o);
    for (auto item : options) {
      const std::string key = py::cast<std::string>(item.first);
      const int32_t v = py::cast<int32_t>(item.second);
      if (key == "tick_queue_capacity")
        o.tick_queue_capacity = v;
      else if (key == "command_queue_capacity")
        o.command_queue_capacity = v;
      else if (key == "tick_resend_frames")
        o.tick_resend_frames = v;
      else if (key == "report_queue_capacity")
        o.report_queue_capacity = v;
      else if (key == "heartbeat_interval_ms")
        o.heartbeat_interval_ms = v;
      else if (key == "reconnect_min_ms")
        o.reconnect_min_ms = v;
      else if (key == "reconnect_max_ms")
        o.reconnect_max_ms = v;
      else if (key == "connect_timeout_ms")
        o.connect_timeout_ms = v;
      else if (key == "close_flush_ms")
        o.close_flush_ms = v;
      else if (key == "max_batch_ticks")
        o.max_batch_ticks = v;
      else if (key == "idle_spin_us")
        o.idle_spin_us = v;
      else if (key == "warm_poll_us")
        o.warm_poll_us = v;
      else if (key == "lockstep")
        o.lockstep = v;
      else
        throw py::value_error("unknown bridge option: " + key);
    }
    status_ = kb_open_with_key(U(collector), U(execution), U(terminal_name), terminal_build, U(company),
                               U(server), account_login, U(account_currency), trade_mode, U(ea_symbol), magic,
                               U(bridge_key), &o, &handle_);
  }
  ~Bridge() {
    if (handle_ != 0) {
      py::gil_scoped_release nogil;
      kb_close(handle_);
    }
  }

  int open_status() const { return status_; }
  int64_t handle() const { return handle_; }

  int set_server_offset(int64_t ms) { return kb_set_server_offset(handle_, ms); }

  int announce_symbol(const std::u16string& symbol, int32_t digits, double point, double contract_size,
                      double volume_min, double volume_max, double volume_step, double tick_size,
                      double tick_value, const std::u16string& currency_base,
                      const std::u16string& currency_profit, const std::u16string& description) {
    return kb_announce_symbol(handle_, U(symbol), digits, point, contract_size, volume_min, volume_max,
                              volume_step, tick_size, tick_value, U(currency_base), U(currency_profit),
                              U(description));
  }

  // ticks: a 1-D C-contiguous array whose items are 60-byte MqlTick records (kairos.bridge.MQL_TICK_DTYPE).
  int push_ticks(const std::u16string& symbol, int32_t digits, const py::array& ticks) {
    if (ticks.ndim() != 1 || ticks.itemsize() != static_cast<py::ssize_t>(sizeof(KbMqlTick)))
      throw py::type_error(
          "ticks must be a 1-D array of 60-byte MqlTick records (kairos.bridge.MQL_TICK_DTYPE)");
    if (!(ticks.flags() & py::array::c_style)) throw py::type_error("ticks must be C-contiguous");
    if (ticks.size() > KB_MAX_PUSH_TICKS) return KB_E_BAD_COUNT;
    return kb_push_ticks(handle_, U(symbol), digits, static_cast<const KbMqlTick*>(ticks.data()),
                         static_cast<int32_t>(ticks.size()));
  }

  int push_columns(const std::u16string& symbol, int32_t digits,
                   const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& time_msc,
                   const py::array_t<double, py::array::c_style | py::array::forcecast>& bid,
                   const py::array_t<double, py::array::c_style | py::array::forcecast>& ask,
                   uint32_t flags) {
    const py::ssize_t n = time_msc.size();
    if (bid.size() != n || ask.size() != n) throw py::value_error("time_msc, bid and ask differ in length");
    if (n > KB_MAX_PUSH_TICKS) return KB_E_BAD_COUNT;
    scratch_.resize(static_cast<size_t>(n));
    const int64_t* t = time_msc.data();
    const double* b = bid.data();
    const double* a = ask.data();
    for (py::ssize_t i = 0; i < n; i++) {
      KbMqlTick& k = scratch_[static_cast<size_t>(i)];
      std::memset(&k, 0, sizeof(k));
      k.time_msc = t[i];
      k.time = t[i] / 1000;
      k.bid = b[i];
      k.ask = a[i];
      k.flags = flags;
    }
    return kb_push_ticks(handle_, U(symbol), digits, scratch_.data(), static_cast<int32_t>(n));
  }

  // History (API 3): the next chunk the collector asks for, as a dict, or None.
  py::object poll_history() {
    KbHistoryRequest r;
    const int rc = kb_poll_history(handle_, &r);
    if (rc == KB_EMPTY) return py::none();
    if (rc != KB_OK) return py::int_(rc);
    py::dict d;
    d["request_id"] = r.request_id;
    d["kind"] = r.kind;
    d["period_s"] = r.period_s;
    d["from_msc"] = r.from_msc;
    d["to_msc"] = r.to_msc;
    d["symbol"] = ToStr(FromBuf(r.symbol));
    return std::move(d);
  }

  // Rows of a history chunk: MqlTick records (as push_ticks), trade-server time.
  int history_ticks(uint64_t request_id, const py::array& ticks) {
    if (ticks.ndim() != 1 || ticks.itemsize() != static_cast<py::ssize_t>(sizeof(KbMqlTick)))
      throw py::type_error(
          "ticks must be a 1-D array of 60-byte MqlTick records (kairos.bridge.MQL_TICK_DTYPE)");
    if (!(ticks.flags() & py::array::c_style)) throw py::type_error("ticks must be C-contiguous");
    if (ticks.size() > KB_MAX_PUSH_TICKS) return KB_E_BAD_COUNT;
    return kb_history_ticks(handle_, request_id, static_cast<const KbMqlTick*>(ticks.data()),
                            static_cast<int32_t>(ticks.size()));
  }

  // Rows of a history chunk: 60-byte MqlRates records (kairos.bridge.MQL_RATES_DTYPE), trade-server time.
  int history_bars(uint64_t request_id, const py::array& rates) {
    if (rates.ndim() != 1 || rates.itemsize() != static_cast<py::ssize_t>(sizeof(KbMqlRates)))
      throw py::type_error(
          "rates must be a 1-D array of 60-byte MqlRates records (kairos.bridge.MQL_RATES_DTYPE)");
    if (!(rates.flags() & py::array::c_style)) throw py::type_error("rates must be C-contiguous");
    if (rates.size() > KB_MAX_PUSH_TICKS) return KB_E_BAD_COUNT;
    return kb_history_bars(handle_, request_id, static_cast<const KbMqlRates*>(rates.data()),
                           static_cast<int32_t>(rates.size()));
  }

  int history_end(uint64_t request_id, int32_t status, int64_t first_available_msc,
                  const std::u16string& message) {
    return kb_history_end(handle_, request_id, status, first_available_msc, U(message));
  }

  int tester_wait(int32_t timeout_ms) {
    py::gil_scoped_release nogil;
    return kb_tester_wait(handle_, timeout_ms);
  }

  py::object poll_command() {
    KbCommand c;
    const int rc = kb_poll_command(handle_, &c);
    if (rc == KB_EMPTY) return py::none();
    if (rc != KB_OK) return py::int_(rc);
    py::dict d;
    d["command_id"] = c.command_id;
    d["kind"] = c.kind;
    d["side"] = c.side;
    d["order_type"] = c.order_type;
    d["deviation_points"] = c.deviation_points;
    d["volume"] = c.volume;
    d["price"] = c.price;
    d["stop_limit_price"] = c.stop_limit_price;
    d["stop_loss"] = c.stop_loss;
    d["take_profit"] = c.take_profit;
    d["order_ticket"] = c.order_ticket;
    d["position_ticket"] = c.position_ticket;
    d["expiration_msc"] = c.expiration_msc;
    d["deadline_time_us"] = c.deadline_time_us;
    d["received_time_us"] = c.received_time_us;
    d["client_order_id"] = ToStr(FromBuf(c.client_order_id));
    d["symbol"] = ToStr(FromBuf(c.symbol));
    return std::move(d);
  }

  int report_result(uint64_t command_id, int32_t status, int32_t retcode, uint64_t order_ticket,
                    uint64_t deal_ticket, double volume, double price, double bid, double ask,
                    uint32_t request_id, int32_t price_digits, int32_t volume_digits,
                    int64_t received_time_us, int64_t completed_time_us,
                    const std::u16string& client_order_id, const std::u16string& comment) {
    KbOrderResult r{
        command_id, status, retcode,    order_ticket, deal_ticket,   volume,           price,
        bid,        ask,    request_id, price_digits, volume_digits, received_time_us, completed_time_us};
    return kb_report_result(handle_, &r, U(client_order_id), U(comment));
  }

  int report_transaction(int32_t type, int32_t side, uint64_t order_ticket, uint64_t deal_ticket,
                         uint64_t position_ticket, int32_t mt5_order_type, int32_t mt5_order_state,
                         int32_t mt5_deal_type, int32_t price_digits, int32_t volume_digits,
                         int32_t money_digits, double price, double volume, double stop_loss,
                         double take_profit, double commission, int64_t time_msc,
                         const std::u16string& client_order_id, const std::u16string& symbol) {
    KbTransaction t{type,
                    side,
                    order_ticket,
                    deal_ticket,
                    position_ticket,
                    mt5_order_type,
                    mt5_order_state,
                    mt5_deal_type,
                    price_digits,
                    volume_digits,
                    money_digits,
                    price,
                    volume,
                    stop_loss,
                    take_profit,
                    commission,
                    time_msc};
    return kb_report_transaction(handle_, &t, U(client_order_id), U(symbol));
  }

  int report_account(int64_t login, double balance, double equity, double margin, double margin_free,
                     double margin_level, int32_t money_digits, uint32_t leverage, bool trade_allowed,
                     int64_t time_msc, const std::u16string& currency) {
    KbAccount a{login,        balance,     equity,
                margin,       margin_free, margin_level,
                money_digits, leverage,    trade_allowed ? 1 : 0,
                time_msc};
    return kb_report_account(handle_, &a, U(currency));
  }

  int positions_begin(int64_t time_msc) { return kb_positions_begin(handle_, time_msc); }
  int positions_add_position(uint64_t ticket, int32_t side, int32_t price_digits, int32_t volume_digits,
                             int32_t money_digits, double volume, double price_open, double stop_loss,
                             double take_profit, double profit, double swap, int64_t magic, int64_t time_msc,
                             const std::u16string& symbol, const std::u16string& client_order_id) {
    KbPosition p{ticket,    side,        price_digits, volume_digits, money_digits, volume,  price_open,
                 stop_loss, take_profit, profit,       swap,          magic,        time_msc};
    return kb_positions_add_position(handle_, &p, U(symbol), U(client_order_id));
  }
  int positions_add_order(uint64_t ticket, int32_t side, int32_t order_type, int32_t price_digits,
                          int32_t volume_digits, double volume, double price, int64_t time_msc,
                          const std::u16string& symbol, const std::u16string& client_order_id) {
    KbWorkingOrder o{ticket, side, order_type, price_digits, volume_digits, volume, price, time_msc};
    return kb_positions_add_order(handle_, &o, U(symbol), U(client_order_id));
  }
  int positions_end() { return kb_positions_end(handle_); }

  py::object counters() {
    KbCounters c{};
    c.struct_size = sizeof(c);
    const int rc = kb_get_counters(handle_, &c);
    if (rc != KB_OK) return py::int_(rc);
    py::dict d;
#define KB_FIELD(name) d[#name] = c.name
    KB_FIELD(last_error);
    KB_FIELD(ticks_queued);
    KB_FIELD(ticks_sent);
    KB_FIELD(ticks_dropped);
    KB_FIELD(ticks_rejected);
    KB_FIELD(ticks_resent);
    KB_FIELD(ticks_resend_dropped);
    KB_FIELD(tick_queue_depth);
    KB_FIELD(frames_sent);
    KB_FIELD(frames_received);
    KB_FIELD(bytes_sent);
    KB_FIELD(bytes_received);
    KB_FIELD(reconnects);
    KB_FIELD(connect_failures);
    KB_FIELD(malformed_frames);
    KB_FIELD(heartbeats_sent);
    KB_FIELD(heartbeats_received);
    KB_FIELD(duplicate_frames);
    KB_FIELD(commands_received);
    KB_FIELD(commands_polled);
    KB_FIELD(commands_duplicate);
    KB_FIELD(commands_dropped);
    KB_FIELD(reports_queued);
    KB_FIELD(reports_acked);
    KB_FIELD(reports_resent);
    KB_FIELD(reports_dropped);
    KB_FIELD(market_data_connected);
    KB_FIELD(trading_connected);
    KB_FIELD(market_data_rtt_us);
    KB_FIELD(trading_rtt_us);
    KB_FIELD(ticks_acked);
    KB_FIELD(wakeups);
    KB_FIELD(tester_steps);
    KB_FIELD(tester_timeouts);
    KB_FIELD(tester_decisions);
    KB_FIELD(tester_no_decision);
    KB_FIELD(tester_dropped);
#undef KB_FIELD
    return std::move(d);
  }

  py::object last_error() {
    kb_char16 buf[512];
    const int rc = kb_last_error(handle_, buf, 512);
    if (rc != KB_OK && rc != KB_E_TRUNCATED) return py::int_(rc);
    return ToStr(FromBuf(buf));
  }

  py::list drain_log() {
    py::list out;
    kb_char16 buf[512];
    int rc;
    while ((rc = kb_poll_log(handle_, buf, 512)) == KB_OK || rc == KB_E_TRUNCATED)
      out.append(ToStr(FromBuf(buf)));
    return out;
  }

  int close() {
    const int64_t h = handle_;
    handle_ = 0;
    py::gil_scoped_release nogil;
    return h == 0 ? KB_E_BAD_HANDLE : kb_close(h);
  }

 private:
  int64_t handle_ = 0;
  int status_ = KB_OK;
  std::vector<KbMqlTick> scratch_;
};

}  // namespace

PYBIND11_MODULE(kairos_bridge_ext, m) {
  m.doc() = "Kairos MT5 bridge client (same C ABI as kairos_bridge.dll); use kairos.bridge.";
  m.attr("API_VERSION") = kb_api_version();
  m.attr("MQL_TICK_SIZE") = sizeof(KbMqlTick);
  m.attr("MQL_RATES_SIZE") = sizeof(KbMqlRates);
  m.def("status_text", &StatusText);
  py::class_<Bridge>(m, "Bridge")
      .def(py::init<const std::u16string&, const std::u16string&, const std::u16string&, int32_t,
                    const std::u16string&, const std::u16string&, int64_t, const std::u16string&, int32_t,
                    const std::u16string&, int64_t, const py::dict&, const std::u16string&>(),
           py::arg("collector"), py::arg("execution"), py::arg("terminal_name"), py::arg("terminal_build"),
           py::arg("company"), py::arg("server"), py::arg("account_login"), py::arg("account_currency"),
           py::arg("trade_mode"), py::arg("ea_symbol"), py::arg("magic"), py::arg("options"),
           py::arg("bridge_key") = std::u16string())
      .def_property_readonly("open_status", &Bridge::open_status)
      .def_property_readonly("handle", &Bridge::handle)
      .def("set_server_offset", &Bridge::set_server_offset)
      .def("announce_symbol", &Bridge::announce_symbol)
      .def("push_ticks", &Bridge::push_ticks)
      .def("push_columns", &Bridge::push_columns)
      .def("poll_command", &Bridge::poll_command)
      .def("tester_wait", &Bridge::tester_wait)
      .def("poll_history", &Bridge::poll_history)
      .def("history_ticks", &Bridge::history_ticks)
      .def("history_bars", &Bridge::history_bars)
      .def("history_end", &Bridge::history_end)
      .def("report_result", &Bridge::report_result)
      .def("report_transaction", &Bridge::report_transaction)
      .def("report_account", &Bridge::report_account)
      .def("positions_begin", &Bridge::positions_begin)
      .def("positions_add_position", &Bridge::positions_add_position)
      .def("positions_add_order", &Bridge::positions_add_order)
      .def("positions_end", &Bridge::positions_end)
      .def("counters", &Bridge::counters)
      .def("last_error", &Bridge::last_error)
      .def("drain_log", &Bridge::drain_log)
      .def("close", &Bridge::close);
}
