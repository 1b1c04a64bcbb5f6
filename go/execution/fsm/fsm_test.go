package fsm

import (
	"errors"
	"testing"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
)

// allowed is the specification, written out independently of the table: state → event → target
// ("fill" = by quantity, "prev" = back to the state before the pending request).
var allowed = map[Status]map[Event]string{
	Initialized: {EvDeny: "DENIED", EvEmulate: "EMULATED", EvRelease: "RELEASED", EvSubmit: "SUBMITTED", EvAccept: "ACCEPTED",
		EvReject: "REJECTED", EvCancel: "CANCELED", EvExpire: "EXPIRED", EvTrigger: "TRIGGERED", EvFill: "fill"},
	Emulated:  {EvRelease: "RELEASED", EvCancel: "CANCELED", EvExpire: "EXPIRED", EvUpdate: "EMULATED"},
	Released:  {EvSubmit: "SUBMITTED", EvDeny: "DENIED", EvCancel: "CANCELED"},
	Submitted: {EvPendingUpdate: "PENDING_UPDATE", EvPendingCancel: "PENDING_CANCEL", EvReject: "REJECTED", EvCancel: "CANCELED", EvAccept: "ACCEPTED", EvTrigger: "TRIGGERED", EvExpire: "EXPIRED", EvFill: "fill"},
	Accepted: {EvReject: "REJECTED", EvPendingUpdate: "PENDING_UPDATE", EvPendingCancel: "PENDING_CANCEL", EvCancel: "CANCELED",
		EvTrigger: "TRIGGERED", EvExpire: "EXPIRED", EvUpdate: "ACCEPTED", EvFill: "fill"},
	Canceled: {EvFill: "fill"},
	PendingUpdate: {EvReject: "REJECTED", EvAccept: "ACCEPTED", EvUpdate: "prev", EvUpdateReject: "prev", EvCancel: "CANCELED", EvExpire: "EXPIRED",
		EvTrigger: "TRIGGERED", EvPendingUpdate: "PENDING_UPDATE", EvPendingCancel: "PENDING_CANCEL", EvFill: "fill"},
	PendingCancel: {EvReject: "REJECTED", EvPendingCancel: "PENDING_CANCEL", EvCancel: "CANCELED", EvCancelReject: "prev", EvExpire: "EXPIRED", EvAccept: "ACCEPTED", EvFill: "fill"},
	Triggered: {EvReject: "REJECTED", EvPendingUpdate: "PENDING_UPDATE", EvPendingCancel: "PENDING_CANCEL", EvCancel: "CANCELED", EvExpire: "EXPIRED",
		EvUpdate: "TRIGGERED", EvFill: "fill"},
	PartiallyFilled: {EvPendingUpdate: "PENDING_UPDATE", EvPendingCancel: "PENDING_CANCEL", EvCancel: "CANCELED", EvExpire: "EXPIRED", EvUpdate: "PARTIALLY_FILLED", EvFill: "fill"},
	Denied:          {},
	Rejected:        {},
	Expired:         {},
	Filled:          {},
}

func order(s Status) *Order {
	return &Order{ClientOrderID: "c1", Status: s, Quantity: decimal.MustParse("1.00"), prevStatus: Accepted}
}

func TestEveryTransitionMatchesTheSpecification(t *testing.T) {
	for _, s := range AllStatuses() {
		for _, ev := range AllEvents() {
			want, ok := allowed[s][ev]
			t.Run(s.String()+"/"+ev.String(), func(t *testing.T) {
				if got := Allowed(s, ev); got != ok {
					t.Fatalf("Allowed = %v, want %v", got, ok)
				}
				o := order(s)
				var err error
				if ev == EvFill {
					err = o.ApplyFill(Fill{TradeID: "t1", Quantity: decimal.MustParse("0.40"), Price: decimal.MustParse("1.10000")}, 1)
				} else {
					err = o.Apply(ev, 1)
				}
				if !ok {
					if !errors.Is(err, ErrTransition) {
						t.Fatalf("forbidden transition gave err=%v, want ErrTransition", err)
					}
					if o.Status != s {
						t.Fatalf("forbidden transition changed the state to %s", o.Status)
					}
					return
				}
				if err != nil {
					t.Fatalf("allowed transition failed: %v", err)
				}
				switch want {
				case "fill":
					if s == Canceled {
						want = "CANCELED" // a partial late fill leaves a cancelled order cancelled
					} else {
						want = "PARTIALLY_FILLED"
					}
				case "prev":
					want = "ACCEPTED"
				}
				if o.Status.String() != want {
					t.Fatalf("state = %s, want %s", o.Status, want)
				}
			})
		}
	}
}

func TestLateFillAfterCancelIsApplied(t *testing.T) {
	o := order(Canceled)
	if err := o.ApplyFill(Fill{TradeID: "d1", Quantity: decimal.MustParse("1.00"), Price: decimal.MustParse("1.1")}, 2); err != nil {
		t.Fatal(err)
	}
	if o.Status != Filled || !o.FilledQty.Equal(decimal.MustParse("1")) {
		t.Fatalf("late complete fill: status %s filled %s", o.Status, o.FilledQty)
	}
}

func TestOverfillIsRefusedAndChangesNothing(t *testing.T) {
	o := order(Accepted)
	_ = o.ApplyFill(Fill{TradeID: "d1", Quantity: decimal.MustParse("0.60"), Price: decimal.MustParse("1.1")}, 2)
	err := o.ApplyFill(Fill{TradeID: "d2", Quantity: decimal.MustParse("0.50"), Price: decimal.MustParse("1.1")}, 3)
	if !errors.Is(err, ErrOverfill) {
		t.Fatalf("err = %v, want ErrOverfill", err)
	}
	if o.Status != PartiallyFilled || !o.FilledQty.Equal(decimal.MustParse("0.6")) || o.HasTrade("d2") {
		t.Fatalf("overfill changed the order: %s %s", o.Status, o.FilledQty)
	}
}

func TestFillsAreDeduplicatedByTradeID(t *testing.T) {
	o := order(Accepted)
	f := Fill{TradeID: "d1", Quantity: decimal.MustParse("0.30"), Price: decimal.MustParse("1.1")}
	if err := o.ApplyFill(f, 2); err != nil {
		t.Fatal(err)
	}
	if err := o.ApplyFill(f, 3); !errors.Is(err, ErrDuplicateFill) {
		t.Fatalf("err = %v, want ErrDuplicateFill", err)
	}
	if !o.FilledQty.Equal(decimal.MustParse("0.3")) {
		t.Fatalf("filled %s after a duplicate", o.FilledQty)
	}
}

func TestAverageFillPriceIsVolumeWeighted(t *testing.T) {
	o := order(Accepted)
	_ = o.ApplyFill(Fill{TradeID: "a", Quantity: decimal.MustParse("0.25"), Price: decimal.MustParse("1.10000")}, 1)
	_ = o.ApplyFill(Fill{TradeID: "b", Quantity: decimal.MustParse("0.75"), Price: decimal.MustParse("1.10004")}, 2)
	if want := decimal.MustParse("1.10003"); !o.AvgFillPrice.Equal(want) || o.Status != Filled {
		t.Fatalf("avg %s status %s, want %s FILLED", o.AvgFillPrice, o.Status, want)
	}
}

func TestCancelRejectReturnsToTheStateBeforeThePendingCancel(t *testing.T) {
	o := order(PartiallyFilled)
	_ = o.Apply(EvPendingCancel, 1)
	_ = o.Apply(EvPendingCancel, 2) // a repeated request keeps the original state to return to
	if err := o.Apply(EvCancelReject, 3); err != nil || o.Status != PartiallyFilled {
		t.Fatalf("cancel reject: %v, state %s", err, o.Status)
	}
}

func TestEnumsShareTheWireValues(t *testing.T) {
	for _, s := range AllStatuses() {
		if execv1.OrderStatus(s).String() != "ORDER_STATUS_"+s.String() {
			t.Errorf("status %d: wire %s, fsm %s", s, execv1.OrderStatus(s), s)
		}
	}
	if execv1.OrderSide(Sell) != execv1.OrderSide_ORDER_SIDE_SELL || execv1.OrderType(StopLimit) != execv1.OrderType_ORDER_TYPE_STOP_LIMIT ||
		execv1.TimeInForce(DAY) != execv1.TimeInForce_TIME_IN_FORCE_DAY {
		t.Error("side/type/tif values differ from the wire enums")
	}
}

func TestAModificationAppliesOnUpdateAndIsDroppedOnItsRejection(t *testing.T) {
	for _, c := range []struct {
		ev        Event
		wantPrice string
	}{{EvUpdate, "1.2"}, {EvUpdateReject, "1.1"}} {
		o := order(Accepted)
		o.Price = decimal.MustParse("1.1")
		a := o.AmendOf()
		a.Price = decimal.MustParse("1.2")
		o.Pending = &a
		_ = o.Apply(EvPendingUpdate, 1)
		if err := o.Apply(c.ev, 2); err != nil {
			t.Fatal(err)
		}
		if c.ev == EvUpdate {
			o.ApplyAmend()
		} else {
			o.Pending = nil
		}
		if o.Status != Accepted || !o.Price.Equal(decimal.MustParse(c.wantPrice)) || o.Pending != nil || o.ApplyAmend() {
			t.Fatalf("%s: status %s price %s pending %v", c.ev, o.Status, o.Price, o.Pending)
		}
	}
}
