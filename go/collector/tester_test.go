package collector

import (
	"testing"
	"time"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/internal/testinfer"
	"github.com/kairos-mt5/kairos/go/testkit"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testerSteps(b *bridgeConn) []*bridgev1.TesterStep {
	var out []*bridgev1.TesterStep
	for _, f := range b.received() {
		if s := f.GetTesterStep(); s != nil {
			out = append(out, s)
		}
	}
	return out
}

func oneTick(seq uint64, t int64) *mdv1.TickBatch {
	return &mdv1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{t}, Bid: []float64{1.12}, Ask: []float64{1.1202}, Sequence: []uint64{seq}}
}

// ADR 0095: a bridge in Strategy Tester lockstep gets a TesterStep for every tick frame, once the
// inference server has answered for it, naming the predictions (decisions) it produced; a live
// bridge gets none. testinfer answers every tick request with one prediction at its last tick's time.
func TestLockstepSessionGetsAStepPerTickFrameAfterInferenceAnswered(t *testing.T) {
	inf, err := testinfer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inf.Stop)
	inf.SetHold(50 * time.Millisecond) // the step must wait for the answer
	cfg := testConfig()
	cfg.InferenceEndpoints = []string{inf.Addr}
	cfg.InferenceFlushInterval = time.Hour // only the step marker sends the ticks
	svc := start(t, cfg)
	testkit.WaitFor(t, "inference link up", 5*time.Second, func() bool { return svc.Link.Owner("EURUSD") != "" })

	br := dialBridge(t, svc.BridgeAddr())
	h := hello(901, 1)
	h.GetHello().Lockstep = true
	br.send(t, h, symbolInfo(2))
	br.welcome(t)
	t0 := int64(1577898000000)
	br.send(t, ticksFrame(3, oneTick(1, t0)))
	testkit.WaitFor(t, "the step of tick 1", 5*time.Second, func() bool { return len(testerSteps(br)) == 1 })
	s := testerSteps(br)[0]
	if s.GetSymbol() != "EURUSD" || s.GetTickSequence() != 1 || len(s.GetDecisionTimeMsc()) != 1 || s.GetDecisionTimeMsc()[0] != t0 {
		t.Fatalf("step %v: want EURUSD tick 1 with the one prediction at %d", s, t0)
	}
	br.send(t, ticksFrame(4, oneTick(2, t0+1000)))
	testkit.WaitFor(t, "the step of tick 2", 5*time.Second, func() bool { return len(testerSteps(br)) == 2 })
	if s := testerSteps(br)[1]; s.GetTickSequence() != 2 || len(s.GetDecisionTimeMsc()) != 1 || s.GetDecisionTimeMsc()[0] != t0+1000 {
		t.Fatalf("step %v: want tick 2 and its own prediction only", s)
	}

	// A live session on the same collector: its ticks flow, no step comes back.
	live := dialBridge(t, svc.BridgeAddr())
	live.send(t, hello(902, 1), symbolInfo(2))
	live.welcome(t)
	live.send(t, ticksFrame(3, oneTick(1, t0+2000)))
	testkit.WaitFor(t, "the live tick acknowledged", 5*time.Second, func() bool { return live.maxAck() >= 3 })
	time.Sleep(200 * time.Millisecond) // past the inference answer (hold 50 ms)
	if s := testerSteps(live); len(s) != 0 {
		t.Fatalf("a live bridge got tester steps: %v", s)
	}
	if got := testutil.ToFloat64(svc.Metrics.TesterSteps.WithLabelValues("decision")); got != 2 {
		t.Fatalf("kairos_collector_tester_steps_total{outcome=decision} %v, want 2", got)
	}
}

// Without an inference link the collector decides nothing: every step is "no decision" at once.
func TestLockstepWithoutInferenceAnswersNoDecisionAtOnce(t *testing.T) {
	svc := start(t, testConfig())
	br := dialBridge(t, svc.BridgeAddr())
	h := hello(903, 1)
	h.GetHello().Lockstep = true
	br.send(t, h, symbolInfo(2))
	br.welcome(t)
	br.send(t, ticksFrame(3, oneTick(1, 1577898000000)))
	testkit.WaitFor(t, "the step", 5*time.Second, func() bool { return len(testerSteps(br)) == 1 })
	if s := testerSteps(br)[0]; s.GetTickSequence() != 1 || len(s.GetDecisionTimeMsc()) != 0 {
		t.Fatalf("step %v: want tick 1, no decision", s)
	}
	if got := testutil.ToFloat64(svc.Metrics.TesterSteps.WithLabelValues("no_decision")); got != 1 {
		t.Fatalf("kairos_collector_tester_steps_total{outcome=no_decision} %v, want 1", got)
	}
}
