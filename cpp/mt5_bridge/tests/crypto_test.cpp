// SHA-256 against FIPS 180-4 (NIST CSRC examples), HMAC-SHA256 against RFC 4231, and the handshake
// proof against the golden vector computed by Python's hmac (proto/testdata/golden/frame_hello.txtpb).
#include "crypto.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

namespace kairos::bridge::crypto {
namespace {

std::string Hex(const Digest& d, size_t n = 32) {
  std::string out;
  char b[3];
  for (size_t i = 0; i < n; i++) {
    std::snprintf(b, sizeof(b), "%02x", d[i]);
    out += b;
  }
  return out;
}

std::string Sha(const std::string& s) { return Hex(Sha256Of(s.data(), s.size())); }

TEST(Sha256, Fips180Vectors) {
  EXPECT_EQ(Sha(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmno"
                "pqrsmnop"
                "qrstnopqrstu"),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  EXPECT_EQ(Sha(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalUpdatesEqualOneShot) {
  const std::string msg(1000, 'x');
  for (size_t split : {0, 1, 55, 56, 63, 64, 65, 127, 999}) {
    Sha256 s;
    s.Update(msg.data(), split);
    s.Update(msg.data() + split, msg.size() - split);
    EXPECT_EQ(Hex(s.Final()), Sha(msg)) << "split at " << split;
  }
}

std::string Hmac(const std::string& key, const std::string& msg, size_t n = 32) {
  return Hex(HmacSha256(key.data(), key.size(), msg.data(), msg.size()), n);
}

TEST(HmacSha256, Rfc4231Vectors) {
  EXPECT_EQ(Hmac(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(Hmac("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(Hmac(std::string(20, '\xaa'), std::string(50, '\xdd')),
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  std::string key4;
  for (int i = 1; i <= 25; i++) key4 += static_cast<char>(i);
  EXPECT_EQ(Hmac(key4, std::string(50, '\xcd')),
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
  EXPECT_EQ(Hmac(std::string(20, '\x0c'), "Test With Truncation", 16), "a3b6167473100ee06e0c796c2955552b");
  EXPECT_EQ(Hmac(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  EXPECT_EQ(
      Hmac(std::string(131, '\xaa'),
           "This is a test using a larger than block-size key and a larger than block-size data. The key "
           "needs to be hashed before being used by the HMAC algorithm."),
      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

TEST(HandshakeProof, MatchesTheGoldenVectorsOfTheOtherLanguages) {
  uint8_t server_nonce[32], client_nonce[32];
  for (int i = 0; i < 32; i++) {
    server_nonce[i] = static_cast<uint8_t>(i);
    client_nonce[i] = static_cast<uint8_t>(32 + i);
  }
  const std::string key = "kairos-golden-bridge-key-0123456789";
  EXPECT_EQ(Hex(HandshakeProof(key, Role::kClient, server_nonce, client_nonce, UINT64_MAX, 1, 2)),
            "846cac9a38fe8f5c56600f2b5c4d2438b7ec579dd6005f15b31a1836c479ee26");
  EXPECT_EQ(Hex(HandshakeProof(key, Role::kServer, server_nonce, client_nonce, UINT64_MAX, 1, 2)),
            "ab22e8ebe659bb8fba99e0868fe6eeb2051db9afc9b33d911cdc3fd678559fa1");
}

TEST(Crypto, RandomBytesAreNotConstantAndCompareIsExact) {
  uint8_t a[32] = {}, b[32] = {};
  ASSERT_TRUE(RandomBytes(a, sizeof(a)));
  ASSERT_TRUE(RandomBytes(b, sizeof(b)));
  EXPECT_FALSE(ConstantTimeEqual(a, b, sizeof(a)));  // 2^-256 to fail by chance
  EXPECT_TRUE(ConstantTimeEqual(a, a, sizeof(a)));
  b[31] = a[31];
  std::copy(a, a + 31, b);
  EXPECT_TRUE(ConstantTimeEqual(a, b, 32));
  b[31] ^= 0x80;
  EXPECT_FALSE(ConstantTimeEqual(a, b, 32));
}

}  // namespace
}  // namespace kairos::bridge::crypto
