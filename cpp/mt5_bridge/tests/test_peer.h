// A real bridge server on 127.0.0.1 for tests and the benchmark: speaks the protocol of
// proto/kairos/bridge/v1/bridge.proto as the collector and the execution service do (Welcome with
// resume_after per session and channel, duplicate drop by sequence, cumulative acks, heartbeats) and
// records what it received. It can drop the connection, restart (keeping or losing its state), send
// order commands and send malformed bytes.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kairos/bridge/v1/bridge.pb.h"

namespace kairos::bridge::testing {

struct PeerTick {
  std::string symbol;
  int64_t time_msc;
  double bid, ask, last, volume;
  uint32_t flags;
  uint64_t seq;
};

class TestPeer {
 public:
  struct Options {
    uint32_t heartbeat_ms = 1000;
    bool ack = true;                  // acknowledge processed frames
    bool send_heartbeats = true;      // answer with heartbeats (liveness)
    bool keep_ticks = true;           // store every tick (tests); false counts only (benchmark)
    bool welcome = true;              // answer Hello with Welcome
    bool light_ticks = false;         // benchmark sink: count tick frames without a full nanopb decode
    std::string key;                  // bridge key: Hello must prove it, Welcome proves it back; empty:
                                      // an insecure server (Challenge.auth_required false, no proof)
    bool wrong_server_proof = false;  // a fake server: Welcome carries a proof that does not verify
  };

  TestPeer();
  explicit TestPeer(Options options);
  ~TestPeer();

  uint16_t port() const { return port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

  // Closes the current connection, keeps the listener and the per-session state.
  void DropConnection();
  // Stops listening for down_ms, then listens again on the same port; forget_state loses the
  // per-session sequence state (a server that restarted without persistence).
  void Restart(int down_ms, bool forget_state);
  // Sends a sequenced OrderCommand on the current connection; false if none.
  bool SendCommand(const kairos_bridge_v1_OrderCommand& cmd);
  // Sends a sequenced HistoryRequest (a collector asking for history); false if no connection.
  bool SendHistoryRequest(const kairos_bridge_v1_HistoryRequest& req);
  // Strategy Tester lockstep (ADR 0095): the collector's answer for a tick frame, the execution
  // service's decision.
  bool SendTesterStep(const kairos_bridge_v1_TesterStep& step);
  bool SendTesterDecision(const kairos_bridge_v1_TesterDecision& decision);
  // Writes raw bytes on the current connection.
  bool SendRaw(const std::vector<uint8_t>& bytes);

  // Polls pred every millisecond until true or timeout; never sleeps longer than needed.
  bool WaitFor(const std::function<bool()>& pred, int timeout_ms);

  // Observations (thread-safe copies).
  std::vector<PeerTick> ticks();
  uint64_t tick_count() const { return tick_count_.load(); }
  uint64_t tick_gaps() const { return tick_gaps_.load(); }  // per-symbol sequence jumps or repeats
  std::vector<kairos_bridge_v1_Hello> hellos();
  std::vector<kairos_bridge_v1_OrderResult> results();
  std::vector<kairos_bridge_v1_TradeTransaction> transactions();
  std::vector<kairos_bridge_v1_AccountSnapshot> accounts();
  std::vector<kairos_bridge_v1_TerminalCheck> checks();
  std::vector<kairos_bridge_v1_HistoryData> history();
  std::vector<kairos_bridge_v1_PositionSnapshot> positions();
  std::vector<kairos_marketdata_v1_SymbolInfo> symbol_infos();
  uint64_t duplicates() const { return duplicates_.load(); }
  uint64_t frame_gaps() const { return frame_gaps_.load(); }  // sequenced frames skipping numbers
  uint64_t connections() const { return connections_.load(); }
  uint64_t last_ack_from_bridge() const { return last_ack_.load(); }
  uint64_t heartbeats() const { return heartbeats_.load(); }
  uint64_t bytes() const { return bytes_.load(); }
  uint64_t auth_failures() const { return auth_failures_.load(); }  // Hellos refused for the key
  // steady_clock nanoseconds of the last listen() (start, or the end of a Restart's down time).
  int64_t listening_since_ns() const { return listen_ns_.load(); }

 private:
  void Listen();
  void Loop();
  void Serve(int fd);
  bool HandleFrame(int fd, const kairos_bridge_v1_Frame& f);
  bool LightTicks(const uint8_t* p, size_t n);
  bool WriteFrame(int fd, kairos_bridge_v1_Frame* f);
  bool SendBody(pb_size_t tag, const std::function<void(kairos_bridge_v1_Frame*)>& fill);

  Options opt_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<int> conn_fd_{-1};
  std::atomic<bool> stop_{false};
  std::atomic<bool> drop_{false};
  std::atomic<int> restart_down_ms_{-1};
  std::atomic<bool> restart_forget_{false};
  std::thread thread_;

  std::mutex mu_;                                           // guards the observations and state below
  std::mutex write_mu_;                                     // serialises writes on the connection
  std::map<std::pair<uint64_t, int>, uint64_t> processed_;  // (session, channel) -> highest sequence
  std::map<std::string, uint64_t> last_tick_seq_;
  uint64_t session_ = 0;
  int channel_ = 0;
  uint64_t out_seq_ = 0;
  int64_t last_peer_hb_us_ = 0;
  std::vector<PeerTick> ticks_;
  std::vector<kairos_bridge_v1_Hello> hellos_;
  std::vector<kairos_bridge_v1_OrderResult> results_;
  std::vector<kairos_bridge_v1_TradeTransaction> transactions_;
  std::vector<kairos_bridge_v1_AccountSnapshot> accounts_;
  std::vector<kairos_bridge_v1_TerminalCheck> checks_;
  std::vector<kairos_bridge_v1_HistoryData> history_;
  std::vector<kairos_bridge_v1_PositionSnapshot> positions_;
  std::vector<kairos_marketdata_v1_SymbolInfo> symbol_infos_;
  std::atomic<int64_t> listen_ns_{0};
  std::atomic<uint64_t> frame_gaps_{0};
  std::atomic<uint64_t> tick_count_{0}, tick_gaps_{0}, duplicates_{0}, connections_{0}, last_ack_{0},
      heartbeats_{0}, bytes_{0}, auth_failures_{0};
  uint8_t nonce_[32] = {};  // this connection's Challenge nonce
};

}  // namespace kairos::bridge::testing
