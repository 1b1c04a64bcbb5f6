"""Paper accounting of a model on live bars: the decision policy and the cost model of the backtest,
one bar at a time (issue #16, shadow evaluation of challengers; ADR 0086).

A ``ShadowBook`` per (model, symbol) takes each closed bar with the model's probabilities for it:

1. the decision made at the previous bar's close fills at this bar's open, as the backtest fills it
   (``kairos.training.backtest.fill_returns``): buys at the ask (bid open + this bar's mean spread),
   sells at the bid, moved against the order by the paper venue's slippage model (``FillModel``), plus
   the commission per side; the position held before the fill earns the move from the previous close
   to the fill, the new one from the fill to this close;
2. then this bar's decision: ``kairos.training.policy.decide`` with the card's policy, the same
   function the backtest runs and execution mirrors (ADR 0081).

With the card's protective stop (``stop_vol_mult`` > 0) and the bar's low and high, the stop is
worked as the backtest works it (``kairos.training.policy.stop_level`` / ``first_stop``): set from
the entry's fill quote, touched by a later bar's bid low (a long) or ask high (a short), filled at
the level or the gapped open less slippage; the policy then starts flat with its cooldown, as
execution does when it finds the position closed outside the policy.

Figures (per bar, net of costs, as fractions of ``max_lots`` notional): total return, annualised
Sharpe (bars per year measured from the bars seen), turnover (mean |position change| per bar),
trades, exposure. The policy and cost code are called, not copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kairos.training.backtest import FillModel
from kairos.training.policy import Action, Decision, Params, State, StopPath, decide, first_stop, stop_level

_YEAR_MS = 365.25 * 86_400_000


@dataclass
class ShadowFigures:
    bars: int
    total_return: float
    sharpe: float
    turnover: float
    trades: int
    exposure: float
    position: float


@dataclass
class ShadowBook:
    params: Params
    fill: FillModel = field(default_factory=FillModel)
    state: State = field(default_factory=State)
    pos: float = 0.0  # the position decided at the last bar's close, fraction of max_lots
    prev_pos: float = 0.0  # the one before it (held until the next open)
    last_close: float = math.nan
    first_ms: int = 0
    last_ms: int = 0
    n: int = 0
    s1: float = 0.0
    s2: float = 0.0
    turnover_sum: float = 0.0
    trades: int = 0
    in_market: int = 0
    decisions: int = 0
    last_net: float = math.nan  # the net return settled on the last bar (NaN on the first)
    point: float = 0.0  # price step stop levels round to (0: none)
    stop: float = math.nan  # the open position's stop level (NaN: none)
    pending_stop: float = 0.0  # the stop distance of the last decision, if it entered or reversed
    stop_exits: int = 0  # positions closed by their stop

    def on_bar(
        self,
        time_ms: int,
        open_: float,
        close: float,
        spread: float,
        p_down: float,
        p_up: float,
        vol: float,
        low: float = math.nan,
        high: float = math.nan,
    ) -> Decision:
        """Settle the pending decision on this bar, then decide on it; returns this bar's decision.
        ``low`` and ``high`` (bid) let the position's protective stop be worked on this bar."""
        before = self.pos  # the position series the backtest counts changes on (a stop-out included)
        if self.decisions:
            self.last_net = self._settle(open_, close, spread, low, high)
        else:
            self.first_ms = time_ms
        self.last_ms = time_ms
        d = decide(self.params, self.state, p_down, p_up, vol, close)
        self.pending_stop = d.stop_distance if d.action in (Action.ENTER, Action.REVERSE) else 0.0
        self.prev_pos, self.pos = (
            self.pos,
            d.side * d.steps * self.params.lot_step / self.params.policy.max_lots,
        )
        self.last_close = close
        self.decisions += 1
        delta = abs(self.pos - before)
        self.turnover_sum += delta
        self.trades += delta > 0
        self.in_market += self.pos != 0
        return d

    def _settle(self, open_: float, close: float, spread: float, low: float, high: float) -> float:
        """The net return of the last decision over this bar (fill_returns, one element)."""
        prev, pos, c0 = self.prev_pos, self.pos, self.last_close
        delta = pos - prev
        lots = self.params.policy.max_lots
        slip = float(self.fill.slippage(np.array([delta * lots]))[0])
        price = open_ + spread + slip if delta > 0 else open_ - slip if delta < 0 else open_
        end, exit_cost = close, 0.0
        side = 1 if pos > 0 else -1 if pos < 0 else 0
        path = StopPath(np.array([open_]), np.array([low]), np.array([high]), np.array([spread]), self.point)
        if side == 0:
            self.stop = math.nan
        elif delta != 0 and self.pending_stop > 0:  # an entry or reversal filled: its stop is set
            self.stop = stop_level(path, 0, side, self.pending_stop)
        if side and math.isfinite(self.stop) and math.isfinite(low) and math.isfinite(high):
            r, px = first_stop(path, 0, 1, side, self.stop)
            if r == 0:  # closed by the stop during this bar: flat before the next decision
                out_slip = float(self.fill.slippage(np.array([pos * lots]))[0])
                end = px - out_slip if side > 0 else px + out_slip
                exit_cost = abs(pos) * self.fill.commission
                self.state = State(since_exit=0)
                self.pos, self.stop = 0.0, math.nan
                self.stop_exits += 1
        net = (prev * (price - c0) + pos * (end - price)) / c0 - abs(delta) * self.fill.commission - exit_cost
        self.n += 1
        self.s1 += net
        self.s2 += net * net
        return net

    def figures(self) -> ShadowFigures:
        n = self.n
        mean = self.s1 / n if n else 0.0
        var = self.s2 / n - mean * mean if n else 0.0
        span = (self.last_ms - self.first_ms) / _YEAR_MS
        ppy = self.decisions / span if span > 0 else 0.0
        sd = math.sqrt(var) if var > 0 else 0.0
        return ShadowFigures(
            bars=n,
            total_return=self.s1,
            sharpe=mean / sd * math.sqrt(ppy) if sd > 0 and ppy > 0 else 0.0,
            turnover=self.turnover_sum / self.decisions if self.decisions else 0.0,
            trades=self.trades,
            exposure=self.in_market / self.decisions if self.decisions else 0.0,
            position=self.pos,
        )
