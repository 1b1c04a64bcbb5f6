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
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

var (
	command  = journal.KindCommand
	riskKind = journal.KindRisk
	venueReq = journal.KindVenueRequest
	report   = journal.KindReport
)

func TestSubmit_RiskDecidesWhatReachesTheVenue(t *testing.T) {
	cases := []struct {
		name        string
		opts        []option
		arrange     func(h *harness)
		req         *execv1.SubmitOrderRequest
		wantStatus  execv1.OrderStatus
		wantDenial  risk.Reason
		wantReject  string
		wantSent    []venue.CommandKind
		wantJournal []journal.Kind
		wantReports []execv1.ReportType
	}{
		{
			name:        "WithinLimits_IsSubmittedToTheVenue",
			req:         limitOrder("o1", "buy", "0.10", "1.10000"),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_SUBMITTED,
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_SUBMITTED},
		},
		{
			name: "WhenHalted_IsDenied",
			arrange: func(h *harness) {
				if _, err := h.eng.SetTradingState(context.Background(), risk.Halted, "test"); err != nil {
					t.Fatal(err)
				}
			},
			req:         limitOrder("o1", "buy", "0.10", "1.10000"),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_DENIED,
			wantDenial:  risk.ReasonTradingHalted,
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_DENIED},
		},
		{
			name: "WhenReducing_AnOrderThatOpensAPositionIsDenied",
			arrange: func(h *harness) {
				if _, err := h.eng.SetTradingState(context.Background(), risk.Reducing, "test"); err != nil {
					t.Fatal(err)
				}
			},
			req:         limitOrder("o1", "buy", "0.10", "1.10000"),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_DENIED,
			wantDenial:  risk.ReasonTradingReducing,
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_DENIED},
		},
		{
			name:        "AboveTheMaxOrderQuantity_IsDenied",
			opts:        []option{withLimits(risk.Limits{MaxOrderQuantity: dec("0.05")})},
			req:         limitOrder("o1", "buy", "0.10", "1.10000"),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_DENIED,
			wantDenial:  risk.ReasonMaxOrderQuantity,
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_DENIED},
		},
		{
			name:        "MarketOrderWithoutAQuote_IsDenied",
			req:         marketOrder("o1", "buy", "0.10"),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_DENIED,
			wantDenial:  risk.ReasonQuoteMissing,
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_DENIED},
		},
		{
			name:        "ReduceOnlyThatWouldOpenAPosition_IsDenied",
			req:         reduceOnly(limitOrder("o1", "sell", "0.10", "1.10000")),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_DENIED,
			wantDenial:  risk.ReasonReduceOnly,
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_DENIED},
		},
		{
			name:        "WriteAheadVenue_AlsoJournalsTheVenueRequest",
			opts:        []option{withWriteAhead()},
			req:         limitOrder("o1", "buy", "0.10", "1.10000"),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_SUBMITTED,
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, venueReq, report},
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_SUBMITTED},
		},
		{
			name: "VenueThatFillsAtOnce_LeavesTheOrderFilled",
			arrange: func(h *harness) {
				h.quote("EURUSD", "1.09990", "1.10000")
				h.fake.answer(func(cmd venue.Command, o *fsm.Order) ([]venue.Event, error) {
					return []venue.Event{filled(o.ClientOrderID, "T1", "0.10", "1.10000")}, nil
				})
			},
			req:         marketOrder("o1", "buy", "0.10"),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_FILLED,
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report, report},
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_SUBMITTED, execv1.ReportType_REPORT_TYPE_FILLED},
		},
		{
			name: "VenueSendError_RejectsTheOrderWithTheError",
			arrange: func(h *harness) {
				h.fake.answer(func(venue.Command, *fsm.Order) ([]venue.Event, error) { return nil, errors.New("link down") })
			},
			req:         limitOrder("o1", "buy", "0.10", "1.10000"),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_REJECTED,
			wantReject:  "venue: link down",
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report, report},
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_SUBMITTED, execv1.ReportType_REPORT_TYPE_REJECTED},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Arrange
			h := started(t, c.opts...)
			if c.arrange != nil {
				c.arrange(h)
			}
			before := h.lastSeq()

			// Act
			res, err := h.submit(c.req)

			// Assert
			if err != nil {
				t.Fatal(err)
			}
			if res.Duplicate {
				t.Fatal("first submission reported as a duplicate")
			}
			o := res.Order
			if o.GetStatus() != c.wantStatus {
				t.Fatalf("status %v, want %v", o.GetStatus(), c.wantStatus)
			}
			if got := risk.Reason(o.GetDenial().GetReason()); got != c.wantDenial {
				t.Fatalf("denial %v (%q), want %v", got, o.GetDenial().GetMessage(), c.wantDenial)
			}
			if c.wantDenial != risk.ReasonUnspecified {
				if n := metric(h.m.Denials.WithLabelValues(c.wantDenial.String())); n != 1 {
					t.Fatalf("denials{%s} = %v, want 1", c.wantDenial, n)
				}
			}
			if o.GetRejectReason() != c.wantReject {
				t.Fatalf("reject reason %q, want %q", o.GetRejectReason(), c.wantReject)
			}
			if got := h.fake.kinds(); fmt.Sprint(got) != fmt.Sprint(c.wantSent) {
				t.Fatalf("venue got %v, want %v", got, c.wantSent)
			}
			if got := h.kindsAfter(before); fmt.Sprint(got) != fmt.Sprint(c.wantJournal) {
				t.Fatalf("journaled %v, want %v", got, c.wantJournal)
			}
			if got := h.reportTypesAfter(before); fmt.Sprint(got) != fmt.Sprint(c.wantReports) {
				t.Fatalf("reports %v, want %v", got, c.wantReports)
			}
			if stored := h.order(c.req.GetClientOrderId()); !proto.Equal(stored, o) {
				t.Fatalf("Get returns %v, Submit returned %v", stored, o)
			}
		})
	}
}

func TestSubmit_ARepeatedClientOrderID(t *testing.T) {
	halt := func(h *harness) {
		if _, err := h.eng.SetTradingState(context.Background(), risk.Halted, "test"); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name          string
		arrange       func(h *harness)
		first, repeat *execv1.SubmitOrderRequest
		wantErr       error
		wantStatus    execv1.OrderStatus
	}{
		{
			name:       "WithTheSameContent_IsADuplicateOfTheFirst",
			first:      limitOrder("o1", "buy", "0.10", "1.10000"),
			repeat:     limitOrder("o1", "buy", "0.10", "1.10000"),
			wantStatus: execv1.OrderStatus_ORDER_STATUS_SUBMITTED,
		},
		{
			name:    "WithDifferentContent_IsAlreadyExists",
			first:   limitOrder("o1", "buy", "0.10", "1.10000"),
			repeat:  limitOrder("o1", "buy", "0.20", "1.10000"),
			wantErr: engine.ErrAlreadyExists,
		},
		{
			name:       "OfADeniedOrder_IsADuplicateOfTheDenial",
			arrange:    halt,
			first:      limitOrder("o1", "buy", "0.10", "1.10000"),
			repeat:     limitOrder("o1", "buy", "0.10", "1.10000"),
			wantStatus: execv1.OrderStatus_ORDER_STATUS_DENIED,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t)
			if c.arrange != nil {
				c.arrange(h)
			}
			first := h.mustSubmit(c.first)
			sent, seq := len(h.fake.kinds()), h.lastSeq()

			res, err := h.submit(c.repeat)

			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err %v, want %v", err, c.wantErr)
				}
			} else {
				if err != nil || !res.Duplicate {
					t.Fatalf("repeat: duplicate %v, err %v; want a duplicate", res.Duplicate, err)
				}
				if res.Order.GetStatus() != c.wantStatus || !proto.Equal(res.Order, first) {
					t.Fatalf("repeat answered %v, want the first order %v", res.Order, first)
				}
			}
			if got := len(h.fake.kinds()); got != sent {
				t.Fatalf("the repeat reached the venue (%d commands, was %d)", got, sent)
			}
			if h.lastSeq() != seq {
				t.Fatalf("the repeat was journaled: %v", h.kindsAfter(seq))
			}
		})
	}
}

func TestSubmit_AfterClose_IsRefusedAsShuttingDown(t *testing.T) {
	h := started(t)
	h.eng.Close()

	_, err := h.submit(limitOrder("o1", "buy", "0.10", "1.10000"))

	if !errors.Is(err, engine.ErrShuttingDown) {
		t.Fatalf("err %v, want ErrShuttingDown", err)
	}
	if len(h.fake.kinds()) != 0 {
		t.Fatal("a command reached the venue after Close")
	}
}

func TestSubmit_ToAWriteAheadVenue_SendsOnlyWhatIsAlreadyDurable(t *testing.T) {
	h := started(t, withWriteAhead())
	var durable []journal.Kind
	h.fake.answer(func(cmd venue.Command, o *fsm.Order) ([]venue.Event, error) {
		// Read the store itself: what it holds is what survives a crash at this instant.
		_ = h.store.Read(context.Background(), 0, 0, func(e journal.Entry) error {
			if e.Key == o.ClientOrderID {
				durable = append(durable, e.Kind)
			}
			return nil
		})
		return nil, nil
	})

	h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))

	if want := []journal.Kind{command, riskKind, venueReq, report}; fmt.Sprint(durable) != fmt.Sprint(want) {
		t.Fatalf("durable when the venue got the command: %v, want %v", durable, want)
	}
}

func TestSubmit_WhenTheJournalCannotWrite_FailsWithErrJournal(t *testing.T) {
	store := &failingStore{Memory: journal.NewMemory()}
	h := started(t, withStore(store), withoutMetrics())
	store.failing.Store(true)

	_, err := h.submit(limitOrder("o1", "buy", "0.10", "1.10000"))
	_, err2 := h.submit(limitOrder("o2", "buy", "0.10", "1.10000"))

	for i, err := range []error{err, err2} {
		if !errors.Is(err, engine.ErrJournal) || !strings.Contains(err.Error(), errDiskFull.Error()) {
			t.Fatalf("submit %d: err %v, want ErrJournal naming the store's error", i+1, err)
		}
	}
}

func TestSubmitIntent_InvalidRequest_IsRefusedBeforeRiskAndNothingIsJournaled(t *testing.T) {
	h := started(t)
	seq := h.lastSeq()

	_, err := h.eng.SubmitIntent(context.Background(), on("NOPE", limitOrder("o1", "buy", "0.10", "1.10000")), nil)

	var inv *engine.InvalidError
	if !errors.As(err, &inv) || inv.Violations[0].Field != "symbol" {
		t.Fatalf("err %v, want an InvalidError on symbol", err)
	}
	if h.lastSeq() != seq || len(h.fake.kinds()) != 0 {
		t.Fatalf("an invalid intent was journaled (%v) or sent (%v)", h.kindsAfter(seq), h.fake.kinds())
	}
}

func TestSubmitIntent_ValidRequest_IsSubmittedWithItsHops(t *testing.T) {
	h := started(t)
	seq := h.lastSeq()

	o, err := h.eng.SubmitIntent(context.Background(), limitOrder("o1", "buy", "0.10", "1.10000"), nil)

	if err != nil || o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_SUBMITTED {
		t.Fatalf("intent: %v %v", o, err)
	}
	reps := h.reportsAfter(seq)
	if len(reps) != 1 || len(reps[0].GetHops()) < 2 {
		t.Fatalf("the SUBMITTED report should carry the risk-done and venue-send hop stamps: %v", reps)
	}
}
