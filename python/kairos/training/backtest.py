"""Backtest of out-of-sample signals with live-like fills, and the comparison with the baselines.

Positions come from the model card's decision policy (``kairos.training.policy``), the one live
execution applies. The decision made at the close of bar t executes at the next price, the open of
bar t+1: buys at the ask (bid open + the bar's spread) and sells at the bid, each moved against the
order by the paper venue's slippage model (``FillModel``), plus a commission per side. The position
held before the fill earns the move from close t to the fill (gaps, weekends included); the new
position earns only from the fill on, so no gap is credited before the order could have filled.
Positions are marked on the bid close. Every strategy is run per validation fold from flat, on
exactly the same bars, and the decision at a fold's last bar is flat (the fold ends flat).

With several symbols in one run (``kairos.training.panel``) each symbol is traded on its own bars
(its own policy state, fills within its own bars, flat at the end of each fold) and the returns are
pooled per time: a fold's per-bar series is, at each distinct bar time, the sum of the symbols'
returns (each symbol at its own notional). The statistics and the gate see that pooled series.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kairos.training.baselines import RULES, momentum_positions
from kairos.training.panel import Panel
from kairos.training.policy import Params, StopPath, run_policy

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FillModel:
    """How an order fills: the paper venue's model (go/execution/venue/paper), in price points."""

    slippage_points: int = 1
    """Fixed adverse slippage of a market order, points (the paper venue's --paper-slippage-points)."""
    slippage_points_per_lot: float = 0.5
    """Size impact, points per lot, rounded up to whole points (--paper-slippage-points-per-lot)."""
    point: float = 1e-5
    """Price of one point (10^-digits; 5-digit FX quotes)."""
    commission: float = 0.00002
    """Commission per side, fraction of the notional traded."""

    def slippage(self, lots: FloatArray) -> FloatArray:
        """Adverse price move of orders of ``lots`` (absolute), price units."""
        extra = np.ceil(np.round(np.abs(lots) * self.slippage_points_per_lot, 6))
        return np.asarray((self.slippage_points + extra) * self.point, dtype=np.float64)


@dataclass
class Metrics:
    sharpe: float
    """Annualised: mean / std of per-bar net returns x sqrt(bars per year of the data)."""
    total_return: float
    """Sum of per-bar net simple returns (no compounding), on the notional of a full position."""
    hit_rate: float
    """Share of in-market bars whose gross return was positive (0 when never in the market)."""
    max_drawdown: float
    """Largest fall of the cumulative net return from its running peak."""
    turnover: float
    """Mean absolute position change per bar."""
    exposure: float
    """Share of bars in the market."""
    trades: int
    """Position changes."""
    bars: int


def positions_from_probs(probs: FloatArray) -> FloatArray:
    """argmax over (down, flat, up) -> (-1, 0, +1) (the old per-bar rule, kept for comparisons)."""
    return np.asarray(np.argmax(probs, axis=1), dtype=np.float64) - 1.0


def fill_returns(
    open_: FloatArray,
    close: FloatArray,
    spread: FloatArray,
    idx: IntArray,
    pos: FloatArray,
    fill: FillModel,
    max_lots: float = 1.0,
    last_row: IntArray | int | None = None,
    stop_exit: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """(gross, net) per-decision returns of positions ``pos`` (fractions of ``max_lots``, decided at
    the close of bars ``idx``) over the following bar.

    gross is the new position times the close-to-close return; net is the return with live-like fills
    at the next bar's open (spread, slippage) less commission, on the notional of ``max_lots``.
    ``last_row`` is the last bar of the series (of the symbol's segment; default the data's last).
    ``stop_exit`` (``PolicyRun.stop_exit``): where a position was closed by its protective stop during
    the next bar; it earns up to that price (a sell at the bid less slippage for a long, a buy at the
    ask plus slippage for a short), pays the exit's commission, and the next decision starts flat.
    """
    nxt = np.minimum(idx + 1, len(close) - 1 if last_row is None else last_row)
    last = nxt == idx  # the data's last bar: no next open, fill at its close
    c0 = close[idx]
    c1 = np.where(last, c0, close[nxt])
    prev = np.concatenate([[0.0], pos[:-1]])
    stopped = np.zeros(len(pos), dtype=bool) if stop_exit is None else np.isfinite(stop_exit)
    if stopped.any():
        prev[1:][stopped[:-1]] = 0.0  # closed by the stop before the next decision
    delta = pos - prev
    at = np.where(last, c0, open_[nxt])
    slip = fill.slippage(delta * max_lots)
    price = np.where(delta > 0, at + spread[nxt] + slip, np.where(delta < 0, at - slip, at))
    end = c1
    exit_cost = np.zeros(len(pos))
    if stopped.any() and stop_exit is not None:
        out = np.where(stopped, stop_exit, 0.0)
        exit_slip = fill.slippage(-pos * max_lots)  # the stop's order closes the position
        end = np.where(stopped, np.where(pos > 0, out - exit_slip, out + exit_slip), c1)
        exit_cost = np.where(stopped, np.abs(pos) * fill.commission, 0.0)
    net = (prev * (price - c0) + pos * (end - price)) / c0 - np.abs(delta) * fill.commission - exit_cost
    ref = c1 if stop_exit is None else np.where(stopped, stop_exit, c1)
    gross = pos * (ref / c0 - 1.0)
    return gross, net


def metrics(gross: FloatArray, net: FloatArray, pos: FloatArray, periods_per_year: float) -> Metrics:
    sd = float(net.std())
    sharpe = float(net.mean() / sd * np.sqrt(periods_per_year)) if sd > 0 else 0.0
    inside = pos != 0
    equity = np.concatenate([[0.0], np.cumsum(net)])
    change = np.abs(np.diff(pos, prepend=0.0))
    return Metrics(
        sharpe=sharpe,
        total_return=float(net.sum()),
        hit_rate=float((gross[inside] > 0).mean()) if inside.any() else 0.0,
        max_drawdown=float((np.maximum.accumulate(equity) - equity).max()),
        turnover=float(change.mean()),
        exposure=float(inside.mean()),
        trades=int((change > 0).sum()),
        bars=len(net),
    )


def periods_per_year(times_ms: npt.NDArray[np.int64]) -> float:
    """Bars per year as this data actually has them (weekends and gaps included)."""
    span_years = (times_ms[-1] - times_ms[0]) / (365.25 * 86_400_000)
    return float(len(times_ms) / span_years) if span_years > 0 else 1.0


@dataclass(frozen=True)
class BarPrices:
    """The bars a backtest trades on: bid open and close, and the mean spread of each bar."""

    open: FloatArray
    close: FloatArray
    spread: FloatArray
    low: FloatArray | None = None
    """Bid low and high: with them, protective stops are worked (``kairos.training.policy.StopPath``)."""
    high: FloatArray | None = None
    point: float = 0.0
    """Price step stop levels are rounded to (0: none)."""

    def stop_path(self, idx: IntArray, last_row: IntArray | int | None = None) -> StopPath | None:
        """The bar after each of ``idx`` (within ``last_row``), for the policy's stops."""
        if self.low is None or self.high is None:
            return None
        nxt = np.minimum(idx + 1, len(self.close) - 1 if last_row is None else last_row)
        return StopPath(self.open[nxt], self.low[nxt], self.high[nxt], self.spread[nxt], self.point)


@dataclass
class StrategyResult:
    name: str
    folds: list[Metrics]
    overall: Metrics
    equity: FloatArray  # cumulative net return over the concatenated folds
    # Per-fold per-bar arrays, for the statistics and the gate (kairos.training.gate.OOSResult); with
    # several symbols, pooled per time (the clocks in fold_clock).
    fold_gross: list[FloatArray] = field(default_factory=list)
    fold_net: list[FloatArray] = field(default_factory=list)
    fold_pos: list[FloatArray] = field(default_factory=list)
    fold_clock: list[IntArray] = field(default_factory=list)
    per_symbol: dict[str, Metrics] = field(default_factory=dict)
    """With several symbols: each symbol's own figures over all folds."""
    legs: list[FloatArray] = field(default_factory=list)
    """Positions of each symbol in each fold (each from flat to flat): what was traded. One
    symbol: fold_pos."""

    def summary(self) -> dict[str, Any]:
        out = {
            "mean_fold_sharpe": float(np.mean([m.sharpe for m in self.folds])),
            "overall": asdict(self.overall),
            "folds": [asdict(m) for m in self.folds],
        }
        if self.per_symbol:
            out["symbols"] = {s: asdict(m) for s, m in self.per_symbol.items()}
        return out


def _changes(pos: FloatArray) -> FloatArray:
    out: FloatArray = np.abs(np.diff(pos, prepend=0.0))
    return out


def panel_returns(
    bars: BarPrices,
    idx: IntArray,
    pos: FloatArray,
    fill: FillModel,
    max_lots: float,
    panel: Panel | None = None,
    stop_exit: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """``fill_returns`` per symbol (each on its own rows of ``idx``, in order), per row of ``idx``."""
    if panel is None or panel.n_symbols == 1:
        return fill_returns(bars.open, bars.close, bars.spread, idx, pos, fill, max_lots, stop_exit=stop_exit)
    gross, net = np.zeros(len(idx)), np.zeros(len(idx))
    for _, at in panel.groups(idx):
        rows = idx[at]
        g, n = fill_returns(
            bars.open,
            bars.close,
            bars.spread,
            rows,
            pos[at],
            fill,
            max_lots,
            panel.segment_end(rows),
            None if stop_exit is None else stop_exit[at],
        )
        gross[at], net[at] = g, n
    return gross, net


def run_strategy(
    name: str,
    bars: BarPrices,
    fold_idx: list[IntArray],
    fold_pos: list[FloatArray],
    fill: FillModel,
    ppy: float,
    max_lots: float = 1.0,
    panel: Panel | None = None,
    symbol_ppy: list[float] | None = None,
    fold_stops: list[FloatArray | None] | None = None,
) -> StrategyResult:
    """Positions (fractions of ``max_lots``) per fold through ``fill_returns``; each fold ends flat
    (each symbol's last bar in the fold). With several symbols, returns pooled per time."""
    several = panel is not None and panel.n_symbols > 1
    per_fold, all_gross, all_net, all_pos, all_clock, legs = [], [], [], [], [], []
    sym_rows: dict[int, list[tuple[FloatArray, FloatArray, FloatArray]]] = {}
    stops_by_fold = fold_stops or [None] * len(fold_idx)
    for idx, pos, stop_exit in zip(fold_idx, fold_pos, stops_by_fold, strict=True):
        pos = np.asarray(pos, dtype=np.float64).copy()
        groups = panel.groups(idx) if several and panel is not None else [(0, np.arange(len(idx)))]
        for _, at in groups:
            if len(at):
                pos[at[-1]] = 0.0
        g, n = panel_returns(bars, idx, pos, fill, max_lots, panel, stop_exit)
        trades = sum(int((_changes(pos[at]) > 0).sum()) for _, at in groups)
        change = sum(float(_changes(pos[at]).sum()) for _, at in groups)
        if several and panel is not None:
            for s, at in groups:
                sym_rows.setdefault(s, []).append((g[at], n[at], pos[at]))
                legs.append(pos[at])
            clock, (g, n, held) = panel.pool(idx, g, n, np.abs(pos))
            m = metrics(g, n, held, ppy)
            m.trades, m.turnover = trades, change / max(len(n), 1)
            pos = held
        else:
            clock = idx
            m = metrics(g, n, pos, ppy)
            legs.append(pos)
        per_fold.append(m)
        all_gross.append(g)
        all_net.append(n)
        all_pos.append(pos)
        all_clock.append(clock)
    g, n, p = (np.concatenate(a) for a in (all_gross, all_net, all_pos))
    overall = metrics(g, n, p, ppy)
    # Each fold starts flat: count its entries, which the concatenated positions would hide.
    overall.trades = sum(m.trades for m in per_fold)
    overall.turnover = sum(m.turnover * m.bars for m in per_fold) / max(overall.bars, 1)
    per_symbol: dict[str, Metrics] = {}
    if several and panel is not None:
        for s, parts in sorted(sym_rows.items()):
            sg, sn, sp = (np.concatenate([x[i] for x in parts]) for i in range(3))
            m = metrics(sg, sn, sp, symbol_ppy[s] if symbol_ppy else ppy)
            m.trades = sum(int((_changes(x[2]) > 0).sum()) for x in parts)
            m.turnover = sum(float(_changes(x[2]).sum()) for x in parts) / max(len(sn), 1)
            per_symbol[panel.symbols[s]] = m
    return StrategyResult(
        name, per_fold, overall, np.cumsum(n), all_gross, all_net, all_pos, all_clock, per_symbol, legs
    )


@dataclass
class Comparison:
    strategies: dict[str, StrategyResult]

    def to_dict(self) -> dict[str, Any]:
        return {"strategies": {k: v.summary() for k, v in self.strategies.items()}}


def policy_trades(
    params: Params,
    bars: BarPrices,
    idx: IntArray,
    probs: FloatArray,
    vol: FloatArray,
    panel: Panel | None = None,
) -> tuple[FloatArray, FloatArray | None]:
    """The policy's positions over one fold, as fractions of max_lots (the fold ends flat), and where
    protective stops closed them (``PolicyRun.stop_exit``; None when ``bars`` has no lows and highs);
    ``vol`` per row of ``idx``. With several symbols, one policy run per symbol on its own rows."""
    groups = [(0, np.arange(len(idx)))] if panel is None or panel.n_symbols == 1 else panel.groups(idx)
    pos = np.zeros(len(idx))
    stop_exit = None if bars.low is None else np.full(len(idx), np.nan)
    for _, at in groups:
        rows = idx[at]
        last = None if panel is None or panel.n_symbols == 1 else panel.segment_end(rows)
        run = run_policy(
            params, probs[at], vol[at], bars.close[rows], close_at_end=True, stops=bars.stop_path(rows, last)
        )
        pos[at] = run.lots
        if stop_exit is not None and run.stop_exit is not None:
            stop_exit[at] = run.stop_exit
    out: FloatArray = pos / params.policy.max_lots
    return out, stop_exit


def policy_positions(
    params: Params,
    bars: BarPrices,
    idx: IntArray,
    probs: FloatArray,
    vol: FloatArray,
    panel: Panel | None = None,
) -> FloatArray:
    """``policy_trades``' positions."""
    return policy_trades(params, bars, idx, probs, vol, panel)[0]


def compare(
    bars: BarPrices,
    times_ms: npt.NDArray[np.int64],
    fold_idx: list[IntArray],
    learned: dict[str, list[FloatArray]],
    horizon: int,
    fill: FillModel,
    fold_params: dict[str, list[Params]],
    vol: FloatArray,
    panel: Panel | None = None,
) -> Comparison:
    """Every learned model and every rule baseline on the same validation folds.

    ``learned`` maps a model's name to its calibrated probabilities per fold; each trades through the
    decision policy with its parameters for each fold (``fold_params[name]``: the class moves measured
    on that fold's training samples, the entry threshold tuned on its inner fold); ``vol`` is the
    realised volatility per bar, return units. Flat,
    buy-and-hold and momentum (``RULES``) hold full positions. Which model is the candidate, and
    whether it is good enough, is the gate's business (``kairos.training.gate``). ``panel``: the
    symbols of a run with several (``times_ms`` per bar either way).
    """
    pn = panel if panel is not None and panel.n_symbols > 1 else None
    ppy = pn.periods_per_year() if pn else periods_per_year(times_ms)
    symbol_ppy = [periods_per_year(times_ms[a:b]) for a, b in pn.segments()] if pn else None
    clash = set(learned) & set(RULES)
    if clash:
        raise ValueError(f"learned model names {sorted(clash)} clash with the rule baselines")
    lots = [p.policy.max_lots for p in next(iter(fold_params.values()), [])]
    traded = {
        name: [
            policy_trades(p, bars, i, pr, vol[i], panel)
            for p, i, pr in zip(fold_params[name], fold_idx, probs, strict=True)
        ]
        for name, probs in learned.items()
    }
    positions = {name: [t[0] for t in runs] for name, runs in traded.items()}
    stops = {name: [t[1] for t in runs] for name, runs in traded.items()}
    positions["flat"] = [np.zeros(len(i)) for i in fold_idx]
    positions["buy_and_hold"] = [np.ones(len(i)) for i in fold_idx]
    first = pn.bounds[pn.segment_of(np.concatenate(fold_idx))] if pn else None
    positions["momentum"] = []
    at = 0
    for i in fold_idx:
        f = None if first is None else first[at : at + len(i)]
        positions["momentum"].append(momentum_positions(bars.close, i, horizon, f))
        at += len(i)
    max_lots = float(np.mean(lots)) if lots else 1.0
    return Comparison(
        {
            k: run_strategy(k, bars, fold_idx, v, fill, ppy, max_lots, panel, symbol_ppy, stops.get(k))
            for k, v in positions.items()
        }
    )


def plot_equity(cmp: Comparison, grid_ms: npt.NDArray[np.int64], path: Path, title: str) -> None:
    """Equity curves (cumulative net return) of every strategy over the concatenated folds;
    ``grid_ms`` maps a strategy's clocks (``StrategyResult.fold_clock``) to times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(cmp.strategies.values()))
    x = np.arange(sum(len(n) for n in first.fold_net))
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    for name, r in cmp.strategies.items():
        ax.plot(
            x,
            r.equity * 1e4,
            label=f"{name} (Sharpe {r.summary()['mean_fold_sharpe']:.2f})",
            lw=1.6 if name == "model" else 1.0,
        )
    start = 0
    for clock in first.fold_clock:
        ax.axvline(start, color="grey", lw=0.5, ls="--")
        if len(clock):
            t0 = np.datetime64(int(grid_ms[clock[0]]), "ms")
            ax.text(start, ax.get_ylim()[1], str(t0)[:10], fontsize=7, va="top")
        start += len(clock)
    ax.set_xlabel("out-of-sample bars (validation folds, concatenated)")
    ax.set_ylabel("cumulative net return (bp)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


NEVER_ENTER = 1.0
"""An entry threshold no edge reaches (a 100% expected move): the policy of a model with no edge
after costs stays flat."""


def round_trip_cost(bars: BarPrices, idx: IntArray, fill: FillModel, lots: float) -> float:
    """What a full position costs to open and close at bars ``idx``, return units: the median spread,
    the slippage of two orders of ``lots`` and two commissions."""
    c = bars.close[idx]
    spread = float(np.median(bars.spread[idx] / c))
    slip = float(np.median(fill.slippage(np.array([lots]))[0] / c))
    return spread + 2 * slip + 2 * fill.commission


@dataclass(frozen=True)
class Tuning:
    entry_edge: float
    """The chosen entry threshold (NEVER_ENTER when no candidate earned anything)."""
    cost: float
    """Round-trip cost the candidates are multiples of."""
    scores: dict[float, float]
    """Net return on the tuning bars of each candidate entry threshold."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_edge": self.entry_edge,
            "cost": self.cost,
            "scores": {str(k): v for k, v in self.scores.items()},
        }


def tune_entry_edge(
    params: Params,
    bars: BarPrices,
    idx: IntArray,
    probs: FloatArray,
    vol: FloatArray,
    fill: FillModel,
    cost_mults: tuple[float, ...],
    panel: Panel | None = None,
) -> Tuning:
    """The entry threshold, among ``cost_mults`` x the round-trip cost, with the highest net return of
    the policy on the bars ``idx`` (a model's inner fold: data before its validation block). None
    earns more than nothing: never enter. ``vol`` is per bar of ``bars``."""
    lots = params.policy.max_lots
    cost = round_trip_cost(bars, idx, fill, lots)
    scores: dict[float, float] = {}
    for m in cost_mults:
        e = m * cost
        p = params.with_policy(entry_edge=e, exit_edge=min(params.policy.exit_edge, e))
        pos, stop_exit = policy_trades(p, bars, idx, probs, vol[idx], panel)
        _, net = panel_returns(bars, idx, pos, fill, lots, panel, stop_exit)
        scores[e] = float(net.sum())
    best = max(scores, key=lambda e: scores[e]) if scores else NEVER_ENTER
    return Tuning(best if scores.get(best, 0.0) > 0 else NEVER_ENTER, cost, scores)
