package market

import (
	"sync/atomic"
	"time"
)

// Clock is the market clock (--clock=market, ADR 0095): the latest market time seen in quotes and
// signals, in microseconds since the Unix epoch, never going back. The engine runs on it in a
// Strategy Tester run (the tester's virtual time) and in replays, so journal times, order times,
// risk throttles and signal ages follow the data, not the machine. Before the first market time it
// reads the system clock.
type Clock struct {
	us atomic.Int64
}

// Advance moves the clock to us if that is later than its time.
func (c *Clock) Advance(us int64) {
	for {
		cur := c.us.Load()
		if us <= cur || c.us.CompareAndSwap(cur, us) {
			return
		}
	}
}

// Now is the clock's time (engine.Options.Clock).
func (c *Clock) Now() int64 {
	if v := c.us.Load(); v != 0 {
		return v
	}
	return time.Now().UnixMicro()
}
