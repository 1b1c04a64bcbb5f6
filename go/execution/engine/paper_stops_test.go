package engine_test

import (
	"testing"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/venue/paper"
)

// On the real paper venue: a market buy with the policy's stop distance opens a protected
// position; quotes above the stop leave it; the first quote at the stop closes it, journaled like
// any fill, and the position is flat without stops, also after a restart.
func TestPaperVenue_StopLossFromTheStopDistanceClosesThePosition(t *testing.T) {
	pv := paper.New(paper.Config{SlippagePoints: 1, CommissionPerLot: dec("3.50"), StartingBalance: dec("100000"), Currency: "USD", IDPrefix: "P"}, instruments)
	h := started(t, withVenue(pv, &fakeVenue{}))
	h.quote("EURUSD", "1.10000", "1.10010")

	o := h.mustSubmit(withStops(marketOrder("o1", "buy", "0.10"), "", "", "0.00050"))
	if o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED || !same(o.GetStopLoss(), "1.09960") {
		t.Fatalf("entry %v stop %s, want FILLED with 1.09960", o.GetStatus(), show(o.GetStopLoss()))
	}
	h.quote("EURUSD", "1.09970", "1.09980")
	if p := h.position("EURUSD"); !same(p.GetNetQuantity(), "0.10") || !same(p.GetStopLoss(), "1.09960") {
		t.Fatalf("above the stop: position %s sl %s", show(p.GetNetQuantity()), show(p.GetStopLoss()))
	}
	seq := h.lastSeq()

	h.quote("EURUSD", "1.09960", "1.09970")

	var closing *execv1.ExecutionReport
	for _, r := range h.reportsAfter(seq) {
		if r.GetType() == execv1.ReportType_REPORT_TYPE_FILLED {
			closing = r
		}
	}
	if closing == nil || closing.GetOrder().GetStrategyId() != "stop-loss" || !same(closing.GetFill().GetPrice(), "1.09959") ||
		!same(closing.GetFill().GetQuantity(), "0.10") || closing.GetOrder().GetSide() != execv1.OrderSide_ORDER_SIDE_SELL {
		t.Fatalf("closing fill %v", closing)
	}
	if p := h.position("EURUSD"); !same(p.GetNetQuantity(), "0") || p.GetStopLoss() != nil {
		t.Fatalf("after the stop: position %s sl %s", show(p.GetNetQuantity()), show(p.GetStopLoss()))
	}
	h.restart()
	if p := h.position("EURUSD"); !same(p.GetNetQuantity(), "0") || len(h.eng.Protections()) != 0 {
		t.Fatalf("after restart: position %s protections %v", show(p.GetNetQuantity()), h.eng.Protections())
	}
}
