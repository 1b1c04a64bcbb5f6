"""The backtest fills like live (the next bar's open, spread and the paper venue's slippage, no gap
credited before the fill), trades through the decision policy, and its verdict is honest: a model
that knows the future beats every baseline on real bars, its mirror image beats none."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

from kairos.features import to_epoch_ms
from kairos.training.backtest import (
    NEVER_ENTER,
    BarPrices,
    FillModel,
    compare,
    fill_returns,
    metrics,
    policy_positions,
    positions_from_probs,
    round_trip_cost,
    tune_entry_edge,
)
from kairos.training.policy import Params, PolicyConfig

FILL = FillModel(slippage_points=1, slippage_points_per_lot=0.5, point=1e-5, commission=0.00002)


def _prices(bars: pd.DataFrame) -> BarPrices:
    return BarPrices(
        bars["open"].to_numpy(np.float64),
        bars["close"].to_numpy(np.float64),
        bars["spread"].to_numpy(np.float64),
    )


def _oracle_probs(close: np.ndarray, idx: np.ndarray) -> np.ndarray:
    nxt = np.sign(close[idx + 1] - close[idx]).astype(int)
    out: np.ndarray = np.eye(3)[nxt + 1]
    return out


@pytest.mark.parametrize(
    ("lots", "points"),
    [(0.01, 2), (0.10, 2), (1.0, 2), (2.0, 2), (2.02, 3), (3.0, 3)],
)
def test_slippage_is_the_paper_venues_fixed_points_plus_points_per_lot_rounded_up(
    lots: float, points: int
) -> None:
    assert FILL.slippage(np.array([lots]))[0] == pytest.approx(points * 1e-5)


def test_a_round_trip_buys_at_the_next_ask_and_sells_at_the_next_bid(gbpusd_bars: pd.DataFrame) -> None:
    p = _prices(gbpusd_bars)
    idx = np.arange(1000, 1003, dtype=np.int64)
    pos = np.array([1.0, 0.0, 0.0])
    gross, net = fill_returns(p.open, p.close, p.spread, idx, pos, FILL, max_lots=1.0)
    slip = 2e-5  # 1 point + 1 lot x 0.5 points, rounded up
    buy = p.open[1001] + p.spread[1001] + slip
    sell = p.open[1002] - slip
    assert net[0] == pytest.approx((p.close[1001] - buy) / p.close[1000] - FILL.commission)
    assert net[1] == pytest.approx((sell - p.close[1001]) / p.close[1001] - FILL.commission)
    assert net[2] == 0
    assert gross[0] == pytest.approx(p.close[1001] / p.close[1000] - 1)


def test_no_gap_is_credited_before_the_fill_and_a_held_position_earns_it() -> None:
    # Bar 1 opens 10% above bar 0's close (a weekend gap).
    open_ = np.array([1.0, 1.1, 1.1, 1.1])
    close = np.array([1.0, 1.1, 1.1, 1.1])
    spread = np.zeros(4)
    free = FillModel(slippage_points=0, slippage_points_per_lot=0.0, commission=0.0)
    idx = np.arange(0, 3, dtype=np.int64)
    _, entered_before_gap = fill_returns(open_, close, spread, idx, np.array([1.0, 1.0, 0.0]), free)
    assert entered_before_gap.sum() == pytest.approx(0.0)  # filled at the gapped open: nothing earned
    # A position held from before a gap at bar 3's open earns it when it leaves there.
    _, held_through_gap = fill_returns(
        np.array([1.0, 1.0, 1.0, 1.1]),
        np.array([1.0, 1.0, 1.0, 1.1]),
        np.zeros(4),
        idx,
        np.array([1.0, 1.0, 0.0]),
        free,
    )
    assert held_through_gap.sum() == pytest.approx(0.1)


def test_metrics_of_known_positions(gbpusd_bars: pd.DataFrame) -> None:
    p = _prices(gbpusd_bars)
    idx = np.arange(2000, 3000, dtype=np.int64)
    pos = np.ones(len(idx))
    gross, net = fill_returns(
        p.open, p.close, np.zeros(len(p.close)), idx, pos, FillModel(0, 0.0, commission=0.0)
    )
    m = metrics(gross, net, pos, periods_per_year=1000.0)
    assert m.exposure == 1.0 and m.trades == 1 and m.turnover == pytest.approx(1 / 1000)
    assert m.hit_rate == pytest.approx(float((gross > 0).mean()))
    # Entered at bar 2001's open, marked at bar 3000's close.
    assert m.total_return == pytest.approx(
        (p.close[2001] - p.open[2001]) / p.close[2000] + (p.close[2002:3001] / p.close[2001:3000] - 1).sum()
    )
    assert positions_from_probs(np.array([[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5]])).tolist() == [
        -1,
        0,
        1,
    ]


def test_compare_runs_every_learned_model_and_rule_on_the_same_real_bars(
    gbpusd_bars: pd.DataFrame,
) -> None:
    p = _prices(gbpusd_bars)
    times = to_epoch_ms(gbpusd_bars["time"])
    folds = [np.arange(a, a + 2000, dtype=np.int64) for a in (20_000, 22_000, 24_000)]
    oracle = [_oracle_probs(p.close, f) for f in folds]
    mirror = [x[:, ::-1] for x in oracle]
    flat_lr = [np.tile([0.0, 1.0, 0.0], (len(f), 1)) for f in folds]
    params = [Params(PolicyConfig(entry_edge=1e-5, max_hold_bars=0).policy(4e-4, 4e-4))] * 3
    vol = np.full(len(p.close), 1e-4)
    cmp = compare(
        p,
        times,
        folds,
        {"oracle": oracle, "mirror": mirror, "logreg": flat_lr},
        5,
        FILL,
        dict.fromkeys(("oracle", "mirror", "logreg"), params),
        vol,
    )
    s = cmp.strategies
    assert set(s) == {"oracle", "mirror", "logreg", "flat", "buy_and_hold", "momentum"}
    assert s["oracle"].overall.sharpe > max(r.overall.sharpe for k, r in s.items() if k != "oracle")
    assert s["mirror"].overall.total_return < 0
    assert s["flat"].overall.total_return == 0 and s["flat"].overall.sharpe == 0
    assert s["logreg"].overall.trades == 0  # flat probabilities never clear the entry threshold
    # Every strategy ran on exactly the same bars; buy-and-hold enters and leaves once per fold.
    assert {r.overall.bars for r in s.values()} == {6000}
    assert s["buy_and_hold"].overall.trades == 6


def test_compare_refuses_a_learned_model_named_like_a_rule(gbpusd_bars: pd.DataFrame) -> None:
    p = _prices(gbpusd_bars)
    folds = [np.arange(20_000, 20_100, dtype=np.int64)]
    probs = [np.tile([0.0, 1.0, 0.0], (100, 1))]
    params = [Params(PolicyConfig().policy(4e-4, 4e-4))]
    with pytest.raises(ValueError, match="clash with the rule baselines"):
        compare(
            p,
            to_epoch_ms(gbpusd_bars["time"]),
            folds,
            {"momentum": probs},
            5,
            FILL,
            {"momentum": params},
            np.ones(len(p.close)),
        )


def test_tuned_entry_threshold_never_enters_when_no_candidate_earns_after_costs(
    gbpusd_bars: pd.DataFrame,
) -> None:
    p = _prices(gbpusd_bars)
    idx = np.arange(20_000, 24_000, dtype=np.int64)
    # Noise: probabilities that know nothing, swinging hard enough to clear every threshold tried.
    noise = np.random.default_rng(3).dirichlet([0.3, 0.3, 0.3], size=len(idx))
    base = Params(PolicyConfig(max_hold_bars=0).policy(4e-4, 4e-4))
    t = tune_entry_edge(base, p, idx, noise, np.full(len(p.close), 1e-4), FILL, (0.25, 1.0, 4.0))
    assert t.entry_edge == NEVER_ENTER
    assert len(t.scores) == 3 and max(t.scores.values()) <= 0
    assert t.cost == pytest.approx(round_trip_cost(p, idx, FILL, 1.0))
    # What that threshold does out of sample: no trade, no cost.
    held = policy_positions(base.with_policy(entry_edge=t.entry_edge), p, idx, noise, np.full(len(idx), 1e-4))
    assert not held.any()


def test_tuned_entry_threshold_keeps_trading_a_real_edge_and_picks_the_most_profitable(
    gbpusd_bars: pd.DataFrame,
) -> None:
    p = _prices(gbpusd_bars)
    idx = np.arange(20_000, 24_000, dtype=np.int64)
    oracle = _oracle_probs(p.close, idx)
    base = Params(PolicyConfig(max_hold_bars=0).policy(4e-4, 4e-4))
    t = tune_entry_edge(base, p, idx, oracle, np.full(len(p.close), 1e-4), FILL, (0.25, 0.5, 1.0, 8.0))
    assert t.entry_edge != NEVER_ENTER and t.scores[t.entry_edge] == max(t.scores.values()) > 0
    # 8 x the round-trip cost is beyond the oracle's edge (its one-hot edge is the class move, 4 bp).
    assert t.scores[max(t.scores)] == 0.0
