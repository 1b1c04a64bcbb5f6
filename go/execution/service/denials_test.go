package service_test

// The denial budget (risk.Limits.DenialRate, --denial-rate): denied submissions are recorded (an
// order, journal entries, a DENIED report) up to a budget per window; past it a submission risk
// would deny is refused RESOURCE_EXHAUSTED and leaves nothing behind.

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

// denialLimits: at most budget denials recorded per second; orders above 1 lot are denied.
func denialLimits(budget uint32) risk.Limits {
	return risk.Limits{MaxOrderQuantity: dec("1"), DenialRate: risk.RateLimit{MaxCount: budget, WindowMS: 1000}}
}

// tooBig is a limit order risk denies (MAX_ORDER_QUANTITY under denialLimits).
func tooBig(id string) *execv1.SubmitOrderRequest {
	r := limit(id, "1.10000")
	r.Quantity = dec("2.00").Proto()
	return r
}

func retryInfo(err error) *errdetails.RetryInfo {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri
		}
	}
	return nil
}

// mustBeDenied submits req and wants it recorded as a DENIED order with the reason.
func mustBeDenied(t *testing.T, s *server, req *execv1.SubmitOrderRequest, reason execv1.RiskDenyReason) {
	t.Helper()
	seq := s.jr.LastSeq()
	o := mustSubmit(t, s, req)
	if o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_DENIED || o.GetDenial().GetReason() != reason {
		t.Fatalf("%s: %v %v, want DENIED %v", req.GetClientOrderId(), o.GetStatus(), o.GetDenial(), reason)
	}
	if got, err := s.client.GetOrder(authed(t), &execv1.GetOrderRequest{ClientOrderId: req.GetClientOrderId()}); err != nil || got.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_DENIED {
		t.Fatalf("GetOrder %s: %v %v, want the DENIED order", req.GetClientOrderId(), got, err)
	}
	if s.jr.LastSeq() == seq {
		t.Fatalf("%s: the denial was not journaled", req.GetClientOrderId())
	}
}

// mustBeRefused submits req and wants RESOURCE_EXHAUSTED with the budget's details, no order and
// no journal entry.
func mustBeRefused(t *testing.T, s *server, req *execv1.SubmitOrderRequest, reason string) {
	t.Helper()
	seq := s.jr.LastSeq()
	before, err := s.client.ListOrders(authed(t), &execv1.ListOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}

	_, err = s.client.SubmitOrder(authed(t), req)

	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("%s: %v, want RESOURCE_EXHAUSTED", req.GetClientOrderId(), err)
	}
	if ei := errorInfo(err); ei.GetReason() != "TOO_MANY_DENIALS" || ei.GetDomain() != "execution.kairos" || ei.GetMetadata()["risk_reason"] != reason {
		t.Fatalf("error info %v, want TOO_MANY_DENIALS naming %s", ei, reason)
	}
	if ri := retryInfo(err); ri == nil || ri.GetRetryDelay().AsDuration() <= 0 || ri.GetRetryDelay().AsDuration() > time.Second {
		t.Fatalf("retry info %v, want a delay within the 1 s window", ri)
	}
	if _, err := s.client.GetOrder(authed(t), &execv1.GetOrderRequest{ClientOrderId: req.GetClientOrderId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetOrder of the refused %s: %v, want NOT_FOUND", req.GetClientOrderId(), err)
	}
	after, err := s.client.ListOrders(authed(t), &execv1.ListOrdersRequest{})
	if err != nil || len(after.GetOrders()) != len(before.GetOrders()) {
		t.Fatalf("ListOrders after the refusal: %d orders (%v), before %d", len(after.GetOrders()), err, len(before.GetOrders()))
	}
	if s.jr.LastSeq() != seq {
		t.Fatalf("the refusal was journaled: last sequence %d, was %d", s.jr.LastSeq(), seq)
	}
}

func TestDenialBudget_PastItADeniedSubmissionIsRefusedUnrecordedAndCounted(t *testing.T) {
	halt := func(t *testing.T, s *server) {
		if _, err := s.client.SetTradingState(authed(t), &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED}); err != nil {
			t.Fatal(err)
		}
	}
	reduceOnlyBuy := func(id string) *execv1.SubmitOrderRequest {
		r := limit(id, "1.10000")
		r.ReduceOnly = true
		return r
	}
	cases := []struct {
		name    string
		arrange func(t *testing.T, s *server)
		denied  func(id string) *execv1.SubmitOrderRequest
		reason  execv1.RiskDenyReason
	}{
		{name: "OverMaxOrderQuantity", denied: tooBig, reason: execv1.RiskDenyReason_RISK_DENY_REASON_MAX_ORDER_QUANTITY},
		{name: "WhileHalted", arrange: halt, denied: func(id string) *execv1.SubmitOrderRequest { return limit(id, "1.10000") },
			reason: execv1.RiskDenyReason_RISK_DENY_REASON_TRADING_HALTED},
		{name: "ReduceOnlyWhenFlat", denied: reduceOnlyBuy, reason: execv1.RiskDenyReason_RISK_DENY_REASON_REDUCE_ONLY},
	}
	const budget = 3
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, config{token: token, limits: denialLimits(budget)})
			if c.arrange != nil {
				c.arrange(t, s)
			}
			reason := risk.Reason(c.reason).String()

			for i := range budget { // within the budget: recorded, journaled, answered DENIED as always
				mustBeDenied(t, s, c.denied(fmt.Sprintf("d%d", i)), c.reason)
			}
			mustBeRefused(t, s, c.denied("over1"), reason)
			mustBeRefused(t, s, c.denied("over2"), reason)

			if n := testutil.ToFloat64(s.m.DenialsRefused.WithLabelValues(reason)); n != 2 {
				t.Fatalf("kairos_execution_denials_refused_total{reason=%q} = %v, want 2", reason, n)
			}
			if n := testutil.ToFloat64(s.m.Denials.WithLabelValues(reason)); n != budget {
				t.Fatalf("kairos_execution_risk_denials_total{reason=%q} = %v, want %d (the refusals are not denials)", reason, n, budget)
			}
		})
	}
}

func TestDenialBudget_AfterTheWindowPassesDenialsAreRecordedAgain(t *testing.T) {
	s := start(t, config{token: token, limits: denialLimits(2)})
	mustBeDenied(t, s, tooBig("d1"), execv1.RiskDenyReason_RISK_DENY_REASON_MAX_ORDER_QUANTITY)
	s.now.Add((400 * time.Millisecond).Microseconds())
	mustBeDenied(t, s, tooBig("d2"), execv1.RiskDenyReason_RISK_DENY_REASON_MAX_ORDER_QUANTITY)
	_, err := s.client.SubmitOrder(authed(t), tooBig("d3"))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third denial in the window: %v, want RESOURCE_EXHAUSTED", err)
	}
	if d := retryInfo(err).GetRetryDelay().AsDuration(); d != 600*time.Millisecond {
		t.Fatalf("retry delay %v, want 600ms (when the first denial leaves the window)", d)
	}

	s.now.Add((600 * time.Millisecond).Microseconds()) // d1 left the window; d2 is still in it

	mustBeDenied(t, s, tooBig("d3"), execv1.RiskDenyReason_RISK_DENY_REASON_MAX_ORDER_QUANTITY)
	mustBeRefused(t, s, tooBig("d4"), "MAX_ORDER_QUANTITY")
}

func TestDenialBudget_AcceptedOrdersDoNotUseIt(t *testing.T) {
	s := start(t, config{token: token, limits: denialLimits(2)})
	for _, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
		if o := mustSubmit(t, s, limit(id, "1.05000")); o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_ACCEPTED {
			t.Fatalf("%s: %v, want ACCEPTED", id, o.GetStatus())
		}
	}

	mustBeDenied(t, s, tooBig("d1"), execv1.RiskDenyReason_RISK_DENY_REASON_MAX_ORDER_QUANTITY)
	mustBeDenied(t, s, tooBig("d2"), execv1.RiskDenyReason_RISK_DENY_REASON_MAX_ORDER_QUANTITY)
	mustBeRefused(t, s, tooBig("d3"), "MAX_ORDER_QUANTITY")
	// Nor does a spent budget touch accepted orders.
	if o := mustSubmit(t, s, limit("a6", "1.05000")); o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_ACCEPTED {
		t.Fatalf("a6 with the denial budget spent: %v, want ACCEPTED", o.GetStatus())
	}
}

func TestDenialBudget_NeverRefusesTheKillSwitchsFlattenOrders(t *testing.T) {
	s := start(t, config{token: token, limits: denialLimits(1)})
	s.quote(t, "1.09990", "1.10000")
	for _, id := range []string{"long1", "long2"} { // a 2-lot long: its flatten order is over the 1-lot max, so risk denies it
		r := marketBuy(id)
		r.Quantity = dec("1.00").Proto()
		if o := mustSubmit(t, s, r); o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED {
			t.Fatalf("%s: %v %v, want FILLED", id, o.GetStatus(), o.GetDenial())
		}
	}
	mustBeDenied(t, s, tooBig("d1"), execv1.RiskDenyReason_RISK_DENY_REASON_MAX_ORDER_QUANTITY)
	mustBeRefused(t, s, tooBig("d2"), "MAX_ORDER_QUANTITY")

	resp, err := s.client.SetTradingState(authed(t), &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED,
		CancelAll: true, Flatten: true, Reason: "kill"})

	if err != nil {
		t.Fatalf("kill switch with the denial budget spent: %v", err)
	}
	ids := resp.GetFlattenClientOrderIds()
	if len(ids) != 1 {
		t.Fatalf("flatten orders %v, want one", ids)
	}
	o, err := s.client.GetOrder(authed(t), &execv1.GetOrderRequest{ClientOrderId: ids[0]})
	if err != nil || o.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_DENIED ||
		o.GetOrder().GetDenial().GetReason() != execv1.RiskDenyReason_RISK_DENY_REASON_MAX_ORDER_QUANTITY {
		t.Fatalf("flatten order %v %v, want it recorded DENIED (MAX_ORDER_QUANTITY), not refused", o, err)
	}
}

func TestDenialBudget_ARefusedClientOrderIDCanBeUsedAgain(t *testing.T) {
	cases := []struct {
		name   string
		before func(s *server) // between the refusal and the retry
		retry  *execv1.SubmitOrderRequest
		want   execv1.OrderStatus
	}{
		{name: "ForAnOrderRiskAccepts_AtOnce", retry: limit("x", "1.05000"), want: execv1.OrderStatus_ORDER_STATUS_ACCEPTED},
		{name: "ForTheSameDeniedOrder_OnceTheWindowPassed", before: func(s *server) { s.now.Add(time.Second.Microseconds()) },
			retry: tooBig("x"), want: execv1.OrderStatus_ORDER_STATUS_DENIED},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := start(t, config{token: token, limits: denialLimits(1)})
			mustBeDenied(t, s, tooBig("d1"), execv1.RiskDenyReason_RISK_DENY_REASON_MAX_ORDER_QUANTITY)
			mustBeRefused(t, s, tooBig("x"), "MAX_ORDER_QUANTITY")
			if c.before != nil {
				c.before(s)
			}

			resp, err := s.client.SubmitOrder(authed(t), c.retry)

			if err != nil || resp.GetDuplicate() || resp.GetOrder().GetStatus() != c.want {
				t.Fatalf("retry of the refused id: %v %v, want a new %v order", resp, err, c.want)
			}
		})
	}
}

func TestDenialBudget_GetRiskLimitsReportsIt(t *testing.T) {
	s := start(t, config{token: token, limits: denialLimits(7)})
	got, err := s.client.GetRiskLimits(authed(t), &execv1.GetRiskLimitsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r := got.GetLimits().GetDenialRate(); r.GetMaxCount() != 7 || r.GetWindowMs() != 1000 {
		t.Fatalf("denial_rate %v, want 7 per 1000 ms", r)
	}
}
