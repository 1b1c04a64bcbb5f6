// Modification: a working order's price, trigger price, stop loss, take profit or quantity,
// through the modification risk checks, PENDING_UPDATE and the venue.

package engine

import (
	"context"
	"fmt"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// ModifyResult is what Modify returns: the order after the request and, when risk refused the
// modification, the denial (the order is then unchanged and nothing was sent).
type ModifyResult struct {
	Order  *execv1.Order
	Denial *risk.Denial
}

// Modify requests a change of a working order. Fields of req left unset keep their value. It
// returns once the request (and, on a venue that answers at once, its outcome) is durable; the
// order is PENDING_UPDATE until the venue answers (Updated applies the new values, UpdateRejected
// drops them).
func (e *Engine) Modify(ctx context.Context, req *execv1.ModifyOrderRequest) (ModifyResult, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ModifyResult{}, ErrShuttingDown
	}
	if e.jerr != nil {
		err := e.jerr
		e.mu.Unlock()
		return ModifyResult{}, err
	}
	r, ok := e.orders[req.GetClientOrderId()]
	if !ok {
		err := e.notInMemoryLocked(ctx, req.GetClientOrderId(), ErrNotModifiable)
		e.mu.Unlock()
		return ModifyResult{}, err
	}
	o := r.o
	if err := e.modifiableLocked(o); err != nil {
		e.mu.Unlock()
		return ModifyResult{}, err
	}
	a, bad := e.amendOf(o, req)
	if bad != nil {
		e.mu.Unlock()
		return ModifyResult{}, bad
	}
	now := e.opt.Clock()
	entries := []journal.Entry{anyEntry(journal.KindCommand, o.ClientOrderID, req)}
	if den := e.opt.Risk.CheckModify(o, a, now); den != nil {
		if e.m != nil {
			e.m.Denials.WithLabelValues(den.Reason.String()).Inc()
		}
		entries = append(entries,
			anyEntry(journal.KindRisk, o.ClientOrderID, &execv1.RiskDenial{Reason: execv1.RiskDenyReason(den.Reason), Message: den.Message}),
			e.reportEntry(execv1.ReportType_REPORT_TYPE_UPDATE_REJECTED, r, nil, "modification denied: "+den.Error(), now))
		t, err := e.append(now, entries)
		out := OrderProto(o)
		e.mu.Unlock()
		if err == nil {
			err = e.wait(ctx, t)
		}
		return ModifyResult{Order: out, Denial: den}, err
	}
	e.opt.Risk.Modified(now)
	from := o.Status
	_ = o.Apply(fsm.EvPendingUpdate, now)
	e.setStatus(o, from)
	o.Pending = &a
	cmd := e.opt.Venue.Request(venue.Modify, o)
	entries = append(entries, journal.Entry{Kind: journal.KindRisk, Key: o.ClientOrderID, Payload: riskPassed})
	if e.opt.Venue.WriteAhead() {
		entries = append(entries, anyEntry(journal.KindVenueRequest, o.ClientOrderID, cmd.Payload))
	}
	entries = append(entries, e.reportEntry(execv1.ReportType_REPORT_TYPE_PENDING_UPDATE, r, nil, amendText(o, a), now))
	t, err := e.append(now, entries)
	if err != nil {
		e.mu.Unlock()
		return ModifyResult{}, err
	}
	if e.opt.Venue.WriteAhead() {
		e.mu.Unlock()
		if err := e.wait(ctx, t); err != nil {
			// Not durable, so never sent: the order goes back to what it was.
			e.mu.Lock()
			if o.Status == fsm.PendingUpdate && o.Pending != nil {
				from := o.Status
				_ = o.Apply(fsm.EvUpdateReject, e.opt.Clock())
				o.Pending = nil
				e.setStatus(o, from)
			}
			e.mu.Unlock()
			return ModifyResult{}, err
		}
		e.mu.Lock()
		t = journal.Ticket{}
	}
	// The command journaled is the one sent, unless the order is done meanwhile (a fill completed
	// it): then there is nothing left to modify and the pending values go.
	var after []journal.Entry
	if o.Status.Open() && o.Pending != nil {
		evs, serr := e.opt.Venue.Send(cmd, o)
		if serr != nil {
			evs = append(evs, venue.Event{Kind: venue.UpdateRejected, ClientOrderID: o.ClientOrderID, Reason: "venue: " + serr.Error()})
		}
		after = e.applyEvents(evs, after, e.opt.Clock())
	} else {
		o.Pending = nil
	}
	t2, err := e.append(now, after)
	out := OrderProto(o)
	e.mu.Unlock()
	if err != nil {
		return ModifyResult{}, err
	}
	if err := e.wait(ctx, t); err != nil {
		return ModifyResult{}, err
	}
	return ModifyResult{Order: out}, e.wait(ctx, t2)
}

// modifiableLocked says why o cannot be modified now: it is not working, a modification or cancel
// is already pending, or it is a market order (nothing rests to modify).
func (e *Engine) modifiableLocked(o *fsm.Order) error {
	switch {
	case !o.Status.Open():
		return fmt.Errorf("%w: %s is %s", ErrNotModifiable, o.ClientOrderID, o.Status)
	case o.Status == fsm.PendingUpdate || o.Status == fsm.PendingCancel:
		return fmt.Errorf("%w: %s is %s; wait for the venue's answer", ErrNotModifiable, o.ClientOrderID, o.Status)
	case o.Type == fsm.Market:
		return fmt.Errorf("%w: %s is a market order", ErrNotModifiable, o.ClientOrderID)
	case !fsm.Allowed(o.Status, fsm.EvPendingUpdate):
		return fmt.Errorf("%w: %s is %s", ErrNotModifiable, o.ClientOrderID, o.Status)
	}
	return nil
}

// amendOf builds the amended values from the order and the request: fields the order type does
// not have, a quantity change on a venue that cannot amend quantities, bad decimals and a request
// that changes nothing are invalid arguments.
func (e *Engine) amendOf(o *fsm.Order, req *execv1.ModifyOrderRequest) (fsm.Amend, *InvalidError) {
	a := o.AmendOf()
	var bad []Violation
	add := func(f, format string, args ...any) { bad = append(bad, Violation{f, fmt.Sprintf(format, args...)}) }
	inst, _ := e.opt.Risk.Instrument(o.Symbol)
	set := func(field string, p *typesv1.Decimal, dst *decimal.D, allowed bool, positive bool) {
		if p == nil {
			return
		}
		if !allowed {
			add(field, "a %s order has no %s", typeName(o.Type), field)
			return
		}
		n := len(bad)
		d := stopField(add, field, p, inst)
		switch {
		case len(bad) > n:
		case positive && d.Sign() <= 0:
			add(field, "must be positive")
		default:
			*dst = d
		}
	}
	hasPrice := o.Type == fsm.Limit || o.Type == fsm.StopLimit
	hasTrigger := o.Type == fsm.StopMarket || o.Type == fsm.StopLimit
	if q := req.GetQuantity(); q != nil {
		amends, _ := e.opt.Venue.(venue.QuantityAmender)
		if amends == nil || !amends.AmendsQuantity() {
			add("quantity", "the %s venue cannot change an order's quantity; cancel it and submit a new one", e.opt.Venue.Name())
		} else if d, err := decimal.FromProto(q); err != nil {
			add("quantity", "%v", err)
		} else {
			a.Quantity = d
		}
	}
	set("price", req.GetPrice(), &a.Price, hasPrice, true)
	set("trigger_price", req.GetTriggerPrice(), &a.TriggerPrice, hasTrigger, true)
	set("stop_loss", req.GetStopLoss(), &a.StopLoss, true, false)
	set("take_profit", req.GetTakeProfit(), &a.TakeProfit, true, false)
	if len(bad) == 0 && sameAmend(a, o.AmendOf()) {
		add("client_order_id", "the request changes nothing on %s", o.ClientOrderID)
	}
	if len(bad) > 0 {
		return a, &InvalidError{bad}
	}
	return a, nil
}

func sameAmend(a, b fsm.Amend) bool {
	return a.Quantity.Equal(b.Quantity) && a.Price.Equal(b.Price) && a.TriggerPrice.Equal(b.TriggerPrice) &&
		a.StopLoss.Equal(b.StopLoss) && a.TakeProfit.Equal(b.TakeProfit)
}

func typeName(t fsm.Type) string {
	return [...]string{"unspecified", "market", "limit", "stop-market", "stop-limit"}[min(int(t), 4)]
}

// amendText says what a modification changes, for the PENDING_UPDATE report.
func amendText(o *fsm.Order, a fsm.Amend) string {
	s := "modify"
	for _, c := range []struct {
		name     string
		old, new decimal.D
	}{{"quantity", o.Quantity, a.Quantity}, {"price", o.Price, a.Price}, {"trigger_price", o.TriggerPrice, a.TriggerPrice},
		{"stop_loss", o.StopLoss, a.StopLoss}, {"take_profit", o.TakeProfit, a.TakeProfit}} {
		if !c.old.Equal(c.new) {
			s += fmt.Sprintf(" %s %s->%s", c.name, c.old, c.new)
		}
	}
	return s
}
