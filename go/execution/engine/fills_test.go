package engine_test

import (
	"testing"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// withCommission is a fill event carrying its commission.
func withCommission(ev venue.Event, commission string) venue.Event {
	ev.Fill.Commission = dec(commission)
	return ev
}

func TestFills_TheSameDealReportedTwice(t *testing.T) {
	cases := []struct {
		name         string
		first, again venue.Event
		wantRealized string
	}{
		{
			// MT5: the order result carries the deal, the DEAL_ADD transaction its commission.
			name:         "TheSecondWithTheCommission_IsMergedQuantityOnceCommissionKept",
			first:        filled("o1", "D1", "0.10", "1.10000"),
			again:        withCommission(filled("o1", "D1", "0.10", "1.10000"), "3.50"),
			wantRealized: "-3.50",
		},
		{
			name:         "TheSecondWithoutTheCommission_ChangesNothing",
			first:        withCommission(filled("o1", "D1", "0.10", "1.10000"), "3.50"),
			again:        filled("o1", "D1", "0.10", "1.10000"),
			wantRealized: "-3.50",
		},
		{
			name:         "Identically_IsDroppedAsADuplicate",
			first:        withCommission(filled("o1", "D1", "0.10", "1.10000"), "3.50"),
			again:        withCommission(filled("o1", "D1", "0.10", "1.10000"), "3.50"),
			wantRealized: "-3.50",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t)
			h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
			h.events(accepted("o1", "V1"), c.first)

			h.events(c.again)

			check := func(when string) {
				t.Helper()
				if o := h.order("o1"); o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED || !same(o.GetFilledQuantity(), "0.10") {
					t.Fatalf("%s: order %v filled %s, want FILLED 0.10", when, o.GetStatus(), show(o.GetFilledQuantity()))
				}
				pos := h.eng.Positions("EURUSD", true)
				if len(pos) != 1 || !same(pos[0].GetNetQuantity(), "0.10") || !same(pos[0].GetRealizedPnl(), c.wantRealized) {
					t.Fatalf("%s: position %v, want net 0.10 realized %s", when, pos, c.wantRealized)
				}
			}
			check("live")
			h.restart()
			check("after replay")
		})
	}
}
