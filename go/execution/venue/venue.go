// Package venue defines what the engine needs from a place that executes orders: commands it can
// journal before sending, and events it hands back (accepted, rejected, cancelled, filled...). The
// implementations are venue/paper (fills on live quotes) and venue/mt5 (the bridge's TRADING link).
package venue

import (
	"google.golang.org/protobuf/proto"

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
)

func (k CommandKind) String() string {
	switch k {
	case Place:
		return "place"
	case Cancel:
		return "cancel"
	case Query:
		return "query"
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
)

func (k EventKind) String() string {
	return [...]string{"", "accepted", "rejected", "canceled", "cancel_rejected", "expired", "filled", "triggered"}[k]
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
