// The serving path's feature kernel in C++ (ADR 0100): the same rows as
// kairos.features.compute.rows_from_windows (the one definition, used by training), for the stacked
// bar windows the inference server keeps, without numpy's per-call overhead (~130 us a call there,
// whatever the number of windows). The lookbacks are passed in from kairos.features.schema, so the
// schema has one source; python/tests/features/test_native_kernel.py checks parity on real bars.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace py = pybind11;

namespace {

constexpr double kBp = 1e4;
constexpr int64_t kMsPerDay = 86'400'000;
constexpr int64_t kMsPerWeek = 7 * kMsPerDay;
constexpr int64_t kEpochWeekdayOffsetMs = 3 * kMsPerDay;  // Monday 00:00 UTC is position 0
constexpr double kTwoPi = 6.283185307179586;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Sums with four running partial sums instead of one: the additions of a window no longer wait on
// each other (a 240-bar sum was a chain of 240 dependent adds), and the result differs from the
// sequential sum only in rounding, as numpy's own pairwise summation does (parity is held to 1e-9).
double sum(const double* x, int n) {
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    a0 += x[i];
    a1 += x[i + 1];
    a2 += x[i + 2];
    a3 += x[i + 3];
  }
  for (; i < n; ++i) a0 += x[i];
  return (a0 + a1) + (a2 + a3);
}

double mean(const double* x, int n) { return sum(x, n) / n; }

// numpy's population std: mean first, then the mean of squared deviations.
double pstd(const double* x, int n) {
  const double m = mean(x, n);
  double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const double d0 = x[i] - m, d1 = x[i + 1] - m, d2 = x[i + 2] - m, d3 = x[i + 3] - m;
    a0 += d0 * d0;
    a1 += d1 * d1;
    a2 += d2 * d2;
    a3 += d3 * d3;
  }
  for (; i < n; ++i) {
    const double d = x[i] - m;
    a0 += d * d;
  }
  return std::sqrt(((a0 + a1) + (a2 + a3)) / n);
}

// np.divide(num, den, where=den > 0) into zeros: 0 unless den > 0 (NaN den gives 0 too).
double safe_div(double num, double den) { return den > 0.0 ? num / den : 0.0; }

// numpy's min/max propagate NaN. Four running minima (maxima) instead of one: a minsd waits ~4
// cycles for the one before it, so one chain cost ~4 cycles an element over the 240-bar channel;
// min and max are exact, so the lanes give the same value. No early exit, so no branch.
double nanmin(const double* x, int n) {
  double m0 = x[0], m1 = x[0], m2 = x[0], m3 = x[0];
  bool nan = false;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    nan |= std::isnan(x[i]) | std::isnan(x[i + 1]) | std::isnan(x[i + 2]) | std::isnan(x[i + 3]);
    m0 = x[i] < m0 ? x[i] : m0;
    m1 = x[i + 1] < m1 ? x[i + 1] : m1;
    m2 = x[i + 2] < m2 ? x[i + 2] : m2;
    m3 = x[i + 3] < m3 ? x[i + 3] : m3;
  }
  for (; i < n; ++i) {
    nan |= std::isnan(x[i]);
    m0 = x[i] < m0 ? x[i] : m0;
  }
  m0 = m1 < m0 ? m1 : m0;
  m0 = m2 < m0 ? m2 : m0;
  m0 = m3 < m0 ? m3 : m0;
  return nan ? kNaN : m0;
}
double nanmax(const double* x, int n) {
  double m0 = x[0], m1 = x[0], m2 = x[0], m3 = x[0];
  bool nan = false;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    nan |= std::isnan(x[i]) | std::isnan(x[i + 1]) | std::isnan(x[i + 2]) | std::isnan(x[i + 3]);
    m0 = x[i] > m0 ? x[i] : m0;
    m1 = x[i + 1] > m1 ? x[i + 1] : m1;
    m2 = x[i + 2] > m2 ? x[i + 2] : m2;
    m3 = x[i + 3] > m3 ? x[i + 3] : m3;
  }
  for (; i < n; ++i) {
    nan |= std::isnan(x[i]);
    m0 = x[i] > m0 ? x[i] : m0;
  }
  m0 = m1 > m0 ? m1 : m0;
  m0 = m2 > m0 ? m2 : m0;
  m0 = m3 > m0 ? m3 : m0;
  return nan ? kNaN : m0;
}

// A bytes object's content, without a copy (valid while the object lives).
std::string_view bytes_view(const py::bytes& b) {
  char* p;
  Py_ssize_t n;
  if (PyBytes_AsStringAndSize(b.ptr(), &p, &n) != 0) throw py::error_already_set();
  return {p, static_cast<size_t>(n)};
}

// Protobuf's base-128 varint of v, appended to b.
void varint(std::string& b, uint64_t v) {
  while (v >= 0x80) {
    b.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  b.push_back(static_cast<char>(v));
}

// Item i of a Python list of str, as its UTF-8 bytes (valid while the list holds the str).
std::string_view list_str(const py::list& list, Py_ssize_t i) {
  Py_ssize_t n;
  const char* p = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(list.ptr(), i), &n);
  if (p == nullptr) throw py::error_already_set();
  return {p, static_cast<size_t>(n)};
}

// Item i of a Python list of int (an int64) or of float (a double).
int64_t list_int64(const py::list& list, Py_ssize_t i) {
  const long long v = PyLong_AsLongLong(PyList_GET_ITEM(list.ptr(), i));
  if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}
double list_double(const py::list& list, Py_ssize_t i) {
  const double v = PyFloat_AsDouble(PyList_GET_ITEM(list.ptr(), i));
  if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

int64_t floor_mod(int64_t a, int64_t b) {
  const int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}

// One symbol's window of its latest W closed bars, kept in C++ so that a request's bars go in with
// one call (Kernel::push_rows) instead of a numpy write, slice and copy per bar. Rows: open time (ms),
// high, low, close, spread_mean, tick_volume, log(close), log1p(tick_volume); each bar is written at
// column i and i + W, so the latest W bars, oldest first, are the contiguous columns pos+1 .. pos+W.
struct BarWindows {
  static constexpr int kRows = 8;
  int W;
  int pos = 0;
  int64_t count = 0;
  std::vector<double> buf;
  // The bar the latest push moved out of the window (its rows, as in buf), for the running sums of
  // windows as long as the buffer.
  double out[kRows] = {};
  // The number (1-based, as count) of the latest bar holding a non-finite value.
  int64_t last_bad = std::numeric_limits<int64_t>::min() / 2;

  // The window's sums for Kernel::row_at (ADR 0114), brought up to date by the kernel as it makes each
  // row, one bar at a time; `at` is the count they describe (-1: none). Per return window (the
  // kernel's return_windows): the sum of its one-bar log returns, of their squares, and how many are
  // not zero; per trend window the sum of close - ref; per channel window the lowest low and highest
  // high and the bar numbers they belong to; the range, momentum and activity sums.
  struct Running {
    const void* kernel = nullptr;  // the Kernel whose lookbacks these are
    int64_t at = -1;
    int steps = 0;  // one-bar updates since the sums were last taken over the whole window
    double ref = 0.0;
    std::vector<double> s1, s2, trend, lo, hi;
    std::vector<int> nz;
    std::vector<int64_t> lo_at, hi_at;
    double range = 0.0, net = 0.0, abssum = 0.0, activity = 0.0;
    int momentum_nz = 0;
  } run;

  explicit BarWindows(int window) : W(window), buf(static_cast<size_t>(kRows) * 2 * window, 0.0) {
    if (window <= 0) throw std::invalid_argument("window must be positive");
  }

  // Adds a bar; true once the window holds W bars.
  bool push(double t, double h, double l, double c, double sp, double tv) {
    pos = (pos + 1) % W;
    // A non-positive close never gets here in serving (refused as input); the numpy kernel makes NaN
    // of it, so does this.
    const double col[kRows] = {t, h, l, c, sp, tv, c > 0.0 ? std::log(c) : kNaN, std::log1p(tv)};
    const size_t stride = 2 * static_cast<size_t>(W);
    bool finite = true;
    for (int r = 0; r < kRows; ++r) {
      out[r] = buf[r * stride + pos];  // the oldest bar of the window before this one
      buf[r * stride + pos] = col[r];
      buf[r * stride + pos + W] = col[r];
      finite = finite && std::isfinite(col[r]);
    }
    if (!finite) last_bad = count + 1;
    return ++count >= W;
  }
  const double* window() const { return buf.data() + pos + 1; }

  // The window as a (8, W) array (a copy), for tests.
  py::array_t<double> array() const {
    py::array_t<double> out({kRows, W});
    double* o = out.mutable_data();
    const size_t stride = 2 * static_cast<size_t>(W);
    for (int r = 0; r < kRows; ++r) std::copy_n(window() + r * stride, W, o + static_cast<size_t>(r) * W);
    return out;
  }
};

// One symbol's latest feature rows as float32 model input rows (the server's SymbolState ring), kept
// in C++ so that Kernel::inputs appends a request's rows and copies the model inputs in one call.
// Each row is written at i and i + capacity, so the latest `rows` rows are one contiguous block.
struct RowRing {
  int capacity, n_features;
  int pos = -1;
  int64_t count = 0;  // consecutive complete rows ending at pos
  std::vector<float> buf;

  RowRing(int cap, int nf) : capacity(cap), n_features(nf) {
    if (cap <= 0 || nf <= 0) throw std::invalid_argument("capacity and n_features must be positive");
    buf.assign(static_cast<size_t>(2) * cap * nf, 0.0f);
  }

  // Appends a row; a non-finite one (or none: a bar still warming up) restarts the count instead.
  void push(const double* row) {
    for (int j = 0; j < n_features; ++j)
      if (!std::isfinite(row[j])) {
        count = 0;
        return;
      }
    pos = (pos + 1) % capacity;
    float* a = buf.data() + static_cast<size_t>(pos) * n_features;
    float* b = a + static_cast<size_t>(capacity) * n_features;
    for (int j = 0; j < n_features; ++j) a[j] = b[j] = static_cast<float>(row[j]);
    ++count;
  }
  // The latest `rows` rows, oldest first, or nullptr while fewer consecutive complete rows were seen.
  const float* window(int rows) const {
    if (count < rows || rows > capacity) return nullptr;
    return buf.data() + static_cast<size_t>(pos + capacity + 1 - rows) * n_features;
  }
};

// One symbol's bar builder from ticks: kairos.features.BarBuilder's rule, state and arithmetic (the
// same operations on the same doubles in the same order, so the same bars bit for bit; ADR 0119).
// The tick intake (Kernel::intake_ticks) moves it, and so does the Python path through add_tick and
// add_ticks, which return kairos.features.Bar objects as BarBuilder's do.
struct TickBars {
  int64_t timeframe_s, p_ms;
  double point;
  py::object bar_type;  // kairos.features.Bar, for the bars handed to Python
  bool open = false;
  int64_t open_ms = 0, n = 0, late_ticks = 0;
  double o = 0.0, h = 0.0, l = 0.0, c = 0.0, spread_sum = 0.0, spread_max = 0.0, volume = 0.0;

  // A bar the builder closed (BarBuilder._emit's fields before its divisions).
  struct Closed {
    int64_t open_ms, n;
    double o, h, l, c, spread_sum, spread_max, volume;
    double spread_mean() const { return spread_sum / static_cast<double>(n); }
  };

  TickBars(int64_t timeframe, double pt, py::object bar)
      : timeframe_s(timeframe), point(pt), bar_type(std::move(bar)) {
    if (timeframe <= 0) throw std::invalid_argument("timeframe_s must be positive");
    if (timeframe > std::numeric_limits<int64_t>::max() / 4000)
      throw std::invalid_argument("timeframe_s is too large");
    if (!(pt > 0.0)) throw std::invalid_argument("point must be positive");
    p_ms = timeframe * 1000;
  }

  // BarBuilder.add_tick: true (and the bar in `out`) when the tick closed the open bar. `t` must be
  // at least INT64_MIN + p_ms (the caller's bound), so that its bar's open is representable.
  bool add(int64_t t, double bid, double ask, double vol, Closed& out) {
    const int64_t open_t = t - floor_mod(t, p_ms);
    bool closed = false;
    if (open) {
      if (open_t < open_ms) {
        ++late_ticks;
        return false;
      }
      if (open_t > open_ms) {
        out = Closed{open_ms, n, o, h, l, c, spread_sum, spread_max, volume};
        open = false;
        closed = true;
      }
    }
    const double spread = ask - bid;
    if (!open) {
      open = true;
      open_ms = open_t;
      o = h = l = bid;
      n = 0;
      spread_sum = 0.0;
      spread_max = spread;
      volume = 0.0;
    } else {  // Python's max(a, b) keeps a unless b > a; min(a, b) keeps a unless b < a
      if (bid > h) h = bid;
      if (bid < l) l = bid;
      if (spread > spread_max) spread_max = spread;
    }
    c = bid;
    ++n;
    spread_sum += spread;
    volume += vol;
    return closed;
  }

  py::object to_bar(const Closed& b) const {
    static const py::object round = py::module_::import("builtins").attr("round");
    return bar_type(b.open_ms, timeframe_s, b.o, b.h, b.l, b.c, b.n, b.spread_mean(), b.spread_max,
                    round(b.spread_max / point), b.volume);
  }

  // A tick time from Python, at least -2^62 (the server refuses older ones first), so that its bar's
  // open is representable.
  static int64_t checked_time(int64_t t) {
    if (t < std::numeric_limits<int64_t>::min() / 2) throw std::invalid_argument("tick time out of range");
    return t;
  }

  // BarBuilder.add_tick for Python: the bars it closed (a list of 0 or 1).
  py::list add_tick(int64_t t, double bid, double ask, double vol) {
    py::list out;
    Closed b;
    if (add(checked_time(t), bid, ask, vol, b)) out.append(to_bar(b));
    return out;
  }

  // BarBuilder.add_ticks for Python: (bar, j) per bar closed, j the index of the tick that closed it.
  py::list add_ticks(const py::sequence& times, const py::sequence& bids, const py::sequence& asks,
                     const py::object& volumes) {
    const size_t n = py::len(times);
    if (py::len(bids) != n || py::len(asks) != n) throw std::invalid_argument("columns differ in length");
    std::vector<double> vols;
    if (!volumes.is_none()) {
      vols = volumes.cast<std::vector<double>>();
      if (vols.size() != n) throw std::invalid_argument("columns differ in length");
    }
    const auto ts = times.cast<std::vector<int64_t>>();
    const auto bs = bids.cast<std::vector<double>>(), as = asks.cast<std::vector<double>>();
    py::list out;
    Closed b;
    for (size_t j = 0; j < n; ++j)
      if (add(checked_time(ts[j]), bs[j], as[j], vols.empty() ? 0.0 : vols[j], b))
        out.append(py::make_tuple(to_bar(b), j));
    return out;
  }

  // BarBuilder.flush: closes the open bar now.
  py::list flush() {
    py::list out;
    if (open) {
      out.append(to_bar(Closed{open_ms, n, o, h, l, c, spread_sum, spread_max, volume}));
      open = false;
    }
    return out;
  }
};

// One symbol's state on a stream that the intakes (Kernel::intake_bars, ADR 0110; Kernel::intake_ticks,
// ADR 0119) read and move: the watermarks and latest quote the server refuses out-of-order input by,
// its bar builder, bar window and ring of feature rows. The server's SymbolState keeps these fields
// here (it reads and writes them as properties), so the Python paths and the C++ intakes move one
// state.
struct Slot {
  py::object symbol;  // the symbol as a Python str, handed out with each prediction
  std::shared_ptr<BarWindows> windows;
  std::shared_ptr<RowRing> ring;
  std::shared_ptr<TickBars> bars;  // the builder of bars from this symbol's ticks (None: no tick intake)
  int64_t last_bar_open_msc = -(int64_t{1} << 62);
  int64_t last_time_msc = -(int64_t{1} << 62);
  uint64_t last_seq = 0;
  double bid = 0.0, ask = 0.0;
  // The model the state was last checked against (the server's count of models a stream has seen):
  // the intakes take input only for a state checked against the model it runs.
  int64_t model_seen = -1;
  // Scratch of one intake call: the bar open, tick time and sequence its check pass has reached.
  uint64_t epoch = 0;
  int64_t pending_open = 0, pending_time = 0;
  uint64_t pending_seq = 0;

  Slot(py::object sym, std::shared_ptr<BarWindows> w, std::shared_ptr<RowRing> r, std::shared_ptr<TickBars> b)
      : symbol(std::move(sym)), windows(std::move(w)), ring(std::move(r)), bars(std::move(b)) {}
};

// A stream's symbols for the bar intake: symbol -> Slot. The server adds a symbol when it creates
// its state (bounded by the stream's max_symbols) and removes it with the state.
struct Intake {
  std::unordered_map<std::string, std::shared_ptr<Slot>> slots;
  uint64_t epoch = 0;

  void add(const std::string& symbol, std::shared_ptr<Slot> slot) { slots[symbol] = std::move(slot); }
  void remove(const std::string& symbol) { slots.erase(symbol); }
  void clear() { slots.clear(); }
  size_t size() const { return slots.size(); }
};

// The protobuf wire format, read just far enough for a StreamPredictRequest's bars. The bytes come
// from the server's own serialisation of a request it parsed (canonical: each field at most once, in
// its declared wire type); anything else makes the reader give up and the caller take the Python path.
struct Wire {
  const uint8_t* p;
  const uint8_t* end;

  bool varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64 && p < end; shift += 7) {
      const uint8_t b = *p++;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  bool fixed64(double& d) {
    if (end - p < 8) return false;
    std::memcpy(&d, p, 8);  // little-endian hosts only (x86-64, arm64)
    p += 8;
    return true;
  }
  bool bytes(const uint8_t*& b, size_t& n) {
    uint64_t len;
    if (!varint(len) || len > static_cast<uint64_t>(end - p)) return false;
    b = p;
    n = static_cast<size_t>(len);
    p += len;
    return true;
  }
  bool skip(int wire_type) {
    uint64_t v;
    const uint8_t* b;
    size_t n;
    switch (wire_type) {
      case 0:
        return varint(v);
      case 1:
        if (end - p < 8) return false;
        p += 8;
        return true;
      case 2:
        return bytes(b, n);
      case 5:
        if (end - p < 4) return false;
        p += 4;
        return true;
      default:
        return false;  // groups: not in these messages
    }
  }
};

// StreamPredictRequest's fields the intakes read: its tick batches and its bars.
constexpr int kTicksField = 2, kBarsField = 3;

// The next item (a length-delimited field `want`) of a StreamPredictRequest, the other fields skipped:
// 1 with its bytes in (b, n); 0 at the end; -1 if the bytes are unreadable or hold field `refuse`
// (the other intake's input: the request is not this intake's).
int next_item(Wire& w, int want, int refuse, const uint8_t*& b, size_t& n) {
  while (w.p < w.end) {
    uint64_t tag;
    if (!w.varint(tag)) return -1;
    const int field = static_cast<int>(tag >> 3), wt = static_cast<int>(tag & 7);
    if (field == refuse) return -1;
    if (field != want) {
      if (!w.skip(wt)) return -1;
      continue;
    }
    return wt == 2 && w.bytes(b, n) ? 1 : -1;
  }
  return 0;
}

// One kairos.marketdata.v1.Bar as the intake uses it (the other fields are skipped).
struct WireBar {
  std::string_view symbol;
  uint64_t period_s = 0;
  int64_t open_time_msc = 0;
  double open = 0.0, high = 0.0, low = 0.0, close = 0.0, spread_mean = 0.0;
  uint64_t tick_volume = 0;
  Slot* slot = nullptr;
};

bool parse_bar(const uint8_t* b, size_t n, WireBar& bar) {
  Wire w{b, b + n};
  while (w.p < w.end) {
    uint64_t key;
    if (!w.varint(key)) return false;
    const int field = static_cast<int>(key >> 3), wt = static_cast<int>(key & 7);
    uint64_t v;
    const uint8_t* s;
    size_t len;
    switch (field) {
      case 1:
        if (wt != 2 || !w.bytes(s, len)) return false;
        bar.symbol = std::string_view(reinterpret_cast<const char*>(s), len);
        break;
      case 2:
        if (wt != 0 || !w.varint(v)) return false;
        bar.period_s = static_cast<uint32_t>(v);  // uint32: the parser keeps the low 32 bits
        break;
      case 3:
        if (wt != 0 || !w.varint(v)) return false;
        bar.open_time_msc = static_cast<int64_t>(v);
        break;
      case 4:
        if (wt != 1 || !w.fixed64(bar.open)) return false;
        break;
      case 5:
        if (wt != 1 || !w.fixed64(bar.high)) return false;
        break;
      case 6:
        if (wt != 1 || !w.fixed64(bar.low)) return false;
        break;
      case 7:
        if (wt != 1 || !w.fixed64(bar.close)) return false;
        break;
      case 8:
        if (wt != 0 || !w.varint(bar.tick_volume)) return false;
        break;
      case 11:
        if (wt != 1 || !w.fixed64(bar.spread_mean)) return false;
        break;
      default:
        if (!w.skip(wt)) return false;
    }
  }
  return true;
}

double item_double(PyObject* seq, Py_ssize_t i) {
  const double v = PyFloat_AsDouble(PyTuple_GET_ITEM(seq, i));
  if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

// The bar's position in the UTC day and week (open time in ms) as sin and cos: four values into o.
void time_features(double open_ms, double* o) {
  const auto t = static_cast<int64_t>(open_ms);
  const double day = static_cast<double>(floor_mod(t, kMsPerDay)) / kMsPerDay * kTwoPi;
  const double week =
      static_cast<double>(floor_mod(t + kEpochWeekdayOffsetMs, kMsPerWeek)) / kMsPerWeek * kTwoPi;
  o[0] = std::sin(day);
  o[1] = std::cos(day);
  o[2] = std::sin(week);
  o[3] = std::cos(week);
}

struct Kernel {
  std::vector<int> horizons, vol_windows, channel_windows, trend_windows;
  int long_window, range_window, momentum_window, spread_vol_window, activity_window;
  // The distinct lookbacks of one-bar returns whose std a row needs (vol windows, the long window,
  // the spread's), and where each of those three finds its own (set by prepare()).
  std::vector<int> return_windows, vol_rw;
  int long_rw = 0, spread_rw = 0;

  void prepare() {
    auto index = [this](int n) {
      for (size_t i = 0; i < return_windows.size(); ++i)
        if (return_windows[i] == n) return static_cast<int>(i);
      return_windows.push_back(n);
      return static_cast<int>(return_windows.size() - 1);
    };
    for (int n : vol_windows) vol_rw.push_back(index(n));
    long_rw = index(long_window);
    spread_rw = index(spread_vol_window);
  }

  int n_features() const {
    return static_cast<int>(horizons.size() + vol_windows.size() + 1 + 2 + channel_windows.size() + 1 +
                            trend_windows.size() + 1 + 1 + 4);
  }
  int needs() const {  // bars a window must hold
    int w = long_window + 1;
    for (int h : horizons) w = std::max(w, h + 1);
    for (int n : vol_windows) w = std::max(w, n + 1);
    for (int n : channel_windows) w = std::max(w, n);
    for (int n : trend_windows) w = std::max(w, n);
    w = std::max({w, range_window, momentum_window + 1, spread_vol_window + 1, activity_window});
    return w;
  }

  // One row into o[0..n_features) for one window: rows of W doubles at `tm` (time ms, high, low,
  // close, spread_mean, tick_volume, and with `cached` two more: log(close), log1p(tick_volume), kept
  // by the server per bar so that no window recomputes 300 logarithms), oldest bar first; the row
  // belongs to the window's last bar.
  // `stride` is the distance between two rows of the window (W for a (rows, W) array; a BarWindows
  // ring's rows are 2W apart).
  void row(const double* tm, int W, int stride, bool cached, double* o, std::vector<double>& lcbuf,
           std::vector<double>& r1, std::vector<double>& tmp) const {
    const double* hi = tm + stride;
    const double* lo = hi + stride;
    const double* cl = lo + stride;
    const double* sp = cl + stride;
    const double* tv = sp + stride;
    const double* lc = cached ? tv + stride : lcbuf.data();
    if (!cached)
      for (int j = 0; j < W; ++j) lcbuf[j] = std::log(cl[j]);
    for (int j = 0; j + 1 < W; ++j) r1[j] = lc[j + 1] - lc[j];
    const double* r1e = r1.data() + (W - 1);  // one past the last return
    const double last = cl[W - 1];
    double vols[16];
    double sigma = kNaN;
    int nv = 0;
    for (int n : vol_windows) {
      vols[nv] = pstd(r1e - n, n);
      if (n == long_window) sigma = vols[nv];
      ++nv;
    }
    if (std::isnan(sigma)) sigma = pstd(r1e - long_window, long_window);
    int c = 0;
    for (int h : horizons) o[c++] = safe_div(lc[W - 1] - lc[W - 1 - h], sigma * std::sqrt(double(h)));
    for (int k = 0; k < nv; ++k) o[c++] = vols[k] * kBp;
    const double s = vols[0], l = vols[nv - 1];
    o[c++] = (s > 0.0 && l > 0.0) ? std::log(s / l) : 0.0;
    for (int j = 0; j < range_window; ++j) {
      const int k = W - range_window + j;
      tmp[j] = (hi[k] - lo[k]) / cl[k];
    }
    o[c++] = tmp[range_window - 1] * kBp;
    o[c++] = mean(tmp.data(), range_window) * kBp;
    for (int n : channel_windows) {
      const double lmin = nanmin(lo + W - n, n);
      const double hmax = nanmax(hi + W - n, n);
      const double width = hmax - lmin;
      o[c++] = width > 0.0 ? safe_div(last - lmin, width) - 0.5 : 0.0;
    }
    double net = 0.0, abssum = 0.0;
    for (const double* p = r1e - momentum_window; p < r1e; ++p) {
      net += *p;
      abssum += std::fabs(*p);
    }
    o[c++] = safe_div(net, abssum);
    for (int n : trend_windows) o[c++] = safe_div(std::log(last / mean(cl + W - n, n)), sigma);
    double spread_vol = kNaN;
    for (int k = 0; k < nv; ++k)
      if (vol_windows[k] == spread_vol_window) spread_vol = vols[k];  // the same std, computed once
    if (std::isnan(spread_vol)) spread_vol = pstd(r1e - spread_vol_window, spread_vol_window);
    o[c++] = safe_div(sp[W - 1] / last, spread_vol);
    if (cached) {
      const double* lv = lc + stride + W - activity_window;
      o[c++] = lv[activity_window - 1] - mean(lv, activity_window);
    } else {
      for (int j = 0; j < activity_window; ++j) tmp[j] = std::log1p(tv[W - activity_window + j]);
      o[c++] = tmp[activity_window - 1] - mean(tmp.data(), activity_window);
    }
    time_features(tm[W - 1], o + c);
  }

  // The row of a full BarWindows' latest bar into o, as row() gives it, from the window's running
  // sums (ADR 0114): each bar updates them with the bars entering and leaving each lookback instead
  // of reading the whole window (2 MB for 64 symbols, mostly cache misses in the server). row() stays
  // the reference: a window holding a non-finite value goes to it, a std the sums cannot give to
  // full precision (returns nearly all equal) is taken over its window as row() takes it, and the
  // sums are taken over the whole window again every W bars, so rounding cannot build up. Parity
  // with row() is held to 1e-9 by python/tests/features/test_native_kernel.py.
  void row_at(BarWindows& w, double* o, std::vector<double>& lcbuf, std::vector<double>& r1,
              std::vector<double>& tmp) const {
    const int W = w.W;
    BarWindows::Running& R = w.run;
    if (w.count - w.last_bad < W) {  // a non-finite value in the window: row() says what it gives
      R.at = -1;
      row(w.window(), W, 2 * W, true, o, lcbuf, r1, tmp);
      return;
    }
    const size_t stride = 2 * static_cast<size_t>(W);
    const double* tm = w.window();
    const double* hi = tm + stride;
    const double* lo = hi + stride;
    const double* cl = lo + stride;
    const double* sp = cl + stride;
    const double* lc = sp + 2 * stride;
    const double* lv = lc + stride;
    const int64_t now = w.count;  // the latest bar's number; bar k of the window is now - (W-1-k)
    if (R.kernel == this && R.at == now - 1 && R.steps < W) {
      ++R.steps;
      // The value in channel `ch` (row r of buf) of the bar leaving a lookback of n bars: in the
      // window, or the bar the push moved out when n is the whole window.
      auto gone = [&](const double* ch, int r, int n) { return n < W ? ch[W - 1 - n] : w.out[r]; };
      const double rin = lc[W - 1] - lc[W - 2];
      auto gone_return = [&](int n) {  // return j = lc[j+1] - lc[j]; the one leaving is j = W-2-n
        return n < W - 1 ? lc[W - 1 - n] - lc[W - 2 - n] : lc[0] - w.out[6];  // row 6: log(close)
      };
      for (size_t i = 0; i < return_windows.size(); ++i) {
        const double rout = gone_return(return_windows[i]);
        R.s1[i] = R.s1[i] + rin - rout;
        R.s2[i] = R.s2[i] + rin * rin - rout * rout;
        R.nz[i] += (rin != 0.0) - (rout != 0.0);
      }
      {
        const double rout = gone_return(momentum_window);
        R.net = R.net + rin - rout;
        R.abssum = R.abssum + std::fabs(rin) - std::fabs(rout);
        R.momentum_nz += (rin != 0.0) - (rout != 0.0);
      }
      for (size_t i = 0; i < trend_windows.size(); ++i)
        R.trend[i] = R.trend[i] + (cl[W - 1] - R.ref) - (gone(cl, 3, trend_windows[i]) - R.ref);
      for (size_t i = 0; i < channel_windows.size(); ++i) {
        const int n = channel_windows[i];
        if (lo[W - 1] <= R.lo[i]) {
          R.lo[i] = lo[W - 1];
          R.lo_at[i] = now;
        } else if (R.lo_at[i] == now - n) {  // the lowest low left: look again
          lowest(lo, W, n, now, R.lo[i], R.lo_at[i]);
        }
        if (hi[W - 1] >= R.hi[i]) {
          R.hi[i] = hi[W - 1];
          R.hi_at[i] = now;
        } else if (R.hi_at[i] == now - n) {
          highest(hi, W, n, now, R.hi[i], R.hi_at[i]);
        }
      }
      R.range = R.range + (hi[W - 1] - lo[W - 1]) / cl[W - 1] -
                (gone(hi, 1, range_window) - gone(lo, 2, range_window)) / gone(cl, 3, range_window);
      R.activity = R.activity + lv[W - 1] - gone(lv, 7, activity_window);
    } else {
      take(w, lc, cl, lo, hi, lv);
    }
    R.at = now;
    // The std of the last n one-bar returns (population), as pstd gives it.
    auto std_of = [&](int i) {
      const int n = return_windows[i];
      if (R.nz[i] == 0) return 0.0;  // all zero: exactly 0, as two passes give it
      const double m2 = R.s2[i] / n, mean = R.s1[i] / n;
      const double var = m2 - mean * mean;
      if (var > 1e-3 * m2) return std::sqrt(var);
      // Returns nearly all equal: the one-pass variance loses digits; two passes over the window.
      for (int j = 0; j < n; ++j) r1[j] = lc[W - n + j] - lc[W - n + j - 1];
      return pstd(r1.data(), n);
    };
    double sd[18], vols[16];  // at most 16 vol windows, the long and the spread's
    for (size_t i = 0; i < return_windows.size(); ++i) sd[i] = std_of(static_cast<int>(i));
    const int nv = static_cast<int>(vol_windows.size());
    for (int k = 0; k < nv; ++k) vols[k] = sd[vol_rw[k]];
    const double sigma = sd[long_rw], spread_vol = sd[spread_rw];
    const double last = cl[W - 1];
    int c = 0;
    for (int h : horizons) o[c++] = safe_div(lc[W - 1] - lc[W - 1 - h], sigma * std::sqrt(double(h)));
    for (int k = 0; k < nv; ++k) o[c++] = vols[k] * kBp;
    const double s = vols[0], l = vols[nv - 1];
    o[c++] = (s > 0.0 && l > 0.0) ? std::log(s / l) : 0.0;
    o[c++] = (hi[W - 1] - lo[W - 1]) / cl[W - 1] * kBp;
    o[c++] = R.range / range_window * kBp;
    for (size_t i = 0; i < channel_windows.size(); ++i) {
      const double width = R.hi[i] - R.lo[i];
      o[c++] = width > 0.0 ? safe_div(last - R.lo[i], width) - 0.5 : 0.0;
    }
    o[c++] = R.momentum_nz == 0 ? 0.0 : safe_div(R.net, R.abssum);
    for (size_t i = 0; i < trend_windows.size(); ++i)
      o[c++] = safe_div(std::log(last / (R.ref + R.trend[i] / trend_windows[i])), sigma);
    o[c++] = safe_div(sp[W - 1] / last, spread_vol);
    o[c++] = lv[W - 1] - R.activity / activity_window;
    time_features(tm[W - 1], o + c);
  }

  // The lowest of the last n values of x (W of them, oldest first) and its bar number (the latest of
  // equal ones); no NaN here (row_at sends windows holding one to row()).
  static void lowest(const double* x, int W, int n, int64_t now, double& v, int64_t& at) {
    int best = W - n;
    for (int k = W - n + 1; k < W; ++k)
      if (x[k] <= x[best]) best = k;
    v = x[best];
    at = now - (W - 1 - best);
  }
  static void highest(const double* x, int W, int n, int64_t now, double& v, int64_t& at) {
    int best = W - n;
    for (int k = W - n + 1; k < W; ++k)
      if (x[k] >= x[best]) best = k;
    v = x[best];
    at = now - (W - 1 - best);
  }

  // Takes row_at's running sums over the whole window.
  void take(BarWindows& w, const double* lc, const double* cl, const double* lo, const double* hi,
            const double* lv) const {
    const int W = w.W;
    BarWindows::Running& R = w.run;
    R.kernel = this;
    const size_t nr = return_windows.size(), nt = trend_windows.size(), nc = channel_windows.size();
    R.s1.assign(nr, 0.0);
    R.s2.assign(nr, 0.0);
    R.nz.assign(nr, 0);
    R.trend.assign(nt, 0.0);
    R.lo.assign(nc, 0.0);
    R.hi.assign(nc, 0.0);
    R.lo_at.assign(nc, 0);
    R.hi_at.assign(nc, 0);
    R.steps = 0;
    R.ref = cl[W - 1];
    for (size_t i = 0; i < nr; ++i) {
      const int n = return_windows[i];
      for (int j = W - 1 - n; j < W - 1; ++j) {
        const double r = lc[j + 1] - lc[j];
        R.s1[i] += r;
        R.s2[i] += r * r;
        R.nz[i] += r != 0.0;
      }
    }
    R.net = R.abssum = 0.0;
    R.momentum_nz = 0;
    for (int j = W - 1 - momentum_window; j < W - 1; ++j) {
      const double r = lc[j + 1] - lc[j];
      R.net += r;
      R.abssum += std::fabs(r);
      R.momentum_nz += r != 0.0;
    }
    for (size_t i = 0; i < nt; ++i)
      for (int k = W - trend_windows[i]; k < W; ++k) R.trend[i] += cl[k] - R.ref;
    for (size_t i = 0; i < nc; ++i) {
      lowest(lo, W, channel_windows[i], w.count, R.lo[i], R.lo_at[i]);
      highest(hi, W, channel_windows[i], w.count, R.hi[i], R.hi_at[i]);
    }
    R.range = 0.0;
    for (int k = W - range_window; k < W; ++k) R.range += (hi[k] - lo[k]) / cl[k];
    R.activity = 0.0;
    for (int k = W - activity_window; k < W; ++k) R.activity += lv[k];
  }

  using Window = py::array_t<double, py::array::c_style | py::array::forcecast>;

  // For each closed bar i of a request, in order: if ready[i], the next row of `rows` goes into
  // rings[i] (a non-finite row restarts its count), else rings[i]'s count restarts (a bar still
  // warming up). Returns (x (k, n_rows, n_features) float32, due): due[i] tells whether bar i made a
  // model input, the first sum(due) entries of x are those inputs in order (the rest unused).
  py::tuple inputs(const py::list& rings, const py::list& ready, const Window& rows, int n_rows) const {
    const Py_ssize_t n = py::len(rings);
    if (py::len(ready) != static_cast<size_t>(n))
      throw std::invalid_argument("rings and ready differ in length");
    if (rows.ndim() != 2) throw std::invalid_argument("rows must be (k, n_features)");
    const auto k = static_cast<Py_ssize_t>(rows.shape(0));
    const auto nf = static_cast<int>(rows.shape(1));
    py::array_t<float> x(
        {static_cast<py::ssize_t>(k), static_cast<py::ssize_t>(n_rows), static_cast<py::ssize_t>(nf)});
    float* xo = x.mutable_data();
    const size_t per_input = static_cast<size_t>(n_rows) * nf;
    const double* r = rows.data();
    py::list due(n);
    Py_ssize_t used = 0, m = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
      auto& ring = py::handle(PyList_GET_ITEM(rings.ptr(), i)).cast<RowRing&>();
      const int is_ready = PyObject_IsTrue(PyList_GET_ITEM(ready.ptr(), i));
      if (is_ready < 0) throw py::error_already_set();
      bool made = false;
      if (!is_ready) {
        ring.count = 0;  // need n_rows complete rows again
      } else {
        if (used >= k) throw std::invalid_argument("more ready bars than rows");
        if (ring.n_features != nf) throw std::invalid_argument("a ring's row width differs from the rows'");
        ring.push(r + static_cast<size_t>(used++) * nf);
        // Copied now: a later bar of the same symbol in this request moves the ring on.
        if (const float* w = ring.window(n_rows)) {
          std::copy_n(w, per_input, xo + static_cast<size_t>(m++) * per_input);
          made = true;
        }
      }
      PyList_SET_ITEM(due.ptr(), i, py::bool_(made).release().ptr());
    }
    if (used != k) throw std::invalid_argument("fewer ready bars than rows");
    return py::make_tuple(x, due);
  }

  // Pushes bars[i] = (open time ms, high, low, close, spread_mean, tick_volume) into windows[i], in
  // order (one symbol may come twice), and returns (rows (k, n_features), ready): ready[i] tells
  // whether bar i's window was full, the k rows belong to the ready bars, in order.
  py::tuple push_rows(const py::list& windows, const py::list& bars) const {
    const Py_ssize_t n = py::len(windows);
    if (py::len(bars) != static_cast<size_t>(n))
      throw std::invalid_argument("windows and bars differ in length");
    const int nf = n_features();
    const int need = needs();
    std::vector<double> rows(static_cast<size_t>(n) * nf);
    std::vector<double> lc, r1, tmp;
    py::list ready(n);
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
      auto& w = py::handle(PyList_GET_ITEM(windows.ptr(), i)).cast<BarWindows&>();
      PyObject* bar = PyList_GET_ITEM(bars.ptr(), i);
      if (!PyTuple_Check(bar) || PyTuple_GET_SIZE(bar) != 6)
        throw std::invalid_argument("each bar must be a tuple of 6 numbers");
      if (w.W < need) throw std::invalid_argument("windows are shorter than the schema's lookbacks");
      const bool full = w.push(item_double(bar, 0), item_double(bar, 1), item_double(bar, 2),
                               item_double(bar, 3), item_double(bar, 4), item_double(bar, 5));
      PyList_SET_ITEM(ready.ptr(), i, py::bool_(full).release().ptr());
      // The row now, before a later bar of the same symbol in this request moves the window on.
      if (static_cast<int>(tmp.size()) < w.W) {
        lc.resize(w.W);
        r1.resize(w.W);
        tmp.resize(w.W);
      }
      if (full) row_at(w, rows.data() + static_cast<size_t>(k++) * nf, lc, r1, tmp);
    }
    py::array_t<double> out({static_cast<py::ssize_t>(k), static_cast<py::ssize_t>(nf)});
    std::copy_n(rows.data(), static_cast<size_t>(k) * nf, out.mutable_data());
    return py::make_tuple(out, ready);
  }

  // A bar an intake closed, ready to go in: its symbol's slot, its fields, and the quote its
  // prediction is made at (a Bar's close and close + spread_mean; the closing tick's bid and ask).
  struct Due {
    Slot* slot;
    int64_t open_ms, period_s;
    double open, high, low, close, spread_mean, tick_volume, bid, ask;
  };

  // Whether a slot's window and ring fit this kernel (checked before an intake moves anything).
  void check_fit(const Slot& s) const {
    if (!s.windows || !s.ring || s.windows->W < needs() || s.ring->n_features != n_features())
      throw std::invalid_argument("a symbol's window or ring does not fit the kernel");
  }

  // The second half of both intakes, as StreamState._features does it for the Python path: each bar,
  // in order, goes into its symbol's window, its row into its ring, and a model input is copied when
  // the ring holds `n_rows` rows. Returns (bars taken, x (m, n_rows, n_features) float32, and per
  // input: symbols, times_msc (the bar's close), bids, asks, prices (open, close, spread_mean, low,
  // high); the prices only with `want_prices`, an empty list otherwise).
  py::object take(const std::vector<Due>& dues, int n_rows, bool want_prices) const {
    const int nf = n_features();
    const auto nb = static_cast<py::ssize_t>(dues.size());
    const size_t per_input = static_cast<size_t>(n_rows) * nf;
    py::array_t<float> x({nb, static_cast<py::ssize_t>(n_rows), static_cast<py::ssize_t>(nf)});
    float* xo = x.mutable_data();
    std::vector<double> row_buf(nf), lc, r1, tmp;
    std::vector<const Due*> made;
    made.reserve(dues.size());
    for (const auto& d : dues) {
      Slot& s = *d.slot;
      BarWindows& win = *s.windows;
      const bool full =
          win.push(static_cast<double>(d.open_ms), d.high, d.low, d.close, d.spread_mean, d.tick_volume);
      RowRing& ring = *s.ring;
      if (!full) {
        ring.count = 0;  // still warming up: need n_rows complete rows again
        continue;
      }
      if (static_cast<int>(tmp.size()) < win.W) {
        lc.resize(win.W);
        r1.resize(win.W);
        tmp.resize(win.W);
      }
      row_at(win, row_buf.data(), lc, r1, tmp);
      ring.push(row_buf.data());
      // Copied now: a later bar of the same symbol in this request moves the ring on.
      if (const float* in = ring.window(n_rows)) {
        std::copy_n(in, per_input, xo + made.size() * per_input);
        made.push_back(&d);
      }
    }
    const auto m = static_cast<py::ssize_t>(made.size());
    py::list symbols(m), times(m), bids(m), asks(m), prices(want_prices ? m : 0);
    for (py::ssize_t i = 0; i < m; ++i) {
      const Due& d = *made[i];
      PyList_SET_ITEM(symbols.ptr(), i, d.slot->symbol.inc_ref().ptr());
      PyList_SET_ITEM(times.ptr(), i, py::int_(d.open_ms + d.period_s * 1000).release().ptr());
      PyList_SET_ITEM(bids.ptr(), i, py::float_(d.bid).release().ptr());
      PyList_SET_ITEM(asks.ptr(), i, py::float_(d.ask).release().ptr());
      if (want_prices)
        PyList_SET_ITEM(prices.ptr(), i,
                        py::make_tuple(d.open, d.close, d.spread_mean, d.low, d.high).release().ptr());
    }
    py::object xs = x[py::slice(0, m, 1)];
    return py::make_tuple(nb, xs, symbols, times, bids, asks, prices);
  }

  // The bar intake (ADR 0110): a serialised StreamPredictRequest carrying bars only, taken whole or
  // not at all. Check pass: every bar must pass the server's bar checks for a model of `timeframe_s`
  // (the same tests, in the same order of evaluation, as StreamState._bar's), belong to a symbol of
  // `intake` checked against model `model_seen`, and open after its symbol's last bar (a symbol may
  // come more than once). If any does not, or the bytes hold anything but bars (ticks) or more than
  // `max_bars` bars, nothing changed and None is returned: the Python path then takes the request
  // and words its refusals. Otherwise each bar, in order, moves its symbol's state as _bar and
  // _close do, and goes in as `take` says (its result is returned).
  py::object intake_bars(Intake& intake, const py::bytes& request, int64_t timeframe_s, int n_rows,
                         int64_t model_seen, Py_ssize_t max_bars, bool want_prices) const {
    const std::string_view req = bytes_view(request);
    const auto* data = reinterpret_cast<const uint8_t*>(req.data());
    Wire w{data, data + req.size()};
    std::vector<WireBar> bars;
    const uint64_t epoch = ++intake.epoch;
    std::string key;
    const uint8_t* b;
    size_t n;
    int got;
    while ((got = next_item(w, kBarsField, kTicksField, b, n)) == 1) {          // ticks: the tick intake's
      if (static_cast<Py_ssize_t>(bars.size()) >= max_bars) return py::none();  // OVERSIZED_BATCH
      WireBar bar;
      if (!parse_bar(b, n, bar)) return py::none();
      const double o = bar.open, h = bar.high, lo = bar.low, c = bar.close, sp = bar.spread_mean;
      const auto period = static_cast<int64_t>(bar.period_s);
      if (!(period == timeframe_s && std::isfinite(o + h + lo + c + sp) && o > 0.0 && c > 0.0 && lo > 0.0 &&
            lo <= o && lo <= c && h >= o && h >= c && sp >= 0.0 && bar.open_time_msc % (period * 1000) == 0))
        return py::none();
      // open + period - 1 ms must not overflow (the Python path words such a bar's fate)
      if (bar.open_time_msc > std::numeric_limits<int64_t>::max() - period * 1000) return py::none();
      key.assign(bar.symbol.data(), bar.symbol.size());
      const auto it = intake.slots.find(key);
      if (it == intake.slots.end()) return py::none();
      Slot* slot = it->second.get();
      if (slot->model_seen != model_seen) return py::none();
      const int64_t last = slot->epoch == epoch ? slot->pending_open : slot->last_bar_open_msc;
      if (bar.open_time_msc <= last) return py::none();  // TIME_WENT_BACKWARDS
      slot->epoch = epoch;
      slot->pending_open = bar.open_time_msc;
      bar.slot = slot;
      bars.push_back(bar);
    }
    if (got < 0) return py::none();
    if (bars.empty()) return py::none();  // EMPTY_REQUEST and the like: the Python path words it
    for (const auto& bar : bars) check_fit(*bar.slot);
    std::vector<Due> dues;
    dues.reserve(bars.size());
    for (const auto& bar : bars) {
      Slot& s = *bar.slot;
      const auto period = static_cast<int64_t>(bar.period_s);
      s.last_bar_open_msc = bar.open_time_msc;
      const int64_t end = bar.open_time_msc + period * 1000 - 1;
      if (end > s.last_time_msc) s.last_time_msc = end;
      s.bid = bar.close;
      s.ask = bar.close + bar.spread_mean;
      dues.push_back(Due{&s, bar.open_time_msc, period, bar.open, bar.high, bar.low, bar.close,
                         bar.spread_mean, static_cast<double>(bar.tick_volume), s.bid, s.ask});
    }
    return take(dues, n_rows, want_prices);
  }

  // The tick intake (ADR 0119): a serialised StreamPredictRequest carrying tick batches only, taken
  // whole or not at all, as intake_bars takes bars. Check pass: every batch must hold 1 to
  // `max_ticks` ticks in columns of the lengths StreamState._ticks accepts (packed, each at most
  // once), belong to a symbol of `intake` checked against model `model_seen` whose builder makes
  // bars of `timeframe_s`, and pass _ticks' test for its fast path: every price finite and positive,
  // no bid above its ask, times non-decreasing from the symbol's last tick time, sequences (if any)
  // strictly increasing from its last sequence (a symbol may come in more than one batch). If any
  // does not, nothing changed and None is returned (the Python path words the refusals). Otherwise
  // each batch moves its symbol's watermarks, quote and bar builder as _ticks does, each bar it
  // closes after the symbol's last bar goes in as `take` says, and `take`'s result is returned.
  py::object intake_ticks(Intake& intake, const py::bytes& request, int64_t timeframe_s, int n_rows,
                          int64_t model_seen, Py_ssize_t max_ticks, bool want_prices) const {
    const std::string_view req = bytes_view(request);
    const auto* data = reinterpret_cast<const uint8_t*>(req.data());
    Wire w{data, data + req.size()};
    struct Batch {
      Slot* slot;
      size_t at, n;        // its ticks in the decoded columns
      const uint8_t* vol;  // its packed volumes, or nullptr
    };
    std::vector<Batch> batches;
    std::vector<int64_t> times;
    std::vector<uint64_t> seqs;
    std::vector<double> bids, asks;
    const uint64_t epoch = ++intake.epoch;
    std::string key;
    const uint8_t* b;
    size_t len;
    int got;
    while ((got = next_item(w, kTicksField, kBarsField, b, len)) == 1) {  // bars: the bar intake's
      // One TickBatch: its columns as packed runs (a column given twice or unpacked: the Python path).
      Wire tb{b, b + len};
      std::string_view symbol;
      const uint8_t* col[9] = {};
      size_t col_len[9] = {};
      while (tb.p < tb.end) {
        uint64_t t;
        if (!tb.varint(t)) return py::none();
        const int f = static_cast<int>(t >> 3), fwt = static_cast<int>(t & 7);
        if (f == 1) {
          const uint8_t* s;
          size_t n;
          if (fwt != 2 || !tb.bytes(s, n)) return py::none();
          symbol = std::string_view(reinterpret_cast<const char*>(s), n);
        } else if (f >= 2 && f <= 8) {
          if (fwt != 2 || col[f] != nullptr || !tb.bytes(col[f], col_len[f])) return py::none();
        } else if (!tb.skip(fwt)) {
          return py::none();
        }
      }
      const size_t at = times.size();
      {  // time_msc: varints
        Wire v{col[2], col[2] + col_len[2]};
        uint64_t x;
        while (v.p < v.end) {
          if (!v.varint(x)) return py::none();
          times.push_back(static_cast<int64_t>(x));
        }
      }
      const size_t n = times.size() - at;
      if (n == 0 || static_cast<Py_ssize_t>(n) > max_ticks) return py::none();  // EMPTY_ or OVERSIZED_BATCH
      // bid and ask: n doubles each; last and volume: none or n; flags and sequence: none or n varints.
      auto doubles = [&](int f) { return col_len[f] % 8 == 0 ? col_len[f] / 8 : SIZE_MAX; };
      auto varints = [&](int f) {
        size_t k = 0;
        for (size_t i = 0; i < col_len[f]; ++i) k += (col[f][i] & 0x80) == 0;
        return col_len[f] > 0 && (col[f][col_len[f] - 1] & 0x80) ? SIZE_MAX : k;
      };
      const size_t nl = doubles(5), nv = doubles(6), nfl = varints(7), ns = varints(8);
      if (doubles(3) != n || doubles(4) != n || (nl && nl != n) || (nv && nv != n) || (nfl && nfl != n) ||
          (ns && ns != n))
        return py::none();  // MALFORMED_BATCH
      key.assign(symbol.data(), symbol.size());
      const auto it = intake.slots.find(key);
      if (it == intake.slots.end()) return py::none();
      Slot* slot = it->second.get();
      if (slot->model_seen != model_seen || !slot->bars || slot->bars->timeframe_s != timeframe_s)
        return py::none();
      for (size_t j = 0; j < n; ++j) {
        double bid, ask;
        std::memcpy(&bid, col[3] + 8 * j, 8);  // little-endian hosts only (x86-64, arm64)
        std::memcpy(&ask, col[4] + 8 * j, 8);
        if (!(std::isfinite(bid) && std::isfinite(ask) && bid > 0.0 && ask > 0.0 && bid <= ask))
          return py::none();  // NON_FINITE_PRICE, NON_POSITIVE_PRICE, CROSSED_QUOTE
        bids.push_back(bid);
        asks.push_back(ask);
      }
      const int64_t last_time = slot->epoch == epoch ? slot->pending_time : slot->last_time_msc;
      if (times[at] < last_time) return py::none();  // TIME_WENT_BACKWARDS
      for (size_t j = at + 1; j < at + n; ++j)
        if (times[j] < times[j - 1]) return py::none();
      // Every time at or after last_time (>= -2^62): its bar opens in range; and its bar's close in range.
      if (times[at + n - 1] > std::numeric_limits<int64_t>::max() - slot->bars->p_ms) return py::none();
      const size_t seq_at = seqs.size();
      if (ns) {
        Wire v{col[8], col[8] + col_len[8]};
        uint64_t x;
        while (v.p < v.end) {
          if (!v.varint(x)) return py::none();
          seqs.push_back(x);
        }
        const uint64_t last_seq = slot->epoch == epoch ? slot->pending_seq : slot->last_seq;
        if (seqs[seq_at] <= last_seq) return py::none();  // DUPLICATE_SEQUENCE
        for (size_t j = seq_at + 1; j < seqs.size(); ++j)
          if (seqs[j] <= seqs[j - 1]) return py::none();
      }
      if (slot->epoch != epoch) slot->pending_seq = slot->last_seq;
      slot->epoch = epoch;
      slot->pending_time = times[at + n - 1];
      if (ns) slot->pending_seq = seqs.back();
      batches.push_back(Batch{slot, at, n, nv ? col[6] : nullptr});
    }
    if (got < 0) return py::none();
    if (batches.empty()) return py::none();  // EMPTY_REQUEST and the like: the Python path words it
    for (const auto& bt : batches) check_fit(*bt.slot);
    std::vector<Due> dues;
    for (const auto& bt : batches) {
      Slot& s = *bt.slot;
      TickBars& builder = *s.bars;
      const size_t last = bt.at + bt.n - 1;
      s.last_time_msc = times[last];
      s.bid = bids[last];
      s.ask = asks[last];
      TickBars::Closed bar;
      for (size_t j = bt.at; j <= last; ++j) {
        double vol = 0.0;
        if (bt.vol != nullptr) std::memcpy(&vol, bt.vol + 8 * (j - bt.at), 8);
        if (!builder.add(times[j], bids[j], asks[j], vol, bar)) continue;
        if (bar.open_ms <= s.last_bar_open_msc) continue;  // that period already came as a Bar: never twice
        s.last_bar_open_msc = bar.open_ms;
        dues.push_back(Due{&s, bar.open_ms, builder.timeframe_s, bar.o, bar.h, bar.l, bar.c,
                           bar.spread_mean(), static_cast<double>(bar.n), bids[j], asks[j]});
      }
    }
    for (const auto& bt : batches) bt.slot->last_seq = bt.slot->pending_seq;  // the check pass's last
    return take(dues, n_rows, want_prices);
  }

  // The predictions of one model run as StreamPredictResponse bytes (field 2, repeated Prediction;
  // ADR 0110): per input i, the Prediction `shared` (its serialised fields every prediction of the
  // request has: model, request id, hops) followed by symbols[i] (field 1), times_msc[i] (field 2)
  // and outputs[i] (field 5, packed float). Field order does not matter to a protobuf parser, and
  // the shared repeated fields (hops) keep their order, so this parses as the same messages as one
  // built field by field; the caller merges the bytes into the response.
  py::bytes prediction_bytes(
      const py::bytes& shared, const py::list& symbols, const py::list& times_msc,
      const py::array_t<float, py::array::c_style | py::array::forcecast>& outputs) const {
    const std::string_view tmpl = bytes_view(shared);
    const Py_ssize_t m = py::len(symbols);
    if (py::len(times_msc) != static_cast<size_t>(m))
      throw std::invalid_argument("symbols and times differ in length");
    if (outputs.ndim() != 2 || outputs.shape(0) != m)
      throw std::invalid_argument("outputs must be (len(symbols), k)");
    const auto k = static_cast<size_t>(outputs.shape(1));
    const float* out = outputs.data();
    std::string buf;
    buf.reserve(static_cast<size_t>(m) * (tmpl.size() + 48 + 4 * k));
    std::string body;
    for (Py_ssize_t i = 0; i < m; ++i) {
      const std::string_view sym = list_str(symbols, i);
      const int64_t t = list_int64(times_msc, i);
      body.assign(tmpl);
      body.push_back(0x0A);  // symbol = 1, length-delimited
      varint(body, sym.size());
      body.append(sym);
      body.push_back(0x10);  // time_msc = 2, varint (int64: two's complement)
      varint(body, static_cast<uint64_t>(t));
      if (k > 0) {
        body.push_back(0x2A);  // outputs = 5, packed floats
        varint(body, 4 * k);
        body.append(reinterpret_cast<const char*>(out + static_cast<size_t>(i) * k),
                    4 * k);  // little-endian hosts
      }
      buf.push_back(0x12);  // StreamPredictResponse.predictions = 2
      varint(buf, body.size());
      buf += body;
    }
    return py::bytes(buf);
  }

  // One model run's signals as NATS PUB frames (ADR 0112): per input i, "PUB <prefix>.<symbol> <n>\r\n",
  // the kairos.inference.v1.Signal's n bytes and "\r\n". The bytes are the signal's own fields
  // (symbol 1, time_msc 2, direction 3, strength 4, outputs 7, bid 9, ask 10, realised_vol 11; a zero
  // scalar left out, as proto3 does), then `shared` (what every signal of the run has: model name
  // and version, the hops, the policy) and `tail` (the send hop, appended after the shared hops, as
  // the Python path appends it). kairos.inference.signals.signals_for is the definition: direction
  // = directions[argmax of the outputs] (the first maximum; directions[1] without outputs),
  // strength = outputs[2] - outputs[0] with three outputs, else 0.
  py::bytes signal_frames(const py::bytes& prefix, const py::bytes& shared, const py::bytes& tail,
                          const py::list& symbols, const py::list& times_msc,
                          const py::array_t<float, py::array::c_style | py::array::forcecast>& outputs,
                          const py::list& bids, const py::list& asks, const py::list& vols,
                          const std::vector<int>& directions) const {
    std::string_view pre = bytes_view(prefix), sh = bytes_view(shared), tl = bytes_view(tail);
    const Py_ssize_t m = py::len(symbols);
    if (py::len(times_msc) != static_cast<size_t>(m) || py::len(bids) != static_cast<size_t>(m) ||
        py::len(asks) != static_cast<size_t>(m) || py::len(vols) != static_cast<size_t>(m))
      throw std::invalid_argument("symbols, times, bids, asks and vols differ in length");
    if (outputs.ndim() != 2 || outputs.shape(0) != m)
      throw std::invalid_argument("outputs must be (len(symbols), k)");
    if (directions.size() != 3) throw std::invalid_argument("directions must be (down, flat, up)");
    const auto k = static_cast<size_t>(outputs.shape(1));
    const float* out = outputs.data();
    auto fixed64 = [](std::string& b, char tag, double v) {
      uint64_t bits;
      std::memcpy(&bits, &v, 8);
      if (bits == 0) return;  // proto3: a zero is not written
      b.push_back(tag);
      b.append(reinterpret_cast<const char*>(&bits), 8);  // little-endian hosts
    };
    std::string buf, body;
    buf.reserve(static_cast<size_t>(m) * (sh.size() + tl.size() + pre.size() + 96 + 4 * k));
    for (Py_ssize_t i = 0; i < m; ++i) {
      const std::string_view sym = list_str(symbols, i);
      const int64_t t = list_int64(times_msc, i);
      const float* o = out + static_cast<size_t>(i) * k;
      size_t best = 1;
      if (k > 0) {
        best = 0;
        for (size_t j = 1; j < k; ++j)
          if (o[j] > o[best]) best = j;  // Python's max: a later value replaces only when greater
      }
      const int direction = best < 3 ? directions[best] : 0;
      const float strength =
          k == 3 ? static_cast<float>(static_cast<double>(o[2]) - static_cast<double>(o[0])) : 0.0f;
      body.clear();
      if (!sym.empty()) {
        body.push_back(0x0A);  // symbol = 1
        varint(body, sym.size());
        body.append(sym);
      }
      if (t != 0) {
        body.push_back(0x10);  // time_msc = 2
        varint(body, static_cast<uint64_t>(t));
      }
      if (direction != 0) {
        body.push_back(0x18);  // direction = 3
        varint(body, static_cast<uint64_t>(static_cast<int64_t>(direction)));
      }
      uint32_t sbits;
      std::memcpy(&sbits, &strength, 4);
      if (sbits != 0) {
        body.push_back(0x25);  // strength = 4, fixed32
        body.append(reinterpret_cast<const char*>(&sbits), 4);
      }
      if (k > 0) {
        body.push_back(0x3A);  // outputs = 7, packed floats
        varint(body, 4 * k);
        body.append(reinterpret_cast<const char*>(o), 4 * k);
      }
      fixed64(body, 0x49, list_double(bids, i));  // bid = 9
      fixed64(body, 0x51, list_double(asks, i));  // ask = 10
      fixed64(body, 0x59, list_double(vols, i));  // realised_vol = 11
      body.append(sh);
      body.append(tl);
      buf.append("PUB ");
      buf.append(pre);
      buf.push_back('.');
      buf.append(sym);
      buf.push_back(' ');
      buf.append(std::to_string(body.size()));
      buf.append("\r\n");
      buf.append(body);
      buf.append("\r\n");
    }
    return py::bytes(buf);
  }

  // Rows (m, n_features) for m windows, each (6, W) or (8, W) (see row()).
  py::array_t<double> rows(const std::vector<Window>& windows) const {
    const int m = static_cast<int>(windows.size());
    const int nf = n_features();
    int W = 0;
    for (const auto& w : windows) {
      if (w.ndim() != 2 || (w.shape(0) != 6 && w.shape(0) != 8))
        throw std::invalid_argument("each window must be (6, W) or (8, W)");
      if (W == 0) W = static_cast<int>(w.shape(1));
      if (w.shape(1) != W) throw std::invalid_argument("windows differ in length");
    }
    if (m > 0 && W < needs()) throw std::invalid_argument("windows are shorter than the schema's lookbacks");
    py::array_t<double> out({m, nf});
    double* o = out.mutable_data();
    std::vector<const double*> data(m);
    std::vector<bool> cached(m);
    for (int i = 0; i < m; ++i) {
      data[i] = windows[i].data();
      cached[i] = windows[i].shape(0) == 8;
    }
    std::vector<double> lc(W), r1(W > 0 ? W - 1 : 0), tmp(W);
    // The GIL stays held: a call is a few microseconds, and releasing it would let the gRPC poller
    // thread take it and make the event loop wait for it back.
    for (int i = 0; i < m; ++i) row(data[i], W, W, cached[i], o + static_cast<size_t>(i) * nf, lc, r1, tmp);
    return out;
  }
};

// The drift monitor's per-row work (ADR 0111; kairos.features.drift.DriftMonitor is the definition
// and keeps a numpy path the tests hold this to). Each row's DI (its z-score distance to the
// training mean over the features with a spread, divided by the training rows' mean distance), and
// the PSI window's running bin counts: a row's bin per feature is the number of training edges at
// or below its value (numpy's searchsorted, side right; -1 when not finite), and the counts move by
// the rows that enter the window and the ones they push out.
class DriftTally {
 public:
  using Rows = py::array_t<double, py::array::c_style | py::array::forcecast>;

  // edges: (features, bins - 1), each feature's edges padded with +inf (no finite value reaches
  // one); mean and std per feature; std <= 0 leaves the feature out of the DI.
  DriftTally(const Rows& edges, int window, const Rows& mean, const Rows& stdev, double mean_distance)
      : window_(window), mean_distance_(mean_distance) {
    if (edges.ndim() != 2) throw std::invalid_argument("edges must be (features, bins - 1)");
    if (window <= 0) throw std::invalid_argument("window must be positive");
    nf_ = static_cast<int>(edges.shape(0));
    ne_ = static_cast<int>(edges.shape(1));
    if (ne_ >= std::numeric_limits<int16_t>::max()) throw std::invalid_argument("too many bin edges");
    if (mean.ndim() != 1 || stdev.ndim() != 1 || mean.shape(0) != nf_ || stdev.shape(0) != nf_)
      throw std::invalid_argument("mean and std must have one value per feature");
    // Stored edge-major, (bins - 1, features): a row's values compare against one edge of every
    // feature at a time, which the compiler vectorises.
    edges_.resize(static_cast<size_t>(nf_) * ne_);
    for (int j = 0; j < nf_; ++j)
      for (int k = 0; k < ne_; ++k)
        edges_[static_cast<size_t>(k) * nf_ + j] = edges.data()[static_cast<size_t>(j) * ne_ + k];
    row_bins_.resize(nf_);
    for (int j = 0; j < nf_; ++j) {
      if (stdev.data()[j] > 0) {
        use_.push_back(j);
        mean_.push_back(mean.data()[j]);
        std_.push_back(stdev.data()[j]);
      }
    }
    bins_.assign(static_cast<size_t>(window) * nf_, -1);
    counts_.assign(static_cast<size_t>(nf_) * (ne_ + 1), 0);
  }

  // DI of each row (m, features); the last `window` rows enter the PSI window.
  py::array_t<double> observe(const Rows& rows) {
    if (rows.ndim() != 2 || rows.shape(1) != nf_)
      throw std::invalid_argument("rows must be (m, " + std::to_string(nf_) + ")");
    const py::ssize_t m = rows.shape(0);
    const double* x = rows.data();
    py::array_t<double> out(m);
    double* d = out.mutable_data();
    const size_t nu = use_.size();
    const int* use = use_.data();
    const double *mu = mean_.data(), *sd = std_.data();
    for (py::ssize_t i = 0; i < m; ++i) {
      const double* r = x + static_cast<size_t>(i) * nf_;
      double s = 0.0;
      for (size_t k = 0; k < nu; ++k) {
        const double z = (r[use[k]] - mu[k]) / sd[k];
        s += z * z;
      }
      d[i] = std::sqrt(s) / mean_distance_;
    }
    // Locals, not members, in the loops: a store through an int* may alias an int member, and the
    // compiler would reload it on every iteration.
    const int nf = nf_, ne = ne_, nb = ne_ + 1, window = window_;
    const double* edges = edges_.data();
    double* rb = row_bins_.data();
    int64_t* counts = counts_.data();
    int64_t n = n_;
    for (py::ssize_t i = std::max<py::ssize_t>(0, m - window); i < m; ++i, ++n) {
      const double* r = x + static_cast<size_t>(i) * nf;
      int16_t* slot = bins_.data() + static_cast<size_t>(n % window) * nf;
      for (int j = 0; j < nf; ++j) rb[j] = 0.0;
      for (int k = 0; k < ne; ++k) {
        const double* e = edges + static_cast<size_t>(k) * nf;
        for (int j = 0; j < nf; ++j) rb[j] += r[j] >= e[j] ? 1.0 : 0.0;
      }
      for (int j = 0; j < nf; ++j) {
        const int b = std::isfinite(r[j]) ? static_cast<int>(rb[j]) : -1;
        const int old = slot[j];
        if (old == b) continue;  // the row it replaces had the same bin: the counts stay
        if (old >= 0) --counts[static_cast<size_t>(j) * nb + old];
        if (b >= 0) ++counts[static_cast<size_t>(j) * nb + b];
        slot[j] = static_cast<int16_t>(b);
      }
    }
    n_ = n;
    return out;
  }

  // The window's count per (feature, bin), a copy.
  py::array_t<int64_t> counts() const {
    py::array_t<int64_t> out({static_cast<py::ssize_t>(nf_), static_cast<py::ssize_t>(ne_ + 1)});
    std::copy(counts_.begin(), counts_.end(), out.mutable_data());
    return out;
  }

  int64_t n() const { return n_; }

 private:
  int nf_ = 0, ne_ = 0, window_;
  double mean_distance_;
  int64_t n_ = 0;  // rows that entered the window so far
  std::vector<double> edges_;
  std::vector<int> use_;
  std::vector<double> mean_, std_;
  std::vector<int16_t> bins_;     // (window, features): each held row's bin per feature
  std::vector<double> row_bins_;  // scratch: one row's count of edges at or below, per feature
                                  // (double, so the comparisons vectorise)
  std::vector<int64_t> counts_;
};

}  // namespace

void bind_idle_spin(py::module_& mod);  // idle_spin.cpp (ADR 0123)

PYBIND11_MODULE(kairos_features_ext, mod) {
  mod.doc() = "kairos.features' kernel for the inference server's stacked bar windows (ADR 0100)";
  py::class_<BarWindows, std::shared_ptr<BarWindows>>(mod, "BarWindows")
      .def(py::init<int>(), py::arg("window"))
      .def_readonly("count", &BarWindows::count)
      .def("push", &BarWindows::push, py::arg("open_time_msc"), py::arg("high"), py::arg("low"),
           py::arg("close"), py::arg("spread_mean"), py::arg("tick_volume"),
           "Add a closed bar; True once the window holds W bars.")
      .def("array", &BarWindows::array, "The latest window as a (8, W) float64 array (a copy).");
  py::class_<RowRing, std::shared_ptr<RowRing>>(mod, "RowRing")
      .def(py::init<int, int>(), py::arg("capacity"), py::arg("n_features"))
      .def_readonly("capacity", &RowRing::capacity)
      .def_readonly("count", &RowRing::count);
  py::class_<TickBars, std::shared_ptr<TickBars>>(mod, "TickBars")
      .def(py::init<int64_t, double, py::object>(), py::arg("timeframe_s"), py::arg("point"),
           py::arg("bar_type"))
      .def_readonly("timeframe_s", &TickBars::timeframe_s)
      .def_readonly("point", &TickBars::point)
      .def_readonly("late_ticks", &TickBars::late_ticks)
      .def("add_tick", &TickBars::add_tick, py::arg("time_msc"), py::arg("bid"), py::arg("ask"),
           py::arg("volume") = 0.0, "BarBuilder.add_tick: the bars the tick closed (0 or 1).")
      .def("add_ticks", &TickBars::add_ticks, py::arg("times"), py::arg("bids"), py::arg("asks"),
           py::arg("volumes") = py::none(), "BarBuilder.add_ticks: (bar, j) per bar closed.")
      .def("flush", &TickBars::flush, "BarBuilder.flush: close the open bar now.")
      .def(
          "state",
          [](const TickBars& b) {
            return py::make_tuple(b.open ? py::cast(b.open_ms) : py::none(), b.o, b.h, b.l, b.c, b.n,
                                  b.spread_sum, b.spread_max, b.volume, b.late_ticks);
          },
          "(open bar's ms or None, open, high, low, close, ticks, spread sum, spread max, volume, "
          "late ticks), as BarBuilder's fields, for tests.");
  py::class_<Slot, std::shared_ptr<Slot>>(mod, "Slot")
      .def(py::init<py::object, std::shared_ptr<BarWindows>, std::shared_ptr<RowRing>,
                    std::shared_ptr<TickBars>>(),
           py::arg("symbol"), py::arg("windows"), py::arg("ring"), py::arg("bars") = nullptr)
      .def_readonly("symbol", &Slot::symbol)
      .def_readonly("windows", &Slot::windows)
      .def_readonly("bars", &Slot::bars)
      .def_readwrite("ring", &Slot::ring)
      .def_readwrite("last_seq", &Slot::last_seq)
      .def_readwrite("last_bar_open_msc", &Slot::last_bar_open_msc)
      .def_readwrite("last_time_msc", &Slot::last_time_msc)
      .def_readwrite("bid", &Slot::bid)
      .def_readwrite("ask", &Slot::ask)
      .def_readwrite("model_seen", &Slot::model_seen);
  py::class_<DriftTally>(mod, "DriftTally")
      .def(py::init<const DriftTally::Rows&, int, const DriftTally::Rows&, const DriftTally::Rows&, double>(),
           py::arg("edges"), py::arg("window"), py::arg("mean"), py::arg("std"), py::arg("mean_distance"))
      .def("observe", &DriftTally::observe, py::arg("rows"),
           "DI of each row of rows (m, features); the last `window` rows enter the PSI window's counts.")
      .def("counts", &DriftTally::counts, "The PSI window's count per (feature, bin), a copy.")
      .def_property_readonly("n", &DriftTally::n);
  py::class_<Intake>(mod, "Intake")
      .def(py::init<>())
      .def("add", &Intake::add, py::arg("symbol"), py::arg("slot"))
      .def("remove", &Intake::remove, py::arg("symbol"))
      .def("clear", &Intake::clear)
      .def("__len__", &Intake::size);
  py::class_<Kernel>(mod, "Kernel")
      .def(py::init([](std::vector<int> horizons, std::vector<int> vol_windows, int long_window,
                       int range_window, std::vector<int> channel_windows, int momentum_window,
                       std::vector<int> trend_windows, int spread_vol_window, int activity_window) {
             if (vol_windows.empty() || vol_windows.size() > 16 || horizons.empty())
               throw std::invalid_argument("empty lookbacks");
             Kernel k{std::move(horizons),
                      std::move(vol_windows),
                      std::move(channel_windows),
                      std::move(trend_windows),
                      long_window,
                      range_window,
                      momentum_window,
                      spread_vol_window,
                      activity_window,
                      {},
                      {}};
             k.prepare();
             return k;
           }),
           py::arg("return_horizons"), py::arg("vol_windows"), py::arg("long_window"),
           py::arg("range_window"), py::arg("channel_windows"), py::arg("momentum_window"),
           py::arg("trend_windows"), py::arg("spread_vol_window"), py::arg("activity_window"))
      .def_property_readonly("n_features", &Kernel::n_features)
      .def("inputs", &Kernel::inputs, py::arg("rings"), py::arg("ready"), py::arg("rows"), py::arg("n_rows"),
           "Append a request's feature rows to their symbols' RowRings (ready[i] False: ring i restarts) "
           "and copy the model inputs due: (x (k, n_rows, n_features) float32, due: list[bool] per bar).")
      .def("push_rows", &Kernel::push_rows, py::arg("windows"), py::arg("bars"),
           "Push bars[i] = (open time ms, high, low, close, spread_mean, tick_volume) into the BarWindows "
           "windows[i], in order; returns (rows (k, n_features) of the bars whose window was full, "
           "ready: list[bool] per bar).")
      .def_property_readonly("window", &Kernel::needs)
      .def("signal_frames", &Kernel::signal_frames, py::arg("prefix"), py::arg("shared"), py::arg("tail"),
           py::arg("symbols"), py::arg("times_msc"), py::arg("outputs"), py::arg("bids"), py::arg("asks"),
           py::arg("vols"), py::arg("directions"),
           "One model run's signals as NATS PUB frames to <prefix>.<symbol> (ADR 0112).")
      .def("prediction_bytes", &Kernel::prediction_bytes, py::arg("shared"), py::arg("symbols"),
           py::arg("times_msc"), py::arg("outputs"),
           "The predictions of one model run as StreamPredictResponse field-2 bytes (ADR 0110).")
      .def("intake_bars", &Kernel::intake_bars, py::arg("intake"), py::arg("request"), py::arg("timeframe_s"),
           py::arg("n_rows"), py::arg("model_seen"), py::arg("max_bars"), py::arg("want_prices") = true,
           "Take a serialised bars-only StreamPredictRequest whole (ADR 0110), or None (nothing changed): "
           "(bars taken, x, symbols, times_msc, bids, asks, prices); prices empty unless want_prices.")
      .def("intake_ticks", &Kernel::intake_ticks, py::arg("intake"), py::arg("request"),
           py::arg("timeframe_s"), py::arg("n_rows"), py::arg("model_seen"), py::arg("max_ticks"),
           py::arg("want_prices") = true,
           "Take a serialised ticks-only StreamPredictRequest whole (ADR 0119), or None (nothing changed): "
           "(bars taken, x, symbols, times_msc, bids, asks, prices) as intake_bars.")
      .def("rows", &Kernel::rows, py::arg("windows"),
           "Feature rows (m, n_features) for a sequence of windows (6, W) or (8, W) float64 (a stacked "
           "(m, rows, W) array works too).");
  bind_idle_spin(mod);
}
