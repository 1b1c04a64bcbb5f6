package peerlimit_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kairos-mt5/kairos/go/auth/peerlimit"
	"github.com/kairos-mt5/kairos/go/testkit"
)

// server is a real gRPC server (health) behind the peer limits, on a free loopback port.
type server struct {
	addr                string
	refused, incomplete atomic.Int64
}

func start(t *testing.T, l peerlimit.Limits) *server {
	t.Helper()
	s := &server{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	lis := peerlimit.Listener(ln, l.MaxConnections, func() { s.refused.Add(1) }, func() { s.incomplete.Add(1) })
	gs := grpc.NewServer(peerlimit.ServerOptions(l)...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return s
}

func limits() peerlimit.Limits {
	return peerlimit.Limits{MaxConnections: 6, MaxConcurrentStreams: 16, MaxRecvMsgBytes: 1 << 20, MaxSendMsgBytes: 1 << 20,
		KeepaliveMinTime: time.Second, KeepaliveTime: time.Minute, KeepaliveTimeout: 10 * time.Second,
		HandshakeTimeout: 300 * time.Millisecond}
}

func check(t *testing.T, cc *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("an honest call failed: %v", err)
	}
}

func client(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestASlowlorisIsCutAtTheHandshakeTimeoutAndHonestClientsAreServed(t *testing.T) {
	s := start(t, limits())
	honest := client(t, s.addr)
	check(t, honest)

	// Ten connections dribble the HTTP/2 preface a byte every 50 ms: five take the free slots
	// and are cut at the handshake timeout, five are refused at accept.
	const n = 10
	var closed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range n {
		nc, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			for _, b := range []byte(http2.ClientPreface) {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				if _, err := nc.Write([]byte{b}); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, nc)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				closed.Add(1)
			}
			nc.Close()
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	check(t, honest) // during the attack
	testkit.WaitFor(t, "every slowloris connection closed by the server", 10*time.Second, func() bool { return closed.Load() == n })
	if r, i := s.refused.Load(), s.incomplete.Load(); r+i != n || r == 0 || i == 0 {
		t.Fatalf("refused %d + incomplete %d, want %d, some of each", r, i, n)
	}
	check(t, honest)
	check(t, client(t, s.addr)) // a new client after the attack
}

func TestAMessageLengthPrefixOverTheLimitIsRefusedAtTheHeader(t *testing.T) {
	s := start(t, limits())
	honest := client(t, s.addr)
	check(t, honest)

	for _, tc := range []struct {
		name string
		then func(fr *http2.Framer)
	}{
		{"then stalls", func(*http2.Framer) {}},
		{"then floods", func(fr *http2.Framer) {
			junk := make([]byte, 16<<10)
			for range 3 { // 48 KiB: within the stream's initial 64 KiB flow-control window
				if fr.WriteData(1, false, junk) != nil {
					return
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
				t.Fatal(err)
			}
			fr := http2.NewFramer(nc, nc)
			fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/grpc.health.v1.Health/Check"},
				{":authority", s.addr}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
				_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
			}
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
			// A gRPC message header claiming 1 MiB + 1 byte, one over the limit, and 2 bytes of it.
			msg := binary.BigEndian.AppendUint32([]byte{0}, 1<<20+1)
			if err := fr.WriteData(1, false, append(msg, 'x', 'x')); err != nil {
				t.Fatal(err)
			}
			go tc.then(fr)
			status, text := "", ""
			for status == "" {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("no status for the stream: %v", err)
				}
				switch f := f.(type) {
				case *http2.MetaHeadersFrame:
					if f.StreamID == 1 {
						status, text = f.PseudoValue("status"), ""
						for _, hf := range f.Fields {
							switch hf.Name {
							case "grpc-status":
								status = hf.Value
							case "grpc-message":
								text = hf.Value
							}
						}
						if status == "200" {
							status = "" // response headers; the status comes in the trailers
						}
					}
				case *http2.RSTStreamFrame:
					t.Fatalf("stream reset (%v) without a gRPC status", f.ErrCode)
				}
			}
			if status != "8" { // RESOURCE_EXHAUSTED
				t.Fatalf("grpc-status %s (%s), want 8", status, text)
			}
			t.Logf("refused: grpc-status %s: %s", status, text)
			check(t, honest)
		})
	}
}
