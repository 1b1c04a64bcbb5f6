package engine_test

import (
	"testing"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/venue/paper"
)

// ADR 0095: the quote a signal carries counts only when it is newer than the latest quote, so a
// decision under the market clock sees its own tick's quote and never goes back in time.
func TestQuoteIfNewerNeverReplacesANewerQuote(t *testing.T) {
	h := started(t)
	at := func(us int64, bid, ask string) market.Quote {
		return market.Quote{Symbol: "EURUSD", Bid: dec(bid), Ask: dec(ask), TimeUS: us, MarketTimeUS: us}
	}
	latest := func() market.Quote {
		q, ok := h.risk.Quote("EURUSD")
		if !ok {
			t.Fatal("no quote")
		}
		return q
	}
	if err := h.eng.OnQuoteIfNewer(at(1_000, "1.10000", "1.10010")); err != nil {
		t.Fatal(err)
	}
	if q := latest(); q.MarketTimeUS != 1_000 {
		t.Fatalf("the first quote was not recorded: %+v", q)
	}
	// The collector's quote of a later tick is in: the signal's older one does not replace it.
	if err := h.eng.OnQuotes([]market.Quote{at(3_000, "1.10030", "1.10040")}); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.OnQuoteIfNewer(at(2_000, "1.10020", "1.10030")); err != nil {
		t.Fatal(err)
	}
	if q := latest(); q.MarketTimeUS != 3_000 || q.Bid.String() != "1.10030" {
		t.Fatalf("an older quote replaced a newer one: %+v", q)
	}
	// The signal's quote is the newest: it counts.
	if err := h.eng.OnQuoteIfNewer(at(4_000, "1.10040", "1.10050")); err != nil {
		t.Fatal(err)
	}
	if q := latest(); q.MarketTimeUS != 4_000 || q.Ask.String() != "1.10050" {
		t.Fatalf("the newer quote was not recorded: %+v", q)
	}
}

// ADR 0103: a signal can reach execution before the collector's tick batch that holds its bar's
// closing tick. The batch's ticks up to the signal's market time were in the market before the
// decision: they must not move the quote back, nor let the paper venue work the order just decided
// on them (here an older tick below the new position's stop would stop it out). The first later
// tick counts again, and from then on the batch path is as before (ticks of the same millisecond
// all count).
func TestOnQuotes_WhenASignalOvertookTheBatch_ThenTheBarsTicksDoNotMoveTheQuoteBack(t *testing.T) {
	pv := paper.New(paper.Config{SlippagePoints: 1, CommissionPerLot: dec("3.50"), StartingBalance: dec("100000"), Currency: "USD", IDPrefix: "P"}, instruments)
	h := started(t, withVenue(pv, &fakeVenue{}))
	at := func(us int64, bid, ask string) market.Quote {
		return market.Quote{Symbol: "EURUSD", Bid: dec(bid), Ask: dec(ask), TimeUS: h.clock.Now(), MarketTimeUS: us}
	}
	latest := func() market.Quote {
		t.Helper()
		q, ok := h.risk.Quote("EURUSD")
		if !ok {
			t.Fatal("no quote")
		}
		return q
	}
	// The collector's batch up to the previous bar is in; the signal brings the closing tick (3 ms).
	if err := h.eng.OnQuotes([]market.Quote{at(1_000, "1.10000", "1.10010")}); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.OnQuoteIfNewer(at(3_000, "1.10030", "1.10040")); err != nil {
		t.Fatal(err)
	}
	o := h.mustSubmit(withStops(marketOrder("o1", "buy", "0.10"), "", "", "0.00050"))
	if o.GetStatus() != execv1.OrderStatus_ORDER_STATUS_FILLED {
		t.Fatalf("entry %v, want FILLED", o.GetStatus())
	}

	// The overtaken batch: the bar's older ticks (one far below the stop), its closing tick again,
	// and the first tick of the next bar.
	err := h.eng.OnQuotes([]market.Quote{
		at(2_000, "1.09000", "1.09010"),
		at(3_000, "1.10030", "1.10040"),
		at(60_000, "1.10050", "1.10060"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := h.position("EURUSD"); !same(p.GetNetQuantity(), "0.10") {
		t.Fatalf("the position was worked on a tick before the decision: %s", show(p.GetNetQuantity()))
	}
	if q := latest(); q.MarketTimeUS != 60_000 || q.Bid.String() != "1.10050" {
		t.Fatalf("latest quote %+v, want the next bar's tick", q)
	}
	if got := metric(h.m.QuotesOvertaken); got != 2 {
		t.Fatalf("overtaken ticks counted %v, want 2", got)
	}

	// No signal ahead any more: a tick of the same millisecond counts as before.
	if err := h.eng.OnQuotes([]market.Quote{at(60_000, "1.10055", "1.10065")}); err != nil {
		t.Fatal(err)
	}
	if q := latest(); q.Bid.String() != "1.10055" {
		t.Fatalf("a same-millisecond tick without a signal ahead was dropped: %+v", q)
	}
}
