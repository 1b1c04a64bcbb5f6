package collector

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"
	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
	"github.com/kairos-mt5/kairos/go/collector/internal/testinfer"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// noCredsClient dials without any credentials of its own.
func noCredsClient(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestEveryMarketDataCallNeedsTheBearerToken(t *testing.T) {
	type call func(ctx context.Context, c collectorv1.MarketDataServiceClient) error
	publish := func(ctx context.Context, c collectorv1.MarketDataServiceClient) error {
		st, err := c.Publish(ctx)
		if err != nil {
			return err
		}
		// What an attacker would send: a symbol, then a quote.
		_ = st.Send(&collectorv1.PublishRequest{Source: "attacker", Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: ticksdata.EURUSD()}})
		_, err = st.CloseAndRecv()
		return err
	}
	subscribe := func(ctx context.Context, c collectorv1.MarketDataServiceClient) error {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		st, err := c.Subscribe(ctx, &collectorv1.SubscribeRequest{Ticks: true})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		if status.Code(err) == codes.DeadlineExceeded {
			return nil // served: nothing to receive yet
		}
		return err
	}
	stream := func(ctx context.Context, c collectorv1.MarketDataServiceClient) error {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		st, err := c.Stream(ctx)
		if err != nil {
			return err
		}
		_, err = st.Recv()
		if status.Code(err) == codes.DeadlineExceeded {
			return nil
		}
		return err
	}
	list := func(ctx context.Context, c collectorv1.MarketDataServiceClient) error {
		_, err := c.ListSymbols(ctx, &collectorv1.ListSymbolsRequest{})
		return err
	}
	with := func(auth string) context.Context {
		ctx := testkit.Context(t, 10*time.Second)
		if auth != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
		}
		return ctx
	}
	cases := []struct {
		name      string
		openReads bool
		auth      string
		call      call
		want      codes.Code
	}{
		{"Publish_WithoutAToken_IsUnauthenticated", false, "", publish, codes.Unauthenticated},
		{"Publish_WithAWrongToken_IsUnauthenticated", false, "Bearer nope", publish, codes.Unauthenticated},
		{"Publish_WithTheToken_Passes", false, "Bearer " + testToken, publish, codes.OK},
		{"Subscribe_WithoutAToken_IsUnauthenticated", false, "", subscribe, codes.Unauthenticated},
		{"Subscribe_WithTheToken_Passes", false, "Bearer " + testToken, subscribe, codes.OK},
		{"Stream_WithoutAToken_IsUnauthenticated", false, "", stream, codes.Unauthenticated},
		{"ListSymbols_WithoutAToken_IsUnauthenticated", false, "", list, codes.Unauthenticated},
		{"Subscribe_FromLoopback_PassesWhenReadsAreOpen", true, "", subscribe, codes.OK},
		{"ListSymbols_FromLoopback_PassesWhenReadsAreOpen", true, "", list, codes.OK},
		{"Publish_FromLoopback_StillNeedsTheTokenWhenReadsAreOpen", true, "", publish, codes.Unauthenticated},
		{"Stream_FromLoopback_StillNeedsTheTokenWhenReadsAreOpen", true, "", stream, codes.Unauthenticated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.OpenReadsOnLoopback = c.openReads
			svc := start(t, cfg)
			client := collectorv1.NewMarketDataServiceClient(noCredsClient(t, svc.GRPCAddr()))
			if got := status.Code(c.call(with(c.auth), client)); got != c.want {
				t.Fatalf("code %v, want %v", got, c.want)
			}
		})
	}
	t.Run("Health_NeedsNoToken", func(t *testing.T) {
		svc := start(t, testConfig())
		if _, err := healthpb.NewHealthClient(noCredsClient(t, svc.GRPCAddr())).Check(with(""), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTheInferenceLinkSendsItsToken(t *testing.T) {
	const infToken = "inference-test-token-0c7d"
	for _, c := range []struct {
		name          string
		sent          string
		wantForwarded bool
	}{
		{"RightToken_TicksReachInference", infToken, true},
		{"WrongToken_InferenceServesNothing", "not-" + infToken, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			inf, err := testinfer.Start("127.0.0.1:0", grpcauth.Policy{Token: infToken}.ServerOptions()...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(inf.Stop)
			cfg := testConfig()
			cfg.InferenceEndpoints = []string{inf.Addr}
			cfg.InferenceToken = c.sent
			cfg.InferenceBackoffMax = 200 * time.Millisecond
			svc := start(t, cfg)
			// Ticks in through Publish (with the collector's own token); the link forwards them.
			st, err := collectorv1.NewMarketDataServiceClient(dialGRPC(t, svc.GRPCAddr())).Publish(testkit.Context(t, 10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			reqs := []*collectorv1.PublishRequest{{Source: "replay:auth", Payload: &collectorv1.PublishRequest_SymbolInfo{SymbolInfo: ticksdata.EURUSD()}}}
			for _, b := range ticksdata.Batches("EURUSD", realTicks(t)[:50], 10, 1) {
				reqs = append(reqs, &collectorv1.PublishRequest{Source: "replay:auth", Payload: &collectorv1.PublishRequest_Ticks{Ticks: b}})
			}
			for _, r := range reqs {
				if err := st.Send(r); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := st.CloseAndRecv(); err != nil {
				t.Fatal(err)
			}
			got := func() bool { return inf.Ticks()["EURUSD"] > 0 }
			if c.wantForwarded {
				testkit.WaitFor(t, "ticks to reach inference", 10*time.Second, got)
				return
			}
			deadline := time.Now().Add(1500 * time.Millisecond)
			for time.Now().Before(deadline) {
				if got() {
					t.Fatal("inference served a link with a wrong token")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
