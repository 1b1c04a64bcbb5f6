// Package policy turns the inference server's signals (kairos.inference.v1.Signal on
// kairos.signal.<SYMBOL>) into target positions and the orders that reach them: a threshold on the
// signal's strength, a fixed or strength-scaled size, a per-symbol cooldown and a maximum holding
// time. Every order carries the strategy id and the model name and version behind it.
package policy

import (
	"context"
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
)

// Subject is what the policy subscribes to.
const Subject = "kairos.signal.>"

// Config is the policy.
type Config struct {
	StrategyID string
	// Threshold is the minimum |strength| for a long (UP) or short (DOWN) target.
	Threshold float64
	// Lots is the target size.
	Lots decimal.D
	// ScaleByStrength sizes the target as Lots × |strength|, rounded down to the volume step.
	ScaleByStrength bool
	// Cooldown between two orders of one symbol.
	Cooldown time.Duration
	// MaxHolding flattens positions held longer; zero for no limit.
	MaxHolding time.Duration
	// MaxSignalAge ignores signals whose market data is older; zero for no check.
	MaxSignalAge time.Duration
}

// Trader is what the policy needs from the engine.
type Trader interface {
	PositionState(symbol string) (net decimal.D, openedUS int64, working bool)
	SubmitIntent(ctx context.Context, req *execv1.SubmitOrderRequest, hops []*typesv1.HopStamp) (*execv1.Order, error)
	Instrument(symbol string) (*market.Instrument, bool)
	Now() int64
}

// Outcome of one signal, for metrics and tests.
type Outcome string

// Outcomes.
const (
	OutcomeOrder    Outcome = "order"
	OutcomeHold     Outcome = "hold"
	OutcomeCooldown Outcome = "cooldown"
	OutcomeWorking  Outcome = "working"
	OutcomeStale    Outcome = "stale"
	OutcomeUnknown  Outcome = "unknown_symbol"
	OutcomeInvalid  Outcome = "invalid"
	OutcomeError    Outcome = "error"
)

// Policy is the signal policy.
type Policy struct {
	cfg Config
	tr  Trader
	log *slog.Logger
	m   *metrics.Metrics

	mu        sync.Mutex
	lastOrder map[string]int64
	model     map[string][2]string
	seq       uint64
}

// New returns a policy.
func New(cfg Config, tr Trader, log *slog.Logger, m *metrics.Metrics) *Policy {
	return &Policy{cfg: cfg, tr: tr, log: log, m: m, lastOrder: make(map[string]int64), model: make(map[string][2]string)}
}

// Target returns the target position for a signal and whether the signal sets one (false: hold).
func (p *Policy) Target(sig *inferencev1.Signal, inst *market.Instrument) (decimal.D, bool) {
	s := float64(sig.GetStrength())
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return decimal.Zero, false
	}
	size := p.cfg.Lots
	if p.cfg.ScaleByStrength {
		scaled := size.MulRound(mustFloat(math.Min(1, math.Abs(s)), 4), size.Scale()+4)
		steps := scaled.DivRound(inst.VolumeStep, 0)
		if scaled.Less(steps.MulRound(inst.VolumeStep, inst.VolumeScale())) {
			steps = steps.Sub(decimal.FromInt(1))
		}
		size = steps.MulRound(inst.VolumeStep, inst.VolumeScale())
		if size.Less(inst.VolumeMin) {
			return decimal.Zero, true
		}
	}
	switch sig.GetDirection() {
	case inferencev1.Direction_DIRECTION_UP:
		if math.Abs(s) >= p.cfg.Threshold {
			return size, true
		}
	case inferencev1.Direction_DIRECTION_DOWN:
		if math.Abs(s) >= p.cfg.Threshold {
			return size.Neg(), true
		}
	case inferencev1.Direction_DIRECTION_FLAT:
		return decimal.Zero, true
	}
	return decimal.Zero, false
}

func mustFloat(f float64, scale uint8) decimal.D {
	d, err := decimal.FromFloat(f, scale)
	if err != nil {
		return decimal.Zero
	}
	return d
}

// OnSignal handles one signal and returns what it did.
func (p *Policy) OnSignal(ctx context.Context, sig *inferencev1.Signal) (Outcome, *execv1.Order, error) {
	now := p.tr.Now()
	hops := append(append([]*typesv1.HopStamp(nil), sig.GetHops()...), &typesv1.HopStamp{Stage: typesv1.HopStage_HOP_STAGE_EXECUTION_RECEIVE, TimeUs: now})
	sym := sig.GetSymbol()
	inst, ok := p.tr.Instrument(sym)
	if !ok {
		return OutcomeUnknown, nil, nil
	}
	if p.cfg.MaxSignalAge > 0 && sig.GetTimeMsc() > 0 && now-sig.GetTimeMsc()*1000 > p.cfg.MaxSignalAge.Microseconds() {
		return OutcomeStale, nil, nil
	}
	target, set := p.Target(sig, inst)
	if !set {
		return OutcomeHold, nil, nil
	}
	p.mu.Lock()
	p.model[sym] = [2]string{sig.GetModelName(), sig.GetModelVersion()}
	p.mu.Unlock()
	return p.move(ctx, sym, target, sig.GetModelName(), sig.GetModelVersion(), hops, now)
}

func (p *Policy) move(ctx context.Context, sym string, target decimal.D, model, version string, hops []*typesv1.HopStamp, now int64) (Outcome, *execv1.Order, error) {
	net, _, working := p.tr.PositionState(sym)
	delta := target.Sub(net)
	if delta.IsZero() {
		return OutcomeHold, nil, nil
	}
	if working {
		return OutcomeWorking, nil, nil
	}
	p.mu.Lock()
	if last, ok := p.lastOrder[sym]; ok && now-last < p.cfg.Cooldown.Microseconds() {
		p.mu.Unlock()
		return OutcomeCooldown, nil, nil
	}
	p.lastOrder[sym] = now
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
		StrategyId: p.cfg.StrategyID, ModelName: model, ModelVersion: version,
		// Going flat or towards flat never needs to add exposure.
		ReduceOnly: target.IsZero(),
	}
	o, err := p.tr.SubmitIntent(ctx, req, hops)
	if err != nil {
		return OutcomeError, o, err
	}
	return OutcomeOrder, o, nil
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

// CheckHolding flattens every symbol whose position is older than MaxHolding.
func (p *Policy) CheckHolding(ctx context.Context, symbols []string) {
	if p.cfg.MaxHolding <= 0 {
		return
	}
	now := p.tr.Now()
	for _, sym := range symbols {
		net, opened, _ := p.tr.PositionState(sym)
		if net.IsZero() || opened == 0 || now-opened < p.cfg.MaxHolding.Microseconds() {
			continue
		}
		p.mu.Lock()
		mv := p.model[sym]
		p.mu.Unlock()
		out, o, err := p.move(ctx, sym, decimal.Zero, mv[0], mv[1], nil, now)
		p.log.Info("max holding time reached", "symbol", sym, "outcome", string(out), "order", o.GetClientOrderId(), "err", err)
	}
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

// Run handles the signals from ch one at a time until ctx ends. It also enforces the maximum
// holding time once a second for the given symbols.
func (p *Policy) Run(ctx context.Context, ch <-chan *nats.Msg, symbols []string) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			p.CheckHolding(ctx, symbols)
		case msg := <-ch:
			sig := &inferencev1.Signal{}
			var (
				out Outcome
				o   *execv1.Order
				err error
			)
			if uerr := proto.Unmarshal(msg.Data, sig); uerr != nil {
				out = OutcomeInvalid
				p.log.Warn("undecodable signal", "subject", msg.Subject, "err", uerr)
			} else {
				start := time.Now()
				out, o, err = p.OnSignal(ctx, sig)
				p.m.Observe(metrics.StageSignal, time.Since(start))
			}
			if p.m != nil {
				p.m.Signals.WithLabelValues(sig.GetSymbol(), string(out)).Inc()
			}
			if out == OutcomeOrder || err != nil {
				p.log.Info("signal", "symbol", sig.GetSymbol(), "direction", sig.GetDirection().String(), "strength", sig.GetStrength(),
					"model", sig.GetModelName(), "version", sig.GetModelVersion(), "outcome", string(out),
					"order", o.GetClientOrderId(), "status", o.GetStatus().String(), "err", err)
			}
		}
	}
}
