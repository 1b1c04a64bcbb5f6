package market

import (
	"fmt"

	marketdatav1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
)

// TicksSubject is the collector's tick batches on NATS.
const TicksSubject = "kairos.md.>"

// LastQuote returns the newest quote of a tick batch at the instrument's digits, or an error when the
// batch is empty, malformed (columns of different lengths) or its prices are not finite.
func LastQuote(b *marketdatav1.TickBatch, inst *Instrument, nowUS int64) (Quote, error) {
	n := len(b.GetTimeMsc())
	if n == 0 {
		return Quote{}, fmt.Errorf("empty tick batch for %s", b.GetSymbol())
	}
	if len(b.GetBid()) != n || len(b.GetAsk()) != n {
		return Quote{}, fmt.Errorf("tick batch for %s: columns differ in length (%d times, %d bids, %d asks)", b.GetSymbol(), n, len(b.GetBid()), len(b.GetAsk()))
	}
	bid, err := decimal.FromFloat(b.GetBid()[n-1], inst.Digits)
	if err != nil {
		return Quote{}, err
	}
	ask, err := decimal.FromFloat(b.GetAsk()[n-1], inst.Digits)
	if err != nil {
		return Quote{}, err
	}
	return Quote{Symbol: b.GetSymbol(), Bid: bid, Ask: ask, TimeUS: nowUS, MarketTimeUS: b.GetTimeMsc()[n-1] * 1000}, nil
}

// Quotes returns every tick of a batch as a quote (the paper venue matches resting orders against
// each one, not only the batch's last), or an error for a malformed batch.
func Quotes(b *marketdatav1.TickBatch, inst *Instrument, nowUS int64) ([]Quote, error) {
	n := len(b.GetTimeMsc())
	if len(b.GetBid()) != n || len(b.GetAsk()) != n {
		return nil, fmt.Errorf("tick batch for %s: columns differ in length (%d times, %d bids, %d asks)", b.GetSymbol(), n, len(b.GetBid()), len(b.GetAsk()))
	}
	out := make([]Quote, 0, n)
	for i := 0; i < n; i++ {
		bid, err := decimal.FromFloat(b.GetBid()[i], inst.Digits)
		if err != nil {
			return nil, fmt.Errorf("tick %d of %s: bid: %w", i, b.GetSymbol(), err)
		}
		ask, err := decimal.FromFloat(b.GetAsk()[i], inst.Digits)
		if err != nil {
			return nil, fmt.Errorf("tick %d of %s: ask: %w", i, b.GetSymbol(), err)
		}
		out = append(out, Quote{Symbol: b.GetSymbol(), Bid: bid, Ask: ask, TimeUS: nowUS, MarketTimeUS: b.GetTimeMsc()[i] * 1000})
	}
	return out, nil
}
