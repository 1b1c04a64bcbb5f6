package engine

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// ReplayStats says what a replay restored.
type ReplayStats struct {
	Entries     uint64
	Orders      int // orders in the journal (each counted at its first report)
	Open        int
	Fills       int
	LastSeq     uint64
	MaxInMemory int // the most orders held at once during the replay (ADR 0125)
}

// Replay rebuilds orders, fills, positions, used client order ids and the last trading state from
// the journal. The trading state stays HALTED (not reconciled) until Reconcile.
func (e *Engine) Replay(ctx context.Context) (ReplayStats, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var st ReplayStats
	// Finished orders past the bound leave memory during the replay too, so a long journal is replayed
	// in the memory the bound allows (ADR 0125). A later report of one (a late fill, a merged
	// commission) brings it back; those are completed from the journal at the end.
	var back []*record
	e.replaying = true
	defer func() { e.replaying = false }()
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
			if r := e.replayReport(rep, &st); r != nil {
				back = append(back, r)
			}
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
				if req, ok := m.(*execv1.ModifyOrderRequest); ok {
					if r, ok := e.orders[req.GetClientOrderId()]; ok && r.o != nil {
						r.o.Pending = replayAmend(r.o, req)
					}
				}
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
		if len(e.created) >= e.trimAt {
			e.trimLocked()
		}
		if len(e.created) > st.MaxInMemory {
			st.MaxInMemory = len(e.created)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	e.replaying = false
	if e.evicted != nil {
		if err := e.completeReturnedLocked(ctx, back); err != nil {
			return st, err
		}
	}
	for id, r := range e.orders {
		if r.o == nil {
			// A command without a report means the batch was torn; nothing about it was acknowledged.
			delete(e.orders, id)
			continue
		}
		e.opt.Risk.RememberClientID(id)
		e.setStatus(r.o, fsm.StatusUnspecified)
		if r.o.Status.Open() {
			st.Open++
			e.opt.Risk.Track(r.o)
		}
	}
	if len(e.created) >= e.trimAt {
		e.trimLocked()
	}
	if e.m != nil {
		e.m.OrdersInMemory.Set(float64(len(e.created)))
	}
	e.setStateGauge()
	return st, nil
}

// replayAmend rebuilds a journaled modification's pending values (it passed validation then).
func replayAmend(o *fsm.Order, req *execv1.ModifyOrderRequest) *fsm.Amend {
	a := o.AmendOf()
	for _, f := range []struct {
		p   *typesv1.Decimal
		dst *decimal.D
	}{{req.GetQuantity(), &a.Quantity}, {req.GetPrice(), &a.Price}, {req.GetTriggerPrice(), &a.TriggerPrice},
		{req.GetStopLoss(), &a.StopLoss}, {req.GetTakeProfit(), &a.TakeProfit}} {
		if f.p != nil {
			*f.dst = dec(f.p)
		}
	}
	return &a
}

// replayReport applies one report; it returns the record of an order that had left memory earlier in
// the replay and that this report brought back (nil otherwise).
func (e *Engine) replayReport(rep *execv1.ExecutionReport, st *ReplayStats) (back *record) {
	switch rep.GetType() {
	case execv1.ReportType_REPORT_TYPE_TRADING_STATE_CHANGED:
		e.lastState, e.hasState = risk.State(rep.GetTradingState()), true
		return nil
	case execv1.ReportType_REPORT_TYPE_POSITION_UPDATED:
		if p := rep.GetPosition(); p != nil {
			pr := protection{dec(p.GetStopLoss()), dec(p.GetTakeProfit())}
			if pr.none() {
				delete(e.prot, p.GetSymbol())
			} else {
				e.prot[p.GetSymbol()] = pr
			}
		}
		return nil
	}
	p := rep.GetOrder()
	if p == nil {
		return nil
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
		if !ok && e.mayBeEvictedLocked(p.GetClientOrderId()) {
			back = r
		} else {
			st.Orders++
		}
	} else {
		prev := r.o.Status
		updateFromProto(r.o, p)
		if (r.o.Status == fsm.PendingCancel || r.o.Status == fsm.PendingUpdate) && prev != fsm.PendingCancel && prev != fsm.PendingUpdate {
			r.o.SetPrevious(prev)
		}
		if rep.GetType() == execv1.ReportType_REPORT_TYPE_UPDATED || rep.GetType() == execv1.ReportType_REPORT_TYPE_UPDATE_REJECTED || !r.o.Status.Open() {
			r.o.Pending = nil
		}
	}
	if f := rep.GetFill(); f != nil {
		if prev, dup := e.trades[f.GetTradeId()]; dup {
			// A merged repeat of the deal: only commission beyond what was booked counts.
			if c := dec(f.GetCommission()); prev.order == p.GetClientOrderId() && prev.commission.Less(c) {
				e.opt.Book.Charge(p.GetSymbol(), c.Sub(prev.commission), f.GetTimeUs())
				e.trades[f.GetTradeId()] = trade{order: prev.order, commission: c}
			}
		} else {
			e.trades[f.GetTradeId()] = trade{order: p.GetClientOrderId(), commission: dec(f.GetCommission())}
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
	return back
}

// completeReturnedLocked finishes the orders a report brought back after they left memory during the
// replay: their request and earlier deals come from the journal, as when a venue event brings one
// back live (restoreEvictedLocked). Then the deals of orders that stayed out leave memory too.
func (e *Engine) completeReturnedLocked(ctx context.Context, back []*record) error {
	for _, r := range back {
		if r.o == nil || e.orders[r.o.ClientOrderID] != r {
			continue // left memory again
		}
		ev, found, err := e.lookupEvicted(ctx, r.o.ClientOrderID)
		if err != nil {
			return err
		}
		if found {
			e.rejoinLocked(r, ev)
		}
	}
	gone := 0
	for id, t := range e.trades {
		if _, ok := e.orders[t.order]; !ok {
			delete(e.trades, id)
			gone++
		}
	}
	if gone > len(e.trades) {
		e.compactLocked() // the deals' map kept the room of every deal replayed
	}
	return nil
}
