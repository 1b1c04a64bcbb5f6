package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/venue"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func TestCancel(t *testing.T) {
	cases := []struct {
		name        string
		opts        []option
		arrange     func(h *harness)
		id          string
		wantErr     error
		wantStatus  execv1.OrderStatus
		wantSent    []venue.CommandKind
		wantJournal []journal.Kind
	}{
		{
			name:        "WorkingOrder_GoesPendingCancelAndTheVenueIsAsked",
			id:          "o1",
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_PENDING_CANCEL,
			wantSent:    []venue.CommandKind{venue.Place, venue.Cancel},
			wantJournal: []journal.Kind{command},
		},
		{
			name:        "ToAWriteAheadVenue_JournalsTheVenueRequestBeforeSending",
			opts:        []option{withWriteAhead()},
			id:          "o1",
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_PENDING_CANCEL,
			wantSent:    []venue.CommandKind{venue.Place, venue.Cancel},
			wantJournal: []journal.Kind{command, venueReq},
		},
		{
			name: "ConfirmedAtOnceByTheVenue_IsCanceled",
			arrange: func(h *harness) {
				h.fake.answer(func(cmd venue.Command, o *fsm.Order) ([]venue.Event, error) {
					return []venue.Event{canceled(o.ClientOrderID)}, nil
				})
			},
			id:          "o1",
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_CANCELED,
			wantSent:    []venue.CommandKind{venue.Place, venue.Cancel},
			wantJournal: []journal.Kind{command, report},
		},
		{
			name: "RefusedByTheVenue_ReturnsToTheStateBefore",
			arrange: func(h *harness) {
				h.fake.answer(func(venue.Command, *fsm.Order) ([]venue.Event, error) { return nil, errors.New("link down") })
			},
			id:          "o1",
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_ACCEPTED,
			wantSent:    []venue.CommandKind{venue.Place, venue.Cancel},
			wantJournal: []journal.Kind{command, report},
		},
		{
			name:     "FilledOrder_IsNotCancelable",
			arrange:  func(h *harness) { h.events(filled("o1", "T1", "0.10", "1.10000")) },
			id:       "o1",
			wantErr:  engine.ErrNotCancelable,
			wantSent: []venue.CommandKind{venue.Place},
		},
		{
			name:     "UnknownOrder_IsNotFound",
			id:       "nope",
			wantErr:  engine.ErrNotFound,
			wantSent: []venue.CommandKind{venue.Place},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t, c.opts...)
			h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
			h.events(accepted("o1", "V1"))
			if c.arrange != nil {
				c.arrange(h)
			}
			seq := h.lastSeq()

			o, err := h.eng.Cancel(context.Background(), c.id)

			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			if c.wantErr == nil && o.GetStatus() != c.wantStatus {
				t.Fatalf("status %v, want %v", o.GetStatus(), c.wantStatus)
			}
			if got := h.fake.kinds(); fmt.Sprint(got) != fmt.Sprint(c.wantSent) {
				t.Fatalf("venue got %v, want %v", got, c.wantSent)
			}
			if got := h.kindsAfter(seq); fmt.Sprint(got) != fmt.Sprint(c.wantJournal) {
				t.Fatalf("journaled %v, want %v", got, c.wantJournal)
			}
		})
	}
}

func TestCancelAll_CancelsTheWorkingOrdersOfTheSymbolOnly(t *testing.T) {
	h := started(t)
	for _, r := range []*execv1.SubmitOrderRequest{
		limitOrder("eu1", "buy", "0.10", "1.10000"),
		limitOrder("eu2", "sell", "0.10", "1.20000"),
		limitOrder("eu3", "buy", "0.10", "1.10000"),
		on("GBPUSD", limitOrder("gb1", "buy", "0.10", "1.25000")),
	} {
		h.mustSubmit(r)
	}
	h.events(accepted("eu1", "V1"), accepted("eu2", "V2"), filled("eu3", "T3", "0.10", "1.10000"), accepted("gb1", "V4"))

	ids, err := h.eng.CancelAll(context.Background(), "EURUSD")

	sort.Strings(ids)
	if err != nil || fmt.Sprint(ids) != "[eu1 eu2]" {
		t.Fatalf("CancelAll(EURUSD) = %v, %v; want [eu1 eu2]", ids, err)
	}
	if st := h.order("gb1").GetStatus(); st != execv1.OrderStatus_ORDER_STATUS_ACCEPTED {
		t.Fatalf("the GBPUSD order is %v, want untouched ACCEPTED", st)
	}

	// A second CancelAll over every symbol skips what is already pending cancel.
	ids, err = h.eng.CancelAll(context.Background(), "")

	if err != nil || fmt.Sprint(ids) != "[gb1]" {
		t.Fatalf("CancelAll() = %v, %v; want [gb1]", ids, err)
	}
}

func TestCancel_ThatRacesAVenueEventWhileBecomingDurable_IsStillSentWithTheJournaledCommand(t *testing.T) {
	cancels := []struct {
		name   string
		cancel func(h *harness) error
	}{
		{"Cancel", func(h *harness) error { _, err := h.eng.Cancel(context.Background(), "o1"); return err }},
		{"CancelAll", func(h *harness) error { _, err := h.eng.CancelAll(context.Background(), ""); return err }},
	}
	races := []struct {
		name       string
		arrange    []venue.Event // before the cancel
		race       venue.Event   // arrives while the cancel's batch is being written
		wantStatus execv1.OrderStatus
	}{
		{"APartialFill", []venue.Event{accepted("o1", "V1")}, filled("o1", "T1", "0.04", "1.10000"), execv1.OrderStatus_ORDER_STATUS_PARTIALLY_FILLED},
		{"ALateAcceptance", nil, accepted("o1", "V1"), execv1.OrderStatus_ORDER_STATUS_ACCEPTED},
	}
	for _, c := range cancels {
		for _, r := range races {
			t.Run(c.name+"/"+r.name, func(t *testing.T) {
				store := newGateStore()
				h := started(t, withWriteAhead(), withStore(store))
				h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
				if len(r.arrange) > 0 {
					h.events(r.arrange...)
				}
				store.held.Store(true)
				done := make(chan error, 1)
				go func() { done <- c.cancel(h) }()
				store.await(t) // the cancel's write-ahead batch is being written
				evDone := make(chan error, 1)
				go func() { evDone <- h.eng.OnVenueEvents([]venue.Event{r.race}) }()
				testkit.WaitFor(t, "the racing event applied", 5*time.Second, func() bool {
					o, _ := h.eng.Get(context.Background(), "o1")
					return o.GetStatus() == r.wantStatus
				})

				store.held.Store(false)
				store.release <- nil
				if err := <-done; err != nil {
					t.Fatalf("cancel: %v", err)
				}
				if err := <-evDone; err != nil {
					t.Fatalf("venue event: %v", err)
				}

				requested, sent := h.fake.commands(venue.Cancel)
				if len(sent) != 1 {
					t.Fatalf("%d cancels sent to the venue, want 1", len(sent))
				}
				if len(requested) != 1 || sent[0].ID != requested[0].ID {
					t.Fatalf("sent cancel %d, journaled (built) %v: want the one journaled", sent[0].ID, commandIDs(requested))
				}
			})
		}
	}
}

func commandIDs(cmds []venue.Command) []uint64 {
	var out []uint64
	for _, c := range cmds {
		out = append(out, c.ID)
	}
	return out
}
