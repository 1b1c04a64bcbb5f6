package predictlink

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/internal/testinfer"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
)

// emptyHistory is a terminal with no bars: warm-ups end at once, the symbols go live.
type emptyHistory struct{}

func (emptyHistory) Bars(context.Context, string, uint32, int64, int64) ([]*mdv1.Bar, error) {
	return nil, nil
}

// BenchmarkLinkTicks is the link's cost per tick batch with warm-up off and on (after the symbols
// went live, the steady state): ten symbols' batches of 10 ticks through a real loopback stream to
// testinfer, waiting for every tick to arrive.
func BenchmarkLinkTicks(b *testing.B) {
	for _, mode := range []string{"warmup_off", "warmup_on"} {
		b.Run(mode, func(b *testing.B) {
			srv, err := testinfer.Start("127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Stop()
			srv.SetModelStatus(256, 60)
			cfg := Config{Endpoints: []string{srv.Addr}, BatchTicks: 100, FlushInterval: 200 * time.Microsecond, QueueSize: 1 << 16,
				WarmupTimeout: 5 * time.Second}
			if mode == "warmup_on" {
				cfg.History, cfg.WarmupMaxBars = emptyHistory{}, 3000
			}
			l, err := New(cfg, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = l.Close(ctx)
			}()
			syms := []string{"EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "USDCAD", "NZDUSD", "EURGBP", "EURJPY", "GBPJPY"}
			total := func() int {
				n := 0
				for _, v := range srv.Ticks() {
					n += v
				}
				return n
			}
			wait := func(want int) {
				deadline := time.Now().Add(30 * time.Second)
				for total() < want {
					if time.Now().After(deadline) {
						b.Fatalf("%d of %d ticks arrived", total(), want)
					}
					time.Sleep(50 * time.Microsecond)
				}
			}
			for l.Owner("EURUSD") == "" {
				time.Sleep(time.Millisecond)
			}
			sent := 0
			for _, s := range syms { // warm every symbol (warmup_on) before timing
				l.OfferTicks(ticks(s, 10, 0), nil)
				sent += 10
			}
			wait(sent)
			b.ResetTimer()
			for i := range b.N {
				l.OfferTicks(ticks(syms[i%len(syms)], 10, int64(1000+i*10)), nil)
				sent += 10
				if i%512 == 511 {
					wait(sent) // bounded in flight: the queue never overflows
				}
			}
			wait(sent)
		})
	}
}
