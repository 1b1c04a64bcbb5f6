package engine_test

// The engine's unit tests run it against a hand-written venue (fakeVenue), the in-memory journal
// (journal.Memory) and an injected clock, with the real risk engine, book and metrics. Each test
// file covers one concern, as the engine's own files do; tests are named as specs and written
// Arrange / Act / Assert.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// t0 is the test clock's start: 2024-01-02 10:00:00 UTC, in microseconds.
const t0 = int64(1_704_189_600_000_000)

// clock is the injected engine clock: time moves only when a test moves it.
type clock struct{ now atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.now.Store(t0)
	return c
}

func (c *clock) Now() int64              { return c.now.Load() }
func (c *clock) Advance(d time.Duration) { c.now.Add(d.Microseconds()) }

// fakeVenue is a venue written for the tests: it records every command the engine sends and answers
// Send with what the test scripted in onSend. By default it answers nothing, so events arrive later
// through OnVenueEvents, as they do from MT5.
type fakeVenue struct {
	writeAhead bool
	amendsQty  bool // venue.QuantityAmender

	mu        sync.Mutex
	nextID    uint64
	requested []venue.Command // every command built, journaled or not
	sent      []venue.Command
	onSend    func(cmd venue.Command, o *fsm.Order) ([]venue.Event, error)
}

func (v *fakeVenue) Name() string         { return "fake" }
func (v *fakeVenue) AmendsQuantity() bool { return v.amendsQty }
func (v *fakeVenue) WriteAhead() bool     { return v.writeAhead }

func (v *fakeVenue) Request(kind venue.CommandKind, o *fsm.Order) venue.Command {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nextID++
	var payload proto.Message = &execv1.CancelOrderRequest{ClientOrderId: o.ClientOrderID}
	switch kind {
	case venue.Place:
		payload = engine.OrderProto(o)
	case venue.Modify:
		p := engine.OrderProto(o)
		if a := o.Pending; a != nil {
			p.Quantity, p.Price, p.TriggerPrice, p.StopLoss, p.TakeProfit = a.Quantity.Proto(), a.Price.Proto(), a.TriggerPrice.Proto(), a.StopLoss.Proto(), a.TakeProfit.Proto()
		}
		payload = p
	}
	cmd := venue.Command{Kind: kind, ID: v.nextID, ClientOrderID: o.ClientOrderID, Payload: payload}
	v.requested = append(v.requested, cmd)
	return cmd
}

// commands lists the commands of a kind built (requested) and sent so far.
func (v *fakeVenue) commands(kind venue.CommandKind) (requested, sent []venue.Command) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, c := range v.requested {
		if c.Kind == kind {
			requested = append(requested, c)
		}
	}
	for _, c := range v.sent {
		if c.Kind == kind {
			sent = append(sent, c)
		}
	}
	return requested, sent
}

func (v *fakeVenue) Send(cmd venue.Command, o *fsm.Order) ([]venue.Event, error) {
	v.mu.Lock()
	v.sent = append(v.sent, cmd)
	answer := v.onSend
	v.mu.Unlock()
	if answer == nil {
		return nil, nil
	}
	return answer(cmd, o)
}

// answer scripts the venue's reply to every later command.
func (v *fakeVenue) answer(f func(cmd venue.Command, o *fsm.Order) ([]venue.Event, error)) {
	v.mu.Lock()
	v.onSend = f
	v.mu.Unlock()
}

// kinds lists the kinds of the commands sent so far.
func (v *fakeVenue) kinds() []venue.CommandKind {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []venue.CommandKind
	for _, c := range v.sent {
		out = append(out, c.Kind)
	}
	return out
}

// quoteVenue is a fakeVenue that also works orders on quotes (venue.QuoteDriven), like the paper venue.
type quoteVenue struct {
	*fakeVenue
	onQuote func(q market.Quote) []venue.Event
}

func (v *quoteVenue) OnQuote(q market.Quote) []venue.Event { return v.onQuote(q) }

// failingStore is a journal store whose appends start failing when the test says, as they would on
// a full disk or a lost database; or only its reads by key, while its appends still work (a
// connection lost for lookups, a read that times out).
type failingStore struct {
	*journal.Memory
	failing      atomic.Bool
	readsFailing atomic.Bool
}

var (
	errDiskFull = errors.New("disk full")
	errReadLost = errors.New("read: connection lost")
)

func (s *failingStore) Append(ctx context.Context, entries []journal.Entry) error {
	if s.failing.Load() {
		return errDiskFull
	}
	return s.Memory.Append(ctx, entries)
}

func (s *failingStore) ReadKey(ctx context.Context, key string, fn func(journal.Entry) error) error {
	if s.readsFailing.Load() {
		return errReadLost
	}
	return s.Memory.ReadKey(ctx, key, fn)
}

// gateStore is a journal store whose appends, while held, block until the test lets them through
// (or fails them) or their context ends: a disk or database that stalls. entered reports each
// held append as it begins.
type gateStore struct {
	*journal.Memory
	held    atomic.Bool
	entered chan struct{}
	release chan error // nil lets the append through, an error fails it
}

func newGateStore() *gateStore {
	return &gateStore{Memory: journal.NewMemory(), entered: make(chan struct{}, 64), release: make(chan error, 64)}
}

func (s *gateStore) Append(ctx context.Context, entries []journal.Entry) error {
	if s.held.Load() {
		s.entered <- struct{}{}
		select {
		case err := <-s.release:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Memory.Append(ctx, entries)
}

// await waits for a held append to begin.
func (s *gateStore) await(t *testing.T) {
	t.Helper()
	select {
	case <-s.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no journal write began")
	}
}

func dec(s string) decimal.D { return decimal.MustParse(s) }

var instruments = []market.Instrument{
	{Symbol: "EURUSD", Digits: 5, VolumeStep: dec("0.01"), VolumeMin: dec("0.01"), ContractSize: dec("100000"), QuoteToAccount: dec("1")},
	{Symbol: "GBPUSD", Digits: 5, VolumeStep: dec("0.01"), VolumeMin: dec("0.01"), ContractSize: dec("100000"), QuoteToAccount: dec("1")},
}

// harness is one engine under test and everything around it. The journal's store outlives the
// engine, so restart builds a new engine, risk engine and book over the same journal.
type harness struct {
	t      *testing.T
	clock  *clock
	venue  venue.Venue
	fake   *fakeVenue
	store  journal.Store
	limits risk.Limits
	noMet  bool
	jwait  time.Duration // engine JournalTimeout (0: the default)
	// maxOrders is the engine's MaxOrders (0: the default).
	maxOrders int
	// reopen, when set, opens the journal's store again at restart (a store that Close shuts).
	reopen func() journal.Store

	jr   *journal.Journal
	risk *risk.Engine
	book *portfolio.Book
	m    *metrics.Metrics
	eng  *engine.Engine
}

type option func(*harness)

func withLimits(l risk.Limits) option   { return func(h *harness) { h.limits = l } }
func withWriteAhead() option            { return func(h *harness) { h.fake.writeAhead = true } }
func withQuantityAmends() option        { return func(h *harness) { h.fake.amendsQty = true } }
func withStore(st journal.Store) option { return func(h *harness) { h.store = st } }
func withoutMetrics() option            { return func(h *harness) { h.noMet = true } }
func withMaxOrders(n int) option        { return func(h *harness) { h.maxOrders = n } }

// withReopenedStore runs the engine on the store open returns, opened again at every restart.
func withReopenedStore(open func() journal.Store) option {
	return func(h *harness) { h.store, h.reopen = open(), open }
}
func withJournalTimeout(d time.Duration) option {
	return func(h *harness) { h.jwait = d }
}

// withVenue runs the engine on v, a venue built around the fake f.
func withVenue(v venue.Venue, f *fakeVenue) option {
	return func(h *harness) { h.venue, h.fake = v, f }
}

// newHarness builds an engine over a fresh in-memory journal; it is not replayed or reconciled yet.
func newHarness(t *testing.T, opts ...option) *harness {
	t.Helper()
	h := &harness{t: t, clock: newClock(), fake: &fakeVenue{}, store: journal.NewMemory()}
	for _, o := range opts {
		o(h)
	}
	if h.venue == nil {
		h.venue = h.fake
	}
	h.open()
	t.Cleanup(func() {
		h.eng.Close()
		_ = h.jr.Close()
	})
	return h
}

func (h *harness) open() {
	h.t.Helper()
	jr, err := journal.New(context.Background(), h.store)
	if err != nil {
		h.t.Fatal(err)
	}
	h.jr, h.book = jr, portfolio.NewBook()
	h.risk = risk.New(h.limits, instruments, h.book)
	h.m = nil
	if !h.noMet {
		h.m = metrics.New()
	}
	h.eng = engine.New(engine.Options{Risk: h.risk, Book: h.book, Venue: h.venue, Journal: h.jr, Metrics: h.m,
		Logger: slog.New(slog.DiscardHandler), Clock: h.clock.Now, Currency: "USD", JournalTimeout: h.jwait, MaxOrders: h.maxOrders})
}

// started is a harness replayed and reconciled: trading is ACTIVE.
func started(t *testing.T, opts ...option) *harness {
	t.Helper()
	h := newHarness(t, opts...)
	h.replay()
	h.reconcile(nil)
	return h
}

func (h *harness) replay() engine.ReplayStats {
	h.t.Helper()
	st, err := h.eng.Replay(context.Background())
	if err != nil {
		h.t.Fatalf("replay: %v", err)
	}
	return st
}

func (h *harness) reconcile(snap *engine.Snapshot) {
	h.t.Helper()
	if err := h.eng.Reconcile(context.Background(), snap); err != nil {
		h.t.Fatalf("reconcile: %v", err)
	}
}

// restart stops the engine and its journal and starts new ones over the same journal store, as a
// restarted service does; the new engine is replayed but not reconciled.
func (h *harness) restart() engine.ReplayStats {
	h.t.Helper()
	h.eng.Close()
	if err := h.jr.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.clock.Advance(time.Minute)
	if h.reopen != nil {
		h.store = h.reopen()
	}
	h.open()
	return h.replay()
}

func (h *harness) quote(symbol, bid, ask string) {
	h.t.Helper()
	if err := h.eng.OnQuote(market.Quote{Symbol: symbol, Bid: dec(bid), Ask: dec(ask), TimeUS: h.clock.Now()}); err != nil {
		h.t.Fatal(err)
	}
}

// submit validates and submits req as the service does.
func (h *harness) submit(req *execv1.SubmitOrderRequest) (engine.SubmitResult, error) {
	h.t.Helper()
	rreq, bad := engine.Validate(req, h.eng.Instrument, h.clock.Now())
	if bad != nil {
		h.t.Fatalf("test request %s is invalid: %v", req.GetClientOrderId(), bad)
	}
	return h.eng.Submit(context.Background(), req, rreq, nil)
}

// mustSubmit submits and fails the test on an error.
func (h *harness) mustSubmit(req *execv1.SubmitOrderRequest) *execv1.Order {
	h.t.Helper()
	res, err := h.submit(req)
	if err != nil {
		h.t.Fatalf("submit %s: %v", req.GetClientOrderId(), err)
	}
	return res.Order
}

func (h *harness) events(evs ...venue.Event) {
	h.t.Helper()
	if err := h.eng.OnVenueEvents(evs); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) order(id string) *execv1.Order {
	h.t.Helper()
	o, err := h.eng.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return o
}

// entries reads the journal after seq.
func (h *harness) entries(after uint64) []journal.Entry {
	h.t.Helper()
	var out []journal.Entry
	if err := h.jr.Read(context.Background(), after, 0, func(e journal.Entry) error { out = append(out, e); return nil }); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func (h *harness) lastSeq() uint64 { return h.jr.LastSeq() }

// kindsAfter lists the kinds of the journal entries after seq.
func (h *harness) kindsAfter(seq uint64) []journal.Kind {
	var out []journal.Kind
	for _, e := range h.entries(seq) {
		out = append(out, e.Kind)
	}
	return out
}

// reportsAfter decodes the execution reports journaled after seq.
func (h *harness) reportsAfter(seq uint64) []*execv1.ExecutionReport {
	h.t.Helper()
	var out []*execv1.ExecutionReport
	for _, e := range h.entries(seq) {
		if e.Kind != journal.KindReport {
			continue
		}
		r := &execv1.ExecutionReport{}
		if err := proto.Unmarshal(e.Payload, r); err != nil {
			h.t.Fatalf("report %d: %v", e.Seq, err)
		}
		out = append(out, r)
	}
	return out
}

// reportTypesAfter lists the types of the reports journaled after seq.
func (h *harness) reportTypesAfter(seq uint64) []execv1.ReportType {
	var out []execv1.ReportType
	for _, r := range h.reportsAfter(seq) {
		out = append(out, r.GetType())
	}
	return out
}

// same reports whether a wire decimal equals want ("" is zero); a missing decimal is zero.
func same(p *typesv1.Decimal, want string) bool {
	if want == "" {
		want = "0"
	}
	d, err := decimal.FromProto(p)
	return err == nil && d.Equal(dec(want))
}

// show renders a wire decimal for a failure message.
func show(p *typesv1.Decimal) string {
	d, err := decimal.FromProto(p)
	if err != nil {
		return "invalid(" + err.Error() + ")"
	}
	return d.String()
}

// statusName is the orders-by-status label of a wire status.
func statusName(s execv1.OrderStatus) string { return fsm.Status(s).String() }

// metric reads one counter or gauge.
func metric(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// anyPayload encodes m as the engine journals commands.
func anyPayload(t *testing.T, m proto.Message) []byte {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Requests.

func limitOrder(id, side, qty, price string) *execv1.SubmitOrderRequest {
	return &execv1.SubmitOrderRequest{ClientOrderId: id, Symbol: "EURUSD", Side: sideOf(side), Type: execv1.OrderType_ORDER_TYPE_LIMIT,
		Quantity: dec(qty).Proto(), Price: dec(price).Proto(), StrategyId: "test"}
}

func marketOrder(id, side, qty string) *execv1.SubmitOrderRequest {
	return &execv1.SubmitOrderRequest{ClientOrderId: id, Symbol: "EURUSD", Side: sideOf(side), Type: execv1.OrderType_ORDER_TYPE_MARKET,
		Quantity: dec(qty).Proto(), StrategyId: "test"}
}

func on(symbol string, req *execv1.SubmitOrderRequest) *execv1.SubmitOrderRequest {
	req.Symbol = symbol
	return req
}

func reduceOnly(req *execv1.SubmitOrderRequest) *execv1.SubmitOrderRequest {
	req.ReduceOnly = true
	return req
}

func sideOf(s string) execv1.OrderSide {
	if s == "sell" {
		return execv1.OrderSide_ORDER_SIDE_SELL
	}
	return execv1.OrderSide_ORDER_SIDE_BUY
}

// Venue events.

func accepted(id, venueID string) venue.Event {
	return venue.Event{Kind: venue.Accepted, ClientOrderID: id, VenueOrderID: venueID}
}

func rejected(id, reason string) venue.Event {
	return venue.Event{Kind: venue.Rejected, ClientOrderID: id, Reason: reason}
}

func canceled(id string) venue.Event { return venue.Event{Kind: venue.Canceled, ClientOrderID: id} }

func expired(id string) venue.Event { return venue.Event{Kind: venue.Expired, ClientOrderID: id} }

func cancelRejected(id string) venue.Event {
	return venue.Event{Kind: venue.CancelRejected, ClientOrderID: id, Reason: "too late"}
}

func updated(id string) venue.Event { return venue.Event{Kind: venue.Updated, ClientOrderID: id} }

func updateRejected(id, reason string) venue.Event {
	return venue.Event{Kind: venue.UpdateRejected, ClientOrderID: id, Reason: reason}
}

func filled(id, tradeID, qty, price string) venue.Event {
	return venue.Event{Kind: venue.Filled, ClientOrderID: id, Fill: fsm.Fill{TradeID: tradeID, Quantity: dec(qty), Price: dec(price), TimeUS: t0}}
}
