package service_test

// Orders that left the engine's memory (--max-orders-in-memory, ADR 0125) are answered over gRPC
// as they were before: GetOrder finds them, their client_order_id stays taken.

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
)

func TestAnOrderThatLeftMemory_IsServedAsBefore(t *testing.T) {
	s := start(t, config{token: token, maxOrders: 100})
	s.quote(t, "1.10000", "1.10010")
	first := mustSubmit(t, s, marketBuy("first"))
	if first.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED {
		t.Fatalf("arrange: %v, want FILLED on the paper venue", first.GetStatus())
	}
	for i := range 150 {
		req := marketBuy(fmt.Sprintf("o%d", i))
		if i%2 == 0 {
			req.Side = execv1.OrderSide_ORDER_SIDE_SELL
		}
		mustSubmit(t, s, req)
	}
	if n := testutil.ToFloat64(s.m.OrdersEvicted); n < 51 {
		t.Fatalf("%v orders evicted, want the 51 past the bound at least", n)
	}
	page, err := s.client.ListOrders(authed(t), &execv1.ListOrdersRequest{PageSize: 1000})
	if err != nil || len(page.GetOrders()) > 100 {
		t.Fatalf("ListOrders: %d orders, err %v; want at most the 100 in memory", len(page.GetOrders()), err)
	}

	got, err := s.client.GetOrder(authed(t), &execv1.GetOrderRequest{ClientOrderId: "first"})
	if err != nil || !proto.Equal(got.GetOrder(), first) {
		t.Fatalf("GetOrder: %v, %v; want %v", got.GetOrder(), err, first)
	}
	again, err := s.client.SubmitOrder(authed(t), marketBuy("first"))
	if err != nil || !again.GetDuplicate() || !proto.Equal(again.GetOrder(), first) {
		t.Fatalf("the same SubmitOrder again: %v, %v; want a duplicate of the first", again, err)
	}
	other := marketBuy("first")
	other.Quantity = dec("0.20").Proto()
	if _, err := s.client.SubmitOrder(authed(t), other); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("another order under the id: %v, want ALREADY_EXISTS", err)
	}
	if _, err := s.client.CancelOrder(authed(t), &execv1.CancelOrderRequest{ClientOrderId: "first"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("CancelOrder: %v, want FAILED_PRECONDITION (the order is FILLED)", err)
	}
	if _, err := s.client.GetOrder(authed(t), &execv1.GetOrderRequest{ClientOrderId: "never"}); status.Code(err) != codes.NotFound {
		t.Fatalf("an unknown id: %v, want NOT_FOUND", err)
	}
}
