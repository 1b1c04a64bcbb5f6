package engine_test

import (
	"fmt"
	"slices"
	"testing"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

func TestReconcile_AdoptsTheVenuesTruth(t *testing.T) {
	// Before the restart: "sent" was submitted (no answer yet), "working" accepted, and 0.10 EURUSD bought.
	cases := []struct {
		name        string
		snap        engine.Snapshot
		wantStatus  map[string]execv1.OrderStatus
		wantNet     map[string]string
		wantAdjusts map[string]float64
	}{
		{
			name: "WhenTheVenueAgrees_NothingChanges",
			snap: engine.Snapshot{
				Orders:    []engine.VenueOrder{{ClientOrderID: "sent", VenueOrderID: "V1"}, {ClientOrderID: "working", VenueOrderID: "V2"}},
				Positions: []engine.VenuePosition{{Symbol: "EURUSD", Net: dec("0.10"), AvgPrice: dec("1.10000")}},
			},
			wantStatus: map[string]execv1.OrderStatus{"sent": execv1.OrderStatus_ORDER_STATUS_ACCEPTED, "working": execv1.OrderStatus_ORDER_STATUS_ACCEPTED},
			wantNet:    map[string]string{"EURUSD": "0.10"},
		},
		{
			name: "AnOrderTheVenueNoLongerWorks_IsCanceled",
			snap: engine.Snapshot{
				Orders:    []engine.VenueOrder{{ClientOrderID: "working", VenueOrderID: "V2"}},
				Positions: []engine.VenuePosition{{Symbol: "EURUSD", Net: dec("0.10"), AvgPrice: dec("1.10000")}},
			},
			wantStatus:  map[string]execv1.OrderStatus{"sent": execv1.OrderStatus_ORDER_STATUS_CANCELED, "working": execv1.OrderStatus_ORDER_STATUS_ACCEPTED},
			wantNet:     map[string]string{"EURUSD": "0.10"},
			wantAdjusts: map[string]float64{"order_not_working": 1},
		},
		{
			name: "APositionThatDiffers_IsTheVenues",
			snap: engine.Snapshot{
				Orders: []engine.VenueOrder{{ClientOrderID: "sent"}, {ClientOrderID: "working"}},
				Positions: []engine.VenuePosition{
					{Symbol: "EURUSD", Net: dec("0.05"), AvgPrice: dec("1.10000")},
					{Symbol: "EURUSD", Net: dec("0.02"), AvgPrice: dec("1.10000")}, // two MT5 positions, netted
					{Symbol: "GBPUSD", Net: dec("-0.30"), AvgPrice: dec("1.25000")},
				},
			},
			wantStatus:  map[string]execv1.OrderStatus{"sent": execv1.OrderStatus_ORDER_STATUS_ACCEPTED, "working": execv1.OrderStatus_ORDER_STATUS_ACCEPTED},
			wantNet:     map[string]string{"EURUSD": "0.07", "GBPUSD": "-0.30"},
			wantAdjusts: map[string]float64{"position": 2},
		},
		{
			name: "APositionTheVenueDoesNotHave_IsClosed",
			snap: engine.Snapshot{
				Orders: []engine.VenueOrder{{ClientOrderID: "sent"}, {ClientOrderID: "working"}},
			},
			wantStatus:  map[string]execv1.OrderStatus{"sent": execv1.OrderStatus_ORDER_STATUS_ACCEPTED, "working": execv1.OrderStatus_ORDER_STATUS_ACCEPTED},
			wantNet:     map[string]string{"EURUSD": "0"},
			wantAdjusts: map[string]float64{"position": 1},
		},
		{
			name: "AWorkingOrderUnknownToTheJournal_IsCounted",
			snap: engine.Snapshot{
				Orders:    []engine.VenueOrder{{ClientOrderID: "sent"}, {ClientOrderID: "working"}, {ClientOrderID: "stranger"}},
				Positions: []engine.VenuePosition{{Symbol: "EURUSD", Net: dec("0.10"), AvgPrice: dec("1.10000")}},
			},
			wantStatus:  map[string]execv1.OrderStatus{"sent": execv1.OrderStatus_ORDER_STATUS_ACCEPTED, "working": execv1.OrderStatus_ORDER_STATUS_ACCEPTED},
			wantNet:     map[string]string{"EURUSD": "0.10"},
			wantAdjusts: map[string]float64{"unknown_venue_order": 1},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t)
			h.mustSubmit(limitOrder("bought", "buy", "0.10", "1.10000"))
			h.mustSubmit(limitOrder("sent", "buy", "0.10", "1.09000"))
			h.mustSubmit(limitOrder("working", "sell", "0.10", "1.20000"))
			h.events(filled("bought", "T1", "0.10", "1.10000"), accepted("working", "V2"))
			h.restart()

			h.reconcile(&c.snap)

			for id, want := range c.wantStatus {
				if got := h.order(id).GetStatus(); got != want {
					t.Fatalf("%s is %v, want %v", id, got, want)
				}
			}
			for sym, want := range c.wantNet {
				if net, _, _ := h.eng.PositionState(sym); !net.Equal(dec(want)) {
					t.Fatalf("%s net %s, want %s", sym, net, want)
				}
			}
			for _, k := range []string{"order_not_working", "position", "unknown_venue_order"} {
				if n := metric(h.m.ReconcileAdjust.WithLabelValues(k)); n != c.wantAdjusts[k] {
					t.Fatalf("reconcile adjustments{%s} = %v, want %v", k, n, c.wantAdjusts[k])
				}
			}
			if s, reconciled := h.eng.State(); s != risk.Active || !reconciled {
				t.Fatalf("after reconciliation %v reconciled %v, want ACTIVE", s, reconciled)
			}
		})
	}
}

func TestReconcile_TheAccountInTheSnapshotRunsTheBreakers(t *testing.T) {
	h := newHarness(t, withLimits(risk.Limits{MaxDailyLoss: dec("100"), DailyLossState: risk.Halted}))
	h.replay()
	h.reconcile(&engine.Snapshot{Account: risk.Account{Equity: dec("10000"), TimeUS: h.clock.Now(), Valid: true}})

	h.reconcile(&engine.Snapshot{Account: risk.Account{Equity: dec("9800"), TimeUS: h.clock.Now(), Valid: true}})

	// Reconciliation returns to the last journaled state, which the breaker set.
	if s, _ := h.eng.State(); s != risk.Halted {
		t.Fatalf("state %v, want HALTED by the daily loss breaker", s)
	}
}

func TestUnreconcile_RefusesNewOrdersUntilTheNextReconciliation(t *testing.T) {
	h := started(t)

	h.eng.Unreconcile("link lost")
	res, err := h.submit(limitOrder("o1", "buy", "0.10", "1.10000"))

	if err != nil || risk.Reason(res.Order.GetDenial().GetReason()) != risk.ReasonNotReconciled {
		t.Fatalf("submit while unreconciled: %v %v, want denied NOT_RECONCILED", res.Order, err)
	}
	if s, reconciled := h.eng.State(); s != risk.Active || reconciled {
		t.Fatalf("state %v reconciled %v, want ACTIVE kept and not reconciled", s, reconciled)
	}

	h.reconcile(nil)

	if o := h.mustSubmit(limitOrder("o2", "buy", "0.10", "1.10000")); o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_SUBMITTED {
		t.Fatalf("after reconciliation: %v, want SUBMITTED", o)
	}
}

// A venue that restores the open orders (the paper venue) is handed them at the first reconciliation.
func TestReconcile_ARestoringVenueGetsTheOpenOrdersBackOnce(t *testing.T) {
	rv := &restoringVenue{fakeVenue: &fakeVenue{}}
	h := started(t, withVenue(rv, rv.fakeVenue))
	h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))
	h.mustSubmit(limitOrder("o2", "buy", "0.10", "1.10000"))
	h.events(filled("o2", "T2", "0.10", "1.10000"))
	h.restart()
	rv.restored = nil

	h.reconcile(nil)
	h.reconcile(nil)

	if len(rv.restored) != 1 || len(rv.restored[0]) != 1 || rv.restored[0][0] != "o1" {
		t.Fatalf("restored %v, want [[o1]] once", rv.restored)
	}
	if st := h.order("o1").GetStatus(); st != execv1.OrderStatus_ORDER_STATUS_ACCEPTED {
		t.Fatalf("o1 is %v, want ACCEPTED by the venue's restore", st)
	}
}

// restoringVenue is a fakeVenue that also implements venue.Restorer, accepting what it is handed.
type restoringVenue struct {
	*fakeVenue
	restored [][]string
}

func (v *restoringVenue) Restore(open []*fsm.Order) []venue.Event {
	var ids []string
	var evs []venue.Event
	for _, o := range open {
		ids = append(ids, o.ClientOrderID)
		evs = append(evs, accepted(o.ClientOrderID, "R-"+o.ClientOrderID))
	}
	v.restored = append(v.restored, ids)
	return evs
}

// The broker holds the stops: at reconciliation the venue's stop loss and take profit replace the
// journal's (counted as a "protection" adjustment and journaled); a flat position has none.
func TestReconcile_AdoptsTheVenuesStops(t *testing.T) {
	cases := []struct {
		name       string
		venue      []engine.VenuePosition
		wantSL     string
		wantTP     string
		wantAdjust float64
	}{
		{"TheSameStops_ChangeNothing", []engine.VenuePosition{{Symbol: "EURUSD", Net: dec("0.10"), HasStops: true, StopLoss: dec("1.09000"), TakeProfit: dec("1.12000")}}, "1.09000", "1.12000", 0},
		{"StopsMovedInTheTerminal_AreTheVenues", []engine.VenuePosition{{Symbol: "EURUSD", Net: dec("0.10"), HasStops: true, StopLoss: dec("1.09500")}}, "1.09500", "", 1},
		{"AVenueThatReportsNoStops_KeepsTheJournals", []engine.VenuePosition{{Symbol: "EURUSD", Net: dec("0.10")}}, "1.09000", "1.12000", 0},
		{"AFlatPositionAtTheVenue_HasNone", nil, "", "", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t, withWriteAhead())
			h.mustSubmit(withStops(limitOrder("o1", "buy", "0.10", "1.10000"), "1.09000", "1.12000", ""))
			h.events(filled("o1", "T1", "0.10", "1.10000"))
			h.restart()
			seq := h.lastSeq()

			h.reconcile(&engine.Snapshot{Positions: c.venue})

			p := h.eng.Protections()["EURUSD"]
			if !p[0].Equal(dec(orZero(c.wantSL))) || !p[1].Equal(dec(orZero(c.wantTP))) {
				t.Fatalf("stops %v, want %s / %s", p, c.wantSL, c.wantTP)
			}
			if got := metric(h.m.ReconcileAdjust.WithLabelValues("protection")); got != c.wantAdjust {
				t.Fatalf("protection adjustments %v, want %v", got, c.wantAdjust)
			}
			updated := 0
			for _, r := range h.reportsAfter(seq) {
				if r.GetType() == execv1.ReportType_REPORT_TYPE_POSITION_UPDATED {
					updated++
				}
			}
			if float64(updated) != c.wantAdjust {
				t.Fatalf("%d POSITION_UPDATED reports, want %v", updated, c.wantAdjust)
			}
		})
	}
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}

func TestReconcile_AdoptsAtMostMaxAdoptedSymbolsUnconfiguredSymbols(t *testing.T) {
	// The book already holds MaxAdoptedSymbols symbols adopted from the venue (none configured).
	full := make([]engine.VenuePosition, 0, engine.MaxAdoptedSymbols)
	for i := range engine.MaxAdoptedSymbols {
		full = append(full, engine.VenuePosition{Symbol: fmt.Sprintf("S%04d", i), Net: dec("1"), AvgPrice: dec("1")})
	}
	cases := []struct {
		name        string
		extra       engine.VenuePosition
		wantNet     string
		wantRefused float64
		wantSeries  bool
	}{
		{"ANewUnconfiguredSymbol_IsRefusedAndGetsNoSeries", engine.VenuePosition{Symbol: "ZZZ", Net: dec("2"), AvgPrice: dec("1")}, "0", 1, false},
		{"AConfiguredSymbol_IsStillAdopted", engine.VenuePosition{Symbol: "GBPUSD", Net: dec("-0.30"), AvgPrice: dec("1.25000")}, "-0.30", 0, true},
		{"AnAdoptedSymbol_IsStillReconciled", engine.VenuePosition{Symbol: "S0000", Net: dec("2"), AvgPrice: dec("1")}, "3", 0, true}, // netted with its first position
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t)
			h.reconcile(&engine.Snapshot{Positions: full})
			h.reconcile(&engine.Snapshot{Positions: append(slices.Clone(full), c.extra)})
			h.eng.PublishPnL()

			if net, _, _ := h.eng.PositionState(c.extra.Symbol); !net.Equal(dec(c.wantNet)) {
				t.Fatalf("%s net %s, want %s", c.extra.Symbol, net, c.wantNet)
			}
			if got := metric(h.m.ReconcileRefused); got != c.wantRefused {
				t.Fatalf("refused symbols counted %v, want %v", got, c.wantRefused)
			}
			for _, name := range []string{"kairos_execution_realized_pnl", "kairos_execution_unrealized_pnl"} {
				if got := hasSeries(t, h, name, c.extra.Symbol); got != c.wantSeries {
					t.Fatalf("%s series for %s: %v, want %v", name, c.extra.Symbol, got, c.wantSeries)
				}
			}
			if s, reconciled := h.eng.State(); s != risk.Active || !reconciled {
				t.Fatalf("after reconciliation %v reconciled %v, want ACTIVE", s, reconciled)
			}
		})
	}
}
