package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// modify is a ModifyOrderRequest of o1; fields given as "" stay unset.
func modify(qty, price, sl, tp string) *execv1.ModifyOrderRequest {
	opt := func(s string) *typesv1.Decimal {
		if s == "" {
			return nil
		}
		return dec(s).Proto()
	}
	return &execv1.ModifyOrderRequest{ClientOrderId: "o1", Quantity: opt(qty), Price: opt(price), StopLoss: opt(sl), TakeProfit: opt(tp)}
}

func halt(h *harness, s risk.State) {
	h.t.Helper()
	if _, err := h.eng.SetTradingState(context.Background(), s, "test"); err != nil {
		h.t.Fatal(err)
	}
}

var (
	pendingUpdate  = execv1.ReportType_REPORT_TYPE_PENDING_UPDATE
	updatedReport  = execv1.ReportType_REPORT_TYPE_UPDATED
	updateRejRep   = execv1.ReportType_REPORT_TYPE_UPDATE_REJECTED
	acceptedStatus = execv1.OrderStatus_ORDER_STATUS_ACCEPTED
)

// TestModify covers ModifyOrder on a working buy limit o1 (0.10 at 1.10000, ACCEPTED): every
// outcome of the PENDING_UPDATE path and every modification risk check.
func TestModify(t *testing.T) {
	cases := []struct {
		name        string
		opts        []option
		before      func(h *harness) // before o1 is submitted
		arrange     func(h *harness)
		req         *execv1.ModifyOrderRequest
		wantErr     error
		wantInvalid string // field of the InvalidError
		wantDenial  risk.Reason
		wantStatus  execv1.OrderStatus
		wantPrice   string
		wantQty     string
		wantSL      string
		wantSent    []venue.CommandKind
		wantJournal []journal.Kind
		wantReports []execv1.ReportType
	}{
		{
			name:        "NewPrice_GoesPendingUpdateAndTheVenueIsAsked",
			req:         modify("", "1.10010", "", ""),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_PENDING_UPDATE,
			wantPrice:   "1.10000", // the new price holds once the venue confirms it
			wantSent:    []venue.CommandKind{venue.Place, venue.Modify},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{pendingUpdate},
		},
		{
			name:        "ToAWriteAheadVenue_JournalsTheVenueRequestBeforeSending",
			opts:        []option{withWriteAhead()},
			req:         modify("", "1.10010", "", ""),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_PENDING_UPDATE,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place, venue.Modify},
			wantJournal: []journal.Kind{command, riskKind, venueReq, report},
			wantReports: []execv1.ReportType{pendingUpdate},
		},
		{
			name: "ConfirmedAtOnceByTheVenue_TakesTheNewValues",
			arrange: func(h *harness) {
				h.fake.answer(func(cmd venue.Command, o *fsm.Order) ([]venue.Event, error) {
					return []venue.Event{updated(o.ClientOrderID)}, nil
				})
			},
			req:         modify("", "1.10010", "1.09000", "1.12000"),
			wantStatus:  acceptedStatus,
			wantPrice:   "1.10010",
			wantSL:      "1.09000",
			wantSent:    []venue.CommandKind{venue.Place, venue.Modify},
			wantJournal: []journal.Kind{command, riskKind, report, report},
			wantReports: []execv1.ReportType{pendingUpdate, updatedReport},
		},
		{
			name: "RefusedByTheVenue_KeepsTheValuesItHad",
			arrange: func(h *harness) {
				h.fake.answer(func(cmd venue.Command, o *fsm.Order) ([]venue.Event, error) {
					return []venue.Event{updateRejected(o.ClientOrderID, "retcode 10015 INVALID_PRICE")}, nil
				})
			},
			req:         modify("", "1.10010", "", ""),
			wantStatus:  acceptedStatus,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place, venue.Modify},
			wantJournal: []journal.Kind{command, riskKind, report, report},
			wantReports: []execv1.ReportType{pendingUpdate, updateRejRep},
		},
		{
			name: "VenueCannotSend_IsAnUpdateRejection",
			arrange: func(h *harness) {
				h.fake.answer(func(venue.Command, *fsm.Order) ([]venue.Event, error) { return nil, errors.New("link down") })
			},
			req:         modify("", "1.10010", "", ""),
			wantStatus:  acceptedStatus,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place, venue.Modify},
			wantJournal: []journal.Kind{command, riskKind, report, report},
			wantReports: []execv1.ReportType{pendingUpdate, updateRejRep},
		},
		{
			name:        "WhenHalted_IsDeniedAndNothingIsSent",
			arrange:     func(h *harness) { halt(h, risk.Halted) },
			req:         modify("", "1.10010", "", ""),
			wantDenial:  risk.ReasonTradingHalted,
			wantStatus:  acceptedStatus,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{updateRejRep},
		},
		{
			name:        "WhenReducing_AGrowingQuantityIsDenied",
			opts:        []option{withQuantityAmends()},
			arrange:     func(h *harness) { halt(h, risk.Reducing) },
			req:         modify("0.20", "", "", ""),
			wantDenial:  risk.ReasonTradingReducing,
			wantStatus:  acceptedStatus,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{updateRejRep},
		},
		{
			name:        "WhenReducing_ASmallerQuantityIsAllowed",
			opts:        []option{withQuantityAmends()},
			arrange:     func(h *harness) { halt(h, risk.Reducing) },
			req:         modify("0.05", "", "", ""),
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_PENDING_UPDATE,
			wantPrice:   "1.10000",
			wantQty:     "0.10",
			wantSent:    []venue.CommandKind{venue.Place, venue.Modify},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{pendingUpdate},
		},
		{
			name:        "OutsideThePriceCollar_IsDenied",
			opts:        []option{withLimits(risk.Limits{PriceCollarBps: 100})},
			before:      func(h *harness) { h.quote("EURUSD", "1.10000", "1.10002") },
			req:         modify("", "1.05000", "", ""),
			wantDenial:  risk.ReasonPriceCollar,
			wantStatus:  acceptedStatus,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{updateRejRep},
		},
		{
			name:        "OverTheMessageRate_IsDenied",
			opts:        []option{withLimits(risk.Limits{MessageRate: risk.RateLimit{MaxCount: 1, WindowMS: 1000}})},
			req:         modify("", "1.10010", "", ""), // the submission used the one message
			wantDenial:  risk.ReasonMessageRate,
			wantStatus:  acceptedStatus,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{updateRejRep},
		},
		{
			name:        "AboveTheMaxOrderQuantity_IsDenied",
			opts:        []option{withQuantityAmends(), withLimits(risk.Limits{MaxOrderQuantity: dec("0.50")})},
			req:         modify("0.60", "", "", ""),
			wantDenial:  risk.ReasonMaxOrderQuantity,
			wantStatus:  acceptedStatus,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{updateRejRep},
		},
		{
			name:        "StopLossAboveABuysPrice_IsDenied",
			req:         modify("", "", "1.10500", ""),
			wantDenial:  risk.ReasonInvalidStops,
			wantStatus:  acceptedStatus,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{updateRejRep},
		},
		{
			name: "QuantityNotAboveWhatIsFilled_IsDenied",
			opts: []option{withQuantityAmends()},
			arrange: func(h *harness) {
				h.events(filled("o1", "T1", "0.06", "1.10000"))
			},
			req:         modify("0.05", "", "", ""),
			wantDenial:  risk.ReasonInvalidQuantityOrPrice,
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_PARTIALLY_FILLED,
			wantPrice:   "1.10000",
			wantSent:    []venue.CommandKind{venue.Place},
			wantJournal: []journal.Kind{command, riskKind, report},
			wantReports: []execv1.ReportType{updateRejRep},
		},
		{
			name:        "PriceBeyondTheSymbolsDigits_IsAnInvalidArgument",
			req:         modify("", "1.100001", "", ""),
			wantInvalid: "price",
			wantSent:    []venue.CommandKind{venue.Place},
		},
		{
			name:        "QuantityOnAVenueThatCannotAmendIt_IsAnInvalidArgument",
			req:         modify("0.20", "", "", ""),
			wantInvalid: "quantity",
			wantSent:    []venue.CommandKind{venue.Place},
		},
		{
			name:        "TriggerPriceOfALimitOrder_IsAnInvalidArgument",
			req:         &execv1.ModifyOrderRequest{ClientOrderId: "o1", TriggerPrice: dec("1.10000").Proto()},
			wantInvalid: "trigger_price",
			wantSent:    []venue.CommandKind{venue.Place},
		},
		{
			name:        "ThatChangesNothing_IsAnInvalidArgument",
			req:         modify("", "1.1", "", ""),
			wantInvalid: "client_order_id",
			wantSent:    []venue.CommandKind{venue.Place},
		},
		{
			name:     "FilledOrder_IsNotModifiable",
			arrange:  func(h *harness) { h.events(filled("o1", "T1", "0.10", "1.10000")) },
			req:      modify("", "1.10010", "", ""),
			wantErr:  engine.ErrNotModifiable,
			wantSent: []venue.CommandKind{venue.Place},
		},
		{
			name: "PendingCancel_IsNotModifiable",
			arrange: func(h *harness) {
				if _, err := h.eng.Cancel(context.Background(), "o1"); err != nil {
					t.Fatal(err)
				}
			},
			req:      modify("", "1.10010", "", ""),
			wantErr:  engine.ErrNotModifiable,
			wantSent: []venue.CommandKind{venue.Place, venue.Cancel},
		},
		{
			name:     "UnknownOrder_IsNotFound",
			req:      &execv1.ModifyOrderRequest{ClientOrderId: "nope", Price: dec("1.1").Proto()},
			wantErr:  engine.ErrNotFound,
			wantSent: []venue.CommandKind{venue.Place},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t, c.opts...)
			if c.before != nil {
				c.before(h)
			}
			h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
			h.events(accepted("o1", "V1"))
			if c.arrange != nil {
				c.arrange(h)
			}
			seq := h.lastSeq()

			res, err := h.eng.Modify(context.Background(), c.req)

			var bad *engine.InvalidError
			switch {
			case c.wantInvalid != "":
				if !errors.As(err, &bad) || bad.Violations[0].Field != c.wantInvalid {
					t.Fatalf("err %v, want an invalid %s", err, c.wantInvalid)
				}
			case !errors.Is(err, c.wantErr):
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			if got := h.fake.kinds(); fmt.Sprint(got) != fmt.Sprint(c.wantSent) {
				t.Fatalf("venue got %v, want %v", got, c.wantSent)
			}
			if got := h.kindsAfter(seq); fmt.Sprint(got) != fmt.Sprint(c.wantJournal) {
				t.Fatalf("journaled %v, want %v", got, c.wantJournal)
			}
			if got := h.reportTypesAfter(seq); fmt.Sprint(got) != fmt.Sprint(c.wantReports) {
				t.Fatalf("reports %v, want %v", got, c.wantReports)
			}
			if err != nil {
				return
			}
			if got := res.Denial; (got == nil) != (c.wantDenial == 0) || got != nil && got.Reason != c.wantDenial {
				t.Fatalf("denial %v, want %v", got, c.wantDenial)
			}
			o := res.Order
			if o.GetStatus() != c.wantStatus || !same(o.GetPrice(), c.wantPrice) || !same(o.GetStopLoss(), c.wantSL) {
				t.Fatalf("order %v price %s sl %s, want %v %s %s", o.GetStatus(), show(o.GetPrice()), show(o.GetStopLoss()), c.wantStatus, c.wantPrice, c.wantSL)
			}
			if c.wantQty != "" && !same(o.GetQuantity(), c.wantQty) {
				t.Fatalf("quantity %s, want %s", show(o.GetQuantity()), c.wantQty)
			}
			if got := h.order("o1"); got.GetStatus() != c.wantStatus {
				t.Fatalf("stored status %v, want %v", got.GetStatus(), c.wantStatus)
			}
		})
	}
}

// TestModify_VenueAnswers covers the venue's asynchronous answers to a pending modification
// (MT5's OrderResult), one transition of the state machine each.
func TestModify_VenueAnswers(t *testing.T) {
	cases := []struct {
		name       string
		answer     []venue.Event
		wantStatus execv1.OrderStatus
		wantPrice  string
		wantFilled string
		wantReport []execv1.ReportType
	}{
		{"Updated_ReturnsToAcceptedWithTheNewPrice", []venue.Event{updated("o1")}, acceptedStatus, "1.10010", "0", []execv1.ReportType{updatedReport}},
		{"UpdateRejected_ReturnsToAcceptedWithTheOldPrice", []venue.Event{updateRejected("o1", "retcode 10016")}, acceptedStatus, "1.10000", "0", []execv1.ReportType{updateRejRep}},
		{"PartialFillThenUpdated_IsPartlyFilledWithTheNewPrice", []venue.Event{filled("o1", "T1", "0.04", "1.10000"), updated("o1")},
			execv1.OrderStatus_ORDER_STATUS_PARTIALLY_FILLED, "1.10010", "0.04", []execv1.ReportType{execv1.ReportType_REPORT_TYPE_FILLED, updatedReport}},
		{"FillThenUpdateRejected_StaysFilledAndDropsTheModification", []venue.Event{filled("o1", "T1", "0.10", "1.10000"), updateRejected("o1", "order filled")},
			execv1.OrderStatus_ORDER_STATUS_FILLED, "1.10000", "0.10", []execv1.ReportType{execv1.ReportType_REPORT_TYPE_FILLED, updateRejRep}},
		{"Canceled_WhilePending_IsCanceled", []venue.Event{canceled("o1")}, execv1.OrderStatus_ORDER_STATUS_CANCELED, "1.10000", "0",
			[]execv1.ReportType{execv1.ReportType_REPORT_TYPE_CANCELED}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t, withWriteAhead())
			h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
			h.events(accepted("o1", "V1"))
			if _, err := h.eng.Modify(context.Background(), modify("", "1.10010", "", "")); err != nil {
				t.Fatal(err)
			}
			seq := h.lastSeq()

			h.events(c.answer...)

			o := h.order("o1")
			if o.GetStatus() != c.wantStatus || !same(o.GetPrice(), c.wantPrice) || !same(o.GetFilledQuantity(), c.wantFilled) {
				t.Fatalf("order %v price %s filled %s, want %v %s %s", o.GetStatus(), show(o.GetPrice()), show(o.GetFilledQuantity()), c.wantStatus, c.wantPrice, c.wantFilled)
			}
			if got := h.reportTypesAfter(seq); fmt.Sprint(got) != fmt.Sprint(c.wantReport) {
				t.Fatalf("reports %v, want %v", got, c.wantReport)
			}
		})
	}
}

// A restart while a modification is pending keeps it: the venue's later answer applies the values
// the journal recorded.
func TestModify_PendingModificationSurvivesARestart(t *testing.T) {
	h := started(t, withWriteAhead())
	h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
	h.events(accepted("o1", "V1"))
	if _, err := h.eng.Modify(context.Background(), modify("", "1.10010", "1.09500", "")); err != nil {
		t.Fatal(err)
	}

	h.restart()
	h.reconcile(&engine.Snapshot{Orders: []engine.VenueOrder{{ClientOrderID: "o1", VenueOrderID: "V1"}}})
	if got := h.order("o1"); got.GetStatus() != execv1.OrderStatus_ORDER_STATUS_PENDING_UPDATE {
		t.Fatalf("after restart: %v, want PENDING_UPDATE", got.GetStatus())
	}
	h.events(updated("o1"))

	o := h.order("o1")
	if o.GetStatus() != acceptedStatus || !same(o.GetPrice(), "1.10010") || !same(o.GetStopLoss(), "1.09500") {
		t.Fatalf("order %v price %s sl %s, want ACCEPTED 1.10010 1.09500", o.GetStatus(), show(o.GetPrice()), show(o.GetStopLoss()))
	}
	// And a second restart replays the applied values from the UPDATED report.
	h.restart()
	if o := h.order("o1"); !same(o.GetPrice(), "1.10010") || !same(o.GetStopLoss(), "1.09500") {
		t.Fatalf("replayed price %s sl %s", show(o.GetPrice()), show(o.GetStopLoss()))
	}
}

// A modification whose write-ahead batch is not durable never reaches the venue, and the order
// stays as it was (the engine then fails: nothing more is acknowledged).
func TestModify_NotDurableIsNotSentAndLeavesTheOrderAsItWas(t *testing.T) {
	store := &failingStore{Memory: journal.NewMemory()}
	h := started(t, withWriteAhead(), withStore(store))
	h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
	h.events(accepted("o1", "V1"))
	store.failing.Store(true)

	_, err := h.eng.Modify(context.Background(), modify("", "1.10010", "", ""))

	if !errors.Is(err, engine.ErrJournal) {
		t.Fatalf("err %v, want ErrJournal", err)
	}
	if o := h.order("o1"); o.GetStatus() != acceptedStatus || !same(o.GetPrice(), "1.10000") {
		t.Fatalf("order %v price %s, want ACCEPTED at 1.10000", o.GetStatus(), show(o.GetPrice()))
	}
	if _, sent := h.fake.commands(venue.Modify); len(sent) != 0 {
		t.Fatalf("sent %d modify commands", len(sent))
	}
}
