package risk

import (
	"testing"

	"github.com/kairos-mt5/kairos/go/execution/fsm"
)

// BenchmarkCheckAllRules is one pre-trade check of a limit order that passes every rule, with
// positions in other symbols so the gross-exposure rule iterates. Target: p99 ≤ 2 µs (see
// cmd/kairos-execution-bench for the percentiles).
func BenchmarkCheckAllRules(b *testing.B) {
	v := newEnv(allOn())
	v.long("1.00")
	inst, _ := v.e.Instrument("GBPUSD")
	v.book.ApplyFill(inst, d("-2.00"), d("1.30000"), d("0"), t0)
	v.e.limits.AllowedSymbols = nil
	req := &Request{ClientOrderID: "b", Symbol: "EURUSD", Side: fsm.Buy, Type: fsm.Limit, Quantity: d("0.10"), Price: d("1.11990"), StrategyID: "s"}
	v.e.limits.SubmitRate, v.e.limits.MessageRate = RateLimit{1 << 20, 1000}, RateLimit{1 << 20, 1000}
	v.e.submits, v.e.messages = newThrottle(v.e.limits.SubmitRate), newThrottle(v.e.limits.MessageRate)
	b.ReportAllocs()
	for b.Loop() {
		if den := v.e.Check(req, v.now); den != nil {
			b.Fatal(den)
		}
	}
}
