// Command kairos-healthprobe asks a gRPC server for its grpc.health.v1 status and exits 0 only when
// it answers SERVING. Container images and Kubernetes exec probes use it where a native gRPC probe
// cannot follow (plain Docker healthchecks, TLS and mutual TLS endpoints).
//
// Exit codes: 0 serving, 1 not serving or unknown service, 2 usage or TLS material error,
// 3 connection or RPC failure (including the timeout).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// config is everything one probe needs; every field has a flag and a KAIROS_HEALTHPROBE_* variable.
type config struct {
	Addr       string        // host:port of the gRPC server
	Service    string        // health service name; "" asks for the whole server
	Timeout    time.Duration // bound for connect plus the Check call
	TLS        bool          // use TLS (implied by CA, cert or key)
	CAFile     string        // PEM roots that verify the server; system roots when empty
	CertFile   string        // client certificate for mutual TLS
	KeyFile    string        // client key for mutual TLS
	ServerName string        // name checked against the server certificate; host of Addr when empty
}

const (
	exitServing    = 0
	exitNotServing = 1
	exitUsage      = 2
	exitRPC        = 3
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// envOr reads an environment variable; empty counts as unset, so compose files can pass
// "${VAR:-}" through without overriding the defaults.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("kairos-healthprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", envOr("KAIROS_HEALTHPROBE_ADDR", "127.0.0.1:7401"), "gRPC server address host:port (KAIROS_HEALTHPROBE_ADDR)")
	fs.StringVar(&c.Service, "service", envOr("KAIROS_HEALTHPROBE_SERVICE", ""), "health service name, empty for the whole server (KAIROS_HEALTHPROBE_SERVICE)")
	timeout := envOr("KAIROS_HEALTHPROBE_TIMEOUT", "3s")
	fs.StringVar(&timeout, "timeout", timeout, "deadline for connect and check (KAIROS_HEALTHPROBE_TIMEOUT)")
	useTLS := envOr("KAIROS_HEALTHPROBE_TLS", "false") == "true"
	fs.BoolVar(&c.TLS, "tls", useTLS, "connect with TLS (KAIROS_HEALTHPROBE_TLS=true)")
	fs.StringVar(&c.CAFile, "tls-ca", envOr("KAIROS_HEALTHPROBE_TLS_CA", ""), "PEM CA bundle verifying the server (KAIROS_HEALTHPROBE_TLS_CA)")
	fs.StringVar(&c.CertFile, "tls-cert", envOr("KAIROS_HEALTHPROBE_TLS_CERT", ""), "client certificate PEM for mutual TLS (KAIROS_HEALTHPROBE_TLS_CERT)")
	fs.StringVar(&c.KeyFile, "tls-key", envOr("KAIROS_HEALTHPROBE_TLS_KEY", ""), "client key PEM for mutual TLS (KAIROS_HEALTHPROBE_TLS_KEY)")
	fs.StringVar(&c.ServerName, "tls-server-name", envOr("KAIROS_HEALTHPROBE_TLS_SERVER_NAME", ""), "expected server name (KAIROS_HEALTHPROBE_TLS_SERVER_NAME)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	d, err := time.ParseDuration(timeout)
	if err != nil || d <= 0 {
		return c, fmt.Errorf("invalid timeout %q: want a positive duration such as 3s", timeout)
	}
	c.Timeout = d
	if (c.CertFile == "") != (c.KeyFile == "") {
		return c, errors.New("mutual TLS needs both -tls-cert and -tls-key")
	}
	if c.CAFile != "" || c.CertFile != "" {
		c.TLS = true
	}
	return c, nil
}

func transport(c config) (credentials.TransportCredentials, error) {
	if !c.TLS {
		return insecure.NewCredentials(), nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(tc), nil
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "kairos-healthprobe:", err)
		}
		return exitUsage
	}
	creds, err := transport(c)
	if err != nil {
		fmt.Fprintln(stderr, "kairos-healthprobe:", err)
		return exitUsage
	}
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		fmt.Fprintln(stderr, "kairos-healthprobe:", err)
		return exitUsage
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: c.Service}, grpc.WaitForReady(true))
	if err != nil {
		fmt.Fprintf(stderr, "kairos-healthprobe: %s service %q: %v\n", c.Addr, c.Service, err)
		return exitRPC
	}
	fmt.Fprintf(stdout, "%s service %q: %s\n", c.Addr, c.Service, resp.GetStatus())
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return exitNotServing
	}
	return exitServing
}
