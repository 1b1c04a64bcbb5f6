package collector

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func TestGRPCLimits_ConnectionsBeyondTheMaximumAreClosedAndCounted(t *testing.T) {
	cfg := testConfig()
	cfg.GRPC.MaxConnections = 1
	r := start(t, cfg)
	first, err := net.Dial("tcp", r.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()

	second, err := net.Dial("tcp", r.GRPCAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()

	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := second.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !strings.Contains(errString(err), "reset") {
		t.Fatalf("second connection read: %v, want it closed by the collector", err)
	}
	testkit.WaitFor(t, "the refusal counted", 5*time.Second, func() bool {
		return testutil.ToFloat64(r.Metrics.GRPCConnRefused) == 1
	})
	first.Close()
	// With the first gone, a client is served again.
	cc, err := grpc.NewClient(r.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	testkit.WaitFor(t, "a client served once a slot is free", 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestGRPCLimits_AMessageAboveTheReceiveLimitIsRefused(t *testing.T) {
	cfg := testConfig()
	cfg.GRPC.MaxRecvMsgBytes = 1024
	r := start(t, cfg)
	cc, err := grpc.NewClient(r.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	st, err := collectorv1.NewMarketDataServiceClient(cc).Publish(testkit.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	big := &mdv1.SymbolInfo{Symbol: "EURUSD", Point: 1e-5, Description: strings.Repeat("x", 4096)}
	_ = st.Send(&collectorv1.PublishRequest{Source: "big", Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: big}})

	_, err = st.CloseAndRecv()

	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized publish: %v, want RESOURCE_EXHAUSTED", err)
	}
}
