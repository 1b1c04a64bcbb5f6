// Protection: positions' stop loss and take profit. Orders carry them to the position they open;
// ModifyPosition changes them; a venue that keeps them at the broker (MT5) gets a Protect command,
// a venue that works them on quotes (paper) is told every change; the fills they cause at the
// venue are booked as orders of their own.

package engine

import (
	"context"
	"fmt"
	"strings"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// protection is one position's stop loss and take profit (zero: none).
type protection struct{ sl, tp decimal.D }

func (p protection) none() bool { return p.sl.IsZero() && p.tp.IsZero() }

func (p protection) same(q protection) bool { return p.sl.Equal(q.sl) && p.tp.Equal(q.tp) }

// ModifyPositionResult is what ModifyPosition returns: the position with its protection as
// requested, or unchanged with the denial.
type ModifyPositionResult struct {
	Position *execv1.Position
	Denial   *risk.Denial
}

// ModifyPosition sets or removes the stop loss and take profit of a symbol's open position. Fields
// of req left unset keep their value, zero removes. It returns once the change is durable (and, on
// MT5, the command journaled and sent: the terminal's refusal comes back as a POSITION_UPDATED
// report restoring the previous values).
func (e *Engine) ModifyPosition(ctx context.Context, req *execv1.ModifyPositionRequest) (ModifyPositionResult, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ModifyPositionResult{}, ErrShuttingDown
	}
	if e.jerr != nil {
		err := e.jerr
		e.mu.Unlock()
		return ModifyPositionResult{}, err
	}
	sym := req.GetSymbol()
	inst, ok := e.opt.Risk.Instrument(sym)
	if !ok {
		e.mu.Unlock()
		return ModifyPositionResult{}, &InvalidError{[]Violation{{"symbol", fmt.Sprintf("unknown symbol %q", sym)}}}
	}
	var bad []Violation
	add := func(f, format string, a ...any) { bad = append(bad, Violation{f, fmt.Sprintf(format, a...)}) }
	old := e.prot[sym]
	nw := old
	if p := req.GetStopLoss(); p != nil {
		nw.sl = stopField(add, "stop_loss", p, inst)
	}
	if p := req.GetTakeProfit(); p != nil {
		nw.tp = stopField(add, "take_profit", p, inst)
	}
	if len(bad) == 0 && req.GetStopLoss() == nil && req.GetTakeProfit() == nil {
		add("stop_loss", "set stop_loss, take_profit or both")
	}
	if len(bad) > 0 {
		e.mu.Unlock()
		return ModifyPositionResult{}, &InvalidError{bad}
	}
	net := e.opt.Book.Net(sym)
	if net.IsZero() {
		e.mu.Unlock()
		return ModifyPositionResult{}, fmt.Errorf("%w in %s", ErrNoPosition, sym)
	}
	now := e.opt.Clock()
	key := positionKey(sym)
	entries := []journal.Entry{anyEntry(journal.KindCommand, key, req)}
	if den := e.opt.Risk.CheckProtection(sym, net, nw.sl, nw.tp, now); den != nil {
		if e.m != nil {
			e.m.Denials.WithLabelValues(den.Reason.String()).Inc()
		}
		entries = append(entries, anyEntry(journal.KindRisk, key, &execv1.RiskDenial{Reason: execv1.RiskDenyReason(den.Reason), Message: den.Message}))
		t, err := e.append(now, entries)
		out := e.positionLocked(sym)
		e.mu.Unlock()
		if err == nil {
			err = e.wait(ctx, t)
		}
		return ModifyPositionResult{Position: out, Denial: den}, err
	}
	e.opt.Risk.Modified(now)
	entries = append(entries, journal.Entry{Kind: journal.KindRisk, Key: key, Payload: riskPassed})
	pr, isProtector := e.opt.Venue.(venue.Protector)
	var cmd venue.Command
	if isProtector {
		cmd = pr.ProtectRequest(venue.Protection{Symbol: sym, Net: net, StopLoss: nw.sl, TakeProfit: nw.tp})
		if e.opt.Venue.WriteAhead() {
			entries = append(entries, anyEntry(journal.KindVenueRequest, key, cmd.Payload))
		}
		e.protPrev[sym] = old
	}
	entries = e.setProtectionLocked(sym, nw, "modify position", entries, now)
	t, err := e.append(now, entries)
	if err != nil {
		e.mu.Unlock()
		return ModifyPositionResult{}, err
	}
	var t2 journal.Ticket
	if isProtector {
		if e.opt.Venue.WriteAhead() {
			e.mu.Unlock()
			if err := e.wait(ctx, t); err != nil {
				return ModifyPositionResult{}, err
			}
			e.mu.Lock()
			t = journal.Ticket{}
		}
		evs, serr := e.opt.Venue.Send(cmd, nil)
		if serr != nil {
			evs = append(evs, venue.Event{Kind: venue.ProtectionRejected, Symbol: sym, Reason: "venue: " + serr.Error()})
		}
		t2, err = e.append(now, e.applyEvents(evs, nil, e.opt.Clock()))
		if err != nil {
			e.mu.Unlock()
			return ModifyPositionResult{}, err
		}
	}
	out := e.positionLocked(sym)
	e.mu.Unlock()
	if err := e.wait(ctx, t); err != nil {
		return ModifyPositionResult{}, err
	}
	return ModifyPositionResult{Position: out}, e.wait(ctx, t2)
}

// positionKey is the journal key of a position's entries.
func positionKey(symbol string) string { return "position:" + symbol }

// positionLocked is the wire form of a symbol's position with its protection.
func (e *Engine) positionLocked(sym string) *execv1.Position {
	p := e.opt.Book.Get(sym)
	p.Symbol = sym
	u := decimal.New(0, 2)
	if inst, ok := e.opt.Risk.Instrument(sym); ok {
		if q, ok := e.opt.Risk.Quote(sym); ok && !p.Net.IsZero() {
			u = portfolio.Unrealized(inst, p, q)
		}
	}
	return protected(PositionProto(p, u, e.opt.Currency, e.opt.Venue.Name()), e.prot[sym])
}

// setProtectionLocked records a position's new protection, journals a POSITION_UPDATED report
// when it changed and tells a watching venue.
func (e *Engine) setProtectionLocked(sym string, nw protection, reason string, entries []journal.Entry, now int64) []journal.Entry {
	old := e.prot[sym]
	if nw.none() {
		delete(e.prot, sym)
	} else {
		e.prot[sym] = nw
	}
	e.watchLocked(sym)
	if old.same(nw) {
		return entries
	}
	return append(entries, e.positionEntry(sym, reason, now))
}

// watchLocked tells a watching venue (paper) a symbol's net position and protection.
func (e *Engine) watchLocked(sym string) {
	if w, ok := e.opt.Venue.(venue.PositionWatcher); ok {
		pr := e.prot[sym]
		w.WatchPosition(venue.Protection{Symbol: sym, Net: e.opt.Book.Net(sym), StopLoss: pr.sl, TakeProfit: pr.tp})
	}
}

func (e *Engine) positionEntry(sym, reason string, now int64) journal.Entry {
	return reportOf(positionKey(sym), &execv1.ExecutionReport{Type: execv1.ReportType_REPORT_TYPE_POSITION_UPDATED,
		Position: e.positionLocked(sym), Reason: reason, TimeUs: now})
}

// protectAfterFillLocked adjusts a symbol's protection after a fill of o moved the net position
// from before: a flat position has none; one the fill opened or flipped takes the order's; one the
// fill increased takes the order's when it carries any (MT5 netting: the last deal's stops are the
// position's); otherwise it stays.
func (e *Engine) protectAfterFillLocked(o *fsm.Order, before decimal.D, entries []journal.Entry, now int64) []journal.Entry {
	net := e.opt.Book.Net(o.Symbol)
	old := e.prot[o.Symbol]
	nw := old
	ord := protection{o.StopLoss, o.TakeProfit}
	switch {
	case net.IsZero():
		nw = protection{}
	case before.IsZero() || before.Sign() != net.Sign():
		nw = ord
	case before.Abs().Less(net.Abs()) && !ord.none():
		nw = ord
	}
	reason := "set by " + o.ClientOrderID
	if nw.none() {
		reason = "cleared by " + o.ClientOrderID
	}
	return e.setProtectionLocked(o.Symbol, nw, reason, entries, now)
}

// protectiveOrderLocked creates the order a protective fill is booked as: a reduce-only market
// order of the deal's side and quantity, named by the venue ("sl:...", "tp:...", "so:..."), so the
// fill is journaled, replayed and reported like any other.
func (e *Engine) protectiveOrderLocked(ev venue.Event, now int64) *record {
	o := &fsm.Order{ClientOrderID: ev.ClientOrderID, VenueOrderID: ev.VenueOrderID, Symbol: ev.Symbol, Side: ev.Side,
		Type: fsm.Market, TIF: fsm.IOC, Quantity: ev.Fill.Quantity, ReduceOnly: true, StrategyID: protectiveStrategy(ev.ClientOrderID),
		Venue: e.opt.Venue.Name(), CreatedUS: now, UpdatedUS: now, Status: fsm.Initialized, FilledQty: decimal.New(0, ev.Fill.Quantity.Scale())}
	r := &record{o: o, hops: []*typesv1.HopStamp{}}
	e.addLocked(r)
	e.opt.Risk.RememberClientID(o.ClientOrderID)
	e.setStatus(o, fsm.StatusUnspecified) // counted INITIALIZED until its fill moves it
	return r
}

// protectiveStrategy names the strategy of a protective order by its id's prefix.
func protectiveStrategy(id string) string {
	switch {
	case strings.HasPrefix(id, "sl:"):
		return "stop-loss"
	case strings.HasPrefix(id, "tp:"):
		return "take-profit"
	case strings.HasPrefix(id, "so:"):
		return "stop-out"
	}
	return "protective"
}

// protectionRejectedLocked restores the protection before the refused Protect command.
func (e *Engine) protectionRejectedLocked(ev venue.Event, entries []journal.Entry, now int64) []journal.Entry {
	prev, ok := e.protPrev[ev.Symbol]
	if !ok {
		return entries
	}
	delete(e.protPrev, ev.Symbol)
	cur := e.prot[ev.Symbol]
	if prev.none() {
		delete(e.prot, ev.Symbol)
	} else {
		e.prot[ev.Symbol] = prev
	}
	e.watchLocked(ev.Symbol)
	e.log.Warn("the venue refused a position's stop loss / take profit; the previous values stand", "symbol", ev.Symbol,
		"refused_stop_loss", cur.sl.String(), "refused_take_profit", cur.tp.String(), "reason", ev.Reason)
	return append(entries, e.positionEntry(ev.Symbol, "protection rejected: "+ev.Reason, now))
}

func reportOf(key string, rep *execv1.ExecutionReport) journal.Entry {
	b := marshalReport(rep)
	return journal.Entry{Kind: journal.KindReport, Key: key, Payload: b}
}

// Protections returns every protected position's stop loss and take profit (tests, reconciliation).
func (e *Engine) Protections() map[string][2]decimal.D {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string][2]decimal.D, len(e.prot))
	for s, p := range e.prot {
		out[s] = [2]decimal.D{p.sl, p.tp}
	}
	return out
}
