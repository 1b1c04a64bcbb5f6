// Package mt5 is the MetaTrader 5 venue: what the bridge DLL's TRADING channel means to the
// execution engine. Orders go down as OrderCommand frames carrying the client order id;
// OrderResult, TradeTransaction, AccountSnapshot and PositionSnapshot frames come up and become
// engine events, journaled before they are acknowledged so that a bridge resend after a crash is
// recognised and dropped. Ambiguous results (retcode 10012 timeout, -11 disconnected) are resolved
// with QUERY_ORDER, never guessed. On every (re)connection the venue queries in-flight orders and
// asks for a snapshot, and the engine trades again only once that reconciliation converges.
//
// The connection itself (listener, Hello/Welcome, sequences, cumulative acks, heartbeats, resume,
// frame limits and errors, replacement) is go/bridgelink, shared with the collector.
package mt5

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/bridgelink"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// MaxBatch is how many frames already received are journaled in one durable flush.
const MaxBatch = 256

// MT5 trade server return codes the venue acts on.
const (
	RetDone         = 10009
	RetDonePartial  = 10010
	RetPlaced       = 10008
	RetCancel       = 10007
	RetRequote      = 10004
	RetTimeout      = 10012
	RetPriceChanged = 10020
	RetPriceOff     = 10021
	RetDisconnected = -11
)

// MT5 ENUM_ORDER_STATE values used by transactions.
const (
	orderStatePlaced   = 1
	orderStateCanceled = 2
	orderStateRejected = 5
	orderStateExpired  = 6
)

// Engine is what the venue needs from the execution engine.
type Engine interface {
	OnVenueEvents(evs []venue.Event) error
	OnAccount(a risk.Account) error
	Reconcile(ctx context.Context, snap *engine.Snapshot) error
	Unreconcile(reason string)
	OpenOrders() []fsm.Order
	CancelAll(ctx context.Context, symbol string) ([]string, error)
}

// Config is the bridge link.
type Config struct {
	Addr               string
	HeartbeatInterval  time.Duration
	CancelOnDisconnect bool
	DeviationPoints    uint32
	CommandTTL         time.Duration
	ServerVersion      string
	// MaxPriceRetries re-sends a market order after a requote (10004, 10020, 10021), with a new command id.
	MaxPriceRetries int
	// BridgeKey, BridgeInsecure, MaxSessions and SessionTTL configure the link (bridgelink.Config).
	BridgeKey      []byte
	BridgeInsecure bool
	MaxSessions    int
	SessionTTL     time.Duration
	Guard          bridgelink.Guard
	// MaxTracked bounds the command map and the ticket maps. Beyond it the oldest completed
	// entries go (answered commands; tickets of orders the engine no longer has open), then the
	// oldest of all. Default DefaultMaxTracked.
	MaxTracked int
}

// DefaultMaxTracked is Config.MaxTracked's default: far above the working orders and commands in
// flight of one terminal, small enough that a long-running service does not grow.
const DefaultMaxTracked = 4096

type cmdInfo struct {
	kind    venue.CommandKind
	id      string
	symbol  string // Protect commands: the position's symbol
	retries int
	cmd     *bridgev1.OrderCommand
	done    bool // a result arrived: kept only to recognise a late duplicate, evicted first
}

// Venue is the MT5 venue.
type Venue struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics.Metrics
	eng  Engine
	link *bridgelink.Listener
	ctx  context.Context // Serve's, for the engine calls the link's goroutines make

	mu       sync.Mutex
	cur      *bridgelink.Conn
	nextCmd  uint64
	tickets  map[string]uint64 // client order id → MT5 order ticket
	byTicket map[uint64]string // and back, for transactions the EA could not map
	ticketAt map[string]uint64 // insertion order of tickets, for eviction
	ticketN  uint64
	cmds     map[uint64]*cmdInfo
	digits   func(symbol string) uint8
	connects int
	// evicted counts entries dropped from the bounded maps (kairos_execution_mt5_evicted_total).
	evicted *prometheus.CounterVec
	// checkFailed and checkTime publish the EA's self-check (TerminalCheck frames).
	checkFailed *prometheus.GaugeVec
	checkTime   prometheus.Gauge
	lastCheck   *bridgev1.TerminalCheck
}

// TerminalChecks are the label values of kairos_execution_terminal_check_failed, one per
// TerminalCheck verdict.
var TerminalChecks = []string{"dlls", "terminal_algo_trading", "ea_algo_trading", "account_trading", "account_expert_trading", "symbols"}

// New returns an MT5 venue; SetEngine and Listen must follow before use.
func New(cfg Config, log *slog.Logger, m *metrics.Metrics, digits func(string) uint8) *Venue {
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.ServerVersion == "" {
		cfg.ServerVersion = "kairos-execution 0.1.0"
	}
	if cfg.MaxPriceRetries == 0 {
		cfg.MaxPriceRetries = 2
	}
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = DefaultMaxTracked
	}
	// Command ids start at the current time in microseconds, so they keep increasing across restarts
	// even for commands that are never journaled (queries, snapshots): the bridge ignores a command
	// id it has already carried out, so an id must never be reused.
	v := &Venue{cfg: cfg, log: log, m: m, tickets: make(map[string]uint64), ctx: context.Background(),
		byTicket: make(map[uint64]string), ticketAt: make(map[string]uint64), cmds: make(map[uint64]*cmdInfo), digits: digits,
		nextCmd: uint64(time.Now().UnixMicro())}
	v.evicted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kairos_execution_mt5_evicted_total",
		Help: "Entries dropped from the mt5 venue's bounded command and ticket maps, by map (commands, tickets) and reason (completed, capacity); map snapshot counts position snapshots dropped whole for passing MaxTracked entries."},
		[]string{"map", "reason"})
	v.checkFailed = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kairos_execution_terminal_check_failed",
		Help: "1 while the EA's latest self-check reports the check failing (DLL imports, Algo Trading in the terminal and the EA, account trading, expert trading, symbols), 0 otherwise."},
		[]string{"check"})
	v.checkTime = prometheus.NewGauge(prometheus.GaugeOpts{Name: "kairos_execution_terminal_check_time_seconds",
		Help: "When the EA ran its latest self-check (Unix time, seconds); 0 before the first report."})
	for _, c := range TerminalChecks {
		v.checkFailed.WithLabelValues(c)
	}
	var bm *bridgelink.Metrics
	if m != nil {
		bm = m.Bridge
		if m.Registry != nil {
			m.Registry.MustRegister(v.evicted, v.checkFailed, v.checkTime)
		}
	}
	for _, mp := range []string{"commands", "tickets"} {
		for _, r := range []string{"completed", "capacity"} {
			v.evicted.WithLabelValues(mp, r)
		}
	}
	v.evicted.WithLabelValues("snapshot", "capacity")
	// Exclusive: the channel drives one terminal, so a new connection (of any session) replaces the
	// current one and commands always have exactly one place to go. AckInterval 0: frames are
	// acknowledged as soon as their journal entries are durable.
	v.link = bridgelink.New(bridgelink.Config{Channel: bridgev1.Channel_CHANNEL_TRADING, Addr: cfg.Addr,
		HeartbeatInterval: cfg.HeartbeatInterval, ServerVersion: cfg.ServerVersion, MaxBatch: MaxBatch, Exclusive: true,
		Key: cfg.BridgeKey, Insecure: cfg.BridgeInsecure, MaxSessions: cfg.MaxSessions, SessionTTL: cfg.SessionTTL, Guard: cfg.Guard},
		v, bm, log)
	return v
}

// SetEngine connects the venue to the engine (they refer to each other).
func (v *Venue) SetEngine(e Engine) { v.eng = e }

// Name implements venue.Venue.
func (v *Venue) Name() string { return "mt5" }

// WriteAhead implements venue.Venue: the terminal is outside the process.
func (v *Venue) WriteAhead() bool { return true }

// ReplayRequest implements venue.Replayer: command ids continue after the journal's highest.
func (v *Venue) ReplayRequest(msg proto.Message) {
	if c, ok := msg.(*bridgev1.OrderCommand); ok {
		v.mu.Lock()
		if c.GetCommandId() > v.nextCmd {
			v.nextCmd = c.GetCommandId()
		}
		v.cmds[c.GetCommandId()] = &cmdInfo{kind: kindOf(c.GetKind()), id: c.GetClientOrderId(), symbol: c.GetSymbol(), cmd: c}
		v.trimCommandsLocked()
		v.mu.Unlock()
	}
}

// ReplayResponse implements venue.Replayer: the last processed sequence per bridge session (the
// link's resume point), and the order tickets already known.
func (v *Venue) ReplayResponse(key string, msg proto.Message) {
	f, ok := msg.(*bridgev1.Frame)
	if !ok {
		return
	}
	if sess, err := bridgelink.ParseSessionKey(key); err == nil {
		v.link.Restore(sess, f.GetSequence())
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if r := f.GetOrderResult(); r != nil {
		if info := v.cmds[r.GetCommandId()]; info != nil {
			info.done = true
		}
		if r.GetOrderTicket() != 0 && r.GetClientOrderId() != "" {
			v.setTicket(r.GetClientOrderId(), r.GetOrderTicket())
		}
	}
	if t := f.GetTradeTransaction(); t != nil && t.GetOrderTicket() != 0 && t.GetClientOrderId() != "" {
		v.setTicket(t.GetClientOrderId(), t.GetOrderTicket())
	}
}

// setTicket records a ticket; the caller holds v.mu.
func (v *Venue) setTicket(id string, ticket uint64) {
	if id == "" || ticket == 0 {
		return
	}
	if old, ok := v.tickets[id]; ok && old != ticket {
		delete(v.byTicket, old)
	}
	v.tickets[id] = ticket
	v.byTicket[ticket] = id
	v.ticketN++
	v.ticketAt[id] = v.ticketN
}

// trimCommandsLocked keeps the command map within MaxTracked (plus a quarter of slack, so a sweep
// runs once per MaxTracked/4 commands): answered commands go first, oldest (lowest id) first,
// then the oldest unanswered ones. The caller holds v.mu.
func (v *Venue) trimCommandsLocked() {
	limit := v.cfg.MaxTracked
	if len(v.cmds) <= limit+limit/4 {
		return
	}
	ids := make([]uint64, 0, len(v.cmds))
	for id := range v.cmds {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if len(v.cmds) <= limit {
			return
		}
		if v.cmds[id].done {
			delete(v.cmds, id)
			v.evicted.WithLabelValues("commands", "completed").Inc()
		}
	}
	for _, id := range ids {
		if len(v.cmds) <= limit {
			return
		}
		if _, ok := v.cmds[id]; ok {
			// Unanswered for MaxTracked commands since: a late result is then logged as unknown
			// and the order is resolved by the next reconciliation's query.
			v.log.Warn("mt5 venue: forgetting an unanswered command", "command_id", id, "client_order_id", v.cmds[id].id)
			delete(v.cmds, id)
			v.evicted.WithLabelValues("commands", "capacity").Inc()
		}
	}
}

// trimTickets keeps the ticket maps within MaxTracked (plus a quarter of slack): tickets of orders
// the engine no longer has open go first, oldest first, then the oldest of all. It asks the engine
// for its open orders, so it runs without v.mu, from the link's goroutine after a batch is durable
// (never from a call the engine makes).
func (v *Venue) trimTickets() {
	limit := v.cfg.MaxTracked
	v.mu.Lock()
	n := len(v.tickets)
	v.mu.Unlock()
	if n <= limit+limit/4 || v.eng == nil {
		return
	}
	open := map[string]bool{}
	for _, o := range v.eng.OpenOrders() {
		open[o.ClientOrderID] = true
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	ids := make([]string, 0, len(v.tickets))
	for id := range v.tickets {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { return compareUint(v.ticketAt[a], v.ticketAt[b]) })
	drop := func(id, reason string) {
		delete(v.byTicket, v.tickets[id])
		delete(v.tickets, id)
		delete(v.ticketAt, id)
		v.evicted.WithLabelValues("tickets", reason).Inc()
	}
	for _, id := range ids {
		if len(v.tickets) <= limit {
			return
		}
		if !open[id] {
			drop(id, "completed")
		}
	}
	for _, id := range ids {
		if len(v.tickets) <= limit {
			return
		}
		if _, ok := v.tickets[id]; ok {
			drop(id, "capacity")
		}
	}
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func kindOf(k bridgev1.CommandKind) venue.CommandKind {
	switch k {
	case bridgev1.CommandKind_COMMAND_KIND_PLACE:
		return venue.Place
	case bridgev1.CommandKind_COMMAND_KIND_CANCEL:
		return venue.Cancel
	case bridgev1.CommandKind_COMMAND_KIND_MODIFY:
		return venue.Modify
	case bridgev1.CommandKind_COMMAND_KIND_MODIFY_POSITION:
		return venue.Protect
	}
	return venue.Query
}

// Request implements venue.Venue: it builds the OrderCommand with a fresh command id.
func (v *Venue) Request(kind venue.CommandKind, o *fsm.Order) venue.Command {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nextCmd++
	c := &bridgev1.OrderCommand{CommandId: v.nextCmd, ClientOrderId: o.ClientOrderID, Symbol: o.Symbol}
	switch kind {
	case venue.Place:
		c.Kind = bridgev1.CommandKind_COMMAND_KIND_PLACE
		c.Side = bridgev1.Side(o.Side)
		c.Volume = o.Quantity.Proto()
		switch o.Type {
		case fsm.Market:
			c.OrderType = bridgev1.OrderType_ORDER_TYPE_MARKET
			c.DeviationPoints = v.cfg.DeviationPoints
		case fsm.Limit:
			c.OrderType, c.Price = bridgev1.OrderType_ORDER_TYPE_LIMIT, o.Price.Proto()
		case fsm.StopMarket:
			c.OrderType, c.Price = bridgev1.OrderType_ORDER_TYPE_STOP, o.TriggerPrice.Proto()
		case fsm.StopLimit:
			c.OrderType, c.Price, c.StopLimitPrice = bridgev1.OrderType_ORDER_TYPE_STOP_LIMIT, o.TriggerPrice.Proto(), o.Price.Proto()
		}
		if o.TIF == fsm.GTD {
			c.ExpirationMsc = o.ExpireTimeUS / 1000
		}
		// Set at the broker on the position the order opens, so they hold if Kairos stops.
		c.StopLoss, c.TakeProfit = optional(o.StopLoss), optional(o.TakeProfit)
		if v.cfg.CommandTTL > 0 {
			c.DeadlineTimeUs = time.Now().Add(v.cfg.CommandTTL).UnixMicro()
		}
	case venue.Modify:
		// OrderModify: the new price (a stop's trigger; a stop-limit's trigger with its limit as
		// stop_limit_price), stop loss and take profit; the expiry stays. MT5 cannot change the
		// volume (the engine refuses quantity changes on this venue).
		a := o.AmendOf()
		if o.Pending != nil {
			a = *o.Pending
		}
		c.Kind = bridgev1.CommandKind_COMMAND_KIND_MODIFY
		c.OrderTicket = v.tickets[o.ClientOrderID]
		c.Side = bridgev1.Side(o.Side)
		switch o.Type {
		case fsm.Limit:
			c.OrderType, c.Price = bridgev1.OrderType_ORDER_TYPE_LIMIT, a.Price.Proto()
		case fsm.StopMarket:
			c.OrderType, c.Price = bridgev1.OrderType_ORDER_TYPE_STOP, a.TriggerPrice.Proto()
		case fsm.StopLimit:
			c.OrderType, c.Price, c.StopLimitPrice = bridgev1.OrderType_ORDER_TYPE_STOP_LIMIT, a.TriggerPrice.Proto(), a.Price.Proto()
		}
		c.StopLoss, c.TakeProfit = a.StopLoss.Proto(), a.TakeProfit.Proto()
		if o.TIF == fsm.GTD {
			c.ExpirationMsc = o.ExpireTimeUS / 1000
		}
		if v.cfg.CommandTTL > 0 {
			c.DeadlineTimeUs = time.Now().Add(v.cfg.CommandTTL).UnixMicro()
		}
	case venue.Cancel:
		c.Kind = bridgev1.CommandKind_COMMAND_KIND_CANCEL
		c.OrderTicket = v.tickets[o.ClientOrderID]
	case venue.Query:
		c.Kind = bridgev1.CommandKind_COMMAND_KIND_QUERY_ORDER
		c.OrderTicket = v.tickets[o.ClientOrderID]
	}
	v.cmds[c.CommandId] = &cmdInfo{kind: kind, id: o.ClientOrderID, cmd: c}
	v.trimCommandsLocked()
	return venue.Command{Kind: kind, ID: c.CommandId, ClientOrderID: o.ClientOrderID, Payload: c}
}

// optional is a price for a command, nil when zero (none).
func optional(d decimal.D) *typesv1.Decimal {
	if d.IsZero() {
		return nil
	}
	return d.Proto()
}

// ProtectRequest implements venue.Protector: MODIFY_POSITION for the symbol's positions carrying
// the EA's magic, with the new stop loss and take profit (zero removes), journaled under the
// position's key.
func (v *Venue) ProtectRequest(p venue.Protection) venue.Command {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nextCmd++
	c := &bridgev1.OrderCommand{CommandId: v.nextCmd, Kind: bridgev1.CommandKind_COMMAND_KIND_MODIFY_POSITION, Symbol: p.Symbol,
		StopLoss: p.StopLoss.Proto(), TakeProfit: p.TakeProfit.Proto()}
	if v.cfg.CommandTTL > 0 {
		c.DeadlineTimeUs = time.Now().Add(v.cfg.CommandTTL).UnixMicro()
	}
	v.cmds[c.CommandId] = &cmdInfo{kind: venue.Protect, symbol: p.Symbol, cmd: c}
	v.trimCommandsLocked()
	return venue.Command{Kind: venue.Protect, ID: c.CommandId, Payload: c}
}

// ErrNotConnected is returned by Send while no bridge is connected.
var ErrNotConnected = bridgelink.ErrNotConnected

// Send implements venue.Venue: it queues the command on the live connection.
func (v *Venue) Send(cmd venue.Command, o *fsm.Order) ([]venue.Event, error) {
	c := cmd.Payload.(*bridgev1.OrderCommand)
	if cmd.Kind == venue.Cancel && c.GetOrderTicket() == 0 {
		return []venue.Event{{Kind: venue.CancelRejected, ClientOrderID: o.ClientOrderID, Reason: "the terminal has not acknowledged the order yet; cancel again once it is ACCEPTED"}}, nil
	}
	if cmd.Kind == venue.Modify && c.GetOrderTicket() == 0 {
		return []venue.Event{{Kind: venue.UpdateRejected, ClientOrderID: o.ClientOrderID, Reason: "the terminal has not acknowledged the order yet; modify again once it is ACCEPTED"}}, nil
	}
	v.mu.Lock()
	cur := v.cur
	v.mu.Unlock()
	if cur == nil {
		return nil, ErrNotConnected
	}
	return nil, cur.Send(command(c))
}

func command(c *bridgev1.OrderCommand) *bridgev1.Frame {
	return &bridgev1.Frame{Body: &bridgev1.Frame_OrderCommand{OrderCommand: c}}
}

// Decided tells the connected bridge, when it runs in Strategy Tester lockstep, that the policy
// has decided on the signal of (symbol, timeMsc) (ADR 0095). The decision's order command was sent
// before it on the same connection, so the bridge has it queued when this arrives. A live bridge
// gets nothing.
func (v *Venue) Decided(symbol string, timeMsc int64, outcome string, commands int) {
	v.mu.Lock()
	cur := v.cur
	v.mu.Unlock()
	if cur == nil || !cur.Hello().GetLockstep() {
		return
	}
	if v.m != nil {
		v.m.TesterDecisions.WithLabelValues(outcome).Inc()
	}
	if err := cur.Send(&bridgev1.Frame{Body: &bridgev1.Frame_TesterDecision{TesterDecision: &bridgev1.TesterDecision{
		Symbol: symbol, TimeMsc: timeMsc, Outcome: outcome, Commands: uint32(commands)}}}); err != nil {
		v.log.Warn("tester decision not sent; the bridge's step times out", "symbol", symbol, "time_msc", timeMsc, "err", err)
	}
}

// Listen binds the bridge listener.
func (v *Venue) Listen() error { return v.link.Listen() }

// Addr returns the bound address.
func (v *Venue) Addr() string { return v.link.Addr().String() }

// Serve accepts bridge connections until Close; ctx is what the engine calls made on behalf of
// a connection (reconciliation, cancel-on-disconnect) run under.
func (v *Venue) Serve(ctx context.Context) error {
	v.ctx = ctx
	if err := v.link.Serve(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// Close stops the listener and every connection and waits for them.
func (v *Venue) Close() error {
	return v.link.Close(context.Background())
}

// Open implements bridgelink.Channel: the connection becomes the one commands go to, and
// reconciliation starts (queries for in-flight orders, then a snapshot). A connection it replaced
// has already closed.
func (v *Venue) Open(c *bridgelink.Conn) bridgelink.Handler {
	v.mu.Lock()
	v.cur = c
	v.connects++
	reconnect := v.connects > 1
	v.mu.Unlock()
	s := &session{v: v, c: c, queries: map[uint64]bool{}, reconnect: reconnect}
	s.startReconcile()
	return s
}

// session is one connection's reconciliation and result handling.
type session struct {
	v *Venue
	c *bridgelink.Conn

	// reconciliation state, owned by the link's reader goroutine
	queries    map[uint64]bool
	snapCmd    uint64
	snap       *engine.Snapshot
	snapTime   int64 // time_msc of the snapshot being collected: frames of another are not mixed in
	snapDone   bool
	snapOver   bool // the snapshot of snapTime passed MaxTracked entries: dropped, its frames ignored
	reconciled bool
	reconnect  bool
	// afterDurable holds commands to send once the current frame's journal entries are durable.
	afterDurable []*bridgev1.OrderCommand
}

func (s *session) send(f *bridgev1.Frame) error { return s.c.Send(f) }

// Closed implements bridgelink.Handler: no more commands go to this connection. The engine stops
// trading until the next reconciliation unless a newer connection took over (it reconciles anyway).
func (s *session) Closed(err error) {
	v := s.v
	v.mu.Lock()
	if v.cur == s.c {
		v.cur = nil
	}
	v.mu.Unlock()
	if !errors.Is(err, bridgelink.ErrReplaced) {
		v.eng.Unreconcile("bridge connection lost")
	}
}

// startReconcile queries every in-flight order and then asks for a snapshot; the EA carries
// commands out in order, so the snapshot reflects the answers.
func (s *session) startReconcile() {
	for _, o := range s.v.eng.OpenOrders() {
		if o.Status != fsm.Submitted && o.Status != fsm.PendingCancel && o.Status != fsm.Accepted && o.Status != fsm.PartiallyFilled {
			continue
		}
		cmd := s.v.Request(venue.Query, &o)
		s.queries[cmd.ID] = true
		_ = s.send(command(cmd.Payload.(*bridgev1.OrderCommand)))
	}
	s.v.mu.Lock()
	s.v.nextCmd++
	s.snapCmd = s.v.nextCmd
	s.v.mu.Unlock()
	s.snap = &engine.Snapshot{}
	_ = s.send(command(&bridgev1.OrderCommand{CommandId: s.snapCmd, Kind: bridgev1.CommandKind_COMMAND_KIND_SNAPSHOT}))
}

func (s *session) maybeReconciled(ctx context.Context) error {
	if s.reconciled || !s.snapDone || len(s.queries) > 0 {
		return nil
	}
	s.reconciled = true
	if err := s.v.eng.Reconcile(ctx, s.snap); err != nil {
		return err
	}
	if s.reconnect && s.v.cfg.CancelOnDisconnect {
		ids, err := s.v.eng.CancelAll(ctx, "")
		s.v.log.Warn("cancel-on-disconnect: cancelled working orders after the link came back", "orders", len(ids), "err", err)
	}
	return nil
}

// Frames implements bridgelink.Handler. Events are journaled in one durable flush before the
// frames count as processed (and are acknowledged), so a resend after a crash finds them processed.
func (s *session) Frames(in []bridgelink.Inbound) (int, error) {
	v := s.v
	var (
		evs   []venue.Event
		accts []risk.Account
		top   uint64
	)
	key := s.c.Key()
	for _, x := range in {
		f := x.Frame
		if f.GetSequence() == 0 {
			continue // only numbered frames are journaled and acknowledged
		}
		top = f.GetSequence()
		evs = append(evs, venue.Event{Raw: f, RawKey: key})
		switch {
		case f.GetOrderResult() != nil:
			evs = append(evs, s.onResult(f.GetOrderResult())...)
		case f.GetTradeTransaction() != nil:
			evs = append(evs, s.onTransaction(f.GetTradeTransaction())...)
		case f.GetAccount() != nil:
			a := accountOf(f.GetAccount())
			accts = append(accts, a)
			if s.snap != nil && !s.reconciled {
				s.snap.Account = a
			}
		case f.GetPositions() != nil:
			s.onPositions(f.GetPositions())
		case f.GetTerminalCheck() != nil:
			v.onCheck(f.GetTerminalCheck())
		}
	}
	if top == 0 {
		return len(in), nil
	}
	if err := v.eng.OnVenueEvents(evs); err != nil {
		return 0, err
	}
	for _, cmd := range s.afterDurable {
		if err := s.send(command(cmd)); err != nil {
			v.log.Warn("re-send failed; the order will be resolved by query on reconnect", "client_order_id", cmd.GetClientOrderId(), "err", err)
		}
	}
	s.afterDurable = s.afterDurable[:0]
	v.trimTickets()
	// Durable: from here the frames count as processed, whatever happens next.
	for _, a := range accts {
		if err := v.eng.OnAccount(a); err != nil {
			return len(in), err
		}
	}
	return len(in), s.maybeReconciled(v.ctx)
}

// onCheck publishes the EA's self-check: a gauge per check, and one log line per problem when
// something fails (a warning), or a line saying all passed.
func (v *Venue) onCheck(c *bridgev1.TerminalCheck) {
	failed := map[string]bool{
		"dlls": !c.GetDllsAllowed(), "terminal_algo_trading": !c.GetTerminalTradeAllowed(), "ea_algo_trading": !c.GetEaTradeAllowed(),
		"account_trading": !c.GetAccountTradeAllowed(), "account_expert_trading": !c.GetAccountExpertAllowed(), "symbols": c.GetSymbolsFailed() > 0,
	}
	var bad []string
	for _, name := range TerminalChecks {
		g := 0.0
		if failed[name] {
			g = 1
			bad = append(bad, name)
		}
		v.checkFailed.WithLabelValues(name).Set(g)
	}
	v.checkTime.Set(float64(c.GetTimeMsc()) / 1000)
	v.mu.Lock()
	v.lastCheck = c
	v.mu.Unlock()
	if len(bad) == 0 {
		v.log.Info("MT5 terminal self-check passed", "symbols", c.GetSymbolsChecked(), "tester", c.GetTester())
		return
	}
	v.log.Warn("MT5 terminal self-check failed: orders will be refused until these settings change", "failed", bad,
		"symbols_failed", c.GetSymbolsFailed(), "symbols_checked", c.GetSymbolsChecked(), "problems", c.GetProblems())
}

// LastCheck returns the EA's latest self-check, nil before the first.
func (v *Venue) LastCheck() *bridgev1.TerminalCheck {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastCheck
}

// dec reads a wire decimal; a scale the engine cannot hold reads as zero, as a missing one does.
func dec(p *typesv1.Decimal) decimal.D {
	d, _ := decimal.FromProto(p)
	return d
}

func accountOf(a *bridgev1.AccountSnapshot) risk.Account {
	return risk.Account{Balance: dec(a.GetBalance()), Equity: dec(a.GetEquity()), Margin: dec(a.GetMargin()),
		FreeMargin: dec(a.GetMarginFree()), TimeUS: a.GetTimeMsc() * 1000, Valid: true}
}

func (s *session) onPositions(p *bridgev1.PositionSnapshot) {
	if s.snap == nil || s.reconciled {
		return
	}
	// Reconcile against one snapshot, the latest: frames of an older one are dropped, and a newer
	// one replaces whatever was collected (adding two snapshots' positions would adopt twice the
	// real position). Frames of one snapshot share its time_msc.
	t := p.GetTimeMsc()
	switch {
	case t < s.snapTime:
		return
	case t > s.snapTime || s.snapDone:
		s.snapTime, s.snapDone, s.snapOver = t, false, false
		s.snap.Positions, s.snap.Orders = nil, nil
	case s.snapOver:
		return
	}
	// A snapshot that never completes must not grow without bound: past MaxTracked entries it is
	// dropped whole (reconciling a truncated one would close what it left out), and the engine stays
	// unreconciled until a newer snapshot fits.
	if n := len(s.snap.Positions) + len(s.snap.Orders) + len(p.GetPositions()) + len(p.GetOrders()); n > s.v.cfg.MaxTracked {
		s.snapOver = true
		s.snap.Positions, s.snap.Orders = nil, nil
		s.v.evicted.WithLabelValues("snapshot", "capacity").Inc()
		s.v.log.Warn("mt5 venue: dropped a position snapshot past the bound; not reconciled until a snapshot within it arrives",
			"time_msc", t, "entries", n, "max", s.v.cfg.MaxTracked)
		return
	}
	for _, pos := range p.GetPositions() {
		net := dec(pos.GetVolume())
		if pos.GetSide() == bridgev1.Side_SIDE_SELL {
			net = net.Neg()
		}
		s.snap.Positions = append(s.snap.Positions, engine.VenuePosition{Symbol: pos.GetSymbol(), Net: net, AvgPrice: dec(pos.GetPriceOpen()),
			HasStops: true, StopLoss: dec(pos.GetStopLoss()), TakeProfit: dec(pos.GetTakeProfit())})
	}
	for _, o := range p.GetOrders() {
		s.snap.Orders = append(s.snap.Orders, engine.VenueOrder{ClientOrderID: o.GetClientOrderId(), VenueOrderID: strconv.FormatUint(o.GetTicket(), 10)})
		if o.GetClientOrderId() != "" {
			s.v.mu.Lock()
			s.v.setTicket(o.GetClientOrderId(), o.GetTicket())
			s.v.mu.Unlock()
		}
	}
	if p.GetComplete() {
		s.snapDone = true
	}
}

func retcodeText(rc int32, comment string) string {
	name := map[int32]string{10004: "REQUOTE", 10006: "REJECT", 10007: "CANCEL", 10013: "INVALID", 10014: "INVALID_VOLUME",
		10015: "INVALID_PRICE", 10016: "INVALID_STOPS", 10017: "TRADE_DISABLED", 10018: "MARKET_CLOSED", 10019: "NO_MONEY",
		10020: "PRICE_CHANGED", 10021: "PRICE_OFF", 10022: "INVALID_EXPIRATION", 10024: "TOO_MANY_REQUESTS", 10026: "SERVER_DISABLES_AT",
		10027: "CLIENT_DISABLES_AT", 10030: "INVALID_FILL", 10031: "CONNECTION"}[rc]
	s := "retcode " + strconv.Itoa(int(rc))
	if name != "" {
		s += " " + name
	}
	if comment != "" {
		s += ": " + comment
	}
	return s
}

func (s *session) onResult(r *bridgev1.OrderResult) []venue.Event {
	v := s.v
	v.mu.Lock()
	info := v.cmds[r.GetCommandId()]
	if info != nil {
		info.done = true
	}
	v.setTicket(r.GetClientOrderId(), r.GetOrderTicket())
	v.mu.Unlock()
	id := r.GetClientOrderId()
	if info != nil && id == "" {
		id = info.id
	}
	if r.GetCommandId() == s.snapCmd {
		return nil // the snapshot frames follow
	}
	if info == nil {
		v.log.Warn("result for an unknown command", "command_id", r.GetCommandId(), "client_order_id", id)
		return nil
	}
	switch info.kind {
	case venue.Modify:
		return modifyResult(r, id)
	case venue.Protect:
		return protectResult(r, info.symbol)
	}
	vid := ""
	if r.GetOrderTicket() != 0 {
		vid = strconv.FormatUint(r.GetOrderTicket(), 10)
	}
	fill := func() []venue.Event {
		if r.GetDealTicket() == 0 || dec(r.GetVolume()).Sign() <= 0 {
			return nil
		}
		return []venue.Event{{Kind: venue.Filled, ClientOrderID: id, VenueOrderID: vid, Fill: fsm.Fill{
			TradeID: strconv.FormatUint(r.GetDealTicket(), 10), Quantity: dec(r.GetVolume()), Price: dec(r.GetPrice()),
			TimeUS: r.GetCompletedTimeUs()}}}
	}
	switch r.GetStatus() {
	case bridgev1.BridgeStatus_BRIDGE_STATUS_INVALID, bridgev1.BridgeStatus_BRIDGE_STATUS_EXPIRED, bridgev1.BridgeStatus_BRIDGE_STATUS_TRADING_DISABLED:
		// Nothing was sent to the trade server: a definite answer.
		if info.kind == venue.Cancel {
			return []venue.Event{{Kind: venue.CancelRejected, ClientOrderID: id, Reason: r.GetStatus().String() + ": " + r.GetComment()}}
		}
		if info.kind == venue.Query {
			delete(s.queries, r.GetCommandId())
			return nil
		}
		return []venue.Event{{Kind: venue.Rejected, ClientOrderID: id, Reason: r.GetStatus().String() + ": " + r.GetComment()}}
	case bridgev1.BridgeStatus_BRIDGE_STATUS_QUERY_RESULT:
		delete(s.queries, r.GetCommandId())
		return s.onQueryResult(r, id, vid, fill)
	}
	rc := r.GetRetcode()
	switch info.kind {
	case venue.Cancel:
		if rc == RetDone || rc == RetCancel {
			return []venue.Event{{Kind: venue.Canceled, ClientOrderID: id, Reason: retcodeText(rc, r.GetComment())}}
		}
		if rc == RetTimeout || rc == RetDisconnected {
			return s.query(id, rc)
		}
		return []venue.Event{{Kind: venue.CancelRejected, ClientOrderID: id, Reason: retcodeText(rc, r.GetComment())}}
	case venue.Place:
		switch rc {
		case RetDone, RetDonePartial:
			return append([]venue.Event{{Kind: venue.Accepted, ClientOrderID: id, VenueOrderID: vid}}, fill()...)
		case RetPlaced:
			return []venue.Event{{Kind: venue.Accepted, ClientOrderID: id, VenueOrderID: vid}}
		case RetTimeout, RetDisconnected:
			return s.query(id, rc)
		case RetRequote, RetPriceChanged, RetPriceOff:
			if info.cmd.GetOrderType() == bridgev1.OrderType_ORDER_TYPE_MARKET && info.retries < v.cfg.MaxPriceRetries {
				// The trade server refused this price and executed nothing: re-send with a new id.
				v.mu.Lock()
				v.nextCmd++
				nc := proto.Clone(info.cmd).(*bridgev1.OrderCommand)
				nc.CommandId = v.nextCmd
				if v.cfg.CommandTTL > 0 {
					nc.DeadlineTimeUs = time.Now().Add(v.cfg.CommandTTL).UnixMicro()
				}
				v.cmds[nc.CommandId] = &cmdInfo{kind: venue.Place, id: id, retries: info.retries + 1, cmd: nc}
				v.trimCommandsLocked()
				v.mu.Unlock()
				v.log.Info("requote: re-sending the order with a fresh price", "client_order_id", id, "retcode", rc, "command_id", nc.CommandId)
				// Write-ahead as for the first send: journaled with this frame, sent once durable.
				s.afterDurable = append(s.afterDurable, nc)
				return []venue.Event{{Raw: nc, RawKey: id, RawIsRequest: true}}
			}
		}
		return []venue.Event{{Kind: venue.Rejected, ClientOrderID: id, Reason: retcodeText(rc, r.GetComment())}}
	}
	return nil
}

// RetNoChanges is TRADE_RETCODE_NO_CHANGES: the request asked for what is already set.
const RetNoChanges = 10025

// modifyResult maps OrderModify's answer: 10009 done (and 10025 no changes) → Updated; every
// other retcode, a bridge refusal (invalid, expired, trading disabled) and the ambiguous 10012 /
// -11 → UpdateRejected naming it (an ambiguous modification is not guessed applied: the order keeps
// the values the journal knows, and the operator sees the retcode).
func modifyResult(r *bridgev1.OrderResult, id string) []venue.Event {
	if r.GetStatus() != bridgev1.BridgeStatus_BRIDGE_STATUS_SENT && r.GetStatus() != bridgev1.BridgeStatus_BRIDGE_STATUS_DUPLICATE {
		return []venue.Event{{Kind: venue.UpdateRejected, ClientOrderID: id, Reason: r.GetStatus().String() + ": " + r.GetComment()}}
	}
	switch rc := r.GetRetcode(); rc {
	case RetDone, RetNoChanges:
		return []venue.Event{{Kind: venue.Updated, ClientOrderID: id, Reason: retcodeText(rc, r.GetComment())}}
	default:
		return []venue.Event{{Kind: venue.UpdateRejected, ClientOrderID: id, Reason: retcodeText(rc, r.GetComment())}}
	}
}

// protectResult maps PositionModify's answer: 10009 done and 10025 no changes keep the new
// protection; anything else restores the previous one (ProtectionRejected).
func protectResult(r *bridgev1.OrderResult, symbol string) []venue.Event {
	if r.GetStatus() != bridgev1.BridgeStatus_BRIDGE_STATUS_SENT && r.GetStatus() != bridgev1.BridgeStatus_BRIDGE_STATUS_DUPLICATE {
		return []venue.Event{{Kind: venue.ProtectionRejected, Symbol: symbol, Reason: r.GetStatus().String() + ": " + r.GetComment()}}
	}
	switch rc := r.GetRetcode(); rc {
	case RetDone, RetNoChanges:
		return nil
	default:
		return []venue.Event{{Kind: venue.ProtectionRejected, Symbol: symbol, Reason: retcodeText(rc, r.GetComment())}}
	}
}

// protectiveDeal maps a deal the trade server made on a stop loss, take profit or stop-out of a
// position with the EA's magic (client order id "sl:<position>", "tp:..." or "so:...") to a
// ProtectiveFill the engine books as an order of its own, named by the deal ticket.
func protectiveDeal(t *bridgev1.TradeTransaction) []venue.Event {
	id := t.GetClientOrderId()
	if t.GetType() != bridgev1.TransactionType_TRANSACTION_TYPE_DEAL_ADD || t.GetDealTicket() == 0 || dec(t.GetVolume()).Sign() <= 0 {
		return nil // the order transactions around the deal change nothing Kairos books
	}
	deal := strconv.FormatUint(t.GetDealTicket(), 10)
	vid := ""
	if t.GetOrderTicket() != 0 {
		vid = strconv.FormatUint(t.GetOrderTicket(), 10)
	}
	reason := map[string]string{"sl": "stop loss", "tp": "take profit", "so": "stop-out"}[id[:2]] + " at the broker, position " + id[3:]
	return []venue.Event{{Kind: venue.ProtectiveFill, ClientOrderID: id[:3] + deal, VenueOrderID: vid, Symbol: t.GetSymbol(), Side: fsm.Side(t.GetSide()),
		Reason: reason, Fill: fsm.Fill{TradeID: deal, Quantity: dec(t.GetVolume()), Price: dec(t.GetPrice()),
			Commission: dec(t.GetCommission()).Abs(), TimeUS: t.GetTimeMsc() * 1000}}}
}

// isProtective reports whether a transaction's client order id is the EA's name for a stop loss,
// take profit or stop-out deal.
func isProtective(id string) bool {
	return len(id) > 3 && (id[:3] == "sl:" || id[:3] == "tp:" || id[:3] == "so:")
}

// query resolves an ambiguous answer by asking the terminal; nothing changes until it answers.
func (s *session) query(id string, rc int32) []venue.Event {
	v := s.v
	if v.m != nil {
		v.m.Ambiguous.Inc()
	}
	v.mu.Lock()
	v.nextCmd++
	q := &bridgev1.OrderCommand{CommandId: v.nextCmd, ClientOrderId: id, Kind: bridgev1.CommandKind_COMMAND_KIND_QUERY_ORDER, OrderTicket: v.tickets[id]}
	v.cmds[q.CommandId] = &cmdInfo{kind: venue.Query, id: id, cmd: q}
	v.trimCommandsLocked()
	v.mu.Unlock()
	v.log.Warn("ambiguous result; querying the terminal", "client_order_id", id, "retcode", rc, "query_command_id", q.CommandId)
	_ = s.send(&bridgev1.Frame{Body: &bridgev1.Frame_OrderCommand{OrderCommand: q}})
	return nil
}

// onQueryResult applies a QUERY_ORDER answer (see docs/execution.md, "Bridge protocol"): retcode
// 10009 filled, 10010 partly filled, 10008 working, 10007 cancelled or expired, 0 with no ticket:
// the terminal has no such order, so the command never reached the trade server.
func (s *session) onQueryResult(r *bridgev1.OrderResult, id, vid string, fill func() []venue.Event) []venue.Event {
	switch r.GetRetcode() {
	case RetDone, RetDonePartial:
		return append([]venue.Event{{Kind: venue.Accepted, ClientOrderID: id, VenueOrderID: vid}}, fill()...)
	case RetPlaced:
		return []venue.Event{{Kind: venue.Accepted, ClientOrderID: id, VenueOrderID: vid}}
	case RetCancel:
		return append(fill(), venue.Event{Kind: venue.Canceled, ClientOrderID: id, Reason: "terminal reports the order cancelled"})
	case 0:
		if r.GetOrderTicket() == 0 {
			return []venue.Event{{Kind: venue.Rejected, ClientOrderID: id, Reason: "the terminal has no trace of the order (query after an ambiguous or lost result)"}}
		}
	}
	s.v.log.Warn("query result not understood; order left as is", "client_order_id", id, "retcode", r.GetRetcode())
	return nil
}

func (s *session) onTransaction(t *bridgev1.TradeTransaction) []venue.Event {
	id := t.GetClientOrderId()
	if isProtective(id) {
		return protectiveDeal(t)
	}
	v := s.v
	v.mu.Lock()
	if id == "" && t.GetOrderTicket() != 0 {
		id = v.byTicket[t.GetOrderTicket()]
	}
	v.setTicket(id, t.GetOrderTicket())
	v.mu.Unlock()
	if id == "" {
		return nil // not a Kairos order
	}
	vid := ""
	if t.GetOrderTicket() != 0 {
		vid = strconv.FormatUint(t.GetOrderTicket(), 10)
	}
	switch t.GetType() {
	case bridgev1.TransactionType_TRANSACTION_TYPE_DEAL_ADD:
		if t.GetDealTicket() == 0 {
			return nil
		}
		return []venue.Event{{Kind: venue.Filled, ClientOrderID: id, VenueOrderID: vid, Fill: fsm.Fill{
			TradeID: strconv.FormatUint(t.GetDealTicket(), 10), Quantity: dec(t.GetVolume()), Price: dec(t.GetPrice()),
			Commission: dec(t.GetCommission()).Abs(), TimeUS: t.GetTimeMsc() * 1000}}}
	case bridgev1.TransactionType_TRANSACTION_TYPE_ORDER_ADD:
		if t.GetMt5OrderState() == orderStatePlaced {
			return []venue.Event{{Kind: venue.Accepted, ClientOrderID: id, VenueOrderID: vid}}
		}
	case bridgev1.TransactionType_TRANSACTION_TYPE_ORDER_DELETE, bridgev1.TransactionType_TRANSACTION_TYPE_HISTORY_ADD:
		switch t.GetMt5OrderState() {
		case orderStateCanceled:
			return []venue.Event{{Kind: venue.Canceled, ClientOrderID: id, VenueOrderID: vid, Reason: "cancelled in the terminal"}}
		case orderStateExpired:
			return []venue.Event{{Kind: venue.Expired, ClientOrderID: id, VenueOrderID: vid}}
		case orderStateRejected:
			return []venue.Event{{Kind: venue.Rejected, ClientOrderID: id, VenueOrderID: vid, Reason: "rejected by the trade server"}}
		}
	}
	return nil
}
