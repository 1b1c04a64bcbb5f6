package bars

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"google.golang.org/protobuf/proto"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
)

// expected computes bars independently of Builder: group all ticks by interval, then aggregate each
// group (a batch computation, where Builder is incremental).
func expected(ticks []ticksdata.Tick, periodS uint32) []*mdv1.Bar {
	pms := int64(periodS) * 1000
	groups := map[int64][]ticksdata.Tick{}
	for _, t := range ticks {
		k := int64(math.Floor(float64(t.TimeMsc)/float64(pms))) * pms
		groups[k] = append(groups[k], t)
	}
	keys := make([]int64, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	var out []*mdv1.Bar
	for _, k := range keys {
		g := groups[k]
		b := &mdv1.Bar{Symbol: "EURUSD", PeriodS: periodS, OpenTimeMsc: k, Open: g[0].Bid, Close: g[len(g)-1].Bid,
			High: math.Inf(-1), Low: math.Inf(1), TickVolume: uint64(len(g))}
		var sum, mx float64
		mx = math.Inf(-1)
		for _, t := range g {
			b.High, b.Low = math.Max(b.High, t.Bid), math.Min(b.Low, t.Bid)
			sum += t.Ask - t.Bid
			mx = math.Max(mx, t.Ask-t.Bid)
		}
		b.SpreadMean = sum / float64(len(g))
		b.SpreadPoints = int32(math.RoundToEven(mx / 1e-5))
		out = append(out, b)
	}
	return out
}

func TestBarsFromRealTicksMatchAnIndependentBatchComputation(t *testing.T) {
	ticks, err := ticksdata.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, period := range []uint32{60, 300, 3600} {
		t.Run(Timeframe(period), func(t *testing.T) {
			b := NewBuilder("EURUSD", period, 1e-5)
			var got []*mdv1.Bar
			for _, tk := range ticks {
				if bar, ok := b.Add(tk.TimeMsc, tk.Bid, tk.Ask, 0); ok {
					got = append(got, bar)
				}
			}
			if bar, ok := b.Flush(); ok {
				got = append(got, bar)
			}
			// The batch path (what ingest uses) must give the very same bars.
			bb := NewBuilder("EURUSD", period, 1e-5)
			var batched []*mdv1.Bar
			for i := 0; i < len(ticks); i += 100 {
				var ts []int64
				var bids, asks []float64
				for _, tk := range ticks[i:min(i+100, len(ticks))] {
					ts, bids, asks = append(ts, tk.TimeMsc), append(bids, tk.Bid), append(asks, tk.Ask)
				}
				batched = bb.AddBatch(ts, bids, asks, nil, batched)
			}
			if bar, ok := bb.Flush(); ok {
				batched = append(batched, bar)
			}
			if len(batched) != len(got) {
				t.Fatalf("AddBatch made %d bars, Add %d", len(batched), len(got))
			}
			for i := range got {
				if !proto.Equal(batched[i], got[i]) {
					t.Fatalf("bar %d: AddBatch %v, Add %v", i, batched[i], got[i])
				}
			}
			want := expected(ticks, period)
			if len(got) != len(want) {
				t.Fatalf("%d bars, want %d", len(got), len(want))
			}
			var total uint64
			for i := range want {
				g, w := got[i], want[i]
				total += g.TickVolume
				if g.OpenTimeMsc != w.OpenTimeMsc || g.Open != w.Open || g.High != w.High || g.Low != w.Low || g.Close != w.Close ||
					g.TickVolume != w.TickVolume || g.SpreadPoints != w.SpreadPoints || math.Abs(g.SpreadMean-w.SpreadMean) > 1e-12 {
					t.Fatalf("bar %d:\n got  %v\n want %v", i, g, w)
				}
				if g.OpenTimeMsc%(int64(period)*1000) != 0 {
					t.Fatalf("bar %d opens at %d, not a multiple of the period", i, g.OpenTimeMsc)
				}
			}
			if total != uint64(len(ticks)) {
				t.Fatalf("bars hold %d ticks, want all %d", total, len(ticks))
			}
		})
	}
}

func TestBarsSkipEmptyIntervalsAndEmitEachBarOnce(t *testing.T) {
	b := NewBuilder("EURUSD", 60, 1e-5)
	adds := []struct {
		t        int64
		bid, ask float64
	}{{60_000, 1.0, 1.00002}, {61_000, 1.2, 1.20001}, {59_000, 9, 9.1}, {300_500, 1.1, 1.10003}, {420_000, 1.3, 1.3}}
	var got []*mdv1.Bar
	for _, a := range adds {
		if bar, ok := b.Add(a.t, a.bid, a.ask, 0); ok {
			got = append(got, bar)
		}
	}
	if len(got) != 2 || got[0].OpenTimeMsc != 60_000 || got[1].OpenTimeMsc != 300_000 {
		t.Fatalf("want bars at 60s and 300s (gap in between produces none), got %v", got)
	}
	if got[0].TickVolume != 2 || got[0].High != 1.2 || got[0].Close != 1.2 || got[0].SpreadPoints != 2 || b.Late != 1 {
		t.Fatalf("first bar %v, late %d: want 2 ticks, high 1.2, spread 2 points, the 59s tick late", got[0], b.Late)
	}
	// Ticks resent for an emitted interval (reconnect, restart) are late, never a second bar.
	b2 := NewBuilder("EURUSD", 60, 1e-5)
	b2.Restore(b.Snapshot())
	if _, ok := b2.Add(300_900, 1, 1.1, 0); ok {
		t.Fatal("a resent tick re-opened an emitted bar")
	}
	if bar, ok := b2.Flush(); !ok || bar.OpenTimeMsc != 420_000 || bar.TickVolume != 1 {
		t.Fatalf("restored builder lost its open bar: %v", bar)
	}
	if _, ok := b2.Add(420_100, 1, 1.1, 0); ok || b2.Late != 2 {
		t.Fatalf("after a flush the same interval must not open again (late %d)", b2.Late)
	}
}

func TestTimeframeNamesAndParsing(t *testing.T) {
	for _, c := range []struct {
		s    string
		want uint32
		name string
	}{{"M1", 60, "M1"}, {"m5", 300, "M5"}, {"H1", 3600, "H1"}, {"D1", 86400, "D1"}, {"W1", 604800, "W1"}, {"S30", 30, "S30"}, {"90", 90, "S90"}, {"120", 120, "M2"}} {
		got, err := ParsePeriod(c.s)
		if err != nil || got != c.want || Timeframe(got) != c.name {
			t.Errorf("ParsePeriod(%q) = %d, %v (name %q); want %d %q", c.s, got, err, Timeframe(got), c.want, c.name)
		}
	}
	for _, bad := range []string{"", "M0", "X1", "-5", "M"} {
		if _, err := ParsePeriod(bad); err == nil {
			t.Errorf("ParsePeriod(%q) accepted", bad)
		}
	}
}

// addRef is the reference for the batch paths: Add tick by tick, one-sided ticks skipped.
func addRef(b *Builder, times []int64, bids, asks, vols []float64, closed []*mdv1.Bar) []*mdv1.Bar {
	for i, t := range times {
		if bids[i] <= 0 || asks[i] <= 0 {
			continue
		}
		if bar, ok := b.Add(t, bids[i], asks[i], vols[i]); ok {
			closed = append(closed, bar)
		}
	}
	return closed
}

// TestAddBatchAll_whenTicksOutOfOrderAndOneSided_thenAsAddTickByTick: the batch path gives the same
// bars, in builder order, the same Late counts and the same builder state as Add tick by tick, on
// real ticks with late, resent, one-sided and volume-carrying ticks mixed in, in batches of any size:
// for the default periods (runs read once for all builders), periods that do not nest, a busier
// replay (runs that span whole batches), and for sets AddBatchAll goes through builder by builder
// (more than four builders, a period twice).
func TestAddBatchAll_whenTicksOutOfOrderAndOneSided_thenAsAddTickByTick(t *testing.T) {
	for _, tc := range []struct {
		name     string
		periods  []uint32
		compress int64
	}{
		{"default periods", []uint32{60, 300, 900, 3600}, 1},
		{"default periods, 10x busier", []uint32{60, 300, 900, 3600}, 10},
		{"periods that do not nest", []uint32{90, 60, 3600}, 1},
		{"one builder", []uint32{300}, 1},
		{"five builders", []uint32{60, 120, 300, 900, 3600}, 1},
		{"a period twice", []uint32{60, 300, 60}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) { checkAddBatchAll(t, tc.periods, tc.compress) })
	}
}

func checkAddBatchAll(t *testing.T, periods []uint32, compress int64) {
	t.Helper()
	ticks, err := ticksdata.Load()
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	n := len(ticks)
	times, bids, asks, vols := make([]int64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	t0 := ticks[0].TimeMsc
	for i, tk := range ticks {
		times[i], bids[i], asks[i], vols[i] = t0+(tk.TimeMsc-t0)/compress, tk.Bid, tk.Ask, r.Float64()*5
		switch r.IntN(40) {
		case 0: // late by up to 20 minutes
			times[i] -= int64(r.IntN(1_200_000))
		case 1: // one-sided
			bids[i] = 0
		case 2:
			asks[i] = -1
		case 3, 4: // on the minute: the first tick of a bar, or one a window ending there must leave out
			times[i] -= times[i] % 60_000
		}
	}
	mk := func() []*Builder {
		var bs []*Builder
		for _, p := range periods {
			bs = append(bs, NewBuilder("EURUSD", p, 1e-5))
		}
		return bs
	}
	var ref, all []*Builder
	var wantLate, gotLate uint64
	var bars int
	// Each size starts from fresh builders, then the last pass replays the same ticks on the same
	// builders: all of them are resent ones then.
	for pass, size := range []int{1, 7, 100, 333, 100} {
		if pass < 4 {
			ref, all = mk(), mk()
		}
		for i := 0; i < n; i += size {
			j := min(i+size, n)
			var want, got []*mdv1.Bar
			for _, b := range ref {
				late := b.Late
				want = addRef(b, times[i:j], bids[i:j], asks[i:j], vols[i:j], want)
				wantLate += b.Late - late
			}
			var late uint64
			got, late = AddBatchAll(all, times[i:j], bids[i:j], asks[i:j], vols[i:j], got)
			gotLate += late
			if len(got) != len(want) {
				t.Fatalf("size %d at %d: %d bars, Add tick by tick %d", size, i, len(got), len(want))
			}
			for k := range want {
				// proto.Equal would take a NaN for a NaN; the bits must match anyway.
				if !proto.Equal(got[k], want[k]) || math.Float64bits(got[k].SpreadMean) != math.Float64bits(want[k].SpreadMean) ||
					math.Float64bits(got[k].RealVolume) != math.Float64bits(want[k].RealVolume) {
					t.Fatalf("size %d at %d, bar %d: %v, want %v", size, i, k, got[k], want[k])
				}
			}
			bars += len(got)
		}
	}
	if gotLate != wantLate || wantLate == 0 || bars == 0 {
		t.Fatalf("late %d, want %d (> 0); %d bars", gotLate, wantLate, bars)
	}
	for k := range ref {
		if ref[k].Snapshot() != all[k].Snapshot() {
			t.Fatalf("builder %d state %+v, want %+v", k, all[k].Snapshot(), ref[k].Snapshot())
		}
	}
}

// BenchmarkAddBatchAll is the four default periods over 100-tick batches of the real ticks (about
// four bars close per batch: the file is a quiet day), against Add tick by tick.
func BenchmarkAddBatchAll(b *testing.B) {
	ticks, err := ticksdata.Load()
	if err != nil {
		b.Fatal(err)
	}
	span := ticks[len(ticks)-1].TimeMsc - ticks[0].TimeMsc + 60_000
	const laps = 4
	n := laps * len(ticks)
	times, bids, asks, vols := make([]int64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for k := range n {
		tk := ticks[k%len(ticks)]
		times[k], bids[k], asks[k] = tk.TimeMsc+int64(k/len(ticks))*span, tk.Bid, tk.Ask
	}
	for _, batch := range []bool{true, false} {
		name := "batch"
		if !batch {
			name = "tick_by_tick"
		}
		b.Run(name, func(b *testing.B) {
			bs := []*Builder{NewBuilder("EURUSD", 60, 0), NewBuilder("EURUSD", 300, 0), NewBuilder("EURUSD", 900, 0), NewBuilder("EURUSD", 3600, 0)}
			var closed []*mdv1.Bar
			i := 0
			for b.Loop() {
				if i+100 > n { // the next lap of the same ticks: start the builders again
					i = 0
					for k, bb := range bs {
						bs[k] = NewBuilder("EURUSD", bb.Period, 0)
					}
				}
				j := i + 100
				if batch {
					closed, _ = AddBatchAll(bs, times[i:j], bids[i:j], asks[i:j], nil, closed[:0])
				} else {
					closed = closed[:0]
					for _, bb := range bs {
						closed = addRef(bb, times[i:j], bids[i:j], asks[i:j], vols[i:j], closed)
					}
				}
				i = j
			}
		})
	}
}

// TestAddBatchAll_whenPricesAreNaNOrInfinite_thenAsAddBatchBuilderByBuilder: validation lets no
// such price through, but the shared runs must not differ from AddBatch on them either (AddBatch's
// comparisons skip a NaN; Add's max and min would keep it, so AddBatch is the reference here).
func TestAddBatchAll_whenPricesAreNaNOrInfinite_thenAsAddBatchBuilderByBuilder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	odd := []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, 1e-300, 1e300}
	periods := []uint32{60, 300, 900, 3600}
	var ref, all []*Builder
	for _, p := range periods {
		ref, all = append(ref, NewBuilder("X", p, 1e-5)), append(all, NewBuilder("X", p, 1e-5))
	}
	tm := int64(1_577_836_800_000)
	for round := range 2000 {
		n := 1 + r.IntN(120)
		times, bids, asks, vols := make([]int64, n), make([]float64, n), make([]float64, n), make([]float64, n)
		for i := range n {
			tm += int64(r.IntN(5000))
			times[i], bids[i], vols[i] = tm, 1.1+r.NormFloat64()*1e-3, r.Float64()
			asks[i] = bids[i] + r.NormFloat64()*2e-4 // crossed too: negative spreads
			if r.IntN(10) == 0 {
				bids[i] = odd[r.IntN(len(odd))]
			}
			if r.IntN(10) == 0 {
				asks[i] = odd[r.IntN(len(odd))]
			}
		}
		var want, got []*mdv1.Bar
		for _, b := range ref {
			want = b.AddBatch(times, bids, asks, vols, want)
		}
		got, _ = AddBatchAll(all, times, bids, asks, vols, got)
		if len(got) != len(want) {
			t.Fatalf("round %d: %d bars, AddBatch %d", round, len(got), len(want))
		}
		for k := range want {
			if !proto.Equal(got[k], want[k]) {
				t.Fatalf("round %d, bar %d: %v, want %v", round, k, got[k], want[k])
			}
		}
		for k := range ref {
			g, w := all[k].Snapshot(), ref[k].Snapshot()
			if !sameBits(g.H, w.H) || !sameBits(g.L, w.L) || !sameBits(g.SpreadMax, w.SpreadMax) ||
				!sameBits(g.SpreadSum, w.SpreadSum) || !sameBits(g.C, w.C) || g.N != w.N {
				t.Fatalf("round %d, builder %d: state %+v, want %+v", round, k, g, w)
			}
		}
	}
}

func sameBits(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }
