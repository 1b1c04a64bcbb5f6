package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	inferencev1 "github.com/kairos-mt5/kairos/gen/go/kairos/inference/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/config"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/metrics"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

// trader is a hand-written fake of the engine: a net position per symbol and the orders sent.
type trader struct {
	now     int64
	net     map[string]decimal.D
	opened  map[string]int64
	working bool
	sent    []*execv1.SubmitOrderRequest
	// events: "sent <symbol>" when an order is submitted, "durable <symbol>" when it is settled
	// (the policy settles on a goroutine of its own, hence the lock).
	mu        sync.Mutex
	events    []string
	settleErr map[string]error // what settling an order of the symbol returns
	gate      chan struct{}    // when set, settling waits until it is closed (or its context ends)
	refuse    map[string]bool  // symbols whose orders the engine refuses for its denial budget
}

func (f *trader) event(e string) {
	f.mu.Lock()
	f.events = append(f.events, e)
	f.mu.Unlock()
}

func (f *trader) eventList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
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
func (f *trader) SubmitIntentLater(_ context.Context, r *execv1.SubmitOrderRequest, _ []*typesv1.HopStamp) (*execv1.Order, func(context.Context) error, error) {
	if f.refuse[r.GetSymbol()] {
		f.event("refused " + r.GetSymbol())
		return nil, nil, fmt.Errorf("engine: %w", risk.ErrTooManyDenials)
	}
	f.sent = append(f.sent, r)
	f.event("sent " + r.GetSymbol())
	q, _ := decimal.FromProto(r.GetQuantity())
	if r.GetSide() == execv1.OrderSide_ORDER_SIDE_SELL {
		q = q.Neg()
	}
	f.net[r.GetSymbol()] = f.net[r.GetSymbol()].Add(q)
	f.opened[r.GetSymbol()] = f.now
	settle := func(ctx context.Context) error {
		if f.gate != nil {
			select {
			case <-f.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		f.event("durable " + r.GetSymbol())
		return f.settleErr[r.GetSymbol()]
	}
	return &execv1.Order{ClientOrderId: r.GetClientOrderId(), Status: execv1.OrderStatus_ORDER_STATUS_FILLED}, settle, nil
}

func newPolicy(cfg Config) (*Policy, *trader) {
	tr := &trader{now: 1_000_000_000_000, net: map[string]decimal.D{}, opened: map[string]int64{}}
	return New(cfg, tr, slog.New(slog.NewJSONHandler(io.Discard, nil)), nil), tr
}

// rules is the policy of the tests: edge = p_up - p_down, entry at 0.3, exit below 0.1, at least two
// bars held, at most five, one bar of cooldown, fixed 0.10 lots, a stop at 3 x vol x price.
var rules = &inferencev1.DecisionPolicy{EntryEdge: 0.3, ExitEdge: 0.1, MoveUp: 1, MoveDown: 1, MinHoldBars: 2,
	MaxHoldBars: 5, CooldownBars: 1, MaxLots: 0.10, StopVolMult: 3}

func sig(bar int64, pDown, pUp float32) *inferencev1.Signal {
	return &inferencev1.Signal{Symbol: "EURUSD", TimeMsc: 1_700_000_000_000 + bar*60_000, Outputs: []float32{pDown, 1 - pDown - pUp, pUp},
		ModelName: "m", ModelVersion: "3", Bid: 1.1, Ask: 1.1001, RealisedVol: 2e-4, Policy: rules}
}

var base = Config{StrategyID: "s", Fallback: &Rules{EntryEdge: 0.3, MoveUp: 1, MoveDown: 1, MinHoldBars: 1, MaxLots: 0.10}}

func qty(t *testing.T, r *execv1.SubmitOrderRequest) string {
	t.Helper()
	q, err := decimal.FromProto(r.GetQuantity())
	if err != nil {
		t.Fatal(err)
	}
	if r.GetSide() == execv1.OrderSide_ORDER_SIDE_SELL {
		q = q.Neg()
	}
	return q.String()
}

// A sequence of bars through the policy the signal carries: every order is the step from the engine's
// position to the decided one, attributed to the model, reduce-only when it goes flat.
func TestSignalsTradeByTheCarriedPolicy(t *testing.T) {
	steps := []struct {
		name        string
		pDown, pUp  float32
		want        Outcome
		order       string // signed quantity, "" for none
		reduceOnly  bool
		stopPresent bool
	}{
		{"below the entry threshold holds flat", 0.3, 0.5, OutcomeHold, "", false, false},
		{"edge 0.6 enters long with a stop", 0.1, 0.7, OutcomeOrder, "0.10", false, true},
		{"the minimum hold keeps a reversal out", 0.7, 0.1, OutcomeHold, "", false, false},
		{"a reversal with a cooldown exits reduce-only", 0.7, 0.1, OutcomeOrder, "-0.10", true, false},
		{"the cooldown bar holds flat", 0.7, 0.1, OutcomeHold, "", false, false},
		{"then a short is entered", 0.7, 0.1, OutcomeOrder, "-0.10", false, true},
		{"inside the entry but beyond the exit holds", 0.4, 0.2, OutcomeHold, "", false, false},
		{"an edge inside the exit band closes", 0.3, 0.3, OutcomeOrder, "0.10", true, false},
	}
	p, tr := newPolicy(base)
	for k, s := range steps {
		sent := len(tr.sent)
		out, _, err := p.OnSignal(context.Background(), sig(int64(k), s.pDown, s.pUp))
		if err != nil || out != s.want {
			t.Fatalf("bar %d (%s): outcome %s (%v), want %s", k, s.name, out, err, s.want)
		}
		if s.order == "" {
			if len(tr.sent) != sent {
				t.Fatalf("bar %d (%s): sent %v", k, s.name, tr.sent[sent:])
			}
			continue
		}
		r := tr.sent[len(tr.sent)-1]
		if got := qty(t, r); got != s.order || r.GetReduceOnly() != s.reduceOnly || (r.GetStopLoss() != nil) != s.stopPresent {
			t.Fatalf("bar %d (%s): order %v", k, s.name, r)
		}
		if r.GetModelName() != "m" || r.GetModelVersion() != "3" || r.GetStrategyId() != "s" || len(r.GetClientOrderId()) > 31 {
			t.Fatalf("attribution %v", r)
		}
	}
	// The stop is 3 x 2e-4 x 1.1 = 0.00066 from the quote the signal was decided on: below its ask
	// for the long, above its bid for the short (the backtest's level, whatever quote the engine has).
	long, _ := decimal.FromProto(tr.sent[0].GetStopLoss())
	short, _ := decimal.FromProto(tr.sent[2].GetStopLoss())
	if !long.Equal(decimal.MustParse("1.09944")) || !short.Equal(decimal.MustParse("1.10066")) {
		t.Fatalf("stop losses %s (long) %s (short)", long, short)
	}
	if tr.sent[0].GetStopDistance() != nil {
		t.Fatalf("the level is sent, not a distance the engine would set from its own quote")
	}
}

func TestMaxHoldingClosesAfterThatManyBars(t *testing.T) {
	p, tr := newPolicy(base)
	for k := int64(0); k < 5; k++ {
		if _, _, err := p.OnSignal(context.Background(), sig(k, 0.1, 0.8)); err != nil {
			t.Fatal(err)
		}
		if len(tr.sent) != 1 {
			t.Fatalf("bar %d: %d orders", k, len(tr.sent))
		}
	}
	out, _, _ := p.OnSignal(context.Background(), sig(5, 0.1, 0.8))
	if out != OutcomeOrder || len(tr.sent) != 2 || !tr.sent[1].GetReduceOnly() {
		t.Fatalf("bar 5: %s %v", out, tr.sent)
	}
}

func TestSignalsThatCannotBeAppliedAreRefused(t *testing.T) {
	bad := func(mut func(*inferencev1.DecisionPolicy)) *inferencev1.Signal {
		s := sig(0, 0.1, 0.8)
		s.Policy = proto.Clone(rules).(*inferencev1.DecisionPolicy)
		mut(s.Policy)
		return s
	}
	cases := []struct {
		name string
		cfg  Config
		sig  *inferencev1.Signal
		want Outcome
	}{
		{"a zero entry threshold", base, bad(func(p *inferencev1.DecisionPolicy) { p.EntryEdge = 0 }), OutcomeInvalidPolicy},
		{"an exit beyond the entry", base, bad(func(p *inferencev1.DecisionPolicy) { p.ExitEdge = 0.5 }), OutcomeInvalidPolicy},
		{"a NaN class move", base, bad(func(p *inferencev1.DecisionPolicy) { p.MoveUp = math.NaN() }), OutcomeInvalidPolicy},
		{"no minimum hold", base, bad(func(p *inferencev1.DecisionPolicy) { p.MinHoldBars = 0 }), OutcomeInvalidPolicy},
		{"no policy and no fallback", Config{StrategyID: "s"}, func() *inferencev1.Signal { s := sig(0, 0.1, 0.8); s.Policy = nil; return s }(), OutcomeInvalidPolicy},
		{"no policy trades the fallback", base, func() *inferencev1.Signal { s := sig(0, 0.1, 0.8); s.Policy = nil; return s }(), OutcomeOrder},
		{"unknown symbol", base, func() *inferencev1.Signal { s := sig(0, 0.1, 0.8); s.Symbol = "XAUUSD"; return s }(), OutcomeUnknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, tr := newPolicy(c.cfg)
			out, _, err := p.OnSignal(context.Background(), c.sig)
			if err != nil || out != c.want {
				t.Fatalf("outcome %s (%v), want %s", out, err, c.want)
			}
			if (out == OutcomeOrder) != (len(tr.sent) == 1) {
				t.Fatalf("sent %v", tr.sent)
			}
		})
	}
}

func TestRulesNameTheFieldTheyRefuse(t *testing.T) {
	_, err := RulesFromProto(&inferencev1.DecisionPolicy{EntryEdge: 1e-4, ExitEdge: 0, MoveUp: 1e-4, MoveDown: 1e-4, MinHoldBars: 3, MaxHoldBars: 2, MaxLots: 1})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "max_hold_bars" || !strings.Contains(err.Error(), "policy.max_hold_bars") {
		t.Fatalf("error %v", err)
	}
}

func TestStaleDuplicateAndWorkingSignals(t *testing.T) {
	cfg := base
	cfg.MaxSignalAge = time.Second
	p, tr := newPolicy(cfg)
	ctx := context.Background()
	fresh := func(bar int64, pDown, pUp float32) *inferencev1.Signal {
		s := sig(bar, pDown, pUp)
		s.TimeMsc = tr.now/1000 + bar
		return s
	}
	if out, _, _ := p.OnSignal(ctx, fresh(0, 0.1, 0.8)); out != OutcomeOrder {
		t.Fatalf("entry: %s", out)
	}
	if out, _, _ := p.OnSignal(ctx, fresh(0, 0.1, 0.8)); out != OutcomeDuplicate {
		t.Fatalf("the same bar again: %s", out)
	}
	old := fresh(1, 0.8, 0.1)
	tr.now += 2_000_000
	if out, _, _ := p.OnSignal(ctx, old); out != OutcomeStale {
		t.Fatalf("stale: %s", out)
	}
	if st, _ := p.State("EURUSD"); st.Held != 1 || st.Side != 1 {
		t.Fatalf("a stale bar still counts: %+v", st)
	}
	tr.working = true
	s := sig(3, 0.8, 0.1)
	s.TimeMsc = tr.now / 1000
	if out, _, _ := p.OnSignal(ctx, s); out != OutcomeWorking {
		t.Fatalf("with a working order: %s", out)
	}
}

func TestAPositionTheEngineHoldsBecomesThePolicys(t *testing.T) {
	p, tr := newPolicy(base)
	tr.net["EURUSD"] = decimal.MustParse("-0.10")
	if out, _, _ := p.OnSignal(context.Background(), sig(0, 0.8, 0.1)); out != OutcomeHold {
		t.Fatalf("first signal: %s %v", out, tr.sent)
	}
	if st, _ := p.State("EURUSD"); st.Side != -1 || st.Steps != 10 {
		t.Fatalf("state %+v", st)
	}
}

func TestSizingUsesTheVolatilityTargetAndTheVolumeStep(t *testing.T) {
	p, tr := newPolicy(base)
	s := sig(0, 0.1, 0.8)
	s.Policy = proto.Clone(rules).(*inferencev1.DecisionPolicy)
	s.Policy.MaxLots, s.Policy.TargetVol, s.RealisedVol = 1, 0.9e-4, 2e-4 // 0.45 lots
	if out, _, _ := p.OnSignal(context.Background(), s); out != OutcomeOrder || qty(t, tr.sent[0]) != "0.45" {
		t.Fatalf("%s %v", out, tr.sent)
	}
}

func TestTheRefusedPoliciesRememberedAreBoundedWhateverTheModelNames(t *testing.T) {
	p, _ := newPolicy(base)
	for i := range 3 * maxRefusedKeys {
		s := sig(int64(i), 0.1, 0.8)
		s.ModelName = fmt.Sprintf("model-%d", i)
		s.Policy = proto.Clone(rules).(*inferencev1.DecisionPolicy)
		s.Policy.EntryEdge = 0
		if out, _, err := p.OnSignal(context.Background(), s); err != nil || out != OutcomeInvalidPolicy {
			t.Fatalf("signal %d: %s %v", i, out, err)
		}
	}

	p.mu.Lock()
	n := len(p.refused)
	p.mu.Unlock()
	if n > maxRefusedKeys {
		t.Fatalf("%d refused policies remembered, want at most %d", n, maxRefusedKeys)
	}
}

// A protective stop (or anything else outside the policy) that closes its position makes the policy
// flat as after an exit on that bar: it does not buy back on the next signal, and the cooldown holds.
func TestAPositionClosedOutsideThePolicyIsNotReEntered(t *testing.T) {
	p, tr := newPolicy(base)
	ctx := context.Background()
	if out, _, _ := p.OnSignal(ctx, sig(0, 0.1, 0.8)); out != OutcomeOrder {
		t.Fatalf("entry: %s", out)
	}
	tr.net["EURUSD"] = decimal.Zero // the venue's stop-loss closed it
	out, _, _ := p.OnSignal(ctx, sig(1, 0.1, 0.8))
	if out != OutcomeHold || len(tr.sent) != 1 {
		t.Fatalf("after the stop-out: %s, %d orders", out, len(tr.sent))
	}
	if st, _ := p.State("EURUSD"); st.Side != 0 || st.SinceExit != 1 { // the exit counted on the bar before
		t.Fatalf("state after the stop-out %+v", st)
	}
	// One bar of cooldown later, the same edge enters again.
	if out, _, _ := p.OnSignal(ctx, sig(2, 0.1, 0.8)); out != OutcomeOrder || len(tr.sent) != 2 {
		t.Fatalf("after the cooldown: %s, %d orders", out, len(tr.sent))
	}
}

// burst queues a signal of each symbol (all entries), then an undecodable message.
func burst(symbols ...string) chan *nats.Msg {
	ch := make(chan *nats.Msg, 8)
	for _, sym := range symbols {
		s := sig(1, 0.05, 0.9)
		s.Symbol = sym
		data, _ := proto.Marshal(s)
		ch <- &nats.Msg{Subject: "kairos.signal." + sym, Data: data}
	}
	ch <- &nats.Msg{Subject: "kairos.signal.EURUSD", Data: []byte{0xff}} // counted, nothing else
	return ch
}

// decisions records what Decided was told, safely across the settling goroutine.
type decisions struct {
	mu  sync.Mutex
	got []string
}

func (d *decisions) add(sig *inferencev1.Signal, out Outcome, _ int) {
	d.mu.Lock()
	d.got = append(d.got, sig.GetSymbol()+" "+string(out))
	d.mu.Unlock()
}

func (d *decisions) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A signal is decided, and its order sent, without waiting for the orders of the signals before it
// to be durable: signals that come together (a bar closing for several symbols at once) are all
// decided while the first order is still being made durable, so the journal can commit them
// together instead of the last waiting for a flush per order before it (ADR 0116). Each signal is
// counted and told to Decided only once its order is durable, in the order they came; an order whose
// settle fails makes its signal an error.
func TestSignalsAreDecidedWithoutWaitingForTheOrdersBeforeThemToBeDurable(t *testing.T) {
	var d decisions
	p, tr := newPolicy(Config{StrategyID: "kairos-signal", Decided: d.add})
	tr.settleErr = map[string]error{"GBPUSD": errors.New("journal: disk full")}
	tr.gate = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx, burst("EURUSD", "GBPUSD", "AUDUSD")) }()

	sent := []string{"sent EURUSD", "sent GBPUSD", "sent AUDUSD"}
	waitFor(t, "the three orders to be sent", func() bool { return len(tr.eventList()) == 3 })
	if got := tr.eventList(); fmt.Sprint(got) != fmt.Sprint(sent) || len(d.list()) != 0 {
		t.Fatalf("while the first order is not durable: events %v, decided %v; want %v and nothing decided", got, d.list(), sent)
	}
	close(tr.gate)
	waitFor(t, "three decisions", func() bool { return len(d.list()) == 3 })
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if got, want := tr.eventList(), append(sent, "durable EURUSD", "durable GBPUSD", "durable AUDUSD"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if got, want := d.list(), []string{"EURUSD order", "GBPUSD error", "AUDUSD order"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("decided %v, want %v", got, want)
	}
}

// When Run ends with orders not yet durable, it settles every one of them before it returns (a
// repeat of an order's id waits for that settling): their signals end as errors, none is left.
func TestWhenRunEndsEveryDecidedSignalIsSettledBeforeItReturns(t *testing.T) {
	var d decisions
	p, tr := newPolicy(Config{StrategyID: "kairos-signal", Decided: d.add})
	tr.gate = make(chan struct{}) // never opened: the journal does not answer
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx, burst("EURUSD", "GBPUSD")) }()
	waitFor(t, "the orders to be sent", func() bool { return len(tr.eventList()) == 2 })
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if got, want := d.list(), []string{"EURUSD error", "GBPUSD error"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("decided %v, want %v", got, want)
	}
}

// A signal whose order the engine refuses for its denial budget (a submission risk would deny while
// the budget is spent, risk.ErrTooManyDenials) is dropped and counted as refused: the consumer goes
// on with the next signal, and nothing is logged per refusal.
func TestASignalRefusedForTheDenialBudgetIsDroppedAndCounted(t *testing.T) {
	var d decisions
	var logs strings.Builder
	m := metrics.New()
	tr := &trader{now: 1_000_000_000_000, net: map[string]decimal.D{}, opened: map[string]int64{}, refuse: map[string]bool{"GBPUSD": true}}
	p := New(Config{StrategyID: "kairos-signal", Fallback: base.Fallback, Decided: d.add}, tr, slog.New(slog.NewTextHandler(&logs, nil)), m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- p.Run(ctx, burst("GBPUSD", "EURUSD")) }()

	waitFor(t, "two decisions", func() bool { return len(d.list()) == 2 })
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}

	if got, want := d.list(), []string{"GBPUSD refused", "EURUSD order"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("decided %v, want %v", got, want)
	}
	if n := testutil.ToFloat64(m.Signals.WithLabelValues("GBPUSD", string(OutcomeRefused))); n != 1 {
		t.Fatalf("kairos_execution_signals_total{symbol=GBPUSD,outcome=refused} = %v, want 1", n)
	}
	if strings.Contains(logs.String(), "GBPUSD") {
		t.Fatalf("a refusal was logged: %s", logs.String())
	}
}
