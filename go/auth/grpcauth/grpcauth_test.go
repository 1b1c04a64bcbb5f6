package grpcauth_test

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
)

const token = "grpcauth-test-token-91c2"

type testServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (testServer) EmptyCall(context.Context, *testgrpc.Empty) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

func (testServer) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{}, nil
}

func (testServer) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	for {
		if _, err := s.Recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// start serves the test service, health and reflection behind p on 127.0.0.1.
func start(t *testing.T, p grpcauth.Policy) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(p.ServerOptions()...)
	testgrpc.RegisterTestServiceServer(gs, testServer{})
	healthpb.RegisterHealthServer(gs, health.NewServer())
	reflection.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func ctxWith(t *testing.T, auth string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
	}
	return ctx
}

var reads = map[string]bool{testgrpc.TestService_EmptyCall_FullMethodName: true}

func TestEveryCallNeedsTheBearerTokenExceptHealthAndReflection(t *testing.T) {
	type call func(context.Context, *grpc.ClientConn) error
	unary := func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	}
	read := func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := testgrpc.NewTestServiceClient(cc).EmptyCall(ctx, &testgrpc.Empty{})
		return err
	}
	stream := func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(ctx)
		if err != nil {
			return err
		}
		if err := s.CloseSend(); err != nil {
			return err
		}
		_, err = s.Recv()
		if err == io.EOF {
			return nil
		}
		return err
	}
	healthCheck := func(ctx context.Context, cc *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	reflect := func(ctx context.Context, cc *grpc.ClientConn) error {
		s, err := rpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			return err
		}
		if err := s.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	cases := []struct {
		name   string
		policy grpcauth.Policy
		auth   string
		call   call
		want   codes.Code
	}{
		{"Unary_WithTheToken_Passes", grpcauth.Policy{Token: token}, "Bearer " + token, unary, codes.OK},
		{"Unary_WithoutAToken_IsUnauthenticated", grpcauth.Policy{Token: token}, "", unary, codes.Unauthenticated},
		{"Unary_WithAWrongToken_IsUnauthenticated", grpcauth.Policy{Token: token}, "Bearer not-" + token, unary, codes.Unauthenticated},
		{"Unary_WithTheTokenButNotAsBearer_IsUnauthenticated", grpcauth.Policy{Token: token}, token, unary, codes.Unauthenticated},
		{"Unary_WithATokenPrefix_IsUnauthenticated", grpcauth.Policy{Token: token}, "Bearer " + token[:5], unary, codes.Unauthenticated},
		{"Stream_WithTheToken_Passes", grpcauth.Policy{Token: token}, "Bearer " + token, stream, codes.OK},
		{"Stream_WithoutAToken_IsUnauthenticated", grpcauth.Policy{Token: token}, "", stream, codes.Unauthenticated},
		{"Read_WithoutAToken_IsUnauthenticatedByDefault", grpcauth.Policy{Token: token, Reads: reads}, "", read, codes.Unauthenticated},
		{"Read_FromLoopback_PassesWhenReadsAreOpenOnLoopback", grpcauth.Policy{Token: token, Reads: reads, OpenReadsOnLoopback: true}, "", read, codes.OK},
		{"Write_FromLoopback_StillNeedsTheTokenWhenReadsAreOpen", grpcauth.Policy{Token: token, Reads: reads, OpenReadsOnLoopback: true}, "", unary, codes.Unauthenticated},
		{"NoTokenConfigured_RefusesEveryCallWhateverTheHeader", grpcauth.Policy{}, "Bearer ", unary, codes.Unauthenticated},
		{"Health_NeedsNoToken", grpcauth.Policy{Token: token}, "", healthCheck, codes.OK},
		{"Reflection_NeedsNoToken", grpcauth.Policy{Token: token}, "", reflect, codes.OK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cc := start(t, c.policy)
			err := c.call(ctxWith(t, c.auth), cc)
			if got := status.Code(err); got != c.want {
				t.Fatalf("code %v (%v), want %v", got, err, c.want)
			}
		})
	}
}

func TestOpenReadsOnLoopbackRefusesReadsFromOtherPeers(t *testing.T) {
	p := grpcauth.Policy{Token: token, Reads: reads, OpenReadsOnLoopback: true}
	for _, c := range []struct {
		name string
		addr net.Addr
		want codes.Code
	}{
		{"IPv4Loopback", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}, codes.OK},
		{"IPv6Loopback", &net.TCPAddr{IP: net.IPv6loopback, Port: 5}, codes.OK},
		{"PrivateAddress", &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5}, codes.Unauthenticated},
		{"NoPeer", nil, codes.Unauthenticated},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			if c.addr != nil {
				ctx = peer.NewContext(ctx, &peer.Peer{Addr: c.addr})
			}
			if got := status.Code(p.Check(ctx, testgrpc.TestService_EmptyCall_FullMethodName)); got != c.want {
				t.Fatalf("code %v, want %v", got, c.want)
			}
		})
	}
}

func TestBearerCredentialsAuthenticateAClient(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpcauth.Policy{Token: token}.ServerOptions()...)
	testgrpc.RegisterTestServiceServer(gs, testServer{})
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(grpcauth.Bearer(token, false)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := testgrpc.NewTestServiceClient(cc).UnaryCall(ctxWith(t, ""), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("call with Bearer credentials: %v", err)
	}
	if s := grpcauth.Bearer(token, false).(interface{ String() string }).String(); s == "" || strings.Contains(s, token) {
		t.Fatalf("String() shows the token: %q", s)
	}
}

func TestReadTokenTakesTheFirstLineAndRefusesAnEmptyFile(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, content, want string
		wantErr             bool
	}{
		{"FirstLineTrimmed", "  abc \nignored\n", "abc", false},
		{"Empty", "\n", "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := grpcauth.ReadToken(p)
			if (err != nil) != c.wantErr || got != c.want {
				t.Fatalf("ReadToken = %q, %v; want %q (error %v)", got, err, c.want, c.wantErr)
			}
		})
	}
	if _, err := grpcauth.ReadToken(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing file is not an error")
	}
}
