package collector

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kairos-mt5/kairos/go/collector/natspub"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func TestGoldenBridgeFramesAreAcceptedAndAcknowledged(t *testing.T) {
	// The golden frames are stamped 2020-01-01: an external NATS server this time, to cover --nats-url.
	ext, err := natspub.StartEmbedded("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ext.Shutdown(); ext.WaitForShutdown() })
	cfg := testConfig()
	cfg.NATSURL = ext.ClientURL()
	svc := start(t, cfg)
	if svc.NATSURL() != ext.ClientURL() {
		t.Fatalf("collector uses %s, want the external %s", svc.NATSURL(), ext.ClientURL())
	}
	nats := subscribeNATS(t, ext.ClientURL())
	br := dialBridge(t, svc.BridgeAddr())
	br.send(t, golden(t, "frame_hello"), golden(t, "frame_symbol_info"), golden(t, "frame_ticks"),
		golden(t, "frame_heartbeat"), golden(t, "frame_error"))
	br.welcome(t)
	testkit.WaitFor(t, "the golden batch's 3 ticks on the external NATS", 5*time.Second, func() bool { n, _, _ := nats.snapshot(); return n == 3 })
	testkit.WaitFor(t, "ack of frame 3", 5*time.Second, func() bool { return br.maxAck() == 3 })
	m := svc.Metrics
	for body, want := range map[string]float64{"hello": 1, "symbol_info": 1, "ticks": 1, "heartbeat": 1, "error": 1} {
		if got := testutil.ToFloat64(m.Bridge.Frames.WithLabelValues("in", body)); got != want {
			t.Errorf("%s frames = %v, want %v", body, got, want)
		}
	}
	if testutil.CollectAndCount(m.Bridge.HeartbeatRTT) != 1 {
		t.Error("heartbeat round trip not observed")
	}
}

func TestGrpcurlListsTheServices(t *testing.T) {
	grpcurl, err := exec.LookPath("grpcurl")
	if err != nil {
		grpcurl = filepath.Join("..", "..", ".tools", "bin", "grpcurl")
		if _, err := os.Stat(grpcurl); err != nil {
			t.Skip("grpcurl not installed (make setup installs it into .tools/bin)")
		}
	}
	svc := start(t, testConfig())
	out, err := exec.Command(grpcurl, "-plaintext", "-max-time", "10", svc.GRPCAddr(), "list").CombinedOutput()
	if err != nil {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	for _, want := range []string{"kairos.collector.v1.MarketDataService", "grpc.health.v1.Health"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("grpcurl list lacks %s:\n%s", want, out)
		}
	}
}
