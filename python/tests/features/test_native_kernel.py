"""The C++ feature kernel (kairos.features.native, ADR 0100) against kairos.features' numpy kernel.

The numpy kernel is the one definition (training runs it); the inference server runs the C++ one on
the bar windows it keeps per symbol. Both must give the same rows, within the stated parity
tolerance (float64, 1e-9), on real bars, through the server's own window buffer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any

from kairos.features import SCHEMA, compute_features, native, to_epoch_ms
from kairos.inference import pipeline
from kairos.marketdata.v1 import marketdata_pb2

TOL = 1e-9


def _kernel() -> object:
    k = native.load()
    assert k is not None, (
        "the C++ feature kernel is not built (build/cpp-features/kairos_features_ext*.so): "
        "run `make cpp-build`"
    )
    return k


def _bars(df: pd.DataFrame) -> list[marketdata_pb2.Bar]:
    t_ms = to_epoch_ms(df["time"])
    # The files carry no tick counts: a real-data-derived count (the bar's range in points) exercises
    # the activity feature's logarithms instead of a column of zeros.
    vol = np.rint((df["high"] - df["low"]).to_numpy() / 1e-5).astype(np.int64)
    return [
        marketdata_pb2.Bar(
            symbol="GBPUSD",
            period_s=60,
            open_time_msc=int(t_ms[i]),
            open=r.open,
            high=r.high,
            low=r.low,
            close=r.close,
            spread_mean=r.spread,
            tick_volume=int(vol[i]),
        )
        for i, r in enumerate(df.itertuples(index=False))
    ]


def test_the_server_runs_the_cpp_kernel_with_the_schemas_shape() -> None:
    k = _kernel()
    assert pipeline.KERNEL == "c++" and pipeline.NATIVE is k
    assert k.n_features == SCHEMA.n_features  # type: ignore[attr-defined]
    assert k.window == SCHEMA.window  # type: ignore[attr-defined]


def test_cpp_rows_equal_numpy_rows_and_the_training_batch_on_real_gbpusd_m1_bars(
    gbpusd_m1: pd.DataFrame,
) -> None:
    _kernel()
    df = gbpusd_m1.iloc[:6_000].reset_index(drop=True)
    bars = _bars(df)
    feed = pipeline.SymbolFeed(60)
    windows = [w for w in (feed.push_bar(b) for b in bars) if w is not None]
    assert len(windows) == len(bars) - SCHEMA.window + 1
    assert windows[0].shape == (8, SCHEMA.window)  # the cached log rows the C++ kernel reads
    cpp = np.vstack([pipeline.feature_rows(windows[i : i + 64]) for i in range(0, len(windows), 64)])
    ref = pipeline.numpy_rows(np.stack(windows))
    assert np.isfinite(cpp).all()
    np.testing.assert_allclose(cpp, ref, rtol=0, atol=TOL)
    frame = df.assign(tick_volume=[b.tick_volume for b in bars])
    batch = compute_features(frame)[SCHEMA.window - 1 :]
    np.testing.assert_allclose(cpp, batch, rtol=0, atol=TOL)
    # Without the cached rows (6-row windows) the kernel takes its own logarithms: the same rows.
    k = _kernel()
    six = np.asarray(k.rows([w[:6].copy() for w in windows[:500]]))  # type: ignore[attr-defined]
    np.testing.assert_allclose(six, cpp[:500], rtol=0, atol=TOL)


def test_flat_markets_zero_volumes_and_times_before_1970_match_the_numpy_kernel(
    gbpusd_m1: pd.DataFrame,
) -> None:
    k = _kernel()
    w = SCHEMA.window
    real = gbpusd_m1.iloc[: 2 * w]
    flat = np.full(w, 1.25)  # no movement: sigma 0, every ratio takes its 0 branch
    cases = []
    for t0, close in ((-5 * 86_400_000 - 7, flat), (1_600_000_000_000, real["close"].to_numpy()[:w])):
        times = t0 + 60_000 * np.arange(w)
        cases.append(np.vstack([times, close + 1e-4, close - 1e-4, close, np.full(w, 2e-5), np.zeros(w)]))
    flat_hl = cases[0].copy()
    flat_hl[1] = flat_hl[2] = flat_hl[3]  # high == low: a flat channel
    cases.append(flat_hl)
    # A NaN high or low anywhere in a channel's window makes its min/max NaN (numpy's propagate it;
    # the position is then 0), whichever of the kernel's four running minima/maxima or its tail it
    # falls in.
    for row, back in ((1, 1), (2, 2), (1, 3), (2, 4), (2, 15), (1, 100), (2, 240)):
        hole = cases[1].copy()
        hole[row, w - back] = np.nan
        cases.append(hole)
    got = np.asarray(k.rows(cases))  # type: ignore[attr-defined]
    want = pipeline.numpy_rows(np.stack(cases))
    assert (want[3:] != want[1]).any(axis=1).all()  # every hole changes the row
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_a_requests_bars_pushed_in_one_call_give_the_rows_of_the_windows_pushed_bar_by_bar(
    gbpusd_m1: pd.DataFrame,
) -> None:
    # Two symbols, interleaved, some requests carrying two bars of one symbol (the row of the first
    # must be taken before the second moves its window on); the reference: SymbolFeed.push_bar's
    # windows through Kernel.rows, bar by bar.
    k = _kernel()
    w = SCHEMA.window
    bars = _bars(gbpusd_m1.iloc[: 2 * w + 200].reset_index(drop=True))
    fields = [(b.open_time_msc, b.high, b.low, b.close, b.spread_mean, b.tick_volume) for b in bars]
    rings = [native.bar_windows(w), native.bar_windows(w)]
    refs = [pipeline.SymbolFeed(60), pipeline.SymbolFeed(60)]
    got: list[np.ndarray] = []
    want: list[np.ndarray] = []
    ready_all: list[bool] = []
    i = 0
    while i < len(fields):
        req = [(j % 2, fields[j]) for j in range(i, min(i + 3, len(fields)))]  # symbols 0, 1, 0 / 1, 0, 1
        rows, ready = k.push_rows([rings[s] for s, _ in req], [f for _, f in req])  # type: ignore[attr-defined]
        got.extend(np.asarray(rows))
        ready_all.extend(ready)
        for s, f in req:
            win = refs[s].push(*f)
            if win is not None:
                want.append(np.asarray(k.rows([win]))[0])  # type: ignore[attr-defined]
        i += 3
    assert sum(ready_all) == len(want) == len(fields) - 2 * (w - 1)
    # push_rows makes its rows from running sums (ADR 0114), Kernel.rows over the whole window.
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=0, atol=TOL)
    np.testing.assert_array_equal(rings[0].array(), refs[0].windows.array())


def _push_tuples(df: pd.DataFrame) -> list[tuple[float, ...]]:
    t = to_epoch_ms(df["time"])
    vol = np.rint((df["high"] - df["low"]).to_numpy() / 1e-5)
    return [
        (float(t[i]), r.high, r.low, r.close, r.spread, float(vol[i]))
        for i, r in enumerate(df.itertuples(index=False))
    ]


def _hard_stretches(bars: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """Real bars with stretches real data seldom has spliced in: a flat market (every std 0, flat
    channels, no momentum), a steady climb whose one-bar log returns differ by ~1e-5 of their size
    (a one-pass variance would lose most of its digits), and one bar with a NaN high."""
    t_end, c = bars[2_000][0], bars[2_000][3]
    flat = [(t_end + 60_000.0 * (j + 1), c, c, c, 2e-5, 0.0) for j in range(300)]
    lc = np.log(c) + np.cumsum(1e-4 + 1e-9 * np.random.default_rng(7).standard_normal(300))
    closes = np.exp(lc)
    steady = [
        (t_end + 60_000.0 * (301 + j), closes[j] * 1.0001, closes[j] * 0.9999, closes[j], 2e-5, 7.0)
        for j in range(300)
    ]
    shift = 60_000.0 * 700
    later = [(b[0] + shift, *b[1:]) for b in bars[2_001:]]
    later[1_500] = (later[1_500][0], float("nan"), *later[1_500][2:])
    return bars[:2_001] + flat + steady + later


def _running_against_whole_window(bars: list[tuple[float, ...]]) -> tuple[np.ndarray, np.ndarray]:
    """Pushes bars through push_rows (1-3 a request, now and then one around it with no row) and
    returns the last row of each request that made one and Kernel.rows over the same window."""
    k = _kernel()
    ring = native.bar_windows(SCHEMA.window)
    got, want = [], []
    i = 0
    while i < len(bars):
        if i % 997 == 0:  # a bar into the window without a row: the sums must be taken again
            ring.push(*bars[i])
            i += 1
            continue
        chunk = bars[i : i + 1 + i % 3]
        rows, ready = k.push_rows([ring] * len(chunk), chunk)  # type: ignore[attr-defined]
        i += len(chunk)
        if ready[-1]:
            got.append(np.asarray(rows)[-1])
            want.append(np.asarray(k.rows([ring.array()]))[0])  # type: ignore[attr-defined]
    return np.array(got), np.array(want)


def test_running_sums_give_the_rows_of_the_whole_window_bar_after_bar_on_real_bars(
    gbpusd_m1: pd.DataFrame,
) -> None:
    # push_rows makes each row from running sums (ADR 0114); Kernel.rows over the whole window is the
    # reference (row(), held to the numpy kernel above). ~10,000 real bars, so the sums run through
    # many of their W-bar cycles.
    got, want = _running_against_whole_window(_push_tuples(gbpusd_m1.iloc[:10_000].reset_index(drop=True)))
    assert len(got) > 4_000 and np.isfinite(want).all()
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)


def test_running_sums_hold_through_a_flat_market_a_steady_climb_and_a_nan_bar(
    gbpusd_m1: pd.DataFrame,
) -> None:
    # The steady climb's features are ~1e4 (tiny sigma), so the tolerance is relative there too.
    got, want = _running_against_whole_window(_hard_stretches(_push_tuples(gbpusd_m1.iloc[:4_000])))
    assert len(got) > 1_500
    nan_rows = np.isnan(want).any(axis=1)
    # The NaN high: NaN range features for 15 bars; the channels' positions are 0 for 240 (row()).
    assert 0 < nan_rows.sum() <= 15
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    flat = (want[:, SCHEMA.names.index("vol_15")] == 0).sum()
    assert flat > 50  # the flat market's rows are here, and exactly 0 in both
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=TOL, equal_nan=True)


def test_running_sums_follow_the_kernel_that_makes_the_row_and_lookbacks_as_long_as_the_window(
    gbpusd_m1: pd.DataFrame,
) -> None:
    # Another kernel's lookbacks on the same window (the sums belong to one kernel: a row by another
    # takes them again), with a trend window as long as the window (its leaving close is the bar the
    # push moved out) and a spread window that is not a vol window.
    k = _kernel()
    w = SCHEMA.window
    other = type(k)(
        return_horizons=[1, 3],
        vol_windows=[10, 30, 100],
        long_window=100,
        range_window=5,
        channel_windows=[10, w],
        momentum_window=7,
        trend_windows=[20, w],
        spread_vol_window=20,
        activity_window=30,
    )
    bars = _push_tuples(gbpusd_m1.iloc[:4_000].reset_index(drop=True))
    ring = native.bar_windows(w)
    compared = 0
    for i, bar in enumerate(bars):
        kernel = other if i < 2_500 or (i // 50) % 2 else k
        rows, ready = kernel.push_rows([ring], [bar])  # type: ignore[attr-defined]
        if ready[0]:
            want = np.asarray(kernel.rows([ring.array()]))[0]  # type: ignore[attr-defined]
            np.testing.assert_allclose(np.asarray(rows)[0], want, rtol=0, atol=TOL)
            compared += 1
    assert compared == len(bars) - w + 1


def test_row_rings_give_the_last_rows_as_model_inputs_and_restart_on_a_non_finite_row() -> None:
    k = _kernel()
    ring = native.row_ring(4, 3)
    rows = np.arange(30, dtype=np.float64).reshape(10, 3)
    # Three rows, then a warming-up bar (not ready): the count restarts, no input until 2 more rows.
    x, due = k.inputs([ring] * 4, [True, True, True, False], rows[:3], 2)  # type: ignore[attr-defined]
    assert due == [False, True, True, False]
    np.testing.assert_array_equal(np.asarray(x)[:2], np.float32([rows[0:2], rows[1:3]]))
    x, due = k.inputs([ring] * 3, [True, True, True], rows[3:6], 2)  # type: ignore[attr-defined]
    assert due == [False, True, True]
    np.testing.assert_array_equal(np.asarray(x)[:2], np.float32([rows[3:5], rows[4:6]]))
    bad = rows[6:9].copy()
    bad[1, 2] = np.nan  # a non-finite row restarts the count too
    x, due = k.inputs([ring] * 3, [True, True, True], bad, 2)  # type: ignore[attr-defined]
    assert due == [True, False, False]
    np.testing.assert_array_equal(np.asarray(x)[0], np.float32(rows[5:7]))
