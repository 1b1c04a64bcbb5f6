package bridgelink

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

// What an unauthenticated peer may cost a listener, before it has proven the bridge key
// (docs/security.md, "Bridge listeners under attack"): connections at once, handshakes in progress,
// the time and the bytes a handshake may take, and failed handshakes per remote address.
//
// A slowloris (many connections that dribble bytes or never say Hello) holds at most
// MaxHandshakes slots for at most HandshakeTimeout each; a length prefix that claims more than
// MaxHandshakeBytes before the key is proven ends the connection at once without allocating it;
// after the handshake a frame is bounded by MaxFrameBytes and its buffer grows with the bytes that
// actually arrive. Connections already authenticated are never refused or slowed by any of this.

// Guard bounds what a peer may cost before it has proven the key. Zero takes the default, a
// negative value turns the bound off. The services set it from their --bridge-* flags.
type Guard struct {
	// MaxConnections bounds the connections open at once (handshaking or not); one more is
	// refused at accept. Default DefaultMaxConnections.
	MaxConnections int
	// MaxHandshakes bounds the connections that have not finished their handshake. Default
	// DefaultMaxHandshakes.
	MaxHandshakes int
	// MaxHandshakesPerAddress bounds them per remote address, so one attacker cannot take every
	// handshake slot from a terminal elsewhere. Default DefaultMaxHandshakesPerAddress.
	MaxHandshakesPerAddress int
	// HandshakeTimeout is how long a connection may take from accept to a proven Hello, however
	// its bytes arrive. Default three heartbeat intervals.
	HandshakeTimeout time.Duration
	// MaxHandshakeBytes bounds the Hello frame: a larger length prefix before the key is proven
	// ends the connection without reading it. Default DefaultMaxHandshakeBytes.
	MaxHandshakeBytes int
	// AuthFailureBurst is how many handshakes a remote address may fail (no proof, a wrong one, a
	// timeout, a bad frame) before its connections are refused at accept; one more is allowed
	// every AuthFailureRefill. The addresses are kept in a map of at most MaxTrackedPeers.
	// Defaults DefaultAuthFailureBurst, DefaultAuthFailureRefill, DefaultMaxTrackedPeers.
	AuthFailureBurst  int
	AuthFailureRefill time.Duration
	MaxTrackedPeers   int
}

// DefaultGuard is the guard with every default spelled out (the services' flag defaults).
func DefaultGuard() Guard {
	return Guard{MaxConnections: DefaultMaxConnections, MaxHandshakes: DefaultMaxHandshakes,
		MaxHandshakesPerAddress: DefaultMaxHandshakesPerAddress,
		HandshakeTimeout:        DefaultHandshakeTimeout, MaxHandshakeBytes: DefaultMaxHandshakeBytes,
		AuthFailureBurst: DefaultAuthFailureBurst, AuthFailureRefill: DefaultAuthFailureRefill,
		MaxTrackedPeers: DefaultMaxTrackedPeers}
}

// Guard defaults.
const (
	DefaultMaxConnections = 64
	DefaultMaxHandshakes  = 16
	// DefaultMaxHandshakesPerAddress: a terminal opens one connection per channel at a time.
	DefaultMaxHandshakesPerAddress = 4
	DefaultMaxHandshakeBytes       = 4 << 10 // a Hello is under 500 bytes (nanopb bounds every field)
	// A remote address may fail DefaultAuthFailureBurst handshakes in a row; then one more every
	// DefaultAuthFailureRefill, and its connections are refused at accept in between.
	DefaultAuthFailureBurst  = 10
	DefaultAuthFailureRefill = 6 * time.Second
	DefaultMaxTrackedPeers   = 4096
	// DefaultHandshakeTimeout is the services' default: the DLL answers a Challenge in
	// milliseconds, a slowloris holds a slot this long at most.
	DefaultHandshakeTimeout = 3 * time.Second
)

// Refusal reasons at accept (kairos_bridge_connections_refused_total{reason}).
const (
	RefuseConnectionLimit = "connection_limit" // MaxConnections connections are open
	RefuseHandshakeLimit  = "handshake_limit"  // MaxHandshakes handshakes are in progress
	RefuseAddressLimit    = "address_limit"    // MaxHandshakesPerAddress handshakes from this address
	RefuseRateLimited     = "rate_limited"     // the remote address failed too many handshakes
)

var refuseReasons = []string{RefuseConnectionLimit, RefuseHandshakeLimit, RefuseAddressLimit, RefuseRateLimited}

// remoteIP is the address a connection's failures are counted against (the port is not).
func remoteIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// failGate is a token bucket of failed handshakes per remote address, in a bounded map. A failure
// takes a token; an address without one is refused at accept until a token is back. An address at
// full burst is the same as an absent one, so those are dropped first when the map is full; past
// that the address whose last failure is oldest goes (it has the most tokens back).
type failGate struct {
	burst  float64
	refill time.Duration // one token back per refill
	max    int
	now    func() time.Time

	mu    sync.Mutex
	peers map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newFailGate(burst int, refill time.Duration, max int, now func() time.Time) *failGate {
	if burst <= 0 {
		return nil
	}
	return &failGate{burst: float64(burst), refill: refill, max: max, now: now, peers: map[netip.Addr]*bucket{}}
}

// tokensLocked refills b up to now.
func (g *failGate) tokensLocked(b *bucket, now time.Time) float64 {
	if g.refill > 0 && now.After(b.at) {
		b.tokens = min(g.burst, b.tokens+float64(now.Sub(b.at))/float64(g.refill))
	}
	b.at = now
	return b.tokens
}

// allow reports whether ip may start a handshake, and if not, how long until it may.
func (g *failGate) allow(ip netip.Addr) (bool, time.Duration) {
	if g == nil {
		return true, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.peers[ip]
	if b == nil {
		return true, 0
	}
	t := g.tokensLocked(b, g.now())
	if t >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - t) * float64(g.refill))
}

// fail takes a token from ip; it returns the addresses now tracked and how many were evicted.
func (g *failGate) fail(ip netip.Addr) (tracked, evicted int) {
	if g == nil {
		return 0, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	b := g.peers[ip]
	if b == nil {
		if len(g.peers) >= g.max {
			evicted = g.evictLocked(now)
		}
		b = &bucket{tokens: g.burst, at: now}
		g.peers[ip] = b
	}
	g.tokensLocked(b, now)
	b.tokens = max(0, b.tokens-1)
	return len(g.peers), evicted
}

// evictLocked makes room for one address: every address back at full burst goes, else the one
// whose last failure is the oldest.
func (g *failGate) evictLocked(now time.Time) int {
	n := 0
	var oldest netip.Addr
	var oldestAt time.Time
	for ip, b := range g.peers {
		if g.tokensLockedAt(b, now) >= g.burst {
			delete(g.peers, ip)
			n++
			continue
		}
		if oldestAt.IsZero() || b.at.Before(oldestAt) {
			oldest, oldestAt = ip, b.at
		}
	}
	if n == 0 && oldest.IsValid() {
		delete(g.peers, oldest)
		n = 1
	}
	return n
}

// tokensLockedAt is what b would hold at now, without touching it.
func (g *failGate) tokensLockedAt(b *bucket, now time.Time) float64 {
	if g.refill <= 0 || !now.After(b.at) {
		return b.tokens
	}
	return min(g.burst, b.tokens+float64(now.Sub(b.at))/float64(g.refill))
}

// size is how many addresses are tracked.
func (g *failGate) size() int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.peers)
}

// admitLocked decides at accept whether c may start a handshake: "" if so, else the refusal
// reason and the message the peer gets.
func (l *Listener) admitLocked(c *Conn) (reason, msg string) {
	switch {
	case l.cfg.MaxConnections > 0 && len(l.conns) >= l.cfg.MaxConnections:
		return RefuseConnectionLimit, fmt.Sprintf("the %s listener has %d connections open, its limit: try again later", l.m.Channel, l.cfg.MaxConnections)
	case l.cfg.MaxHandshakes > 0 && l.shaking >= l.cfg.MaxHandshakes:
		return RefuseHandshakeLimit, fmt.Sprintf("the %s listener has %d handshakes in progress, its limit: try again later", l.m.Channel, l.cfg.MaxHandshakes)
	case l.cfg.MaxHandshakesPerAddress > 0 && l.shakingBy[c.ip] >= l.cfg.MaxHandshakesPerAddress:
		return RefuseAddressLimit, fmt.Sprintf("%s has %d handshakes in progress on the %s listener, the limit per address: try again later",
			c.ip, l.cfg.MaxHandshakesPerAddress, l.m.Channel)
	}
	if ok, wait := l.gate.allow(c.ip); !ok {
		return RefuseRateLimited, fmt.Sprintf("too many failed bridge handshakes from %s: refused for %s (check the EA's BridgeKey input)",
			c.ip, wait.Round(100*time.Millisecond))
	}
	return "", ""
}

// refuse counts a connection refused at accept, tells the peer why in one Error frame (the DLL
// logs "server refused the connection") and closes it, without a goroutine and without waiting
// on the peer. The log says so at most once a second per reason, so a flood cannot flood the log.
func (l *Listener) refuse(c *Conn, reason, msg string) {
	l.m.ConnectionsRefused.WithLabelValues(reason).Inc()
	now := time.Now()
	l.mu.Lock()
	logIt := now.Sub(l.refusedLog[reason]) >= time.Second
	if logIt {
		l.refusedLog[reason] = now
	}
	l.mu.Unlock()
	if logIt {
		c.log.Warn("bridge connection refused", "reason", reason, "detail", msg)
	}
	code := bridgev1.ErrorCode_ERROR_CODE_REJECTED
	if reason == RefuseRateLimited {
		code = bridgev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED
	}
	_ = c.nc.SetWriteDeadline(now.Add(50 * time.Millisecond))
	if _, err := protodelim.MarshalTo(c.nc, errorFrame(code, msg, 0)); err == nil {
		l.m.Frames.WithLabelValues("out", "error").Inc()
	}
	_ = c.nc.Close()
}

// handshakeDone releases c's handshake slot; a handshake that failed before the key was proven
// (and not because the listener is closing) costs the remote address a token.
func (l *Listener) handshakeDone(c *Conn, err error) {
	l.mu.Lock()
	l.shaking--
	if l.shakingBy[c.ip]--; l.shakingBy[c.ip] <= 0 {
		delete(l.shakingBy, c.ip)
	}
	l.m.Handshakes.Set(float64(l.shaking))
	l.mu.Unlock()
	if err == nil || c.authed || errors.Is(err, ErrShuttingDown) || !c.ip.IsValid() {
		return
	}
	tracked, evicted := l.gate.fail(c.ip)
	l.m.AuthTrackedPeers.Set(float64(tracked))
	if evicted > 0 {
		l.m.AuthPeersEvicted.Add(float64(evicted))
	}
}
