package policy

import (
	"fmt"
	"math"

	inferencev1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
)

// Rules is a model's decision policy (kairos.inference.v1.DecisionPolicy, the model card's policy
// section), validated. Decide applies it bar by bar exactly as python/kairos/training/policy.py does
// in the backtest; the golden vectors in proto/testdata/policy hold the two to the same decisions.
type Rules struct {
	// EntryEdge is the entry threshold on the edge, return units.
	EntryEdge float64
	// ExitEdge is the exit threshold: a long exits below it, a short above its negative.
	ExitEdge float64
	// MoveUp and MoveDown weigh p_up and p_down into the edge.
	MoveUp, MoveDown float64
	// MinHoldBars, MaxHoldBars (0: none) and CooldownBars count closed bars (signals of the symbol).
	MinHoldBars, MaxHoldBars, CooldownBars int
	// MaxLots caps every entry; TargetVol (0: off) sizes it to TargetVol / realised volatility.
	MaxLots, TargetVol float64
	// StopVolMult sets the protective stop distance, in realised volatility x price (0: none).
	StopVolMult float64
}

// FieldError names the policy field that cannot be applied.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return "policy." + e.Field + " " + e.Problem }

// RulesFromProto converts and validates a signal's policy.
func RulesFromProto(p *inferencev1.DecisionPolicy) (Rules, error) {
	if p == nil {
		return Rules{}, &FieldError{Field: "", Problem: "is missing"}
	}
	r := Rules{
		EntryEdge: p.GetEntryEdge(), ExitEdge: p.GetExitEdge(), MoveUp: p.GetMoveUp(), MoveDown: p.GetMoveDown(),
		MinHoldBars: int(p.GetMinHoldBars()), MaxHoldBars: int(p.GetMaxHoldBars()), CooldownBars: int(p.GetCooldownBars()),
		MaxLots: p.GetMaxLots(), TargetVol: p.GetTargetVol(), StopVolMult: p.GetStopVolMult(),
	}
	return r, r.Validate()
}

// maxBars bounds the bar counts so that counters never overflow (about 2000 years of M1 bars).
const maxBars = 1 << 30

// Validate returns a *FieldError for the first field that cannot be applied (the same rules as
// DecisionPolicy.problem in python/kairos/features/card.py).
func (r Rules) Validate() error {
	finite := []struct {
		name string
		v    float64
	}{{"entry_edge", r.EntryEdge}, {"exit_edge", r.ExitEdge}, {"move_up", r.MoveUp}, {"move_down", r.MoveDown},
		{"max_lots", r.MaxLots}, {"target_vol", r.TargetVol}, {"stop_vol_mult", r.StopVolMult}}
	for _, f := range finite {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			return &FieldError{f.name, fmt.Sprintf("must be finite, got %v", f.v)}
		}
	}
	checks := []struct {
		name string
		ok   bool
		why  string
		v    any
	}{
		{"entry_edge", r.EntryEdge > 0, "must be > 0", r.EntryEdge},
		{"exit_edge", r.ExitEdge >= 0 && r.ExitEdge <= r.EntryEdge, "must be within 0..entry_edge", r.ExitEdge},
		{"move_up", r.MoveUp > 0, "must be > 0", r.MoveUp},
		{"move_down", r.MoveDown > 0, "must be > 0", r.MoveDown},
		{"min_hold_bars", r.MinHoldBars >= 1 && r.MinHoldBars < maxBars, "must be >= 1", r.MinHoldBars},
		{"max_hold_bars", r.MaxHoldBars == 0 || r.MaxHoldBars >= r.MinHoldBars && r.MaxHoldBars < maxBars, "must be 0 or >= min_hold_bars", r.MaxHoldBars},
		{"cooldown_bars", r.CooldownBars >= 0 && r.CooldownBars < maxBars, "must be >= 0", r.CooldownBars},
		{"max_lots", r.MaxLots > 0, "must be > 0", r.MaxLots},
		{"target_vol", r.TargetVol >= 0, "must be >= 0", r.TargetVol},
		{"stop_vol_mult", r.StopVolMult >= 0, "must be >= 0", r.StopVolMult},
	}
	for _, c := range checks {
		if !c.ok {
			return &FieldError{c.name, fmt.Sprintf("%s, got %v", c.why, c.v)}
		}
	}
	return nil
}

// Action is what one bar's decision does to the position.
type Action uint8

// Actions.
const (
	Hold Action = iota
	Enter
	Exit
	Reverse
)

func (a Action) String() string {
	return [...]string{"hold", "enter", "exit", "reverse"}[a]
}

// Reason is the rule that fired.
type Reason uint8

// Reasons.
const (
	ReasonNone Reason = iota
	ReasonEntry
	ReasonExitEdge
	ReasonReversal
	ReasonMaxHold
)

func (r Reason) String() string {
	return [...]string{"none", "entry", "exit_edge", "reversal", "max_hold"}[r]
}

// never is SinceExit before any exit: beyond every cooldown (Python's NEVER).
const never = 1 << 30

// stepTolerance absorbs representation error when sizes are rounded down to the volume step.
const stepTolerance = 1e-9

// State is one symbol's position as the policy holds it, and its bar counters.
type State struct {
	// Side is -1 short, 0 flat, +1 long.
	Side int
	// Steps is the size in volume steps.
	Steps int64
	// Held counts bars closed since the entry decision.
	Held int
	// SinceExit counts bars closed since the last exit decision.
	SinceExit int
}

// NewState is a flat symbol that never traded.
func NewState() State { return State{SinceExit: never} }

// Input is one closed bar as a signal carries it.
type Input struct {
	PDown, PUp float64
	// Vol is the realised volatility, return units; Price scales the stop distance.
	Vol, Price float64
}

// Sizing is what the instrument adds: its volume step and minimum, lots.
type Sizing struct {
	LotStep, MinLots float64
}

// Decision is the outcome of one bar.
type Decision struct {
	Action Action
	Reason Reason
	Side   int
	Steps  int64
	Edge   float64
	// StopDistance is the protective stop's distance in price units on an entry or reversal.
	StopDistance float64
}

// Edge is the expected forward move in return units; NaN unless both probabilities lie in 0..1.
// The conversions keep Go from fusing the multiply-adds, so the value is Python's to the bit.
func (r Rules) Edge(pDown, pUp float64) float64 {
	if !(pDown >= 0 && pDown <= 1 && pUp >= 0 && pUp <= 1) {
		return math.NaN()
	}
	return float64(pUp*r.MoveUp) - float64(pDown*r.MoveDown)
}

// SizeSteps is the entry size in volume steps; 0 when none is valid.
func (r Rules) SizeSteps(sz Sizing, vol float64) int64 {
	lots := r.MaxLots
	if r.TargetVol > 0 {
		if !(vol > 0) || math.IsInf(vol, 0) {
			return 0
		}
		lots = math.Min(r.MaxLots, r.TargetVol/vol)
	}
	steps := math.Floor(float64(lots/sz.LotStep) + stepTolerance)
	if float64(steps*sz.LotStep)+float64(stepTolerance*sz.LotStep) < sz.MinLots {
		return 0
	}
	return int64(steps)
}

// StopDistance is the protective stop's distance, price units (0: none).
func (r Rules) StopDistance(vol, price float64) float64 {
	if r.StopVolMult <= 0 || !(vol > 0) || math.IsInf(vol, 0) || !(price > 0) {
		return 0
	}
	return float64(float64(r.StopVolMult*vol) * price)
}

// Decide applies one closed bar to st and returns the decision. Unusable probabilities make no
// signal-driven decision, but the maximum holding time still closes a position.
func (r Rules) Decide(sz Sizing, st *State, in Input) Decision {
	edge := r.Edge(in.PDown, in.PUp)
	if st.Side != 0 {
		st.Held++
		if r.MaxHoldBars > 0 && st.Held >= r.MaxHoldBars {
			return exit(st, ReasonMaxHold, edge)
		}
		if st.Held < r.MinHoldBars || math.IsNaN(edge) {
			return Decision{Action: Hold, Side: st.Side, Steps: st.Steps, Edge: edge}
		}
		if st.Side > 0 && edge <= -r.EntryEdge || st.Side < 0 && edge >= r.EntryEdge {
			var steps int64
			if r.CooldownBars == 0 {
				steps = r.SizeSteps(sz, in.Vol)
			}
			if steps == 0 {
				return exit(st, ReasonReversal, edge)
			}
			st.Side, st.Steps, st.Held = -st.Side, steps, 0
			return Decision{Action: Reverse, Reason: ReasonReversal, Side: st.Side, Steps: steps, Edge: edge, StopDistance: r.StopDistance(in.Vol, in.Price)}
		}
		if st.Side > 0 && edge < r.ExitEdge || st.Side < 0 && edge > -r.ExitEdge {
			return exit(st, ReasonExitEdge, edge)
		}
		return Decision{Action: Hold, Side: st.Side, Steps: st.Steps, Edge: edge}
	}
	if st.SinceExit < never {
		st.SinceExit++
	}
	side := 0
	if edge >= r.EntryEdge {
		side = 1
	} else if edge <= -r.EntryEdge {
		side = -1
	}
	if side == 0 || st.SinceExit <= r.CooldownBars {
		return Decision{Edge: edge}
	}
	steps := r.SizeSteps(sz, in.Vol)
	if steps == 0 {
		return Decision{Edge: edge}
	}
	st.Side, st.Steps, st.Held = side, steps, 0
	return Decision{Action: Enter, Reason: ReasonEntry, Side: side, Steps: steps, Edge: edge, StopDistance: r.StopDistance(in.Vol, in.Price)}
}

func exit(st *State, why Reason, edge float64) Decision {
	st.Side, st.Steps, st.Held, st.SinceExit = 0, 0, 0, 0
	return Decision{Action: Exit, Reason: why, Edge: edge}
}
