"""The optional feature blocks (ADR 0104): the daily lookback and the cross-symbol means.

Batch (training) and online (serving) implement the same definitions twice; these tests hold them
together on real bars, check both against a brute-force reading of the definition, and pin the
schema rules: the base block alone keeps the hash every existing model carries.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from kairos.features import SCHEMA, compute_features, to_epoch_ms
from kairos.features.blocks import (
    CROSS_SOURCE_COLUMNS,
    N_CROSS,
    CrossBoard,
    DailyWindow,
    cross_features,
    daily_features,
)
from kairos.features.schema import BLOCKS, CROSS_FRESH_BARS, DAY_MS, schema_for
from kairos.training.data import load_bars

from .conftest import DATA

TOL = 1e-9
BASE_V2_HASH = "sha256:f8821ba7cddfb43b24dadff8db89af35fd775bbdaa8d35ebd09108e61452f115"


def _arrays(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        to_epoch_ms(df["time"]),
        df["high"].to_numpy(np.float64),
        df["low"].to_numpy(np.float64),
        df["close"].to_numpy(np.float64),
    )


@pytest.fixture(scope="module")
def btcusd_m1() -> pd.DataFrame:
    bars, _ = load_bars(str(DATA / "btcusd-perp-m1-2022-01.csv"), spread=0.5)
    return bars.iloc[:8000].reset_index(drop=True)


# --- the schema ------------------------------------------------------------------------------------


def test_the_base_block_alone_is_the_schema_every_existing_model_was_trained_on() -> None:
    assert schema_for(None) is SCHEMA and schema_for(["base"]) is SCHEMA
    assert SCHEMA.hash == BASE_V2_HASH, "the base schema's hash changed: every served model would be refused"
    assert SCHEMA.blocks == ("base",)


@pytest.mark.parametrize(
    ("asked", "blocks"),
    [
        (["daily"], ("base", "daily")),
        (["cross", "daily"], ("base", "daily", "cross")),
        (["cross", "base"], ("base", "cross")),
    ],
)
def test_blocks_are_appended_after_the_base_in_one_order_whatever_order_they_are_named_in(
    asked: list[str], blocks: tuple[str, ...]
) -> None:
    s = schema_for(asked)
    assert s.blocks == blocks
    assert s.names[: SCHEMA.n_features] == SCHEMA.names
    assert s.hash != SCHEMA.hash and s.window == SCHEMA.window
    start = SCHEMA.n_features
    for b in blocks[1:]:
        sl = s.block_slice(b)
        assert sl.start == start
        start = sl.stop
    assert start == s.n_features


def test_an_unknown_block_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown feature block\(s\) \['weekly'\].*" + str(list(BLOCKS))):
        schema_for(["daily", "weekly"])


# --- the daily block -------------------------------------------------------------------------------


def _daily_by_definition(t: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, i: int) -> list[float]:
    """The definition in schema.DAILY_SPECS, read literally for one bar."""
    window = [j for j in range(i + 1) if t[j] > t[i] - DAY_MS]
    before = [j for j in range(i + 1) if t[j] <= t[i] - DAY_MS]
    if not before:
        return [math.nan] * 3
    c0 = before[-1]
    ss = sum(math.log(c[j] / c[j - 1]) ** 2 for j in window)
    rv = math.sqrt(ss)
    zret = math.log(c[i] / c[c0]) / rv if rv > 0 else 0.0
    mn, mx = min(lo[j] for j in window), max(h[j] for j in window)
    pos = (c[i] - mn) / (mx - mn) - 0.5 if mx > mn else 0.0
    return [zret, rv * 1e4, pos]


@pytest.mark.parametrize("market", ["gbpusd", "btcusd"])
def test_daily_rows_online_equal_the_batch_rows_on_real_bars(
    market: str, gbpusd_m1: pd.DataFrame, btcusd_m1: pd.DataFrame
) -> None:
    df = gbpusd_m1 if market == "gbpusd" else btcusd_m1  # FX with its weekend gap; crypto around the clock
    t, h, lo, c = _arrays(df)
    batch = daily_features(t, h, lo, c)
    w = DailyWindow(60)
    online = np.array([w.push(int(t[i]), h[i], lo[i], c[i]) for i in range(len(c))])
    assert np.array_equal(np.isfinite(batch), np.isfinite(online))
    first = int(np.flatnonzero(np.isfinite(batch[:, 0]))[0])
    # The first row with a bar opened at or before its own open minus 24 hours, and not one earlier.
    assert t[first] - t[0] >= DAY_MS and t[first - 1] - t[0] < DAY_MS
    ok = np.isfinite(batch)
    assert np.max(np.abs(batch[ok] - online[ok])) <= TOL * max(1.0, float(np.max(np.abs(batch[ok]))))
    assert len(batch) - first > 4000, "most of the series is past the first day"


def test_daily_rows_follow_the_written_definition(gbpusd_m1: pd.DataFrame) -> None:
    df = gbpusd_m1.iloc[:9000].reset_index(drop=True)  # crosses the first weekend of February 2012
    t, h, lo, c = _arrays(df)
    batch = daily_features(t, h, lo, c)
    gap = int(np.argmax(np.diff(t))) + 1  # the first bar after the weekend
    rows = [0, 1439, 1440, 1500, 2880, gap - 1, gap, gap + 1, len(df) - 1]
    for i in rows:
        want = _daily_by_definition(t, h, lo, c, i)
        got = batch[i]
        assert np.allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True), (i, got, want)


def test_the_daily_window_stays_bounded_to_a_day_of_bars(gbpusd_m1: pd.DataFrame) -> None:
    t, h, lo, c = _arrays(gbpusd_m1.iloc[:5000])
    w = DailyWindow(60)
    for i in range(len(c)):
        w.push(int(t[i]), h[i], lo[i], c[i])
        assert w._n <= DAY_MS // 60_000 + 1
    assert w._buf.shape == (5, 2 * (DAY_MS // 60_000 + 2))


# --- the cross block -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_books(gbpusd_m1: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """GBPUSD on the bid (every minute) and on the ask with minutes missing (every third one dropped,
    plus an hour), so the freshness rule is exercised on real prices."""
    bid = gbpusd_m1.iloc[:4000].reset_index(drop=True)
    ask_all, _ = load_bars(str(DATA / "gbpusd-m1-ask-2012.csv"), spread=0.0)
    ask = ask_all.iloc[:4000]
    keep = (np.arange(len(ask)) % 3 != 0) & ~((np.arange(len(ask)) >= 2000) & (np.arange(len(ask)) < 2060))
    return {"BID": bid, "ASK": ask[keep].reset_index(drop=True)}


def _cross_by_definition(
    times: dict[str, np.ndarray], base: dict[str, np.ndarray], sym: str, i: int, tf_ms: int
) -> np.ndarray:
    t = times[sym][i]
    vals = []
    for other in times:
        if other == sym:
            continue
        before = np.flatnonzero(times[other] < t)
        if before.size == 0:
            continue
        j = before[-1]
        row = base[other][j, list(CROSS_SOURCE_COLUMNS)]
        if times[other][j] >= t - CROSS_FRESH_BARS * tf_ms and np.isfinite(row).all():
            vals.append(row)
    return np.mean(vals, axis=0) if vals else np.zeros(N_CROSS)


def test_cross_rows_follow_the_written_definition(two_books: dict[str, pd.DataFrame]) -> None:
    times = {s: to_epoch_ms(df["time"]) for s, df in two_books.items()}
    base = {s: compute_features(df) for s, df in two_books.items()}
    rows = dict(zip(times, cross_features(list(times.values()), list(base.values()), 60), strict=True))
    for sym in times:
        for i in [0, 240, 241, 500, 1999, 2001, 2100, len(times[sym]) - 1]:
            want = _cross_by_definition(times, base, sym, i, 60_000)
            assert np.allclose(rows[sym][i], want, rtol=0, atol=1e-12), (sym, i)
    stale = rows["BID"][(times["BID"] >= times["BID"][2003]) & (times["BID"] < times["BID"][2060])]
    assert (stale == 0).all(), "an hour without ASK bars: BID's cross features are 0, not stale values"
    assert (rows["BID"][500:] != 0).any(axis=1).mean() > 0.9


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_rows_online_equal_the_batch_rows_whatever_order_the_symbols_bars_arrive_in(
    seed: int, two_books: dict[str, pd.DataFrame]
) -> None:
    syms = list(two_books)
    times = [to_epoch_ms(two_books[s]["time"]) for s in syms]
    base = [compute_features(two_books[s]) for s in syms]
    want = cross_features(times, base, 60)
    # Bars closing in the same minute arrive in a random order (as ticks of two symbols would).
    rng = random.Random(seed)
    events = [(int(t), rng.random(), k, i) for k, ts in enumerate(times) for i, t in enumerate(ts)]
    events.sort()
    board = CrossBoard(max_symbols=4)
    got = [np.full_like(w, np.nan) for w in want]
    for t, _, k, i in events:
        got[k][i] = board.row(syms[k], t, syms, 60)
        board.record(syms[k], t, base[k][i])
    for k in range(len(syms)):
        assert np.max(np.abs(got[k] - want[k])) <= TOL


def test_the_cross_board_never_holds_more_symbols_than_its_bound() -> None:
    board = CrossBoard(max_symbols=2)
    row = np.ones(SCHEMA.n_features)
    for k in range(5):
        board.record(f"S{k}", 60_000, row)
    assert len(board._latest) == 2
    for _ in range(10):
        board.record("S0", 60_000, row)
    assert len(board._latest["S0"]) == CrossBoard.KEEP
