package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// A journal that errors or stalls must take the service out of rotation: the next submission fails
// UNAVAILABLE within the journal timeout, trading is HALTED, gRPC health is NOT_SERVING and the
// journal gauge says so, against a real PostgreSQL that is stopped or paused.
func TestService_WhenThePostgreSQLJournalFails_HaltsAndReportsNotServing(t *testing.T) {
	cases := []struct {
		name  string
		fault func(pg *testutil.PG)
	}{
		{"ServerStopped", func(pg *testutil.PG) { pg.Stop() }},
		{"ServerPausedWithSIGSTOP", func(pg *testutil.PG) {
			pg.Pause()
			pg.T().Cleanup(pg.Resume) // before the service stops: its shutdown says goodbye to the server
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pg := testutil.StartPostgres(t)
			ns := testutil.NATS(t)
			s := start(t, ns.ClientURL(), func(cfg *config.Config) {
				cfg.DB = pg.DSN
				cfg.JournalTimeout = 500 * time.Millisecond
			})
			ctx := authed(t)
			s.PublishTicks(testutil.EURUSDTicks(t, 50))
			s.WaitQuote()
			if _, err := s.Client.SubmitOrder(ctx, market("j1", "buy", "0.10")); err != nil {
				t.Fatalf("submit while the journal works: %v", err)
			}

			c.fault(pg)
			began := time.Now()
			_, err := s.Client.SubmitOrder(ctx, market("j2", "buy", "0.20"))
			took := time.Since(began)

			if status.Code(err) != codes.Unavailable {
				t.Fatalf("submit with the journal down: %v, want UNAVAILABLE", err)
			}
			if took > 5*time.Second {
				t.Fatalf("submit took %v with a 500ms journal timeout", took)
			}
			hc := healthpb.NewHealthClient(s.Conn)
			testkit.WaitFor(t, "health NOT_SERVING", 10*time.Second, func() bool {
				r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: execv1.ExecutionService_ServiceDesc.ServiceName})
				return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
			})
			lim, err := s.Client.GetRiskLimits(ctx, &execv1.GetRiskLimitsRequest{})
			if err != nil || lim.GetTradingState() != execv1.TradingState_TRADING_STATE_HALTED {
				t.Fatalf("trading state %v (%v), want HALTED", lim.GetTradingState(), err)
			}
			m := s.Metrics()
			for _, want := range []string{"kairos_execution_journal_healthy 0", "kairos_execution_trading_state 3"} {
				if !strings.Contains(m, want) {
					t.Fatalf("metrics lack %q:\n%s", want, grepLines(m, "kairos_execution_journal", "kairos_execution_trading_state"))
				}
			}
			if _, err := s.Client.SubmitOrder(ctx, market("j3", "buy", "0.30")); status.Code(err) != codes.Unavailable {
				t.Fatalf("submit after the failure: %v, want UNAVAILABLE", err)
			}
		})
	}
}
