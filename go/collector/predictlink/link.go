// Package predictlink is the collector's client of the inference server's StreamPredict: it batches
// ticks (flush at N ticks or after T, whichever first), sends closed bars, receives predictions and
// publishes them, measures each hop from the HopStamps, reconnects with exponential backoff, and
// pins symbols to endpoints by consistent hashing, moving them when an endpoint fails. Offering data
// never blocks ingest: each endpoint has a bounded queue and overflow is dropped and counted.
package predictlink

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inferv1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/auth/grpcauth"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
)

// Config shapes the link.
type Config struct {
	// Endpoints are inference server addresses (host:port).
	Endpoints []string
	// BatchTicks flushes a request once it holds this many ticks.
	BatchTicks int
	// FlushInterval is how long a non-empty request may wait for more items once nothing else is
	// queued; 0 sends it at once. Items queued meanwhile always join the request (up to BatchTicks),
	// so requests batch only while the link is behind, and a tick never waits for company.
	FlushInterval time.Duration
	// QueueSize bounds the items (tick batches or bars) waiting per endpoint.
	QueueSize int
	// BackoffMin and BackoffMax bound the reconnect delay, which doubles per failure (with jitter).
	BackoffMin, BackoffMax time.Duration
	// ResponseTimeout declares a stream dead when a request stays unanswered this long.
	ResponseTimeout time.Duration
	// VirtualNodes is the number of ring points per endpoint.
	VirtualNodes int
	// Token, if set, is sent as "authorization: Bearer <token>" on every StreamPredict (the
	// inference server refuses calls without it, ADR 0064).
	Token string
	// History, when set, warms each symbol from the terminal's history before its live items (ADR
	// 0105): when a stream opens and when a symbol first appears on it.
	History HistorySource
	// WarmupMaxBars caps the bars of one symbol's warm-up (the model's window is asked of the
	// server); 0 turns warm-up off.
	WarmupMaxBars int
	// WarmupTimeout bounds GetModelStatus and one symbol's history fetch; past it the symbol goes
	// live without a warm-up.
	WarmupTimeout time.Duration
	// WarmupHold bounds the items held per symbol while its warm-up is fetched; past it the symbol
	// goes live without a warm-up (nothing is dropped).
	WarmupHold int
}

// PredictionSink receives predictions (natspub.Publisher).
type PredictionSink interface {
	Prediction(*inferv1.Prediction)
}

type item struct {
	ticks *mdv1.TickBatch
	bar   *mdv1.Bar
	hops  []*typesv1.HopStamp
	enq   time.Time
	// mark is a Strategy Tester step marker (Mark): no data, a callback once everything queued
	// before it for its symbol has been answered.
	mark    func(decisions []int64)
	markSym string
}

func (it item) symbol() string {
	if it.ticks != nil {
		return it.ticks.Symbol
	}
	if it.bar != nil {
		return it.bar.Symbol
	}
	return it.markSym
}

func (it item) size() int {
	if it.ticks != nil {
		return len(it.ticks.TimeMsc)
	}
	if it.mark != nil {
		return 0
	}
	return 1
}

// marker waits for the answers of every request sent before it (ADR 0095).
type marker struct {
	after  uint64 // highest request id sent before the marker
	symbol string
	done   func(decisions []int64)
}

type endpoint struct {
	addr string
	q    chan item
	up   atomic.Bool
	conn *grpc.ClientConn
	// wasUp: the last stream opened (owned by the endpoint's goroutine, for logging).
	wasUp bool
	// held: items a warm-up still held when the stream ended; offered again before the queue.
	held []item
}

// Link streams market data to the inference endpoints.
type Link struct {
	cfg   Config
	m     *metrics.Metrics
	log   *slog.Logger
	sink  PredictionSink
	ring  *Ring
	eps   []*endpoint
	reqID atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	wg     sync.WaitGroup

	knownMu sync.Mutex
	known   map[string]struct{} // symbols seen, warmed as soon as a stream opens (bounded)
}

// New dials (lazily) every endpoint and starts one goroutine per endpoint; Close stops them.
func New(cfg Config, m *metrics.Metrics, log *slog.Logger, sink PredictionSink, opts ...grpc.DialOption) (*Link, error) {
	if cfg.BatchTicks < 1 {
		cfg.BatchTicks = 100
	}
	if cfg.FlushInterval < 0 {
		cfg.FlushInterval = 0
	}
	if cfg.QueueSize < 1 {
		cfg.QueueSize = 1024
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 50 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(5*time.Second, cfg.BackoffMin)
	}
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = 5 * time.Second
	}
	if cfg.VirtualNodes < 1 {
		cfg.VirtualNodes = 64
	}
	if cfg.WarmupTimeout <= 0 {
		cfg.WarmupTimeout = 10 * time.Second
	}
	if cfg.WarmupHold < 1 {
		cfg.WarmupHold = 4096
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{cfg: cfg, m: m, log: log, sink: sink, ring: NewRing(cfg.Endpoints, cfg.VirtualNodes),
		ctx: ctx, cancel: cancel, stop: make(chan struct{})}
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(grpcauth.Bearer(cfg.Token, false)))
	}
	for _, addr := range cfg.Endpoints {
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			cancel()
			for _, ep := range l.eps {
				ep.conn.Close()
			}
			return nil, err
		}
		l.eps = append(l.eps, &endpoint{addr: addr, q: make(chan item, cfg.QueueSize), conn: conn})
		m.InferenceEndpointUp.WithLabelValues(addr).Set(0)
	}
	for _, ep := range l.eps {
		l.wg.Add(1)
		go l.runEndpoint(ep)
	}
	return l, nil
}

// Owner returns the endpoint address that currently serves symbol, or "" when none is up.
func (l *Link) Owner(symbol string) string {
	if i := l.ring.Lookup(symbol, l.healthy); i >= 0 {
		return l.eps[i].addr
	}
	return ""
}

func (l *Link) healthy(i int) bool { return l.eps[i].up.Load() }

// OfferTicks queues a batch for its symbol's endpoint without blocking.
func (l *Link) OfferTicks(b *mdv1.TickBatch, hops []*typesv1.HopStamp) {
	l.offer(item{ticks: b, hops: hops, enq: time.Now()})
}

// OfferBar queues a closed bar for its symbol's endpoint without blocking.
func (l *Link) OfferBar(b *mdv1.Bar) { l.offer(item{bar: b, enq: time.Now()}) }

// Mark queues a Strategy Tester step marker behind what was offered for symbol (ADR 0095): done
// runs once the inference server has answered every request sent before it, with the time_msc of
// each prediction for symbol those answers carried (none: no decision). A marker lost with its
// stream or queue never runs: the bridge's step times out, as it must when inference is down.
func (l *Link) Mark(symbol string, done func(decisions []int64)) {
	l.offer(item{mark: done, markSym: symbol, enq: time.Now()})
}

func (l *Link) offer(it item) {
	i := l.ring.Lookup(it.symbol(), l.healthy)
	if i < 0 {
		l.m.InferenceDropped.WithLabelValues("no_endpoint").Add(float64(it.size()))
		l.markerLost(it, "no_endpoint")
		return
	}
	select {
	case l.eps[i].q <- it:
		l.m.QueueDepth.WithLabelValues("inference").Inc()
	default:
		l.m.QueueOverflow.WithLabelValues("inference").Inc()
		l.m.InferenceDropped.WithLabelValues("overflow").Add(float64(it.size()))
		l.markerLost(it, "overflow")
	}
}

func (l *Link) markerLost(it item, reason string) {
	if it.mark != nil {
		l.m.TesterMarkersLost.WithLabelValues(reason).Inc()
	}
}

// Close stops sending, flushes what is queued to endpoints that are up, waits for their answers
// (bounded by ctx) and closes the connections.
func (l *Link) Close(ctx context.Context) error {
	close(l.stop)
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		l.cancel()
		<-done
	}
	l.cancel()
	for _, ep := range l.eps {
		ep.conn.Close()
	}
	return err
}

func (l *Link) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

func (l *Link) runEndpoint(ep *endpoint) {
	defer l.wg.Done()
	client := inferv1.NewInferenceServiceClient(ep.conn)
	backoff := l.cfg.BackoffMin
	log := l.log.With("endpoint", ep.addr)
	failures := 0 // consecutive failed attempts, for logging at a bounded rate
	for attempt := 0; ; attempt++ {
		if l.stopped() {
			l.dropQueue(ep, "shutdown")
			return
		}
		if attempt > 0 {
			l.m.InferenceReconnects.WithLabelValues(ep.addr).Inc()
		}
		started := time.Now()
		err := l.serveStream(ep, client, log)
		ep.up.Store(false)
		l.m.InferenceEndpointUp.WithLabelValues(ep.addr).Set(0)
		// Symbols owned by this endpoint move to the next one on the ring; so does what was queued,
		// after what a warm-up held (older).
		held := ep.held
		ep.held = nil
		for _, it := range held {
			if l.stopped() {
				l.m.InferenceDropped.WithLabelValues("shutdown").Add(float64(it.size()))
				continue
			}
			l.offer(it)
		}
		l.requeue(ep)
		if l.stopped() {
			return
		}
		if time.Since(started) > 10*l.cfg.BackoffMax {
			backoff = l.cfg.BackoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		if ep.wasUp {
			failures = 0
			ep.wasUp = false
		}
		failures++
		if failures == 1 || failures%20 == 0 {
			// The first failure in a row, then one line per 20 attempts; the rest at debug level.
			log.Warn("inference stream down; reconnecting", "err", err, "retry_in", wait.String(), "attempts", failures)
		} else {
			log.Debug("inference stream still down", "err", err, "retry_in", wait.String(), "attempts", failures)
		}
		backoff = min(backoff*2, l.cfg.BackoffMax)
		select {
		case <-time.After(wait):
		case <-l.stop:
			return
		}
	}
}

func (l *Link) requeue(ep *endpoint) {
	for {
		select {
		case it := <-ep.q:
			l.m.QueueDepth.WithLabelValues("inference").Dec()
			if !l.stopped() {
				l.offer(it)
			} else {
				l.m.InferenceDropped.WithLabelValues("shutdown").Add(float64(it.size()))
			}
		default:
			return
		}
	}
}

func (l *Link) dropQueue(ep *endpoint, reason string) {
	for {
		select {
		case it := <-ep.q:
			l.m.QueueDepth.WithLabelValues("inference").Dec()
			l.m.InferenceDropped.WithLabelValues(reason).Add(float64(it.size()))
		default:
			return
		}
	}
}

type inflight struct {
	sent  time.Time
	ticks int
}

var errResponseTimeout = errors.New("inference did not answer a request within the response timeout")

// serveStream runs one StreamPredict call until it fails or the link stops.
func (l *Link) serveStream(ep *endpoint, client inferv1.InferenceServiceClient, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	stream, err := client.StreamPredict(ctx)
	if err != nil {
		return err
	}
	// grpc-go opens a stream only on a ready transport, so the endpoint is reachable now; a server
	// that then hangs is caught by ResponseTimeout.
	ep.up.Store(true)
	ep.wasUp = true
	l.m.InferenceEndpointUp.WithLabelValues(ep.addr).Set(1)
	log.Info("inference stream open")

	var mu sync.Mutex
	pending := map[uint64]inflight{}
	mk := &markers{}
	recvErr := make(chan error, 1)
	go func() { recvErr <- l.receive(ep, stream, &mu, pending, mk) }()
	w := l.newWarmer(ctx, ep, client, log)

	err = l.send(ep, stream, &mu, pending, recvErr, mk, w)
	if err == nil {
		// Shutting down: everything queued was sent; wait for the answers, bounded by Close's ctx.
		_ = stream.CloseSend()
		err = <-recvErr
	} else {
		cancel()
		<-recvErr
	}
	cancel()
	w.wait()
	ep.held = w.drain()
	mu.Lock()
	for _, f := range pending {
		l.m.InferenceDropped.WithLabelValues("in_flight").Add(float64(f.ticks))
	}
	if n := len(mk.waiting); n > 0 {
		// Their answers went with the stream: the bridge's steps time out (ADR 0095).
		l.m.TesterMarkersLost.WithLabelValues("stream").Add(float64(n))
	}
	mu.Unlock()
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// send batches queued items into requests. It returns nil when the link stops (after flushing).
func (l *Link) send(ep *endpoint, stream inferv1.InferenceService_StreamPredictClient, mu *sync.Mutex,
	pending map[uint64]inflight, recvErr chan error, mk *markers, w *warmer) error {
	var lastSent uint64
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	watchdog := time.NewTicker(max(l.cfg.ResponseTimeout/4, time.Millisecond))
	defer watchdog.Stop()
	var (
		req     *inferv1.StreamPredictRequest
		bySym   map[string]*mdv1.TickBatch
		nTicks  int
		oldest  time.Time
		flushOn bool
	)
	flush := func() error {
		if req == nil {
			return nil
		}
		now := time.Now()
		req.RequestId = l.reqID.Add(1)
		req.Hops = append(req.Hops, &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_COLLECTOR_SEND, TimeUs: now.UnixMicro()})
		mu.Lock()
		pending[req.RequestId] = inflight{sent: now, ticks: nTicks}
		mu.Unlock()
		l.m.InferenceBatchTicks.Observe(float64(nTicks))
		l.m.HopLatency.WithLabelValues("collector_queue").Observe(now.Sub(oldest).Seconds())
		lastSent = req.RequestId
		err := stream.Send(req)
		if err == nil {
			l.m.InferenceRequests.WithLabelValues(ep.addr).Inc()
			l.m.TicksOut.WithLabelValues("inference").Add(float64(nTicks))
		}
		req, bySym, nTicks, flushOn = nil, nil, 0, false
		timer.Stop()
		return err
	}
	var markErr error
	var addNow func(it item)
	add := func(it item) {
		l.m.QueueDepth.WithLabelValues("inference").Dec()
		held, overflow := w.hold(it)
		for _, x := range overflow {
			addNow(x)
		}
		if !held {
			addNow(it)
		}
	}
	// warm sends a symbol's warm-up bars, then the items held meanwhile.
	warm := func(bars []*mdv1.Bar, held []item) error {
		for k := 0; k < len(bars); k += warmupChunk {
			r := &inferv1.StreamPredictRequest{RequestId: l.reqID.Add(1), Warmup: true, Bars: bars[k:min(k+warmupChunk, len(bars))]}
			mu.Lock()
			pending[r.RequestId] = inflight{sent: time.Now()}
			mu.Unlock()
			lastSent = r.RequestId
			if err := stream.Send(r); err != nil {
				return err
			}
			l.m.InferenceRequests.WithLabelValues(ep.addr).Inc()
		}
		for _, it := range held {
			addNow(it)
			if markErr != nil {
				return markErr
			}
			if flushOn {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return flush()
	}
	addNow = func(it item) {
		if it.mark != nil {
			// Everything before the marker goes now; the marker waits for its answers.
			if err := flush(); err != nil {
				markErr = err
				return
			}
			mu.Lock()
			answered := len(pending) == 0
			mk.add(marker{after: lastSent, symbol: it.markSym, done: it.mark})
			var fire []func()
			if answered {
				fire = mk.ready(^uint64(0))
			}
			mu.Unlock()
			for _, f := range fire {
				f()
			}
			return
		}
		if req == nil {
			req = &inferv1.StreamPredictRequest{}
			bySym = map[string]*mdv1.TickBatch{}
			oldest = it.enq
			req.Hops = append(req.Hops, it.hops...)
		}
		if it.bar != nil {
			req.Bars = append(req.Bars, it.bar)
			nTicks++ // a bar closes a period: send it now
			flushOn = true
			return
		}
		// Copy columns: the batch is shared with the other sinks and must not be appended to in place.
		b := bySym[it.ticks.Symbol]
		if b == nil {
			b = &mdv1.TickBatch{Symbol: it.ticks.Symbol}
			bySym[b.Symbol] = b
			req.Ticks = append(req.Ticks, b)
		}
		appendBatch(b, it.ticks)
		nTicks += len(it.ticks.TimeMsc)
		if nTicks >= l.cfg.BatchTicks {
			flushOn = true
		}
	}
	for {
		select {
		case it := <-ep.q:
			first := req == nil
			add(it)
			// Take what is already queued without waiting, up to the batch size.
			for !flushOn {
				select {
				case it2 := <-ep.q:
					add(it2)
					continue
				default:
				}
				break
			}
			if markErr != nil {
				return markErr
			}
			if flushOn || l.cfg.FlushInterval == 0 {
				// The queue is empty: with no flush interval the request goes now (ADR 0108).
				if err := flush(); err != nil {
					return err
				}
			} else if first && req != nil {
				timer.Reset(l.cfg.FlushInterval)
			}
		case <-timer.C:
			if err := flush(); err != nil {
				return err
			}
		case r := <-w.statusC():
			if err := warm(nil, w.onStatus(r)); err != nil {
				return err
			}
		case r := <-w.resultsC():
			if err := warm(w.onResult(r)); err != nil {
				return err
			}
		case now := <-watchdog.C:
			mu.Lock()
			var late bool
			for _, f := range pending {
				if now.Sub(f.sent) > l.cfg.ResponseTimeout {
					late = true
					break
				}
			}
			mu.Unlock()
			if late {
				return errResponseTimeout
			}
		case err := <-recvErr:
			recvErr <- err // for serveStream
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return err
		case <-l.stop:
			for {
				select {
				case it := <-ep.q:
					add(it)
					if flushOn {
						if err := flush(); err != nil {
							return err
						}
					}
					continue
				default:
				}
				break
			}
			// What a warm-up still holds goes now, in order: never lost at shutdown.
			for _, it := range w.drain() {
				addNow(it)
				if flushOn {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			return flush()
		}
	}
}

func appendBatch(dst, src *mdv1.TickBatch) {
	n := len(dst.TimeMsc)
	dst.TimeMsc = append(dst.TimeMsc, src.TimeMsc...)
	dst.Bid = append(dst.Bid, src.Bid...)
	dst.Ask = append(dst.Ask, src.Ask...)
	dst.Last = appendColumn(dst.Last, src.Last, n, len(src.TimeMsc))
	dst.Volume = appendColumn(dst.Volume, src.Volume, n, len(src.TimeMsc))
	dst.Flags = appendColumn(dst.Flags, src.Flags, n, len(src.TimeMsc))
	dst.Sequence = appendColumn(dst.Sequence, src.Sequence, n, len(src.TimeMsc))
}

// appendColumn keeps optional columns either empty or full length when merging batches.
func appendColumn[T any](dst, src []T, have, add int) []T {
	if len(dst) == 0 && len(src) == 0 {
		return dst
	}
	if len(dst) == 0 && have > 0 {
		dst = make([]T, have, have+add)
	}
	if len(src) == 0 {
		return append(dst, make([]T, add)...)
	}
	return append(dst, src...)
}

func (l *Link) receive(ep *endpoint, stream inferv1.InferenceService_StreamPredictClient, mu *sync.Mutex, pending map[uint64]inflight, mk *markers) error {
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		now := time.Now()
		mu.Lock()
		f, ok := pending[resp.RequestId]
		delete(pending, resp.RequestId)
		mk.collect(resp.Predictions)
		// Answers come in request order: every marker placed after requests up to this one is due.
		fire := mk.ready(resp.RequestId)
		mu.Unlock()

		if ok {
			l.m.HopLatency.WithLabelValues("inference_round_trip").Observe(now.Sub(f.sent).Seconds())
		}
		for _, p := range resp.Predictions {
			l.observeHops(p.Hops, now)
			l.m.InferencePredictions.Inc()
			if l.sink != nil {
				l.sink.Prediction(p)
			}
		}
		// The predictions went to the sink (NATS) before the markers report them.
		for _, f := range fire {
			f()
		}
	}
}

// markers are one stream's Strategy Tester step markers and the predictions answered since the
// last one fired, per symbol that has had a marker (so live symbols cost nothing). Guarded by the
// stream's mu.
type markers struct {
	waiting   []marker
	collected map[string][]int64
}

func (m *markers) add(x marker) {
	if m.collected == nil {
		m.collected = map[string][]int64{}
	}
	if _, ok := m.collected[x.symbol]; !ok {
		m.collected[x.symbol] = nil
	}
	m.waiting = append(m.waiting, x)
}

func (m *markers) collect(preds []*inferv1.Prediction) {
	if m.collected == nil {
		return
	}
	for _, p := range preds {
		if got, ok := m.collected[p.Symbol]; ok {
			m.collected[p.Symbol] = append(got, p.TimeMsc)
		}
	}
}

// ready removes the markers due once request id answered has been answered and returns their
// callbacks, each with its symbol's predictions.
func (m *markers) ready(answered uint64) []func() {
	var out []func()
	keep := m.waiting[:0]
	for _, x := range m.waiting {
		if x.after > answered {
			keep = append(keep, x)
			continue
		}
		got := m.collected[x.symbol]
		m.collected[x.symbol] = nil
		done := x.done
		out = append(out, func() { done(got) })
	}
	m.waiting = keep
	return out
}

func (l *Link) observeHops(hops []*typesv1.HopStamp, now time.Time) {
	var send, recv, done, out int64
	for _, h := range hops {
		switch h.Stage {
		case typesv1.HopStage_HOP_STAGE_COLLECTOR_SEND:
			send = h.TimeUs
		case typesv1.HopStage_HOP_STAGE_INFERENCE_RECEIVE:
			recv = h.TimeUs
		case typesv1.HopStage_HOP_STAGE_INFERENCE_DONE:
			done = h.TimeUs
		case typesv1.HopStage_HOP_STAGE_INFERENCE_SEND:
			out = h.TimeUs
		}
	}
	obs := func(hop string, from, to int64) {
		if from > 0 && to >= from {
			l.m.HopLatency.WithLabelValues(hop).Observe(float64(to-from) / 1e6)
		}
	}
	obs("collector_to_inference", send, recv)
	obs("inference_model", recv, done)
	obs("inference_to_collector", out, now.UnixMicro())
}
