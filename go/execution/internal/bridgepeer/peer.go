// Package bridgepeer is a Go stand-in for the MT5 bridge DLL on the TRADING channel, used by the
// execution tests: it speaks the wire protocol as the bridge does (Hello first, sequences from 1,
// cumulative acks, heartbeats, resend of unacknowledged frames above Welcome.resume_after, command
// ids carried out once) in front of a small simulated terminal that fills market orders at a price,
// places limit orders, cancels, answers QUERY_ORDER and SNAPSHOT. Tests script failures (ambiguous
// retcodes, lost results) through hooks. It is test code, never the product.
package bridgepeer

import (
	"bufio"
	"crypto/hmac"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	bridgev1 "github.com/kairos-mt5/kairos/gen/go/kairos/bridge/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/bridgelink"
)

// Order is one order in the simulated terminal.
type Order struct {
	ClientOrderID string
	Ticket        uint64
	Deal          uint64
	Symbol        string
	Side          bridgev1.Side
	Type          bridgev1.OrderType
	Volume        *typesv1.Decimal
	Price         *typesv1.Decimal
	Filled        bool
	Canceled      bool
	StopLoss      *typesv1.Decimal
	TakeProfit    *typesv1.Decimal
	Closed        bool // a filled order whose position a stop closed
}

// Terminal is the simulated MT5 terminal; it outlives connections, like the real one.
type Terminal struct {
	mu     sync.Mutex
	Price  *typesv1.Decimal // fill price of market orders
	orders map[string]*Order
	done   map[uint64]*bridgev1.OrderResult // results by command id (the bridge's dedup)
	placed map[string]int                   // PLACE commands actually executed, by client order id
	cmdIDs map[string]map[uint64]bool       // distinct PLACE command ids received, by client order id
	nextTk uint64
	Equity *typesv1.Decimal
	// Before, if set, sees a command before the terminal carries it out; returning a result
	// short-circuits it (the terminal did nothing, e.g. -11 before the request left).
	Before func(cmd *bridgev1.OrderCommand) *bridgev1.OrderResult
	// After, if set, may replace the result of an executed command (nil keeps the terminal's) or
	// drop it (the terminal executed but reported nothing, as when the link dies mid-request).
	After func(cmd *bridgev1.OrderCommand, res *bridgev1.OrderResult) (out *bridgev1.OrderResult, drop bool)
}

// NewTerminal returns a terminal filling market orders at price.
func NewTerminal(price *typesv1.Decimal) *Terminal {
	return &Terminal{Price: price, orders: map[string]*Order{}, done: map[uint64]*bridgev1.OrderResult{}, placed: map[string]int{}, cmdIDs: map[string]map[uint64]bool{}, nextTk: 1000,
		Equity: &typesv1.Decimal{Units: 10000000, Scale: 2}}
}

// Placed returns how many times each client order id was placed (executed PLACE commands).
func (t *Terminal) Placed() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.placed))
	for k, v := range t.placed {
		out[k] = v
	}
	return out
}

// PlaceCommands returns, by client order id, how many distinct PLACE commands (command ids) the
// terminal received: more than one means the order was sent twice, deduplicated or not.
func (t *Terminal) PlaceCommands() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.cmdIDs))
	for k, v := range t.cmdIDs {
		out[k] = len(v)
	}
	return out
}

// Order returns a copy of the order with that client id.
func (t *Terminal) Order(id string) (Order, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, ok := t.orders[id]
	if !ok {
		return Order{}, false
	}
	return *o, true
}

// execute carries a command out and returns the frames to send (result and transactions).
func (t *Terminal) execute(c *bridgev1.OrderCommand) []*bridgev1.Frame {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.GetKind() == bridgev1.CommandKind_COMMAND_KIND_PLACE {
		ids := t.cmdIDs[c.GetClientOrderId()]
		if ids == nil {
			ids = map[uint64]bool{}
			t.cmdIDs[c.GetClientOrderId()] = ids
		}
		ids[c.GetCommandId()] = true
	}
	if prev, ok := t.done[c.GetCommandId()]; ok && c.GetKind() != bridgev1.CommandKind_COMMAND_KIND_SNAPSHOT {
		dup := proto.Clone(prev).(*bridgev1.OrderResult)
		dup.Status = bridgev1.BridgeStatus_BRIDGE_STATUS_DUPLICATE
		return []*bridgev1.Frame{{Body: &bridgev1.Frame_OrderResult{OrderResult: dup}}}
	}
	now := time.Now().UnixMicro()
	if t.Before != nil {
		if r := t.Before(c); r != nil {
			t.done[c.GetCommandId()] = r
			return []*bridgev1.Frame{{Body: &bridgev1.Frame_OrderResult{OrderResult: r}}}
		}
	}
	res := &bridgev1.OrderResult{CommandId: c.GetCommandId(), ClientOrderId: c.GetClientOrderId(), Status: bridgev1.BridgeStatus_BRIDGE_STATUS_SENT,
		ReceivedTimeUs: now, CompletedTimeUs: now}
	var extra []*bridgev1.Frame
	switch c.GetKind() {
	case bridgev1.CommandKind_COMMAND_KIND_PLACE:
		t.placed[c.GetClientOrderId()]++
		t.nextTk++
		o := &Order{ClientOrderID: c.GetClientOrderId(), Ticket: t.nextTk, Symbol: c.GetSymbol(), Side: c.GetSide(), Type: c.GetOrderType(), Volume: c.GetVolume(), Price: c.GetPrice(),
			StopLoss: c.GetStopLoss(), TakeProfit: c.GetTakeProfit()}
		t.orders[o.ClientOrderID] = o
		res.OrderTicket = o.Ticket
		if c.GetOrderType() == bridgev1.OrderType_ORDER_TYPE_MARKET {
			t.nextTk++
			o.Deal, o.Filled, o.Price = t.nextTk, true, t.Price
			res.Retcode, res.DealTicket, res.Volume, res.Price = 10009, o.Deal, o.Volume, o.Price
			extra = append(extra, &bridgev1.Frame{Body: &bridgev1.Frame_TradeTransaction{TradeTransaction: &bridgev1.TradeTransaction{
				Type: bridgev1.TransactionType_TRANSACTION_TYPE_DEAL_ADD, ClientOrderId: o.ClientOrderID, OrderTicket: o.Ticket, DealTicket: o.Deal,
				Symbol: o.Symbol, Side: o.Side, Price: o.Price, Volume: o.Volume, TimeMsc: now / 1000,
				// MT5 books the commission on the deal; the order result does not carry it.
				Commission: &typesv1.Decimal{Units: -350, Scale: 2}}}})
		} else {
			res.Retcode = 10008
		}
	case bridgev1.CommandKind_COMMAND_KIND_CANCEL:
		var o *Order
		for _, x := range t.orders {
			if x.Ticket == c.GetOrderTicket() {
				o = x
			}
		}
		switch {
		case o == nil || o.Filled:
			res.Retcode, res.Comment = 10013, "invalid request"
		default:
			o.Canceled = true
			res.Retcode, res.OrderTicket = 10009, o.Ticket
		}
	case bridgev1.CommandKind_COMMAND_KIND_MODIFY:
		// CTrade.OrderModify: a working order's price, stop loss and take profit.
		var o *Order
		for _, x := range t.orders {
			if x.Ticket == c.GetOrderTicket() {
				o = x
			}
		}
		switch {
		case o == nil || o.Filled || o.Canceled:
			res.Retcode, res.Comment = 10013, "invalid request"
		default:
			o.Price, o.StopLoss, o.TakeProfit = c.GetPrice(), c.GetStopLoss(), c.GetTakeProfit()
			res.Retcode, res.OrderTicket = 10009, o.Ticket
		}
	case bridgev1.CommandKind_COMMAND_KIND_MODIFY_POSITION:
		// CTrade.PositionModify on every open position of the symbol.
		n := 0
		for _, x := range t.orders {
			if x.Filled && !x.Closed && x.Symbol == c.GetSymbol() {
				x.StopLoss, x.TakeProfit = c.GetStopLoss(), c.GetTakeProfit()
				n++
			}
		}
		res.Retcode = 10009
		if n == 0 {
			res.Retcode, res.Comment = 0, "no position"
		}
	case bridgev1.CommandKind_COMMAND_KIND_QUERY_ORDER:
		res.Status = bridgev1.BridgeStatus_BRIDGE_STATUS_QUERY_RESULT
		o, ok := t.orders[c.GetClientOrderId()]
		switch {
		case !ok:
			res.Retcode = 0
		case o.Filled:
			res.Retcode, res.OrderTicket, res.DealTicket, res.Volume, res.Price = 10009, o.Ticket, o.Deal, o.Volume, o.Price
		case o.Canceled:
			res.Retcode, res.OrderTicket = 10007, o.Ticket
		default:
			res.Retcode, res.OrderTicket = 10008, o.Ticket
		}
	case bridgev1.CommandKind_COMMAND_KIND_SNAPSHOT:
		acct := &bridgev1.AccountSnapshot{Currency: "USD", Balance: t.Equity, Equity: t.Equity, Margin: &typesv1.Decimal{}, MarginFree: t.Equity,
			Leverage: 100, TradeAllowed: true, TimeMsc: now / 1000}
		ps := &bridgev1.PositionSnapshot{Complete: true, TimeMsc: now / 1000}
		net := map[string]int64{}    // volume in hundredths of a lot
		stops := map[string]*Order{} // the stops of the symbol's position: its newest filled order's
		for _, o := range t.orders {
			switch {
			case o.Filled && o.Closed:
			case o.Filled:
				if s := stops[o.Symbol]; s == nil || s.Ticket < o.Ticket {
					stops[o.Symbol] = o
				}
				v := o.Volume.GetUnits() * pow10(2-int(o.Volume.GetScale()))
				if o.Side == bridgev1.Side_SIDE_SELL {
					v = -v
				}
				net[o.Symbol] += v
			case !o.Canceled:
				ps.Orders = append(ps.Orders, &bridgev1.WorkingOrder{Ticket: o.Ticket, Symbol: o.Symbol, Side: o.Side, OrderType: o.Type, Volume: o.Volume, Price: o.Price, ClientOrderId: o.ClientOrderID})
			}
		}
		for sym, v := range net {
			if v == 0 {
				continue
			}
			side := bridgev1.Side_SIDE_BUY
			if v < 0 {
				side, v = bridgev1.Side_SIDE_SELL, -v
			}
			ps.Positions = append(ps.Positions, &bridgev1.Position{Symbol: sym, Side: side, Volume: &typesv1.Decimal{Units: v, Scale: 2}, PriceOpen: t.Price,
				StopLoss: stops[sym].StopLoss, TakeProfit: stops[sym].TakeProfit})
		}
		t.done[c.GetCommandId()] = res
		return []*bridgev1.Frame{{Body: &bridgev1.Frame_OrderResult{OrderResult: res}}, {Body: &bridgev1.Frame_Account{Account: acct}}, {Body: &bridgev1.Frame_Positions{Positions: ps}}}
	default:
		res.Status = bridgev1.BridgeStatus_BRIDGE_STATUS_INVALID
	}
	drop := false
	if t.After != nil {
		if out, d := t.After(c, res); out != nil || d {
			if out != nil {
				res = out
			}
			drop = d
		}
	}
	t.done[c.GetCommandId()] = res
	if drop {
		return nil
	}
	return append([]*bridgev1.Frame{{Body: &bridgev1.Frame_OrderResult{OrderResult: res}}}, extra...)
}

// TriggerStop closes every open position of symbol at price as the trade server does when a stop
// loss ("sl"), take profit ("tp") or stop-out ("so") triggers, and returns the DEAL_ADD transaction
// frames the EA reports for it: client order id "<kind>:<position ticket>", a deal of its own.
func (t *Terminal) TriggerStop(kind, symbol string, price *typesv1.Decimal) []*bridgev1.Frame {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*bridgev1.Frame
	for _, o := range t.orders {
		if !o.Filled || o.Closed || o.Symbol != symbol {
			continue
		}
		o.Closed = true
		t.nextTk++
		order := t.nextTk
		t.nextTk++
		side := bridgev1.Side_SIDE_SELL
		if o.Side == bridgev1.Side_SIDE_SELL {
			side = bridgev1.Side_SIDE_BUY
		}
		out = append(out, &bridgev1.Frame{Body: &bridgev1.Frame_TradeTransaction{TradeTransaction: &bridgev1.TradeTransaction{
			Type: bridgev1.TransactionType_TRANSACTION_TYPE_DEAL_ADD, ClientOrderId: fmt.Sprintf("%s:%d", kind, o.Ticket), OrderTicket: order,
			DealTicket: t.nextTk, PositionTicket: o.Ticket, Symbol: symbol, Side: side, Price: price, Volume: o.Volume,
			TimeMsc: time.Now().UnixMilli(), Commission: &typesv1.Decimal{Units: -350, Scale: 2}}}})
	}
	return out
}

func pow10(n int) int64 {
	p := int64(1)
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}

// TestKey is the bridge key a Peer proves unless told otherwise (svctest's services use it).
var TestKey = []byte("execution-test-bridge-key-0123456789")

// Peer is the bridge side of the TRADING channel. One Peer is one bridge session (session_id);
// Connect may be called again after a disconnect, as the DLL reconnects.
type Peer struct {
	Terminal  *Terminal
	SessionID uint64
	Heartbeat time.Duration
	// Key is the bridge key proven in Hello and checked in Welcome, as the DLL does; nil sends
	// Hello without a proof.
	Key []byte
	// Lockstep asks for Strategy Tester lockstep in Hello (ADR 0095).
	Lockstep bool

	mu       sync.Mutex
	seq      uint64
	unacked  []*bridgev1.Frame
	peerAck  uint64
	lastIn   uint64
	conn     net.Conn
	w        *bufio.Writer
	done     chan struct{}
	wg       sync.WaitGroup
	welcome  *bridgev1.Welcome
	resent   int
	Received int
	// In order: "command:<client order id>" for each order command, "decision:<outcome>" for each
	// TesterDecision (read with Log).
	log []string
	// TesterDecisions received.
	decisions []*bridgev1.TesterDecision
}

// Log returns the order commands and tester decisions received, in order.
func (p *Peer) Log() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}

// Decisions returns the TesterDecision frames received.
func (p *Peer) Decisions() []*bridgev1.TesterDecision {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*bridgev1.TesterDecision(nil), p.decisions...)
}

// New returns a peer for a terminal.
func New(t *Terminal, session uint64) *Peer {
	return &Peer{Terminal: t, SessionID: session, Heartbeat: 200 * time.Millisecond, Key: TestKey}
}

// Connect dials addr, sends Hello, reads Welcome and resends unacknowledged frames above
// resume_after. It then serves commands until Close or the connection drops.
func (p *Peer) Connect(addr string) (*bridgev1.Welcome, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(nc)
	p.mu.Lock()
	p.conn, p.w, p.done = nc, bufio.NewWriter(nc), make(chan struct{})
	p.mu.Unlock()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	ch := &bridgev1.Frame{}
	if err := protodelim.UnmarshalFrom(r, ch); err != nil || ch.GetChallenge() == nil {
		nc.Close()
		return nil, fmt.Errorf("reading Challenge: %v %w", ch, err)
	}
	h := &bridgev1.Hello{ApiVersion: bridgelink.APIVersion, BridgeVersion: "peer-test", Channel: bridgev1.Channel_CHANNEL_TRADING,
		SessionId: p.SessionID, TerminalName: "Go peer", AccountLogin: 42, AccountCurrency: "USD", TradeMode: bridgev1.TradeMode_TRADE_MODE_DEMO,
		Lockstep: p.Lockstep}
	if p.Key != nil {
		if err := bridgelink.ProveHello(p.Key, ch.GetChallenge().GetServerNonce(), h); err != nil {
			nc.Close()
			return nil, err
		}
	}
	if err := p.write(&bridgev1.Frame{Body: &bridgev1.Frame_Hello{Hello: h}}, false); err != nil {
		nc.Close()
		return nil, err
	}
	f := &bridgev1.Frame{}
	if err := protodelim.UnmarshalFrom(r, f); err != nil {
		nc.Close()
		return nil, fmt.Errorf("reading Welcome: %w", err)
	}
	w := f.GetWelcome()
	if w == nil {
		nc.Close()
		if e := f.GetError(); e != nil {
			return nil, fmt.Errorf("refused: %v: %s", e.GetCode(), e.GetMessage())
		}
		return nil, fmt.Errorf("expected Welcome, got %v", f)
	}
	if p.Key != nil {
		// Mutual: the server proves the key too, as the DLL checks before it takes a command.
		want := bridgelink.Proof(p.Key, true, ch.GetChallenge().GetServerNonce(), h.ClientNonce, h.SessionId, h.Channel, h.ApiVersion)
		if !hmac.Equal(want, w.GetServerProof()) {
			nc.Close()
			return nil, errors.New("the server did not prove the bridge key")
		}
	}
	_ = nc.SetReadDeadline(time.Time{})
	p.mu.Lock()
	p.welcome = w
	var resend []*bridgev1.Frame
	for _, u := range p.unacked {
		if u.GetSequence() > w.GetResumeAfter() {
			resend = append(resend, u)
		}
	}
	p.mu.Unlock()
	for _, u := range resend {
		p.mu.Lock()
		p.resent++
		p.mu.Unlock()
		if err := p.writeRaw(u); err != nil {
			return nil, err
		}
	}
	p.wg.Add(2)
	go p.reader(r)
	go p.heartbeats()
	return w, nil
}

// Resent returns how many frames were resent after reconnects.
func (p *Peer) Resent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resent
}

// Unacked returns how many frames the server has not acknowledged yet.
func (p *Peer) Unacked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.unacked)
}

func (p *Peer) write(f *bridgev1.Frame, numbered bool) error {
	p.mu.Lock()
	if numbered {
		p.seq++
		f.Sequence = p.seq
		p.unacked = append(p.unacked, f)
	}
	p.mu.Unlock()
	return p.writeRaw(f)
}

func (p *Peer) writeRaw(f *bridgev1.Frame) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return errors.New("not connected")
	}
	f.Ack = p.lastIn
	f.SentTimeUs = time.Now().UnixMicro()
	if _, err := protodelim.MarshalTo(p.w, f); err != nil {
		return err
	}
	return p.w.Flush()
}

// Send numbers and sends a frame the bridge would keep until acknowledged.
func (p *Peer) Send(f *bridgev1.Frame) error { return p.write(f, true) }

// SendNumbered writes a frame with the given sequence as it is (a resend of an old frame).
func (p *Peer) SendNumbered(f *bridgev1.Frame, seq uint64) error {
	f.Sequence = seq
	return p.writeRaw(f)
}

// SendRaw writes bytes as they are (malformed-frame tests).
func (p *Peer) SendRaw(b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.w.Write(b); err != nil {
		return err
	}
	return p.w.Flush()
}

func (p *Peer) reader(r *bufio.Reader) {
	defer p.wg.Done()
	defer p.drop()
	for {
		f := &bridgev1.Frame{}
		if err := (protodelim.UnmarshalOptions{MaxSize: 1 << 20}).UnmarshalFrom(r, f); err != nil {
			return
		}
		p.mu.Lock()
		p.Received++
		if f.GetSequence() > p.lastIn {
			p.lastIn = f.GetSequence()
		}
		if f.GetAck() > p.peerAck {
			p.peerAck = f.GetAck()
			keep := p.unacked[:0]
			for _, u := range p.unacked {
				if u.GetSequence() > p.peerAck {
					keep = append(keep, u)
				}
			}
			p.unacked = keep
		}
		if c := f.GetOrderCommand(); c != nil && c.GetKind() == bridgev1.CommandKind_COMMAND_KIND_PLACE {
			p.log = append(p.log, "command:"+c.GetClientOrderId())
		}
		if d := f.GetTesterDecision(); d != nil {
			p.log = append(p.log, "decision:"+d.GetOutcome())
			p.decisions = append(p.decisions, d)
		}
		p.mu.Unlock()
		if c := f.GetOrderCommand(); c != nil {
			for _, out := range p.Terminal.execute(c) {
				if err := p.Send(out); err != nil {
					return
				}
			}
		}
	}
}

func (p *Peer) heartbeats() {
	defer p.wg.Done()
	t := time.NewTicker(p.Heartbeat)
	defer t.Stop()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if err := p.write(&bridgev1.Frame{Body: &bridgev1.Frame_Heartbeat{Heartbeat: &bridgev1.Heartbeat{TimeUs: time.Now().UnixMicro()}}}, false); err != nil {
				return
			}
		}
	}
}

func (p *Peer) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn = nil
		close(p.done)
	}
}

// Close drops the connection and waits for the peer's goroutines.
func (p *Peer) Close() {
	p.drop()
	p.wg.Wait()
}

// Connected reports whether the connection is up.
func (p *Peer) Connected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn != nil
}
