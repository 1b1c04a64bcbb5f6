package bridgelink

import (
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
)

// Frame error reasons (kairos_bridge_frame_errors_total{reason}). Each ends the connection.
const (
	ReasonMalformed          = "malformed"           // the frame does not decode, or has no body
	ReasonOversized          = "oversized"           // the length prefix is above MaxFrameBytes
	ReasonProtocol           = "protocol"            // no Hello first, wrong channel, a second Hello
	ReasonUnsupportedVersion = "unsupported_version" // Hello.api_version is not APIVersion
	ReasonTruncated          = "truncated"           // the peer closed inside a frame
	ReasonHeartbeatTimeout   = "heartbeat_timeout"   // nothing received for three heartbeat intervals
	ReasonIO                 = "io"                  // a socket error (reset, write failure)
	ReasonUnauthenticated    = "unauthenticated"     // Hello without a valid key proof (auth_failures_total says why)
	ReasonSessionLimit       = "session_limit"       // a new session while MaxSessions all have a connection
	ReasonHandshakeTimeout   = "handshake_timeout"   // no complete, proven Hello within HandshakeTimeout
)

var reasons = []string{ReasonMalformed, ReasonOversized, ReasonProtocol, ReasonUnsupportedVersion,
	ReasonTruncated, ReasonHeartbeatTimeout, ReasonIO, ReasonUnauthenticated, ReasonSessionLimit, ReasonHandshakeTimeout}

// rttBuckets span 10 µs to 1 s: a loopback round trip sits at the low end, a stalled peer at the top.
var rttBuckets = []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1}

// Metrics are one channel's instruments. The families carry a channel label (market_data,
// trading), so the collector's and the execution service's links have the same names and read
// alike on a dashboard; each service registers them in its own registry.
type Metrics struct {
	// Channel is the label value, e.g. "market_data".
	Channel string
	// Connections counts connections whose Hello was accepted and that have not ended.
	Connections prometheus.Gauge
	// Frames counts frames by direction (in, out) and body (BodyName), duplicates included.
	Frames *prometheus.CounterVec
	// FrameErrors counts connections ended by a bad frame or a dead peer, by reason (Reason*).
	FrameErrors *prometheus.CounterVec
	// Duplicates counts frames dropped because their sequence was already processed.
	Duplicates prometheus.Counter
	// SequenceGaps counts jumps in the peer's sequence; GapFrames the numbers missing in them.
	SequenceGaps prometheus.Counter
	GapFrames    prometheus.Counter
	// HeartbeatRTT observes the round trip of the link's heartbeats as the peer echoes them.
	HeartbeatRTT prometheus.Histogram
	// AuthFailures counts Hellos refused for the bridge key, by reason (Auth*).
	AuthFailures *prometheus.CounterVec
	// Sessions is the size of the session table (resume points kept).
	Sessions prometheus.Gauge
	// SessionsEvicted counts sessions forgotten, by reason (EvictTTL, EvictCapacity).
	SessionsEvicted *prometheus.CounterVec
	// ConnectionsRefused counts connections closed at accept, by reason (Refuse*).
	ConnectionsRefused *prometheus.CounterVec
	// Handshakes is the number of connections in their handshake (not yet proven).
	Handshakes prometheus.Gauge
	// AuthTrackedPeers is the size of the failed-handshake map (remote addresses);
	// AuthPeersEvicted counts addresses it dropped to stay within MaxTrackedPeers.
	AuthTrackedPeers prometheus.Gauge
	AuthPeersEvicted prometheus.Counter
}

// ChannelLabel is a channel's label value: CHANNEL_MARKET_DATA → "market_data".
func ChannelLabel(ch bridgev1.Channel) string {
	return strings.ToLower(strings.TrimPrefix(ch.String(), "CHANNEL_"))
}

// NewMetrics registers the bridge families in reg (nil: not registered, for tests) and returns
// the view of one channel. Registering a second channel in the same registry reuses the families.
// Every series of the channel exists from the start (at 0), so increase() sees the first event.
func NewMetrics(reg prometheus.Registerer, ch bridgev1.Channel) *Metrics {
	label := ChannelLabel(ch)
	conns := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kairos_bridge_connections",
		Help: "Open bridge connections whose Hello was accepted, by channel."}, []string{"channel"}))
	frames := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_bridge_frames_total",
		Help: "Bridge frames by channel, direction (in, out) and body; duplicates included."}, []string{"channel", "direction", "body"}))
	errs := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_bridge_frame_errors_total",
		Help: "Bridge connections closed for a bad frame, a protocol error or a dead peer, by channel and reason."}, []string{"channel", "reason"}))
	dups := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_bridge_duplicate_frames_total",
		Help: "Bridge frames dropped because their sequence was already processed, by channel."}, []string{"channel"}))
	gaps := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_bridge_sequence_gaps_total",
		Help: "Gaps in the bridge's frame sequence, by channel."}, []string{"channel"}))
	gapFrames := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_bridge_gap_frames_total",
		Help: "Bridge frames missing inside sequence gaps, by channel."}, []string{"channel"}))
	rtt := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kairos_bridge_heartbeat_rtt_seconds",
		Help: "Heartbeat round trip to the bridge, by channel.", Buckets: rttBuckets}, []string{"channel"}))
	auth := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_bridge_auth_failures_total",
		Help: "Bridge Hellos refused for the bridge key (no proof, malformed, wrong key or another connection's proof), by channel and reason."}, []string{"channel", "reason"}))
	sessions := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kairos_bridge_sessions",
		Help: "Bridge sessions whose resume point is kept, by channel."}, []string{"channel"}))
	evictions := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_bridge_sessions_evicted_total",
		Help: "Bridge sessions forgotten, by channel and reason (ttl: idle too long, capacity: the table was full)."}, []string{"channel", "reason"}))
	refused := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_bridge_connections_refused_total",
		Help: "Bridge connections closed at accept, by channel and reason (connection_limit, handshake_limit, address_limit, rate_limited: the address failed too many handshakes)."}, []string{"channel", "reason"}))
	shaking := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kairos_bridge_handshakes",
		Help: "Bridge connections in their handshake (key not proven yet), by channel."}, []string{"channel"}))
	tracked := register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kairos_bridge_auth_tracked_peers",
		Help: "Remote addresses with failed bridge handshakes being counted (bounded), by channel."}, []string{"channel"}))
	trackedEvicted := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_bridge_auth_tracked_peers_evicted_total",
		Help: "Remote addresses dropped from the failed-handshake map to keep it bounded, by channel."}, []string{"channel"}))
	m := &Metrics{
		Channel:      label,
		Connections:  conns.WithLabelValues(label),
		Frames:       frames.MustCurryWith(prometheus.Labels{"channel": label}),
		FrameErrors:  errs.MustCurryWith(prometheus.Labels{"channel": label}),
		Duplicates:   dups.WithLabelValues(label),
		SequenceGaps: gaps.WithLabelValues(label),
		GapFrames:    gapFrames.WithLabelValues(label),
		HeartbeatRTT: rtt.WithLabelValues(label).(prometheus.Histogram),

		AuthFailures:    auth.MustCurryWith(prometheus.Labels{"channel": label}),
		Sessions:        sessions.WithLabelValues(label),
		SessionsEvicted: evictions.MustCurryWith(prometheus.Labels{"channel": label}),

		ConnectionsRefused: refused.MustCurryWith(prometheus.Labels{"channel": label}),
		Handshakes:         shaking.WithLabelValues(label),
		AuthTrackedPeers:   tracked.WithLabelValues(label),
		AuthPeersEvicted:   trackedEvicted.WithLabelValues(label),
	}
	for _, r := range refuseReasons {
		m.ConnectionsRefused.WithLabelValues(r)
	}
	for _, r := range reasons {
		m.FrameErrors.WithLabelValues(r)
	}
	for _, r := range authReasons {
		m.AuthFailures.WithLabelValues(r)
	}
	for _, r := range []string{EvictTTL, EvictCapacity} {
		m.SessionsEvicted.WithLabelValues(r)
	}
	return m
}

// register adds c to reg, or returns the collector already registered under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
