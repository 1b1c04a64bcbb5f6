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

// protectorVenue is a fakeVenue that keeps stops at the broker (venue.Protector), like MT5.
type protectorVenue struct{ *fakeVenue }

func (v protectorVenue) ProtectRequest(p venue.Protection) venue.Command {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nextID++
	cmd := venue.Command{Kind: venue.Protect, ID: v.nextID, Payload: &execv1.ModifyPositionRequest{Symbol: p.Symbol, StopLoss: p.StopLoss.Proto(), TakeProfit: p.TakeProfit.Proto()}}
	v.requested = append(v.requested, cmd)
	return cmd
}

// watcherVenue is a fakeVenue that works stops itself (venue.PositionWatcher), like paper.
type watcherVenue struct {
	*fakeVenue
	seen *[]venue.Protection
}

func (v watcherVenue) WatchPosition(p venue.Protection) { *v.seen = append(*v.seen, p) }

func withStops(req *execv1.SubmitOrderRequest, sl, tp, dist string) *execv1.SubmitOrderRequest {
	opt := func(s string) *typesv1.Decimal {
		if s == "" {
			return nil
		}
		return dec(s).Proto()
	}
	req.StopLoss, req.TakeProfit, req.StopDistance = opt(sl), opt(tp), opt(dist)
	return req
}

func TestSubmit_Stops(t *testing.T) {
	cases := []struct {
		name       string
		req        *execv1.SubmitOrderRequest
		wantDenial risk.Reason
		wantSL     string
		wantTP     string
	}{
		{"MarketBuyWithAStopDistance_StopsBelowTheAsk", withStops(marketOrder("o1", "buy", "0.10"), "", "", "0.00066"), 0, "1.09944", ""},
		{"MarketSellWithAStopDistance_StopsAboveTheBid", withStops(marketOrder("o1", "sell", "0.10"), "", "", "0.00066"), 0, "1.10066", ""},
		{"LimitBuyWithAStopDistance_StopsBelowItsPrice", withStops(limitOrder("o1", "buy", "0.10", "1.09000"), "", "", "0.00050"), 0, "1.08950", ""},
		{"AnExplicitStopLoss_WinsOverTheDistance", withStops(limitOrder("o1", "buy", "0.10", "1.09000"), "1.08000", "1.10000", "0.00050"), 0, "1.08000", "1.10000"},
		{"StopLossAboveABuysPrice_IsDenied", withStops(limitOrder("o1", "buy", "0.10", "1.09000"), "1.09100", "", ""), risk.ReasonInvalidStops, "1.09100", ""},
		{"TakeProfitAboveASellsPrice_IsDenied", withStops(limitOrder("o1", "sell", "0.10", "1.09000"), "", "1.09100", ""), risk.ReasonInvalidStops, "", "1.09100"},
		{"StopLossAtTheAskOfAMarketBuy_IsDenied", withStops(marketOrder("o1", "buy", "0.10"), "1.10010", "", ""), risk.ReasonInvalidStops, "1.10010", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t)
			h.quote("EURUSD", "1.10000", "1.10010")

			o := h.mustSubmit(c.req)

			if d := o.GetDenial(); risk.Reason(d.GetReason()) != c.wantDenial {
				t.Fatalf("denial %v, want %v", d, c.wantDenial)
			}
			if !same(o.GetStopLoss(), c.wantSL) || !same(o.GetTakeProfit(), c.wantTP) {
				t.Fatalf("stops %s / %s, want %s / %s", show(o.GetStopLoss()), show(o.GetTakeProfit()), c.wantSL, c.wantTP)
			}
		})
	}
}

func TestSubmit_StopsBeyondTheSymbolsDigits_AreInvalid(t *testing.T) {
	h := started(t)
	req := withStops(limitOrder("o1", "buy", "0.10", "1.09000"), "1.080001", "", "")

	_, bad := engine.Validate(req, h.eng.Instrument, h.clock.Now())

	if bad == nil || bad.Violations[0].Field != "stop_loss" {
		t.Fatalf("violations %v, want stop_loss", bad)
	}
}

// position reads one position (zero when flat).
func (h *harness) position(sym string) *execv1.Position {
	h.t.Helper()
	for _, p := range h.eng.Positions(sym, true) {
		return p
	}
	return &execv1.Position{Symbol: sym}
}

// TestProtection_FollowsTheFills: the stops an order carries go to the position it opens, stay
// while it is reduced, are replaced by a flip and go when it is flat; each change is a journaled
// POSITION_UPDATED report.
func TestProtection_FollowsTheFills(t *testing.T) {
	posUpd := execv1.ReportType_REPORT_TYPE_POSITION_UPDATED
	fill := execv1.ReportType_REPORT_TYPE_FILLED
	steps := []struct {
		name        string
		req         *execv1.SubmitOrderRequest
		price       string
		wantNet     string
		wantSL      string
		wantTP      string
		wantReports []execv1.ReportType
	}{
		{"AnOpeningBuyWithStops_ProtectsThePosition", withStops(limitOrder("a", "buy", "0.20", "1.10000"), "1.09000", "1.12000", ""), "1.10000", "0.20", "1.09000", "1.12000", []execv1.ReportType{fill, posUpd}},
		{"AReducingSell_KeepsThem", limitOrder("b", "sell", "0.10", "1.10500"), "1.10500", "0.10", "1.09000", "1.12000", []execv1.ReportType{fill}},
		{"AnIncreaseWithoutStops_KeepsThem", limitOrder("c", "buy", "0.10", "1.10000"), "1.10000", "0.20", "1.09000", "1.12000", []execv1.ReportType{fill}},
		{"AnIncreaseWithStops_ReplacesThem", withStops(limitOrder("d", "buy", "0.10", "1.10000"), "1.09500", "", ""), "1.10000", "0.30", "1.09500", "", []execv1.ReportType{fill, posUpd}},
		{"AFlipWithStops_TakesTheFlippingOrders", withStops(limitOrder("e", "sell", "0.50", "1.10000"), "1.11000", "", ""), "1.10000", "-0.20", "1.11000", "", []execv1.ReportType{fill, posUpd}},
		{"AFlattening_ClearsThem", limitOrder("f", "buy", "0.20", "1.10000"), "1.10000", "0", "", "", []execv1.ReportType{fill, posUpd}},
	}
	h := started(t)
	for i, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			h.t = t
			h.mustSubmit(s.req)
			seq := h.lastSeq()

			h.events(filled(s.req.GetClientOrderId(), fmt.Sprintf("T%d", i), show(s.req.GetQuantity()), s.price))

			p := h.position("EURUSD")
			if !same(p.GetNetQuantity(), s.wantNet) || !same(p.GetStopLoss(), s.wantSL) || !same(p.GetTakeProfit(), s.wantTP) {
				t.Fatalf("position %s sl %s tp %s, want %s %s %s", show(p.GetNetQuantity()), show(p.GetStopLoss()), show(p.GetTakeProfit()), s.wantNet, s.wantSL, s.wantTP)
			}
			if got := h.reportTypesAfter(seq); fmt.Sprint(got) != fmt.Sprint(s.wantReports) {
				t.Fatalf("reports %v, want %v", got, s.wantReports)
			}
		})
	}
}

func protect(sym, sl, tp string) *execv1.ModifyPositionRequest {
	r := &execv1.ModifyPositionRequest{Symbol: sym}
	if sl != "" {
		r.StopLoss = dec(sl).Proto()
	}
	if tp != "" {
		r.TakeProfit = dec(tp).Proto()
	}
	return r
}

// TestModifyPosition covers ModifyPosition on a long 0.10 EURUSD position (bid 1.10000).
func TestModifyPosition(t *testing.T) {
	cases := []struct {
		name        string
		opts        []option
		arrange     func(h *harness)
		req         *execv1.ModifyPositionRequest
		wantErr     error
		wantInvalid string
		wantDenial  risk.Reason
		wantSL      string
		wantTP      string
		wantJournal []journal.Kind
	}{
		{
			name:        "StopsOfAnOpenPosition_AreSet",
			req:         protect("EURUSD", "1.09000", "1.12000"),
			wantSL:      "1.09000",
			wantTP:      "1.12000",
			wantJournal: []journal.Kind{command, riskKind, report},
		},
		{
			name:        "AnUnsetField_KeepsItsValue",
			arrange:     func(h *harness) { h.mustProtect(protect("EURUSD", "1.09000", "1.12000")) },
			req:         protect("EURUSD", "", "1.13000"),
			wantSL:      "1.09000",
			wantTP:      "1.13000",
			wantJournal: []journal.Kind{command, riskKind, report},
		},
		{
			name:        "Zero_RemovesIt",
			arrange:     func(h *harness) { h.mustProtect(protect("EURUSD", "1.09000", "1.12000")) },
			req:         protect("EURUSD", "0", ""),
			wantTP:      "1.12000",
			wantJournal: []journal.Kind{command, riskKind, report},
		},
		{
			name:        "WhenHalted_IsStillAllowed",
			arrange:     func(h *harness) { halt(h, risk.Halted) },
			req:         protect("EURUSD", "1.09000", ""),
			wantSL:      "1.09000",
			wantJournal: []journal.Kind{command, riskKind, report},
		},
		{
			name:        "AStopLossAboveTheBidOfALong_IsDenied",
			req:         protect("EURUSD", "1.10000", ""),
			wantDenial:  risk.ReasonInvalidStops,
			wantJournal: []journal.Kind{command, riskKind},
		},
		{
			name:        "ATakeProfitBelowTheBidOfALong_IsDenied",
			req:         protect("EURUSD", "", "1.09990"),
			wantDenial:  risk.ReasonInvalidStops,
			wantJournal: []journal.Kind{command, riskKind},
		},
		{
			name:        "OverTheMessageRate_IsDenied",
			opts:        []option{withLimits(risk.Limits{MessageRate: risk.RateLimit{MaxCount: 1, WindowMS: 1000}})},
			req:         protect("EURUSD", "1.09000", ""),
			wantDenial:  risk.ReasonMessageRate,
			wantJournal: []journal.Kind{command, riskKind},
		},
		{
			name:        "BeyondTheSymbolsDigits_IsAnInvalidArgument",
			req:         protect("EURUSD", "1.090001", ""),
			wantInvalid: "stop_loss",
		},
		{
			name:        "WithNeitherField_IsAnInvalidArgument",
			req:         protect("EURUSD", "", ""),
			wantInvalid: "stop_loss",
		},
		{
			name:        "OfAnUnknownSymbol_IsAnInvalidArgument",
			req:         protect("XAUUSD", "1900", ""),
			wantInvalid: "symbol",
		},
		{
			name:    "WithoutAPosition_FailsWithNoPosition",
			req:     protect("GBPUSD", "1.20000", ""),
			wantErr: engine.ErrNoPosition,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t, c.opts...)
			h.quote("EURUSD", "1.10000", "1.10002")
			h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
			h.events(filled("o1", "T1", "0.10", "1.10000"))
			if c.arrange != nil {
				c.arrange(h)
			}
			seq := h.lastSeq()

			res, err := h.eng.ModifyPosition(context.Background(), c.req)

			var bad *engine.InvalidError
			switch {
			case c.wantInvalid != "":
				if !errors.As(err, &bad) || bad.Violations[0].Field != c.wantInvalid {
					t.Fatalf("err %v, want an invalid %s", err, c.wantInvalid)
				}
			case !errors.Is(err, c.wantErr):
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			if got := h.kindsAfter(seq); fmt.Sprint(got) != fmt.Sprint(c.wantJournal) {
				t.Fatalf("journaled %v, want %v", got, c.wantJournal)
			}
			if err != nil {
				return
			}
			if got := res.Denial; (got == nil) != (c.wantDenial == 0) || got != nil && got.Reason != c.wantDenial {
				t.Fatalf("denial %v, want %v", got, c.wantDenial)
			}
			for _, p := range []*execv1.Position{res.Position, h.position("EURUSD")} {
				if !same(p.GetStopLoss(), c.wantSL) || !same(p.GetTakeProfit(), c.wantTP) {
					t.Fatalf("position sl %s tp %s, want %s %s", show(p.GetStopLoss()), show(p.GetTakeProfit()), c.wantSL, c.wantTP)
				}
			}
			if len(h.fake.kinds()) != 1 {
				t.Fatalf("a venue that is no Protector got %v", h.fake.kinds())
			}
		})
	}
}

func (h *harness) mustProtect(req *execv1.ModifyPositionRequest) *execv1.Position {
	h.t.Helper()
	res, err := h.eng.ModifyPosition(context.Background(), req)
	if err != nil || res.Denial != nil {
		h.t.Fatalf("modify position: %v %v", err, res.Denial)
	}
	return res.Position
}

// On a venue that keeps stops at the broker, the command is journaled before it is sent, and a
// refusal restores the previous stops with a report naming the reason.
func TestModifyPosition_OnAProtectorVenue(t *testing.T) {
	f := &fakeVenue{writeAhead: true}
	h := started(t, withVenue(protectorVenue{f}, f))
	h.quote("EURUSD", "1.10000", "1.10002")
	h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
	h.events(filled("o1", "T1", "0.10", "1.10000"))
	h.mustProtect(protect("EURUSD", "1.09000", ""))
	if got := h.fake.kinds(); fmt.Sprint(got) != fmt.Sprint([]venue.CommandKind{venue.Place, venue.Protect}) {
		t.Fatalf("venue got %v", got)
	}
	seq := h.lastSeq()

	h.mustProtect(protect("EURUSD", "1.09500", ""))
	journaled := h.kindsAfter(seq)
	h.events(venue.Event{Kind: venue.ProtectionRejected, Symbol: "EURUSD", Reason: "retcode 10016 INVALID_STOPS"})

	if want := []journal.Kind{command, riskKind, venueReq, report}; fmt.Sprint(journaled) != fmt.Sprint(want) {
		t.Fatalf("journaled %v, want %v", journaled, want)
	}
	if p := h.position("EURUSD"); !same(p.GetStopLoss(), "1.09000") {
		t.Fatalf("stop loss after the refusal %s, want the previous 1.09000", show(p.GetStopLoss()))
	}
	reps := h.reportsAfter(seq)
	if last := reps[len(reps)-1]; last.GetType() != execv1.ReportType_REPORT_TYPE_POSITION_UPDATED || last.GetReason() != "protection rejected: retcode 10016 INVALID_STOPS" {
		t.Fatalf("last report %v %q", last.GetType(), last.GetReason())
	}
}

// A stop loss that triggers at the venue is booked as a reduce-only order of its own: journaled,
// reported as a fill, the position flat and its stops gone; a repeat of the deal changes nothing,
// and a restart replays it.
func TestProtectiveFill_IsBookedAsAnOrderOfItsOwn(t *testing.T) {
	h := started(t)
	h.mustSubmit(withStops(limitOrder("o1", "buy", "0.10", "1.10000"), "1.09000", "", ""))
	h.events(filled("o1", "T1", "0.10", "1.10000"))
	seq := h.lastSeq()
	sl := venue.Event{Kind: venue.ProtectiveFill, ClientOrderID: "sl:D77", Symbol: "EURUSD", Side: fsm.Sell, Reason: "stop loss 1.09000 touched",
		Fill: fsm.Fill{TradeID: "D77", Quantity: dec("0.10"), Price: dec("1.08990"), TimeUS: t0}}

	h.events(sl)
	h.events(sl)

	o := h.order("sl:D77")
	if o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED || !o.GetReduceOnly() || o.GetStrategyId() != "stop-loss" || o.GetSide() != execv1.OrderSide_ORDER_SIDE_SELL {
		t.Fatalf("protective order %v", o)
	}
	if p := h.position("EURUSD"); !same(p.GetNetQuantity(), "0") || p.GetStopLoss() != nil {
		t.Fatalf("position %s sl %s, want flat without stops", show(p.GetNetQuantity()), show(p.GetStopLoss()))
	}
	if init, done := metric(h.m.Status("INITIALIZED")), metric(h.m.Status("FILLED")); init != 0 || done != 2 {
		t.Fatalf("orders by status: INITIALIZED %v FILLED %v, want 0 and 2", init, done)
	}
	want := []execv1.ReportType{execv1.ReportType_REPORT_TYPE_FILLED, execv1.ReportType_REPORT_TYPE_POSITION_UPDATED}
	if got := h.reportTypesAfter(seq); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reports %v, want %v", got, want)
	}

	st := h.restart()
	h.reconcile(nil)
	if o := h.order("sl:D77"); o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED || st.Fills != 2 {
		t.Fatalf("after restart: %v, %d fills", o.GetStatus(), st.Fills)
	}
	if p := h.position("EURUSD"); !same(p.GetNetQuantity(), "0") || len(h.eng.Protections()) != 0 {
		t.Fatalf("after restart: position %s, protections %v", show(p.GetNetQuantity()), h.eng.Protections())
	}
}

// Stops survive a restart, and a venue that works them on quotes is told them again.
func TestProtection_SurvivesARestart(t *testing.T) {
	var seen []venue.Protection
	f := &fakeVenue{}
	h := started(t, withVenue(watcherVenue{f, &seen}, f))
	h.quote("EURUSD", "1.10000", "1.10002")
	h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
	h.events(filled("o1", "T1", "0.10", "1.10000"))
	h.mustProtect(protect("EURUSD", "1.09000", "1.12000"))

	seen = nil
	h.restart()
	h.reconcile(nil)

	if got := h.eng.Protections()["EURUSD"]; !got[0].Equal(dec("1.09")) || !got[1].Equal(dec("1.12")) {
		t.Fatalf("replayed protection %v", got)
	}
	if len(seen) != 1 || !seen[0].Net.Equal(dec("0.10")) || !seen[0].StopLoss.Equal(dec("1.09")) {
		t.Fatalf("watcher told %+v, want the long 0.10 with its stop loss", seen)
	}
}
