// Package peerlimit bounds what one gRPC peer may cost a service: connections at once, concurrent
// streams per connection, message sizes and keepalive. The collector and execution use the same
// limits and the same listener (grpcauth decides who may call; this package, how much).
package peerlimit

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Limits are a gRPC server's peer bounds (flags --grpc-max-connections and friends).
type Limits struct {
	// MaxConnections open at once; more are closed on accept and counted. 0: no limit.
	MaxConnections int
	// MaxConcurrentStreams per connection.
	MaxConcurrentStreams uint32
	// MaxRecvMsgBytes and MaxSendMsgBytes bound one message.
	MaxRecvMsgBytes, MaxSendMsgBytes int
	// KeepaliveMinTime: a client pinging more often is disconnected (GOAWAY too_many_pings).
	KeepaliveMinTime time.Duration
	// KeepaliveTime and KeepaliveTimeout: the server pings an idle connection after KeepaliveTime
	// and drops it when no answer comes within KeepaliveTimeout.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// HandshakeTimeout bounds a new connection's setup, TLS and the HTTP/2 preface and settings
	// included: a peer that dribbles bytes or never finishes is closed after it (grpc's default is
	// 120 s, long enough for a slowloris to hold every connection slot). 0: grpc's default.
	HandshakeTimeout time.Duration
}

// ServerOptions returns the gRPC server options that bound a peer's cost: concurrent streams per
// connection, message sizes, and keepalive (pings more often than MinTime end the connection; a
// peer that stops answering pings is dropped), and the handshake's deadline. extra (credentials,
// interceptors) come first.
func ServerOptions(l Limits, extra ...grpc.ServerOption) []grpc.ServerOption {
	if l.HandshakeTimeout > 0 {
		extra = append(extra, grpc.ConnectionTimeout(l.HandshakeTimeout))
	}
	return append(extra,
		grpc.MaxConcurrentStreams(l.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(l.MaxRecvMsgBytes),
		grpc.MaxSendMsgSize(l.MaxSendMsgBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: l.KeepaliveTime, Timeout: l.KeepaliveTimeout}),
	)
}

// Listener accepts at most max connections at once; one more is closed at once and refused is
// called (the service counts it), so a flood of connections cannot exhaust the process's file
// descriptors or memory. (The standard netutil.LimitListener makes extra connections wait in the
// kernel's backlog instead, invisible to the operator.) max <= 0: no limit.
//
// incomplete, if not nil, is called for each connection that closes before its peer sent the
// 24 bytes of the HTTP/2 client preface: a slowloris cut by HandshakeTimeout, a port scan, a
// client that is not gRPC.
func Listener(l net.Listener, max int, refused, incomplete func()) net.Listener {
	if max <= 0 && incomplete == nil {
		return l
	}
	return &limitListener{Listener: l, max: max, refused: refused, incomplete: incomplete}
}

// prefaceBytes is the length of the HTTP/2 client connection preface.
const prefaceBytes = 24

type limitListener struct {
	net.Listener
	refused    func()
	incomplete func()
	mu         sync.Mutex
	open       int
	max        int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.max > 0 && l.open >= l.max {
			l.mu.Unlock()
			l.refused()
			_ = c.SetDeadline(time.Now()) // do not wait on a peer that does not read
			_ = c.Close()
			continue
		}
		l.open++
		l.mu.Unlock()
		return &limitedConn{Conn: c, release: l.release, incomplete: l.incomplete}, nil
	}
}

func (l *limitListener) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
}

type limitedConn struct {
	net.Conn
	once       sync.Once
	release    func()
	incomplete func()
	read       atomic.Int64
}

func (c *limitedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.release()
		if c.incomplete != nil && c.read.Load() < prefaceBytes {
			c.incomplete()
		}
	})
	return err
}
