package bridgelink

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protodelim"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// honest is an authenticated peer that keeps streaming numbered data frames while an attack runs;
// check fails the test unless every frame it sent was acknowledged.
type honest struct {
	p    *peer
	cc   channelCase
	sent atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func startHonest(t *testing.T, s *served, cc channelCase, session uint64) *honest {
	t.Helper()
	p := dial(t, s.Addr())
	p.send(t, cc.hello(session, 0))
	p.welcome(t)
	h := &honest{p: p, cc: cc, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tk.C:
				seq := h.sent.Load() + 1
				p.wmu.Lock()
				_, err := protodelim.MarshalTo(p.nc, cc.data(seq))
				p.wmu.Unlock()
				if err != nil {
					return
				}
				h.sent.Store(seq)
			}
		}
	}()
	return h
}

// check stops the stream and waits for the last frame's ack: the honest peer was served throughout.
func (h *honest) check(t *testing.T) {
	t.Helper()
	testkit.WaitFor(t, "the honest peer streaming", 5*time.Second, func() bool { return h.sent.Load() >= 5 })
	close(h.stop)
	<-h.done
	n := h.sent.Load()
	select {
	case <-h.p.closed:
		t.Fatalf("the honest peer's connection ended during the attack (error %v)", h.p.errorFrame())
	default:
	}
	h.p.waitAck(t, n)
	h.p.close()
}

// attackers opens n raw connections from the loopback address; each runs f until the server
// closes it (or the test's bound), and records whether the server closed it.
func attackers(t *testing.T, addr net.Addr, n int, f func(nc net.Conn)) (closedByServer func() int) {
	t.Helper()
	return attackersFrom(t, "127.0.0.1", addr, n, f)
}

// attackersFrom is attackers connecting from the loopback address source.
func attackersFrom(t *testing.T, source string, addr net.Addr, n int, f func(nc net.Conn)) (closedByServer func() int) {
	t.Helper()
	var closed atomic.Int64
	var wg sync.WaitGroup
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(source)}}
	for range n {
		nc, err := d.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		wg.Add(2)
		go func() { defer wg.Done(); f(nc) }()
		go func() {
			defer wg.Done()
			// The server closing the connection shows as EOF or a reset on read.
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, nc)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				closed.Add(1)
			}
		}()
	}
	t.Cleanup(wg.Wait)
	return func() int { return int(closed.Load()) }
}

// dribble writes a Hello's bytes one at a time, 20 ms apart, never faster: a slowloris.
func dribble(cc channelCase) func(nc net.Conn) {
	return func(nc net.Conn) {
		raw := binary.AppendUvarint(nil, 200) // a Hello of 200 bytes, never complete
		raw = append(raw, make([]byte, 40)...)
		for _, x := range raw {
			if _, err := nc.Write([]byte{x}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestSlowlorisHoldsAtMostMaxHandshakesForTheTimeoutAndAnHonestPeerIsServed(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		cfg := cc.cfg
		cfg.MaxHandshakes = 4
		cfg.MaxConnections = 16
		cfg.HandshakeTimeout = 300 * time.Millisecond
		cfg.AuthFailureBurst = -1 // this test is about the slots; the per-address gate has its own
		s := serve(t, cfg, &fakeChannel{})
		h := startHonest(t, s, cc, 1)

		var peak atomic.Int64
		stopWatch := make(chan struct{})
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			for {
				peak.Store(max(peak.Load(), int64(testutil.ToFloat64(s.m.Handshakes))))
				select {
				case <-stopWatch:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
		const n = 24
		closed := attackers(t, s.Addr(), n, dribble(cc))
		testkit.WaitFor(t, "every slowloris connection closed by the server", 10*time.Second, func() bool { return closed() == n })
		close(stopWatch)
		<-watched

		timeouts := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(ReasonHandshakeTimeout))
		refused := testutil.ToFloat64(s.m.ConnectionsRefused.WithLabelValues(RefuseHandshakeLimit))
		if timeouts < 1 || refused < 1 || int(timeouts+refused) != n {
			t.Fatalf("handshake timeouts %v + refused at the handshake limit %v, want %d in all, some of each", timeouts, refused, n)
		}
		if p := peak.Load(); p > int64(cfg.MaxHandshakes) {
			t.Fatalf("%d handshakes at once, limit %d", p, cfg.MaxHandshakes)
		}
		testkit.WaitFor(t, "no handshake in progress", 5*time.Second, func() bool { return testutil.ToFloat64(s.m.Handshakes) == 0 })
		h.check(t)
		// After the attack a new connection is welcomed at once.
		p := dial(t, s.Addr())
		p.send(t, cc.hello(2, 0))
		p.welcome(t)
	})
}

func TestALengthPrefixFloodIsRefusedBeforeAnythingIsAllocated(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		cfg := cc.cfg
		cfg.AuthFailureBurst = -1
		s := serve(t, cfg, &fakeChannel{})
		h := startHonest(t, s, cc, 1)
		prefix := binary.AppendUvarint(nil, DefaultMaxFrameBytes) // a frame header claiming 1 MiB

		for _, tc := range []struct {
			name string
			then func(nc net.Conn)
		}{
			{"then stalls", func(net.Conn) {}},
			{"then floods", func(nc net.Conn) {
				junk := make([]byte, 64<<10)
				for range 16 { // 1 MiB
					if _, err := nc.Write(junk); err != nil {
						return
					}
				}
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(ReasonOversized))
				nc, err := net.DialTimeout("tcp", s.Addr().String(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				br := bufio.NewReader(nc)
				ch := &bridgev1.Frame{}
				if err := protodelim.UnmarshalFrom(br, ch); err != nil || ch.GetChallenge() == nil {
					t.Fatalf("first frame %v, %v", ch, err)
				}
				if _, err := nc.Write(prefix); err != nil {
					t.Fatal(err)
				}
				go tc.then(nc)
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				ef := &bridgev1.Frame{}
				if err := protodelim.UnmarshalFrom(br, ef); err != nil {
					t.Fatalf("no Error frame: %v", err)
				}
				e := ef.GetError()
				if e.GetCode() != bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME ||
					!strings.Contains(e.GetMessage(), fmt.Sprintf("exceeds the %d-byte limit", DefaultMaxHandshakeBytes)) {
					t.Fatalf("error %v", e)
				}
				testkit.WaitFor(t, "oversized counted", 5*time.Second, func() bool {
					return testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(ReasonOversized)) == before+1
				})
			})
		}
		// Checked here: on the trading channel (Exclusive) the authenticated peers below replace it.
		h.check(t)
		t.Run("authenticated, over the frame limit", func(t *testing.T) {
			p := dial(t, s.Addr())
			p.send(t, cc.hello(7, 0))
			p.welcome(t)
			p.sendRaw(t, binary.AppendUvarint(nil, DefaultMaxFrameBytes+1))
			p.waitClosed(t)
			if e := p.errorFrame(); !strings.Contains(e.GetMessage(), fmt.Sprintf("exceeds the %d-byte limit", DefaultMaxFrameBytes)) {
				t.Fatalf("error %v", e)
			}
		})
		t.Run("authenticated, 1 MiB claimed then a stall", func(t *testing.T) {
			before := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(ReasonHeartbeatTimeout))
			p := dial(t, s.Addr())
			p.send(t, cc.hello(8, 0))
			p.welcome(t)
			p.sendRaw(t, append(binary.AppendUvarint(nil, DefaultMaxFrameBytes), make([]byte, 100)...))
			p.waitClosed(t) // three heartbeat intervals for the whole frame
			if got := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(ReasonHeartbeatTimeout)); got != before+1 {
				t.Fatalf("heartbeat timeouts %v, want %v", got, before+1)
			}
		})
	})
}

func TestFailedHandshakesAreRateLimitedPerRemoteAddress(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		var mu sync.Mutex
		now := time.Unix(1_700_000_000, 0)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		cfg := cc.cfg
		cfg.AuthFailureBurst = 3
		cfg.AuthFailureRefill = time.Minute
		cfg.Now = clock
		s := serve(t, cfg, &fakeChannel{})
		h := startHonest(t, s, cc, 1)

		for i := range 3 {
			p := dial(t, s.Addr())
			p.key = []byte("not-the-key-not-the-key")
			p.send(t, cc.hello(uint64(100+i), 0))
			p.waitClosed(t)
			if e := p.errorFrame(); e.GetCode() != bridgev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
				t.Fatalf("attempt %d: %v", i, e)
			}
		}
		// The address has used its burst: the next connection is refused at accept, no Challenge.
		for _, key := range [][]byte{[]byte("not-the-key-not-the-key"), testKey} {
			p := dial(t, s.Addr())
			p.waitClosed(t)
			fs := p.received()
			if len(fs) != 1 || fs[0].GetError().GetCode() != bridgev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED ||
				!strings.Contains(fs[0].GetError().GetMessage(), "too many failed bridge handshakes from 127.0.0.1") {
				t.Fatalf("with key %q: got %v", key, fs)
			}
		}
		if got := testutil.ToFloat64(s.m.ConnectionsRefused.WithLabelValues(RefuseRateLimited)); got != 2 {
			t.Fatalf("rate_limited %v", got)
		}
		if got := testutil.ToFloat64(s.m.AuthTrackedPeers); got != 1 {
			t.Fatalf("tracked peers %v", got)
		}
		h.check(t) // the connection already authenticated is not touched

		// One refill later the address may try again, and the right key is welcomed.
		mu.Lock()
		now = now.Add(time.Minute)
		mu.Unlock()
		p := dial(t, s.Addr())
		p.send(t, cc.hello(200, 0))
		p.welcome(t)
	})
}

func TestTheConnectionLimitRefusesAtAccept(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		cfg := cc.cfg
		cfg.MaxConnections = 3
		cfg.AuthFailureBurst = -1
		s := serve(t, cfg, &fakeChannel{})
		h := startHonest(t, s, cc, 1)
		for range 2 { // silent connections take the other two slots
			p := dial(t, s.Addr())
			p.challenge(t)
		}
		p := dial(t, s.Addr())
		p.waitClosed(t)
		if e := p.errorFrame(); e.GetCode() != bridgev1.ErrorCode_ERROR_CODE_REJECTED || !strings.Contains(e.GetMessage(), "3 connections open") {
			t.Fatalf("error %v", e)
		}
		if got := testutil.ToFloat64(s.m.ConnectionsRefused.WithLabelValues(RefuseConnectionLimit)); got != 1 {
			t.Fatalf("connection_limit %v", got)
		}
		h.check(t)
	})
}

func TestTheFailureMapIsBounded(t *testing.T) {
	now := time.Unix(0, 0)
	g := newFailGate(2, time.Minute, 3, func() time.Time { return now })
	for i := range 10 {
		ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
		for range 2 {
			now = now.Add(time.Second)
			g.fail(ip)
		}
		if ok, wait := g.allow(ip); ok || wait <= 0 {
			t.Fatalf("%v allowed after its burst (wait %v)", ip, wait)
		}
		if g.size() > 3 {
			t.Fatalf("%d addresses tracked, bound 3", g.size())
		}
	}
	// The oldest went first: the latest three are still refused.
	for i := 7; i < 10; i++ {
		if ok, _ := g.allow(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})); ok {
			t.Fatalf("10.0.0.%d allowed", i)
		}
	}
	now = now.Add(2 * time.Minute)
	if ok, _ := g.allow(netip.AddrFrom4([4]byte{10, 0, 0, 9})); !ok {
		t.Fatal("not allowed after the refill")
	}
}

func TestOneAddressCannotTakeEveryHandshakeSlot(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		cfg := cc.cfg
		cfg.HandshakeTimeout = 2 * time.Second
		cfg.AuthFailureBurst = -1
		s := serve(t, cfg, &fakeChannel{})
		const n = 10
		closed := attackersFrom(t, "127.0.0.2", s.Addr(), n, dribble(cc))
		testkit.WaitFor(t, "the attacker's handshakes held", 5*time.Second, func() bool {
			return testutil.ToFloat64(s.m.ConnectionsRefused.WithLabelValues(RefuseAddressLimit)) == n-DefaultMaxHandshakesPerAddress
		})
		if got := testutil.ToFloat64(s.m.Handshakes); got != DefaultMaxHandshakesPerAddress {
			t.Fatalf("%v handshakes in progress, want the per-address limit %d", got, DefaultMaxHandshakesPerAddress)
		}
		// A terminal elsewhere connects and is welcomed while the attacker holds its slots.
		p := dial(t, s.Addr())
		p.send(t, cc.hello(1, 0))
		p.welcome(t)
		testkit.WaitFor(t, "every attacker connection closed by the server", 10*time.Second, func() bool { return closed() == n })
	})
}
