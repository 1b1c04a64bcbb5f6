package paper

import (
	"testing"

	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

var d = decimal.MustParse

func newVenue() *Venue {
	v := New(Config{SlippagePoints: 1, SlippagePointsPerLot: d("0.5"), CommissionPerLot: d("3.50"), StartingBalance: d("100000"), Currency: "USD", IDPrefix: "T"},
		config.DefaultInstruments())
	v.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.12000"), Ask: d("1.12002"), TimeUS: 1})
	return v
}

func order(id string, side fsm.Side, typ fsm.Type, tif fsm.TimeInForce, qty, price, trigger string) *fsm.Order {
	o := &fsm.Order{ClientOrderID: id, Symbol: "EURUSD", Side: side, Type: typ, TIF: tif, Quantity: d(qty), Status: fsm.Submitted}
	if price != "" {
		o.Price = d(price)
	}
	if trigger != "" {
		o.TriggerPrice = d(trigger)
	}
	return o
}

func kinds(evs []venue.Event) []venue.EventKind {
	var out []venue.EventKind
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func place(t *testing.T, v *Venue, o *fsm.Order) []venue.Event {
	t.Helper()
	evs, err := v.Send(v.Request(venue.Place, o), o)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestMarketOrdersPayTheSpreadAndSlippage(t *testing.T) {
	cases := []struct {
		side      fsm.Side
		qty, want string
	}{
		{fsm.Buy, "0.10", "1.12004"},  // ask + 1 point + ceil(0.05) = 1 point
		{fsm.Buy, "4.00", "1.12005"},  // ask + 1 + 2 points of size impact
		{fsm.Sell, "0.10", "1.11998"}, // bid - 2 points
	}
	for _, c := range cases {
		v := newVenue()
		evs := place(t, v, order("m", c.side, fsm.Market, fsm.IOC, c.qty, "", ""))
		if len(evs) != 2 || evs[0].Kind != venue.Accepted || evs[1].Kind != venue.Filled {
			t.Fatalf("%v %s: events %v", c.side, c.qty, kinds(evs))
		}
		f := evs[1].Fill
		if !f.Price.Equal(d(c.want)) || !f.Quantity.Equal(d(c.qty)) || !f.Commission.Equal(d(c.qty).MulRound(d("3.50"), 2)) {
			t.Fatalf("%v %s: fill %+v, want price %s", c.side, c.qty, f, c.want)
		}
	}
}

func TestMarketOrderWithoutAQuoteIsRejected(t *testing.T) {
	v := newVenue()
	o := order("m", fsm.Buy, fsm.Market, fsm.IOC, "0.10", "", "")
	o.Symbol = "GBPUSD"
	if evs := place(t, v, o); len(evs) != 1 || evs[0].Kind != venue.Rejected {
		t.Fatalf("events %v", kinds(evs))
	}
}

func TestLimitOrdersRestUntilTheQuoteReachesThem(t *testing.T) {
	v := newVenue()
	o := order("l", fsm.Buy, fsm.Limit, fsm.GTC, "0.10", "1.11990", "")
	if evs := place(t, v, o); len(evs) != 1 || evs[0].Kind != venue.Accepted || v.Resting() != 1 {
		t.Fatalf("events %v resting %d", kinds(evs), v.Resting())
	}
	if evs := v.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.11990"), Ask: d("1.11991"), TimeUS: 2}); len(evs) != 0 {
		t.Fatalf("filled above the limit: %v", kinds(evs))
	}
	evs := v.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.11985"), Ask: d("1.11988"), TimeUS: 3})
	if len(evs) != 1 || evs[0].Kind != venue.Filled || !evs[0].Fill.Price.Equal(d("1.11988")) || v.Resting() != 0 {
		t.Fatalf("events %v", evs)
	}
}

func TestMarketableLimitFillsAtTheTouch(t *testing.T) {
	v := newVenue()
	evs := place(t, v, order("l", fsm.Sell, fsm.Limit, fsm.GTC, "0.10", "1.11950", ""))
	if len(evs) != 2 || !evs[1].Fill.Price.Equal(d("1.12000")) {
		t.Fatalf("events %v", evs)
	}
}

func TestIOCAndFOKThatCannotTradeAreCanceled(t *testing.T) {
	for _, tif := range []fsm.TimeInForce{fsm.IOC, fsm.FOK} {
		v := newVenue()
		if evs := place(t, v, order("i", fsm.Buy, fsm.Limit, tif, "0.10", "1.11000", "")); len(evs) != 2 || evs[1].Kind != venue.Canceled || v.Resting() != 0 {
			t.Fatalf("tif %d: events %v", tif, kinds(evs))
		}
	}
}

func TestStopOrdersTriggerThenFill(t *testing.T) {
	v := newVenue()
	place(t, v, order("s", fsm.Buy, fsm.StopMarket, fsm.GTC, "0.10", "", "1.12010"))
	if evs := v.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.12005"), Ask: d("1.12009"), TimeUS: 2}); len(evs) != 0 {
		t.Fatalf("triggered early: %v", kinds(evs))
	}
	evs := v.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.12008"), Ask: d("1.12010"), TimeUS: 3})
	if got := kinds(evs); len(got) != 2 || got[0] != venue.Triggered || got[1] != venue.Filled || !evs[1].Fill.Price.Equal(d("1.12012")) {
		t.Fatalf("events %v", evs)
	}
	// A stop-limit triggers, then rests as a limit until the price comes back.
	v = newVenue()
	place(t, v, order("sl", fsm.Sell, fsm.StopLimit, fsm.GTC, "0.10", "1.11995", "1.11990"))
	evs = v.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.11990"), Ask: d("1.11992"), TimeUS: 2})
	if got := kinds(evs); len(got) != 1 || got[0] != venue.Triggered || v.Resting() != 1 {
		t.Fatalf("stop-limit events %v", got)
	}
	evs = v.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.11996"), Ask: d("1.11998"), TimeUS: 3})
	if got := kinds(evs); len(got) != 1 || got[0] != venue.Filled {
		t.Fatalf("stop-limit fill %v", got)
	}
}

func TestGTDOrdersExpireAndCancelsNeedAWorkingOrder(t *testing.T) {
	v := newVenue()
	o := order("g", fsm.Buy, fsm.Limit, fsm.GTD, "0.10", "1.11000", "")
	o.ExpireTimeUS = 100
	place(t, v, o)
	if evs := v.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.12000"), Ask: d("1.12002"), TimeUS: 100}); len(evs) != 1 || evs[0].Kind != venue.Expired {
		t.Fatalf("events %v", kinds(evs))
	}
	evs, _ := v.Send(v.Request(venue.Cancel, o), o)
	if len(evs) != 1 || evs[0].Kind != venue.CancelRejected {
		t.Fatalf("cancel of an expired order: %v", kinds(evs))
	}
}

func TestSimulatedAccountMarksPositionsToMarket(t *testing.T) {
	v := newVenue()
	insts := config.DefaultInstruments()
	book := portfolio.NewBook()
	book.ApplyFill(&insts[0], d("1.00"), d("1.11900"), d("3.50"), 1)
	q := market.Quote{Symbol: "EURUSD", Bid: d("1.12000"), Ask: d("1.12002")}
	a := v.Account(book, func(string) (market.Quote, bool) { return q, true }, func(s string) (*market.Instrument, bool) { return &insts[0], true }, 5)
	// balance 100000 - 3.50; equity + 100.00 unrealized; margin 1% of 1 lot at the mid 1.120010.
	if !a.Balance.Equal(d("99996.50")) || !a.Equity.Equal(d("100096.50")) || !a.Margin.Equal(d("1120.01")) || !a.FreeMargin.Equal(d("98976.49")) {
		t.Fatalf("account %+v", a)
	}
}
