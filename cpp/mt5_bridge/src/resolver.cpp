#include "resolver.h"

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace kairos::bridge {

namespace {

std::mutex g_fn_mu;
ResolveFn g_fn;  // test override, guarded by g_fn_mu

// Keeps this module loaded for the life of the process: a detached lookup thread returns into its
// code when getaddrinfo finally answers. (GetModuleHandleEx PIN on Windows, RTLD_NODELETE elsewhere.)
void PinModule() {
#if defined(_WIN32)
  HMODULE h = nullptr;
  GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_PIN,
                     reinterpret_cast<LPCWSTR>(&PinModule), &h);
#else
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&PinModule), &info) != 0 && info.dli_fname != nullptr)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
#endif
}

}  // namespace

void SetResolveFnForTesting(ResolveFn fn) {
  std::lock_guard<std::mutex> lock(g_fn_mu);
  g_fn = std::move(fn);
}

struct Resolver::Shared {
  std::mutex mu;
  std::condition_variable cv;
  enum class St { kIdle, kWanted, kBusy, kDone, kFailed } st = St::kIdle;
  bool stop = false;
  bool exited = false;
  std::string host;
  uint16_t port = 0;
  sockaddr_in addr{};
  std::string error;
  ResolveFn fn;
  std::function<void()> wake;
};

Resolver::Resolver(std::string host, uint16_t port, std::function<void()> wake)
    : s_(std::make_shared<Shared>()) {
  s_->host = std::move(host);
  s_->port = port;
  s_->wake = std::move(wake);
  {
    std::lock_guard<std::mutex> lock(g_fn_mu);
    s_->fn = g_fn;
  }
  if (!s_->fn) s_->fn = net::ResolveIPv4;
}

Resolver::~Resolver() { Stop(0); }

Resolver::Result Resolver::Lookup(sockaddr_in* out, std::string* error) {
  std::unique_lock<std::mutex> lock(s_->mu);
  switch (s_->st) {
    case Shared::St::kDone:
      *out = s_->addr;
      return Result::kReady;
    case Shared::St::kFailed:
      *error = s_->error;
      s_->st = Shared::St::kIdle;
      return Result::kFailed;
    case Shared::St::kWanted:
    case Shared::St::kBusy:
      return Result::kPending;
    case Shared::St::kIdle:
      break;
  }
  if (s_->stop) return Result::kPending;
  s_->st = Shared::St::kWanted;
  if (!thread_.joinable()) {
    // The thread holds its own reference to the shared state: if it is detached at Stop, nothing
    // it touches is freed under it.
    std::shared_ptr<Shared> s = s_;
    thread_ = std::thread([s] {
      std::unique_lock<std::mutex> lk(s->mu);
      for (;;) {
        s->cv.wait(lk, [&] { return s->stop || s->st == Shared::St::kWanted; });
        if (s->stop) break;
        s->st = Shared::St::kBusy;
        const std::string host = s->host;
        const uint16_t port = s->port;
        lk.unlock();
        sockaddr_in addr{};
        std::string err;
        bool ok = false;
        try {
          ok = s->fn(host, port, &addr, &err);
        } catch (...) {
          err = "name lookup failed";
        }
        lk.lock();
        if (s->stop) break;
        s->st = ok ? Shared::St::kDone : Shared::St::kFailed;
        s->addr = addr;
        s->error = err;
        if (s->wake) s->wake();  // under the lock: Stop cannot complete in between
      }
      s->exited = true;
      s->cv.notify_all();
    });
  } else {
    s_->cv.notify_all();
  }
  return Result::kPending;
}

void Resolver::Invalidate() {
  std::lock_guard<std::mutex> lock(s_->mu);
  if (s_->st == Shared::St::kDone) s_->st = Shared::St::kIdle;
}

bool Resolver::Stop(int wait_ms) {
  if (!thread_.joinable()) return true;
  bool exited;
  {
    std::unique_lock<std::mutex> lock(s_->mu);
    s_->stop = true;
    s_->wake = nullptr;
    s_->cv.notify_all();
    exited = s_->cv.wait_for(lock, std::chrono::milliseconds(wait_ms > 0 ? wait_ms : 0),
                             [&] { return s_->exited; });
  }
  if (exited) {
    thread_.join();
    return true;
  }
  PinModule();
  thread_.detach();
  return false;
}

}  // namespace kairos::bridge
