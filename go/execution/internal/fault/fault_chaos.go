//go:build chaos

package fault

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// Enabled reports whether fault injection is compiled in.
const Enabled = true

var (
	point string
	at    int64
	hits  atomic.Int64
)

func init() {
	spec := os.Getenv("KAIROS_FAULT")
	if spec == "" {
		return
	}
	name, n, ok := strings.Cut(spec, ":")
	v, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || v < 1 {
		fmt.Fprintf(os.Stderr, "KAIROS_FAULT=%q: want <point>:<n>, n >= 1\n", spec)
		os.Exit(2)
	}
	point, at = name, v
}

// Point kills the process with SIGKILL (no deferred code, no flush: a kill -9) the n-th time the
// point named by KAIROS_FAULT is reached.
func Point(name string) {
	if name != point || point == "" {
		return
	}
	if hits.Add(1) == at {
		fmt.Fprintf(os.Stderr, "KAIROS_FAULT: killing the process at %s:%d\n", name, at)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
