package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	marketdatav1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
	"github.com/kairos-mt5/kairos/go/execution/internal/bridgepeer"
	"github.com/kairos-mt5/kairos/go/execution/internal/svctest"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/testkit"
)

func TestKillCommandHaltsCancelsAndFlattensThroughTheService(t *testing.T) {
	ns := testutil.NATS(t)
	s := svctest.Start(t, ns.ClientURL(), nil)
	ctx := svctest.Authed(t)
	s.PublishTicks(testutil.EURUSDTicks(t, 30))
	s.WaitQuote()
	if _, err := s.Client.SubmitOrder(ctx, svctest.Market("k1", "sell", "0.20")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.SubmitOrder(ctx, &execv1.SubmitOrderRequest{ClientOrderId: "k2", Symbol: "EURUSD", Side: execv1.OrderSide_ORDER_SIDE_BUY,
		Type: execv1.OrderType_ORDER_TYPE_LIMIT, Price: svctest.Dec("1.11000"), Quantity: svctest.Dec("0.10")}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KAIROS_EXECUTION_GRPC_ADDR": s.Ready.GRPCAddr}
	getenv := func(k string) string { return env[k] }

	var out, errb bytes.Buffer
	if code := run([]string{"kill"}, &out, &errb, getenv); code != 2 || !strings.Contains(errb.String(), "no token") {
		t.Fatalf("kill without a token: code %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"kill", "--token", "wrong"}, &out, &errb, getenv); code != 1 || !strings.Contains(errb.String(), "Unauthenticated") {
		t.Fatalf("kill with a wrong token: code %d, %q", code, errb.String())
	}
	env["KAIROS_EXECUTION_TOKEN"] = svctest.Token
	out.Reset()
	if code := run([]string{"kill", "--flatten", "--reason", "test"}, &out, &errb, getenv); code != 0 {
		t.Fatalf("kill: code %d, %s", code, errb.String())
	}
	for _, want := range []string{"TRADING_STATE_ACTIVE -> TRADING_STATE_HALTED", "cancel requested: 1 orders [k2]", "flattening orders: 1"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("kill output lacks %q:\n%s", want, out.String())
		}
	}
	pos, _ := s.Client.ListPositions(ctx, &execv1.ListPositionsRequest{})
	if len(pos.GetPositions()) != 0 {
		t.Fatalf("positions after kill --flatten: %v", pos.GetPositions())
	}
}

func TestConfigErrorsExitWithUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"serve", "--venue", "nyse"}, &out, &errb, func(string) string { return "" }); code != 2 || !strings.Contains(errb.String(), `venue "nyse"`) {
		t.Fatalf("code %d, %q", code, errb.String())
	}
	if code := run([]string{"bogus"}, &out, &errb, func(string) string { return "" }); code != 2 {
		t.Fatalf("unknown command: code %d", code)
	}
	errb.Reset()
	bad := map[string]string{"KAIROS_EXECUTION_MAX_ORDER_QTY": "ten"}
	if code := run([]string{"serve"}, &out, &errb, func(k string) string { return bad[k] }); code != 2 || !strings.Contains(errb.String(), "KAIROS_EXECUTION_MAX_ORDER_QTY") {
		t.Fatalf("bad env: code %d, %q", code, errb.String())
	}
}

// proc is the real binary running as a child process.
type proc struct {
	cmd  *exec.Cmd
	logs *bytes.Buffer
	done chan struct{} // closed when the process has exited
	err  error
}

func startBinary(t *testing.T, bin string, args []string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KAIROS_EXECUTION_TOKEN="+svctest.Token, "KAIROS_EXECUTION_BRIDGE_KEY="+string(bridgepeer.TestKey))
	var logs bytes.Buffer
	cmd.Stderr = &syncWriter{w: &logs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: &logs, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("service logs:\n%s", logs.String())
		}
	})
	return p
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestCrashUnderLoadLosesNothingAcknowledgedAndSendsNothingTwice SIGKILLs the real binary while
// clients submit orders over gRPC and a bridge peer fills them, restarts it on the same journal,
// and checks that every acknowledged order is still there, every order the terminal executed is
// filled in the service, and no order reached the terminal twice.
func TestCrashUnderLoadLosesNothingAcknowledgedAndSendsNothingTwice(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kairos-execution")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := testutil.NATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ticks := testutil.EURUSDTicks(t, 500)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // real quotes keep flowing, as the collector would publish them
		defer bg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			tk := ticks[i%len(ticks)]
			data, _ := proto.Marshal(&marketdatav1.TickBatch{Symbol: "EURUSD", TimeMsc: []int64{tk.TimeMsc}, Bid: []float64{tk.Bid}, Ask: []float64{tk.Ask}})
			_ = nc.Publish("kairos.md.EURUSD", data)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer bg.Wait()
	defer cancel()

	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	bridgeAddr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	args := []string{"--venue", "mt5", "--grpc-addr", grpcAddr, "--bridge-addr", bridgeAddr, "--metrics-addr", "",
		"--db", filepath.Join(dir, "exec.db"), "--nats-url", ns.ClientURL(), "--heartbeat-interval", "200ms", "--policy=false",
		"--duplicate-intent-window-ms", "0", "--submit-rate", "0", "--message-rate", "0", "--max-open-orders", "0",
		"--max-position-qty", "0", "--max-gross-exposure", "0", "--max-order-notional", "0", "--log-level", "warn"}

	cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(grpcauth.Bearer(svctest.Token, false)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := execv1.NewExecutionServiceClient(cc)
	term := bridgepeer.NewTerminal(svctest.Dec("1.12345"))
	peer := bridgepeer.New(term, 4242)
	defer peer.Close()

	up := func(p *proc) {
		t.Helper()
		testkit.WaitFor(t, "the service to serve gRPC", 30*time.Second, func() bool {
			select {
			case <-p.done:
				t.Fatalf("service exited: %v\n%s", p.err, p.logs.String())
			default:
			}
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			r, err := healthpb.NewHealthClient(cc).Check(c, &healthpb.HealthCheckRequest{})
			return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
		})
		testkit.WaitFor(t, "the bridge peer to connect", 30*time.Second, func() bool {
			if peer.Connected() {
				return true
			}
			_, err := peer.Connect(bridgeAddr)
			return err == nil
		})
		testkit.WaitFor(t, "reconciliation", 30*time.Second, func() bool {
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			r, err := client.GetRiskLimits(c, &execv1.GetRiskLimitsRequest{})
			return err == nil && r.GetTradingState() == execv1.TradingState_TRADING_STATE_ACTIVE
		})
		// ACTIVE is restored from the journal before the quotes arrive in a new process.
		testkit.WaitFor(t, "a quote", 30*time.Second, func() bool {
			c, cancel := context.WithTimeout(svctest.Authed(t), time.Second)
			defer cancel()
			r, err := client.SubmitOrder(c, svctest.Market(fmt.Sprintf("probe-%d", time.Now().UnixNano()%1e9), "buy", "0.01"))
			return err == nil && r.GetOrder().GetStatus() != execv1.OrderStatus_ORDER_STATUS_DENIED
		})
	}

	p1 := startBinary(t, bin, args)
	up(p1)

	var (
		mu    sync.Mutex
		acked = map[string]execv1.OrderStatus{}
		load  sync.WaitGroup
	)
	stop := make(chan struct{})
	for g := 0; g < 8; g++ {
		load.Add(1)
		go func(g int) {
			defer load.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("c%d-%d", g, i)
				c, cancel := context.WithTimeout(svctest.Authed(t), 5*time.Second)
				r, err := client.SubmitOrder(c, svctest.Market(id, "buy", "0.01"))
				cancel()
				if err != nil {
					return // the service died: anything unanswered was never acknowledged
				}
				mu.Lock()
				acked[id] = r.GetOrder().GetStatus()
				mu.Unlock()
			}
		}(g)
	}
	testkit.WaitFor(t, "300 acknowledged orders", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 300
	})
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p1.done
	close(stop)
	load.Wait()
	testkit.WaitFor(t, "the peer to see the dead link", 10*time.Second, func() bool { return !peer.Connected() })
	unackedAtCrash := peer.Unacked()

	p2 := startBinary(t, bin, args)
	up(p2)

	ctx2 := svctest.Authed(t)
	testkit.WaitFor(t, "no order left working", 30*time.Second, func() bool {
		l, err := client.ListOrders(ctx2, &execv1.ListOrdersRequest{OpenOnly: true})
		return err == nil && len(l.GetOrders()) == 0
	})
	// Every order the terminal executed reached the terminal once and is filled in the service.
	placed := term.Placed()
	for id, n := range placed {
		if n != 1 {
			t.Errorf("order %s reached the terminal %d times", id, n)
		}
	}
	filled := 0
	testkit.WaitFor(t, "every executed order to be filled in the service", 30*time.Second, func() bool {
		filled = 0
		for id := range placed {
			g, err := client.GetOrder(ctx2, &execv1.GetOrderRequest{ClientOrderId: id})
			if err == nil && g.GetOrder().GetStatus() == execv1.OrderStatus_ORDER_STATUS_FILLED {
				filled++
			}
		}
		return filled == len(placed)
	})
	// Every acknowledged order is present; filled ones stay filled; the rest are resolved.
	mu.Lock()
	defer mu.Unlock()
	for id, st := range acked {
		g, err := client.GetOrder(ctx2, &execv1.GetOrderRequest{ClientOrderId: id})
		if err != nil {
			t.Fatalf("acknowledged order %s lost: %v", id, err)
		}
		got := g.GetOrder().GetStatus()
		if st == execv1.OrderStatus_ORDER_STATUS_FILLED && got != st {
			t.Errorf("acknowledged fill of %s lost: now %v", id, got)
		}
		if got != execv1.OrderStatus_ORDER_STATUS_FILLED && got != execv1.OrderStatus_ORDER_STATUS_REJECTED {
			t.Errorf("order %s left %v after reconciliation", id, got)
		}
		if _, ok := placed[id]; ok != (got == execv1.OrderStatus_ORDER_STATUS_FILLED) {
			t.Errorf("order %s: service %v but terminal placed=%v", id, got, ok)
		}
	}
	// Net position equals what the terminal executed.
	pos, err := client.ListPositions(ctx2, &execv1.ListPositionsRequest{Symbol: "EURUSD"})
	if err != nil || len(pos.GetPositions()) != 1 || pos.GetPositions()[0].GetNetQuantity().GetUnits() != int64(len(placed)) {
		t.Fatalf("position %v (err %v), terminal executed %d orders of 0.01", pos.GetPositions(), err, len(placed))
	}
	t.Logf("acknowledged %d, executed %d, frames unacknowledged at the crash %d, resent %d", len(acked), len(placed), unackedAtCrash, peer.Resent())
}
