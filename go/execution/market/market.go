// Package market holds what the execution service knows about the instruments it trades and their
// latest quotes: the symbol specification that validation and risk need (digits, volume step,
// contract size, margin rate) and the top of book, all in fixed point.
package market

import (
	"fmt"

	"github.com/kairos-mt5/kairos/go/execution/decimal"
)

// Instrument is the static specification of a tradable symbol, as MT5's SymbolInfo reports it.
type Instrument struct {
	// Symbol name, e.g. "EURUSD".
	Symbol string
	// Digits is the number of decimals in prices (SYMBOL_DIGITS).
	Digits uint8
	// VolumeStep is the lot increment (SYMBOL_VOLUME_STEP), e.g. 0.01.
	VolumeStep decimal.D
	// VolumeMin is the smallest order in lots (SYMBOL_VOLUME_MIN).
	VolumeMin decimal.D
	// ContractSize is units of the base asset per lot (SYMBOL_TRADE_CONTRACT_SIZE), e.g. 100000.
	ContractSize decimal.D
	// MarginRate is the fraction of notional held as margin, e.g. 0.01 for 1:100 leverage.
	MarginRate decimal.D
	// QuoteToAccount converts an amount in the symbol's quote currency to the account currency
	// (1 for EURUSD on a USD account). Static: good enough for limits, not for accounting.
	QuoteToAccount decimal.D
}

// Point returns one price point, 10^-Digits.
func (i *Instrument) Point() decimal.D { return decimal.New(1, i.Digits) }

// VolumeScale is the number of decimals of the volume step.
func (i *Instrument) VolumeScale() uint8 { return i.VolumeStep.Scale() }

// Notional returns |qty| × contract size × price × quote-to-account, in account currency at 2 decimals.
func (i *Instrument) Notional(qty, price decimal.D) decimal.D {
	units := qty.Abs().MulRound(i.ContractSize, qty.Scale())
	return units.MulRound(price, price.Scale()+qty.Scale()).MulRound(i.QuoteToAccount, 2)
}

// Margin returns the margin an exposure of qty at price needs, in account currency at 2 decimals.
func (i *Instrument) Margin(qty, price decimal.D) decimal.D {
	return i.Notional(qty, price).MulRound(i.MarginRate, 2)
}

// Validate checks the specification itself.
func (i *Instrument) Validate() error {
	switch {
	case i.Symbol == "":
		return fmt.Errorf("instrument: empty symbol")
	case i.Digits > 10:
		return fmt.Errorf("instrument %s: digits %d > 10", i.Symbol, i.Digits)
	case i.VolumeStep.Sign() <= 0:
		return fmt.Errorf("instrument %s: volume step must be positive", i.Symbol)
	case i.VolumeMin.Sign() <= 0:
		return fmt.Errorf("instrument %s: minimum volume must be positive", i.Symbol)
	case i.ContractSize.Sign() <= 0:
		return fmt.Errorf("instrument %s: contract size must be positive", i.Symbol)
	case i.MarginRate.Sign() < 0:
		return fmt.Errorf("instrument %s: margin rate must not be negative", i.Symbol)
	case i.QuoteToAccount.Sign() <= 0:
		return fmt.Errorf("instrument %s: quote-to-account rate must be positive", i.Symbol)
	}
	return nil
}

// Quote is the top of book of one symbol.
type Quote struct {
	Symbol string
	Bid    decimal.D
	Ask    decimal.D
	// TimeUS is when the service received the quote, microseconds since the Unix epoch: staleness
	// is judged on it, because MT5 tick times are the broker's server clock, not UTC.
	TimeUS int64
	// MarketTimeUS is the tick's own time.
	MarketTimeUS int64
}

// Valid reports whether the quote has a positive, uncrossed bid and ask.
func (q Quote) Valid() bool {
	return q.Bid.Sign() > 0 && q.Ask.Sign() > 0 && !q.Ask.Less(q.Bid)
}

// Mid returns (bid+ask)/2 at one more decimal than the quote.
func (q Quote) Mid() decimal.D {
	s := max(q.Bid.Scale(), q.Ask.Scale())
	return q.Bid.Add(q.Ask).MulRound(decimal.New(5, 1), s+1)
}

// StopLevel is the protective stop loss of a position opened at ref: dist below it for a buy, above
// it for a sell, rounded to digits away from ref (a stop never tighter than asked); zero when ref
// is not positive or a buy's level would not be. The engine sets it from an order's reference price,
// the decision policy from the quote its signal was decided on.
func StopLevel(ref, dist decimal.D, buy bool, digits uint8) decimal.D {
	if ref.Sign() <= 0 {
		return decimal.Zero
	}
	tick := decimal.New(1, digits)
	if buy {
		x := ref.Sub(dist)
		sl := x.Round(digits)
		if x.Less(sl) {
			sl = sl.Sub(tick)
		}
		if sl.Sign() <= 0 {
			return decimal.Zero
		}
		return sl
	}
	x := ref.Add(dist)
	sl := x.Round(digits)
	if sl.Less(x) {
		sl = sl.Add(tick)
	}
	return sl
}
