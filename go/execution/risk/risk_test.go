package risk

import (
	"fmt"
	"testing"

	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
)

var d = decimal.MustParse

const t0 = int64(1_700_000_000_000_000) // test clock, µs

func instruments() []market.Instrument {
	mk := func(s string) market.Instrument {
		return market.Instrument{Symbol: s, Digits: 5, VolumeStep: d("0.01"), VolumeMin: d("0.01"), ContractSize: d("100000"),
			MarginRate: d("0.01"), QuoteToAccount: d("1")}
	}
	return []market.Instrument{mk("EURUSD"), mk("GBPUSD")}
}

// allOn is a configuration with every rule enabled, far enough from the base order that only the
// rule a case tightens can deny it.
func allOn() Limits {
	return Limits{
		AllowedSymbols: []string{"EURUSD"}, MaxOrderQuantity: d("5"), MaxOrderNotional: d("1000000"),
		MaxPositionQuantity: d("10"), MaxGrossExposure: d("5000000"), MaxOpenOrders: 50, PriceCollarBps: 100,
		MaxQuoteAgeMS: 5000, SubmitRate: RateLimit{100, 1000}, MessageRate: RateLimit{200, 1000}, DuplicateIntentWindowMS: 500,
		MaxDailyLoss: d("5000"), DailyLossState: Halted, MaxDrawdown: d("8000"), DrawdownState: Reducing, MinFreeMargin: d("1000"),
	}
}

type env struct {
	e    *Engine
	book *portfolio.Book
	req  Request
	now  int64
}

func newEnv(l Limits) *env {
	book := portfolio.NewBook()
	e := New(l, instruments(), book)
	e.SetReconciled(true)
	e.SetState(Active)
	e.OnQuote(market.Quote{Symbol: "EURUSD", Bid: d("1.12000"), Ask: d("1.12002"), TimeUS: t0})
	e.OnQuote(market.Quote{Symbol: "GBPUSD", Bid: d("1.30000"), Ask: d("1.30003"), TimeUS: t0})
	e.OnAccount(Account{Balance: d("100000"), Equity: d("100000"), FreeMargin: d("100000"), TimeUS: t0, Valid: true})
	return &env{e: e, book: book, now: t0 + 1000, req: Request{ClientOrderID: "c-new", Symbol: "EURUSD", Side: fsm.Buy, Type: fsm.Market,
		Quantity: d("1.00"), StrategyID: "s1"}}
}

func (v *env) long(qty string) {
	inst, _ := v.e.Instrument("EURUSD")
	v.book.ApplyFill(inst, d(qty), d("1.10000"), decimal.Zero, t0)
}

func (v *env) working(id string, side fsm.Side, qty string) {
	v.e.Track(&fsm.Order{ClientOrderID: id, Symbol: "EURUSD", Side: side, Quantity: d(qty), Status: fsm.Accepted})
}

func TestEveryRuleOnBothSidesOfItsLimit(t *testing.T) {
	cases := []struct {
		name  string
		setup func(v *env)
		want  Reason
	}{
		{"base order passes with every rule on", func(v *env) {}, ReasonUnspecified},
		{"halted denies", func(v *env) { v.e.SetState(Halted) }, ReasonTradingHalted},
		{"reducing denies an increase", func(v *env) { v.long("1.00"); v.e.SetState(Reducing) }, ReasonTradingReducing},
		{"reducing allows a reduction", func(v *env) {
			v.long("1.00")
			v.e.SetState(Reducing)
			v.req.Side = fsm.Sell
			v.req.Quantity = d("0.50")
		}, ReasonUnspecified},
		{"reducing denies a flip", func(v *env) {
			v.long("1.00")
			v.e.SetState(Reducing)
			v.req.Side = fsm.Sell
			v.req.Quantity = d("1.50")
		}, ReasonTradingReducing},
		{"flatten passes halted when it reduces", func(v *env) {
			v.long("1.00")
			v.e.SetState(Halted)
			v.req.Side, v.req.Flatten, v.req.ReduceOnly = fsm.Sell, true, true
		}, ReasonUnspecified},
		{"flatten cannot open while halted", func(v *env) { v.e.SetState(Halted); v.req.Flatten = true }, ReasonTradingHalted},
		{"reduce-only denies an increase", func(v *env) { v.req.ReduceOnly = true }, ReasonReduceOnly},
		{"reduce-only allows a reduction", func(v *env) { v.long("1.00"); v.req.ReduceOnly, v.req.Side = true, fsm.Sell }, ReasonUnspecified},
		{"symbol off the allow-list", func(v *env) { v.req.Symbol = "GBPUSD" }, ReasonSymbolNotAllowed},
		{"unconfigured symbol", func(v *env) { v.req.Symbol = "XAUUSD" }, ReasonSymbolNotAllowed},
		{"quantity off the volume step", func(v *env) { v.req.Quantity = d("0.015") }, ReasonInvalidPrecision},
		{"price beyond the symbol's digits", func(v *env) { v.req.Type, v.req.Price = fsm.Limit, d("1.120001") }, ReasonInvalidPrecision},
		{"price at the symbol's digits", func(v *env) { v.req.Type, v.req.Price = fsm.Limit, d("1.11990") }, ReasonUnspecified},
		{"zero quantity", func(v *env) { v.req.Quantity = d("0") }, ReasonInvalidQuantityOrPrice},
		{"negative quantity", func(v *env) { v.req.Quantity = d("-1.00") }, ReasonInvalidQuantityOrPrice},
		{"limit without a price", func(v *env) { v.req.Type = fsm.Limit }, ReasonInvalidQuantityOrPrice},
		{"market with a price", func(v *env) { v.req.Price = d("1.1") }, ReasonInvalidQuantityOrPrice},
		{"quantity at max", func(v *env) { v.req.Quantity = d("5.00") }, ReasonUnspecified},
		{"quantity above max", func(v *env) { v.req.Quantity = d("5.01") }, ReasonMaxOrderQuantity},
		{"notional at max", func(v *env) { v.e.limits.MaxOrderNotional = d("112002.00") }, ReasonUnspecified},
		{"notional above max", func(v *env) { v.e.limits.MaxOrderNotional = d("112001.99") }, ReasonMaxOrderNotional},
		{"position at max", func(v *env) { v.long("9.00") }, ReasonUnspecified},
		{"position above max", func(v *env) { v.long("9.01") }, ReasonMaxPosition},
		{"working orders count towards the position", func(v *env) { v.long("8.00"); v.working("w1", fsm.Buy, "1.01") }, ReasonMaxPosition},
		{"working orders on the other side do not", func(v *env) { v.long("8.00"); v.working("w1", fsm.Sell, "3.00") }, ReasonUnspecified},
		{"gross exposure at max", func(v *env) { v.e.limits.MaxGrossExposure = d("112002.00") }, ReasonUnspecified},
		{"gross exposure above max", func(v *env) { v.e.limits.MaxGrossExposure = d("112001.99") }, ReasonMaxGrossExposure},
		{"open orders below max", func(v *env) { v.e.limits.MaxOpenOrders = 2; v.working("w1", fsm.Buy, "0.01") }, ReasonUnspecified},
		{"open orders at max", func(v *env) {
			v.e.limits.MaxOpenOrders = 2
			v.working("w1", fsm.Buy, "0.01")
			v.working("w2", fsm.Buy, "0.01")
		}, ReasonMaxOpenOrders},
		{"limit price inside the collar", func(v *env) { v.req.Type, v.req.Price = fsm.Limit, d("1.13100") }, ReasonUnspecified},
		{"limit price outside the collar", func(v *env) { v.req.Type, v.req.Price = fsm.Limit, d("1.13200") }, ReasonPriceCollar},
		{"stop trigger outside the collar", func(v *env) { v.req.Type, v.req.TriggerPrice = fsm.StopMarket, d("1.10800") }, ReasonPriceCollar},
		{"market order without a quote", func(v *env) { delete(v.e.quotes, "EURUSD") }, ReasonQuoteMissing},
		{"quote younger than the max age", func(v *env) { v.now = t0 + 5_000_000 }, ReasonUnspecified},
		{"quote older than the max age", func(v *env) { v.now = t0 + 5_001_000 }, ReasonQuoteStale},
		{"stale quote does not block a limit order", func(v *env) { v.now = t0 + 60_000_000; v.req.Type, v.req.Price = fsm.Limit, d("1.11990") }, ReasonUnspecified},
		{"submissions at the rate", func(v *env) {
			v.e.limits.SubmitRate = RateLimit{3, 1000}
			v.e.submits = newThrottle(v.e.limits.SubmitRate)
			v.prior(2, v.now-999_000)
		}, ReasonUnspecified},
		{"submissions above the rate", func(v *env) {
			v.e.submits = newThrottle(RateLimit{3, 1000})
			v.e.limits.SubmitRate = RateLimit{3, 1000}
			v.prior(3, v.now-999_000)
		}, ReasonSubmitRate},
		{"submissions outside the window", func(v *env) { v.e.submits = newThrottle(RateLimit{3, 1000}); v.prior(3, v.now-1_000_000) }, ReasonUnspecified},
		{"messages above the rate", func(v *env) {
			v.e.messages = newThrottle(RateLimit{3, 1000})
			for i := 0; i < 3; i++ {
				v.e.OnMessage(v.now - 10)
			}
		}, ReasonMessageRate},
		{"client order id reused", func(v *env) { v.e.RememberClientID("c-new") }, ReasonDuplicateClientOrderID},
		{"same intent inside the window", func(v *env) {
			v.e.Accepted(&Request{ClientOrderID: "c-old", Symbol: "EURUSD", Side: fsm.Buy, Quantity: d("1.0"), StrategyID: "s1"}, v.now-499_000)
		}, ReasonDuplicateIntent},
		{"same intent after the window", func(v *env) {
			v.e.Accepted(&Request{ClientOrderID: "c-old", Symbol: "EURUSD", Side: fsm.Buy, Quantity: d("1.0"), StrategyID: "s1"}, v.now-500_000)
		}, ReasonUnspecified},
		{"another strategy's same order", func(v *env) {
			v.e.Accepted(&Request{ClientOrderID: "c-old", Symbol: "EURUSD", Side: fsm.Buy, Quantity: d("1.0"), StrategyID: "s2"}, v.now-1000)
		}, ReasonUnspecified},
		{"daily loss below the breaker", func(v *env) { v.equity("95000.01") }, ReasonUnspecified},
		{"daily loss at the breaker halts", func(v *env) { v.equity("95000.00") }, ReasonDailyLoss},
		{"drawdown at the breaker reduces", func(v *env) {
			v.e.limits.MaxDailyLoss = d("100000")
			v.equity("108000")
			v.equity("100000")
		}, ReasonDrawdown},
		{"margin leaves the minimum", func(v *env) { v.free("2120.02") }, ReasonUnspecified},
		{"margin below the minimum", func(v *env) { v.free("2120.01") }, ReasonInsufficientMargin},
		{"no account snapshot", func(v *env) { v.e.account.Valid = false }, ReasonInsufficientMargin},
		{"not reconciled", func(v *env) { v.e.SetReconciled(false) }, ReasonNotReconciled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := newEnv(allOn())
			c.setup(v)
			den := v.e.Check(&v.req, v.now)
			got := ReasonUnspecified
			if den != nil {
				got = den.Reason
				if den.Message == "" {
					t.Error("denial without a message")
				}
			}
			if got != c.want {
				t.Fatalf("reason = %s (%v), want %s", got, den, c.want)
			}
		})
	}
}

func (v *env) prior(n int, at int64) {
	for i := 0; i < n; i++ {
		v.e.submits.allow(at)
	}
}

func (v *env) equity(eq string) {
	v.e.OnAccount(Account{Balance: d("100000"), Equity: d(eq), FreeMargin: d(eq), TimeUS: t0, Valid: true})
}

func (v *env) free(f string) {
	v.e.OnAccount(Account{Balance: d("100000"), Equity: d("100000"), FreeMargin: d(f), TimeUS: t0, Valid: true})
}

func TestThrottle_DeniedSubmissionsDoNotCountAndFlattenOrdersAreNeverThrottled(t *testing.T) {
	cases := []struct {
		name    string
		arrange func(v *env)
		req     func(v *env) Request
		want    Reason
	}{
		{
			name: "ABurstOfDenials_LeavesTheBudgetForAGoodOrder",
			arrange: func(v *env) {
				bad := v.req
				bad.Symbol = "GBPUSD" // denied: not on the allow-list
				for i := 0; i < 5; i++ {
					if den := v.e.Check(&bad, v.now); den == nil || den.Reason != ReasonSymbolNotAllowed {
						t.Fatalf("setup: %v", den)
					}
				}
			},
			req:  func(v *env) Request { return v.req },
			want: ReasonUnspecified,
		},
		{
			name:    "AcceptedSubmissions_UseTheBudget",
			arrange: func(v *env) { v.accept(2) },
			req:     func(v *env) Request { return v.req },
			want:    ReasonSubmitRate,
		},
		{
			name:    "AFlattenOrderOverTheBudget_PassesTheThrottle",
			arrange: func(v *env) { v.accept(2); v.long("1.00"); v.e.SetState(Halted) },
			req: func(v *env) Request {
				r := v.req
				r.Side, r.Quantity, r.ReduceOnly, r.Flatten = fsm.Sell, d("1.00"), true, true
				return r
			},
			want: ReasonUnspecified,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := allOn()
			l.SubmitRate = RateLimit{2, 1000}
			l.DuplicateIntentWindowMS = 0
			v := newEnv(l)
			c.arrange(v)
			req := c.req(v)

			den := v.e.Check(&req, v.now)

			if got := reasonOf(den); got != c.want {
				t.Fatalf("check: %v, want %s", den, c.want)
			}
		})
	}
}

// accept passes n submissions of distinct client ids through Check and Accepted.
func (v *env) accept(n int) {
	for i := 0; i < n; i++ {
		r := v.req
		r.ClientOrderID = fmt.Sprintf("acc-%d", i)
		if den := v.e.Check(&r, v.now); den != nil {
			panic(fmt.Sprintf("setup submission %d denied: %v", i, den))
		}
		v.e.Accepted(&r, v.now)
	}
}

func reasonOf(d *Denial) Reason {
	if d == nil {
		return ReasonUnspecified
	}
	return d.Reason
}

func TestBreakersOnlyEscalate(t *testing.T) {
	v := newEnv(allOn())
	v.equity("92000") // drawdown 8000 → REDUCING, daily loss 8000 → HALTED: the stronger wins
	if s, cause := v.e.State(); s != Halted || cause != ReasonDailyLoss {
		t.Fatalf("state %s cause %s, want HALTED by DAILY_LOSS", s, cause)
	}
	v.equity("100000")
	if s, _ := v.e.State(); s != Halted {
		t.Fatalf("recovery un-halted the breaker: %s", s)
	}
}

func TestThrottleIsExactAtTheWindowEdge(t *testing.T) {
	th := newThrottle(RateLimit{MaxCount: 2, WindowMS: 10})
	for i, c := range []struct {
		at   int64
		want bool
	}{{1, true}, {2, true}, {10_000, false}, {10_002, true}, {10_003, false}} {
		if got := th.allow(c.at); got != c.want {
			t.Fatalf("event %d at %d: allow = %v, want %v", i, c.at, got, c.want)
		}
	}
}

func ExampleDenial() {
	v := newEnv(allOn())
	v.req.Quantity = d("6.00")
	fmt.Println(v.e.Check(&v.req, v.now))
	// Output: MAX_ORDER_QUANTITY: quantity 6.00 exceeds max 5
}

// The denial budget counts the denials recorded in a rolling window; past it RecordDenial refuses,
// counting nothing, and says when there is room again. Flatten orders always pass, uncounted.
func TestRecordDenial_CountsUpToTheBudgetPerWindow(t *testing.T) {
	const ms = int64(1000)
	cases := []struct {
		name      string
		limit     RateLimit
		flatten   bool
		at        []int64 // submission times, ms
		wantOK    []bool
		wantRetry int64 // after the last submission, ms (0: none)
	}{
		{name: "WithinTheBudget", limit: RateLimit{3, 1000}, at: []int64{0, 1, 2}, wantOK: []bool{true, true, true}},
		{name: "PastItInOneWindow", limit: RateLimit{2, 1000}, at: []int64{0, 100, 200}, wantOK: []bool{true, true, false}, wantRetry: 800},
		{name: "ARefusalCountsNothing", limit: RateLimit{1, 1000}, at: []int64{0, 500, 999, 1000}, wantOK: []bool{true, false, false, true}},
		{name: "AgainOnceTheWindowPassed", limit: RateLimit{2, 1000}, at: []int64{0, 100, 1000, 1050}, wantOK: []bool{true, true, true, false}, wantRetry: 50},
		{name: "ZeroIsOff", limit: RateLimit{0, 1000}, at: []int64{0, 0, 0, 0}, wantOK: []bool{true, true, true, true}},
		{name: "FlattenOrdersAlwaysPass", limit: RateLimit{1, 1000}, flatten: true, at: []int64{0, 0, 0}, wantOK: []bool{true, true, true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := allOn()
			l.DenialRate = c.limit
			v := newEnv(l)
			req := v.req
			req.Flatten = c.flatten
			base := v.now
			var retry int64
			for i, at := range c.at {
				ok, r := v.e.RecordDenial(&req, base+at*ms)
				if ok != c.wantOK[i] {
					t.Fatalf("denial %d at %d ms: ok %v, want %v", i, at, ok, c.wantOK[i])
				}
				retry = r
			}
			if retry != c.wantRetry*ms {
				t.Fatalf("retry after %d us, want %d ms", retry, c.wantRetry)
			}
		})
	}
}
