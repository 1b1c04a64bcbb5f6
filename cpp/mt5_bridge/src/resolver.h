// Name resolution off the network thread. getaddrinfo cannot be given a timeout or cancelled, so
// the network thread never calls it: each channel whose endpoint is a name (not a dotted IPv4
// address) gets a Resolver, whose own thread does the lookup and wakes the network thread when it
// is done. A slow lookup of one endpoint then delays only that channel's connect, never the other
// channel's heartbeats, and kb_close waits for a stuck lookup only briefly: the thread is then
// detached with the module pinned, so unloading the DLL cannot pull code from under it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "net.h"

namespace kairos::bridge {

// A name lookup: true with *out set, or false with *error. Blocking is allowed.
using ResolveFn =
    std::function<bool(const std::string& host, uint16_t port, sockaddr_in* out, std::string* error)>;

// Replaces net::ResolveIPv4 for Resolvers created afterwards (tests: a slow or failing lookup);
// nullptr restores it.
void SetResolveFnForTesting(ResolveFn fn);

class Resolver {
 public:
  enum class Result { kReady, kPending, kFailed };

  // wake is called from the lookup thread when a lookup finished, never after Stop has returned.
  Resolver(std::string host, uint16_t port, std::function<void()> wake);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Network thread: the address when known (kReady); otherwise starts a lookup if none runs and
  // returns kPending; kFailed once per failed lookup, with *error (the next call looks up again).
  Result Lookup(sockaddr_in* out, std::string* error);
  // Forgets a known address, so the next Lookup asks again (after a failed connect: DNS changes).
  void Invalidate();
  // Stops the lookup thread, waiting at most wait_ms for a lookup in progress; a lookup still
  // running after that is left to finish on its own (detached). Idempotent. Returns false then.
  bool Stop(int wait_ms);

 private:
  struct Shared;
  std::shared_ptr<Shared> s_;
  std::thread thread_;
};

}  // namespace kairos::bridge
