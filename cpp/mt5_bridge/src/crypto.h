// SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104) and the bridge-key proofs of the handshake
// (docs/adr/0015-bridge-authentication.md). Self-contained on purpose: the Windows DLL is linked
// fully static and may import only KERNEL32, msvcrt and WS2_32, so neither OpenSSL nor CNG (bcrypt)
// is available. Checked against the FIPS 180-4 and RFC 4231 vectors in tests/crypto_test.cpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace kairos::bridge::crypto {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  void Update(const void* data, size_t len);
  Digest Final();

 private:
  void Block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

Digest Sha256Of(const void* data, size_t len);
Digest HmacSha256(const void* key, size_t key_len, const void* msg, size_t msg_len);

// Fills out with len bytes from the operating system's CSPRNG (rand_s on Windows, getrandom or
// /dev/urandom elsewhere). False when none is available.
bool RandomBytes(uint8_t* out, size_t len);

// Equal without an early exit, so the time taken says nothing about where two proofs differ.
bool ConstantTimeEqual(const uint8_t* a, const uint8_t* b, size_t len);

constexpr size_t kNonceBytes = 32;

// The handshake's proofs: HMAC-SHA256(key, label 0x00 || server_nonce || client_nonce ||
// session_id (BE64) || channel (BE32) || api_version (BE32)), label "kairos-bridge-v1 client" for
// the bridge's Hello.auth_proof, "kairos-bridge-v1 server" for the server's Welcome.server_proof.
enum class Role { kClient, kServer };
Digest HandshakeProof(const std::string& key, Role role, const uint8_t* server_nonce,
                      const uint8_t* client_nonce, uint64_t session_id, uint32_t channel,
                      uint32_t api_version);

}  // namespace kairos::bridge::crypto
