package app_test

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/app"
	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/tlsreload"
	"github.com/kairos-mt5/kairos/go/tlsreload/tlstest"
)

// syncBuf is a log sink the service's goroutines may write concurrently.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startTLS runs the execution service over mutual TLS with f's server pair and CA, the token secret
// and the extra flags; it stops at test cleanup.
func startTLS(t *testing.T, f tlstest.Files, secret string, extra ...string) (app.Ready, *syncBuf) {
	t.Helper()
	args := append([]string{"--grpc-addr", "127.0.0.1:0", "--metrics-addr", "", "--nats-url", "",
		"--db", filepath.Join(t.TempDir(), "exec.db"), "--log-level", "debug",
		"--tls-cert", f.ServerCert, "--tls-key", f.ServerKey, "--tls-client-ca", f.CAFile}, extra...)
	cfg, err := config.Parse("test", args, func(k string) string {
		if k == "KAIROS_EXECUTION_TOKEN" {
			return secret
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	readyc, done := make(chan app.Ready, 1), make(chan error, 1)
	go func() { done <- app.Run(ctx, cfg, log, func(r app.Ready) { readyc <- r }) }()
	var rd app.Ready
	select {
	case rd = <-readyc:
	case err := <-done:
		cancel()
		t.Fatalf("service did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("service did not start in 20s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("service exited with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("service did not shut down in 20s")
		}
	})
	return rd, logs
}

// The order API speaks mutual TLS only; the bearer token still guards mutating calls over it and
// appears in no log line, even at debug level.
func TestOrderAPIOverMutualTLSAndTheTokenIsNeverLogged(t *testing.T) {
	f := tlstest.NewFiles(t)
	const secret = "tls-test-token-5d1c9e"
	rd, logs := startTLS(t, f, secret)

	dial := func(creds credentials.TransportCredentials) *grpc.ClientConn {
		cc, err := grpc.NewClient(rd.GRPCAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	callCtx := func() context.Context {
		c, cl := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cl)
		return c
	}
	mtls, err := tlsreload.ClientConfig{CAFile: f.CAFile, CertFile: f.ClientCert, KeyFile: f.ClientKey}.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := tlsreload.ClientConfig{CAFile: f.CAFile}.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	for name, creds := range map[string]credentials.TransportCredentials{"plaintext": insecure.NewCredentials(), "no client certificate": noCert} {
		if _, err := healthpb.NewHealthClient(dial(creds)).Check(callCtx(), &healthpb.HealthCheckRequest{}); err == nil {
			t.Errorf("%s client was served", name)
		}
	}
	cc := dial(mtls)
	if h, err := healthpb.NewHealthClient(cc).Check(callCtx(), &healthpb.HealthCheckRequest{}); err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health over mutual TLS: %v %v", h, err)
	}
	client := execv1.NewExecutionServiceClient(cc)
	halt := &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED, Reason: "tls test"}
	wrong := metadata.AppendToOutgoingContext(callCtx(), "authorization", "Bearer not-"+secret)
	if _, err := client.SetTradingState(wrong, halt); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong token over TLS: %v", err)
	}
	right := metadata.AppendToOutgoingContext(callCtx(), "authorization", "Bearer "+secret)
	if _, err := client.SetTradingState(right, halt); err != nil {
		t.Fatalf("right token over TLS: %v", err)
	}
	if out := logs.String(); strings.Contains(out, secret) {
		t.Fatalf("the bearer token appears in the logs:\n%s", out)
	} else if !strings.Contains(out, `"grpc_mtls":true`) {
		t.Fatalf("start-up log does not report mutual TLS:\n%s", out)
	}
}

func TestTLSCertWithoutKeyIsAConfigErrorNamingBoth(t *testing.T) {
	for _, args := range [][]string{{"--tls-cert", "/c"}, {"--tls-key", "/k"}} {
		_, err := config.Parse("test", args, func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), "tls-cert") || !strings.Contains(err.Error(), "tls-key") {
			t.Errorf("%v: %v", args, err)
		}
	}
	c, err := config.Parse("test", nil, func(k string) string {
		return map[string]string{"KAIROS_EXECUTION_TLS_CERT": "/c", "KAIROS_EXECUTION_TLS_KEY": "/k", "KAIROS_EXECUTION_TLS_CLIENT_CA": "/ca"}[k]
	})
	if err != nil || c.TLSCert != "/c" || c.TLSKey != "/k" || c.TLSClientCA != "/ca" {
		t.Fatalf("from the environment: %+v %v", c, err)
	}
}

// A client certificate named in --tls-client-identities stands in for the bearer token over mutual
// TLS; a certificate from the same CA with another name still needs the token.
func TestAClientCertificateIdentityStandsInForTheToken(t *testing.T) {
	f := tlstest.NewFiles(t)
	dir := t.TempDir()
	oc, ok := f.CA.Issue(t, "kairos-operator")
	stranger, sk := f.CA.Issue(t, "someone-else")
	rd, _ := startTLS(t, f, "tls-identity-token-8a2f", "--tls-client-identities", "kairos-operator")
	client := func(cert, key []byte) execv1.ExecutionServiceClient {
		creds, err := tlsreload.ClientConfig{CAFile: f.CAFile, CertFile: tlstest.Write(t, dir, "c.crt", cert),
			KeyFile: tlstest.Write(t, dir, "c.key", key)}.Credentials()
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(rd.GRPCAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		// Connect now: the files are rewritten for the next client.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		return execv1.NewExecutionServiceClient(cc)
	}
	operator, other := client(oc, ok), client(stranger, sk)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := operator.ListOrders(ctx, &execv1.ListOrdersRequest{}); err != nil {
		t.Fatalf("the named certificate without a token: %v", err)
	}
	halt := &execv1.SetTradingStateRequest{State: execv1.TradingState_TRADING_STATE_HALTED, Reason: "identity test"}
	if _, err := operator.SetTradingState(ctx, halt); err != nil {
		t.Fatalf("a mutating call with the named certificate: %v", err)
	}
	if _, err := other.ListOrders(ctx, &execv1.ListOrdersRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("another certificate without a token: %v", err)
	}
	withToken := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer tls-identity-token-8a2f")
	if _, err := other.ListOrders(withToken, &execv1.ListOrdersRequest{}); err != nil {
		t.Fatalf("another certificate with the token: %v", err)
	}
}

func TestClientIdentitiesNeedMutualTLS(t *testing.T) {
	_, err := config.Parse("test", []string{"--tls-client-identities", "kairos-operator"}, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "tls-client-identities needs tls-client-ca") {
		t.Fatalf("got %v", err)
	}
}
