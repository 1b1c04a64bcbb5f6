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
#include <limits>
#include <stdexcept>
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

// numpy's min/max propagate NaN. No early exit, so the loop has no branch to stop it vectorising.
double nanmin(const double* x, int n) {
  double m = x[0];
  bool nan = false;
  for (int i = 0; i < n; ++i) {
    nan |= std::isnan(x[i]);
    m = x[i] < m ? x[i] : m;
  }
  return nan ? kNaN : m;
}
double nanmax(const double* x, int n) {
  double m = x[0];
  bool nan = false;
  for (int i = 0; i < n; ++i) {
    nan |= std::isnan(x[i]);
    m = x[i] > m ? x[i] : m;
  }
  return nan ? kNaN : m;
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
    for (int r = 0; r < kRows; ++r) {
      buf[r * stride + pos] = col[r];
      buf[r * stride + pos + W] = col[r];
    }
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

double item_double(PyObject* seq, Py_ssize_t i) {
  const double v = PyFloat_AsDouble(PyTuple_GET_ITEM(seq, i));
  if (v == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return v;
}

struct Kernel {
  std::vector<int> horizons, vol_windows, channel_windows, trend_windows;
  int long_window, range_window, momentum_window, spread_vol_window, activity_window;

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
    const auto t = static_cast<int64_t>(tm[W - 1]);
    const double day = static_cast<double>(floor_mod(t, kMsPerDay)) / kMsPerDay * kTwoPi;
    const double week =
        static_cast<double>(floor_mod(t + kEpochWeekdayOffsetMs, kMsPerWeek)) / kMsPerWeek * kTwoPi;
    o[c++] = std::sin(day);
    o[c++] = std::cos(day);
    o[c++] = std::sin(week);
    o[c++] = std::cos(week);
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
      if (full) row(w.window(), w.W, 2 * w.W, true, rows.data() + static_cast<size_t>(k++) * nf, lc, r1, tmp);
    }
    py::array_t<double> out({static_cast<py::ssize_t>(k), static_cast<py::ssize_t>(nf)});
    std::copy_n(rows.data(), static_cast<size_t>(k) * nf, out.mutable_data());
    return py::make_tuple(out, ready);
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

}  // namespace

PYBIND11_MODULE(kairos_features_ext, mod) {
  mod.doc() = "kairos.features' kernel for the inference server's stacked bar windows (ADR 0100)";
  py::class_<BarWindows>(mod, "BarWindows")
      .def(py::init<int>(), py::arg("window"))
      .def_readonly("count", &BarWindows::count)
      .def("push", &BarWindows::push, py::arg("open_time_msc"), py::arg("high"), py::arg("low"),
           py::arg("close"), py::arg("spread_mean"), py::arg("tick_volume"),
           "Add a closed bar; True once the window holds W bars.")
      .def("array", &BarWindows::array, "The latest window as a (8, W) float64 array (a copy).");
  py::class_<RowRing>(mod, "RowRing")
      .def(py::init<int, int>(), py::arg("capacity"), py::arg("n_features"))
      .def_readonly("capacity", &RowRing::capacity)
      .def_readonly("count", &RowRing::count);
  py::class_<Kernel>(mod, "Kernel")
      .def(py::init([](std::vector<int> horizons, std::vector<int> vol_windows, int long_window,
                       int range_window, std::vector<int> channel_windows, int momentum_window,
                       std::vector<int> trend_windows, int spread_vol_window, int activity_window) {
             if (vol_windows.empty() || vol_windows.size() > 16 || horizons.empty())
               throw std::invalid_argument("empty lookbacks");
             return Kernel{std::move(horizons),
                           std::move(vol_windows),
                           std::move(channel_windows),
                           std::move(trend_windows),
                           long_window,
                           range_window,
                           momentum_window,
                           spread_vol_window,
                           activity_window};
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
      .def("rows", &Kernel::rows, py::arg("windows"),
           "Feature rows (m, n_features) for a sequence of windows (6, W) or (8, W) float64 (a stacked "
           "(m, rows, W) array works too).");
}
