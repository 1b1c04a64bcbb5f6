// Package app assembles the execution service process from its parts: journal, risk engine, venue,
// engine, replay and reconciliation, NATS quotes and signals, the gRPC server with health and
// reflection, and the metrics endpoint. main and the end-to-end tests both run it, so the tests
// exercise exactly what ships. Every goroutine it starts is owned and awaited by Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"github.com/kairos-mt5/kairos/go/auth/peerlimit"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	inferencev1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	marketdatav1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/auth/natsauth"
	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/policy"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/service"
	"github.com/kairos-mt5/kairos/go/execution/venue"
	"github.com/kairos-mt5/kairos/go/execution/venue/mt5"
	"github.com/kairos-mt5/kairos/go/execution/venue/paper"
	"github.com/kairos-mt5/kairos/go/tlsreload"
)

// Version is the service version reported in Welcome and logs.
const Version = "0.1.0"

// Ready describes the bound endpoints once the service is up.
type Ready struct {
	GRPCAddr    string
	MetricsAddr string
	BridgeAddr  string
}

// NewLogger returns the JSON logger with the component field.
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})).With("component", "execution")
}

// Run starts the service and blocks until ctx ends, then shuts down gracefully. ready, if not nil,
// receives the bound addresses once everything listens.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, ready func(Ready)) (err error) {
	// The collector's target is the process's: rare cycles keep its pauses and assists off all but
	// a few submissions (ADR 0101, 0106). An operator's GOGC and GOMEMLIMIT win.
	if os.Getenv("GOMEMLIMIT") == "" && cfg.GCMemoryLimitMiB > 0 {
		debug.SetMemoryLimit(int64(cfg.GCMemoryLimitMiB) << 20)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}
	m := metrics.New()
	// TLS material loads first: a bad certificate is a start-up error before anything runs.
	var srvOpts []grpc.ServerOption
	if tc := cfg.ServerTLS(); tc.Enabled() {
		certs, err := tlsreload.NewServer(tc, m.TLSReloadFail, log.With("part", "tls"))
		if err != nil {
			return fmt.Errorf("gRPC TLS: %w", err)
		}
		srvOpts = append(srvOpts, grpc.Creds(certs.Credentials()))
	}
	if !strings.Contains(cfg.DB, "://") {
		if dir := filepath.Dir(cfg.DB); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("journal directory: %w", err)
			}
		}
	}
	jr, err := journal.OpenSync(ctx, cfg.DB, journal.Sync(cfg.JournalSync))
	if err != nil {
		return err
	}
	jr.SetFlushTimeout(cfg.JournalTimeout)
	jr.OnFlush = func(n int, d time.Duration) {
		m.JournalFlush.Observe(d.Seconds())
		m.JournalBatch.Observe(float64(n))
	}
	defer func() {
		if cerr := jr.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	book := portfolio.NewBook()
	rk := risk.New(cfg.Limits, cfg.Instruments, book)
	var (
		v     venue.Venue
		mv    *mt5.Venue
		start = time.Now()
	)
	switch cfg.Venue {
	case "mt5":
		mv = mt5.New(mt5.Config{Addr: cfg.BridgeAddr, HeartbeatInterval: cfg.MT5.HeartbeatInterval, CancelOnDisconnect: cfg.MT5.CancelOnDisconnect,
			DeviationPoints: cfg.MT5.DeviationPoints, CommandTTL: cfg.MT5.CommandTTL, ServerVersion: "kairos-execution " + Version,
			BridgeKey: cfg.MT5.BridgeKey, BridgeInsecure: cfg.MT5.BridgeInsecure, MaxSessions: cfg.MT5.MaxSessions,
			SessionTTL: cfg.MT5.SessionTTL, MaxTracked: cfg.MT5.MaxTracked, Guard: cfg.MT5.Guard}, log, m,
			func(s string) uint8 {
				if i, ok := rk.Instrument(s); ok {
					return i.Digits
				}
				return 5
			})
		v = mv
	default:
		v = paper.New(paper.Config{SlippagePoints: cfg.Paper.SlippagePoints, SlippagePointsPerLot: cfg.Paper.SlippagePointsPerLot,
			CommissionPerLot: cfg.Paper.CommissionPerLot, StartingBalance: cfg.Paper.StartingBalance, Currency: cfg.Currency,
			IDPrefix: fmt.Sprintf("P%x-", start.UnixNano())}, cfg.Instruments)
	}
	initial, _ := config.ParseState(cfg.InitialState)
	// --clock=market: the engine runs on the data's time (a Strategy Tester run, ADR 0095).
	var (
		clock   func() int64
		advance func(int64)
	)
	if cfg.Clock == "market" {
		mc := &market.Clock{}
		clock, advance = mc.Now, mc.Advance
	}
	eng := engine.New(engine.Options{Risk: rk, Book: book, Venue: v, Journal: jr, Metrics: m, Logger: log, InitialState: initial, Currency: cfg.Currency,
		JournalTimeout: cfg.JournalTimeout, MaxOrders: cfg.MaxOrdersInMemory, Clock: clock})
	defer eng.Close() // idempotent: also on the early returns below
	if mv != nil {
		mv.SetEngine(eng)
	}
	st, err := eng.Replay(ctx)
	if err != nil {
		return fmt.Errorf("journal replay: %w", err)
	}
	log.Info("journal replayed", "backend", jr.Backend(), "entries", st.Entries, "orders", st.Orders, "open", st.Open, "fills", st.Fills, "last_seq", st.LastSeq, "max_in_memory", st.MaxInMemory)

	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 8)
	goOwned := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}

	// P&L gauges: after every fill (engine) and once a second for quote-driven unrealized P&L,
	// never per quote.
	eng.PublishPnL()
	goOwned("pnl", func() error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				eng.PublishPnL()
			}
		}
	})

	rd := Ready{}
	if mv != nil {
		if err := mv.Listen(); err != nil {
			return err
		}
		rd.BridgeAddr = mv.Addr()
		goOwned("bridge listener", func() error { return mv.Serve(ctx) })
		defer func() { _ = mv.Close() }()
	} else if err := eng.Reconcile(ctx, nil); err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}

	var nc *nats.Conn
	if cfg.NATSURL != "" {
		natsOpts := []nats.Option{nats.Name("kairos-execution"), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond),
			nats.RetryOnFailedConnect(true)}
		if cfg.NATSCreds != "" {
			creds, err := natsauth.Read(cfg.NATSCreds)
			if err != nil {
				return err
			}
			natsOpts = append(natsOpts, nats.UserInfo(creds.User, creds.Password))
		}
		// Signals are trusted because the NATS server lets only the inference identity publish on
		// kairos.signal.> (deploy/nats/auth.conf); execution cannot tell publishers apart itself.
		nc, err = nats.Connect(cfg.NATSURL, natsOpts...)
		if err != nil {
			return fmt.Errorf("nats %s: %w", cfg.NATSURL, err)
		}
		defer nc.Close()
		// Subscribe before announcing readiness, so nothing published after it is missed.
		qch := make(chan *nats.Msg, 8192)
		qsub, err := nc.ChanSubscribe(market.TicksSubject, qch)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", market.TicksSubject, err)
		}
		defer func() { _ = qsub.Unsubscribe() }()
		goOwned("quotes", func() error { return runQuotes(ctx, qch, eng, m, log, advance) })
		if cfg.Policy.Enabled {
			sch, ssub, err := policy.Subscribe(nc)
			if err != nil {
				return err
			}
			defer func() { _ = ssub.Unsubscribe() }()
			// Signals carry their model's policy; the flags only make the fallback for those without.
			fallback := &policy.Rules{EntryEdge: cfg.Policy.Threshold, MoveUp: 1, MoveDown: 1, MinHoldBars: 1,
				MaxHoldBars: cfg.Policy.MaxHoldingBars, CooldownBars: cfg.Policy.CooldownBars, MaxLots: cfg.Policy.Lots.Float()}
			if err := fallback.Validate(); err != nil {
				return fmt.Errorf("fallback signal policy: %w", err)
			}
			pcfg := policy.Config{StrategyID: cfg.Policy.StrategyID, Fallback: fallback, MaxSignalAge: cfg.Policy.MaxSignalAge}
			pcfg.Before = func(sig *inferencev1.Signal) { signalQuote(sig, eng, advance, cfg.Policy.SignalQuoteWait, m, log) }
			if mv != nil {
				// A Strategy Tester bridge in lockstep waits for each decision (ADR 0095).
				pcfg.Decided = func(sig *inferencev1.Signal, out policy.Outcome, commands int) {
					mv.Decided(sig.GetSymbol(), sig.GetTimeMsc(), string(out), commands)
				}
			}
			pol := policy.New(pcfg, eng, log, m)
			goOwned("policy", func() error { return pol.Run(ctx, sch) })
		}
		if err := nc.FlushTimeout(5 * time.Second); err != nil {
			log.Warn("NATS not reachable yet; subscriptions start when it is", "url", cfg.NATSURL, "err", err)
		}
	}

	lis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listen %s: %w", cfg.GRPCAddr, err)
	}
	rd.GRPCAddr = lis.Addr().String()
	lis = peerlimit.Listener(lis, cfg.GRPC.MaxConnections, m.GRPCConnRefused.Inc, m.GRPCIncomplete.Inc)
	if cfg.Token == "" {
		log.Warn("no bearer token configured: every call but health and reflection will be refused (set KAIROS_EXECUTION_TOKEN or --token-file)")
	}
	auth := service.Auth(cfg.Token, cfg.OpenReadsOnLoopback)
	auth.ClientIdentities = cfg.TLSClientIdentities
	gs := grpc.NewServer(peerlimit.ServerOptions(cfg.GRPC.Limits, append(srvOpts, auth.ServerOptions()...)...)...)
	execv1.RegisterExecutionServiceServer(gs, service.NewWithLimits(eng, jr, service.Limits{MaxReportStreams: cfg.GRPC.MaxReportStreams,
		ReportBufferBytes: cfg.GRPC.ReportStreamBufferBytes, Metrics: m}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(execv1.ExecutionService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(gs)
	goOwned("journal health", func() error {
		// A journal that cannot write takes the service out of rotation: the engine has halted
		// trading and refuses every submission; health says so to load balancers and probes.
		select {
		case <-ctx.Done():
		case <-eng.JournalFailed():
			hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			hs.SetServingStatus(execv1.ExecutionService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
		}
		return nil
	})
	goOwned("grpc", func() error { return gs.Serve(lis) })

	var hsrv *http.Server
	if cfg.MetricsAddr != "" {
		ml, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			gs.Stop()
			wg.Wait()
			return fmt.Errorf("metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		rd.MetricsAddr = ml.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		hsrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		goOwned("metrics", func() error {
			if err := hsrv.Serve(ml); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	log.Info("execution service up", "version", Version, "grpc", rd.GRPCAddr, "grpc_tls", cfg.ServerTLS().Enabled(), "grpc_mtls", cfg.TLSClientCA != "", "metrics", rd.MetricsAddr, "bridge", rd.BridgeAddr,
		"venue", v.Name(), "journal", jr.Backend(), "nats", cfg.NATSURL)
	if ready != nil {
		ready(rd)
	}

	<-ctx.Done()
	log.Info("shutting down")
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(cfg.ShutdownTimeout):
		gs.Stop()
		<-stopped
	}
	eng.Close()
	if hsrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		_ = hsrv.Shutdown(sctx)
		scancel()
	}
	if mv != nil {
		_ = mv.Close()
	}
	if nc != nil {
		nc.Close()
	}
	wg.Wait()
	close(errc)
	for e := range errc {
		if err == nil {
			err = e
		}
	}
	return err
}

// runQuotes feeds the latest quote of every configured symbol to the engine from the collector's
// tick batches on kairos.md.<SYMBOL>.
func runQuotes(ctx context.Context, ch <-chan *nats.Msg, eng *engine.Engine, m *metrics.Metrics, log *slog.Logger, advance func(int64)) error {
	b := &marketdatav1.TickBatch{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-ch:
			b.Reset()
			if err := proto.Unmarshal(msg.Data, b); err != nil {
				log.Warn("undecodable tick batch", "subject", msg.Subject, "err", err)
				continue
			}
			inst, ok := eng.Instrument(b.GetSymbol())
			if !ok {
				continue
			}
			if t := b.GetTimeMsc(); advance != nil && len(t) > 0 {
				advance(t[len(t)-1] * 1000)
			}
			qs, err := market.Quotes(b, inst, eng.Now())
			if err != nil {
				log.Warn("tick batch refused", "subject", msg.Subject, "err", err)
				continue
			}
			m.Quotes.Add(float64(len(qs)))
			if err := eng.OnQuotes(qs); err != nil {
				return err
			}
		}
	}
}

// signalQuote is what execution does before a signal is decided on. The collector's quote and the
// inference server's signal travel on separate subjects and are handled by separate goroutines, so a
// signal can overtake its own tick (its bar's closing tick; more often since the collector sends a
// request to inference at once, ADR 0108). The signal then waits, at most wait, for that tick to be
// applied: the ticks before it are worked in order (a resting stop among them fills where it
// touched), and the decision is executed on the market it was made on. Past the wait the quote the
// signal carries counts (OnQuoteIfNewer, ADR 0103), so the paper venue never fills a decision at
// the previous tick's quote. Under the market clock (ADR 0095) the clock first moves to the signal's
// time, or the previous tick's quote would look 15 s (virtual) old and the order be refused as
// stale. advance is nil under the wall clock.
func signalQuote(sig *inferencev1.Signal, eng *engine.Engine, advance func(int64), wait time.Duration, m *metrics.Metrics, log *slog.Logger) {
	t := sig.GetTimeMsc()
	if t <= 0 {
		return
	}
	if advance != nil {
		advance(t * 1000)
	}
	if eng.WaitQuote(sig.GetSymbol(), t*1000, 0) {
		m.SignalQuoteWaits.WithLabelValues("in").Inc()
		return
	}
	m.SignalQuoteWaiting.Inc()
	caught := eng.WaitQuote(sig.GetSymbol(), t*1000, wait)
	m.SignalQuoteWaiting.Dec()
	if caught {
		m.SignalQuoteWaits.WithLabelValues("caught_up").Inc()
		return
	}
	m.SignalQuoteWaits.WithLabelValues("timed_out").Inc()
	inst, ok := eng.Instrument(sig.GetSymbol())
	if !ok || sig.GetBid() <= 0 || sig.GetAsk() <= 0 {
		return
	}
	q, err := market.LastQuote(&marketdatav1.TickBatch{Symbol: sig.GetSymbol(), TimeMsc: []int64{t}, Bid: []float64{sig.GetBid()},
		Ask: []float64{sig.GetAsk()}}, inst, eng.Now())
	if err == nil {
		err = eng.OnQuoteIfNewer(q)
	}
	if err != nil {
		log.Warn("the signal's quote was not recorded", "symbol", sig.GetSymbol(), "time_msc", t, "err", err)
	}
}
