// Package journal is the execution service's write-ahead log: every command, risk decision, venue
// request and response, execution report and fill is appended as an Entry with a strictly increasing
// sequence number, durably (SQLite in WAL mode, its log fdatasynced by the journal, or PostgreSQL),
// before the service acknowledges it. Appends from many goroutines are grouped into one transaction
// per flush (group commit), so durability costs one flush per batch rather than per order, and on
// SQLite the flush of one batch overlaps the write of the next (Syncer, ADR 0057). At start the
// service rebuilds its state by replaying the journal. Memory is a non-durable store for tests and
// embedding.
package journal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind says what an entry records.
type Kind string

// Entry kinds.
const (
	// KindCommand is an operator or client command (SubmitOrderRequest, CancelOrderRequest, ...).
	KindCommand Kind = "command"
	// KindRisk is a pre-trade risk decision (a RiskDenial; reason UNSPECIFIED means passed).
	KindRisk Kind = "risk"
	// KindVenueRequest is what was sent to the venue (bridge OrderCommand, or the paper order).
	KindVenueRequest Kind = "venue_request"
	// KindVenueResponse is what the venue answered (a bridge Frame, or the paper venue's report).
	KindVenueResponse Kind = "venue_response"
	// KindReport is an ExecutionReport: the order after an event, the fill, a state change.
	KindReport Kind = "report"
)

// Entry is one journal record. Payload is a serialized protobuf message named by Kind.
type Entry struct {
	Seq    uint64
	TimeUS int64
	Kind   Kind
	// Key is the client order id, or the bridge session for bridge frames.
	Key     string
	Payload []byte
}

// Store is a durable backend. Append must be atomic and durable when it returns.
type Store interface {
	Append(ctx context.Context, entries []Entry) error
	// Read calls fn for every entry with Seq > after, in order, up to limit entries (0: all).
	Read(ctx context.Context, after uint64, limit int, fn func(Entry) error) error
	// ReadKey calls fn for every entry of key (Entry.Key), in order.
	ReadKey(ctx context.Context, key string, fn func(Entry) error) error
	LastSeq(ctx context.Context) (uint64, error)
	Close() error
	Name() string
}

// Syncer is a Store whose Append only writes (the entries survive a crash of the process, not
// yet of the machine) and whose Sync makes everything appended so far durable. The journal then
// pipelines: while one Sync is on the disk the writer already appends the next batch, and a batch
// is acknowledged once a Sync that began after its Append returned has finished, so the disk's
// flush is off the critical section of every other submission (ADR 0057). The SQLite store in
// full mode is one: its commit writes the write-ahead log and the journal fdatasyncs it.
type Syncer interface {
	Store
	// DeferredSync reports whether Append leaves durability to Sync.
	DeferredSync() bool
	// Sync makes every Append that has returned durable.
	Sync() error
}

// idler is a store with upkeep (a checkpoint) that the writer runs when nothing waits to be written.
type idler interface{ Idle() }

// ErrClosed is returned by appends after Close.
var ErrClosed = errors.New("journal: closed")

// Ticket is a pending append; Wait blocks until it is durable.
type Ticket struct {
	j *Journal
	b *batch
}

// Wait returns when the entries are durable, with the write error, or with ctx's error when ctx
// ends first. After a ctx error the entries may still become durable (or fail) later: the outcome
// is unknown to this caller, not cancelled.
//
// When the journal is idle (nothing being written, nothing being synced) the caller commits its
// batch itself: it writes, syncs and settles it in its own goroutine, so an order that finds the
// journal idle, the usual case at a few thousand orders per second, crosses no goroutine hand-off
// on its way to durability. Otherwise it waits for the writer and the sync loop, which group
// everything queued meanwhile (leader/follower group commit, ADR 0101). A caller that commits
// returns once its batch is settled, even if ctx ends first: its write is bounded by the flush
// timeout, its sync by the disk.
func (t Ticket) Wait(ctx context.Context) error {
	if t.b == nil {
		return nil
	}
	if t.j != nil && ctx.Err() == nil {
		t.j.lead(t.b)
	}
	select {
	case <-t.b.done:
		return t.b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DefaultFlushTimeout bounds one store write (a group commit) unless SetFlushTimeout says otherwise.
const DefaultFlushTimeout = 5 * time.Second

type batch struct {
	entries []Entry
	done    chan struct{}
	err     error
	start   time.Time // the store write began
}

// Stats counts journal activity for metrics.
type Stats struct {
	Flushes  uint64
	Entries  uint64
	LastSeq  uint64
	FlushDur time.Duration
}

// Journal sequences entries and writes them with group commit.
type Journal struct {
	store Store

	mu      sync.Mutex
	seq     uint64
	cur     *batch
	closed  bool
	wake    chan struct{}
	stopped chan struct{}
	failed  error
	down    chan struct{} // closed when failed is set
	stats   Stats
	timeout time.Duration // bound on one store write; a write that takes longer fails the journal

	// writing: a batch is being written (or the store's upkeep runs), by the writer goroutine or a
	// leader (Ticket.Wait); syncing: a Sync runs, in the sync loop or a leader. One of each at a
	// time keeps batches written, synced and settled in sequence order.
	writing, syncing bool

	// Pipelined durability (a Syncer store): batches written and not yet synced, in order.
	syncer     Syncer
	unsynced   []*batch
	syncWake   chan struct{}
	writerDone bool

	hub hub
	// OnFlush, if set, is called after each durable flush with its size and duration (from the
	// start of the store write to durability, the sync included).
	OnFlush func(entries int, d time.Duration)
}

// Open opens a journal on dsn: "postgres://..." or "postgresql://..." for PostgreSQL, otherwise a
// SQLite file path (optionally "sqlite:" or "file:" prefixed), with synchronous=FULL.
func Open(ctx context.Context, dsn string) (*Journal, error) { return OpenSync(ctx, dsn, SyncFull) }

// OpenSync is Open with the SQLite sync mode (PostgreSQL follows its own synchronous_commit).
func OpenSync(ctx context.Context, dsn string, sync Sync) (*Journal, error) {
	var (
		st  Store
		err error
	)
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		st, err = OpenPostgres(ctx, dsn)
	default:
		st, err = OpenSQLiteSync(ctx, strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "file:"), sync)
	}
	if err != nil {
		return nil, err
	}
	return New(ctx, st)
}

// New starts a journal over an open store.
func New(ctx context.Context, st Store) (*Journal, error) {
	last, err := st.LastSeq(ctx)
	if err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("journal: last sequence: %w", err)
	}
	j := &Journal{store: st, seq: last, wake: make(chan struct{}, 1), stopped: make(chan struct{}), down: make(chan struct{}), timeout: DefaultFlushTimeout}
	j.stats.LastSeq = last
	j.cur = &batch{done: make(chan struct{})}
	if sy, ok := st.(Syncer); ok && sy.DeferredSync() {
		j.syncer = sy
		j.syncWake = make(chan struct{}, 1)
		go j.syncLoop()
	}
	go j.writer()
	return j, nil
}

// Backend names the store ("sqlite", "postgres").
func (j *Journal) Backend() string { return j.store.Name() }

// Append assigns sequence numbers to the entries (in order) and queues them for the next flush.
// Callers that need ordering across entries call it under their own lock; Wait outside it.
func (j *Journal) Append(nowUS int64, entries ...Entry) (Ticket, []uint64, error) {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return Ticket{}, nil, ErrClosed
	}
	if j.failed != nil {
		err := j.failed
		j.mu.Unlock()
		return Ticket{}, nil, err
	}
	seqs := make([]uint64, len(entries))
	for i := range entries {
		j.seq++
		entries[i].Seq = j.seq
		if entries[i].TimeUS == 0 {
			entries[i].TimeUS = nowUS
		}
		seqs[i] = j.seq
	}
	b := j.cur
	b.entries = append(b.entries, entries...)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return Ticket{j, b}, seqs, nil
}

// SetFlushTimeout bounds each store write (a stalled disk or database); zero means
// DefaultFlushTimeout. A write that takes longer fails the journal as an error would.
func (j *Journal) SetFlushTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultFlushTimeout
	}
	j.mu.Lock()
	j.timeout = d
	j.mu.Unlock()
}

// Err returns the error that failed the journal, or nil while it writes.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// Failed is closed once the journal has failed; Err says why.
func (j *Journal) Failed() <-chan struct{} { return j.down }

// LastSeq returns the last assigned sequence number.
func (j *Journal) LastSeq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.seq
}

// Stats returns counters for metrics.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats
}

func (j *Journal) writer() {
	if j.syncer == nil {
		defer close(j.stopped)
	} else {
		defer func() {
			j.mu.Lock()
			j.writerDone = true
			j.mu.Unlock()
			j.kickSync()
		}()
	}
	for {
		<-j.wake
		j.mu.Lock()
		if j.writing {
			// A leader is writing; it wakes this loop when it is done.
			j.mu.Unlock()
			continue
		}
		b := j.cur
		closed := j.closed
		if len(b.entries) == 0 {
			if closed {
				j.mu.Unlock()
				close(b.done)
				return
			}
			// Nothing to write (a leader wrote it and woke this loop): the store's upkeep, which
			// leaders leave to this loop.
			j.writing = true
			j.mu.Unlock()
			j.upkeep()
			continue
		}
		j.cur = &batch{done: make(chan struct{})}
		j.writing = true
		failed, timeout := j.failed, j.timeout
		j.mu.Unlock()

		err := failed
		if err == nil {
			// A batch queued behind a failed one is never written: its entries would follow a gap
			// whose content nobody knows (the failed write may or may not have committed).
			err = j.write(b, timeout)
		} else {
			b.start = time.Now()
		}
		if j.syncer != nil {
			// Written, not yet durable: the sync loop acknowledges it after its next sync, while
			// this loop writes the next batch (or, with nothing queued, runs the store's upkeep).
			j.mu.Lock()
			b.err = err
			j.unsynced = append(j.unsynced, b)
			idle := len(j.cur.entries) == 0 && err == nil
			if !idle {
				j.writing = false
			}
			j.mu.Unlock()
			j.kickSync()
			if idle {
				j.upkeep()
			}
		} else {
			// Settled before the writing role is given back, so batches settle in sequence order;
			// then, with nothing queued, the store's upkeep (its waiters are already answered).
			j.settle(b, err, time.Now())
			j.mu.Lock()
			idle := len(j.cur.entries) == 0 && err == nil
			if !idle {
				j.writing = false
			}
			j.mu.Unlock()
			if idle {
				j.upkeep()
			}
		}
		if closed {
			// Drain what arrived meanwhile, then stop.
			select {
			case j.wake <- struct{}{}:
			default:
			}
		}
	}
}

// write writes b to the store within timeout; an error fails the journal. The caller holds the
// writing role.
func (j *Journal) write(b *batch, timeout time.Duration) error {
	b.start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	err := j.store.Append(ctx, b.entries)
	cancel()
	if err != nil {
		// A journal that cannot write must stop the service from acknowledging anything: every
		// later append fails with the same error.
		err = fmt.Errorf("journal: append to %s: %w", j.store.Name(), err)
		j.fail(err)
	}
	return err
}

// upkeep runs the store's idle work (the end of a checkpoint), the writing role held, then gives
// the role back. Only the writer goroutine runs it: a leader never makes its caller wait for it.
func (j *Journal) upkeep() {
	if is, ok := j.store.(idler); ok {
		is.Idle()
	}
	j.mu.Lock()
	j.writing = false
	j.mu.Unlock()
}

// lead commits b in the calling goroutine when the journal is idle: b is the batch being filled,
// nothing is being written and, with a Syncer, nothing is being synced or waits to be. It takes
// both roles, so the writer and the sync loop stand aside, and wakes them when it gives each back,
// for whatever was appended meanwhile and for the store's upkeep. Otherwise it returns at once and
// b goes the usual way, through the writer and the sync loop.
func (j *Journal) lead(b *batch) {
	j.mu.Lock()
	if j.cur != b || len(b.entries) == 0 || j.writing || j.closed || j.failed != nil ||
		(j.syncer != nil && (j.syncing || len(j.unsynced) > 0)) {
		j.mu.Unlock()
		return
	}
	j.cur = &batch{done: make(chan struct{})}
	j.writing = true
	j.syncing = j.syncer != nil
	timeout := j.timeout
	j.mu.Unlock()

	err := j.write(b, timeout)
	if j.syncer == nil {
		j.settle(b, err, time.Now())
		j.mu.Lock()
		j.writing = false
		j.mu.Unlock()
		j.kickWriter()
		return
	}
	// The writer may write the next batch while this one is synced: that one cannot be settled
	// before this one, since the sync role is held until this batch is settled.
	j.mu.Lock()
	j.writing = false
	j.mu.Unlock()
	j.kickWriter()
	if err == nil {
		if err = j.Err(); err == nil {
			err = j.syncBounded(timeout)
		}
	}
	j.settle(b, err, time.Now())
	j.mu.Lock()
	j.syncing = false
	j.mu.Unlock()
	j.kickSync()
}

func (j *Journal) kickWriter() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

func (j *Journal) kickSync() {
	select {
	case j.syncWake <- struct{}{}:
	default:
	}
}

// fail fails the journal once: every later append and every batch not yet durable gets err.
func (j *Journal) fail(err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failed == nil {
		j.failed = err
		close(j.down)
	}
}

// syncLoop makes written batches durable, one Sync for all of them, and acknowledges them in order.
// A batch written after a Sync began waits for the next one. Acknowledgement follows durability: a
// batch is settled only after a Sync that started after its write returned.
func (j *Journal) syncLoop() {
	defer close(j.stopped)
	for {
		<-j.syncWake
		j.mu.Lock()
		if j.syncing {
			// A leader is syncing; it wakes this loop when it is done.
			j.mu.Unlock()
			continue
		}
		list := j.unsynced
		j.unsynced = nil
		j.syncing = len(list) > 0
		done, failed, timeout := j.writerDone, j.failed, j.timeout
		j.mu.Unlock()
		if len(list) > 0 {
			err := failed
			if err == nil {
				err = j.syncBounded(timeout)
			}
			now := time.Now()
			for _, b := range list {
				berr := b.err
				if berr == nil {
					// A batch written before a failure is not acknowledged either: the failure stops
					// the journal, and what became durable is known only to a restart.
					berr = err
				}
				j.settle(b, berr, now)
			}
			j.mu.Lock()
			j.syncing = false
			j.mu.Unlock()
		}
		if done {
			j.mu.Lock()
			rest, busy := len(j.unsynced), j.syncing
			j.mu.Unlock()
			if rest == 0 && !busy {
				return
			}
			if !busy {
				j.kickSync()
			}
		}
	}
}

// syncBounded runs the store's Sync; one that errors, or has not returned after timeout (a stalled
// disk: the system call cannot be interrupted), fails the journal, so every waiter and every later
// append sees the failure at once. The batches of a sync that never returns are never acknowledged.
func (j *Journal) syncBounded(timeout time.Duration) error {
	stall := time.AfterFunc(timeout, func() {
		j.fail(fmt.Errorf("journal: sync of %s did not finish in %v", j.store.Name(), timeout))
	})
	err := j.syncer.Sync()
	timedOut := !stall.Stop() // the watchdog fired (its failure may still be on its way)
	switch {
	case err != nil:
		err = fmt.Errorf("journal: sync %s: %w", j.store.Name(), err)
	case timedOut:
		err = fmt.Errorf("journal: sync of %s did not finish in %v", j.store.Name(), timeout)
	}
	if err != nil {
		j.fail(err)
	}
	return err
}

// settle records a batch's outcome: statistics, live subscribers and OnFlush when it is durable,
// then wakes its waiters.
func (j *Journal) settle(b *batch, err error, end time.Time) {
	d := end.Sub(b.start)
	j.mu.Lock()
	j.stats.Flushes++
	j.stats.Entries += uint64(len(b.entries))
	j.stats.LastSeq = b.entries[len(b.entries)-1].Seq
	j.stats.FlushDur += d
	j.mu.Unlock()
	b.err = err
	if err == nil {
		j.hub.publish(b.entries)
		if j.OnFlush != nil {
			j.OnFlush(len(b.entries), d)
		}
	}
	close(b.done)
}

// Read replays entries with Seq > after from the store.
func (j *Journal) Read(ctx context.Context, after uint64, limit int, fn func(Entry) error) error {
	return j.store.Read(ctx, after, limit, fn)
}

// ReadKey reads the entries of one key (a client order id) from the store, in order.
func (j *Journal) ReadKey(ctx context.Context, key string, fn func(Entry) error) error {
	return j.store.ReadKey(ctx, key, fn)
}

// Subscribe returns a channel of durable entries from now on. The channel is closed when the
// subscriber falls more than buffer entries behind (the caller resumes from the store) or on Close.
func (j *Journal) Subscribe(buffer int) (<-chan Entry, func()) {
	sub := j.hub.subscribe(buffer, 0)
	return sub.ch, sub.Close
}

// SubscribeBytes is Subscribe bounded in payload bytes too: the subscriber is cut when more than
// maxBytes of entries wait for it. The caller reports each entry it is done with (Subscription.Done).
func (j *Journal) SubscribeBytes(buffer, maxBytes int) *Subscription {
	return j.hub.subscribe(buffer, int64(maxBytes))
}

// Close flushes what is queued, stops the writer and closes the store.
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default:
	}
	<-j.stopped
	j.hub.closeAll()
	return j.store.Close()
}

type hub struct {
	mu   sync.Mutex
	next int
	subs map[int]*Subscription
}

// Subscription is a live feed of durable report entries (SubscribeBytes).
type Subscription struct {
	ch     chan Entry
	queued atomic.Int64 // payload bytes published and not yet Done
	max    int64        // 0: no byte bound
	close  func()
}

// C is the channel of entries; it is closed when the subscriber was cut or the journal closed.
func (s *Subscription) C() <-chan Entry { return s.ch }

// Done says the subscriber has handled e (its bytes no longer count against the bound).
func (s *Subscription) Done(e Entry) { s.queued.Add(-int64(len(e.Payload))) }

// Close ends the subscription.
func (s *Subscription) Close() { s.close() }

func (h *hub) subscribe(buffer int, maxBytes int64) *Subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = make(map[int]*Subscription)
	}
	id := h.next
	h.next++
	sub := &Subscription{ch: make(chan Entry, buffer), max: maxBytes}
	sub.close = func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if c, ok := h.subs[id]; ok {
			delete(h.subs, id)
			close(c.ch)
		}
	}
	h.subs[id] = sub
	return sub
}

func (h *hub) publish(entries []Entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, sub := range h.subs {
		for _, e := range entries {
			if e.Kind != KindReport {
				continue
			}
			n := int64(len(e.Payload))
			if sub.max > 0 && sub.queued.Load()+n > sub.max {
				delete(h.subs, id)
				close(sub.ch)
				break
			}
			select {
			case sub.ch <- e:
				sub.queued.Add(n)
			default:
				delete(h.subs, id)
				close(sub.ch)
			}
			if _, ok := h.subs[id]; !ok {
				break
			}
		}
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, sub := range h.subs {
		delete(h.subs, id)
		close(sub.ch)
	}
}
