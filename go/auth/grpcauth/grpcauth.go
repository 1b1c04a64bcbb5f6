// Package grpcauth is the bearer-token gate every Kairos Go gRPC server puts in front of its
// services (ADR 0064): every RPC needs "authorization: Bearer <token>", compared in constant time,
// except gRPC health (liveness and readiness probes must work without a secret) and reflection
// (the schema is the public contract in proto/; reflection answers no data). A service may open its
// read-only methods to loopback peers (--open-reads-on-loopback, off by default). An empty token
// refuses every gated call: a service never runs open by accident.
//
// A client certificate may stand in for the token (Policy.ClientIdentities): over mutual TLS, a
// client whose verified certificate names one of the configured identities (its subject common
// name, a DNS or a URI subject alternative name) passes without the bearer token. Only a chain the
// TLS handshake verified against the server's client CA counts, so the identity needs mutual TLS.
//
// The token is read from a file or an environment variable, never from argv, and never logged.
package grpcauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Sentinel refusals; the interceptors return them as UNAUTHENTICATED statuses.
var (
	// ErrNoTokenConfigured: the server has no token, so every gated call is refused.
	ErrNoTokenConfigured = errors.New("the service has no token configured: every call is refused (set its --token-file or KAIROS_<SERVICE>_TOKEN)")
	// ErrBadToken: the call carried no bearer token, or a wrong one.
	ErrBadToken = errors.New("missing or wrong bearer token (metadata \"authorization: Bearer <token>\")")
)

// Policy says which calls pass.
type Policy struct {
	// Token is the bearer token every gated call needs; empty refuses them all.
	Token string
	// Reads are the full method names (/pkg.Service/Method) that only read.
	Reads map[string]bool
	// OpenReadsOnLoopback lets Reads through without the token when the peer is a loopback address.
	OpenReadsOnLoopback bool
	// ClientIdentities are the client-certificate identities accepted in place of the token: a
	// certificate the server verified (mutual TLS) whose subject CN, a DNS SAN or a URI SAN is one
	// of them passes every gated call. Empty: the token is the only credential.
	ClientIdentities []string
}

// Open reports whether method needs no token: gRPC health and server reflection.
func Open(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/") || strings.HasPrefix(method, "/grpc.reflection.")
}

// Check returns nil when the call may proceed, else an UNAUTHENTICATED status error.
func (p Policy) Check(ctx context.Context, method string) error {
	if Open(method) {
		return nil
	}
	if p.OpenReadsOnLoopback && p.Reads[method] && loopbackPeer(ctx) {
		return nil
	}
	if len(p.ClientIdentities) > 0 && p.certifiedPeer(ctx) {
		return nil
	}
	if p.Token == "" {
		return status.Error(codes.Unauthenticated, ErrNoTokenConfigured.Error())
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		got, ok := strings.CutPrefix(v, "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(got), []byte(p.Token)) == 1 {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, ErrBadToken.Error())
}

// certifiedPeer reports whether the call came over mutual TLS with a verified client certificate
// that names one of p.ClientIdentities.
func (p Policy) certifiedPeer(ctx context.Context) bool {
	for _, name := range PeerIdentities(ctx) {
		if slices.Contains(p.ClientIdentities, name) {
			return true
		}
	}
	return false
}

// PeerIdentities are the names of the call's client certificate, when the TLS handshake verified
// it (mutual TLS): the subject common name, the DNS and the URI subject alternative names. None
// without TLS, without a client certificate, or when the server did not verify it.
func PeerIdentities(ctx context.Context) []string {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.AuthInfo == nil {
		return nil
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	leaf := info.State.VerifiedChains[0][0]
	var names []string
	if leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	names = append(names, leaf.DNSNames...)
	for _, u := range leaf.URIs {
		names = append(names, u.String())
	}
	return names
}

func loopbackPeer(ctx context.Context) bool {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return false
	}
	if a, ok := pr.Addr.(*net.TCPAddr); ok {
		return a.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(pr.Addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Interceptors returns the unary and stream interceptors enforcing p.
func (p Policy) Interceptors() (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := p.Check(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := p.Check(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
	return unary, stream
}

// ServerOptions chains the interceptors as the first of the server's (pass them to grpc.NewServer).
func (p Policy) ServerOptions() []grpc.ServerOption {
	u, s := p.Interceptors()
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(u), grpc.ChainStreamInterceptor(s)}
}

// ReadToken reads a token file: its first line, trimmed. An empty token is an error naming the file.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	if tok == "" {
		return "", fmt.Errorf("%s: empty token", path)
	}
	return tok, nil
}

// Bearer returns client credentials that send the token on every call. secure says whether the
// channel uses TLS; with false the token may travel in plain text (loopback, or a private network
// the deployment trusts), so grpc-go allows it over an insecure channel.
func Bearer(token string, secure bool) credentials.PerRPCCredentials {
	return bearer{token: token, secure: secure}
}

type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// String never shows the token (it may end up in a log through %v).
func (b bearer) String() string { return "grpcauth.Bearer(<redacted>)" }
