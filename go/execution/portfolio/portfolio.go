// Package portfolio keeps net positions per symbol from fills: quantity, average entry price and
// realized P&L, in fixed point. The risk engine reads it for position, exposure and loss limits.
package portfolio

import (
	"sort"

	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/market"
)

// Position is the net position in one symbol.
type Position struct {
	Symbol string
	// Net lots: positive long, negative short.
	Net decimal.D
	// AvgPrice of the open quantity; zero when flat.
	AvgPrice decimal.D
	// Realized P&L in account currency (2 decimals), net of commission.
	Realized  decimal.D
	OpenedUS  int64
	UpdatedUS int64
}

// Book holds every position. Not safe for concurrent use: the engine guards it.
type Book struct {
	pos      map[string]*Position
	realized decimal.D
}

// NewBook returns an empty book.
func NewBook() *Book { return &Book{pos: make(map[string]*Position)} }

// Get returns the position in symbol (a flat zero position if none).
func (b *Book) Get(symbol string) Position {
	if p, ok := b.pos[symbol]; ok {
		return *p
	}
	return Position{Symbol: symbol}
}

// Net returns the net lots in symbol.
func (b *Book) Net(symbol string) decimal.D {
	if p, ok := b.pos[symbol]; ok {
		return p.Net
	}
	return decimal.Zero
}

// Realized returns the realized P&L over all symbols since the book was created or reset.
func (b *Book) Realized() decimal.D { return b.realized }

// Each calls fn for every position, in no particular order, without allocating (risk hot path).
func (b *Book) Each(fn func(p *Position)) {
	for _, p := range b.pos {
		fn(p)
	}
}

// All returns the positions sorted by symbol.
func (b *Book) All() []Position {
	out := make([]Position, 0, len(b.pos))
	for _, p := range b.pos {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Symbol < out[j].Symbol })
	return out
}

// ApplyFill updates the position for a fill of signedQty lots (positive buy, negative sell) at price,
// paying commission (positive is a cost, account currency).
func (b *Book) ApplyFill(inst *market.Instrument, signedQty, price, commission decimal.D, nowUS int64) {
	p, ok := b.pos[inst.Symbol]
	if !ok {
		p = &Position{Symbol: inst.Symbol, Realized: decimal.New(0, 2)}
		b.pos[inst.Symbol] = p
	}
	pnl := decimal.New(0, 2)
	switch {
	case p.Net.IsZero() || p.Net.Sign() == signedQty.Sign():
		// Opening or adding: new average price weighted by quantity.
		if p.Net.IsZero() {
			p.OpenedUS = nowUS
		}
		newNet := p.Net.Add(signedQty)
		ps := max(price.Scale(), p.AvgPrice.Scale())
		cost := p.AvgPrice.MulRound(p.Net.Abs(), ps+p.Net.Scale()).Add(price.MulRound(signedQty.Abs(), ps+signedQty.Scale()))
		p.AvgPrice = cost.DivRound(newNet.Abs(), min(ps+2, decimal.MaxScale)).Trim(ps)
		p.Net = newNet
	default:
		// Reducing, closing or flipping.
		closing := decimal.Min(p.Net.Abs(), signedQty.Abs())
		diff := price.Sub(p.AvgPrice)
		if p.Net.Sign() < 0 {
			diff = diff.Neg()
		}
		pnl = inst.Notional(closing, diff.Abs())
		if diff.Sign() < 0 {
			pnl = pnl.Neg()
		}
		newNet := p.Net.Add(signedQty)
		switch {
		case newNet.IsZero():
			p.AvgPrice = decimal.Zero
			p.OpenedUS = 0
		case newNet.Sign() != p.Net.Sign():
			p.AvgPrice = price
			p.OpenedUS = nowUS
		}
		p.Net = newNet
	}
	pnl = pnl.Sub(commission.Round(2))
	p.Realized = p.Realized.Add(pnl)
	b.realized = b.realized.Add(pnl)
	p.UpdatedUS = nowUS
}

// Charge books a commission that arrived after its fill (MT5 reports a deal's commission with the
// DEAL_ADD transaction, after the order result that carried the fill): realized P&L only.
func (b *Book) Charge(symbol string, commission decimal.D, nowUS int64) {
	p, ok := b.pos[symbol]
	if !ok {
		p = &Position{Symbol: symbol, Realized: decimal.New(0, 2)}
		b.pos[symbol] = p
	}
	c := commission.Round(2)
	p.Realized = p.Realized.Sub(c)
	b.realized = b.realized.Sub(c)
	p.UpdatedUS = nowUS
}

// Unrealized returns the P&L of the open quantity at the quote (bid for longs, ask for shorts).
func Unrealized(inst *market.Instrument, p Position, q market.Quote) decimal.D {
	if p.Net.IsZero() || !q.Valid() {
		return decimal.New(0, 2)
	}
	mark := q.Bid
	diff := mark.Sub(p.AvgPrice)
	if p.Net.Sign() < 0 {
		mark = q.Ask
		diff = p.AvgPrice.Sub(mark)
	}
	v := inst.Notional(p.Net.Abs(), diff.Abs())
	if diff.Sign() < 0 {
		return v.Neg()
	}
	return v
}

// Restore replaces a position (journal replay and venue reconciliation).
func (b *Book) Restore(p Position) {
	cp := p
	if old, ok := b.pos[p.Symbol]; ok {
		b.realized = b.realized.Sub(old.Realized)
	}
	b.pos[p.Symbol] = &cp
	b.realized = b.realized.Add(p.Realized)
}
