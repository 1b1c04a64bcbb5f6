// The gRPC server's limits: one place (serverOptions) for what a peer may cost the service, so the
// transport-security and authentication options of the service compose with them.

package app

import (
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/kairos-mt5/kairos/go/execution/config"
)

// serverOptions returns the gRPC server options that bound a peer's cost: concurrent streams per
// connection, message sizes, and keepalive (pings more often than MinTime end the connection; a
// peer that stops answering pings is dropped). extra (credentials, interceptors) come first.
func serverOptions(l config.GRPCLimits, extra ...grpc.ServerOption) []grpc.ServerOption {
	return append(extra,
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(l.MaxRecvMsgBytes),
		grpc.MaxSendMsgSize(l.MaxSendMsgBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: l.KeepaliveTime, Timeout: l.KeepaliveTimeout}),
	)
}

// limitListener accepts at most max connections at once; one more is closed at once and counted,
// so a flood of connections cannot exhaust the process's file descriptors or memory. (The
// standard netutil.LimitListener makes extra connections wait in the kernel's backlog instead,
// invisible to the operator.)
type limitListener struct {
	net.Listener
	refused prometheus.Counter
	mu      sync.Mutex
	open    int
	max     int
}

func newLimitListener(l net.Listener, max int, refused prometheus.Counter) net.Listener {
	if max <= 0 {
		return l
	}
	return &limitListener{Listener: l, max: max, refused: refused}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.open >= l.max {
			l.mu.Unlock()
			l.refused.Inc()
			_ = c.SetDeadline(time.Now()) // do not wait on a peer that does not read
			_ = c.Close()
			continue
		}
		l.open++
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: l.release}, nil
	}
}

func (l *limitListener) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
