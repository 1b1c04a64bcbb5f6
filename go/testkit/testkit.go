// Package testkit holds the small generic helpers the Go tests of every module share: polling for a
// condition with a description and a deadline instead of sleeping, a free loopback port, and a
// context bounded by a timeout and the test. It depends on the standard library only.
// Domain-specific harnesses (a running collector, the execution service, test bridges) stay beside
// the tests that use them.
package testkit

import (
	"context"
	"net"
	"testing"
	"time"
)

// PollInterval is how often WaitFor checks its condition.
const PollInterval = 5 * time.Millisecond

// WaitFor polls cond every PollInterval until it holds, and fails the test naming what it waited
// for if it does not within timeout. cond runs on the test's goroutine.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
			return
		}
		time.Sleep(PollInterval)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for a process that must be
// told its port in advance (a child binary, a PostgreSQL server). Servers in the test's own process
// should listen on "127.0.0.1:0" instead, which cannot race.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Context returns a context cancelled after timeout or when the test ends, whichever comes first.
func Context(t testing.TB, timeout time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}
