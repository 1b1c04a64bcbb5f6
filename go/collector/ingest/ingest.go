// Package ingest is the collector's core path: every tick batch, from the bridge or from a gRPC
// publisher, enters through a Source, is validated, feeds the bar builders and is handed to the
// sinks (gRPC subscribers, NATS, the inference link). Only NATS applies backpressure (a bounded
// queue feeding one publisher goroutine); subscribers and inference never block ingest.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/collector/bars"
	"github.com/kairos-mt5/kairos/go/collector/fanout"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
	"github.com/kairos-mt5/kairos/go/collector/validate"
)

// NATSSink publishes on NATS (natspub.Publisher).
type NATSSink interface {
	// Ticks publishes a batch; raw, when not nil, is the batch's wire encoding, reused as the payload.
	Ticks(b *mdv1.TickBatch, raw []byte)
	Bar(*mdv1.Bar)
}

// RawTicksSink is a NATSSink that can publish a batch from its encoding alone (natspub.Publisher
// without JetStream): a loaned batch (Source.TicksLoaned) then goes to NATS without being copied.
// TicksEncoded must not keep raw once it returns (nats.Conn.Publish copies it): the frame buffer raw
// lies in may read the next frame (Source.TicksLoanedFrame).
type RawTicksSink interface {
	TicksEncoded(symbol string, ticks int, raw []byte)
}

// DurableSink is a NATSSink whose server acknowledges what it stores (natspub with JetStream).
type DurableSink interface {
	NATSSink
	// Durable is true when Stored waits for the server.
	Durable() bool
	// Stored returns once the first n calls of Ticks and Bar are stored, or with ctx's error.
	Stored(ctx context.Context, n uint64) error
}

// PredictSink is the inference link; its methods must not block.
type PredictSink interface {
	OfferTicks(b *mdv1.TickBatch, hops []*typesv1.HopStamp)
	OfferBar(b *mdv1.Bar)
}

// Config shapes the pipeline.
type Config struct {
	// BarPeriods are the bar periods built for every symbol, in seconds.
	BarPeriods []uint32
	// BarIdleClose closes a symbol's open bars when its period is over by the wall clock and no tick
	// came for this long; zero disables the timer (bars then close on the next tick only).
	BarIdleClose time.Duration
	// Validate sets the tick checks.
	Validate validate.Config
	// NATSQueue bounds the batches (each with the bars it closed) waiting for the NATS publisher.
	NATSQueue int
	// NATSQueueBytes bounds them in encoded bytes too (0: no byte bound); ingest waits beyond.
	NATSQueueBytes int
	// MaxSources bounds the publisher sources (PublisherSource); 0: no bound.
	MaxSources int
	// SourceIdle is how long a publisher source must be idle before it may make room for a new one.
	SourceIdle time.Duration
	// MaxSymbols bounds the symbols the pipeline keeps state for; 0: no bound.
	MaxSymbols int
	// InferenceBarPeriod, when non-zero, sends closed bars of this period to inference instead of ticks.
	InferenceBarPeriod uint32
	// RejectLogInterval bounds reject logging to one line per reason per interval.
	RejectLogInterval time.Duration
}

// natsItem is what one dispatch hands the NATS publisher: a tick batch (if any) and the bars it
// closed, in that order, as one queue entry (not one per message: a quiet market closes several
// bars per 100 ticks, and each entry costs a channel hand-off and a byte-budget round trip).
type natsItem struct {
	ticks *mdv1.TickBatch
	raw   []byte
	// encoded: the batch is raw alone (RawTicksSink), symbol and n say what it holds.
	encoded bool
	symbol  string
	n       int
	bars    []*mdv1.Bar
	size    int64 // encoded bytes, held against the NATS queue's byte bound
	// frame holds raw (encoded only): freed once TicksEncoded has returned.
	frame Frame
}

// Frame is the recycled buffer a lent batch's encoding lies in (Source.TicksLoanedFrame): Free
// gets Buf back once nothing reads it any more. The zero Frame frees nothing.
type Frame struct {
	Buf  []byte
	Free func([]byte)
}

// release hands the buffer back; a Frame is released at most once (the caller clears its copy).
func (f Frame) release() {
	if f.Free != nil {
		f.Free(f.Buf)
	}
}

// ErrTooManySources and ErrTooManySymbols refuse peers beyond the bounds (ADR 0055).
var (
	ErrTooManySources = errors.New("ingest: too many publisher sources")
	ErrTooManySymbols = errors.New("ingest: too many symbols")
)

// byteBudget bounds bytes in flight: acquire waits while the budget is used up (one item larger than
// the whole budget still passes alone), release gives bytes back.
type byteBudget struct {
	mu   sync.Mutex
	cond *sync.Cond
	used int64
	max  int64
}

func newByteBudget(max int) *byteBudget {
	b := &byteBudget{max: int64(max)}
	b.cond = sync.NewCond(&b.mu)
	return b
}

func (b *byteBudget) acquire(n int64) {
	if b.max <= 0 {
		return
	}
	b.mu.Lock()
	for b.used > 0 && b.used+n > b.max {
		b.cond.Wait()
	}
	b.used += n
	b.mu.Unlock()
}

func (b *byteBudget) release(n int64) {
	if b.max <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}

// Pipeline is shared by every source.
type Pipeline struct {
	cfg  Config
	m    *metrics.Metrics
	log  *slog.Logger
	hub  *fanout.Hub
	nats NATSSink
	link PredictSink
	now  func() time.Time

	mu sync.Mutex
	// emitMu is taken before mu is released, so bars (and batches) leave in the order they were made
	// even when the idle timer and a source emit at the same time.
	emitMu   sync.Mutex
	symbols  map[string]*mdv1.SymbolInfo
	builders map[string][]*bars.Builder
	lastTick map[string]time.Time // wall clock of the symbol's latest accepted tick
	sources  map[string]*Source
	admitted map[string]struct{} // symbols holding state anywhere in the pipeline (MaxSymbols)

	natsQ   chan natsItem
	durable DurableSink  // nil unless nats is durable
	rawSink RawTicksSink // nil unless nats takes encoded batches (and is not durable)
	// committedBars: with a durable sink, each symbol's open bars as of the last Commit of a source
	// feeding it (under mu); the state file saves these, not the live ones (ADR 0024).
	committedBars map[string]map[uint32]bars.State
	enqueued      atomic.Uint64 // messages handed to natsQ: the n-th is the sink's n-th Ticks or Bar call
	natsBytes     *byteBudget
	natsDepth     prometheus.Gauge
	// Per-batch and per-bar counters, looked up once instead of by label on every batch.
	ticksOutSubs prometheus.Counter
	barsOut      []periodCounter // one per configured bar period
	stop         chan struct{}
	wg           sync.WaitGroup // NATS publisher
	timerWG      sync.WaitGroup // idle-bar closer
	closeOnce    sync.Once

	rlMu      sync.Mutex
	rlLast    [validate.NumReasons]time.Time
	rlSkipped [validate.NumReasons]uint64
}

// New starts a pipeline; nats and link may be nil. Close stops it.
func New(cfg Config, m *metrics.Metrics, log *slog.Logger, hub *fanout.Hub, nats NATSSink, link PredictSink) *Pipeline {
	if cfg.NATSQueue < 1 {
		cfg.NATSQueue = 1
	}
	p := &Pipeline{cfg: cfg, m: m, log: log, hub: hub, nats: nats, link: link, now: time.Now,
		symbols: map[string]*mdv1.SymbolInfo{}, builders: map[string][]*bars.Builder{},
		lastTick: map[string]time.Time{}, sources: map[string]*Source{}, admitted: map[string]struct{}{},
		natsQ: make(chan natsItem, cfg.NATSQueue), natsBytes: newByteBudget(cfg.NATSQueueBytes), natsDepth: m.QueueDepth.WithLabelValues("nats"), stop: make(chan struct{})}
	p.ticksOutSubs = m.TicksOut.WithLabelValues("subscriber")
	for _, period := range cfg.BarPeriods {
		p.barsOut = append(p.barsOut, periodCounter{period, m.BarsEmitted.WithLabelValues(bars.Timeframe(period))})
	}
	if nats != nil {
		if ds, ok := nats.(DurableSink); ok && ds.Durable() {
			p.durable = ds
		} else if rs, ok := nats.(RawTicksSink); ok {
			p.rawSink = rs
		}
		p.wg.Add(1)
		go p.publishNATS()
	}
	if cfg.BarIdleClose > 0 {
		p.timerWG.Add(1)
		go p.idleCloser()
	}
	return p
}

// Source returns the named source (created on first use): "bridge:<session>" or a publisher's name.
// kind labels its metrics ("bridge" or "grpc").
func (p *Pipeline) Source(name, kind string) *Source {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.sources[name]
	if s == nil {
		s = p.newSourceLocked(name, kind)
	}
	return s
}

// DropSource forgets a source and its watermarks (a bridge session the link evicted). A source
// still in use is recreated empty by its next Source call.
func (p *Pipeline) DropSource(name string) {
	p.mu.Lock()
	delete(p.sources, name)
	p.mu.Unlock()
}

func (p *Pipeline) newSourceLocked(name, kind string) *Source {
	s := &Source{p: p, name: name, kind: kind, v: validate.New(p.cfg.Validate, nil), admitted: map[string]bool{},
		in: p.m.TicksIn.WithLabelValues(kind), accepted: p.m.TicksAccepted.WithLabelValues(kind),
		commits: kind == "bridge" && p.durable != nil, committed: map[string]validate.State{}}
	s.lastUsed.Store(p.now().UnixNano())
	p.sources[name] = s
	return s
}

// PublisherSource is Source for a gRPC publisher, a peer that names itself: at most MaxSources
// of them are tracked. At the bound the publisher idle longest makes room if it has been idle for
// SourceIdle (its validation state goes); otherwise the new one is refused with ErrTooManySources.
func (p *Pipeline) PublisherSource(name string) (*Source, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.sources[name]; s != nil {
		s.lastUsed.Store(p.now().UnixNano())
		return s, nil
	}
	if max := p.cfg.MaxSources; max > 0 && len(p.sources) >= max {
		var idlest *Source
		for _, s := range p.sources {
			if s.kind == "grpc" && (idlest == nil || s.lastUsed.Load() < idlest.lastUsed.Load()) {
				idlest = s
			}
		}
		if idlest == nil || p.now().Sub(time.Unix(0, idlest.lastUsed.Load())) < p.cfg.SourceIdle {
			p.m.SourcesRefused.Inc()
			return nil, fmt.Errorf("%w: %d publishers are active (max-sources)", ErrTooManySources, len(p.sources))
		}
		delete(p.sources, idlest.name)
		p.m.SourcesEvicted.Inc()
		p.log.Info("idle publisher source dropped to make room", "source", idlest.name, "new_source", name)
	}
	return p.newSourceLocked(name, "grpc"), nil
}

// admit reports whether symbol may hold state in the pipeline: known already, or room under
// MaxSymbols (it is then known from now on). Refusals are counted.
func (p *Pipeline) admit(symbol string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.admitted[symbol]; ok {
		return true
	}
	if max := p.cfg.MaxSymbols; max > 0 && len(p.admitted) >= max {
		p.m.SymbolsRefused.Inc()
		return false
	}
	p.admitted[symbol] = struct{}{}
	return true
}

// Symbols returns every known symbol's metadata, sorted by name.
func (p *Pipeline) Symbols() []*mdv1.SymbolInfo {
	p.mu.Lock()
	out := make([]*mdv1.SymbolInfo, 0, len(p.symbols))
	for _, s := range p.symbols {
		out = append(out, s)
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Symbol < out[j].Symbol })
	return out
}

// Source is one origin of ticks with its own validation state. Safe for concurrent use.
type Source struct {
	p            *Pipeline
	name, kind   string
	mu           sync.Mutex
	v            *validate.Validator
	admitted     map[string]bool // symbols the pipeline admitted for this source (a cache of p.admit)
	lastUsed     atomic.Int64    // unix nanoseconds of the last batch or announcement
	in, accepted prometheus.Counter
	// commits: a bridge session whose acknowledgements follow JetStream (ADR 0024). Its state-file
	// watermarks are then committed, the watermarks as of the last frames NATS stored (Commit),
	// never the live ones: a tick validated but not stored when the collector dies is resent by
	// the bridge and must not be dropped as already seen by the next run.
	commits   bool
	committed map[string]validate.State
}

// holdsState reports whether ticks of symbol would keep state in the pipeline, so need a place under
// MaxSymbols: an announced symbol, or any one when unknown symbols are allowed. Ticks of a symbol never
// announced are rejected by validation (UNKNOWN_SYMBOL) and must not use up a place that no announce
// could then take. Under s.mu.
func (s *Source) holdsState(symbol string) bool {
	return s.admitted[symbol] || s.p.cfg.Validate.AllowUnknownSymbols || s.v.Known(symbol)
}

// admitLocked is p.admit cached per source, under s.mu: the tick path takes no pipeline lock for a
// symbol already admitted.
func (s *Source) admitLocked(symbol string) bool {
	if s.admitted[symbol] {
		return true
	}
	if !s.p.admit(symbol) {
		return false
	}
	s.admitted[symbol] = true
	return true
}

// Name is the source's name.
func (s *Source) Name() string { return s.name }

// Announce registers a symbol's metadata for this source and the whole collector.
func (s *Source) Announce(info *mdv1.SymbolInfo) error {
	s.mu.Lock()
	s.lastUsed.Store(s.p.now().UnixNano())
	if info.GetSymbol() != "" && !s.admitLocked(info.GetSymbol()) {
		s.mu.Unlock()
		return fmt.Errorf("%w: %q refused, the collector holds its maximum (max-symbols)", ErrTooManySymbols, info.GetSymbol())
	}
	err := s.v.Announce(info)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	s.p.registerSymbol(info)
	return nil
}

// Ticks validates a batch and dispatches what passes. hops are the stamps the batch collected so far.
func (s *Source) Ticks(b *mdv1.TickBatch, hops []*typesv1.HopStamp) validate.Result {
	return s.TicksRaw(b, nil, hops)
}

// TicksRaw is Ticks for a batch whose wire encoding is at hand (the bridge frame's bytes): when every
// tick passes, NATS publishes those bytes instead of encoding the batch again. raw must not be reused.
func (s *Source) TicksRaw(b *mdv1.TickBatch, raw []byte, hops []*typesv1.HopStamp) validate.Result {
	return s.ticks(b, raw, hops, false, Frame{})
}

// TicksLoaned is TicksRaw for a batch the caller reuses once the call returns (the bridge decodes
// each frame into the columns of an earlier one): the pipeline copies it only where it is kept
// (subscriber queues, the inference link, a NATS sink that needs the batch itself); NATS otherwise
// keeps raw alone. The Result's Accepted is b itself only until the caller reuses b.
func (s *Source) TicksLoaned(b *mdv1.TickBatch, raw []byte, hops []*typesv1.HopStamp) validate.Result {
	return s.ticks(b, raw, hops, true, Frame{})
}

// TicksLoanedFrame is TicksLoaned for a raw that lies in a recycled buffer (the bridge's frame
// buffers, bridgelink.Config.FrameBuffer): the pipeline calls frame.Free(frame.Buf) once nothing
// reads raw any more, before it returns when NATS does not take raw, or once the NATS publisher has
// sent it. A sink that keeps raw (JetStream, for its retries) never gives it back: it is left to the
// garbage collector. Free is called at most once; the caller must not touch frame.Buf after the call.
func (s *Source) TicksLoanedFrame(b *mdv1.TickBatch, raw []byte, frame Frame, hops []*typesv1.HopStamp) validate.Result {
	return s.ticks(b, raw, hops, true, frame)
}

func (s *Source) ticks(b *mdv1.TickBatch, raw []byte, hops []*typesv1.HopStamp, loaned bool, frame Frame) validate.Result {
	s.mu.Lock()
	// Dispatch under the source lock so one source's batches keep their order downstream.
	defer s.mu.Unlock()
	now := s.p.now() // one clock read for the batch: the source's last use and the symbol's last tick
	s.lastUsed.Store(now.UnixNano())
	var res validate.Result
	if sym := b.GetSymbol(); sym != "" && s.holdsState(sym) && !s.admitLocked(sym) {
		res = refuseSymbol(b)
	} else {
		res = s.v.Check(b)
	}
	n := len(b.GetTimeMsc())
	if res.RejectedTotal > uint64(n) {
		n = int(res.RejectedTotal)
	}
	s.in.Add(float64(n))
	if res.SequenceGaps > 0 {
		s.p.m.TickSeqGaps.Add(float64(res.SequenceGaps))
	}
	if res.RejectedTotal > 0 {
		s.p.countRejects(s.name, b.GetSymbol(), &res)
	}
	if res.Accepted != nil {
		s.accepted.Add(float64(len(res.Accepted.TimeMsc)))
		if res.Accepted != b {
			raw, loaned = nil, false // a subset: validation made it, nobody reuses it
		}
		s.p.dispatch(res.Accepted, raw, hops, loaned, frame, now)
	} else {
		frame.release()
	}
	return res
}

// Marker is a PredictSink that takes Strategy Tester step markers (predictlink.Link).
type Marker interface {
	Mark(symbol string, done func(decisions []int64))
}

// Mark runs done once the inference link has answered for everything this source dispatched for
// symbol so far, with the time_msc of the predictions those answers carried (ADR 0095); at once
// with none when there is no inference link. Called by the source's owner after TicksRaw, so it
// queues behind those ticks.
func (s *Source) Mark(symbol string, done func(decisions []int64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mk, ok := s.p.link.(Marker); ok && s.p.link != nil {
		mk.Mark(symbol, done)
		return
	}
	done(nil)
}

// Snapshot returns this source's validation watermarks: for a source that commits, the committed ones.
func (s *Source) Snapshot() map[string]validate.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commits {
		out := make(map[string]validate.State, len(s.committed))
		for k, v := range s.committed {
			out[k] = v
		}
		return out
	}
	return s.v.Snapshot()
}

// Commit marks every tick this source has validated so far as stored: the bridge calls it once
// Pipeline.Stored has returned for its frames. A no-op unless the source commits. The open bars of
// the source's symbols are committed with the watermarks, so a tick resent after a crash is counted
// once in the bar it belongs to (the saved bar does not hold it yet).
func (s *Source) Commit() {
	s.mu.Lock()
	if !s.commits {
		s.mu.Unlock()
		return
	}
	s.committed = s.v.Snapshot()
	syms := make([]string, 0, len(s.committed))
	for sym := range s.committed {
		syms = append(syms, sym)
	}
	s.mu.Unlock()
	s.p.commitBars(syms)
}

// commitBars records the open bars of symbols as committed.
func (p *Pipeline) commitBars(symbols []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.committedBars == nil {
		p.committedBars = map[string]map[uint32]bars.State{}
	}
	for _, sym := range symbols {
		bs := p.builders[sym]
		if len(bs) == 0 {
			continue
		}
		m := make(map[uint32]bars.State, len(bs))
		for _, b := range bs {
			m[b.Period] = b.Snapshot()
		}
		p.committedBars[sym] = m
	}
}

// Restore loads watermarks saved by Snapshot.
func (s *Source) Restore(st map[string]validate.State) error {
	s.mu.Lock()
	err := s.v.Restore(st)
	infos := s.v.Infos()
	if s.commits {
		s.committed = s.v.Snapshot()
	}
	s.mu.Unlock()
	for _, info := range infos {
		s.p.registerSymbol(info)
	}
	return err
}

func (p *Pipeline) registerSymbol(info *mdv1.SymbolInfo) {
	p.mu.Lock()
	prev := p.symbols[info.Symbol]
	p.symbols[info.Symbol] = info
	p.admitted[info.Symbol] = struct{}{} // restored symbols were admitted by an earlier run
	for _, b := range p.builders[info.Symbol] {
		if info.Point > 0 {
			b.Point = info.Point
		}
	}
	p.mu.Unlock()
	if prev == nil || !equalInfo(prev, info) {
		p.hub.PublishSymbolInfo(info)
	}
}

func equalInfo(a, b *mdv1.SymbolInfo) bool {
	return a.Digits == b.Digits && a.Point == b.Point && a.ContractSize == b.ContractSize && a.TickSize == b.TickSize &&
		a.VolumeMin == b.VolumeMin && a.VolumeMax == b.VolumeMax && a.VolumeStep == b.VolumeStep &&
		a.TickValue == b.TickValue && a.CurrencyBase == b.CurrencyBase && a.CurrencyProfit == b.CurrencyProfit &&
		a.Description == b.Description
}

func (p *Pipeline) builderSet(symbol string) []*bars.Builder {
	bs := p.builders[symbol]
	if bs == nil && len(p.cfg.BarPeriods) > 0 {
		var point float64
		if info := p.symbols[symbol]; info != nil {
			point = info.Point
		}
		for _, period := range p.cfg.BarPeriods {
			bs = append(bs, bars.NewBuilder(symbol, period, point))
		}
		p.builders[symbol] = bs
	}
	return bs
}

// loan hands out a loaned batch's copy, made once, to whoever keeps the batch; a batch that is not
// loaned is its own copy.
type loan struct {
	b, kept *mdv1.TickBatch
}

func (l *loan) own() *mdv1.TickBatch {
	if l.kept == nil {
		l.kept = Clone(l.b)
	}
	return l.kept
}

// Clone copies a batch's fields into new columns (proto.Clone without reflection).
func Clone(b *mdv1.TickBatch) *mdv1.TickBatch {
	return &mdv1.TickBatch{Symbol: b.Symbol, TimeMsc: clone(b.TimeMsc), Bid: clone(b.Bid), Ask: clone(b.Ask),
		Last: clone(b.Last), Volume: clone(b.Volume), Flags: clone(b.Flags), Sequence: clone(b.Sequence)}
}

func clone[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append([]T(nil), s...)
}

func (p *Pipeline) dispatch(b *mdv1.TickBatch, raw []byte, hops []*typesv1.HopStamp, loaned bool, frame Frame, now time.Time) {
	l := &loan{b: b}
	if !loaned {
		l.kept = b
	}
	var closed []*mdv1.Bar
	p.mu.Lock()
	bs := p.builderSet(b.Symbol)
	var vol []float64
	if len(b.Volume) > 0 {
		vol = b.Volume
	}
	closed, late := bars.AddBatchAll(bs, b.TimeMsc, b.Bid, b.Ask, vol, closed)
	if late > 0 {
		p.m.BarLateTicks.Add(float64(late))
	}
	p.lastTick[b.Symbol] = now
	p.emitMu.Lock()
	defer p.emitMu.Unlock()
	p.mu.Unlock()

	n := float64(len(b.TimeMsc))
	p.hub.PublishTicksLoaned(b, l.own)
	p.ticksOutSubs.Add(n)
	// The batch goes to the inference link after it is queued for NATS (owned here, before NATS may
	// take the frame): the goroutine readied last runs next on its P (Go's runnext), so the link's
	// sender, on the order path, runs before the NATS publisher, and nats-server and the services
	// it wakes do not take the CPU from it first. A collector on one CPU gained ~100 µs of
	// collector_receive -> collector_send at p50 (ADR 0118). A full NATS queue holds this batch's
	// offer as it holds the next batch's: NATS is the durable fan-out and pushes back on the source.
	var toLink *mdv1.TickBatch
	if p.link != nil && p.cfg.InferenceBarPeriod == 0 {
		toLink = l.own()
	}
	it := natsItem{raw: raw, bars: closed}
	switch {
	case p.nats == nil:
	case l.kept == nil && raw != nil && p.rawSink != nil:
		it.encoded, it.symbol, it.n = true, b.Symbol, len(b.TimeMsc)
		it.frame, frame = frame, Frame{} // the publisher frees it once sent
	default:
		it.ticks = l.own()
		if raw != nil {
			frame = Frame{} // the sink may keep raw (JetStream retries): never recycled
		}
	}
	p.emitBars(it)
	if toLink != nil {
		p.link.OfferTicks(toLink, hops)
	}
	frame.release()
}

type periodCounter struct {
	period uint32
	c      prometheus.Counter
}

// barsEmitted is the kairos_collector_bars_emitted_total counter of a bar period.
func (p *Pipeline) barsEmitted(period uint32) prometheus.Counter {
	for _, pc := range p.barsOut {
		if pc.period == period {
			return pc.c
		}
	}
	return p.m.BarsEmitted.WithLabelValues(bars.Timeframe(period))
}

// emitBars hands the closed bars it.bars to the sinks; the tick batch that closed them, if it holds
// one, goes to NATS first, in the same queue entry.
func (p *Pipeline) emitBars(it natsItem) {
	p.hub.PublishBars(it.bars)
	for _, bar := range it.bars {
		p.barsEmitted(bar.PeriodS).Inc()
		if p.link != nil && p.cfg.InferenceBarPeriod != 0 && bar.PeriodS == p.cfg.InferenceBarPeriod {
			p.link.OfferBar(bar)
		}
	}
	if p.nats != nil && (it.ticks != nil || it.encoded || len(it.bars) > 0) {
		p.enqueueNATS(it)
	}
}

// WantsHops reports whether the hop stamps passed with tick batches go anywhere (the inference link
// takes ticks); a source may skip building them when not.
func (p *Pipeline) WantsHops() bool { return p.link != nil && p.cfg.InferenceBarPeriod == 0 }

// Durable is true when NATS acknowledges what it stores, so Stored is worth waiting for.
func (p *Pipeline) Durable() bool { return p.durable != nil }

// Stored returns once every tick batch and bar dispatched so far is stored by NATS JetStream, or
// with ctx's error; at once when NATS is not durable. The bridge acknowledges frames only after it
// (ADR 0024): an acknowledged tick then survives the loss of the collector or of a NATS node.
func (p *Pipeline) Stored(ctx context.Context) error {
	if p.durable == nil {
		return nil
	}
	return p.durable.Stored(ctx, p.enqueued.Load())
}

// enqueueNATS blocks while the NATS queue is full: NATS is the durable fan-out, so it pushes back on
// the source (TCP flow control for the bridge) rather than losing ticks.
func (p *Pipeline) enqueueNATS(it natsItem) {
	if p.natsBytes.max > 0 {
		switch {
		case it.raw != nil:
			it.size = int64(len(it.raw))
		case it.ticks != nil:
			it.size = int64(proto.Size(it.ticks))
		}
		for _, bar := range it.bars {
			it.size += int64(bars.ProtoSize(bar))
		}
		p.natsBytes.acquire(it.size)
	}
	msgs := uint64(len(it.bars))
	if it.ticks != nil || it.encoded {
		msgs++
	}
	p.natsDepth.Add(float64(msgs))
	p.enqueued.Add(msgs)
	p.natsQ <- it
}

// refuseSymbol rejects a whole batch whose symbol the pipeline has no room for.
func refuseSymbol(b *mdv1.TickBatch) validate.Result {
	var res validate.Result
	n := max(len(b.GetTimeMsc()), 1)
	r := mdv1.TickRejectReason_TICK_REJECT_REASON_UNKNOWN_SYMBOL
	res.Rejects[r], res.RejectedTotal = uint64(n), uint64(n)
	detail := fmt.Sprintf("symbol %q refused: the collector holds its maximum number of symbols (max-symbols)", b.GetSymbol())
	for i := range min(n, 100) {
		res.Rejected = append(res.Rejected, validate.Rejection{Index: i, Reason: r, Detail: detail})
	}
	return res
}

func (p *Pipeline) publishNATS() {
	defer p.wg.Done()
	for it := range p.natsQ {
		p.natsBytes.release(it.size)
		// The entry's messages leave the queue together (a gauge update is a compare-and-swap loop).
		msgs := len(it.bars)
		if it.encoded || it.ticks != nil {
			msgs++
		}
		p.natsDepth.Sub(float64(msgs))
		switch {
		case it.encoded:
			p.rawSink.TicksEncoded(it.symbol, it.n, it.raw)
			it.frame.release()
		case it.ticks != nil:
			p.nats.Ticks(it.ticks, it.raw)
		}
		for _, bar := range it.bars {
			p.nats.Bar(bar)
		}
	}
}

func (p *Pipeline) idleCloser() {
	defer p.timerWG.Done()
	tick := time.NewTicker(min(p.cfg.BarIdleClose/4+time.Millisecond, 250*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-tick.C:
			p.closeIdleBars()
		}
	}
}

// closeIdleBars closes bars whose period is over by the wall clock (allowing for tick clocks that
// run ahead by up to the future tolerance) on symbols idle for BarIdleClose.
func (p *Pipeline) closeIdleBars() {
	now := p.now()
	limit := now.Add(-p.cfg.Validate.FutureTolerance).UnixMilli()
	var closed []*mdv1.Bar
	p.mu.Lock()
	for sym, bs := range p.builders {
		if now.Sub(p.lastTick[sym]) < p.cfg.BarIdleClose {
			continue
		}
		for _, b := range bs {
			if open, ok := b.OpenBarTime(); ok && open+int64(b.Period)*1000 <= limit {
				if bar, ok := b.Flush(); ok {
					closed = append(closed, bar)
				}
			}
		}
	}
	p.emitMu.Lock()
	defer p.emitMu.Unlock()
	p.mu.Unlock()
	p.emitBars(natsItem{bars: closed})
}

func (p *Pipeline) countRejects(source, symbol string, res *validate.Result) {
	for r, c := range res.Rejects {
		if c > 0 {
			p.m.TicksRejected.WithLabelValues(validate.ReasonName(validate.Reason(r))).Add(float64(c))
		}
	}
	// One log line per reason per interval, saying how many were skipped since the last one.
	now := p.now()
	p.rlMu.Lock()
	defer p.rlMu.Unlock()
	for _, rj := range res.Rejected {
		r := int(rj.Reason)
		if now.Sub(p.rlLast[r]) < p.cfg.RejectLogInterval {
			p.rlSkipped[r]++
			p.m.RejectLogsSuppressed.Inc()
			continue
		}
		p.log.Warn("tick rejected", "source", source, "symbol", symbol, "index", rj.Index,
			"reason", validate.ReasonName(rj.Reason), "detail", rj.Detail, "suppressed_since_last", p.rlSkipped[r])
		p.rlLast[r] = now
		p.rlSkipped[r] = 0
	}
}

// State is the pipeline's resumable state.
type State struct {
	Sources map[string]map[string]validate.State `json:"sources"`
	Bars    map[string]map[uint32]bars.State     `json:"bars"`
}

// Snapshot captures every source's watermarks and every open bar: with a durable sink, the
// committed ones where a committing source has committed the symbol, as the watermarks are.
func (p *Pipeline) Snapshot() State {
	p.mu.Lock()
	srcs := make([]*Source, 0, len(p.sources))
	for _, s := range p.sources {
		srcs = append(srcs, s)
	}
	st := State{Sources: map[string]map[string]validate.State{}, Bars: map[string]map[uint32]bars.State{}}
	for sym, bs := range p.builders {
		if c, ok := p.committedBars[sym]; ok {
			st.Bars[sym] = c
			continue
		}
		m := map[uint32]bars.State{}
		for _, b := range bs {
			m[b.Period] = b.Snapshot()
		}
		st.Bars[sym] = m
	}
	p.mu.Unlock()
	for _, s := range srcs {
		st.Sources[s.name] = s.Snapshot()
	}
	return st
}

// Restore loads a snapshot taken by a previous run (before any tick arrives).
func (p *Pipeline) Restore(st State) error {
	for name, w := range st.Sources {
		kind := "grpc"
		if len(name) > 7 && name[:7] == "bridge:" {
			kind = "bridge"
		}
		if err := p.Source(name, kind).Restore(w); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for sym, m := range st.Bars {
		for _, b := range p.builderSet(sym) {
			if s, ok := m[b.Period]; ok {
				b.Restore(s)
			}
		}
		if p.durable != nil { // what was saved was committed: it stays so until the next commit
			if p.committedBars == nil {
				p.committedBars = map[string]map[uint32]bars.State{}
			}
			p.committedBars[sym] = m
		}
	}
	return nil
}

// Close stops the timer and drains the NATS queue. Call it after every source has stopped.
// Open bars stay open (they are saved in the state, not emitted half-built).
func (p *Pipeline) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		// The idle closer may still emit bars into the NATS queue: stop it before closing the queue.
		p.closeOnce.Do(func() {
			close(p.stop)
			p.timerWG.Wait()
			close(p.natsQ)
		})
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
