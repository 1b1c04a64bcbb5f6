package engine_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// retentionBound is the engine's MaxOrders in these tests: the smallest the service accepts.
const retentionBound = 100

// tradeRoundTrips submits n buy/sell pairs of limit orders, each filled at once: 2n finished orders,
// the position flat after each pair. It returns the ids in submission order.
func tradeRoundTrips(h *harness, n int) []string {
	h.t.Helper()
	var ids []string
	for i := range n {
		for _, side := range []string{"buy", "sell"} {
			id := fmt.Sprintf("rt%d-%s", i, side)
			h.mustSubmit(limitOrder(id, side, "0.10", "1.10000"))
			h.events(filled(id, "T-"+id, "0.10", "1.10000"))
			ids = append(ids, id)
		}
	}
	return ids
}

// inMemory lists every order the engine holds, newest first (ListOrders pages over memory only).
func inMemory(h *harness) []*execv1.Order {
	out, _ := h.eng.List("", nil, false, 0, 1<<30)
	return out
}

// assertLeftMemory fails the test (in its arrange step) while order id is still in memory.
func assertLeftMemory(t *testing.T, h *harness, id string) {
	t.Helper()
	for _, o := range inMemory(h) {
		if o.GetClientOrderId() == id {
			t.Fatalf("arrange: order %s is still in memory", id)
		}
	}
}

func TestFinishedOrdersPastTheBound_LeaveMemoryOldestFirst_AndWorkingOnesStay(t *testing.T) {
	h := started(t, withMaxOrders(retentionBound))
	var working []string
	for i := range 5 {
		id := fmt.Sprintf("w%d", i)
		h.mustSubmit(limitOrder(id, "buy", "0.01", "1.00000")) // the fake venue answers nothing: it stays working
		working = append(working, id)
	}

	ids := tradeRoundTrips(h, 300) // 600 finished orders, six times the bound

	held := inMemory(h)
	if len(held) > retentionBound {
		t.Fatalf("%d orders in memory, bound %d", len(held), retentionBound)
	}
	if got, want := metric(h.m.OrdersInMemory), float64(len(held)); got != want {
		t.Fatalf("orders-in-memory gauge %v, want %v", got, want)
	}
	if got, want := metric(h.m.OrdersEvicted), float64(len(ids)+len(working)-len(held)); got != want {
		t.Fatalf("evicted %v, want %v", got, want)
	}
	if n := h.risk.ClientIDs(); n != len(held) {
		t.Fatalf("risk remembers %d client order ids, want the %d in memory", n, len(held))
	}
	byState := func() map[string]float64 {
		out := map[string]float64{}
		for _, st := range []string{"SUBMITTED", "FILLED"} {
			out[st] = metric(h.m.OrdersByStatus.WithLabelValues(st))
		}
		return out
	}
	if got, want := byState(), map[string]float64{"SUBMITTED": 5, "FILLED": float64(len(held) - len(working))}; !maps.Equal(got, want) {
		t.Fatalf("orders-by-state gauge %v, want the orders in memory %v", got, want)
	}
	h.restart()
	h.reconcile(nil)
	if got, want := byState(), map[string]float64{"SUBMITTED": 5, "FILLED": float64(len(inMemory(h)) - len(working))}; !maps.Equal(got, want) {
		t.Fatalf("after a restart: orders-by-state gauge %v, want the orders in memory %v", got, want)
	}
	open, _ := h.eng.List("", nil, true, 0, 100)
	if len(open) != len(working) {
		t.Fatalf("%d working orders in memory, want all %d", len(open), len(working))
	}
	// What stays of the finished orders is the newest, in order.
	newest := ids[len(ids)-(len(held)-len(working)):]
	for i, o := range held[:len(newest)] {
		if want := newest[len(newest)-1-i]; o.GetClientOrderId() != want {
			t.Fatalf("order %d in memory is %s, want %s (the newest finished ones, newest first)", i, o.GetClientOrderId(), want)
		}
	}
	if _, err := h.eng.Cancel(context.Background(), working[0]); err != nil {
		t.Fatalf("the oldest working order cannot be cancelled: %v", err)
	}
}

// An order that left memory is still what the journal says it is: GetOrder finds it, its client
// order id stays taken (the same request is a duplicate of it, another is ALREADY_EXISTS), and it
// cannot be cancelled or modified; all of it also after a restart, on both kinds of store.
func TestAnOrderThatLeftMemory_IsAnsweredFromTheJournal(t *testing.T) {
	stores := []struct {
		name string
		opt  func(t *testing.T) option
	}{
		{"memory", func(*testing.T) option { return withStore(journal.NewMemory()) }},
		{"sqlite", func(t *testing.T) option {
			path := filepath.Join(t.TempDir(), "journal.db")
			return withReopenedStore(func() journal.Store {
				st, err := journal.OpenSQLite(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				return st
			})
		}},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			h := started(t, withMaxOrders(retentionBound), s.opt(t))
			first := h.mustSubmit(limitOrder("old", "buy", "0.10", "1.10000"))
			h.events(filled("old", "T-old", "0.10", "1.10000"))
			before := h.order("old")
			if first.GetStatus() != execv1.OrderStatus_ORDER_STATUS_SUBMITTED || before.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED {
				t.Fatalf("arrange: %v then %v", first.GetStatus(), before.GetStatus())
			}
			tradeRoundTrips(h, retentionBound)
			assertLeftMemory(t, h, "old")

			for round, restart := range []bool{false, true} {
				if restart {
					h.restart()
					h.reconcile(nil)
					if n := len(inMemory(h)); n > retentionBound {
						t.Fatalf("after restart: %d orders in memory, bound %d", n, retentionBound)
					}
				}
				lookups := metric(h.m.EvictedLookups.WithLabelValues("found"))
				if got := h.order("old"); !proto.Equal(got, before) {
					t.Fatalf("round %d: GetOrder %v, want %v", round, got, before)
				}
				sent, seq := len(h.fake.kinds()), h.lastSeq()
				res, err := h.submit(limitOrder("old", "buy", "0.10", "1.10000"))
				if err != nil || !res.Duplicate || !proto.Equal(res.Order, before) {
					t.Fatalf("round %d: the same request again: %v, %v; want a duplicate of %v", round, res, err, before)
				}
				if _, err := h.submit(limitOrder("old", "sell", "0.10", "1.10000")); !errors.Is(err, engine.ErrAlreadyExists) {
					t.Fatalf("round %d: another request under the id: %v, want ErrAlreadyExists", round, err)
				}
				if _, err := h.eng.Cancel(context.Background(), "old"); !errors.Is(err, engine.ErrNotCancelable) {
					t.Fatalf("round %d: cancel: %v, want ErrNotCancelable", round, err)
				}
				_, err = h.eng.Modify(context.Background(), &execv1.ModifyOrderRequest{ClientOrderId: "old", Price: dec("1.09000").Proto()})
				if !errors.Is(err, engine.ErrNotModifiable) {
					t.Fatalf("round %d: modify: %v, want ErrNotModifiable", round, err)
				}
				if _, err := h.eng.Get(context.Background(), "never-used"); !errors.Is(err, engine.ErrNotFound) {
					t.Fatalf("round %d: an unknown id: %v, want ErrNotFound", round, err)
				}
				if n := metric(h.m.EvictedLookups.WithLabelValues("found")) - lookups; n < 5 {
					t.Fatalf("round %d: %v journal lookups found the order, want at least 5", round, n)
				}
				// The venue repeats the deal: the order comes back from the journal with its deal, and
				// the repeat is a duplicate.
				dups := metric(h.m.DuplicateFills)
				h.events(filled("old", "T-old", "0.10", "1.10000"))
				if got := metric(h.m.DuplicateFills) - dups; got != 1 {
					t.Fatalf("round %d: %v duplicate fills counted for the repeated deal, want 1", round, got)
				}
				if len(h.fake.kinds()) != sent || h.lastSeq() != seq {
					t.Fatalf("round %d: answering for the old order reached the venue or the journal: %v", round, h.kindsAfter(seq))
				}
				if p := h.position("EURUSD"); !same(p.GetNetQuantity(), "0.10") {
					t.Fatalf("round %d: position %s, want 0.10 (the old order's fill, once)", round, show(p.GetNetQuantity()))
				}
			}
		})
	}
}

// A fresh id is not slowed by the orders that left memory: the filter in front of the journal
// passes few ids that are not there, however many orders left (the filter grows with them).
func TestFreshIdsAfterEvictions_RarelyCostAJournalLookup(t *testing.T) {
	cases := []struct {
		name       string
		roundTrips int
	}{
		{"WithinTheFirstFiltersCapacity", 500},        // ~900 ids in a filter built for 1,000 at 0.1%
		{"TenTimesPastTheFirstFiltersCapacity", 5000}, // ~9,900 ids: one such filter would pass nearly all
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t, withMaxOrders(retentionBound))
			ids := tradeRoundTrips(h, c.roundTrips)

			before := metric(h.m.EvictedLookups.WithLabelValues("absent"))
			for i := range 2000 {
				id := fmt.Sprintf("fresh%d", i)
				if _, err := h.eng.Get(context.Background(), id); !errors.Is(err, engine.ErrNotFound) {
					t.Fatalf("%s: %v, want ErrNotFound", id, err)
				}
			}

			// Under 0.2% by design: a few false positives at most.
			if n := metric(h.m.EvictedLookups.WithLabelValues("absent")) - before; n > 20 {
				t.Fatalf("%v of 2,000 fresh ids were looked up in the journal (evicted %d of %d)", n, int(metric(h.m.OrdersEvicted)), len(ids))
			}
			if _, err := h.eng.Get(context.Background(), ids[0]); err != nil {
				t.Fatalf("the first order, from the journal: %v", err)
			}
		})
	}
}

// MT5 repeats a deal after a reconnection. A stop loss's deal booked as a protective order that has
// since left memory is not booked again.
func TestARepeatedProtectiveFill_OfAnOrderThatLeftMemory_IsNotBookedTwice(t *testing.T) {
	h := started(t, withMaxOrders(retentionBound))
	h.mustSubmit(withStops(limitOrder("o1", "buy", "0.10", "1.10000"), "1.09000", "", ""))
	h.events(filled("o1", "T1", "0.10", "1.10000"))
	sl := venue.Event{Kind: venue.ProtectiveFill, ClientOrderID: "sl:D77", Symbol: "EURUSD", Side: fsm.Sell, Reason: "stop loss 1.09000 touched",
		Fill: fsm.Fill{TradeID: "D77", Quantity: dec("0.10"), Price: dec("1.08990"), TimeUS: t0}}
	h.events(sl)
	tradeRoundTrips(h, retentionBound)
	assertLeftMemory(t, h, "sl:D77")
	dups, seq := metric(h.m.DuplicateFills), h.lastSeq()

	h.events(sl)

	if p := h.position("EURUSD"); !same(p.GetNetQuantity(), "0") {
		t.Fatalf("position %s, want flat: the repeated deal was booked again", show(p.GetNetQuantity()))
	}
	if got := metric(h.m.DuplicateFills) - dups; got != 1 {
		t.Fatalf("%v duplicate fills counted, want 1", got)
	}
	if h.lastSeq() != seq {
		t.Fatalf("the repeat was journaled: %v", h.kindsAfter(seq))
	}
}

// A venue event for an order that left memory brings it back from the journal with its deals, so
// what is new is booked once and a repeat is a duplicate, live and after a restart (ADR 0125).
func TestAVenueEventForAnOrderThatLeftMemory_IsAppliedToItOnce(t *testing.T) {
	cases := []struct {
		name string
		// arrange leaves order "x" finished; the event comes once the order left memory.
		arrange      func(h *harness)
		event        venue.Event
		wantStatus   execv1.OrderStatus
		wantNet      string
		wantRealized string
		wantReport   bool    // the event changes the order: a report is journaled
		wantDups     float64 // duplicate fills counted over the event and its repeat
	}{
		{
			// A cancel raced a fill at the venue: the fill comes after the cancellation, and after
			// the order left memory. It is booked, and completes the order.
			name:         "ALateFillOfACancelledOrder_IsBooked",
			arrange:      func(h *harness) { h.mustSubmit(limitOrder("x", "buy", "0.10", "1.10000")); h.events(canceled("x")) },
			event:        filled("x", "T-late", "0.10", "1.10000"),
			wantStatus:   execv1.OrderStatus_ORDER_STATUS_FILLED,
			wantNet:      "0.10",
			wantRealized: "0",
			wantReport:   true,
			wantDups:     1,
		},
		{
			// MT5: the order result carries the deal, the DEAL_ADD transaction its commission.
			name: "ADealsCommissionThatComesLater_IsMergedNotBookedTwice",
			arrange: func(h *harness) {
				h.mustSubmit(limitOrder("x", "buy", "0.10", "1.10000"))
				h.events(filled("x", "T-x", "0.10", "1.10000"))
			},
			event:        withCommission(filled("x", "T-x", "0.10", "1.10000"), "3.50"),
			wantStatus:   execv1.OrderStatus_ORDER_STATUS_FILLED,
			wantNet:      "0.10",
			wantRealized: "-3.50",
			wantReport:   true,
			wantDups:     2, // the merge is counted as a repeat of the deal too, as for an order in memory
		},
		{
			name: "ARepeatedDeal_IsADuplicate",
			arrange: func(h *harness) {
				h.mustSubmit(limitOrder("x", "buy", "0.10", "1.10000"))
				h.events(withCommission(filled("x", "T-x", "0.10", "1.10000"), "3.50"))
			},
			event:        withCommission(filled("x", "T-x", "0.10", "1.10000"), "3.50"),
			wantStatus:   execv1.OrderStatus_ORDER_STATUS_FILLED,
			wantNet:      "0.10",
			wantRealized: "-3.50",
			wantDups:     2,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.db")
			h := started(t, withMaxOrders(retentionBound), withReopenedStore(func() journal.Store {
				st, err := journal.OpenSQLite(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				return st
			}))
			c.arrange(h)
			tradeRoundTrips(h, retentionBound)
			assertLeftMemory(t, h, "x")
			seq, dups := h.lastSeq(), metric(h.m.DuplicateFills)

			h.events(c.event)
			h.events(c.event) // and once more: never booked twice

			check := func(when string) {
				t.Helper()
				if o := h.order("x"); o.GetStatus() != c.wantStatus {
					t.Fatalf("%s: order %v, want %v", when, o.GetStatus(), c.wantStatus)
				}
				p := h.position("EURUSD")
				if !same(p.GetNetQuantity(), c.wantNet) || !same(p.GetRealizedPnl(), c.wantRealized) {
					t.Fatalf("%s: position net %s realized %s, want %s and %s", when, show(p.GetNetQuantity()), show(p.GetRealizedPnl()), c.wantNet, c.wantRealized)
				}
			}
			check("live")
			if got := metric(h.m.DuplicateFills) - dups; got != c.wantDups {
				t.Fatalf("%v duplicate fills, want %v", got, c.wantDups)
			}
			if journaled := len(h.kindsAfter(seq)) > 0; journaled != c.wantReport {
				t.Fatalf("journaled after the event: %v, want a report: %v", h.kindsAfter(seq), c.wantReport)
			}
			// The replay drops x again on its way (the bound), and the event's report brings it back.
			h.restart()
			h.reconcile(nil)
			check("after a restart")
			res, err := h.submit(limitOrder("x", "buy", "0.10", "1.10000"))
			if err != nil || !res.Duplicate {
				t.Fatalf("after a restart, x's request again: %v, %v; want a duplicate", res.Order, err)
			}
			h.events(c.event)
			check("after a restart and the event again")
		})
	}
}

// A venue event for an order that left memory cannot be applied when the journal cannot be read: it
// may be a fill. Trading stops as after a failed write, rather than going on with positions that
// may be wrong; nothing is acknowledged until a restart replays and reconciles.
func TestAVenueEventForAnOrderThatLeftMemory_WhenTheJournalCannotBeRead_HaltsTrading(t *testing.T) {
	store := &failingStore{Memory: journal.NewMemory()}
	h := started(t, withStore(store), withMaxOrders(retentionBound))
	h.mustSubmit(limitOrder("x", "buy", "0.10", "1.10000"))
	h.events(canceled("x"))
	tradeRoundTrips(h, retentionBound)
	assertLeftMemory(t, h, "x")
	store.readsFailing.Store(true)

	h.events(filled("x", "T-late", "0.10", "1.10000"))

	assertJournalFailed(t, h)
	if !errors.Is(h.eng.JournalErr(), errReadLost) {
		t.Fatalf("JournalErr %v, want the read's error", h.eng.JournalErr())
	}
	sent := len(h.fake.kinds())
	if _, err := h.submit(limitOrder("y", "buy", "0.10", "1.10000")); !errors.Is(err, engine.ErrJournal) {
		t.Fatalf("submit after the failed read: %v, want ErrJournal", err)
	}
	if len(h.fake.kinds()) != sent {
		t.Fatal("an order reached the venue after the journal could not be read")
	}
}

// Submissions of an id that left memory, racing one another and new orders, all get the journal's
// answer; none reaches the venue.
func TestConcurrentRepeatsOfAnOrderThatLeftMemory_AreAllDuplicates(t *testing.T) {
	h := started(t, withMaxOrders(retentionBound))
	h.mustSubmit(limitOrder("old", "buy", "0.10", "1.10000"))
	h.events(filled("old", "T-old", "0.10", "1.10000"))
	tradeRoundTrips(h, retentionBound)
	sent := len(h.fake.kinds())

	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := limitOrder("old", "buy", "0.10", "1.10000")
			if i%2 == 1 {
				req = limitOrder(fmt.Sprintf("new%d", i), "buy", "0.01", "1.00000")
			}
			rreq, bad := engine.Validate(req, h.eng.Instrument, h.clock.Now())
			if bad != nil {
				errs <- bad
				return
			}
			res, err := h.eng.Submit(context.Background(), req, rreq, nil)
			if err == nil && i%2 == 0 && !res.Duplicate {
				err = fmt.Errorf("repeat %d was not a duplicate: %v", i, res.Order)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(h.fake.kinds()) - sent; got != 8 {
		t.Fatalf("%d commands reached the venue, want the 8 new orders'", got)
	}
}

// syntheticJournal is a journal of n filled orders, each the entries the engine wrote for one real
// order with its ids changed: a long history, written in a second rather than at the engine's pace.
func syntheticJournal(t *testing.T, n int) *journal.Memory {
	t.Helper()
	h := started(t)
	seq := h.lastSeq()
	h.mustSubmit(limitOrder("tmpl", "buy", "0.10", "1.10000"))
	h.events(filled("tmpl", "T-tmpl", "0.10", "1.10000"))
	tmpl := h.entries(seq)
	mem := journal.NewMemory()
	var batch []journal.Entry
	s := uint64(0)
	for i := range n {
		id := fmt.Sprintf("o%d", i)
		for _, e := range tmpl {
			s++
			e.Seq = s
			switch e.Kind {
			case journal.KindReport:
				rep := &execv1.ExecutionReport{}
				if err := proto.Unmarshal(e.Payload, rep); err != nil {
					t.Fatal(err)
				}
				if rep.Order != nil {
					rep.Order.ClientOrderId = id
				}
				if rep.Fill != nil {
					rep.Fill.TradeId = "T-" + id
					if i%2 == 1 { // flat after every pair
						rep.Fill.Side = execv1.OrderSide_ORDER_SIDE_SELL
					}
				}
				e.Payload, _ = proto.Marshal(rep)
			case journal.KindCommand:
				e.Payload = anyPayload(t, limitOrder(id, "buy", "0.10", "1.10000"))
			}
			if e.Key == "tmpl" {
				e.Key = id
			}
			batch = append(batch, e)
		}
		if len(batch) >= 4096 {
			if err := mem.Append(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := mem.Append(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	return mem
}

// A restart replays the whole journal holding no more orders than the bound keeps, all the way
// through; what it held for the orders it dropped (maps grown to the whole history) is given back.
func TestReplayingALongJournal_HoldsOnlyWhatTheBoundKeeps(t *testing.T) {
	mem := syntheticJournal(t, 100_000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	h := newHarness(t, withStore(mem), withMaxOrders(retentionBound), withoutMetrics())
	st := h.replay()
	runtime.GC()
	runtime.ReadMemStats(&after)

	if st.Orders != 100_000 {
		t.Fatalf("replayed %d orders, want 100,000", st.Orders)
	}
	if n := len(inMemory(h)); n > retentionBound {
		t.Fatalf("%d orders in memory after the replay, bound %d", n, retentionBound)
	}
	if st.MaxInMemory > retentionBound {
		t.Fatalf("the replay held up to %d orders at once, bound %d", st.MaxInMemory, retentionBound)
	}
	// 100,000 orders' maps alone keep ~15 MB; 100 orders and the 0.1% filter of a thousand ids
	// are well under 5.
	if held := int64(after.HeapAlloc) - int64(before.HeapAlloc); held > 5<<20 {
		t.Fatalf("the replayed engine holds %d MB of heap", held>>20)
	}
	if _, err := h.eng.Get(context.Background(), "o0"); err != nil {
		t.Fatalf("the first order, from the journal: %v", err)
	}
}
