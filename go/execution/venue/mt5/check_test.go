package mt5_test

import (
	"strings"
	"testing"
	"time"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
)

// The EA's start-up self-check arrives as a TerminalCheck frame: every failing check shows as
// kairos_execution_terminal_check_failed{check} = 1 (all 0 before the first report and once the
// trader fixed them), and the frame is acknowledged like any other.
func TestTheEasSelfCheckIsSurfacedInTheMetrics(t *testing.T) {
	r := newRig(t)
	r.connect(t)
	if m := r.s.Metrics(); !strings.Contains(m, `kairos_execution_terminal_check_failed{check="terminal_algo_trading"} 0`) ||
		!strings.Contains(m, "kairos_execution_terminal_check_time_seconds 0") {
		t.Fatal("the self-check metrics are not exported at 0 before the first report")
	}

	bad := &bridgev1.TerminalCheck{DllsAllowed: true, TerminalTradeAllowed: false, EaTradeAllowed: true, AccountTradeAllowed: true,
		AccountExpertAllowed: true, SymbolsChecked: 2, SymbolsFailed: 1, TimeMsc: 1_764_900_000_000,
		Problems: "Algo Trading is off in the terminal: press the Algo Trading button\nXAUUSD: no filling mode"}
	if err := r.peer.Send(&bridgev1.Frame{Body: &bridgev1.Frame_TerminalCheck{TerminalCheck: bad}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the failing checks in the metrics", func() bool {
		m := r.s.Metrics()
		return strings.Contains(m, `kairos_execution_terminal_check_failed{check="terminal_algo_trading"} 1`) &&
			strings.Contains(m, `kairos_execution_terminal_check_failed{check="symbols"} 1`) &&
			strings.Contains(m, `kairos_execution_terminal_check_failed{check="ea_algo_trading"} 0`) &&
			strings.Contains(m, "kairos_execution_terminal_check_time_seconds 1.7649e+09")
	})

	good := &bridgev1.TerminalCheck{DllsAllowed: true, TerminalTradeAllowed: true, EaTradeAllowed: true, AccountTradeAllowed: true,
		AccountExpertAllowed: true, SymbolsChecked: 2, TimeMsc: 1_764_900_060_000}
	if err := r.peer.Send(&bridgev1.Frame{Body: &bridgev1.Frame_TerminalCheck{TerminalCheck: good}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the fixed checks back at 0", func() bool {
		m := r.s.Metrics()
		return strings.Contains(m, `kairos_execution_terminal_check_failed{check="terminal_algo_trading"} 0`) &&
			strings.Contains(m, `kairos_execution_terminal_check_failed{check="symbols"} 0`)
	})
	testutil.Eventually(t, 5*time.Second, "the service to acknowledge every frame", func() bool { return r.peer.Unacked() == 0 })
}
