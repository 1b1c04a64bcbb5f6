package paper

import (
	"fmt"
	"testing"

	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

func quote(bid, ask string) market.Quote {
	return market.Quote{Symbol: "EURUSD", Bid: d(bid), Ask: d(ask), TimeUS: 2}
}

// TestStopsCloseTheWholePositionWhenAQuoteTouchesThem: a long's stops are worked at the bid, a
// short's at the ask; a stop loss fills as a stop order (touch less the slippage), a take profit
// at the touch.
func TestStopsCloseTheWholePositionWhenAQuoteTouchesThem(t *testing.T) {
	cases := []struct {
		name            string
		net, sl, tp     string
		bid, ask        string
		wantID          string // prefix; "" = nothing happens
		wantSide        fsm.Side
		wantQty, wantPx string
	}{
		{"LongStopLossTouched_SellsAtTheBidLessSlippage", "0.10", "1.11000", "", "1.11000", "1.11002", "sl:", fsm.Sell, "0.10", "1.10998"},
		{"LongStopLossJumpedOver_SellsAtTheBidLessSlippage", "0.30", "1.11000", "", "1.10900", "1.10902", "sl:", fsm.Sell, "0.30", "1.10898"},
		{"LongTakeProfitTouched_SellsAtTheBid", "0.10", "", "1.13000", "1.13001", "1.13003", "tp:", fsm.Sell, "0.10", "1.13001"},
		{"LongBetweenItsStops_StaysOpen", "0.10", "1.11000", "1.13000", "1.12000", "1.12002", "", 0, "", ""},
		{"ShortStopLossTouched_BuysAtTheAskPlusSlippage", "-0.20", "1.12100", "", "1.12098", "1.12100", "sl:", fsm.Buy, "0.20", "1.12102"},
		{"ShortTakeProfitTouched_BuysAtTheAsk", "-0.20", "", "1.11000", "1.10990", "1.10995", "tp:", fsm.Buy, "0.20", "1.10995"},
		{"ShortBidAtItsStopLoss_StaysOpen", "-0.20", "1.12100", "", "1.12100", "1.12099", "", 0, "", ""}, // a short closes at the ask
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := newVenue()
			p := venue.Protection{Symbol: "EURUSD", Net: d(c.net)}
			if c.sl != "" {
				p.StopLoss = d(c.sl)
			}
			if c.tp != "" {
				p.TakeProfit = d(c.tp)
			}
			v.WatchPosition(p)

			evs := v.OnQuote(quote(c.bid, c.ask))

			if c.wantID == "" {
				if len(evs) != 0 {
					t.Fatalf("events %v, want none", kinds(evs))
				}
				return
			}
			if len(evs) != 1 || evs[0].Kind != venue.ProtectiveFill {
				t.Fatalf("events %v, want one protective fill", kinds(evs))
			}
			e := evs[0]
			if e.ClientOrderID[:3] != c.wantID || len(e.ClientOrderID) > 31 || e.Symbol != "EURUSD" || e.Side != c.wantSide ||
				!e.Fill.Quantity.Equal(d(c.wantQty)) || !e.Fill.Price.Equal(d(c.wantPx)) || e.Fill.TradeID == "" ||
				!e.Fill.Commission.Equal(d(c.wantQty).MulRound(d("3.50"), 2)) {
				t.Fatalf("event %+v, want %s %v %s at %s", e, c.wantID, c.wantSide, c.wantQty, c.wantPx)
			}
			// The position is closed: the next quote beyond the stop does nothing until the
			// engine says what is left.
			if more := v.OnQuote(quote(c.bid, c.ask)); len(more) != 0 {
				t.Fatalf("a second quote fired again: %v", kinds(more))
			}
		})
	}
}

func TestAFlatOrUnprotectedPositionIsNotWatched(t *testing.T) {
	for _, p := range []venue.Protection{
		{Symbol: "EURUSD", Net: d("0"), StopLoss: d("1.2")},
		{Symbol: "EURUSD", Net: d("0.10")},
	} {
		v := newVenue()
		v.WatchPosition(venue.Protection{Symbol: "EURUSD", Net: d("0.10"), StopLoss: d("1.11")})
		v.WatchPosition(p)
		if evs := v.OnQuote(quote("1.10000", "1.10002")); len(evs) != 0 {
			t.Fatalf("%+v: events %v", p, kinds(evs))
		}
	}
}

func TestAModificationOfARestingOrderIsConfirmedAndWorkedFromTheNextQuote(t *testing.T) {
	v := newVenue()
	o := order("l", fsm.Buy, fsm.Limit, fsm.GTC, "0.10", "1.11000", "")
	place(t, v, o)
	a := o.AmendOf()
	a.Price = d("1.12002")
	o.Pending = &a

	evs, err := v.Send(v.Request(venue.Modify, o), o)
	if err != nil || fmt.Sprint(kinds(evs)) != fmt.Sprint([]venue.EventKind{venue.Updated}) {
		t.Fatalf("modify: %v %v", kinds(evs), err)
	}
	o.ApplyAmend() // what the engine does on Updated
	evs = v.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.12000"), Ask: d("1.12002"), TimeUS: 3})
	if len(evs) != 1 || evs[0].Kind != venue.Filled || !evs[0].Fill.Price.Equal(d("1.12002")) {
		t.Fatalf("after the modification: %v", kinds(evs))
	}
	// An order that is not resting any more cannot be modified.
	o.Pending = &a
	if evs, _ := v.Send(v.Request(venue.Modify, o), o); len(evs) != 1 || evs[0].Kind != venue.UpdateRejected {
		t.Fatalf("modify of a filled order: %v", kinds(evs))
	}
	if !v.AmendsQuantity() {
		t.Fatal("the paper venue amends quantities")
	}
}
