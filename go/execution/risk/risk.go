// Package risk is the pre-trade risk engine: pure Go, no I/O and no locks on the check path (the
// execution engine serialises calls). It holds the trading state (ACTIVE, REDUCING, HALTED), the
// limits, the throttles, the duplicate guards, the loss breakers and the account's free margin, and
// answers every order with nil or a Denial: an enum code and a message naming the limit.
package risk

import (
	"errors"
	"fmt"
	"sort"

	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
)

// State is the trading state (kairos.execution.v1.TradingState values).
type State uint8

// Trading states.
const (
	StateUnspecified State = iota
	Active
	Reducing
	Halted
)

func (s State) String() string {
	switch s {
	case Active:
		return "ACTIVE"
	case Reducing:
		return "REDUCING"
	case Halted:
		return "HALTED"
	}
	return "UNSPECIFIED"
}

// Reason is a denial code (kairos.execution.v1.RiskDenyReason values).
type Reason uint8

// Denial codes.
const (
	ReasonUnspecified Reason = iota
	ReasonTradingHalted
	ReasonTradingReducing
	ReasonReduceOnly
	ReasonSymbolNotAllowed
	ReasonInvalidPrecision
	ReasonInvalidQuantityOrPrice
	ReasonMaxOrderQuantity
	ReasonMaxOrderNotional
	ReasonMaxPosition
	ReasonMaxGrossExposure
	ReasonMaxOpenOrders
	ReasonPriceCollar
	ReasonQuoteMissing
	ReasonQuoteStale
	ReasonSubmitRate
	ReasonMessageRate
	ReasonDuplicateClientOrderID
	ReasonDuplicateIntent
	ReasonDailyLoss
	ReasonDrawdown
	ReasonInsufficientMargin
	ReasonNotReconciled
	ReasonInvalidStops
	numReason
)

var reasonNames = [numReason]string{"UNSPECIFIED", "TRADING_HALTED", "TRADING_REDUCING", "REDUCE_ONLY",
	"SYMBOL_NOT_ALLOWED", "INVALID_PRECISION", "INVALID_QUANTITY_OR_PRICE", "MAX_ORDER_QUANTITY",
	"MAX_ORDER_NOTIONAL", "MAX_POSITION", "MAX_GROSS_EXPOSURE", "MAX_OPEN_ORDERS", "PRICE_COLLAR",
	"QUOTE_MISSING", "QUOTE_STALE", "SUBMIT_RATE", "MESSAGE_RATE", "DUPLICATE_CLIENT_ORDER_ID",
	"DUPLICATE_INTENT", "DAILY_LOSS", "DRAWDOWN", "INSUFFICIENT_MARGIN", "NOT_RECONCILED", "INVALID_STOPS"}

func (r Reason) String() string {
	if r < numReason {
		return reasonNames[r]
	}
	return fmt.Sprintf("Reason(%d)", r)
}

// AllReasons lists every real denial code, for metrics.
func AllReasons() []Reason {
	out := make([]Reason, 0, numReason-1)
	for r := Reason(1); r < numReason; r++ {
		out = append(out, r)
	}
	return out
}

// Denial is why an order was refused.
type Denial struct {
	Reason  Reason
	Message string
}

func (d *Denial) Error() string { return d.Reason.String() + ": " + d.Message }

// RateLimit is at most MaxCount events in any rolling window of WindowMS; zero MaxCount disables it.
type RateLimit struct {
	MaxCount uint32
	WindowMS uint32
}

// Limits is the pre-trade configuration. Zero values disable a limit, except where noted.
type Limits struct {
	// AllowedSymbols may be traded; empty allows every configured instrument.
	AllowedSymbols []string
	// MaxOrderQuantity in lots.
	MaxOrderQuantity decimal.D
	// MaxOrderNotional in account currency.
	MaxOrderNotional decimal.D
	// MaxPositionQuantity is the largest absolute net position per symbol, in lots, counting the
	// working orders on the same side.
	MaxPositionQuantity decimal.D
	// MaxGrossExposure over all symbols, in account currency.
	MaxGrossExposure decimal.D
	// MaxOpenOrders working at once.
	MaxOpenOrders uint32
	// PriceCollarBps is the largest distance of a limit or stop price from the mid, in basis points.
	PriceCollarBps uint32
	// MaxQuoteAgeMS is the oldest quote a market order may rely on.
	MaxQuoteAgeMS uint32
	// SubmitRate throttles submissions; denied submissions do not count, the kill switch's
	// flatten orders are never refused by it.
	SubmitRate RateLimit
	// MessageRate throttles submissions, cancels and modifications together.
	MessageRate RateLimit
	// DenialRate bounds the denied submissions the service records (an order, journal entries, a
	// DENIED report) per window: past it a submission that would be denied is refused outright
	// and leaves nothing behind (the engine's ErrTooManyDenials). Accepted submissions do not count
	// and the kill switch's flatten orders are never refused by it.
	DenialRate RateLimit
	// DuplicateIntentWindowMS: an identical (symbol, side, quantity, strategy) within it is denied.
	DuplicateIntentWindowMS uint32
	// MaxDailyLoss since the UTC day's starting equity trips DailyLossState.
	MaxDailyLoss decimal.D
	// DailyLossState is REDUCING or HALTED.
	DailyLossState State
	// MaxDrawdown from the equity high-water mark trips DrawdownState.
	MaxDrawdown decimal.D
	// DrawdownState is REDUCING or HALTED.
	DrawdownState State
	// MinFreeMargin to keep after an order, in account currency.
	MinFreeMargin decimal.D
}

// Account is the venue's account state (MT5 AccountSnapshot, or the paper venue's simulation).
type Account struct {
	Balance    decimal.D
	Equity     decimal.D
	Margin     decimal.D
	FreeMargin decimal.D
	TimeUS     int64
	Valid      bool
}

// Request is an order as risk sees it.
type Request struct {
	ClientOrderID string
	Symbol        string
	Side          fsm.Side
	Type          fsm.Type
	Quantity      decimal.D
	Price         decimal.D
	TriggerPrice  decimal.D
	ReduceOnly    bool
	StrategyID    string
	// StopLoss and TakeProfit the order sets on its position (zero: none): on the right side of
	// the price the order is expected to trade at, else INVALID_STOPS.
	StopLoss   decimal.D
	TakeProfit decimal.D
	// Flatten marks the kill switch's closing orders: when they reduce a position they pass the
	// trading-state check (HALTED included); every other rule still applies.
	Flatten bool
}

type intentKey struct {
	symbol, strategy string
	side             fsm.Side
	qty              decimal.D
}

type intentAt struct {
	key intentKey
	at  int64
}

type working struct {
	symbol string
	signed decimal.D // signed leaves: + buy, - sell
}

type pending struct{ buy, sell decimal.D }

// Engine is the risk engine. Not safe for concurrent use.
type Engine struct {
	limits      Limits
	allowed     map[string]struct{}
	instruments map[string]*market.Instrument
	book        *portfolio.Book
	quotes      map[string]market.Quote

	state      State
	stateCause Reason
	reconciled bool

	submits  throttle
	messages throttle
	denials  throttle

	clientIDs map[string]struct{}
	intents   map[intentKey]int64
	intentLog []intentAt

	working map[string]working
	pending map[string]pending

	account     Account
	dayKey      int64
	dayStartEq  decimal.D
	highWater   decimal.D
	breakerSeen bool
}

// New returns an engine that starts HALTED and not reconciled, as the service must.
func New(limits Limits, instruments []market.Instrument, book *portfolio.Book) *Engine {
	e := &Engine{
		limits:      limits,
		instruments: make(map[string]*market.Instrument, len(instruments)),
		book:        book,
		quotes:      make(map[string]market.Quote),
		state:       Halted,
		submits:     newThrottle(limits.SubmitRate),
		messages:    newThrottle(limits.MessageRate),
		denials:     newThrottle(limits.DenialRate),
		clientIDs:   make(map[string]struct{}),
		intents:     make(map[intentKey]int64),
		working:     make(map[string]working),
		pending:     make(map[string]pending),
	}
	for i := range instruments {
		inst := instruments[i]
		e.instruments[inst.Symbol] = &inst
	}
	if len(limits.AllowedSymbols) > 0 {
		e.allowed = make(map[string]struct{}, len(limits.AllowedSymbols))
		for _, s := range limits.AllowedSymbols {
			e.allowed[s] = struct{}{}
		}
	}
	return e
}

// Limits returns the configuration.
func (e *Engine) Limits() Limits { return e.limits }

// Symbols returns the configured instruments' symbols, sorted.
func (e *Engine) Symbols() []string {
	out := make([]string, 0, len(e.instruments))
	for s := range e.instruments {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Instrument returns the specification of symbol.
func (e *Engine) Instrument(symbol string) (*market.Instrument, bool) {
	i, ok := e.instruments[symbol]
	return i, ok
}

// State returns the trading state and, for breaker trips, the cause.
func (e *Engine) State() (State, Reason) { return e.state, e.stateCause }

// SetState switches the trading state (operator or kill switch); it clears a breaker's cause.
func (e *Engine) SetState(s State) State {
	prev := e.state
	e.state, e.stateCause = s, ReasonUnspecified
	return prev
}

// Reconciled reports whether the venue's snapshot has converged with the journal.
func (e *Engine) Reconciled() bool { return e.reconciled }

// SetReconciled marks reconciliation done (or undone, when the venue link is lost).
func (e *Engine) SetReconciled(ok bool) { e.reconciled = ok }

// OnQuote records the latest quote of a symbol.
func (e *Engine) OnQuote(q market.Quote) { e.quotes[q.Symbol] = q }

// Quote returns the latest quote of a symbol.
func (e *Engine) Quote(symbol string) (market.Quote, bool) {
	q, ok := e.quotes[symbol]
	return q, ok
}

// Account returns the last account state.
func (e *Engine) Account() Account { return e.account }

// RememberClientID marks a client order id as used (orders restored from the journal).
func (e *Engine) RememberClientID(id string) { e.clientIDs[id] = struct{}{} }

// ForgetClientID drops a used client order id: the execution engine evicted its finished order from
// memory and answers for the id from the journal (ADR 0125).
func (e *Engine) ForgetClientID(id string) { delete(e.clientIDs, id) }

// CompactClientIDs copies the used ids into a map sized for them (after many were forgotten).
func (e *Engine) CompactClientIDs() {
	ids := make(map[string]struct{}, len(e.clientIDs))
	for id := range e.clientIDs {
		ids[id] = struct{}{}
	}
	e.clientIDs = ids
}

// ClientIDs returns how many used client order ids the engine remembers.
func (e *Engine) ClientIDs() int { return len(e.clientIDs) }

// Track records an order's working quantity after every change, for position, exposure and
// open-order limits; closed orders are forgotten.
func (e *Engine) Track(o *fsm.Order) {
	old, had := e.working[o.ClientOrderID]
	if had {
		p := e.pending[old.symbol]
		if old.signed.Sign() > 0 {
			p.buy = p.buy.Sub(old.signed)
		} else {
			p.sell = p.sell.Add(old.signed)
		}
		e.pending[old.symbol] = p
		delete(e.working, o.ClientOrderID)
	}
	if !o.Status.Open() {
		return
	}
	leaves := o.Leaves()
	if o.Side == fsm.Sell {
		leaves = leaves.Neg()
	}
	e.working[o.ClientOrderID] = working{symbol: o.Symbol, signed: leaves}
	p := e.pending[o.Symbol]
	if leaves.Sign() > 0 {
		p.buy = p.buy.Add(leaves)
	} else {
		p.sell = p.sell.Sub(leaves)
	}
	e.pending[o.Symbol] = p
}

// OpenOrders returns the number of working orders.
func (e *Engine) OpenOrders() int { return len(e.working) }

// OnMessage counts a cancel or modification against the message throttle; it returns a denial
// when the throttle is exceeded (cancels are still carried out: see CountCancel).
func (e *Engine) OnMessage(nowUS int64) *Denial {
	if !e.messages.allow(nowUS) {
		return &Denial{ReasonMessageRate, fmt.Sprintf("more than %d messages in %d ms", e.limits.MessageRate.MaxCount, e.limits.MessageRate.WindowMS)}
	}
	return nil
}

// Check runs every pre-trade rule against req at nowUS. A nil result means the order may go; the
// caller then calls Accepted. Only accepted submissions count against the throttles (Accepted
// records them): a burst of denied orders must not use up the budget the kill switch's flatten
// orders need, and those are never throttled at all.
func (e *Engine) Check(req *Request, nowUS int64) *Denial {
	if !req.Flatten {
		if !e.messages.ok(nowUS) {
			return &Denial{ReasonMessageRate, fmt.Sprintf("more than %d messages in %d ms", e.limits.MessageRate.MaxCount, e.limits.MessageRate.WindowMS)}
		}
		if !e.submits.ok(nowUS) {
			return &Denial{ReasonSubmitRate, fmt.Sprintf("more than %d submissions in %d ms", e.limits.SubmitRate.MaxCount, e.limits.SubmitRate.WindowMS)}
		}
	}
	if _, dup := e.clientIDs[req.ClientOrderID]; dup {
		return &Denial{ReasonDuplicateClientOrderID, fmt.Sprintf("client order id %q was already used", req.ClientOrderID)}
	}
	inst, ok := e.instruments[req.Symbol]
	if !ok {
		return &Denial{ReasonSymbolNotAllowed, fmt.Sprintf("symbol %q is not a configured instrument", req.Symbol)}
	}
	if e.allowed != nil {
		if _, ok := e.allowed[req.Symbol]; !ok {
			return &Denial{ReasonSymbolNotAllowed, fmt.Sprintf("symbol %q is not on the allow-list", req.Symbol)}
		}
	}
	if d := CheckShape(inst, req); d != nil {
		return d
	}
	if !e.reconciled {
		return &Denial{ReasonNotReconciled, "the service has not reconciled with the venue yet"}
	}
	net := e.book.Net(req.Symbol)
	signed := req.Quantity
	if req.Side == fsm.Sell {
		signed = signed.Neg()
	}
	after := net.Add(signed)
	reduces := net.Sign() != 0 && signed.Sign() != net.Sign() && !net.Abs().Less(req.Quantity)
	state := e.state
	if req.Flatten && reduces {
		state = Active
	}
	switch state {
	case Halted:
		switch e.stateCause {
		case ReasonDailyLoss, ReasonDrawdown:
			return &Denial{e.stateCause, "trading HALTED by the " + breakerName(e.stateCause) + " breaker"}
		}
		return &Denial{ReasonTradingHalted, "trading is HALTED"}
	case Reducing:
		if !reduces {
			msg := fmt.Sprintf("trading is REDUCING and %s %s would take the %s position from %s to %s", req.Side, req.Quantity, req.Symbol, net, after)
			switch e.stateCause {
			case ReasonDailyLoss, ReasonDrawdown:
				return &Denial{e.stateCause, msg + " (" + breakerName(e.stateCause) + " breaker)"}
			}
			return &Denial{ReasonTradingReducing, msg}
		}
	case Active:
	default:
		return &Denial{ReasonTradingHalted, "trading state is not set"}
	}
	if req.ReduceOnly && !reduces {
		return &Denial{ReasonReduceOnly, fmt.Sprintf("reduce-only %s %s would take the %s position from %s to %s", req.Side, req.Quantity, req.Symbol, net, after)}
	}
	if lim := e.limits.MaxOrderQuantity; lim.Sign() > 0 && lim.Less(req.Quantity) {
		return &Denial{ReasonMaxOrderQuantity, fmt.Sprintf("quantity %s exceeds max %s", req.Quantity, lim)}
	}
	q, haveQuote := e.quotes[req.Symbol]
	haveQuote = haveQuote && q.Valid()
	needQuote := req.Type == fsm.Market || e.limits.PriceCollarBps > 0 || e.limits.MaxOrderNotional.Sign() > 0 ||
		e.limits.MaxGrossExposure.Sign() > 0
	if !haveQuote {
		if req.Type == fsm.Market || needQuote {
			return &Denial{ReasonQuoteMissing, fmt.Sprintf("no quote for %s", req.Symbol)}
		}
	} else if req.Type == fsm.Market && e.limits.MaxQuoteAgeMS > 0 {
		if age := nowUS - q.TimeUS; age > int64(e.limits.MaxQuoteAgeMS)*1000 {
			return &Denial{ReasonQuoteStale, fmt.Sprintf("latest %s quote is %d ms old, max %d ms", req.Symbol, age/1000, e.limits.MaxQuoteAgeMS)}
		}
	}
	// The price the order is expected to trade at.
	px := req.Price
	if req.Type == fsm.Market || req.Type == fsm.StopMarket {
		px = q.Ask
		if req.Side == fsm.Sell {
			px = q.Bid
		}
		if req.Type == fsm.StopMarket {
			px = req.TriggerPrice
		}
	}
	if req.Type != fsm.Market && haveQuote {
		if d := e.collar(req.Symbol, q, req.Price, req.TriggerPrice); d != nil {
			return d
		}
	}
	if d := CheckStops(req.Side, px, req.StopLoss, req.TakeProfit); d != nil {
		return d
	}
	notional := inst.Notional(req.Quantity, px)
	if lim := e.limits.MaxOrderNotional; lim.Sign() > 0 && lim.Less(notional) {
		return &Denial{ReasonMaxOrderNotional, fmt.Sprintf("notional %s exceeds max %s", notional, lim)}
	}
	if lim := e.limits.MaxPositionQuantity; lim.Sign() > 0 && !reduces {
		p := e.pending[req.Symbol]
		worst := after
		if signed.Sign() > 0 {
			worst = worst.Add(p.buy)
		} else {
			worst = worst.Sub(p.sell)
		}
		if lim.Less(worst.Abs()) {
			return &Denial{ReasonMaxPosition, fmt.Sprintf("%s position would reach %s lots (with working orders), max %s", req.Symbol, worst.Abs(), lim)}
		}
	}
	if lim := e.limits.MaxGrossExposure; lim.Sign() > 0 && !reduces {
		gross := e.grossExposure(req.Symbol, after, px)
		if lim.Less(gross) {
			return &Denial{ReasonMaxGrossExposure, fmt.Sprintf("gross exposure would reach %s, max %s", gross, lim)}
		}
	}
	if lim := e.limits.MaxOpenOrders; lim > 0 && uint32(len(e.working)) >= lim {
		return &Denial{ReasonMaxOpenOrders, fmt.Sprintf("%d orders are working, max %d", len(e.working), lim)}
	}
	if !reduces && (e.limits.MinFreeMargin.Sign() > 0 || inst.MarginRate.Sign() > 0) {
		if !e.account.Valid {
			return &Denial{ReasonInsufficientMargin, "no account snapshot from the venue yet"}
		}
		need := inst.Margin(req.Quantity, px)
		left := e.account.FreeMargin.Sub(need)
		if left.Less(e.limits.MinFreeMargin) {
			return &Denial{ReasonInsufficientMargin, fmt.Sprintf("order needs margin %s, free margin %s, minimum to keep %s", need, e.account.FreeMargin, e.limits.MinFreeMargin)}
		}
	}
	if w := e.limits.DuplicateIntentWindowMS; w > 0 {
		e.expireIntents(nowUS)
		k := intentKey{req.Symbol, req.StrategyID, req.Side, req.Quantity.Round(8)}
		if at, ok := e.intents[k]; ok && nowUS-at < int64(w)*1000 {
			return &Denial{ReasonDuplicateIntent, fmt.Sprintf("same intent (%s %s %s, strategy %q) %d ms ago, window %d ms", req.Symbol, req.Side, req.Quantity, req.StrategyID, (nowUS-at)/1000, w)}
		}
	}
	return nil
}

// Accepted records a passed order: its client id and intent. Denied orders record their id with
// RememberClientID so the id cannot be reused for different content.
func (e *Engine) Accepted(req *Request, nowUS int64) {
	e.messages.record(nowUS)
	e.submits.record(nowUS)
	e.clientIDs[req.ClientOrderID] = struct{}{}
	if e.limits.DuplicateIntentWindowMS > 0 {
		k := intentKey{req.Symbol, req.StrategyID, req.Side, req.Quantity.Round(8)}
		e.intents[k] = nowUS
		e.intentLog = append(e.intentLog, intentAt{k, nowUS})
	}
}

// ErrTooManyDenials is the refusal of a submission risk would deny once the denial budget
// (Limits.DenialRate) of the window is spent: nothing about it is recorded.
var ErrTooManyDenials = errors.New("too many denied submissions")

// RecordDenial counts the denial of req at nowUS against the denial budget (Limits.DenialRate). It
// reports false, counting nothing, when the budget of the window is spent: the caller must then
// refuse the submission without recording it, and retryAfterUS says when the budget has room
// again. The kill switch's flatten orders always pass and do not count.
func (e *Engine) RecordDenial(req *Request, nowUS int64) (ok bool, retryAfterUS int64) {
	if req.Flatten {
		return true, 0
	}
	if !e.denials.ok(nowUS) {
		return false, e.denials.wait(nowUS)
	}
	e.denials.record(nowUS)
	return true, 0
}

func (e *Engine) expireIntents(nowUS int64) {
	cut := nowUS - int64(e.limits.DuplicateIntentWindowMS)*1000
	i := 0
	for ; i < len(e.intentLog) && e.intentLog[i].at <= cut; i++ {
		if e.intents[e.intentLog[i].key] == e.intentLog[i].at {
			delete(e.intents, e.intentLog[i].key)
		}
	}
	if i > 0 {
		e.intentLog = append(e.intentLog[:0], e.intentLog[i:]...)
	}
}

func (e *Engine) grossExposure(symbol string, after, px decimal.D) decimal.D {
	inst := e.instruments[symbol]
	gross := inst.Notional(after, px)
	e.book.Each(func(p *portfolio.Position) {
		if p.Symbol == symbol || p.Net.IsZero() {
			return
		}
		pi, ok := e.instruments[p.Symbol]
		if !ok {
			return
		}
		mark := p.AvgPrice
		if q, ok := e.quotes[p.Symbol]; ok && q.Valid() {
			mark = q.Mid()
		}
		gross = gross.Add(pi.Notional(p.Net, mark))
	})
	return gross
}

// CheckShape validates quantity and price against the instrument: positive values, precision within
// the symbol's digits and volume step, and the right prices for the order type.
func CheckShape(inst *market.Instrument, req *Request) *Denial {
	if req.Side != fsm.Buy && req.Side != fsm.Sell {
		return &Denial{ReasonInvalidQuantityOrPrice, "side must be BUY or SELL"}
	}
	if req.Quantity.Sign() <= 0 {
		return &Denial{ReasonInvalidQuantityOrPrice, fmt.Sprintf("quantity %s must be positive", req.Quantity)}
	}
	if !req.Quantity.FitsScale(inst.VolumeScale()) || !req.Quantity.IsMultipleOf(inst.VolumeStep) {
		return &Denial{ReasonInvalidPrecision, fmt.Sprintf("quantity %s is not a multiple of the %s volume step %s", req.Quantity, req.Symbol, inst.VolumeStep)}
	}
	if req.Quantity.Less(inst.VolumeMin) {
		return &Denial{ReasonInvalidQuantityOrPrice, fmt.Sprintf("quantity %s is below the %s minimum %s", req.Quantity, req.Symbol, inst.VolumeMin)}
	}
	for _, c := range [2]struct {
		name string
		v    decimal.D
	}{{"stop loss", req.StopLoss}, {"take profit", req.TakeProfit}} {
		switch {
		case c.v.Sign() < 0:
			return &Denial{ReasonInvalidQuantityOrPrice, fmt.Sprintf("%s %s must not be negative", c.name, c.v)}
		case !c.v.FitsScale(inst.Digits):
			return &Denial{ReasonInvalidPrecision, fmt.Sprintf("%s %s has more than %d decimals (%s digits)", c.name, c.v, inst.Digits, req.Symbol)}
		}
	}
	needPrice := req.Type == fsm.Limit || req.Type == fsm.StopLimit
	needTrigger := req.Type == fsm.StopMarket || req.Type == fsm.StopLimit
	switch req.Type {
	case fsm.Market, fsm.Limit, fsm.StopMarket, fsm.StopLimit:
	default:
		return &Denial{ReasonInvalidQuantityOrPrice, "order type must be MARKET, LIMIT, STOP_MARKET or STOP_LIMIT"}
	}
	for _, c := range [2]struct {
		name string
		v    decimal.D
		need bool
	}{{"price", req.Price, needPrice}, {"trigger price", req.TriggerPrice, needTrigger}} {
		switch {
		case c.need && c.v.Sign() <= 0:
			return &Denial{ReasonInvalidQuantityOrPrice, fmt.Sprintf("%s %s must be positive", c.name, c.v)}
		case !c.need && !c.v.IsZero():
			return &Denial{ReasonInvalidQuantityOrPrice, fmt.Sprintf("%s must be zero for this order type", c.name)}
		case c.need && !c.v.FitsScale(inst.Digits):
			return &Denial{ReasonInvalidPrecision, fmt.Sprintf("%s %s has more than %d decimals (%s digits)", c.name, c.v, inst.Digits, req.Symbol)}
		}
	}
	return nil
}

func breakerName(r Reason) string {
	if r == ReasonDailyLoss {
		return "daily loss"
	}
	return "drawdown"
}

// OnAccount records the venue's account state and runs the loss breakers. It returns the new state
// and cause when a breaker tripped (escalation only: ACTIVE → REDUCING → HALTED), else StateUnspecified.
func (e *Engine) OnAccount(a Account) (State, Reason) {
	e.account = a
	if !a.Valid {
		return StateUnspecified, ReasonUnspecified
	}
	day := a.TimeUS / 86_400_000_000
	if !e.breakerSeen || day != e.dayKey {
		e.dayKey, e.dayStartEq = day, a.Equity
		if !e.breakerSeen {
			e.highWater = a.Equity
		}
		e.breakerSeen = true
	}
	if e.highWater.Less(a.Equity) {
		e.highWater = a.Equity
	}
	tripped, cause := StateUnspecified, ReasonUnspecified
	if lim := e.limits.MaxDailyLoss; lim.Sign() > 0 && !e.dayStartEq.Sub(a.Equity).Less(lim) {
		tripped, cause = e.limits.DailyLossState, ReasonDailyLoss
	}
	if lim := e.limits.MaxDrawdown; lim.Sign() > 0 && !e.highWater.Sub(a.Equity).Less(lim) && e.limits.DrawdownState > tripped {
		tripped, cause = e.limits.DrawdownState, ReasonDrawdown
	}
	if tripped > e.state {
		e.state, e.stateCause = tripped, cause
		return tripped, cause
	}
	return StateUnspecified, ReasonUnspecified
}

// DailyLoss returns the loss since the start of the UTC day (positive is a loss).
func (e *Engine) DailyLoss() decimal.D { return e.dayStartEq.Sub(e.account.Equity) }

// Drawdown returns the distance of equity below its high-water mark.
func (e *Engine) Drawdown() decimal.D { return e.highWater.Sub(e.account.Equity) }

// throttle counts events in a rolling window with a ring of the last MaxCount event times: the
// window is exceeded when the oldest of them is still inside it. O(1), no allocation.
type throttle struct {
	times  []int64
	next   int
	window int64
}

func newThrottle(r RateLimit) throttle {
	if r.MaxCount == 0 {
		return throttle{}
	}
	return throttle{times: make([]int64, r.MaxCount), window: int64(r.WindowMS) * 1000}
}

// allow records an event at now and reports whether it stays within the limit.
func (t *throttle) allow(now int64) bool {
	ok := t.ok(now)
	t.record(now)
	return ok
}

// ok reports whether one more event at now stays within the limit, recording nothing.
func (t *throttle) ok(now int64) bool {
	if t.times == nil {
		return true
	}
	oldest := t.times[t.next]
	return oldest == 0 || now-oldest >= t.window
}

// wait is how long after now one more event stays within the limit (0: now).
func (t *throttle) wait(now int64) int64 {
	if t.ok(now) {
		return 0
	}
	return t.times[t.next] + t.window - now
}

// record counts an event at now.
func (t *throttle) record(now int64) {
	if t.times == nil {
		return
	}
	t.times[t.next] = now
	t.next++
	if t.next == len(t.times) {
		t.next = 0
	}
}
