//go:build chaos

package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/internal/bridgepeer"
	"github.com/kairos-mt5/kairos/go/execution/internal/testutil"
	"github.com/kairos-mt5/kairos/go/testkit"
)

const token = "chaos-token-5b1e"

// binary is the execution service built with the chaos tag (TestMain).
var binary string

// figures are the suite's totals, written to reliability.json after the run.
var figures struct {
	mu                             sync.Mutex
	faults, lost, sentTwice, acked int
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kairos-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "kairos-execution")
	args := []string{"build", "-tags", "chaos", "-o", binary}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/kairos-execution")...)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the chaos binary:", err)
		os.Exit(1)
	}
	code := m.Run()
	if code == 0 {
		if err := writeFigures(); err != nil {
			fmt.Fprintln(os.Stderr, "reliability.json:", err)
			code = 1
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// writeFigures merges this suite's keys into reliability.json (KAIROS_RELIABILITY_JSON, default
// bench/results/reliability.json), keeping the keys other suites wrote.
func writeFigures() error {
	path := os.Getenv("KAIROS_RELIABILITY_JSON")
	if path == "" {
		path = filepath.Join("..", "..", "..", "bench", "results", "reliability.json")
	}
	out := map[string]any{}
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	figures.mu.Lock()
	// faults_injected is every suite's total: this one's plus the cluster suite's (make chaos runs both).
	out["faults_injected_execution"] = figures.faults
	cluster, _ := out["faults_injected_cluster"].(float64)
	out["faults_injected"] = figures.faults + int(cluster)
	out["acked_orders_lost"] = figures.lost
	out["orders_sent_twice"] = figures.sentTwice
	out["chaos_acked_orders"] = figures.acked
	figures.mu.Unlock()
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// service is one run of the execution service process.
type service struct {
	t      *testing.T
	cmd    *exec.Cmd
	dead   chan struct{} // closed when the process has exited; err says how
	err    error
	stderr *lockedWriter
}

// world is what outlives service restarts: the journal, the ports, the MT5 test terminal and its
// bridge peer (the venue's record), and every order a client got an OK for.
type world struct {
	t          *testing.T
	db         string
	grpc, brdg string
	term       *bridgepeer.Terminal
	peer       *bridgepeer.Peer
	conn       *grpc.ClientConn
	client     execv1.ExecutionServiceClient

	current *service

	mu    sync.Mutex
	acked map[string]bool
	next  atomic.Int64
}

func newWorld(t *testing.T, db string) *world {
	t.Helper()
	w := &world{t: t, db: db, grpc: fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)), brdg: fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)),
		term: bridgepeer.NewTerminal(&typesv1.Decimal{Units: 112345, Scale: 5}), acked: map[string]bool{}}
	w.peer = bridgepeer.New(w.term, 4242)
	t.Cleanup(w.peer.Close)
	cc, err := grpc.NewClient(w.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	w.conn, w.client = cc, execv1.NewExecutionServiceClient(cc)
	return w
}

// start runs the service with fault (KAIROS_FAULT, "" for none) and connects the bridge peer; with
// wait it returns once the service reconciled and trades.
func (w *world) start(fault string, wait bool) *service {
	w.t.Helper()
	cmd := exec.Command(binary, "serve", "--grpc-addr", w.grpc, "--metrics-addr", "", "--bridge-addr", w.brdg, "--nats-url", "",
		"--db", w.db, "--venue", "mt5", "--heartbeat-interval", "200ms", "--journal-timeout", "1s", "--log-level", "warn",
		"--price-collar-bps", "0", "--max-order-notional", "0", "--max-gross-exposure", "0", "--max-open-orders", "1000000",
		"--max-position-qty", "0", "--submit-rate", "0", "--message-rate", "0", "--duplicate-intent-window-ms", "0")
	// The bridge key the test terminal (bridgepeer.TestKey) proves, from the environment as in production.
	cmd.Env = append(os.Environ(), "KAIROS_EXECUTION_TOKEN="+token, "KAIROS_EXECUTION_BRIDGE_KEY="+string(bridgepeer.TestKey), "KAIROS_FAULT="+fault)
	s := &service{t: w.t, cmd: cmd, dead: make(chan struct{}), stderr: &lockedWriter{w: &bytes.Buffer{}}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { s.err = cmd.Wait(); close(s.dead) }()
	w.t.Cleanup(func() {
		if s.alive() {
			_ = cmd.Process.Kill()
			<-s.dead
		}
	})
	// The peer reconnects to each new process, resending what the last one did not acknowledge.
	testkit.WaitFor(w.t, "the bridge peer connected", 20*time.Second, func() bool {
		if w.peer.Connected() {
			return true
		}
		_, err := w.peer.Connect(w.brdg)
		return err == nil
	})
	w.current = s
	if wait {
		// A fault may fire before the service trades (mid-batch:7 can hit start-up's own journal
		// writes): a process that died of its fault has done what this run is for.
		w.waitTrading(fault != "")
	}
	return s
}

// stopCurrent kills the running process, if any, from outside (kill -9) and drops the peer's link.
func (w *world) stopCurrent() {
	w.t.Helper()
	if s := w.current; s != nil && s.alive() {
		s.kill9()
	}
	w.current = nil
	w.peer.Close()
}

// waitTrading waits until the service is reconciled and ACTIVE (resuming it if it came back HALTED).
func (w *world) waitTrading(faultMayFire bool) {
	w.t.Helper()
	cur := w.current
	if s := cur; s != nil {
		// On a timeout the service's own log says why (reconciliation, the link, the journal).
		defer func() {
			if w.t.Failed() {
				w.t.Logf("service log:\n%s", s.stderr.String())
			}
		}()
	}
	testkit.WaitFor(w.t, "the service reconciled and trading", 30*time.Second, func() bool {
		if faultMayFire && cur != nil && !cur.alive() {
			return true
		}
		ctx, cancel := context.WithTimeout(w.authed(), 2*time.Second)
		defer cancel()
		l, err := w.client.GetRiskLimits(ctx, &execv1.GetRiskLimitsRequest{})
		if err != nil {
			return false
		}
		if l.GetTradingState() == execv1.TradingState_TRADING_STATE_ACTIVE {
			return true
		}
		_, _ = w.client.SetTradingState(ctx, &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_ACTIVE, Reason: "chaos: resume after restart"})
		return false
	})
}

func (w *world) authed() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// load submits limit orders from workers until stop closes or the service dies; an order whose
// SubmitOrder returned OK is recorded as acknowledged.
func (w *world) load(workers int, stop <-chan struct{}) (wait func()) {
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := w.next.Add(1)
				id := fmt.Sprintf("c%d", n)
				side := execv1.OrderSide_ORDER_SIDE_BUY
				price := &typesv1.Decimal{Units: 110000, Scale: 5}
				if n%2 == 0 {
					side, price = execv1.OrderSide_ORDER_SIDE_SELL, &typesv1.Decimal{Units: 115000, Scale: 5}
				}
				ctx, cancel := context.WithTimeout(w.authed(), 3*time.Second)
				_, err := w.client.SubmitOrder(ctx, &execv1.SubmitOrderRequest{ClientOrderId: id, Symbol: "EURUSD", Side: side,
					Type: execv1.OrderType_ORDER_TYPE_LIMIT, Price: price, Quantity: &typesv1.Decimal{Units: 1, Scale: 2}, StrategyId: "chaos"})
				cancel()
				if err == nil {
					w.mu.Lock()
					w.acked[id] = true
					w.mu.Unlock()
					continue
				}
				if status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded {
					time.Sleep(5 * time.Millisecond) // the service is down or failing: do not spin
				}
			}
		}()
	}
	return wg.Wait
}

// check restarts nothing: against the running service, every acknowledged order must be known
// (not lost) and the terminal must have received at most one PLACE command per order.
func (w *world) check(faults int) {
	w.t.Helper()
	w.mu.Lock()
	acked := make([]string, 0, len(w.acked))
	for id := range w.acked {
		acked = append(acked, id)
	}
	w.mu.Unlock()
	lost := 0
	for _, id := range acked {
		ctx, cancel := context.WithTimeout(w.authed(), 5*time.Second)
		_, err := w.client.GetOrder(ctx, &execv1.GetOrderRequest{ClientOrderId: id})
		cancel()
		if status.Code(err) == codes.NotFound {
			lost++
			w.t.Errorf("acknowledged order %s is unknown after the restart", id)
		} else if err != nil {
			w.t.Fatalf("GetOrder %s: %v", id, err)
		}
	}
	twice := 0
	for id, n := range w.term.PlaceCommands() {
		if n > 1 {
			twice++
			w.t.Errorf("order %s reached the terminal in %d PLACE commands", id, n)
		}
	}
	for id, n := range w.term.Placed() {
		if n > 1 {
			w.t.Errorf("order %s executed %d times by the terminal", id, n)
		}
	}
	if len(acked) == 0 {
		w.t.Fatal("no order was acknowledged: the load did not run")
	}
	w.t.Logf("faults %d, acknowledged %d, lost %d, sent twice %d", faults, len(acked), lost, twice)
	figures.mu.Lock()
	figures.faults += faults
	figures.lost += lost
	figures.sentTwice += twice
	figures.acked += len(acked)
	figures.mu.Unlock()
}

// waitExit waits for the process to die by the injected fault (SIGKILL).
func (s *service) waitExit(within time.Duration) {
	s.t.Helper()
	select {
	case <-s.dead:
		ee, ok := s.err.(*exec.ExitError)
		if !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			s.t.Fatalf("service exited with %v, want killed by SIGKILL at the fault point\n%s", s.err, s.stderr)
		}
	case <-time.After(within):
		s.t.Fatalf("the fault did not fire within %v", within)
	}
}

// kill9 sends SIGKILL from outside.
func (s *service) kill9() {
	s.t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.dead
}

func (s *service) alive() bool {
	select {
	case <-s.dead:
		return false
	default:
		return true
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// TestKill9AtTargetedPoints_LosesNoAcknowledgedOrderAndSendsNoneTwice kills the service at each
// point under load, restarts it, and checks against the terminal's record.
func TestKill9AtTargetedPoints_LosesNoAcknowledgedOrderAndSendsNoneTwice(t *testing.T) {
	cases := []struct {
		name   string
		faults []string // one run per fault, each killed there, then a clean run
	}{
		{"BetweenJournalAppendAndAck", []string{"after-append:200"}},
		{"MidBatch", []string{"mid-batch:60"}},
		{"DuringReconciliationAfterACrashUnderLoad", []string{"after-append:150", "during-reconcile:1"}},
		{"RepeatedlyAtEachPoint", []string{"after-append:97", "mid-batch:41", "after-append:313", "mid-batch:7"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, filepath.Join(t.TempDir(), "journal.db"))
			for _, f := range c.faults {
				w.runUntilKilled(f)
			}
			w.start("", true)
			w.check(len(c.faults))
		})
	}
}

// runUntilKilled stops the running process, starts one with fault under load and waits for the
// fault to kill it.
func (w *world) runUntilKilled(fault string) {
	w.t.Helper()
	w.stopCurrent()
	reconcileFault := strings.HasPrefix(fault, "during-reconcile")
	svc := w.start(fault, !reconcileFault)
	stop := make(chan struct{})
	wait := w.load(8, stop)
	svc.waitExit(60 * time.Second)
	close(stop)
	wait()
	w.current = nil
	w.peer.Close()
}

// TestJournalStoreFaults_HaltTheServiceAndLoseNoAcknowledgedOrder starves the running service of its
// journal under load (PostgreSQL stopped or paused with SIGSTOP, or a SQLite disk that refuses
// writes), waits for NOT_SERVING, repairs the store, kills the service and restarts it.
func TestJournalStoreFaults_HaltTheServiceAndLoseNoAcknowledgedOrder(t *testing.T) {
	cases := []struct {
		name string
		db   func(t *testing.T) (dsn string, fault func(s *service), repair func())
	}{
		{"PostgreSQLStopped", func(t *testing.T) (string, func(*service), func()) {
			pg := testutil.StartPostgres(t)
			return pg.DSN, func(*service) { pg.Stop() }, pg.Start
		}},
		{"PostgreSQLPausedWithSIGSTOP", func(t *testing.T) (string, func(*service), func()) {
			pg := testutil.StartPostgres(t)
			return pg.DSN, func(*service) { pg.Pause() }, pg.Resume
		}},
		{"SQLiteDiskRefusesWrites", func(t *testing.T) (string, func(*service), func()) {
			if _, err := exec.LookPath("prlimit"); err != nil {
				t.Fatal("prlimit (util-linux) not installed")
			}
			return filepath.Join(t.TempDir(), "journal.db"), func(s *service) {
				// A file-size limit of one byte on the running process: every journal write fails
				// (EFBIG), as on a full or read-only disk; the open file descriptors stay valid.
				out, err := exec.Command("prlimit", "--pid", fmt.Sprint(s.cmd.Process.Pid), "--fsize=1:").CombinedOutput()
				if err != nil {
					t.Fatalf("prlimit: %v %s", err, out)
				}
			}, func() {}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dsn, fault, repair := c.db(t)
			w := newWorld(t, dsn)
			svc := w.start("", true)
			stop := make(chan struct{})
			wait := w.load(8, stop)
			testkit.WaitFor(t, "orders acknowledged before the fault", 20*time.Second, func() bool {
				w.mu.Lock()
				defer w.mu.Unlock()
				return len(w.acked) >= 100
			})

			fault(svc)

			hc := healthpb.NewHealthClient(w.conn)
			testkit.WaitFor(t, "health NOT_SERVING", 20*time.Second, func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: execv1.ExecutionService_ServiceDesc.ServiceName})
				return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
			})
			close(stop)
			wait()
			repair()
			w.stopCurrent() // kill -9: a restart is how the service recovers
			w.start("", true)
			w.check(2)
		})
	}
}
