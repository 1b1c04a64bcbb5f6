package bridgelink

import (
	"crypto/hmac"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

// rawPeer is a peer that sends every Hello as given: no proof is added.
func rawPeer(t *testing.T, s *served) *peer {
	t.Helper()
	p := dial(t, s.Addr())
	p.key = nil
	return p
}

func TestHelloWithoutAValidKeyProofIsRefused(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		cases := []struct {
			name   string
			hello  func(t *testing.T, s *served, p *peer) *bridgev1.Frame
			reason string
		}{
			{"no proof", func(t *testing.T, _ *served, p *peer) *bridgev1.Frame {
				p.challenge(t)
				return cc.hello(5, 0)
			}, AuthMissingProof},
			{"another key", func(t *testing.T, _ *served, p *peer) *bridgev1.Frame {
				f := cc.hello(5, 0)
				if err := ProveHello([]byte("not-the-server-key-at-all"), p.challenge(t).ServerNonce, f.GetHello()); err != nil {
					t.Fatal(err)
				}
				return f
			}, AuthBadProof},
			{"a proof made for another connection's nonce", func(t *testing.T, s *served, p *peer) *bridgev1.Frame {
				// An eavesdropper replays a Hello it saw: the server's nonce differs per connection.
				other := rawPeer(t, s)
				f := cc.hello(5, 0)
				if err := ProveHello(testKey, other.challenge(t).ServerNonce, f.GetHello()); err != nil {
					t.Fatal(err)
				}
				p.challenge(t)
				return f
			}, AuthBadProof},
			{"a proof for another session id", func(t *testing.T, _ *served, p *peer) *bridgev1.Frame {
				f := cc.hello(5, 0)
				if err := ProveHello(testKey, p.challenge(t).ServerNonce, f.GetHello()); err != nil {
					t.Fatal(err)
				}
				f.GetHello().SessionId = 6
				return f
			}, AuthBadProof},
			{"a short proof", func(t *testing.T, _ *served, p *peer) *bridgev1.Frame {
				f := cc.hello(5, 0)
				if err := ProveHello(testKey, p.challenge(t).ServerNonce, f.GetHello()); err != nil {
					t.Fatal(err)
				}
				f.GetHello().AuthProof = f.GetHello().AuthProof[:16]
				return f
			}, AuthMalformedProof},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ch := &fakeChannel{}
				s := serve(t, cc.cfg, ch)
				p := rawPeer(t, s)
				p.send(t, tc.hello(t, s, p))
				p.waitClosed(t)
				if e := p.errorFrame(); e == nil || e.Code != bridgev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
					t.Fatalf("answer %v, want Error UNAUTHENTICATED", e)
				}
				for _, f := range p.received() {
					if f.GetWelcome() != nil {
						t.Fatal("an unauthenticated Hello was welcomed")
					}
				}
				if got := testutil.ToFloat64(s.m.AuthFailures.WithLabelValues(tc.reason)); got != 1 {
					t.Fatalf("auth failures %s = %v", tc.reason, got)
				}
				if got := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(ReasonUnauthenticated)); got != 1 {
					t.Fatalf("frame errors unauthenticated = %v", got)
				}
				if len(ch.log()) != 0 || len(s.Sessions()) != 0 {
					t.Fatalf("an unauthenticated Hello reached the channel (%v) or the session table (%v)", ch.log(), s.Sessions())
				}
			})
		}
	})
}

func TestAValidProofIsWelcomedAndTheServerProvesTheKeyBack(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		s := serve(t, cc.cfg, &fakeChannel{})
		p := rawPeer(t, s)
		c := p.challenge(t)
		if !c.AuthRequired || len(c.ServerNonce) != NonceBytes {
			t.Fatalf("challenge %v", c)
		}
		f := cc.hello(5, 0)
		h := f.GetHello()
		if err := ProveHello(testKey, c.ServerNonce, h); err != nil {
			t.Fatal(err)
		}
		p.send(t, f)
		w := p.welcome(t)
		want := Proof(testKey, true, c.ServerNonce, h.ClientNonce, 5, cc.cfg.Channel, APIVersion)
		if !hmac.Equal(w.ServerProof, want) {
			t.Fatal("Welcome.server_proof does not verify with the key")
		}
		if hmac.Equal(w.ServerProof, h.AuthProof) {
			t.Fatal("the server's proof equals the client's: a reflection would pass")
		}
		if n := testutil.ToFloat64(s.m.AuthFailures.WithLabelValues(AuthBadProof)) + testutil.ToFloat64(s.m.AuthFailures.WithLabelValues(AuthMissingProof)); n != 0 {
			t.Fatalf("auth failures %v", n)
		}
	})
}

func TestAnUnprovenHelloCannotReplaceALiveSession(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		ch := &fakeChannel{}
		s := serve(t, cc.cfg, ch)
		a := dial(t, s.Addr())
		a.keepAlive(50 * time.Millisecond)
		a.send(t, cc.hello(9, 0), cc.data(1))
		a.waitAck(t, 1)
		// A second Hello for the live session (a reconnect, or someone who knows the session id):
		// without the key it neither replaces the connection nor learns the resume point.
		b := rawPeer(t, s)
		b.challenge(t)
		b.send(t, cc.hello(9, 0))
		b.waitClosed(t)
		if e := b.errorFrame(); e.GetCode() != bridgev1.ErrorCode_ERROR_CODE_UNAUTHENTICATED {
			t.Fatalf("answer %v", e)
		}
		select {
		case <-a.closed:
			t.Fatal("an unproven Hello replaced the live connection")
		case <-time.After(50 * time.Millisecond):
		}
		if want := []string{"open 9"}; !slices.Equal(ch.log(), want) {
			t.Fatalf("channel saw %v", ch.log())
		}
		// With the key, the reconnect replaces it as before.
		c := dial(t, s.Addr())
		c.send(t, cc.hello(9, 0))
		if w := c.welcome(t); w.ResumeAfter != 1 {
			t.Fatalf("resume_after %d", w.ResumeAfter)
		}
		a.waitClosed(t)
	})
}

func TestListenNeedsAKeyUnlessInsecure(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want error
	}{
		{"no key", Config{Channel: bridgev1.Channel_CHANNEL_TRADING}, ErrNoKey},
		{"a short key", Config{Channel: bridgev1.Channel_CHANNEL_MARKET_DATA, Key: []byte("short")}, ErrWeakKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Addr = "127.0.0.1:0"
			if err := New(tc.cfg, &fakeChannel{}, nil, nil).Listen(); !errors.Is(err, tc.want) {
				t.Fatalf("Listen: %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("insecure", func(t *testing.T) {
		ch := &fakeChannel{}
		s := serve(t, Config{Channel: bridgev1.Channel_CHANNEL_MARKET_DATA, Insecure: true}, ch)
		p := rawPeer(t, s)
		if p.challenge(t).AuthRequired {
			t.Fatal("an insecure listener asks for a proof")
		}
		p.send(t, channelCases[0].hello(1, 0))
		if w := p.welcome(t); len(w.ServerProof) != 0 {
			t.Fatal("an insecure listener sent a server proof")
		}
	})
}

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bridge.key")
	if err := os.WriteFile(file, []byte("  0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := LoadKey(file, "ignored-when-a-file-is-set"); err != nil || string(k) != "0123456789abcdef0123" {
		t.Fatalf("LoadKey(file) = %q, %v", k, err)
	}
	if k, err := LoadKey("", "from-the-environment-0123"); err != nil || string(k) != "from-the-environment-0123" {
		t.Fatalf("LoadKey(env) = %q, %v", k, err)
	}
	if k, err := LoadKey("", ""); err != nil || k != nil {
		t.Fatalf("LoadKey() = %q, %v, want no key", k, err)
	}
	if _, err := LoadKey("", "short"); !errors.Is(err, ErrWeakKey) {
		t.Fatalf("a short key: %v", err)
	}
	if _, err := LoadKey(filepath.Join(dir, "missing"), ""); err == nil {
		t.Fatal("a missing key file is not an error")
	}
}

// fakeClock is a settable clock for session expiry.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type evictLog struct {
	mu  sync.Mutex
	ids []string
}

func (e *evictLog) add(id uint64, reason string) {
	e.mu.Lock()
	e.ids = append(e.ids, SessionKey(id)+" "+reason)
	e.mu.Unlock()
}

func (e *evictLog) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := append([]string(nil), e.ids...)
	sort.Strings(out)
	return out
}

func sessionIDs(l *Listener) []uint64 {
	var ids []uint64
	for id := range l.Sessions() {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func TestTheSessionTableIsBoundedAndIdleSessionsExpire(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
		ev := &evictLog{}
		cfg := cc.cfg
		cfg.MaxSessions, cfg.SessionTTL, cfg.Now, cfg.OnEvict = 3, time.Hour, clock.Now, ev.add
		s := serve(t, cfg, &fakeChannel{})

		// Restored from a state file: one already idle past the TTL is not restored at all.
		s.RestoreSeen(1, 10, clock.Now().Add(-2*time.Hour))
		s.RestoreSeen(2, 20, clock.Now().Add(-30*time.Minute))
		s.RestoreSeen(3, 30, clock.Now().Add(-20*time.Minute))
		s.RestoreSeen(4, 40, clock.Now().Add(-10*time.Minute))
		if got := sessionIDs(s.Listener); !slices.Equal(got, []uint64{2, 3, 4}) {
			t.Fatalf("sessions %v, want 2 3 4 (1 expired, then capped at 3)", got)
		}
		if want := []string{"bridge:1 ttl"}; !slices.Equal(ev.get(), want) {
			t.Fatalf("evicted %v, want %v", ev.get(), want)
		}

		// A new session on a full table evicts the least recently active idle one (2).
		p := dial(t, s.Addr())
		p.keepAlive(50 * time.Millisecond)
		p.send(t, cc.hello(5, 0))
		p.welcome(t)
		if got := sessionIDs(s.Listener); !slices.Equal(got, []uint64{3, 4, 5}) {
			t.Fatalf("sessions %v, want 3 4 5", got)
		}
		if got := testutil.ToFloat64(s.m.SessionsEvicted.WithLabelValues(EvictCapacity)); got != 1 {
			t.Fatalf("capacity evictions %v", got)
		}
		if got := testutil.ToFloat64(s.m.Sessions); got != 3 {
			t.Fatalf("sessions gauge %v", got)
		}

		// Time passes: the idle sessions expire, the connected one stays whatever its age.
		clock.advance(2 * time.Hour)
		if got := sessionIDs(s.Listener); !slices.Equal(got, []uint64{5}) {
			t.Fatalf("sessions after the TTL %v, want the connected one only", got)
		}
		if got := testutil.ToFloat64(s.m.SessionsEvicted.WithLabelValues(EvictTTL)); got != 3 {
			t.Fatalf("ttl evictions %v, want 3", got)
		}
		if want := []string{"bridge:1 ttl", "bridge:2 capacity", "bridge:3 ttl", "bridge:4 ttl"}; !slices.Equal(ev.get(), want) {
			t.Fatalf("evicted %v, want %v", ev.get(), want)
		}
	})
}

func TestANewSessionIsRefusedWhenEverySessionIsConnected(t *testing.T) {
	cc := channelCases[0] // market data: sessions do not replace each other
	cfg := cc.cfg
	cfg.MaxSessions = 1
	s := serve(t, cfg, &fakeChannel{})
	a := dial(t, s.Addr())
	a.keepAlive(50 * time.Millisecond)
	a.send(t, cc.hello(1, 0))
	a.welcome(t)
	b := dial(t, s.Addr())
	b.send(t, cc.hello(2, 0))
	b.waitClosed(t)
	if e := b.errorFrame(); e.GetCode() != bridgev1.ErrorCode_ERROR_CODE_REJECTED {
		t.Fatalf("answer %v, want REJECTED", e)
	}
	if got := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(ReasonSessionLimit)); got != 1 {
		t.Fatalf("session_limit errors %v", got)
	}
	if got := sessionIDs(s.Listener); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("sessions %v", got)
	}
}
