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
    got = np.asarray(k.rows(cases))  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, pipeline.numpy_rows(np.stack(cases)), rtol=0, atol=TOL)
