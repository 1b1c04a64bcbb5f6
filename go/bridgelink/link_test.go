package bridgelink

import (
	"context"
	"errors"
	"fmt"
	"github.com/kairos-mt5/kairos/go/testkit"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protowire"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

func TestHandshake(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		other := bridgev1.Channel_CHANNEL_TRADING
		if cc.cfg.Channel == other {
			other = bridgev1.Channel_CHANNEL_MARKET_DATA
		}
		cases := []struct {
			name   string
			first  *bridgev1.Frame
			code   bridgev1.ErrorCode // 0: Welcome expected
			reason string
		}{
			{"hello", cc.hello(1, 0), 0, ""},
			{"a data frame before hello", cc.data(1), bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, ReasonProtocol},
			{"a heartbeat before hello", &bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{}}},
				bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, ReasonProtocol},
			{"the other channel", &bridgev1.Frame{Body: &bridgev1.Frame_Hello{Hello: &bridgev1.Hello{ApiVersion: APIVersion, Channel: other}}},
				bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, ReasonProtocol},
			{"no channel", &bridgev1.Frame{Body: &bridgev1.Frame_Hello{Hello: &bridgev1.Hello{ApiVersion: APIVersion}}},
				bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, ReasonProtocol},
			{"a future api version", &bridgev1.Frame{Body: &bridgev1.Frame_Hello{Hello: &bridgev1.Hello{ApiVersion: 99, Channel: cc.cfg.Channel}}},
				bridgev1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION, ReasonUnsupportedVersion},
			{"the oldest api version still accepted", withVersion(cc.hello(1, 0), MinAPIVersion), 0, ""},
			{"an api version before it", withVersion(cc.hello(1, 0), MinAPIVersion-1), bridgev1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION, ReasonUnsupportedVersion},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ch := &fakeChannel{}
				s := serve(t, cc.cfg, ch)
				p := dial(t, s.Addr())
				p.send(t, tc.first)
				if tc.code == 0 {
					w := p.welcome(t)
					if w.ResumeAfter != 0 || w.HeartbeatIntervalMs != 200 || w.ServerVersion != cc.cfg.ServerVersion {
						t.Fatalf("welcome %v", w)
					}
					if got := p.received(); len(got) < 2 || got[0].GetChallenge() == nil || got[0].Sequence != 0 ||
						got[1].Sequence != 1 || got[1].GetWelcome() == nil {
						t.Fatalf("frames from the server %v, want Challenge (unnumbered), then Welcome numbered 1", got)
					}
					if h := ch.handler(t, 0); h.c.SessionID() != 1 || h.c.Key() != "bridge:1" || h.c.Hello().GetBridgeVersion() != "test" {
						t.Fatalf("opened with session %d key %q", h.c.SessionID(), h.c.Key())
					}
					testkit.WaitFor(t, "the connection to be counted", 5*time.Second, func() bool { return testutil.ToFloat64(s.m.Connections) == 1 })
					if got := testutil.ToFloat64(s.m.Frames.WithLabelValues("in", "hello")); got != 1 {
						t.Fatalf("hello frames %v", got)
					}
					return
				}
				p.waitClosed(t)
				if e := p.errorFrame(); e == nil || e.Code != tc.code {
					t.Fatalf("answer %v, want Error %v", e, tc.code)
				}
				if got := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(tc.reason)); got != 1 {
					t.Fatalf("frame errors %s = %v", tc.reason, got)
				}
				if len(ch.log()) != 0 || testutil.ToFloat64(s.m.Connections) != 0 {
					t.Fatalf("a refused Hello reached the channel (%v) or is counted", ch.log())
				}
			})
		}
	})
}

func TestBadFramesEndTheConnectionWithAReason(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		marshal := func(f *bridgev1.Frame) []byte {
			b, err := protodelimAppend(f)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		cases := []struct {
			name   string
			bytes  func() []byte
			code   bridgev1.ErrorCode // 0: the peer closed, nothing to answer
			reason string
		}{
			{"oversized", func() []byte { return protowire.AppendVarint(nil, 2<<20) }, bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, ReasonOversized},
			{"not a protobuf", func() []byte { return append(protowire.AppendVarint(nil, 5), 0xff, 0xff, 0xff, 0xff, 0xff) },
				bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, ReasonMalformed},
			{"an overlong length prefix", func() []byte { return []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01} },
				bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, ReasonMalformed},
			{"a frame without a body", func() []byte { return marshal(&bridgev1.Frame{Sequence: 1}) },
				bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, ReasonMalformed},
			{"a second hello", func() []byte { return marshal(cc.hello(3, 0)) }, bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, ReasonProtocol},
			{"a truncated frame", func() []byte { return append(protowire.AppendVarint(nil, 10), 1, 2, 3) }, 0, ReasonTruncated},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ch := &fakeChannel{}
				s := serve(t, cc.cfg, ch)
				p := dial(t, s.Addr())
				p.send(t, cc.hello(3, 0), cc.data(1))
				p.welcome(t)
				p.waitAck(t, 1)
				p.sendRaw(t, tc.bytes())
				if tc.code == 0 {
					if err := p.nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
						t.Fatal(err)
					}
				}
				p.waitClosed(t)
				if e := p.errorFrame(); tc.code != 0 && (e == nil || e.Code != tc.code) {
					t.Fatalf("want an Error %v frame before the close, got %v", tc.code, e)
				}
				testkit.WaitFor(t, tc.reason+" counted", 5*time.Second, func() bool { return testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(tc.reason)) == 1 })
				h := ch.handler(t, 0)
				<-h.closed
				if got := h.sequences(); !slices.Equal(got, []uint64{1}) {
					t.Fatalf("channel got %v, want the good frame only", got)
				}
				testkit.WaitFor(t, "the connection to be uncounted", 5*time.Second, func() bool { return testutil.ToFloat64(s.m.Connections) == 0 })
			})
		}
	})
}

func TestDuplicatesAreDroppedGapsCountedAndAReconnectResumes(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		ch := &fakeChannel{}
		s := serve(t, cc.cfg, ch)
		a := dial(t, s.Addr())
		a.send(t, cc.hello(7, 0))
		a.welcome(t)
		for seq := uint64(1); seq <= 5; seq++ {
			a.send(t, cc.data(seq))
		}
		a.waitAck(t, 5)
		a.close()
		<-ch.handler(t, 0).closed

		// The bridge saw only 3 acknowledged: it says Hello and resends 4 and 5, then goes on.
		b := dial(t, s.Addr())
		b.send(t, cc.hello(7, 0))
		if w := b.welcome(t); w.ResumeAfter != 5 {
			t.Fatalf("resume_after %d, want 5", w.ResumeAfter)
		}
		b.send(t, cc.data(4), cc.data(5), cc.data(6))
		b.waitAck(t, 6)
		if d := testutil.ToFloat64(s.m.Duplicates); d != 2 {
			t.Fatalf("duplicates %v, want 2", d)
		}
		// Frame 7 and 8 were lost on the way.
		b.send(t, cc.data(9))
		b.waitAck(t, 9)
		if g, n := testutil.ToFloat64(s.m.SequenceGaps), testutil.ToFloat64(s.m.GapFrames); g != 1 || n != 2 {
			t.Fatalf("gaps %v, gap frames %v; want 1 and 2", g, n)
		}
		got := append(ch.handler(t, 0).sequences(), ch.handler(t, 1).sequences()...)
		if !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 6, 9}) {
			t.Fatalf("the channel got %v: every new frame once, in order", got)
		}
		if ss := s.Sessions(); len(ss) != 1 || ss[7] != 9 {
			t.Fatalf("sessions %v", ss)
		}
	})
}

func TestHelloSequenceAndUnknownSessions(t *testing.T) {
	cases := []struct {
		name       string
		restore    uint64 // the session's processed sequence before the connection
		helloSeq   uint64
		frames     []uint64
		wantResume uint64
		wantAck    uint64
		wantGap    float64
	}{
		// The DLL sends Hello with 0 and numbers data from 1.
		{"the DLL's hello", 0, 0, []uint64{1, 2}, 0, 2, 0},
		// Older peers numbered Hello; the next number counts as processed.
		{"a numbered hello of a new session", 0, 1, []uint64{2, 3}, 0, 3, 0},
		// Hello 8 after 5 with 6 and 7 pending: its number is not a gap when they arrive.
		{"a numbered hello with frames pending", 5, 8, []uint64{6, 7, 9}, 5, 9, 0},
		// A service without state sees a session in the middle: what came before is unknown.
		{"a session the server has no history of", 0, 0, []uint64{50, 51, 53}, 0, 53, 1},
		{"a restored session", 40, 0, []uint64{39, 40, 41}, 40, 41, 0},
	}
	eachChannel(t, func(t *testing.T, cc channelCase) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ch := &fakeChannel{}
				s := serve(t, cc.cfg, ch)
				if tc.restore > 0 {
					s.Restore(11, tc.restore)
					s.Restore(11, tc.restore-1) // never lowers
				}
				p := dial(t, s.Addr())
				p.send(t, cc.hello(11, tc.helloSeq))
				if w := p.welcome(t); w.ResumeAfter != tc.wantResume {
					t.Fatalf("resume_after %d, want %d", w.ResumeAfter, tc.wantResume)
				}
				for _, seq := range tc.frames {
					p.send(t, cc.data(seq))
				}
				p.waitAck(t, tc.wantAck)
				if g := testutil.ToFloat64(s.m.GapFrames); g != tc.wantGap {
					t.Fatalf("gap frames %v, want %v", g, tc.wantGap)
				}
			})
		}
	})
}

func TestAReplacementWaitsForTheOldConnectionToFinish(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		hold := make(chan struct{})
		ch := &fakeChannel{hold: hold}
		s := serve(t, cc.cfg, ch)
		a := dial(t, s.Addr())
		a.send(t, cc.hello(9, 0), cc.data(1))
		a.welcome(t)
		old := ch.handler(t, 0)
		// Frame 1 is being handled (held) when the bridge reconnects: the new connection must not be
		// welcomed, let alone handed frames, while the old handler runs.
		b := dial(t, s.Addr())
		b.send(t, cc.hello(9, 0))
		time.Sleep(100 * time.Millisecond)                // a bound for something that must not happen
		if len(b.received()) != 1 || len(ch.log()) != 1 { // the Challenge only
			t.Fatalf("the new connection went ahead while the old one was handling a frame: %v, %v", b.received(), ch.log())
		}
		close(hold)
		if w := b.welcome(t); w.ResumeAfter != 1 {
			t.Fatalf("resume_after %d, want 1 (the old connection's frame)", w.ResumeAfter)
		}
		a.waitClosed(t)
		if want := []string{"open 9", "closed 9: " + ErrReplaced.Error(), "open 9"}; !slices.Equal(ch.log(), want) {
			t.Fatalf("channel saw %v, want %v", ch.log(), want)
		}
		if !errors.Is(old.cause, ErrReplaced) {
			t.Fatalf("old connection closed with %v", old.cause)
		}
		testkit.WaitFor(t, "one connection counted", 5*time.Second, func() bool { return testutil.ToFloat64(s.m.Connections) == 1 })

		// Another session: the trading channel drives one terminal, market data takes many.
		c := dial(t, s.Addr())
		c.send(t, cc.hello(10, 0))
		c.welcome(t)
		if cc.cfg.Exclusive {
			b.waitClosed(t)
			testkit.WaitFor(t, "the new session to open", 5*time.Second, func() bool { return len(ch.log()) == 5 })
			if want := []string{"open 9", "closed 9: " + ErrReplaced.Error(), "open 9", "closed 9: " + ErrReplaced.Error(), "open 10"}; !slices.Equal(ch.log(), want) {
				t.Fatalf("channel saw %v, want %v", ch.log(), want)
			}
		} else {
			testkit.WaitFor(t, "two connections counted", 5*time.Second, func() bool { return testutil.ToFloat64(s.m.Connections) == 2 })
			select {
			case <-b.closed:
				t.Fatal("a new session replaced another one on a non-exclusive channel")
			default:
			}
		}
	})
}

func TestTheChannelDecidesWhatIsAcknowledged(t *testing.T) {
	failure := errors.New("journal unavailable")
	cases := []struct {
		name      string
		processed int // of each batch
		wantAck   uint64
	}{
		{"nothing processed", 0, 1},
		{"a prefix processed", 1, 2},
	}
	eachChannel(t, func(t *testing.T, cc channelCase) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var fail atomic.Bool
				ch := &fakeChannel{frames: func(h *fakeHandler, in []Inbound) (int, error) {
					if !fail.Load() {
						return len(in), nil
					}
					return min(tc.processed, len(in)), failure
				}}
				s := serve(t, cc.cfg, ch)
				p := dial(t, s.Addr())
				p.send(t, cc.hello(5, 0), cc.data(1))
				p.welcome(t)
				p.waitAck(t, 1)
				fail.Store(true)
				p.send(t, cc.data(2))
				p.waitClosed(t)
				h := ch.handler(t, 0)
				<-h.closed
				if !errors.Is(h.cause, failure) {
					t.Fatalf("closed with %v, want the channel's error", h.cause)
				}
				if ss := s.Sessions(); ss[5] != tc.wantAck {
					t.Fatalf("resume point %d, want %d", ss[5], tc.wantAck)
				}
				q := dial(t, s.Addr())
				q.send(t, cc.hello(5, 0))
				if w := q.welcome(t); w.ResumeAfter != tc.wantAck {
					t.Fatalf("resume_after %d, want %d", w.ResumeAfter, tc.wantAck)
				}
			})
		}
	})
}

func TestAcksComeWithoutWaitingForAHeartbeat(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		cfg := cc.cfg
		cfg.HeartbeatInterval = time.Minute // no periodic heartbeat during the test
		s := serve(t, cfg, &fakeChannel{})
		p := dial(t, s.Addr())
		p.send(t, cc.hello(4, 0))
		p.welcome(t)
		start := time.Now()
		p.send(t, cc.data(1), cc.data(2), cc.data(3))
		p.waitAck(t, 3)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("ack took %v", d)
		}
		var hb *bridgev1.Frame
		for _, f := range p.received() {
			if f.GetHeartbeat() != nil {
				hb = f
			}
		}
		if hb == nil || hb.Sequence != 0 || hb.Ack != 3 {
			t.Fatalf("the ack should come on an unnumbered heartbeat, got %v", hb)
		}
	})
}

func TestHeartbeats(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		t.Run("both ways with round trip", func(t *testing.T) {
			cfg := cc.cfg
			// 200 ms: wide enough that a loaded CI machine (the race detector, 2 cores) does not
			// stall the peer's heartbeats past the three-interval deadline.
			cfg.HeartbeatInterval = 200 * time.Millisecond
			s := serve(t, cfg, &fakeChannel{})
			p := dial(t, s.Addr())
			p.send(t, cc.hello(2, 0))
			p.welcome(t)
			sent := time.Now().Add(-time.Millisecond).UnixMicro()
			p.send(t, &bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{TimeUs: 12345, EchoTimeUs: sent}}})
			testkit.WaitFor(t, "a server heartbeat echoing ours", 5*time.Second, func() bool {
				for _, f := range p.received() {
					if f.GetHeartbeat().GetEchoTimeUs() == 12345 {
						return true
					}
				}
				return false
			})
			if n := testutil.CollectAndCount(s.m.HeartbeatRTT); n != 1 {
				t.Fatalf("round trip series %d", n)
			}
			if !strings.Contains(gather(t, s), fmt.Sprintf(`kairos_bridge_heartbeat_rtt_seconds_count{channel=%q} 1`, cc.name)) {
				t.Fatal("round trip not observed")
			}
			// A live peer is kept: six intervals with heartbeats from the peer only.
			p.keepAlive(cfg.HeartbeatInterval / 2)
			time.Sleep(6 * cfg.HeartbeatInterval)
			select {
			case <-p.closed:
				t.Fatal("a peer sending heartbeats was dropped")
			default:
			}
			if got := testutil.ToFloat64(s.m.Frames.WithLabelValues("out", "heartbeat")); got < 3 {
				t.Fatalf("server heartbeats %v in six intervals", got)
			}
		})
		t.Run("a silent peer is dropped after three intervals", func(t *testing.T) {
			cfg := cc.cfg
			cfg.HeartbeatInterval = 50 * time.Millisecond
			ch := &fakeChannel{}
			s := serve(t, cfg, ch)
			p := dial(t, s.Addr())
			p.send(t, cc.hello(2, 0))
			p.welcome(t)
			p.waitClosed(t)
			if got := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(ReasonHeartbeatTimeout)); got != 1 {
				t.Fatalf("heartbeat timeouts %v", got)
			}
			h := ch.handler(t, 0)
			<-h.closed
			if !errors.Is(h.cause, os.ErrDeadlineExceeded) {
				t.Fatalf("closed with %v", h.cause)
			}
		})
		t.Run("no hello within three intervals", func(t *testing.T) {
			cfg := cc.cfg
			cfg.HeartbeatInterval = 50 * time.Millisecond
			s := serve(t, cfg, &fakeChannel{})
			p := dial(t, s.Addr())
			p.waitClosed(t)
			if got := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(ReasonHandshakeTimeout)); got != 1 {
				t.Fatalf("handshake timeouts %v", got)
			}
			if e := p.errorFrame(); e.GetCode() != bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION {
				t.Fatalf("error frame %v", e)
			}
		})
	})
}

func TestSendNumbersFramesAfterWelcome(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		var conn *Conn
		ch := &fakeChannel{onOpen: func(c *Conn) {
			conn = c
			for range 2 {
				if err := c.Send(&bridgev1.Frame{Sequence: 99, Body: &bridgev1.Frame_OrderCommand{OrderCommand: &bridgev1.OrderCommand{}}}); err != nil {
					t.Error(err)
				}
			}
			c.Reject(7, "no")
		}}
		s := serve(t, cc.cfg, ch)
		p := dial(t, s.Addr())
		p.send(t, cc.hello(3, 0))
		p.welcome(t)
		numbered := func() []*bridgev1.Frame {
			var out []*bridgev1.Frame
			for _, f := range p.received() {
				if f.GetHeartbeat() == nil && f.GetChallenge() == nil {
					out = append(out, f)
				}
			}
			return out
		}
		testkit.WaitFor(t, "the channel's frames", 5*time.Second, func() bool { return len(numbered()) >= 4 })
		got := numbered()
		var seqs []uint64
		for _, f := range got {
			seqs = append(seqs, f.Sequence)
		}
		if !slices.Equal(seqs, []uint64{1, 2, 3, 4}) || got[0].GetWelcome() == nil || got[1].GetOrderCommand() == nil ||
			got[3].GetError().GetCode() != bridgev1.ErrorCode_ERROR_CODE_REJECTED || got[3].GetError().GetFrameSequence() != 7 {
			t.Fatalf("server frames %v", got)
		}
		s.close(t)
		if err := conn.Send(&bridgev1.Frame{}); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("Send after close: %v", err)
		}
	})
}

func TestSendNeverBlocks(t *testing.T) {
	l := New(Config{Channel: bridgev1.Channel_CHANNEL_TRADING, SendQueue: 1}, &fakeChannel{}, nil, nil)
	a, b := netPipe()
	defer a.Close()
	defer b.Close()
	c := l.newConn(a)
	if err := c.Send(&bridgev1.Frame{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(&bridgev1.Frame{}); !errors.Is(err, ErrSendQueueFull) {
		t.Fatalf("a full queue: %v", err)
	}
}

func TestBatchesStayWithinMaxBatch(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		ch := &fakeChannel{}
		s := serve(t, cc.cfg, ch)
		p := dial(t, s.Addr())
		frames := []*bridgev1.Frame{cc.hello(8, 0)}
		for seq := uint64(1); seq <= 300; seq++ {
			frames = append(frames, cc.data(seq))
		}
		p.send(t, frames...) // one write: most frames are buffered together
		p.waitAck(t, 300)
		h := ch.handler(t, 0)
		h.mu.Lock()
		defer h.mu.Unlock()
		limit := max(cc.cfg.MaxBatch, 1)
		total := 0
		for _, n := range h.batches {
			if n > limit {
				t.Fatalf("a batch of %d frames, limit %d", n, limit)
			}
			total += n
		}
		if total != 300 || len(h.got) != 300 {
			t.Fatalf("%d frames in batches, %d handled", total, len(h.got))
		}
	})
}

func TestShutdownTellsEveryPeerAndAwaitsEveryGoroutine(t *testing.T) {
	eachChannel(t, func(t *testing.T, cc channelCase) {
		base := settledGoroutines()
		ch := &fakeChannel{}
		s := serve(t, cc.cfg, ch)
		ready := dial(t, s.Addr())
		ready.send(t, cc.hello(1, 0), cc.data(1))
		ready.welcome(t)
		ready.waitAck(t, 1)
		silent := dial(t, s.Addr()) // connected, no Hello yet
		testkit.WaitFor(t, "both connections accepted", 5*time.Second, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.conns) == 2
		})
		s.close(t)
		ready.waitClosed(t)
		silent.waitClosed(t)
		if e := ready.errorFrame(); e == nil || e.Code != bridgev1.ErrorCode_ERROR_CODE_SHUTTING_DOWN {
			t.Fatalf("the connected peer was not told SHUTTING_DOWN: %v", e)
		}
		if e := silent.errorFrame(); e == nil || e.Code != bridgev1.ErrorCode_ERROR_CODE_SHUTTING_DOWN {
			t.Fatalf("the peer in its handshake was not told SHUTTING_DOWN: %v", e)
		}
		h := ch.handler(t, 0)
		<-h.closed
		if !errors.Is(h.cause, ErrShuttingDown) {
			t.Fatalf("closed with %v", h.cause)
		}
		for _, r := range reasons {
			if got := testutil.ToFloat64(s.m.FrameErrors.WithLabelValues(r)); got != 0 {
				t.Fatalf("shutdown counted as %s", r)
			}
		}
		ready.close()
		silent.close()
		testkit.WaitFor(t, "every goroutine to end", 5*time.Second, func() bool { return settledGoroutines() <= base })
	})
}

func TestCloseBeforeListenAndServeBeforeListen(t *testing.T) {
	l := New(Config{Channel: bridgev1.Channel_CHANNEL_MARKET_DATA}, &fakeChannel{}, nil, nil)
	if l.Addr() != nil {
		t.Fatal("an address before Listen")
	}
	if err := l.Serve(); err == nil {
		t.Fatal("Serve before Listen")
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func settledGoroutines() int {
	time.Sleep(20 * time.Millisecond)
	return runtime.NumGoroutine()
}

func gather(t *testing.T, s *served) string {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			if h := m.GetHistogram(); h != nil {
				fmt.Fprintf(&b, "%s_count{%s} %d\n", mf.GetName(), strings.Join(labels, ","), h.GetSampleCount())
			}
		}
	}
	return b.String()
}
