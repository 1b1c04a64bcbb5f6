// Reconciliation: the journal's state against the venue's snapshot, before trading resumes.

package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/internal/fault"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// VenuePosition is one symbol's net position as the venue reports it.
type VenuePosition struct {
	Symbol   string
	Net      decimal.D
	AvgPrice decimal.D
	// HasStops says the venue reports the position's stop loss and take profit (MT5 does; zero is
	// none), which reconciliation then adopts.
	HasStops   bool
	StopLoss   decimal.D
	TakeProfit decimal.D
}

// VenueOrder is one working order at the venue.
type VenueOrder struct {
	ClientOrderID string
	VenueOrderID  string
}

// Snapshot is the venue's view used to reconcile.
type Snapshot struct {
	Positions []VenuePosition
	Orders    []VenueOrder
	Account   risk.Account
}

// Reconcile compares the journal's state with the venue's snapshot, adopts the venue's truth where
// they differ (counting each difference), and only then leaves HALTED for the last journaled state
// (or the initial state on a fresh journal). A nil snapshot means the venue's state is the journal's
// (the paper venue), which converges at once after the venue took back the open orders.
func (e *Engine) Reconcile(ctx context.Context, snap *Snapshot) error {
	e.mu.Lock()
	now := e.opt.Clock()
	var entries []journal.Entry
	if snap == nil {
		if rs, ok := e.opt.Venue.(venue.Restorer); ok && e.reconciles == 0 {
			var open []*fsm.Order
			for _, r := range e.sortedOpen() {
				open = append(open, r.o)
			}
			entries = e.applyEvents(rs.Restore(open), entries, now)
		}
		if e.reconciles == 0 {
			for sym := range e.prot {
				e.watchLocked(sym) // a watching venue works the journal's stops again
			}
		}
		entries = e.accountLocked(entries)
	} else {
		entries = e.reconcileSnapshot(snap, entries, now)
	}
	fault.Point("during-reconcile") // the venue's answers applied in memory, nothing journaled yet
	e.reconciles++
	e.opt.Risk.SetReconciled(true)
	target := e.opt.InitialState
	if e.hasState {
		target = e.lastState
	}
	prev := e.opt.Risk.SetState(target)
	e.lastState, e.hasState = target, true
	entries = append(entries, e.stateEntry(target, fmt.Sprintf("reconciled with the %s venue (was %s)", e.opt.Venue.Name(), prev), now))
	e.setStateGauge()
	t, err := e.append(now, entries)
	e.mu.Unlock()
	e.log.Info("reconciled", "venue", e.opt.Venue.Name(), "state", target.String())
	if err != nil {
		return err
	}
	return e.wait(ctx, t)
}

func (e *Engine) reconcileSnapshot(snap *Snapshot, entries []journal.Entry, now int64) []journal.Entry {
	working := make(map[string]VenueOrder, len(snap.Orders))
	for _, vo := range snap.Orders {
		if vo.ClientOrderID != "" {
			working[vo.ClientOrderID] = vo
		}
	}
	for _, r := range e.sortedOpen() {
		vo, ok := working[r.o.ClientOrderID]
		switch {
		case ok && r.o.Status == fsm.Submitted:
			entries = e.applyEvents([]venue.Event{{Kind: venue.Accepted, ClientOrderID: r.o.ClientOrderID, VenueOrderID: vo.VenueOrderID}}, entries, now)
		case ok:
		default:
			// Queries for in-flight orders were answered before the snapshot was taken; an order
			// the venue does not work any more is done.
			e.adjust("order_not_working")
			entries = e.applyEvents([]venue.Event{{Kind: venue.Canceled, ClientOrderID: r.o.ClientOrderID, Reason: "not working at the venue at reconciliation"}}, entries, now)
		}
		delete(working, r.o.ClientOrderID)
	}
	for id := range working {
		if _, known := e.orders[id]; !known {
			e.adjust("unknown_venue_order")
			e.log.Warn("working order at the venue unknown to the journal", "client_order_id", id)
		}
	}
	venuePos := make(map[string]VenuePosition)
	for _, vp := range snap.Positions {
		cur := venuePos[vp.Symbol]
		cur.Symbol = vp.Symbol
		cur.Net = cur.Net.Add(vp.Net)
		cur.AvgPrice = vp.AvgPrice
		if vp.HasStops { // several positions of a symbol (hedging): the last one's stops
			cur.HasStops, cur.StopLoss, cur.TakeProfit = true, vp.StopLoss, vp.TakeProfit
		}
		venuePos[vp.Symbol] = cur
	}
	adopted, held := 0, map[string]bool{}
	for _, p := range e.opt.Book.All() {
		held[p.Symbol] = true
		if _, ok := e.opt.Risk.Instrument(p.Symbol); !ok {
			adopted++
		}
		if _, ok := venuePos[p.Symbol]; !ok && !p.Net.IsZero() {
			venuePos[p.Symbol] = VenuePosition{Symbol: p.Symbol}
		}
	}
	// A symbol neither configured nor in the book is adopted while fewer than MaxAdoptedSymbols are:
	// each stays in the book and in the P&L series for good, so a venue cannot grow them without bound.
	var refused []string
	for _, sym := range slices.Sorted(maps.Keys(venuePos)) {
		if _, ok := e.opt.Risk.Instrument(sym); ok || held[sym] {
			continue
		}
		if adopted < MaxAdoptedSymbols {
			adopted++
			continue
		}
		delete(venuePos, sym)
		refused = append(refused, sym)
	}
	if len(refused) > 0 {
		if e.m != nil {
			e.m.ReconcileRefused.Add(float64(len(refused)))
		}
		e.log.Warn("venue reports positions in more unconfigured symbols than the engine adopts; those refused stay out of the book, risk and P&L",
			"refused", len(refused), "first_refused", refused[0], "max", MaxAdoptedSymbols)
	}
	for sym, vp := range venuePos {
		// The broker holds the stops: what it reports is what protects the position (a flat one has none).
		theirs := protection{vp.StopLoss, vp.TakeProfit}
		if vp.Net.IsZero() {
			theirs = protection{}
		}
		if (vp.HasStops || vp.Net.IsZero()) && !theirs.same(e.prot[sym]) {
			e.adjust("protection")
			e.log.Warn("position's stops differ from the venue; adopting the venue's", "symbol", sym,
				"journal_stop_loss", e.prot[sym].sl.String(), "venue_stop_loss", vp.StopLoss.String(),
				"journal_take_profit", e.prot[sym].tp.String(), "venue_take_profit", vp.TakeProfit.String())
			entries = e.setProtectionLocked(sym, theirs, "reconciled with the venue", entries, now)
		}
		mine := e.opt.Book.Get(sym)
		if mine.Net.Equal(vp.Net) {
			continue
		}
		e.adjust("position")
		e.log.Warn("position differs from the venue; adopting the venue's", "symbol", sym, "journal", mine.Net.String(), "venue", vp.Net.String())
		e.opt.Book.Restore(portfolio.Position{Symbol: sym, Net: vp.Net, AvgPrice: vp.AvgPrice, Realized: mine.Realized, OpenedUS: now, UpdatedUS: now})
	}
	if snap.Account.Valid {
		entries = e.onAccountLocked(snap.Account, entries, now)
	}
	return entries
}

// MaxAdoptedSymbols bounds the symbols reconciliation adopts into the book that are not configured
// instruments (those are bounded by the configuration): beyond it a venue-reported symbol is refused.
const MaxAdoptedSymbols = 4096

// adjustKinds are the reconcile adjustment labels (initialised to 0 at start).
var adjustKinds = []string{"order_not_working", "position", "unknown_venue_order", "protection"}

func (e *Engine) adjust(kind string) {
	if e.m != nil {
		e.m.ReconcileAdjust.WithLabelValues(kind).Inc()
	}
}

// Unreconcile drops back to NOT_RECONCILED (the venue link was lost): no new orders until the next
// reconciliation. The trading state itself is kept, to be restored.
func (e *Engine) Unreconcile(reason string) {
	e.mu.Lock()
	e.opt.Risk.SetReconciled(false)
	e.setStateGauge()
	e.mu.Unlock()
	e.log.Warn("venue link lost; orders refused until reconciled", "reason", reason)
}
