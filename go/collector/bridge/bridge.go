// Package bridge is the collector's market-data channel of the bridge link: what a bridge
// session's frames mean to the collector. Tick batches and symbol announcements become input of
// the session's ingest source, a rejected tick is answered with Error{REJECTED}. The connection
// itself (handshake, sequences, acks, heartbeats, resume, frame errors) is go/bridgelink, shared
// with the execution service's trading channel.
package bridge

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/bridgelink"
	"github.com/kairos-mt5/kairos/go/collector/ingest"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
)

// AckInterval is how often a moved cumulative ack is sent while ticks flow: the bridge trims its
// resend buffer quickly without an ack per frame.
const AckInterval = 20 * time.Millisecond

// Config shapes the listener.
type Config struct {
	// Addr is the TCP listen address.
	Addr string
	// HeartbeatInterval is announced in Welcome; a peer silent for three intervals is dropped.
	HeartbeatInterval time.Duration
	// MaxFrameBytes closes a connection whose frame is larger (bridgelink.DefaultMaxFrameBytes if 0).
	MaxFrameBytes int
	// ServerVersion is sent in Welcome.
	ServerVersion string
	// Key is the bridge key every Hello must prove; Insecure accepts Hellos without one when Key is
	// empty (bridgelink.Config).
	Key      []byte
	Insecure bool
	// MaxSessions and SessionTTL bound the session table (bridgelink defaults if 0).
	MaxSessions int
	SessionTTL  time.Duration
	// Guard bounds unauthenticated peers (bridgelink defaults if zero).
	Guard bridgelink.Guard
	// History, if set, routes history requests to the connected terminals (FetchHistory).
	History *History
}

// Listen binds cfg.Addr for the market-data channel; frames of each session feed pipe.
func Listen(cfg Config, pipe *ingest.Pipeline, m *metrics.Metrics, log *slog.Logger) (*bridgelink.Listener, error) {
	l := bridgelink.New(bridgelink.Config{Channel: bridgev1.Channel_CHANNEL_MARKET_DATA, Addr: cfg.Addr,
		HeartbeatInterval: cfg.HeartbeatInterval, AckInterval: AckInterval, MaxFrameBytes: cfg.MaxFrameBytes,
		ServerVersion: cfg.ServerVersion, Decode: decodeFast, Key: cfg.Key, Insecure: cfg.Insecure,
		MaxSessions: cfg.MaxSessions, SessionTTL: cfg.SessionTTL, Guard: cfg.Guard,
		// A forgotten session's ingest source (its watermarks) goes with it, from memory and the state file.
		OnEvict: func(id uint64, _ string) { pipe.DropSource(SourceName(id)) }},
		&channel{pipe: pipe, hop: m.HopLatency.WithLabelValues("bridge_to_collector"), hist: cfg.History, m: m}, m.Bridge, log)
	if err := l.Listen(); err != nil {
		return nil, err
	}
	return l, nil
}

// SourceName is the ingest source of a bridge session (its state-file key as well).
func SourceName(sessionID uint64) string { return bridgelink.SessionKey(sessionID) }

type channel struct {
	pipe *ingest.Pipeline
	hop  prometheus.Observer
	hist *History
	m    *metrics.Metrics
}

func (ch *channel) Open(c *bridgelink.Conn) bridgelink.Handler {
	s := &session{c: c, pipe: ch.pipe, src: ch.pipe.Source(SourceName(c.SessionID()), "bridge"), hop: ch.hop, hist: ch.hist,
		symbols: map[string]bool{}, m: ch.m}
	ch.hist.add(s)
	if ch.pipe.Durable() {
		// The wait for NATS ends with the connection (shutdown, replaced, dead peer).
		var cancel context.CancelFunc
		s.ctx, cancel = context.WithCancel(context.Background())
		s.cancel = cancel
		go func() {
			select {
			case <-c.Done():
				cancel()
			case <-s.ctx.Done(): // Closed
			}
		}()
	}
	return s
}

// session handles one connection of a bridge session.
type session struct {
	c    *bridgelink.Conn
	pipe *ingest.Pipeline
	src  *ingest.Source
	hop  prometheus.Observer
	// ctx is set when NATS is durable: Frames then waits, within it, for its ticks to be stored.
	ctx    context.Context
	cancel context.CancelFunc
	hist   *History
	// symbols announced on this connection (History picks the terminal that has the symbol); read
	// under hist.mu, written by the reader goroutine under it too.
	symbols map[string]bool
	m       *metrics.Metrics
}

// announced reports whether the connection announced symbol; the caller holds hist.mu.
func (s *session) announced(symbol string) bool { return s.symbols[symbol] }

func (s *session) Closed(error) {
	s.hist.remove(s)
	if s.cancel != nil {
		s.cancel()
	}
}

// Frames processes every frame: none fails the connection, refusals go back as Error{REJECTED}.
// With JetStream the frames count as processed (and are acknowledged to the bridge) only once NATS
// has stored their ticks (ADR 0024); a connection that ends first leaves them unacknowledged.
func (s *session) Frames(in []bridgelink.Inbound) (int, error) {
	for _, x := range in {
		s.frame(x)
	}
	if s.ctx != nil {
		if err := s.pipe.Stored(s.ctx); err != nil {
			return 0, fmt.Errorf("ticks not stored by NATS JetStream: %w", err)
		}
		// Only now do these frames' watermarks go to the state file (see ingest.Source.Commit).
		s.src.Commit()
	}
	return len(in), nil
}

func (s *session) frame(in bridgelink.Inbound) {
	f, seq := in.Frame, in.Frame.Sequence
	switch b := f.Body.(type) {
	case *bridgev1.Frame_Ticks:
		if f.SentTimeUs > 0 {
			if d := in.RecvUs - f.SentTimeUs; d >= 0 {
				s.hop.Observe(float64(d) / 1e6)
			}
		}
		var hops []*typesv1.HopStamp
		if s.pipe.WantsHops() { // three allocations a frame otherwise spent for nothing
			hops = make([]*typesv1.HopStamp, 0, 3)
			if f.SentTimeUs > 0 {
				hops = append(hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_BRIDGE_SEND, TimeUs: f.SentTimeUs})
			}
			hops = append(hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_COLLECTOR_RECEIVE, TimeUs: in.RecvUs})
		}
		// A loan: the batch's columns decode the next frame once this one is handled (recycle).
		res := s.src.TicksLoaned(b.Ticks, ticksBytes(in.Raw), hops)
		if res.RejectedTotal > 0 && len(res.Rejected) > 0 {
			r := res.Rejected[0]
			s.c.Reject(seq, fmt.Sprintf("%d of %d ticks of %s rejected; first at index %d: %s", res.RejectedTotal,
				len(b.Ticks.GetTimeMsc()), b.Ticks.GetSymbol(), r.Index, r.Detail))
		}
		if s.c.Hello().GetLockstep() {
			s.step(b.Ticks)
		}
		recycle(b.Ticks)
		b.Ticks = nil
	case *bridgev1.Frame_SymbolInfo:
		if err := s.src.Announce(b.SymbolInfo); err != nil {
			s.c.Reject(seq, err.Error())
			s.c.Log().Warn("symbol info rejected", "err", err)
		} else if s.hist != nil {
			s.hist.mu.Lock()
			s.symbols[b.SymbolInfo.GetSymbol()] = true
			s.hist.mu.Unlock()
		}
	case *bridgev1.Frame_HistoryData:
		// History goes to the caller that asked for it, never into the live tick path.
		s.hist.deliver(b.HistoryData)
	case *bridgev1.Frame_Heartbeat, *bridgev1.Frame_Error:
		// Numbered ones only; the link has echoed or logged them.
	default:
		s.c.Reject(seq, fmt.Sprintf("the collector does not take %T frames on the market-data channel", b))
	}
}

// step answers a lockstep (Strategy Tester) session's tick frame with TesterStep once the inference
// server has answered for its ticks (ADR 0095).
func (s *session) step(b *mdv1.TickBatch) {
	sym := b.GetSymbol()
	var last uint64
	if n := len(b.GetSequence()); n > 0 {
		last = b.GetSequence()[n-1]
	}
	c, m := s.c, s.m
	s.src.Mark(sym, func(decisions []int64) {
		outcome := "no_decision"
		if len(decisions) > 0 {
			outcome = "decision"
		}
		if err := c.Send(&bridgev1.Frame{Body: &bridgev1.Frame_TesterStep{TesterStep: &bridgev1.TesterStep{
			Symbol: sym, TickSequence: last, DecisionTimeMsc: decisions}}}); err != nil {
			outcome = "unsent"
			c.Log().Warn("tester step not sent; the bridge's step times out", "symbol", sym, "tick_sequence", last, "err", err)
		}
		if m != nil {
			m.TesterSteps.WithLabelValues(outcome).Inc()
		}
	})
}

// decodeFast is the link's fast path for tick frames (fastdecode.go).
func decodeFast(raw []byte) (*bridgev1.Frame, bool) {
	b := batches.Get().(*mdv1.TickBatch)
	f, _, ok := decodeTicksFrame(raw, b)
	if !ok {
		batches.Put(b)
	}
	return f, ok
}

// readFrame reads one frame as the link does, returning its bytes too (the fuzz target).
func readFrame(br *bufio.Reader, maxBytes int) (*bridgev1.Frame, []byte, error) {
	raw, err := bridgelink.ReadRaw(br, maxBytes)
	if err != nil {
		return nil, nil, err
	}
	f, err := bridgelink.Decode(raw, decodeFast)
	if err != nil {
		return nil, nil, err
	}
	return f, raw, nil
}

// ticksBytes finds the encoded TickBatch (field 14) inside a frame's bytes, so the batch goes on
// to NATS without being encoded again.
func ticksBytes(frame []byte) []byte {
	var found []byte
	for len(frame) > 0 {
		num, typ, n := protowire.ConsumeTag(frame)
		if n < 0 {
			return nil
		}
		frame = frame[n:]
		if num == 14 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(frame)
			if m < 0 {
				return nil
			}
			// A repeated field 14 would be merged by the decoder: only a single occurrence is reusable.
			if found != nil {
				return nil
			}
			found = v
			frame = frame[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, frame)
		if m < 0 {
			return nil
		}
		frame = frame[m:]
	}
	return found
}
