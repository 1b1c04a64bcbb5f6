// Package config is the collector's one typed configuration: every field has a flag and a
// KAIROS_COLLECTOR_* environment variable (flags win over the environment, the environment over
// defaults; the rules are go/envflag's, shared with the execution service), and the defaults are
// safe: everything binds 127.0.0.1.
package config

import (
	"errors"
	"fmt"
	"github.com/kairos-mt5/kairos/go/auth/peerlimit"
	"net"
	"os"
	"strings"
	"time"

	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
	"github.com/kairos-mt5/kairos/go/bridgelink"
	"github.com/kairos-mt5/kairos/go/collector/bars"
	"github.com/kairos-mt5/kairos/go/collector/fanout"
	"github.com/kairos-mt5/kairos/go/envflag"
	"github.com/kairos-mt5/kairos/go/tlsreload"
)

// EnvPrefix prefixes every environment variable.
const EnvPrefix = "KAIROS_COLLECTOR_"

// Config is the collector's configuration.
type Config struct {
	// BridgeAddr is the TCP address the MT5 bridge connects to.
	BridgeAddr string
	// GRPCAddr serves MarketDataService, gRPC health and reflection.
	GRPCAddr string
	// MetricsAddr serves Prometheus /metrics (and /healthz); empty disables it.
	MetricsAddr string
	// NATSURL is an external NATS server; empty runs the embedded one on NATSAddr.
	NATSURL string
	// NATSAddr is the embedded NATS server's listen address (loopback by default).
	NATSAddr string
	// NATSJetStream publishes ticks and bars to JetStream (streams on the external NATSURL) and
	// acknowledges a bridge frame only once its ticks are stored (ADR 0024).
	NATSJetStream bool
	// NATSAuthFile is the embedded server's users and permissions: a nats-server configuration
	// file with an authorization block (the format of deploy/nats/nats.conf). The embedded server
	// needs it unless NATSInsecure.
	NATSAuthFile string
	// NATSInsecure runs the embedded server without authorization (loopback only): any local process
	// may then publish signals and quotes. The explicit opt-out, as BridgeInsecure is for the bridge.
	NATSInsecure bool
	// NATSCreds is a file holding this service's "user:password" for NATS (embedded or external).
	NATSCreds string
	// Token is the bearer token every MarketDataService call needs; empty refuses them all.
	Token string
	// TokenFile, if set, is read for Token (first line), so it stays out of the process list.
	TokenFile string
	// OpenReadsOnLoopback lets Subscribe and ListSymbols through without the token from loopback peers.
	OpenReadsOnLoopback bool
	// InferenceToken is the bearer token sent on the StreamPredict link.
	InferenceToken string
	// InferenceTokenFile, if set, is read for InferenceToken.
	InferenceTokenFile string
	// InferenceEndpoints are the inference servers' gRPC addresses; empty disables the link.
	InferenceEndpoints []string
	// InferenceBatchTicks flushes a StreamPredict request at this many ticks.
	InferenceBatchTicks int
	// InferenceFlushInterval is how long a request may wait for more ticks once nothing else is
	// queued; 0 (the default) sends it at once (ADR 0108).
	InferenceFlushInterval time.Duration
	// InferenceQueue bounds the tick batches waiting per inference endpoint; overflow is dropped and counted.
	InferenceQueue int
	// InferenceBackoffMin and InferenceBackoffMax bound the reconnect delay.
	InferenceBackoffMin, InferenceBackoffMax time.Duration
	// InferenceResponseTimeout declares an endpoint dead when a request is unanswered this long.
	InferenceResponseTimeout time.Duration
	// InferenceBarPeriod, if set (e.g. M1), sends closed bars of that period to inference instead of ticks.
	InferenceBarPeriod uint32
	// InferenceWarmupBars caps the closed bars fetched from the terminal to warm a symbol on an
	// inference stream before its live ticks (ADR 0105); 0 turns warm-up off.
	InferenceWarmupBars int
	// InferenceWarmupTimeout bounds one warm-up's history fetch (and the model status call).
	InferenceWarmupTimeout time.Duration
	// InferenceWarmupHold bounds the live items held per symbol during its warm-up.
	InferenceWarmupHold int
	// BarPeriods are the bar timeframes built for every symbol, in seconds.
	BarPeriods []uint32
	// BarIdleClose closes a bar whose period is over when its symbol had no tick for this long; 0 disables.
	BarIdleClose time.Duration
	// FutureTolerance is how far ahead of the collector's clock a tick may be.
	FutureTolerance time.Duration
	// BackwardsTolerance is how far a symbol's tick time may go back.
	BackwardsTolerance time.Duration
	// AllowCrossed accepts bid > ask.
	AllowCrossed bool
	// AllowUnknownSymbols accepts ticks of symbols never announced with SymbolInfo.
	AllowUnknownSymbols bool
	// SubscriberQueue bounds the events waiting per gRPC subscriber.
	SubscriberQueue int
	// SlowSubscriber is "conflate" (latest tick per symbol) or "cut" (RESOURCE_EXHAUSTED).
	SlowSubscriber string
	// NATSQueue bounds the batches waiting for the NATS publisher (ingest waits when it is full).
	NATSQueue int
	// NATSQueueBytes bounds the same queue in encoded bytes (ingest waits when it is full).
	NATSQueueBytes int
	// SubscriberQueueBytes bounds the events waiting per gRPC subscriber in encoded bytes; beyond
	// it the slow-subscriber policy applies as it does beyond SubscriberQueue events.
	SubscriberQueueBytes int
	// MaxSources bounds the publishers (Publish/Stream sources) the collector tracks; at the
	// limit the one idle longest (at least SourceIdle) is dropped, or the new one is refused.
	MaxSources int
	// SourceIdle is how long a publisher source must be idle before it may be dropped for a new one.
	SourceIdle time.Duration
	// MaxSymbols bounds the symbols the collector keeps state for (announced or, with
	// allow-unknown-symbols, ticked); more are refused.
	MaxSymbols int
	// GRPC bounds what one peer may cost the gRPC server.
	GRPC GRPCLimits
	// HeartbeatInterval is announced to the bridge; three missed intervals end a connection.
	HeartbeatInterval time.Duration
	// MaxFrameBytes is the largest bridge frame accepted.
	MaxFrameBytes int
	// BridgeKeyFile holds the bridge key every Hello must prove (docs/security.md); the key itself
	// may instead come from KAIROS_COLLECTOR_BRIDGE_KEY. Never a flag value: argv is public.
	BridgeKeyFile string
	// BridgeKey is the key read from BridgeKeyFile or KAIROS_COLLECTOR_BRIDGE_KEY; never logged.
	BridgeKey []byte `json:"-"`
	// BridgeInsecure runs the bridge listener without a key: anyone who reaches it can stream ticks.
	// Without a key and without it, the collector refuses to start.
	BridgeInsecure bool
	// BridgeMaxSessions bounds the bridge sessions kept (in memory and in the state file).
	BridgeMaxSessions int
	// BridgeSessionTTL forgets a bridge session with no connection for this long.
	BridgeSessionTTL time.Duration
	// BridgeGuard bounds what a bridge peer may cost before it proves the key: connections,
	// handshakes in progress, the handshake's time, failed handshakes per address.
	BridgeGuard bridgelink.Guard
	// StateFile keeps session sequences, validation watermarks and open bars across restarts; empty disables.
	StateFile string
	// StateInterval is how often the state file is also written while running (a crash then loses at
	// most this much); 0 writes it only on shutdown.
	StateInterval time.Duration
	// TLSCert and TLSKey are the gRPC server's PEM certificate chain and key; both set serve TLS
	// only (TLS 1.2 minimum), re-read when the files change.
	TLSCert, TLSKey string
	// TLSClientCA, when set, requires gRPC clients to present a certificate this PEM bundle signed (mutual TLS).
	TLSClientCA string
	// TLSClientIdentities are client-certificate identities (subject CN, DNS or URI SAN) accepted
	// in place of the bearer token over mutual TLS (grpcauth.Policy.ClientIdentities).
	TLSClientIdentities []string
	// InferenceTLSCA verifies the inference servers' certificates; set, the link speaks TLS.
	InferenceTLSCA string
	// InferenceTLSCert and InferenceTLSKey are the link's client pair for mutual TLS.
	InferenceTLSCert, InferenceTLSKey string
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// RejectLogInterval bounds reject logging to one line per reason per interval.
	RejectLogInterval time.Duration
}

// GRPCLimits bounds the gRPC server (ADR 0055): connections, streams, message sizes, keepalive.
type GRPCLimits = peerlimit.Limits

// Default returns the defaults.
func Default() Config {
	return Config{
		BridgeAddr: "127.0.0.1:7400", GRPCAddr: "127.0.0.1:7401", MetricsAddr: "127.0.0.1:9401",
		NATSAddr: "127.0.0.1:4222", InferenceEndpoints: []string{"127.0.0.1:7501"},
		InferenceBatchTicks: 100, InferenceFlushInterval: 0, InferenceQueue: 1024,
		InferenceBackoffMin: 100 * time.Millisecond, InferenceBackoffMax: 5 * time.Second, InferenceResponseTimeout: 5 * time.Second,
		InferenceWarmupBars: 3000, InferenceWarmupTimeout: 10 * time.Second, InferenceWarmupHold: 4096,
		BarPeriods: []uint32{60, 300, 900, 3600}, BarIdleClose: 2 * time.Second,
		FutureTolerance: 5 * time.Second, BackwardsTolerance: 500 * time.Millisecond,
		SubscriberQueue: 1024, SlowSubscriber: "conflate", NATSQueue: 4096,
		NATSQueueBytes: 64 << 20, SubscriberQueueBytes: 16 << 20, MaxSources: 1024, SourceIdle: 5 * time.Minute, MaxSymbols: 4096,
		GRPC: GRPCLimits{MaxConnections: 256, MaxConcurrentStreams: 256, MaxRecvMsgBytes: 4 << 20, MaxSendMsgBytes: 16 << 20,
			KeepaliveMinTime: 10 * time.Second, KeepaliveTime: 30 * time.Second, KeepaliveTimeout: 10 * time.Second,
			HandshakeTimeout: 5 * time.Second},
		HeartbeatInterval: time.Second, MaxFrameBytes: 1 << 20,
		BridgeMaxSessions: bridgelink.DefaultMaxSessions, BridgeSessionTTL: bridgelink.DefaultSessionTTL,
		BridgeGuard:   bridgelink.DefaultGuard(),
		StateInterval: 5 * time.Second, ShutdownTimeout: 10 * time.Second, LogLevel: "info", RejectLogInterval: time.Second,
	}
}

// Flags registers every setting of c on a new flag set; c's current values are the defaults.
// Its Settings() list every flag with its variable (the configuration reference and tests use it).
func Flags(c *Config) *envflag.Set {
	s := envflag.New("kairos-collector", EnvPrefix)
	s.StringVar(&c.BridgeAddr, "bridge-addr", "TCP address for the MT5 bridge")
	s.StringVar(&c.GRPCAddr, "grpc-addr", "gRPC address (MarketDataService, health, reflection)")
	s.StringVar(&c.MetricsAddr, "metrics-addr", "HTTP address of /metrics; empty disables")
	s.StringVar(&c.NATSURL, "nats-url", "external NATS server URL; empty runs the embedded server")
	s.StringVar(&c.NATSAddr, "nats-addr", "listen address of the embedded NATS server")
	s.BoolVar(&c.NATSJetStream, "nats-jetstream", "publish ticks and bars to JetStream streams (needs nats-url) and acknowledge bridge frames only once stored")
	s.StringVar(&c.NATSAuthFile, "nats-auth-file", "nats-server config file with the embedded server's authorization block (users, permissions); the embedded server needs it unless --nats-insecure")
	s.BoolVar(&c.NATSInsecure, "nats-insecure", "run the embedded NATS server WITHOUT authorization (loopback only): any local process may publish signals and quotes")
	s.StringVar(&c.NATSCreds, "nats-creds", "file holding this service's NATS user:password (mode 0600)")
	s.StringVar(&c.Token, "token", "bearer token every MarketDataService call needs (prefer --token-file or the env var)", envflag.Secret())
	s.StringVar(&c.TokenFile, "token-file", "file holding the bearer token")
	s.BoolVar(&c.OpenReadsOnLoopback, "open-reads-on-loopback", "serve Subscribe and ListSymbols to loopback peers without the token")
	s.StringVar(&c.InferenceToken, "inference-token", "bearer token for the inference link (prefer --inference-token-file or the env var)", envflag.Secret())
	s.StringVar(&c.InferenceTokenFile, "inference-token-file", "file holding the inference link's bearer token")
	s.ListVar(&c.InferenceEndpoints, "inference-endpoints", "comma-separated inference gRPC addresses; \"none\" or empty disables the link")
	s.IntVar(&c.InferenceBatchTicks, "inference-batch-ticks", "flush a StreamPredict request at this many ticks")
	s.DurationVar(&c.InferenceFlushInterval, "inference-flush-interval", "how long a request may wait for more ticks once nothing else is queued (0: send at once)")
	s.IntVar(&c.InferenceQueue, "inference-queue", "tick batches queued per inference endpoint (overflow dropped and counted)")
	s.DurationVar(&c.InferenceBackoffMin, "inference-backoff-min", "first reconnect delay")
	s.DurationVar(&c.InferenceBackoffMax, "inference-backoff-max", "largest reconnect delay")
	s.DurationVar(&c.InferenceResponseTimeout, "inference-response-timeout", "an unanswered request this old marks the endpoint dead")
	s.IntVar(&c.InferenceWarmupBars, "inference-warmup-bars", "most closed bars fetched from the terminal to warm a symbol on an inference stream before its live ticks (the model's window is asked of the server); 0 disables")
	s.DurationVar(&c.InferenceWarmupTimeout, "inference-warmup-timeout", "bound on one symbol's warm-up history fetch; past it the symbol goes live without warm-up")
	s.IntVar(&c.InferenceWarmupHold, "inference-warmup-hold", "live items held per symbol while its warm-up is fetched; past it the symbol goes live without warm-up (nothing dropped)")
	s.Var((*periodValue)(&c.InferenceBarPeriod), "inference-bar-period", "send closed bars of this period (e.g. M1) instead of ticks; empty sends ticks")
	s.Var((*periodsValue)(&c.BarPeriods), "bar-periods", "bar timeframes, comma-separated (M1,M5,H1 or seconds)")
	s.DurationVar(&c.BarIdleClose, "bar-idle-close", "close a finished bar when its symbol is idle this long; 0 disables")
	s.DurationVar(&c.FutureTolerance, "future-tolerance", "how far ahead of the clock a tick may be")
	s.DurationVar(&c.BackwardsTolerance, "backwards-tolerance", "how far a symbol's tick time may go back")
	s.BoolVar(&c.AllowCrossed, "allow-crossed", "accept bid > ask")
	s.BoolVar(&c.AllowUnknownSymbols, "allow-unknown-symbols", "accept ticks of symbols never announced with SymbolInfo")
	s.IntVar(&c.SubscriberQueue, "subscriber-queue", "events queued per gRPC subscriber")
	s.StringVar(&c.SlowSubscriber, "slow-subscriber", "conflate or cut")
	s.IntVar(&c.NATSQueue, "nats-queue", "batches queued for the NATS publisher")
	s.IntVar(&c.NATSQueueBytes, "nats-queue-bytes", "encoded bytes queued for the NATS publisher (ingest waits beyond)")
	s.IntVar(&c.SubscriberQueueBytes, "subscriber-queue-bytes", "encoded bytes queued per gRPC subscriber (the slow-subscriber policy applies beyond)")
	s.IntVar(&c.MaxSources, "max-sources", "publisher sources tracked at once; the longest idle (past source-idle) makes room, else Publish is refused")
	s.DurationVar(&c.SourceIdle, "source-idle", "idle time after which a publisher source may be dropped for a new one")
	s.IntVar(&c.MaxSymbols, "max-symbols", "symbols the collector keeps state for; more are refused")
	g := &c.GRPC
	s.IntVar(&g.MaxConnections, "grpc-max-connections", "gRPC connections open at once; more are closed on accept (0: no limit)")
	s.Uint32Var(&g.MaxConcurrentStreams, "grpc-max-concurrent-streams", "gRPC concurrent streams per connection")
	s.IntVar(&g.MaxRecvMsgBytes, "grpc-max-recv-msg-bytes", "largest gRPC message received, bytes")
	s.IntVar(&g.MaxSendMsgBytes, "grpc-max-send-msg-bytes", "largest gRPC message sent, bytes")
	s.DurationVar(&g.KeepaliveMinTime, "grpc-keepalive-min-time", "clients pinging more often are disconnected")
	s.DurationVar(&g.KeepaliveTime, "grpc-keepalive-time", "the server pings a connection idle this long")
	s.DurationVar(&g.KeepaliveTimeout, "grpc-keepalive-timeout", "a connection that does not answer a ping within this is dropped")
	s.DurationVar(&g.HandshakeTimeout, "grpc-handshake-timeout", "time a new gRPC connection has to finish TLS and the HTTP/2 preface; slower ones are closed")
	s.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", "bridge heartbeat interval")
	s.IntVar(&c.MaxFrameBytes, "max-frame-bytes", "largest bridge frame accepted")
	s.StringVar(&c.BridgeKeyFile, "bridge-key-file", "file holding the bridge key the EA must prove (or the key itself in "+EnvName("bridge-key")+")")
	s.BoolVar(&c.BridgeInsecure, "bridge-insecure", "run the bridge listener WITHOUT a key: anyone who reaches it can stream ticks")
	s.IntVar(&c.BridgeMaxSessions, "bridge-max-sessions", "bridge sessions kept (memory and state file); the least recently active idle one goes")
	s.DurationVar(&c.BridgeSessionTTL, "bridge-session-ttl", "forget a bridge session with no connection for this long")
	{
		g := &c.BridgeGuard
		s.IntVar(&g.MaxConnections, "bridge-max-connections", "bridge connections open at once; more are refused at accept (counted)")
		s.IntVar(&g.MaxHandshakes, "bridge-max-handshakes", "bridge connections in their handshake (key not proven yet) at once; more are refused at accept")
		s.IntVar(&g.MaxHandshakesPerAddress, "bridge-max-handshakes-per-address", "bridge handshakes in progress from one remote address; more are refused at accept")
		s.DurationVar(&g.HandshakeTimeout, "bridge-handshake-timeout", "time a bridge connection has from accept to a proven Hello, however slowly its bytes come")
		s.IntVar(&g.AuthFailureBurst, "bridge-auth-failure-burst", "failed bridge handshakes a remote address may make before its connections are refused at accept (negative: no limit)")
		s.DurationVar(&g.AuthFailureRefill, "bridge-auth-failure-refill", "a rate-limited address may fail one more bridge handshake per this interval")
	}
	s.StringVar(&c.StateFile, "state-file", "file keeping sessions, watermarks and open bars across restarts; empty disables")
	s.DurationVar(&c.StateInterval, "state-interval", "also write the state file this often while running; 0: only on shutdown")
	s.StringVar(&c.TLSCert, "tls-cert", "PEM certificate chain of the gRPC server; with tls-key it serves TLS only (reloaded on change)")
	s.StringVar(&c.TLSKey, "tls-key", "PEM private key of the gRPC server (with tls-cert)")
	s.StringVar(&c.TLSClientCA, "tls-client-ca", "PEM CA bundle; set, gRPC clients must present a certificate it signed (mutual TLS)")
	s.ListVar(&c.TLSClientIdentities, "tls-client-identities", "comma-separated client-certificate identities (subject CN, DNS or URI SAN) that may call without the token (needs tls-client-ca)")
	s.StringVar(&c.InferenceTLSCA, "inference-tls-ca", "PEM CA bundle verifying the inference servers; set, the inference link speaks TLS")
	s.StringVar(&c.InferenceTLSCert, "inference-tls-cert", "PEM client certificate for the inference link (mutual TLS, with inference-tls-key)")
	s.StringVar(&c.InferenceTLSKey, "inference-tls-key", "PEM client key for the inference link (with inference-tls-cert)")
	s.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", "bound on graceful shutdown")
	s.StringVar(&c.LogLevel, "log-level", "debug, info, warn or error")
	s.DurationVar(&c.RejectLogInterval, "reject-log-interval", "at most one reject log line per reason per interval")
	return s
}

// Parse reads flags from args, then the environment (getenv) for the flags not given; it
// returns a validated Config.
func Parse(args []string, getenv func(string) string) (Config, error) {
	c := Default()
	s := Flags(&c)
	if err := s.Parse(args, getenv); err != nil {
		return c, err
	}
	if len(s.Args()) > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", s.Args())
	}
	if len(c.InferenceEndpoints) == 1 && c.InferenceEndpoints[0] == "none" {
		c.InferenceEndpoints = nil
	}
	key, err := bridgelink.LoadKey(c.BridgeKeyFile, getenv(EnvName("bridge-key")))
	if err != nil {
		return c, fmt.Errorf("bridge key: %w", err)
	}
	c.BridgeKey = key
	for _, f := range []struct {
		flag, path string
		dst        *string
	}{{"token-file", c.TokenFile, &c.Token}, {"inference-token-file", c.InferenceTokenFile, &c.InferenceToken}} {
		if f.path == "" {
			continue
		}
		tok, err := grpcauth.ReadToken(f.path)
		if err != nil {
			return c, fmt.Errorf("%s: %w", f.flag, err)
		}
		*f.dst = tok
	}
	return c, c.Validate()
}

// Validate checks the values.
func (c Config) Validate() error {
	var errs []error
	for name, v := range map[string]int{"inference-batch-ticks": c.InferenceBatchTicks, "inference-queue": c.InferenceQueue,
		"subscriber-queue": c.SubscriberQueue, "nats-queue": c.NATSQueue, "max-frame-bytes": c.MaxFrameBytes,
		"bridge-max-sessions": c.BridgeMaxSessions,

		"nats-queue-bytes": c.NATSQueueBytes, "subscriber-queue-bytes": c.SubscriberQueueBytes, "max-sources": c.MaxSources,
		"max-symbols": c.MaxSymbols, "grpc-max-concurrent-streams": int(c.GRPC.MaxConcurrentStreams),
		"grpc-max-recv-msg-bytes": c.GRPC.MaxRecvMsgBytes, "grpc-max-send-msg-bytes": c.GRPC.MaxSendMsgBytes} {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, got %d", name, v))
		}
	}
	if _, err := fanout.ParsePolicy(c.SlowSubscriber); err != nil {
		errs = append(errs, err)
	}
	if c.InferenceWarmupBars < 0 || c.InferenceWarmupBars > 100_000 {
		errs = append(errs, fmt.Errorf("inference-warmup-bars must be 0 (off) to 100000, got %d", c.InferenceWarmupBars))
	}
	if c.InferenceWarmupBars > 0 && (c.InferenceWarmupTimeout <= 0 || c.InferenceWarmupHold < 1) {
		errs = append(errs, errors.New("inference-warmup-timeout must be positive and inference-warmup-hold at least 1"))
	}
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, errors.New("heartbeat-interval must be positive"))
	}
	if c.BridgeSessionTTL <= 0 {
		errs = append(errs, errors.New("bridge-session-ttl must be positive"))
	}
	if len(c.BridgeKey) == 0 && !c.BridgeInsecure {
		errs = append(errs, fmt.Errorf("no bridge key: set --bridge-key-file (or %s), or opt out with --bridge-insecure", EnvName("bridge-key")))
	}
	if c.BridgeAddr == "" || c.GRPCAddr == "" {
		errs = append(errs, errors.New("bridge-addr and grpc-addr are required"))
	}
	if c.NATSURL == "" && c.NATSAddr == "" {
		errs = append(errs, errors.New("set nats-url or nats-addr"))
	}
	if c.NATSJetStream && c.NATSURL == "" {
		errs = append(errs, errors.New("nats-jetstream needs nats-url (the embedded server has no JetStream)"))
	}
	if c.NATSURL == "" && c.NATSAuthFile == "" {
		switch {
		case !c.NATSInsecure:
			errs = append(errs, fmt.Errorf("the embedded NATS server needs --nats-auth-file (or %s), or opt out with --nats-insecure (loopback only)", EnvName("nats-auth-file")))
		case !loopback(c.NATSAddr):
			errs = append(errs, fmt.Errorf("nats-addr %q is not loopback: the embedded server needs nats-auth-file there", c.NATSAddr))
		}
	}
	if err := c.ServerTLS().Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.TLSClientIdentities) > 0 && c.TLSClientCA == "" {
		errs = append(errs, errors.New("tls-client-identities needs tls-client-ca: a client certificate counts only when mutual TLS verified it"))
	}
	if err := c.InferenceTLS().Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// ServerTLS is the gRPC server's transport security (ADR 0063).
func (c Config) ServerTLS() tlsreload.ServerConfig {
	return tlsreload.ServerConfig{CertFile: c.TLSCert, KeyFile: c.TLSKey, ClientCAFile: c.TLSClientCA,
		CertName: "tls-cert", KeyName: "tls-key", ClientCAName: "tls-client-ca"}
}

// InferenceTLS is the inference link's transport security.
func (c Config) InferenceTLS() tlsreload.ClientConfig {
	return tlsreload.ClientConfig{CAFile: c.InferenceTLSCA, CertFile: c.InferenceTLSCert, KeyFile: c.InferenceTLSKey,
		CAName: "inference-tls-ca", CertName: "inference-tls-cert", KeyName: "inference-tls-key"}
}

// loopback reports whether addr's host is a loopback IP or localhost.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// EnvName is the environment variable of a flag (bridge-addr: KAIROS_COLLECTOR_BRIDGE_ADDR).
func EnvName(flagName string) string { return envflag.EnvName(EnvPrefix, flagName) }

// periodsValue is a list of bar periods (M1,M5,H1 or seconds), duplicates dropped.
type periodsValue []uint32

func (v *periodsValue) String() string {
	if v == nil {
		return ""
	}
	names := make([]string, len(*v))
	for i, s := range *v {
		names[i] = bars.Timeframe(s)
	}
	return strings.Join(names, ",")
}

func (v *periodsValue) Set(s string) error {
	var out []uint32
	seen := map[uint32]bool{}
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		p, err := bars.ParsePeriod(part)
		if err != nil {
			return err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	*v = out
	return nil
}

// periodValue is one bar period; empty (0) means none.
type periodValue uint32

func (v *periodValue) String() string {
	if v == nil || *v == 0 {
		return ""
	}
	return bars.Timeframe(uint32(*v))
}

func (v *periodValue) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		*v = 0
		return nil
	}
	p, err := bars.ParsePeriod(s)
	*v = periodValue(p)
	return err
}

// FromOS parses os.Args and the process environment.
func FromOS() (Config, error) { return Parse(os.Args[1:], os.Getenv) }
