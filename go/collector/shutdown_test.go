package collector

import (
	"runtime"
	"testing"
	"time"

	"github.com/kairos-mt5/kairos/go/collector/internal/testinfer"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func TestShutdownDrainsAndLeavesNoGoroutineBehind(t *testing.T) {
	inf, err := testinfer.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inf.Stop()
	waitGoroutines := func() int { time.Sleep(20 * time.Millisecond); return runtime.NumGoroutine() }
	base := waitGoroutines()

	cfg := testConfig()
	cfg.InferenceEndpoints = []string{inf.Addr}
	cfg.InferenceFlushInterval = time.Hour // only the shutdown flush can send the last partial request
	cfg.InferenceBatchTicks = 1_000_000
	cfg.StateFile = t.TempDir() + "/state.json"
	svc := start(t, cfg)
	nats := subscribeNATS(t, svc.NATSURL())
	br := dialBridge(t, svc.BridgeAddr())
	br.send(t, hello(5, 1), symbolInfo(2))
	br.welcome(t)
	for i, b := range ticksdata.Batches("EURUSD", realTicks(t)[:500], 100, 1) {
		br.send(t, ticksFrame(uint64(3+i), b))
	}
	testkit.WaitFor(t, "ticks on NATS", 5*time.Second, func() bool { n, _, _ := nats.snapshot(); return n == 500 })
	svc.stop(t)
	if inf.Ticks()["EURUSD"] != 500 {
		t.Fatalf("inference got %d of 500 ticks: shutdown did not flush the link", inf.Ticks()["EURUSD"])
	}
	<-br.closed
	if e := errorFrame(br.received()); e == nil || e.Code.String() != "ERROR_CODE_SHUTTING_DOWN" {
		t.Fatalf("bridge was not told SHUTTING_DOWN: %v", e)
	}
	br.nc.Close()
	nats.nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := waitGoroutines()
		if n <= base+1 { // one goroutine of slack for a client still winding down
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after shutdown, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
		}
	}
}
