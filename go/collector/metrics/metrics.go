// Package metrics holds the collector's Prometheus instruments in one place, so every package
// records into the same registry and /metrics shows the whole service.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	"github.com/kairos-mt5/kairos/go/bridgelink"
)

// latencyBucketsSeconds spans 10 µs to 1 s: loopback hops sit at the low end, a stalled peer at the top.
var latencyBucketsSeconds = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1,
}

// Metrics is every instrument of the collector. Labels stay low-cardinality (no per-tick labels).
type Metrics struct {
	Registry *prometheus.Registry

	TicksIn              *prometheus.CounterVec // source: bridge | grpc
	TicksAccepted        *prometheus.CounterVec // source
	TicksRejected        *prometheus.CounterVec // reason
	TicksOut             *prometheus.CounterVec // sink: nats | subscriber | inference
	TickSeqGaps          prometheus.Counter
	RejectLogsSuppressed prometheus.Counter

	// Bridge is the market-data channel's view of the kairos_bridge_* families (go/bridgelink).
	Bridge *bridgelink.Metrics

	BarsEmitted  *prometheus.CounterVec // period
	BarLateTicks prometheus.Counter

	QueueDepth    *prometheus.GaugeVec   // queue
	QueueOverflow *prometheus.CounterVec // queue

	Subscribers         prometheus.Gauge
	SubscribersCut      prometheus.Counter
	SubscriberConflated prometheus.Counter
	// SubscriberConflatedInfos counts SymbolInfo updates superseded while a subscriber conflated.
	SubscriberConflatedInfos prometheus.Counter

	InferenceBatchTicks  prometheus.Histogram
	InferenceRequests    *prometheus.CounterVec // endpoint
	InferencePredictions prometheus.Counter
	InferenceReconnects  *prometheus.CounterVec   // endpoint
	InferenceEndpointUp  *prometheus.GaugeVec     // endpoint
	InferenceDropped     *prometheus.CounterVec   // reason: overflow | no_endpoint | in_flight
	HopLatency           *prometheus.HistogramVec // hop
	// Warm-up from the terminal's history (ADR 0105).
	InferenceWarmups            *prometheus.CounterVec // outcome: done | empty | failed | hold_overflow | too_many_symbols
	InferenceWarmupBars         prometheus.Counter
	InferenceWarmupHeld         prometheus.Counter
	InferenceWarmupHoldOverflow prometheus.Counter
	// Strategy Tester lockstep (ADR 0095).
	TesterSteps       *prometheus.CounterVec // outcome: decision | no_decision | unsent
	TesterMarkersLost *prometheus.CounterVec // reason: overflow | no_endpoint | stream

	NATSPublished *prometheus.CounterVec // kind: md | bar | pred
	NATSErrors    prometheus.Counter

	TLSReloadFailures prometheus.Counter

	// Bounds on what peers may hold (ADR 0055).
	SourcesEvicted  prometheus.Counter
	SourcesRefused  prometheus.Counter
	SymbolsRefused  prometheus.Counter
	GRPCConnRefused prometheus.Counter
	// GRPCIncomplete counts gRPC connections closed before the HTTP/2 preface (slowloris, scans).
	GRPCIncomplete prometheus.Counter
}

// New builds the instruments on a fresh registry (tests get isolated registries).
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{r}
	return &Metrics{
		Registry:             r,
		TicksIn:              f.counterVec("kairos_collector_ticks_in_total", "Ticks received, before validation.", "source"),
		TicksAccepted:        f.counterVec("kairos_collector_ticks_accepted_total", "Ticks that passed validation and went downstream.", "source"),
		TicksRejected:        f.counterVec("kairos_collector_ticks_rejected_total", "Ticks rejected by validation, by reason.", "reason"),
		TicksOut:             f.counterVec("kairos_collector_ticks_out_total", "Ticks handed to a sink.", "sink"),
		TickSeqGaps:          f.counter("kairos_collector_tick_sequence_gaps_total", "Ticks missing according to per-symbol tick sequence numbers."),
		RejectLogsSuppressed: f.counter("kairos_collector_reject_logs_suppressed_total", "Reject log lines skipped by the log rate limit."),
		Bridge:               bridgelink.NewMetrics(r, bridgev1.Channel_CHANNEL_MARKET_DATA),
		BarsEmitted:          f.counterVec("kairos_collector_bars_emitted_total", "Closed bars emitted, by period.", "period"),
		BarLateTicks:         f.counter("kairos_collector_bar_late_ticks_total", "Ticks older than their symbol's open bar, left out of bars."),
		SourcesEvicted:       f.counter("kairos_collector_sources_evicted_total", "Idle publisher sources dropped to make room under --max-sources."),
		SourcesRefused:       f.counter("kairos_collector_sources_refused_total", "Publish calls refused because --max-sources publishers were active."),
		SymbolsRefused:       f.counter("kairos_collector_symbols_refused_total", "Symbol announcements or tick batches refused because the collector held --max-symbols symbols."),
		GRPCConnRefused:      f.counter("kairos_collector_grpc_connections_refused_total", "gRPC connections closed on accept because --grpc-max-connections were open."),
		GRPCIncomplete:       f.counter("kairos_collector_grpc_handshakes_incomplete_total", "gRPC connections closed before the client sent the HTTP/2 preface: cut by --grpc-handshake-timeout (a slowloris), a port scan, not a gRPC client."),
		QueueDepth:           f.gaugeVec("kairos_collector_queue_depth", "Items waiting in a bounded queue.", "queue"),
		QueueOverflow:        f.counterVec("kairos_collector_queue_overflow_total", "Items a full bounded queue dropped or conflated.", "queue"),
		Subscribers:          f.gauge("kairos_collector_subscribers", "Active gRPC market-data subscribers."),
		SubscribersCut:       f.counter("kairos_collector_subscribers_cut_total", "Slow subscribers ended with RESOURCE_EXHAUSTED."),
		SubscriberConflated:  f.counter("kairos_collector_subscriber_conflated_batches_total", "Tick batches conflated for slow subscribers."),
		SubscriberConflatedInfos: f.counter("kairos_collector_subscriber_conflated_symbol_infos_total",
			"SymbolInfo updates a slow subscriber never received: superseded, while it conflated, by a newer one of the same symbol."),
		InferenceBatchTicks: f.histogramBuckets("kairos_collector_inference_batch_ticks", "Ticks per StreamPredict request.",
			[]float64{1, 2, 5, 10, 25, 50, 100, 200, 500, 1000, 5000}),
		InferenceRequests:    f.counterVec("kairos_collector_inference_requests_total", "StreamPredict requests sent, by endpoint.", "endpoint"),
		InferencePredictions: f.counter("kairos_collector_predictions_total", "Predictions received from inference."),
		InferenceReconnects:  f.counterVec("kairos_collector_inference_reconnects_total", "StreamPredict reconnect attempts, by endpoint.", "endpoint"),
		InferenceEndpointUp:  f.gaugeVec("kairos_collector_inference_endpoint_up", "1 while an inference endpoint's stream is open.", "endpoint"),
		InferenceDropped:     f.counterVec("kairos_collector_inference_dropped_ticks_total", "Ticks not delivered to inference, by reason.", "reason"),
		InferenceWarmups: f.counterVec("kairos_collector_inference_warmups_total",
			"Symbol warm-ups from the terminal's history on an inference stream, by outcome: done, empty (the terminal had no bars), failed (fetch error or timeout), hold_overflow, too_many_symbols; all but done go live without one.", "outcome"),
		InferenceWarmupBars: f.counter("kairos_collector_inference_warmup_bars_total", "History bars sent to inference as warm-up (state only, no prediction)."),
		InferenceWarmupHeld: f.counter("kairos_collector_inference_warmup_held_total", "Live items (tick batches, bars) held while their symbol's warm-up was fetched; all are sent after it."),
		InferenceWarmupHoldOverflow: f.counter("kairos_collector_inference_warmup_hold_overflow_total",
			"Symbols whose warm-up hold filled (--predict-warmup-hold): they went live without a warm-up, nothing dropped."),
		TesterSteps:       f.counterVec("kairos_collector_tester_steps_total", "Strategy Tester steps answered to lockstep bridges (TesterStep), by outcome: decision, no_decision, unsent (the connection had ended).", "outcome"),
		TesterMarkersLost: f.counterVec("kairos_collector_tester_markers_lost_total", "Strategy Tester step markers lost before inference answered (the bridge's step times out), by reason.", "reason"),
		HopLatency: f.histogramVec("kairos_collector_hop_latency_seconds",
			"Per-hop latency from HopStamps: bridge_to_collector, collector_queue, collector_to_inference, inference_model, inference_to_collector, inference_round_trip.", "hop"),
		NATSPublished: f.counterVec("kairos_collector_nats_published_total", "Messages published on NATS, by kind (md, bar, pred).", "kind"),
		NATSErrors:    f.counter("kairos_collector_nats_errors_total", "NATS publish errors."),
		TLSReloadFailures: f.counter("kairos_collector_tls_reload_failures_total",
			"Changed TLS certificate files that failed to load; the previous pair keeps serving."),
	}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

type factory struct{ r *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.r.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.r.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.r.MustRegister(g)
	return g
}

func (f factory) histogramBuckets(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.r.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: latencyBucketsSeconds}, labels)
	f.r.MustRegister(h)
	return h
}
