// Submission: an order intent through risk, the state machine, the journal and the venue.

package engine

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// SubmitResult is what Submit returns.
type SubmitResult struct {
	Order     *execv1.Order
	Duplicate bool
}

// Settle waits until an order a submission left in the journal's queue is durable, and returns the
// submission's outcome (a journal failure fails the engine, as Submit's own wait does). It must be
// called exactly once.
type Settle func(ctx context.Context) error

// Submit runs one order intent through risk, the state machine, the journal and the venue. The
// request must have passed Validate. It returns once everything about the order so far is durable.
func (e *Engine) Submit(ctx context.Context, req *execv1.SubmitOrderRequest, rreq *risk.Request, hops []*typesv1.HopStamp) (SubmitResult, error) {
	res, settle, err := e.submit(ctx, req, rreq, hops)
	if err == nil && settle != nil {
		err = settle(ctx)
	}
	return res, err
}

// submit is Submit, except that the last wait for durability is handed back as settle when there is
// one (nil otherwise): the order has been decided, sent and applied in memory, its entries are in the
// journal's queue, and nothing about it has been acknowledged. A caller that goes on deciding (the
// signal policy, ADR 0116) settles it later, so the orders decided meanwhile are committed together
// instead of one flush each. A write-ahead venue's command is still made durable before it is sent,
// inside submit.
func (e *Engine) submit(ctx context.Context, req *execv1.SubmitOrderRequest, rreq *risk.Request, hops []*typesv1.HopStamp) (SubmitResult, Settle, error) {
	start := time.Now()
	observe := func() { e.m.Observe(metrics.StageSubmit, time.Since(start)) }
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		observe()
		return SubmitResult{}, nil, ErrShuttingDown
	}
	r, ok := e.orders[req.GetClientOrderId()]
	if !ok {
		ev, found, inMemory, err := e.findEvictedLocked(ctx, req.GetClientOrderId())
		switch {
		case inMemory:
			r, ok = e.orders[req.GetClientOrderId()]
		case err != nil || found:
			e.mu.Unlock()
			observe()
			if err != nil {
				return SubmitResult{}, nil, err
			}
			res, err := evictedDuplicate(ev, req)
			return res, nil, err
		}
	}
	if ok {
		same := proto.Equal(r.req, req)
		desc := fmt.Sprintf("%s %s %s", r.o.Side, r.o.Quantity, r.o.Symbol)
		e.mu.Unlock()
		if !same {
			observe()
			return SubmitResult{}, nil, fmt.Errorf("%w: %q is %s", ErrAlreadyExists, req.GetClientOrderId(), desc)
		}
		res, err := e.duplicate(ctx, r)
		observe()
		return res, nil, err
	}
	if e.jerr != nil {
		err := e.jerr
		e.mu.Unlock()
		observe()
		return SubmitResult{}, nil, err
	}
	now := e.opt.Clock()
	if rreq.StopLoss.IsZero() {
		if sd := dec(req.GetStopDistance()); sd.Sign() > 0 {
			rreq.StopLoss = e.stopFromDistanceLocked(rreq, sd)
		}
	}
	riskStart := time.Now()
	den := e.opt.Risk.Check(rreq, now)
	e.m.Observe(metrics.StageRisk, time.Since(riskStart))
	if den != nil {
		// The denial budget: past it a denied submission leaves nothing behind (no order, no
		// journal entry, its client order id still free), so denials cannot grow memory and the
		// journal faster than the budget allows.
		if ok, wait := e.opt.Risk.RecordDenial(rreq, now); !ok {
			e.mu.Unlock()
			if e.m != nil {
				e.m.DenialsRefused.WithLabelValues(den.Reason.String()).Inc()
			}
			observe()
			return SubmitResult{}, nil, &TooManyDenialsError{Denial: *den, Limit: e.opt.Risk.Limits().DenialRate, RetryAfter: time.Duration(wait) * time.Microsecond}
		}
	}
	o := &fsm.Order{
		ClientOrderID: rreq.ClientOrderID, Symbol: rreq.Symbol, Side: rreq.Side, Type: rreq.Type,
		TIF: defaultTIF(fsm.TimeInForce(req.GetTimeInForce()), rreq.Type), Quantity: rreq.Quantity, Price: rreq.Price,
		TriggerPrice: rreq.TriggerPrice, ReduceOnly: rreq.ReduceOnly, StrategyID: rreq.StrategyID,
		ModelName: req.GetModelName(), ModelVersion: req.GetModelVersion(), Venue: e.opt.Venue.Name(),
		ExpireTimeUS: req.GetExpireTimeUs(), CreatedUS: now, UpdatedUS: now, Status: fsm.Initialized,
		FilledQty: decimal.New(0, rreq.Quantity.Scale()), StopLoss: rreq.StopLoss, TakeProfit: rreq.TakeProfit,
	}
	r = &record{o: o, req: req, hops: append(hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_RISK_DONE, TimeUs: e.opt.Clock()}), done: make(chan struct{})}
	finish := func(res SubmitResult, err error) (SubmitResult, Settle, error) {
		r.err = err
		close(r.done)
		observe()
		return res, nil, err
	}
	// later hands back the wait for the order's last entries (ticket t); finish settles it.
	later := func(res SubmitResult, t journal.Ticket) (SubmitResult, Settle, error) {
		return res, func(ctx context.Context) error {
			_, _, err := finish(res, e.wait(ctx, t))
			return err
		}, nil
	}
	e.addLocked(r)
	entries := make([]journal.Entry, 0, 6)
	entries = append(entries, anyEntry(journal.KindCommand, o.ClientOrderID, req))
	if den != nil {
		_ = o.Apply(fsm.EvDeny, now)
		o.DenyReason, o.DenyMessage = uint8(den.Reason), den.Message
		e.opt.Risk.RememberClientID(o.ClientOrderID)
		e.setStatus(o, fsm.StatusUnspecified)
		if e.m != nil {
			e.m.Denials.WithLabelValues(den.Reason.String()).Inc()
		}
		entries = append(entries,
			anyEntry(journal.KindRisk, o.ClientOrderID, &execv1.RiskDenial{Reason: execv1.RiskDenyReason(den.Reason), Message: den.Message}),
			e.reportEntry(execv1.ReportType_REPORT_TYPE_DENIED, r, nil, den.Message, now))
		t, err := e.append(now, entries)
		out := OrderProto(o)
		e.mu.Unlock()
		if err != nil {
			return finish(SubmitResult{Order: out}, err)
		}
		return later(SubmitResult{Order: out}, t)
	}
	e.opt.Risk.Accepted(rreq, now)
	_ = o.Apply(fsm.EvSubmit, now)
	e.setStatus(o, fsm.StatusUnspecified)
	e.opt.Risk.Track(o)
	cmd := e.opt.Venue.Request(venue.Place, o)
	r.hops = append(r.hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_VENUE_SEND, TimeUs: e.opt.Clock()})
	entries = append(entries, journal.Entry{Kind: journal.KindRisk, Key: o.ClientOrderID, Payload: riskPassed})
	if e.opt.Venue.WriteAhead() {
		entries = append(entries, anyEntry(journal.KindVenueRequest, o.ClientOrderID, cmd.Payload))
	}
	entries = append(entries, e.reportEntry(execv1.ReportType_REPORT_TYPE_SUBMITTED, r, nil, "", now))
	if e.m != nil {
		e.m.OrdersSubmitted.WithLabelValues(o.Venue, o.Symbol).Inc()
	}
	if e.opt.Venue.WriteAhead() {
		// The command must be durable before it leaves the process: after a crash the journal
		// says it may have been sent, and reconciliation asks the venue instead of sending again.
		t, err := e.append(now, entries)
		e.mu.Unlock()
		if err == nil {
			err = e.wait(ctx, t)
		}
		e.mu.Lock()
		if err != nil {
			// Not durable, so never sent: the order must not stay SUBMITTED in memory.
			e.notSentLocked(r, err)
			e.mu.Unlock()
			return finish(SubmitResult{}, err)
		}
		entries = entries[:0]
	}
	sendStart := time.Now()
	r.sent = e.opt.Clock()
	evs, err := e.opt.Venue.Send(cmd, o)
	e.m.Observe(metrics.StageVenueSend, time.Since(sendStart))
	if err != nil {
		evs = append(evs, venue.Event{Kind: venue.Rejected, ClientOrderID: o.ClientOrderID, Reason: "venue: " + err.Error()})
	}
	entries = e.applyEvents(evs, entries, e.opt.Clock())
	entries = e.accountLocked(entries)
	t, err := e.append(now, entries)
	out := OrderProto(o)
	e.mu.Unlock()
	if err != nil {
		return finish(SubmitResult{Order: out}, err)
	}
	return later(SubmitResult{Order: out}, t)
}

// duplicate answers a repeated submission of r's order once the first submission has finished:
// with the order as it is then, or with the first submission's error. An order is never reported
// as a duplicate before it is durable, so an OK always names an order a restart still knows.
func (e *Engine) duplicate(ctx context.Context, r *record) (SubmitResult, error) {
	if r.done != nil {
		select {
		case <-r.done:
		case <-ctx.Done():
			return SubmitResult{}, ctx.Err()
		}
		if r.err != nil {
			return SubmitResult{}, r.err
		}
	}
	e.mu.Lock()
	o := OrderProto(r.o)
	e.mu.Unlock()
	return SubmitResult{Order: o, Duplicate: true}, nil
}

// evictedDuplicate answers a submission whose client order id belongs to an order dropped from
// memory, as duplicate() does for one in memory: the same request is a duplicate of that order,
// another is ALREADY_EXISTS.
func evictedDuplicate(ev evictedOrder, req *execv1.SubmitOrderRequest) (SubmitResult, error) {
	if ev.req != nil && proto.Equal(ev.req, req) {
		return SubmitResult{Order: ev.order, Duplicate: true}, nil
	}
	o := orderFromProto(ev.order)
	return SubmitResult{}, fmt.Errorf("%w: %q is %s %s %s", ErrAlreadyExists, req.GetClientOrderId(), o.Side, o.Quantity, o.Symbol)
}

// notSentLocked settles an order whose write-ahead batch did not become durable: it never reached
// the venue, so it is REJECTED (reason naming the journal), not left SUBMITTED and working. A
// restart does not know it (or, if the write landed after all, reconciliation finds it not working
// at the venue and cancels it).
func (e *Engine) notSentLocked(r *record, err error) {
	o := r.o
	from := o.Status
	o.RejectReason = "not sent: " + err.Error()
	if o.Apply(fsm.EvReject, e.opt.Clock()) == nil {
		e.setStatus(o, from)
		e.opt.Risk.Track(o)
	}
}

// stopFromDistanceLocked turns a stop distance into a stop loss price: that far from the order's
// reference price (limit price, trigger price, or the touch a market order trades at), rounded
// to the symbol's digits away from it. Zero when there is no reference (no quote yet).
func (e *Engine) stopFromDistanceLocked(r *risk.Request, dist decimal.D) decimal.D {
	inst, ok := e.opt.Risk.Instrument(r.Symbol)
	if !ok {
		return decimal.Zero
	}
	ref := r.Price
	switch r.Type {
	case fsm.StopMarket:
		ref = r.TriggerPrice
	case fsm.Market:
		q, ok := e.opt.Risk.Quote(r.Symbol)
		if !ok || !q.Valid() {
			return decimal.Zero
		}
		ref = q.Ask
		if r.Side == fsm.Sell {
			ref = q.Bid
		}
	}
	return market.StopLevel(ref, dist, r.Side == fsm.Buy, inst.Digits)
}

func defaultTIF(t fsm.TimeInForce, typ fsm.Type) fsm.TimeInForce {
	if t != fsm.TIFUnspecified {
		return t
	}
	if typ == fsm.Market {
		return fsm.IOC
	}
	return fsm.GTC
}

// SubmitIntent validates and submits an order built inside the service (the signal policy).
func (e *Engine) SubmitIntent(ctx context.Context, req *execv1.SubmitOrderRequest, hops []*typesv1.HopStamp) (*execv1.Order, error) {
	o, settle, err := e.SubmitIntentLater(ctx, req, hops)
	if err == nil && settle != nil {
		err = settle(ctx)
	}
	return o, err
}

// SubmitIntentLater is SubmitIntent that hands back the last wait for durability (see submit): the
// order is decided and sent when it returns, acknowledged to nobody until settle returns nil. settle
// is nil when nothing is left to wait for (the order was refused before the journal took it).
func (e *Engine) SubmitIntentLater(ctx context.Context, req *execv1.SubmitOrderRequest, hops []*typesv1.HopStamp) (*execv1.Order, func(context.Context) error, error) {
	rreq, bad := Validate(req, e.Instrument, e.Now())
	if bad != nil {
		return nil, nil, bad
	}
	res, settle, err := e.submit(ctx, req, rreq, hops)
	return res.Order, settle, err
}
