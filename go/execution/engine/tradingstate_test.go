package engine_test

import (
	"context"
	"errors"
	"testing"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

func TestSetTradingState(t *testing.T) {
	cases := []struct {
		name       string
		reconciled bool
		to         risk.State
		wantErr    error
		wantState  risk.State
	}{
		{"Halted_IsAllowedBeforeReconciliation", false, risk.Halted, nil, risk.Halted},
		{"Active_BeforeReconciliation_IsRefused", false, risk.Active, engine.ErrNotReconciled, risk.Halted},
		{"Reducing_AfterReconciliation_IsSet", true, risk.Reducing, nil, risk.Reducing},
		{"Unspecified_IsInvalid", true, risk.StateUnspecified, engine.ErrInvalidState, risk.Active},
		{"BeyondHalted_IsInvalid", true, risk.Halted + 1, engine.ErrInvalidState, risk.Active},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.replay()
			if c.reconciled {
				h.reconcile(nil)
			}
			seq := h.lastSeq()

			_, err := h.eng.SetTradingState(context.Background(), c.to, "operator")

			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err %v, want %v", err, c.wantErr)
			}
			if s, _ := h.eng.State(); s != c.wantState {
				t.Fatalf("state %v, want %v", s, c.wantState)
			}
			reps := h.reportsAfter(seq)
			if c.wantErr != nil {
				if len(reps) != 0 {
					t.Fatalf("a refused change was journaled: %v", reps)
				}
				return
			}
			if len(reps) != 1 || reps[0].GetType() != execv1.ReportType_REPORT_TYPE_TRADING_STATE_CHANGED ||
				risk.State(reps[0].GetTradingState()) != c.to || reps[0].GetReason() != "operator" {
				t.Fatalf("journaled %v, want one TRADING_STATE_CHANGED to %v with the reason", reps, c.to)
			}
			if g := metric(h.m.TradingState); g != float64(c.to) {
				t.Fatalf("trading state gauge %v, want %v", g, float64(c.to))
			}
		})
	}
}

func TestFlatten_WhenHalted_ClosesEachOpenPositionWithAReduceOnlyMarketOrder(t *testing.T) {
	h := started(t)
	h.quote("EURUSD", "1.09990", "1.10000")
	h.quote("GBPUSD", "1.24990", "1.25000")
	h.mustSubmit(limitOrder("long", "buy", "0.10", "1.10000"))
	h.mustSubmit(on("GBPUSD", limitOrder("short", "sell", "0.20", "1.25000")))
	h.events(filled("long", "T1", "0.10", "1.10000"), filled("short", "T2", "0.20", "1.25000"))
	if _, err := h.eng.SetTradingState(context.Background(), risk.Halted, "kill switch"); err != nil {
		t.Fatal(err)
	}

	ids, err := h.eng.Flatten(context.Background(), "kill switch")

	if err != nil || len(ids) != 2 {
		t.Fatalf("Flatten = %v, %v; want two orders", ids, err)
	}
	want := map[string]execv1.OrderSide{"EURUSD": execv1.OrderSide_ORDER_SIDE_SELL, "GBPUSD": execv1.OrderSide_ORDER_SIDE_BUY}
	qty := map[string]string{"EURUSD": "0.10", "GBPUSD": "0.20"}
	for _, id := range ids {
		o := h.order(id)
		if o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_SUBMITTED || !o.GetReduceOnly() || o.GetType() != execv1.OrderType_ORDER_TYPE_MARKET ||
			o.GetSide() != want[o.GetSymbol()] || !same(o.GetQuantity(), qty[o.GetSymbol()]) {
			t.Fatalf("flatten order %v: want a SUBMITTED reduce-only market %v of %s", o, want[o.GetSymbol()], qty[o.GetSymbol()])
		}
	}
	if s, _ := h.eng.State(); s != risk.Halted {
		t.Fatalf("flatten changed the state to %v", s)
	}
}

func TestFlatten_WithNoPosition_SendsNothing(t *testing.T) {
	h := started(t)

	ids, err := h.eng.Flatten(context.Background(), "kill switch")

	if err != nil || len(ids) != 0 || len(h.fake.kinds()) != 0 {
		t.Fatalf("Flatten = %v, %v, venue got %v; want nothing", ids, err, h.fake.kinds())
	}
}
