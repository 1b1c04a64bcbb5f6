package mt5_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	inferencev1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	"github.com/kairos-mt5/kairos/go/execution/internal/svctest"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// A signal as the inference server publishes it, for the bar at timeMsc, with a policy that buys on
// a strong up edge and holds otherwise.
func publishSignal(t *testing.T, r *rig, timeMsc int64, up float32) {
	t.Helper()
	sig := &inferencev1.Signal{Symbol: "EURUSD", TimeMsc: timeMsc, Direction: inferencev1.Direction_DIRECTION_UP,
		Outputs: []float32{0.1, 0.9 - up, up}, ModelName: "kairos-eurusd", ModelVersion: "7",
		Policy: &inferencev1.DecisionPolicy{EntryEdge: 0.3, MoveUp: 1, MoveDown: 1, MinHoldBars: 1, MaxLots: 0.10}}
	data, _ := proto.Marshal(sig)
	if err := r.s.NC.Publish("kairos.signal.EURUSD", data); err != nil {
		t.Fatal(err)
	}
}

// ADR 0095: a bridge in Strategy Tester lockstep learns of every decision, after the command the
// decision sent; the engine runs on the data's time (--clock=market).
func TestLockstepBridgeLearnsEveryDecisionAfterItsCommand(t *testing.T) {
	r := newRig(t, "--clock", "market", "--signal-max-age", "0")
	r.peer.Lockstep = true
	r.connect(t)
	ticks := testutil.EURUSDTicks(t, 20)
	bar := ticks[len(ticks)-1].TimeMsc
	publishSignal(t, r, bar, 0.8) // enters: an order
	testkit.WaitFor(t, "the first decision", 10*time.Second, func() bool { return len(r.peer.Decisions()) == 1 })
	publishSignal(t, r, bar+60_000, 0.8) // already long: holds
	testkit.WaitFor(t, "the second decision", 10*time.Second, func() bool { return len(r.peer.Decisions()) == 2 })

	d := r.peer.Decisions()
	if d[0].GetSymbol() != "EURUSD" || d[0].GetTimeMsc() != bar || d[0].GetOutcome() != "order" || d[0].GetCommands() != 1 {
		t.Fatalf("first decision %v: want EURUSD at %d, order, 1 command", d[0], bar)
	}
	if d[1].GetTimeMsc() != bar+60_000 || d[1].GetOutcome() != "hold" || d[1].GetCommands() != 0 {
		t.Fatalf("second decision %v: want hold, no command", d[1])
	}
	log := r.peer.Log()
	if len(log) != 3 || !strings.HasPrefix(log[0], "command:sig-EURUSD-") || log[1] != "decision:order" || log[2] != "decision:hold" {
		t.Fatalf("frames %v: want the order command before its decision", log)
	}
	if !strings.Contains(r.s.Metrics(), `kairos_execution_tester_decisions_total{outcome="order"} 1`) {
		t.Fatal("kairos_execution_tester_decisions_total does not count the decision")
	}
	// The order carries the data's time (2020), not the machine's.
	o := r.waitStatus(t, strings.TrimPrefix(log[0], "command:"), execv1.OrderStatus_ORDER_STATUS_FILLED)
	if o.GetCreatedTimeUs() < ticks[0].TimeMsc*1000 || o.GetCreatedTimeUs() > (bar+60_000)*1000 {
		t.Fatalf("order created at %d µs: want within the data's time [%d, %d] (--clock=market)", o.GetCreatedTimeUs(), ticks[0].TimeMsc*1000, (bar+60_000)*1000)
	}
}

// A live bridge is never told: lockstep is only for a bridge that asked for it.
func TestLiveBridgeGetsNoTesterDecisions(t *testing.T) {
	r := newRig(t, "--signal-max-age", "0")
	r.connect(t)
	ticks := testutil.EURUSDTicks(t, 20)
	publishSignal(t, r, ticks[len(ticks)-1].TimeMsc, 0.8)
	ctx, cancel := context.WithTimeout(svctest.Authed(t), 10*time.Second)
	defer cancel()
	testkit.WaitFor(t, "the signal's order filled", 10*time.Second, func() bool {
		l, err := r.s.Client.ListOrders(ctx, &execv1.ListOrdersRequest{Symbol: "EURUSD", Statuses: []execv1.OrderStatus{execv1.OrderStatus_ORDER_STATUS_FILLED}})
		return err == nil && len(l.GetOrders()) == 1
	})
	time.Sleep(200 * time.Millisecond) // a decision would follow the command at once
	if d := r.peer.Decisions(); len(d) != 0 {
		t.Fatalf("a live bridge got tester decisions: %v", d)
	}
}
