// Cancellation: one order, or every working order of a symbol.

package engine

import (
	"context"
	"fmt"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// Cancel requests cancellation of one order. Cancels are allowed in every trading state; they
// count against the message throttle but are never refused by it.
func (e *Engine) Cancel(ctx context.Context, id string) (*execv1.Order, error) {
	e.mu.Lock()
	r, ok := e.orders[id]
	if !ok {
		err := e.notInMemoryLocked(ctx, id, ErrNotCancelable)
		e.mu.Unlock()
		return nil, err
	}
	now := e.opt.Clock()
	entries, cmd, err := e.cancelLocked(r, now, nil)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	t, err := e.append(now, entries)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if e.opt.Venue.WriteAhead() {
		e.mu.Unlock()
		if err := e.wait(ctx, t); err != nil {
			return nil, err
		}
		e.mu.Lock()
		t = journal.Ticket{}
	}
	// The cancel command is in t's batch already; what the venue answers goes in a batch of its own.
	entries = e.sendCancelLocked(r, cmd, nil)
	t2, err := e.append(now, entries)
	out := OrderProto(r.o)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.wait(ctx, t); err != nil {
		return nil, err
	}
	return out, e.wait(ctx, t2)
}

// cancelLocked moves r's order to PENDING_CANCEL and returns the journal entries and the venue
// command; sendCancelLocked sends that very command (the one journaled), once it is durable.
func (e *Engine) cancelLocked(r *record, now int64, entries []journal.Entry) ([]journal.Entry, venue.Command, error) {
	o := r.o
	if !fsm.Allowed(o.Status, fsm.EvPendingCancel) {
		return nil, venue.Command{}, fmt.Errorf("%w: %s is %s", ErrNotCancelable, o.ClientOrderID, o.Status)
	}
	_ = e.opt.Risk.OnMessage(now)
	from := o.Status
	_ = o.Apply(fsm.EvPendingCancel, now)
	e.setStatus(o, from)
	cmd := e.opt.Venue.Request(venue.Cancel, o)
	entries = append(entries, anyEntry(journal.KindCommand, o.ClientOrderID, &execv1.CancelOrderRequest{ClientOrderId: o.ClientOrderID}))
	if e.opt.Venue.WriteAhead() {
		entries = append(entries, anyEntry(journal.KindVenueRequest, o.ClientOrderID, cmd.Payload))
	}
	return entries, cmd, nil
}

// sendCancelLocked sends cmd, the cancel built and journaled by cancelLocked, unless the order is
// done meanwhile (filled, cancelled, rejected, expired). An order that merely moved while the
// cancel became durable (a partial fill, a late acceptance) still gets it: the venue must not keep
// working an order the client cancelled.
func (e *Engine) sendCancelLocked(r *record, cmd venue.Command, entries []journal.Entry) []journal.Entry {
	o := r.o
	if !o.Status.Open() {
		return entries
	}
	evs, err := e.opt.Venue.Send(cmd, o)
	if err != nil {
		evs = append(evs, venue.Event{Kind: venue.CancelRejected, ClientOrderID: o.ClientOrderID, Reason: "venue: " + err.Error()})
	}
	entries = e.applyEvents(evs, entries, e.opt.Clock())
	return e.accountLocked(entries)
}

// CancelAll requests cancellation of every working order (of one symbol, if given).
func (e *Engine) CancelAll(ctx context.Context, symbol string) ([]string, error) {
	e.mu.Lock()
	now := e.opt.Clock()
	var (
		ids     []string
		recs    []*record
		cmds    []venue.Command
		entries []journal.Entry
	)
	for _, r := range e.created {
		if !r.o.Status.Open() || (symbol != "" && r.o.Symbol != symbol) || r.o.Status == fsm.PendingCancel {
			continue
		}
		var (
			err error
			cmd venue.Command
		)
		entries, cmd, err = e.cancelLocked(r, now, entries)
		if err != nil {
			continue
		}
		ids = append(ids, r.o.ClientOrderID)
		recs = append(recs, r)
		cmds = append(cmds, cmd)
	}
	t, err := e.append(now, entries)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if e.opt.Venue.WriteAhead() && len(recs) > 0 {
		e.mu.Unlock()
		if err := e.wait(ctx, t); err != nil {
			return nil, err
		}
		e.mu.Lock()
		t = journal.Ticket{}
	}
	entries = nil
	for i, r := range recs {
		entries = e.sendCancelLocked(r, cmds[i], entries)
	}
	t2, err := e.append(now, entries)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.wait(ctx, t); err != nil {
		return nil, err
	}
	return ids, e.wait(ctx, t2)
}
