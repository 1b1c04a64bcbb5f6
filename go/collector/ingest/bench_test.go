package ingest

import (
	"context"
	"log/slog"
	"testing"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/fanout"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/collector/validate"
)

// BenchmarkSourceTicks is the per-frame CPU cost of ingest after decoding: validation of 100 real
// ticks, four bar builders and the hand-off to the sinks (NATS publisher recording).
func BenchmarkSourceTicks(b *testing.B) {
	ticks, err := ticksdata.Load()
	if err != nil {
		b.Fatal(err)
	}
	m := metrics.New()
	p := New(Config{NATSQueue: 4096, BarPeriods: []uint32{60, 300, 900, 3600}, Validate: validate.Config{AllowUnknownSymbols: true}},
		m, slog.New(slog.DiscardHandler), fanout.New(16, fanout.Conflate, m), &natsRecorder{}, nil)
	defer p.Close(context.Background())
	src := p.Source("bench", "bridge")
	batches := ticksdata.Batches("EURUSD", ticks, 100, 1)
	span := ticks[len(ticks)-1].TimeMsc - ticks[0].TimeMsc + 60_000
	var seq uint64 = 1
	lap := int64(0)
	i := 0
	for b.Loop() {
		if i == len(batches) {
			i, lap = 0, lap+1
		}
		src0 := batches[i]
		bt := mdv1.TickBatch{Symbol: src0.Symbol, Bid: src0.Bid, Ask: src0.Ask, Flags: src0.Flags}
		bt.TimeMsc = make([]int64, len(src0.TimeMsc))
		bt.Sequence = make([]uint64, len(src0.TimeMsc))
		for j, t := range src0.TimeMsc {
			bt.TimeMsc[j] = t + lap*span
			bt.Sequence[j] = seq
			seq++
		}
		src.Ticks(&bt, nil)
		i++
	}
}
