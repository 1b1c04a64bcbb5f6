package predictlink

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/internal/testinfer"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// terminal is a HistorySource standing in for the terminal: per symbol, closed bars ending just
// before the range's end plus the bar still forming, answered once gate is closed (or at once when
// gate is nil); a symbol in silent never answers (the call ends with its context).
type terminal struct {
	mu     sync.Mutex
	gate   chan struct{}
	silent map[string]bool
	n      int // closed bars in an answer
	asked  []string
}

func (h *terminal) Bars(ctx context.Context, symbol string, periodS uint32, fromMsc, toMsc int64) ([]*mdv1.Bar, error) {
	h.mu.Lock()
	h.asked = append(h.asked, symbol)
	gate, silent := h.gate, h.silent[symbol]
	h.mu.Unlock()
	if silent {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	p := int64(periodS) * 1000
	var out []*mdv1.Bar
	for k := h.n; k >= 0; k-- { // k == 0: the bar still forming, at toMsc (the current period's open)
		open := toMsc - int64(k)*p
		if open < fromMsc {
			continue
		}
		out = append(out, &mdv1.Bar{Symbol: symbol, PeriodS: periodS, OpenTimeMsc: open, Open: 1.1, High: 1.2, Low: 1.0, Close: 1.15, TickVolume: 10})
	}
	return out, nil
}

func (h *terminal) askedFor() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.asked...)
}

// received splits what the server got for sym: the warm-up bars and the live tick times, in order.
func received(srv *testinfer.Server, sym string) (warm []*mdv1.Bar, live []int64, warmAfterLive bool) {
	for _, r := range srv.Log() {
		for _, b := range r.GetBars() {
			if b.GetSymbol() == sym && r.GetWarmup() {
				warm = append(warm, b)
				warmAfterLive = warmAfterLive || len(live) > 0
			}
		}
		for _, tb := range r.GetTicks() {
			if tb.GetSymbol() == sym {
				if r.GetWarmup() {
					warmAfterLive = true // live ticks never travel as warm-up
				}
				live = append(live, tb.GetTimeMsc()...)
			}
		}
	}
	return warm, live, warmAfterLive
}

func offerTicks(l *Link, sym string, batches, per int, t0 int64) []int64 {
	var want []int64
	for i := range batches {
		b := ticks(sym, per, t0+int64(i*per))
		want = append(want, b.TimeMsc...)
		l.OfferTicks(b, nil)
	}
	return want
}

func warmServer(t *testing.T, window uint32) *testinfer.Server {
	t.Helper()
	srv := startServers(t, 1)[0]
	srv.SetModelStatus(window, 60)
	return srv
}

// The warm-up goes before the symbol's live ticks: the terminal's last `window` closed bars, in
// order, without the bar still forming; the ticks held meanwhile all follow, in order, once each.
// A reconnect warms the symbols the link knows as soon as the stream opens, before any tick.
func TestWarmupPrecedesLiveTicksWithTheClosedBarsInOrder(t *testing.T) {
	srv := warmServer(t, 5)
	term := &terminal{gate: make(chan struct{}), n: 8}
	sink := &predSink{}
	l, m := newLink(t, Config{Endpoints: []string{srv.Addr}, BatchTicks: 10, FlushInterval: time.Millisecond, History: term,
		WarmupMaxBars: 3000, WarmupTimeout: 20 * time.Second, WarmupHold: 1000, BackoffMin: 20 * time.Millisecond,
		BackoffMax: 100 * time.Millisecond}, sink)
	testkit.WaitFor(t, "endpoint up", 5*time.Second, func() bool { return l.Owner("EURUSD") != "" })

	want := offerTicks(l, "EURUSD", 20, 7, 1_000)
	testkit.WaitFor(t, "the ticks held", 5*time.Second, func() bool { return testutil.ToFloat64(m.InferenceWarmupHeld) == 20 })
	if _, live, _ := received(srv, "EURUSD"); len(live) != 0 {
		t.Fatalf("%d live ticks went out before the warm-up", len(live))
	}
	close(term.gate)
	testkit.WaitFor(t, "every tick at the server", 5*time.Second, func() bool { _, live, _ := received(srv, "EURUSD"); return len(live) == len(want) })
	// Ticks that come after the warm-up go straight out.
	want = append(want, offerTicks(l, "EURUSD", 3, 7, 5_000)...)
	testkit.WaitFor(t, "the later ticks", 5*time.Second, func() bool { _, live, _ := received(srv, "EURUSD"); return len(live) == len(want) })

	warm, live, late := received(srv, "EURUSD")
	if late {
		t.Fatal("a warm-up request came after live ticks")
	}
	if !slices.Equal(live, want) {
		t.Fatalf("live ticks %v, want %v (all, in order, once)", live, want)
	}
	if len(warm) != 5 {
		t.Fatalf("%d warm-up bars, want the model's window of 5", len(warm))
	}
	now := time.Now().UnixMilli() / 60_000 * 60_000
	for i, b := range warm {
		if i > 0 && b.OpenTimeMsc != warm[i-1].OpenTimeMsc+60_000 {
			t.Fatalf("warm-up bars not the consecutive last ones: %v", warm)
		}
		if b.OpenTimeMsc >= now {
			t.Fatalf("the bar still forming (%d) was sent as warm-up", b.OpenTimeMsc)
		}
	}
	if got := testutil.ToFloat64(m.InferenceWarmups.WithLabelValues("done")); got != 1 {
		t.Fatalf("warm-ups done %v", got)
	}
	if got := testutil.ToFloat64(m.InferenceWarmupBars); got != 5 {
		t.Fatalf("warm-up bars metric %v", got)
	}

	// The inference server restarts: the new stream warms EURUSD at once, with no tick offered.
	addr := srv.Addr
	srv.Stop()
	back, err := testinfer.Start(addr)
	if err != nil {
		t.Skipf("could not listen on %s again: %v", addr, err)
	}
	t.Cleanup(back.Stop)
	back.SetModelStatus(5, 60)
	testkit.WaitFor(t, "a warm-up on the new stream", 10*time.Second, func() bool { w, _, _ := received(back, "EURUSD"); return len(w) == 5 })
	if _, live, _ := received(back, "EURUSD"); len(live) != 0 {
		t.Fatalf("live ticks on the new stream: %v", live)
	}
}

// A terminal that never answers: after the timeout the symbol goes live without a warm-up and the
// ticks held meanwhile all arrive in order; another symbol is not held up by it.
func TestWarmupTimeoutGoesLiveWithoutWarmupAndNeverBlocksOtherSymbols(t *testing.T) {
	srv := warmServer(t, 5)
	term := &terminal{silent: map[string]bool{"EURUSD": true}, n: 3}
	l, m := newLink(t, Config{Endpoints: []string{srv.Addr}, BatchTicks: 10, FlushInterval: time.Millisecond, History: term,
		WarmupMaxBars: 3000, WarmupTimeout: 2 * time.Second, WarmupHold: 1000}, &predSink{})
	testkit.WaitFor(t, "endpoint up", 5*time.Second, func() bool { return l.Owner("EURUSD") != "" })

	want := offerTicks(l, "EURUSD", 10, 3, 1_000)
	other := offerTicks(l, "GBPUSD", 4, 3, 1_000)
	testkit.WaitFor(t, "GBPUSD warmed and live while EURUSD waits", 5*time.Second, func() bool {
		_, live, _ := received(srv, "GBPUSD")
		return len(live) == len(other)
	})
	if _, live, _ := received(srv, "EURUSD"); len(live) != 0 {
		t.Fatalf("EURUSD went live before its warm-up timed out: %v", live)
	}
	testkit.WaitFor(t, "EURUSD live after the timeout", 10*time.Second, func() bool { _, live, _ := received(srv, "EURUSD"); return len(live) == len(want) })
	warm, live, _ := received(srv, "EURUSD")
	if len(warm) != 0 || !slices.Equal(live, want) {
		t.Fatalf("warm-up %v, live %v; want no warm-up and %v", warm, live, want)
	}
	if got := testutil.ToFloat64(m.InferenceWarmups.WithLabelValues("failed")); got != 1 {
		t.Fatalf("failed warm-ups %v", got)
	}
	if w, _, _ := received(srv, "GBPUSD"); len(w) != 3 {
		t.Fatalf("GBPUSD warm-up %d bars, want the 3 closed ones the terminal had", len(w))
	}
}

// A hold that fills sends the symbol live without a warm-up (nothing dropped, order kept), and the
// history that comes later is not sent.
func TestWarmupHoldOverflowGoesLiveAndDropsNothing(t *testing.T) {
	srv := warmServer(t, 5)
	term := &terminal{gate: make(chan struct{}), n: 8}
	l, m := newLink(t, Config{Endpoints: []string{srv.Addr}, BatchTicks: 10, FlushInterval: time.Millisecond, History: term,
		WarmupMaxBars: 3000, WarmupTimeout: 20 * time.Second, WarmupHold: 4}, &predSink{})
	testkit.WaitFor(t, "endpoint up", 5*time.Second, func() bool { return l.Owner("EURUSD") != "" })
	want := offerTicks(l, "EURUSD", 12, 2, 1_000)
	testkit.WaitFor(t, "every tick at the server", 5*time.Second, func() bool { _, live, _ := received(srv, "EURUSD"); return len(live) == len(want) })
	close(term.gate)
	want = append(want, offerTicks(l, "EURUSD", 2, 2, 9_000)...)
	testkit.WaitFor(t, "the later ticks", 5*time.Second, func() bool { _, live, _ := received(srv, "EURUSD"); return len(live) == len(want) })
	warm, live, _ := received(srv, "EURUSD")
	if len(warm) != 0 || !slices.Equal(live, want) {
		t.Fatalf("warm-up %d bars, live %v; want none and %v", len(warm), live, want)
	}
	if got := testutil.ToFloat64(m.InferenceWarmupHoldOverflow); got != 1 {
		t.Fatalf("hold overflow %v", got)
	}
}

// A server without GetModelStatus (an older one): no warm-up, nothing held for long.
func TestWarmupOffWhenTheServerStatesNoWindow(t *testing.T) {
	srv := startServers(t, 1)[0]
	term := &terminal{n: 3}
	l, _ := newLink(t, Config{Endpoints: []string{srv.Addr}, BatchTicks: 10, FlushInterval: time.Millisecond, History: term,
		WarmupMaxBars: 3000, WarmupTimeout: 20 * time.Second, WarmupHold: 1000}, &predSink{})
	testkit.WaitFor(t, "endpoint up", 5*time.Second, func() bool { return l.Owner("EURUSD") != "" })
	want := offerTicks(l, "EURUSD", 5, 3, 1_000)
	testkit.WaitFor(t, "every tick at the server", 5*time.Second, func() bool { _, live, _ := received(srv, "EURUSD"); return len(live) == len(want) })
	if warm, live, _ := received(srv, "EURUSD"); len(warm) != 0 || !slices.Equal(live, want) {
		t.Fatalf("warm-up %v, live %v", warm, live)
	}
	if a := term.askedFor(); len(a) != 0 {
		t.Fatalf("the terminal was asked for %v", a)
	}
}
