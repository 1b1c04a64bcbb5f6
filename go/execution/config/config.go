// Package config is the execution service's one typed configuration: every field documented, set
// by flags or KAIROS_EXECUTION_* environment variables (flags win; the rules are go/envflag's,
// shared with the collector), with safe defaults: loopback addresses, the paper venue, HALTED
// until reconciled, conservative risk limits.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kairos-mt5/kairos/go/auth/peerlimit"
	"os"
	"strings"
	"time"

	"github.com/kairos-mt5/kairos/go/bridgelink"
	"github.com/kairos-mt5/kairos/go/envflag"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/tlsreload"
)

// EnvPrefix prefixes every environment variable: flag "max-order-qty" is KAIROS_EXECUTION_MAX_ORDER_QTY.
const EnvPrefix = "KAIROS_EXECUTION_"

// Config is the whole service configuration.
type Config struct {
	// GRPCAddr is where ExecutionService listens.
	GRPCAddr string
	// MetricsAddr serves /metrics over HTTP; empty disables it.
	MetricsAddr string
	// BridgeAddr is the TCP listener for the MT5 bridge's TRADING channel (venue mt5).
	BridgeAddr string
	// NATSURL is the NATS server with the collector's ticks and the inference server's signals;
	// empty disables signals and paper quotes.
	NATSURL string
	// DB is the journal: a SQLite file path, or postgres://user@host:port/db.
	DB string
	// JournalSync is the SQLite commit mode: "full" (fsync per group commit, survives a machine
	// crash) or "normal" (survives a process crash, not a power loss).
	JournalSync string
	// JournalTimeout bounds one journal write and each wait for durability: a journal that errors
	// or stalls longer halts trading and turns gRPC health NOT_SERVING (ADR 0055).
	JournalTimeout time.Duration
	// MaxOrdersInMemory bounds the orders the engine holds: past it the oldest finished ones are
	// dropped from memory and the journal answers for them (ADR 0125).
	MaxOrdersInMemory int
	// Venue is "paper" or "mt5".
	Venue string
	// Clock is what the engine's clock follows: "wall" (the system clock) or "market" (the latest
	// market time seen in quotes and signals, never going back: a Strategy Tester run or a replay
	// on the data's own time, ADR 0095).
	Clock string
	// Token is the bearer token every call but health and reflection needs ("authorization:
	// Bearer <token>"). Empty refuses every such call.
	Token string
	// TokenFile, if set, is read for the token (first line), so it stays out of the process list.
	TokenFile string
	// OpenReadsOnLoopback lets the read-only calls (GetOrder, ListOrders, ListPositions,
	// StreamExecutionReports, GetRiskLimits) through without the token from loopback peers.
	OpenReadsOnLoopback bool
	// NATSCreds is a file holding "user:password" for the NATS server (ADR 0064); empty connects
	// without credentials.
	NATSCreds string
	// TLSCert and TLSKey are the gRPC server's PEM certificate chain and key; both set serve TLS
	// only (TLS 1.2 minimum), re-read when the files change (ADR 0063).
	TLSCert, TLSKey string
	// TLSClientCA, when set, requires gRPC clients to present a certificate this PEM bundle signed (mutual TLS).
	TLSClientCA string
	// TLSClientIdentities are client-certificate identities (subject CN, DNS or URI SAN) accepted
	// in place of the bearer token over mutual TLS (grpcauth.Policy.ClientIdentities).
	TLSClientIdentities []string
	// InstrumentsFile is a JSON list of instruments replacing the built-in FX majors.
	InstrumentsFile string
	// Instruments is the tradable symbols (from InstrumentsFile or the defaults).
	Instruments []market.Instrument
	// Currency of the account.
	Currency string
	// InitialState is entered after the first reconciliation of a fresh journal (ACTIVE, REDUCING,
	// HALTED); later starts return to the last journaled state.
	InitialState string
	// Limits is the pre-trade risk configuration.
	Limits risk.Limits
	// Paper configures the simulated venue.
	Paper Paper
	// MT5 configures the bridge link.
	MT5 MT5
	// Policy maps signals to orders.
	Policy Policy
	// GRPC bounds what one peer may cost the gRPC server.
	GRPC GRPCLimits
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// GCPercent is the Go garbage collector's target (GOGC) set at start, unless the GOGC
	// environment variable sets it. The default, -1, leaves collection to GCMemoryLimitMiB: the
	// heap grows to the limit and is collected then, a cycle every ~12,000 orders at the service's
	// ~20 KiB allocated per order, instead of every ~1,200 with a target of 400 (ADR 0101), so the
	// few submissions in flight during a cycle (its pauses and mark assists) stay out of the p99
	// (ADR 0106). A positive value is heap growth between cycles in percent of the live data.
	GCPercent int
	// GCMemoryLimitMiB is the Go runtime's soft memory limit (GOMEMLIMIT) set at start, unless the
	// GOMEMLIMIT environment variable sets it; 0: none. The collector runs as the process's memory
	// nears it, whatever GCPercent says; a live heap near the limit makes cycles frequent (the
	// runtime caps their CPU at about half), so it is set well above the service's live data.
	GCMemoryLimitMiB int
}

// GRPCLimits bounds the gRPC server (ADR 0055): connections, streams, message sizes, keepalive.
type GRPCLimits struct {
	// Limits are the peer bounds the collector has too.
	peerlimit.Limits
	// MaxReportStreams is the number of StreamExecutionReports subscribers at once; more are
	// refused RESOURCE_EXHAUSTED.
	MaxReportStreams int
	// ReportStreamBufferBytes bounds the reports queued for one subscriber, in payload bytes; a
	// subscriber that falls further behind is cut and resumes from the journal.
	ReportStreamBufferBytes int
}

// Paper configures the paper venue.
type Paper struct {
	// SlippagePoints is the fixed adverse slippage of market fills, in points.
	SlippagePoints int64
	// SlippagePointsPerLot adds size impact, in points per lot.
	SlippagePointsPerLot decimal.D
	// CommissionPerLot in account currency.
	CommissionPerLot decimal.D
	// StartingBalance of the simulated account.
	StartingBalance decimal.D
}

// MT5 configures the bridge link.
type MT5 struct {
	// HeartbeatInterval announced in Welcome; the link is dead after three missed intervals.
	HeartbeatInterval time.Duration
	// CancelOnDisconnect cancels every working order once a lost link comes back, before trading.
	CancelOnDisconnect bool
	// DeviationPoints is the largest slippage MT5 may take on market orders.
	DeviationPoints uint32
	// CommandTTL is how long the EA may still execute a command (its deadline); zero for none.
	CommandTTL time.Duration
	// BridgeKeyFile holds the bridge key every Hello on the trading channel must prove
	// (docs/security.md); the key itself may instead come from KAIROS_EXECUTION_BRIDGE_KEY. Never a
	// flag value: argv is public.
	BridgeKeyFile string
	// BridgeKey is the key read from BridgeKeyFile or KAIROS_EXECUTION_BRIDGE_KEY; never logged.
	BridgeKey []byte `json:"-"`
	// BridgeInsecure runs the trading listener without a key: anyone who reaches it can trade.
	// With venue mt5 and neither a key nor this, the service refuses to start.
	BridgeInsecure bool
	// MaxSessions and SessionTTL bound the bridge session table (resume points).
	MaxSessions int
	SessionTTL  time.Duration
	// Guard bounds what a bridge peer may cost before it proves the key.
	Guard bridgelink.Guard
	// MaxTracked bounds the venue's command and ticket maps; completed entries go first.
	MaxTracked int
}

// Policy maps signals to target positions. A signal carries its model card's decision policy
// (ADR 0081); the fields below only make the fallback policy for signals that carry none.
type Policy struct {
	// Enabled subscribes to kairos.signal.> and trades the signals.
	Enabled bool
	// StrategyID is written on every order the policy sends.
	StrategyID string
	// Threshold is the fallback entry threshold on p(up) - p(down).
	Threshold float64
	// Lots is the fallback position size.
	Lots decimal.D
	// CooldownBars is the fallback's bars between an exit and the next entry.
	CooldownBars int
	// MaxHoldingBars is the fallback's bars after which a position is closed; zero for no limit.
	MaxHoldingBars int
	// MaxSignalAge ignores signals older than this (by their market-data time); zero for no check
	// (replays of historical data need it).
	MaxSignalAge time.Duration
	// SignalQuoteWait is how long a signal that overtook its own tick waits for it (ADR 0108);
	// past it the signal's quote counts instead.
	SignalQuoteWait time.Duration
}

// DefaultInstruments are the FX majors quoted in USD, as a retail MT5 account shows them.
func DefaultInstruments() []market.Instrument {
	var out []market.Instrument
	for _, s := range []string{"EURUSD", "GBPUSD", "AUDUSD", "NZDUSD"} {
		out = append(out, market.Instrument{Symbol: s, Digits: 5, VolumeStep: decimal.MustParse("0.01"), VolumeMin: decimal.MustParse("0.01"),
			ContractSize: decimal.FromInt(100000), MarginRate: decimal.MustParse("0.01"), QuoteToAccount: decimal.FromInt(1)})
	}
	return out
}

type decFlag struct{ d *decimal.D }

func (f decFlag) String() string {
	if f.d == nil {
		return ""
	}
	return f.d.String()
}
func (f decFlag) Set(s string) error {
	v, err := decimal.Parse(s)
	if err != nil {
		return err
	}
	*f.d = v
	return nil
}

type stateFlag struct{ s *risk.State }

func (f stateFlag) String() string {
	if f.s == nil {
		return ""
	}
	return f.s.String()
}
func (f stateFlag) Set(v string) error {
	s, err := ParseState(v)
	if err != nil {
		return err
	}
	*f.s = s
	return nil
}

// ParseState reads ACTIVE, REDUCING or HALTED (any case).
func ParseState(v string) (risk.State, error) {
	switch strings.ToUpper(strings.TrimPrefix(strings.ToUpper(v), "TRADING_STATE_")) {
	case "ACTIVE":
		return risk.Active, nil
	case "REDUCING":
		return risk.Reducing, nil
	case "HALTED":
		return risk.Halted, nil
	}
	return 0, fmt.Errorf("trading state %q: want ACTIVE, REDUCING or HALTED", v)
}

// Default returns the defaults: loopback addresses, the paper venue, conservative risk limits and
// the built-in instruments.
func Default() Config {
	return Config{
		GRPCAddr: "127.0.0.1:7601", MetricsAddr: "127.0.0.1:9601", BridgeAddr: "127.0.0.1:7600",
		NATSURL: "nats://127.0.0.1:4222", DB: ".kairos/execution.db", JournalSync: "full", JournalTimeout: 5 * time.Second, MaxOrdersInMemory: engine.DefaultMaxOrders, Venue: "paper", Clock: "wall",
		Instruments: DefaultInstruments(), Currency: "USD", InitialState: "ACTIVE",
		Limits: risk.Limits{
			MaxOrderQuantity: decimal.MustParse("10"), MaxOrderNotional: decimal.MustParse("2000000"),
			MaxPositionQuantity: decimal.MustParse("20"), MaxGrossExposure: decimal.MustParse("5000000"),
			MaxOpenOrders: 200, PriceCollarBps: 200, MaxQuoteAgeMS: 5000,
			SubmitRate:  risk.RateLimit{MaxCount: 100, WindowMS: 1000},
			MessageRate: risk.RateLimit{MaxCount: 200, WindowMS: 1000}, DenialRate: risk.RateLimit{MaxCount: 200, WindowMS: 1000},
			DuplicateIntentWindowMS: 500,
			MaxDailyLoss:            decimal.MustParse("5000"), DailyLossState: risk.Halted,
			MaxDrawdown: decimal.MustParse("10000"), DrawdownState: risk.Halted, MinFreeMargin: decimal.MustParse("0"),
		},
		Paper: Paper{SlippagePoints: 1, SlippagePointsPerLot: decimal.MustParse("0.5"),
			CommissionPerLot: decimal.MustParse("3.50"), StartingBalance: decimal.MustParse("100000")},
		MT5: MT5{HeartbeatInterval: time.Second, DeviationPoints: 10, CommandTTL: 10 * time.Second,
			MaxSessions: bridgelink.DefaultMaxSessions, SessionTTL: bridgelink.DefaultSessionTTL, MaxTracked: 4096,
			Guard: bridgelink.DefaultGuard()},
		Policy: Policy{Enabled: true, StrategyID: "kairos-signal", Threshold: 0.3, Lots: decimal.MustParse("0.10"),
			CooldownBars: 0, MaxHoldingBars: 60, MaxSignalAge: 5 * time.Second, SignalQuoteWait: 20 * time.Millisecond},
		GRPC: GRPCLimits{Limits: peerlimit.Limits{MaxConnections: 256, MaxConcurrentStreams: 256, MaxRecvMsgBytes: 4 << 20,
			MaxSendMsgBytes: 16 << 20, KeepaliveMinTime: 10 * time.Second, KeepaliveTime: 30 * time.Second,
			KeepaliveTimeout: 10 * time.Second, HandshakeTimeout: 5 * time.Second}, MaxReportStreams: 64, ReportStreamBufferBytes: 8 << 20},
		ShutdownTimeout: 10 * time.Second, LogLevel: "info", GCPercent: -1, GCMemoryLimitMiB: 256,
	}
}

// Flags registers every setting of c on a new flag set named name; c's current values are the
// defaults. Its Settings() list every flag with its variable (the configuration reference and
// tests use it).
func Flags(name string, c *Config) *envflag.Set {
	s := envflag.New(name, EnvPrefix)
	s.StringVar(&c.GRPCAddr, "grpc-addr", "ExecutionService gRPC listen address")
	s.StringVar(&c.MetricsAddr, "metrics-addr", "Prometheus /metrics listen address (empty disables)")
	s.StringVar(&c.BridgeAddr, "bridge-addr", "MT5 bridge TRADING channel TCP listen address (venue mt5)")
	s.StringVar(&c.NATSURL, "nats-url", "NATS server with kairos.md.* ticks and kairos.signal.* signals (empty disables)")
	s.StringVar(&c.DB, "db", "journal: SQLite file path or postgres://user@host:port/db")
	s.StringVar(&c.JournalSync, "journal-sync", "SQLite commit mode: full (the write-ahead log fdatasynced before an ack, survives power loss) or normal (survives a process crash)")
	s.DurationVar(&c.JournalTimeout, "journal-timeout", "bound on one journal write and on each wait for durability; longer halts trading (NOT_SERVING)")
	s.IntVar(&c.MaxOrdersInMemory, "max-orders-in-memory", "orders the engine holds in memory: every working order and the newest finished ones; older finished orders are read back from the journal (GetOrder, a repeated client_order_id)")
	s.StringVar(&c.Venue, "venue", "venue: paper or mt5")
	s.StringVar(&c.Clock, "clock", "engine clock: wall (system clock) or market (latest quote or signal time: the Strategy Tester's virtual time, replays)")
	s.StringVar(&c.Token, "token", "bearer token every call needs (prefer --token-file or the env var)", envflag.Secret())
	s.StringVar(&c.TokenFile, "token-file", "file holding the bearer token")
	s.BoolVar(&c.OpenReadsOnLoopback, "open-reads-on-loopback", "serve the read-only calls to loopback peers without the token")
	s.StringVar(&c.NATSCreds, "nats-creds", "file holding the NATS user:password (mode 0600); empty connects without credentials")
	s.StringVar(&c.TLSCert, "tls-cert", "PEM certificate chain of the gRPC server; with --tls-key it serves TLS only (reloaded on change)")
	s.StringVar(&c.TLSKey, "tls-key", "PEM private key of the gRPC server (with --tls-cert)")
	s.StringVar(&c.TLSClientCA, "tls-client-ca", "PEM CA bundle; set, gRPC clients must present a certificate it signed (mutual TLS)")
	s.ListVar(&c.TLSClientIdentities, "tls-client-identities", "comma-separated client-certificate identities (subject CN, DNS or URI SAN) that may call without the token (needs tls-client-ca)")
	s.StringVar(&c.InstrumentsFile, "instruments-file", "JSON list of instruments; empty: EURUSD, GBPUSD, AUDUSD, NZDUSD")
	s.StringVar(&c.Currency, "currency", "account currency")
	s.StringVar(&c.InitialState, "initial-state", "trading state after the first reconciliation of a fresh journal")
	g := &c.GRPC
	s.IntVar(&g.MaxConnections, "grpc-max-connections", "gRPC connections open at once; more are closed on accept (0: no limit)")
	s.Uint32Var(&g.MaxConcurrentStreams, "grpc-max-concurrent-streams", "gRPC concurrent streams per connection")
	s.IntVar(&g.MaxRecvMsgBytes, "grpc-max-recv-msg-bytes", "largest gRPC message received, bytes")
	s.IntVar(&g.MaxSendMsgBytes, "grpc-max-send-msg-bytes", "largest gRPC message sent, bytes")
	s.DurationVar(&g.KeepaliveMinTime, "grpc-keepalive-min-time", "clients pinging more often are disconnected")
	s.DurationVar(&g.KeepaliveTime, "grpc-keepalive-time", "the server pings a connection idle this long")
	s.DurationVar(&g.KeepaliveTimeout, "grpc-keepalive-timeout", "a connection that does not answer a ping within this is dropped")
	s.DurationVar(&g.HandshakeTimeout, "grpc-handshake-timeout", "time a new gRPC connection has to finish TLS and the HTTP/2 preface; slower ones are closed")
	s.IntVar(&g.MaxReportStreams, "max-report-streams", "StreamExecutionReports subscribers at once; more are refused RESOURCE_EXHAUSTED")
	s.IntVar(&g.ReportStreamBufferBytes, "report-stream-buffer-bytes", "report payload bytes queued per subscriber before it is cut (it resumes from the journal)")
	s.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", "graceful shutdown bound")
	s.StringVar(&c.LogLevel, "log-level", "log level: debug, info, warn or error")
	s.IntVar(&c.GCPercent, "gc-percent", "Go GC target (GOGC) set at start unless GOGC is set: heap growth between collections, percent of live data (-1: collect only at gc-memory-limit-mib)")
	s.IntVar(&c.GCMemoryLimitMiB, "gc-memory-limit-mib", "Go soft memory limit (GOMEMLIMIT) set at start unless GOMEMLIMIT is set, MiB (0: none); the collector runs as the heap nears it")

	l := &c.Limits
	s.ListVar(&l.AllowedSymbols, "allowed-symbols", "comma-separated allow-list (empty: every configured instrument)")
	s.Var(decFlag{&l.MaxOrderQuantity}, "max-order-qty", "max lots per order")
	s.Var(decFlag{&l.MaxOrderNotional}, "max-order-notional", "max notional per order, account currency")
	s.Var(decFlag{&l.MaxPositionQuantity}, "max-position-qty", "max absolute net lots per symbol, with working orders")
	s.Var(decFlag{&l.MaxGrossExposure}, "max-gross-exposure", "max gross exposure over all symbols, account currency")
	s.Uint32Var(&l.MaxOpenOrders, "max-open-orders", "max working orders")
	s.Uint32Var(&l.PriceCollarBps, "price-collar-bps", "max distance of limit/stop prices from the mid, basis points")
	s.Uint32Var(&l.MaxQuoteAgeMS, "max-quote-age-ms", "oldest quote a market order may use, ms")
	s.Uint32Var(&l.SubmitRate.MaxCount, "submit-rate", "max accepted submissions per submit window (denials do not count; kill-switch flatten orders are never throttled)")
	s.Uint32Var(&l.SubmitRate.WindowMS, "submit-window-ms", "submit throttle window, ms")
	s.Uint32Var(&l.MessageRate.MaxCount, "message-rate", "max submits+cancels per message window")
	s.Uint32Var(&l.MessageRate.WindowMS, "message-window-ms", "message throttle window, ms")
	s.Uint32Var(&l.DenialRate.MaxCount, "denial-rate", "max denied submissions recorded per denial window; past it a submission risk would deny is refused RESOURCE_EXHAUSTED with no order or journal entry (kill-switch flatten orders are never refused)")
	s.Uint32Var(&l.DenialRate.WindowMS, "denial-window-ms", "denial budget window, ms")
	s.Uint32Var(&l.DuplicateIntentWindowMS, "duplicate-intent-window-ms", "window in which an identical intent is denied, ms")
	s.Var(decFlag{&l.MaxDailyLoss}, "max-daily-loss", "loss since the UTC day's start that trips the breaker, account currency")
	s.Var(stateFlag{&l.DailyLossState}, "daily-loss-state", "state after the daily loss breaker (REDUCING or HALTED)")
	s.Var(decFlag{&l.MaxDrawdown}, "max-drawdown", "drawdown from the equity high that trips the breaker, account currency")
	s.Var(stateFlag{&l.DrawdownState}, "drawdown-state", "state after the drawdown breaker (REDUCING or HALTED)")
	s.Var(decFlag{&l.MinFreeMargin}, "min-free-margin", "free margin to keep after an order, account currency")

	s.Int64Var(&c.Paper.SlippagePoints, "paper-slippage-points", "paper venue: fixed adverse slippage, points")
	s.Var(decFlag{&c.Paper.SlippagePointsPerLot}, "paper-slippage-points-per-lot", "paper venue: size impact, points per lot")
	s.Var(decFlag{&c.Paper.CommissionPerLot}, "paper-commission-per-lot", "paper venue: commission per lot, account currency")
	s.Var(decFlag{&c.Paper.StartingBalance}, "paper-balance", "paper venue: starting balance")

	s.DurationVar(&c.MT5.HeartbeatInterval, "heartbeat-interval", "bridge heartbeat interval")
	s.BoolVar(&c.MT5.CancelOnDisconnect, "mt5-cancel-on-disconnect", "cancel every working order when a lost bridge link comes back")
	s.Uint32Var(&c.MT5.DeviationPoints, "mt5-deviation-points", "max slippage MT5 may take on market orders, points")
	s.DurationVar(&c.MT5.CommandTTL, "mt5-command-ttl", "deadline for the EA to execute a command")
	s.StringVar(&c.MT5.BridgeKeyFile, "bridge-key-file", "file holding the bridge key the EA must prove (or the key itself in "+EnvPrefix+"BRIDGE_KEY)")
	s.BoolVar(&c.MT5.BridgeInsecure, "bridge-insecure", "run the trading listener WITHOUT a key: anyone who reaches it can trade")
	s.IntVar(&c.MT5.MaxSessions, "bridge-max-sessions", "bridge sessions (resume points) kept")
	s.DurationVar(&c.MT5.SessionTTL, "bridge-session-ttl", "forget a bridge session with no connection for this long")
	{
		g := &c.MT5.Guard
		s.IntVar(&g.MaxConnections, "bridge-max-connections", "bridge connections open at once; more are refused at accept (counted)")
		s.IntVar(&g.MaxHandshakes, "bridge-max-handshakes", "bridge connections in their handshake (key not proven yet) at once; more are refused at accept")
		s.IntVar(&g.MaxHandshakesPerAddress, "bridge-max-handshakes-per-address", "bridge handshakes in progress from one remote address; more are refused at accept")
		s.DurationVar(&g.HandshakeTimeout, "bridge-handshake-timeout", "time a bridge connection has from accept to a proven Hello, however slowly its bytes come")
		s.IntVar(&g.AuthFailureBurst, "bridge-auth-failure-burst", "failed bridge handshakes a remote address may make before its connections are refused at accept (negative: no limit)")
		s.DurationVar(&g.AuthFailureRefill, "bridge-auth-failure-refill", "a rate-limited address may fail one more bridge handshake per this interval")
	}
	s.IntVar(&c.MT5.MaxTracked, "mt5-max-tracked", "commands and order tickets the mt5 venue remembers; completed ones are evicted first")

	s.BoolVar(&c.Policy.Enabled, "policy", "trade signals from kairos.signal.> (needs --nats-url)")
	s.StringVar(&c.Policy.StrategyID, "strategy-id", "strategy id on policy orders")
	s.Float64Var(&c.Policy.Threshold, "signal-threshold", "fallback policy (signals without one): entry threshold on p(up)-p(down)")
	s.Var(decFlag{&c.Policy.Lots}, "signal-lots", "fallback policy: position size, lots")
	s.IntVar(&c.Policy.CooldownBars, "signal-cooldown-bars", "fallback policy: bars between an exit and the next entry")
	s.IntVar(&c.Policy.MaxHoldingBars, "signal-max-holding-bars", "fallback policy: close positions held this many bars (0: no limit)")
	s.DurationVar(&c.Policy.MaxSignalAge, "signal-max-age", "ignore signals older than this by market time (0: no check)")
	s.DurationVar(&c.Policy.SignalQuoteWait, "signal-quote-wait", "how long a signal that overtook its own tick waits for it before its own quote counts")
	return s
}

// Parse reads the flags in args, then the environment (getenv) for the flags not given; it
// returns a validated Config.
func Parse(name string, args []string, getenv func(string) string) (*Config, error) {
	c := Default()
	s := Flags(name, &c)
	if err := s.Parse(args, getenv); err != nil {
		return nil, err
	}
	if len(s.Args()) > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", s.Args())
	}
	if c.Venue == "mt5" {
		key, err := bridgelink.LoadKey(c.MT5.BridgeKeyFile, getenv(EnvPrefix+"BRIDGE_KEY"))
		if err != nil {
			return nil, fmt.Errorf("bridge key: %w", err)
		}
		c.MT5.BridgeKey = key
	}
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		c.Token = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
		if c.Token == "" {
			return nil, fmt.Errorf("--token-file %s: empty", c.TokenFile)
		}
	}
	if c.InstrumentsFile != "" {
		ins, err := LoadInstruments(c.InstrumentsFile)
		if err != nil {
			return nil, err
		}
		c.Instruments = ins
	}
	return &c, c.Validate()
}

// ServerTLS is the gRPC server's transport security.
func (c *Config) ServerTLS() tlsreload.ServerConfig {
	return tlsreload.ServerConfig{CertFile: c.TLSCert, KeyFile: c.TLSKey, ClientCAFile: c.TLSClientCA,
		CertName: "tls-cert", KeyName: "tls-key", ClientCAName: "tls-client-ca"}
}

// Validate checks the whole configuration.
func (c *Config) Validate() error {
	var errs []error
	if err := c.ServerTLS().Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.TLSClientIdentities) > 0 && c.TLSClientCA == "" {
		errs = append(errs, errors.New("tls-client-identities needs tls-client-ca: a client certificate counts only when mutual TLS verified it"))
	}
	if c.Clock != "wall" && c.Clock != "market" {
		errs = append(errs, fmt.Errorf("clock %q: want wall or market", c.Clock))
	}
	if c.Venue != "paper" && c.Venue != "mt5" {
		errs = append(errs, fmt.Errorf("venue %q: want paper or mt5", c.Venue))
	}
	if c.Venue == "mt5" {
		if len(c.MT5.BridgeKey) == 0 && !c.MT5.BridgeInsecure {
			errs = append(errs, fmt.Errorf("venue mt5 without a bridge key: set --bridge-key-file (or %sBRIDGE_KEY), or opt out with --bridge-insecure", EnvPrefix))
		}
		if c.MT5.MaxSessions < 1 || c.MT5.SessionTTL <= 0 || c.MT5.MaxTracked < 16 {
			errs = append(errs, errors.New("bridge-max-sessions must be at least 1, bridge-session-ttl positive, mt5-max-tracked at least 16"))
		}
	}
	if c.MaxOrdersInMemory < 100 {
		errs = append(errs, errors.New("max-orders-in-memory must be at least 100"))
	}
	if c.JournalTimeout < 10*time.Millisecond {
		errs = append(errs, errors.New("journal-timeout must be at least 10ms"))
	}
	if c.GRPC.MaxConcurrentStreams == 0 || c.GRPC.MaxRecvMsgBytes <= 0 || c.GRPC.MaxSendMsgBytes <= 0 || c.GRPC.MaxReportStreams <= 0 || c.GRPC.ReportStreamBufferBytes <= 0 {
		errs = append(errs, errors.New("grpc limits (streams, message sizes, report streams and their buffer) must be positive"))
	}
	if c.JournalSync != "full" && c.JournalSync != "normal" {
		errs = append(errs, fmt.Errorf("journal-sync %q: want full or normal", c.JournalSync))
	}
	if _, err := ParseState(c.InitialState); err != nil {
		errs = append(errs, fmt.Errorf("initial-state: %w", err))
	}
	for _, s := range []risk.State{c.Limits.DailyLossState, c.Limits.DrawdownState} {
		if s != risk.Reducing && s != risk.Halted {
			errs = append(errs, fmt.Errorf("breaker state %s: want REDUCING or HALTED", s))
		}
	}
	if c.DB == "" {
		errs = append(errs, errors.New("db: empty"))
	}
	for i := range c.Instruments {
		if err := c.Instruments[i].Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Policy.Threshold <= 0 || c.Policy.Threshold > 1 {
		errs = append(errs, fmt.Errorf("signal-threshold %v: want more than 0, at most 1", c.Policy.Threshold))
	}
	if c.Policy.CooldownBars < 0 || c.Policy.MaxHoldingBars < 0 {
		errs = append(errs, errors.New("signal-cooldown-bars and signal-max-holding-bars must not be negative"))
	}
	if c.Policy.Lots.Sign() <= 0 {
		errs = append(errs, errors.New("signal-lots must be positive"))
	}
	if c.MT5.HeartbeatInterval < 10*time.Millisecond {
		errs = append(errs, errors.New("heartbeat-interval must be at least 10ms"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	if c.GCPercent < -1 {
		errs = append(errs, fmt.Errorf("gc-percent %d: want -1 (off) or more", c.GCPercent))
	}
	if c.GCMemoryLimitMiB < 0 {
		errs = append(errs, fmt.Errorf("gc-memory-limit-mib %d: want 0 (none) or more", c.GCMemoryLimitMiB))
	} else if c.GCPercent == -1 && c.GCMemoryLimitMiB == 0 {
		errs = append(errs, fmt.Errorf("gc-percent -1 with gc-memory-limit-mib 0: the collector would never run"))
	}
	return errors.Join(errs...)
}

// instrumentJSON is the file format: decimals as strings so nothing passes through a float.
type instrumentJSON struct {
	Symbol         string `json:"symbol"`
	Digits         uint8  `json:"digits"`
	VolumeStep     string `json:"volume_step"`
	VolumeMin      string `json:"volume_min"`
	ContractSize   string `json:"contract_size"`
	MarginRate     string `json:"margin_rate"`
	QuoteToAccount string `json:"quote_to_account"`
}

// LoadInstruments reads a JSON list of instruments; errors name the file and the entry.
func LoadInstruments(path string) ([]market.Instrument, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw []instrumentJSON
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []market.Instrument
	for i, r := range raw {
		inst := market.Instrument{Symbol: r.Symbol, Digits: r.Digits}
		for _, f := range []struct {
			name, v, def string
			dst          *decimal.D
		}{{"volume_step", r.VolumeStep, "", &inst.VolumeStep}, {"volume_min", r.VolumeMin, "", &inst.VolumeMin},
			{"contract_size", r.ContractSize, "", &inst.ContractSize}, {"margin_rate", r.MarginRate, "0", &inst.MarginRate},
			{"quote_to_account", r.QuoteToAccount, "1", &inst.QuoteToAccount}} {
			v := f.v
			if v == "" {
				v = f.def
			}
			d, err := decimal.Parse(v)
			if err != nil {
				return nil, fmt.Errorf("%s: instrument %d (%s): %s: %w", path, i, r.Symbol, f.name, err)
			}
			*f.dst = d
		}
		if err := inst.Validate(); err != nil {
			return nil, fmt.Errorf("%s: instrument %d: %w", path, i, err)
		}
		out = append(out, inst)
	}
	return out, nil
}
