// Package mt5 is the MetaTrader 5 venue: a TCP listener for the bridge DLL's TRADING channel
// (varint-delimited kairos.bridge.v1.Frame, Hello/Welcome, sequences, cumulative acks, heartbeats).
// Orders go down as OrderCommand frames carrying the client order id; OrderResult, TradeTransaction,
// AccountSnapshot and PositionSnapshot frames come up and become engine events, journaled before
// they are acknowledged so that a bridge resend after a crash is recognised and dropped. Ambiguous
// results (retcode 10012 timeout, -11 disconnected) are resolved with QUERY_ORDER, never guessed.
// On every (re)connection the venue queries in-flight orders and asks for a snapshot, and the
// engine trades again only once that reconciliation converges.
package mt5

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/engine"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// APIVersion is the bridge C ABI version this server speaks.
const APIVersion = 1

// MaxFrameSize bounds one frame; a larger one closes the connection.
const MaxFrameSize = 1 << 20

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
}

type cmdInfo struct {
	kind    venue.CommandKind
	id      string
	retries int
	cmd     *bridgev1.OrderCommand
}

// Venue is the MT5 venue.
type Venue struct {
	cfg Config
	log *slog.Logger
	m   *metrics.Metrics
	eng Engine
	ln  net.Listener
	wg  sync.WaitGroup

	mu        sync.Mutex
	cur       *conn
	nextCmd   uint64
	processed map[uint64]uint64
	tickets   map[string]uint64 // client order id → MT5 order ticket
	byTicket  map[uint64]string // and back, for transactions the EA could not map
	cmds      map[uint64]*cmdInfo
	digits    func(symbol string) uint8
	connects  int
	closed    bool
}

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
	// Command ids start at the current time in microseconds, so they keep increasing across restarts
	// even for commands that are never journaled (queries, snapshots): the bridge ignores a command
	// id it has already carried out, so an id must never be reused.
	return &Venue{cfg: cfg, log: log, m: m, processed: make(map[uint64]uint64), tickets: make(map[string]uint64),
		byTicket: make(map[uint64]string), cmds: make(map[uint64]*cmdInfo), digits: digits, nextCmd: uint64(time.Now().UnixMicro())}
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
		v.cmds[c.GetCommandId()] = &cmdInfo{kind: kindOf(c.GetKind()), id: c.GetClientOrderId(), cmd: c}
		v.mu.Unlock()
	}
}

// ReplayResponse implements venue.Replayer: the last processed sequence per bridge session, and
// the order tickets already known.
func (v *Venue) ReplayResponse(key string, msg proto.Message) {
	f, ok := msg.(*bridgev1.Frame)
	if !ok {
		return
	}
	sess, err := parseKey(key)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err == nil && f.GetSequence() > v.processed[sess] {
		v.processed[sess] = f.GetSequence()
	}
	if r := f.GetOrderResult(); r != nil && r.GetOrderTicket() != 0 && r.GetClientOrderId() != "" {
		v.setTicket(r.GetClientOrderId(), r.GetOrderTicket())
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
	v.tickets[id] = ticket
	v.byTicket[ticket] = id
}

func sessionKey(s uint64) string { return "bridge:" + strconv.FormatUint(s, 10) }

func parseKey(k string) (uint64, error) {
	if len(k) < 8 || k[:7] != "bridge:" {
		return 0, fmt.Errorf("not a bridge key: %q", k)
	}
	return strconv.ParseUint(k[7:], 10, 64)
}

func kindOf(k bridgev1.CommandKind) venue.CommandKind {
	switch k {
	case bridgev1.CommandKind_COMMAND_KIND_PLACE:
		return venue.Place
	case bridgev1.CommandKind_COMMAND_KIND_CANCEL:
		return venue.Cancel
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
	return venue.Command{Kind: kind, ID: c.CommandId, ClientOrderID: o.ClientOrderID, Payload: c}
}

// ErrNotConnected is returned by Send while no bridge is connected.
var ErrNotConnected = errors.New("mt5 bridge not connected")

// Send implements venue.Venue: it queues the command on the live connection.
func (v *Venue) Send(cmd venue.Command, o *fsm.Order) ([]venue.Event, error) {
	c := cmd.Payload.(*bridgev1.OrderCommand)
	if cmd.Kind == venue.Cancel && c.GetOrderTicket() == 0 {
		return []venue.Event{{Kind: venue.CancelRejected, ClientOrderID: o.ClientOrderID, Reason: "the terminal has not acknowledged the order yet; cancel again once it is ACCEPTED"}}, nil
	}
	v.mu.Lock()
	cur := v.cur
	v.mu.Unlock()
	if cur == nil {
		return nil, ErrNotConnected
	}
	return nil, cur.send(&bridgev1.Frame{Body: &bridgev1.Frame_OrderCommand{OrderCommand: c}})
}

// Listen binds the bridge listener.
func (v *Venue) Listen() error {
	ln, err := net.Listen("tcp", v.cfg.Addr)
	if err != nil {
		return fmt.Errorf("mt5: listen %s: %w", v.cfg.Addr, err)
	}
	v.ln = ln
	return nil
}

// Addr returns the bound address.
func (v *Venue) Addr() string { return v.ln.Addr().String() }

// Serve accepts bridge connections until ctx ends or Close.
func (v *Venue) Serve(ctx context.Context) error {
	for {
		nc, err := v.ln.Accept()
		if err != nil {
			v.mu.Lock()
			closed := v.closed
			v.mu.Unlock()
			if closed || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("mt5: accept: %w", err)
		}
		c := newConn(v, nc)
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			c.run(ctx)
		}()
	}
}

// Close stops the listener and every connection and waits for them.
func (v *Venue) Close() error {
	v.mu.Lock()
	v.closed = true
	cur := v.cur
	v.mu.Unlock()
	var err error
	if v.ln != nil {
		err = v.ln.Close()
	}
	if cur != nil {
		cur.close("shutting down")
	}
	v.wg.Wait()
	return err
}

// conn is one bridge connection.
type conn struct {
	v       *Venue
	nc      net.Conn
	out     chan *bridgev1.Frame
	done    chan struct{}
	once    sync.Once
	session uint64
	key     string

	mu       sync.Mutex
	seq      uint64
	lastEcho int64

	// reconciliation state, owned by the reader goroutine
	queries    map[uint64]bool
	snapCmd    uint64
	snap       *engine.Snapshot
	snapDone   bool
	reconciled bool
	reconnect  bool
	// afterDurable holds commands to send once the current frame's journal entries are durable.
	afterDurable []*bridgev1.OrderCommand
}

func newConn(v *Venue, nc net.Conn) *conn {
	return &conn{v: v, nc: nc, out: make(chan *bridgev1.Frame, 4096), done: make(chan struct{}), queries: map[uint64]bool{}}
}

func (c *conn) close(reason string) {
	c.once.Do(func() {
		c.v.log.Info("bridge connection closed", "remote", c.nc.RemoteAddr().String(), "session", c.session, "reason", reason)
		close(c.done)
		_ = c.nc.Close()
	})
}

// send queues a frame; it fails when the connection is gone or its queue is full.
func (c *conn) send(f *bridgev1.Frame) error {
	select {
	case <-c.done:
		return ErrNotConnected
	default:
	}
	select {
	case c.out <- f:
		return nil
	default:
		return errors.New("mt5 bridge send queue full")
	}
}

func (c *conn) ack() uint64 {
	c.v.mu.Lock()
	defer c.v.mu.Unlock()
	return c.v.processed[c.session]
}

func (c *conn) write(w *bufio.Writer, f *bridgev1.Frame) error {
	if f.GetHeartbeat() == nil || f.Sequence != 0 {
		c.mu.Lock()
		c.seq++
		f.Sequence = c.seq
		c.mu.Unlock()
	}
	f.Ack = c.ack()
	f.SentTimeUs = time.Now().UnixMicro()
	if _, err := protodelim.MarshalTo(w, f); err != nil {
		return err
	}
	if c.v.m != nil {
		c.v.m.BridgeFrames.WithLabelValues("out", bodyName(f)).Inc()
	}
	return nil
}

func (c *conn) writer() {
	w := bufio.NewWriter(c.nc)
	hb := time.NewTicker(c.v.cfg.HeartbeatInterval)
	defer hb.Stop()
	for {
		var f *bridgev1.Frame
		select {
		case <-c.done:
			return
		case <-hb.C:
			c.mu.Lock()
			echo := c.lastEcho
			c.mu.Unlock()
			f = &bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{TimeUs: time.Now().UnixMicro(), EchoTimeUs: echo}}}
		case f = <-c.out:
		}
		if err := c.write(w, f); err != nil {
			c.close("write: " + err.Error())
			return
		}
		// Coalesce whatever else is queued into the same flush.
		for more := true; more; {
			select {
			case f = <-c.out:
				if err := c.write(w, f); err != nil {
					c.close("write: " + err.Error())
					return
				}
			default:
				more = false
			}
		}
		if err := w.Flush(); err != nil {
			c.close("write: " + err.Error())
			return
		}
	}
}

func (c *conn) fail(code bridgev1.ErrorCode, reason string, seq uint64) {
	if c.v.m != nil {
		c.v.m.BridgeMalformed.WithLabelValues(code.String()).Inc()
	}
	c.v.log.Warn("bridge connection refused", "remote", c.nc.RemoteAddr().String(), "code", code.String(), "reason", reason)
	w := bufio.NewWriter(c.nc)
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.write(w, &bridgev1.Frame{Body: &bridgev1.Frame_Error{Error: &bridgev1.Error{Code: code, Message: reason, FrameSequence: seq}}})
	_ = w.Flush()
	c.close(reason)
}

type byteReader struct {
	*bufio.Reader
}

func (c *conn) run(ctx context.Context) {
	defer c.close("done")
	r := bufio.NewReaderSize(c.nc, 64<<10)
	dead := 3 * c.v.cfg.HeartbeatInterval
	read := func() (*bridgev1.Frame, error) {
		_ = c.nc.SetReadDeadline(time.Now().Add(dead))
		f := &bridgev1.Frame{}
		err := (protodelim.UnmarshalOptions{MaxSize: MaxFrameSize}).UnmarshalFrom(byteReader{r}, f)
		return f, err
	}
	f, err := read()
	if err != nil {
		c.fail(bridgev1.ErrorCode_ERROR_CODE_MALFORMED_FRAME, "reading Hello: "+err.Error(), 0)
		return
	}
	h := f.GetHello()
	switch {
	case h == nil:
		c.fail(bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, "the first frame must be Hello", f.GetSequence())
		return
	case h.GetChannel() != bridgev1.Channel_CHANNEL_TRADING:
		c.fail(bridgev1.ErrorCode_ERROR_CODE_PROTOCOL_VIOLATION, fmt.Sprintf("this is the TRADING listener, Hello names %v", h.GetChannel()), f.GetSequence())
		return
	case h.GetApiVersion() != APIVersion:
		c.fail(bridgev1.ErrorCode_ERROR_CODE_UNSUPPORTED_VERSION, fmt.Sprintf("api_version %d not supported (want %d)", h.GetApiVersion(), APIVersion), f.GetSequence())
		return
	}
	c.session, c.key = h.GetSessionId(), sessionKey(h.GetSessionId())
	v := c.v
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	old := v.cur
	v.cur = c
	v.connects++
	c.reconnect = v.connects > 1
	resume := v.processed[c.session]
	v.mu.Unlock()
	if old != nil {
		old.close("replaced by a new bridge connection")
	}
	if v.m != nil {
		v.m.BridgeConnected.Set(1)
	}
	v.log.Info("bridge connected", "remote", c.nc.RemoteAddr().String(), "session", c.session, "resume_after", resume,
		"bridge_version", h.GetBridgeVersion(), "account", h.GetAccountLogin(), "server", h.GetServer(), "trade_mode", h.GetTradeMode().String())
	defer func() {
		v.mu.Lock()
		if v.cur == c {
			v.cur = nil
			if v.m != nil {
				v.m.BridgeConnected.Set(0)
			}
			v.mu.Unlock()
			v.eng.Unreconcile("bridge connection lost")
			return
		}
		v.mu.Unlock()
	}()
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		c.writer()
	}()
	_ = c.send(&bridgev1.Frame{Body: &bridgev1.Frame_Welcome{Welcome: &bridgev1.Welcome{
		ServerVersion: v.cfg.ServerVersion, ResumeAfter: resume, HeartbeatIntervalMs: uint32(v.cfg.HeartbeatInterval.Milliseconds())}}})
	c.startReconcile()
	for {
		f, err := read()
		if err != nil {
			select {
			case <-c.done:
				return
			default:
			}
			reason := "read: " + err.Error()
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				reason = "no frame for three heartbeat intervals"
				if v.m != nil {
					v.m.BridgeMalformed.WithLabelValues("heartbeat_timeout").Inc()
				}
			case errors.Is(err, io.EOF):
				reason = "bridge closed the connection"
			default:
				if v.m != nil {
					v.m.BridgeMalformed.WithLabelValues("malformed_frame").Inc()
				}
			}
			c.close(reason)
			return
		}
		// Frames already buffered are handled together: one journal flush for the batch.
		batch := []*bridgev1.Frame{f}
		for len(batch) < 256 && r.Buffered() > 0 {
			g, err := read()
			if err != nil {
				break // the next read reports it
			}
			batch = append(batch, g)
		}
		if v.m != nil {
			for _, g := range batch {
				v.m.BridgeFrames.WithLabelValues("in", bodyName(g)).Inc()
			}
		}
		if err := c.handle(ctx, batch); err != nil {
			c.close("handling frames: " + err.Error())
			return
		}
	}
}

func bodyName(f *bridgev1.Frame) string {
	switch f.GetBody().(type) {
	case *bridgev1.Frame_Hello:
		return "hello"
	case *bridgev1.Frame_Welcome:
		return "welcome"
	case *bridgev1.Frame_Heartbeat:
		return "heartbeat"
	case *bridgev1.Frame_OrderCommand:
		return "order_command"
	case *bridgev1.Frame_OrderResult:
		return "order_result"
	case *bridgev1.Frame_TradeTransaction:
		return "trade_transaction"
	case *bridgev1.Frame_Account:
		return "account"
	case *bridgev1.Frame_Positions:
		return "positions"
	case *bridgev1.Frame_Error:
		return "error"
	}
	return "other"
}

// startReconcile queries every in-flight order and then asks for a snapshot; the EA carries
// commands out in order, so the snapshot reflects the answers.
func (c *conn) startReconcile() {
	for _, o := range c.v.eng.OpenOrders() {
		if o.Status != fsm.Submitted && o.Status != fsm.PendingCancel && o.Status != fsm.Accepted && o.Status != fsm.PartiallyFilled {
			continue
		}
		cmd := c.v.Request(venue.Query, &o)
		c.queries[cmd.ID] = true
		_ = c.send(&bridgev1.Frame{Body: &bridgev1.Frame_OrderCommand{OrderCommand: cmd.Payload.(*bridgev1.OrderCommand)}})
	}
	c.v.mu.Lock()
	c.v.nextCmd++
	c.snapCmd = c.v.nextCmd
	c.v.mu.Unlock()
	c.snap = &engine.Snapshot{}
	_ = c.send(&bridgev1.Frame{Body: &bridgev1.Frame_OrderCommand{OrderCommand: &bridgev1.OrderCommand{CommandId: c.snapCmd, Kind: bridgev1.CommandKind_COMMAND_KIND_SNAPSHOT}}})
}

func (c *conn) maybeReconciled(ctx context.Context) error {
	if c.reconciled || !c.snapDone || len(c.queries) > 0 {
		return nil
	}
	c.reconciled = true
	if err := c.v.eng.Reconcile(ctx, c.snap); err != nil {
		return err
	}
	if c.reconnect && c.v.cfg.CancelOnDisconnect {
		ids, err := c.v.eng.CancelAll(ctx, "")
		c.v.log.Warn("cancel-on-disconnect: cancelled working orders after the link came back", "orders", len(ids), "err", err)
	}
	return nil
}

// handle processes frames in order: events are journaled in one durable flush before the frames
// are acknowledged, so a resend after a crash finds them processed.
func (c *conn) handle(ctx context.Context, frames []*bridgev1.Frame) error {
	v := c.v
	var (
		evs   []venue.Event
		accts []risk.Account
		top   uint64
	)
	last := c.ack()
	for _, f := range frames {
		if hb := f.GetHeartbeat(); hb != nil {
			c.mu.Lock()
			c.lastEcho = hb.GetTimeUs()
			c.mu.Unlock()
			if hb.GetEchoTimeUs() > 0 && v.m != nil {
				v.m.BridgeRTT.Observe(float64(time.Now().UnixMicro()-hb.GetEchoTimeUs()) / 1e6)
			}
		}
		if e := f.GetError(); e != nil {
			v.log.Warn("bridge reported an error", "code", e.GetCode().String(), "message", e.GetMessage(), "frame", e.GetFrameSequence())
		}
		if f.GetSequence() == 0 {
			continue
		}
		if f.GetSequence() <= last {
			if v.m != nil {
				v.m.BridgeDuplicates.Inc()
			}
			continue
		}
		last, top = f.GetSequence(), f.GetSequence()
		evs = append(evs, venue.Event{Raw: f, RawKey: c.key})
		switch {
		case f.GetOrderResult() != nil:
			evs = append(evs, c.onResult(f.GetOrderResult())...)
		case f.GetTradeTransaction() != nil:
			evs = append(evs, c.onTransaction(f.GetTradeTransaction())...)
		case f.GetAccount() != nil:
			a := accountOf(f.GetAccount())
			accts = append(accts, a)
			if c.snap != nil && !c.reconciled {
				c.snap.Account = a
			}
		case f.GetPositions() != nil:
			c.onPositions(f.GetPositions())
		}
	}
	if top == 0 {
		return nil
	}
	if err := v.eng.OnVenueEvents(evs); err != nil {
		return err
	}
	for _, cmd := range c.afterDurable {
		if err := c.send(&bridgev1.Frame{Body: &bridgev1.Frame_OrderCommand{OrderCommand: cmd}}); err != nil {
			v.log.Warn("re-send failed; the order will be resolved by query on reconnect", "client_order_id", cmd.GetClientOrderId(), "err", err)
		}
	}
	c.afterDurable = c.afterDurable[:0]
	// Durable: now the frames may be acknowledged.
	v.mu.Lock()
	if top > v.processed[c.session] {
		v.processed[c.session] = top
	}
	v.mu.Unlock()
	_ = c.send(&bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{TimeUs: time.Now().UnixMicro()}}})
	for _, a := range accts {
		if err := v.eng.OnAccount(a); err != nil {
			return err
		}
	}
	return c.maybeReconciled(ctx)
}

func dec(p interface {
	GetUnits() int64
	GetScale() uint32
}) decimal.D {
	if p == nil || p.GetScale() > decimal.MaxScale {
		return decimal.Zero
	}
	return decimal.New(p.GetUnits(), uint8(p.GetScale()))
}

func accountOf(a *bridgev1.AccountSnapshot) risk.Account {
	return risk.Account{Balance: dec(a.GetBalance()), Equity: dec(a.GetEquity()), Margin: dec(a.GetMargin()),
		FreeMargin: dec(a.GetMarginFree()), TimeUS: a.GetTimeMsc() * 1000, Valid: true}
}

func (c *conn) onPositions(p *bridgev1.PositionSnapshot) {
	if c.snap == nil || c.reconciled {
		return
	}
	for _, pos := range p.GetPositions() {
		net := dec(pos.GetVolume())
		if pos.GetSide() == bridgev1.Side_SIDE_SELL {
			net = net.Neg()
		}
		c.snap.Positions = append(c.snap.Positions, engine.VenuePosition{Symbol: pos.GetSymbol(), Net: net, AvgPrice: dec(pos.GetPriceOpen())})
	}
	for _, o := range p.GetOrders() {
		c.snap.Orders = append(c.snap.Orders, engine.VenueOrder{ClientOrderID: o.GetClientOrderId(), VenueOrderID: strconv.FormatUint(o.GetTicket(), 10)})
		if o.GetClientOrderId() != "" {
			c.v.mu.Lock()
			c.v.setTicket(o.GetClientOrderId(), o.GetTicket())
			c.v.mu.Unlock()
		}
	}
	if p.GetComplete() {
		c.snapDone = true
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

func (c *conn) onResult(r *bridgev1.OrderResult) []venue.Event {
	v := c.v
	v.mu.Lock()
	info := v.cmds[r.GetCommandId()]
	v.setTicket(r.GetClientOrderId(), r.GetOrderTicket())
	v.mu.Unlock()
	id := r.GetClientOrderId()
	if info != nil && id == "" {
		id = info.id
	}
	if r.GetCommandId() == c.snapCmd {
		return nil // the snapshot frames follow
	}
	if info == nil {
		v.log.Warn("result for an unknown command", "command_id", r.GetCommandId(), "client_order_id", id)
		return nil
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
			delete(c.queries, r.GetCommandId())
			return nil
		}
		return []venue.Event{{Kind: venue.Rejected, ClientOrderID: id, Reason: r.GetStatus().String() + ": " + r.GetComment()}}
	case bridgev1.BridgeStatus_BRIDGE_STATUS_QUERY_RESULT:
		delete(c.queries, r.GetCommandId())
		return c.onQueryResult(r, id, vid, fill)
	}
	rc := r.GetRetcode()
	switch info.kind {
	case venue.Cancel:
		if rc == RetDone || rc == RetCancel {
			return []venue.Event{{Kind: venue.Canceled, ClientOrderID: id, Reason: retcodeText(rc, r.GetComment())}}
		}
		if rc == RetTimeout || rc == RetDisconnected {
			return c.query(id, rc)
		}
		return []venue.Event{{Kind: venue.CancelRejected, ClientOrderID: id, Reason: retcodeText(rc, r.GetComment())}}
	case venue.Place:
		switch rc {
		case RetDone, RetDonePartial:
			return append([]venue.Event{{Kind: venue.Accepted, ClientOrderID: id, VenueOrderID: vid}}, fill()...)
		case RetPlaced:
			return []venue.Event{{Kind: venue.Accepted, ClientOrderID: id, VenueOrderID: vid}}
		case RetTimeout, RetDisconnected:
			return c.query(id, rc)
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
				v.mu.Unlock()
				v.log.Info("requote: re-sending the order with a fresh price", "client_order_id", id, "retcode", rc, "command_id", nc.CommandId)
				// Write-ahead as for the first send: journaled with this frame, sent once durable.
				c.afterDurable = append(c.afterDurable, nc)
				return []venue.Event{{Raw: nc, RawKey: id, RawIsRequest: true}}
			}
		}
		return []venue.Event{{Kind: venue.Rejected, ClientOrderID: id, Reason: retcodeText(rc, r.GetComment())}}
	}
	return nil
}

// query resolves an ambiguous answer by asking the terminal; nothing changes until it answers.
func (c *conn) query(id string, rc int32) []venue.Event {
	v := c.v
	if v.m != nil {
		v.m.Ambiguous.Inc()
	}
	v.mu.Lock()
	v.nextCmd++
	q := &bridgev1.OrderCommand{CommandId: v.nextCmd, ClientOrderId: id, Kind: bridgev1.CommandKind_COMMAND_KIND_QUERY_ORDER, OrderTicket: v.tickets[id]}
	v.cmds[q.CommandId] = &cmdInfo{kind: venue.Query, id: id, cmd: q}
	v.mu.Unlock()
	v.log.Warn("ambiguous result; querying the terminal", "client_order_id", id, "retcode", rc, "query_command_id", q.CommandId)
	_ = c.send(&bridgev1.Frame{Body: &bridgev1.Frame_OrderCommand{OrderCommand: q}})
	return nil
}

// onQueryResult applies a QUERY_ORDER answer (see docs/execution.md, "Bridge protocol"): retcode
// 10009 filled, 10010 partly filled, 10008 working, 10007 cancelled or expired, 0 with no ticket:
// the terminal has no such order, so the command never reached the trade server.
func (c *conn) onQueryResult(r *bridgev1.OrderResult, id, vid string, fill func() []venue.Event) []venue.Event {
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
	c.v.log.Warn("query result not understood; order left as is", "client_order_id", id, "retcode", r.GetRetcode())
	return nil
}

func (c *conn) onTransaction(t *bridgev1.TradeTransaction) []venue.Event {
	id := t.GetClientOrderId()
	v := c.v
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
