package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
)

// book5 is a started engine with five orders, oldest first:
// e1 EURUSD filled, e2 EURUSD working, g1 GBPUSD working, e3 EURUSD denied (reduce-only), g2 GBPUSD filled.
func book5(t *testing.T) *harness {
	t.Helper()
	h := started(t)
	for _, r := range []*execv1.SubmitOrderRequest{
		limitOrder("e1", "buy", "0.10", "1.10000"),
		limitOrder("e2", "buy", "0.10", "1.09000"),
		on("GBPUSD", limitOrder("g1", "sell", "0.10", "1.26000")),
		reduceOnly(limitOrder("e3", "buy", "0.10", "1.10000")),
		on("GBPUSD", limitOrder("g2", "buy", "0.30", "1.25000")),
	} {
		h.clock.Advance(time.Millisecond)
		h.mustSubmit(r)
	}
	h.events(filled("e1", "T1", "0.10", "1.10000"), accepted("e2", "V2"), accepted("g1", "V3"), filled("g2", "T2", "0.30", "1.25000"))
	return h
}

func ids(orders []*execv1.Order) string {
	var out []string
	for _, o := range orders {
		out = append(out, o.GetClientOrderId())
	}
	return fmt.Sprint(out)
}

func TestGet(t *testing.T) {
	h := book5(t)

	o, err := h.eng.Get(context.Background(), "e2")
	_, errUnknown := h.eng.Get(context.Background(), "zz")

	if err != nil || o.GetClientOrderId() != "e2" || o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_ACCEPTED || o.GetVenueOrderId() != "V2" {
		t.Fatalf("Get(e2) = %v, %v", o, err)
	}
	if !errors.Is(errUnknown, engine.ErrNotFound) {
		t.Fatalf("Get(unknown) err %v, want ErrNotFound", errUnknown)
	}
}

func TestList_FiltersAndPagesNewestFirst(t *testing.T) {
	cases := []struct {
		name          string
		symbol        string
		statuses      []fsm.Status
		openOnly      bool
		offset, limit int
		want          string
		wantNext      int
	}{
		{name: "Everything", limit: 100, want: "[g2 e3 g1 e2 e1]", wantNext: -1},
		{name: "FirstPage", limit: 2, want: "[g2 e3]", wantNext: 2},
		{name: "SecondPage", offset: 2, limit: 2, want: "[g1 e2]", wantNext: 4},
		{name: "LastPage", offset: 4, limit: 2, want: "[e1]", wantNext: -1},
		{name: "BySymbol", symbol: "GBPUSD", limit: 100, want: "[g2 g1]", wantNext: -1},
		{name: "OpenOnly", openOnly: true, limit: 100, want: "[g1 e2]", wantNext: -1},
		{name: "ByStatus", statuses: []fsm.Status{fsm.Filled, fsm.Denied}, limit: 100, want: "[g2 e3 e1]", wantNext: -1},
		{name: "BySymbolAndStatus", symbol: "EURUSD", statuses: []fsm.Status{fsm.Filled}, limit: 100, want: "[e1]", wantNext: -1},
		{name: "NothingMatches", symbol: "USDJPY", limit: 100, want: "[]", wantNext: -1},
	}
	h := book5(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, next := h.eng.List(c.symbol, c.statuses, c.openOnly, c.offset, c.limit)

			if ids(got) != c.want || next != c.wantNext {
				t.Fatalf("List = %s next %d, want %s next %d", ids(got), next, c.want, c.wantNext)
			}
		})
	}
}

func TestPositions(t *testing.T) {
	cases := []struct {
		name        string
		arrange     func(h *harness)
		symbol      string
		includeFlat bool
		want        map[string][3]string // symbol → net, realized, unrealized
	}{
		{
			name: "OpenPositionsWithUnrealizedAtTheLatestQuote",
			want: map[string][3]string{"EURUSD": {"0.10", "0", "0"}, "GBPUSD": {"0.30", "0", "0"}},
		},
		{
			name:    "UnrealizedMarksALongAtTheBid",
			arrange: func(h *harness) { h.quote("EURUSD", "1.10100", "1.10110") },
			symbol:  "EURUSD",
			want:    map[string][3]string{"EURUSD": {"0.10", "0", "10.00"}},
		},
		{
			name: "AFlatPositionIsLeftOutUnlessAsked",
			arrange: func(h *harness) {
				h.mustSubmit(limitOrder("close", "sell", "0.10", "1.10200"))
				h.events(filled("close", "T9", "0.10", "1.10200"))
			},
			want: map[string][3]string{"GBPUSD": {"0.30", "0", "0"}},
		},
		{
			name: "AFlatPositionWithRealizedPnLIsListedWhenAsked",
			arrange: func(h *harness) {
				h.mustSubmit(limitOrder("close", "sell", "0.10", "1.10200"))
				h.events(filled("close", "T9", "0.10", "1.10200"))
			},
			symbol:      "EURUSD",
			includeFlat: true,
			want:        map[string][3]string{"EURUSD": {"0", "20.00", "0"}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := book5(t)
			if c.arrange != nil {
				c.arrange(h)
			}

			got := h.eng.Positions(c.symbol, c.includeFlat)

			if len(got) != len(c.want) {
				t.Fatalf("positions %v, want %v", got, c.want)
			}
			for _, p := range got {
				w, ok := c.want[p.GetSymbol()]
				if !ok || !same(p.GetNetQuantity(), w[0]) || !same(p.GetRealizedPnl(), w[1]) || !same(p.GetUnrealizedPnl(), w[2]) {
					t.Fatalf("%s: net %s realized %s unrealized %s, want %v", p.GetSymbol(), show(p.GetNetQuantity()),
						show(p.GetRealizedPnl()), show(p.GetUnrealizedPnl()), w)
				}
				if p.GetCurrency() != "USD" || p.GetVenue() != "fake" {
					t.Fatalf("%s: currency %q venue %q", p.GetSymbol(), p.GetCurrency(), p.GetVenue())
				}
			}
		})
	}
}

func TestOpenOrders_AreTheWorkingOrdersOldestFirst(t *testing.T) {
	h := book5(t)

	got := h.eng.OpenOrders()

	if len(got) != 2 || got[0].ClientOrderID != "e2" || got[1].ClientOrderID != "g1" {
		t.Fatalf("open orders %v, want e2 then g1", got)
	}
}

func TestPositionState_ReportsTheNetPositionWhenItOpenedAndWhetherAnOrderIsWorking(t *testing.T) {
	cases := []struct {
		symbol      string
		wantNet     string
		wantOpened  bool
		wantWorking bool
	}{
		{"EURUSD", "0.10", true, true},
		{"GBPUSD", "0.30", true, true},
		{"USDJPY", "0", false, false},
	}
	h := book5(t)
	for _, c := range cases {
		t.Run(c.symbol, func(t *testing.T) {
			net, opened, working := h.eng.PositionState(c.symbol)

			if !net.Equal(dec(c.wantNet)) || (opened != 0) != c.wantOpened || working != c.wantWorking {
				t.Fatalf("net %s opened %d working %v, want %s %v %v", net, opened, working, c.wantNet, c.wantOpened, c.wantWorking)
			}
		})
	}
}
