// Trading state and the kill switch's flatten.

package engine

import (
	"context"
	"fmt"

	execv1 "github.com/kairos-mt5/kairos/gen/go/kairos/execution/v1"
	"github.com/kairos-mt5/kairos/go/execution/journal"
	"github.com/kairos-mt5/kairos/go/execution/risk"
)

// SetTradingState switches the trading state. ACTIVE and REDUCING need a reconciled venue.
func (e *Engine) SetTradingState(ctx context.Context, s risk.State, reason string) (risk.State, error) {
	if s < risk.Active || s > risk.Halted {
		return 0, fmt.Errorf("%w: %d", ErrInvalidState, s)
	}
	e.mu.Lock()
	if s != risk.Halted && !e.opt.Risk.Reconciled() {
		e.mu.Unlock()
		return 0, ErrNotReconciled
	}
	now := e.opt.Clock()
	prev := e.opt.Risk.SetState(s)
	e.lastState, e.hasState = s, true
	e.setStateGauge()
	t, err := e.append(now, []journal.Entry{
		anyEntry(journal.KindCommand, "", &execv1.SetTradingStateRequest{State: execv1.TradingState(s), Reason: reason}),
		e.stateEntry(s, reason, now)})
	e.mu.Unlock()
	e.log.Warn("trading state changed", "previous", prev.String(), "current", s.String(), "reason", reason)
	if err != nil {
		return prev, err
	}
	return prev, e.wait(ctx, t)
}

// Flatten sends a reduce-only market order closing each open position. These orders pass the
// trading-state check (the kill switch flattens while HALTED) but every other rule applies.
func (e *Engine) Flatten(ctx context.Context, reason string) ([]string, error) {
	e.mu.Lock()
	var reqs []*execv1.SubmitOrderRequest
	now := e.opt.Clock()
	for i, p := range e.opt.Book.All() {
		if p.Net.IsZero() {
			continue
		}
		side := execv1.OrderSide_ORDER_SIDE_SELL
		if p.Net.Sign() < 0 {
			side = execv1.OrderSide_ORDER_SIDE_BUY
		}
		reqs = append(reqs, &execv1.SubmitOrderRequest{
			ClientOrderId: fmt.Sprintf("flat-%x-%d", now, i), Symbol: p.Symbol, Side: side,
			Type: execv1.OrderType_ORDER_TYPE_MARKET, Quantity: p.Net.Abs().Proto(), ReduceOnly: true, StrategyId: "kill-switch",
		})
	}
	e.mu.Unlock()
	var ids []string
	for _, req := range reqs {
		rreq, bad := Validate(req, e.Instrument, now)
		if bad != nil {
			return ids, bad
		}
		rreq.Flatten = true
		res, err := e.Submit(ctx, req, rreq, nil)
		if err != nil {
			return ids, err
		}
		ids = append(ids, res.Order.GetClientOrderId())
	}
	return ids, nil
}
