package policy

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	inferencev1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/market"
)

// trader is a hand-written fake of the engine: a net position per symbol and the orders sent.
type trader struct {
	now     int64
	net     map[string]decimal.D
	opened  map[string]int64
	working bool
	sent    []*execv1.SubmitOrderRequest
}

func (f *trader) PositionState(s string) (decimal.D, int64, bool) {
	return f.net[s], f.opened[s], f.working
}
func (f *trader) Instrument(s string) (*market.Instrument, bool) {
	for _, i := range config.DefaultInstruments() {
		if i.Symbol == s {
			return &i, true
		}
	}
	return nil, false
}
func (f *trader) Now() int64 { return f.now }
func (f *trader) SubmitIntent(_ context.Context, r *execv1.SubmitOrderRequest, _ []*typesv1.HopStamp) (*execv1.Order, error) {
	f.sent = append(f.sent, r)
	q, _ := decimal.FromProto(r.GetQuantity())
	if r.GetSide() == execv1.OrderSide_ORDER_SIDE_SELL {
		q = q.Neg()
	}
	f.net[r.GetSymbol()] = f.net[r.GetSymbol()].Add(q)
	f.opened[r.GetSymbol()] = f.now
	return &execv1.Order{ClientOrderId: r.GetClientOrderId(), Status: execv1.OrderStatus_ORDER_STATUS_FILLED}, nil
}

func newPolicy(cfg Config) (*Policy, *trader) {
	tr := &trader{now: 1_000_000_000_000, net: map[string]decimal.D{}, opened: map[string]int64{}}
	return New(cfg, tr, slog.New(slog.NewJSONHandler(io.Discard, nil)), nil), tr
}

func sig(dir inferencev1.Direction, strength float32) *inferencev1.Signal {
	return &inferencev1.Signal{Symbol: "EURUSD", Direction: dir, Strength: strength, ModelName: "m", ModelVersion: "3"}
}

var base = Config{StrategyID: "s", Threshold: 0.3, Lots: decimal.MustParse("0.10"), Cooldown: time.Second, MaxHolding: time.Hour}

func TestSignalsMapToTargetPositions(t *testing.T) {
	cases := []struct {
		name     string
		start    string
		sig      *inferencev1.Signal
		want     Outcome
		side     execv1.OrderSide
		qty      string
		reduceOn bool
	}{
		{"up above threshold opens long", "0", sig(inferencev1.Direction_DIRECTION_UP, 0.5), OutcomeOrder, execv1.OrderSide_ORDER_SIDE_BUY, "0.10", false},
		{"up at threshold opens long", "0", sig(inferencev1.Direction_DIRECTION_UP, 0.3), OutcomeOrder, execv1.OrderSide_ORDER_SIDE_BUY, "0.10", false},
		{"up below threshold holds", "0", sig(inferencev1.Direction_DIRECTION_UP, 0.29), OutcomeHold, 0, "", false},
		{"down reverses a long", "0.10", sig(inferencev1.Direction_DIRECTION_DOWN, -0.6), OutcomeOrder, execv1.OrderSide_ORDER_SIDE_SELL, "0.20", false},
		{"flat closes reduce-only", "-0.10", sig(inferencev1.Direction_DIRECTION_FLAT, 0), OutcomeOrder, execv1.OrderSide_ORDER_SIDE_BUY, "0.10", true},
		{"already at target holds", "0.10", sig(inferencev1.Direction_DIRECTION_UP, 0.9), OutcomeHold, 0, "", false},
		{"unknown symbol", "0", &inferencev1.Signal{Symbol: "XAUUSD", Direction: inferencev1.Direction_DIRECTION_UP, Strength: 1}, OutcomeUnknown, 0, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, tr := newPolicy(base)
			tr.net["EURUSD"] = decimal.MustParse(c.start)
			out, _, err := p.OnSignal(context.Background(), c.sig)
			if err != nil || out != c.want {
				t.Fatalf("outcome %s (%v), want %s", out, err, c.want)
			}
			if c.want != OutcomeOrder {
				if len(tr.sent) != 0 {
					t.Fatalf("sent %v", tr.sent)
				}
				return
			}
			r := tr.sent[0]
			q, _ := decimal.FromProto(r.GetQuantity())
			if r.GetSide() != c.side || !q.Equal(decimal.MustParse(c.qty)) || r.GetReduceOnly() != c.reduceOn {
				t.Fatalf("order %v", r)
			}
			if r.GetModelName() != "m" || r.GetModelVersion() != "3" || r.GetStrategyId() != "s" || len(r.GetClientOrderId()) > 31 {
				t.Fatalf("attribution %v", r)
			}
		})
	}
}

func TestCooldownWorkingOrdersAndStaleSignals(t *testing.T) {
	cfg := base
	cfg.MaxSignalAge = time.Second
	p, tr := newPolicy(cfg)
	ctx := context.Background()
	s := sig(inferencev1.Direction_DIRECTION_UP, 0.9)
	s.TimeMsc = tr.now / 1000
	if out, _, _ := p.OnSignal(ctx, s); out != OutcomeOrder {
		t.Fatalf("first: %s", out)
	}
	down := sig(inferencev1.Direction_DIRECTION_DOWN, -0.9)
	down.TimeMsc = tr.now / 1000
	tr.now += 500_000
	if out, _, _ := p.OnSignal(ctx, down); out != OutcomeCooldown {
		t.Fatalf("within the cooldown: %s", out)
	}
	tr.now += 400_000
	tr.working = true
	if out, _, _ := p.OnSignal(ctx, down); out != OutcomeWorking {
		t.Fatalf("with a working order: %s", out)
	}
	tr.working = false
	tr.now += 200_000 // 1.1 s after the market data: stale
	if out, _, _ := p.OnSignal(ctx, down); out != OutcomeStale {
		t.Fatalf("stale: %s", out)
	}
	down.TimeMsc = tr.now / 1000
	if out, _, _ := p.OnSignal(ctx, down); out != OutcomeOrder {
		t.Fatalf("after the cooldown: %s", out)
	}
}

func TestMaxHoldingClosesOldPositions(t *testing.T) {
	p, tr := newPolicy(base)
	tr.net["EURUSD"], tr.opened["EURUSD"] = decimal.MustParse("0.10"), tr.now
	tr.now += time.Hour.Microseconds() - 1
	p.CheckHolding(context.Background(), []string{"EURUSD"})
	if len(tr.sent) != 0 {
		t.Fatal("closed before the maximum holding time")
	}
	tr.now += 2
	p.CheckHolding(context.Background(), []string{"EURUSD"})
	if len(tr.sent) != 1 || !tr.sent[0].GetReduceOnly() || tr.sent[0].GetSide() != execv1.OrderSide_ORDER_SIDE_SELL {
		t.Fatalf("close order %v", tr.sent)
	}
}

func TestScaleByStrengthRoundsDownToTheVolumeStep(t *testing.T) {
	cfg := base
	cfg.ScaleByStrength, cfg.Lots = true, decimal.MustParse("1.00")
	p, _ := newPolicy(cfg)
	inst, _ := (&trader{}).Instrument("EURUSD")
	got, set := p.Target(sig(inferencev1.Direction_DIRECTION_UP, 0.456), inst)
	if !set || !got.Equal(decimal.MustParse("0.45")) {
		t.Fatalf("target %s", got)
	}
}
