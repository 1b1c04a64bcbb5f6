package app_test

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/internal/svctest"
)

// metricValue reads an unlabelled metric from a /metrics page.
func metricValue(t *testing.T, page, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("%s is not on /metrics", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The real service with --max-orders-in-memory 100 (ADR 0125): the orders past the bound leave memory
// and the SQLite journal answers for them, before and after a restart that replays it.
func TestOrdersPastTheMemoryBound_AreAnsweredFromTheJournal_AcrossARestart(t *testing.T) {
	// HALTED: every submission is denied, a finished order at once.
	s := start(t, "", nil, "--max-orders-in-memory", "100", "--initial-state", "HALTED")
	ctx := authed(t)
	var first *execv1.Order
	for i := range 150 {
		res, err := s.Client.SubmitOrder(ctx, market(fmt.Sprintf("m%d", i), "buy", "0.10"))
		if err != nil || res.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_DENIED {
			t.Fatalf("m%d: %v, %v; want DENIED", i, res.GetOrder().GetStatus(), err)
		}
		if i == 0 {
			first = res.GetOrder()
		}
	}
	check := func(when string, s *svctest.Svc) {
		t.Helper()
		page := s.Metrics()
		if held := metricValue(t, page, "kairos_execution_orders_in_memory"); held > 100 {
			t.Fatalf("%s: %v orders in memory, bound 100", when, held)
		}
		if dropped := metricValue(t, page, "kairos_execution_orders_evicted_total"); dropped < 50 {
			t.Fatalf("%s: %v orders dropped from memory, want at least the 50 past the bound", when, dropped)
		}
		got, err := s.Client.GetOrder(ctx, &execv1.GetOrderRequest{ClientOrderId: "m0"})
		if err != nil || !proto.Equal(got.GetOrder(), first) {
			t.Fatalf("%s: GetOrder m0: %v, %v; want %v", when, got.GetOrder(), err, first)
		}
		again, err := s.Client.SubmitOrder(ctx, market("m0", "buy", "0.10"))
		if err != nil || !again.GetDuplicate() || !proto.Equal(again.GetOrder(), first) {
			t.Fatalf("%s: m0 again: %v, %v; want a duplicate of the first", when, again, err)
		}
	}
	check("running", s)

	cfg := s.Cfg
	s.Stop()
	cfg.GRPCAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0"
	check("after a restart", run(t, cfg, ""))
}
