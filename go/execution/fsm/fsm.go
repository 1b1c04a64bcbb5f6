// Package fsm is the order state machine: NautilusTrader's fourteen order states, an explicit
// transition table of (state, event) → state, and the Order that moves through it. Late fills after
// a cancel are applied, overfills are refused and fills are deduplicated by the venue's trade id.
//
// Status, Side, Type and TimeInForce share their numeric values with the kairos.execution.v1 enums,
// so the service converts them with a cast (asserted by a test).
package fsm

import (
	"errors"
	"fmt"

	"github.com/kairos-mt5/kairos/go/execution/decimal"
)

// Status is an order state.
type Status uint8

// The states, numbered as kairos.execution.v1.OrderStatus.
const (
	StatusUnspecified Status = iota
	Initialized
	Denied
	Emulated
	Released
	Submitted
	Accepted
	Rejected
	Canceled
	Expired
	Triggered
	PendingUpdate
	PendingCancel
	PartiallyFilled
	Filled
	numStatus
)

var statusNames = [numStatus]string{"UNSPECIFIED", "INITIALIZED", "DENIED", "EMULATED", "RELEASED",
	"SUBMITTED", "ACCEPTED", "REJECTED", "CANCELED", "EXPIRED", "TRIGGERED", "PENDING_UPDATE",
	"PENDING_CANCEL", "PARTIALLY_FILLED", "FILLED"}

func (s Status) String() string {
	if s < numStatus {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", s)
}

// AllStatuses lists every real state (not UNSPECIFIED), for metrics and tests.
func AllStatuses() []Status {
	out := make([]Status, 0, numStatus-1)
	for s := Initialized; s < numStatus; s++ {
		out = append(out, s)
	}
	return out
}

// Terminal reports whether no further events are expected (a CANCELED order still takes a late fill).
func (s Status) Terminal() bool {
	switch s {
	case Denied, Rejected, Canceled, Expired, Filled:
		return true
	}
	return false
}

// Open reports whether the order is working or on its way to the venue.
func (s Status) Open() bool { return s != StatusUnspecified && s != Initialized && !s.Terminal() }

// Event is what happens to an order.
type Event uint8

// The events. Fill leads to PARTIALLY_FILLED or FILLED depending on the quantity left; CancelRejected
// and UpdateRejected return to the state before the pending request.
const (
	EvDeny Event = iota
	EvEmulate
	EvRelease
	EvSubmit
	EvAccept
	EvReject
	EvPendingUpdate
	EvPendingCancel
	EvUpdate
	EvUpdateReject
	EvCancel
	EvCancelReject
	EvExpire
	EvTrigger
	EvFill
	numEvent
)

var eventNames = [numEvent]string{"Deny", "Emulate", "Release", "Submit", "Accept", "Reject",
	"PendingUpdate", "PendingCancel", "Update", "UpdateReject", "Cancel", "CancelReject", "Expire",
	"Trigger", "Fill"}

func (e Event) String() string {
	if e < numEvent {
		return eventNames[e]
	}
	return fmt.Sprintf("Event(%d)", e)
}

// AllEvents lists every event.
func AllEvents() []Event {
	out := make([]Event, 0, numEvent)
	for e := Event(0); e < numEvent; e++ {
		out = append(out, e)
	}
	return out
}

// Special targets in the table.
const (
	none     Status = 0   // forbidden
	previous Status = 254 // back to the state before the pending request
	byFill   Status = 255 // PARTIALLY_FILLED or FILLED (or CANCELED+fill) by quantity
)

// table is the whole state machine: every (state, event) pair not listed is forbidden.
var table = func() [numStatus][numEvent]Status {
	var t [numStatus][numEvent]Status
	set := func(from Status, ev Event, to Status) { t[from][ev] = to }

	set(Initialized, EvDeny, Denied)
	set(Initialized, EvEmulate, Emulated)
	set(Initialized, EvRelease, Released)
	set(Initialized, EvSubmit, Submitted)
	// Orders discovered at the venue during reconciliation start INITIALIZED and jump ahead.
	set(Initialized, EvAccept, Accepted)
	set(Initialized, EvReject, Rejected)
	set(Initialized, EvCancel, Canceled)
	set(Initialized, EvExpire, Expired)
	set(Initialized, EvTrigger, Triggered)
	set(Initialized, EvFill, byFill)

	set(Emulated, EvRelease, Released)
	set(Emulated, EvCancel, Canceled)
	set(Emulated, EvExpire, Expired)
	set(Emulated, EvUpdate, Emulated)

	set(Released, EvSubmit, Submitted)
	set(Released, EvDeny, Denied)
	set(Released, EvCancel, Canceled)

	for _, ev := range []Event{EvPendingUpdate, EvPendingCancel} {
		set(Submitted, ev, map[Event]Status{EvPendingUpdate: PendingUpdate, EvPendingCancel: PendingCancel}[ev])
	}
	set(Submitted, EvReject, Rejected)
	set(Submitted, EvCancel, Canceled)
	set(Submitted, EvAccept, Accepted)
	set(Submitted, EvTrigger, Triggered)
	set(Submitted, EvExpire, Expired)
	set(Submitted, EvFill, byFill)

	set(Accepted, EvReject, Rejected)
	set(Accepted, EvPendingUpdate, PendingUpdate)
	set(Accepted, EvPendingCancel, PendingCancel)
	set(Accepted, EvCancel, Canceled)
	set(Accepted, EvTrigger, Triggered)
	set(Accepted, EvExpire, Expired)
	set(Accepted, EvUpdate, Accepted)
	set(Accepted, EvFill, byFill)

	// A fill can race a cancel: the venue cancelled the rest after part of the order traded.
	set(Canceled, EvFill, byFill)

	set(PendingUpdate, EvReject, Rejected)
	set(PendingUpdate, EvAccept, Accepted)
	set(PendingUpdate, EvUpdate, previous)
	set(PendingUpdate, EvUpdateReject, previous)
	set(PendingUpdate, EvCancel, Canceled)
	set(PendingUpdate, EvExpire, Expired)
	set(PendingUpdate, EvTrigger, Triggered)
	set(PendingUpdate, EvPendingUpdate, PendingUpdate)
	set(PendingUpdate, EvPendingCancel, PendingCancel)
	set(PendingUpdate, EvFill, byFill)

	set(PendingCancel, EvReject, Rejected)
	set(PendingCancel, EvPendingCancel, PendingCancel)
	set(PendingCancel, EvCancel, Canceled)
	set(PendingCancel, EvCancelReject, previous)
	set(PendingCancel, EvExpire, Expired)
	set(PendingCancel, EvAccept, Accepted)
	set(PendingCancel, EvFill, byFill)

	set(Triggered, EvReject, Rejected)
	set(Triggered, EvPendingUpdate, PendingUpdate)
	set(Triggered, EvPendingCancel, PendingCancel)
	set(Triggered, EvCancel, Canceled)
	set(Triggered, EvExpire, Expired)
	set(Triggered, EvUpdate, Triggered)
	set(Triggered, EvFill, byFill)

	set(PartiallyFilled, EvPendingUpdate, PendingUpdate)
	set(PartiallyFilled, EvPendingCancel, PendingCancel)
	set(PartiallyFilled, EvCancel, Canceled)
	set(PartiallyFilled, EvExpire, Expired)
	set(PartiallyFilled, EvUpdate, PartiallyFilled)
	set(PartiallyFilled, EvFill, byFill)
	return t
}()

// Allowed reports whether ev is legal in state s.
func Allowed(s Status, ev Event) bool { return s < numStatus && ev < numEvent && table[s][ev] != none }

// Errors returned by Order methods; the engine counts and logs them and leaves the order unchanged.
var (
	ErrTransition    = errors.New("fsm: transition not allowed")
	ErrOverfill      = errors.New("fsm: fill exceeds the quantity left")
	ErrDuplicateFill = errors.New("fsm: duplicate fill (trade id already applied)")
	ErrBadFill       = errors.New("fsm: fill quantity and price must be positive")
)

// Side is buy or sell (kairos.execution.v1.OrderSide values).
type Side uint8

// Sides.
const (
	SideUnspecified Side = iota
	Buy
	Sell
)

func (s Side) String() string {
	switch s {
	case Buy:
		return "BUY"
	case Sell:
		return "SELL"
	}
	return "UNSPECIFIED"
}

// Sign is +1 for buy and -1 for sell.
func (s Side) Sign() int64 {
	if s == Sell {
		return -1
	}
	return 1
}

// Type is the order type (kairos.execution.v1.OrderType values).
type Type uint8

// Order types.
const (
	TypeUnspecified Type = iota
	Market
	Limit
	StopMarket
	StopLimit
)

// TimeInForce (kairos.execution.v1.TimeInForce values).
type TimeInForce uint8

// Times in force.
const (
	TIFUnspecified TimeInForce = iota
	GTC
	IOC
	FOK
	GTD
	DAY
)

// Fill is one execution.
type Fill struct {
	TradeID       string
	Quantity      decimal.D
	Price         decimal.D
	Commission    decimal.D
	CommissionCcy string
	TimeUS        int64
	Liquidity     uint8 // kairos.execution.v1.LiquiditySide values
}

// Order is an order and its state. The engine owns it and mutates it under its lock.
type Order struct {
	ClientOrderID string
	VenueOrderID  string
	Symbol        string
	Side          Side
	Type          Type
	TIF           TimeInForce
	Quantity      decimal.D
	Price         decimal.D
	TriggerPrice  decimal.D
	ReduceOnly    bool
	StrategyID    string
	ModelName     string
	ModelVersion  string
	Venue         string
	ExpireTimeUS  int64
	CreatedUS     int64
	UpdatedUS     int64
	// StopLoss and TakeProfit are set on the position the order opens (zero: none).
	StopLoss   decimal.D
	TakeProfit decimal.D
	// Pending is the modification sent to the venue while PENDING_UPDATE; the venue's Update
	// applies it (ApplyAmend), its UpdateReject drops it.
	Pending *Amend

	Status       Status
	prevStatus   Status
	FilledQty    decimal.D
	AvgFillPrice decimal.D
	DenyReason   uint8 // kairos.execution.v1.RiskDenyReason value when DENIED
	DenyMessage  string
	RejectReason string

	tradeIDs map[string]struct{}
}

// Amend is a modification of a working order: the complete new values, the unchanged ones copied.
type Amend struct {
	Quantity     decimal.D
	Price        decimal.D
	TriggerPrice decimal.D
	StopLoss     decimal.D
	TakeProfit   decimal.D
}

// AmendOf returns the order's current values as an Amend, for a modification to start from.
func (o *Order) AmendOf() Amend {
	return Amend{Quantity: o.Quantity, Price: o.Price, TriggerPrice: o.TriggerPrice, StopLoss: o.StopLoss, TakeProfit: o.TakeProfit}
}

// ApplyAmend makes the pending modification the order's values and clears it; it reports whether
// there was one.
func (o *Order) ApplyAmend() bool {
	a := o.Pending
	if a == nil {
		return false
	}
	o.Quantity, o.Price, o.TriggerPrice, o.StopLoss, o.TakeProfit = a.Quantity, a.Price, a.TriggerPrice, a.StopLoss, a.TakeProfit
	o.Pending = nil
	return true
}

// Leaves returns the quantity still to fill.
func (o *Order) Leaves() decimal.D { return o.Quantity.Sub(o.FilledQty) }

// Apply moves the order by a non-fill event.
func (o *Order) Apply(ev Event, nowUS int64) error {
	if ev == EvFill {
		return fmt.Errorf("%w: use ApplyFill", ErrTransition)
	}
	to := table[o.Status][ev]
	switch to {
	case none:
		return fmt.Errorf("%w: %s on %s order %s", ErrTransition, ev, o.Status, o.ClientOrderID)
	case previous:
		to = o.prevStatus
		if to == StatusUnspecified {
			to = Accepted
		}
	}
	if to == PendingCancel || to == PendingUpdate {
		if o.Status != PendingCancel && o.Status != PendingUpdate {
			o.prevStatus = o.Status
		}
	}
	o.Status = to
	o.UpdatedUS = nowUS
	return nil
}

// ApplyFill applies one execution: deduplicated by trade id, refused if it overfills.
func (o *Order) ApplyFill(f Fill, nowUS int64) error {
	if table[o.Status][EvFill] == none {
		return fmt.Errorf("%w: Fill on %s order %s", ErrTransition, o.Status, o.ClientOrderID)
	}
	if f.Quantity.Sign() <= 0 || f.Price.Sign() <= 0 {
		return fmt.Errorf("%w: qty %s price %s", ErrBadFill, f.Quantity, f.Price)
	}
	if _, dup := o.tradeIDs[f.TradeID]; dup {
		return fmt.Errorf("%w: %s on %s", ErrDuplicateFill, f.TradeID, o.ClientOrderID)
	}
	if o.Leaves().Less(f.Quantity) {
		return fmt.Errorf("%w: fill %s, leaves %s on %s", ErrOverfill, f.Quantity, o.Leaves(), o.ClientOrderID)
	}
	if o.tradeIDs == nil {
		o.tradeIDs = make(map[string]struct{}, 1)
	}
	o.tradeIDs[f.TradeID] = struct{}{}
	// VWAP: (avg*filled + price*qty) / (filled+qty), at the price's scale plus two decimals.
	newFilled := o.FilledQty.Add(f.Quantity)
	ps := max(f.Price.Scale(), o.AvgFillPrice.Scale())
	cost := o.AvgFillPrice.MulRound(o.FilledQty, ps+o.FilledQty.Scale()).Add(f.Price.MulRound(f.Quantity, ps+f.Quantity.Scale()))
	o.AvgFillPrice = cost.DivRound(newFilled, min(ps+2, decimal.MaxScale)).Trim(ps)
	o.FilledQty = newFilled
	switch {
	case o.Status == Canceled:
		// A late fill keeps a cancelled order cancelled unless it completes it.
		if !o.Leaves().IsZero() {
			break
		}
		o.Status = Filled
	case o.Leaves().IsZero():
		o.Status = Filled
	default:
		o.Status = PartiallyFilled
	}
	o.UpdatedUS = nowUS
	return nil
}

// HasTrade reports whether a fill with this trade id was applied.
func (o *Order) HasTrade(id string) bool { _, ok := o.tradeIDs[id]; return ok }

// RestoreTrades re-seeds the applied trade ids during journal replay.
func (o *Order) RestoreTrades(ids []string) {
	if o.tradeIDs == nil {
		o.tradeIDs = make(map[string]struct{}, len(ids))
	}
	for _, id := range ids {
		o.tradeIDs[id] = struct{}{}
	}
}

// TradeIDs returns the applied trade ids.
func (o *Order) TradeIDs() []string {
	out := make([]string, 0, len(o.tradeIDs))
	for id := range o.tradeIDs {
		out = append(out, id)
	}
	return out
}

// SetPrevious is used by replay to restore the state a pending request returns to.
func (o *Order) SetPrevious(s Status) { o.prevStatus = s }

// Previous returns the state a pending request returns to.
func (o *Order) Previous() Status { return o.prevStatus }
