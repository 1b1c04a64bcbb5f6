package collector

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	collectorv1 "github.com/kairos-mt5/kairos/gen/go/kairos/collector/v1"

	"github.com/kairos-mt5/kairos/go/collector/internal/testinfer"
	"github.com/kairos-mt5/kairos/go/collector/internal/ticksdata"
	"github.com/kairos-mt5/kairos/go/testkit"
	"github.com/kairos-mt5/kairos/go/tlsreload"
	"github.com/kairos-mt5/kairos/go/tlsreload/tlstest"
)

func tlsHealth(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		return err
	}
	rs, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		return err
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		return err
	}
	_, err = rs.Recv()
	return err
}

// The collector's gRPC port (market data, health, reflection) speaks mutual TLS only, and its
// inference link reaches a mutual-TLS inference server with its own client pair.
func TestMutualTLSOnTheGRPCPortAndTheInferenceLink(t *testing.T) {
	f := tlstest.NewFiles(t)
	srv, err := tlsreload.NewServer(tlsreload.ServerConfig{CertFile: f.ServerCert, KeyFile: f.ServerKey, ClientCAFile: f.CAFile}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	inf, err := testinfer.Start("127.0.0.1:0", grpc.Creds(srv.Credentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inf.Stop)
	cfg := testConfig()
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = f.ServerCert, f.ServerKey, f.CAFile
	cfg.InferenceEndpoints = []string{inf.Addr}
	cfg.InferenceTLSCA, cfg.InferenceTLSCert, cfg.InferenceTLSKey = f.CAFile, f.ClientCert, f.ClientKey
	svc := start(t, cfg)

	withCert, err := tlsreload.ClientConfig{CAFile: f.CAFile, CertFile: f.ClientCert, KeyFile: f.ClientKey}.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	withoutCert, err := tlsreload.ClientConfig{CAFile: f.CAFile}.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	if err := tlsHealth(t, svc.GRPCAddr(), withCert); err != nil {
		t.Fatalf("health and reflection over mutual TLS: %v", err)
	}
	if err := tlsHealth(t, svc.GRPCAddr(), withoutCert); err == nil {
		t.Fatal("client without a certificate was served")
	}
	if err := tlsHealth(t, svc.GRPCAddr(), insecure.NewCredentials()); err == nil {
		t.Fatal("plaintext client was served")
	}

	ticks := realTicks(t)[:200]
	br := dialBridge(t, svc.BridgeAddr())
	br.send(t, golden(t, "frame_hello"), golden(t, "frame_symbol_info"))
	br.welcome(t)
	seq := uint64(3)
	for _, b := range ticksdata.Batches("EURUSD", ticks, 100, 1) {
		br.send(t, ticksFrame(seq, b))
		seq++
	}
	testkit.WaitFor(t, "ticks at the TLS inference server", 20*time.Second, func() bool { return inf.Ticks()["EURUSD"] == len(ticks) })
}

// A client certificate named in TLSClientIdentities reads market data without the token; another
// certificate from the same CA still needs it (ADR 0063).
func TestAClientCertificateIdentityStandsInForTheCollectorToken(t *testing.T) {
	f := tlstest.NewFiles(t)
	cfg := testConfig()
	cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA = f.ServerCert, f.ServerKey, f.CAFile
	cfg.TLSClientIdentities = []string{"kairos-dashboard"}
	svc := start(t, cfg)
	dir := t.TempDir()
	list := func(cn string) error {
		cert, key := f.CA.Issue(t, cn)
		creds, err := tlsreload.ClientConfig{CAFile: f.CAFile, CertFile: tlstest.Write(t, dir, cn+".crt", cert),
			KeyFile: tlstest.Write(t, dir, cn+".key", key)}.Credentials()
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(svc.GRPCAddr(), grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = collectorv1.NewMarketDataServiceClient(cc).ListSymbols(ctx, &collectorv1.ListSymbolsRequest{})
		return err
	}
	if err := list("kairos-dashboard"); err != nil {
		t.Fatalf("the named certificate without a token: %v", err)
	}
	if err := list("someone-else"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("another certificate without a token: %v", err)
	}
}
