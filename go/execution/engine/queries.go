// Queries: orders, positions and state for the service and the signal policy. All read under the
// engine lock and return copies.

package engine

import (
	"context"
	"fmt"
	"sort"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

// Get returns an order; one dropped from memory is read back from the journal (ADR 0125).
func (e *Engine) Get(ctx context.Context, id string) (*execv1.Order, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		if r, ok := e.orders[id]; ok {
			return OrderProto(r.o), nil
		}
		ev, found, inMemory, err := e.findEvictedLocked(ctx, id)
		switch {
		case inMemory:
			continue
		case err != nil:
			return nil, err
		case found:
			return ev.order, nil
		}
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
}

// List returns orders newest first, filtered, from position offset, at most limit; next is the
// offset of the next page or -1.
func (e *Engine) List(symbol string, statuses []fsm.Status, openOnly bool, offset, limit int) ([]*execv1.Order, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*execv1.Order
	seen := 0
	for i := len(e.created) - 1; i >= 0; i-- {
		o := e.created[i].o
		if symbol != "" && o.Symbol != symbol || openOnly && !o.Status.Open() {
			continue
		}
		if len(statuses) > 0 {
			match := false
			for _, s := range statuses {
				match = match || s == o.Status
			}
			if !match {
				continue
			}
		}
		if seen >= offset {
			if len(out) == limit {
				return out, seen
			}
			out = append(out, OrderProto(o))
		}
		seen++
	}
	return out, -1
}

// Positions returns the positions with unrealized P&L at the latest quotes.
func (e *Engine) Positions(symbol string, includeFlat bool) []*execv1.Position {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*execv1.Position
	for _, p := range e.opt.Book.All() {
		if symbol != "" && p.Symbol != symbol || p.Net.IsZero() && (!includeFlat || p.Realized.IsZero()) {
			continue
		}
		u := decimal.New(0, 2)
		if inst, ok := e.opt.Risk.Instrument(p.Symbol); ok {
			if q, ok := e.opt.Risk.Quote(p.Symbol); ok {
				u = portfolio.Unrealized(inst, p, q)
			}
		}
		out = append(out, protected(PositionProto(p, u, e.opt.Currency, e.opt.Venue.Name()), e.prot[p.Symbol]))
	}
	return out
}

// State returns the trading state and whether the venue is reconciled.
func (e *Engine) State() (risk.State, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, _ := e.opt.Risk.State()
	return s, e.opt.Risk.Reconciled()
}

// OpenOrders returns the working orders, oldest first (reconciliation and queries).
func (e *Engine) OpenOrders() []fsm.Order {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []fsm.Order
	for _, r := range e.created {
		if r.o.Status.Open() {
			out = append(out, *r.o)
		}
	}
	return out
}

// sortedOpen returns open records ordered by creation.
func (e *Engine) sortedOpen() []*record {
	var out []*record
	for _, r := range e.created {
		if r.o.Status.Open() {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].o.CreatedUS < out[j].o.CreatedUS })
	return out
}

// PositionState returns the net position of a symbol, when it was opened, and whether an order of
// the symbol is still working (the signal policy waits for it).
func (e *Engine) PositionState(symbol string) (net decimal.D, openedUS int64, working bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.opt.Book.Get(symbol)
	for i := len(e.created) - 1; i >= 0 && i >= len(e.created)-512; i-- {
		if o := e.created[i].o; o.Symbol == symbol && o.Status.Open() {
			working = true
			break
		}
	}
	return p.Net, p.OpenedUS, working
}
