package engine_test

import (
	"context"
	"errors"
	"testing"
	"time"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

// submitAsync submits req on its own goroutine; the result arrives on the channel.
func submitAsync(h *harness, ctx context.Context, req *execv1.SubmitOrderRequest) <-chan submitOutcome {
	rreq, bad := engine.Validate(req, h.eng.Instrument, h.clock.Now())
	if bad != nil {
		h.t.Fatalf("test request %s is invalid: %v", req.GetClientOrderId(), bad)
	}
	out := make(chan submitOutcome, 1)
	go func() {
		res, err := h.eng.Submit(ctx, req, rreq, nil)
		out <- submitOutcome{res, err}
	}()
	return out
}

type submitOutcome struct {
	res engine.SubmitResult
	err error
}

func outcome(t *testing.T, ch <-chan submitOutcome) submitOutcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("submit did not return")
		return submitOutcome{}
	}
}

// stillPending reports whether nothing arrived on ch for a moment: the negative check of a
// submission that must keep waiting.
func stillPending(ch <-chan submitOutcome) bool {
	select {
	case <-ch:
		return false
	case <-time.After(50 * time.Millisecond):
		return true
	}
}

func TestSubmit_ARepeatBeforeTheFirstIsDurable_WaitsForTheFirstsOutcome(t *testing.T) {
	cases := []struct {
		name       string
		opts       []option
		writeErr   error // what the held write of the first submission ends with
		wantErr    error
		wantStatus execv1.OrderStatus
	}{
		{name: "FirstBecomesDurable_RepeatIsADuplicateOfIt", writeErr: nil,
			wantStatus: execv1.OrderStatus_ORDER_STATUS_SUBMITTED},
		{name: "FirstFailsToJournal_RepeatGetsTheSameFailure", writeErr: errDiskFull, wantErr: engine.ErrJournal},
		{name: "ToAWriteAheadVenue_FirstBecomesDurable_RepeatIsADuplicateOfIt", opts: []option{withWriteAhead()}, writeErr: nil,
			wantStatus: execv1.OrderStatus_ORDER_STATUS_SUBMITTED},
		{name: "ToAWriteAheadVenue_FirstFailsToJournal_RepeatGetsTheSameFailure", opts: []option{withWriteAhead()}, writeErr: errDiskFull,
			wantErr: engine.ErrJournal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := newGateStore()
			h := started(t, append(c.opts, withStore(store))...)
			store.held.Store(true)
			first := submitAsync(h, context.Background(), limitOrder("o1", "buy", "0.10", "1.10000"))
			store.await(t)

			repeat := submitAsync(h, context.Background(), limitOrder("o1", "buy", "0.10", "1.10000"))

			if !stillPending(repeat) {
				t.Fatal("the repeat answered before the first submission was durable")
			}
			store.release <- c.writeErr
			f, r := outcome(t, first), outcome(t, repeat)
			if c.wantErr != nil {
				if !errors.Is(f.err, c.wantErr) || !errors.Is(r.err, c.wantErr) {
					t.Fatalf("first %v, repeat %v; want both %v", f.err, r.err, c.wantErr)
				}
				return
			}
			if f.err != nil || r.err != nil || !r.res.Duplicate || r.res.Order.GetStatus() != c.wantStatus {
				t.Fatalf("first %v, repeat %+v %v; want a duplicate %v", f.err, r.res, r.err, c.wantStatus)
			}
		})
	}
}

func TestSubmit_ARepeatWhoseCallerLeaves_ReturnsItsContextError(t *testing.T) {
	store := newGateStore()
	h := started(t, withStore(store))
	store.held.Store(true)
	first := submitAsync(h, context.Background(), limitOrder("o1", "buy", "0.10", "1.10000"))
	store.await(t)
	ctx, cancel := context.WithCancel(context.Background())

	repeat := submitAsync(h, ctx, limitOrder("o1", "buy", "0.10", "1.10000"))
	cancel()

	if r := outcome(t, repeat); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("repeat: %v, want context.Canceled", r.err)
	}
	store.release <- nil
	if f := outcome(t, first); f.err != nil {
		t.Fatalf("first: %v", f.err)
	}
}

func TestSubmit_WhenTheJournalFails(t *testing.T) {
	cases := []struct {
		name       string
		opts       []option
		fail       func(s *gateStore) // how the held write ends
		wantStatus execv1.OrderStatus
	}{
		{
			name:       "WithAnError_ToAWriteAheadVenue_TheOrderIsRejectedNotLeftSubmitted",
			opts:       []option{withWriteAhead()},
			fail:       func(s *gateStore) { s.release <- errDiskFull },
			wantStatus: execv1.OrderStatus_ORDER_STATUS_REJECTED,
		},
		{
			name:       "ByStalling_ToAWriteAheadVenue_TheWaitEndsAtTheJournalTimeoutAndTheOrderIsRejected",
			opts:       []option{withWriteAhead(), withJournalTimeout(100 * time.Millisecond)},
			fail:       func(*gateStore) {}, // never answers
			wantStatus: execv1.OrderStatus_ORDER_STATUS_REJECTED,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := newGateStore()
			h := started(t, append(c.opts, withStore(store))...)
			t.Cleanup(func() { store.release <- errDiskFull }) // a stalled write ends before the journal closes
			store.held.Store(true)

			res := submitAsync(h, context.Background(), limitOrder("o1", "buy", "0.10", "1.10000"))
			store.await(t)
			c.fail(store)
			got := outcome(t, res)

			if !errors.Is(got.err, engine.ErrJournal) {
				t.Fatalf("submit: %v, want ErrJournal", got.err)
			}
			if o := h.order("o1"); o.GetStatus() != c.wantStatus || o.GetRejectReason() == "" {
				t.Fatalf("order %v (%q), want %v with a reason", o.GetStatus(), o.GetRejectReason(), c.wantStatus)
			}
			if len(h.fake.kinds()) != 0 {
				t.Fatalf("the venue got %v for an order that was never durable", h.fake.kinds())
			}
			assertJournalFailed(t, h)
		})
	}
}

func TestSubmit_AfterTheJournalFailed_IsRefusedWithErrJournalAndNothingReachesTheVenue(t *testing.T) {
	store := &failingStore{Memory: journal.NewMemory()}
	h := started(t, withStore(store))
	store.failing.Store(true)
	if _, err := h.submit(limitOrder("o1", "buy", "0.10", "1.10000")); !errors.Is(err, engine.ErrJournal) {
		t.Fatalf("first submit: %v, want ErrJournal", err)
	}
	sent := len(h.fake.kinds())
	store.failing.Store(false) // even a store that recovers: what was lost is unknown until a restart

	_, err := h.submit(limitOrder("o2", "buy", "0.10", "1.10000"))

	if !errors.Is(err, engine.ErrJournal) {
		t.Fatalf("submit after the failure: %v, want ErrJournal", err)
	}
	if len(h.fake.kinds()) != sent {
		t.Fatal("an order reached the venue after the journal failed")
	}
	assertJournalFailed(t, h)
}

func TestEngine_AJournalThatFailsWithNobodyWaiting_StillHaltsTrading(t *testing.T) {
	store := newGateStore()
	h := started(t, withStore(store))
	h.jr.SetFlushTimeout(50 * time.Millisecond)
	store.held.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	res := submitAsync(h, ctx, limitOrder("o1", "buy", "0.10", "1.10000"))
	store.await(t)
	cancel() // the caller leaves; the stalled write times out in the journal on its own

	if got := outcome(t, res); !errors.Is(got.err, context.Canceled) {
		t.Fatalf("submit: %v, want the caller's context.Canceled", got.err)
	}
	select {
	case <-h.eng.JournalFailed():
	case <-time.After(10 * time.Second):
		t.Fatal("the engine did not notice the journal failure")
	}
	assertJournalFailed(t, h)
}

// assertJournalFailed checks what a journal failure must leave: trading HALTED, the engine's
// failure signal, the gauge at 0 and the counter moved.
func assertJournalFailed(t *testing.T, h *harness) {
	t.Helper()
	select {
	case <-h.eng.JournalFailed():
	default:
		t.Fatal("JournalFailed is not closed")
	}
	if h.eng.JournalErr() == nil {
		t.Fatal("JournalErr is nil")
	}
	if st, _ := h.eng.State(); st != risk.Halted {
		t.Fatalf("trading %v after a journal failure, want HALTED", st)
	}
	if metric(h.m.JournalHealthy) != 0 || metric(h.m.JournalFailures) < 1 {
		t.Fatalf("journal_healthy %v, journal_failures_total %v; want 0 and at least 1", metric(h.m.JournalHealthy), metric(h.m.JournalFailures))
	}
}

// A submission whose last wait is handed back (the signal policy's, ADR 0116): it returns once the
// order is decided and sent, with its entries still in the journal's queue; the order becomes
// durable, and a repeat of it is answered, only when settle has returned.
func TestSubmitIntentLater_ReturnsBeforeTheOrderIsDurableAndSettleWaitsForIt(t *testing.T) {
	cases := []struct {
		name     string
		writeErr error
		wantErr  error
	}{
		{name: "TheWriteSucceeds_TheOrderIsDurableAndARepeatIsItsDuplicate"},
		{name: "TheWriteFails_SettleFailsWithErrJournalAndTradingHalts", writeErr: errDiskFull, wantErr: engine.ErrJournal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store := newGateStore()
			h := started(t, withStore(store))
			store.held.Store(true)
			o, settle, err := h.eng.SubmitIntentLater(context.Background(), limitOrder("o1", "buy", "0.10", "1.10000"), nil)
			if err != nil || settle == nil || o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_SUBMITTED {
				t.Fatalf("SubmitIntentLater: %v, settle %v, %v; want the order sent and a settle", o, settle != nil, err)
			}
			store.await(t) // its entries are being written, and held
			repeat := submitAsync(h, context.Background(), limitOrder("o1", "buy", "0.10", "1.10000"))
			settled := make(chan error, 1)
			go func() { settled <- settle(context.Background()) }()
			if !stillPending(repeat) {
				t.Fatal("a repeat was answered before the order was durable")
			}
			select {
			case err := <-settled:
				t.Fatalf("settle returned %v before the write finished", err)
			case <-time.After(50 * time.Millisecond):
			}
			store.release <- c.writeErr
			var serr error
			select {
			case serr = <-settled:
			case <-time.After(10 * time.Second):
				t.Fatal("settle did not return")
			}
			r := outcome(t, repeat)
			if c.wantErr != nil {
				if !errors.Is(serr, c.wantErr) || !errors.Is(r.err, c.wantErr) {
					t.Fatalf("settle %v, repeat %v; want both %v", serr, r.err, c.wantErr)
				}
				if _, err := h.submit(limitOrder("o2", "buy", "0.10", "1.10000")); !errors.Is(err, engine.ErrJournal) {
					t.Fatalf("a later submission: %v, want ErrJournal (trading halted)", err)
				}
				return
			}
			if serr != nil || r.err != nil || !r.res.Duplicate {
				t.Fatalf("settle %v, repeat %+v %v; want nil and a duplicate", serr, r.res, r.err)
			}
			store.held.Store(false)
			h.restart()
			if g, err := h.eng.Get(context.Background(), "o1"); err != nil || g.GetStatus() != execv1.OrderStatus_ORDER_STATUS_SUBMITTED {
				t.Fatalf("after a restart: %v %v; want the settled order replayed from the journal", g, err)
			}
		})
	}
}
