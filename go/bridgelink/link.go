// Package bridgelink is the server side of a bridge DLL connection, for every Kairos service the
// DLL talks to: the collector (market-data channel) and the execution service (trading channel).
// It owns what the two channels share and must not drift apart: the TCP listener, varint-delimited
// kairos.bridge.v1 frames with one size limit, the Hello/Welcome handshake and its api_version check,
// the session table (per session_id: the last sequence processed, so Welcome.resume_after is right
// after a reconnect), duplicate drop and gap count, the cumulative ack, heartbeats both ways and the
// three-interval dead-peer timeout, replacement of an older connection of the same session, frame
// errors with the Error frame the DLL logs, the metrics, and a shutdown that awaits every goroutine.
//
// A service plugs its channel in through Channel and Handler: it is told when a connection opens
// and closes, gets the frames that are new (in order, duplicates dropped) and says how many it has
// processed; only those are acknowledged. It sends frames to the peer through Conn.Send.
//
// Every connection starts with the bridge key's HMAC challenge (auth.go): a peer that cannot
// prove the key gets Error{UNAUTHENTICATED} and nothing else. The session table is bounded
// (Config.MaxSessions) and idle sessions expire (Config.SessionTTL).
//
// The wire protocol is proto/kairos/bridge/v1/bridge.proto; the choices are in
// docs/adr/0014-one-bridge-session-implementation.md and docs/adr/0015-bridge-authentication.md.
package bridgelink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

// APIVersion is the bridge C ABI version the services speak (Hello.api_version, KB_API_VERSION).
// Version 2 added the key challenge; a version-1 DLL cannot answer it and is refused.
const APIVersion = 4

// MinAPIVersion is the oldest bridge C ABI version the services still accept: version 2 DLLs lack
// only what version 3 added (kb_report_check, MODIFY_POSITION), so they keep working.
const MinAPIVersion = 2

// Session table defaults.
const (
	DefaultMaxSessions = 1024
	DefaultSessionTTL  = 24 * time.Hour
)

// Eviction reasons (kairos_bridge_sessions_evicted_total{reason}).
const (
	EvictTTL      = "ttl"      // no connection for SessionTTL
	EvictCapacity = "capacity" // the table was full; the least recently active idle session went
)

// Errors a Handler may see in Closed, and Conn.Send may return.
var (
	// ErrReplaced: a newer connection of the same session (any session, with Config.Exclusive)
	// said Hello; it proceeds once this connection's Closed has returned.
	ErrReplaced = errors.New("replaced by a new connection of the same session")
	// ErrShuttingDown: the listener is closing; the peer was sent Error{SHUTTING_DOWN}.
	ErrShuttingDown = errors.New("shutting down")
	// ErrNotConnected: the connection has ended.
	ErrNotConnected = errors.New("bridge not connected")
	// ErrSendQueueFull: the peer does not read fast enough; the frame was not queued.
	ErrSendQueueFull = errors.New("bridge send queue full")
	// ErrTooManySessions: MaxSessions sessions all have a live connection; a new one is refused.
	ErrTooManySessions = errors.New("too many bridge sessions")
)

// Config shapes a listener. Zero values take the defaults named.
type Config struct {
	// Channel is the only channel this listener takes in Hello.
	Channel bridgev1.Channel
	// Addr is the TCP listen address.
	Addr string
	// HeartbeatInterval is announced in Welcome and is how often the link sends a heartbeat; a peer
	// silent for three intervals is dropped. Default 1 s.
	HeartbeatInterval time.Duration
	// AckInterval paces the heartbeats that carry a moved cumulative ack, so a busy stream is not
	// answered frame by frame. Zero acknowledges right after every processed batch.
	AckInterval time.Duration
	// MaxFrameBytes ends a connection whose frame announces more. Default DefaultMaxFrameBytes.
	MaxFrameBytes int
	// ServerVersion is sent in Welcome, e.g. "kairos-collector 0.1.0".
	ServerVersion string
	// MaxBatch is how many frames already buffered are handed to one Handler.Frames call (the
	// trading channel journals a batch in one durable flush). Default 1.
	MaxBatch int
	// Exclusive makes a new connection replace the current one whatever its session: the trading
	// channel drives one terminal, so commands must have exactly one place to go.
	Exclusive bool
	// SendQueue bounds the frames waiting for the writer. Default 4096.
	SendQueue int
	// Decode, if set, is tried before proto.Unmarshal on every frame (the collector's tick path).
	Decode FastDecoder
	// FrameBuffer, if set, gives the buffer each frame of up to 64 KiB is read into, instead of a
	// fresh one (the collector recycles its tick frames' buffers once NATS has sent their bytes).
	// Inbound.Raw is then that buffer; the link does not touch it after handing it to Frames, and
	// neither does the decoded Frame (decoding copies). Frames nobody recycles are left to the
	// garbage collector.
	FrameBuffer FrameBuffer
	// Key is the bridge key (at least MinKeyBytes): every Hello must prove it, and Welcome proves
	// it back. Listen refuses to bind without one unless Insecure is set.
	Key []byte
	// Insecure accepts a Hello without a proof when Key is empty: the explicit opt-out, for a
	// throwaway local experiment. Anyone who reaches the port can then stream or trade.
	Insecure bool
	// MaxSessions bounds the session table; a new session evicts the least recently active one
	// without a connection. Default DefaultMaxSessions.
	MaxSessions int
	// SessionTTL forgets a session that has had no connection for this long (its resume point
	// goes; the DLL's resend then starts a fresh history). Default DefaultSessionTTL.
	SessionTTL time.Duration
	// OnEvict, if set, is told each session the table forgets (the collector drops its ingest
	// source). It runs without the listener's lock and must not block.
	OnEvict func(id uint64, reason string)
	// Now is the clock of session expiry and of the failed-handshake gate. Default time.Now.
	Now func() time.Time

	// Guard bounds what a peer may cost before it has proven the key (guard.go).
	Guard
}

// Channel is what a service plugs into the listener.
type Channel interface {
	// Open starts a connection whose Hello was accepted. Welcome is already queued (so frames sent
	// from here follow it), no data frame has been read yet, and the connection this one replaced,
	// if any, has finished: its Closed has returned. The Handler lives as long as the connection.
	Open(c *Conn) Handler
}

// Handler handles one connection's frames; the link calls it from one goroutine at a time.
type Handler interface {
	// Frames gets the connection's new frames in order: every frame except duplicates, Hello, and
	// heartbeats and errors with sequence 0 (the link answers those: echo, round trip, log). It
	// returns how many of them, from the start, are processed: their sequences become the session's
	// resume point and are acknowledged. A non-nil error ends the connection (after acknowledging n).
	Frames(in []Inbound) (n int, err error)
	// Closed is called once, after the last Frames call, with why the connection ended (ErrReplaced,
	// ErrShuttingDown, a read error, ...).
	Closed(err error)
}

// Inbound is one received frame.
type Inbound struct {
	Frame *bridgev1.Frame
	// Raw is the frame's encoded bytes (the collector reuses the tick batch inside them).
	Raw []byte
	// RecvUs is when the frame was read, microseconds since the Unix epoch.
	RecvUs int64
}

// SessionKey names a bridge session outside the link (the collector's ingest source and state
// file, the execution journal's key): "bridge:" and the session id in decimal, as the logs print it.
func SessionKey(id uint64) string { return "bridge:" + strconv.FormatUint(id, 10) }

// ParseSessionKey is SessionKey's inverse.
func ParseSessionKey(k string) (uint64, error) {
	rest, ok := strings.CutPrefix(k, "bridge:")
	if !ok || rest == "" {
		return 0, fmt.Errorf("not a bridge session key: %q", k)
	}
	return strconv.ParseUint(rest, 10, 64)
}

// session is what outlives a connection: the highest sequence processed from a session_id.
type session struct {
	id      uint64
	mu      sync.Mutex
	lastSeq uint64
	// Under Listener.mu: live connections, the last activity (a connection's start or end, a
	// restore) and a counter ordering activities at the same instant.
	live  int
	seen  time.Time
	touch uint64
}

// SessionState is one session as a state file keeps it.
type SessionState struct {
	ID       uint64
	LastSeq  uint64
	LastSeen time.Time
}

func (s *session) last() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq
}

// advance raises the processed sequence; it never goes down (a restore can race a connection).
func (s *session) advance(seq uint64) {
	s.mu.Lock()
	if seq > s.lastSeq {
		s.lastSeq = seq
	}
	s.mu.Unlock()
}

// Listener accepts bridge connections of one channel.
type Listener struct {
	cfg Config
	ch  Channel
	m   *Metrics
	log *slog.Logger

	mu         sync.Mutex
	ln         net.Listener
	sessions   map[uint64]*session
	touch      uint64
	conns      map[*Conn]struct{}
	shaking    int                  // connections in their handshake (MaxHandshakes)
	shakingBy  map[netip.Addr]int   // the same per remote address; at most MaxHandshakes entries
	gate       *failGate            // failed handshakes per remote address
	refusedLog map[string]time.Time // last log line per refusal reason (at most one a second each)
	closed     bool
	wg         sync.WaitGroup // one per connection goroutine
}

// New returns a listener that is not bound yet; Listen binds, Serve accepts. The session table
// exists from here, so Restore may run before Listen. m nil: metrics are kept but not registered.
func New(cfg Config, ch Channel, m *Metrics, log *slog.Logger) *Listener {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.AckInterval < 0 {
		cfg.AckInterval = 0
	}
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 4096
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.MaxConnections = orDefault(cfg.MaxConnections, DefaultMaxConnections)
	cfg.MaxHandshakes = orDefault(cfg.MaxHandshakes, DefaultMaxHandshakes)
	cfg.MaxHandshakesPerAddress = orDefault(cfg.MaxHandshakesPerAddress, DefaultMaxHandshakesPerAddress)
	cfg.MaxHandshakeBytes = orDefault(cfg.MaxHandshakeBytes, DefaultMaxHandshakeBytes)
	cfg.MaxHandshakeBytes = min(cfg.MaxHandshakeBytes, cfg.MaxFrameBytes)
	if cfg.MaxHandshakeBytes < 0 {
		cfg.MaxHandshakeBytes = cfg.MaxFrameBytes
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 3 * cfg.HeartbeatInterval
	}
	cfg.AuthFailureBurst = orDefault(cfg.AuthFailureBurst, DefaultAuthFailureBurst)
	if cfg.AuthFailureRefill <= 0 {
		cfg.AuthFailureRefill = DefaultAuthFailureRefill
	}
	cfg.MaxTrackedPeers = orDefault(cfg.MaxTrackedPeers, DefaultMaxTrackedPeers)
	if m == nil {
		m = NewMetrics(nil, cfg.Channel)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{cfg: cfg, ch: ch, m: m, log: log.With("channel", m.Channel),
		sessions: map[uint64]*session{}, conns: map[*Conn]struct{}{},
		shakingBy: map[netip.Addr]int{}, refusedLog: map[string]time.Time{},
		gate: newFailGate(cfg.AuthFailureBurst, cfg.AuthFailureRefill, max(cfg.MaxTrackedPeers, 1), cfg.Now)}
}

// orDefault is v, or def when v is 0 (a negative v stays: the bound is off).
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Listen binds cfg.Addr. Without a key it refuses (ErrNoKey) unless Config.Insecure.
func (l *Listener) Listen() error {
	switch {
	case len(l.cfg.Key) == 0 && !l.cfg.Insecure:
		return fmt.Errorf("bridge listener %s (%s): %w", l.cfg.Addr, l.m.Channel, ErrNoKey)
	case len(l.cfg.Key) > 0 && len(l.cfg.Key) < MinKeyBytes:
		return fmt.Errorf("bridge listener %s (%s): %w", l.cfg.Addr, l.m.Channel, ErrWeakKey)
	case len(l.cfg.Key) == 0:
		l.log.Warn("bridge listener WITHOUT authentication (insecure opt-out): anyone who reaches it can connect", "addr", l.cfg.Addr)
	}
	ln, err := net.Listen("tcp", l.cfg.Addr)
	if err != nil {
		return fmt.Errorf("bridge listener %s: %w", l.cfg.Addr, err)
	}
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	return nil
}

// Addr is the bound address (nil before Listen).
func (l *Listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// Serve accepts connections until Close, each in a goroutine the listener owns and Close awaits.
// It returns nil after Close.
func (l *Listener) Serve() error {
	l.mu.Lock()
	ln := l.ln
	l.mu.Unlock()
	if ln == nil {
		return errors.New("bridge listener: Serve before Listen")
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("bridge listener: accept: %w", err)
		}
		c := l.newConn(nc)
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			nc.Close()
			continue
		}
		if reason, msg := l.admitLocked(c); reason != "" {
			l.mu.Unlock()
			l.refuse(c, reason, msg)
			continue
		}
		l.conns[c] = struct{}{}
		l.shaking++
		l.shakingBy[c.ip]++
		l.m.Handshakes.Set(float64(l.shaking))
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			c.run()
			l.mu.Lock()
			delete(l.conns, c)
			if c.sess != nil {
				c.sess.live--
				l.touchLocked(c.sess)
			}
			l.mu.Unlock()
		}()
	}
}

// Close stops accepting, sends every peer Error{SHUTTING_DOWN}, ends the connections and waits for
// their goroutines, bounded by ctx. Closing again only waits.
func (l *Listener) Close(ctx context.Context) error {
	l.mu.Lock()
	ln := l.ln
	if l.closed {
		ln = nil // closed before: only wait again
	}
	l.closed = true
	conns := make([]*Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	var err error
	if ln != nil {
		err = ln.Close()
	}
	for _, c := range conns {
		c.enqueue(errorFrame(bridgev1.ErrorCode_ERROR_CODE_SHUTTING_DOWN, "the "+l.cfg.ServerVersion+" server is shutting down", 0))
		c.stop(ErrShuttingDown)
	}
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sessions returns each known session's highest processed sequence (for a state file), after
// expiring the idle ones.
func (l *Listener) Sessions() map[uint64]uint64 {
	out := map[uint64]uint64{}
	for _, st := range l.Snapshot() {
		out[st.ID] = st.LastSeq
	}
	return out
}

// Snapshot returns every known session with its processed sequence and last activity, after
// expiring the idle ones.
func (l *Listener) Snapshot() []SessionState {
	l.mu.Lock()
	evicted := l.expireLocked(l.cfg.Now())
	ss := make([]*session, 0, len(l.sessions))
	seen := make([]time.Time, 0, len(l.sessions))
	for _, s := range l.sessions {
		ss = append(ss, s)
		seen = append(seen, s.seen)
	}
	l.mu.Unlock()
	l.notifyEvicted(evicted)
	out := make([]SessionState, len(ss))
	for i, s := range ss {
		out[i] = SessionState{ID: s.id, LastSeq: s.last(), LastSeen: seen[i]}
	}
	return out
}

// Restore raises a session's processed sequence to seq (from a state file or a journal replay),
// so the next Welcome.resume_after is right. It never lowers it. The session counts as active now.
func (l *Listener) Restore(id, seq uint64) { l.RestoreSeen(id, seq, time.Time{}) }

// RestoreSeen is Restore with the session's last activity from a state file (zero: now). A
// session already idle for longer than SessionTTL is not restored; beyond MaxSessions the least
// recently active go.
func (l *Listener) RestoreSeen(id, seq uint64, seen time.Time) {
	now := l.cfg.Now()
	if seen.IsZero() || seen.After(now) {
		seen = now
	}
	l.mu.Lock()
	if now.Sub(seen) > l.cfg.SessionTTL {
		l.mu.Unlock()
		l.m.SessionsEvicted.WithLabelValues(EvictTTL).Inc()
		l.notifyEvicted([]evicted{{id, EvictTTL}})
		return
	}
	s := l.sessions[id]
	if s == nil {
		s = &session{id: id}
		l.sessions[id] = s
	}
	l.touch++
	if seen.After(s.seen) || s.seen.IsZero() {
		s.seen = seen
	}
	s.touch = l.touch
	var ev []evicted
	for len(l.sessions) > l.cfg.MaxSessions {
		if !l.evictOldestLocked(&ev) {
			break
		}
	}
	l.m.Sessions.Set(float64(len(l.sessions)))
	l.mu.Unlock()
	l.notifyEvicted(ev)
	s.advance(seq)
}

type evicted struct {
	id     uint64
	reason string
}

func (l *Listener) notifyEvicted(ev []evicted) {
	if l.cfg.OnEvict == nil {
		return
	}
	for _, e := range ev {
		l.cfg.OnEvict(e.id, e.reason)
	}
}

func (l *Listener) touchLocked(s *session) {
	l.touch++
	s.seen = l.cfg.Now()
	s.touch = l.touch
}

// expireLocked forgets the sessions without a connection for longer than SessionTTL.
func (l *Listener) expireLocked(now time.Time) []evicted {
	var ev []evicted
	for id, s := range l.sessions {
		if s.live == 0 && now.Sub(s.seen) > l.cfg.SessionTTL {
			delete(l.sessions, id)
			l.m.SessionsEvicted.WithLabelValues(EvictTTL).Inc()
			ev = append(ev, evicted{id, EvictTTL})
		}
	}
	if len(ev) > 0 {
		l.m.Sessions.Set(float64(len(l.sessions)))
	}
	return ev
}

// evictOldestLocked forgets the least recently active session without a connection; false when
// every session has one.
func (l *Listener) evictOldestLocked(ev *[]evicted) bool {
	var victim *session
	for _, s := range l.sessions {
		if s.live > 0 {
			continue
		}
		if victim == nil || s.seen.Before(victim.seen) || (s.seen.Equal(victim.seen) && s.touch < victim.touch) {
			victim = s
		}
	}
	if victim == nil {
		return false
	}
	delete(l.sessions, victim.id)
	l.m.SessionsEvicted.WithLabelValues(EvictCapacity).Inc()
	*ev = append(*ev, evicted{victim.id, EvictCapacity})
	return true
}

// register makes c the session's connection and returns the connections it replaces: the
// session's (every other one, when Exclusive). They are stopped by the caller, which then waits for
// them, so no two handlers ever process one session's frames at the same time. A new session
// first expires idle ones and, with the table full, evicts the least recently active idle one.
func (l *Listener) register(c *Conn, id uint64) (*session, []*Conn, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil, ErrShuttingDown
	}
	var ev []evicted
	s := l.sessions[id]
	if s == nil {
		ev = l.expireLocked(l.cfg.Now())
		if len(l.sessions) >= l.cfg.MaxSessions && !l.evictOldestLocked(&ev) {
			l.mu.Unlock()
			l.notifyEvicted(ev)
			return nil, nil, &frameError{ReasonSessionLimit, bridgev1.ErrorCode_ERROR_CODE_REJECTED,
				fmt.Sprintf("%v: all %d have a live connection", ErrTooManySessions, l.cfg.MaxSessions), 0}
		}
		s = &session{id: id}
		l.sessions[id] = s
		l.m.Sessions.Set(float64(len(l.sessions)))
	}
	var old []*Conn
	for o := range l.conns {
		if o != c && o.sess != nil && (l.cfg.Exclusive || o.sess == s) {
			old = append(old, o)
		}
	}
	c.sess = s
	s.live++
	l.touchLocked(s)
	l.mu.Unlock()
	l.notifyEvicted(ev)
	return s, old, nil
}
