package fanout

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
)

func batch(sym string, seq uint64) *mdv1.TickBatch {
	return &mdv1.TickBatch{Symbol: sym, TimeMsc: []int64{int64(seq)}, Bid: []float64{1}, Ask: []float64{2}, Sequence: []uint64{seq}}
}

func drain(t *testing.T, s *Subscriber) []Event {
	t.Helper()
	var out []Event
	stop := make(chan struct{})
	close(stop)
	for {
		select {
		case <-s.Done():
			return out
		default:
		}
		evs, ok := s.Next(stop)
		if !ok || len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
	}
}

func TestSlowSubscriberGetsTheLatestTickPerSymbolWhenConflating(t *testing.T) {
	h := New(2, Conflate, metrics.New())
	s := h.Subscribe(Filter{Ticks: true})
	defer s.Close()
	for seq := uint64(1); seq <= 10; seq++ {
		h.PublishTicks(batch("EURUSD", seq))
		h.PublishTicks(batch("GBPUSD", seq))
	}
	evs := drain(t, s)
	var seqs []uint64
	for _, e := range evs {
		seqs = append(seqs, e.Ticks.Sequence[0])
	}
	// Queue holds EURUSD 1 and GBPUSD 1; after that only the latest of each symbol survives.
	if len(evs) != 4 || evs[2].Ticks.Symbol != "EURUSD" || seqs[2] != 10 || evs[3].Ticks.Symbol != "GBPUSD" || seqs[3] != 10 {
		t.Fatalf("got sequences %v (symbols in order), want 1, 1, then EURUSD 10 and GBPUSD 10", seqs)
	}
	if s.Err() != nil {
		t.Fatal("a conflating subscriber must not be cut")
	}
	// Caught up: the queue is used again.
	h.PublishTicks(batch("EURUSD", 11))
	if evs := drain(t, s); len(evs) != 1 || evs[0].Ticks.Sequence[0] != 11 {
		t.Fatalf("after catching up got %v", evs)
	}
}

// TestSlowSubscriberGetsTheLatestSymbolInfoPerSymbolWhenConflating: metadata announced while a
// subscriber conflates is conflated like ticks, so what waits is bounded by the symbols (--max-symbols),
// not by how often a publisher re-announces; the superseded ones are counted.
func TestSlowSubscriberGetsTheLatestSymbolInfoPerSymbolWhenConflating(t *testing.T) {
	m := metrics.New()
	h := New(1, Conflate, m)
	s := h.Subscribe(Filter{Ticks: true})
	defer s.Close()
	h.PublishTicks(batch("EURUSD", 1)) // fills the queue
	h.PublishTicks(batch("EURUSD", 2)) // overflows it: conflating from here
	const announces = 10_000
	for d := uint32(1); d <= announces; d++ {
		h.PublishSymbolInfo(&mdv1.SymbolInfo{Symbol: "EURUSD", Digits: d})
		h.PublishSymbolInfo(&mdv1.SymbolInfo{Symbol: "GBPUSD", Digits: d})
	}
	var infos []*mdv1.SymbolInfo
	for _, e := range drain(t, s) {
		if e.SymbolInfo != nil {
			infos = append(infos, e.SymbolInfo)
		}
	}
	if len(infos) != 2 || infos[0].Symbol != "EURUSD" || infos[0].Digits != announces || infos[1].Symbol != "GBPUSD" || infos[1].Digits != announces {
		t.Fatalf("got %d symbol infos, want 2: the latest EURUSD then the latest GBPUSD", len(infos))
	}
	if got := testutil.ToFloat64(m.SubscriberConflatedInfos); got != 2*(announces-1) {
		t.Fatalf("superseded symbol infos counted %v, want %d", got, 2*(announces-1))
	}
	// Caught up: a new announcement goes through the queue again.
	h.PublishSymbolInfo(&mdv1.SymbolInfo{Symbol: "EURUSD", Digits: 3})
	if evs := drain(t, s); len(evs) != 1 || evs[0].SymbolInfo.GetDigits() != 3 {
		t.Fatalf("after catching up got %v", evs)
	}
}

func TestSlowSubscriberIsCutUnderTheCutPolicy(t *testing.T) {
	h := New(2, Cut, metrics.New())
	s := h.Subscribe(Filter{Ticks: true})
	defer s.Close()
	for seq := uint64(1); seq <= 3; seq++ {
		h.PublishTicks(batch("EURUSD", seq))
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("subscriber not cut after its queue overflowed")
	}
	if s.Err() != ErrTooSlow {
		t.Fatalf("err = %v", s.Err())
	}
}

func TestFilterSelectsSymbolsTicksAndBarPeriods(t *testing.T) {
	h := New(16, Cut, metrics.New())
	s := h.Subscribe(Filter{Symbols: map[string]bool{"EURUSD": true}, Periods: map[uint32]bool{60: true}})
	defer s.Close()
	h.PublishTicks(batch("EURUSD", 1)) // ticks not requested
	h.PublishBar(&mdv1.Bar{Symbol: "EURUSD", PeriodS: 300})
	h.PublishBar(&mdv1.Bar{Symbol: "GBPUSD", PeriodS: 60})
	h.PublishBar(&mdv1.Bar{Symbol: "EURUSD", PeriodS: 60, OpenTimeMsc: 42})
	evs := drain(t, s)
	if len(evs) != 1 || evs[0].Bar == nil || evs[0].Bar.OpenTimeMsc != 42 {
		t.Fatalf("got %v, want only the EURUSD M1 bar", evs)
	}
}

// TestPublishBars_whenSeveralBarsClose_thenOfferedInOrderAsByPublishBar: the batch form takes the
// lock once and offers what PublishBar would, in the same order, filter included.
func TestPublishBars_whenSeveralBarsClose_thenOfferedInOrderAsByPublishBar(t *testing.T) {
	h := New(16, Cut, metrics.New())
	s := h.Subscribe(Filter{Symbols: map[string]bool{"EURUSD": true}, Periods: map[uint32]bool{60: true, 300: true}})
	defer s.Close()
	h.PublishBars(nil)
	h.PublishBars([]*mdv1.Bar{{Symbol: "EURUSD", PeriodS: 60, OpenTimeMsc: 1}, {Symbol: "EURUSD", PeriodS: 60, OpenTimeMsc: 2},
		{Symbol: "GBPUSD", PeriodS: 60, OpenTimeMsc: 3}, {Symbol: "EURUSD", PeriodS: 900, OpenTimeMsc: 4},
		{Symbol: "EURUSD", PeriodS: 300, OpenTimeMsc: 5}})
	evs := drain(t, s)
	var got []int64
	for _, e := range evs {
		got = append(got, e.Bar.GetOpenTimeMsc())
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 5 {
		t.Fatalf("got bars %v, want 1, 2, 5", got)
	}
}
