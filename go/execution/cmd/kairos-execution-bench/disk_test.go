package main

import (
	"testing"
	"time"
)

// probe builds what fdatasyncProbe records for n orders due every millisecond, each written in
// 20 µs and flushed in flush(i), one flush at a time, as the probe's loop runs them.
func probe(n int, flush func(i int) time.Duration) (arrive, begin, end []time.Time) {
	t0 := time.Unix(1_700_000_000, 0)
	arrive, begin, end = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	free := t0
	for i := range n {
		due := t0.Add(time.Duration(i) * time.Millisecond)
		arrive[i] = due
		start := due
		if free.After(start) {
			start = free // the loop is behind: the order arrived on time and waits
		}
		begin[i] = start.Add(20 * time.Microsecond)
		end[i] = begin[i].Add(flush(i))
		free = end[i]
	}
	return arrive, begin, end
}

func TestTheDurableFloorIsTheWriteAndTheFlushOnASteadyDisk(t *testing.T) {
	d := diskRunOf(probe(1000, func(int) time.Duration { return 150 * time.Microsecond }))
	if d.syncP50 != 150 || d.syncP99 != 150 || d.floorP50 != 170 || d.floorP99 != 170 || d.stallPct != 0 {
		t.Fatalf("steady disk: %+v, want flushes of 150 µs, a floor of 170 µs and no stall", d)
	}
}

func TestAStallHoldsEveryOrderThatArrivesDuringIt(t *testing.T) {
	cases := []struct {
		name      string
		stall     time.Duration
		minP99    float64 // µs: the orders behind the stall reach the p99 once they are over 1%
		maxP99    float64
		wantStall float64 // % of the run
	}{
		{"a stall shorter than 1% of the orders", 5 * time.Millisecond, 170, 170, 0.5},
		{"a stall of 3% of the run", 30 * time.Millisecond, 20_000, 22_000, 2.9},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := diskRunOf(probe(1000, func(i int) time.Duration {
				if i == 500 {
					return c.stall
				}
				return 150 * time.Microsecond
			}))
			if d.syncP99 != 150 {
				t.Errorf("flush p99 %v µs: one slow flush in 1,000 is not the p99", d.syncP99)
			}
			if d.floorP99 < c.minP99 || d.floorP99 > c.maxP99 {
				t.Errorf("floor p99 %v µs, want %v-%v", d.floorP99, c.minP99, c.maxP99)
			}
			if d.stallPct < c.wantStall || d.stallPct > c.wantStall+0.5 {
				t.Errorf("stall %.2f%% of the run, want ~%.1f%%", d.stallPct, c.wantStall)
			}
		})
	}
}
