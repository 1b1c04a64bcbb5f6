// The bridge key handshake through the C ABI against the test peer (which authenticates as the
// collector and the execution service do), and name resolution off the network thread.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "kairos_bridge.h"
#include "resolver.h"
#include "test_peer.h"
#include "test_util.h"

using kairos::bridge::testing::Counters;
using kairos::bridge::testing::Handle;
using kairos::bridge::testing::Open;
using kairos::bridge::testing::OpenWithKey;
using kairos::bridge::testing::TestPeer;
using kairos::bridge::testing::W;

namespace {

const std::string kKey = "bridge-test-key-0123456789abcdef";

TestPeer::Options Keyed(const std::string& key) {
  TestPeer::Options o;
  o.key = key;
  o.heartbeat_ms = 100;
  return o;
}

KbOptions Fast() {
  KbOptions o{};
  kb_default_options(&o);
  o.reconnect_min_ms = 10;
  o.reconnect_max_ms = 50;
  o.connect_timeout_ms = 1000;
  o.close_flush_ms = 0;
  return o;
}

bool PushOneTick(int64_t h) {
  KbMqlTick t{};
  t.time = 1577836800;
  t.time_msc = 1577836800000;
  t.bid = 1.12;
  t.ask = 1.1201;
  return kb_push_ticks(h, W("EURUSD").data(), 5, &t, 1) == KB_OK;
}

}  // namespace

TEST(Auth, ABridgeWithTheKeyIsWelcomedAndItsTicksArrive) {
  TestPeer peer(Keyed(kKey));
  Handle h;
  ASSERT_EQ(OpenWithKey(peer.endpoint(), "", "  " + kKey + "\n", &h.h), KB_OK);  // white space trimmed
  ASSERT_TRUE(PushOneTick(h.h));
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == 1; }, 5000));
  const auto hellos = peer.hellos();
  ASSERT_FALSE(hellos.empty());
  EXPECT_EQ(hellos[0].api_version, static_cast<uint32_t>(KB_API_VERSION));
  EXPECT_EQ(hellos[0].auth_proof.size, 32);
  EXPECT_EQ(hellos[0].client_nonce.size, 32);
  EXPECT_EQ(peer.auth_failures(), 0u);
  EXPECT_EQ(Counters(h.h).market_data_connected, 1);
}

TEST(Auth, AWrongKeyOrNoKeyIsRefusedAndNothingFlows) {
  for (const std::string& key : {std::string("another-key-0123456789abcdef"), std::string()}) {
    SCOPED_TRACE(key.empty() ? "no key" : "wrong key");
    TestPeer peer(Keyed(kKey));
    Handle h;
    KbOptions o = Fast();
    ASSERT_EQ(OpenWithKey(peer.endpoint(), "", key, &h.h, &o), KB_OK);
    ASSERT_TRUE(PushOneTick(h.h));
    ASSERT_TRUE(peer.WaitFor(
        [&] { return peer.auth_failures() >= 1 && Counters(h.h).last_error == KB_E_AUTH; }, 5000));
    EXPECT_EQ(peer.tick_count(), 0u);
    EXPECT_EQ(Counters(h.h).market_data_connected, 0);
  }
}

TEST(Auth, AServerThatCannotProveTheKeyGetsNoHelloResultsNorCommandsThrough) {
  // A fake server: it knows no key (or a different one) but answers with a made-up proof.
  TestPeer::Options po = Keyed(kKey);
  po.wrong_server_proof = true;
  TestPeer peer(po);
  Handle h;
  KbOptions o = Fast();
  ASSERT_EQ(OpenWithKey("", peer.endpoint(), kKey, &h.h, &o), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).last_error == KB_E_AUTH; }, 5000));
  kairos_bridge_v1_OrderCommand cmd = kairos_bridge_v1_OrderCommand_init_zero;
  cmd.command_id = 1;
  cmd.kind = kairos_bridge_v1_CommandKind_COMMAND_KIND_SNAPSHOT;
  for (int i = 0; i < 20; i++) {
    peer.SendCommand(cmd);  // whatever the fake server sends after its Welcome is never read
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  KbCommand got{};
  EXPECT_EQ(kb_poll_command(h.h, &got), KB_EMPTY);
  const KbCounters c = Counters(h.h);
  EXPECT_EQ(c.commands_received, 0u);
  EXPECT_EQ(c.trading_connected, 0);
}

TEST(Auth, ABridgeWithAKeyRefusesAServerThatDoesNotAuthenticate) {
  TestPeer peer;  // no key: Challenge.auth_required is false
  Handle h;
  KbOptions o = Fast();
  ASSERT_EQ(OpenWithKey(peer.endpoint(), "", kKey, &h.h, &o), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).last_error == KB_E_AUTH; }, 5000));
  EXPECT_TRUE(peer.hellos().empty())
      << "the Hello (terminal and account details) went to an unauthenticated server";
}

TEST(Auth, OpenWithKeyChecksTheKey) {
  int64_t h = 0;
  EXPECT_EQ(OpenWithKey("127.0.0.1:7400", "", "short", &h), KB_E_BAD_ARG);
  EXPECT_EQ(OpenWithKey("127.0.0.1:7400", "", std::string(257, 'k'), &h), KB_E_BAD_ARG);
  EXPECT_EQ(
      kb_open_with_key(W("127.0.0.1:7400").data(), W("").data(), W("t").data(), 1, W("c").data(),
                       W("s").data(), 1, W("USD").data(), 1, W("EURUSD").data(), 1, nullptr, nullptr, &h),
      KB_E_NULL);
  EXPECT_EQ(h, 0);
}

namespace {

// A resolver hook: names ending in ".slow" block until released, others resolve to 127.0.0.1.
struct Hook {
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> blocked{0}, calls{0}, fail_first{0};
  std::atomic<bool> returned{false};

  Hook() {
    kairos::bridge::SetResolveFnForTesting(
        [this](const std::string& host, uint16_t port, sockaddr_in* out, std::string* error) {
          calls++;
          if (host.size() > 5 && host.compare(host.size() - 5, 5, ".slow") == 0) {
            blocked++;
            std::unique_lock<std::mutex> lock(mu);
            cv.wait(lock, [&] { return release; });
            blocked--;
            returned = true;
            *error = "released";
            return false;
          }
          if (fail_first.load() > 0) {
            fail_first--;
            *error = "temporary failure";
            return false;
          }
          return kairos::bridge::net::ParseIPv4("127.0.0.1", port, out);
        });
  }
  ~Hook() {
    Release();
    kairos::bridge::SetResolveFnForTesting(nullptr);
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
    cv.notify_all();
  }
};

}  // namespace

TEST(Resolve, ASlowLookupOfOneEndpointNeitherStarvesTheOtherChannelNorHoldsUpClose) {
  Hook hook;
  TestPeer::Options po;
  po.heartbeat_ms = 50;
  TestPeer md(po);
  int64_t h = 0;
  KbOptions o = Fast();
  ASSERT_EQ(Open(md.endpoint(), "execution.slow:7600", &h, &o), KB_OK);
  ASSERT_TRUE(
      md.WaitFor([&] { return hook.blocked.load() == 1 && Counters(h).market_data_connected == 1; }, 5000));
  // The trading channel's lookup hangs; the market-data channel keeps its heartbeats flowing (three
  // missed intervals would drop it) and its ticks arriving.
  const uint64_t hb0 = Counters(h).heartbeats_sent;
  ASSERT_TRUE(md.WaitFor([&] { return Counters(h).heartbeats_sent >= hb0 + 6; }, 5000));
  ASSERT_TRUE(PushOneTick(h));
  ASSERT_TRUE(md.WaitFor([&] { return md.tick_count() == 1; }, 5000));
  EXPECT_EQ(Counters(h).market_data_connected, 1);
  EXPECT_EQ(md.connections(), 1u);
  // Close returns while the lookup is still stuck in the resolver (it is left to finish alone).
  EXPECT_EQ(kb_close(h), KB_OK);
  EXPECT_EQ(hook.blocked.load(), 1) << "close waited for the lookup";
  hook.Release();
  ASSERT_TRUE(md.WaitFor([&] { return hook.returned.load(); }, 5000));
}

TEST(Resolve, NamesAreLookedUpOffTheNetworkThreadAndRetriedAfterAFailure) {
  Hook hook;
  hook.fail_first = 2;
  TestPeer peer;
  Handle h;
  KbOptions o = Fast();
  ASSERT_EQ(Open("collector.test:" + std::to_string(peer.port()), "", &h.h, &o), KB_OK);
  ASSERT_TRUE(PushOneTick(h.h));
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == 1; }, 5000));
  EXPECT_GE(hook.calls.load(), 3);
  EXPECT_GE(Counters(h.h).connect_failures, 2u);
}
