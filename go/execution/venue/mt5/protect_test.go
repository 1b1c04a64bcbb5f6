package mt5_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/internal/svctest"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
)

func eq(p *typesv1.Decimal, want string) bool {
	d, err := decimal.FromProto(p)
	return err == nil && d.Equal(decimal.MustParse(want))
}

func (r *rig) position(t *testing.T) *execv1.Position {
	t.Helper()
	res, err := r.s.Client.ListPositions(svctest.Authed(t), &execv1.ListPositionsRequest{Symbol: "EURUSD", IncludeFlat: true})
	if err != nil || len(res.GetPositions()) == 0 {
		t.Fatalf("positions: %v %v", res, err)
	}
	return res.GetPositions()[0]
}

// Stops go to the broker with the order that opens the position; ModifyPosition changes them
// there (MODIFY_POSITION), and a terminal that refuses puts the previous values back.
func TestStopsAreSetAtTheBrokerAndModifiedThere(t *testing.T) {
	r := newRig(t)
	r.connect(t)
	req := svctest.Market("m1", "buy", "0.10")
	req.StopLoss, req.TakeProfit = svctest.Dec("1.10000"), svctest.Dec("1.15000")
	if _, err := r.s.Client.SubmitOrder(svctest.Authed(t), req); err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, "m1", execv1.OrderStatus_ORDER_STATUS_FILLED)
	if o, _ := r.term.Order("m1"); !eq(o.StopLoss, "1.1") || !eq(o.TakeProfit, "1.15") {
		t.Fatalf("the PLACE command carried sl %v tp %v", o.StopLoss, o.TakeProfit)
	}
	if p := r.position(t); !eq(p.GetStopLoss(), "1.1") || !eq(p.GetTakeProfit(), "1.15") {
		t.Fatalf("position sl %v tp %v", p.GetStopLoss(), p.GetTakeProfit())
	}

	res, err := r.s.Client.ModifyPosition(svctest.Authed(t), &execv1.ModifyPositionRequest{Symbol: "EURUSD", StopLoss: svctest.Dec("1.10500")})
	if err != nil || res.GetDenial() != nil || !eq(res.GetPosition().GetStopLoss(), "1.105") {
		t.Fatalf("modify position: %v %v", res, err)
	}
	testutil.Eventually(t, 10*time.Second, "the terminal to move the stop loss", func() bool {
		o, _ := r.term.Order("m1")
		return eq(o.StopLoss, "1.105") && eq(o.TakeProfit, "1.15")
	})

	r.term.After = func(cmd *bridgev1.OrderCommand, res *bridgev1.OrderResult) (*bridgev1.OrderResult, bool) {
		if cmd.GetKind() == bridgev1.CommandKind_COMMAND_KIND_MODIFY_POSITION {
			res.Retcode, res.Comment = 10016, "invalid stops"
			return res, false
		}
		return nil, false
	}
	if _, err := r.s.Client.ModifyPosition(svctest.Authed(t), &execv1.ModifyPositionRequest{Symbol: "EURUSD", StopLoss: svctest.Dec("1.11000")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the refused stop loss to be put back", func() bool {
		return eq(r.position(t).GetStopLoss(), "1.105")
	})
}

// ModifyOrder on MT5: OrderModify with the new price and stops; the order is PENDING_UPDATE until
// the terminal answers, then ACCEPTED with the new values, or the old ones with the retcode.
func TestModifyOrderGoesThroughOrderModify(t *testing.T) {
	r := newRig(t)
	r.connect(t)
	req := svctest.Market("l1", "buy", "0.10")
	req.Type, req.Price = execv1.OrderType_ORDER_TYPE_LIMIT, svctest.Dec("1.11000")
	if _, err := r.s.Client.SubmitOrder(svctest.Authed(t), req); err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, "l1", execv1.OrderStatus_ORDER_STATUS_ACCEPTED)

	res, err := r.s.Client.ModifyOrder(svctest.Authed(t), &execv1.ModifyOrderRequest{ClientOrderId: "l1", Price: svctest.Dec("1.11100"), StopLoss: svctest.Dec("1.10000")})
	if err != nil || res.GetDenial() != nil {
		t.Fatalf("modify: %v %v", res, err)
	}
	o := r.waitStatus(t, "l1", execv1.OrderStatus_ORDER_STATUS_ACCEPTED)
	testutil.Eventually(t, 10*time.Second, "the new price to be confirmed", func() bool {
		o = r.status(t, "l1")
		return eq(o.GetPrice(), "1.111") && o.GetStatus() == execv1.OrderStatus_ORDER_STATUS_ACCEPTED
	})
	if t1, _ := r.term.Order("l1"); !eq(t1.Price, "1.111") || !eq(t1.StopLoss, "1.1") || !eq(o.GetStopLoss(), "1.1") {
		t.Fatalf("terminal price %v sl %v, service sl %v", t1.Price, t1.StopLoss, o.GetStopLoss())
	}

	// MT5 cannot change a pending order's volume.
	_, err = r.s.Client.ModifyOrder(svctest.Authed(t), &execv1.ModifyOrderRequest{ClientOrderId: "l1", Quantity: svctest.Dec("0.20")})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("quantity change on MT5: %v, want INVALID_ARGUMENT", err)
	}

	// A refusal keeps the confirmed values.
	r.term.After = func(cmd *bridgev1.OrderCommand, res *bridgev1.OrderResult) (*bridgev1.OrderResult, bool) {
		if cmd.GetKind() == bridgev1.CommandKind_COMMAND_KIND_MODIFY {
			res.Retcode, res.Comment = 10015, "invalid price"
			return res, false
		}
		return nil, false
	}
	if _, err := r.s.Client.ModifyOrder(svctest.Authed(t), &execv1.ModifyOrderRequest{ClientOrderId: "l1", Price: svctest.Dec("1.11200")}); err != nil {
		t.Fatal(err)
	}
	var last *execv1.ExecutionReport
	testutil.Eventually(t, 10*time.Second, "the refused modification to be reported", func() bool {
		last = r.lastReport(t, "l1")
		return last.GetType() == execv1.ReportType_REPORT_TYPE_UPDATE_REJECTED
	})
	if o := last.GetOrder(); o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_ACCEPTED || !eq(o.GetPrice(), "1.111") || last.GetReason() != "retcode 10015 INVALID_PRICE: invalid price" {
		t.Fatalf("after the refusal: %v price %v reason %q", o.GetStatus(), o.GetPrice(), last.GetReason())
	}
}

// lastReport is the newest journaled report of an order.
func (r *rig) lastReport(t *testing.T, id string) *execv1.ExecutionReport {
	t.Helper()
	upTo := r.s.JournalLastSeq()
	ctx, cancel := context.WithTimeout(svctest.Authed(t), 5*time.Second)
	defer cancel()
	st, err := r.s.Client.StreamExecutionReports(ctx, &execv1.StreamExecutionReportsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var last *execv1.ExecutionReport
	for {
		m, err := st.Recv()
		if err != nil {
			break
		}
		if m.GetReport().GetOrder().GetClientOrderId() == id {
			last = m.GetReport()
		}
		if m.GetReport().GetSequence() >= upTo {
			break
		}
	}
	return last
}

// A stop loss that triggers at the broker comes up as a deal named "sl:<position>": the service
// books it as a reduce-only order of its own and the position is flat.
func TestAStopLossAtTheBrokerIsBookedAsAnOrder(t *testing.T) {
	r := newRig(t)
	r.connect(t)
	req := svctest.Market("m1", "buy", "0.10")
	req.StopLoss = svctest.Dec("1.10000")
	if _, err := r.s.Client.SubmitOrder(svctest.Authed(t), req); err != nil {
		t.Fatal(err)
	}
	r.waitStatus(t, "m1", execv1.OrderStatus_ORDER_STATUS_FILLED)

	for _, f := range r.term.TriggerStop("sl", "EURUSD", svctest.Dec("1.09990")) {
		if err := r.peer.Send(f); err != nil {
			t.Fatal(err)
		}
	}

	testutil.Eventually(t, 10*time.Second, "the position to be flat", func() bool {
		p := r.position(t)
		return eq(p.GetNetQuantity(), "0") && p.GetStopLoss() == nil
	})
	res, err := r.s.Client.ListOrders(svctest.Authed(t), &execv1.ListOrdersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	o := res.GetOrders()[0]
	if o.GetClientOrderId()[:3] != "sl:" || o.GetStrategyId() != "stop-loss" || o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED ||
		!eq(o.GetAvgFillPrice(), "1.0999") || o.GetSide() != execv1.OrderSide_ORDER_SIDE_SELL {
		t.Fatalf("protective order %v", o)
	}
	testutil.Eventually(t, 5*time.Second, "the service to acknowledge every frame", func() bool { return r.peer.Unacked() == 0 })
}
