package portfolio

import (
	"testing"

	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/market"
)

var d = decimal.MustParse

func eurusd() *market.Instrument {
	return &market.Instrument{Symbol: "EURUSD", Digits: 5, VolumeStep: d("0.01"), VolumeMin: d("0.01"), ContractSize: d("100000"), MarginRate: d("0.01"), QuoteToAccount: d("1")}
}

func TestPositionsAndRealizedPnL(t *testing.T) {
	type fill struct{ qty, px, comm string }
	cases := []struct {
		name               string
		fills              []fill
		net, avg, realized string
	}{
		{"open long", []fill{{"1.00", "1.10000", "0"}}, "1.00", "1.10000", "0.00"},
		{"add at a new price averages", []fill{{"1.00", "1.10000", "0"}, {"1.00", "1.10010", "0"}}, "2.00", "1.10005", "0.00"},
		{"close a long at a profit", []fill{{"1.00", "1.10000", "0"}, {"-1.00", "1.10100", "0"}}, "0.00", "0", "100.00"},
		{"close a short at a loss", []fill{{"-0.50", "1.10000", "0"}, {"0.50", "1.10040", "0"}}, "0.00", "0", "-20.00"},
		{"partial close keeps the average", []fill{{"2.00", "1.10000", "0"}, {"-0.50", "1.10020", "0"}}, "1.50", "1.10000", "10.00"},
		{"flip takes the fill price", []fill{{"1.00", "1.10000", "0"}, {"-3.00", "1.09900", "0"}}, "-2.00", "1.09900", "-100.00"},
		{"commission is a cost", []fill{{"1.00", "1.10000", "3.50"}, {"-1.00", "1.10000", "3.50"}}, "0.00", "0", "-7.00"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := NewBook()
			for i, f := range c.fills {
				b.ApplyFill(eurusd(), d(f.qty), d(f.px), d(f.comm), int64(i))
			}
			p := b.Get("EURUSD")
			if !p.Net.Equal(d(c.net)) || !p.AvgPrice.Equal(d(c.avg)) || !p.Realized.Equal(d(c.realized)) || !b.Realized().Equal(d(c.realized)) {
				t.Fatalf("net %s avg %s realized %s (book %s), want %s %s %s", p.Net, p.AvgPrice, p.Realized, b.Realized(), c.net, c.avg, c.realized)
			}
		})
	}
}

func TestUnrealizedMarksLongsAtTheBidAndShortsAtTheAsk(t *testing.T) {
	q := market.Quote{Symbol: "EURUSD", Bid: d("1.10100"), Ask: d("1.10102")}
	long := Unrealized(eurusd(), Position{Symbol: "EURUSD", Net: d("1.00"), AvgPrice: d("1.10000")}, q)
	short := Unrealized(eurusd(), Position{Symbol: "EURUSD", Net: d("-1.00"), AvgPrice: d("1.10000")}, q)
	if !long.Equal(d("100")) || !short.Equal(d("-102")) {
		t.Fatalf("long %s short %s", long, short)
	}
}
