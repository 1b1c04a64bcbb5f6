"""Write proto/testdata/policy/golden.json: the decision-policy vectors both implementations run.

Each case is a policy, the instrument's volume step and minimum, and a sequence of closed bars
(probabilities, realised volatility, price); the expected decision of every bar comes from the
Python reference (kairos.training.policy.decide). Review the diff of the file before committing:
the expectations are the specification the Go policy is tested against.

    .venv/bin/python tools/policy_golden.py
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kairos.features.card import DecisionPolicy
from kairos.training.policy import Params, State, decide

OUT = Path(__file__).resolve().parents[1] / "proto" / "testdata" / "policy" / "golden.json"

BASE = DecisionPolicy(
    entry_edge=1.0e-4,
    exit_edge=0.2e-4,
    move_up=4.0e-4,
    move_down=5.0e-4,
    min_hold_bars=2,
    max_hold_bars=6,
    cooldown_bars=1,
    max_lots=0.5,
    target_vol=0.0,
    stop_vol_mult=0.0,
)


def p(up: float, down: float) -> list[float]:
    return [down, round(1.0 - up - down, 6), up]


def bar(probs: list[float], vol: float = 2e-4, price: float = 1.3) -> dict[str, Any]:
    return {"probs": probs, "vol": vol, "price": price}


# edge = p_up * 4e-4 - p_down * 5e-4 under BASE.
LONG = p(0.6, 0.2)  # edge 1.4e-4: enter long
SHORT = p(0.1, 0.4)  # edge -1.6e-4: enter short
KEEP = p(0.4, 0.2)  # edge 0.6e-4: inside entry, above exit
NONE = p(0.3, 0.3)  # edge -0.3e-4: below a long's exit, above a short's
AT_ENTRY = p(0.5, 0.2)  # edge exactly 1.0e-4 (>= entry)


def cases() -> list[dict[str, Any]]:
    c: list[tuple[str, DecisionPolicy, list[dict[str, Any]], float, float]] = []
    c.append(
        (
            "enters long at the entry threshold and holds inside it",
            BASE,
            [bar(NONE), bar(AT_ENTRY), bar(KEEP), bar(KEEP), bar(KEEP)],
            0.01,
            0.01,
        )
    )
    c.append(
        (
            "enters short when the edge is beyond the negative threshold",
            BASE,
            [bar(SHORT), bar(SHORT), bar(SHORT)],
            0.01,
            0.01,
        )
    )
    c.append(
        (
            "min hold delays the exit, then the edge inside the exit band closes",
            BASE,
            [bar(LONG), bar(NONE), bar(NONE), bar(NONE)],
            0.01,
            0.01,
        )
    )
    c.append(
        (
            "cooldown blocks the entry on the bar after an exit",
            BASE,
            [bar(LONG), bar(KEEP), bar(NONE), bar(LONG), bar(LONG), bar(LONG)],
            0.01,
            0.01,
        )
    )
    c.append(("max hold closes a position the signal would keep", BASE, [bar(LONG)] * 9, 0.01, 0.01))
    c.append(
        (
            "a reversal with a cooldown only exits",
            BASE,
            [bar(LONG), bar(LONG), bar(SHORT), bar(SHORT), bar(SHORT)],
            0.01,
            0.01,
        )
    )
    no_cool = DecisionPolicy(**{**asdict(BASE), "cooldown_bars": 0})
    c.append(
        (
            "a reversal without cooldown flips the position in one decision",
            no_cool,
            [bar(LONG), bar(LONG), bar(SHORT), bar(SHORT), bar(LONG)],
            0.01,
            0.01,
        )
    )
    c.append(
        ("a reversal before the min hold is held", no_cool, [bar(LONG), bar(SHORT), bar(SHORT)], 0.01, 0.01)
    )
    sized = DecisionPolicy(**{**asdict(BASE), "target_vol": 0.6e-4, "stop_vol_mult": 3.0})
    c.append(
        (
            "entries are sized to the volatility target, capped and rounded down to the step",
            sized,
            [
                bar(LONG, vol=2e-4),
                bar(NONE),
                bar(NONE),
                bar(NONE, vol=1e-4),
                bar(SHORT, vol=0.7e-4),
                bar(NONE),
                bar(NONE),
                bar(NONE),
                bar(LONG, vol=0.3e-4),
            ],
            0.01,
            0.01,
        )
    )
    c.append(
        (
            "a size below the instrument minimum does not enter",
            sized,
            [bar(LONG, vol=5e-3), bar(LONG, vol=1.3e-3), bar(LONG, vol=1.2e-3)],
            0.01,
            0.05,
        )
    )
    c.append(
        (
            "unusable inputs make no signal decision but max hold still applies",
            BASE,
            [
                bar([math.nan, 0.0, 1.0]),
                bar(LONG, vol=math.nan),
                bar([-0.1, 0.5, 0.6]),
                bar([math.nan] * 3),
                bar([math.nan] * 3),
                bar([math.nan] * 3),
                bar([math.nan] * 3),
                bar([math.nan] * 3),
                bar([math.nan] * 3),
            ],
            0.01,
            0.01,
        )
    )
    c.append(
        (
            "a volatility target ignores bars without a volatility",
            sized,
            [bar(LONG, vol=math.nan), bar(LONG, vol=0.0), bar(LONG, vol=-1e-4), bar(LONG, vol=1e-4)],
            0.01,
            0.01,
        )
    )
    rng = random.Random(81)
    pol = DecisionPolicy(
        **{
            **asdict(BASE),
            "target_vol": 0.5e-4,
            "stop_vol_mult": 2.0,
            "max_hold_bars": 12,
            "min_hold_bars": 1,
            "cooldown_bars": 0,
            "max_lots": 1.0,
        }
    )
    walk = []
    for _ in range(400):
        up = rng.random()
        down = rng.random() * (1 - up)
        walk.append(
            bar(
                [down, 1 - up - down, up],
                vol=rng.uniform(0.2e-4, 3e-4),
                price=round(1.3 + rng.uniform(-0.01, 0.01), 5),
            )
        )
    c.append(("a random walk of 400 bars", pol, walk, 0.01, 0.01))
    out = []
    for name, pol_, bars, step, min_lots in c:
        params = Params(pol_, lot_step=step, min_lots=min_lots)
        st = State()
        expected = []
        for b in bars:
            pd_, _, pu = b["probs"]
            d = decide(params, st, pd_, pu, b["vol"], b["price"])
            expected.append(
                {
                    "action": d.action.name.lower(),
                    "reason": d.reason.name.lower(),
                    "side": d.side,
                    "steps": d.steps,
                    "stop_distance": d.stop_distance,
                }
            )
        out.append(
            {
                "name": name,
                "policy": asdict(pol_),
                "lot_step": step,
                "min_lots": min_lots,
                "bars": bars,
                "expected": expected,
            }
        )
    return out


def _nan_as_text(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, list):
        return [_nan_as_text(x) for x in v]
    if isinstance(v, dict):
        return {k: _nan_as_text(x) for k, x in v.items()}
    return v


def render(doc: dict[str, Any]) -> str:
    """JSON with one bar or expectation per line: reviewable diffs, a modest file."""
    lines = ["{", f' "about": {json.dumps(doc["about"])},', ' "cases": [']
    for i, case in enumerate(doc["cases"]):
        lines.append("  {")
        for key in ("name", "policy", "lot_step", "min_lots"):
            lines.append(f"   {json.dumps(key)}: {json.dumps(_nan_as_text(case[key]))},")
        for key in ("bars", "expected"):
            rows = [f"    {json.dumps(_nan_as_text(r))}" for r in case[key]]
            tail = "," if key == "bars" else ""
            lines += [f"   {json.dumps(key)}: [", ",\n".join(rows), f"   ]{tail}"]
        lines.append("  }" + ("," if i < len(doc["cases"]) - 1 else ""))
    lines += [" ]", "}", ""]
    return "\n".join(lines)


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "about": "Decision-policy golden vectors (tools/policy_golden.py; ADR 0081). Run by "
        "python/tests/training/test_policy.py and go/execution/policy/golden_test.go. NaN is written "
        'as the string "NaN".',
        "cases": cases(),
    }
    OUT.write_text(render(doc), encoding="utf-8")
    print(f"wrote {OUT} ({len(doc['cases'])} cases)")


if __name__ == "__main__":
    main()
