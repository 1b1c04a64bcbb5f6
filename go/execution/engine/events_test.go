package engine_test

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

func TestOnVenueEvents_DriveTheOrderStateMachine(t *testing.T) {
	const (
		submitted = execv1.OrderStatus_ORDER_STATUS_SUBMITTED
		acc       = execv1.ReportType_REPORT_TYPE_ACCEPTED
		fill      = execv1.ReportType_REPORT_TYPE_FILLED
	)
	cases := []struct {
		name          string
		events        []venue.Event
		wantStatus    execv1.OrderStatus
		wantFilled    string
		wantAvg       string
		wantVenueID   string
		wantReason    string
		wantNet       string
		wantReports   []execv1.ReportType
		wantInvalid   string   // the event label counted as refused by the state machine, if any
		wantUnknown   []string // the event labels counted once each as for an unknown order
		wantDupFills  float64
		wantOverfills float64
	}{
		{
			name:        "Accepted_MovesSubmittedToAccepted_AndRecordsTheVenueOrderID",
			events:      []venue.Event{accepted("o1", "V1")},
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_ACCEPTED,
			wantVenueID: "V1",
			wantReports: []execv1.ReportType{acc},
		},
		{
			name:        "Rejected_MovesSubmittedToRejected_WithTheVenuesReason",
			events:      []venue.Event{rejected("o1", "no money")},
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_REJECTED,
			wantReason:  "no money",
			wantReports: []execv1.ReportType{execv1.ReportType_REPORT_TYPE_REJECTED},
		},
		{
			name:        "PartialFill_LeavesTheOrderPartiallyFilled_AndMovesThePosition",
			events:      []venue.Event{accepted("o1", "V1"), filled("o1", "T1", "0.04", "1.09990")},
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_PARTIALLY_FILLED,
			wantFilled:  "0.04",
			wantAvg:     "1.09990",
			wantVenueID: "V1",
			wantNet:     "0.04",
			wantReports: []execv1.ReportType{acc, fill},
		},
		{
			name:        "PartialFillsThatCompleteTheOrder_FillItAtTheirAveragePrice",
			events:      []venue.Event{accepted("o1", "V1"), filled("o1", "T1", "0.04", "1.09990"), filled("o1", "T2", "0.06", "1.10000")},
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_FILLED,
			wantFilled:  "0.10",
			wantAvg:     "1.09996",
			wantVenueID: "V1",
			wantNet:     "0.10",
			wantReports: []execv1.ReportType{acc, fill, fill},
		},
		{
			name:        "CanceledAfterAccept_IsCanceled",
			events:      []venue.Event{accepted("o1", "V1"), canceled("o1")},
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_CANCELED,
			wantVenueID: "V1",
			wantReports: []execv1.ReportType{acc, execv1.ReportType_REPORT_TYPE_CANCELED},
		},
		{
			name:        "Expired_IsExpired",
			events:      []venue.Event{accepted("o1", "V1"), expired("o1")},
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_EXPIRED,
			wantVenueID: "V1",
			wantReports: []execv1.ReportType{acc, execv1.ReportType_REPORT_TYPE_EXPIRED},
		},
		{
			name:        "LateFillOnACanceledOrder_CountsButKeepsItCanceled",
			events:      []venue.Event{accepted("o1", "V1"), canceled("o1"), filled("o1", "T1", "0.04", "1.10000")},
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_CANCELED,
			wantFilled:  "0.04",
			wantAvg:     "1.10000",
			wantVenueID: "V1",
			wantNet:     "0.04",
			wantReports: []execv1.ReportType{acc, execv1.ReportType_REPORT_TYPE_CANCELED, fill},
		},
		{
			name:        "AcceptAfterTheFill_OnlyRecordsTheVenueOrderID",
			events:      []venue.Event{filled("o1", "T1", "0.10", "1.10000"), accepted("o1", "V9")},
			wantStatus:  execv1.OrderStatus_ORDER_STATUS_FILLED,
			wantFilled:  "0.10",
			wantAvg:     "1.10000",
			wantVenueID: "V9",
			wantNet:     "0.10",
			wantReports: []execv1.ReportType{fill, execv1.ReportType_REPORT_TYPE_UPDATED},
		},
		{
			name:         "FillWithATradeIDAlreadyApplied_IsDroppedAndCounted",
			events:       []venue.Event{accepted("o1", "V1"), filled("o1", "T1", "0.04", "1.10000"), filled("o1", "T1", "0.04", "1.10000")},
			wantStatus:   execv1.OrderStatus_ORDER_STATUS_PARTIALLY_FILLED,
			wantFilled:   "0.04",
			wantAvg:      "1.10000",
			wantVenueID:  "V1",
			wantNet:      "0.04",
			wantReports:  []execv1.ReportType{acc, fill},
			wantDupFills: 1,
		},
		{
			name:          "FillBeyondTheQuantityLeft_IsRefusedAndCounted",
			events:        []venue.Event{accepted("o1", "V1"), filled("o1", "T1", "0.20", "1.10000")},
			wantStatus:    execv1.OrderStatus_ORDER_STATUS_ACCEPTED,
			wantVenueID:   "V1",
			wantReports:   []execv1.ReportType{acc},
			wantInvalid:   "filled",
			wantOverfills: 1,
		},
		{
			name:        "EventTheStateMachineForbids_IsCountedAndChangesNothing",
			events:      []venue.Event{cancelRejected("o1")},
			wantStatus:  submitted,
			wantInvalid: "cancel_rejected",
		},
		{
			name:        "EventForAnUnknownOrder_IsIgnored",
			events:      []venue.Event{accepted("ghost", "V1"), filled("ghost", "T1", "0.10", "1.10000")},
			wantStatus:  submitted,
			wantUnknown: []string{"accepted", "filled"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t)
			h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
			seq := h.lastSeq()

			h.events(c.events...)

			o := h.order("o1")
			if o.GetStatus() != c.wantStatus {
				t.Fatalf("status %v, want %v", o.GetStatus(), c.wantStatus)
			}
			if !same(o.GetFilledQuantity(), c.wantFilled) {
				t.Fatalf("filled %s, want %q", show(o.GetFilledQuantity()), c.wantFilled)
			}
			if !same(o.GetAvgFillPrice(), c.wantAvg) {
				t.Fatalf("average price %s, want %q", show(o.GetAvgFillPrice()), c.wantAvg)
			}
			if o.GetVenueOrderId() != c.wantVenueID || o.GetRejectReason() != c.wantReason {
				t.Fatalf("venue id %q reject reason %q, want %q %q", o.GetVenueOrderId(), o.GetRejectReason(), c.wantVenueID, c.wantReason)
			}
			if got := h.eng.Positions("EURUSD", true); c.wantNet == "" && len(got) != 0 || c.wantNet != "" && (len(got) != 1 || !same(got[0].GetNetQuantity(), c.wantNet)) {
				t.Fatalf("positions %v, want net %q", got, c.wantNet)
			}
			if got := h.reportTypesAfter(seq); fmt.Sprint(got) != fmt.Sprint(c.wantReports) {
				t.Fatalf("reports %v, want %v", got, c.wantReports)
			}
			for _, k := range []string{"accepted", "rejected", "canceled", "cancel_rejected", "expired", "filled", "triggered"} {
				want := 0.0
				if k == c.wantInvalid {
					want = 1
				}
				if n := metric(h.m.InvalidEvents.WithLabelValues(k)); n != want {
					t.Fatalf("invalid transitions{%s} = %v, want %v", k, n, want)
				}
				want = 0
				if slices.Contains(c.wantUnknown, k) {
					want = 1
				}
				if n := metric(h.m.UnknownEvents.WithLabelValues(k)); n != want {
					t.Fatalf("unknown order events{%s} = %v, want %v", k, n, want)
				}
			}
			if n := metric(h.m.DuplicateFills); n != c.wantDupFills {
				t.Fatalf("duplicate fills %v, want %v", n, c.wantDupFills)
			}
			if n := metric(h.m.Overfills); n != c.wantOverfills {
				t.Fatalf("overfills %v, want %v", n, c.wantOverfills)
			}
			// The orders-by-status gauge follows the order: 1 in its state, 0 in SUBMITTED once it left.
			if n := metric(h.m.OrdersByStatus.WithLabelValues(statusName(c.wantStatus))); n != 1 {
				t.Fatalf("orders{%s} = %v, want 1", statusName(c.wantStatus), n)
			}
			if c.wantStatus != submitted {
				if n := metric(h.m.OrdersByStatus.WithLabelValues("SUBMITTED")); n != 0 {
					t.Fatalf("orders{SUBMITTED} = %v after the order left it", n)
				}
			}
		})
	}
}

func TestOnVenueEvents_VenueMessagesAreJournaledUnderTheirKey(t *testing.T) {
	cases := []struct {
		name      string
		isRequest bool
		wantKind  journal.Kind
	}{
		{"AResponse_AsAVenueResponse", false, journal.KindVenueResponse},
		{"ACommandTheVenueResent_AsAVenueRequest", true, journal.KindVenueRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t)
			seq := h.lastSeq()

			h.events(venue.Event{Raw: wrapperspb.String("frame"), RawKey: "bridge:7", RawIsRequest: c.isRequest})

			got := h.entries(seq)
			if len(got) != 1 || got[0].Kind != c.wantKind || got[0].Key != "bridge:7" {
				t.Fatalf("journaled %+v, want one %s keyed bridge:7", got, c.wantKind)
			}
		})
	}
}

func TestOnQuotes_AQuoteDrivenVenuesFillsAreAppliedAndJournaled(t *testing.T) {
	qv := &quoteVenue{fakeVenue: &fakeVenue{}}
	h := started(t, withVenue(qv, qv.fakeVenue))
	h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
	qv.onQuote = func(q market.Quote) []venue.Event {
		if q.Ask.Less(dec("1.10001")) {
			return []venue.Event{filled("o1", "T1", "0.10", q.Ask.String())}
		}
		return nil
	}
	seq := h.lastSeq()

	h.quote("EURUSD", "1.10010", "1.10020") // above the limit: nothing
	h.quote("EURUSD", "1.09990", "1.10000") // reaches it

	if o := h.order("o1"); o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED {
		t.Fatalf("status %v, want FILLED", o.GetStatus())
	}
	if got := h.reportTypesAfter(seq); fmt.Sprint(got) != fmt.Sprint([]execv1.ReportType{execv1.ReportType_REPORT_TYPE_FILLED}) {
		t.Fatalf("reports %v, want one FILLED", got)
	}
}

func TestOnQuotes_AnInvalidQuoteIsNotTakenForTheMarket(t *testing.T) {
	h := started(t)

	h.quote("EURUSD", "1.10010", "1.10000") // crossed
	res, err := h.submit(marketOrder("o1", "buy", "0.10"))

	if err != nil || risk.Reason(res.Order.GetDenial().GetReason()) != risk.ReasonQuoteMissing {
		t.Fatalf("market order after a crossed quote: %v %v, want denied QUOTE_MISSING", res.Order, err)
	}
}
