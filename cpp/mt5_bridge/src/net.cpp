#include "net.h"

#include <cstring>
#include <mutex>

#if defined(_WIN32)
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace kairos::bridge::net {

namespace {

int LastError() {
#if defined(_WIN32)
  return WSAGetLastError();
#else
  return errno;
#endif
}

bool WouldBlock(int err) {
#if defined(_WIN32)
  return err == WSAEWOULDBLOCK || err == WSAEINPROGRESS;
#else
  return err == EAGAIN || err == EWOULDBLOCK || err == EINPROGRESS || err == EINTR;
#endif
}

bool SetNonBlocking(Socket s) {
#if defined(_WIN32)
  u_long on = 1;
  return ioctlsocket(s, FIONBIO, &on) == 0;
#else
  int flags = fcntl(s, F_GETFL, 0);
  return flags >= 0 && fcntl(s, F_SETFL, flags | O_NONBLOCK) == 0;
#endif
}

}  // namespace

bool Init() {
#if defined(_WIN32)
  static std::once_flag once;
  static bool ok = false;
  std::call_once(once, [] {
    WSADATA data;
    ok = WSAStartup(MAKEWORD(2, 2), &data) == 0;
  });
  return ok;
#else
  return true;
#endif
}

void Close(Socket s) {
  if (s == kInvalid) return;
#if defined(_WIN32)
  closesocket(s);
#else
  ::close(s);
#endif
}

std::string LastErrorText() {
  int err = LastError();
#if defined(_WIN32)
  return "socket error " + std::to_string(err);
#else
  return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")";
#endif
}

bool ParseEndpoint(const std::string& endpoint, std::string* host, uint16_t* port) {
  size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= endpoint.size()) return false;
  unsigned long value = 0;
  for (size_t i = colon + 1; i < endpoint.size(); i++) {
    char c = endpoint[i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned long>(c - '0');
    if (value > 65535) return false;
  }
  if (value == 0) return false;
  *host = endpoint.substr(0, colon);
  *port = static_cast<uint16_t>(value);
  return true;
}

bool ParseIPv4(const std::string& host, uint16_t port, sockaddr_in* out) {
  std::memset(out, 0, sizeof(*out));
  out->sin_family = AF_INET;
  out->sin_port = htons(port);
  return inet_pton(AF_INET, host.c_str(), &out->sin_addr) == 1;
}

bool ResolveIPv4(const std::string& host, uint16_t port, sockaddr_in* out, std::string* error) {
  if (ParseIPv4(host, port, out)) return true;
  addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0 || res == nullptr || res->ai_addrlen < sizeof(sockaddr_in)) {
    if (res != nullptr) freeaddrinfo(res);
    *error = "cannot resolve " + host + " (getaddrinfo " + std::to_string(rc) + ")";
    return false;
  }
  std::memcpy(out, res->ai_addr, sizeof(sockaddr_in));
  freeaddrinfo(res);
  return true;
}

Socket StartConnect(const sockaddr_in& addr, bool* in_progress, std::string* error) {
  *in_progress = false;
  Socket s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
  if (s == kInvalid) {
    *error = "socket(): " + LastErrorText();
    return kInvalid;
  }
  int one = 1;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&one), sizeof(one));
  if (!SetNonBlocking(s)) {
    *error = "non-blocking mode: " + LastErrorText();
    Close(s);
    return kInvalid;
  }
  const int rc = connect(s, reinterpret_cast<const sockaddr*>(&addr), static_cast<int>(sizeof(addr)));
  if (rc == 0) return s;
  int err = LastError();
  if (WouldBlock(err)) {
    *in_progress = true;
    return s;
  }
  *error = "connect(): " + LastErrorText();
  Close(s);
  return kInvalid;
}

int ConnectResult(Socket s) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(s, SOL_SOCKET, SO_ERROR, reinterpret_cast<char*>(&err), &len) != 0) return LastError();
  return err;
}

long Send(Socket s, const uint8_t* data, size_t len) {
#if defined(_WIN32)
  int n = ::send(s, reinterpret_cast<const char*>(data), static_cast<int>(len > 1 << 30 ? 1 << 30 : len), 0);
#else
  ssize_t n = ::send(s, data, len, MSG_NOSIGNAL);
#endif
  if (n >= 0) return static_cast<long>(n);
  return WouldBlock(LastError()) ? 0 : -1;
}

long Recv(Socket s, uint8_t* data, size_t len) {
#if defined(_WIN32)
  int n = ::recv(s, reinterpret_cast<char*>(data), static_cast<int>(len), 0);
#else
  ssize_t n = ::recv(s, data, len, 0);
#endif
  if (n > 0) return static_cast<long>(n);
  if (n == 0) return -1;
  return WouldBlock(LastError()) ? 0 : -1;
}

bool Waker::Open() {
  fd_ = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
  if (fd_ == kInvalid) return false;
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || !SetNonBlocking(fd_)) {
    Close(fd_);
    fd_ = kInvalid;
    return false;
  }
  return true;
}

void Waker::Wake() {
  const char b = 1;
#if defined(_WIN32)
  ::send(fd_, &b, 1, 0);
#else
  ::send(fd_, &b, 1, MSG_NOSIGNAL);
#endif
}

void Waker::Drain() {
  char buf[64];
  for (int i = 0; i < 64; i++) {
#if defined(_WIN32)
    int n = ::recv(fd_, buf, sizeof(buf), 0);
#else
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
#endif
    if (n <= 0) break;
  }
}

void Waker::Shutdown() {
  Close(fd_);
  fd_ = kInvalid;
}

bool Poll(std::vector<PollItem>* items, int64_t timeout_us) {
  fd_set rd, wr, ex;
  FD_ZERO(&rd);
  FD_ZERO(&wr);
  FD_ZERO(&ex);
  Socket maxfd = 0;
  for (auto& it : *items) {
    it.readable = it.writable = false;
    if (it.fd == kInvalid) continue;
    if (it.want_read) FD_SET(it.fd, &rd);
    if (it.want_write) FD_SET(it.fd, &wr);
    // Winsock reports a failed non-blocking connect in the except set, not the write set.
    if (it.want_write) FD_SET(it.fd, &ex);
    if (it.fd > maxfd) maxfd = it.fd;
  }
  timeval tv;
  tv.tv_sec = static_cast<long>(timeout_us / 1000000);
  tv.tv_usec = static_cast<long>(timeout_us % 1000000);
  int rc = select(static_cast<int>(maxfd + 1), &rd, &wr, &ex, &tv);
  if (rc < 0) {
#if !defined(_WIN32)
    if (errno == EINTR) return true;
#endif
    return false;
  }
  for (auto& it : *items) {
    if (it.fd == kInvalid) continue;
    it.readable = it.want_read && FD_ISSET(it.fd, &rd);
    it.writable = it.want_write && (FD_ISSET(it.fd, &wr) || FD_ISSET(it.fd, &ex));
  }
  return true;
}

}  // namespace kairos::bridge::net
