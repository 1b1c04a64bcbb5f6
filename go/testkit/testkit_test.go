package testkit_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kairos-mt5/kairos/go/testkit"
)

// recorder is a testing.TB that records a failure instead of ending the goroutine.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestWaitFor_WhenTheConditionBecomesTrue_ReturnsWithoutFailing(t *testing.T) {
	r := &recorder{TB: t}
	calls := 0
	testkit.WaitFor(r, "the third poll", time.Second, func() bool { calls++; return calls == 3 })
	if r.failed != "" || calls != 3 {
		t.Fatalf("failed %q after %d calls, want no failure after 3", r.failed, calls)
	}
}

func TestWaitFor_WhenTheConditionNeverHolds_FailsNamingWhatAndTheTimeout(t *testing.T) {
	r := &recorder{TB: t}
	start := time.Now()
	testkit.WaitFor(r, "the moon", 30*time.Millisecond, func() bool { return false })
	if took := time.Since(start); took < 30*time.Millisecond || took > 5*time.Second {
		t.Fatalf("gave up after %v, want about 30ms", took)
	}
	if !strings.Contains(r.failed, "the moon") || !strings.Contains(r.failed, "30ms") {
		t.Fatalf("failure %q does not name what it waited for and the timeout", r.failed)
	}
}

func TestFreePort_IsALoopbackPortThatCanBeListenedOn(t *testing.T) {
	port := testkit.FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d is not free: %v", port, err)
	}
	_ = l.Close()
}

func TestContext_EndsAtItsTimeout(t *testing.T) {
	ctx := testkit.Context(t, 20*time.Millisecond)
	select {
	case <-ctx.Done():
		if ctx.Err() != context.DeadlineExceeded {
			t.Fatalf("err %v, want deadline exceeded", ctx.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("context did not end at its timeout")
	}
}
