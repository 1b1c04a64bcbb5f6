// Package bars builds closed time bars from ticks by the Kairos bar rule (docs/collector.md, "Bars";
// kairos.features.BarBuilder in Python follows the same rule): a bar of P seconds opens at
// floor(t/P)*P ms, OHLC on the bid, tick_volume counts ticks, spread_mean is the mean of ask-bid,
// spread_points the largest spread in points (round half to even). A bar is emitted once, when a
// tick of a later interval arrives or on Flush; empty intervals produce no bar.
package bars

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
)

// DefaultPoint is used for spread_points when a symbol's point is unknown (5-digit FX).
const DefaultPoint = 1e-5

// Builder aggregates one symbol's ticks into bars of one period. Not safe for concurrent use.
type Builder struct {
	Symbol string
	Period uint32 // seconds
	Point  float64

	periodMs    int64
	open        bool
	openMs      int64
	o, h, l, c  float64
	n           uint64
	spreadSum   float64
	spreadMax   float64
	volume      float64
	lastEmitted int64 // open time of the last emitted bar; ticks at or before it are late
	hasEmitted  bool
	// Late counts ticks that belonged to a bar already open or emitted for a later interval.
	Late uint64
}

// NewBuilder returns a builder for symbol and period (seconds); point <= 0 means DefaultPoint.
func NewBuilder(symbol string, periodS uint32, point float64) *Builder {
	if point <= 0 {
		point = DefaultPoint
	}
	return &Builder{Symbol: symbol, Period: periodS, Point: point, periodMs: int64(periodS) * 1000}
}

// OpenTime returns the open time (ms) of the bar that holds a tick at t ms.
func OpenTime(t int64, periodMs int64) int64 {
	q := t / periodMs
	if t%periodMs < 0 { // floor, not truncation, for times before 1970
		q--
	}
	return q * periodMs
}

// Add adds one tick and returns the bar it closed, if any.
func (b *Builder) Add(t int64, bid, ask, volume float64) (*mdv1.Bar, bool) {
	if b.open && t >= b.openMs && t-b.openMs < b.periodMs {
		// Most ticks land in the open bar: no division needed.
		spread := ask - bid
		b.extend(bid, spread)
		b.c = bid
		b.n++
		b.spreadSum += spread
		b.volume += volume
		return nil, false
	}
	openMs := OpenTime(t, b.periodMs)
	var closed *mdv1.Bar
	if b.open {
		if openMs < b.openMs {
			b.Late++
			return nil, false
		}
		if openMs > b.openMs {
			closed = b.emit()
		}
	}
	if !b.open && b.hasEmitted && openMs <= b.lastEmitted {
		// The interval was already emitted (e.g. resent ticks after a restart): never emit it twice.
		b.Late++
		return closed, closed != nil
	}
	spread := ask - bid
	if !b.open {
		b.open = true
		b.openMs = openMs
		b.o, b.h, b.l = bid, bid, bid
		b.n = 0
		b.spreadSum = 0
		b.spreadMax = spread
		b.volume = 0
	} else {
		b.extend(bid, spread)
	}
	b.c = bid
	b.n++
	b.spreadSum += spread
	b.volume += volume
	return closed, closed != nil
}

// extend takes a tick's bid and spread into the open bar's high, low and largest spread, by the
// comparisons AddBatch makes (a NaN never wins one; the max and min builtins would keep it).
func (b *Builder) extend(bid, spread float64) {
	if bid > b.h {
		b.h = bid
	}
	if bid < b.l {
		b.l = bid
	}
	if spread > b.spreadMax {
		b.spreadMax = spread
	}
}

// AddBatch adds a batch's ticks in order (volume may be nil) and appends the bars they closed to
// closed. Ticks without a positive bid and ask (one-sided updates) are skipped. It is Add in a loop,
// with the common case (a run of ticks inside the open bar) kept in local variables, free of calls.
func (b *Builder) AddBatch(times []int64, bids, asks, volumes []float64, closed []*mdv1.Bar) []*mdv1.Bar {
	bids, asks = bids[:len(times)], asks[:len(times)]
	if volumes != nil {
		volumes = volumes[:len(times)]
	}
	for i := 0; i < len(times); {
		if b.open {
			lo, pms := b.openMs, b.periodMs
			h, l, smax, c, n, ssum, vol := b.h, b.l, b.spreadMax, b.c, b.n, b.spreadSum, b.volume
			j := i
			for ; j < len(times); j++ {
				bid, ask := bids[j], asks[j]
				if !(bid > 0 && ask > 0) { // not "<= 0": a NaN is skipped here as below (validation lets none through)
					continue
				}
				if t := times[j]; t < lo || t-lo >= pms {
					break
				}
				spread := ask - bid
				if bid > h {
					h = bid
				}
				if bid < l {
					l = bid
				}
				if spread > smax {
					smax = spread
				}
				c = bid
				n++
				ssum += spread
				if volumes != nil {
					vol += volumes[j]
				}
			}
			b.h, b.l, b.spreadMax, b.c, b.n, b.spreadSum, b.volume = h, l, smax, c, n, ssum, vol
			if i = j; i == len(times) {
				break
			}
		}
		bid, ask := bids[i], asks[i]
		if bid > 0 && ask > 0 {
			var v float64
			if volumes != nil {
				v = volumes[i]
			}
			if bar, ok := b.Add(times[i], bid, ask, v); ok {
				if cap(closed) == 0 { // room for a few at once: a quiet batch closes several
					closed = make([]*mdv1.Bar, 0, 8)
				}
				closed = append(closed, bar)
			}
		}
		i++
	}
	return closed
}

// AddBatchAll is AddBatch on each of a symbol's builders: the closed bars are appended in builder
// order (all of bs[0]'s, then bs[1]'s, each in time order), late is the ticks newly counted Late over
// all of them. The bars and states are those of AddBatch builder by builder, to the bit.
//
// A run of ticks that lies in every builder's open bar (on a quiet day ~26 ticks between two M1
// closes, on a busy one the whole batch) is read once for all builders (addRun): the high, the low
// and the largest spread are exact and merge into each builder afterwards; the spread and volume sums
// stay each builder's own, added in tick order from its own start (floating-point addition is not
// associative), but as independent chains side by side rather than one builder after another, so
// they cost the adds' throughput instead of their latency. Up to maxShared builders with distinct
// periods (the default is four); more go builder by builder.
func AddBatchAll(bs []*Builder, times []int64, bids, asks, volumes []float64, closed []*mdv1.Bar) (_ []*mdv1.Bar, late uint64) {
	var lateBefore [maxShared]uint64
	if !shareable(bs) {
		for _, b := range bs {
			before := b.Late
			closed = b.AddBatch(times, bids, asks, volumes, closed)
			late += b.Late - before
		}
		return closed, late
	}
	for k, b := range bs {
		lateBefore[k] = b.Late
	}
	bids, asks = bids[:len(times)], asks[:len(times)]
	if volumes != nil {
		volumes = volumes[:len(times)]
	}
	first := len(closed)
	for i := 0; i < len(times); i++ {
		if lo, hi, ok := openWindow(bs); ok {
			if i = addRun(bs, lo, hi, times, bids, asks, volumes, i); i == len(times) {
				break
			}
		}
		// Tick i is outside some builder's open bar (or a builder has none open): tick by tick.
		bid, ask := bids[i], asks[i]
		if !(bid > 0 && ask > 0) {
			continue
		}
		var v float64
		if volumes != nil {
			v = volumes[i]
		}
		for _, b := range bs {
			if bar, ok := b.Add(times[i], bid, ask, v); ok {
				if cap(closed) == 0 { // room for a few at once: a quiet batch closes several
					closed = make([]*mdv1.Bar, 0, 8)
				}
				closed = append(closed, bar)
			}
		}
	}
	// Closed tick by tick, they are in time order across builders: put them in builder order (a
	// stable insertion sort of a handful; periods are distinct, so a bar's period names its builder).
	out := closed[first:]
	for x := 1; x < len(out); x++ {
		bar, k := out[x], builderIndex(bs, out[x].PeriodS)
		y := x
		for ; y > 0 && builderIndex(bs, out[y-1].PeriodS) > k; y-- {
			out[y] = out[y-1]
		}
		out[y] = bar
	}
	for k, b := range bs {
		late += b.Late - lateBefore[k]
	}
	return closed, late
}

// maxShared is the most builders addRun reads a run of ticks for at once (its sums live in registers).
const maxShared = 4

// shareable reports whether AddBatchAll may read runs of ticks once for bs: 1 to maxShared builders
// with distinct periods.
func shareable(bs []*Builder) bool {
	if len(bs) == 0 || len(bs) > maxShared {
		return false
	}
	for i := range bs {
		for j := range i {
			if bs[i].Period == bs[j].Period {
				return false
			}
		}
	}
	return true
}

func builderIndex(bs []*Builder, period uint32) int {
	for k, b := range bs {
		if b.Period == period {
			return k
		}
	}
	return len(bs)
}

// orderKey maps a double's bits to an int64 that orders as the double does (-0 below +0; NaNs at the
// ends): a negative double's lower 63 bits are flipped. It is its own inverse on the bits.
func orderKey(x float64) int64 {
	b := int64(math.Float64bits(x))
	return b ^ (b >> 63 & math.MaxInt64)
}

// openWindow is the times [lo, hi) that lie in every builder's open bar; ok is false when a builder
// has no bar open (or an open bar ends past the largest time).
func openWindow(bs []*Builder) (lo, hi int64, ok bool) {
	lo, hi = math.MinInt64, math.MaxInt64
	for _, b := range bs {
		end := b.openMs + b.periodMs
		if !b.open || end < b.openMs {
			return 0, 0, false
		}
		lo, hi = max(lo, b.openMs), min(hi, end)
	}
	return lo, hi, lo < hi
}

// addRun adds ticks from i on while they lie in [lo, hi), inside every builder's open bar (ticks
// without a positive bid and ask are skipped), and returns the index of the first that does not.
// It is AddBatch's inner loop for up to four builders at once; see AddBatchAll.
func addRun(bs []*Builder, lo, hi int64, times []int64, bids, asks, volumes []float64, i int) int {
	var sums [maxShared]float64
	for k, b := range bs {
		sums[k] = b.spreadSum
	}
	// The run's extremes are taken on the doubles' bits, branch-free: a positive double's bits order
	// as the double does, and any double's do once a negative one's lower 63 bits are flipped
	// (orderKey). New highs and lows come at random in a run; as branches they were mispredicted.
	hb, lb, sk := int64(math.MinInt64), int64(math.MaxInt64), int64(math.MinInt64)
	var c float64
	var n uint64
	s0, s1, s2, s3 := sums[0], sums[1], sums[2], sums[3]
	j := i
	for ; j < len(times); j++ {
		bid, ask := bids[j], asks[j]
		if !(bid > 0 && ask > 0) {
			continue
		}
		if t := times[j]; t < lo || t >= hi {
			break
		}
		spread := ask - bid
		bb := int64(math.Float64bits(bid))
		hb, lb = max(hb, bb), min(lb, bb)
		sk = max(sk, orderKey(spread))
		c = bid
		n++
		s0 += spread
		s1 += spread
		s2 += spread
		s3 += spread
	}
	if n == 0 {
		return j
	}
	h, l := math.Float64frombits(uint64(hb)), math.Float64frombits(uint64(lb))
	smax := math.Float64frombits(uint64(orderKey(math.Float64frombits(uint64(sk)))))
	if s0 != s0 {
		// A NaN bid or spread (or a NaN sum already): its bits may have won above, where AddBatch's
		// comparisons skip a NaN. Compared as AddBatch does, from -Inf and +Inf.
		h, l, smax = math.Inf(-1), math.Inf(1), math.Inf(-1)
		for x := i; x < j; x++ {
			bid, ask := bids[x], asks[x]
			if !(bid > 0 && ask > 0) {
				continue
			}
			if bid > h {
				h = bid
			}
			if bid < l {
				l = bid
			}
			if spread := ask - bid; spread > smax {
				smax = spread
			}
		}
	}
	sums = [maxShared]float64{s0, s1, s2, s3}
	var vols [maxShared]float64
	if volumes != nil {
		for k, b := range bs {
			vols[k] = b.volume
		}
		v0, v1, v2, v3 := vols[0], vols[1], vols[2], vols[3]
		for x := i; x < j; x++ {
			if !(bids[x] > 0 && asks[x] > 0) {
				continue
			}
			v := volumes[x]
			v0 += v
			v1 += v
			v2 += v
			v3 += v
		}
		vols = [maxShared]float64{v0, v1, v2, v3}
	}
	for k, b := range bs {
		if h > b.h {
			b.h = h
		}
		if l < b.l {
			b.l = l
		}
		if smax > b.spreadMax {
			b.spreadMax = smax
		}
		b.c = c
		b.n += n
		b.spreadSum = sums[k]
		if volumes != nil {
			b.volume = vols[k]
		}
	}
	return j
}

// OpenBarTime reports the open time of the bar in progress.
func (b *Builder) OpenBarTime() (int64, bool) { return b.openMs, b.open }

// Flush closes the bar in progress, if any.
func (b *Builder) Flush() (*mdv1.Bar, bool) {
	if !b.open {
		return nil, false
	}
	return b.emit(), true
}

func (b *Builder) emit() *mdv1.Bar {
	bar := &mdv1.Bar{
		Symbol:       b.Symbol,
		PeriodS:      b.Period,
		OpenTimeMsc:  b.openMs,
		Open:         b.o,
		High:         b.h,
		Low:          b.l,
		Close:        b.c,
		TickVolume:   b.n,
		RealVolume:   b.volume,
		SpreadPoints: int32(math.RoundToEven(b.spreadMax / b.Point)),
		SpreadMean:   b.spreadSum / float64(b.n),
	}
	b.open = false
	b.lastEmitted, b.hasEmitted = b.openMs, true
	return bar
}

// State is a builder's resumable state, saved across restarts so no bar is lost or emitted twice.
type State struct {
	Open        bool    `json:"open"`
	OpenMs      int64   `json:"open_ms"`
	O           float64 `json:"o"`
	H           float64 `json:"h"`
	L           float64 `json:"l"`
	C           float64 `json:"c"`
	N           uint64  `json:"n"`
	SpreadSum   float64 `json:"spread_sum"`
	SpreadMax   float64 `json:"spread_max"`
	Volume      float64 `json:"volume"`
	LastEmitted int64   `json:"last_emitted"`
	HasEmitted  bool    `json:"has_emitted"`
}

// Snapshot returns the builder's state.
func (b *Builder) Snapshot() State {
	return State{b.open, b.openMs, b.o, b.h, b.l, b.c, b.n, b.spreadSum, b.spreadMax, b.volume, b.lastEmitted, b.hasEmitted}
}

// Restore replaces the builder's state.
func (b *Builder) Restore(s State) {
	b.open, b.openMs, b.o, b.h, b.l, b.c, b.n = s.Open, s.OpenMs, s.O, s.H, s.L, s.C, s.N
	b.spreadSum, b.spreadMax, b.volume, b.lastEmitted, b.hasEmitted = s.SpreadSum, s.SpreadMax, s.Volume, s.LastEmitted, s.HasEmitted
}

// Timeframe is the MT5 name of a period in seconds: 60 "M1", 3600 "H1", 86400 "D1", 604800 "W1";
// periods that are not whole minutes are "S<n>".
func Timeframe(periodS uint32) string {
	switch {
	case periodS == 0:
		return "S0"
	case periodS%604800 == 0:
		return "W" + strconv.Itoa(int(periodS/604800))
	case periodS%86400 == 0:
		return "D" + strconv.Itoa(int(periodS/86400))
	case periodS%3600 == 0:
		return "H" + strconv.Itoa(int(periodS/3600))
	case periodS%60 == 0:
		return "M" + strconv.Itoa(int(periodS/60))
	default:
		return "S" + strconv.Itoa(int(periodS))
	}
}

// ParsePeriod reads "M1", "H4", "D1", "S30" or a number of seconds.
func ParsePeriod(s string) (uint32, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	if s == "" {
		return 0, fmt.Errorf("empty bar period")
	}
	unit := uint64(1)
	switch s[0] {
	case 'S':
		s = s[1:]
	case 'M':
		unit, s = 60, s[1:]
	case 'H':
		unit, s = 3600, s[1:]
	case 'D':
		unit, s = 86400, s[1:]
	case 'W':
		unit, s = 604800, s[1:]
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || n*unit > math.MaxUint32 {
		return 0, fmt.Errorf("bar period %q: want M1, H4, D1, S30 or seconds", s)
	}
	return uint32(n * unit), nil
}
