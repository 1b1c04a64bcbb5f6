package engine

import (
	"fmt"
	"regexp"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	typesv1 "github.com/kairos-mt5/kairos/gen/go/kairos/types/v1"
	"github.com/kairos-mt5/kairos/go/execution/decimal"
	"github.com/kairos-mt5/kairos/go/execution/fsm"
	"github.com/kairos-mt5/kairos/go/execution/market"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

// Violation is one bad field of a request.
type Violation struct {
	Field       string
	Description string
}

// InvalidError is a request refused before it reaches risk: nothing is journaled as accepted.
type InvalidError struct{ Violations []Violation }

func (e *InvalidError) Error() string {
	if len(e.Violations) == 0 {
		return "invalid request"
	}
	v := e.Violations[0]
	s := fmt.Sprintf("invalid %s: %s", v.Field, v.Description)
	if len(e.Violations) > 1 {
		s += fmt.Sprintf(" (and %d more)", len(e.Violations)-1)
	}
	return s
}

var clientOrderIDRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,31}$`)

// ValidClientOrderID reports whether id fits the contract (and the MT5 order comment).
func ValidClientOrderID(id string) bool { return clientOrderIDRe.MatchString(id) }

// stopField reads an optional price-like field (stop loss, take profit, stop distance): unset and
// zero mean none; otherwise positive, in range and within the symbol's digits.
func stopField(add func(f, format string, a ...any), field string, p *typesv1.Decimal, inst *market.Instrument) decimal.D {
	if p == nil {
		return decimal.Zero
	}
	d, err := decimal.FromProto(p)
	switch {
	case err != nil:
		add(field, "%v", err)
	case d.Sign() < 0:
		add(field, "%s must not be negative", d)
	case decimal.FromInt(maxValue).Less(d):
		add(field, "%s is out of range (max %d)", d, maxValue)
	case inst != nil && !d.FitsScale(inst.Digits):
		add(field, "%s has more than %d decimals for %s", d, inst.Digits, inst.Symbol)
	default:
		return d
	}
	return decimal.Zero
}

// maxAbsUnits bounds quantities and prices so fixed-point arithmetic never overflows.
const maxValue = 1_000_000_000

// Validate checks a SubmitOrderRequest against the contract and the instrument: it returns the
// parsed risk request or an *InvalidError listing every bad field.
func Validate(req *execv1.SubmitOrderRequest, instrument func(string) (*market.Instrument, bool), nowUS int64) (*risk.Request, *InvalidError) {
	var bad []Violation
	add := func(f, format string, a ...any) { bad = append(bad, Violation{f, fmt.Sprintf(format, a...)}) }
	if !ValidClientOrderID(req.GetClientOrderId()) {
		add("client_order_id", "%q must be 1-31 characters of [A-Za-z0-9_.:-]", req.GetClientOrderId())
	}
	inst, ok := instrument(req.GetSymbol())
	if !ok {
		add("symbol", "unknown symbol %q", req.GetSymbol())
	}
	if s := req.GetSide(); s != execv1.OrderSide_ORDER_SIDE_BUY && s != execv1.OrderSide_ORDER_SIDE_SELL {
		add("side", "must be BUY or SELL, got %v", s)
	}
	t := req.GetType()
	if t < execv1.OrderType_ORDER_TYPE_MARKET || t > execv1.OrderType_ORDER_TYPE_STOP_LIMIT {
		add("type", "must be MARKET, LIMIT, STOP_MARKET or STOP_LIMIT, got %v", t)
	}
	tif := req.GetTimeInForce()
	if tif < 0 || tif > execv1.TimeInForce_TIME_IN_FORCE_DAY {
		add("time_in_force", "unknown value %d", tif)
	}
	if tif == execv1.TimeInForce_TIME_IN_FORCE_GTD && req.GetExpireTimeUs() <= nowUS {
		add("expire_time_us", "GTD needs an expiry in the future, got %d", req.GetExpireTimeUs())
	}
	if len(req.GetStrategyId()) > 64 || len(req.GetModelName()) > 128 || len(req.GetModelVersion()) > 64 {
		add("strategy_id", "strategy_id ≤ 64, model_name ≤ 128, model_version ≤ 64 characters")
	}
	num := func(field string, p *typesv1.Decimal, need bool, scale uint8, step *decimal.D) decimal.D {
		d, err := decimal.FromProto(p)
		switch {
		case err != nil:
			add(field, "%v", err)
		case !need && !d.IsZero():
			add(field, "must be zero (or unset) for a %v order", t)
		case !need:
		case d.Sign() <= 0:
			add(field, "%s must be positive", d)
		case decimal.FromInt(maxValue).Less(d):
			add(field, "%s is out of range (max %d)", d, maxValue)
		case inst != nil && !d.FitsScale(scale):
			add(field, "%s has more than %d decimals for %s", d, scale, inst.Symbol)
		case step != nil && !d.IsMultipleOf(*step):
			add(field, "%s is not a multiple of the volume step %s", d, *step)
		}
		return d
	}
	r := &risk.Request{ClientOrderID: req.GetClientOrderId(), Symbol: req.GetSymbol(), Side: fsm.Side(req.GetSide()),
		Type: fsm.Type(req.GetType()), ReduceOnly: req.GetReduceOnly(), StrategyID: req.GetStrategyId()}
	var digits, vscale uint8
	var step *decimal.D
	if inst != nil {
		digits, vscale, step = inst.Digits, inst.VolumeScale(), &inst.VolumeStep
	}
	r.Quantity = num("quantity", req.GetQuantity(), true, vscale, step)
	needPrice := t == execv1.OrderType_ORDER_TYPE_LIMIT || t == execv1.OrderType_ORDER_TYPE_STOP_LIMIT
	needTrigger := t == execv1.OrderType_ORDER_TYPE_STOP_MARKET || t == execv1.OrderType_ORDER_TYPE_STOP_LIMIT
	r.Price = num("price", req.GetPrice(), needPrice, digits, nil)
	r.TriggerPrice = num("trigger_price", req.GetTriggerPrice(), needTrigger, digits, nil)
	r.StopLoss = stopField(add, "stop_loss", req.GetStopLoss(), inst)
	r.TakeProfit = stopField(add, "take_profit", req.GetTakeProfit(), inst)
	stopField(add, "stop_distance", req.GetStopDistance(), inst)
	if inst != nil && r.Quantity.Sign() > 0 && r.Quantity.Less(inst.VolumeMin) {
		add("quantity", "%s is below the %s minimum %s", r.Quantity, inst.Symbol, inst.VolumeMin)
	}
	if len(bad) > 0 {
		return nil, &InvalidError{bad}
	}
	return r, nil
}
