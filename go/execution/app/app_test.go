package app_test

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	inferencev1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/internal/svctest"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/testkit"
)

var (
	start  = svctest.Start
	run    = svctest.Run
	authed = svctest.Authed
	dec    = svctest.Dec
	market = svctest.Market
)

const token = svctest.Token

func TestEveryCallNeedsTheBearerToken(t *testing.T) {
	s := start(t, "", nil)
	// A client that sends no credentials of its own (the shared one sends the token on every call).
	cc, err := grpc.NewClient(s.Ready.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := execv1.NewExecutionServiceClient(cc)
	calls := map[string]func(ctx context.Context) error{
		"SubmitOrder": func(ctx context.Context) error {
			_, err := client.SubmitOrder(ctx, market("a1", "buy", "0.10"))
			return err
		},
		"CancelOrder": func(ctx context.Context) error {
			_, err := client.CancelOrder(ctx, &execv1.CancelOrderRequest{ClientOrderId: "a1"})
			return err
		},
		"CancelAll": func(ctx context.Context) error {
			_, err := client.CancelAll(ctx, &execv1.CancelAllRequest{})
			return err
		},
		"SetTradingState": func(ctx context.Context) error {
			_, err := client.SetTradingState(ctx, &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED})
			return err
		},
		"ListOrders": func(ctx context.Context) error {
			_, err := client.ListOrders(ctx, &execv1.ListOrdersRequest{})
			return err
		},
		"ListPositions": func(ctx context.Context) error {
			_, err := client.ListPositions(ctx, &execv1.ListPositionsRequest{})
			return err
		},
		"GetRiskLimits": func(ctx context.Context) error {
			_, err := client.GetRiskLimits(ctx, &execv1.GetRiskLimitsRequest{})
			return err
		},
		"StreamExecutionReports": func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			st, err := client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		},
	}
	for name, call := range calls {
		for _, c := range []struct {
			what string
			ctx  context.Context
		}{
			{"no token", context.Background()},
			{"wrong token", metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer nope")},
			{"not bearer", metadata.AppendToOutgoingContext(context.Background(), "authorization", token)},
		} {
			t.Run(name+"/"+c.what, func(t *testing.T) {
				if err := call(c.ctx); status.Code(err) != codes.Unauthenticated {
					t.Fatalf("err = %v, want UNAUTHENTICATED", err)
				}
			})
		}
	}
	if _, err := s.Client.GetRiskLimits(context.Background(), &execv1.GetRiskLimitsRequest{}); err != nil {
		t.Fatalf("read-only call with the token: %v", err)
	}
}

func TestHealthAndReflectionAreServed(t *testing.T) {
	s := start(t, "", nil)
	resp, err := healthpb.NewHealthClient(s.Conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "kairos.execution.v1.ExecutionService"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}
	if m := s.Metrics(); !strings.Contains(m, "kairos_execution_trading_state 1") || !strings.Contains(m, "kairos_execution_reconciled 1") {
		t.Fatalf("paper venue should be reconciled and ACTIVE at start:\n%s", grepLines(m, "kairos_execution_trading_state", "kairos_execution_reconciled"))
	}
}

func grepLines(s string, keys ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, k := range keys {
			if strings.HasPrefix(l, k) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

func TestBadInputIsRefusedWithDetailsAndNothingIsJournaled(t *testing.T) {
	s := start(t, "", nil)
	ctx := authed(t)
	if _, err := s.Client.SubmitOrder(ctx, &execv1.SubmitOrderRequest{ClientOrderId: "known", Symbol: "EURUSD", Side: execv1.OrderSide_ORDER_SIDE_BUY,
		Type: execv1.OrderType_ORDER_TYPE_LIMIT, Price: dec("1.10000"), Quantity: dec("0.10"), StrategyId: "test"}); err != nil {
		t.Fatal(err)
	}
	limit := func(mut func(r *execv1.SubmitOrderRequest)) *execv1.SubmitOrderRequest {
		r := &execv1.SubmitOrderRequest{ClientOrderId: "bad1", Symbol: "EURUSD", Side: execv1.OrderSide_ORDER_SIDE_BUY,
			Type: execv1.OrderType_ORDER_TYPE_LIMIT, Price: dec("1.10000"), Quantity: dec("0.10")}
		mut(r)
		return r
	}
	cases := []struct {
		name  string
		req   *execv1.SubmitOrderRequest
		code  codes.Code
		field string
	}{
		{"unknown symbol", limit(func(r *execv1.SubmitOrderRequest) { r.Symbol = "NOPE" }), codes.InvalidArgument, "symbol"},
		{"zero quantity", limit(func(r *execv1.SubmitOrderRequest) { r.Quantity = dec("0") }), codes.InvalidArgument, "quantity"},
		{"negative quantity", limit(func(r *execv1.SubmitOrderRequest) { r.Quantity = dec("-0.10") }), codes.InvalidArgument, "quantity"},
		{"missing quantity", limit(func(r *execv1.SubmitOrderRequest) { r.Quantity = nil }), codes.InvalidArgument, "quantity"},
		{"scale beyond 18 (not a number)", limit(func(r *execv1.SubmitOrderRequest) { r.Quantity = &typesv1.Decimal{Units: 1, Scale: 40} }), codes.InvalidArgument, "quantity"},
		{"quantity off the volume step", limit(func(r *execv1.SubmitOrderRequest) { r.Quantity = dec("0.105") }), codes.InvalidArgument, "quantity"},
		{"price beyond the symbol's digits", limit(func(r *execv1.SubmitOrderRequest) { r.Price = dec("1.100001") }), codes.InvalidArgument, "price"},
		{"negative price", limit(func(r *execv1.SubmitOrderRequest) { r.Price = dec("-1.1") }), codes.InvalidArgument, "price"},
		{"limit without price", limit(func(r *execv1.SubmitOrderRequest) { r.Price = nil }), codes.InvalidArgument, "price"},
		{"no side", limit(func(r *execv1.SubmitOrderRequest) { r.Side = 0 }), codes.InvalidArgument, "side"},
		{"bad client order id", limit(func(r *execv1.SubmitOrderRequest) { r.ClientOrderId = "has space" }), codes.InvalidArgument, "client_order_id"},
		{"client order id too long", limit(func(r *execv1.SubmitOrderRequest) { r.ClientOrderId = strings.Repeat("x", 32) }), codes.InvalidArgument, "client_order_id"},
		{"replayed id with different content", limit(func(r *execv1.SubmitOrderRequest) { r.ClientOrderId = "known"; r.Quantity = dec("0.20") }), codes.AlreadyExists, ""},
	}
	before := s.JournalLastSeq()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.Client.SubmitOrder(ctx, c.req)
			st, _ := status.FromError(err)
			if st.Code() != c.code {
				t.Fatalf("code %v (%v), want %v", st.Code(), err, c.code)
			}
			if c.field != "" {
				found := false
				for _, d := range st.Details() {
					if br, ok := d.(*errdetails.BadRequest); ok {
						for _, v := range br.GetFieldViolations() {
							found = found || v.GetField() == c.field
						}
					}
				}
				if !found {
					t.Fatalf("no BadRequest field violation for %q in %v", c.field, st.Details())
				}
			} else if len(st.Details()) == 0 {
				t.Fatal("no error details")
			}
		})
	}
	for _, c := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"get unknown order", func() error {
			_, err := s.Client.GetOrder(ctx, &execv1.GetOrderRequest{ClientOrderId: "unknown"})
			return err
		}, codes.NotFound},
		{"cancel unknown order", func() error {
			_, err := s.Client.CancelOrder(ctx, &execv1.CancelOrderRequest{ClientOrderId: "unknown"})
			return err
		}, codes.NotFound},
		{"cancel-all unknown symbol", func() error { _, err := s.Client.CancelAll(ctx, &execv1.CancelAllRequest{Symbol: "NOPE"}); return err }, codes.InvalidArgument},
		{"unspecified trading state", func() error { _, err := s.Client.SetTradingState(ctx, &execv1.SetTradingStateRequest{}); return err }, codes.InvalidArgument},
		{"page size above 1000", func() error {
			_, err := s.Client.ListOrders(ctx, &execv1.ListOrdersRequest{PageSize: 1001})
			return err
		}, codes.InvalidArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.call(); status.Code(err) != c.code {
				t.Fatalf("err = %v, want %v", err, c.code)
			}
		})
	}
	if after := s.JournalLastSeq(); after != before {
		t.Fatalf("bad input was journaled: last seq %d -> %d", before, after)
	}
	o, err := s.Client.GetOrder(ctx, &execv1.GetOrderRequest{ClientOrderId: "known"})
	if err != nil || !proto.Equal(o.GetOrder().GetQuantity(), dec("0.10")) {
		t.Fatalf("the known order changed: %v %v", o, err)
	}
}

func TestPaperVenueEndToEndWithRealTicksAndSignals(t *testing.T) {
	ns := testutil.NATS(t)
	s := start(t, ns.ClientURL(), nil)
	ticks := testutil.EURUSDTicks(t, 400)
	ctx := authed(t)

	reports, err := s.Client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{Symbols: []string{"EURUSD"}})
	if err != nil {
		t.Fatal(err)
	}

	// No quote yet: market orders are denied, not guessed.
	r, err := s.Client.SubmitOrder(ctx, market("m0", "buy", "0.10"))
	if err != nil || r.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_DENIED ||
		r.GetOrder().GetDenial().GetReason() != execv1.RiskDenyReason_RISK_DENY_REASON_QUOTE_MISSING {
		t.Fatalf("market order without quote: %v %v", r, err)
	}

	s.PublishTicks(ticks[:100])
	s.WaitQuote()
	last := ticks[99]
	// Market buy fills at the ask plus 1 point of slippage plus ceil(0.5 points/lot × 0.10).
	r, err = s.Client.SubmitOrder(ctx, market("m1", "buy", "0.10"))
	if err != nil {
		t.Fatal(err)
	}
	o := r.GetOrder()
	ask, _ := decimal.FromFloat(last.Ask, 5)
	want := ask.Add(decimal.New(2, 5))
	if o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED || !decimal.New(o.GetAvgFillPrice().GetUnits(), uint8(o.GetAvgFillPrice().GetScale())).Equal(want) {
		t.Fatalf("market buy: status %v avg %v, want FILLED at %s", o.GetStatus(), o.GetAvgFillPrice(), want)
	}
	again, err := s.Client.SubmitOrder(ctx, market("m1", "buy", "0.10"))
	if err != nil || !again.GetDuplicate() || again.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED {
		t.Fatalf("identical resubmit: %v %v", again, err)
	}

	// A sell limit above the market rests, then fills when a later real tick reaches it.
	var hi float64
	for _, tk := range ticks[100:] {
		hi = max(hi, tk.Bid)
	}
	limitPx, _ := decimal.FromFloat(hi, 5)
	lr, err := s.Client.SubmitOrder(ctx, &execv1.SubmitOrderRequest{ClientOrderId: "l1", Symbol: "EURUSD", Side: execv1.OrderSide_ORDER_SIDE_SELL,
		Type: execv1.OrderType_ORDER_TYPE_LIMIT, Price: limitPx.Proto(), Quantity: dec("0.10"), StrategyId: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if lr.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_ACCEPTED {
		t.Skipf("the limit at the later high %s was marketable at once (%v); data too flat for this check", limitPx, lr.GetOrder().GetStatus())
	}
	s.PublishTicks(ticks[100:])
	testkit.WaitFor(t, "the resting limit order to fill on real ticks", 10*time.Second, func() bool {
		g, err := s.Client.GetOrder(ctx, &execv1.GetOrderRequest{ClientOrderId: "l1"})
		return err == nil && g.GetOrder().GetStatus() == execv1.OrderStatus_ORDER_STATUS_FILLED
	})

	// Signals from the inference server become policy orders attributed to the model, by the
	// decision policy the signal carries from the model card.
	sig := &inferencev1.Signal{Symbol: "EURUSD", TimeMsc: ticks[len(ticks)-1].TimeMsc, Direction: inferencev1.Direction_DIRECTION_UP,
		Strength: 0.7, Outputs: []float32{0.1, 0.1, 0.8}, ModelName: "kairos-eurusd", ModelVersion: "7",
		Policy: &inferencev1.DecisionPolicy{EntryEdge: 0.3, MoveUp: 1, MoveDown: 1, MinHoldBars: 1, MaxLots: 0.10},
		Hops:   []*typesv1.HopStamp{{Stage: typesv1.HopStage_HOP_STAGE_INFERENCE_SEND, TimeUs: time.Now().UnixMicro()}}}
	data, _ := proto.Marshal(sig)
	if err := s.NC.Publish("kairos.signal.EURUSD", data); err != nil {
		t.Fatal(err)
	}
	var policyOrder *execv1.Order
	testkit.WaitFor(t, "the signal to produce a filled order", 10*time.Second, func() bool {
		l, err := s.Client.ListOrders(ctx, &execv1.ListOrdersRequest{Symbol: "EURUSD", Statuses: []execv1.OrderStatus{execv1.OrderStatus_ORDER_STATUS_FILLED}})
		if err != nil {
			return false
		}
		for _, o := range l.GetOrders() {
			if o.GetModelName() == "kairos-eurusd" {
				policyOrder = o
				return true
			}
		}
		return false
	})
	if policyOrder.GetModelVersion() != "7" || policyOrder.GetStrategyId() != "kairos-signal" || policyOrder.GetSide() != execv1.OrderSide_ORDER_SIDE_BUY {
		t.Fatalf("policy order attribution: %v", policyOrder)
	}
	// Net: +0.10 (m1) -0.10 (l1) +0.10 (policy target) = 0.10 long.
	pos, err := s.Client.ListPositions(ctx, &execv1.ListPositionsRequest{Symbol: "EURUSD"})
	if err != nil || len(pos.GetPositions()) != 1 || !proto.Equal(pos.GetPositions()[0].GetNetQuantity(), dec("0.10")) {
		t.Fatalf("positions: %v %v", pos, err)
	}

	// The stream saw every step, with strictly increasing sequence numbers and the signal's hops.
	var seq uint64
	seen := map[execv1.ReportType]int{}
	hopsSeen := false
	for seen[execv1.ReportType_REPORT_TYPE_FILLED] < 3 {
		rep, err := reports.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if rep.GetReport().GetSequence() <= seq {
			t.Fatalf("sequence %d after %d", rep.GetReport().GetSequence(), seq)
		}
		seq = rep.GetReport().GetSequence()
		seen[rep.GetReport().GetType()]++
		for _, h := range rep.GetReport().GetHops() {
			hopsSeen = hopsSeen || h.GetStage() == typesv1.HopStage_HOP_STAGE_EXECUTION_RECEIVE
		}
	}
	if seen[execv1.ReportType_REPORT_TYPE_DENIED] != 1 || seen[execv1.ReportType_REPORT_TYPE_SUBMITTED] < 3 || !hopsSeen {
		t.Fatalf("reports: %v, hops from the signal: %v", seen, hopsSeen)
	}
	// The signal is counted once its handler returns, which is after its order shows as filled:
	// wait for the count (bounded) rather than read it at once.
	for _, want := range []string{`kairos_execution_risk_denials_total{reason="QUOTE_MISSING"} 1`, `kairos_execution_orders{status="FILLED"} 3`,
		`kairos_execution_signals_total{outcome="order",symbol="EURUSD"} 1`, `kairos_execution_stage_latency_seconds_count{stage="risk"}`} {
		testkit.WaitFor(t, "metrics with "+want, 5*time.Second, func() bool { return strings.Contains(s.Metrics(), want) })
	}
}

func TestKillSwitchHaltsCancelsAndFlattens(t *testing.T) {
	ns := testutil.NATS(t)
	s := start(t, ns.ClientURL(), nil)
	ctx := authed(t)
	s.PublishTicks(testutil.EURUSDTicks(t, 50))
	s.WaitQuote()
	if _, err := s.Client.SubmitOrder(ctx, market("k1", "buy", "0.30")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.SubmitOrder(ctx, &execv1.SubmitOrderRequest{ClientOrderId: "k2", Symbol: "EURUSD", Side: execv1.OrderSide_ORDER_SIDE_BUY,
		Type: execv1.OrderType_ORDER_TYPE_LIMIT, Price: dec("1.11000"), Quantity: dec("0.10"), StrategyId: "test"}); err != nil {
		t.Fatal(err)
	}
	resp, err := s.Client.SetTradingState(ctx, &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED, Reason: "test", CancelAll: true, Flatten: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCurrent() != execv1.TradingState_TRADING_STATE_HALTED || len(resp.GetCanceledClientOrderIds()) != 1 || len(resp.GetFlattenClientOrderIds()) != 1 {
		t.Fatalf("kill: %v", resp)
	}
	k2, _ := s.Client.GetOrder(ctx, &execv1.GetOrderRequest{ClientOrderId: "k2"})
	if k2.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_CANCELED {
		t.Fatalf("working order after kill: %v", k2.GetOrder().GetStatus())
	}
	pos, _ := s.Client.ListPositions(ctx, &execv1.ListPositionsRequest{})
	if len(pos.GetPositions()) != 0 {
		t.Fatalf("positions after flatten: %v", pos.GetPositions())
	}
	r, err := s.Client.SubmitOrder(ctx, market("k3", "buy", "0.10"))
	if err != nil || r.GetOrder().GetDenial().GetReason() != execv1.RiskDenyReason_RISK_DENY_REASON_TRADING_HALTED {
		t.Fatalf("submit after kill: %v %v", r, err)
	}
}

func TestRestartReplaysTheJournalAndKeepsTheHaltedState(t *testing.T) {
	ns := testutil.NATS(t)
	s := start(t, ns.ClientURL(), nil)
	ctx := authed(t)
	s.PublishTicks(testutil.EURUSDTicks(t, 50))
	s.WaitQuote()
	for i := 0; i < 5; i++ {
		// Different sizes: identical intents within the duplicate window would be denied.
		if _, err := s.Client.SubmitOrder(ctx, market(fmt.Sprintf("r%d", i), "buy", fmt.Sprintf("0.1%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Client.SetTradingState(ctx, &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED, Reason: "before restart"}); err != nil {
		t.Fatal(err)
	}
	cfg := s.Cfg
	s.Stop()
	cfg.GRPCAddr, cfg.MetricsAddr = "127.0.0.1:0", "127.0.0.1:0"
	s2 := run(t, cfg, ns.ClientURL())
	l, err := s2.Client.ListOrders(ctx, &execv1.ListOrdersRequest{})
	if err != nil || len(l.GetOrders()) != 5 {
		t.Fatalf("orders after restart: %d %v", len(l.GetOrders()), err)
	}
	pos, _ := s2.Client.ListPositions(ctx, &execv1.ListPositionsRequest{})
	if len(pos.GetPositions()) != 1 || !proto.Equal(pos.GetPositions()[0].GetNetQuantity(), dec("0.60")) {
		t.Fatalf("position after restart: %v", pos.GetPositions())
	}
	lim, _ := s2.Client.GetRiskLimits(ctx, &execv1.GetRiskLimitsRequest{})
	if lim.GetTradingState() != execv1.TradingState_TRADING_STATE_HALTED {
		t.Fatalf("state after restart: %v, want the journaled HALTED", lim.GetTradingState())
	}
	_, err = s2.Client.SubmitOrder(ctx, market("r0", "sell", "0.10"))
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("reusing a journaled client order id: %v", err)
	}
}

func TestReportStreamResumesAfterASequenceWithoutGapsOrRepeats(t *testing.T) {
	ns := testutil.NATS(t)
	s := start(t, ns.ClientURL(), nil)
	ctx := authed(t)
	s.PublishTicks(testutil.EURUSDTicks(t, 20))
	s.WaitQuote()
	for i := 0; i < 3; i++ {
		if _, err := s.Client.SubmitOrder(ctx, market(fmt.Sprintf("a%d", i), "buy", fmt.Sprintf("0.1%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(after uint64, n int) []*execv1.ExecutionReport {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := s.Client.StreamExecutionReports(sctx, &execv1.StreamExecutionReportsRequest{AfterSequence: after})
		if err != nil {
			t.Fatal(err)
		}
		var out []*execv1.ExecutionReport
		for len(out) < n {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("after %d, report %d: %v", after, len(out), err)
			}
			out = append(out, r.GetReport())
		}
		return out
	}
	// From the start of the day: the reconciliation state change, then SUBMITTED, ACCEPTED, FILLED ×3.
	all := recv(0, 10)
	if all[0].GetType() != execv1.ReportType_REPORT_TYPE_TRADING_STATE_CHANGED || all[9].GetType() != execv1.ReportType_REPORT_TYPE_FILLED {
		t.Fatalf("first %v last %v", all[0].GetType(), all[9].GetType())
	}
	// Resuming after the fifth report gives exactly the ones after it, then live ones.
	mid := all[4].GetSequence()
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = s.Client.SubmitOrder(ctx, market("live", "buy", "0.20"))
	}()
	rest := recv(mid, 8)
	for i, r := range rest[:5] {
		if !proto.Equal(r, all[5+i]) {
			t.Fatalf("resumed report %d differs: %v vs %v", i, r, all[5+i])
		}
	}
	for i := 1; i < len(rest); i++ {
		if rest[i].GetSequence() <= rest[i-1].GetSequence() {
			t.Fatalf("sequence not increasing at %d", i)
		}
	}
	if rest[7].GetOrder().GetClientOrderId() != "live" || rest[7].GetType() != execv1.ReportType_REPORT_TYPE_FILLED {
		t.Fatalf("live tail: %v", rest[5:])
	}
}

// overtaking publishes a signal made at a later tick than the last quote execution has (with a
// different ask), as one that overtook its own tick; it returns that tick's index.
func overtaking(t *testing.T, s *svctest.Svc, ticks []testutil.Tick) int {
	t.Helper()
	s.PublishTicks(ticks[:100])
	s.WaitQuote()
	k := 101
	for k < len(ticks)-1 && ticks[k].Ask == ticks[99].Ask {
		k++
	}
	closing := ticks[k]
	if closing.Ask == ticks[99].Ask {
		t.Fatal("no later tick with another ask in the data")
	}
	sig := &inferencev1.Signal{Symbol: "EURUSD", TimeMsc: closing.TimeMsc, Direction: inferencev1.Direction_DIRECTION_UP,
		Strength: 0.7, Outputs: []float32{0.1, 0.1, 0.8}, ModelName: "kairos-eurusd", ModelVersion: "7",
		Bid: closing.Bid, Ask: closing.Ask,
		Policy: &inferencev1.DecisionPolicy{EntryEdge: 0.3, MoveUp: 1, MoveDown: 1, MinHoldBars: 1, MaxLots: 0.10}}
	data, _ := proto.Marshal(sig)
	if err := s.NC.Publish("kairos.signal.EURUSD", data); err != nil {
		t.Fatal(err)
	}
	return k
}

// filledAt waits for the signal's order to fill and checks its price: a market buy fills at the
// ask plus 1 point of slippage plus ceil(0.5 points/lot × 0.10).
func filledAt(t *testing.T, s *svctest.Svc, ask float64) {
	t.Helper()
	ctx := authed(t)
	var filled *execv1.Order
	testkit.WaitFor(t, "the signal's order to fill", 10*time.Second, func() bool {
		l, err := s.Client.ListOrders(ctx, &execv1.ListOrdersRequest{Symbol: "EURUSD", Statuses: []execv1.OrderStatus{execv1.OrderStatus_ORDER_STATUS_FILLED}})
		if err != nil || len(l.GetOrders()) == 0 {
			return false
		}
		filled = l.GetOrders()[0]
		return true
	})
	a, _ := decimal.FromFloat(ask, 5)
	want := a.Add(decimal.New(2, 5))
	if got := decimal.New(filled.GetAvgFillPrice().GetUnits(), uint8(filled.GetAvgFillPrice().GetScale())); !got.Equal(want) {
		t.Fatalf("fill at %s, want its tick's ask + 2 points = %s", got, want)
	}
}

func TestASignalThatOvertakesItsTick_WaitsForItAndTheTicksBeforeItAreWorkedInOrder(t *testing.T) {
	ns := testutil.NATS(t)
	s := start(t, ns.ClientURL(), func(c *config.Config) { c.Policy.SignalQuoteWait = 10 * time.Second })
	ticks := testutil.EURUSDTicks(t, 400)
	k := overtaking(t, s, ticks)
	testkit.WaitFor(t, "the signal to wait for its tick", 10*time.Second, func() bool {
		return strings.Contains(s.Metrics(), "kairos_execution_signal_quote_waiting 1")
	})
	// The collector's batch with the ticks up to the signal's comes while the signal waits.
	s.PublishTicks(ticks[100 : k+1])
	filledAt(t, s, ticks[k].Ask)
	m := s.Metrics()
	for _, want := range []string{`kairos_execution_signal_quote_waits_total{outcome="caught_up"} 1`, "kairos_execution_quotes_overtaken_total 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestASignalWhoseTickDoesNotComeInTime_IsFilledAtItsOwnQuoteAndTheLateTicksDoNotMoveItBack(t *testing.T) {
	ns := testutil.NATS(t)
	s := start(t, ns.ClientURL(), func(c *config.Config) { c.Policy.SignalQuoteWait = time.Millisecond })
	ticks := testutil.EURUSDTicks(t, 400)
	k := overtaking(t, s, ticks)
	// Not at the previous quote's ask: the signal's own.
	filledAt(t, s, ticks[k].Ask)
	// The collector's late batch (the ticks up to and including the closing one) is not worked again.
	s.PublishTicks(ticks[100 : k+1])
	testkit.WaitFor(t, "the late ticks to be dropped and counted", 10*time.Second, func() bool {
		m := s.Metrics()
		return strings.Contains(m, fmt.Sprintf("kairos_execution_quotes_overtaken_total %d", k+1-100)) &&
			strings.Contains(m, `kairos_execution_signal_quote_waits_total{outcome="timed_out"} 1`)
	})
}

// The service sets the process's collector from its config (ADR 0106): the soft memory limit and
// the target, unless the environment's GOMEMLIMIT / GOGC say otherwise.
func TestTheCollectorRunsAtTheConfiguredMemoryLimit(t *testing.T) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOGC or GOMEMLIMIT is set: the environment wins over the config")
	}
	prevLimit, prevPercent := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	debug.SetGCPercent(prevPercent)
	t.Cleanup(func() { debug.SetMemoryLimit(prevLimit); debug.SetGCPercent(prevPercent) })
	start(t, "", nil, "--gc-memory-limit-mib", "300", "--gc-percent", "-1")
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Errorf("memory limit %d, want %d", got, 300<<20)
	}
	// SetGCPercent returns the target it replaces; the cleanup restores the test binary's own.
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Errorf("GC target %d, want -1 (collect at the memory limit)", got)
	}
}
