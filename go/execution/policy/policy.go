// Package policy turns the inference server's signals (kairos.inference.v1.Signal on
// kairos.signal.<SYMBOL>) into target positions and the orders that reach them, by the decision
// policy each signal carries from its model card (Rules, ADR 0081): entry and exit thresholds on
// the expected edge, minimum and maximum holding time and a cooldown counted in closed bars (one
// signal per bar and symbol), sizes to a volatility target and a protective stop distance. The
// backtest applies the same rules (python/kairos/training/policy.py); golden vectors keep them equal.
// Every order carries the strategy id and the model name and version behind it.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	inferencev1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

// Subject is what the policy subscribes to.
const Subject = "kairos.signal.>"

// Config is the policy service.
type Config struct {
	StrategyID string
	// Fallback applies to signals that carry no policy (models whose card predates card version 2);
	// nil refuses them.
	Fallback *Rules
	// MaxSignalAge treats signals whose market data is older as unusable (no signal-driven decision;
	// the bar still counts); zero for no check.
	MaxSignalAge time.Duration
	// Decided, if set, learns of every signal handled, after its order (if any) was sent: the MT5
	// venue tells a Strategy Tester bridge in lockstep that this decision is done (ADR 0095).
	Decided func(sig *inferencev1.Signal, out Outcome, commands int)
	// Before, if set, sees every signal before it is handled: the service makes the signal's quote
	// count as market data when it is newer than the collector's (a signal can overtake its own
	// tick), and under the market clock (--clock=market) also moves the clock to the signal's time,
	// so the decision is taken as of the signal's own (the tester's virtual) time.
	Before func(sig *inferencev1.Signal)
}

// Trader is what the policy needs from the engine.
type Trader interface {
	PositionState(symbol string) (net decimal.D, openedUS int64, working bool)
	// SubmitIntentLater submits an order and hands back the wait for its durability (nil: nothing
	// to wait for); the order is acknowledged to nobody until that wait returns nil.
	SubmitIntentLater(ctx context.Context, req *execv1.SubmitOrderRequest, hops []*typesv1.HopStamp) (*execv1.Order, func(context.Context) error, error)
	Instrument(symbol string) (*market.Instrument, bool)
	Now() int64
}

// Outcome of one signal, for metrics and tests.
type Outcome string

// Outcomes.
const (
	OutcomeOrder         Outcome = "order"
	OutcomeHold          Outcome = "hold"
	OutcomeWorking       Outcome = "working"
	OutcomeStale         Outcome = "stale"
	OutcomeDuplicate     Outcome = "duplicate"
	OutcomeUnknown       Outcome = "unknown_symbol"
	OutcomeInvalid       Outcome = "invalid"
	OutcomeInvalidPolicy Outcome = "invalid_policy"
	OutcomeError         Outcome = "error"
	// OutcomeRefused: the order would have been denied and the engine's denial budget was spent,
	// so it was refused without a record (risk.ErrTooManyDenials); counted, not logged per signal.
	OutcomeRefused Outcome = "refused"
)

type symbolState struct {
	st       State
	lastBar  int64 // time_msc of the last signal applied
	lastEdge float64
}

// Policy is the signal policy.
type Policy struct {
	cfg Config
	tr  Trader
	log *slog.Logger
	m   *metrics.Metrics

	mu      sync.Mutex
	symbols map[string]*symbolState // keyed by configured instruments only (checked first)
	refused map[string]bool         // model/version/field already logged; at most maxRefusedKeys
	seq     uint64
}

// New returns a policy.
func New(cfg Config, tr Trader, log *slog.Logger, m *metrics.Metrics) *Policy {
	return &Policy{cfg: cfg, tr: tr, log: log, m: m, symbols: make(map[string]*symbolState), refused: make(map[string]bool)}
}

// State returns the policy's state of a symbol (for tests and diagnostics).
func (p *Policy) State(symbol string) (State, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.symbols[symbol]
	if !ok {
		return State{}, false
	}
	return s.st, true
}

func (p *Policy) rules(sig *inferencev1.Signal) (Rules, error) {
	if sig.GetPolicy() == nil {
		if p.cfg.Fallback != nil {
			return *p.cfg.Fallback, nil
		}
		return Rules{}, &FieldError{Field: "", Problem: "is missing and no fallback policy is configured"}
	}
	return RulesFromProto(sig.GetPolicy())
}

// OnSignal handles one signal and returns what it did, its order (if any) durable.
func (p *Policy) OnSignal(ctx context.Context, sig *inferencev1.Signal) (Outcome, *execv1.Order, error) {
	out, o, settle, err := p.decide(ctx, sig)
	if err == nil && settle != nil {
		if err = settle(ctx); err != nil {
			out = OutcomeError
		}
	}
	return out, o, err
}

// decide is OnSignal that hands back its order's wait for durability (nil when there is none).
func (p *Policy) decide(ctx context.Context, sig *inferencev1.Signal) (Outcome, *execv1.Order, func(context.Context) error, error) {
	now := p.tr.Now()
	hops := append(append([]*typesv1.HopStamp(nil), sig.GetHops()...), &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_EXECUTION_RECEIVE, TimeUs: now})
	sym := sig.GetSymbol()
	inst, ok := p.tr.Instrument(sym)
	if !ok {
		return OutcomeUnknown, nil, nil, nil
	}
	rules, err := p.rules(sig)
	if err != nil {
		p.refuse(sig, err)
		return OutcomeInvalidPolicy, nil, nil, nil
	}
	in := Input{PDown: math.NaN(), PUp: math.NaN(), Vol: sig.GetRealisedVol(), Price: sig.GetBid()}
	if out := sig.GetOutputs(); len(out) == 3 {
		in.PDown, in.PUp = float64(out[0]), float64(out[2])
	}
	stale := p.cfg.MaxSignalAge > 0 && sig.GetTimeMsc() > 0 && now-sig.GetTimeMsc()*1000 > p.cfg.MaxSignalAge.Microseconds()
	if stale {
		in.PDown, in.PUp = math.NaN(), math.NaN()
	}
	sz := Sizing{LotStep: inst.VolumeStep.Float(), MinLots: inst.VolumeMin.Float()}
	if sz.MinLots < sz.LotStep {
		sz.MinLots = sz.LotStep
	}

	net, _, working := p.tr.PositionState(sym)
	p.mu.Lock()
	s, seen := p.symbols[sym]
	if !seen {
		// A position the engine already holds (a restart, a manual order) becomes the policy's.
		s = &symbolState{st: NewState()}
		if !net.IsZero() && sz.LotStep > 0 {
			s.st.Side = net.Sign()
			s.st.Steps = int64(math.Round(math.Abs(net.Float()) / sz.LotStep))
		}
		p.symbols[sym] = s
	} else if sig.GetTimeMsc() <= s.lastBar {
		p.mu.Unlock()
		return OutcomeDuplicate, nil, nil, nil
	} else if s.st.Side != 0 && net.IsZero() && !working {
		// The position was closed outside the policy (a protective stop or take-profit at the venue,
		// the kill switch, a refused entry): it is flat now, as after an exit decision on the last
		// bar, so the cooldown applies and the policy does not re-buy what the stop just sold.
		s.st = State{SinceExit: 0}
		p.log.Info("position closed outside the policy (stop, take-profit, kill switch, refused entry): flat, cooldown applies", "symbol", sym)
	}
	s.lastBar = sig.GetTimeMsc()
	d := rules.Decide(sz, &s.st, in)
	s.lastEdge = d.Edge
	p.mu.Unlock()

	target := decimal.FromInt(int64(d.Side)*d.Steps).MulRound(inst.VolumeStep, inst.VolumeScale())
	delta := target.Sub(net)
	if delta.IsZero() {
		if stale {
			return OutcomeStale, nil, nil, nil
		}
		return OutcomeHold, nil, nil, nil
	}
	if working {
		return OutcomeWorking, nil, nil, nil
	}
	var stop *typesv1.Decimal
	if d.StopDistance > 0 && (d.Action == Enter || d.Action == Reverse) {
		if sd, err := decimal.FromFloat(d.StopDistance, inst.Digits); err == nil && sd.Sign() > 0 {
			stop = stopFor(sig, d.Side, sd, inst.Digits)
		}
	}
	return p.submit(ctx, sym, delta, target.IsZero(), stop, sig, hops, now)
}

// maxRefusedKeys bounds the log-once memory of refused policies: model names and versions come
// from the peer that publishes signals, so the map must not grow with them. When full it starts
// over (a key may then be logged once more; the counter has the rate either way).
const maxRefusedKeys = 256

func (p *Policy) refuse(sig *inferencev1.Signal, err error) {
	key := sig.GetModelName() + "\x00" + sig.GetModelVersion() + "\x00" + err.Error()
	p.mu.Lock()
	first := !p.refused[key]
	if first && len(p.refused) >= maxRefusedKeys {
		clear(p.refused)
	}
	p.refused[key] = true
	p.mu.Unlock()
	if first { // once per model version and problem: the counter has the rate
		field := ""
		if fe, ok := err.(*FieldError); ok {
			field = "policy." + fe.Field
		}
		p.log.Error("signal policy cannot be applied; the model's signals are refused", "symbol", sig.GetSymbol(),
			"model", sig.GetModelName(), "version", sig.GetModelVersion(), "field", strings.TrimSuffix(field, "."), "err", err)
	}
}

func (p *Policy) submit(ctx context.Context, sym string, delta decimal.D, flat bool, stop *typesv1.Decimal, sig *inferencev1.Signal, hops []*typesv1.HopStamp, now int64) (Outcome, *execv1.Order, func(context.Context) error, error) {
	p.mu.Lock()
	p.seq++
	id := clientOrderID(sym, now, p.seq)
	p.mu.Unlock()
	side := execv1.OrderSide_ORDER_SIDE_BUY
	if delta.Sign() < 0 {
		side = execv1.OrderSide_ORDER_SIDE_SELL
	}
	req := &execv1.SubmitOrderRequest{
		ClientOrderId: id, Symbol: sym, Side: side, Type: execv1.OrderType_ORDER_TYPE_MARKET,
		TimeInForce: execv1.TimeInForce_TIME_IN_FORCE_IOC, Quantity: delta.Abs().Proto(),
		StrategyId: p.cfg.StrategyID, ModelName: sig.GetModelName(), ModelVersion: sig.GetModelVersion(),
		// Going flat never needs to add exposure.
		ReduceOnly: flat,
		StopLoss:   stop,
	}
	o, settle, err := p.tr.SubmitIntentLater(ctx, req, hops)
	if errors.Is(err, risk.ErrTooManyDenials) {
		// Dropped, like a denial, but unrecorded: a flood of signals the risk engine denies must
		// not log (or journal) one line each. The next signal decides again.
		return OutcomeRefused, nil, nil, nil
	}
	if err != nil {
		return OutcomeError, o, nil, err
	}
	return OutcomeOrder, o, settle, nil
}

// stopFor is the protective stop loss of an entry or reversal to side: dist from the quote the
// signal was decided on (its bar's closing tick: the ask for a long, the bid for a short), as the
// backtest sets it (kairos.training.policy.stop_level), so the level does not depend on whether the
// signal or its tick reached the engine first. Nil when the signal carries no usable quote.
func stopFor(sig *inferencev1.Signal, side int, dist decimal.D, digits uint8) *typesv1.Decimal {
	px := sig.GetAsk()
	if side < 0 {
		px = sig.GetBid()
	}
	ref, err := decimal.FromFloat(px, digits)
	if err != nil || ref.Sign() <= 0 {
		return nil
	}
	sl := market.StopLevel(ref, dist, side > 0, digits)
	if sl.Sign() <= 0 {
		return nil
	}
	return sl.Proto()
}

func clientOrderID(sym string, nowUS int64, seq uint64) string {
	s := strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, sym)
	if len(s) > 8 {
		s = s[:8]
	}
	return fmt.Sprintf("sig-%s-%x-%d", s, nowUS/1000, seq%100000)
}

// Subscribe subscribes to the signals on nc; pass the channel to Run.
func Subscribe(nc *nats.Conn) (<-chan *nats.Msg, *nats.Subscription, error) {
	ch := make(chan *nats.Msg, 4096)
	sub, err := nc.ChanSubscribe(Subject, ch)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: subscribe %s: %w", Subject, err)
	}
	return ch, sub, nil
}

// maxUnsettled bounds the signals decided whose orders are not yet settled (ADR 0116): past it,
// deciding waits for the settling.
const maxUnsettled = 64

// handled is one signal: decided, its order (if any) sent, not yet settled.
type handled struct {
	sig     *inferencev1.Signal
	subject string
	out     Outcome
	o       *execv1.Order
	settle  func(context.Context) error
	err     error
	start   time.Time
	decoded bool
}

// Run handles the signals from ch until ctx ends, in the order they came. Holding times count
// signals, so nothing runs on a clock. Deciding a signal does not wait for the orders of the signals
// before it to be durable: each decision is made on the state the orders before it left, and a
// goroutine of its own settles the orders (waits for the journal) in the same order. Signals that
// come together (a bar closing for several symbols at once, a replay's burst) are then decided at
// once and their orders committed together, instead of each waiting for a flush per order before it
// (ADR 0116). What a signal did is counted, logged and told to Decided once its order is durable;
// when ctx ends, the signals already decided are settled before Run returns.
func (p *Policy) Run(ctx context.Context, ch <-chan *nats.Msg) error {
	settles := make(chan handled, maxUnsettled)
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		for h := range settles {
			p.settle(ctx, &h)
		}
	}()
	defer func() {
		close(settles)
		<-settled
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-ch:
			// Every decided order is settled exactly once (a repeat of its id waits for that); the
			// settler always moves on (a settle is bounded by the journal timeout and ends at once
			// when ctx has ended), so this send never waits forever.
			settles <- p.handle(ctx, msg)
		}
	}
}

// handle decodes and decides one signal; its order, if any, is sent and left to settle.
func (p *Policy) handle(ctx context.Context, msg *nats.Msg) handled {
	h := handled{sig: &inferencev1.Signal{}, subject: msg.Subject, start: time.Now()}
	if err := proto.Unmarshal(msg.Data, h.sig); err != nil {
		h.out, h.err = OutcomeInvalid, err
		return h
	}
	h.decoded = true
	if p.cfg.Before != nil {
		p.cfg.Before(h.sig)
	}
	h.out, h.o, h.settle, h.err = p.decide(ctx, h.sig)
	return h
}

// settle waits for a signal's order to be durable, then counts, logs and reports what it did.
func (p *Policy) settle(ctx context.Context, h *handled) {
	sig := h.sig
	if !h.decoded {
		p.log.Warn("undecodable signal", "subject", h.subject, "err", h.err)
	} else {
		if h.settle != nil {
			if err := h.settle(ctx); err != nil {
				h.out, h.err = OutcomeError, err
			}
		}
		p.m.Observe(metrics.StageSignal, time.Since(h.start))
		if p.cfg.Decided != nil {
			commands := 0
			if h.out == OutcomeOrder {
				commands = 1
			}
			p.cfg.Decided(sig, h.out, commands)
		}
	}
	if p.m != nil {
		p.m.Signals.WithLabelValues(sig.GetSymbol(), string(h.out)).Inc()
	}
	if h.decoded && (h.out == OutcomeOrder || h.err != nil) {
		p.log.Info("signal", "symbol", sig.GetSymbol(), "time_msc", sig.GetTimeMsc(), "strength", sig.GetStrength(),
			"model", sig.GetModelName(), "version", sig.GetModelVersion(), "outcome", string(h.out),
			"order", h.o.GetClientOrderId(), "status", h.o.GetStatus().String(), "err", h.err)
	}
}
