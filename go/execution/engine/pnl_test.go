package engine_test

import (
	"context"
	"testing"

	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

func TestPnLGauges_FollowFillsQuotesAndTheAccount(t *testing.T) {
	// One position through its life; after each step the gauges show what a scrape would.
	steps := []struct {
		name                     string
		act                      func(h *harness)
		wantRealized, wantUnreal float64
		wantEquity               float64
		publish                  bool // the service's ticker: quotes alone do not publish
	}{
		{
			name: "AFillOpensTheLong_PublishedWithTheFill",
			act: func(h *harness) {
				h.mustSubmit(limitOrder("buy", "buy", "0.10", "1.10000"))
				h.events(filled("buy", "T1", "0.10", "1.10000"))
			},
		},
		{
			name:       "AQuoteMovesUnrealized_OnTheNextPublish",
			act:        func(h *harness) { h.quote("EURUSD", "1.10150", "1.10160") },
			publish:    true,
			wantUnreal: 15,
		},
		{
			name: "TheVenuesAccountSetsEquity",
			act: func(h *harness) {
				if err := h.eng.OnAccount(risk.Account{Balance: dec("10000"), Equity: dec("10015"), FreeMargin: dec("9000"), TimeUS: h.clock.Now(), Valid: true}); err != nil {
					t.Fatal(err)
				}
			},
			publish:    true,
			wantUnreal: 15,
			wantEquity: 10015,
		},
		{
			name: "ClosingFillRealizesAndLeavesNothingUnrealized",
			act: func(h *harness) {
				h.mustSubmit(limitOrder("sell", "sell", "0.10", "1.10200"))
				h.events(filled("sell", "T2", "0.10", "1.10200"))
			},
			wantRealized: 20,
			wantEquity:   10015,
		},
	}
	h := started(t)
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			s.act(h)
			if s.publish {
				h.eng.PublishPnL()
			}

			if r := metric(h.m.RealizedPnL.WithLabelValues("EURUSD")); r != s.wantRealized {
				t.Fatalf("realized %v, want %v", r, s.wantRealized)
			}
			if u := metric(h.m.UnrealizedPnL.WithLabelValues("EURUSD")); u != s.wantUnreal {
				t.Fatalf("unrealized %v, want %v", u, s.wantUnreal)
			}
			if e := metric(h.m.Equity); e != s.wantEquity {
				t.Fatalf("equity %v, want %v", e, s.wantEquity)
			}
		})
	}
}

func TestPnLGauges_ASymbolAdoptedFromTheVenueIsReportedToo(t *testing.T) {
	h := newHarness(t)
	h.replay()
	h.reconcile(&engine.Snapshot{Positions: []engine.VenuePosition{{Symbol: "XAUUSD", Net: dec("1"), AvgPrice: dec("2000")}}})

	h.eng.PublishPnL()

	for _, name := range []string{"kairos_execution_realized_pnl", "kairos_execution_unrealized_pnl"} {
		if !hasSeries(t, h, name, "XAUUSD") {
			t.Fatalf("no %s series for XAUUSD, a position adopted from the venue", name)
		}
	}
}

// hasSeries reports whether the registry exports metric name with label symbol.
func hasSeries(t *testing.T, h *harness, name, symbol string) bool {
	t.Helper()
	mfs, err := h.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "symbol" && l.GetValue() == symbol {
					return true
				}
			}
		}
	}
	return false
}

func TestEngine_WithoutMetrics_TradesAndPublishesNothing(t *testing.T) {
	h := started(t, withoutMetrics())
	h.mustSubmit(limitOrder("o1", "buy", "0.10", "1.10000"))

	h.events(accepted("o1", "V1"), filled("o1", "T1", "0.10", "1.10000"))
	h.eng.PublishPnL()
	_, err := h.eng.SetTradingState(context.Background(), risk.Halted, "test")

	if err != nil || !same(h.order("o1").GetFilledQuantity(), "0.10") {
		t.Fatalf("without metrics: order %v, err %v", h.order("o1"), err)
	}
}
