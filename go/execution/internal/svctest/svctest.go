// Package svctest runs the real execution service in-process for tests: config from flags, a
// SQLite journal in a temp dir, loopback ports, optional NATS, a gRPC client with the token, and
// helpers to publish real ticks and read metrics.
package svctest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	marketdatav1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
	"github.com/kairos-mt5/kairos/go/execution/app"
	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/internal/bridgepeer"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// Token is the bearer token the test service accepts.
const Token = "test-token-7f3a"

type Svc struct {
	t      *testing.T
	Cfg    *config.Config
	Ready  app.Ready
	Client execv1.ExecutionServiceClient
	Conn   *grpc.ClientConn
	NC     *nats.Conn
	Stop   func()
}

// start runs the real service in-process on loopback ports with a SQLite journal in a temp dir
// and, when natsURL is set, the real NATS server for ticks and signals.
func Start(t *testing.T, natsURL string, tweak func(*config.Config), extra ...string) *Svc {
	t.Helper()
	args := []string{"--grpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "exec.db"),
		"--nats-url", natsURL, "--token", Token, "--signal-cooldown-bars", "0", "--log-level", "warn",
		// The tests replay historical ticks, so their signals carry historical market times.
		"--signal-max-age", "0"}
	args = append(args, extra...)
	cfg, err := config.Parse("test", args, func(k string) string {
		if k == config.EnvPrefix+"BRIDGE_KEY" {
			return string(bridgepeer.TestKey) // what bridgepeer proves by default
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(cfg)
	}
	return Run(t, cfg, natsURL)
}

func Run(t *testing.T, cfg *config.Config, natsURL string) *Svc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan app.Ready, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	go func() { done <- app.Run(ctx, cfg, log, func(r app.Ready) { readyc <- r }) }()
	s := &Svc{t: t, Cfg: cfg}
	select {
	case s.Ready = <-readyc:
	case err := <-done:
		cancel()
		t.Fatalf("service did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("service did not start in 20s")
	}
	cc, err := grpc.NewClient(s.Ready.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(grpcauth.Bearer(Token, false)))
	if err != nil {
		t.Fatal(err)
	}
	s.Conn, s.Client = cc, execv1.NewExecutionServiceClient(cc)
	if natsURL != "" {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			t.Fatal(err)
		}
		s.NC = nc
	}
	var once sync.Once
	s.Stop = func() {
		once.Do(func() {
			if s.NC != nil {
				s.NC.Close()
			}
			cc.Close()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("service exited with %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("service did not shut down in 20s")
			}
		})
	}
	t.Cleanup(s.Stop)
	return s
}

// authed returns a context with the bearer token, cancelled when the test ends.
func Authed(t *testing.T) context.Context {
	return metadata.AppendToOutgoingContext(testkit.Context(t, 30*time.Second), "authorization", "Bearer "+Token)
}

func Dec(s string) *typesv1.Decimal { return decimal.MustParse(s).Proto() }

func Market(id, side string, qty string) *execv1.SubmitOrderRequest {
	sd := execv1.OrderSide_ORDER_SIDE_BUY
	if side == "sell" {
		sd = execv1.OrderSide_ORDER_SIDE_SELL
	}
	return &execv1.SubmitOrderRequest{ClientOrderId: id, Symbol: "EURUSD", Side: sd, Type: execv1.OrderType_ORDER_TYPE_MARKET,
		Quantity: Dec(qty), StrategyId: "test"}
}

// publishTicks sends real EURUSD ticks as collector TickBatches on kairos.md.EURUSD.
func (s *Svc) PublishTicks(ticks []testutil.Tick) {
	s.t.Helper()
	for i := 0; i < len(ticks); i += 10 {
		b := &marketdatav1.TickBatch{Symbol: "EURUSD"}
		for _, tk := range ticks[i:min(i+10, len(ticks))] {
			b.TimeMsc = append(b.TimeMsc, tk.TimeMsc)
			b.Bid = append(b.Bid, tk.Bid)
			b.Ask = append(b.Ask, tk.Ask)
		}
		data, _ := proto.Marshal(b)
		if err := s.NC.Publish("kairos.md.EURUSD", data); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := s.NC.Flush(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *Svc) WaitQuote() {
	s.t.Helper()
	testkit.WaitFor(s.t, "a quote to reach the service", 10*time.Second, func() bool {
		return strings.Contains(s.Metrics(), "kairos_execution_quotes_total ") && !strings.Contains(s.Metrics(), "kairos_execution_quotes_total 0\n")
	})
}

func (s *Svc) Metrics() string {
	resp, err := http.Get("http://" + s.Ready.MetricsAddr + "/metrics")
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func (s *Svc) JournalLastSeq() uint64 {
	st, err := journal.OpenSQLite(context.Background(), s.Cfg.DB)
	if err != nil {
		s.t.Fatal(err)
	}
	defer st.Close()
	n, err := st.LastSeq(context.Background())
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}
