// Package collector is the Kairos market-data collector (issue #4): it ingests ticks from the MT5
// bridge (kairos.bridge.v1 frames over TCP) and from gRPC publishers, validates them, builds bars,
// streams them to the inference server (kairos.inference.v1 StreamPredict), serves
// kairos.collector.v1 MarketDataService and fans market data out on NATS. This package wires the
// parts (one per sub-package) into a service with an owned lifecycle: New, Run, then shutdown that
// drains every queue and awaits every goroutine.
package collector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/kairos-mt5/kairos/go/auth/peerlimit"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/kairos-mt5/kairos/go/auth/natsauth"
	"github.com/kairos-mt5/kairos/go/bridgelink"
	"github.com/kairos-mt5/kairos/go/collector/bridge"
	"github.com/kairos-mt5/kairos/go/collector/config"
	"github.com/kairos-mt5/kairos/go/collector/fanout"
	"github.com/kairos-mt5/kairos/go/collector/ingest"
	"github.com/kairos-mt5/kairos/go/collector/mdservice"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/collector/natspub"
	"github.com/kairos-mt5/kairos/go/collector/predictlink"
	"github.com/kairos-mt5/kairos/go/collector/validate"
	"github.com/kairos-mt5/kairos/go/tlsreload"
)

// Version is reported in Welcome and logs.
const Version = "kairos-collector 0.1.0"

// Service is a running collector.
type Service struct {
	cfg     config.Config
	log     *slog.Logger
	Metrics *metrics.Metrics

	natsSrv *server.Server
	Pub     *natspub.Publisher
	Link    *predictlink.Link
	Hub     *fanout.Hub
	Pipe    *ingest.Pipeline
	Bridge  *bridgelink.Listener
	// History routes FetchHistory to the terminals connected to Bridge.
	History *bridge.History
	grpcSrv *grpc.Server
	grpcLn  net.Listener
	health  *health.Server
	httpSrv *http.Server
	httpLn  net.Listener
	stop    chan struct{}
	stateMu sync.Mutex
}

// state is what the state file holds.
type state struct {
	// Version 2 names bridge sources bridgelink.SessionKey (decimal session id); a file without it
	// was written before, with the session id in hexadecimal (see migrateSourceNames).
	Version  int               `json:"version,omitempty"`
	Sessions map[uint64]uint64 `json:"sessions"`
	// SessionSeen is each session's last activity, Unix seconds, so idle sessions expire across
	// restarts; a session without it counts as active at load time.
	SessionSeen map[uint64]int64 `json:"session_seen,omitempty"`
	Pipeline    ingest.State     `json:"pipeline"`
}

const stateVersion = 2

// migrateSourceNames renames the bridge sources of a version-1 state file ("bridge:<hex id>") to
// today's names, so a collector upgraded in place keeps each session's validation watermarks.
func migrateSourceNames(st *state) {
	if st.Version >= stateVersion || len(st.Pipeline.Sources) == 0 {
		return
	}
	old := st.Pipeline.Sources
	renamed := make(map[string]map[string]validate.State, len(old))
	moved := map[string]bool{}
	for id := range st.Sessions {
		legacy := "bridge:" + strconv.FormatUint(id, 16)
		if w, ok := old[legacy]; ok {
			renamed[bridge.SourceName(id)] = w
			moved[legacy] = true
		}
	}
	for name, w := range old {
		if _, taken := renamed[name]; !moved[name] && !taken {
			renamed[name] = w
		}
	}
	st.Pipeline.Sources = renamed
}

// New binds every listener and starts the embedded NATS server; Run serves.
func New(cfg config.Config, log *slog.Logger) (s *Service, err error) {
	s = &Service{cfg: cfg, log: log, Metrics: metrics.New(), stop: make(chan struct{}), History: bridge.NewHistory()}
	defer func() {
		if err != nil {
			s.closePartial()
		}
	}()
	if cfg.NATSURL == "" {
		if s.natsSrv, err = natspub.StartEmbedded(cfg.NATSAddr, cfg.NATSAuthFile); err != nil {
			return nil, err
		}
		if cfg.NATSAuthFile == "" {
			log.Warn("embedded NATS runs without authorization (--nats-insecure): any local process may publish signals and quotes")
		}
		log.Info("embedded NATS listening", "url", s.natsSrv.ClientURL(), "authorization", cfg.NATSAuthFile != "")
	}
	var natsOpts []nats.Option
	if cfg.NATSCreds != "" {
		creds, err := natsauth.Read(cfg.NATSCreds)
		if err != nil {
			return nil, err
		}
		natsOpts = append(natsOpts, nats.UserInfo(creds.User, creds.Password))
	}
	if cfg.NATSJetStream {
		s.Pub, err = natspub.ConnectJetStream(cfg.NATSURL, natspub.DefaultAckTimeout, s.Metrics, natsOpts...)
	} else {
		s.Pub, err = natspub.Connect(cfg.NATSURL, s.natsSrv, s.Metrics, natsOpts...)
	}
	if err != nil {
		return nil, err
	}
	var link ingest.PredictSink
	if len(cfg.InferenceEndpoints) > 0 {
		var dialOpts []grpc.DialOption
		if tc := cfg.InferenceTLS(); tc.Enabled() {
			creds, err := tc.Credentials()
			if err != nil {
				return nil, fmt.Errorf("inference link TLS: %w", err)
			}
			dialOpts = append(dialOpts, grpc.WithTransportCredentials(creds))
		}
		s.Link, err = predictlink.New(predictlink.Config{Endpoints: cfg.InferenceEndpoints, BatchTicks: cfg.InferenceBatchTicks,
			FlushInterval: cfg.InferenceFlushInterval, QueueSize: cfg.InferenceQueue, BackoffMin: cfg.InferenceBackoffMin,
			BackoffMax: cfg.InferenceBackoffMax, ResponseTimeout: cfg.InferenceResponseTimeout, Token: cfg.InferenceToken,
			History: terminalHistory{s.History}, WarmupMaxBars: cfg.InferenceWarmupBars, WarmupTimeout: cfg.InferenceWarmupTimeout,
			WarmupHold: cfg.InferenceWarmupHold}, s.Metrics, log.With("part", "predictlink"), s.Pub, dialOpts...)
		if err != nil {
			return nil, err
		}
		link = s.Link
	}
	policy, err := fanout.ParsePolicy(cfg.SlowSubscriber)
	if err != nil {
		return nil, err
	}
	s.Hub = fanout.New(cfg.SubscriberQueue, policy, s.Metrics)
	s.Hub.SetQueueBytes(cfg.SubscriberQueueBytes)
	s.Pipe = ingest.New(ingest.Config{BarPeriods: cfg.BarPeriods, BarIdleClose: cfg.BarIdleClose, NATSQueue: cfg.NATSQueue,
		NATSQueueBytes: cfg.NATSQueueBytes, MaxSources: cfg.MaxSources, SourceIdle: cfg.SourceIdle, MaxSymbols: cfg.MaxSymbols,
		InferenceBarPeriod: cfg.InferenceBarPeriod, RejectLogInterval: cfg.RejectLogInterval,
		Validate: validate.Config{FutureTolerance: cfg.FutureTolerance, BackwardsTolerance: cfg.BackwardsTolerance,
			AllowCrossed: cfg.AllowCrossed, AllowUnknownSymbols: cfg.AllowUnknownSymbols}},
		s.Metrics, log.With("part", "ingest"), s.Hub, s.Pub, link)
	if s.Bridge, err = bridge.Listen(bridge.Config{Addr: cfg.BridgeAddr, HeartbeatInterval: cfg.HeartbeatInterval,
		MaxFrameBytes: cfg.MaxFrameBytes, ServerVersion: Version, Key: cfg.BridgeKey, Insecure: cfg.BridgeInsecure,
		MaxSessions: cfg.BridgeMaxSessions, SessionTTL: cfg.BridgeSessionTTL, Guard: cfg.BridgeGuard, History: s.History}, s.Pipe, s.Metrics, log.With("part", "bridge")); err != nil {
		return nil, err
	}
	if err = s.loadState(); err != nil {
		return nil, err
	}
	if s.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		return nil, fmt.Errorf("gRPC listener: %w", err)
	}
	s.grpcLn = peerlimit.Listener(s.grpcLn, cfg.GRPC.MaxConnections, s.Metrics.GRPCConnRefused.Inc, s.Metrics.GRPCIncomplete.Inc)
	var srvOpts []grpc.ServerOption
	if tc := cfg.ServerTLS(); tc.Enabled() {
		certs, err := tlsreload.NewServer(tc, s.Metrics.TLSReloadFailures, log.With("part", "tls"))
		if err != nil {
			return nil, fmt.Errorf("gRPC TLS: %w", err)
		}
		srvOpts = append(srvOpts, grpc.Creds(certs.Credentials()))
	}
	if cfg.Token == "" {
		log.Warn("no bearer token configured: every MarketDataService call will be refused (set KAIROS_COLLECTOR_TOKEN or --token-file)")
	}
	auth := mdservice.Auth(cfg.Token, cfg.OpenReadsOnLoopback)
	auth.ClientIdentities = cfg.TLSClientIdentities
	s.grpcSrv = grpc.NewServer(peerlimit.ServerOptions(cfg.GRPC, append(srvOpts, auth.ServerOptions()...)...)...)
	mdservice.New(s.Pipe, s.Hub, s.stop).WithHistory(s.History).Register(s.grpcSrv)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpcSrv, s.health)
	reflection.Register(s.grpcSrv)
	if cfg.MetricsAddr != "" {
		if s.httpLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.Metrics.Handler())
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	}
	return s, nil
}

// BridgeAddr, GRPCAddr, MetricsAddr and NATSURL are the bound addresses (useful with port 0).
func (s *Service) BridgeAddr() string { return s.Bridge.Addr().String() }

// GRPCAddr is the bound gRPC address.
func (s *Service) GRPCAddr() string { return s.grpcLn.Addr().String() }

// MetricsAddr is the bound metrics address ("" when disabled).
func (s *Service) MetricsAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// NATSURL is the URL of the NATS server in use.
func (s *Service) NATSURL() string {
	if s.natsSrv != nil {
		return s.natsSrv.ClientURL()
	}
	return s.cfg.NATSURL
}

// Run serves until ctx ends, then shuts down gracefully: stop taking input, drain the pipeline
// and the inference link, save state, close NATS. Every goroutine it started has ended on return.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(2)
	go func() { defer wg.Done(); errc <- s.Bridge.Serve() }()
	go func() { defer wg.Done(); errc <- s.grpcSrv.Serve(s.grpcLn) }()
	if s.httpSrv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.httpSrv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	saverDone := make(chan struct{})
	if s.cfg.StateFile != "" && s.cfg.StateInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); s.saveStatePeriodically(saverDone) }()
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus("kairos.collector.v1.MarketDataService", healthpb.HealthCheckResponse_SERVING)
	s.log.Info("collector serving", "version", Version, "bridge", s.BridgeAddr(), "grpc", s.GRPCAddr(),
		"grpc_tls", s.cfg.ServerTLS().Enabled(), "grpc_mtls", s.cfg.TLSClientCA != "", "inference_tls", s.cfg.InferenceTLS().Enabled(),
		"metrics", s.MetricsAddr(), "nats", s.NATSURL(), "nats_jetstream", s.cfg.NATSJetStream, "inference", s.cfg.InferenceEndpoints)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		if runErr != nil {
			s.log.Error("server failed; shutting down", "err", runErr)
		}
	}
	close(saverDone)
	shutErr := s.shutdown()
	wg.Wait()
	return errors.Join(runErr, shutErr)
}

func (s *Service) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	s.log.Info("collector shutting down")
	s.health.Shutdown()
	var errs []error
	// 1. No more input: bridge connections end with SHUTTING_DOWN, gRPC streams are told to stop.
	if err := s.Bridge.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("bridge: %w", err))
	}
	close(s.stop)
	grpcDone := make(chan struct{})
	go func() { s.grpcSrv.GracefulStop(); close(grpcDone) }()
	select {
	case <-grpcDone:
	case <-ctx.Done():
		s.grpcSrv.Stop()
		<-grpcDone
	}
	// 2. Drain: the NATS queue, then the inference queues (their predictions still go to NATS).
	if err := s.Pipe.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("pipeline: %w", err))
	}
	if s.Link != nil {
		if err := s.Link.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("inference link: %w", err))
		}
	}
	if err := s.saveState(); err != nil {
		errs = append(errs, err)
	}
	if s.httpSrv != nil {
		if err := s.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.Pub.Close(time.Until(deadline(ctx))); err != nil {
		errs = append(errs, fmt.Errorf("NATS flush: %w", err))
	}
	if s.natsSrv != nil {
		s.natsSrv.Shutdown()
		s.natsSrv.WaitForShutdown()
	}
	s.log.Info("collector stopped")
	return errors.Join(errs...)
}

func deadline(ctx context.Context) time.Time {
	d, ok := ctx.Deadline()
	if !ok || time.Until(d) < 100*time.Millisecond {
		return time.Now().Add(100 * time.Millisecond)
	}
	return d
}

// closePartial releases what New opened before it failed.
func (s *Service) closePartial() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s.Bridge != nil {
		_ = s.Bridge.Close(ctx)
	}
	if s.Pipe != nil {
		_ = s.Pipe.Close(ctx)
	}
	if s.Link != nil {
		_ = s.Link.Close(ctx)
	}
	if s.grpcLn != nil {
		s.grpcLn.Close()
	}
	if s.httpLn != nil {
		s.httpLn.Close()
	}
	if s.Pub != nil {
		_ = s.Pub.Close(time.Second)
	}
	if s.natsSrv != nil {
		s.natsSrv.Shutdown()
	}
}

func (s *Service) loadState() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	data, err := os.ReadFile(s.cfg.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("state file %s: %w", s.cfg.StateFile, err)
	}
	migrateSourceNames(&st)
	// The pipeline first: a session expired or beyond the cap is evicted while restoring, and its
	// ingest source goes with it (bridge.Listen's OnEvict).
	if err := s.Pipe.Restore(st.Pipeline); err != nil {
		return fmt.Errorf("state file %s: %w", s.cfg.StateFile, err)
	}
	for id, seq := range st.Sessions {
		var seen time.Time
		if sec, ok := st.SessionSeen[id]; ok {
			seen = time.Unix(sec, 0)
		}
		s.Bridge.RestoreSeen(id, seq, seen)
	}
	s.log.Info("state restored", "file", s.cfg.StateFile, "sessions", len(st.Sessions), "sources", len(st.Pipeline.Sources))
	return nil
}

func (s *Service) saveStatePeriodically(done <-chan struct{}) {
	t := time.NewTicker(s.cfg.StateInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if err := s.saveState(); err != nil {
				s.log.Warn("state file not written", "err", err)
			}
		}
	}
}

// saveState writes atomically (temp file + rename) so a crash never leaves half a state file.
func (s *Service) saveState() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	// Sessions first: a frame processed between the two snapshots is then resent after a restart and
	// dropped by the validators' watermarks, rather than counted as processed but missing from bars.
	snap := s.Bridge.Snapshot()
	sessions := make(map[uint64]uint64, len(snap))
	seen := make(map[uint64]int64, len(snap))
	for _, ss := range snap {
		sessions[ss.ID] = ss.LastSeq
		seen[ss.ID] = ss.LastSeen.Unix()
	}
	data, err := json.Marshal(state{Version: stateVersion, Sessions: sessions, SessionSeen: seen, Pipeline: s.Pipe.Snapshot()})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.cfg.StateFile), ".collector-state-*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("state file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), s.cfg.StateFile)
}

// NewLogger is the slog JSON logger with the component field every Kairos service logs.
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})).With("component", "collector")
}
