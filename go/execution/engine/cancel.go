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
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	now := e.opt.Clock()
	entries, err := e.cancelLocked(r, now, nil)
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
		if err := e.wait(t); err != nil {
			return nil, err
		}
		e.mu.Lock()
		t = journal.Ticket{}
	}
	// The cancel command is in t's batch already; what the venue answers goes in a batch of its own.
	entries = e.sendCancelLocked(r, nil)
	t2, err := e.append(now, entries)
	out := OrderProto(r.o)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.wait(t); err != nil {
		return nil, err
	}
	return out, e.wait(t2)
}

func (e *Engine) cancelLocked(r *record, now int64, entries []journal.Entry) ([]journal.Entry, error) {
	o := r.o
	if !fsm.Allowed(o.Status, fsm.EvPendingCancel) {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotCancelable, o.ClientOrderID, o.Status)
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
	return entries, nil
}

func (e *Engine) sendCancelLocked(r *record, entries []journal.Entry) []journal.Entry {
	o := r.o
	if o.Status != fsm.PendingCancel {
		return entries // the venue answered meanwhile (filled, cancelled)
	}
	cmd := e.opt.Venue.Request(venue.Cancel, o)
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
		entries []journal.Entry
	)
	for _, r := range e.created {
		if !r.o.Status.Open() || (symbol != "" && r.o.Symbol != symbol) || r.o.Status == fsm.PendingCancel {
			continue
		}
		var err error
		entries, err = e.cancelLocked(r, now, entries)
		if err != nil {
			continue
		}
		ids = append(ids, r.o.ClientOrderID)
		recs = append(recs, r)
	}
	t, err := e.append(now, entries)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if e.opt.Venue.WriteAhead() && len(recs) > 0 {
		e.mu.Unlock()
		if err := e.wait(t); err != nil {
			return nil, err
		}
		e.mu.Lock()
		t = journal.Ticket{}
	}
	entries = nil
	for _, r := range recs {
		entries = e.sendCancelLocked(r, entries)
	}
	t2, err := e.append(now, entries)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.wait(t); err != nil {
		return nil, err
	}
	return ids, e.wait(t2)
}
