// One bridge instance (one per EA): the bounded queues the terminal thread touches, and the network
// thread that owns both TCP connections (collector and execution service). The terminal thread never
// waits on I/O: push and report take a short uncontended lock, copy, and at most send one byte on a
// local UDP socket to wake the network thread when it sleeps.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "codec.h"
#include "kairos/bridge/v1/bridge.pb.h"
#include "kairos_bridge.h"
#include "net.h"
#include "resolver.h"

namespace kairos::bridge {

struct Config {
  std::string collector_host;  // empty: market-data channel disabled
  uint16_t collector_port = 0;
  std::string execution_host;  // empty: trading channel disabled
  uint16_t execution_port = 0;
  kairos_bridge_v1_Hello hello = kairos_bridge_v1_Hello_init_zero;  // channel and session set per connection
  KbOptions options{};
  // The bridge key (docs/adr/0015-bridge-authentication.md): Hello proves it over the server's
  // Challenge, and the server must prove it back in Welcome. Empty: Hello carries no proof, and
  // only a server that does not authenticate accepts it.
  std::string key;
};

// How long kb_close waits for a name lookup in progress before leaving it to finish on its own.
constexpr int kResolverStopWaitMs = 100;

// The documented defaults (kb_default_options).
KbOptions DefaultOptions();
// Clamps every field to its documented range; sizes and intervals <= 0 take their default, the
// fields where 0 means "off" (close_flush_ms, idle_spin_us, warm_poll_us) only when negative.
void NormalizeOptions(KbOptions* options);

class Client {
 public:
  explicit Client(const Config& config);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  int Start();  // opens the waker and starts the network thread
  void Stop();  // flushes (bounded), stops and joins; idempotent

  bool has_market_data() const { return !config_.collector_host.empty(); }
  bool has_trading() const { return !config_.execution_host.empty(); }
  uint64_t session_id() const { return session_id_; }

  void SetServerOffset(int64_t ms) { server_offset_ms_.store(ms, std::memory_order_relaxed); }
  int AnnounceSymbol(const kairos_marketdata_v1_SymbolInfo& info);
  int PushTicks(const std::string& symbol, int32_t digits, const KbMqlTick* ticks, int32_t count);
  int PollCommand(KbCommand* out);
  // History through the bridge (terminal thread): the next chunk asked for, its rows, its verdict.
  int PollHistory(KbHistoryRequest* out);
  int HistoryTicks(uint64_t request_id, const KbMqlTick* ticks, int32_t count);
  int HistoryBars(uint64_t request_id, const KbMqlRates* rates, int32_t count);
  int HistoryEnd(uint64_t request_id, int32_t status, int64_t first_available_msc,
                 const std::string& message);
  // Queues sequenced frame bodies for the trading channel, all or none. dup_body (optional) is the
  // DUPLICATE answer kept for a repeated command_id.
  int QueueReports(std::vector<std::vector<uint8_t>>* bodies, uint64_t command_id,
                   std::vector<uint8_t> dup_body);

  // Positions snapshot builder (terminal thread).
  int PositionsBegin(int64_t time_msc);
  int PositionsAdd(const kairos_bridge_v1_Position* position, const kairos_bridge_v1_WorkingOrder* order);
  int PositionsEnd();

  // Strategy Tester lockstep (terminal thread): waits, bounded, for the stack's decision on every
  // tick pushed so far (kb_tester_wait).
  int TesterWait(int32_t timeout_ms);
  bool lockstep() const { return config_.options.lockstep == 1; }

  void GetCounters(KbCounters* out) const;
  std::string LastError() const;
  bool PollLog(std::string* line);

 private:
  struct TickRec {
    int64_t time_msc;
    double bid, ask, last, volume;
    uint64_t seq;
    uint32_t flags;
    uint16_t sym;
    uint16_t pad;
  };
  struct Symbol {
    char name[32];
    std::atomic<uint32_t> rev{0};  // bumped when its SymbolInfo changes; connections re-announce
    int32_t digits = -1;           // producer side
    uint64_t next_seq = 1;         // producer side: per-symbol tick sequence
  };
  struct Pending {
    uint64_t seq;
    std::vector<uint8_t> body;
    uint32_t ticks;  // ticks in the frame (market data), for the counters
  };
  // kResolving: a name lookup runs on the resolver thread; kAwaitChallenge: connected, Hello goes
  // once the server's Challenge arrived.
  enum class State { kBackoff, kResolving, kConnecting, kAwaitChallenge, kAwaitWelcome, kReady };
  struct Conn {
    kairos_bridge_v1_Channel channel;
    std::string host;
    uint16_t port = 0;
    sockaddr_in addr{};                  // the endpoint when host is a dotted IPv4 address
    std::unique_ptr<Resolver> resolver;  // otherwise: looked up off the network thread
    uint8_t server_nonce[32] = {};
    uint8_t client_nonce[32] = {};
    net::Socket fd = net::kInvalid;
    State state = State::kBackoff;
    int64_t next_attempt_ms = 0;
    int64_t deadline_ms = 0;
    int failures = 0;
    bool ever_ready = false;
    std::vector<uint8_t> out;
    size_t out_off = 0;
    std::vector<uint8_t> in;
    uint64_t next_seq = 1;
    uint64_t processed = 0;  // highest peer sequence processed on this connection (our ack)
    bool ack_dirty = false;
    std::deque<Pending> unacked;  // all written on the current connection once kReady
    int heartbeat_ms = 1000;
    int64_t last_rx_ms = 0;
    int64_t last_hb_tx_ms = 0;
    int64_t peer_hb_time_us = 0;  // a peer heartbeat time not yet echoed (0: none)
    int64_t last_echo_ms = -1000000;
    std::vector<uint32_t> announced;  // market data: rev of each symbol last announced
  };
  struct Counters {
    std::atomic<uint64_t> ticks_queued{0}, ticks_sent{0}, ticks_dropped{0}, ticks_rejected{0},
        ticks_resent{0}, ticks_resend_dropped{0}, frames_sent{0}, frames_received{0}, bytes_sent{0},
        bytes_received{0}, reconnects{0}, connect_failures{0}, malformed_frames{0}, heartbeats_sent{0},
        heartbeats_received{0}, duplicate_frames{0}, commands_received{0}, commands_polled{0},
        commands_duplicate{0}, commands_dropped{0}, reports_queued{0}, reports_acked{0}, reports_resent{0},
        reports_dropped{0}, ticks_acked{0}, wakeups{0}, tester_steps{0}, tester_timeouts{0},
        tester_decisions{0}, tester_no_decision{0}, tester_dropped{0};
    std::atomic<int32_t> md_connected{0}, tr_connected{0};
    std::atomic<int64_t> md_rtt_us{-1}, tr_rtt_us{-1};
  };

  static int64_t NowMs();
  void Run();
  void RunLoop();
  void Log(int code, const std::string& text);
  void WakeIfSleeping();
  bool HasLocalWork(bool md_ready) const;

  // Connection handling (network thread).
  void StartConnect(Conn& c, int64_t now);
  void OnConnected(Conn& c, int64_t now);
  void Disconnect(Conn& c, int code, const std::string& why, int64_t now);
  void ReadFrom(Conn& c, int64_t now);
  bool HandleFrame(Conn& c, const kairos_bridge_v1_Frame& f, int64_t now);
  bool OnChallenge(Conn& c, const kairos_bridge_v1_Challenge& ch, int64_t now);
  bool ServerProofOk(const Conn& c, const kairos_bridge_v1_Welcome& w) const;
  void OnWelcome(Conn& c, const kairos_bridge_v1_Welcome& w, int64_t now);
  void OnCommand(Conn& c, const kairos_bridge_v1_Frame& f);
  void OnAck(Conn& c, uint64_t ack);
  void Enqueue(Conn& c, std::vector<uint8_t> body, uint32_t ticks);
  void Write(Conn& c, uint64_t seq, const std::vector<uint8_t>& body);
  void SendHeartbeat(Conn& c, int64_t now);
  void SendError(Conn& c, kairos_bridge_v1_ErrorCode code, const std::string& msg, uint64_t seq);
  void Flush(Conn& c, int64_t now);
  void AnnounceChanged(Conn& c);
  void PumpTicks(Conn& c);
  void PumpReports(Conn& c);
  void QueueResultOnNet(Conn& c, const kairos_bridge_v1_OrderCommand& cmd, const std::string& why);
  int64_t NextBackoff(Conn& c);

  Config config_;
  uint64_t session_id_;

  // Tick ring: single consumer (network thread); producers serialised by push_mu_.
  std::mutex push_mu_;
  std::unique_ptr<TickRec[]> ring_;
  uint64_t mask_;
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
  alignas(64) std::atomic<bool> sleeping_{false};
  std::atomic<int64_t> server_offset_ms_{0};

  std::array<Symbol, KB_MAX_SYMBOLS> symbols_;
  std::atomic<int> symbol_count_{0};
  mutable std::mutex info_mu_;
  std::vector<kairos_marketdata_v1_SymbolInfo> infos_;  // by symbol index, guarded by info_mu_

  std::mutex cmd_mu_;
  std::deque<KbCommand> commands_;

  struct ReportIn {
    std::vector<uint8_t> body;
    uint64_t command_id;
    std::vector<uint8_t> dup_body;
  };
  std::mutex rep_mu_;
  std::vector<ReportIn> reports_in_;
  std::atomic<size_t> reports_pending_{0};  // queued + unacknowledged, bounded by the capacity

  std::mutex pos_mu_;
  bool pos_open_ = false;
  int64_t pos_time_ = 0;
  std::vector<kairos_bridge_v1_Position> pos_positions_;
  std::vector<kairos_bridge_v1_WorkingOrder> pos_orders_;

  mutable std::mutex log_mu_;
  std::deque<std::string> logs_;
  std::string last_error_;
  std::atomic<int32_t> last_error_code_{0};

  Counters n_;

  // Network thread state.
  net::Waker waker_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> stopped_{false};
  Conn md_, tr_;
  // History: requests from the collector wait for kb_poll_history; parts the EA produced wait for
  // the network thread (market-data channel). Both bounded; hist_state_ follows each request
  // from its arrival to kb_history_end.
  struct HistoryState {
    char symbol[32];
    int32_t kind;
    uint32_t period_s;
    uint32_t part = 0;
    uint64_t total = 0;
  };
  static constexpr size_t kMaxHistoryRequests = 256;
  static constexpr size_t kMaxHistoryParts = 4096;
  std::mutex hist_mu_;
  std::deque<KbHistoryRequest> hist_requests_;
  std::unordered_map<uint64_t, HistoryState> hist_state_;
  std::deque<std::vector<uint8_t>> hist_out_;
  // Queues count items of one open request of this kind as HistoryData parts of at most per items;
  // fill(d, st, offset, at, n) writes items [at, at + n) into part d. The one place HistoryTicks and
  // HistoryBars check the request and the bound, number the parts and wake the network thread.
  template <typename Fill>
  int QueueHistoryParts(uint64_t request_id, int32_t kind, int32_t count, uint32_t per, Fill fill);
  void OnHistoryRequest(Conn& c, const kairos_bridge_v1_HistoryRequest& r);
  void PumpHistory(Conn& c);
  bool HistoryPending();
  // Lockstep state: what was pushed, what the collector answered, the decisions it named that the
  // execution service has not reported yet (and reports that came first). Guarded by step_mu_; the
  // network thread notifies step_cv_ whenever any input of the step condition may have changed.
  // Both maps the peers fill are bounded, and what the bounds cost is counted (tester_dropped): a
  // TesterStep naming a symbol beyond kMaxStepSymbols is refused whole (only pushed symbols, at most
  // KB_MAX_SYMBOLS, are ever answered in a real run); beyond kMaxStepPending decisions awaited or
  // reported early the oldest is forgotten (a run whose steps end decided holds a step's few).
  static constexpr size_t kMaxStepSymbols = KB_MAX_SYMBOLS;
  static constexpr size_t kMaxStepPending = 4096;
  struct StepPending {
    int count;        // awaited decisions (< 0: reported before the collector named them)
    uint64_t serial;  // arrival order of the entry, its key in step_order_
  };
  using StepKey = std::pair<std::string, int64_t>;  // (symbol, Signal.time_msc)
  std::mutex step_mu_;
  std::condition_variable step_cv_;
  std::map<std::string, uint64_t> step_pushed_;    // symbol -> last tick sequence pushed
  std::map<std::string, uint64_t> step_answered_;  // symbol -> last tick sequence the collector answered
  std::map<StepKey, StepPending> step_pending_;    // decisions awaited (count; < 0: early)
  std::map<uint64_t, StepKey> step_order_;         // the same entries, oldest first
  uint64_t step_serial_ = 0;
  // Adds delta to the entry of key (erased at 0); beyond kMaxStepPending forgets the oldest entries,
  // appending a log line per entry to *forgotten. Called with step_mu_ held.
  void AdjustStepPending(const StepKey& key, int delta, std::vector<std::string>* forgotten);
  void OnTesterStep(Conn& c, const kairos_bridge_v1_TesterStep& s, uint64_t seq);
  void OnTesterDecision(const kairos_bridge_v1_TesterDecision& d);
  void NotifyStep();
  // Empty when the step is done, else what it still waits for (for the log line of a timeout).
  std::string StepWaitingFor();
  std::unique_ptr<kairos_bridge_v1_Frame> scratch_;  // 22 KB, reused for encoding tick batches
  std::unordered_set<uint64_t> seen_commands_;
  std::deque<uint64_t> seen_order_;
  std::unordered_map<uint64_t, std::vector<uint8_t>> dup_results_;
  std::deque<uint64_t> dup_order_;
  uint64_t rng_;
  int64_t last_pump_ms_ = -1000000;  // when ticks were last sent (network thread)
};

}  // namespace kairos::bridge
