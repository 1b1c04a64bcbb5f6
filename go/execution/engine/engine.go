// Package engine is the execution engine: it takes order intents (from gRPC or the signal policy),
// runs them through pre-trade risk and the order state machine, journals every step, hands
// commands to the venue and applies what the venue reports. One mutex serialises all order state;
// journal durability is awaited outside it, so concurrent submitters share group commits.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

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
)

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
}

type record struct {
	o    *fsm.Order
	req  *execv1.SubmitOrderRequest
	hops []*typesv1.HopStamp
	sent int64 // when the venue request went out, for the ack latency
}

// Engine is the execution engine.
type Engine struct {
	opt Options
	log *slog.Logger
	m   *metrics.Metrics

	mu         sync.Mutex
	orders     map[string]*record
	created    []*record
	trades     map[string]string
	lastState  risk.State
	hasState   bool
	closed     bool
	reconciles int
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
	e := &Engine{opt: opt, log: opt.Logger, m: opt.Metrics, orders: make(map[string]*record), trades: make(map[string]string)}
	e.setStateGauge()
	if e.m != nil {
		// Every label value exists from the start, so rate() and increase() see the first event.
		for k := venue.Accepted; k <= venue.Triggered; k++ {
			e.m.InvalidEvents.WithLabelValues(k.String())
		}
		for _, k := range adjustKinds {
			e.m.ReconcileAdjust.WithLabelValues(k)
		}
	}
	return e
}

// PublishPnL sets the P&L gauges: realized and unrealized per configured symbol and the account
// equity. It takes the engine lock briefly; the service calls it on a ticker and after fills, not
// per quote.
func (e *Engine) PublishPnL() {
	if e.m == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.publishPnLLocked()
}

func (e *Engine) publishPnLLocked() {
	if e.m == nil {
		return
	}
	syms := e.opt.Risk.Symbols()
	for _, p := range e.opt.Book.All() {
		if _, ok := e.opt.Risk.Instrument(p.Symbol); !ok {
			syms = append(syms, p.Symbol) // adopted from the venue, not configured: still reported
		}
	}
	for _, sym := range syms {
		p := e.opt.Book.Get(sym)
		u := 0.0
		if !p.Net.IsZero() {
			if inst, ok := e.opt.Risk.Instrument(sym); ok {
				if q, ok := e.opt.Risk.Quote(sym); ok {
					u = portfolio.Unrealized(inst, p, q).Float()
				}
			}
		}
		e.m.RealizedPnL.WithLabelValues(sym).Set(p.Realized.Float())
		e.m.UnrealizedPnL.WithLabelValues(sym).Set(u)
	}
	if a := e.opt.Risk.Account(); a.Valid {
		e.m.Equity.Set(a.Equity.Float())
	}
}

// Now returns the engine clock.
func (e *Engine) Now() int64 { return e.opt.Clock() }

// Venue returns the venue.
func (e *Engine) Venue() venue.Venue { return e.opt.Venue }

// Instrument looks a symbol up.
func (e *Engine) Instrument(symbol string) (*market.Instrument, bool) {
	return e.opt.Risk.Instrument(symbol)
}

// riskPassed is the journal payload of a passed risk check (an empty RiskDenial), built once.
var riskPassed = anyEntry(journal.KindRisk, "", &execv1.RiskDenial{}).Payload

func anyEntry(kind journal.Kind, key string, m proto.Message) journal.Entry {
	a, err := anypb.New(m)
	if err != nil {
		panic(err) // only for messages that cannot be marshalled: a programming error
	}
	b, _ := proto.Marshal(a)
	return journal.Entry{Kind: kind, Key: key, Payload: b}
}

func (e *Engine) reportEntry(typ execv1.ReportType, r *record, f *execv1.Fill, reason string, nowUS int64) journal.Entry {
	rep := &execv1.ExecutionReport{Type: typ, Fill: f, Reason: reason, Hops: r.hops, TimeUs: nowUS}
	rep.Order = OrderProto(r.o)
	b, _ := proto.Marshal(rep)
	return journal.Entry{Kind: journal.KindReport, Key: r.o.ClientOrderID, Payload: b}
}

func (e *Engine) stateEntry(s risk.State, reason string, nowUS int64) journal.Entry {
	rep := &execv1.ExecutionReport{Type: execv1.ReportType_REPORT_TYPE_TRADING_STATE_CHANGED, TradingState: execv1.TradingState(s), Reason: reason, TimeUs: nowUS}
	b, _ := proto.Marshal(rep)
	return journal.Entry{Kind: journal.KindReport, Payload: b}
}

// append journals entries under e.mu; the caller waits on the ticket after unlocking.
func (e *Engine) append(nowUS int64, entries []journal.Entry) (journal.Ticket, error) {
	if len(entries) == 0 {
		return journal.Ticket{}, nil
	}
	t, _, err := e.opt.Journal.Append(nowUS, entries...)
	if err != nil {
		return t, fmt.Errorf("%w: %v", ErrJournal, err)
	}
	return t, nil
}

func (e *Engine) wait(t journal.Ticket) error {
	start := time.Now()
	err := t.Wait()
	e.m.Observe(metrics.StageJournal, time.Since(start))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrJournal, err)
	}
	return nil
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

// SubmitResult is what Submit returns.
type SubmitResult struct {
	Order     *execv1.Order
	Duplicate bool
}

// Submit runs one order intent through risk, the state machine, the journal and the venue. The
// request must have passed Validate. It returns once everything about the order so far is durable.
func (e *Engine) Submit(ctx context.Context, req *execv1.SubmitOrderRequest, rreq *risk.Request, hops []*typesv1.HopStamp) (SubmitResult, error) {
	start := time.Now()
	defer func() { e.m.Observe(metrics.StageSubmit, time.Since(start)) }()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return SubmitResult{}, ErrShuttingDown
	}
	if r, ok := e.orders[req.GetClientOrderId()]; ok {
		same := proto.Equal(r.req, req)
		o := OrderProto(r.o)
		e.mu.Unlock()
		if !same {
			return SubmitResult{}, fmt.Errorf("%w: %q is %s %s %s", ErrAlreadyExists, req.GetClientOrderId(), r.o.Side, r.o.Quantity, r.o.Symbol)
		}
		return SubmitResult{Order: o, Duplicate: true}, nil
	}
	now := e.opt.Clock()
	riskStart := time.Now()
	den := e.opt.Risk.Check(rreq, now)
	e.m.Observe(metrics.StageRisk, time.Since(riskStart))
	o := &fsm.Order{
		ClientOrderID: rreq.ClientOrderID, Symbol: rreq.Symbol, Side: rreq.Side, Type: rreq.Type,
		TIF: defaultTIF(fsm.TimeInForce(req.GetTimeInForce()), rreq.Type), Quantity: rreq.Quantity, Price: rreq.Price,
		TriggerPrice: rreq.TriggerPrice, ReduceOnly: rreq.ReduceOnly, StrategyID: rreq.StrategyID,
		ModelName: req.GetModelName(), ModelVersion: req.GetModelVersion(), Venue: e.opt.Venue.Name(),
		ExpireTimeUS: req.GetExpireTimeUs(), CreatedUS: now, UpdatedUS: now, Status: fsm.Initialized,
		FilledQty: decimal.New(0, rreq.Quantity.Scale()),
	}
	r := &record{o: o, req: req, hops: append(hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_RISK_DONE, TimeUs: e.opt.Clock()})}
	e.orders[o.ClientOrderID] = r
	e.created = append(e.created, r)
	entries := make([]journal.Entry, 0, 6)
	entries = append(entries, anyEntry(journal.KindCommand, o.ClientOrderID, req))
	if den != nil {
		_ = o.Apply(fsm.EvDeny, now)
		o.DenyReason, o.DenyMessage = uint8(den.Reason), den.Message
		e.opt.Risk.RememberClientID(o.ClientOrderID)
		e.setStatus(o, fsm.StatusUnspecified)
		if e.m != nil {
			e.m.Denials.WithLabelValues(den.Reason.String()).Inc()
		}
		entries = append(entries,
			anyEntry(journal.KindRisk, o.ClientOrderID, &execv1.RiskDenial{Reason: execv1.RiskDenyReason(den.Reason), Message: den.Message}),
			e.reportEntry(execv1.ReportType_REPORT_TYPE_DENIED, r, nil, den.Message, now))
		t, err := e.append(now, entries)
		out := OrderProto(o)
		e.mu.Unlock()
		if err == nil {
			err = e.wait(t)
		}
		return SubmitResult{Order: out}, err
	}
	e.opt.Risk.Accepted(rreq, now)
	_ = o.Apply(fsm.EvSubmit, now)
	e.setStatus(o, fsm.StatusUnspecified)
	e.opt.Risk.Track(o)
	cmd := e.opt.Venue.Request(venue.Place, o)
	r.hops = append(r.hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_VENUE_SEND, TimeUs: e.opt.Clock()})
	entries = append(entries, journal.Entry{Kind: journal.KindRisk, Key: o.ClientOrderID, Payload: riskPassed})
	if e.opt.Venue.WriteAhead() {
		entries = append(entries, anyEntry(journal.KindVenueRequest, o.ClientOrderID, cmd.Payload))
	}
	entries = append(entries, e.reportEntry(execv1.ReportType_REPORT_TYPE_SUBMITTED, r, nil, "", now))
	if e.m != nil {
		e.m.OrdersSubmitted.WithLabelValues(o.Venue, o.Symbol).Inc()
	}
	if e.opt.Venue.WriteAhead() {
		// The command must be durable before it leaves the process: after a crash the journal
		// says it may have been sent, and reconciliation asks the venue instead of sending again.
		t, err := e.append(now, entries)
		e.mu.Unlock()
		if err == nil {
			err = e.wait(t)
		}
		if err != nil {
			return SubmitResult{}, err
		}
		e.mu.Lock()
		entries = entries[:0]
	}
	sendStart := time.Now()
	r.sent = e.opt.Clock()
	evs, err := e.opt.Venue.Send(cmd, o)
	e.m.Observe(metrics.StageVenueSend, time.Since(sendStart))
	if err != nil {
		evs = append(evs, venue.Event{Kind: venue.Rejected, ClientOrderID: o.ClientOrderID, Reason: "venue: " + err.Error()})
	}
	entries = e.applyEvents(evs, entries, e.opt.Clock())
	entries = e.accountLocked(entries)
	t, err := e.append(now, entries)
	out := OrderProto(o)
	e.mu.Unlock()
	if err == nil {
		err = e.wait(t)
	}
	return SubmitResult{Order: out}, err
}

func defaultTIF(t fsm.TimeInForce, typ fsm.Type) fsm.TimeInForce {
	if t != fsm.TIFUnspecified {
		return t
	}
	if typ == fsm.Market {
		return fsm.IOC
	}
	return fsm.GTC
}

// applyEvents applies venue events under e.mu and returns the journal entries they produce.
func (e *Engine) applyEvents(evs []venue.Event, entries []journal.Entry, now int64) []journal.Entry {
	filled := false
	defer func() {
		if filled {
			e.publishPnLLocked() // realized P&L moved; cheap next to the fill's journal write
		}
	}()
	for _, ev := range evs {
		if ev.Raw != nil {
			kind := journal.KindVenueResponse
			if ev.RawIsRequest {
				kind = journal.KindVenueRequest
			}
			entries = append(entries, anyEntry(kind, ev.RawKey, ev.Raw))
		}
		if ev.Kind == 0 {
			continue // a venue message recorded for the journal only
		}
		r, ok := e.orders[ev.ClientOrderID]
		if !ok {
			e.log.Warn("venue event for an unknown order", "event", ev.Kind.String(), "client_order_id", ev.ClientOrderID, "venue_order_id", ev.VenueOrderID)
			continue
		}
		o := r.o
		from := o.Status
		if ev.VenueOrderID != "" {
			o.VenueOrderID = ev.VenueOrderID
		}
		var (
			typ    execv1.ReportType
			fe     fsm.Event
			fill   *execv1.Fill
			reason = ev.Reason
		)
		switch ev.Kind {
		case venue.Accepted:
			typ, fe = execv1.ReportType_REPORT_TYPE_ACCEPTED, fsm.EvAccept
		case venue.Rejected:
			typ, fe = execv1.ReportType_REPORT_TYPE_REJECTED, fsm.EvReject
			o.RejectReason = ev.Reason
		case venue.Canceled:
			typ, fe = execv1.ReportType_REPORT_TYPE_CANCELED, fsm.EvCancel
		case venue.CancelRejected:
			typ, fe = execv1.ReportType_REPORT_TYPE_CANCEL_REJECTED, fsm.EvCancelReject
		case venue.Expired:
			typ, fe = execv1.ReportType_REPORT_TYPE_EXPIRED, fsm.EvExpire
		case venue.Triggered:
			typ, fe = execv1.ReportType_REPORT_TYPE_UPDATED, fsm.EvTrigger
		case venue.Filled:
			typ, fe = execv1.ReportType_REPORT_TYPE_FILLED, fsm.EvFill
		}
		if r.sent != 0 && (fe == fsm.EvAccept || fe == fsm.EvReject || fe == fsm.EvFill) {
			e.m.Observe(metrics.StageVenueAck, time.Duration(now-r.sent)*time.Microsecond)
			r.sent = 0
			r.hops = append(r.hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_VENUE_ACK, TimeUs: now})
		}
		var err error
		if fe == fsm.EvFill {
			if prev, dup := e.trades[ev.Fill.TradeID]; dup {
				if e.m != nil {
					e.m.DuplicateFills.Inc()
				}
				e.log.Info("duplicate fill dropped", "trade_id", ev.Fill.TradeID, "client_order_id", ev.ClientOrderID, "first_order", prev)
				continue
			}
			err = o.ApplyFill(ev.Fill, now)
			if err == nil {
				e.trades[ev.Fill.TradeID] = o.ClientOrderID
				inst, _ := e.opt.Risk.Instrument(o.Symbol)
				signed := ev.Fill.Quantity
				if o.Side == fsm.Sell {
					signed = signed.Neg()
				}
				if inst != nil {
					e.opt.Book.ApplyFill(inst, signed, ev.Fill.Price, ev.Fill.Commission, now)
				}
				fill = fillProto(o, ev.Fill)
				filled = true
				if e.m != nil {
					e.m.Fills.WithLabelValues(o.Venue, o.Symbol).Inc()
				}
			} else if errors.Is(err, fsm.ErrOverfill) && e.m != nil {
				e.m.Overfills.Inc()
			}
		} else {
			if fe == fsm.EvAccept && from != fsm.Submitted && from != fsm.Initialized && from != fsm.PendingCancel && from != fsm.PendingUpdate {
				// An acceptance that arrives after a fill (MT5 reports the deal first) changes
				// nothing but the venue id, which is already recorded.
				if o.VenueOrderID != "" && from != fsm.Accepted {
					entries = append(entries, e.reportEntry(execv1.ReportType_REPORT_TYPE_UPDATED, r, nil, "venue order id "+o.VenueOrderID, now))
				}
				continue
			}
			err = o.Apply(fe, now)
		}
		if err != nil {
			if e.m != nil {
				e.m.InvalidEvents.WithLabelValues(ev.Kind.String()).Inc()
			}
			e.log.Warn("venue event refused by the order state machine", "err", err, "event", ev.Kind.String(), "client_order_id", o.ClientOrderID, "status", o.Status.String())
			continue
		}
		e.setStatus(o, from)
		e.opt.Risk.Track(o)
		entries = append(entries, e.reportEntry(typ, r, fill, reason, now))
	}
	return entries
}

// accountLocked refreshes a simulated account and runs the loss breakers.
func (e *Engine) accountLocked(entries []journal.Entry) []journal.Entry {
	sim, ok := e.opt.Venue.(venue.AccountSimulator)
	if !ok {
		return entries
	}
	now := e.opt.Clock()
	a := sim.Account(e.opt.Book, e.opt.Risk.Quote, e.opt.Risk.Instrument, now)
	return e.onAccountLocked(a, entries, now)
}

func (e *Engine) onAccountLocked(a risk.Account, entries []journal.Entry, now int64) []journal.Entry {
	if s, cause := e.opt.Risk.OnAccount(a); s != risk.StateUnspecified {
		msg := fmt.Sprintf("%s breaker tripped: daily loss %s, drawdown %s", cause, e.opt.Risk.DailyLoss(), e.opt.Risk.Drawdown())
		e.log.Warn("risk breaker tripped", "state", s.String(), "cause", cause.String(), "reason", msg)
		e.lastState, e.hasState = s, true
		entries = append(entries, e.stateEntry(s, msg, now))
		e.setStateGauge()
	}
	return entries
}

// OnVenueEvents applies events that arrive asynchronously (MT5 results and transactions) and
// returns once they are durable, so the caller may acknowledge them to the venue.
func (e *Engine) OnVenueEvents(evs []venue.Event) error {
	e.mu.Lock()
	now := e.opt.Clock()
	entries := e.applyEvents(evs, nil, now)
	t, err := e.append(now, entries)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.wait(t)
}

// OnAccount records the venue's account snapshot (MT5) and runs the breakers.
func (e *Engine) OnAccount(a risk.Account) error {
	e.mu.Lock()
	now := e.opt.Clock()
	entries := e.onAccountLocked(a, nil, now)
	t, err := e.append(now, entries)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.wait(t)
}

// OnQuote records a quote, lets a quote-driven venue work its orders and refreshes a simulated
// account. Quotes themselves are not journaled; the fills they cause are.
func (e *Engine) OnQuote(q market.Quote) error { return e.OnQuotes([]market.Quote{q}) }

// OnQuotes is OnQuote for the ticks of one batch, in order, under one lock.
func (e *Engine) OnQuotes(qs []market.Quote) error {
	e.mu.Lock()
	var entries []journal.Entry
	qd, quoteDriven := e.opt.Venue.(venue.QuoteDriven)
	for _, q := range qs {
		if !q.Valid() {
			continue
		}
		e.opt.Risk.OnQuote(q)
		if quoteDriven {
			if evs := qd.OnQuote(q); len(evs) > 0 {
				entries = e.applyEvents(evs, entries, e.opt.Clock())
			}
		}
	}
	if len(qs) > 0 && (e.opt.Book.Net(qs[0].Symbol).Sign() != 0 || len(entries) > 0 || !e.opt.Risk.Account().Valid) {
		entries = e.accountLocked(entries)
	}
	if len(entries) == 0 {
		e.mu.Unlock()
		return nil
	}
	t, err := e.append(e.opt.Clock(), entries)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.wait(t)
}

// Cancel requests cancellation of one order. Cancels are allowed in every trading state; they
// count against the message throttle but are never refused by it.
func (e *Engine) Cancel(ctx context.Context, id string) (*execv1.Order, error) {
	e.mu.Lock()
	r, ok := e.orders[id]
	if !ok {
		e.mu.Unlock()
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	now := e.opt.Clock()
	entries, err := e.cancelLocked(r, now, nil)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	t, err := e.append(now, entries)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if e.opt.Venue.WriteAhead() {
		e.mu.Unlock()
		if err := e.wait(t); err != nil {
			return nil, err
		}
		e.mu.Lock()
		entries, t = nil, journal.Ticket{}
	}
	entries = e.sendCancelLocked(r, entries)
	t2, err := e.append(now, entries)
	out := OrderProto(r.o)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.wait(t); err != nil {
		return nil, err
	}
	return out, e.wait(t2)
}

func (e *Engine) cancelLocked(r *record, now int64, entries []journal.Entry) ([]journal.Entry, error) {
	o := r.o
	if !fsm.Allowed(o.Status, fsm.EvPendingCancel) {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotCancelable, o.ClientOrderID, o.Status)
	}
	_ = e.opt.Risk.OnMessage(now)
	from := o.Status
	_ = o.Apply(fsm.EvPendingCancel, now)
	e.setStatus(o, from)
	cmd := e.opt.Venue.Request(venue.Cancel, o)
	entries = append(entries, anyEntry(journal.KindCommand, o.ClientOrderID, &execv1.CancelOrderRequest{ClientOrderId: o.ClientOrderID}))
	if e.opt.Venue.WriteAhead() {
		entries = append(entries, anyEntry(journal.KindVenueRequest, o.ClientOrderID, cmd.Payload))
	}
	return entries, nil
}

func (e *Engine) sendCancelLocked(r *record, entries []journal.Entry) []journal.Entry {
	o := r.o
	if o.Status != fsm.PendingCancel {
		return entries // the venue answered meanwhile (filled, cancelled)
	}
	cmd := e.opt.Venue.Request(venue.Cancel, o)
	evs, err := e.opt.Venue.Send(cmd, o)
	if err != nil {
		evs = append(evs, venue.Event{Kind: venue.CancelRejected, ClientOrderID: o.ClientOrderID, Reason: "venue: " + err.Error()})
	}
	entries = e.applyEvents(evs, entries, e.opt.Clock())
	return e.accountLocked(entries)
}

// CancelAll requests cancellation of every working order (of one symbol, if given).
func (e *Engine) CancelAll(ctx context.Context, symbol string) ([]string, error) {
	e.mu.Lock()
	now := e.opt.Clock()
	var (
		ids     []string
		recs    []*record
		entries []journal.Entry
	)
	for _, r := range e.created {
		if !r.o.Status.Open() || (symbol != "" && r.o.Symbol != symbol) || r.o.Status == fsm.PendingCancel {
			continue
		}
		var err error
		entries, err = e.cancelLocked(r, now, entries)
		if err != nil {
			continue
		}
		ids = append(ids, r.o.ClientOrderID)
		recs = append(recs, r)
	}
	t, err := e.append(now, entries)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if e.opt.Venue.WriteAhead() && len(recs) > 0 {
		e.mu.Unlock()
		if err := e.wait(t); err != nil {
			return nil, err
		}
		e.mu.Lock()
		t = journal.Ticket{}
	}
	entries = nil
	for _, r := range recs {
		entries = e.sendCancelLocked(r, entries)
	}
	t2, err := e.append(now, entries)
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.wait(t); err != nil {
		return nil, err
	}
	return ids, e.wait(t2)
}

// SetTradingState switches the trading state. ACTIVE and REDUCING need a reconciled venue.
func (e *Engine) SetTradingState(ctx context.Context, s risk.State, reason string) (risk.State, error) {
	if s < risk.Active || s > risk.Halted {
		return 0, fmt.Errorf("%w: %d", ErrInvalidState, s)
	}
	e.mu.Lock()
	if s != risk.Halted && !e.opt.Risk.Reconciled() {
		e.mu.Unlock()
		return 0, ErrNotReconciled
	}
	now := e.opt.Clock()
	prev := e.opt.Risk.SetState(s)
	e.lastState, e.hasState = s, true
	e.setStateGauge()
	t, err := e.append(now, []journal.Entry{
		anyEntry(journal.KindCommand, "", &execv1.SetTradingStateRequest{State: execv1.TradingState(s), Reason: reason}),
		e.stateEntry(s, reason, now)})
	e.mu.Unlock()
	e.log.Warn("trading state changed", "previous", prev.String(), "current", s.String(), "reason", reason)
	if err != nil {
		return prev, err
	}
	return prev, e.wait(t)
}

// Flatten sends a reduce-only market order closing each open position. These orders pass the
// trading-state check (the kill switch flattens while HALTED) but every other rule applies.
func (e *Engine) Flatten(ctx context.Context, reason string) ([]string, error) {
	e.mu.Lock()
	var reqs []*execv1.SubmitOrderRequest
	now := e.opt.Clock()
	for i, p := range e.opt.Book.All() {
		if p.Net.IsZero() {
			continue
		}
		side := execv1.OrderSide_ORDER_SIDE_SELL
		if p.Net.Sign() < 0 {
			side = execv1.OrderSide_ORDER_SIDE_BUY
		}
		reqs = append(reqs, &execv1.SubmitOrderRequest{
			ClientOrderId: fmt.Sprintf("flat-%x-%d", now, i), Symbol: p.Symbol, Side: side,
			Type: execv1.OrderType_ORDER_TYPE_MARKET, Quantity: p.Net.Abs().Proto(), ReduceOnly: true, StrategyId: "kill-switch",
		})
	}
	e.mu.Unlock()
	var ids []string
	for _, req := range reqs {
		rreq, bad := Validate(req, e.Instrument, now)
		if bad != nil {
			return ids, bad
		}
		rreq.Flatten = true
		res, err := e.Submit(ctx, req, rreq, nil)
		if err != nil {
			return ids, err
		}
		ids = append(ids, res.Order.GetClientOrderId())
	}
	return ids, nil
}

// Get returns an order.
func (e *Engine) Get(id string) (*execv1.Order, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.orders[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return OrderProto(r.o), nil
}

// List returns orders newest first, filtered, from position offset, at most limit; next is the
// offset of the next page or -1.
func (e *Engine) List(symbol string, statuses []fsm.Status, openOnly bool, offset, limit int) ([]*execv1.Order, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*execv1.Order
	seen := 0
	for i := len(e.created) - 1; i >= 0; i-- {
		o := e.created[i].o
		if symbol != "" && o.Symbol != symbol || openOnly && !o.Status.Open() {
			continue
		}
		if len(statuses) > 0 {
			match := false
			for _, s := range statuses {
				match = match || s == o.Status
			}
			if !match {
				continue
			}
		}
		if seen >= offset {
			if len(out) == limit {
				return out, seen
			}
			out = append(out, OrderProto(o))
		}
		seen++
	}
	return out, -1
}

// Positions returns the positions with unrealized P&L at the latest quotes.
func (e *Engine) Positions(symbol string, includeFlat bool) []*execv1.Position {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*execv1.Position
	for _, p := range e.opt.Book.All() {
		if symbol != "" && p.Symbol != symbol || p.Net.IsZero() && (!includeFlat || p.Realized.IsZero()) {
			continue
		}
		u := decimal.New(0, 2)
		if inst, ok := e.opt.Risk.Instrument(p.Symbol); ok {
			if q, ok := e.opt.Risk.Quote(p.Symbol); ok {
				u = portfolio.Unrealized(inst, p, q)
			}
		}
		out = append(out, PositionProto(p, u, e.opt.Currency, e.opt.Venue.Name()))
	}
	return out
}

// State returns the trading state and whether the venue is reconciled.
func (e *Engine) State() (risk.State, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, _ := e.opt.Risk.State()
	return s, e.opt.Risk.Reconciled()
}

// Limits returns the risk limits.
func (e *Engine) Limits() risk.Limits { return e.opt.Risk.Limits() }

// OpenOrders returns the working orders, oldest first (reconciliation and queries).
func (e *Engine) OpenOrders() []fsm.Order {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []fsm.Order
	for _, r := range e.created {
		if r.o.Status.Open() {
			out = append(out, *r.o)
		}
	}
	return out
}

// Close refuses further submissions; the caller then closes the journal.
func (e *Engine) Close() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
}

// sortedOpen returns open records ordered by creation.
func (e *Engine) sortedOpen() []*record {
	var out []*record
	for _, r := range e.created {
		if r.o.Status.Open() {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].o.CreatedUS < out[j].o.CreatedUS })
	return out
}

// PositionState returns the net position of a symbol, when it was opened, and whether an order of
// the symbol is still working (the signal policy waits for it).
func (e *Engine) PositionState(symbol string) (net decimal.D, openedUS int64, working bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.opt.Book.Get(symbol)
	for i := len(e.created) - 1; i >= 0 && i >= len(e.created)-512; i-- {
		if o := e.created[i].o; o.Symbol == symbol && o.Status.Open() {
			working = true
			break
		}
	}
	return p.Net, p.OpenedUS, working
}

// SubmitIntent validates and submits an order built inside the service (the signal policy).
func (e *Engine) SubmitIntent(ctx context.Context, req *execv1.SubmitOrderRequest, hops []*typesv1.HopStamp) (*execv1.Order, error) {
	rreq, bad := Validate(req, e.Instrument, e.Now())
	if bad != nil {
		return nil, bad
	}
	res, err := e.Submit(ctx, req, rreq, hops)
	return res.Order, err
}
