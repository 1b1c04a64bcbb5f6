package collector

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/internal/testinfer"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// inferenceSplit is what the inference server received for sym: warm-up bars and live tick times,
// in order, and whether a warm-up request came after a live one.
func inferenceSplit(inf *testinfer.Server, sym string) (warm []*mdv1.Bar, live []int64, warmLate bool) {
	for _, r := range inf.Log() {
		for _, b := range r.GetBars() {
			if b.GetSymbol() == sym && r.GetWarmup() {
				warm = append(warm, b)
				warmLate = warmLate || len(live) > 0
			}
		}
		for _, tb := range r.GetTicks() {
			if tb.GetSymbol() == sym {
				live = append(live, tb.GetTimeMsc()...)
			}
		}
	}
	return warm, live, warmLate
}

func warmupCollector(t *testing.T, window uint32, timeout time.Duration) (*running, *testinfer.Server, *bridgeConn) {
	t.Helper()
	inf, err := testinfer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inf.Stop)
	inf.SetModelStatus(window, 60)
	cfg := testConfig()
	cfg.InferenceEndpoints = []string{inf.Addr}
	cfg.InferenceWarmupTimeout = timeout
	cfg.HeartbeatInterval = 10 * time.Second // the test's terminal sends no heartbeats: it must outlive the timeout
	svc := start(t, cfg)
	testkit.WaitFor(t, "the inference stream open", 10*time.Second, func() bool { return svc.Link.Owner("EURUSD") != "" })
	b := dialBridge(t, svc.BridgeAddr())
	b.send(t, hello(21, 0))
	b.welcome(t)
	b.send(t, symbolInfo(1))
	return svc, inf, b
}

// The terminal that announced EURUSD is asked for its last closed M1 bars when EURUSD's first ticks
// reach the inference link; its answer goes to inference as warm-up (the model's window, in order,
// not the bar still forming), before every live tick, which all follow in order, once each.
func TestInferenceWarmupFromTheTerminalPrecedesTheLiveTicks(t *testing.T) {
	svc, inf, b := warmupCollector(t, 30, 20*time.Second)
	ticks := realTicks(t)[:400]
	batches := ticksdata.Batches("EURUSD", ticks, 50, 1)
	seq := uint64(2)
	for _, tb := range batches[:4] {
		b.send(t, ticksFrame(seq, tb))
		seq++
	}
	req, _ := b.historyRequest(t)
	now := time.Now().UnixMilli() / 60_000 * 60_000
	if req.GetSymbol() != "EURUSD" || req.GetKind() != mdv1.HistoryKind_HISTORY_KIND_BARS || req.GetPeriodS() != 60 ||
		req.GetToMsc() > now || req.GetToMsc()%60_000 != 0 || req.GetToMsc()-req.GetFromMsc() < 30*60_000 {
		t.Fatalf("history request %v", req)
	}
	// Ticks that come while the terminal looks its bars up are held, not lost.
	for _, tb := range batches[4:6] {
		b.send(t, ticksFrame(seq, tb))
		seq++
	}
	testkit.WaitFor(t, "ticks held", 10*time.Second, func() bool { return testutil.ToFloat64(svc.Metrics.InferenceWarmupHeld) >= 1 })
	if _, live, _ := inferenceSplit(inf, "EURUSD"); len(live) != 0 {
		t.Fatalf("%d live ticks reached inference before the warm-up", len(live))
	}
	// The terminal's answer: 40 closed bars over two parts, then the bar forming at to_msc.
	var bars []*mdv1.Bar
	for k := 40; k >= 0; k-- {
		open := req.GetToMsc() - int64(k)*60_000
		bars = append(bars, &mdv1.Bar{Symbol: "EURUSD", PeriodS: 60, OpenTimeMsc: open, Open: 1.1, High: 1.2, Low: 1.0, Close: 1.15, TickVolume: 5})
	}
	id := req.GetRequestId()
	b.send(t,
		&bridgev1.Frame{Sequence: seq, Body: &bridgev1.Frame_HistoryData{HistoryData: &bridgev1.HistoryData{RequestId: id, Part: 0,
			Status: mdv1.HistoryStatus_HISTORY_STATUS_MORE, Bars: bars[:32]}}},
		&bridgev1.Frame{Sequence: seq + 1, Body: &bridgev1.Frame_HistoryData{HistoryData: &bridgev1.HistoryData{RequestId: id, Part: 1,
			Status: mdv1.HistoryStatus_HISTORY_STATUS_DONE, Bars: bars[32:], Total: uint64(len(bars))}}})
	seq += 2
	for _, tb := range batches[6:] {
		b.send(t, ticksFrame(seq, tb))
		seq++
	}
	var want []int64
	for _, tk := range ticks {
		want = append(want, tk.TimeMsc)
	}
	testkit.WaitFor(t, "every tick at inference", 20*time.Second, func() bool { _, live, _ := inferenceSplit(inf, "EURUSD"); return len(live) >= len(want) })
	warm, live, late := inferenceSplit(inf, "EURUSD")
	if late {
		t.Fatal("a warm-up request reached inference after live ticks")
	}
	if !slices.Equal(live, want) {
		t.Fatalf("live ticks at inference: %d, want the %d sent, in order, once", len(live), len(want))
	}
	if len(warm) != 30 {
		t.Fatalf("%d warm-up bars, want the model's window of 30", len(warm))
	}
	for i, bar := range warm {
		if bar.GetOpenTimeMsc() != bars[10+i].GetOpenTimeMsc() {
			t.Fatalf("warm-up bar %d opens at %d, want %d (the last 30 closed bars, in order)", i, bar.GetOpenTimeMsc(), bars[10+i].GetOpenTimeMsc())
		}
	}
	if got := testutil.ToFloat64(svc.Metrics.InferenceWarmups.WithLabelValues("done")); got != 1 {
		t.Fatalf("warm-ups done %v", got)
	}
}

// A terminal that never answers the history request: after the warm-up timeout EURUSD goes live
// without a warm-up and every tick held meanwhile reaches inference, in order.
func TestInferenceWarmupTimeoutGoesLiveWithEveryTick(t *testing.T) {
	svc, inf, b := warmupCollector(t, 30, time.Second)
	ticks := realTicks(t)[:300]
	seq := uint64(2)
	for _, tb := range ticksdata.Batches("EURUSD", ticks, 50, 1) {
		b.send(t, ticksFrame(seq, tb))
		seq++
	}
	b.historyRequest(t) // asked, never answered
	var want []int64
	for _, tk := range ticks {
		want = append(want, tk.TimeMsc)
	}
	testkit.WaitFor(t, "every tick at inference", 20*time.Second, func() bool { _, live, _ := inferenceSplit(inf, "EURUSD"); return len(live) >= len(want) })
	warm, live, _ := inferenceSplit(inf, "EURUSD")
	if len(warm) != 0 || !slices.Equal(live, want) {
		t.Fatalf("warm-up %d bars, live %d ticks (in order: %v); want none and %d", len(warm), len(live), slices.Equal(live, want), len(want))
	}
	if got := testutil.ToFloat64(svc.Metrics.InferenceWarmups.WithLabelValues("failed")); got != 1 {
		t.Fatalf("failed warm-ups %v", got)
	}
}
