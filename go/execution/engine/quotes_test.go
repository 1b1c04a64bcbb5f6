package engine_test

import (
	"testing"

	"github.com/kairos-mt5/kairos/go/execution/market"
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
