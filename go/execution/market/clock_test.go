package market

import (
	"sync"
	"testing"
	"time"
)

func TestMarketClockFollowsTheDataAndNeverGoesBack(t *testing.T) {
	var c Clock
	if now := time.Now().UnixMicro(); c.Now() < now-int64(time.Minute/time.Microsecond) {
		t.Fatalf("before any market time the clock reads %d, want the system clock (%d)", c.Now(), now)
	}
	const t0 = int64(1_330_000_000_000_000) // 2012, the data's time
	c.Advance(t0)
	if c.Now() != t0 {
		t.Fatalf("clock %d, want the market time %d", c.Now(), t0)
	}
	c.Advance(t0 - 1) // an older quote or signal
	if c.Now() != t0 {
		t.Fatalf("clock went back to %d", c.Now())
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 1000 {
				c.Advance(t0 + int64(k*8+i))
			}
		}()
	}
	wg.Wait()
	if want := t0 + 999*8 + 7; c.Now() != want {
		t.Fatalf("clock %d after concurrent advances, want the latest %d", c.Now(), want)
	}
}
