// Retention: how many orders the engine holds in memory, and how it answers for the ones it dropped
// (ADR 0125). Every working order stays; finished ones (filled, cancelled, rejected, denied,
// expired) are dropped oldest first once more than Options.MaxOrders orders are held. The journal
// keeps them: a dropped order's id goes into a Bloom filter, and an id the filter passes is looked up
// in the journal by its key, so a repeated client order id is still a duplicate (or ALREADY_EXISTS)
// and GetOrder still finds the order, however old.

package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/bits-and-blooms/bloom/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
)

// DefaultMaxOrders is Options.MaxOrders' default: about 150 MB of orders (ADR 0125).
const DefaultMaxOrders = 100_000

// evictedFilterFalsePositives is the evicted-id filter's design false-positive rate: the share of
// fresh ids that cost a journal lookup. Its first filter holds ten times MaxOrders ids; each later
// one twice as many at half the rate, so the rate stays under twice this (droppedIDs).
const evictedFilterFalsePositives = 0.001

// droppedIDs holds the ids of the orders dropped from memory in Bloom filters that grow with them (a
// scalable Bloom filter, Almeida et al. 2007). When the newest filter holds its capacity, a new one
// twice as large at half the false-positive rate takes the next ids; an id is tested against all.
// The rates sum to less than twice the first one's however many ids come. One filter would fill
// past its capacity on a long-running service and pass nearly every fresh id to the journal.
type droppedIDs struct {
	filters  []*bloom.BloomFilter
	capacity uint    // the newest filter's
	rate     float64 // the newest filter's design false-positive rate
	held     uint    // ids in the newest filter
}

func newDroppedIDs(capacity uint, rate float64) *droppedIDs {
	return &droppedIDs{filters: []*bloom.BloomFilter{bloom.NewWithEstimates(capacity, rate)}, capacity: capacity, rate: rate}
}

func (d *droppedIDs) add(id string) {
	if d.held >= d.capacity {
		d.capacity, d.rate, d.held = 2*d.capacity, d.rate/2, 0
		d.filters = append(d.filters, bloom.NewWithEstimates(d.capacity, d.rate))
	}
	d.filters[len(d.filters)-1].AddString(id)
	d.held++
}

// test reports whether id may have been added; false is certain.
func (d *droppedIDs) test(id string) bool {
	for _, f := range d.filters {
		if f.TestString(id) {
			return true
		}
	}
	return false
}

// addLocked puts a new order in memory, dropping finished ones past the bound.
func (e *Engine) addLocked(r *record) {
	e.orders[r.o.ClientOrderID] = r
	e.created = append(e.created, r)
	if len(e.created) >= e.trimAt {
		e.trimLocked()
	}
	if e.m != nil {
		e.m.OrdersInMemory.Set(float64(len(e.created)))
	}
}

// trimLocked drops the oldest finished orders until a tenth of the bound is free again (so the
// scan runs once per MaxOrders/10 new orders, not on every one). Working orders, and orders whose
// submission has not finished (its outcome not yet durable), are never dropped. With too many
// orders working to get under the bound, the next scan waits for another tenth.
func (e *Engine) trimLocked() {
	max := e.opt.MaxOrders
	slack := max / 10
	if slack < 1 {
		slack = 1
	}
	excess := len(e.created) - (max - slack)
	var dropped map[string]bool
	kept := e.created[:0]
	for _, r := range e.created {
		if excess > 0 && e.evictable(r) {
			if dropped == nil {
				dropped = make(map[string]bool, excess)
			}
			id := r.o.ClientOrderID
			dropped[id] = true
			if !e.replaying && e.m != nil {
				e.m.Status(r.o.Status.String()).Dec() // counted while in memory (Replay counts at its end)
			}
			delete(e.orders, id)
			e.opt.Risk.ForgetClientID(id)
			if e.evicted == nil {
				e.evicted = newDroppedIDs(uint(10*max), evictedFilterFalsePositives)
			}
			e.evicted.add(id)
			excess--
			continue
		}
		kept = append(kept, r)
	}
	clear(e.created[len(kept):]) // no dangling records behind the slice's end
	e.created = kept
	if !e.replaying {
		// During a replay a later report may still need a dropped order's deals (a commission
		// merged, a late fill); Replay drops them at its end.
		for id, t := range e.trades {
			if dropped[t.order] {
				delete(e.trades, id)
			}
		}
	}
	if len(dropped) > len(kept) {
		// Go's maps and slices keep the room they grew to: after a replay of a long journal they
		// would hold the buckets of every order it had. Copied, they take what they hold.
		e.compactLocked()
	}
	e.trimAt = len(e.created) + slack
	if e.trimAt < max {
		e.trimAt = max
	}
	if e.m != nil && len(dropped) > 0 {
		e.m.OrdersEvicted.Add(float64(len(dropped)))
		e.m.OrdersInMemory.Set(float64(len(e.created)))
	}
}

// compactLocked copies the orders' maps and slice, and the risk engine's used ids, into ones sized
// for what they hold.
func (e *Engine) compactLocked() {
	e.created = append(make([]*record, 0, len(e.created)+len(e.created)/4), e.created...)
	orders := make(map[string]*record, len(e.orders))
	for id, r := range e.orders {
		orders[id] = r
	}
	e.orders = orders
	trades := make(map[string]trade, len(e.trades))
	for id, t := range e.trades {
		trades[id] = t
	}
	e.trades = trades
	e.opt.Risk.CompactClientIDs()
}

// evictable reports whether r may leave memory: finished, and its submission done.
func (e *Engine) evictable(r *record) bool {
	if r.o == nil || r.o.Status.Open() {
		return false
	}
	if r.done != nil {
		select {
		case <-r.done:
		default:
			return false
		}
	}
	return true
}

// evictedOrder is what the journal holds of an order no longer in memory.
type evictedOrder struct {
	order  *execv1.Order              // as its last report left it
	req    *execv1.SubmitOrderRequest // the submission (nil for protective orders the venue made)
	trades map[string]decimal.D       // its deals: trade id -> commission as last journaled
}

// mayBeEvictedLocked reports whether id may be an order dropped from memory; false is certain.
func (e *Engine) mayBeEvictedLocked(id string) bool {
	return e.evicted != nil && e.evicted.test(id)
}

// lookupEvicted reads an order dropped from memory back from the journal, after mayBeEvictedLocked
// said yes; found is false for the filter's false positives. Requests call it without the engine lock
// (findEvictedLocked); venue events with it (restoreEvictedLocked).
func (e *Engine) lookupEvicted(ctx context.Context, id string) (ev evictedOrder, found bool, err error) {
	if e.opt.Journal == nil {
		return ev, false, nil
	}
	err = e.opt.Journal.ReadKey(ctx, id, func(en journal.Entry) error {
		switch en.Kind {
		case journal.KindReport:
			rep := &execv1.ExecutionReport{}
			if err := proto.Unmarshal(en.Payload, rep); err != nil {
				return fmt.Errorf("journal entry %d: %w", en.Seq, err)
			}
			if o := rep.GetOrder(); o.GetClientOrderId() == id {
				ev.order = o
				if f := rep.GetFill(); f != nil {
					if ev.trades == nil {
						ev.trades = make(map[string]decimal.D, 1)
					}
					// A later report of the same deal carries its merged commission.
					ev.trades[f.GetTradeId()] = dec(f.GetCommission())
				}
			}
		case journal.KindCommand:
			var a anypb.Any
			if err := proto.Unmarshal(en.Payload, &a); err != nil {
				return fmt.Errorf("journal entry %d: %w", en.Seq, err)
			}
			if a.MessageIs((*execv1.SubmitOrderRequest)(nil)) {
				req := &execv1.SubmitOrderRequest{}
				if err := a.UnmarshalTo(req); err != nil {
					return fmt.Errorf("journal entry %d: %w", en.Seq, err)
				}
				ev.req = req
			}
		}
		return nil
	})
	if err != nil {
		return ev, false, errors.Join(ErrJournal, fmt.Errorf("looking up %q: %w", id, err))
	}
	found = ev.order != nil
	if e.m != nil {
		result := "absent"
		if found {
			result = "found"
		}
		e.m.EvictedLookups.WithLabelValues(result).Inc()
	}
	return ev, found, nil
}

// findEvicted is the lookup for a caller that holds the engine lock and wants an order by id that is
// not in memory: it releases the lock for the journal read and takes it again. inMemory is true when
// the id turned up in memory meanwhile (a concurrent submission); the caller then looks again.
func (e *Engine) findEvictedLocked(ctx context.Context, id string) (ev evictedOrder, found, inMemory bool, err error) {
	if !e.mayBeEvictedLocked(id) {
		return ev, false, false, nil
	}
	e.mu.Unlock()
	ev, found, err = e.lookupEvicted(ctx, id)
	e.mu.Lock()
	if _, ok := e.orders[id]; ok {
		return evictedOrder{}, false, true, nil
	}
	return ev, found, false, err
}

// notInMemoryLocked is the error for a cancel or modify of an id not in memory: notWorking (naming
// the status) for an order dropped from memory, which was finished, ErrNotFound otherwise. An id
// that turns up in memory meanwhile was submitted while we looked, and is too new to amend: it is
// not found, as it would have been a moment earlier.
func (e *Engine) notInMemoryLocked(ctx context.Context, id string, notWorking error) error {
	ev, found, _, err := e.findEvictedLocked(ctx, id)
	switch {
	case err != nil:
		return err
	case found:
		return fmt.Errorf("%w: %s is %s", notWorking, id, orderFromProto(ev.order).Status)
	}
	return fmt.Errorf("%w: %q", ErrNotFound, id)
}

// rejoinLocked gives a record rebuilt for an order that left memory what the journal holds of it
// beyond its last report: its request, and its deals (on the order, and in the engine's deals where
// they are not there still), so a repeated deal is recognised.
func (e *Engine) rejoinLocked(r *record, ev evictedOrder) {
	if r.req == nil {
		r.req = ev.req
	}
	ids := make([]string, 0, len(ev.trades))
	for tid, commission := range ev.trades {
		ids = append(ids, tid)
		if _, booked := e.trades[tid]; !booked {
			e.trades[tid] = trade{order: r.o.ClientOrderID, commission: commission}
		}
	}
	r.o.RestoreTrades(ids)
}

// restoreEvictedLocked brings an order that left memory back from the journal, with its deals, for a
// venue event about it: a late fill of a cancelled order, a deal repeated with its commission, a
// protective fill MT5 reports again. The event then takes the path of any order in memory, which
// books what is new once and counts a repeated deal a duplicate. The journal is read under the engine
// lock: such events are rare. ok is false when the filter's yes was a false positive, or when the
// journal cannot be read. A venue event cannot be refused, and one that may be a fill the engine
// cannot apply would leave the positions wrong: a failed read fails the engine as a failed write
// does (HALTED and NOT_SERVING until a restart replays and reconciles with the venue).
func (e *Engine) restoreEvictedLocked(id string) (r *record, ok bool) {
	if !e.mayBeEvictedLocked(id) {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.opt.JournalTimeout)
	defer cancel()
	ev, found, err := e.lookupEvicted(ctx, id)
	if err != nil {
		e.log.Error("reading an order that left memory back from the journal for a venue event failed", "client_order_id", id, "err", err)
		e.journalFailedLocked(err)
		return nil, false
	}
	if !found {
		return nil, false
	}
	r = &record{o: orderFromProto(ev.order)}
	e.rejoinLocked(r, ev)
	// Newest in memory: it leaves again, oldest first, once newer orders push it out.
	e.orders[id] = r
	e.created = append(e.created, r)
	e.opt.Risk.RememberClientID(id)
	e.setStatus(r.o, fsm.StatusUnspecified)
	if e.m != nil {
		e.m.OrdersInMemory.Set(float64(len(e.created)))
	}
	e.log.Info("order back in memory from the journal for a venue event", "client_order_id", id, "status", r.o.Status.String(), "trades", len(ev.trades))
	return r, true
}
