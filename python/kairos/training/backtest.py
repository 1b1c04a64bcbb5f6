"""Vectorised backtest of out-of-sample signals with spread and commission, and the comparison
with the baselines.

A position in {-1, 0, +1} is decided at the close of bar t from the row of bar t and held to the
close of bar t+1 (gross return = position x simple return of the bid close). Each unit of position
change pays half the bar's mean spread plus the commission, so a round trip costs one spread and two
commissions; an open position is closed (and paid for) at the end of each fold. Every strategy is
run per validation fold from flat, on exactly the same bars.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kairos.training.baselines import BASELINES, momentum_positions

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class Metrics:
    sharpe: float
    """Annualised: mean / std of per-bar net returns x sqrt(bars per year of the data)."""
    total_return: float
    """Sum of per-bar net simple returns (no compounding)."""
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
    """argmax over (down, flat, up) -> (-1, 0, +1)."""
    return np.asarray(np.argmax(probs, axis=1), dtype=np.float64) - 1.0


def net_returns(
    close: FloatArray, spread: FloatArray, idx: IntArray, pos: FloatArray, commission: float
) -> tuple[FloatArray, FloatArray]:
    """(gross, net) per-bar returns of positions ``pos`` held from bar idx[i] to idx[i]+1."""
    nxt = np.minimum(idx + 1, len(close) - 1)
    ret = close[nxt] / close[idx] - 1.0
    gross = pos * ret
    change = np.abs(np.diff(pos, prepend=0.0))
    change[-1] += abs(pos[-1])  # close out at the end of the period
    cost = change * (spread[idx] / close[idx] / 2.0 + commission)
    return gross, gross - cost


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


@dataclass
class StrategyResult:
    name: str
    folds: list[Metrics]
    overall: Metrics
    equity: FloatArray  # cumulative net return over the concatenated folds
    # Per-fold per-bar arrays, for the statistics and the gate (kairos.training.gate.OOSResult).
    fold_gross: list[FloatArray] = field(default_factory=list)
    fold_net: list[FloatArray] = field(default_factory=list)
    fold_pos: list[FloatArray] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "mean_fold_sharpe": float(np.mean([m.sharpe for m in self.folds])),
            "overall": asdict(self.overall),
            "folds": [asdict(m) for m in self.folds],
        }


def run_strategy(
    name: str,
    close: FloatArray,
    spread: FloatArray,
    fold_idx: list[IntArray],
    fold_pos: list[FloatArray],
    commission: float,
    ppy: float,
) -> StrategyResult:
    per_fold, all_gross, all_net, all_pos = [], [], [], []
    for idx, pos in zip(fold_idx, fold_pos, strict=True):
        g, n = net_returns(close, spread, idx, pos, commission)
        per_fold.append(metrics(g, n, pos, ppy))
        all_gross.append(g)
        all_net.append(n)
        all_pos.append(pos)
    g, n, p = (np.concatenate(a) for a in (all_gross, all_net, all_pos))
    overall = metrics(g, n, p, ppy)
    # Each fold starts flat: count its entries, which the concatenated positions would hide.
    overall.trades = sum(m.trades for m in per_fold)
    overall.turnover = sum(m.turnover * m.bars for m in per_fold) / max(overall.bars, 1)
    return StrategyResult(name, per_fold, overall, np.cumsum(n), all_gross, all_net, all_pos)


@dataclass
class Comparison:
    strategies: dict[str, StrategyResult]
    beats_baselines: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "beats_baselines": self.beats_baselines,
            "reason": self.reason,
            "strategies": {k: v.summary() for k, v in self.strategies.items()},
        }


def compare(
    close: FloatArray,
    spread: FloatArray,
    times_ms: npt.NDArray[np.int64],
    fold_idx: list[IntArray],
    model_probs: list[FloatArray],
    logreg_probs: list[FloatArray],
    horizon: int,
    commission: float,
) -> Comparison:
    """The model and every baseline on the same validation folds, and the registration verdict:
    the model must have a higher mean per-fold Sharpe than each baseline (flat's is 0, so a model
    that loses money after costs never qualifies)."""
    ppy = periods_per_year(times_ms)
    positions = {
        "model": [positions_from_probs(p) for p in model_probs],
        "flat": [np.zeros(len(i)) for i in fold_idx],
        "buy_and_hold": [np.ones(len(i)) for i in fold_idx],
        "momentum": [momentum_positions(close, i, horizon) for i in fold_idx],
        "logreg": [positions_from_probs(p) for p in logreg_probs],
    }
    assert set(positions) == {"model", *BASELINES}
    res = {k: run_strategy(k, close, spread, fold_idx, v, commission, ppy) for k, v in positions.items()}
    model_sr = res["model"].summary()["mean_fold_sharpe"]
    losers = [(k, res[k].summary()["mean_fold_sharpe"]) for k in BASELINES]
    beaten_by = [(k, s) for k, s in losers if s >= model_sr]
    if beaten_by:
        reason = (
            f"model mean fold Sharpe {model_sr:.3f} does not beat "
            + ", ".join(f"{k} ({s:.3f})" for k, s in beaten_by)
            + f" over {len(fold_idx)} validation folds"
        )
    else:
        best = max(losers, key=lambda kv: kv[1])
        reason = (
            f"model mean fold Sharpe {model_sr:.3f} beats every baseline (best: {best[0]} {best[1]:.3f}) "
            f"over {len(fold_idx)} validation folds"
        )
    return Comparison(res, not beaten_by, reason)


def plot_equity(
    cmp: Comparison, times_ms: npt.NDArray[np.int64], fold_idx: list[IntArray], path: Path, title: str
) -> None:
    """Equity curves (cumulative net return) of every strategy over the concatenated folds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(sum(len(i) for i in fold_idx))
    fig, ax = plt.subplots(figsize=(10, 5), dpi=100)
    for name, r in cmp.strategies.items():
        ax.plot(
            x,
            r.equity * 1e4,
            label=f"{name} (Sharpe {r.summary()['mean_fold_sharpe']:.2f})",
            lw=1.6 if name == "model" else 1.0,
        )
    start = 0
    for i in fold_idx:
        ax.axvline(start, color="grey", lw=0.5, ls="--")
        t0 = np.datetime64(int(times_ms[i[0]]), "ms")
        ax.text(start, ax.get_ylim()[1], str(t0)[:10], fontsize=7, va="top")
        start += len(i)
    ax.set_xlabel("out-of-sample bars (validation folds, concatenated)")
    ax.set_ylabel("cumulative net return (bp)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
