// Thin portable layer over BSD sockets and Winsock: non-blocking TCP client sockets, a self-addressed
// UDP socket used to wake the network thread, and select() with a millisecond timeout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#if defined(_WIN32)
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <netinet/in.h>
#include <sys/select.h>
#endif

namespace kairos::bridge::net {

#if defined(_WIN32)
using Socket = SOCKET;
constexpr Socket kInvalid = INVALID_SOCKET;
#else
using Socket = int;
constexpr Socket kInvalid = -1;
#endif

bool Init();  // WSAStartup once on Windows; true elsewhere
void Close(Socket s);
std::string LastErrorText();

// Splits "host:port"; false when malformed.
bool ParseEndpoint(const std::string& endpoint, std::string* host, uint16_t* port);

// host as a dotted IPv4 address (no name lookup, never blocks); false when it is a name.
bool ParseIPv4(const std::string& host, uint16_t port, sockaddr_in* out);
// Looks host up with getaddrinfo (IPv4). Blocks for as long as the system resolver takes, so only
// the resolver thread (resolver.h) calls it, never the network thread.
bool ResolveIPv4(const std::string& host, uint16_t port, sockaddr_in* out, std::string* error);

// Starts a non-blocking connect to a resolved address. Returns the socket (kInvalid on immediate
// failure, with *error set); *in_progress says the connection completes later (wait for
// writability, then ConnectResult).
Socket StartConnect(const sockaddr_in& addr, bool* in_progress, std::string* error);
// After writability: 0 when connected, otherwise the socket error code.
int ConnectResult(Socket s);

// Non-blocking I/O. Return bytes moved, 0 when it would block, -1 on error or (recv) peer closed.
long Send(Socket s, const uint8_t* data, size_t len);
long Recv(Socket s, uint8_t* data, size_t len);

// A UDP socket connected to itself: Wake() makes it readable, Drain() empties it.
class Waker {
 public:
  bool Open();
  void Wake();
  void Drain();
  void Shutdown();
  Socket fd() const { return fd_; }

 private:
  Socket fd_ = kInvalid;
};

// select() over the given sockets, waiting at most timeout_us; returns false on error. Sets the
// readable/writable flags.
struct PollItem {
  Socket fd;
  bool want_read;
  bool want_write;
  bool readable;
  bool writable;
};
bool Poll(std::vector<PollItem>* items, int64_t timeout_us);

}  // namespace kairos::bridge::net
