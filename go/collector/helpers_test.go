package collector

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/bridgelink"
	"github.com/kairos-mt5/kairos/go/collector/config"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func testConfig() config.Config {
	c := config.Default()
	c.BridgeAddr, c.GRPCAddr, c.MetricsAddr, c.NATSAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.InferenceEndpoints = nil
	c.BarPeriods = []uint32{60, 300}
	c.BarIdleClose = 0
	c.HeartbeatInterval = 200 * time.Millisecond
	c.ShutdownTimeout = 5 * time.Second
	c.BridgeKey = testBridgeKey
	c.NATSInsecure = true // the tests' own embedded server (natspub's tests cover its authorization)
	c.Token = testToken
	return c
}

// testBridgeKey is the test collector's bridge key; a bridgeConn proves it in every Hello.
var testBridgeKey = []byte("collector-test-bridge-key-0123456789")

// testToken is the bearer token the test collectors accept; dialGRPC sends it.
const testToken = "collector-test-token-4b1e"

type running struct {
	*Service
	cancel context.CancelFunc
	done   chan error
}

// start runs a collector with real listeners on free loopback ports; it stops at test cleanup.
func start(t *testing.T, cfg config.Config) *running {
	t.Helper()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	svc, err := New(cfg, log.With("component", "collector"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Service: svc, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("collector shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("collector did not shut down within 10s")
	}
}

// bridgeConn is a test bridge: it writes frames and collects what the collector sends back.
type bridgeConn struct {
	nc     net.Conn
	mu     sync.Mutex
	frames []*bridgev1.Frame
	closed chan struct{}
}

func dialBridge(t *testing.T, addr string) *bridgeConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &bridgeConn{nc: nc, closed: make(chan struct{})}
	go func() {
		defer close(b.closed)
		br := bufio.NewReader(nc)
		for {
			f := &bridgev1.Frame{}
			if err := protodelim.UnmarshalFrom(br, f); err != nil {
				return
			}
			b.mu.Lock()
			b.frames = append(b.frames, f)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() { nc.Close(); <-b.closed })
	return b
}

func (b *bridgeConn) send(t *testing.T, frames ...*bridgev1.Frame) {
	t.Helper()
	w := bufio.NewWriter(b.nc)
	for _, f := range frames {
		if f.GetHello() != nil { // a fresh proof for this connection's challenge (the golden Hello's is for its own)
			f = proto.Clone(f).(*bridgev1.Frame)
			if err := bridgelink.ProveHello(testBridgeKey, b.challenge(t).ServerNonce, f.GetHello()); err != nil {
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

// challenge waits for the collector's Challenge.
func (b *bridgeConn) challenge(t *testing.T) *bridgev1.Challenge {
	t.Helper()
	var c *bridgev1.Challenge
	testkit.WaitFor(t, "Challenge", 5*time.Second, func() bool {
		for _, f := range b.received() {
			if c = f.GetChallenge(); c != nil {
				return true
			}
		}
		return false
	})
	return c
}

func (b *bridgeConn) received() []*bridgev1.Frame {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*bridgev1.Frame(nil), b.frames...)
}

func (b *bridgeConn) welcome(t *testing.T) *bridgev1.Welcome {
	t.Helper()
	var w *bridgev1.Welcome
	testkit.WaitFor(t, "Welcome", 5*time.Second, func() bool {
		for _, f := range b.received() {
			if f.GetWelcome() != nil {
				w = f.GetWelcome()
				return true
			}
		}
		return false
	})
	return w
}

func (b *bridgeConn) maxAck() uint64 {
	var a uint64
	for _, f := range b.received() {
		a = max(a, f.Ack)
	}
	return a
}

func golden(t *testing.T, name string) *bridgev1.Frame {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "proto", "testdata", "golden", name+".binpb"))
	if err != nil {
		t.Fatal(err)
	}
	f := &bridgev1.Frame{}
	if err := proto.Unmarshal(data, f); err != nil {
		t.Fatal(err)
	}
	return f
}

func hello(session, seq uint64) *bridgev1.Frame {
	return &bridgev1.Frame{Sequence: seq, SentTimeUs: time.Now().UnixMicro(), Body: &bridgev1.Frame_Hello{Hello: &bridgev1.Hello{
		ApiVersion: bridgelink.APIVersion, BridgeVersion: "test", Channel: bridgev1.Channel_CHANNEL_MARKET_DATA, SessionId: session}}}
}

func symbolInfo(seq uint64) *bridgev1.Frame {
	return &bridgev1.Frame{Sequence: seq, Body: &bridgev1.Frame_SymbolInfo{SymbolInfo: ticksdata.EURUSD()}}
}

func ticksFrame(seq uint64, b *mdv1.TickBatch) *bridgev1.Frame {
	return &bridgev1.Frame{Sequence: seq, SentTimeUs: time.Now().UnixMicro(), Body: &bridgev1.Frame_Ticks{Ticks: b}}
}

func realTicks(t *testing.T) []ticksdata.Tick {
	t.Helper()
	ticks, err := ticksdata.Load()
	if err != nil {
		t.Fatal(err)
	}
	return ticks
}

// natsCounter counts ticks and collects bars and predictions published by the collector.
type natsCounter struct {
	mu    sync.Mutex
	ticks int
	seqs  map[uint64]int
	bars  []*mdv1.Bar
	preds int
	nc    *nats.Conn
}

func subscribeNATS(t *testing.T, url string) *natsCounter {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	c := &natsCounter{nc: nc, seqs: map[uint64]int{}}
	if _, err := nc.Subscribe("kairos.md.>", func(m *nats.Msg) {
		b := &mdv1.TickBatch{}
		if proto.Unmarshal(m.Data, b) == nil {
			c.mu.Lock()
			c.ticks += len(b.TimeMsc)
			for _, s := range b.Sequence {
				c.seqs[s]++
			}
			c.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("kairos.bar.M1.>", func(m *nats.Msg) {
		b := &mdv1.Bar{}
		if proto.Unmarshal(m.Data, b) == nil {
			c.mu.Lock()
			c.bars = append(c.bars, b)
			c.mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("kairos.pred.>", func(*nats.Msg) { c.mu.Lock(); c.preds++; c.mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return c
}

func (c *natsCounter) snapshot() (ticks int, bars []*mdv1.Bar, preds int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ticks, append([]*mdv1.Bar(nil), c.bars...), c.preds
}

// m1Bars computes M1 bars from ticks by grouping (independent of the bars package).
func m1Bars(ticks []ticksdata.Tick) []*mdv1.Bar {
	groups := map[int64][]ticksdata.Tick{}
	for _, t := range ticks {
		k := t.TimeMsc / 60000 * 60000
		groups[k] = append(groups[k], t)
	}
	var keys []int64
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	var out []*mdv1.Bar
	for _, k := range keys {
		g := groups[k]
		b := &mdv1.Bar{Symbol: "EURUSD", PeriodS: 60, OpenTimeMsc: k, Open: g[0].Bid, Close: g[len(g)-1].Bid, High: g[0].Bid, Low: g[0].Bid,
			TickVolume: uint64(len(g))}
		var sum, mx float64
		for _, t := range g {
			b.High, b.Low, mx = math.Max(b.High, t.Bid), math.Min(b.Low, t.Bid), math.Max(mx, t.Ask-t.Bid)
			sum += t.Ask - t.Bid
		}
		b.SpreadMean, b.SpreadPoints = sum/float64(len(g)), int32(math.RoundToEven(mx/1e-5))
		out = append(out, b)
	}
	return out
}

func sameBar(a, b *mdv1.Bar) bool {
	return a.Symbol == b.Symbol && a.PeriodS == b.PeriodS && a.OpenTimeMsc == b.OpenTimeMsc && a.Open == b.Open && a.High == b.High &&
		a.Low == b.Low && a.Close == b.Close && a.TickVolume == b.TickVolume && a.SpreadPoints == b.SpreadPoints &&
		math.Abs(a.SpreadMean-b.SpreadMean) < 1e-12
}
