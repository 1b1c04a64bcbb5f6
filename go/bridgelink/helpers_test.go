package bridgelink

import (
	"bufio"
	"context"
	"fmt"
	"github.com/kairos-mt5/kairos/go/testkit"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// testKey is the bridge key of the test listeners; dial's peer proves it in every Hello it sends.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// channelCase is one channel as a service configures it; the protocol tests run against both.
type channelCase struct {
	name string
	cfg  Config
	// data is a numbered frame the channel carries from the bridge.
	data func(seq uint64) *bridgev1.Frame
}

var channelCases = []channelCase{
	{"market_data", Config{Channel: bridgev1.Channel_CHANNEL_MARKET_DATA, AckInterval: 20 * time.Millisecond, ServerVersion: "test-collector", Key: testKey},
		func(seq uint64) *bridgev1.Frame {
			return &bridgev1.Frame{Sequence: seq, Body: &bridgev1.Frame_Ticks{Ticks: &mdv1.TickBatch{Symbol: "EURUSD",
				TimeMsc: []int64{1577836800000 + int64(seq)}, Bid: []float64{1.12}, Ask: []float64{1.1201}, Sequence: []uint64{seq}}}}
		}},
	{"trading", Config{Channel: bridgev1.Channel_CHANNEL_TRADING, MaxBatch: 256, Exclusive: true, ServerVersion: "test-execution", Key: testKey},
		func(seq uint64) *bridgev1.Frame {
			return &bridgev1.Frame{Sequence: seq, Body: &bridgev1.Frame_OrderResult{OrderResult: &bridgev1.OrderResult{CommandId: seq,
				Status: bridgev1.BridgeStatus_BRIDGE_STATUS_SENT, Retcode: 10009}}}
		}},
}

func (cc channelCase) hello(session, seq uint64) *bridgev1.Frame {
	return &bridgev1.Frame{Sequence: seq, Body: &bridgev1.Frame_Hello{Hello: &bridgev1.Hello{ApiVersion: APIVersion,
		BridgeVersion: "test", Channel: cc.cfg.Channel, SessionId: session}}}
}

// withVersion sets a Hello frame's api_version.
func withVersion(f *bridgev1.Frame, v uint32) *bridgev1.Frame {
	f.GetHello().ApiVersion = v
	return f
}

// eachChannel runs f once per channel configuration.
func eachChannel(t *testing.T, f func(t *testing.T, cc channelCase)) {
	for _, cc := range channelCases {
		t.Run(cc.name, func(t *testing.T) { f(t, cc) })
	}
}

// fakeChannel records what the link tells a channel; Frames may be held or made to fail.
type fakeChannel struct {
	mu       sync.Mutex
	events   []string // "open <session>", "closed <session>: <cause>", in order
	handlers []*fakeHandler
	// onOpen, if set, runs inside Open (e.g. to Send).
	onOpen func(c *Conn)
	// frames, if set, decides what Frames returns; hold, if set, is waited for first.
	frames func(h *fakeHandler, in []Inbound) (int, error)
	hold   chan struct{}
}

type fakeHandler struct {
	ch      *fakeChannel
	c       *Conn
	mu      sync.Mutex
	got     []*bridgev1.Frame
	batches []int
	cause   error
	closed  chan struct{}
}

func (f *fakeChannel) Open(c *Conn) Handler {
	h := &fakeHandler{ch: f, c: c, closed: make(chan struct{})}
	f.mu.Lock()
	f.events = append(f.events, fmt.Sprintf("open %d", c.SessionID()))
	f.handlers = append(f.handlers, h)
	f.mu.Unlock()
	if f.onOpen != nil {
		f.onOpen(c)
	}
	return h
}

func (h *fakeHandler) Frames(in []Inbound) (int, error) {
	if h.ch.hold != nil {
		<-h.ch.hold
	}
	n, err := len(in), error(nil)
	if h.ch.frames != nil {
		n, err = h.ch.frames(h, in)
	}
	h.mu.Lock()
	for _, x := range in[:n] {
		h.got = append(h.got, x.Frame)
	}
	h.batches = append(h.batches, len(in))
	h.mu.Unlock()
	return n, err
}

func (h *fakeHandler) Closed(err error) {
	h.mu.Lock()
	h.cause = err
	h.mu.Unlock()
	h.ch.mu.Lock()
	h.ch.events = append(h.ch.events, fmt.Sprintf("closed %d: %v", h.c.SessionID(), err))
	h.ch.mu.Unlock()
	close(h.closed)
}

func (h *fakeHandler) sequences() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []uint64
	for _, f := range h.got {
		out = append(out, f.Sequence)
	}
	return out
}

func (f *fakeChannel) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

func (f *fakeChannel) handler(t *testing.T, i int) *fakeHandler {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("connection %d to open", i+1), 5*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.handlers) > i
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.handlers[i]
}

// served is a listener serving on a free loopback port; it is closed at test cleanup.
type served struct {
	*Listener
	m    *Metrics
	reg  *prometheus.Registry
	done chan error
}

func serve(t *testing.T, cfg Config, ch Channel) *served {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 200 * time.Millisecond
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, cfg.Channel)
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	l := New(cfg, ch, m, log)
	if err := l.Listen(); err != nil {
		t.Fatal(err)
	}
	s := &served{Listener: l, m: m, reg: reg, done: make(chan error, 1)}
	go func() { s.done <- l.Serve() }()
	t.Cleanup(func() { s.close(t) })
	return s
}

// close shuts the listener down within a bounded time and checks Serve returned nil.
func (s *served) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		s.done <- nil // a second close finds it again
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

// peer is a test bridge: it writes frames and collects what the server sends back. A Hello it
// sends without a proof gets one with key (after the server's Challenge), unless key is nil.
type peer struct {
	key    []byte
	nc     net.Conn
	wmu    sync.Mutex
	mu     sync.Mutex
	frames []*bridgev1.Frame
	closed chan struct{}
	stop   chan struct{}
	bg     sync.WaitGroup
}

func dial(t *testing.T, addr net.Addr) *peer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{key: testKey, nc: nc, closed: make(chan struct{}), stop: make(chan struct{})}
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		defer close(p.closed)
		br := bufio.NewReader(nc)
		for {
			f := &bridgev1.Frame{}
			if err := protodelim.UnmarshalFrom(br, f); err != nil {
				return
			}
			p.mu.Lock()
			p.frames = append(p.frames, f)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(p.close)
	return p
}

func (p *peer) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.nc.Close()
	p.bg.Wait()
}

func (p *peer) send(t *testing.T, frames ...*bridgev1.Frame) {
	t.Helper()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	w := bufio.NewWriter(p.nc)
	for _, f := range frames {
		if h := f.GetHello(); h != nil && p.key != nil && len(h.AuthProof) == 0 {
			f = proto.Clone(f).(*bridgev1.Frame)
			if err := ProveHello(p.key, p.challenge(t).ServerNonce, f.GetHello()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := protodelim.MarshalTo(w, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// challenge waits for the server's Challenge.
func (p *peer) challenge(t *testing.T) *bridgev1.Challenge {
	t.Helper()
	var c *bridgev1.Challenge
	testkit.WaitFor(t, "Challenge", 5*time.Second, func() bool {
		for _, f := range p.received() {
			if c = f.GetChallenge(); c != nil {
				return true
			}
		}
		return false
	})
	return c
}

func (p *peer) sendRaw(t *testing.T, b []byte) {
	t.Helper()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, err := p.nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

// keepAlive sends a heartbeat every interval until the peer is closed, as the DLL does.
func (p *peer) keepAlive(every time.Duration) {
	p.bg.Add(1)
	go func() {
		defer p.bg.Done()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-p.closed:
				return
			case <-tk.C:
				p.wmu.Lock()
				_, err := protodelim.MarshalTo(p.nc, &bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{TimeUs: time.Now().UnixMicro()}}})
				p.wmu.Unlock()
				if err != nil {
					return
				}
			}
		}
	}()
}

func (p *peer) received() []*bridgev1.Frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*bridgev1.Frame(nil), p.frames...)
}

func (p *peer) welcome(t *testing.T) *bridgev1.Welcome {
	t.Helper()
	var w *bridgev1.Welcome
	testkit.WaitFor(t, "Welcome", 5*time.Second, func() bool {
		for _, f := range p.received() {
			if f.GetWelcome() != nil {
				w = f.GetWelcome()
				return true
			}
		}
		return false
	})
	return w
}

func (p *peer) maxAck() uint64 {
	var a uint64
	for _, f := range p.received() {
		a = max(a, f.Ack)
	}
	return a
}

func (p *peer) waitAck(t *testing.T, ack uint64) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("ack %d", ack), 5*time.Second, func() bool { return p.maxAck() == ack })
}

func (p *peer) errorFrame() *bridgev1.Error {
	for _, f := range p.received() {
		if e := f.GetError(); e != nil {
			return e
		}
	}
	return nil
}

func (p *peer) waitClosed(t *testing.T) {
	t.Helper()
	select {
	case <-p.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not close the connection")
	}
}
