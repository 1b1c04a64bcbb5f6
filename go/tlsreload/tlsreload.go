// Package tlsreload serves gRPC over TLS from certificate files that may change while the service
// runs (ADR 0063): the pair and the client CA are re-read when their files change, and a pair that
// fails to load is logged and counted while the previous one keeps serving. It also builds the
// client side (a CA to verify the server, an optional client pair for mutual TLS).
//
// It is its own module in go.work, shared by the collector and the execution service.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
)

// Counter counts failed reloads (a Prometheus counter satisfies it).
type Counter interface{ Inc() }

// ServerConfig names the server's PEM files. Cert and key both set turn TLS on; ClientCA adds
// mutual TLS.
type ServerConfig struct {
	CertFile, KeyFile, ClientCAFile string
	// Names are the flag names used in errors (e.g. "tls-cert", "tls-key", "tls-client-ca").
	CertName, KeyName, ClientCAName string
}

// Enabled reports whether TLS is configured.
func (c ServerConfig) Enabled() bool { return c.CertFile != "" && c.KeyFile != "" }

// Validate rejects a certificate without its key (or the reverse) and a client CA without TLS.
func (c ServerConfig) Validate() error {
	cert, key, ca := name(c.CertName, "tls-cert"), name(c.KeyName, "tls-key"), name(c.ClientCAName, "tls-client-ca")
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%s and %s must be set together (TLS needs both the certificate and its key)", cert, key)
	}
	if c.ClientCAFile != "" && !c.Enabled() {
		return fmt.Errorf("%s (mutual TLS) needs %s and %s", ca, cert, key)
	}
	return nil
}

func name(n, def string) string {
	if n == "" {
		return def
	}
	return n
}

// stamp identifies a file version: a change of either means the file was replaced or rewritten.
type stamp struct {
	mod  time.Time
	size int64
}

func stat(path string) (stamp, error) {
	if path == "" {
		return stamp{}, nil
	}
	fi, err := os.Stat(path) // follows symlinks: Kubernetes swaps a Secret mount's ..data link
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// Server holds the current TLS material and re-reads it on handshakes after its files change.
type Server struct {
	cfg      ServerConfig
	failures Counter
	log      *slog.Logger

	mu      sync.Mutex
	current *tls.Config
	loaded  [3]stamp // the version serving now
	failed  [3]stamp // the last version that failed, not retried until the files change again
}

// NewServer loads the files once (a failure here is a start-up error) and returns the reloading
// holder. failures may be nil.
func NewServer(cfg ServerConfig, failures Counter, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("tlsreload: TLS not configured")
	}
	s := &Server{cfg: cfg, failures: failures, log: log}
	st, err := s.stamps()
	if err != nil {
		return nil, err
	}
	c, err := s.load()
	if err != nil {
		return nil, err
	}
	s.current, s.loaded = c, st
	return s, nil
}

func (s *Server) stamps() ([3]stamp, error) {
	var out [3]stamp
	var errs []error
	for i, p := range []string{s.cfg.CertFile, s.cfg.KeyFile, s.cfg.ClientCAFile} {
		st, err := stat(p)
		out[i] = st
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// load reads the pair and the client CA into a fresh config.
func (s *Server) load() (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS pair %s / %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}}
	if s.cfg.ClientCAFile != "" {
		pool, err := loadPool(s.cfg.ClientCAFile)
		if err != nil {
			return nil, err
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Config returns the material for the next handshake, reloading it first when a file changed.
// A stat per handshake is cheap next to the handshake, and gRPC connections are long-lived.
func (s *Server) Config() *tls.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.stamps()
	if st == s.loaded || st == s.failed {
		return s.current
	}
	if err == nil {
		var c *tls.Config
		if c, err = s.load(); err == nil {
			s.current, s.loaded = c, st
			if s.log != nil {
				s.log.Info("TLS certificate reloaded", "cert", s.cfg.CertFile, "client_ca", s.cfg.ClientCAFile)
			}
			return s.current
		}
	}
	s.failed = st
	if s.failures != nil {
		s.failures.Inc()
	}
	if s.log != nil {
		s.log.Error("TLS certificate reload failed; still serving the previous one", "cert", s.cfg.CertFile, "err", err)
	}
	return s.current
}

// TLSConfig is the server configuration to hand to a listener: every handshake goes through Config.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return s.Config(), nil },
	}
}

// Credentials are the gRPC server credentials (grpc.Creds).
func (s *Server) Credentials() credentials.TransportCredentials {
	return credentials.NewTLS(s.TLSConfig())
}

// ClientConfig names a client's PEM files: CA verifies the server (TLS on when set), Cert and Key
// are the client pair for mutual TLS.
type ClientConfig struct {
	CAFile, CertFile, KeyFile string
	// ServerName overrides the name checked in the server's certificate (default: the dialled host).
	ServerName string
	// Names are the flag names used in errors.
	CAName, CertName, KeyName string
}

// Enabled reports whether the client speaks TLS.
func (c ClientConfig) Enabled() bool { return c.CAFile != "" }

// Validate rejects half a client pair and a pair without a CA.
func (c ClientConfig) Validate() error {
	ca, cert, key := name(c.CAName, "tls-ca"), name(c.CertName, "tls-cert"), name(c.KeyName, "tls-key")
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("%s and %s must be set together (the client certificate needs its key)", cert, key)
	}
	if c.CertFile != "" && c.CAFile == "" {
		return fmt.Errorf("%s and %s need %s (the CA that verifies the server)", cert, key, ca)
	}
	return nil
}

// Credentials loads the files into gRPC client credentials.
func (c ClientConfig) Credentials() (credentials.TransportCredentials, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	pool, err := loadPool(c.CAFile)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: c.ServerName}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client TLS pair %s / %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(tc), nil
}
