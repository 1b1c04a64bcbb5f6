// Package metrics is the execution service's one door for Prometheus metrics: orders by state,
// denials by code, latency histograms per stage, journal flushes, bridge link health and signals.
// Each service instance has its own registry, so tests can run several in one process.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	"github.com/kairos-mt5/kairos/go/bridgelink"
)

// Stage names for StageLatency.
const (
	StageRisk      = "risk"       // pre-trade checks
	StageJournal   = "journal"    // waiting for durability
	StageVenueSend = "venue_send" // handing the command to the venue
	StageVenueAck  = "venue_ack"  // venue request to first answer (MT5 round trip)
	StageSubmit    = "submit"     // SubmitOrder end to end inside the service
	StageSignal    = "signal"     // signal received to order decided
)

// latencyBuckets spans 500 ns to 1 s: risk checks live at the bottom, MT5 round trips at the top.
var latencyBuckets = []float64{5e-7, 1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.25, 0.5, 1}

// Metrics holds every collector.
type Metrics struct {
	Registry *prometheus.Registry

	OrdersByStatus  *prometheus.GaugeVec
	OrdersSubmitted *prometheus.CounterVec
	Denials         *prometheus.CounterVec
	DenialsRefused  *prometheus.CounterVec // denied submissions refused unrecorded past --denial-rate
	StageLatency    *prometheus.HistogramVec
	Fills           *prometheus.CounterVec
	DuplicateFills  prometheus.Counter
	Overfills       prometheus.Counter
	InvalidEvents   *prometheus.CounterVec
	UnknownEvents   *prometheus.CounterVec
	TradingState    prometheus.Gauge
	Reconciled      prometheus.Gauge
	JournalFlush    prometheus.Histogram
	JournalBatch    prometheus.Histogram
	JournalFailures prometheus.Counter
	JournalHealthy  prometheus.Gauge
	// Bounds on what peers may hold (ADR 0055).
	GRPCConnRefused      prometheus.Counter
	GRPCIncomplete       prometheus.Counter
	ReportStreams        prometheus.Gauge
	ReportStreamsRefused prometheus.Counter
	ReportStreamsCut     prometheus.Counter
	Bridge               *bridgelink.Metrics // the trading channel's view of kairos_bridge_* (go/bridgelink)
	Ambiguous            prometheus.Counter
	Signals              *prometheus.CounterVec
	TesterDecisions      *prometheus.CounterVec // decisions told to a Strategy Tester bridge (ADR 0095)
	Quotes               prometheus.Counter
	QuotesOvertaken      prometheus.Counter     // ticks dropped because a signal brought a later quote first (ADR 0103)
	SignalQuoteWaits     *prometheus.CounterVec // signals by whether their tick was in, came while waiting, or not (ADR 0108)
	SignalQuoteWaiting   prometheus.Gauge       // signals waiting for their own tick now (ADR 0108)
	ReconcileAdjust      *prometheus.CounterVec
	ReconcileRefused     prometheus.Counter     // venue-reported symbols past engine.MaxAdoptedSymbols
	OrdersInMemory       prometheus.Gauge       // orders the engine holds (ADR 0125)
	OrdersEvicted        prometheus.Counter     // finished orders dropped from memory past --max-orders-in-memory
	EvictedLookups       *prometheus.CounterVec // journal lookups of ids no longer in memory, by result
	TLSReloadFail        prometheus.Counter
	RealizedPnL          *prometheus.GaugeVec
	UnrealizedPnL        *prometheus.GaugeVec
	Equity               prometheus.Gauge

	mu       sync.RWMutex
	stages   map[string]prometheus.Observer
	statuses map[string]prometheus.Gauge
}

// New registers every collector in a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{Registry: r, stages: map[string]prometheus.Observer{}, statuses: map[string]prometheus.Gauge{}}
	m.OrdersByStatus = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kairos_execution_orders", Help: "Orders held in memory, by state: every working order, and finished ones up to --max-orders-in-memory (ADR 0125)."}, []string{"status"})
	m.OrdersSubmitted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_orders_submitted_total", Help: "Orders that passed risk and went to the venue."}, []string{"venue", "symbol"})
	m.Denials = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_risk_denials_total", Help: "Orders denied by pre-trade risk, by code."}, []string{"reason"})
	m.DenialsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_denials_refused_total", Help: "Submissions pre-trade risk would deny, refused RESOURCE_EXHAUSTED without an order or journal entry because --denial-rate denials were recorded in the window, by the denial code."}, []string{"reason"})
	m.StageLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kairos_execution_stage_latency_seconds", Help: "Latency per stage of the order path.", Buckets: latencyBuckets}, []string{"stage"})
	m.Fills = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_fills_total", Help: "Fills applied."}, []string{"venue", "symbol"})
	m.DuplicateFills = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_duplicate_fills_total", Help: "Fills dropped because their trade id was already applied."})
	m.Overfills = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_overfills_total", Help: "Fills refused because they exceeded the quantity left."})
	m.InvalidEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_invalid_transitions_total", Help: "Venue events the order state machine refused."}, []string{"event"})
	m.UnknownEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_unknown_order_events_total", Help: "Venue events for an order neither in memory nor in the journal, ignored: the positions follow the venue at the next reconciliation."}, []string{"event"})
	m.TradingState = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kairos_execution_trading_state", Help: "Trading state: 1 ACTIVE, 2 REDUCING, 3 HALTED."})
	m.Reconciled = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kairos_execution_reconciled", Help: "1 once reconciliation with the venue converged."})
	m.JournalFlush = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kairos_execution_journal_flush_seconds", Help: "Duration of one durable journal flush (group commit).", Buckets: latencyBuckets})
	m.JournalBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kairos_execution_journal_batch_entries", Help: "Entries per journal flush.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)})
	// Registered whatever the venue, so the link's series exist (at 0) on a paper instance too.
	m.Bridge = bridgelink.NewMetrics(r, bridgev1.Channel_CHANNEL_TRADING)
	m.JournalFailures = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_journal_failures_total", Help: "Journal writes that failed or stalled past the journal timeout; the first halts trading and the service reports NOT_SERVING."})
	m.JournalHealthy = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kairos_execution_journal_healthy", Help: "1 while the journal writes, 0 once it failed (until a restart)."})
	m.GRPCConnRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_grpc_connections_refused_total", Help: "gRPC connections closed on accept because --grpc-max-connections were open."})
	m.GRPCIncomplete = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_grpc_handshakes_incomplete_total", Help: "gRPC connections closed before the client sent the HTTP/2 preface: cut by --grpc-handshake-timeout (a slowloris), a port scan, not a gRPC client."})
	m.ReportStreams = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kairos_execution_report_streams", Help: "StreamExecutionReports subscribers connected."})
	m.ReportStreamsRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_report_streams_refused_total", Help: "StreamExecutionReports calls refused because --max-report-streams were open."})
	m.ReportStreamsCut = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_report_streams_cut_total", Help: "Report subscribers cut for falling behind (entries or --report-stream-buffer-bytes); they resume from the journal."})
	m.Ambiguous = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_ambiguous_results_total", Help: "MT5 results (10012, -11) resolved by query instead of guessed."})
	m.Signals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_signals_total", Help: "Signals received, by symbol and outcome."}, []string{"symbol", "outcome"})
	m.TesterDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_tester_decisions_total", Help: "Decisions sent to a Strategy Tester bridge in lockstep (TesterDecision), by policy outcome."}, []string{"outcome"})
	m.Quotes = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_quotes_total", Help: "Quotes received from the collector's tick batches."})
	m.QuotesOvertaken = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_quotes_overtaken_total", Help: "Collector ticks dropped because a signal had already brought a quote as late or later (ADRs 0103, 0108)."})
	m.SignalQuoteWaits = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_signal_quote_waits_total", Help: "Signals by where their own tick was when they arrived: in (already applied), caught_up (applied while the signal waited, up to --signal-quote-wait), timed_out (the signal's quote was used instead) (ADR 0108)."}, []string{"outcome"})
	m.SignalQuoteWaiting = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kairos_execution_signal_quote_waiting", Help: "Signals waiting for their own tick to be applied (ADR 0108)."})
	m.ReconcileAdjust = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_reconcile_adjustments_total", Help: "Differences between journal and venue fixed at reconciliation."}, []string{"kind"})
	m.ReconcileRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_reconcile_symbols_refused_total", Help: "Symbols a venue snapshot reported that reconciliation did not adopt: neither configured nor held, past the bound of 4,096 adopted symbols."})
	m.OrdersInMemory = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kairos_execution_orders_in_memory", Help: "Orders the engine holds in memory: every working order and the newest finished ones, up to --max-orders-in-memory (ADR 0125)."})
	m.OrdersEvicted = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_orders_evicted_total", Help: "Finished orders dropped from memory past --max-orders-in-memory; the journal answers for them (ADR 0125)."})
	m.EvictedLookups = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_evicted_order_lookups_total", Help: "Client order ids not in memory that the evicted-id filter passed, looked up in the journal, by result: found (an evicted order) or absent (a false positive of the filter) (ADR 0125)."}, []string{"result"})
	m.TLSReloadFail = prometheus.NewCounter(prometheus.CounterOpts{Name: "kairos_execution_tls_reload_failures_total", Help: "Changed TLS certificate files that failed to load; the previous pair keeps serving."})
	m.RealizedPnL = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kairos_execution_realized_pnl", Help: "Realized P&L per symbol since the journal began, net of commission, account currency."}, []string{"symbol"})
	m.UnrealizedPnL = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kairos_execution_unrealized_pnl", Help: "P&L of the open position per symbol at the latest quote (bid for longs, ask for shorts), account currency."}, []string{"symbol"})
	m.Equity = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kairos_execution_equity", Help: "Account equity from the venue's (or the paper account's) latest snapshot, account currency."})
	for _, c := range []prometheus.Collector{m.TesterDecisions, m.TLSReloadFail, m.RealizedPnL, m.UnrealizedPnL, m.Equity, m.OrdersByStatus, m.OrdersSubmitted, m.Denials, m.DenialsRefused, m.StageLatency, m.Fills, m.DuplicateFills,
		m.Overfills, m.InvalidEvents, m.UnknownEvents, m.TradingState, m.Reconciled, m.JournalFlush, m.JournalBatch, m.JournalFailures, m.JournalHealthy, m.GRPCConnRefused, m.GRPCIncomplete, m.ReportStreams, m.ReportStreamsRefused, m.ReportStreamsCut, m.Ambiguous, m.Signals, m.Quotes, m.QuotesOvertaken, m.SignalQuoteWaits, m.SignalQuoteWaiting, m.ReconcileAdjust, m.ReconcileRefused,
		m.OrdersInMemory, m.OrdersEvicted, m.EvictedLookups, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// Observe records d for a stage.
func (m *Metrics) Observe(stage string, d time.Duration) {
	if m == nil {
		return
	}
	m.mu.RLock()
	o, ok := m.stages[stage]
	m.mu.RUnlock()
	if !ok {
		o = m.StageLatency.WithLabelValues(stage)
		m.mu.Lock()
		m.stages[stage] = o
		m.mu.Unlock()
	}
	o.Observe(d.Seconds())
}

// Status returns the orders-by-state gauge of a state, cached (it changes on every transition).
func (m *Metrics) Status(name string) prometheus.Gauge {
	m.mu.RLock()
	g, ok := m.statuses[name]
	m.mu.RUnlock()
	if !ok {
		g = m.OrdersByStatus.WithLabelValues(name)
		m.mu.Lock()
		m.statuses[name] = g
		m.mu.Unlock()
	}
	return g
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}
