"""BarBuilder follows the shared bar rule exactly (the Go collector implements the same rule)."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

from kairos.features import Bar, BarBuilder, native

M1 = 60_000


def _feed(builder: BarBuilder, ticks: list[tuple[int, float, float]]) -> list[Bar]:
    out: list[Bar] = []
    for t, bid, ask in ticks:
        out += builder.add_tick(t, bid, ask)
    return out


def test_bar_holds_bid_ohlc_tick_count_mean_and_max_spread() -> None:
    b = BarBuilder(60, point=1e-5)
    closed = _feed(b, [(1_000, 1.10000, 1.10010), (20_000, 1.10050, 1.10070), (59_999, 1.09990, 1.10000)])
    assert closed == []
    (bar,) = b.flush()
    assert (bar.open_time_msc, bar.period_s) == (0, 60)
    assert (bar.open, bar.high, bar.low, bar.close) == (1.10000, 1.10050, 1.09990, 1.09990)
    assert bar.tick_volume == 3
    assert bar.spread_mean == pytest.approx((0.0001 + 0.0002 + 0.0001) / 3, abs=1e-15)
    assert bar.spread_max == pytest.approx(0.0002, abs=1e-15)
    assert bar.spread_points == 20


@pytest.mark.parametrize(
    ("tick_times", "expected_open_times", "open_after"),
    [
        # A tick exactly at open_time + P belongs to the next bar and closes the current one.
        ([0, M1 - 1, M1], [0], M1),
        # Empty minutes make no bars: a gap stays a gap.
        ([5, 3 * M1 + 7], [0], 3 * M1),
        # Open time is floor(t / P) * P, whatever the first tick's offset.
        ([M1 + 59_999, 2 * M1 + 1, 5 * M1], [M1, 2 * M1], 5 * M1),
    ],
)
def test_a_bar_closes_only_when_a_tick_reaches_the_next_period(
    tick_times: list[int], expected_open_times: list[int], open_after: int
) -> None:
    b = BarBuilder(60)
    closed = _feed(b, [(t, 1.1, 1.1001) for t in tick_times])
    assert [x.open_time_msc for x in closed] == expected_open_times
    assert [x.open_time_msc for x in b.flush()] == [open_after]
    assert b.flush() == []


def test_late_ticks_are_dropped_and_counted_not_merged_into_an_emitted_bar() -> None:
    b = BarBuilder(60)
    closed = _feed(b, [(0, 1.1, 1.1001), (M1 + 1, 1.2, 1.2001), (30_000, 0.9, 0.9001)])
    assert len(closed) == 1 and closed[0].low == 1.1
    assert b.late_ticks == 1
    (open_bar,) = b.flush()
    assert open_bar.tick_volume == 1 and open_bar.low == 1.2


def test_bars_from_real_eurusd_ticks_account_for_every_tick(eurusd_ticks: pd.DataFrame) -> None:
    b = BarBuilder(60)
    bars: list[Bar] = []
    for t, bid, ask in zip(eurusd_ticks["time_msc"], eurusd_ticks["bid"], eurusd_ticks["ask"], strict=True):
        bars += b.add_tick(int(t), float(bid), float(ask))
    bars += b.flush()
    minutes = eurusd_ticks["time_msc"].to_numpy() // M1
    assert [x.open_time_msc for x in bars] == [int(m) * M1 for m in np.unique(minutes)]
    assert sum(x.tick_volume for x in bars) == len(eurusd_ticks)
    first = eurusd_ticks[minutes == minutes[0]]
    assert bars[0].open == first["bid"].iloc[0] and bars[0].close == first["bid"].iloc[-1]
    assert bars[0].high == first["bid"].max() and bars[0].low == first["bid"].min()
    assert bars[0].spread_mean == pytest.approx((first["ask"] - first["bid"]).mean(), abs=1e-15)
    assert b.late_ticks == 0


@pytest.mark.parametrize(("timeframe_s", "point"), [(0, 1e-5), (60, 0.0)])
def test_bar_builder_rejects_a_nonsense_configuration(timeframe_s: int, point: float) -> None:
    with pytest.raises(ValueError):
        BarBuilder(timeframe_s, point=point)


def _state(b: BarBuilder) -> tuple[object, ...]:
    return (b._open_ms, b._o, b._h, b._l, b._c, b._n, b._spread_sum, b._spread_max, b._volume, b.late_ticks)


@pytest.mark.parametrize(
    ("timeframe_s", "with_volume", "shuffle"),
    [(60, False, False), (60, True, False), (300, True, False), (60, True, True)],
    ids=["m1", "m1-volume", "m5-volume", "m1-out-of-order-batches"],
)
def test_add_ticks_makes_the_bars_of_add_tick_bit_for_bit_in_any_split(
    eurusd_ticks: pd.DataFrame, timeframe_s: int, with_volume: bool, shuffle: bool
) -> None:
    # Real EURUSD ticks, cut into batches of random sizes (1-120 ticks, as the collector's requests);
    # the batched builder must close the same bars, at the same ticks, and end in the same state.
    rng = np.random.default_rng(7)
    df = eurusd_ticks.iloc[:20_000]
    times = [int(t) for t in df["time_msc"]]
    bids, asks = df["bid"].astype(float).tolist(), df["ask"].astype(float).tolist()
    vols = (rng.integers(0, 5, len(times)) * 0.5).tolist() if with_volume else None
    one, batched = BarBuilder(timeframe_s), BarBuilder(timeframe_s)
    j = 0
    closes = 0
    while j < len(times):
        k = min(len(times), j + int(rng.integers(1, 121)))
        idx = list(range(j, k))
        if shuffle and rng.random() < 0.2:
            rng.shuffle(idx)  # some batches out of order: late ticks, the tick-by-tick fallback
        t, b, a = [times[i] for i in idx], [bids[i] for i in idx], [asks[i] for i in idx]
        v = [vols[i] for i in idx] if vols is not None else None
        want = []
        for m in range(len(idx)):
            want += [(bar, m) for bar in one.add_tick(t[m], b[m], a[m], v[m] if v is not None else 0)]
        got = batched.add_ticks(t, b, a, v)
        assert got == want
        assert _state(batched) == _state(one)
        closes += len(got)
        j = k
    assert closes > 50
    assert batched.flush() == one.flush()
    if shuffle:
        assert one.late_ticks > 0


@pytest.mark.parametrize(
    ("timeframe_s", "with_volume", "shuffle"),
    [(60, False, False), (60, True, False), (300, True, False), (60, True, True)],
    ids=["m1", "m1-volume", "m5-volume", "m1-out-of-order-batches"],
)
def test_the_cpp_tick_bars_make_bar_builders_bars_bit_for_bit(
    eurusd_ticks: pd.DataFrame, timeframe_s: int, with_volume: bool, shuffle: bool
) -> None:
    # The inference server's builder in C++ (TickBars, ADR 0119) against BarBuilder, the definition:
    # tick by tick and in batches of random sizes, the same bars at the same ticks and the same state
    # after every batch, late ticks and the final flush included.
    assert native.load() is not None, "the C++ feature kernel is not built: run `make cpp-build`"
    rng = np.random.default_rng(11)
    times = [int(t) for t in eurusd_ticks["time_msc"]]
    bids, asks = eurusd_ticks["bid"].astype(float).tolist(), eurusd_ticks["ask"].astype(float).tolist()
    vols = (rng.integers(0, 5, len(times)) * 0.5).tolist() if with_volume else None
    want_b = BarBuilder(timeframe_s)
    per_tick, batched = native.tick_bars(timeframe_s), native.tick_bars(timeframe_s)
    j = closes = 0
    while j < len(times):
        k = min(len(times), j + int(rng.integers(1, 121)))
        idx = list(range(j, k))
        if shuffle and rng.random() < 0.2:
            rng.shuffle(idx)
        t, b, a = [times[i] for i in idx], [bids[i] for i in idx], [asks[i] for i in idx]
        v = [vols[i] for i in idx] if vols is not None else None
        want, got_one = [], []
        for m in range(len(idx)):
            vm = v[m] if v is not None else 0
            want += [(bar, m) for bar in want_b.add_tick(t[m], b[m], a[m], vm)]
            got_one += [(bar, m) for bar in per_tick.add_tick(t[m], b[m], a[m], vm)]
        assert got_one == want
        assert batched.add_ticks(t, b, a, v) == want
        assert per_tick.state() == batched.state() == _state(want_b)
        closes += len(want)
        j = k
    assert closes > 50
    assert batched.late_ticks == want_b.late_ticks
    assert batched.flush() == per_tick.flush() == want_b.flush()
    assert batched.flush() == [] and batched.state()[0] is None
    if shuffle:
        assert want_b.late_ticks > 0


@pytest.mark.parametrize(("timeframe_s", "point"), [(0, 1e-5), (60, 0.0), (60, float("nan"))])
def test_the_cpp_tick_bars_reject_a_nonsense_configuration(timeframe_s: int, point: float) -> None:
    assert native.load() is not None, "the C++ feature kernel is not built: run `make cpp-build`"
    with pytest.raises(ValueError):
        native.tick_bars(timeframe_s, point)
