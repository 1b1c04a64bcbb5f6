// The bridge through its C ABI against a real TCP peer on 127.0.0.1: bad input, queues and counters,
// ticks from real data arriving intact and in order, commands down and results up, reconnect with
// resend and no duplicates, malformed frames and heartbeat loss.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kairos_bridge.h"
#include "test_peer.h"
#include "test_util.h"

using kairos::bridge::testing::Counters;
using kairos::bridge::testing::Handle;
using kairos::bridge::testing::LoadEurusdTicks;
using kairos::bridge::testing::Open;
using kairos::bridge::testing::TestPeer;
using kairos::bridge::testing::W;

namespace {

// A port with no listener: bind an ephemeral port and close it again.
std::string DeadEndpoint() {
  TestPeer::Options o;
  auto* p = new TestPeer(o);
  std::string ep = p->endpoint();
  delete p;
  return ep;
}

std::vector<KbMqlTick> Ticks() {
  static std::vector<KbMqlTick> ticks = LoadEurusdTicks(KAIROS_DATA_DIR);
  return ticks;
}

kairos_bridge_v1_OrderCommand PlaceCommand(uint64_t id, const char* coid) {
  kairos_bridge_v1_OrderCommand c = kairos_bridge_v1_OrderCommand_init_zero;
  c.command_id = id;
  std::snprintf(c.client_order_id, sizeof(c.client_order_id), "%s", coid);
  c.kind = kairos_bridge_v1_CommandKind_COMMAND_KIND_PLACE;
  std::snprintf(c.symbol, sizeof(c.symbol), "EURUSD");
  c.side = kairos_bridge_v1_Side_SIDE_BUY;
  c.order_type = kairos_bridge_v1_OrderType_ORDER_TYPE_MARKET;
  c.has_volume = true;
  c.volume = {10, 2};
  c.deviation_points = 20;
  return c;
}

KbOrderResult Result(uint64_t command_id) {
  KbOrderResult r{};
  r.command_id = command_id;
  r.status = 1;  // SENT
  r.retcode = 10009;
  r.order_ticket = 5000 + command_id;
  r.deal_ticket = 9000 + command_id;
  r.volume = 0.1;
  r.price = 1.12172;
  r.bid = 1.1212;
  r.ask = 1.12172;
  r.price_digits = 5;
  r.volume_digits = 2;
  return r;
}

}  // namespace

TEST(Api, VersionIsReportedAndStatusTextFitsTheBuffer) {
  EXPECT_EQ(kb_api_version(), KB_API_VERSION);
  kb_char16 buf[8];
  buf[5] = 0x7777;
  buf[6] = 0x7777;
  EXPECT_EQ(kb_status_text(KB_E_QUEUE_FULL, buf, 5), KB_E_TRUNCATED);
  EXPECT_EQ(buf[4], 0);
  EXPECT_EQ(buf[5], 0x7777) << "wrote past the capacity";
  EXPECT_EQ(kb_status_text(KB_OK, buf, 8), KB_OK);
  EXPECT_EQ(buf[0], 'o');
  EXPECT_EQ(kb_status_text(KB_OK, nullptr, 8), KB_E_NULL);
  EXPECT_EQ(kb_status_text(KB_OK, buf, 0), KB_E_BAD_ARG);
  int64_t now = 0;
  EXPECT_EQ(kb_now_us(&now), KB_OK);
  EXPECT_GT(now, 1700000000000000);  // after 2023, in microseconds
  EXPECT_EQ(kb_now_us(nullptr), KB_E_NULL);
}

TEST(Api, DefaultOptionsAreTheDocumentedOnes) {
  KbOptions o{};
  ASSERT_EQ(kb_default_options(&o), KB_OK);
  EXPECT_EQ(o.struct_size, static_cast<int32_t>(sizeof(KbOptions)));
  EXPECT_EQ(o.tick_queue_capacity, 262144);
  EXPECT_EQ(o.command_queue_capacity, 1024);
  EXPECT_EQ(o.tick_resend_frames, 4096);
  EXPECT_EQ(o.report_queue_capacity, 65536);
  EXPECT_EQ(o.heartbeat_interval_ms, 1000);
  EXPECT_EQ(o.reconnect_min_ms, 100);
  EXPECT_EQ(o.reconnect_max_ms, 1000);
  EXPECT_EQ(o.connect_timeout_ms, 2000);
  EXPECT_EQ(o.close_flush_ms, 500);
  EXPECT_EQ(o.max_batch_ticks, 256);
  EXPECT_EQ(o.idle_spin_us, 200);
  EXPECT_EQ(o.warm_poll_us, 1000);
}

TEST(Api, OpenRefusesBadArgumentsWithStatusCodes) {
  int64_t h = 0;
  const auto ok = W("127.0.0.1:7400");
  const auto empty = W("");
  const auto name = W("MT5");
  EXPECT_EQ(kb_open(nullptr, empty.data(), name.data(), 1, name.data(), name.data(), 1, name.data(), 1,
                    name.data(), 0, nullptr, &h),
            KB_E_NULL);
  EXPECT_EQ(kb_open(ok.data(), empty.data(), name.data(), 1, name.data(), name.data(), 1, name.data(), 1,
                    name.data(), 0, nullptr, nullptr),
            KB_E_NULL);
  EXPECT_EQ(Open("", "", &h), KB_E_BAD_ENDPOINT);
  EXPECT_EQ(Open("127.0.0.1", "", &h), KB_E_BAD_ENDPOINT);
  EXPECT_EQ(Open("127.0.0.1:0", "", &h), KB_E_BAD_ENDPOINT);
  EXPECT_EQ(Open("127.0.0.1:70000", "", &h), KB_E_BAD_ENDPOINT);
  EXPECT_EQ(Open(":7400", "", &h), KB_E_BAD_ENDPOINT);
  const auto long_name = W(std::string(200, 'x'));
  EXPECT_EQ(kb_open(ok.data(), empty.data(), long_name.data(), 1, name.data(), name.data(), 1, name.data(), 1,
                    name.data(), 0, nullptr, &h),
            KB_E_STRING_TOO_LONG);
  std::vector<kb_char16> lone = {'M', 0xD800, 'T', 0};  // lone high surrogate
  EXPECT_EQ(kb_open(ok.data(), empty.data(), lone.data(), 1, name.data(), name.data(), 1, name.data(), 1,
                    name.data(), 0, nullptr, &h),
            KB_E_BAD_UTF16);
  KbOptions o{};
  o.struct_size = 12;
  EXPECT_EQ(Open("127.0.0.1:7400", "", &h, &o), KB_E_BAD_ARG);
  EXPECT_EQ(kb_default_options(&o), KB_E_BAD_ARG);
  EXPECT_EQ(h, 0);
}

TEST(Api, CallsAfterCloseAndDoubleCloseReturnBadHandle) {
  Handle h;
  ASSERT_EQ(Open(DeadEndpoint(), DeadEndpoint(), &h.h), KB_OK);
  const int64_t id = h.h;
  ASSERT_EQ(kb_close(id), KB_OK);
  h.h = 0;
  EXPECT_EQ(kb_close(id), KB_E_BAD_HANDLE);
  const auto ticks = Ticks();
  EXPECT_EQ(kb_push_ticks(id, W("EURUSD").data(), 5, ticks.data(), 10), KB_E_BAD_HANDLE);
  KbCommand cmd;
  EXPECT_EQ(kb_poll_command(id, &cmd), KB_E_BAD_HANDLE);
  KbCounters c{};
  EXPECT_EQ(kb_get_counters(id, &c), KB_E_BAD_HANDLE);
  EXPECT_EQ(kb_close(0), KB_E_BAD_HANDLE);
  EXPECT_EQ(kb_close(-1), KB_E_BAD_HANDLE);
}

TEST(Push, BadInputGetsStatusCodesAndIsCounted) {
  Handle h;
  ASSERT_EQ(Open(DeadEndpoint(), "", &h.h), KB_OK);
  auto ticks = Ticks();
  const auto sym = W("EURUSD");
  EXPECT_EQ(kb_push_ticks(h.h, sym.data(), 5, nullptr, 10), KB_E_NULL);
  EXPECT_EQ(kb_push_ticks(h.h, nullptr, 5, ticks.data(), 10), KB_E_NULL);
  EXPECT_EQ(kb_push_ticks(h.h, sym.data(), 5, ticks.data(), 0), KB_E_BAD_COUNT);
  EXPECT_EQ(kb_push_ticks(h.h, sym.data(), 5, ticks.data(), -5), KB_E_BAD_COUNT);
  EXPECT_EQ(kb_push_ticks(h.h, sym.data(), 19, ticks.data(), 1), KB_E_BAD_ARG);
  EXPECT_EQ(kb_push_ticks(h.h, W("").data(), 5, ticks.data(), 1), KB_E_BAD_ARG);
  EXPECT_EQ(kb_push_ticks(h.h, W(std::string(40, 'S')).data(), 5, ticks.data(), 1), KB_E_STRING_TOO_LONG);
  std::vector<KbMqlTick> bad(ticks.begin(), ticks.begin() + 4);
  bad[1].bid = std::numeric_limits<double>::quiet_NaN();
  bad[2].ask = std::numeric_limits<double>::infinity();
  EXPECT_EQ(kb_push_ticks(h.h, sym.data(), 5, bad.data(), 4), KB_PARTIAL);
  bad[0].bid = -1;
  bad[3].last = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(kb_push_ticks(h.h, sym.data(), 5, bad.data(), 4), KB_E_NON_FINITE);
  const KbCounters c = Counters(h.h);
  EXPECT_EQ(c.ticks_queued, 2u);
  EXPECT_EQ(c.ticks_rejected, 6u);
  EXPECT_EQ(c.tick_queue_depth, 2u);
  EXPECT_EQ(kb_poll_command(h.h, nullptr), KB_E_NULL);
  KbCommand cmd;
  EXPECT_EQ(kb_poll_command(h.h, &cmd), KB_E_NO_CHANNEL) << "no execution endpoint was configured";
}

TEST(Push, FullRingRefusesTheWholeBatchWithACounterAndNeverWaits) {
  KbOptions o{};
  ASSERT_EQ(kb_default_options(&o), KB_OK);
  o.tick_queue_capacity = 1024;
  Handle h;
  ASSERT_EQ(Open(DeadEndpoint(), "", &h.h, &o), KB_OK);  // nobody drains the ring
  const auto ticks = Ticks();
  const auto sym = W("EURUSD");
  ASSERT_EQ(kb_push_ticks(h.h, sym.data(), 5, ticks.data(), 1000), KB_OK);
  EXPECT_EQ(kb_push_ticks(h.h, sym.data(), 5, ticks.data() + 1000, 100), KB_E_QUEUE_FULL);
  EXPECT_EQ(kb_push_ticks(h.h, sym.data(), 5, ticks.data() + 1000, 24), KB_OK) << "what fits is still taken";
  KbCounters c = Counters(h.h);
  EXPECT_EQ(c.ticks_dropped, 100u);
  EXPECT_EQ(c.ticks_queued, 1024u);
  EXPECT_EQ(c.tick_queue_depth, 1024u);
  EXPECT_EQ(c.market_data_connected, 0);
}

TEST(Ticks, RealTicksArriveIntactAndInOrderAfterTheSymbolInfo) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h), KB_OK);
  const int64_t offset_ms = 2 * 3600 * 1000;  // trade server at UTC+2
  ASSERT_EQ(kb_set_server_offset(h.h, offset_ms), KB_OK);
  auto ticks = Ticks();
  ASSERT_EQ(ticks.size(), 9500u);
  std::vector<KbMqlTick> server = ticks;
  for (auto& t : server) t.time_msc += offset_ms;
  const auto sym = W("EURUSD");
  for (size_t i = 0; i < server.size(); i += 100)
    ASSERT_EQ(kb_push_ticks(h.h, sym.data(), 5, server.data() + i,
                            static_cast<int32_t>(std::min<size_t>(100, server.size() - i))),
              KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == ticks.size(); }, 10000)) << peer.tick_count();
  const auto got = peer.ticks();
  for (size_t i = 0; i < ticks.size(); i++) {
    ASSERT_EQ(got[i].symbol, "EURUSD");
    ASSERT_EQ(got[i].time_msc, ticks[i].time_msc) << i;
    ASSERT_EQ(got[i].bid, ticks[i].bid) << i;
    ASSERT_EQ(got[i].ask, ticks[i].ask) << i;
    ASSERT_EQ(got[i].flags, 6u) << i;
    ASSERT_EQ(got[i].seq, i + 1) << i;
  }
  EXPECT_EQ(peer.tick_gaps(), 0u);
  const auto infos = peer.symbol_infos();
  ASSERT_GE(infos.size(), 1u);
  EXPECT_STREQ(infos[0].symbol, "EURUSD");
  EXPECT_EQ(infos[0].digits, 5u);
  const auto hellos = peer.hellos();
  ASSERT_EQ(hellos.size(), 1u);
  EXPECT_EQ(hellos[0].channel, kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA);
  EXPECT_EQ(hellos[0].api_version, static_cast<uint32_t>(KB_API_VERSION));
  EXPECT_STREQ(hellos[0].terminal_name, "MetaTrader 5");
  EXPECT_EQ(hellos[0].account_login, 1234567);
  EXPECT_NE(hellos[0].session_id, 0u);
  const KbCounters c = Counters(h.h);
  EXPECT_EQ(c.ticks_sent, ticks.size());
  EXPECT_EQ(c.ticks_dropped, 0u);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).ticks_acked == ticks.size(); }, 5000));
  EXPECT_EQ(c.market_data_connected, 1);
}

TEST(Ticks, SeveralSymbolsKeepTheirOwnSequences) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h), KB_OK);
  auto ticks = Ticks();
  const char* names[] = {"EURUSD", "GBPUSD", "USDJPY"};
  for (int round = 0; round < 10; round++)
    for (const char* n : names)
      ASSERT_EQ(kb_push_ticks(h.h, W(n).data(), 5, ticks.data() + round * 50, 50), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == 1500; }, 10000));
  EXPECT_EQ(peer.tick_gaps(), 0u);
  EXPECT_EQ(peer.symbol_infos().size(), 3u);
}

TEST(Reconnect, PeerRestartLosesAndDuplicatesNothing) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h), KB_OK);
  auto ticks = Ticks();
  const auto sym = W("EURUSD");
  size_t pushed = 0;
  auto push = [&](size_t n) {
    for (size_t end = pushed + n; pushed < end; pushed += 50)
      ASSERT_EQ(kb_push_ticks(h.h, sym.data(), 5, ticks.data() + pushed, 50), KB_OK);
  };
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).market_data_connected == 1; }, 3000));
  push(3000);
  peer.DropConnection();  // mid-stream: some frames are in flight, unacknowledged
  push(3000);
  ASSERT_TRUE(peer.WaitFor(
      [&] { return peer.connections() == 2 && Counters(h.h).market_data_connected == 1; }, 5000));
  peer.Restart(200, false);
  push(3500);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == 9500; }, 15000)) << peer.tick_count();
  EXPECT_EQ(peer.tick_gaps(), 0u);
  EXPECT_EQ(peer.duplicates(), 0u) << "the bridge resent frames the server had processed";
  EXPECT_EQ(peer.frame_gaps(), 0u) << "frame sequences must continue from resume_after";
  const auto got = peer.ticks();
  for (size_t i = 0; i < got.size(); i++) ASSERT_EQ(got[i].time_msc, ticks[i].time_msc) << i;
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).reconnects >= 2; }, 5000));
  EXPECT_EQ(Counters(h.h).ticks_resend_dropped, 0u);
}

TEST(Reconnect, ServerThatLostItsStateGetsTheSymbolAgainAndEveryUnackedTick) {
  TestPeer::Options o;
  o.ack = false;  // nothing is ever acknowledged, so everything stays in the resend buffer
  TestPeer peer(o);
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h), KB_OK);
  auto ticks = Ticks();
  for (size_t i = 0; i < 1000; i += 100)
    ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, ticks.data() + i, 100), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == 1000; }, 5000));
  peer.Restart(100, true);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == 2000; }, 5000)) << peer.tick_count();
  EXPECT_EQ(peer.symbol_infos().size(), 2u) << "announced again before the resent ticks";
  EXPECT_EQ(peer.frame_gaps(), 0u);
  EXPECT_EQ(Counters(h.h).ticks_resent, 1000u);
  const auto got = peer.ticks();
  for (size_t i = 0; i < 1000; i++) ASSERT_EQ(got[1000 + i].seq, got[i].seq);
}

TEST(Reconnect, ReconnectsWithinOneSecondOfThePeerComingBack) {
  TestPeer peer;
  KbOptions o{};
  kb_default_options(&o);
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h, &o), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).market_data_connected == 1; }, 3000));
  peer.Restart(1500, false);  // long enough for the backoff to reach its 1 s cap
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).market_data_connected == 0; }, 3000));
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).market_data_connected == 1; }, 5000));
  const auto waited = std::chrono::steady_clock::now() - start;
  // Listener down 1.5 s, then the capped backoff (<= 1 s) plus scheduling slack on a busy machine.
  EXPECT_LT(waited, std::chrono::milliseconds(1500 + 1000 + 500));
  EXPECT_GE(Counters(h.h).connect_failures, 1u);
}

TEST(Trading, CommandsComeDownOnceAndResultsGoUp) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open("", peer.endpoint(), &h.h), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).trading_connected == 1; }, 3000));
  ASSERT_TRUE(peer.SendCommand(PlaceCommand(41, "K-41")));
  ASSERT_TRUE(peer.SendCommand(PlaceCommand(41, "K-41")));  // repeated command_id
  KbCommand cmd{};
  ASSERT_TRUE(peer.WaitFor([&] { return kb_poll_command(h.h, &cmd) == KB_OK; }, 3000));
  EXPECT_EQ(cmd.command_id, 41u);
  EXPECT_EQ(cmd.kind, 1);
  EXPECT_EQ(cmd.side, 1);
  EXPECT_EQ(cmd.order_type, 1);
  EXPECT_DOUBLE_EQ(cmd.volume, 0.10);
  EXPECT_EQ(cmd.deviation_points, 20u);
  EXPECT_EQ(cmd.client_order_id[0], 'K');
  EXPECT_EQ(cmd.client_order_id[4], 0);
  EXPECT_EQ(cmd.symbol[0], 'E');
  EXPECT_GT(cmd.received_time_us, 0);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).commands_duplicate == 1; }, 3000));
  EXPECT_EQ(kb_poll_command(h.h, &cmd), KB_EMPTY) << "the repeated command_id was delivered twice";

  const KbOrderResult r = Result(41);
  ASSERT_EQ(kb_report_result(h.h, &r, W("K-41").data(), W("Request executed").data()), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.results().size() == 1; }, 3000));
  auto res = peer.results();
  EXPECT_EQ(res[0].command_id, 41u);
  EXPECT_STREQ(res[0].client_order_id, "K-41");
  EXPECT_EQ(res[0].status, kairos_bridge_v1_BridgeStatus_BRIDGE_STATUS_SENT);
  EXPECT_EQ(res[0].retcode, 10009);
  EXPECT_EQ(res[0].price.units, 112172);
  EXPECT_EQ(res[0].price.scale, 5u);
  EXPECT_EQ(res[0].volume.units, 10);
  EXPECT_STREQ(res[0].comment, "Request executed");
  // The same command again after its result: the bridge answers with a DUPLICATE copy itself.
  ASSERT_TRUE(peer.SendCommand(PlaceCommand(41, "K-41")));
  ASSERT_TRUE(peer.WaitFor([&] { return peer.results().size() == 2; }, 3000));
  res = peer.results();
  EXPECT_EQ(res[1].status, kairos_bridge_v1_BridgeStatus_BRIDGE_STATUS_DUPLICATE);
  EXPECT_EQ(res[1].deal_ticket, res[0].deal_ticket);
  EXPECT_EQ(kb_poll_command(h.h, &cmd), KB_EMPTY);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.last_ack_from_bridge() >= 3; }, 3000))
      << "commands acknowledged";
}

TEST(Trading, InvalidCommandsAreAnsweredInvalidAndNeverReachTheEa) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open("", peer.endpoint(), &h.h), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).trading_connected == 1; }, 3000));
  auto no_kind = PlaceCommand(7, "K-7");
  no_kind.kind = kairos_bridge_v1_CommandKind_COMMAND_KIND_UNSPECIFIED;
  auto no_volume = PlaceCommand(8, "K-8");
  no_volume.has_volume = false;
  auto bad_utf8 = PlaceCommand(9, "K-9");
  bad_utf8.client_order_id[1] = static_cast<char>(0xC3);  // truncated two-byte sequence
  for (const auto& c : {no_kind, no_volume, bad_utf8}) ASSERT_TRUE(peer.SendCommand(c));
  ASSERT_TRUE(peer.WaitFor([&] { return peer.results().size() == 3; }, 3000));
  for (const auto& r : peer.results()) {
    EXPECT_EQ(r.status, kairos_bridge_v1_BridgeStatus_BRIDGE_STATUS_INVALID) << r.command_id;
    EXPECT_NE(r.comment[0], 0);
  }
  KbCommand cmd;
  EXPECT_EQ(kb_poll_command(h.h, &cmd), KB_EMPTY);
  EXPECT_EQ(Counters(h.h).commands_dropped, 3u);
}

TEST(Trading, UnacknowledgedResultsAreResentOnlyAboveResumeAfter) {
  TestPeer::Options o;
  o.ack = false;
  TestPeer peer(o);
  Handle h;
  ASSERT_EQ(Open("", peer.endpoint(), &h.h), KB_OK);
  for (uint64_t id = 1; id <= 10; id++) {
    const KbOrderResult r = Result(id);
    ASSERT_EQ(kb_report_result(h.h, &r, W("K").data(), W("").data()), KB_OK);  // queued even while connecting
  }
  ASSERT_TRUE(peer.WaitFor([&] { return peer.results().size() == 10; }, 5000));
  peer.DropConnection();  // the server processed all 10 but never acknowledged them
  ASSERT_TRUE(
      peer.WaitFor([&] { return peer.connections() == 2 && Counters(h.h).trading_connected == 1; }, 5000));
  const KbOrderResult r11 = Result(11);
  ASSERT_EQ(kb_report_result(h.h, &r11, W("K").data(), W("").data()), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.results().size() == 11; }, 5000));
  EXPECT_EQ(peer.duplicates(), 0u) << "results at or below resume_after were sent again";
  EXPECT_EQ(Counters(h.h).reports_acked, 10u) << "Welcome.resume_after acknowledges";
  peer.Restart(50, true);  // a server without state: resume_after 0, so the one unacked result is resent
  ASSERT_TRUE(peer.WaitFor([&] { return peer.results().size() == 12; }, 5000));
  EXPECT_EQ(peer.results()[11].command_id, 11u);
  EXPECT_EQ(Counters(h.h).reports_resent, 1u);
}

TEST(Trading, SnapshotsAccountAndTransactionsAreReported) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open("", peer.endpoint(), &h.h), KB_OK);
  ASSERT_EQ(kb_positions_add_position(h.h, nullptr, W("EURUSD").data(), W("").data()), KB_E_NULL);
  KbPosition p{};
  p.side = 1;
  p.price_digits = 5;
  p.volume_digits = 2;
  p.money_digits = 2;
  p.volume = 0.1;
  p.price_open = 1.1;
  EXPECT_EQ(kb_positions_add_position(h.h, &p, W("EURUSD").data(), W("").data()), KB_E_STATE);
  ASSERT_EQ(kb_positions_begin(h.h, 1577898000000), KB_OK);
  for (int i = 0; i < 100; i++) {
    p.ticket = 100 + static_cast<uint64_t>(i);
    ASSERT_EQ(kb_positions_add_position(h.h, &p, W("EURUSD").data(), W("K-1").data()), KB_OK);
  }
  KbWorkingOrder wo{};
  wo.side = 2;
  wo.order_type = 2;
  wo.price_digits = 5;
  wo.volume_digits = 2;
  wo.volume = 0.2;
  wo.price = 1.2;
  ASSERT_EQ(kb_positions_add_order(h.h, &wo, W("EURUSD").data(), W("").data()), KB_OK);
  ASSERT_EQ(kb_positions_end(h.h), KB_OK);
  KbAccount a{};
  a.login = 1234567;
  a.balance = 10000.5;
  a.equity = 10001.25;
  a.money_digits = 2;
  a.leverage = 100;
  a.trade_allowed = 1;
  ASSERT_EQ(kb_report_account(h.h, &a, W("USD").data()), KB_OK);
  a.balance = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(kb_report_account(h.h, &a, W("USD").data()), KB_E_NON_FINITE);
  KbTransaction t{};
  t.type = 4;
  t.side = 1;
  t.deal_ticket = 9041;
  t.price = 1.12172;
  t.price_digits = 5;
  t.volume = 0.1;
  t.volume_digits = 2;
  ASSERT_EQ(kb_report_transaction(h.h, &t, W("K-41").data(), W("EURUSD").data()), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.transactions().size() == 1; }, 5000));
  const auto snaps = peer.positions();
  ASSERT_EQ(snaps.size(), 2u);
  EXPECT_EQ(snaps[0].positions_count, 64);
  EXPECT_EQ(snaps[0].orders_count, 1);
  EXPECT_FALSE(snaps[0].complete);
  EXPECT_EQ(snaps[1].positions_count, 36);
  EXPECT_TRUE(snaps[1].complete);
  EXPECT_EQ(snaps[1].time_msc, 1577898000000);
  const auto acc = peer.accounts();
  ASSERT_EQ(acc.size(), 1u);
  EXPECT_EQ(acc[0].balance.units, 1000050);
  EXPECT_EQ(acc[0].equity.units, 1000125);
  const auto tx = peer.transactions();
  EXPECT_EQ(tx[0].deal_ticket, 9041u);
  EXPECT_STREQ(tx[0].client_order_id, "K-41");
}

// The EA's self-check (API 3) reaches the execution service as a TerminalCheck frame; a long
// problems text is cut at a character boundary, inconsistent counts and a missing trading channel
// are refused.
TEST(Trading, TheEasSelfCheckIsReported) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open("", peer.endpoint(), &h.h), KB_OK);
  KbTerminalCheck k{};
  k.dlls_allowed = 1;
  k.terminal_trade_allowed = 0;
  k.ea_trade_allowed = 1;
  k.account_trade_allowed = 1;
  k.account_expert_allowed = 1;
  k.symbols_checked = 3;
  k.symbols_failed = 1;
  k.time_msc = 1577898000000;
  EXPECT_EQ(kb_report_check(h.h, nullptr, W("").data()), KB_E_NULL);
  k.symbols_failed = 4;
  EXPECT_EQ(kb_report_check(h.h, &k, W("").data()), KB_E_BAD_ARG);
  k.symbols_failed = 1;
  std::string problems = "Algo Trading is off in the terminal: press the Algo Trading button\n";
  while (problems.size() < 600) problems += "\xc3\xa9";  // two-byte characters past the 511-byte field
  ASSERT_EQ(kb_report_check(h.h, &k, W(problems).data()), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.checks().size() == 1; }, 5000));
  const auto c = peer.checks()[0];
  EXPECT_TRUE(c.dlls_allowed);
  EXPECT_FALSE(c.terminal_trade_allowed);
  EXPECT_TRUE(c.ea_trade_allowed && c.account_trade_allowed && c.account_expert_allowed);
  EXPECT_EQ(c.symbols_checked, 3u);
  EXPECT_EQ(c.symbols_failed, 1u);
  EXPECT_EQ(c.time_msc, 1577898000000);
  const std::string got = c.problems;
  EXPECT_EQ(got.rfind("Algo Trading is off", 0), 0u);
  EXPECT_LE(got.size(), 511u);
  EXPECT_EQ(got.size() % 2, problems.find("\xc3") % 2);  // whole characters only

  Handle md;
  ASSERT_EQ(Open(peer.endpoint(), "", &md.h), KB_OK);
  EXPECT_EQ(kb_report_check(md.h, &k, W("").data()), KB_E_NO_CHANNEL);
}

// History through the bridge (API 3): the collector's request reaches kb_poll_history; the EA's
// ticks (trade-server time) leave as parts of at most 256 in UTC, the verdict last with the total;
// a request the bridge cannot serve is answered ERROR without reaching the EA; bars likewise.
TEST(History, AChunkTravelsFromTheEaToTheCollectorInParts) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h), KB_OK);
  ASSERT_EQ(kb_set_server_offset(h.h, 7200000), KB_OK);  // server time = UTC + 2 h
  ASSERT_TRUE(peer.WaitFor([&] { return peer.connections() == 1 && !peer.hellos().empty(); }, 5000));
  kairos_bridge_v1_HistoryRequest req = kairos_bridge_v1_HistoryRequest_init_zero;
  req.request_id = 41;
  std::strcpy(req.symbol, "EURUSD");
  req.kind = kairos_marketdata_v1_HistoryKind_HISTORY_KIND_TICKS;
  req.from_msc = 1577836800000;
  req.to_msc = 1577923200000;
  kairos_bridge_v1_HistoryRequest bad = req;
  bad.request_id = 42;
  bad.to_msc = bad.from_msc;  // an empty range: refused by the bridge itself
  KbHistoryRequest got{};
  ASSERT_TRUE(
      peer.WaitFor([&] { return peer.SendHistoryRequest(req) && peer.SendHistoryRequest(bad); }, 5000));
  ASSERT_TRUE(peer.WaitFor([&] { return kb_poll_history(h.h, &got) == KB_OK; }, 5000));
  EXPECT_EQ(got.request_id, 41u);
  EXPECT_EQ(got.kind, KB_HISTORY_TICKS);
  EXPECT_EQ(got.from_msc, 1577836800000);
  EXPECT_EQ(got.symbol[0], 'E');
  EXPECT_EQ(kb_poll_history(h.h, &got), KB_EMPTY);  // the bad one never reaches the EA

  std::vector<KbMqlTick> ticks(600);
  for (size_t i = 0; i < ticks.size(); i++) {
    ticks[i] = KbMqlTick{};
    ticks[i].time_msc = 1577836800000 + 7200000 + static_cast<int64_t>(i) * 1000;
    ticks[i].bid = 1.12 + static_cast<double>(i) * 1e-5;
    ticks[i].ask = ticks[i].bid + 2e-5;
    ticks[i].flags = 6;
  }
  EXPECT_EQ(kb_history_ticks(h.h, 99, ticks.data(), 1), KB_E_BAD_ARG);  // unknown request
  ASSERT_EQ(kb_history_ticks(h.h, 41, ticks.data(), 500), KB_OK);
  ASSERT_EQ(kb_history_ticks(h.h, 41, ticks.data() + 500, 100), KB_OK);
  ASSERT_EQ(kb_history_end(h.h, 41, KB_HISTORY_DONE, 0, W("").data()), KB_OK);
  EXPECT_EQ(kb_history_end(h.h, 41, KB_HISTORY_DONE, 0, W("").data()), KB_E_BAD_ARG);  // already ended

  ASSERT_TRUE(peer.WaitFor([&] { return peer.history().size() == 5; }, 5000));
  const auto parts = peer.history();
  const auto& refused = parts[0];  // answered by the bridge at once
  EXPECT_EQ(refused.request_id, 42u);
  EXPECT_EQ(refused.status, kairos_marketdata_v1_HistoryStatus_HISTORY_STATUS_ERROR);
  EXPECT_NE(std::string(refused.message).find("range"), std::string::npos) << refused.message;
  uint64_t rows = 0;
  int64_t prev = 0;
  for (size_t i = 1; i < parts.size(); i++) {
    const auto& p = parts[i];
    EXPECT_EQ(p.request_id, 41u);
    EXPECT_EQ(p.part, i - 1);
    EXPECT_LE(p.ticks.time_msc_count, 256u);
    for (pb_size_t k = 0; k < p.ticks.time_msc_count; k++) {
      EXPECT_EQ(p.ticks.time_msc[k], 1577836800000 + static_cast<int64_t>(rows) * 1000);  // UTC
      EXPECT_GT(p.ticks.time_msc[k], prev - 1);
      prev = p.ticks.time_msc[k];
      rows++;
    }
    EXPECT_EQ(p.status, i + 1 < parts.size() ? kairos_marketdata_v1_HistoryStatus_HISTORY_STATUS_MORE
                                             : kairos_marketdata_v1_HistoryStatus_HISTORY_STATUS_DONE);
  }
  EXPECT_EQ(rows, 600u);
  EXPECT_EQ(parts.back().total, 600u);
  EXPECT_STREQ(parts.back().ticks.symbol, "");  // the verdict carries no rows

  // Bars: 64 per part, open times in UTC.
  req.request_id = 43;
  req.kind = kairos_marketdata_v1_HistoryKind_HISTORY_KIND_BARS;
  req.period_s = 60;
  ASSERT_TRUE(peer.SendHistoryRequest(req));
  ASSERT_TRUE(peer.WaitFor([&] { return kb_poll_history(h.h, &got) == KB_OK; }, 5000));
  std::vector<KbMqlRates> rates(70);
  for (size_t i = 0; i < rates.size(); i++) {
    rates[i] = KbMqlRates{};
    rates[i].time = 1577836800 + 7200 + static_cast<int64_t>(i) * 60;
    rates[i].open = rates[i].high = rates[i].low = rates[i].close = 1.12;
    rates[i].tick_volume = 10;
  }
  EXPECT_EQ(kb_history_ticks(h.h, 43, ticks.data(), 1), KB_E_BAD_ARG);  // a bar request takes bars
  rates[3].high = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(kb_history_bars(h.h, 43, rates.data(), 70), KB_E_NON_FINITE);
  rates[3].high = 1.12;
  // A call that would take the queue past its bound (4,096 parts, Client::kMaxHistoryParts) is
  // refused whole: none of it is queued, so the parts below are numbered as if it never came.
  const std::vector<KbMqlRates> too_many(4097 * 64, rates[0]);
  EXPECT_EQ(kb_history_bars(h.h, 43, too_many.data(), static_cast<int32_t>(too_many.size())),
            KB_E_QUEUE_FULL);
  ASSERT_EQ(kb_history_bars(h.h, 43, rates.data(), 70), KB_OK);
  ASSERT_EQ(kb_history_end(h.h, 43, KB_HISTORY_PARTIAL, 1577836800000 + 7200000 + 3600000,
                           W("history starts at 01:00").data()),
            KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.history().size() == 8; }, 5000));
  const auto all = peer.history();
  EXPECT_EQ(all[5].bars_count, 64u);
  EXPECT_EQ(all[5].part, 0u);
  EXPECT_EQ(all[5].bars[0].open_time_msc, 1577836800000);
  EXPECT_EQ(all[5].bars[0].period_s, 60u);
  EXPECT_STREQ(all[5].bars[0].symbol, "EURUSD");
  EXPECT_EQ(all[6].bars_count, 6u);
  EXPECT_EQ(all[7].status, kairos_marketdata_v1_HistoryStatus_HISTORY_STATUS_PARTIAL);
  EXPECT_EQ(all[7].total, 70u);
  EXPECT_EQ(all[7].first_available_msc, 1577836800000 + 3600000);
  EXPECT_STREQ(all[7].message, "history starts at 01:00");
}

TEST(Protocol, MalformedFrameClosesTheConnectionAndTheBridgeReconnects) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).market_data_connected == 1; }, 3000));
  ASSERT_TRUE(peer.SendRaw({0x03, 0xFF, 0xFF, 0xFF}));  // a 3-byte frame that is not protobuf
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).malformed_frames == 1; }, 3000));
  EXPECT_EQ(Counters(h.h).last_error, KB_E_MALFORMED_FRAME);
  kb_char16 text[128];
  ASSERT_EQ(kb_last_error(h.h, text, 128), KB_OK);
  EXPECT_NE(text[0], 0);
  ASSERT_TRUE(peer.WaitFor(
      [&] { return peer.connections() == 2 && Counters(h.h).market_data_connected == 1; }, 5000));
  ASSERT_TRUE(peer.SendRaw({0x80, 0x80, 0x80, 0x01}));  // length prefix of 2 MiB
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).malformed_frames == 2; }, 3000));
  ASSERT_TRUE(peer.WaitFor([&] { return peer.connections() == 3; }, 5000));
  // A tick pushed now still arrives: nothing accepted is lost across these reconnects.
  auto ticks = Ticks();
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, ticks.data(), 10), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == 10; }, 5000));
  kb_char16 line[256];
  int lines = 0;
  while (kb_poll_log(h.h, line, 256) == KB_OK) lines++;
  EXPECT_GE(lines, 2);
}

TEST(Protocol, SilentPeerIsDeclaredDeadAfterThreeHeartbeatIntervals) {
  TestPeer::Options o;
  o.heartbeat_ms = 50;
  o.send_heartbeats = false;
  o.ack = false;
  TestPeer peer(o);
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).last_error == KB_E_HEARTBEAT_TIMEOUT; }, 5000));
  ASSERT_TRUE(peer.WaitFor([&] { return peer.connections() >= 2; }, 5000));
}

TEST(Protocol, HeartbeatsMeasureTheRoundTrip) {
  TestPeer::Options o;
  o.heartbeat_ms = 50;
  TestPeer peer(o);
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h), KB_OK);
  ASSERT_TRUE(
      peer.WaitFor([&] { return Counters(h.h).market_data_rtt_us >= 0 && peer.heartbeats() >= 2; }, 5000));
  EXPECT_GE(Counters(h.h).heartbeats_received, 1u);
}

TEST(Close, IsBoundedAndFlushesWhatWasQueued) {
  TestPeer peer;
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), DeadEndpoint(), &h.h), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).market_data_connected == 1; }, 3000));
  auto ticks = Ticks();
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, ticks.data(), 5000), KB_OK);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(kb_close(h.h), KB_OK);
  h.h = 0;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == 5000; }, 3000)) << peer.tick_count();
}

// DLL globals are shared by every EA of the terminal: handles must not see each other's state.
TEST(Handles, EachEaHandleIsIndependent) {
  TestPeer a, b;
  Handle ha, hb;
  ASSERT_EQ(Open(a.endpoint(), "", &ha.h), KB_OK);
  ASSERT_EQ(Open(b.endpoint(), "", &hb.h), KB_OK);
  EXPECT_NE(ha.h, hb.h);
  auto ticks = Ticks();
  ASSERT_EQ(kb_push_ticks(ha.h, W("EURUSD").data(), 5, ticks.data(), 300), KB_OK);
  ASSERT_EQ(kb_push_ticks(hb.h, W("GBPUSD").data(), 5, ticks.data(), 200), KB_OK);
  ASSERT_TRUE(a.WaitFor([&] { return a.tick_count() == 300 && b.tick_count() == 200; }, 5000));
  EXPECT_NE(a.hellos()[0].session_id, b.hellos()[0].session_id);
  ASSERT_EQ(kb_close(ha.h), KB_OK);
  ha.h = 0;
  ASSERT_EQ(kb_push_ticks(hb.h, W("GBPUSD").data(), 5, ticks.data() + 200, 100), KB_OK);
  ASSERT_TRUE(b.WaitFor([&] { return b.tick_count() == 300; }, 5000));
  EXPECT_EQ(b.tick_gaps(), 0u);
  EXPECT_EQ(Counters(hb.h).ticks_queued, 300u);
}

TEST(Handles, OpeningMoreThanTheLimitIsRefused) {
  const std::string dead = DeadEndpoint();
  KbOptions o{};
  kb_default_options(&o);
  o.tick_queue_capacity = 1024;  // 64 default rings would be 940 MB
  std::vector<Handle> handles(KB_MAX_HANDLES);
  for (auto& h : handles) ASSERT_EQ(Open(dead, "", &h.h, &o), KB_OK);
  int64_t extra = 0;
  EXPECT_EQ(Open(dead, "", &extra, &o), KB_E_TOO_MANY);
  EXPECT_EQ(extra, 0);
  ASSERT_EQ(kb_close(handles[0].h), KB_OK);
  handles[0].h = 0;
  EXPECT_EQ(Open(dead, "", &handles[0].h, &o), KB_OK) << "a closed handle frees its slot";
}

TEST(Close, IsBoundedWhenThePeerNeverAcknowledges) {
  TestPeer::Options o;
  o.ack = false;
  TestPeer peer(o);
  Handle h;
  ASSERT_EQ(Open(peer.endpoint(), "", &h.h), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return Counters(h.h).market_data_connected == 1; }, 3000));
  auto ticks = Ticks();
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, ticks.data(), 1000), KB_OK);
  ASSERT_TRUE(peer.WaitFor([&] { return peer.tick_count() == 1000; }, 3000));
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(kb_close(h.h), KB_OK);
  h.h = 0;
  // close_flush_ms (500 ms) bounds the wait for acknowledgements that never come.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
}

// ---- Strategy Tester lockstep (ADR 0095) ---------------------------------------------------------

namespace {

KbOptions LockstepOptions() {
  KbOptions o{};
  o.struct_size = sizeof(KbOptions);
  EXPECT_EQ(kb_default_options(&o), KB_OK);
  o.lockstep = 1;
  return o;
}

kairos_bridge_v1_TesterStep Step(uint64_t seq, std::initializer_list<int64_t> decisions) {
  kairos_bridge_v1_TesterStep s = kairos_bridge_v1_TesterStep_init_zero;
  std::snprintf(s.symbol, sizeof(s.symbol), "EURUSD");
  s.tick_sequence = seq;
  for (int64_t d : decisions) s.decision_time_msc[s.decision_time_msc_count++] = d;
  return s;
}

kairos_bridge_v1_TesterDecision Decision(int64_t time_msc, const char* outcome, uint32_t commands) {
  kairos_bridge_v1_TesterDecision d = kairos_bridge_v1_TesterDecision_init_zero;
  std::snprintf(d.symbol, sizeof(d.symbol), "EURUSD");
  d.time_msc = time_msc;
  std::snprintf(d.outcome, sizeof(d.outcome), "%s", outcome);
  d.commands = commands;
  return d;
}

}  // namespace

TEST(Tester, LiveModeNeverWaitsAndApi3OptionsStillOpen) {
  TestPeer md;
  Handle live;
  ASSERT_EQ(Open(md.endpoint(), "", &live.h), KB_OK);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(kb_tester_wait(live.h, 1000), KB_E_STATE) << "a live bridge must never block";
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(100));
  EXPECT_EQ(kb_tester_wait(live.h, 0), KB_E_BAD_ARG);
  EXPECT_EQ(kb_tester_wait(live.h, 60001), KB_E_BAD_ARG);
  EXPECT_EQ(kb_tester_wait(999999, 10), KB_E_BAD_HANDLE);
  // An API 3 EA passes the 52-byte KbOptions: it opens, live, and its Hello asks for nothing.
  KbOptions v3{};
  v3.struct_size = 52;
  ASSERT_EQ(kb_default_options(&v3), KB_OK);
  EXPECT_EQ(v3.struct_size, 52);
  EXPECT_EQ(v3.lockstep, 0) << "wrote past an API 3 caller's struct";
  TestPeer md3;  // one connection per test peer
  Handle old;
  ASSERT_EQ(Open(md3.endpoint(), "", &old.h, &v3), KB_OK);
  EXPECT_EQ(kb_tester_wait(old.h, 10), KB_E_STATE);
  KbOptions bad = LockstepOptions();
  bad.lockstep = 2;
  int64_t h = 0;
  EXPECT_EQ(Open(md.endpoint(), "", &h, &bad), KB_E_BAD_ARG);
  for (TestPeer* p : {&md, &md3}) {
    ASSERT_TRUE(p->WaitFor([&] { return !p->hellos().empty(); }, 3000));
    EXPECT_FALSE(p->hellos()[0].lockstep);
    EXPECT_EQ(p->hellos()[0].api_version, 4u);
  }
}

TEST(Tester, AStepWaitsForTheCollectorTheDecisionItsCommandAndTheAck) {
  TestPeer md, tr;
  Handle h;
  const KbOptions o = LockstepOptions();
  ASSERT_EQ(Open(md.endpoint(), tr.endpoint(), &h.h, &o), KB_OK);
  const std::vector<KbMqlTick> ticks = Ticks();
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, &ticks[0], 1), KB_OK);
  // Nothing answered yet: the wait is bounded, says so, counts it and logs what it waited for.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(kb_tester_wait(h.h, 300), KB_E_TIMEOUT);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, std::chrono::milliseconds(290));
  EXPECT_LT(waited, std::chrono::milliseconds(1500));
  EXPECT_EQ(Counters(h.h).tester_timeouts, 1u);
  kb_char16 line[512];
  std::string logged;
  while (kb_poll_log(h.h, line, 512) == KB_OK) {
    std::string s;
    for (int i = 0; line[i] != 0; i++) s += static_cast<char>(line[i]);
    logged += s + "\n";
  }
  EXPECT_NE(
      logged.find(
          "tester step: no decision within 300 ms, waiting for the collector's answer for EURUSD tick 1"),
      std::string::npos)
      << logged;
  ASSERT_TRUE(md.WaitFor([&] { return Counters(h.h).trading_connected == 1 && md.tick_count() == 1; }, 3000));

  // The collector answered: no decision on tick 1. The step is done.
  ASSERT_TRUE(md.SendTesterStep(Step(1, {})));
  EXPECT_EQ(kb_tester_wait(h.h, 3000), KB_OK);
  EXPECT_EQ(Counters(h.h).tester_no_decision, 1u);

  // Tick 2 closes a bar: the collector names the decision, and the step waits for execution's.
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, &ticks[1], 1), KB_OK);
  ASSERT_TRUE(md.SendTesterStep(Step(2, {1577898060000})));
  EXPECT_EQ(kb_tester_wait(h.h, 200), KB_E_TIMEOUT) << "done before the execution service decided";
  ASSERT_TRUE(tr.SendCommand(PlaceCommand(7, "K-7")));
  ASSERT_TRUE(tr.SendTesterDecision(Decision(1577898060000, "order", 1)));
  // The decision's command comes first: the EA carries it out, reports, and waits again.
  EXPECT_EQ(kb_tester_wait(h.h, 3000), KB_COMMAND);
  KbCommand cmd{};
  ASSERT_EQ(kb_poll_command(h.h, &cmd), KB_OK);
  EXPECT_EQ(cmd.command_id, 7u);
  const KbOrderResult r = Result(7);
  ASSERT_EQ(kb_report_result(h.h, &r, W("K-7").data(), W("Request executed").data()), KB_OK);
  // Done only once execution acknowledged the result: the next decision sees the fill.
  EXPECT_EQ(kb_tester_wait(h.h, 3000), KB_OK);
  EXPECT_GE(tr.last_ack_from_bridge(), 2u);
  EXPECT_EQ(tr.results().size(), 1u) << "the result reached the execution service before the step ended";

  // A decision reported before the collector's step counts as well (the two channels race).
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, &ticks[2], 1), KB_OK);
  ASSERT_TRUE(tr.SendTesterDecision(Decision(1577898120000, "hold", 0)));
  ASSERT_TRUE(tr.WaitFor([&] { return Counters(h.h).tester_decisions == 2; }, 3000));
  ASSERT_TRUE(md.SendTesterStep(Step(3, {1577898120000})));
  EXPECT_EQ(kb_tester_wait(h.h, 3000), KB_OK);
  const KbCounters c = Counters(h.h);
  EXPECT_EQ(c.tester_steps, 3u);
  EXPECT_EQ(c.tester_timeouts, 2u);
  EXPECT_EQ(c.tester_decisions, 2u);
  EXPECT_EQ(c.tester_no_decision, 1u);
  ASSERT_FALSE(md.hellos().empty());
  EXPECT_TRUE(md.hellos()[0].lockstep);
  EXPECT_TRUE(tr.hellos()[0].lockstep);
}

namespace {

// Every log line of a handle, one per line.
std::string DrainLog(int64_t h) {
  kb_char16 line[512];
  std::string logged;
  while (kb_poll_log(h, line, 512) == KB_OK) {
    for (int i = 0; line[i] != 0; i++) logged += static_cast<char>(line[i]);
    logged += "\n";
  }
  return logged;
}

}  // namespace

TEST(Tester, ALegitimateRunNeverReachesTheLockstepBounds) {
  TestPeer md, tr;
  Handle h;
  const KbOptions o = LockstepOptions();
  ASSERT_EQ(Open(md.endpoint(), tr.endpoint(), &h.h, &o), KB_OK);
  ASSERT_TRUE(md.WaitFor([&] { return Counters(h.h).trading_connected == 1; }, 3000));
  ASSERT_TRUE(md.WaitFor([&] { return Counters(h.h).market_data_connected == 1; }, 3000));
  const std::vector<KbMqlTick> ticks = Ticks();
  // More steps than the bound on outstanding decisions (4,096), each decided before the next tick;
  // the two channels race, so half the decisions arrive before the collector names them.
  const int steps = 4096 + 200;
  for (int i = 0; i < steps; i++) {
    ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, &ticks[i % ticks.size()], 1), KB_OK);
    const int64_t t = 1577898060000 + 60000LL * i;
    if (i % 10 == 9) {
      ASSERT_TRUE(md.SendTesterStep(Step(static_cast<uint64_t>(i + 1), {})));
    } else if (i % 2 == 0) {
      ASSERT_TRUE(tr.SendTesterDecision(Decision(t, "hold", 0)));
      ASSERT_TRUE(md.SendTesterStep(Step(static_cast<uint64_t>(i + 1), {t})));
    } else {
      ASSERT_TRUE(md.SendTesterStep(Step(static_cast<uint64_t>(i + 1), {t})));
      ASSERT_TRUE(tr.SendTesterDecision(Decision(t, "hold", 0)));
    }
    ASSERT_EQ(kb_tester_wait(h.h, 5000), KB_OK) << "step " << i;
  }
  const KbCounters c = Counters(h.h);
  EXPECT_EQ(c.tester_steps, static_cast<uint64_t>(steps));
  EXPECT_EQ(c.tester_timeouts, 0u);
  EXPECT_EQ(c.tester_dropped, 0u);
  EXPECT_EQ(c.last_error, 0);
}

TEST(Tester, DecisionsThatNeverCancelOutAreBoundedOldestFirstAndCounted) {
  TestPeer md, tr;
  Handle h;
  const KbOptions o = LockstepOptions();
  ASSERT_EQ(Open(md.endpoint(), tr.endpoint(), &h.h, &o), KB_OK);
  ASSERT_TRUE(md.WaitFor([&] { return Counters(h.h).trading_connected == 1; }, 3000));
  const std::vector<KbMqlTick> ticks = Ticks();
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, &ticks[0], 1), KB_OK);
  ASSERT_TRUE(md.SendTesterStep(Step(1, {})));
  ASSERT_EQ(kb_tester_wait(h.h, 3000), KB_OK);
  // The execution service reports decisions no step ever names: 100 past the bound (4,096).
  const int64_t t0 = 1577898060000;
  const int n = 4096 + 100;
  for (int i = 0; i < n; i++) ASSERT_TRUE(tr.SendTesterDecision(Decision(t0 + 60000LL * i, "hold", 0)));
  ASSERT_TRUE(tr.WaitFor([&] { return Counters(h.h).tester_decisions == static_cast<uint64_t>(n); }, 10000));
  KbCounters c = Counters(h.h);
  EXPECT_EQ(c.tester_dropped, 100u);
  EXPECT_EQ(c.last_error, KB_E_QUEUE_FULL);
  const std::string logged = DrainLog(h.h);
  EXPECT_NE(logged.find("tester: more than 4096 decisions outstanding, forgot the oldest: EURUSD at " +
                        std::to_string(t0) + " (reported before the collector named it)"),
            std::string::npos)
      << logged.substr(0, 400);
  // The newest are still known: a step naming the last one is decided at once ...
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, &ticks[1], 1), KB_OK);
  ASSERT_TRUE(md.SendTesterStep(Step(2, {t0 + 60000LL * (n - 1)})));
  EXPECT_EQ(kb_tester_wait(h.h, 3000), KB_OK);
  // ... the oldest were forgotten: a step naming the first waits for its decision again.
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, &ticks[2], 1), KB_OK);
  ASSERT_TRUE(md.SendTesterStep(Step(3, {t0})));
  EXPECT_EQ(kb_tester_wait(h.h, 300), KB_E_TIMEOUT);
  ASSERT_TRUE(tr.SendTesterDecision(Decision(t0, "hold", 0)));
  EXPECT_EQ(kb_tester_wait(h.h, 3000), KB_OK);
  c = Counters(h.h);
  EXPECT_EQ(c.tester_dropped, 100u) << "a run within the bound costs nothing more";
  EXPECT_EQ(c.tester_steps, 3u);
}

TEST(Tester, AStepForASymbolBeyondTheBoundIsRefusedAndCounted) {
  TestPeer md;
  Handle h;
  const KbOptions o = LockstepOptions();
  ASSERT_EQ(Open(md.endpoint(), "", &h.h, &o), KB_OK);
  const std::vector<KbMqlTick> ticks = Ticks();
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, &ticks[0], 1), KB_OK);
  ASSERT_TRUE(md.WaitFor([&] { return Counters(h.h).market_data_connected == 1; }, 3000));
  ASSERT_TRUE(md.SendTesterStep(Step(1, {})));
  ASSERT_EQ(kb_tester_wait(h.h, 3000), KB_OK);
  // Answers for 300 symbols the EA never pushed: EURUSD and 255 of them fill the bound
  // (KB_MAX_SYMBOLS), the other 45 are refused.
  auto step_for = [](const std::string& symbol, std::initializer_list<int64_t> decisions) {
    kairos_bridge_v1_TesterStep s = Step(1, decisions);
    std::snprintf(s.symbol, sizeof(s.symbol), "%s", symbol.c_str());
    return s;
  };
  for (int i = 0; i < 300; i++) ASSERT_TRUE(md.SendTesterStep(step_for("X" + std::to_string(i), {})));
  ASSERT_TRUE(md.WaitFor([&] { return Counters(h.h).tester_dropped == 45; }, 5000))
      << Counters(h.h).tester_dropped;
  // A refused step names no decision the tester waits for.
  ASSERT_TRUE(md.SendTesterStep(step_for("X300", {1577898060000})));
  ASSERT_TRUE(md.WaitFor([&] { return Counters(h.h).tester_dropped == 46; }, 5000));
  EXPECT_EQ(kb_tester_wait(h.h, 1000), KB_OK);
  // Symbols already answered still are.
  ASSERT_TRUE(md.SendTesterStep(step_for("X0", {})));
  ASSERT_EQ(kb_push_ticks(h.h, W("EURUSD").data(), 5, &ticks[1], 1), KB_OK);
  ASSERT_TRUE(md.SendTesterStep(Step(2, {})));
  EXPECT_EQ(kb_tester_wait(h.h, 3000), KB_OK);
  const KbCounters c = Counters(h.h);
  EXPECT_EQ(c.tester_dropped, 46u);
  EXPECT_EQ(c.tester_no_decision, 1u + 255u + 1u + 1u);
  EXPECT_EQ(c.last_error, KB_E_TOO_MANY);
  const std::string logged = DrainLog(h.h);
  EXPECT_NE(logged.find("tester step for X300 refused: more than 256 symbols answered"), std::string::npos)
      << logged.substr(0, 400);
}
