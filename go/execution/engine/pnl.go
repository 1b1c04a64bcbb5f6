// P&L metrics: realized and unrealized per symbol and the account equity.

package engine

import "github.com/kairos-mt5/kairos/go/execution/portfolio"

// PublishPnL sets the P&L gauges: realized and unrealized per configured symbol and the account
// equity. It takes the engine lock briefly; the service calls it on a ticker and after fills, not
// per quote.
func (e *Engine) PublishPnL() {
	if e.m == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.publishPnLLocked()
}

func (e *Engine) publishPnLLocked() {
	if e.m == nil {
		return
	}
	syms := e.opt.Risk.Symbols()
	for _, p := range e.opt.Book.All() {
		if _, ok := e.opt.Risk.Instrument(p.Symbol); !ok {
			syms = append(syms, p.Symbol) // adopted from the venue, not configured: still reported
		}
	}
	for _, sym := range syms {
		p := e.opt.Book.Get(sym)
		u := 0.0
		if !p.Net.IsZero() {
			if inst, ok := e.opt.Risk.Instrument(sym); ok {
				if q, ok := e.opt.Risk.Quote(sym); ok {
					u = portfolio.Unrealized(inst, p, q).Float()
				}
			}
		}
		e.m.RealizedPnL.WithLabelValues(sym).Set(p.Realized.Float())
		e.m.UnrealizedPnL.WithLabelValues(sym).Set(u)
	}
	if a := e.opt.Risk.Account(); a.Valid {
		e.m.Equity.Set(a.Equity.Float())
	}
}
