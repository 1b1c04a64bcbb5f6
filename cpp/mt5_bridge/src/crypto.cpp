#if defined(_WIN32)
#define _CRT_RAND_S  // rand_s: msvcrt's wrapper of RtlGenRandom, no extra DLL import
#endif
#include "crypto.h"

#include <cstdlib>
#include <cstring>

#if !defined(_WIN32)
#include <errno.h>
#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>
#endif

namespace kairos::bridge::crypto {

namespace {

constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void PutBE(uint8_t* p, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

}  // namespace

Sha256::Sha256() {
  static constexpr uint32_t kInit[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                        0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::memcpy(h_, kInit, sizeof(h_));
}

void Sha256::Block(const uint8_t* p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t{p[4 * i]} << 24) | (uint32_t{p[4 * i + 1]} << 16) | (uint32_t{p[4 * i + 2]} << 8) |
           uint32_t{p[4 * i + 3]};
  for (int i = 16; i < 64; i++) {
    const uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
  for (int i = 0; i < 64; i++) {
    const uint32_t t1 = h + (Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25)) + ((e & f) ^ (~e & g)) + kK[i] + w[i];
    const uint32_t t2 = (Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h_[0] += a;
  h_[1] += b;
  h_[2] += c;
  h_[3] += d;
  h_[4] += e;
  h_[5] += f;
  h_[6] += g;
  h_[7] += h;
}

void Sha256::Update(const void* data, size_t len) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  total_ += len;
  while (len > 0) {
    if (buf_len_ == 0 && len >= 64) {
      Block(p);
      p += 64;
      len -= 64;
      continue;
    }
    const size_t n = len < 64 - buf_len_ ? len : 64 - buf_len_;
    std::memcpy(buf_ + buf_len_, p, n);
    buf_len_ += n;
    p += n;
    len -= n;
    if (buf_len_ == 64) {
      Block(buf_);
      buf_len_ = 0;
    }
  }
}

Digest Sha256::Final() {
  const uint64_t bits = total_ * 8;
  const uint8_t one = 0x80;
  Update(&one, 1);
  const uint8_t zero = 0;
  while (buf_len_ != 56) Update(&zero, 1);
  uint8_t len_be[8];
  PutBE(len_be, bits, 8);
  Update(len_be, 8);
  Digest out;
  for (int i = 0; i < 8; i++) PutBE(out.data() + 4 * i, h_[i], 4);
  return out;
}

Digest Sha256Of(const void* data, size_t len) {
  Sha256 s;
  s.Update(data, len);
  return s.Final();
}

Digest HmacSha256(const void* key, size_t key_len, const void* msg, size_t msg_len) {
  uint8_t k[64] = {0};
  if (key_len > 64) {
    const Digest d = Sha256Of(key, key_len);
    std::memcpy(k, d.data(), d.size());
  } else if (key_len > 0) {
    std::memcpy(k, key, key_len);
  }
  uint8_t ipad[64], opad[64];
  for (int i = 0; i < 64; i++) {
    ipad[i] = static_cast<uint8_t>(k[i] ^ 0x36);
    opad[i] = static_cast<uint8_t>(k[i] ^ 0x5c);
  }
  Sha256 inner;
  inner.Update(ipad, 64);
  inner.Update(msg, msg_len);
  const Digest ih = inner.Final();
  Sha256 outer;
  outer.Update(opad, 64);
  outer.Update(ih.data(), ih.size());
  return outer.Final();
}

bool RandomBytes(uint8_t* out, size_t len) {
#if defined(_WIN32)
  for (size_t i = 0; i < len; i += 4) {
    unsigned int v = 0;
    if (rand_s(&v) != 0) return false;
    for (size_t j = 0; j < 4 && i + j < len; j++) out[i + j] = static_cast<uint8_t>(v >> (8 * j));
  }
  return true;
#else
  size_t got = 0;
  while (got < len) {
    const ssize_t n = getrandom(out + got, len - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  if (got == len) return true;
  const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  while (got < len) {
    const ssize_t n = ::read(fd, out + got, len - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return got == len;
#endif
}

bool ConstantTimeEqual(const uint8_t* a, const uint8_t* b, size_t len) {
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < len; i++) diff = static_cast<uint8_t>(diff | (a[i] ^ b[i]));
  return diff == 0;
}

Digest HandshakeProof(const std::string& key, Role role, const uint8_t* server_nonce,
                      const uint8_t* client_nonce, uint64_t session_id, uint32_t channel,
                      uint32_t api_version) {
  const char* label = role == Role::kClient ? "kairos-bridge-v1 client" : "kairos-bridge-v1 server";
  const size_t label_len = std::strlen(label);
  uint8_t msg[32 + 1 + 2 * kNonceBytes + 16];
  size_t n = 0;
  std::memcpy(msg, label, label_len);
  n += label_len;
  msg[n++] = 0;
  std::memcpy(msg + n, server_nonce, kNonceBytes);
  n += kNonceBytes;
  std::memcpy(msg + n, client_nonce, kNonceBytes);
  n += kNonceBytes;
  PutBE(msg + n, session_id, 8);
  n += 8;
  PutBE(msg + n, channel, 4);
  n += 4;
  PutBE(msg + n, api_version, 4);
  n += 4;
  return HmacSha256(key.data(), key.size(), msg, n);
}

}  // namespace kairos::bridge::crypto
