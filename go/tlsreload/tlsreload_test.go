package tlsreload_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kairos-mt5/kairos/go/tlsreload"
	"github.com/kairos-mt5/kairos/go/tlsreload/tlstest"
)

type count struct{ n atomic.Int64 }

func (c *count) Inc() { c.n.Add(1) }

// serve runs a real gRPC health server on 127.0.0.1 with the reloading credentials.
func serve(t *testing.T, cfg tlsreload.ServerConfig, failures *count) (string, *tlsreload.Server) {
	t.Helper()
	srv, err := tlsreload.NewServer(cfg, failures, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(srv.Credentials()))
	healthpb.RegisterHealthServer(g, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = g.Serve(ln) }()
	t.Cleanup(func() { g.Stop(); <-done })
	return ln.Addr().String(), srv
}

// check makes one health call on a fresh connection and returns its error.
func check(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func clientCreds(t *testing.T, c tlsreload.ClientConfig) credentials.TransportCredentials {
	t.Helper()
	cr, err := c.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

// peerCert returns the leaf the server presents on a fresh handshake.
func peerCert(t *testing.T, addr string) []byte {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // inspecting only
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

func TestTLSServesVerifiedClientsAndRefusesPlaintext(t *testing.T) {
	f := tlstest.NewFiles(t)
	addr, _ := serve(t, tlsreload.ServerConfig{CertFile: f.ServerCert, KeyFile: f.ServerKey}, nil)
	if err := check(t, addr, clientCreds(t, tlsreload.ClientConfig{CAFile: f.CAFile})); err != nil {
		t.Fatalf("TLS client: %v", err)
	}
	if err := check(t, addr, insecure.NewCredentials()); err == nil {
		t.Fatal("plaintext client was served by a TLS-only server")
	}
	other := tlstest.NewCA(t, "other CA")
	otherFile := tlstest.Write(t, t.TempDir(), "other.crt", other.CertPEM)
	if err := check(t, addr, clientCreds(t, tlsreload.ClientConfig{CAFile: otherFile})); err == nil {
		t.Fatal("client trusting another CA accepted the server")
	}
}

func TestTLSRefusesVersionsBelow12(t *testing.T) {
	f := tlstest.NewFiles(t)
	addr, _ := serve(t, tlsreload.ServerConfig{CertFile: f.ServerCert, KeyFile: f.ServerKey}, nil)
	handshake := func(v uint16) error {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: v, //nolint:gosec // probing the server's floor
			NextProtos: []string{"h2"}})
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := handshake(tls.VersionTLS12); err != nil {
		t.Fatalf("control: the same client at TLS 1.2: %v", err)
	}
	if err := handshake(tls.VersionTLS11); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("TLS 1.1 handshake: %v, want a protocol version alert", err)
	}
}

func TestMutualTLSRequiresAClientCertificateFromTheConfiguredCA(t *testing.T) {
	f := tlstest.NewFiles(t)
	addr, _ := serve(t, tlsreload.ServerConfig{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CAFile}, nil)
	other := tlstest.NewCA(t, "other CA")
	dir := t.TempDir()
	oc, okey := other.Issue(t, "intruder")
	tests := []struct {
		name string
		cfg  tlsreload.ClientConfig
		ok   bool
	}{
		{"client with a certificate from the CA", tlsreload.ClientConfig{CAFile: f.CAFile, CertFile: f.ClientCert, KeyFile: f.ClientKey}, true},
		{"client without a certificate", tlsreload.ClientConfig{CAFile: f.CAFile}, false},
		{"client signed by another CA", tlsreload.ClientConfig{CAFile: f.CAFile,
			CertFile: tlstest.Write(t, dir, "o.crt", oc), KeyFile: tlstest.Write(t, dir, "o.key", okey)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := check(t, addr, clientCreds(t, tc.cfg))
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("served")
			}
		})
	}
}

func TestReloadPicksUpANewCertificateAndKeepsTheOldOneWhenTheNewIsBroken(t *testing.T) {
	f := tlstest.NewFiles(t)
	var failures count
	addr, _ := serve(t, tlsreload.ServerConfig{CertFile: f.ServerCert, KeyFile: f.ServerKey}, &failures)
	first := peerCert(t, addr)

	// A renewed pair from the same CA: new handshakes present it, verified clients still connect.
	c2, k2 := f.CA.Issue(t, "server renewed")
	rewrite(t, f.ServerCert, c2)
	rewrite(t, f.ServerKey, k2)
	second := peerCert(t, addr)
	if string(second) == string(first) {
		t.Fatal("server still presents the first certificate after the files changed")
	}
	if err := check(t, addr, clientCreds(t, tlsreload.ClientConfig{CAFile: f.CAFile})); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	if failures.n.Load() != 0 {
		t.Fatalf("failures = %d after a good reload", failures.n.Load())
	}

	// A broken certificate (truncated PEM): the renewed pair keeps serving, one failure counted.
	rewrite(t, f.ServerCert, c2[:len(c2)/2])
	for range 3 {
		if got := peerCert(t, addr); string(got) != string(second) {
			t.Fatal("server changed its certificate to something after a broken reload")
		}
	}
	if err := check(t, addr, clientCreds(t, tlsreload.ClientConfig{CAFile: f.CAFile})); err != nil {
		t.Fatalf("after broken reload: %v", err)
	}
	if n := failures.n.Load(); n != 1 {
		t.Fatalf("failures = %d, want 1 (counted once per broken version)", n)
	}
}

func TestAMissingFileKeepsThePairServingUntilANewPairArrives(t *testing.T) {
	f := tlstest.NewFiles(t)
	var failures count
	addr, _ := serve(t, tlsreload.ServerConfig{CertFile: f.ServerCert, KeyFile: f.ServerKey}, &failures)
	first := peerCert(t, addr)
	if err := os.Remove(f.ServerKey); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if string(peerCert(t, addr)) != string(first) {
			t.Fatal("certificate changed while the key file was missing")
		}
	}
	if n := failures.n.Load(); n != 1 {
		t.Fatalf("failures = %d, want 1 while the file stays missing", n)
	}
	c2, k2 := f.CA.Issue(t, "server renewed")
	rewrite(t, f.ServerCert, c2)
	rewrite(t, f.ServerKey, k2)
	if string(peerCert(t, addr)) == string(first) {
		t.Fatal("the new pair was not picked up after the files came back")
	}
}

func rewrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestServerConfigNamesBothFilesWhenOneIsMissing(t *testing.T) {
	tests := []struct {
		name string
		cfg  tlsreload.ServerConfig
		want []string
	}{
		{"cert without key", tlsreload.ServerConfig{CertFile: "a"}, []string{"tls-cert", "tls-key"}},
		{"key without cert", tlsreload.ServerConfig{KeyFile: "b"}, []string{"tls-cert", "tls-key"}},
		{"client CA without pair", tlsreload.ServerConfig{ClientCAFile: "c"}, []string{"tls-client-ca", "tls-cert", "tls-key"}},
		{"none", tlsreload.ServerConfig{}, nil},
		{"both", tlsreload.ServerConfig{CertFile: "a", KeyFile: "b"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

func TestNewServerFailsOnUnreadableFiles(t *testing.T) {
	f := tlstest.NewFiles(t)
	if _, err := tlsreload.NewServer(tlsreload.ServerConfig{CertFile: f.ServerCert, KeyFile: f.ClientKey}, nil, nil); err == nil {
		t.Fatal("mismatched pair accepted")
	}
	if _, err := tlsreload.NewServer(tlsreload.ServerConfig{CertFile: f.ServerCert + ".missing", KeyFile: f.ServerKey}, nil, nil); err == nil {
		t.Fatal("missing certificate accepted")
	}
}
