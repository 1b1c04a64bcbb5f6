package predictlink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	inferv1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/collector/internal/testinfer"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func TestRingSpreadsSymbolsAndMovesOnlyTheFailedEndpointsSymbols(t *testing.T) {
	eps := []string{"10.0.0.1:7501", "10.0.0.2:7501", "10.0.0.3:7501"}
	r := NewRing(eps, 64)
	all := func(int) bool { return true }
	owner := map[string]int{}
	count := make([]int, len(eps))
	for i := range 3000 {
		sym := fmt.Sprintf("SYM%04d", i)
		owner[sym] = r.Lookup(sym, all)
		count[owner[sym]]++
	}
	for i, c := range count {
		if c < 600 || c > 1400 {
			t.Fatalf("endpoint %d owns %d of 3000 symbols; want a fair share (%v)", i, c, count)
		}
	}
	down := func(i int) bool { return i != 1 }
	for sym, o := range owner {
		n := r.Lookup(sym, down)
		if o != 1 && n != o {
			t.Fatalf("%s moved from healthy endpoint %d to %d", sym, o, n)
		}
		if o == 1 && n == 1 {
			t.Fatalf("%s stayed on the failed endpoint", sym)
		}
	}
	if r.Lookup("X", func(int) bool { return false }) != -1 {
		t.Fatal("no healthy endpoint must give -1")
	}
	// Listing order does not change ownership.
	r2 := NewRing([]string{eps[2], eps[0], eps[1]}, 64)
	if eps[r.Lookup("EURUSD", all)] != []string{eps[2], eps[0], eps[1]}[r2.Lookup("EURUSD", all)] {
		t.Fatal("ownership depends on endpoint order")
	}
}

type predSink struct {
	mu    sync.Mutex
	preds []*inferv1.Prediction
}

func (s *predSink) Prediction(p *inferv1.Prediction) {
	s.mu.Lock()
	s.preds = append(s.preds, p)
	s.mu.Unlock()
}
func (s *predSink) len() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.preds) }

func startServers(t *testing.T, n int) []*testinfer.Server {
	t.Helper()
	var out []*testinfer.Server
	for range n {
		s, err := testinfer.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		out = append(out, s)
	}
	return out
}

func ticks(sym string, n int, t0 int64) *mdv1.TickBatch {
	b := &mdv1.TickBatch{Symbol: sym}
	for i := range n {
		b.TimeMsc = append(b.TimeMsc, t0+int64(i))
		b.Bid = append(b.Bid, 1.1)
		b.Ask = append(b.Ask, 1.2)
	}
	return b
}

func newLink(t *testing.T, cfg Config, sink PredictionSink) (*Link, *metrics.Metrics) {
	t.Helper()
	m := metrics.New()
	l, err := New(cfg, m, slog.New(slog.NewTextHandler(io.Discard, nil)), sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Close(ctx)
	})
	return l, m
}

func TestLinkWithoutFlushInterval_SendsALoneBatchAtOnceAndBatchesOnlyWhatIsQueued(t *testing.T) {
	srv := startServers(t, 1)[0]
	sink := &predSink{}
	l, _ := newLink(t, Config{Endpoints: []string{srv.Addr}, BatchTicks: 100, FlushInterval: 0}, sink)
	testkit.WaitFor(t, "endpoint up", 5*time.Second, func() bool { return l.Owner("EURUSD") != "" })
	// One batch and nothing behind it: it goes alone, without waiting for company.
	l.OfferTicks(ticks("EURUSD", 25, 0), nil)
	testkit.WaitFor(t, "the lone batch at the server", 5*time.Second, func() bool { return srv.Ticks()["EURUSD"] == 25 })
	if _, sizes := srv.Requests(); len(sizes) != 1 || sizes[0] != 25 {
		t.Fatalf("request sizes %v: want one request of the 25 ticks", sizes)
	}
	// Batches offered together join whatever request is being filled, whole, up to BatchTicks.
	for i := range 10 {
		l.OfferTicks(ticks("EURUSD", 25, int64(25+i*25)), nil)
	}
	testkit.WaitFor(t, "all ticks at the server", 5*time.Second, func() bool { return srv.Ticks()["EURUSD"] == 275 })
	_, sizes := srv.Requests()
	for _, s := range sizes {
		if s > 100 || s%25 != 0 {
			t.Fatalf("request sizes %v: want whole batches, at most 100 ticks", sizes)
		}
	}
}

func TestLinkBatchesTicksUpToNAndFlushesAfterT(t *testing.T) {
	srv := startServers(t, 1)[0]
	sink := &predSink{}
	l, m := newLink(t, Config{Endpoints: []string{srv.Addr}, BatchTicks: 100, FlushInterval: 20 * time.Millisecond}, sink)
	testkit.WaitFor(t, "endpoint up", 5*time.Second, func() bool { return l.Owner("EURUSD") != "" })
	hops := []*typesv1.HopStamp{{Stage: typesv1.HopStage_HOP_STAGE_COLLECTOR_RECEIVE, TimeUs: time.Now().UnixMicro()}}
	// 10 batches of 25 ticks offered at once: requests of 100 ticks, then the 50 left after T.
	for i := range 10 {
		l.OfferTicks(ticks("EURUSD", 25, int64(i*25)), hops)
	}
	testkit.WaitFor(t, "all ticks at the server", 5*time.Second, func() bool { return srv.Ticks()["EURUSD"] == 250 })
	_, sizes := srv.Requests()
	for _, s := range sizes {
		if s > 100 || s < 25 {
			t.Fatalf("request sizes %v: want at most 100 ticks and whole batches", sizes)
		}
	}
	if sizes[len(sizes)-1] == 100 {
		t.Fatalf("request sizes %v: the remainder must go out on the timer", sizes)
	}
	testkit.WaitFor(t, "a prediction per request", 5*time.Second, func() bool { return sink.len() == len(sizes) })
	if got := testutil.CollectAndCount(m.HopLatency); got < 3 {
		t.Fatalf("hop latency series: %d, want round trip, queue and inference hops", got)
	}
	if rt := testutil.ToFloat64(m.InferencePredictions); rt != float64(len(sizes)) {
		t.Fatalf("predictions metric %v, want %d", rt, len(sizes))
	}
}

func TestSymbolsFailOverToAnotherEndpointAndReturnAfterReconnect(t *testing.T) {
	srvs := startServers(t, 2)
	sink := &predSink{}
	l, m := newLink(t, Config{Endpoints: []string{srvs[0].Addr, srvs[1].Addr}, BatchTicks: 1, FlushInterval: time.Millisecond,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond}, sink)
	testkit.WaitFor(t, "both endpoints up", 5*time.Second, func() bool {
		return testutil.ToFloat64(m.InferenceEndpointUp.WithLabelValues(srvs[0].Addr)) == 1 &&
			testutil.ToFloat64(m.InferenceEndpointUp.WithLabelValues(srvs[1].Addr)) == 1
	})
	// Find a symbol owned by endpoint 0.
	sym := ""
	for i := range 100 {
		if s := fmt.Sprintf("SYM%d", i); l.Owner(s) == srvs[0].Addr {
			sym = s
			break
		}
	}
	if sym == "" {
		t.Fatal("no symbol hashed to endpoint 0")
	}
	l.OfferTicks(ticks(sym, 5, 0), nil)
	testkit.WaitFor(t, "ticks at endpoint 0", 5*time.Second, func() bool { return srvs[0].Ticks()[sym] == 5 })

	addr0 := srvs[0].Addr
	srvs[0].Stop()
	testkit.WaitFor(t, "failover", 5*time.Second, func() bool { return l.Owner(sym) == srvs[1].Addr })
	l.OfferTicks(ticks(sym, 7, 10), nil)
	testkit.WaitFor(t, "ticks at endpoint 1", 5*time.Second, func() bool { return srvs[1].Ticks()[sym] == 7 })

	// The endpoint comes back on the same address: the link reconnects with backoff and the symbol returns.
	back, err := testinfer.Start(addr0)
	if err != nil {
		t.Skipf("could not rebind %s: %v", addr0, err)
	}
	t.Cleanup(back.Stop)
	testkit.WaitFor(t, "reconnect", 10*time.Second, func() bool { return l.Owner(sym) == addr0 })
	if testutil.ToFloat64(m.InferenceReconnects.WithLabelValues(addr0)) < 1 {
		t.Fatal("reconnect attempts not counted")
	}
	l.OfferTicks(ticks(sym, 3, 20), nil)
	testkit.WaitFor(t, "ticks at the restarted endpoint", 5*time.Second, func() bool { return back.Ticks()[sym] == 3 })
}

func TestOfferNeverBlocksAndCountsOverflow(t *testing.T) {
	srv := startServers(t, 1)[0]
	srv.SetHold(200 * time.Millisecond)
	l, m := newLink(t, Config{Endpoints: []string{srv.Addr}, BatchTicks: 1, QueueSize: 4, ResponseTimeout: 10 * time.Second}, nil)
	testkit.WaitFor(t, "endpoint up", 5*time.Second, func() bool { return l.Owner("EURUSD") != "" })
	start := time.Now()
	for i := range 2000 {
		l.OfferTicks(ticks("EURUSD", 1, int64(i)), nil)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("offering 2000 batches took %v: offer blocked", d)
	}
	if testutil.ToFloat64(m.InferenceDropped.WithLabelValues("overflow")) == 0 {
		t.Fatal("overflow not counted")
	}
}

func TestUnansweredRequestsMarkTheEndpointDead(t *testing.T) {
	srv := startServers(t, 1)[0]
	srv.SetHold(3 * time.Second)
	l, m := newLink(t, Config{Endpoints: []string{srv.Addr}, BatchTicks: 1, ResponseTimeout: 100 * time.Millisecond,
		BackoffMin: time.Second, BackoffMax: 2 * time.Second}, nil)
	testkit.WaitFor(t, "endpoint up", 5*time.Second, func() bool { return l.Owner("EURUSD") != "" })
	l.OfferTicks(ticks("EURUSD", 1, 0), nil)
	testkit.WaitFor(t, "endpoint marked down", 5*time.Second, func() bool {
		return testutil.ToFloat64(m.InferenceEndpointUp.WithLabelValues(srv.Addr)) == 0
	})
}

// Strategy Tester step markers (ADR 0095): a marker runs once everything offered before it was
// answered, with the predictions of its symbol those answers carried, after the sink got them.
func TestMarkerRunsAfterTheAnswersBeforeItWithItsSymbolsPredictions(t *testing.T) {
	srv := startServers(t, 1)[0]
	srv.SetHold(50 * time.Millisecond) // the marker must wait for an answer that is still coming
	sink := &predSink{}
	l, _ := newLink(t, Config{Endpoints: []string{srv.Addr}, BatchTicks: 100, FlushInterval: time.Hour}, sink)
	testkit.WaitFor(t, "endpoint up", 5*time.Second, func() bool { return l.Owner("EURUSD") != "" })
	type got struct {
		times    []int64
		sinkSeen int
	}
	ch := make(chan got, 4)
	mark := func(sym string) {
		l.Mark(sym, func(d []int64) { ch <- got{d, sink.len()} })
	}
	wait := func(what string) got {
		t.Helper()
		select {
		case g := <-ch:
			return g
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the marker never ran", what)
			return got{}
		}
	}

	// The ticks would wait an hour for their flush: the marker sends them now.
	l.OfferTicks(ticks("EURUSD", 3, 1000), nil)
	mark("EURUSD")
	g := wait("after ticks")
	if len(g.times) != 1 || g.times[0] != 1002 {
		t.Fatalf("marker decisions %v, want [1002] (the answer's prediction)", g.times)
	}
	if g.sinkSeen != 1 {
		t.Fatalf("the sink had %d predictions when the marker ran, want 1 (published first)", g.sinkSeen)
	}
	// Nothing offered since: the marker runs at once, with no decision.
	mark("EURUSD")
	if g := wait("nothing pending"); len(g.times) != 0 {
		t.Fatalf("marker decisions %v, want none", g.times)
	}
	// Another symbol's predictions are not this marker's.
	l.OfferTicks(ticks("GBPUSD", 2, 5000), nil)
	l.OfferTicks(ticks("EURUSD", 2, 6000), nil)
	mark("EURUSD")
	if g := wait("two symbols"); len(g.times) != 1 || g.times[0] != 6001 {
		t.Fatalf("marker decisions %v, want [6001]", g.times)
	}
}

func TestMarkerWithoutAnEndpointNeverRuns(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	l, m := newLink(t, Config{Endpoints: []string{addr}, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond}, nil)
	ran := make(chan struct{}, 1)
	l.OfferTicks(ticks("EURUSD", 1, 1000), nil)
	l.Mark("EURUSD", func([]int64) { ran <- struct{}{} })
	select {
	case <-ran:
		t.Fatal("a marker ran although no inference server answered: the bridge would step without a decision")
	case <-time.After(300 * time.Millisecond):
	}
	if got := testutil.ToFloat64(m.InferenceDropped.WithLabelValues("no_endpoint")); got < 1 {
		t.Fatalf("dropped (no_endpoint) %v, want the tick counted", got)
	}
	if got := testutil.ToFloat64(m.TesterMarkersLost.WithLabelValues("no_endpoint")); got != 1 {
		t.Fatalf("kairos_collector_tester_markers_lost_total{reason=no_endpoint} %v, want 1", got)
	}
}
