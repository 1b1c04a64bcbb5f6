"""The decision policy: the model card's ``DecisionPolicy`` applied bar by bar, in pure numpy.

The same state machine runs live in ``go/execution/policy``; the golden vectors in
``proto/testdata/policy`` hold both implementations to identical positions, sizes and actions
(docs/training.md, ADR 0081). Two entry points compute the same thing:

- ``decide(params, state, p_down, p_up, vol, price)``: one closed bar, as live execution applies
  one signal. The reference implementation, written to read like the Go code.
- ``run_policy(params, probs, vol, price)``: a whole series. Event-driven (it jumps from one
  candidate entry or exit bar to the next by bisection), so its cost grows with the number of trades
  rather than bars: 30k bars with a few hundred trades cost about 10 ms (2-core VM, under load),
  fit for threshold searches over many trials.

Arithmetic is kept identical to Go's (same operations in the same order, no fused multiply-add), so
thresholds compare the same way on both sides. Sizing rounds ``min(max_lots, target_vol / vol)``
down to the volume step with a 1e-9 step tolerance for representation error.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from kairos.features.card import DecisionPolicy

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Bars since the last exit before any exit happened: beyond every cooldown, and safe from overflow
# when incremented (Go uses the same value).
NEVER = 1 << 30
STEP_TOLERANCE = 1e-9


class Action(IntEnum):
    """What a bar's decision does to the position (the golden vectors use the lower-case names)."""

    HOLD = 0
    ENTER = 1
    EXIT = 2
    REVERSE = 3


class Reason(IntEnum):
    """Why: the rule that fired (NONE for holds)."""

    NONE = 0
    ENTRY = 1
    EXIT_EDGE = 2
    REVERSAL = 3
    MAX_HOLD = 4
    END = 5  # the backtest closes at the end of a period (never live)


@dataclass(frozen=True)
class Params:
    """A card's policy plus what execution knows about the instrument."""

    policy: DecisionPolicy
    lot_step: float = 0.01
    """Volume step of the instrument, lots (the paper venue's FX default)."""
    min_lots: float = 0.01
    """Smallest tradable size; an entry sized below it does not happen."""

    def with_policy(self, **changes: float | int | str) -> Params:
        """A copy with some policy fields changed (e.g. candidate thresholds in a search)."""
        return replace(self, policy=replace(self.policy, **changes))  # type: ignore[arg-type]


@dataclass
class State:
    """Per symbol: the position the policy holds and its bar counters."""

    side: int = 0
    """-1 short, 0 flat, +1 long."""
    steps: int = 0
    """Position size in volume steps."""
    held: int = 0
    """Bars closed since the entry decision."""
    since_exit: int = NEVER
    """Bars closed since the last exit decision."""


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: Reason
    side: int
    steps: int
    edge: float
    stop_distance: float
    """Protective stop distance in price units on an entry or reversal (0: none, or not an entry)."""


def edge_of(policy: DecisionPolicy, p_down: float, p_up: float) -> float:
    """Expected forward move in return units; NaN unless both probabilities are finite in 0..1."""
    if not (0.0 <= p_down <= 1.0 and 0.0 <= p_up <= 1.0):  # also false for NaN
        return math.nan
    return p_up * policy.move_up - p_down * policy.move_down


def size_steps(params: Params, vol: float) -> int:
    """Entry size in volume steps (0: no valid size: bad volatility or below the minimum)."""
    pol = params.policy
    if pol.target_vol > 0:
        if not (vol > 0 and math.isfinite(vol)):
            return 0
        lots = min(pol.max_lots, pol.target_vol / vol)
    else:
        lots = pol.max_lots
    steps = math.floor(lots / params.lot_step + STEP_TOLERANCE)
    if steps * params.lot_step + STEP_TOLERANCE * params.lot_step < params.min_lots:
        return 0
    return int(steps)


def stop_distance(policy: DecisionPolicy, vol: float, price: float) -> float:
    if policy.stop_vol_mult <= 0 or not (vol > 0 and math.isfinite(vol)) or not price > 0:
        return 0.0
    return policy.stop_vol_mult * vol * price


def decide(params: Params, st: State, p_down: float, p_up: float, vol: float, price: float) -> Decision:
    """Apply one closed bar to ``st`` (updated in place) and return the decision.

    ``vol`` is the realised volatility in return units (``DecisionPolicy.vol_unit`` applied) and
    ``price`` the price the stop distance is scaled by. Non-finite or out-of-range probabilities
    make no signal-driven decision, but the maximum holding time still closes a position.
    """
    pol = params.policy
    edge = edge_of(pol, p_down, p_up)
    if st.side != 0:
        st.held += 1
        if pol.max_hold_bars > 0 and st.held >= pol.max_hold_bars:
            return _exit(st, Reason.MAX_HOLD, edge)
        if st.held < pol.min_hold_bars or math.isnan(edge):
            return Decision(Action.HOLD, Reason.NONE, st.side, st.steps, edge, 0.0)
        if (st.side > 0 and edge <= -pol.entry_edge) or (st.side < 0 and edge >= pol.entry_edge):
            steps = size_steps(params, vol) if pol.cooldown_bars == 0 else 0
            if steps == 0:
                return _exit(st, Reason.REVERSAL, edge)
            st.side, st.steps, st.held = -st.side, steps, 0
            return Decision(
                Action.REVERSE, Reason.REVERSAL, st.side, steps, edge, stop_distance(pol, vol, price)
            )
        if (st.side > 0 and edge < pol.exit_edge) or (st.side < 0 and edge > -pol.exit_edge):
            return _exit(st, Reason.EXIT_EDGE, edge)
        return Decision(Action.HOLD, Reason.NONE, st.side, st.steps, edge, 0.0)
    if st.since_exit < NEVER:
        st.since_exit += 1
    side = 1 if edge >= pol.entry_edge else -1 if edge <= -pol.entry_edge else 0
    if side == 0 or st.since_exit <= pol.cooldown_bars:
        return Decision(Action.HOLD, Reason.NONE, 0, 0, edge, 0.0)
    steps = size_steps(params, vol)
    if steps == 0:
        return Decision(Action.HOLD, Reason.NONE, 0, 0, edge, 0.0)
    st.side, st.steps, st.held = side, steps, 0
    return Decision(Action.ENTER, Reason.ENTRY, side, steps, edge, stop_distance(pol, vol, price))


def _exit(st: State, reason: Reason, edge: float) -> Decision:
    st.side, st.steps, st.held, st.since_exit = 0, 0, 0, 0
    return Decision(Action.EXIT, reason, 0, 0, edge, 0.0)


@dataclass
class PolicyRun:
    """A series of decisions, one per bar."""

    side: npt.NDArray[np.int8]
    steps: IntArray
    action: npt.NDArray[np.int8]
    reason: npt.NDArray[np.int8]
    edge: FloatArray
    stop_distance: FloatArray
    lot_step: float = field(default=0.01)
    stop_exit: FloatArray | None = None
    """With ``StopPath``: per bar, the price at which the position held after this bar's decision was
    closed by its protective stop during the next bar (bid for a long, ask for a short; NaN: not
    stopped). The next bar's decision then starts flat, as after an exit on this bar."""

    @property
    def lots(self) -> FloatArray:
        """Signed position after each bar's decision, lots."""
        return np.asarray(self.side * self.steps * self.lot_step, dtype=np.float64)

    @property
    def trades(self) -> int:
        return int(np.count_nonzero(self.action != Action.HOLD))


@dataclass(frozen=True)
class StopPath:
    """For each decision bar, the bar after it as a protective stop sees it: bid open, low and high,
    and the spread (ask = bid + spread). The backtest's view of the quotes a stop is worked on."""

    open: FloatArray
    low: FloatArray
    high: FloatArray
    spread: FloatArray
    point: float = 0.0
    """Price step the stop level is rounded to, away from the market (execution rounds to the
    instrument's digits the same way); 0: no rounding."""


def stop_level(path: StopPath, row: int, side: int, distance: float) -> float:
    """The stop loss of an entry decided at ``row``: ``distance`` from the fill's reference quote
    (the ask of the next bar's open for a buy, the bid for a sell), rounded away from the market."""
    if side > 0:
        x = float(path.open[row] + path.spread[row]) - distance
        k = math.floor(x / path.point + 1e-9) if path.point > 0 else 0
    else:
        x = float(path.open[row]) + distance
        k = math.ceil(x / path.point - 1e-9) if path.point > 0 else 0
    # round() gives the float nearest the decimal level, the one a quote of that price parses to.
    return round(k * path.point, 12) if path.point > 0 else x


def first_stop(path: StopPath, lo: int, hi: int, side: int, level: float) -> tuple[int, float]:
    """The first bar in ``lo..hi-1`` whose next bar touches ``level`` (a long's at the bid low, a
    short's at the ask high) and the exit price: the stop level, or the next bar's open when it gaps
    through (bid for a long, ask for a short). (-1, nan) if none."""
    if hi <= lo:
        return -1, math.nan
    if side > 0:
        hit = np.flatnonzero(path.low[lo:hi] <= level)
        if not len(hit):
            return -1, math.nan
        r = lo + int(hit[0])
        return r, float(min(path.open[r], level))
    ask_high = path.high[lo:hi] + path.spread[lo:hi]
    hit = np.flatnonzero(ask_high >= level)
    if not len(hit):
        return -1, math.nan
    r = lo + int(hit[0])
    return r, float(max(path.open[r] + path.spread[r], level))


def edges(policy: DecisionPolicy, probs: FloatArray) -> FloatArray:
    """``edge_of`` over probabilities [n, 3] (down, flat, up)."""
    p = np.asarray(probs, dtype=np.float64)
    p_down, p_up = p[:, 0], p[:, 2]
    ok = (p_down >= 0) & (p_down <= 1) & (p_up >= 0) & (p_up <= 1)
    with np.errstate(invalid="ignore"):
        e = p_up * policy.move_up - p_down * policy.move_down
    return np.where(ok, e, np.nan)


def sizes(params: Params, vol: FloatArray) -> IntArray:
    """``size_steps`` over a volatility series."""
    pol = params.policy
    v = np.asarray(vol, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if pol.target_vol > 0:
            ok = (v > 0) & np.isfinite(v)
            lots = np.where(ok, np.minimum(pol.max_lots, pol.target_vol / np.where(ok, v, 1.0)), 0.0)
        else:
            lots = np.full(len(v), pol.max_lots)
        steps = np.floor(lots / params.lot_step + STEP_TOLERANCE)
    big_enough = steps * params.lot_step + STEP_TOLERANCE * params.lot_step >= params.min_lots
    return np.where(big_enough, steps, 0).astype(np.int64)


def _next(candidates: list[int], start: int, n: int) -> int:
    k = bisect_left(candidates, start)
    return candidates[k] if k < len(candidates) else n


def run_policy(
    params: Params,
    probs: FloatArray,
    vol: FloatArray,
    price: FloatArray,
    *,
    close_at_end: bool = False,
    stops: StopPath | None = None,
) -> PolicyRun:
    """``decide`` over a series of bars from a flat start, as one call.

    ``probs`` is [n, 3] (down, flat, up), ``vol`` the realised volatility in return units, ``price``
    the price stop distances scale with. ``close_at_end`` makes the last bar's decision flat (reason
    END), as the backtest does at the end of each validation fold. ``stops`` (the next bar of every
    bar) works each entry's protective stop as the venue does: a position stopped during the bar
    after bar r is flat from bar r+1's decision on, with the cooldown counted from bar r (what live
    execution does when it finds the position closed outside the policy); ``stop_exit`` says where.
    """
    pol = params.policy
    n = len(probs)
    e = edges(pol, probs)
    sz = sizes(params, vol)
    ok_size = sz > 0
    with np.errstate(invalid="ignore"):
        # Plain lists: bisect on them costs a fraction of a numpy call per event.
        long_in = np.flatnonzero((e >= pol.entry_edge) & ok_size).tolist()
        short_in = np.flatnonzero((e <= -pol.entry_edge) & ok_size).tolist()
        long_out = np.flatnonzero(e < pol.exit_edge).tolist()
        short_out = np.flatnonzero(e > -pol.exit_edge).tolist()
    min_hold = max(pol.min_hold_bars, 1)
    edge_at, size_at = e.tolist(), sz.tolist()  # scalar reads from lists are cheaper than from arrays
    # Events: bar, action, reason; segments: first bar, end bar (exclusive), side, size.
    events: list[tuple[int, int, int]] = []
    seg: list[tuple[int, int, int, int]] = []
    t, cur, last_exit = 0, 0, -NEVER
    entry = 0
    stop_exit = np.full(n, np.nan) if stops is not None else None
    stop_rows = n - 1 if close_at_end else n  # the fold-end exit fills before the last bar's stop
    while t < n:
        if cur == 0:
            start = max(t, last_exit + pol.cooldown_bars + 1)
            a, b = _next(long_in, start, n), _next(short_in, start, n)
            entry = min(a, b)
            if entry >= n:
                break
            cur = 1 if a <= b else -1
            events.append((entry, Action.ENTER, Reason.ENTRY))
        # In a position since `entry` (an entry or a reversal).
        signal_exit = _next(long_out if cur > 0 else short_out, entry + min_hold, n)
        forced = entry + pol.max_hold_bars if pol.max_hold_bars > 0 else n
        x = min(signal_exit, forced)
        if stops is not None and stop_exit is not None and pol.stop_vol_mult > 0:
            dist = stop_distance(pol, float(vol[entry]), float(price[entry]))
            if dist > 0:
                level = stop_level(stops, entry, cur, dist)
                r, px = first_stop(stops, entry, min(x, stop_rows), cur, level)
                if r >= 0:
                    seg.append((entry, r + 1, cur, size_at[entry]))
                    stop_exit[r] = px
                    cur, last_exit, t = 0, r, r + 1
                    continue
        seg.append((entry, min(x, n), cur, size_at[entry]))
        if x >= n:
            break
        if forced <= signal_exit:
            events.append((x, Action.EXIT, Reason.MAX_HOLD))
        elif (cur > 0 and edge_at[x] <= -pol.entry_edge) or (cur < 0 and edge_at[x] >= pol.entry_edge):
            if pol.cooldown_bars == 0 and size_at[x] > 0:
                events.append((x, Action.REVERSE, Reason.REVERSAL))
                cur, entry = -cur, x
                t = x
                continue
            events.append((x, Action.EXIT, Reason.REVERSAL))
        else:
            events.append((x, Action.EXIT, Reason.EXIT_EDGE))
        cur, last_exit, t = 0, x, x + 1
    action = np.zeros(n, np.int8)
    reason = np.zeros(n, np.int8)
    if events:
        bars, acts, whys = zip(*events, strict=True)
        action[list(bars)], reason[list(bars)] = acts, whys
    # Segments never overlap: a running sum of +value at their start and -value at their end.
    side_marks = np.zeros(n + 1, np.int64)
    step_marks = np.zeros(n + 1, np.int64)
    if seg:
        first, last, sides, sizes_ = (np.array(c, dtype=np.int64) for c in zip(*seg, strict=True))
        np.add.at(side_marks, first, sides)
        np.add.at(side_marks, last, -sides)
        np.add.at(step_marks, first, sizes_)
        np.add.at(step_marks, last, -sizes_)
    side = np.cumsum(side_marks[:n]).astype(np.int8)
    steps = np.cumsum(step_marks[:n])
    stop_dist = np.zeros(n, np.float64)
    if pol.stop_vol_mult > 0 and seg:
        for b0, *_ in seg:
            stop_dist[b0] = stop_distance(pol, float(vol[b0]), float(price[b0]))
    if close_at_end and n > 0 and side[-1] != 0:
        if n > 1 and side[-2] != 0:
            action[-1], reason[-1] = Action.EXIT, Reason.END
        else:  # entered on the last bar: no trade at all
            action[-1], reason[-1] = Action.HOLD, Reason.NONE
        stop_dist[-1] = 0.0
        side[-1], steps[-1] = 0, 0
    return PolicyRun(side, steps, action, reason, e, stop_dist, params.lot_step, stop_exit)


# ------------------------------------------------------------------------------ from training to card


@dataclass(frozen=True)
class PolicyConfig:
    """The policy's tunable parameters and their defaults; the class moves are measured, not set.

    Thresholds are in return units over the label horizon: the defaults enter when the expected move
    is half a basis point and leave when it is gone. The backtest tunes the entry threshold on each
    model's inner fold (``tune_entry``, ``kairos.training.backtest.tune_entry_edge``) with
    ``Params.with_policy`` and ``run_policy``.
    """

    entry_edge: float = 0.5e-4
    exit_edge: float = 0.0
    min_hold_bars: int = 1
    max_hold_bars: int = 30
    cooldown_bars: int = 0
    max_lots: float = 1.0
    target_vol: float = 0.0
    vol_feature: str = "vol_60"
    vol_unit: float = 1e-4
    stop_vol_mult: float = 0.0
    tune_entry: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    """Entry thresholds tried on each model's inner fold, as multiples of the round-trip cost; the one
    with the highest net return there is used (never entering if none earns). Empty: ``entry_edge``."""

    def policy(self, move_up: float, move_down: float) -> DecisionPolicy:
        return DecisionPolicy(
            entry_edge=self.entry_edge,
            exit_edge=self.exit_edge,
            move_up=move_up,
            move_down=move_down,
            min_hold_bars=self.min_hold_bars,
            max_hold_bars=self.max_hold_bars,
            cooldown_bars=self.cooldown_bars,
            max_lots=self.max_lots,
            target_vol=self.target_vol,
            vol_feature=self.vol_feature,
            vol_unit=self.vol_unit,
            stop_vol_mult=self.stop_vol_mult,
        )


def class_moves(
    close: FloatArray, labels: FloatArray, samples: IntArray, horizon: int
) -> tuple[float, float]:
    """(move_up, move_down): mean forward log return over ``horizon`` bars of the ``samples`` labelled
    up (2), and mean absolute one of those labelled down (0). A class without samples falls back to
    the mean absolute move of all samples."""
    s = samples[samples + horizon < len(close)]
    r = np.log(close[s + horizon] / close[s])
    y = labels[s]
    fallback = float(np.mean(np.abs(r))) if len(r) else math.nan
    up, down = r[y == 2], -r[y == 0]
    return (
        float(up.mean()) if len(up) else fallback,
        float(down.mean()) if len(down) else fallback,
    )
