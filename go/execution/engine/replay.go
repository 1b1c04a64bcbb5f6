package engine

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// ReplayStats says what a replay restored.
type ReplayStats struct {
	Entries uint64
	Orders  int
	Open    int
	Fills   int
	LastSeq uint64
}

// Replay rebuilds orders, fills, positions, used client order ids and the last trading state from
// the journal. The trading state stays HALTED (not reconciled) until Reconcile.
func (e *Engine) Replay(ctx context.Context) (ReplayStats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var st ReplayStats
	rep := &execv1.ExecutionReport{}
	rp, _ := e.opt.Venue.(venue.Replayer)
	err := e.opt.Journal.Read(ctx, 0, 0, func(en journal.Entry) error {
		st.Entries++
		st.LastSeq = en.Seq
		switch en.Kind {
		case journal.KindReport:
			rep.Reset()
			if err := proto.Unmarshal(en.Payload, rep); err != nil {
				return fmt.Errorf("journal entry %d: %w", en.Seq, err)
			}
			e.replayReport(rep, &st)
		case journal.KindCommand, journal.KindVenueRequest, journal.KindVenueResponse:
			var a anypb.Any
			if err := proto.Unmarshal(en.Payload, &a); err != nil {
				return fmt.Errorf("journal entry %d: %w", en.Seq, err)
			}
			m, err := a.UnmarshalNew()
			if err != nil {
				return fmt.Errorf("journal entry %d: %w", en.Seq, err)
			}
			switch en.Kind {
			case journal.KindCommand:
				if req, ok := m.(*execv1.SubmitOrderRequest); ok {
					if r, ok := e.orders[req.GetClientOrderId()]; ok {
						r.req = req
					} else {
						// The report follows in the same batch; keep the request until then.
						e.orders[req.GetClientOrderId()] = &record{req: req}
					}
				}
			case journal.KindVenueRequest:
				if rp != nil {
					rp.ReplayRequest(m)
				}
			case journal.KindVenueResponse:
				if rp != nil {
					rp.ReplayResponse(en.Key, m)
				}
			}
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	for id, r := range e.orders {
		if r.o == nil {
			// A command without a report means the batch was torn; nothing about it was acknowledged.
			delete(e.orders, id)
			continue
		}
		st.Orders++
		e.opt.Risk.RememberClientID(id)
		e.setStatus(r.o, fsm.StatusUnspecified)
		if r.o.Status.Open() {
			st.Open++
			e.opt.Risk.Track(r.o)
		}
	}
	e.setStateGauge()
	return st, nil
}

func (e *Engine) replayReport(rep *execv1.ExecutionReport, st *ReplayStats) {
	if rep.GetType() == execv1.ReportType_REPORT_TYPE_TRADING_STATE_CHANGED {
		e.lastState, e.hasState = risk.State(rep.GetTradingState()), true
		return
	}
	p := rep.GetOrder()
	if p == nil {
		return
	}
	r, ok := e.orders[p.GetClientOrderId()]
	if !ok || r.o == nil {
		if !ok {
			r = &record{}
			e.orders[p.GetClientOrderId()] = r
		}
		r.o = orderFromProto(p)
		r.hops = rep.GetHops()
		e.created = append(e.created, r)
	} else {
		prev := r.o.Status
		updateFromProto(r.o, p)
		if r.o.Status == fsm.PendingCancel || r.o.Status == fsm.PendingUpdate {
			r.o.SetPrevious(prev)
		}
	}
	if f := rep.GetFill(); f != nil {
		if _, dup := e.trades[f.GetTradeId()]; !dup {
			e.trades[f.GetTradeId()] = p.GetClientOrderId()
			r.o.RestoreTrades([]string{f.GetTradeId()})
			if inst, ok := e.opt.Risk.Instrument(p.GetSymbol()); ok {
				qty := dec(f.GetQuantity())
				if f.GetSide() == execv1.OrderSide_ORDER_SIDE_SELL {
					qty = qty.Neg()
				}
				e.opt.Book.ApplyFill(inst, qty, dec(f.GetPrice()), dec(f.GetCommission()), f.GetTimeUs())
			}
			st.Fills++
		}
	}
}

// VenuePosition is one symbol's net position as the venue reports it.
type VenuePosition struct {
	Symbol   string
	Net      decimal.D
	AvgPrice decimal.D
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
		entries = e.accountLocked(entries)
	} else {
		entries = e.reconcileSnapshot(snap, entries, now)
	}
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
	return e.wait(t)
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
		venuePos[vp.Symbol] = cur
	}
	for _, p := range e.opt.Book.All() {
		if _, ok := venuePos[p.Symbol]; !ok && !p.Net.IsZero() {
			venuePos[p.Symbol] = VenuePosition{Symbol: p.Symbol}
		}
	}
	for sym, vp := range venuePos {
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

// adjustKinds are the reconcile adjustment labels (initialised to 0 at start).
var adjustKinds = []string{"order_not_working", "position", "unknown_venue_order"}

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
