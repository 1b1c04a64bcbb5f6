"""The decision policy: golden vectors shared with Go, the series form equal to the bar-by-bar one,
and fast enough for threshold searches."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kairos.features.card import DecisionPolicy
from kairos.training.policy import (
    Action,
    Params,
    PolicyConfig,
    Reason,
    State,
    class_moves,
    decide,
    run_policy,
)

GOLDEN = Path(__file__).resolve().parents[3] / "proto" / "testdata" / "policy" / "golden.json"
GBPUSD_BID = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "gbpusd-m1-bid-2012.csv"


def _num(v: Any) -> float:
    return math.nan if v == "NaN" else float(v)


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]
    return cases


def _inputs(case: dict[str, Any]) -> tuple[Params, np.ndarray, np.ndarray, np.ndarray]:
    params = Params(DecisionPolicy(**case["policy"]), case["lot_step"], case["min_lots"])
    probs = np.array([[_num(x) for x in b["probs"]] for b in case["bars"]], dtype=np.float64)
    vol = np.array([_num(b["vol"]) for b in case["bars"]])
    price = np.array([_num(b["price"]) for b in case["bars"]])
    return params, probs, vol, price


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_golden_vectors_bar_by_bar(case: dict[str, Any]) -> None:
    params, probs, vol, price = _inputs(case)
    st = State()
    for k, (want, p, v, px) in enumerate(zip(case["expected"], probs, vol, price, strict=True)):
        d = decide(params, st, float(p[0]), float(p[2]), float(v), float(px))
        got = {
            "action": d.action.name.lower(),
            "reason": d.reason.name.lower(),
            "side": d.side,
            "steps": d.steps,
            "stop_distance": d.stop_distance,
        }
        assert got == want, f"bar {k}"


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_golden_vectors_as_one_series(case: dict[str, Any]) -> None:
    params, probs, vol, price = _inputs(case)
    run = run_policy(params, probs, vol, price)
    exp = case["expected"]
    assert [Action(a).name.lower() for a in run.action] == [e["action"] for e in exp]
    assert [Reason(r).name.lower() for r in run.reason] == [e["reason"] for e in exp]
    assert run.side.tolist() == [e["side"] for e in exp]
    assert run.steps.tolist() == [e["steps"] for e in exp]
    assert run.stop_distance.tolist() == [e["stop_distance"] for e in exp]


POLICIES = [
    dict(min_hold_bars=1, max_hold_bars=0, cooldown_bars=0, target_vol=0.0),
    dict(min_hold_bars=3, max_hold_bars=10, cooldown_bars=2, target_vol=0.5e-4),
    dict(min_hold_bars=1, max_hold_bars=1, cooldown_bars=0, target_vol=1e-4, exit_edge=1e-4),
    dict(min_hold_bars=5, max_hold_bars=5, cooldown_bars=7, target_vol=0.0, exit_edge=0.0),
]


@pytest.mark.parametrize("changes", POLICIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_series_form_equals_the_bar_by_bar_state_machine(changes: dict[str, Any], seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    probs[rng.random(n) < 0.01] = np.nan
    vol = rng.uniform(0.1e-4, 3e-4, n)
    vol[rng.random(n) < 0.01] = np.nan
    price = rng.uniform(1.2, 1.4, n)
    pol = DecisionPolicy(
        **{
            **asdict(DecisionPolicy(entry_edge=0.8e-4, exit_edge=0.1e-4, move_up=4e-4, move_down=4.5e-4)),
            "stop_vol_mult": 2.0,
            **changes,
        }
    )
    params = Params(pol, 0.01, 0.02)
    run = run_policy(params, probs, vol, price)
    st = State()
    for k in range(n):
        d = decide(params, st, float(probs[k, 0]), float(probs[k, 2]), float(vol[k]), float(price[k]))
        assert (run.action[k], run.reason[k], run.side[k], run.steps[k], run.stop_distance[k]) == (
            d.action,
            d.reason,
            d.side,
            d.steps,
            d.stop_distance,
        ), f"bar {k}"
    assert run.trades > 20


def test_close_at_end_leaves_the_series_flat() -> None:
    params = Params(PolicyConfig(entry_edge=1e-4).policy(4e-4, 4e-4))
    probs = np.tile([0.1, 0.1, 0.8], (5, 1))
    run = run_policy(params, probs, np.full(5, 1e-4), np.ones(5), close_at_end=True)
    assert run.side.tolist() == [1, 1, 1, 1, 0]
    assert (run.action[-1], run.reason[-1]) == (Action.EXIT, Reason.END)
    once = run_policy(params, probs[:1], np.full(1, 1e-4), np.ones(1), close_at_end=True)
    assert once.trades == 0 and once.side.tolist() == [0]


def test_class_moves_are_the_mean_forward_moves_of_each_label() -> None:
    close = np.array([1.0, 1.1, 1.0, 1.2, 1.2, 1.0])
    labels = np.array([2.0, 0.0, 2.0, 1.0, 0.0, np.nan])
    up, down = class_moves(close, labels, np.arange(5, dtype=np.int64), horizon=1)
    assert up == pytest.approx((math.log(1.1) + math.log(1.2)) / 2)
    assert down == pytest.approx((math.log(1.1) + math.log(1.2)) / 2)
    only_up = class_moves(close, np.full(6, 2.0), np.arange(5, dtype=np.int64), horizon=1)
    assert only_up[1] == pytest.approx(np.mean(np.abs(np.log(close[1:] / close[:-1]))))


@pytest.mark.parametrize("changes", POLICIES)
@pytest.mark.parametrize("mult", [1.0, 3.0])
def test_stops_in_the_series_form_equal_the_state_machine_with_the_venue_closing_the_position(
    changes: dict[str, Any], mult: float
) -> None:
    """What live execution does, bar by bar: the venue closes a position whose stop the next bar
    touches; the next signal finds it flat and the policy restarts from flat with its cooldown."""
    from kairos.training.data import load_bars
    from kairos.training.policy import StopPath, first_stop, stop_level

    bars, _ = load_bars(str(GBPUSD_BID))
    n = 4000
    b = bars.iloc[: n + 1]
    o, lo, hi, c, sp = (b[k].to_numpy(np.float64) for k in ("open", "low", "high", "close", "spread"))
    path = StopPath(o[1:], lo[1:], hi[1:], sp[1:], point=1e-5)  # row k's next bar is bar k+1
    rng = np.random.default_rng(int(mult))
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    vol = rng.uniform(0.3e-4, 2e-4, n)
    pol = DecisionPolicy(
        **{
            **asdict(DecisionPolicy(entry_edge=0.8e-4, exit_edge=0.1e-4, move_up=4e-4, move_down=4.5e-4)),
            **changes,
            "stop_vol_mult": mult,
        }
    )
    params = Params(pol, 0.01, 0.02)
    run = run_policy(params, probs, vol, c[:n], stops=path)
    assert run.stop_exit is not None
    st, level, stopped = State(), math.nan, 0
    for k in range(n):
        if stopped:
            st = State(since_exit=0)  # the signal finds the position closed outside the policy
            stopped = 0
        d = decide(params, st, float(probs[k, 0]), float(probs[k, 2]), float(vol[k]), float(c[k]))
        if d.action in (Action.ENTER, Action.REVERSE):
            level = stop_level(path, k, d.side, d.stop_distance)
        assert (run.side[k], run.steps[k]) == (st.side, st.steps), f"bar {k}"
        r, px = first_stop(path, k, k + 1, st.side, level) if st.side else (-1, math.nan)
        if r == k:
            stopped = 1
            assert run.stop_exit[k] == px, f"bar {k}"
        else:
            assert math.isnan(run.stop_exit[k]), f"bar {k}"
    assert np.isfinite(run.stop_exit).sum() >= 5
