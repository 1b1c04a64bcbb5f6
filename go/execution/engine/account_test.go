package engine_test

import (
	"strings"
	"testing"
	"time"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

func TestOnAccount_LossBreakers(t *testing.T) {
	limits := risk.Limits{MaxDailyLoss: dec("100"), DailyLossState: risk.Reducing, MaxDrawdown: dec("300"), DrawdownState: risk.Halted}
	cases := []struct {
		name       string
		equities   []string // successive snapshots, one second apart, within one UTC day
		wantState  risk.State
		wantReason string // in the journaled state change; "" for none
	}{
		{"WithinTheLimits_NothingTrips", []string{"10000", "9950", "10010"}, risk.Active, ""},
		{"DailyLossReached_TripsToReducing", []string{"10000", "9900"}, risk.Reducing, "DAILY_LOSS breaker tripped"},
		{"DrawdownReached_TripsToHalted", []string{"10000", "10200", "9890"}, risk.Halted, "DRAWDOWN breaker tripped"},
		{"AnInvalidSnapshot_IsIgnoredByTheBreakers", []string{"10000", "invalid"}, risk.Active, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := started(t, withLimits(limits))
			seq := h.lastSeq()

			for _, eq := range c.equities {
				a := risk.Account{TimeUS: h.clock.Now(), Valid: eq != "invalid"}
				if a.Valid {
					a.Balance, a.Equity, a.FreeMargin = dec("10000"), dec(eq), dec(eq)
				}
				if err := h.eng.OnAccount(a); err != nil {
					t.Fatal(err)
				}
				h.clock.Advance(time.Second)
			}

			if s, _ := h.eng.State(); s != c.wantState {
				t.Fatalf("state %v, want %v", s, c.wantState)
			}
			reps := h.reportsAfter(seq)
			if c.wantReason == "" {
				if len(reps) != 0 {
					t.Fatalf("journaled %v, want nothing", reps)
				}
				return
			}
			if len(reps) != 1 || reps[0].GetType() != execv1.ReportType_REPORT_TYPE_TRADING_STATE_CHANGED ||
				risk.State(reps[0].GetTradingState()) != c.wantState || !strings.Contains(reps[0].GetReason(), c.wantReason) {
				t.Fatalf("journaled %v, want one state change to %v naming %q", reps, c.wantState, c.wantReason)
			}
		})
	}
}
