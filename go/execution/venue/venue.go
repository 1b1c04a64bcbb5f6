// Package venue defines what the engine needs from a place that executes orders: commands it can
// journal before sending, and events it hands back (accepted, rejected, cancelled, filled...). The
// implementations are venue/paper (fills on live quotes) and venue/mt5 (the bridge's TRADING link).
package venue

import (
	"google.golang.org/protobuf/proto"

	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

// CommandKind is what a command asks the venue to do.
type CommandKind uint8

// Command kinds.
const (
	Place CommandKind = iota + 1
	Cancel
	Query
	// Modify changes a working order to its Pending amendment.
	Modify
	// Protect sets a position's stop loss and take profit (Protector venues).
	Protect
)

func (k CommandKind) String() string {
	switch k {
	case Place:
		return "place"
	case Cancel:
		return "cancel"
	case Query:
		return "query"
	case Modify:
		return "modify"
	case Protect:
		return "protect"
	}
	return "unknown"
}

// Command is a request to the venue, built by Venue.Request so the engine can journal Payload
// (write-ahead) before Venue.Send puts it on the wire.
type Command struct {
	Kind          CommandKind
	ID            uint64
	ClientOrderID string
	// Payload is the wire request (bridge OrderCommand, or the paper venue's order snapshot).
	Payload proto.Message
}

// EventKind is what the venue reports.
type EventKind uint8

// Event kinds.
const (
	Accepted EventKind = iota + 1
	Rejected
	Canceled
	CancelRejected
	Expired
	Filled
	Triggered
	// Updated: the venue applied the order's pending modification.
	Updated
	// UpdateRejected: the venue refused it; the order keeps its values.
	UpdateRejected
	// ProtectiveFill: a position's stop loss, take profit or stop-out closed (part of) it at the
	// venue. ClientOrderID names the order the engine books it as ("sl:...", "tp:...", "so:..."),
	// Symbol and Side the deal, Fill the execution.
	ProtectiveFill
	// ProtectionRejected: the venue refused a Protect command for Symbol; Reason says why.
	ProtectionRejected
	// LastEventKind is the highest kind, for metrics that list them all.
	LastEventKind = ProtectionRejected
)

func (k EventKind) String() string {
	return [...]string{"", "accepted", "rejected", "canceled", "cancel_rejected", "expired", "filled", "triggered",
		"updated", "update_rejected", "protective_fill", "protection_rejected"}[k]
}

// Event is one thing the venue reports about an order.
type Event struct {
	Kind          EventKind
	ClientOrderID string
	VenueOrderID  string
	Reason        string
	Fill          fsm.Fill
	// Raw is the venue's message behind the event, journaled as a venue response (may be nil when
	// several events share one message; the first carries it).
	Raw proto.Message
	// RawKey is the journal key of Raw (the bridge session for bridge frames).
	RawKey string
	// RawIsRequest journals Raw as a venue request (a command the venue re-sends by itself, such
	// as a market order after a requote) instead of a response.
	RawIsRequest bool
	// Symbol and Side of a ProtectiveFill's deal, Symbol of a ProtectionRejected.
	Symbol string
	Side   fsm.Side
}

// Protection is a position's protective stop loss and take profit (zero: none) and its net
// quantity (positive long, negative short) as the engine books it.
type Protection struct {
	Symbol     string
	Net        decimal.D
	StopLoss   decimal.D
	TakeProfit decimal.D
}

// Protector is a venue that keeps a position's stop loss and take profit itself, at the broker
// (MT5): the engine journals the command ProtectRequest builds (write-ahead) and sends it with
// Send(cmd, nil); a refusal comes back as a ProtectionRejected event.
type Protector interface {
	ProtectRequest(p Protection) Command
}

// PositionWatcher is a venue that works stop losses and take profits on its quotes from the
// engine's book (the paper venue): the engine tells it every change of a protected position
// (after fills, protection changes and replay), and it reports ProtectiveFill events when a quote
// touches them.
type PositionWatcher interface {
	WatchPosition(p Protection)
}

// QuantityAmender is a venue that can change the quantity of a working order (the paper venue);
// MT5 cannot change a pending order's volume.
type QuantityAmender interface {
	AmendsQuantity() bool
}

// Venue executes orders. Request and Send are called with the engine's lock held: they must not
// block or call back into the engine.
type Venue interface {
	// Name is "paper" or "mt5".
	Name() string
	// WriteAhead says whether a command must be durable in the journal before Send, because the
	// venue is outside the process and a crash after sending must not lead to sending it again.
	WriteAhead() bool
	// Request builds the command for an order.
	Request(kind CommandKind, o *fsm.Order) Command
	// Send carries the command out. Events known at once (the paper venue's fills) are returned;
	// others arrive later through the engine's OnVenueEvents.
	Send(cmd Command, o *fsm.Order) ([]Event, error)
}

// QuoteDriven is a venue that reacts to quotes (the paper venue fills resting orders on them).
type QuoteDriven interface {
	OnQuote(q market.Quote) []Event
}

// AccountSimulator is a venue that computes the account itself (the paper venue).
type AccountSimulator interface {
	Account(book *portfolio.Book, quotes func(string) (market.Quote, bool), instruments func(string) (*market.Instrument, bool), nowUS int64) risk.Account
}

// Restorer is a venue whose state is the journal's (the paper venue): after replay it is handed the
// open orders to work again, and reconciliation converges at once.
type Restorer interface {
	Restore(open []*fsm.Order) []Event
}
