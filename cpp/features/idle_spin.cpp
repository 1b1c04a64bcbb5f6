// IdleSpin: a thread that keeps the inference server's CPU from going idle (ADR 0123).
//
// On a VM whose idle CPUs halt, a CPU that waits for the next request is taken away by the host, and
// the first work after it comes back pays a wake-up and cold caches (docs/benchmarks.md: one ONNX
// Runtime run of the fixture model 20 ms after the last one, 484 us; with this thread on the same CPU,
// 24 us). The thread runs under SCHED_IDLE, so it runs only when nothing else on its CPU wants to: any
// thread of the server that wakes takes the CPU at once. It belongs to the server's process, so
// handing the CPU back is a switch between threads of one address space, not between processes.
//
// It spins on one atomic flag with a pause hint (the flag's cache line is its only memory traffic),
// never takes the GIL and never calls into Python. It is started and stopped by the server
// (kairos.inference.server); the thread is named "kairos-idlespin" for top -H and perf.
#include <pthread.h>
#include <pybind11/pybind11.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

namespace py = pybind11;

namespace {

inline void pause_hint() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class IdleSpin {
 public:
  IdleSpin() = default;
  IdleSpin(const IdleSpin&) = delete;
  IdleSpin& operator=(const IdleSpin&) = delete;
  ~IdleSpin() { stop(); }

  // Starts the thread; returns once it runs under SCHED_IDLE. Throws (and leaves nothing running) when
  // the thread cannot be made SCHED_IDLE: a spinner at normal priority would take the CPU from the
  // server it is meant to serve. A second start while running does nothing.
  void start() {
    if (thread_.joinable()) return;
    stop_.store(false, std::memory_order_relaxed);
    std::promise<int> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, ready = std::move(ready)]() mutable {
      pthread_setname_np(pthread_self(), "kairos-idlespin");
      tid_ = static_cast<long>(syscall(SYS_gettid));
      sched_param param{};
      // pid 0 is the calling thread on Linux: only this thread becomes SCHED_IDLE.
      if (sched_setscheduler(0, SCHED_IDLE, &param) != 0) {
        ready.set_value(errno);
        return;
      }
      ready.set_value(0);
      while (!stop_.load(std::memory_order_relaxed)) pause_hint();
    });
    int err = started.get();
    if (err != 0) {
      thread_.join();
      throw std::runtime_error(std::string("cannot make the idle spin thread SCHED_IDLE: ") +
                               std::strerror(err));
    }
  }

  // Stops and joins the thread (returns at once when it is not running).
  void stop() {
    if (!thread_.joinable()) return;
    stop_.store(true, std::memory_order_relaxed);
    thread_.join();
  }

  bool running() const { return thread_.joinable(); }

  // The thread's kernel id while it runs (tests read its scheduling policy by it), else 0.
  long tid() const { return thread_.joinable() ? tid_ : 0; }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
  long tid_ = 0;
};

}  // namespace

void bind_idle_spin(py::module_& mod) {
  py::class_<IdleSpin>(mod, "IdleSpin")
      .def(py::init<>())
      .def("start", &IdleSpin::start, py::call_guard<py::gil_scoped_release>(),
           "Start the SCHED_IDLE spinning thread (returns once it runs under SCHED_IDLE; raises "
           "RuntimeError when it cannot be).")
      .def("stop", &IdleSpin::stop, py::call_guard<py::gil_scoped_release>(), "Stop and join it.")
      .def_property_readonly("running", &IdleSpin::running)
      .def_property_readonly("tid", &IdleSpin::tid, "The thread's kernel id while it runs, else 0.");
}
