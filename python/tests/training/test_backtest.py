"""The backtest charges spread and commission, and the registration verdict is honest: a model that
knows the future beats every baseline on real bars, its mirror image beats none."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

from kairos.features import to_epoch_ms
from kairos.training.backtest import compare, metrics, net_returns, positions_from_probs


def _oracle_probs(close: np.ndarray, idx: np.ndarray) -> np.ndarray:
    nxt = np.sign(close[idx + 1] - close[idx]).astype(int)
    out: np.ndarray = np.eye(3)[nxt + 1]
    return out


def test_a_round_trip_costs_one_spread_and_two_commissions(gbpusd_bars: pd.DataFrame) -> None:
    close = gbpusd_bars["close"].to_numpy()
    spread = gbpusd_bars["spread"].to_numpy()
    idx = np.arange(1000, 1003, dtype=np.int64)
    pos = np.array([1.0, 0.0, 0.0])
    gross, net = net_returns(close, spread, idx, pos, commission=0.00002)
    assert gross[0] == pytest.approx(close[1001] / close[1000] - 1)
    assert (gross - net).sum() == pytest.approx(
        spread[1000] / close[1000] / 2 + spread[1001] / close[1001] / 2 + 2 * 0.00002
    )
    # A position still open at the end of the period is closed and paid for.
    g_open, net_open = net_returns(close, spread, idx, np.array([0.0, 0.0, -1.0]), commission=0.0)
    assert g_open[-1] - net_open[-1] == pytest.approx(spread[1002] / close[1002])
    assert net_open[:2].sum() == 0


def test_metrics_of_known_positions(gbpusd_bars: pd.DataFrame) -> None:
    close = gbpusd_bars["close"].to_numpy()
    spread = np.zeros(len(close))
    idx = np.arange(2000, 3000, dtype=np.int64)
    pos = np.ones(len(idx))
    gross, net = net_returns(close, spread, idx, pos, 0.0)
    m = metrics(gross, net, pos, periods_per_year=1000.0)
    assert m.total_return == pytest.approx((close[2001:3001] / close[2000:3000] - 1).sum())
    assert m.exposure == 1.0 and m.trades == 1 and m.turnover == pytest.approx(1 / 1000)
    assert m.hit_rate == pytest.approx(float((gross > 0).mean()))
    equity = np.cumsum(net)
    assert m.max_drawdown == pytest.approx(
        max(0.0, float((np.maximum.accumulate(np.r_[0, equity]) - np.r_[0, equity]).max()))
    )
    assert positions_from_probs(np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5]])).tolist() == [
        -1,
        0,
        1,
    ]


def test_verdict_on_real_bars_oracle_beats_every_baseline_and_its_mirror_none(
    gbpusd_bars: pd.DataFrame,
) -> None:
    close = gbpusd_bars["close"].to_numpy()
    spread = gbpusd_bars["spread"].to_numpy()
    times = to_epoch_ms(gbpusd_bars["time"])
    folds = [np.arange(a, a + 2000, dtype=np.int64) for a in (20_000, 22_000, 24_000)]
    oracle = [_oracle_probs(close, f) for f in folds]
    mirror = [p[:, ::-1] for p in oracle]
    flat_lr = [np.tile([0.0, 1.0, 0.0], (len(f), 1)) for f in folds]
    good = compare(close, spread, times, folds, oracle, flat_lr, horizon=5, commission=0.00002)
    bad = compare(close, spread, times, folds, mirror, flat_lr, horizon=5, commission=0.00002)
    assert good.beats_baselines and "beats every baseline" in good.reason
    assert not bad.beats_baselines and "does not beat flat (0.000)" in bad.reason
    s = good.strategies
    assert set(s) == {"model", "flat", "buy_and_hold", "momentum", "logreg"}
    assert s["flat"].overall.total_return == 0 and s["flat"].overall.sharpe == 0
    assert s["model"].overall.hit_rate > 0.95
    # Every strategy ran on exactly the same bars.
    assert {r.overall.bars for r in s.values()} == {6000}
