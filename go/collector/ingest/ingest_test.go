package ingest

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/collector/fanout"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/collector/validate"
	"github.com/kairos-mt5/kairos/go/testkit"
)

type natsRecorder struct {
	ticks int
	bars  []*mdv1.Bar
}

func (r *natsRecorder) Ticks(b *mdv1.TickBatch, _ []byte) { r.ticks += len(b.TimeMsc) }
func (r *natsRecorder) Bar(b *mdv1.Bar)                   { r.bars = append(r.bars, b) }

func newPipeline(t *testing.T, cfg Config, log *slog.Logger) (*Pipeline, *metrics.Metrics, *natsRecorder) {
	t.Helper()
	m := metrics.New()
	rec := &natsRecorder{}
	p := New(cfg, m, log, fanout.New(16, fanout.Conflate, m), rec, nil)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p, m, rec
}

func TestRejectedTicksAreCountedByReasonAndLoggedAtABoundedRate(t *testing.T) {
	var logs bytes.Buffer
	p, m, rec := newPipeline(t, Config{NATSQueue: 16, RejectLogInterval: time.Hour}, slog.New(slog.NewJSONHandler(&logs, nil)))
	src := p.Source("replay", "grpc")
	if err := src.Announce(&mdv1.SymbolInfo{Symbol: "EURUSD", Point: 1e-5}); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		src.Ticks(&mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{int64(i)}, Bid: []float64{1.2}, Ask: []float64{1.1}}, nil)
	}
	if got := testutil.ToFloat64(m.TicksRejected.WithLabelValues("crossed_quote")); got != 1000 {
		t.Fatalf("crossed_quote rejects = %v", got)
	}
	if n := strings.Count(logs.String(), "tick rejected"); n != 1 {
		t.Fatalf("%d reject log lines for 1000 rejects within one interval, want 1", n)
	}
	if testutil.ToFloat64(m.RejectLogsSuppressed) != 999 {
		t.Fatal("suppressed log lines not counted")
	}
	_ = p.Close(context.Background())
	if rec.ticks != 0 {
		t.Fatalf("%d rejected ticks reached NATS", rec.ticks)
	}
}

func TestIdleTimerClosesAFinishedBarOnlyWhenTheSymbolIsIdle(t *testing.T) {
	p, _, rec := newPipeline(t, Config{NATSQueue: 16, BarPeriods: []uint32{60}, BarIdleClose: 50 * time.Millisecond,
		Validate: validate.Config{FutureTolerance: time.Second}}, slog.New(slog.DiscardHandler))
	src := p.Source("s", "grpc")
	_ = src.Announce(&mdv1.SymbolInfo{Symbol: "EURUSD", Point: 1e-5})
	old := time.Now().Add(-2 * time.Minute).UnixMilli()
	src.Ticks(&mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{old}, Bid: []float64{1.1}, Ask: []float64{1.2}}, nil)
	testkit.WaitFor(t, "the idle timer to close the finished bar", 5*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		_, isOpen := p.builders["EURUSD"][0].OpenBarTime()
		return !isOpen
	})
	_ = p.Close(context.Background())
	if len(rec.bars) != 1 || rec.bars[0].TickVolume != 1 {
		t.Fatalf("bars %v", rec.bars)
	}
}

type predictRecorder struct {
	ticks int
	bars  []*mdv1.Bar
}

func (r *predictRecorder) OfferTicks(b *mdv1.TickBatch, _ []*typesv1.HopStamp) {
	r.ticks += len(b.TimeMsc)
}
func (r *predictRecorder) OfferBar(b *mdv1.Bar) { r.bars = append(r.bars, b) }

func TestInferenceGetsTicksByDefaultAndOnlyClosedBarsOfItsPeriodWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		name      string
		barPeriod uint32
		wantTicks int
		wantBars  int
	}{{"ticks", 0, 3, 0}, {"M1 bars", 60, 0, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New()
			rec := &predictRecorder{}
			p := New(Config{NATSQueue: 16, BarPeriods: []uint32{60, 300}, InferenceBarPeriod: tc.barPeriod,
				Validate: validate.Config{FutureTolerance: time.Hour}}, m, slog.New(slog.DiscardHandler), fanout.New(16, fanout.Conflate, m), nil, rec)
			defer p.Close(context.Background())
			src := p.Source("s", "grpc")
			_ = src.Announce(&mdv1.SymbolInfo{Symbol: "EURUSD", Point: 1e-5})
			// Two ticks in minute 0, one in minute 1: the M1 bar of minute 0 closes, no M5 bar does.
			src.Ticks(&mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{1_000, 2_000, 61_000},
				Bid: []float64{1.1, 1.2, 1.3}, Ask: []float64{1.2, 1.3, 1.4}}, nil)
			if rec.ticks != tc.wantTicks || len(rec.bars) != tc.wantBars {
				t.Fatalf("inference got %d ticks, %d bars; want %d, %d", rec.ticks, len(rec.bars), tc.wantTicks, tc.wantBars)
			}
			if tc.wantBars == 1 && (rec.bars[0].PeriodS != 60 || rec.bars[0].TickVolume != 2) {
				t.Fatalf("bar %v", rec.bars[0])
			}
		})
	}
}
