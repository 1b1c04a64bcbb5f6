#include "test_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pb_encode.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "codec.h"
#include "crypto.h"

namespace kairos::bridge::testing {

namespace {

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

TestPeer::TestPeer() : TestPeer(Options()) {}

TestPeer::TestPeer(Options options) : opt_(options) {
  Listen();
  thread_ = std::thread([this] { Loop(); });
}

TestPeer::~TestPeer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

void TestPeer::Listen() {
  listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port_);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    throw std::runtime_error("test peer: bind failed");
  socklen_t len = sizeof(addr);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  listen(listen_fd_, 4);
  listen_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
                   .count();
}

void TestPeer::DropConnection() { drop_ = true; }

void TestPeer::Restart(int down_ms, bool forget_state) {
  restart_forget_ = forget_state;
  restart_down_ms_ = down_ms;
}

bool TestPeer::WaitFor(const std::function<bool()>& pred, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

namespace {
std::vector<uint8_t> EncodeFrame(kairos_bridge_v1_Frame* f) {
  std::vector<uint8_t> body;
  EncodeBody(*f, &body);
  std::vector<uint8_t> out;
  AppendFrame(f->sequence, f->ack, f->sent_time_us, body.data(), body.size(), &out);
  return out;
}

bool SendAll(int fd, const std::vector<uint8_t>& out) {
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n = send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}
}  // namespace

bool TestPeer::WriteFrame(int fd, kairos_bridge_v1_Frame* f) {
  const std::vector<uint8_t> out = EncodeFrame(f);
  std::lock_guard<std::mutex> lock(write_mu_);
  return SendAll(fd, out);
}

bool TestPeer::SendCommand(const kairos_bridge_v1_OrderCommand& cmd) {
  int fd = conn_fd_.load();
  if (fd < 0) return false;
  std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
  {
    std::lock_guard<std::mutex> lock(mu_);
    f->sequence = ++out_seq_;
    f->ack = processed_[{session_, channel_}];
  }
  f->sent_time_us = NowUs();
  f->which_body = kairos_bridge_v1_Frame_order_command_tag;
  f->body.order_command = cmd;
  return WriteFrame(fd, f.get());
}

bool TestPeer::SendHistoryRequest(const kairos_bridge_v1_HistoryRequest& req) {
  int fd = conn_fd_.load();
  if (fd < 0) return false;
  std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
  {
    std::lock_guard<std::mutex> lock(mu_);
    f->sequence = ++out_seq_;
    f->ack = processed_[{session_, channel_}];
  }
  f->sent_time_us = NowUs();
  f->which_body = kairos_bridge_v1_Frame_history_request_tag;
  f->body.history_request = req;
  return WriteFrame(fd, f.get());
}

bool TestPeer::SendBody(pb_size_t tag, const std::function<void(kairos_bridge_v1_Frame*)>& fill) {
  int fd = conn_fd_.load();
  if (fd < 0) return false;
  std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
  {
    std::lock_guard<std::mutex> lock(mu_);
    f->sequence = ++out_seq_;
    f->ack = processed_[{session_, channel_}];
  }
  f->sent_time_us = NowUs();
  f->which_body = tag;
  fill(f.get());
  return WriteFrame(fd, f.get());
}

bool TestPeer::SendTesterStep(const kairos_bridge_v1_TesterStep& step) {
  return SendBody(kairos_bridge_v1_Frame_tester_step_tag,
                  [&](kairos_bridge_v1_Frame* f) { f->body.tester_step = step; });
}

bool TestPeer::SendTesterDecision(const kairos_bridge_v1_TesterDecision& decision) {
  return SendBody(kairos_bridge_v1_Frame_tester_decision_tag,
                  [&](kairos_bridge_v1_Frame* f) { f->body.tester_decision = decision; });
}

bool TestPeer::SendRaw(const std::vector<uint8_t>& bytes) {
  int fd = conn_fd_.load();
  if (fd < 0) return false;
  std::lock_guard<std::mutex> lock(write_mu_);
  return send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

void TestPeer::Loop() {
  while (!stop_) {
    int down = restart_down_ms_.exchange(-1);
    if (down >= 0) {
      close(listen_fd_);
      listen_fd_ = -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(down));
      if (restart_forget_) {
        std::lock_guard<std::mutex> lock(mu_);
        processed_.clear();
        last_tick_seq_.clear();
      }
      Listen();
    }
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    int fd = accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    connections_++;
    Serve(fd);
    conn_fd_ = -1;
    close(fd);
  }
}

void TestPeer::Serve(int fd) {
  std::vector<uint8_t> in;
  std::unique_ptr<kairos_bridge_v1_Frame> f(new kairos_bridge_v1_Frame);
  uint8_t buf[1 << 16];
  auto last_hb = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    out_seq_ = 0;
    session_ = 0;
  }
  {
    // Every connection opens with a Challenge, as the collector and the execution service do.
    std::unique_ptr<kairos_bridge_v1_Frame> c(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
    c->which_body = kairos_bridge_v1_Frame_challenge_tag;
    if (!crypto::RandomBytes(nonce_, sizeof(nonce_))) return;
    c->body.challenge.server_nonce.size = sizeof(nonce_);
    std::memcpy(c->body.challenge.server_nonce.bytes, nonce_, sizeof(nonce_));
    c->body.challenge.auth_required = !opt_.key.empty();
    c->sent_time_us = NowUs();
    if (!WriteFrame(fd, c.get())) return;
  }
  while (!stop_ && !drop_.exchange(false) && restart_down_ms_.load() < 0) {
    pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, 5);
    if (rc > 0) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return;
      bytes_ += static_cast<uint64_t>(n);
      in.insert(in.end(), buf, buf + n);
      size_t off = 0;
      bool any_seq = false;
      while (off < in.size()) {
        size_t used = 0;
        if (opt_.light_ticks && conn_fd_.load() >= 0) {
          // Varint length, then a frame the light parser may take whole.
          uint64_t len = 0;
          size_t i = off;
          int shift = 0;
          while (i < in.size() && shift < 64) {
            len |= static_cast<uint64_t>(in[i] & 0x7F) << shift;
            shift += 7;
            if ((in[i++] & 0x80) == 0) break;
          }
          if (i <= in.size() && (in[i - 1] & 0x80) == 0 && in.size() - i >= len) {
            if (LightTicks(in.data() + i, static_cast<size_t>(len))) {
              off = i + static_cast<size_t>(len);
              any_seq = true;
              continue;
            }
          }
        }
        ReadStatus st = ReadFrame(in.data() + off, in.size() - off, f.get(), &used);
        if (st == ReadStatus::kNeedMore) break;
        if (st != ReadStatus::kFrame) return;  // malformed: close, as a server does
        off += used;
        any_seq |= f->sequence != 0;
        if (!HandleFrame(fd, *f)) return;
      }
      in.erase(in.begin(), in.begin() + static_cast<long>(off));
      if (any_seq && opt_.ack) {
        std::unique_ptr<kairos_bridge_v1_Frame> hb(
            new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
        hb->which_body = kairos_bridge_v1_Frame_heartbeat_tag;
        {
          std::lock_guard<std::mutex> lock(mu_);
          hb->ack = processed_[{session_, channel_}];
          hb->body.heartbeat.echo_time_us = last_peer_hb_us_;
        }
        hb->body.heartbeat.time_us = NowUs();
        if (!WriteFrame(fd, hb.get())) return;
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (opt_.send_heartbeats && conn_fd_.load() >= 0 &&
        now - last_hb >= std::chrono::milliseconds(opt_.heartbeat_ms)) {
      last_hb = now;
      std::unique_ptr<kairos_bridge_v1_Frame> hb(
          new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
      hb->which_body = kairos_bridge_v1_Frame_heartbeat_tag;
      {
        std::lock_guard<std::mutex> lock(mu_);
        hb->ack = opt_.ack ? processed_[{session_, channel_}] : 0;
        hb->body.heartbeat.echo_time_us = last_peer_hb_us_;
      }
      hb->body.heartbeat.time_us = NowUs();
      if (!WriteFrame(fd, hb.get())) return;
    }
  }
}

namespace {

bool Varint(const uint8_t*& p, const uint8_t* end, uint64_t* v) {
  *v = 0;
  for (int shift = 0; p < end && shift < 64; shift += 7) {
    const uint8_t b = *p++;
    *v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

// Counts a TickBatch frame by walking its fields (sequence column only); false for anything else,
// which then takes the full decode.
bool TestPeer::LightTicks(const uint8_t* p, size_t n) {
  const uint8_t* end = p + n;
  uint64_t seq = 0, key = 0, len = 0;
  const uint8_t* batch = nullptr;
  size_t batch_len = 0;
  while (p < end) {
    if (!Varint(p, end, &key)) return false;
    const uint32_t field = static_cast<uint32_t>(key >> 3), wt = key & 7;
    if (wt == 0) {
      uint64_t v;
      if (!Varint(p, end, &v)) return false;
      if (field == 1) seq = v;
    } else if (wt == 2) {
      if (!Varint(p, end, &len) || static_cast<uint64_t>(end - p) < len) return false;
      if (field != 14) return false;
      batch = p;
      batch_len = static_cast<size_t>(len);
      p += len;
    } else {
      return false;
    }
  }
  if (batch == nullptr || seq == 0) return false;
  std::string symbol;
  uint64_t count = 0, first = 0, last = 0;
  const uint8_t* q = batch;
  const uint8_t* qend = batch + batch_len;
  while (q < qend) {
    if (!Varint(q, qend, &key)) return false;
    const uint32_t field = static_cast<uint32_t>(key >> 3), wt = key & 7;
    if (wt != 2) return false;  // every TickBatch field is a string or a packed column
    if (!Varint(q, qend, &len) || static_cast<uint64_t>(qend - q) < len) return false;
    if (field == 1) symbol.assign(reinterpret_cast<const char*>(q), static_cast<size_t>(len));
    if (field == 8) {
      const uint8_t* r = q;
      const uint8_t* rend = q + len;
      uint64_t v;
      while (r < rend && Varint(r, rend, &v)) {
        if (count == 0) first = v;
        last = v;
        count++;
      }
    }
    q += len;
  }
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t& processed = processed_[{session_, channel_}];
  if (seq <= processed) {
    duplicates_++;
    return true;
  }
  if (seq != processed + 1) frame_gaps_++;
  processed = seq;
  uint64_t& prev = last_tick_seq_[symbol];
  if (count != 0 && (first != prev + 1 || last != first + count - 1)) tick_gaps_++;
  prev = last;
  tick_count_ += count;
  return true;
}

bool TestPeer::HandleFrame(int fd, const kairos_bridge_v1_Frame& f) {
  if (f.which_body == kairos_bridge_v1_Frame_hello_tag) {
    const kairos_bridge_v1_Hello& h = f.body.hello;
    crypto::Digest server_proof{};
    if (!opt_.key.empty()) {
      const bool sized = h.auth_proof.size == 32 && h.client_nonce.size == 32;
      const crypto::Digest want =
          sized ? crypto::HandshakeProof(opt_.key, crypto::Role::kClient, nonce_, h.client_nonce.bytes,
                                         h.session_id, static_cast<uint32_t>(h.channel), h.api_version)
                : crypto::Digest{};
      if (!sized || !crypto::ConstantTimeEqual(want.data(), h.auth_proof.bytes, 32)) {
        auth_failures_++;
        std::unique_ptr<kairos_bridge_v1_Frame> e(
            new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
        e->which_body = kairos_bridge_v1_Frame_error_tag;
        e->body.error.code = kairos_bridge_v1_ErrorCode_ERROR_CODE_UNAUTHENTICATED;
        std::snprintf(e->body.error.message, sizeof(e->body.error.message), "no valid bridge key proof");
        WriteFrame(fd, e.get());
        return false;
      }
      server_proof = crypto::HandshakeProof(opt_.key, crypto::Role::kServer, nonce_, h.client_nonce.bytes,
                                            h.session_id, static_cast<uint32_t>(h.channel), h.api_version);
      if (opt_.wrong_server_proof) server_proof[0] ^= 1;
    }
    uint64_t resume;
    {
      std::lock_guard<std::mutex> lock(mu_);
      hellos_.push_back(f.body.hello);
      session_ = f.body.hello.session_id;
      channel_ = f.body.hello.channel;
      resume = processed_[{session_, channel_}];
    }
    if (!opt_.welcome) return true;
    std::unique_ptr<kairos_bridge_v1_Frame> w(new kairos_bridge_v1_Frame(kairos_bridge_v1_Frame_init_zero));
    w->which_body = kairos_bridge_v1_Frame_welcome_tag;
    std::snprintf(w->body.welcome.server_version, sizeof(w->body.welcome.server_version), "test-peer 1");
    w->body.welcome.resume_after = resume;
    w->body.welcome.heartbeat_interval_ms = opt_.heartbeat_ms;
    if (!opt_.key.empty()) {
      w->body.welcome.server_proof.size = 32;
      std::memcpy(w->body.welcome.server_proof.bytes, server_proof.data(), 32);
    }
    w->sent_time_us = NowUs();
    // The connection is recorded under the write lock the Welcome goes out with: a command sent as
    // soon as the bridge counts itself connected finds it, and cannot overtake the Welcome.
    const std::vector<uint8_t> out = EncodeFrame(w.get());
    std::lock_guard<std::mutex> lock(write_mu_);
    conn_fd_ = fd;
    return SendAll(fd, out);
  }
  if (f.ack > last_ack_) last_ack_ = f.ack;
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t& processed = processed_[{session_, channel_}];
  if (f.sequence != 0) {
    if (f.sequence <= processed) {
      duplicates_++;
      return true;
    }
    if (f.sequence != processed + 1) frame_gaps_++;
    processed = f.sequence;
  }
  switch (f.which_body) {
    case kairos_bridge_v1_Frame_heartbeat_tag:
      heartbeats_++;
      last_peer_hb_us_ = f.body.heartbeat.time_us;
      break;
    case kairos_bridge_v1_Frame_symbol_info_tag:
      symbol_infos_.push_back(f.body.symbol_info);
      break;
    case kairos_bridge_v1_Frame_ticks_tag: {
      const auto& b = f.body.ticks;
      uint64_t& last = last_tick_seq_[b.symbol];
      for (pb_size_t i = 0; i < b.time_msc_count; i++) {
        if (b.sequence[i] != last + 1) tick_gaps_++;
        last = b.sequence[i];
        if (opt_.keep_ticks)
          ticks_.push_back({b.symbol, b.time_msc[i], b.bid[i], b.ask[i], b.last_count ? b.last[i] : 0.0,
                            b.volume_count ? b.volume[i] : 0.0, b.flags[i], b.sequence[i]});
      }
      tick_count_ += b.time_msc_count;
      break;
    }
    case kairos_bridge_v1_Frame_order_result_tag:
      results_.push_back(f.body.order_result);
      break;
    case kairos_bridge_v1_Frame_trade_transaction_tag:
      transactions_.push_back(f.body.trade_transaction);
      break;
    case kairos_bridge_v1_Frame_account_tag:
      accounts_.push_back(f.body.account);
      break;
    case kairos_bridge_v1_Frame_terminal_check_tag:
      checks_.push_back(f.body.terminal_check);
      break;
    case kairos_bridge_v1_Frame_history_data_tag:
      history_.push_back(f.body.history_data);
      break;
    case kairos_bridge_v1_Frame_positions_tag:
      positions_.push_back(f.body.positions);
      break;
    default:
      break;
  }
  return true;
}

#define KB_PEER_GETTER(name, type)         \
  std::vector<type> TestPeer::name() {     \
    std::lock_guard<std::mutex> lock(mu_); \
    return name##_;                        \
  }
KB_PEER_GETTER(ticks, PeerTick)
KB_PEER_GETTER(hellos, kairos_bridge_v1_Hello)
KB_PEER_GETTER(checks, kairos_bridge_v1_TerminalCheck)
KB_PEER_GETTER(history, kairos_bridge_v1_HistoryData)
KB_PEER_GETTER(results, kairos_bridge_v1_OrderResult)
KB_PEER_GETTER(transactions, kairos_bridge_v1_TradeTransaction)
KB_PEER_GETTER(accounts, kairos_bridge_v1_AccountSnapshot)
KB_PEER_GETTER(positions, kairos_bridge_v1_PositionSnapshot)
KB_PEER_GETTER(symbol_infos, kairos_marketdata_v1_SymbolInfo)
#undef KB_PEER_GETTER

}  // namespace kairos::bridge::testing
