package app_test

import (
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// sample returns the value of one exposition line "name{labels} value", or NaN when absent.
func sample(metrics, series string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return math.NaN()
}

func decFloat(d interface {
	GetUnits() int64
	GetScale() uint32
}) float64 {
	return decimal.New(d.GetUnits(), uint8(d.GetScale())).Float()
}

func TestPnLGaugesFollowFillsAndQuotesAndCountersStartAtZero(t *testing.T) {
	ns := testutil.NATS(t)
	s := start(t, ns.ClientURL(), nil)
	ctx := authed(t)

	m := s.Metrics()
	for _, series := range []string{
		`kairos_execution_invalid_transitions_total{event="filled"}`,
		`kairos_execution_invalid_transitions_total{event="canceled"}`,
		`kairos_execution_reconcile_adjustments_total{kind="position"}`,
		`kairos_execution_reconcile_adjustments_total{kind="unknown_venue_order"}`,
		`kairos_execution_realized_pnl{symbol="EURUSD"}`,
		`kairos_execution_unrealized_pnl{symbol="GBPUSD"}`,
	} {
		if v := sample(m, series); v != 0 {
			t.Errorf("%s = %v at start, want 0", series, v)
		}
	}

	ticks := testutil.EURUSDTicks(t, 300)
	s.PublishTicks(ticks[:100])
	s.WaitQuote()
	if r, err := s.Client.SubmitOrder(ctx, market("p1", "buy", "0.10")); err != nil || r.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED {
		t.Fatalf("market buy: %v %v", r, err)
	}
	if r, err := s.Client.SubmitOrder(ctx, market("p2", "sell", "0.05")); err != nil || r.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED {
		t.Fatalf("market sell: %v %v", r, err)
	}
	s.PublishTicks(ticks[100:])
	// The gauges agree with the positions the API reports (same book, same latest quote) within
	// a couple of ticker periods; realized moved on the partial close (spread, slippage, commission).
	var pos *execv1.Position
	testkit.WaitFor(t, "P&L gauges equal to ListPositions", 10*time.Second, func() bool {
		ps, err := s.Client.ListPositions(ctx, &execv1.ListPositionsRequest{Symbol: "EURUSD"})
		if err != nil || len(ps.GetPositions()) != 1 {
			return false
		}
		pos = ps.GetPositions()[0]
		m := s.Metrics()
		// Equity is refreshed by the same ticker: on a loaded machine it may lag the per-symbol
		// gauges by a tick, so it is part of the condition rather than read once afterwards.
		equity := 100000 + decFloat(pos.GetRealizedPnl()) + decFloat(pos.GetUnrealizedPnl())
		return math.Abs(sample(m, `kairos_execution_realized_pnl{symbol="EURUSD"}`)-decFloat(pos.GetRealizedPnl())) < 1e-9 &&
			math.Abs(sample(m, `kairos_execution_unrealized_pnl{symbol="EURUSD"}`)-decFloat(pos.GetUnrealizedPnl())) < 1e-9 &&
			math.Abs(sample(m, "kairos_execution_equity")-equity) <= 0.011
	})
	if decFloat(pos.GetRealizedPnl()) >= 0 {
		t.Fatalf("realized P&L after a round trip through the spread = %v, want negative", decFloat(pos.GetRealizedPnl()))
	}
	eq := sample(s.Metrics(), "kairos_execution_equity")
	if want := 100000 + decFloat(pos.GetRealizedPnl()) + decFloat(pos.GetUnrealizedPnl()); math.Abs(eq-want) > 0.011 {
		t.Fatalf("equity gauge %v, want balance + realized + unrealized = %v", eq, want)
	}
}
