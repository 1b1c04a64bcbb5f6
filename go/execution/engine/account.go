// Account snapshots and the loss breakers they trip.

package engine

import (
	"context"

	"fmt"

	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// accountLocked refreshes a simulated account and runs the loss breakers.
func (e *Engine) accountLocked(entries []journal.Entry) []journal.Entry {
	sim, ok := e.opt.Venue.(venue.AccountSimulator)
	if !ok {
		return entries
	}
	now := e.opt.Clock()
	a := sim.Account(e.opt.Book, e.opt.Risk.Quote, e.opt.Risk.Instrument, now)
	return e.onAccountLocked(a, entries, now)
}

func (e *Engine) onAccountLocked(a risk.Account, entries []journal.Entry, now int64) []journal.Entry {
	if s, cause := e.opt.Risk.OnAccount(a); s != risk.StateUnspecified {
		msg := fmt.Sprintf("%s breaker tripped: daily loss %s, drawdown %s", cause, e.opt.Risk.DailyLoss(), e.opt.Risk.Drawdown())
		e.log.Warn("risk breaker tripped", "state", s.String(), "cause", cause.String(), "reason", msg)
		e.lastState, e.hasState = s, true
		entries = append(entries, e.stateEntry(s, msg, now))
		e.setStateGauge()
	}
	return entries
}

// OnAccount records the venue's account snapshot (MT5) and runs the breakers.
func (e *Engine) OnAccount(a risk.Account) error {
	e.mu.Lock()
	now := e.opt.Clock()
	entries := e.onAccountLocked(a, nil, now)
	t, err := e.append(now, entries)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.wait(context.Background(), t)
}
