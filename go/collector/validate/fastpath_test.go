package validate

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// randomBatch is mostly valid, with the occasional bad price, crossed quote, time step back, repeated
// or skipped sequence and one-sided flag, so both paths of Check get exercised.
func randomBatch(r *rand.Rand, now int64, seq *uint64) *mdv1.TickBatch {
	n := 1 + r.IntN(20)
	b := &mdv1.TickBatch{Symbol: "EURUSD"}
	withSeq := r.IntN(5) > 0
	for range n {
		t := now - 5000 + r.Int64N(6000)
		bid := 1.1 + r.Float64()*0.01
		ask := bid + r.Float64()*0.0003
		switch r.IntN(40) {
		case 0:
			bid = math.NaN()
		case 1:
			ask = math.Inf(1)
		case 2:
			bid = 0
		case 3:
			bid, ask = ask, bid-0.001
		case 4:
			ask = -1
		}
		flags := []uint32{0, 2, 4, 6, 6, 6}[r.IntN(6)]
		s := *seq + 1
		switch r.IntN(30) {
		case 0:
			s = *seq // repeated
		case 1:
			s = *seq + 3 // gap
		case 2:
			s = 0
		}
		if s > *seq {
			*seq = s
		}
		b.TimeMsc, b.Bid, b.Ask, b.Flags = append(b.TimeMsc, t), append(b.Bid, bid), append(b.Ask, ask), append(b.Flags, flags)
		if withSeq {
			b.Sequence = append(b.Sequence, s)
		}
	}
	if !withSeq {
		b.Sequence = nil
	}
	if r.IntN(10) == 0 {
		b.Volume = make([]float64, n) // forces the tick-by-tick path
	}
	return b
}

func TestFastPathDecidesExactlyAsTickByTick(t *testing.T) {
	now := clock.UnixMilli()
	for _, cfg := range []Config{{}, {FutureTolerance: time.Second, BackwardsTolerance: 2 * time.Second}, {AllowCrossed: true, BackwardsTolerance: time.Hour}} {
		fast, slow := newValidator(cfg), newValidator(cfg)
		slow.slowOnly = true
		r := rand.New(rand.NewPCG(1, 2))
		var seq uint64
		for i := range 3000 {
			b := randomBatch(r, now, &seq)
			fr, sr := fast.Check(proto.Clone(b).(*mdv1.TickBatch)), slow.Check(proto.Clone(b).(*mdv1.TickBatch))
			if fr.Rejects != sr.Rejects || fr.SequenceGaps != sr.SequenceGaps || fr.RejectedTotal != sr.RejectedTotal ||
				(fr.Accepted == nil) != (sr.Accepted == nil) || (fr.Accepted != nil && !proto.Equal(fr.Accepted, sr.Accepted)) {
				t.Fatalf("config %+v batch %d: fast %+v, tick by tick %+v\nbatch %v", cfg, i, fr, sr, b)
			}
		}
		fs, ss := fast.Snapshot(), slow.Snapshot()
		if fs["EURUSD"].LastTimeMsc != ss["EURUSD"].LastTimeMsc || fs["EURUSD"].LastSequence != ss["EURUSD"].LastSequence {
			t.Fatalf("watermarks differ: %+v vs %+v", fs["EURUSD"], ss["EURUSD"])
		}
	}
}
