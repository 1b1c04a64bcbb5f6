package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// trade leaves a journal with a filled order, a working one, a denied one and a REDUCING state.
func trade(t *testing.T, h *harness) {
	t.Helper()
	h.mustSubmit(limitOrder("filled", "buy", "0.10", "1.10000"))
	h.mustSubmit(limitOrder("working", "buy", "0.20", "1.09000"))
	h.mustSubmit(reduceOnly(limitOrder("denied", "sell", "0.50", "1.10000")))
	h.events(accepted("filled", "V1"), filled("filled", "T1", "0.10", "1.10000"), accepted("working", "V2"))
	if _, err := h.eng.SetTradingState(context.Background(), risk.Reducing, "operator"); err != nil {
		t.Fatal(err)
	}
}

func TestReplay_OnRestart_RestoresOrdersFillsPositionsAndTheTradingState(t *testing.T) {
	h := started(t)
	trade(t, h)
	orders, _ := h.eng.List("", nil, false, 0, 100)
	positions := h.eng.Positions("", true)

	st := h.restart()

	if st.Orders != 3 || st.Open != 1 || st.Fills != 1 || st.LastSeq != h.lastSeq() || st.Entries != st.LastSeq {
		t.Fatalf("replay stats %+v, want 3 orders, 1 open, 1 fill, every entry up to %d", st, h.lastSeq())
	}
	for _, want := range orders {
		if got := h.order(want.GetClientOrderId()); !proto.Equal(got, want) {
			t.Fatalf("after restart %s is %v, was %v", want.GetClientOrderId(), got, want)
		}
	}
	if got := h.eng.Positions("", true); len(got) != len(positions) || !proto.Equal(got[0], positions[0]) {
		t.Fatalf("positions after restart %v, were %v", got, positions)
	}
	if s, reconciled := h.eng.State(); s != risk.Halted || reconciled {
		t.Fatalf("before reconciliation: %v reconciled %v, want HALTED and not reconciled", s, reconciled)
	}
	if n := metric(h.m.OrdersByStatus.WithLabelValues("ACCEPTED")); n != 1 {
		t.Fatalf("orders{ACCEPTED} after replay = %v, want 1", n)
	}

	h.reconcile(nil)

	if s, reconciled := h.eng.State(); s != risk.Reducing || !reconciled {
		t.Fatalf("after reconciliation: %v reconciled %v, want the journaled REDUCING", s, reconciled)
	}
}

func TestReplay_OnRestart_RemembersWhatWasAlreadyDone(t *testing.T) {
	cases := []struct {
		name string
		act  func(h *harness) error
		want func(t *testing.T, h *harness, err error)
	}{
		{
			name: "ARepeatedSubmission_IsADuplicate",
			act: func(h *harness) error {
				res, err := h.submit(limitOrder("filled", "buy", "0.10", "1.10000"))
				if err == nil && !res.Duplicate {
					return errors.New("not a duplicate")
				}
				return err
			},
			want: func(t *testing.T, h *harness, err error) {
				if err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "AUsedClientOrderIDWithNewContent_IsAlreadyExists",
			act: func(h *harness) error {
				_, err := h.submit(limitOrder("denied", "buy", "0.01", "1.10000"))
				return err
			},
			want: func(t *testing.T, h *harness, err error) {
				if !errors.Is(err, engine.ErrAlreadyExists) {
					t.Fatalf("err %v, want ErrAlreadyExists", err)
				}
			},
		},
		{
			name: "AFillWithAnAppliedTradeID_IsDropped",
			act: func(h *harness) error {
				return h.eng.OnVenueEvents([]venue.Event{filled("filled", "T1", "0.10", "1.10000")})
			},
			want: func(t *testing.T, h *harness, err error) {
				if err != nil || metric(h.m.DuplicateFills) != 1 || !same(h.eng.Positions("EURUSD", false)[0].GetNetQuantity(), "0.10") {
					t.Fatalf("err %v, duplicate fills %v, positions %v; want the fill dropped", err, metric(h.m.DuplicateFills), h.eng.Positions("", false))
				}
			},
		},
		{
			name: "TheWorkingOrder_StillTakesItsFill",
			act: func(h *harness) error {
				return h.eng.OnVenueEvents([]venue.Event{filled("working", "T2", "0.20", "1.09000")})
			},
			want: func(t *testing.T, h *harness, err error) {
				if err != nil || h.order("working").GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED || !same(h.eng.Positions("EURUSD", false)[0].GetNetQuantity(), "0.30") {
					t.Fatalf("err %v, order %v; want it FILLED and the position 0.30", err, h.order("working"))
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t)
			trade(t, h)
			h.restart()
			h.reconcile(nil)
			if _, err := h.eng.SetTradingState(context.Background(), risk.Active, "test"); err != nil {
				t.Fatal(err)
			}

			err := c.act(h)

			c.want(t, h, err)
		})
	}
}

func TestReplay_ACancelInFlightAtTheRestart_TakesTheVenuesLaterAnswer(t *testing.T) {
	h := started(t)
	h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
	h.events(accepted("o1", "V1"), filled("o1", "T1", "0.04", "1.10000"))
	if o, err := h.eng.Cancel(context.Background(), "o1"); err != nil || o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_PENDING_CANCEL {
		t.Fatalf("cancel: %v %v", o, err)
	}
	h.restart()
	h.reconcile(nil)

	h.events(canceled("o1"))

	o := h.order("o1")
	if o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_CANCELED || !same(o.GetFilledQuantity(), "0.04") {
		t.Fatalf("order %v, want CANCELED with 0.04 filled", o)
	}
}

func TestReplay_ACommandWithoutItsReport_IsATornBatchAndForgotten(t *testing.T) {
	h := newHarness(t)
	req := limitOrder("torn", "buy", "0.10", "1.10000")
	tk, _, err := h.jr.Append(h.clock.Now(), journal.Entry{Kind: journal.KindCommand, Key: "torn", Payload: anyPayload(t, req)})
	if err != nil || tk.Wait(context.Background()) != nil {
		t.Fatal(err)
	}

	st := h.replay()

	if st.Orders != 0 || st.Entries != 1 {
		t.Fatalf("stats %+v, want the entry read and no order", st)
	}
	if _, err := h.eng.Get(context.Background(), "torn"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("Get(torn) err %v, want ErrNotFound", err)
	}
}

func TestReplay_ACorruptReport_FailsTheReplayNamingTheEntry(t *testing.T) {
	h := newHarness(t)
	tk, seqs, err := h.jr.Append(h.clock.Now(), journal.Entry{Kind: journal.KindReport, Payload: []byte{0xff, 0xff, 0xff}})
	if err != nil || tk.Wait(context.Background()) != nil {
		t.Fatal(err)
	}

	_, err = h.eng.Replay(context.Background())

	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("journal entry %d", seqs[0])) {
		t.Fatalf("err %v, want one naming journal entry %d", err, seqs[0])
	}
}
