#include "client.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "crypto.h"

namespace kairos::bridge {

namespace {

constexpr size_t kOutHighWater = 1 << 20;  // stop encoding ticks while this much waits for the socket
constexpr size_t kSeenCommands = 8192;     // command_ids remembered for de-duplication
constexpr size_t kLogLines = 256;

int Clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

uint64_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Seed() {
  uint64_t s = static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count());
  try {
    std::random_device rd;
    s ^= (static_cast<uint64_t>(rd()) << 32) ^ rd();
  } catch (...) {
  }
  return s;
}

const char* ChannelName(kairos_bridge_v1_Channel c) {
  return c == kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA ? "market-data" : "trading";
}

}  // namespace

KbOptions DefaultOptions() {
  KbOptions d{};
  d.struct_size = sizeof(KbOptions);
  d.tick_queue_capacity = 262144;
  d.command_queue_capacity = 1024;
  d.tick_resend_frames = 4096;
  d.report_queue_capacity = 65536;
  d.heartbeat_interval_ms = 1000;
  d.reconnect_min_ms = 100;
  d.reconnect_max_ms = 1000;
  d.connect_timeout_ms = 2000;
  d.close_flush_ms = 500;
  d.max_batch_ticks = 256;
  d.idle_spin_us = 200;
  d.warm_poll_us = 1000;
  return d;
}

void NormalizeOptions(KbOptions* o) {
  const KbOptions d = DefaultOptions();
  auto pick = [](int32_t v, int32_t def, int lo, int hi) { return v <= 0 ? def : Clamp(v, lo, hi); };
  o->struct_size = sizeof(KbOptions);
  o->tick_queue_capacity = pick(o->tick_queue_capacity, d.tick_queue_capacity, 1024, 1 << 24);
  o->command_queue_capacity = pick(o->command_queue_capacity, d.command_queue_capacity, 1, 1 << 20);
  o->tick_resend_frames = pick(o->tick_resend_frames, d.tick_resend_frames, 1, 1 << 20);
  o->report_queue_capacity = pick(o->report_queue_capacity, d.report_queue_capacity, 16, 1 << 22);
  o->heartbeat_interval_ms = pick(o->heartbeat_interval_ms, d.heartbeat_interval_ms, 10, 60000);
  o->reconnect_min_ms = pick(o->reconnect_min_ms, d.reconnect_min_ms, 1, 60000);
  o->reconnect_max_ms = pick(o->reconnect_max_ms, d.reconnect_max_ms, o->reconnect_min_ms, 300000);
  o->connect_timeout_ms = pick(o->connect_timeout_ms, d.connect_timeout_ms, 10, 60000);
  o->close_flush_ms = o->close_flush_ms < 0 ? d.close_flush_ms : Clamp(o->close_flush_ms, 0, 2000);
  o->max_batch_ticks = pick(o->max_batch_ticks, d.max_batch_ticks, 1, 256);
  o->idle_spin_us = o->idle_spin_us < 0 ? d.idle_spin_us : Clamp(o->idle_spin_us, 0, 10000);
  o->warm_poll_us = o->warm_poll_us < 0 ? d.warm_poll_us : Clamp(o->warm_poll_us, 0, 100000);
}

Client::Client(const Config& config) : config_(config), rng_(Seed()) {
  session_id_ = SplitMix(&rng_) & 0x7FFFFFFFFFFFFFFFull;
  if (session_id_ == 0) session_id_ = 1;
  uint64_t cap = 1;
  while (cap < static_cast<uint64_t>(config_.options.tick_queue_capacity)) cap <<= 1;
  // Zero-filled here so every page of the ring is mapped before the first push: a page fault on the
  // terminal thread would cost microseconds.
  ring_.reset(new TickRec[cap]());
  mask_ = cap - 1;
  infos_.resize(KB_MAX_SYMBOLS);
  scratch_.reset(new kairos_bridge_v1_Frame);
  md_.channel = kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA;
  md_.host = config_.collector_host;
  md_.port = config_.collector_port;
  md_.announced.assign(KB_MAX_SYMBOLS, 0);
  tr_.channel = kairos_bridge_v1_Channel_CHANNEL_TRADING;
  tr_.host = config_.execution_host;
  tr_.port = config_.execution_port;
  md_.heartbeat_ms = tr_.heartbeat_ms = config_.options.heartbeat_interval_ms;
  for (Conn* c : {&md_, &tr_}) {
    if (c->host.empty() || net::ParseIPv4(c->host, c->port, &c->addr)) continue;
    // A name: its lookup runs on the resolver's thread, which wakes this one when it is done.
    c->resolver.reset(new Resolver(c->host, c->port, [this] { waker_.Wake(); }));
  }
}

Client::~Client() { Stop(); }

int64_t Client::NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int Client::Start() {
  if (!net::Init()) return KB_E_INTERNAL;
  if (!waker_.Open()) return KB_E_INTERNAL;
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (...) {
    waker_.Shutdown();
    return KB_E_INTERNAL;
  }
  return KB_OK;
}

void Client::Stop() {
  if (stopped_.exchange(true)) return;
  stop_.store(true);
  if (waker_.fd() != net::kInvalid) waker_.Wake();
  if (thread_.joinable()) thread_.join();
  // After the network thread: nothing asks for a lookup any more. A lookup stuck in the system
  // resolver is waited for only briefly, so kb_close stays bounded.
  for (Conn* c : {&md_, &tr_}) {
    if (c->resolver && !c->resolver->Stop(kResolverStopWaitMs))
      Log(0, std::string(ChannelName(c->channel)) + ": name lookup of " + c->host +
                 " still running at close; left to finish");
  }
  waker_.Shutdown();
}

void Client::Log(int code, const std::string& text) {
  std::lock_guard<std::mutex> lock(log_mu_);
  if (code != 0) {
    last_error_code_.store(code);
    last_error_ = text;
  }
  if (logs_.size() >= kLogLines) logs_.pop_front();
  logs_.push_back(text);
}

std::string Client::LastError() const {
  std::lock_guard<std::mutex> lock(log_mu_);
  return last_error_;
}

bool Client::PollLog(std::string* line) {
  std::lock_guard<std::mutex> lock(log_mu_);
  if (logs_.empty()) return false;
  *line = std::move(logs_.front());
  logs_.pop_front();
  return true;
}

void Client::WakeIfSleeping() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed) && sleeping_.exchange(false)) {
    n_.wakeups.fetch_add(1, std::memory_order_relaxed);
    waker_.Wake();
  }
}

// ---- Terminal-thread side ------------------------------------------------------------------------

int Client::AnnounceSymbol(const kairos_marketdata_v1_SymbolInfo& info) {
  if (!has_market_data()) return KB_E_NO_CHANNEL;
  std::lock_guard<std::mutex> lock(push_mu_);
  int n = symbol_count_.load(std::memory_order_relaxed);
  int idx = -1;
  for (int i = 0; i < n; i++) {
    if (std::strcmp(symbols_[i].name, info.symbol) == 0) idx = i;
  }
  if (idx < 0) {
    if (n >= KB_MAX_SYMBOLS) return KB_E_TOO_MANY;
    idx = n;
    std::memcpy(symbols_[idx].name, info.symbol, sizeof(info.symbol));
  }
  {
    std::lock_guard<std::mutex> il(info_mu_);
    infos_[idx] = info;
  }
  symbols_[idx].digits = static_cast<int32_t>(info.digits);
  symbols_[idx].rev.fetch_add(1, std::memory_order_release);
  if (idx == n) symbol_count_.store(n + 1, std::memory_order_release);
  WakeIfSleeping();
  return KB_OK;
}

int Client::PushTicks(const std::string& symbol, int32_t digits, const KbMqlTick* ticks, int32_t count) {
  if (!has_market_data()) return KB_E_NO_CHANNEL;
  const int64_t offset = server_offset_ms_.load(std::memory_order_relaxed);
  int valid = 0;
  for (int32_t i = 0; i < count; i++) {
    const KbMqlTick& t = ticks[i];
    // Comparisons are false for NaN, so this refuses NaN, infinities and negatives together.
    if (t.bid >= 0 && t.ask >= 0 && t.last >= 0 && t.volume_real >= 0 && std::isfinite(t.bid) &&
        std::isfinite(t.ask) && std::isfinite(t.last) && std::isfinite(t.volume_real))
      valid++;
  }
  if (valid == 0) {
    n_.ticks_rejected.fetch_add(static_cast<uint64_t>(count), std::memory_order_relaxed);
    return KB_E_NON_FINITE;
  }
  {
    std::lock_guard<std::mutex> lock(push_mu_);
    int n = symbol_count_.load(std::memory_order_relaxed);
    int idx = -1;
    for (int i = 0; i < n; i++) {
      if (symbol.compare(symbols_[i].name) == 0) {
        idx = i;
        break;
      }
    }
    if (idx < 0) {
      if (n >= KB_MAX_SYMBOLS) return KB_E_TOO_MANY;
      idx = n;
      Symbol& s = symbols_[idx];
      std::memset(s.name, 0, sizeof(s.name));
      std::memcpy(s.name, symbol.data(), symbol.size());
      s.digits = digits;
      {
        std::lock_guard<std::mutex> il(info_mu_);
        kairos_marketdata_v1_SymbolInfo& info = infos_[idx];
        info = kairos_marketdata_v1_SymbolInfo_init_zero;
        std::memcpy(info.symbol, s.name, sizeof(info.symbol));
        info.digits = static_cast<uint32_t>(digits);
        info.point = std::pow(10.0, -digits);
        info.tick_size = info.point;
      }
      s.rev.fetch_add(1, std::memory_order_release);
      symbol_count_.store(n + 1, std::memory_order_release);
    } else if (symbols_[idx].digits != digits) {
      Symbol& s = symbols_[idx];
      s.digits = digits;
      {
        std::lock_guard<std::mutex> il(info_mu_);
        infos_[idx].digits = static_cast<uint32_t>(digits);
        infos_[idx].point = std::pow(10.0, -digits);
      }
      s.rev.fetch_add(1, std::memory_order_release);
    }
    Symbol& s = symbols_[idx];
    uint64_t head = head_.load(std::memory_order_relaxed);
    const uint64_t tail = tail_.load(std::memory_order_acquire);
    const uint64_t free_slots = (mask_ + 1) - (head - tail);
    if (static_cast<uint64_t>(valid) > free_slots) {
      n_.ticks_dropped.fetch_add(static_cast<uint64_t>(valid), std::memory_order_relaxed);
      n_.ticks_rejected.fetch_add(static_cast<uint64_t>(count - valid), std::memory_order_relaxed);
      return KB_E_QUEUE_FULL;
    }
    TickRec* ring = ring_.get();
    for (int32_t i = 0; i < count; i++) {
      const KbMqlTick& t = ticks[i];
      if (!(t.bid >= 0 && t.ask >= 0 && t.last >= 0 && t.volume_real >= 0 && std::isfinite(t.bid) &&
            std::isfinite(t.ask) && std::isfinite(t.last) && std::isfinite(t.volume_real)))
        continue;
      TickRec& r = ring[head & mask_];
      r.time_msc = t.time_msc - offset;
      r.bid = t.bid;
      r.ask = t.ask;
      r.last = t.last;
      r.volume = t.volume_real;
      r.flags = t.flags;
      r.sym = static_cast<uint16_t>(idx);
      r.seq = s.next_seq++;
      head++;
    }
    head_.store(head, std::memory_order_release);
    if (lockstep()) {
      std::lock_guard<std::mutex> sl(step_mu_);
      step_pushed_[symbol] = s.next_seq - 1;
    }
  }
  n_.ticks_queued.fetch_add(static_cast<uint64_t>(valid), std::memory_order_relaxed);
  // While the collector is not connected the ticks wait in the ring: waking the thread would only
  // cost this (terminal) thread a system call per push.
  if (n_.md_connected.load(std::memory_order_relaxed) != 0) WakeIfSleeping();
  if (valid < count) {
    n_.ticks_rejected.fetch_add(static_cast<uint64_t>(count - valid), std::memory_order_relaxed);
    return KB_PARTIAL;
  }
  return KB_OK;
}

int Client::PollCommand(KbCommand* out) {
  if (!has_trading()) return KB_E_NO_CHANNEL;
  std::lock_guard<std::mutex> lock(cmd_mu_);
  if (commands_.empty()) return KB_EMPTY;
  *out = commands_.front();
  commands_.pop_front();
  n_.commands_polled.fetch_add(1, std::memory_order_relaxed);
  return KB_OK;
}

int Client::QueueReports(std::vector<std::vector<uint8_t>>* bodies, uint64_t command_id,
                         std::vector<uint8_t> dup_body) {
  if (!has_trading()) return KB_E_NO_CHANNEL;
  const size_t n = bodies->size();
  const size_t cap = static_cast<size_t>(config_.options.report_queue_capacity);
  size_t pending = reports_pending_.load();
  do {
    if (pending + n > cap) {
      n_.reports_dropped.fetch_add(n, std::memory_order_relaxed);
      return KB_E_QUEUE_FULL;
    }
  } while (!reports_pending_.compare_exchange_weak(pending, pending + n));
  {
    std::lock_guard<std::mutex> lock(rep_mu_);
    for (size_t i = 0; i < n; i++) {
      ReportIn r;
      r.body = std::move((*bodies)[i]);
      r.command_id = i + 1 == n ? command_id : 0;
      if (i + 1 == n) r.dup_body = std::move(dup_body);
      reports_in_.push_back(std::move(r));
    }
  }
  n_.reports_queued.fetch_add(n, std::memory_order_relaxed);
  // Order results are rare and latency-critical: always wake the thread, even while it is polling
  // the tick ring (one UDP byte; it never waits).
  sleeping_.store(false);
  n_.wakeups.fetch_add(1, std::memory_order_relaxed);
  waker_.Wake();
  return KB_OK;
}

int Client::PositionsBegin(int64_t time_msc) {
  if (!has_trading()) return KB_E_NO_CHANNEL;
  std::lock_guard<std::mutex> lock(pos_mu_);
  pos_open_ = true;
  pos_time_ = time_msc;
  pos_positions_.clear();
  pos_orders_.clear();
  return KB_OK;
}

int Client::PositionsAdd(const kairos_bridge_v1_Position* position,
                         const kairos_bridge_v1_WorkingOrder* order) {
  if (!has_trading()) return KB_E_NO_CHANNEL;
  std::lock_guard<std::mutex> lock(pos_mu_);
  if (!pos_open_) return KB_E_STATE;
  if (pos_positions_.size() + pos_orders_.size() >= 100000) return KB_E_TOO_MANY;
  if (position != nullptr) pos_positions_.push_back(*position);
  if (order != nullptr) pos_orders_.push_back(*order);
  return KB_OK;
}

int Client::PositionsEnd() {
  if (!has_trading()) return KB_E_NO_CHANNEL;
  std::vector<std::vector<uint8_t>> bodies;
  {
    std::lock_guard<std::mutex> lock(pos_mu_);
    if (!pos_open_) return KB_E_STATE;
    pos_open_ = false;
    const size_t per = 64;
    const size_t frames = std::max<size_t>(
        1, std::max((pos_positions_.size() + per - 1) / per, (pos_orders_.size() + per - 1) / per));
    std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame);
    for (size_t k = 0; k < frames; k++) {
      *f = kairos_bridge_v1_Frame_init_zero;
      f->which_body = kairos_bridge_v1_Frame_positions_tag;
      kairos_bridge_v1_PositionSnapshot& snap = f->body.positions;
      snap.time_msc = pos_time_;
      snap.complete = k + 1 == frames;
      for (size_t i = k * per; i < pos_positions_.size() && i < (k + 1) * per; i++)
        snap.positions[snap.positions_count++] = pos_positions_[i];
      for (size_t i = k * per; i < pos_orders_.size() && i < (k + 1) * per; i++)
        snap.orders[snap.orders_count++] = pos_orders_[i];
      std::vector<uint8_t> body;
      if (!EncodeBody(*f, &body)) return KB_E_INTERNAL;
      bodies.push_back(std::move(body));
    }
  }
  return QueueReports(&bodies, 0, {});
}

void Client::GetCounters(KbCounters* out) const {
  const int32_t size = out->struct_size;
  KbCounters c;
  std::memset(&c, 0, sizeof(c));
  c.struct_size = sizeof(KbCounters);
  c.last_error = last_error_code_.load();
  auto r = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  c.ticks_queued = r(n_.ticks_queued);
  c.ticks_sent = r(n_.ticks_sent);
  c.ticks_dropped = r(n_.ticks_dropped);
  c.ticks_rejected = r(n_.ticks_rejected);
  c.ticks_resent = r(n_.ticks_resent);
  c.ticks_resend_dropped = r(n_.ticks_resend_dropped);
  c.tick_queue_depth = head_.load() - tail_.load();
  c.frames_sent = r(n_.frames_sent);
  c.frames_received = r(n_.frames_received);
  c.bytes_sent = r(n_.bytes_sent);
  c.bytes_received = r(n_.bytes_received);
  c.reconnects = r(n_.reconnects);
  c.connect_failures = r(n_.connect_failures);
  c.malformed_frames = r(n_.malformed_frames);
  c.heartbeats_sent = r(n_.heartbeats_sent);
  c.heartbeats_received = r(n_.heartbeats_received);
  c.duplicate_frames = r(n_.duplicate_frames);
  c.commands_received = r(n_.commands_received);
  c.commands_polled = r(n_.commands_polled);
  c.commands_duplicate = r(n_.commands_duplicate);
  c.commands_dropped = r(n_.commands_dropped);
  c.reports_queued = r(n_.reports_queued);
  c.reports_acked = r(n_.reports_acked);
  c.reports_resent = r(n_.reports_resent);
  c.reports_dropped = r(n_.reports_dropped);
  c.market_data_connected = n_.md_connected.load();
  c.trading_connected = n_.tr_connected.load();
  c.market_data_rtt_us = n_.md_rtt_us.load();
  c.trading_rtt_us = n_.tr_rtt_us.load();
  c.ticks_acked = r(n_.ticks_acked);
  c.wakeups = r(n_.wakeups);
  c.tester_steps = r(n_.tester_steps);
  c.tester_timeouts = r(n_.tester_timeouts);
  c.tester_decisions = r(n_.tester_decisions);
  c.tester_no_decision = r(n_.tester_no_decision);
  c.tester_dropped = r(n_.tester_dropped);
  // An older caller with a smaller struct gets the prefix it knows.
  std::memcpy(out, &c, static_cast<size_t>(size));
  out->struct_size = size;
}

// ---- Network thread ----------------------------------------------------------------------------

void Client::Run() {
  try {
    RunLoop();
  } catch (const std::exception& e) {
    Log(KB_E_INTERNAL, std::string("network thread stopped: ") + e.what());
  } catch (...) {
    Log(KB_E_INTERNAL, "network thread stopped: unknown exception");
  }
  net::Close(md_.fd);
  net::Close(tr_.fd);
  md_.fd = tr_.fd = net::kInvalid;
  n_.md_connected.store(0);
  n_.tr_connected.store(0);
}

bool Client::HasLocalWork(bool md_ready) const {
  if (md_ready && head_.load(std::memory_order_acquire) != tail_.load(std::memory_order_relaxed)) return true;
  return false;
}

int64_t Client::NextBackoff(Conn& c) {
  const KbOptions& o = config_.options;
  int64_t base = o.reconnect_min_ms;
  for (int i = 0; i < c.failures && base < o.reconnect_max_ms; i++) base *= 2;
  if (base > o.reconnect_max_ms) base = o.reconnect_max_ms;
  // Jitter in [base/2, base]: spreads reconnects of many terminals without exceeding the cap.
  const int64_t half = base / 2;
  return half + static_cast<int64_t>(SplitMix(&rng_) % static_cast<uint64_t>(base - half + 1));
}

void Client::StartConnect(Conn& c, int64_t now) {
  bool in_progress = false;
  std::string err;
  sockaddr_in addr = c.addr;
  if (c.resolver) {
    switch (c.resolver->Lookup(&addr, &err)) {
      case Resolver::Result::kPending:
        if (c.state != State::kResolving)
          Log(0,
              std::string(ChannelName(c.channel)) + ": looking up " + c.host + " (off the network thread)");
        c.state = State::kResolving;
        return;
      case Resolver::Result::kFailed:
        n_.connect_failures.fetch_add(1);
        c.failures++;
        c.state = State::kBackoff;
        c.next_attempt_ms = now + NextBackoff(c);
        Log(KB_E_CONNECT,
            std::string(ChannelName(c.channel)) + " " + c.host + ":" + std::to_string(c.port) + ": " + err);
        return;
      case Resolver::Result::kReady:
        break;
    }
  }
  c.fd = net::StartConnect(addr, &in_progress, &err);
  if (c.fd == net::kInvalid) {
    n_.connect_failures.fetch_add(1);
    if (c.resolver) c.resolver->Invalidate();
    c.failures++;
    c.state = State::kBackoff;
    c.next_attempt_ms = now + NextBackoff(c);
    Log(KB_E_CONNECT,
        std::string(ChannelName(c.channel)) + " " + c.host + ":" + std::to_string(c.port) + ": " + err);
    return;
  }
  c.state = State::kConnecting;
  c.deadline_ms = now + config_.options.connect_timeout_ms;
  if (!in_progress) OnConnected(c, now);
}

void Client::OnConnected(Conn& c, int64_t now) {
  // The server speaks first: its Challenge carries the nonce Hello proves the key over.
  c.state = State::kAwaitChallenge;
  c.out.clear();
  c.out_off = 0;
  c.in.clear();
  c.processed = 0;
  c.ack_dirty = false;
  c.last_rx_ms = now;
  c.peer_hb_time_us = 0;
}

bool Client::OnChallenge(Conn& c, const kairos_bridge_v1_Challenge& ch, int64_t now) {
  const bool have_key = !config_.key.empty();
  if (ch.server_nonce.size != crypto::kNonceBytes) {
    n_.malformed_frames.fetch_add(1);
    Disconnect(c, KB_E_MALFORMED_FRAME, "the server's Challenge nonce is not 32 bytes", now);
    return false;
  }
  if (have_key && !ch.auth_required) {
    // It could not prove the key in Welcome either: a server without a key, or not ours.
    Disconnect(c, KB_E_AUTH,
               "the server does not authenticate (it runs without a bridge key); this bridge has a key "
               "and refuses it",
               now);
    return false;
  }
  std::memcpy(c.server_nonce, ch.server_nonce.bytes, crypto::kNonceBytes);
  if (!crypto::RandomBytes(c.client_nonce, crypto::kNonceBytes)) {
    Disconnect(c, KB_E_INTERNAL, "no random source for the handshake nonce", now);
    return false;
  }
  kairos_bridge_v1_Frame f = kairos_bridge_v1_Frame_init_zero;
  f.which_body = kairos_bridge_v1_Frame_hello_tag;
  kairos_bridge_v1_Hello& h = f.body.hello;
  h = config_.hello;
  h.channel = c.channel;
  h.session_id = session_id_;
  h.client_nonce.size = crypto::kNonceBytes;
  std::memcpy(h.client_nonce.bytes, c.client_nonce, crypto::kNonceBytes);
  if (have_key) {
    const crypto::Digest proof =
        crypto::HandshakeProof(config_.key, crypto::Role::kClient, c.server_nonce, c.client_nonce,
                               session_id_, static_cast<uint32_t>(c.channel), h.api_version);
    h.auth_proof.size = static_cast<pb_size_t>(proof.size());
    std::memcpy(h.auth_proof.bytes, proof.data(), proof.size());
  }
  std::vector<uint8_t> body;
  EncodeBody(f, &body);
  // Hello is not retransmitted (a new one starts every connection), so it carries sequence 0.
  AppendFrame(0, 0, NowMicros(), body.data(), body.size(), &c.out);
  n_.frames_sent.fetch_add(1);
  c.state = State::kAwaitWelcome;
  return true;
}

bool Client::ServerProofOk(const Conn& c, const kairos_bridge_v1_Welcome& w) const {
  if (config_.key.empty()) return true;
  if (w.server_proof.size != crypto::kNonceBytes) return false;
  const crypto::Digest want =
      crypto::HandshakeProof(config_.key, crypto::Role::kServer, c.server_nonce, c.client_nonce, session_id_,
                             static_cast<uint32_t>(c.channel), config_.hello.api_version);
  return crypto::ConstantTimeEqual(want.data(), w.server_proof.bytes, want.size());
}

void Client::Disconnect(Conn& c, int code, const std::string& why, int64_t now) {
  net::Close(c.fd);
  c.fd = net::kInvalid;
  if (code == KB_E_CONNECT && c.resolver) c.resolver->Invalidate();  // look the name up again
  // A key the server refuses (or a server that cannot prove it) does not fix itself: retry at the
  // slowest pace rather than every reconnect_min_ms.
  if (code == KB_E_AUTH) c.failures += 16;
  if (c.state != State::kReady) c.failures++;
  c.state = State::kBackoff;
  c.next_attempt_ms = now + NextBackoff(c);
  c.out.clear();
  c.out_off = 0;
  c.in.clear();
  (c.channel == kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA ? n_.md_connected : n_.tr_connected).store(0);
  Log(code, std::string(ChannelName(c.channel)) + " connection closed: " + why);
}

void Client::Write(Conn& c, uint64_t seq, const std::vector<uint8_t>& body) {
  AppendFrame(seq, c.processed, NowMicros(), body.data(), body.size(), &c.out);
  c.ack_dirty = false;
  n_.frames_sent.fetch_add(1, std::memory_order_relaxed);
}

void Client::Enqueue(Conn& c, std::vector<uint8_t> body, uint32_t ticks) {
  Pending p{c.next_seq++, std::move(body), ticks};
  if (c.state == State::kReady) Write(c, p.seq, p.body);
  c.unacked.push_back(std::move(p));
  if (c.channel == kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA) {
    while (c.unacked.size() > static_cast<size_t>(config_.options.tick_resend_frames)) {
      n_.ticks_resend_dropped.fetch_add(c.unacked.front().ticks, std::memory_order_relaxed);
      c.unacked.pop_front();
    }
  }
}

void Client::SendHeartbeat(Conn& c, int64_t now) {
  kairos_bridge_v1_Frame f = kairos_bridge_v1_Frame_init_zero;
  f.which_body = kairos_bridge_v1_Frame_heartbeat_tag;
  f.body.heartbeat.time_us = NowMicros();
  // Each peer heartbeat is echoed once, so the peer's round-trip figure never includes a hold time.
  f.body.heartbeat.echo_time_us = c.peer_hb_time_us;
  c.peer_hb_time_us = 0;
  std::vector<uint8_t> body;
  EncodeBody(f, &body);
  Write(c, 0, body);
  c.last_hb_tx_ms = now;
  n_.heartbeats_sent.fetch_add(1, std::memory_order_relaxed);
}

void Client::SendError(Conn& c, kairos_bridge_v1_ErrorCode code, const std::string& msg, uint64_t seq) {
  kairos_bridge_v1_Frame f = kairos_bridge_v1_Frame_init_zero;
  f.which_body = kairos_bridge_v1_Frame_error_tag;
  f.body.error.code = code;
  std::snprintf(f.body.error.message, sizeof(f.body.error.message), "%s", msg.c_str());
  f.body.error.frame_sequence = seq;
  std::vector<uint8_t> body;
  EncodeBody(f, &body);
  Write(c, 0, body);
}

void Client::OnAck(Conn& c, uint64_t ack) {
  if (c.state != State::kReady) return;
  while (!c.unacked.empty() && c.unacked.front().seq <= ack) {
    if (c.channel == kairos_bridge_v1_Channel_CHANNEL_TRADING) {
      n_.reports_acked.fetch_add(1, std::memory_order_relaxed);
      reports_pending_.fetch_sub(1);
    } else {
      n_.ticks_acked.fetch_add(c.unacked.front().ticks, std::memory_order_relaxed);
    }
    c.unacked.pop_front();
  }
  if (c.channel == kairos_bridge_v1_Channel_CHANNEL_TRADING) NotifyStep();
}

void Client::OnWelcome(Conn& c, const kairos_bridge_v1_Welcome& w, int64_t now) {
  const bool md = c.channel == kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA;
  if (c.ever_ready) n_.reconnects.fetch_add(1);
  c.ever_ready = true;
  c.failures = 0;
  c.heartbeat_ms = w.heartbeat_interval_ms > 0 ? static_cast<int>(w.heartbeat_interval_ms)
                                               : config_.options.heartbeat_interval_ms;
  c.state = State::kReady;
  c.last_hb_tx_ms = 0;  // heartbeat right away: carries the first ack and starts the RTT measure
  // Everything up to resume_after was processed by the server: never send it again.
  while (!c.unacked.empty() && c.unacked.front().seq <= w.resume_after) {
    if (!md) {
      n_.reports_acked.fetch_add(1);
      reports_pending_.fetch_sub(1);
    } else {
      n_.ticks_acked.fetch_add(c.unacked.front().ticks);
    }
    c.unacked.pop_front();
  }
  if (c.next_seq <= w.resume_after) c.next_seq = w.resume_after + 1;
  Log(0, std::string(ChannelName(c.channel)) + " connected to " + w.server_version + ", resume_after " +
             std::to_string(w.resume_after) + ", resending " + std::to_string(c.unacked.size()) + " frames");
  if (md) {
    // The server may have lost its state (restart): announce every symbol again before the resent
    // ticks. Numbering restarts right after resume_after, the announcements first, then the
    // unprocessed frames: none of them was processed (all are above resume_after), so renumbering
    // cannot duplicate anything, and the server sees no sequence gap.
    std::deque<Pending> old;
    old.swap(c.unacked);
    c.next_seq = w.resume_after + 1;
    std::fill(c.announced.begin(), c.announced.end(), 0);
    AnnounceChanged(c);
    for (auto& p : old) {
      if (p.ticks == 0) continue;  // an old SymbolInfo, superseded by the announcements above
      n_.ticks_resent.fetch_add(p.ticks, std::memory_order_relaxed);
      Enqueue(c, std::move(p.body), p.ticks);
    }
    n_.md_connected.store(1);
  } else {
    for (const auto& p : c.unacked) {
      Write(c, p.seq, p.body);
      n_.reports_resent.fetch_add(1, std::memory_order_relaxed);
    }
    n_.tr_connected.store(1);
  }
  SendHeartbeat(c, now);
  NotifyStep();
}

void Client::QueueResultOnNet(Conn& c, const kairos_bridge_v1_OrderCommand& cmd, const std::string& why) {
  kairos_bridge_v1_Frame f = kairos_bridge_v1_Frame_init_zero;
  f.which_body = kairos_bridge_v1_Frame_order_result_tag;
  kairos_bridge_v1_OrderResult& r = f.body.order_result;
  r.command_id = cmd.command_id;
  kb_char16 tmp[32];
  if (Utf8ToUtf16(cmd.client_order_id, std::strlen(cmd.client_order_id), tmp, 32) == KB_OK)
    std::snprintf(r.client_order_id, sizeof(r.client_order_id), "%s", cmd.client_order_id);
  r.status = kairos_bridge_v1_BridgeStatus_BRIDGE_STATUS_INVALID;
  std::snprintf(r.comment, sizeof(r.comment), "%s", why.c_str());
  r.received_time_us = r.completed_time_us = NowMicros();
  std::vector<uint8_t> body;
  EncodeBody(f, &body);
  reports_pending_.fetch_add(1);
  n_.reports_queued.fetch_add(1);
  if (cmd.command_id != 0) {
    kairos_bridge_v1_Frame d = f;
    d.body.order_result.status = kairos_bridge_v1_BridgeStatus_BRIDGE_STATUS_DUPLICATE;
    std::vector<uint8_t> dup;
    EncodeBody(d, &dup);
    dup_results_[cmd.command_id] = std::move(dup);
    dup_order_.push_back(cmd.command_id);
  }
  Enqueue(c, std::move(body), 0);
}

void Client::OnCommand(Conn& c, const kairos_bridge_v1_Frame& f) {
  const kairos_bridge_v1_OrderCommand& cmd = f.body.order_command;
  n_.commands_received.fetch_add(1, std::memory_order_relaxed);
  if (cmd.command_id != 0 && seen_commands_.count(cmd.command_id) != 0) {
    n_.commands_duplicate.fetch_add(1, std::memory_order_relaxed);
    auto it = dup_results_.find(cmd.command_id);
    if (it != dup_results_.end()) {
      reports_pending_.fetch_add(1);
      n_.reports_queued.fetch_add(1);
      Enqueue(c, it->second, 0);
    }
    return;
  }
  KbCommand kb;
  std::string why;
  if (!CommandToKb(cmd, &kb, &why)) {
    n_.commands_dropped.fetch_add(1, std::memory_order_relaxed);
    Log(KB_E_BAD_ARG, "command " + std::to_string(cmd.command_id) + " refused: " + why);
    if (cmd.command_id != 0) {
      seen_commands_.insert(cmd.command_id);
      seen_order_.push_back(cmd.command_id);
    }
    QueueResultOnNet(c, cmd, why);
    return;
  }
  kb.received_time_us = NowMicros();
  {
    std::lock_guard<std::mutex> lock(cmd_mu_);
    if (commands_.size() >= static_cast<size_t>(config_.options.command_queue_capacity)) {
      n_.commands_dropped.fetch_add(1, std::memory_order_relaxed);
      SendError(c, kairos_bridge_v1_ErrorCode_ERROR_CODE_REJECTED, "bridge command queue full", f.sequence);
      return;
    }
    commands_.push_back(kb);
  }
  NotifyStep();
  seen_commands_.insert(cmd.command_id);
  seen_order_.push_back(cmd.command_id);
  while (seen_order_.size() > kSeenCommands) {
    seen_commands_.erase(seen_order_.front());
    seen_order_.pop_front();
  }
}

bool Client::HandleFrame(Conn& c, const kairos_bridge_v1_Frame& f, int64_t now) {
  n_.frames_received.fetch_add(1, std::memory_order_relaxed);
  c.last_rx_ms = now;
  if (c.state == State::kAwaitChallenge) {
    if (f.which_body == kairos_bridge_v1_Frame_challenge_tag) return OnChallenge(c, f.body.challenge, now);
    if (f.which_body == kairos_bridge_v1_Frame_error_tag) {
      Disconnect(c, KB_E_PEER_ERROR,
                 "server refused the connection: error " + std::to_string(EnumValue(f.body.error.code)) +
                     ": " + f.body.error.message,
                 now);
      return false;
    }
    n_.malformed_frames.fetch_add(1);
    Disconnect(c, KB_E_MALFORMED_FRAME,
               "first frame from the server is not Challenge (body tag " + std::to_string(f.which_body) +
                   "): a server older than this bridge?",
               now);
    return false;
  }
  if (c.state == State::kAwaitWelcome) {
    if (f.which_body == kairos_bridge_v1_Frame_welcome_tag) {
      if (!ServerProofOk(c, f.body.welcome)) {
        Disconnect(c, KB_E_AUTH,
                   "the server could not prove the bridge key (another key, or not a Kairos server): refused",
                   now);
        return false;
      }
      OnWelcome(c, f.body.welcome, now);
      return true;
    }
    if (f.which_body == kairos_bridge_v1_Frame_error_tag) {
      const bool auth = EnumValue(f.body.error.code) == kairos_bridge_v1_ErrorCode_ERROR_CODE_UNAUTHENTICATED;
      Disconnect(c, auth ? KB_E_AUTH : KB_E_PEER_ERROR,
                 std::string(auth ? "server refused the bridge key (set the EA's BridgeKey input): "
                                  : "server refused Hello: ") +
                     "error " + std::to_string(EnumValue(f.body.error.code)) + ": " + f.body.error.message,
                 now);
      return false;
    }
    n_.malformed_frames.fetch_add(1);
    Disconnect(c, KB_E_MALFORMED_FRAME,
               "first frame from the server is not Welcome (body tag " + std::to_string(f.which_body) + ")",
               now);
    return false;
  }
  OnAck(c, f.ack);
  if (f.sequence != 0) {
    if (f.sequence <= c.processed) {
      n_.duplicate_frames.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
  }
  switch (f.which_body) {
    case kairos_bridge_v1_Frame_heartbeat_tag:
      n_.heartbeats_received.fetch_add(1, std::memory_order_relaxed);
      c.peer_hb_time_us = f.body.heartbeat.time_us;
      // Answer at once (at most four times per interval) so the server measures the round trip.
      if (c.peer_hb_time_us != 0 && now - c.last_echo_ms >= c.heartbeat_ms / 4) {
        c.last_echo_ms = now;
        SendHeartbeat(c, now);
      } else {
        c.peer_hb_time_us = 0;
      }
      if (f.body.heartbeat.echo_time_us != 0) {
        const int64_t rtt = NowMicros() - f.body.heartbeat.echo_time_us;
        (c.channel == kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA ? n_.md_rtt_us : n_.tr_rtt_us).store(rtt);
      }
      break;
    case kairos_bridge_v1_Frame_history_request_tag:
      if (c.channel != kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA) {
        n_.malformed_frames.fetch_add(1);
        Disconnect(c, KB_E_MALFORMED_FRAME, "history request on the trading channel", now);
        return false;
      }
      OnHistoryRequest(c, f.body.history_request);
      break;
    case kairos_bridge_v1_Frame_order_command_tag:
      if (c.channel != kairos_bridge_v1_Channel_CHANNEL_TRADING) {
        n_.malformed_frames.fetch_add(1);
        Disconnect(c, KB_E_MALFORMED_FRAME, "order command on the market-data channel", now);
        return false;
      }
      OnCommand(c, f);
      break;
    case kairos_bridge_v1_Frame_tester_step_tag:
      if (c.channel != kairos_bridge_v1_Channel_CHANNEL_MARKET_DATA) {
        n_.malformed_frames.fetch_add(1);
        Disconnect(c, KB_E_MALFORMED_FRAME, "tester step on the trading channel", now);
        return false;
      }
      OnTesterStep(c, f.body.tester_step, f.sequence);
      break;
    case kairos_bridge_v1_Frame_tester_decision_tag:
      if (c.channel != kairos_bridge_v1_Channel_CHANNEL_TRADING) {
        n_.malformed_frames.fetch_add(1);
        Disconnect(c, KB_E_MALFORMED_FRAME, "tester decision on the market-data channel", now);
        return false;
      }
      OnTesterDecision(f.body.tester_decision);
      break;
    case kairos_bridge_v1_Frame_error_tag:
      Log(KB_E_PEER_ERROR, std::string(ChannelName(c.channel)) + " server error " +
                               std::to_string(EnumValue(f.body.error.code)) + " on frame " +
                               std::to_string(f.body.error.frame_sequence) + ": " + f.body.error.message);
      break;
    default:
      n_.malformed_frames.fetch_add(1);
      Disconnect(c, KB_E_MALFORMED_FRAME,
                 "unexpected frame from the server (body tag " + std::to_string(f.which_body) + ")", now);
      return false;
  }
  if (f.sequence != 0) {
    c.processed = f.sequence;
    c.ack_dirty = true;
  }
  return true;
}

void Client::ReadFrom(Conn& c, int64_t now) {
  uint8_t buf[65536];
  for (int round = 0; round < 16; round++) {
    long n = net::Recv(c.fd, buf, sizeof(buf));
    if (n < 0) {
      Disconnect(c, KB_E_PEER_CLOSED, "peer closed or socket error: " + net::LastErrorText(), now);
      return;
    }
    if (n == 0) break;
    n_.bytes_received.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    c.in.insert(c.in.end(), buf, buf + n);
    if (n < static_cast<long>(sizeof(buf))) break;
  }
  size_t off = 0;
  while (c.fd != net::kInvalid && off < c.in.size()) {
    size_t used = 0;
    ReadStatus st = ReadFrame(c.in.data() + off, c.in.size() - off, scratch_.get(), &used);
    if (st == ReadStatus::kNeedMore) break;
    if (st != ReadStatus::kFrame) {
      n_.malformed_frames.fetch_add(1);
      Disconnect(c, KB_E_MALFORMED_FRAME,
                 st == ReadStatus::kOversized ? "frame larger than 1 MiB" : "undecodable frame", now);
      return;
    }
    off += used;
    if (!HandleFrame(c, *scratch_, now)) return;
  }
  if (c.fd != net::kInvalid) c.in.erase(c.in.begin(), c.in.begin() + static_cast<long>(off));
}

void Client::Flush(Conn& c, int64_t now) {
  while (c.out_off < c.out.size()) {
    long n = net::Send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off);
    if (n < 0) {
      Disconnect(c, KB_E_PEER_CLOSED, "send failed: " + net::LastErrorText(), now);
      return;
    }
    if (n == 0) break;
    n_.bytes_sent.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    c.out_off += static_cast<size_t>(n);
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > (1 << 20)) {
    c.out.erase(c.out.begin(), c.out.begin() + static_cast<long>(c.out_off));
    c.out_off = 0;
  }
}

void Client::AnnounceChanged(Conn& c) {
  const int n = symbol_count_.load(std::memory_order_acquire);
  for (int i = 0; i < n; i++) {
    const uint32_t rev = symbols_[i].rev.load(std::memory_order_acquire);
    if (rev == c.announced[i]) continue;
    scratch_->which_body = kairos_bridge_v1_Frame_symbol_info_tag;
    scratch_->sequence = scratch_->ack = 0;
    scratch_->sent_time_us = 0;
    {
      std::lock_guard<std::mutex> lock(info_mu_);
      scratch_->body.symbol_info = infos_[i];
    }
    std::vector<uint8_t> body;
    EncodeBody(*scratch_, &body);
    Enqueue(c, std::move(body), 0);
    c.announced[i] = rev;
  }
}

void Client::PumpTicks(Conn& c) {
  const uint64_t head = head_.load(std::memory_order_acquire);
  uint64_t tail = tail_.load(std::memory_order_relaxed);
  if (head == tail) return;
  AnnounceChanged(c);
  const uint32_t max_batch = static_cast<uint32_t>(config_.options.max_batch_ticks);
  const TickRec* ring = ring_.get();
  int frames = 0;
  while (tail != head && c.out.size() - c.out_off < kOutHighWater && frames < 256) {
    const uint16_t sym = ring[tail & mask_].sym;
    kairos_bridge_v1_Frame& f = *scratch_;
    f.sequence = f.ack = 0;
    f.sent_time_us = 0;
    f.which_body = kairos_bridge_v1_Frame_ticks_tag;
    kairos_marketdata_v1_TickBatch& b = f.body.ticks;
    std::memcpy(b.symbol, symbols_[sym].name, sizeof(b.symbol));
    uint32_t n = 0;
    bool any_last = false, any_volume = false;
    while (tail != head && n < max_batch) {
      const TickRec& r = ring[tail & mask_];
      if (r.sym != sym) break;
      b.time_msc[n] = r.time_msc;
      b.bid[n] = r.bid;
      b.ask[n] = r.ask;
      b.last[n] = r.last;
      b.volume[n] = r.volume;
      b.flags[n] = r.flags;
      b.sequence[n] = r.seq;
      any_last |= r.last != 0;
      any_volume |= r.volume != 0;
      n++;
      tail++;
    }
    b.time_msc_count = b.bid_count = b.ask_count = b.flags_count = b.sequence_count =
        static_cast<pb_size_t>(n);
    // last and volume may be empty when all zero (FX quotes): a third fewer bytes per tick.
    b.last_count = any_last ? static_cast<pb_size_t>(n) : 0;
    b.volume_count = any_volume ? static_cast<pb_size_t>(n) : 0;
    std::vector<uint8_t> body;
    EncodeTicksBody(b, &body);
    tail_.store(tail, std::memory_order_release);
    Enqueue(c, std::move(body), n);
    n_.ticks_sent.fetch_add(n, std::memory_order_relaxed);
    last_pump_ms_ = NowMs();
    frames++;
  }
}

// ---- Strategy Tester lockstep (ADR 0095) ------------------------------------------------------

void Client::NotifyStep() {
  if (!lockstep()) return;
  // Taking the mutex orders this notification after the waiter's predicate check: no lost wake-up.
  { std::lock_guard<std::mutex> lock(step_mu_); }
  step_cv_.notify_all();
}

void Client::AdjustStepPending(const StepKey& key, int delta, std::vector<std::string>* forgotten) {
  auto it = step_pending_.find(key);
  if (it == step_pending_.end()) {
    it = step_pending_.emplace(key, StepPending{0, ++step_serial_}).first;
    step_order_.emplace(it->second.serial, key);
  }
  it->second.count += delta;
  if (it->second.count == 0) {
    step_order_.erase(it->second.serial);
    step_pending_.erase(it);
    return;
  }
  // The entry just made is the newest: the bound forgets older ones (a peer's decisions that never
  // cancel out), never the one this frame brought.
  while (step_pending_.size() > kMaxStepPending) {
    const auto oldest = step_order_.begin();
    const auto gone = step_pending_.find(oldest->second);
    forgotten->push_back("tester: more than " + std::to_string(kMaxStepPending) +
                         " decisions outstanding, forgot the oldest: " + oldest->second.first + " at " +
                         std::to_string(oldest->second.second) +
                         (gone->second.count > 0 ? " (awaited from the execution service)"
                                                 : " (reported before the collector named it)"));
    step_pending_.erase(gone);
    step_order_.erase(oldest);
  }
}

void Client::OnTesterStep(Conn& c, const kairos_bridge_v1_TesterStep& st, uint64_t seq) {
  if (!lockstep()) return;
  std::vector<std::string> forgotten;
  bool refused = false;
  {
    std::lock_guard<std::mutex> lock(step_mu_);
    auto answered = step_answered_.find(st.symbol);
    if (answered == step_answered_.end()) {
      if (step_answered_.size() >= kMaxStepSymbols)
        refused = true;
      else
        answered = step_answered_.emplace(st.symbol, 0).first;
    }
    if (!refused) {
      if (st.tick_sequence > answered->second) answered->second = st.tick_sequence;
      // A decision the execution service reported first cancels out (count back to 0).
      for (pb_size_t i = 0; i < st.decision_time_msc_count; i++)
        AdjustStepPending(StepKey(st.symbol, st.decision_time_msc[i]), 1, &forgotten);
    }
  }
  if (refused) {
    // Only pushed symbols (at most KB_MAX_SYMBOLS) are ever answered: this one names no tick frame.
    n_.tester_dropped.fetch_add(1, std::memory_order_relaxed);
    const std::string why = "tester step for " + std::string(st.symbol) + " refused: more than " +
                            std::to_string(kMaxStepSymbols) + " symbols answered";
    Log(KB_E_TOO_MANY, why);
    SendError(c, kairos_bridge_v1_ErrorCode_ERROR_CODE_REJECTED, why, seq);
    return;
  }
  if (st.decision_time_msc_count == 0) n_.tester_no_decision.fetch_add(1, std::memory_order_relaxed);
  for (const std::string& line : forgotten) {
    n_.tester_dropped.fetch_add(1, std::memory_order_relaxed);
    Log(KB_E_QUEUE_FULL, line);
  }
  step_cv_.notify_all();
}

void Client::OnTesterDecision(const kairos_bridge_v1_TesterDecision& d) {
  if (!lockstep()) return;
  n_.tester_decisions.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::string> forgotten;
  {
    std::lock_guard<std::mutex> lock(step_mu_);
    AdjustStepPending(StepKey(d.symbol, d.time_msc), -1, &forgotten);
  }
  for (const std::string& line : forgotten) {
    n_.tester_dropped.fetch_add(1, std::memory_order_relaxed);
    Log(KB_E_QUEUE_FULL, line);
  }
  step_cv_.notify_all();
}

std::string Client::StepWaitingFor() {
  if (has_market_data() && n_.md_connected.load() == 0) return "the collector connection";
  if (has_trading() && n_.tr_connected.load() == 0) return "the execution connection";
  for (const auto& p : step_pushed_) {
    auto it = step_answered_.find(p.first);
    if (has_market_data() && (it == step_answered_.end() || it->second < p.second))
      return "the collector's answer for " + p.first + " tick " + std::to_string(p.second);
  }
  for (const auto& p : step_pending_) {
    if (p.second.count > 0)
      return "the execution service's decision on " + p.first.first + " at " + std::to_string(p.first.second);
  }
  if (reports_pending_.load() != 0)
    return std::to_string(reports_pending_.load()) + " report(s) not acknowledged by the execution service";
  return "";
}

int Client::TesterWait(int32_t timeout_ms) {
  if (!lockstep()) return KB_E_STATE;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::unique_lock<std::mutex> lock(step_mu_);
  for (;;) {
    {
      std::lock_guard<std::mutex> cl(cmd_mu_);
      if (!commands_.empty()) return KB_COMMAND;
    }
    const std::string waiting = StepWaitingFor();
    if (waiting.empty()) {
      n_.tester_steps.fetch_add(1, std::memory_order_relaxed);
      return KB_OK;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      n_.tester_timeouts.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      Log(KB_E_TIMEOUT, "tester step: no decision within " + std::to_string(timeout_ms) +
                            " ms, waiting for " + waiting +
                            "; the tester moves on, later answers count towards the next step");
      return KB_E_TIMEOUT;
    }
    // Notified on every change; the slice bounds a wake-up lost to a condition read without step_mu_.
    step_cv_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(20)));
  }
}

// ---- History through the bridge ----------------------------------------------------------------

namespace {

std::vector<uint8_t> HistoryEndBody(uint64_t request_id, uint32_t part, int32_t status, uint64_t total,
                                    int64_t first_available_msc, const std::string& message) {
  std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
  f->which_body = kairos_bridge_v1_Frame_history_data_tag;
  kairos_bridge_v1_HistoryData& d = f->body.history_data;
  d.request_id = request_id;
  d.part = part;
  d.status = static_cast<kairos_marketdata_v1_HistoryStatus>(status);
  d.total = total;
  d.first_available_msc = first_available_msc;
  const size_t n = std::min(message.size(), sizeof(d.message) - 1);
  size_t cut = n;
  while (cut > 0 && cut < message.size() && (static_cast<uint8_t>(message[cut]) & 0xC0) == 0x80) cut--;
  std::memcpy(d.message, message.data(), cut);
  d.message[cut] = 0;
  std::vector<uint8_t> body;
  EncodeBody(*f, &body);
  return body;
}

}  // namespace

void Client::OnHistoryRequest(Conn& c, const kairos_bridge_v1_HistoryRequest& r) {
  const int32_t kind = EnumValue(r.kind);
  std::string why;
  KbHistoryRequest out{};
  out.request_id = r.request_id;
  out.kind = kind;
  out.period_s = static_cast<int32_t>(r.period_s);
  out.from_msc = r.from_msc;
  out.to_msc = r.to_msc;
  if (r.request_id == 0) {
    why = "request_id is zero";
  } else if (kind != KB_HISTORY_TICKS && kind != KB_HISTORY_BARS) {
    why = "unknown history kind " + std::to_string(kind);
  } else if (kind == KB_HISTORY_BARS && (r.period_s == 0 || r.period_s > 2678400)) {
    why = "bars need a period of 1 s to 31 days";
  } else if (r.from_msc <= 0 || r.to_msc <= r.from_msc) {
    why = "the range is empty or negative";
  } else if (r.symbol[0] == 0 || Utf8ToUtf16(r.symbol, std::strlen(r.symbol), out.symbol, 32) != KB_OK) {
    why = "no symbol, or not valid UTF-8";
  }
  {
    std::lock_guard<std::mutex> lock(hist_mu_);
    if (why.empty() && hist_requests_.size() >= kMaxHistoryRequests)
      why = "too many history requests waiting for the EA";
    if (why.empty()) {
      HistoryState st{};
      std::memcpy(st.symbol, r.symbol, sizeof(st.symbol));
      st.kind = kind;
      st.period_s = r.period_s;
      hist_state_[r.request_id] = st;
      hist_requests_.push_back(out);
      return;
    }
  }
  // Refused by the bridge itself: the collector gets the verdict at once, the EA never sees it.
  Log(KB_E_BAD_ARG, "history request " + std::to_string(r.request_id) + " refused: " + why);
  Enqueue(c, HistoryEndBody(r.request_id, 0, KB_HISTORY_ERROR, 0, 0, "refused by the bridge: " + why), 0);
}

int Client::PollHistory(KbHistoryRequest* out) {
  if (!has_market_data()) return KB_E_NO_CHANNEL;
  std::lock_guard<std::mutex> lock(hist_mu_);
  if (hist_requests_.empty()) return KB_EMPTY;
  *out = hist_requests_.front();
  hist_requests_.pop_front();
  return KB_OK;
}

template <typename Fill>
int Client::QueueHistoryParts(uint64_t request_id, int32_t kind, int32_t count, uint32_t per, Fill fill) {
  const int64_t offset = server_offset_ms_.load(std::memory_order_relaxed);
  const size_t parts = (static_cast<size_t>(count) + per - 1) / per;
  std::lock_guard<std::mutex> lock(hist_mu_);
  auto it = hist_state_.find(request_id);
  if (it == hist_state_.end() || it->second.kind != kind) return KB_E_BAD_ARG;
  if (hist_out_.size() + parts > kMaxHistoryParts) return KB_E_QUEUE_FULL;
  HistoryState& st = it->second;
  std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
  for (int32_t at = 0; at < count; at += static_cast<int32_t>(per)) {
    const uint32_t n = static_cast<uint32_t>(std::min<int32_t>(count - at, static_cast<int32_t>(per)));
    *f = kairos_bridge_v1_Frame_init_zero;
    f->which_body = kairos_bridge_v1_Frame_history_data_tag;
    kairos_bridge_v1_HistoryData& d = f->body.history_data;
    d.request_id = request_id;
    d.part = st.part++;
    d.status = kairos_marketdata_v1_HistoryStatus_HISTORY_STATUS_MORE;
    fill(d, st, offset, at, n);
    std::vector<uint8_t> body;
    if (!EncodeBody(*f, &body)) return KB_E_INTERNAL;
    hist_out_.push_back(std::move(body));
    st.total += n;
  }
  if (waker_.fd() != net::kInvalid) waker_.Wake();
  return KB_OK;
}

int Client::HistoryTicks(uint64_t request_id, const KbMqlTick* ticks, int32_t count) {
  if (!has_market_data()) return KB_E_NO_CHANNEL;
  for (int32_t i = 0; i < count; i++) {
    const KbMqlTick& t = ticks[i];
    if (!(t.bid >= 0 && t.ask >= 0 && t.last >= 0 && t.volume_real >= 0 && std::isfinite(t.bid) &&
          std::isfinite(t.ask) && std::isfinite(t.last) && std::isfinite(t.volume_real)))
      return KB_E_NON_FINITE;
  }
  return QueueHistoryParts(request_id, KB_HISTORY_TICKS, count, 256,
                           [ticks](kairos_bridge_v1_HistoryData& d, const HistoryState& st, int64_t offset,
                                   int32_t at, uint32_t n) {
                             d.has_ticks = true;
                             kairos_marketdata_v1_TickBatch& b = d.ticks;
                             std::memcpy(b.symbol, st.symbol, sizeof(b.symbol));
                             for (uint32_t k = 0; k < n; k++) {
                               const KbMqlTick& t = ticks[at + static_cast<int32_t>(k)];
                               b.time_msc[k] = t.time_msc - offset;
                               b.bid[k] = t.bid;
                               b.ask[k] = t.ask;
                               b.last[k] = t.last;
                               b.volume[k] = t.volume_real;
                               b.flags[k] = t.flags;
                             }
                             b.time_msc_count = b.bid_count = b.ask_count = b.last_count = b.volume_count =
                                 b.flags_count = static_cast<pb_size_t>(n);
                           });
}

int Client::HistoryBars(uint64_t request_id, const KbMqlRates* rates, int32_t count) {
  if (!has_market_data()) return KB_E_NO_CHANNEL;
  for (int32_t i = 0; i < count; i++) {
    const KbMqlRates& r = rates[i];
    if (!(r.open > 0 && r.high > 0 && r.low > 0 && r.close > 0 && std::isfinite(r.open) &&
          std::isfinite(r.high) && std::isfinite(r.low) && std::isfinite(r.close)))
      return KB_E_NON_FINITE;
  }
  return QueueHistoryParts(request_id, KB_HISTORY_BARS, count, 64,
                           [rates](kairos_bridge_v1_HistoryData& d, const HistoryState& st, int64_t offset,
                                   int32_t at, uint32_t n) {
                             d.bars_count = static_cast<pb_size_t>(n);
                             for (uint32_t k = 0; k < n; k++) {
                               const KbMqlRates& r = rates[at + static_cast<int32_t>(k)];
                               kairos_marketdata_v1_Bar& bar = d.bars[k];
                               std::memcpy(bar.symbol, st.symbol, sizeof(bar.symbol));
                               bar.period_s = st.period_s;
                               bar.open_time_msc = r.time * 1000 - offset;
                               bar.open = r.open;
                               bar.high = r.high;
                               bar.low = r.low;
                               bar.close = r.close;
                               bar.tick_volume = r.tick_volume > 0 ? static_cast<uint64_t>(r.tick_volume) : 0;
                               bar.real_volume = static_cast<double>(r.real_volume);
                               bar.spread_points = r.spread;
                             }
                           });
}

int Client::HistoryEnd(uint64_t request_id, int32_t status, int64_t first_available_msc,
                       const std::string& message) {
  if (!has_market_data()) return KB_E_NO_CHANNEL;
  if (status < KB_HISTORY_DONE || status > KB_HISTORY_PARTIAL) return KB_E_BAD_ARG;
  const int64_t offset = server_offset_ms_.load(std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(hist_mu_);
    auto it = hist_state_.find(request_id);
    if (it == hist_state_.end()) return KB_E_BAD_ARG;
    if (hist_out_.size() + 1 > kMaxHistoryParts) return KB_E_QUEUE_FULL;
    hist_out_.push_back(HistoryEndBody(request_id, it->second.part, status, it->second.total,
                                       first_available_msc != 0 ? first_available_msc - offset : 0, message));
    hist_state_.erase(it);
  }
  if (waker_.fd() != net::kInvalid) waker_.Wake();
  return KB_OK;
}

bool Client::HistoryPending() {
  std::lock_guard<std::mutex> lock(hist_mu_);
  return !hist_out_.empty();
}

void Client::PumpHistory(Conn& c) {
  std::deque<std::vector<uint8_t>> batch;
  {
    std::lock_guard<std::mutex> lock(hist_mu_);
    while (!hist_out_.empty() && batch.size() < 64) {
      batch.push_back(std::move(hist_out_.front()));
      hist_out_.pop_front();
    }
  }
  for (auto& body : batch) Enqueue(c, std::move(body), 0);
}

void Client::PumpReports(Conn& c) {
  std::vector<ReportIn> batch;
  {
    std::lock_guard<std::mutex> lock(rep_mu_);
    if (reports_in_.empty()) return;
    batch.swap(reports_in_);
  }
  for (auto& r : batch) {
    if (r.command_id != 0 && !r.dup_body.empty()) {
      if (dup_results_.find(r.command_id) == dup_results_.end()) dup_order_.push_back(r.command_id);
      dup_results_[r.command_id] = std::move(r.dup_body);
      while (dup_order_.size() > kSeenCommands) {
        dup_results_.erase(dup_order_.front());
        dup_order_.pop_front();
      }
    }
    Enqueue(c, std::move(r.body), 0);
  }
}

void Client::RunLoop() {
  std::vector<net::PollItem> items;
  int64_t stop_deadline = -1;
  for (;;) {
    int64_t now = NowMs();
    const bool stopping = stop_.load();
    if (stopping && stop_deadline < 0) stop_deadline = now + config_.options.close_flush_ms;

    for (Conn* cp : {&md_, &tr_}) {
      Conn& c = *cp;
      if (c.host.empty()) continue;
      if (!stopping &&
          ((c.state == State::kBackoff && now >= c.next_attempt_ms) || c.state == State::kResolving))
        StartConnect(c, now);
      if ((c.state == State::kConnecting || c.state == State::kAwaitChallenge ||
           c.state == State::kAwaitWelcome) &&
          now >= c.deadline_ms) {
        n_.connect_failures.fetch_add(1);
        Disconnect(c, KB_E_CONNECT,
                   c.state == State::kConnecting       ? "connect timed out"
                   : c.state == State::kAwaitChallenge ? "no Challenge before the timeout"
                                                       : "no Welcome before the timeout",
                   now);
      }
      if (c.state == State::kReady) {
        if (now - c.last_rx_ms > 3LL * c.heartbeat_ms) {
          Disconnect(c, KB_E_HEARTBEAT_TIMEOUT, "no frame from the server for three heartbeat intervals",
                     now);
          continue;
        }
        if (&c == &md_) {
          PumpTicks(c);
          AnnounceChanged(c);
          PumpHistory(c);
        } else {
          PumpReports(c);
        }
        if (now - c.last_hb_tx_ms >= c.heartbeat_ms) SendHeartbeat(c, now);
        if (c.ack_dirty) SendHeartbeat(c, now);
      }
      if (c.fd != net::kInvalid && c.state != State::kConnecting && c.out_off < c.out.size()) Flush(c, now);
    }

    if (stopping) {
      // Done when everything queued was written and acknowledged (or the channel is down).
      const bool md_done =
          md_.host.empty() || md_.state != State::kReady ||
          (head_.load() == tail_.load() && md_.out_off == md_.out.size() && md_.unacked.empty());
      bool tr_done = tr_.host.empty() || tr_.state != State::kReady ||
                     (tr_.out_off == tr_.out.size() && tr_.unacked.empty());
      if (tr_done && !tr_.host.empty() && tr_.state == State::kReady) {
        std::lock_guard<std::mutex> lock(rep_mu_);
        tr_done = reports_in_.empty();
      }
      if ((md_done && tr_done) || now >= stop_deadline) break;
    }

    // Sleep until the next deadline, a socket event or a wake from the terminal thread.
    int64_t wait = 1000;
    items.clear();
    items.push_back({waker_.fd(), true, false, false, false});
    for (Conn* cp : {&md_, &tr_}) {
      Conn& c = *cp;
      if (c.host.empty()) continue;
      if (c.state == State::kBackoff || c.state == State::kResolving) {
        // Resolving: the resolver's thread wakes this one when the lookup is done.
        if (c.state == State::kBackoff) wait = std::min(wait, c.next_attempt_ms - now);
        items.push_back({net::kInvalid, false, false, false, false});
        continue;
      }
      const bool connecting = c.state == State::kConnecting;
      items.push_back({c.fd, !connecting, connecting || c.out_off < c.out.size(), false, false});
      if (c.state != State::kReady) wait = std::min(wait, c.deadline_ms - now);
      if (c.state == State::kReady) {
        wait = std::min(wait, c.last_hb_tx_ms + c.heartbeat_ms - now);
        wait = std::min<int64_t>(wait, c.last_rx_ms + 3LL * c.heartbeat_ms + 1 - now);
      }
    }
    if (stopping) wait = std::min<int64_t>(wait, 5);
    const bool md_can_pump = md_.state == State::kReady && md_.out.size() - md_.out_off < kOutHighWater;
    // Right after sending ticks, poll the ring a little before sleeping: pushes in a burst (OnTimer
    // batches, a replay) then find the thread awake and cost the terminal no wake-up system call.
    if (wait > 0 && md_can_pump && config_.options.idle_spin_us > 0 && last_pump_ms_ >= now - 10) {
      const auto until =
          std::chrono::steady_clock::now() + std::chrono::microseconds(config_.options.idle_spin_us);
      while (std::chrono::steady_clock::now() < until && !stop_.load(std::memory_order_relaxed)) {
        if (head_.load(std::memory_order_acquire) != tail_.load(std::memory_order_relaxed)) {
          wait = 0;
          break;
        }
        std::this_thread::yield();
      }
    }
    // While ticks flow (sent within the last second) the thread does not ask to be woken: it looks at
    // the ring every warm_poll_us, so pushes never cost the terminal a system call. Idle, it sleeps
    // until woken.
    const bool warm = md_can_pump && config_.options.warm_poll_us > 0 && last_pump_ms_ >= now - 1000;
    int64_t wait_us = wait * 1000;
    if (warm && wait > 0) {
      wait_us = std::min<int64_t>(wait_us, config_.options.warm_poll_us);
      if (HasLocalWork(md_can_pump)) wait_us = 0;
    } else if (wait > 0) {
      sleeping_.store(true);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      bool pending_reports;
      {
        std::lock_guard<std::mutex> lock(rep_mu_);
        pending_reports = !reports_in_.empty() && tr_.state == State::kReady;
      }
      if (HasLocalWork(md_can_pump) || pending_reports || stop_.load() != stopping) wait_us = 0;
      if (md_can_pump && HistoryPending()) wait_us = 0;
      if (md_can_pump && md_.state == State::kReady) {
        const int n = symbol_count_.load(std::memory_order_acquire);
        for (int i = 0; i < n && wait_us > 0; i++)
          if (symbols_[i].rev.load(std::memory_order_relaxed) != md_.announced[i]) wait_us = 0;
      }
    }
    if (wait_us < 0) wait_us = 0;
    if (!net::Poll(&items, wait_us)) {
      Log(KB_E_INTERNAL, "select failed: " + net::LastErrorText());
    }
    sleeping_.store(false);
    now = NowMs();
    if (items[0].readable) waker_.Drain();
    size_t k = 1;
    for (Conn* cp : {&md_, &tr_}) {
      Conn& c = *cp;
      if (c.host.empty()) continue;
      const net::PollItem& it = items[k++];
      if (it.fd == net::kInvalid || it.fd != c.fd) continue;
      if (c.state == State::kConnecting && it.writable) {
        int err = net::ConnectResult(c.fd);
        if (err != 0) {
          n_.connect_failures.fetch_add(1);
          Disconnect(c, KB_E_CONNECT,
                     "connect to " + c.host + ":" + std::to_string(c.port) + " failed (error " +
                         std::to_string(err) + ")",
                     now);
          continue;
        }
        OnConnected(c, now);
        Flush(c, now);
        continue;
      }
      if (it.readable) ReadFrom(c, now);
      if (c.fd != net::kInvalid && it.writable) Flush(c, now);
    }
  }
}

}  // namespace kairos::bridge
