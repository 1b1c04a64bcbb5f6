package policy

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// num is a JSON number, or the string "NaN".
type num float64

func (n *num) UnmarshalJSON(b []byte) error {
	if string(b) == `"NaN"` {
		*n = num(math.NaN())
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	*n = num(f)
	return err
}

type goldenCase struct {
	Name   string `json:"name"`
	Policy struct {
		EntryEdge    float64 `json:"entry_edge"`
		ExitEdge     float64 `json:"exit_edge"`
		MoveUp       float64 `json:"move_up"`
		MoveDown     float64 `json:"move_down"`
		MinHoldBars  int     `json:"min_hold_bars"`
		MaxHoldBars  int     `json:"max_hold_bars"`
		CooldownBars int     `json:"cooldown_bars"`
		MaxLots      float64 `json:"max_lots"`
		TargetVol    float64 `json:"target_vol"`
		StopVolMult  float64 `json:"stop_vol_mult"`
	} `json:"policy"`
	LotStep float64 `json:"lot_step"`
	MinLots float64 `json:"min_lots"`
	Bars    []struct {
		Probs [3]num `json:"probs"`
		Vol   num    `json:"vol"`
		Price num    `json:"price"`
	} `json:"bars"`
	Expected []struct {
		Action       string  `json:"action"`
		Reason       string  `json:"reason"`
		Side         int     `json:"side"`
		Steps        int64   `json:"steps"`
		StopDistance float64 `json:"stop_distance"`
	} `json:"expected"`
}

// The vectors python/tests/training/test_policy.py also runs: the two implementations cannot drift.
func TestGoldenVectorsMatchThePythonPolicy(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "proto", "testdata", "policy", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []goldenCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Cases) < 10 {
		t.Fatalf("only %d cases", len(doc.Cases))
	}
	for _, c := range doc.Cases {
		t.Run(c.Name, func(t *testing.T) {
			p := c.Policy
			r := Rules{EntryEdge: p.EntryEdge, ExitEdge: p.ExitEdge, MoveUp: p.MoveUp, MoveDown: p.MoveDown,
				MinHoldBars: p.MinHoldBars, MaxHoldBars: p.MaxHoldBars, CooldownBars: p.CooldownBars,
				MaxLots: p.MaxLots, TargetVol: p.TargetVol, StopVolMult: p.StopVolMult}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			st := NewState()
			for k, b := range c.Bars {
				d := r.Decide(Sizing{LotStep: c.LotStep, MinLots: c.MinLots}, &st,
					Input{PDown: float64(b.Probs[0]), PUp: float64(b.Probs[2]), Vol: float64(b.Vol), Price: float64(b.Price)})
				w := c.Expected[k]
				if d.Action.String() != w.Action || d.Reason.String() != w.Reason || d.Side != w.Side || d.Steps != w.Steps || d.StopDistance != w.StopDistance {
					t.Fatalf("bar %d: got %s/%s side %d steps %d stop %v, want %+v", k, d.Action, d.Reason, d.Side, d.Steps, d.StopDistance, w)
				}
			}
		})
	}
}
