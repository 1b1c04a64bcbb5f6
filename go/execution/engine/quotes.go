// Quotes: risk's view of the market, and the fills a quote-driven venue produces on them.

package engine

import (
	"context"
	"time"

	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// OnQuote records a quote, lets a quote-driven venue work its orders and refreshes a simulated
// account. Quotes themselves are not journaled; the fills they cause are.
func (e *Engine) OnQuote(q market.Quote) error { return e.OnQuotes([]market.Quote{q}) }

// OnQuotes is OnQuote for the ticks of one batch, in order, under one lock.
func (e *Engine) OnQuotes(qs []market.Quote) error { return e.onQuotes(qs, false) }

// OnQuoteIfNewer is OnQuote for a quote that may be older than the latest one: the quote a signal
// carries (its bar's closing tick) under the market clock (ADR 0095). It counts only when its
// market time is later than the latest quote's, so the decision sees the market as of its own time
// whichever of the collector's quote and the inference server's signal arrives first.
//
// When it counts, the signal has overtaken the collector's tick batch that holds the same closing
// tick (ADR 0103): until a later tick arrives, OnQuotes drops the symbol's ticks at or before the
// signal's market time, so the quote never goes back in market time and the venue never works the
// order just decided on ticks that preceded the decision. Every tick at or before a bar's closing
// tick belongs to that bar (a bar closes on its last tick's minute), so none is lost that the
// backtest would have worked the order on.
func (e *Engine) OnQuoteIfNewer(q market.Quote) error { return e.onQuotes([]market.Quote{q}, true) }

// WaitQuote waits, at most timeout, until the latest quote of symbol is at or after marketTimeUS,
// and says whether it is. A signal that overtook its own tick (the collector's ticks and the
// inference server's signals travel on separate subjects and goroutines) waits here for that tick
// to be applied, so the ticks before it are worked in order, the resting orders among them (ADR
// 0108), and the decision is executed on the market it was made on.
func (e *Engine) WaitQuote(symbol string, marketTimeUS int64, timeout time.Duration) bool {
	var timer *time.Timer
	for {
		e.mu.Lock()
		cur, ok := e.opt.Risk.Quote(symbol)
		seen := e.quoteSeen
		e.mu.Unlock()
		if ok && cur.MarketTimeUS >= marketTimeUS {
			return true
		}
		if timer == nil {
			if timeout <= 0 {
				return false
			}
			timer = time.NewTimer(timeout)
			defer timer.Stop()
		}
		select {
		case <-seen:
		case <-timer.C:
			return false
		}
	}
}

func (e *Engine) onQuotes(qs []market.Quote, onlyNewer bool) error {
	e.mu.Lock()
	var entries []journal.Entry
	qd, quoteDriven := e.opt.Venue.(venue.QuoteDriven)
	applied := false
	for _, q := range qs {
		if !q.Valid() {
			continue
		}
		if onlyNewer {
			if cur, ok := e.opt.Risk.Quote(q.Symbol); ok && cur.MarketTimeUS >= q.MarketTimeUS {
				continue
			}
			e.signalFloor[q.Symbol] = q.MarketTimeUS
		} else if floor, ok := e.signalFloor[q.Symbol]; ok {
			if q.MarketTimeUS <= floor {
				// A tick of the bar whose closing tick a signal already brought in: it was in the
				// market before the decision, so working orders on it now would move the market back.
				if e.m != nil {
					e.m.QuotesOvertaken.Inc()
				}
				continue
			}
			delete(e.signalFloor, q.Symbol)
		}
		e.opt.Risk.OnQuote(q)
		applied = true
		if quoteDriven {
			if evs := qd.OnQuote(q); len(evs) > 0 {
				entries = e.applyEvents(evs, entries, e.opt.Clock())
			}
		}
	}
	if applied {
		close(e.quoteSeen)
		e.quoteSeen = make(chan struct{})
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
	return e.wait(context.Background(), t)
}
