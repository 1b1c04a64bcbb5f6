// Package paper is the simulated venue: it fills orders against the latest quote from the
// collector's ticks (buys at the ask, sells at the bid), adds an adverse slippage of a fixed number
// of points plus points per lot, charges a commission per lot, works limit and stop orders until the
// quotes reach them, and simulates the account's balance, equity and margin for the risk engine.
// Its state is the journal's: after a restart the engine hands it the open orders again.
package paper

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/portfolio"
	"github.com/kairos-mt5/kairos/go/execution/risk"
	"github.com/kairos-mt5/kairos/go/execution/venue"
)

// Config is the simulation.
type Config struct {
	// SlippagePoints is the fixed adverse slippage of market and stop fills, in points.
	SlippagePoints int64
	// SlippagePointsPerLot adds size impact: points per lot, rounded up to whole points.
	SlippagePointsPerLot decimal.D
	// CommissionPerLot is charged per lot filled, in account currency.
	CommissionPerLot decimal.D
	// StartingBalance of the simulated account.
	StartingBalance decimal.D
	// Currency of the account.
	Currency string
	// IDPrefix makes venue order and trade ids unique across restarts (e.g. the start time).
	IDPrefix string
}

type resting struct {
	o         *fsm.Order
	triggered bool
}

// Venue is the paper venue. Not safe for concurrent use: the engine calls it under its lock.
type Venue struct {
	cfg         Config
	instruments map[string]*market.Instrument
	quotes      map[string]market.Quote
	resting     map[string]*resting
	protect     map[string]venue.Protection // protected positions by symbol (venue.PositionWatcher)
	nextOrder   uint64
	nextTrade   uint64
}

// New returns a paper venue for the instruments.
func New(cfg Config, instruments []market.Instrument) *Venue {
	v := &Venue{cfg: cfg, instruments: make(map[string]*market.Instrument), quotes: make(map[string]market.Quote), resting: make(map[string]*resting),
		protect: make(map[string]venue.Protection)}
	for i := range instruments {
		inst := instruments[i]
		v.instruments[inst.Symbol] = &inst
	}
	return v
}

// Name implements venue.Venue.
func (v *Venue) Name() string { return "paper" }

// WriteAhead implements venue.Venue: the paper venue lives in the process, so a crash loses it
// together with anything not yet journaled, and nothing can be sent twice.
func (v *Venue) WriteAhead() bool { return false }

// Request implements venue.Venue.
func (v *Venue) Request(kind venue.CommandKind, o *fsm.Order) venue.Command {
	return venue.Command{Kind: kind, ClientOrderID: o.ClientOrderID, Payload: &execv1.Order{
		ClientOrderId: o.ClientOrderID, Symbol: o.Symbol, Side: execv1.OrderSide(o.Side), Type: execv1.OrderType(o.Type),
		Quantity: o.Quantity.Proto(), Price: o.Price.Proto(), TriggerPrice: o.TriggerPrice.Proto(), Venue: "paper",
		Status: execv1.OrderStatus(o.Status),
	}}
}

// Send implements venue.Venue.
func (v *Venue) Send(cmd venue.Command, o *fsm.Order) ([]venue.Event, error) {
	switch cmd.Kind {
	case venue.Place:
		return v.place(o), nil
	case venue.Cancel:
		if _, ok := v.resting[o.ClientOrderID]; !ok {
			return []venue.Event{{Kind: venue.CancelRejected, ClientOrderID: o.ClientOrderID, Reason: "order is not working at the paper venue"}}, nil
		}
		delete(v.resting, o.ClientOrderID)
		return []venue.Event{{Kind: venue.Canceled, ClientOrderID: o.ClientOrderID, Reason: "canceled"}}, nil
	case venue.Query:
		return nil, nil
	case venue.Modify:
		// The engine applies the amendment on Updated; the resting order is the engine's, so it
		// works at the new values from the next quote on.
		if _, ok := v.resting[o.ClientOrderID]; !ok || o.Pending == nil {
			return []venue.Event{{Kind: venue.UpdateRejected, ClientOrderID: o.ClientOrderID, Reason: "order is not working at the paper venue"}}, nil
		}
		return []venue.Event{{Kind: venue.Updated, ClientOrderID: o.ClientOrderID, Reason: "modified"}}, nil
	}
	return nil, fmt.Errorf("paper: unknown command %v", cmd.Kind)
}

func (v *Venue) place(o *fsm.Order) []venue.Event {
	inst, ok := v.instruments[o.Symbol]
	if !ok {
		return []venue.Event{{Kind: venue.Rejected, ClientOrderID: o.ClientOrderID, Reason: "unknown symbol " + o.Symbol}}
	}
	q, haveQ := v.quotes[o.Symbol]
	haveQ = haveQ && q.Valid()
	v.nextOrder++
	vid := v.cfg.IDPrefix + "O" + strconv.FormatUint(v.nextOrder, 10)
	if o.Type == fsm.Market && !haveQ {
		return []venue.Event{{Kind: venue.Rejected, ClientOrderID: o.ClientOrderID, Reason: "no quote for " + o.Symbol}}
	}
	evs := []venue.Event{{Kind: venue.Accepted, ClientOrderID: o.ClientOrderID, VenueOrderID: vid}}
	r := &resting{o: o}
	if haveQ {
		if more := v.match(inst, r, q); more != nil {
			evs = append(evs, more...)
			if more[len(more)-1].Kind == venue.Filled {
				return evs
			}
		}
	}
	if o.TIF == fsm.IOC || o.TIF == fsm.FOK || o.Type == fsm.Market {
		return append(evs, venue.Event{Kind: venue.Canceled, ClientOrderID: o.ClientOrderID, Reason: "not marketable (" + tifName(o.TIF) + ")"})
	}
	v.resting[o.ClientOrderID] = r
	return evs
}

func tifName(t fsm.TimeInForce) string {
	if t == fsm.FOK {
		return "FOK"
	}
	return "IOC"
}

// match returns the events if the order trades at q, else nil.
func (v *Venue) match(inst *market.Instrument, r *resting, q market.Quote) []venue.Event {
	o := r.o
	var evs []venue.Event
	buy := o.Side == fsm.Buy
	if (o.Type == fsm.StopMarket || o.Type == fsm.StopLimit) && !r.triggered {
		hit := buy && !q.Ask.Less(o.TriggerPrice) || !buy && !o.TriggerPrice.Less(q.Bid)
		if !hit {
			return nil
		}
		r.triggered = true
		evs = append(evs, venue.Event{Kind: venue.Triggered, ClientOrderID: o.ClientOrderID})
	}
	var px decimal.D
	switch o.Type {
	case fsm.Market, fsm.StopMarket:
		px = v.slipped(inst, o, q)
	case fsm.Limit, fsm.StopLimit:
		if buy && o.Price.Less(q.Ask) || !buy && q.Bid.Less(o.Price) {
			if len(evs) > 0 {
				return evs // triggered, now a working limit order
			}
			return nil
		}
		// Marketable: trade at the touch, which is at or better than the limit.
		px = q.Ask
		if !buy {
			px = q.Bid
		}
	}
	qty := o.Leaves()
	v.nextTrade++
	comm := v.cfg.CommissionPerLot.MulRound(qty, 2)
	evs = append(evs, venue.Event{Kind: venue.Filled, ClientOrderID: o.ClientOrderID, Fill: fsm.Fill{
		TradeID: v.cfg.IDPrefix + "T" + strconv.FormatUint(v.nextTrade, 10), Quantity: qty, Price: px,
		Commission: comm, CommissionCcy: v.cfg.Currency, TimeUS: q.TimeUS, Liquidity: uint8(execv1.LiquiditySide_LIQUIDITY_SIDE_TAKER),
	}})
	return evs
}

// slipped is the touch moved against the order by the slippage model.
func (v *Venue) slipped(inst *market.Instrument, o *fsm.Order, q market.Quote) decimal.D {
	pts := v.cfg.SlippagePoints
	if v.cfg.SlippagePointsPerLot.Sign() > 0 {
		extra := o.Leaves().MulRound(v.cfg.SlippagePointsPerLot, 0)
		if o.Leaves().MulRound(v.cfg.SlippagePointsPerLot, 6).Cmp(extra) > 0 {
			extra = extra.Add(decimal.FromInt(1))
		}
		pts += extra.Units()
	}
	slip := decimal.New(pts, inst.Digits)
	if o.Side == fsm.Buy {
		return q.Ask.Add(slip).Round(inst.Digits)
	}
	return q.Bid.Sub(slip).Round(inst.Digits)
}

// AmendsQuantity implements venue.QuantityAmender: a paper order's quantity can change.
func (v *Venue) AmendsQuantity() bool { return true }

// WatchPosition implements venue.PositionWatcher: the engine's net position and its stops.
func (v *Venue) WatchPosition(p venue.Protection) {
	if p.Net.IsZero() || p.StopLoss.IsZero() && p.TakeProfit.IsZero() {
		delete(v.protect, p.Symbol)
		return
	}
	v.protect[p.Symbol] = p
}

// protective closes a protected position whose stop loss or take profit q touches: a long's at
// the bid (stop loss: bid <= stop, filled at the bid less the slippage, as a stop order; take
// profit: bid >= target, filled at the bid), a short's at the ask the other way round. The whole
// position closes in one fill, reported as a ProtectiveFill named "sl:<trade id>" or "tp:<trade id>".
func (v *Venue) protective(inst *market.Instrument, q market.Quote) []venue.Event {
	p, ok := v.protect[q.Symbol]
	if !ok || inst == nil {
		return nil
	}
	long := p.Net.Sign() > 0
	touch, side := q.Bid, fsm.Sell
	if !long {
		touch, side = q.Ask, fsm.Buy
	}
	var kind string
	switch {
	case p.StopLoss.Sign() > 0 && (long && !p.StopLoss.Less(touch) || !long && !touch.Less(p.StopLoss)):
		kind = "sl"
	case p.TakeProfit.Sign() > 0 && (long && !touch.Less(p.TakeProfit) || !long && !p.TakeProfit.Less(touch)):
		kind = "tp"
	default:
		return nil
	}
	qty := p.Net.Abs()
	px := touch
	if kind == "sl" {
		px = v.slipped(inst, &fsm.Order{Side: side, Quantity: qty, FilledQty: decimal.Zero}, q)
	}
	delete(v.protect, q.Symbol) // the engine's WatchPosition after the fill says what is left
	v.nextTrade++
	tid := v.cfg.IDPrefix + "T" + strconv.FormatUint(v.nextTrade, 10)
	id := kind + ":" + tid
	if len(id) > 31 {
		id = kind + ":" + tid[len(tid)-(31-len(kind)-1):]
	}
	reason := "stop loss " + p.StopLoss.String() + " touched"
	if kind == "tp" {
		reason = "take profit " + p.TakeProfit.String() + " touched"
	}
	return []venue.Event{{Kind: venue.ProtectiveFill, ClientOrderID: id, VenueOrderID: v.cfg.IDPrefix + "O" + tid, Symbol: q.Symbol, Side: side,
		Reason: reason, Fill: fsm.Fill{TradeID: tid, Quantity: qty, Price: px, Commission: v.cfg.CommissionPerLot.MulRound(qty, 2),
			CommissionCcy: v.cfg.Currency, TimeUS: q.TimeUS, Liquidity: uint8(execv1.LiquiditySide_LIQUIDITY_SIDE_TAKER)}}}
}

// OnQuote implements venue.QuoteDriven: it records the quote, closes protected positions whose
// stops it touches and works the resting orders.
func (v *Venue) OnQuote(q market.Quote) []venue.Event {
	v.quotes[q.Symbol] = q
	if len(v.resting) == 0 && len(v.protect) == 0 || !q.Valid() {
		return nil
	}
	inst := v.instruments[q.Symbol]
	evs := v.protective(inst, q)
	for id, r := range v.resting {
		if r.o.Symbol != q.Symbol {
			continue
		}
		if r.o.TIF == fsm.GTD && r.o.ExpireTimeUS > 0 && q.TimeUS >= r.o.ExpireTimeUS {
			delete(v.resting, id)
			evs = append(evs, venue.Event{Kind: venue.Expired, ClientOrderID: id, Reason: "GTD expiry"})
			continue
		}
		if e := v.match(inst, r, q); e != nil {
			evs = append(evs, e...)
			if e[len(e)-1].Kind == venue.Filled {
				delete(v.resting, id)
			}
		}
	}
	return evs
}

// Restore implements venue.Restorer: open orders from the journal rest again; those the crash
// caught before the venue answered are accepted now.
func (v *Venue) Restore(open []*fsm.Order) []venue.Event {
	var evs []venue.Event
	for _, o := range open {
		r := &resting{o: o, triggered: o.Status == fsm.Triggered}
		if o.Type == fsm.Market {
			evs = append(evs, venue.Event{Kind: venue.Canceled, ClientOrderID: o.ClientOrderID, Reason: "market order interrupted by a restart"})
			continue
		}
		v.resting[o.ClientOrderID] = r
		if o.Status == fsm.Submitted {
			v.nextOrder++
			evs = append(evs, venue.Event{Kind: venue.Accepted, ClientOrderID: o.ClientOrderID, VenueOrderID: v.cfg.IDPrefix + "O" + strconv.FormatUint(v.nextOrder, 10)})
		}
	}
	return evs
}

// Resting returns the number of working orders at the venue.
func (v *Venue) Resting() int { return len(v.resting) }

// Account implements venue.AccountSimulator.
func (v *Venue) Account(book *portfolio.Book, quotes func(string) (market.Quote, bool), instruments func(string) (*market.Instrument, bool), nowUS int64) risk.Account {
	balance := v.cfg.StartingBalance.Add(book.Realized()).Round(2)
	equity := balance
	margin := decimal.New(0, 2)
	book.Each(func(p *portfolio.Position) {
		if p.Net.IsZero() {
			return
		}
		inst, ok := instruments(p.Symbol)
		if !ok {
			return
		}
		mark := p.AvgPrice
		if q, ok := quotes(p.Symbol); ok && q.Valid() {
			equity = equity.Add(portfolio.Unrealized(inst, *p, q))
			mark = q.Mid()
		}
		margin = margin.Add(inst.Margin(p.Net.Abs(), mark))
	})
	return risk.Account{Balance: balance, Equity: equity, Margin: margin, FreeMargin: equity.Sub(margin), TimeUS: nowUS, Valid: true}
}

var _ proto.Message = (*execv1.Order)(nil)
