package ingest

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/collector/fanout"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/collector/validate"
)

// keepingSink keeps everything NATS is given, as a publisher still holding its queue would.
type keepingSink struct {
	mu      sync.Mutex
	batches []*mdv1.TickBatch
	encoded [][]byte
	symbols []string
	ticks   int
}

func (k *keepingSink) Ticks(b *mdv1.TickBatch, _ []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.batches = append(k.batches, b)
	k.ticks += len(b.TimeMsc)
}
func (k *keepingSink) Bar(*mdv1.Bar) {}

// encodedSink also takes batches as their encoding alone (RawTicksSink).
type encodedSink struct{ keepingSink }

func (e *encodedSink) TicksEncoded(symbol string, n int, raw []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.encoded = append(e.encoded, raw)
	e.symbols = append(e.symbols, symbol)
	e.ticks += n
}

// keepingLink keeps the batches the inference link is offered.
type keepingLink struct {
	mu      sync.Mutex
	batches []*mdv1.TickBatch
}

func (l *keepingLink) OfferTicks(b *mdv1.TickBatch, _ []*typesv1.HopStamp) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches = append(l.batches, b)
}
func (l *keepingLink) OfferBar(*mdv1.Bar) {}

// TestTicksLoaned_whenCallerReusesTheBatch_thenEverySinkKeepsWhatWasAccepted: the bridge decodes
// each frame into the previous frame's columns; subscribers, the inference link and NATS must
// still hold each frame's own ticks, and NATS takes the frame's bytes alone when it can.
func TestTicksLoaned_whenCallerReusesTheBatch_thenEverySinkKeepsWhatWasAccepted(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sink       NATSSink
		subscriber bool
		link       bool
	}{
		// Nobody else keeps the batch: NATS takes the frame's bytes alone, nothing is copied.
		{"encoded sink alone", &encodedSink{}, false, false},
		// Once a copy is made for someone, NATS gets the same copy.
		{"encoded sink and a subscriber", &encodedSink{}, true, false},
		{"encoded sink and the link", &encodedSink{}, false, true},
		{"sink that keeps batches, subscriber and link", &keepingSink{}, true, true},
		{"sink that keeps batches alone", &keepingSink{}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := metrics.New()
			hub := fanout.New(64, fanout.Cut, m)
			var sub *fanout.Subscriber
			if tc.subscriber {
				sub = hub.Subscribe(fanout.Filter{Ticks: true})
				defer sub.Close()
			}
			var link *keepingLink
			var ps PredictSink
			if tc.link {
				link = &keepingLink{}
				ps = link
			}
			p := New(Config{NATSQueue: 64, BarPeriods: []uint32{60}, Validate: validate.Config{AllowUnknownSymbols: true}},
				m, slog.New(slog.DiscardHandler), hub, tc.sink, ps)
			src := p.Source("bridge:1", "bridge")
			loaned := &mdv1.TickBatch{}
			var want []*mdv1.TickBatch
			var wantRaw [][]byte
			for i := range 20 {
				// The caller's one batch, overwritten frame after frame in the same columns.
				loaned.Symbol = "EURUSD"
				loaned.TimeMsc = append(loaned.TimeMsc[:0], int64(1000*i), int64(1000*i+500))
				loaned.Bid = append(loaned.Bid[:0], 1.1+float64(i)/1e4, 1.1+float64(i)/1e4)
				loaned.Ask = append(loaned.Ask[:0], 1.2, 1.2)
				loaned.Sequence = append(loaned.Sequence[:0], uint64(2*i+1), uint64(2*i+2))
				raw, err := proto.Marshal(loaned)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, Clone(loaned))
				wantRaw = append(wantRaw, raw)
				if res := src.TicksLoaned(loaned, raw, nil); res.RejectedTotal != 0 {
					t.Fatalf("frame %d rejected: %+v", i, res.Rejected)
				}
			}
			if err := p.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			time.AfterFunc(5*time.Second, func() { close(stop) })
			for i := range want {
				if sub == nil {
					break
				}
				evs, ok := sub.Next(stop)
				if !ok || len(evs) != 1 || !proto.Equal(evs[0].Ticks, want[i]) {
					t.Fatalf("subscriber's batch %d: %v, want %v", i, evs, want[i])
				}
			}
			if link != nil {
				if len(link.batches) != len(want) {
					t.Fatalf("link got %d batches, want %d", len(link.batches), len(want))
				}
				for i := range want {
					if !proto.Equal(link.batches[i], want[i]) {
						t.Fatalf("link's batch %d: %v, want %v", i, link.batches[i], want[i])
					}
				}
			}
			switch s := tc.sink.(type) {
			case *encodedSink:
				if tc.subscriber || tc.link {
					if len(s.encoded) != 0 || len(s.batches) != len(want) {
						t.Fatalf("NATS got %d encodings and %d batches, want the %d copies made anyway", len(s.encoded), len(s.batches), len(want))
					}
					for i := range want {
						if !proto.Equal(s.batches[i], want[i]) {
							t.Fatalf("NATS batch %d: %v, want %v", i, s.batches[i], want[i])
						}
					}
					break
				}
				if len(s.batches) != 0 || len(s.encoded) != len(want) || s.ticks != 2*len(want) {
					t.Fatalf("NATS got %d batches and %d encodings (%d ticks), want %d encodings", len(s.batches), len(s.encoded), s.ticks, len(want))
				}
				for i := range wantRaw {
					if string(s.encoded[i]) != string(wantRaw[i]) || s.symbols[i] != "EURUSD" {
						t.Fatalf("NATS encoding %d differs", i)
					}
				}
			case *keepingSink:
				if len(s.batches) != len(want) {
					t.Fatalf("NATS got %d batches, want %d", len(s.batches), len(want))
				}
				for i := range want {
					if !proto.Equal(s.batches[i], want[i]) {
						t.Fatalf("NATS batch %d: %v, want %v", i, s.batches[i], want[i])
					}
				}
			}
		})
	}
}
