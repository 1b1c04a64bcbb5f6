package ingest

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/fanout"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// gatedNATS holds every publish until the test opens the gate, as a NATS server that stopped
// reading would.
type gatedNATS struct {
	gate  chan struct{}
	ticks atomic.Int64
}

func (g *gatedNATS) Ticks(b *mdv1.TickBatch, _ []byte) { <-g.gate; g.ticks.Add(int64(len(b.TimeMsc))) }
func (g *gatedNATS) Bar(*mdv1.Bar)                     { <-g.gate }

func TestTheNATSQueueIsBoundedInBytes_IngestWaitsBeyondIt(t *testing.T) {
	b := &mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{1}, Bid: []float64{1.1}, Ask: []float64{1.2}}
	size := proto.Size(b)
	m := metrics.New()
	sink := &gatedNATS{gate: make(chan struct{})}
	// Room for 1000 batches by count, two by bytes.
	p := New(Config{NATSQueue: 1000, NATSQueueBytes: 2 * size}, m, slog.New(slog.DiscardHandler),
		fanout.New(16, fanout.Conflate, m), sink, nil)
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	src := p.Source("test", "grpc")
	if err := src.Announce(&mdv1.SymbolInfo{Symbol: "EURUSD", Point: 1e-5}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 5 {
			src.Ticks(&mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{int64(i + 1)}, Bid: []float64{1.1}, Ask: []float64{1.2}}, nil)
		}
	}()

	// One batch is in the sink's hands, two wait within the byte bound, the producer waits.
	depth := m.QueueDepth.WithLabelValues("nats")
	testkit.WaitFor(t, "the queue at its byte bound", 5*time.Second, func() bool { return testutil.ToFloat64(depth) == 2 })
	select {
	case <-done:
		t.Fatal("ingest did not wait at the byte bound")
	case <-time.After(50 * time.Millisecond):
	}
	close(sink.gate)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ingest still waits after NATS drained")
	}
	testkit.WaitFor(t, "every batch published", 5*time.Second, func() bool { return sink.ticks.Load() == 5 })
}
