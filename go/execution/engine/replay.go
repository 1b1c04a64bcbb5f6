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
	// Only now, with every report applied: a report of an order dropped mid-replay would rebuild it.
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

func (e *Engine) replayReport(rep *execv1.ExecutionReport, st *ReplayStats) {
	switch rep.GetType() {
	case execv1.ReportType_REPORT_TYPE_TRADING_STATE_CHANGED:
		e.lastState, e.hasState = risk.State(rep.GetTradingState()), true
		return
	case execv1.ReportType_REPORT_TYPE_POSITION_UPDATED:
		if p := rep.GetPosition(); p != nil {
			pr := protection{dec(p.GetStopLoss()), dec(p.GetTakeProfit())}
			if pr.none() {
				delete(e.prot, p.GetSymbol())
			} else {
				e.prot[p.GetSymbol()] = pr
			}
		}
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
}
