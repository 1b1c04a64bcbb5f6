// Package fanout delivers validated ticks, closed bars and symbol metadata to gRPC subscribers, each
// through its own bounded queue, so that a slow subscriber never slows ingest: when its queue is full
// it either receives conflated ticks (the latest tick per symbol) or is cut, by policy.
package fanout

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	mdv1 "github.com/kairos-mt5/kairos/gen/go/kairos/marketdata/v1"
	"github.com/kairos-mt5/kairos/go/collector/metrics"
)

// Policy says what happens to a subscriber whose queue is full.
type Policy int

const (
	// Conflate keeps only the latest tick per symbol until the subscriber catches up.
	Conflate Policy = iota
	// Cut ends the subscription (the gRPC layer answers RESOURCE_EXHAUSTED).
	Cut
)

// ParsePolicy reads "conflate" or "cut".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "conflate":
		return Conflate, nil
	case "cut":
		return Cut, nil
	}
	return 0, errors.New(`slow subscriber policy must be "conflate" or "cut"`)
}

// ErrTooSlow is the reason a cut subscriber was ended.
var ErrTooSlow = errors.New("subscriber too slow: its queue overflowed")

// maxPendingBars bounds the bars a conflating subscriber may owe before it is cut anyway:
// bars are never conflated, so a subscriber this far behind cannot be served correctly.
const maxPendingBars = 4096

// Event is one item for a subscriber; exactly one field is set.
type Event struct {
	Ticks      *mdv1.TickBatch
	Bar        *mdv1.Bar
	SymbolInfo *mdv1.SymbolInfo

	size int64 // encoded bytes, counted against the subscriber's byte bound while queued
}

// Filter selects what a subscriber receives.
type Filter struct {
	Symbols map[string]bool // empty: every symbol
	Ticks   bool
	Periods map[uint32]bool // bar periods; empty: no bars
}

func (f *Filter) symbol(s string) bool { return len(f.Symbols) == 0 || f.Symbols[s] }

// Subscriber is one consumer's queue.
type Subscriber struct {
	hub    *Hub
	filter Filter
	queue  chan Event
	wake   chan struct{} // signalled when conflated data is pending
	queued atomic.Int64  // encoded bytes of the events in queue

	mu          sync.Mutex
	conflating  bool
	pendingBars []*mdv1.Bar
	pendingInfo map[string]*mdv1.SymbolInfo // the latest per symbol, as ticks: bounded by --max-symbols
	infoOrder   []string                    // symbols in pendingInfo, in first-conflated order
	latest      map[string]*mdv1.TickBatch
	order       []string // symbols in latest, in first-conflated order
	err         error
	done        chan struct{}
}

// Hub fans events out to subscribers.
type Hub struct {
	mu       sync.RWMutex
	subs     map[*Subscriber]struct{}
	capacity int
	maxBytes int64 // per-subscriber queue bound in encoded bytes; 0: none
	policy   Policy
	m        *metrics.Metrics
	depth    prometheus.Gauge
	overflow prometheus.Counter
}

// New returns a hub whose subscribers get queues of capacity events.
func New(capacity int, policy Policy, m *metrics.Metrics) *Hub {
	if capacity < 1 {
		capacity = 1
	}
	return &Hub{subs: map[*Subscriber]struct{}{}, capacity: capacity, policy: policy, m: m,
		depth: m.QueueDepth.WithLabelValues("subscribers"), overflow: m.QueueOverflow.WithLabelValues("subscriber")}
}

// SetQueueBytes bounds each subscriber's queue in encoded bytes too: beyond it the slow-subscriber
// policy applies as it does when the queue is full. Call before publishing; 0 means no byte bound.
func (h *Hub) SetQueueBytes(n int) {
	h.mu.Lock()
	h.maxBytes = int64(n)
	h.mu.Unlock()
}

// size is what an event costs against the byte bound (0 when there is none).
func (h *Hub) size(m proto.Message) int64 {
	if h.maxBytes <= 0 {
		return 0
	}
	return int64(proto.Size(m))
}

// Subscribe registers a subscriber; call Close when done.
func (h *Hub) Subscribe(f Filter) *Subscriber {
	s := &Subscriber{hub: h, filter: f, queue: make(chan Event, h.capacity), wake: make(chan struct{}, 1),
		pendingInfo: map[string]*mdv1.SymbolInfo{}, latest: map[string]*mdv1.TickBatch{}, done: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	h.m.Subscribers.Inc()
	return s
}

// SetFilter replaces a subscriber's filter (Stream re-subscribes).
func (s *Subscriber) SetFilter(f Filter) {
	s.hub.mu.Lock()
	s.filter = f
	s.hub.mu.Unlock()
}

// Close unregisters the subscriber.
func (s *Subscriber) Close() {
	h := s.hub
	h.mu.Lock()
	_, ok := h.subs[s]
	delete(h.subs, s)
	h.mu.Unlock()
	if ok {
		h.m.Subscribers.Dec()
		// What is left in the queue is never sent: take it out of the depth gauge.
		h.depth.Sub(float64(len(s.queue)))
	}
}

// Len reports how many subscribers are registered.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs)
}

// PublishTicks offers a batch to every interested subscriber without blocking.
func (h *Hub) PublishTicks(b *mdv1.TickBatch) { h.PublishTicksLoaned(b, nil) }

// PublishTicksLoaned is PublishTicks for a batch the caller reuses afterwards: own, if not nil, returns
// a copy the subscribers may keep, asked for only when one is interested.
func (h *Hub) PublishTicksLoaned(b *mdv1.TickBatch, own func() *mdv1.TickBatch) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	size := int64(-1)
	for s := range h.subs {
		if s.filter.Ticks && s.filter.symbol(b.Symbol) {
			if size < 0 {
				if own != nil {
					b = own()
				}
				size = h.size(b)
			}
			s.offer(Event{Ticks: b, size: size})
		}
	}
}

// PublishBar offers a closed bar.
func (h *Hub) PublishBar(b *mdv1.Bar) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	h.publishBarLocked(b)
}

// PublishBars offers closed bars in order, under one read lock (a quiet batch closes several).
func (h *Hub) PublishBars(bars []*mdv1.Bar) {
	if len(bars) == 0 {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, b := range bars {
		h.publishBarLocked(b)
	}
}

func (h *Hub) publishBarLocked(b *mdv1.Bar) {
	size := int64(-1)
	for s := range h.subs {
		if s.filter.Periods[b.PeriodS] && s.filter.symbol(b.Symbol) {
			if size < 0 {
				size = h.size(b)
			}
			s.offer(Event{Bar: b, size: size})
		}
	}
}

// PublishSymbolInfo offers symbol metadata to every subscriber of that symbol.
func (h *Hub) PublishSymbolInfo(info *mdv1.SymbolInfo) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.subs {
		if (s.filter.Ticks || len(s.filter.Periods) > 0) && s.filter.symbol(info.Symbol) {
			s.offer(Event{SymbolInfo: info, size: h.size(info)})
		}
	}
}

func (s *Subscriber) offer(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	if !s.conflating {
		if max := s.hub.maxBytes; max <= 0 || s.queued.Load()+e.size <= max || len(s.queue) == 0 {
			select {
			case s.queue <- e:
				s.queued.Add(e.size)
				s.hub.depth.Inc()
				return
			default:
			}
		}
		s.hub.overflow.Inc()
		if s.hub.policy == Cut {
			s.err = ErrTooSlow
			s.hub.m.SubscribersCut.Inc()
			close(s.done)
			return
		}
		// From now on everything waits in the pending state, after what is queued, so order holds.
		s.conflating = true
	}
	switch {
	case e.Ticks != nil:
		n := len(e.Ticks.TimeMsc)
		if n == 0 {
			return
		}
		if _, ok := s.latest[e.Ticks.Symbol]; !ok {
			s.order = append(s.order, e.Ticks.Symbol)
		}
		s.latest[e.Ticks.Symbol] = lastTick(e.Ticks)
		s.hub.m.SubscriberConflated.Inc()
	case e.Bar != nil:
		if len(s.pendingBars) >= maxPendingBars {
			s.err = ErrTooSlow
			s.hub.m.SubscribersCut.Inc()
			close(s.done)
			return
		}
		s.pendingBars = append(s.pendingBars, e.Bar)
	case e.SymbolInfo != nil:
		// A newer SymbolInfo supersedes the one pending for its symbol: only the latest is delivered.
		if _, ok := s.pendingInfo[e.SymbolInfo.Symbol]; ok {
			s.hub.m.SubscriberConflatedInfos.Inc()
		} else {
			s.infoOrder = append(s.infoOrder, e.SymbolInfo.Symbol)
		}
		s.pendingInfo[e.SymbolInfo.Symbol] = e.SymbolInfo
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func lastTick(b *mdv1.TickBatch) *mdv1.TickBatch {
	i := len(b.TimeMsc) - 1
	out := &mdv1.TickBatch{Symbol: b.Symbol, TimeMsc: []int64{b.TimeMsc[i]}, Bid: []float64{b.Bid[i]}, Ask: []float64{b.Ask[i]}}
	if len(b.Last) > 0 {
		out.Last = []float64{b.Last[i]}
	}
	if len(b.Volume) > 0 {
		out.Volume = []float64{b.Volume[i]}
	}
	if len(b.Flags) > 0 {
		out.Flags = []uint32{b.Flags[i]}
	}
	if len(b.Sequence) > 0 {
		out.Sequence = []uint64{b.Sequence[i]}
	}
	return out
}

// Done is closed when the subscriber was cut; Err then says why.
func (s *Subscriber) Done() <-chan struct{} { return s.done }

// Err is ErrTooSlow once the subscriber was cut.
func (s *Subscriber) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Next returns the next events to send, blocking until there are some or stop/Done fires.
// Queued events come first; conflated ones follow when the queue is empty.
func (s *Subscriber) Next(stop <-chan struct{}) ([]Event, bool) {
	for {
		select {
		case e := <-s.queue:
			s.took(e)
			return []Event{e}, true
		default:
		}
		if evs := s.takePending(); evs != nil {
			return evs, true
		}
		select {
		case e := <-s.queue:
			s.took(e)
			return []Event{e}, true
		case <-s.wake:
		case <-s.done:
			return nil, false
		case <-stop:
			return nil, false
		}
	}
}

func (s *Subscriber) took(e Event) {
	s.queued.Add(-e.size)
	s.hub.depth.Dec()
}

// takePending returns conflated events once the queue is drained, and leaves conflation mode.
func (s *Subscriber) takePending() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.conflating || len(s.queue) > 0 {
		return nil
	}
	evs := make([]Event, 0, len(s.infoOrder)+len(s.pendingBars)+len(s.order))
	for _, sym := range s.infoOrder {
		evs = append(evs, Event{SymbolInfo: s.pendingInfo[sym]})
	}
	for _, b := range s.pendingBars {
		evs = append(evs, Event{Bar: b})
	}
	for _, sym := range s.order {
		evs = append(evs, Event{Ticks: s.latest[sym]})
	}
	s.infoOrder, s.pendingBars, s.order = nil, nil, nil
	clear(s.pendingInfo)
	clear(s.latest)
	s.conflating = false
	return evs
}
