// Modifications: the rules a change of a working order passes (ModifyOrder), the rules a change of
// a position's protection passes (ModifyPosition), and the side rule for stops shared with new
// orders.

package risk

import (
	"fmt"

	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/market"
)

// CheckStops denies a stop loss or take profit on the wrong side of ref, the price the position is
// (or is expected to be) entered at: a buy's stop loss below it and take profit above, a sell's the
// other way round. Zero stops and a zero ref pass.
func CheckStops(side fsm.Side, ref, stopLoss, takeProfit decimal.D) *Denial {
	if ref.Sign() <= 0 {
		return nil
	}
	buy := side == fsm.Buy
	if stopLoss.Sign() > 0 && (buy && !stopLoss.Less(ref) || !buy && !ref.Less(stopLoss)) {
		return &Denial{ReasonInvalidStops, fmt.Sprintf("stop loss %s of a %s must be %s its price %s", stopLoss, side, belowAbove(buy), ref)}
	}
	if takeProfit.Sign() > 0 && (buy && !ref.Less(takeProfit) || !buy && !takeProfit.Less(ref)) {
		return &Denial{ReasonInvalidStops, fmt.Sprintf("take profit %s of a %s must be %s its price %s", takeProfit, side, belowAbove(!buy), ref)}
	}
	return nil
}

func belowAbove(below bool) string {
	if below {
		return "below"
	}
	return "above"
}

// collar denies a price more than PriceCollarBps from the quote's mid (zero prices pass).
func (e *Engine) collar(symbol string, q market.Quote, prices ...decimal.D) *Denial {
	bps := e.limits.PriceCollarBps
	if bps == 0 {
		return nil
	}
	mid := q.Mid()
	for _, p := range prices {
		if p.IsZero() {
			continue
		}
		dist := p.Sub(mid).Abs()
		// dist/mid > bps/10000  <=>  dist*10000 > mid*bps
		if mid.MulRound(decimal.FromInt(int64(bps)), mid.Scale()).Less(dist.MulRound(decimal.FromInt(10000), dist.Scale())) {
			return &Denial{ReasonPriceCollar, fmt.Sprintf("price %s is more than %d bps from the %s mid %s", p, bps, symbol, mid)}
		}
	}
	return nil
}

// stateDenial is the trading-state denial for an order that would add risk, or nil in ACTIVE.
func (e *Engine) stateDenial(what string) *Denial {
	switch e.state {
	case Active:
		return nil
	case Reducing:
		msg := "trading is REDUCING and " + what
		switch e.stateCause {
		case ReasonDailyLoss, ReasonDrawdown:
			return &Denial{e.stateCause, msg + " (" + breakerName(e.stateCause) + " breaker)"}
		}
		return &Denial{ReasonTradingReducing, msg}
	case Halted:
		switch e.stateCause {
		case ReasonDailyLoss, ReasonDrawdown:
			return &Denial{e.stateCause, "trading HALTED by the " + breakerName(e.stateCause) + " breaker"}
		}
		return &Denial{ReasonTradingHalted, "trading is HALTED"}
	}
	return &Denial{ReasonTradingHalted, "trading state is not set"}
}

// CheckModify runs the modification rules for changing o to amended values a, in this order:
// message throttle → shape and precision of the new values (quantity above what is filled) →
// reconciled → trading state (HALTED refuses every modification; REDUCING refuses a larger
// quantity unless the order is reduce-only) → max order quantity → price collar → stops on the
// right side of the new price (market orders: the quote's touch) → max position for a larger
// quantity. A nil result means the modification may go; the caller then calls Modified.
func (e *Engine) CheckModify(o *fsm.Order, a fsm.Amend, nowUS int64) *Denial {
	if !e.messages.ok(nowUS) {
		return &Denial{ReasonMessageRate, fmt.Sprintf("more than %d messages in %d ms", e.limits.MessageRate.MaxCount, e.limits.MessageRate.WindowMS)}
	}
	inst, ok := e.instruments[o.Symbol]
	if !ok {
		return &Denial{ReasonSymbolNotAllowed, fmt.Sprintf("symbol %q is not a configured instrument", o.Symbol)}
	}
	req := &Request{ClientOrderID: o.ClientOrderID, Symbol: o.Symbol, Side: o.Side, Type: o.Type, Quantity: a.Quantity,
		Price: a.Price, TriggerPrice: a.TriggerPrice, ReduceOnly: o.ReduceOnly, StopLoss: a.StopLoss, TakeProfit: a.TakeProfit}
	if d := CheckShape(inst, req); d != nil {
		return d
	}
	if !o.FilledQty.Less(a.Quantity) {
		return &Denial{ReasonInvalidQuantityOrPrice, fmt.Sprintf("quantity %s must exceed the %s already filled", a.Quantity, o.FilledQty)}
	}
	if !e.reconciled {
		return &Denial{ReasonNotReconciled, "the service has not reconciled with the venue yet"}
	}
	grows := o.Quantity.Less(a.Quantity)
	switch {
	case e.state == Halted:
		return e.stateDenial("")
	case e.state != Active && grows && !o.ReduceOnly:
		return e.stateDenial(fmt.Sprintf("%s would grow from %s to %s", o.ClientOrderID, o.Quantity, a.Quantity))
	case e.state != Active && e.state != Reducing:
		return e.stateDenial("")
	}
	if lim := e.limits.MaxOrderQuantity; lim.Sign() > 0 && lim.Less(a.Quantity) {
		return &Denial{ReasonMaxOrderQuantity, fmt.Sprintf("quantity %s exceeds max %s", a.Quantity, lim)}
	}
	q, haveQuote := e.quotes[o.Symbol]
	haveQuote = haveQuote && q.Valid()
	if haveQuote {
		if d := e.collar(o.Symbol, q, a.Price, a.TriggerPrice); d != nil {
			return d
		}
	}
	ref := a.Price
	switch o.Type {
	case fsm.StopMarket:
		ref = a.TriggerPrice
	case fsm.Market:
		ref = decimal.Zero
		if haveQuote {
			ref = q.Ask
			if o.Side == fsm.Sell {
				ref = q.Bid
			}
		}
	}
	if d := CheckStops(o.Side, ref, a.StopLoss, a.TakeProfit); d != nil {
		return d
	}
	if lim := e.limits.MaxPositionQuantity; lim.Sign() > 0 && grows && !o.ReduceOnly {
		extra := a.Quantity.Sub(o.Quantity)
		p := e.pending[o.Symbol]
		worst := e.book.Net(o.Symbol)
		if o.Side == fsm.Buy {
			worst = worst.Add(p.buy).Add(extra)
		} else {
			worst = worst.Sub(p.sell).Sub(extra)
		}
		if lim.Less(worst.Abs()) {
			return &Denial{ReasonMaxPosition, fmt.Sprintf("%s position would reach %s lots (with working orders), max %s", o.Symbol, worst.Abs(), lim)}
		}
	}
	return nil
}

// Modified records a passed modification against the message throttle.
func (e *Engine) Modified(nowUS int64) { e.messages.record(nowUS) }

// CheckProtection runs the rules for setting a position's stop loss and take profit: message
// throttle → precision → reconciled → stops on the right side of the price the position would
// close at now (a long's stop loss below the bid, its take profit above; a short's around the
// ask; not checked without a quote). Every trading state allows it: protection is what a halted
// account keeps.
func (e *Engine) CheckProtection(symbol string, net, stopLoss, takeProfit decimal.D, nowUS int64) *Denial {
	if !e.messages.ok(nowUS) {
		return &Denial{ReasonMessageRate, fmt.Sprintf("more than %d messages in %d ms", e.limits.MessageRate.MaxCount, e.limits.MessageRate.WindowMS)}
	}
	inst, ok := e.instruments[symbol]
	if !ok {
		return &Denial{ReasonSymbolNotAllowed, fmt.Sprintf("symbol %q is not a configured instrument", symbol)}
	}
	for _, c := range [2]struct {
		name string
		v    decimal.D
	}{{"stop loss", stopLoss}, {"take profit", takeProfit}} {
		switch {
		case c.v.Sign() < 0:
			return &Denial{ReasonInvalidQuantityOrPrice, fmt.Sprintf("%s %s must not be negative", c.name, c.v)}
		case !c.v.FitsScale(inst.Digits):
			return &Denial{ReasonInvalidPrecision, fmt.Sprintf("%s %s has more than %d decimals (%s digits)", c.name, c.v, inst.Digits, symbol)}
		}
	}
	if !e.reconciled {
		return &Denial{ReasonNotReconciled, "the service has not reconciled with the venue yet"}
	}
	if q, ok := e.quotes[symbol]; ok && q.Valid() {
		side, ref := fsm.Buy, q.Bid
		if net.Sign() < 0 {
			side, ref = fsm.Sell, q.Ask
		}
		if d := CheckStops(side, ref, stopLoss, takeProfit); d != nil {
			d.Message = "position: " + d.Message
			return d
		}
	}
	return nil
}
