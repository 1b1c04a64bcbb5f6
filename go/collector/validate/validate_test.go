package validate

import (
	"math"
	"testing"
	"time"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

var clock = time.UnixMilli(1_577_898_000_000) // 2020-01-01 17:00 UTC

func newValidator(cfg Config) *Validator {
	v := New(cfg, func() time.Time { return clock })
	_ = v.Announce(&mdv1.SymbolInfo{Symbol: "EURUSD", Digits: 5, Point: 1e-5})
	return v
}

func one(t int64, bid, ask float64, flags uint32, seq uint64) *mdv1.TickBatch {
	return &mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{t}, Bid: []float64{bid}, Ask: []float64{ask},
		Flags: []uint32{flags}, Sequence: []uint64{seq}}
}

func TestCheckRejectsEachBadTickForItsReason(t *testing.T) {
	now := clock.UnixMilli()
	cases := []struct {
		name  string
		cfg   Config
		prior *mdv1.TickBatch // accepted first, to set the symbol's watermarks
		batch *mdv1.TickBatch
		want  Reason
	}{
		{"valid quote passes", Config{}, nil, one(now, 1.1, 1.2, 6, 1), 0},
		{"NaN bid", Config{}, nil, one(now, math.NaN(), 1.2, 6, 1), mdv1.TickRejectReason_TICK_REJECT_REASON_NON_FINITE_PRICE},
		{"infinite ask", Config{}, nil, one(now, 1.1, math.Inf(1), 6, 1), mdv1.TickRejectReason_TICK_REJECT_REASON_NON_FINITE_PRICE},
		{"zero bid flagged present", Config{}, nil, one(now, 0, 1.2, 6, 1), mdv1.TickRejectReason_TICK_REJECT_REASON_NON_POSITIVE_PRICE},
		{"negative ask without flags", Config{}, nil, one(now, 1.1, -1, 0, 1), mdv1.TickRejectReason_TICK_REJECT_REASON_NON_POSITIVE_PRICE},
		{"zero bid on an ask-only update passes", Config{}, nil, one(now, 0, 1.2, FlagAsk, 1), 0},
		{"crossed quote", Config{}, nil, one(now, 1.3, 1.2, 6, 1), mdv1.TickRejectReason_TICK_REJECT_REASON_CROSSED_QUOTE},
		{"crossed quote allowed by config", Config{AllowCrossed: true}, nil, one(now, 1.3, 1.2, 6, 1), 0},
		{"unknown symbol", Config{}, nil, &mdv1.TickBatch{Symbol: "XAUUSD", TimeMsc: []int64{now}, Bid: []float64{1}, Ask: []float64{2}},
			mdv1.TickRejectReason_TICK_REJECT_REASON_UNKNOWN_SYMBOL},
		{"future beyond tolerance", Config{FutureTolerance: time.Second}, nil, one(now+1001, 1.1, 1.2, 6, 1), mdv1.TickRejectReason_TICK_REJECT_REASON_FUTURE_TIMESTAMP},
		{"future within tolerance", Config{FutureTolerance: time.Second}, nil, one(now+1000, 1.1, 1.2, 6, 1), 0},
		{"backwards beyond tolerance", Config{BackwardsTolerance: 100 * time.Millisecond}, one(now, 1.1, 1.2, 6, 1), one(now-101, 1.1, 1.2, 6, 2),
			mdv1.TickRejectReason_TICK_REJECT_REASON_TIME_WENT_BACKWARDS},
		{"backwards within tolerance", Config{BackwardsTolerance: 100 * time.Millisecond}, one(now, 1.1, 1.2, 6, 1), one(now-100, 1.1, 1.2, 6, 2), 0},
		{"duplicate sequence", Config{}, one(now, 1.1, 1.2, 6, 5), one(now, 1.1, 1.2, 6, 5), mdv1.TickRejectReason_TICK_REJECT_REASON_DUPLICATE_SEQUENCE},
		{"columns differ", Config{}, nil, &mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{now, now}, Bid: []float64{1.1}, Ask: []float64{1.2, 1.2}},
			mdv1.TickRejectReason_TICK_REJECT_REASON_MALFORMED_BATCH},
		{"no symbol", Config{}, nil, &mdv1.TickBatch{TimeMsc: []int64{now}, Bid: []float64{1.1}, Ask: []float64{1.2}},
			mdv1.TickRejectReason_TICK_REJECT_REASON_MALFORMED_BATCH},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newValidator(tc.cfg)
			if tc.prior != nil {
				if r := v.Check(tc.prior); r.RejectedTotal != 0 {
					t.Fatalf("prior batch rejected: %+v", r.Rejected)
				}
			}
			r := v.Check(tc.batch)
			if tc.want == 0 {
				if r.RejectedTotal != 0 || r.Accepted == nil {
					t.Fatalf("want accepted, got rejects %+v", r.Rejected)
				}
				return
			}
			if r.Accepted != nil || r.Rejects[tc.want] == 0 || len(r.Rejected) == 0 || r.Rejected[0].Reason != tc.want {
				t.Fatalf("want rejected for %v, got accepted=%v rejects=%v %+v", tc.want, r.Accepted, r.Rejects, r.Rejected)
			}
		})
	}
}

func TestCheckKeepsValidTicksOfAPartlyBadBatchInOrder(t *testing.T) {
	v := newValidator(Config{})
	now := clock.UnixMilli()
	b := &mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{now - 3, now - 2, now - 1, now},
		Bid: []float64{1.1, math.NaN(), 1.3, 1.25}, Ask: []float64{1.2, 1.2, 1.2, 1.3},
		Last: []float64{0, 0, 0, 0}, Flags: []uint32{6, 6, 6, 6}, Sequence: []uint64{1, 2, 3, 4}}
	r := v.Check(b)
	if r.RejectedTotal != 2 || r.Rejected[0].Index != 1 || r.Rejected[1].Index != 2 {
		t.Fatalf("want ticks 1 (NaN) and 2 (crossed) rejected, got %+v", r.Rejected)
	}
	a := r.Accepted
	if len(a.TimeMsc) != 2 || a.Bid[0] != 1.1 || a.Bid[1] != 1.25 || a.Sequence[1] != 4 || len(a.Last) != 2 || len(a.Volume) != 0 {
		t.Fatalf("accepted subset wrong: %+v", a)
	}
	// Sequences 5 and 6 never arrive: the next accepted tick reports them missing.
	r2 := v.Check(one(now, 1.1, 1.2, 6, 7))
	if r2.SequenceGaps != 2 {
		t.Fatalf("want 2 ticks missing between sequence 4 and 7, got %d", r2.SequenceGaps)
	}
}

func TestRestoreKeepsWatermarksAndAnnouncements(t *testing.T) {
	v := newValidator(Config{})
	now := clock.UnixMilli()
	v.Check(one(now, 1.1, 1.2, 6, 10))
	w := New(Config{}, func() time.Time { return clock })
	if err := w.Restore(v.Snapshot()); err != nil {
		t.Fatal(err)
	}
	if !w.Known("EURUSD") {
		t.Fatal("restored validator forgot the announced symbol")
	}
	if r := w.Check(one(now, 1.1, 1.2, 6, 10)); r.Rejects[mdv1.TickRejectReason_TICK_REJECT_REASON_DUPLICATE_SEQUENCE] != 1 {
		t.Fatalf("restored validator accepted an old sequence: %+v", r.Rejected)
	}
}

func TestReasonNameIsShortSnakeCase(t *testing.T) {
	if got := ReasonName(mdv1.TickRejectReason_TICK_REJECT_REASON_CROSSED_QUOTE); got != "crossed_quote" {
		t.Fatalf("got %q", got)
	}
}
