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

Figures (per bar, net of costs, as fractions of ``max_lots`` notional): total return, annualised
Sharpe (bars per year measured from the bars seen), turnover (mean |position change| per bar),
trades, exposure. The policy and cost code are called, not copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kairos.training.backtest import FillModel
from kairos.training.policy import Decision, Params, State, decide

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

    def on_bar(
        self, time_ms: int, open_: float, close: float, spread: float, p_down: float, p_up: float, vol: float
    ) -> Decision:
        """Settle the pending decision on this bar, then decide on it; returns this bar's decision."""
        if self.decisions:
            self.last_net = self._settle(open_, close, spread)
        else:
            self.first_ms = time_ms
        self.last_ms = time_ms
        d = decide(self.params, self.state, p_down, p_up, vol, close)
        self.prev_pos, self.pos = (
            self.pos,
            d.side * d.steps * self.params.lot_step / self.params.policy.max_lots,
        )
        self.last_close = close
        self.decisions += 1
        delta = abs(self.pos - self.prev_pos)
        self.turnover_sum += delta
        self.trades += delta > 0
        self.in_market += self.pos != 0
        return d

    def _settle(self, open_: float, close: float, spread: float) -> float:
        """The net return of the last decision over this bar (fill_returns, one element)."""
        prev, pos, c0 = self.prev_pos, self.pos, self.last_close
        delta = pos - prev
        slip = float(self.fill.slippage(np.array([delta * self.params.policy.max_lots]))[0])
        price = open_ + spread + slip if delta > 0 else open_ - slip if delta < 0 else open_
        net = (prev * (price - c0) + pos * (close - price)) / c0 - abs(delta) * self.fill.commission
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
