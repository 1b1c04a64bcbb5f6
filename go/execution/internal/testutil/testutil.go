// Package testutil holds what the execution tests share: the real EURUSD ticks from shared/data,
// a real PostgreSQL server started for the test and an embedded NATS server. The generic helpers
// (polling, free ports) are in the shared module go/testkit.
package testutil

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/kairos-mt5/kairos/go/execution/internal/pgtmp"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// Tick is one real quote.
type Tick struct {
	TimeMsc  int64
	Bid, Ask float64
}

// RepoRoot finds the directory holding go.work.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.work not found above the test directory")
		}
		dir = parent
	}
}

// DataDir is shared/data beside the repository (KAIROS_DATA_DIR overrides).
func DataDir(t testing.TB) string {
	if d := os.Getenv("KAIROS_DATA_DIR"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(t), "..", "shared", "data")
}

// EURUSDTicks reads up to n real ticks (0: all) from eurusd-ticks-2020-01-01.csv.
func EURUSDTicks(t testing.TB, n int) []Tick {
	t.Helper()
	path := filepath.Join(DataDir(t), "eurusd-ticks-2020-01-01.csv")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("real tick data: %v (CI has shared/data beside the repo)", err)
	}
	defer f.Close()
	var out []Tick
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() && (n == 0 || len(out) < n) {
		line++
		parts := strings.Split(strings.TrimSpace(sc.Text()), ",")
		if len(parts) < 3 {
			t.Fatalf("%s:%d: want time,bid,ask", path, line)
		}
		ts, err := time.Parse("20060102 150405.000", parts[0][:15]+"."+parts[0][15:])
		if err != nil {
			t.Fatalf("%s:%d: time %q: %v", path, line, parts[0], err)
		}
		bid, err1 := strconv.ParseFloat(parts[1], 64)
		ask, err2 := strconv.ParseFloat(parts[2], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s:%d: bad price", path, line)
		}
		out = append(out, Tick{TimeMsc: ts.UnixMilli(), Bid: bid, Ask: ask})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Eventually is testkit.WaitFor with its arguments in the older order, for the tests not yet moved
// to testkit (the MT5 venue's, being rewritten with the bridge link).
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, what, timeout, cond)
}

// NATS starts an embedded NATS server on a random loopback port.
func NATS(t testing.TB) *natsserver.Server {
	t.Helper()
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// PostgresBin is where Debian's postgresql package puts the server binaries.
const PostgresBin = pgtmp.DefaultBin

// Postgres starts a throwaway PostgreSQL server (initdb + pg_ctl in a temp dir on a free loopback
// port) and returns its DSN. It fails the test if the server cannot start, unless
// KAIROS_SKIP_POSTGRES=1 says explicitly to skip.
func Postgres(t testing.TB) string {
	t.Helper()
	return StartPostgres(t).DSN
}

// PG is a throwaway PostgreSQL server (pgtmp.Server) a fault test can stop, pause and resume.
type PG struct {
	DSN string
	t   testing.TB
	s   *pgtmp.Server
}

// Start starts a stopped server again on the same port and data.
func (p *PG) Start() {
	p.t.Helper()
	if err := p.s.Start(); err != nil {
		p.t.Fatalf("pg_ctl start: %v", err)
	}
}

// T is the test the server belongs to.
func (p *PG) T() testing.TB { return p.t }

// Stop shuts the server down at once (pg_ctl -m immediate): connections break, new ones are refused.
func (p *PG) Stop() {
	p.t.Helper()
	if err := p.s.Stop(); err != nil {
		p.t.Fatalf("pg_ctl stop: %v", err)
	}
}

// Pause sends SIGSTOP to the postmaster and every backend: the server stalls, connections stay
// open and nothing answers. Resume undoes it (also at cleanup).
func (p *PG) Pause() {
	p.t.Helper()
	if err := p.s.Pause(); err != nil {
		p.t.Fatal(err)
	}
}

// Resume sends SIGCONT to what Pause stopped.
func (p *PG) Resume() {
	p.t.Helper()
	if err := p.s.Resume(); err != nil {
		p.t.Fatal(err)
	}
}

// StartPostgres is Postgres returning the server, for tests that inject faults into it.
func StartPostgres(t testing.TB) *PG {
	t.Helper()
	if os.Getenv("KAIROS_SKIP_POSTGRES") == "1" {
		t.Skip("KAIROS_SKIP_POSTGRES=1")
	}
	s, err := pgtmp.Start(pgtmp.Bin(), testkit.FreePort(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &PG{DSN: s.DSN, t: t, s: s}
}
