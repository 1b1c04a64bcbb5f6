// The engine's core: its errors, options, state and lifecycle (New, Close), and the gauges that
// follow order and trading state. What it does is split by concern over the other files.

package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// Errors the service maps to gRPC codes.
var (
	ErrAlreadyExists = errors.New("client_order_id already used for a different order")
	ErrNotFound      = errors.New("order not found")
	ErrNotCancelable = errors.New("order is not working")
	ErrNotReconciled = errors.New("not reconciled with the venue")
	ErrInvalidState  = errors.New("invalid trading state")
	ErrJournal       = errors.New("journal unavailable")
	ErrShuttingDown  = errors.New("engine is shutting down")
	ErrNotModifiable = errors.New("order cannot be modified")
	ErrNoPosition    = errors.New("no open position")
	// ErrTooManyDenials: a submission risk would deny, refused unrecorded because the denial
	// budget (risk.Limits.DenialRate) is spent; the error is a *TooManyDenialsError.
	ErrTooManyDenials = risk.ErrTooManyDenials
)

// TooManyDenialsError is the refusal of a submission that risk would deny while the denial budget
// of the window is spent: no order was created, nothing was journaled, and the client order id
// stays free for a later submission.
type TooManyDenialsError struct {
	Denial     risk.Denial    // what the submission would have been denied for
	Limit      risk.RateLimit // the denial budget
	RetryAfter time.Duration  // when the budget has room again
}

func (e *TooManyDenialsError) Error() string {
	return fmt.Sprintf("more than %d denied submissions in %d ms: this one (%s) was refused unrecorded; retry in %s",
		e.Limit.MaxCount, e.Limit.WindowMS, e.Denial.Error(), e.RetryAfter)
}

// Unwrap makes the error ErrTooManyDenials.
func (e *TooManyDenialsError) Unwrap() error { return ErrTooManyDenials }

// Options wires the engine.
type Options struct {
	Risk    *risk.Engine
	Book    *portfolio.Book
	Venue   venue.Venue
	Journal *journal.Journal
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Clock returns microseconds since the Unix epoch; tests inject one.
	Clock func() int64
	// InitialState is entered after the first reconciliation of a fresh journal; later starts
	// return to the last journaled state.
	InitialState risk.State
	// Currency of the account, for positions.
	Currency string
	// MaxOrders bounds the orders held in memory: past it the oldest finished ones are dropped and
	// the journal answers for them (ADR 0125). Zero means DefaultMaxOrders.
	MaxOrders int
	// JournalTimeout bounds each wait for durability; a journal that takes longer fails the
	// engine (HALTED, NOT_SERVING). Zero means DefaultJournalTimeout.
	JournalTimeout time.Duration
}

// DefaultJournalTimeout is JournalTimeout's default: well above a healthy group commit (ms), well
// below a client's patience.
const DefaultJournalTimeout = 5 * time.Second

type record struct {
	o    *fsm.Order
	req  *execv1.SubmitOrderRequest
	hops []*typesv1.HopStamp
	sent int64 // when the venue request went out, for the ack latency
	// done is closed when the submission that created the record has finished (its outcome
	// durable or failed; err says which); nil for records rebuilt from the journal. A repeated
	// submission waits on it, so nobody is told "duplicate" of an order that is not durable yet.
	done chan struct{}
	err  error
}

// trade is an applied fill as the engine remembers it: its order and the commission booked.
type trade struct {
	order      string
	commission decimal.D
}

// Engine is the execution engine.
type Engine struct {
	opt Options
	log *slog.Logger
	m   *metrics.Metrics

	mu        sync.Mutex
	orders    map[string]*record
	created   []*record
	trimAt    int                   // len(created) at which trimLocked runs next (retention.go)
	replaying bool                  // Replay runs: trimLocked keeps the dropped orders' deals and counts (retention.go)
	evicted   *droppedIDs           // ids of orders dropped from memory (retention.go); nil until the first
	trades    map[string]trade      // applied fills by trade id
	prot      map[string]protection // positions' stop loss and take profit, by symbol
	protPrev  map[string]protection // the protection before the latest Protect command, restored if the venue refuses it
	// signalFloor is, per symbol, the market time of the quote a signal brought in (OnQuoteIfNewer)
	// while it is still the latest: the collector's ticks up to that time belong to the closed bar
	// and are dropped when they arrive after it (quotes.go). Keyed by configured instruments only.
	signalFloor map[string]int64
	// quoteSeen is closed (and replaced) whenever a batch of quotes was applied: WaitQuote's wake-up.
	quoteSeen  chan struct{}
	lastState  risk.State
	hasState   bool
	closed     bool
	reconciles int
	jerr       error         // the journal failure, once it failed
	jdown      chan struct{} // closed when jerr is set
	stop       chan struct{} // closed by Close: stops watchJournal
	watching   sync.WaitGroup
}

// New returns an engine; call Replay before serving.
func New(opt Options) *Engine {
	if opt.Clock == nil {
		opt.Clock = func() int64 { return time.Now().UnixMicro() }
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.InitialState == risk.StateUnspecified {
		opt.InitialState = risk.Active
	}
	if opt.JournalTimeout <= 0 {
		opt.JournalTimeout = DefaultJournalTimeout
	}
	if opt.MaxOrders <= 0 {
		opt.MaxOrders = DefaultMaxOrders
	}
	e := &Engine{opt: opt, log: opt.Logger, m: opt.Metrics, orders: make(map[string]*record), trades: make(map[string]trade),
		prot: make(map[string]protection), signalFloor: make(map[string]int64), quoteSeen: make(chan struct{}), protPrev: make(map[string]protection), jdown: make(chan struct{}), stop: make(chan struct{}), trimAt: opt.MaxOrders}
	e.setStateGauge()
	if e.m != nil {
		e.m.JournalHealthy.Set(1)
		// Every label value exists from the start, so rate() and increase() see the first event.
		for k := venue.Accepted; k <= venue.LastEventKind; k++ {
			e.m.InvalidEvents.WithLabelValues(k.String())
			e.m.UnknownEvents.WithLabelValues(k.String())
		}
		for _, k := range adjustKinds {
			e.m.ReconcileAdjust.WithLabelValues(k)
		}
	}
	if opt.Journal != nil {
		e.watching.Add(1)
		go func() { defer e.watching.Done(); e.watchJournal() }()
	}
	return e
}

// Now returns the engine clock.
func (e *Engine) Now() int64 { return e.opt.Clock() }

// Venue returns the venue.
func (e *Engine) Venue() venue.Venue { return e.opt.Venue }

// Instrument looks a symbol up.
func (e *Engine) Instrument(symbol string) (*market.Instrument, bool) {
	return e.opt.Risk.Instrument(symbol)
}

func (e *Engine) setStatus(o *fsm.Order, from fsm.Status) {
	if e.m == nil || from == o.Status {
		return
	}
	if from != fsm.StatusUnspecified {
		e.m.Status(from.String()).Dec()
	}
	e.m.Status(o.Status.String()).Inc()
}

func (e *Engine) setStateGauge() {
	if e.m == nil {
		return
	}
	s, _ := e.opt.Risk.State()
	e.m.TradingState.Set(float64(s))
	if e.opt.Risk.Reconciled() {
		e.m.Reconciled.Set(1)
	} else {
		e.m.Reconciled.Set(0)
	}
}

// Limits returns the risk limits.
func (e *Engine) Limits() risk.Limits { return e.opt.Risk.Limits() }

// Close refuses further submissions; the caller then closes the journal.
func (e *Engine) Close() {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.stop)
	}
	e.mu.Unlock()
	e.watching.Wait()
}
