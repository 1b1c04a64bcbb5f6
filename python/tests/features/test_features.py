"""Feature pipeline specs: batch == online on real data, no look-ahead, schema hash, warm-up."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

from kairos.features import (
    SCHEMA,
    BarBuilder,
    FeatureSchema,
    FeatureSpec,
    OnlineFeatures,
    bars_to_frame,
    compute_features,
)
from kairos.marketdata.v1 import marketdata_pb2


def test_schema_hash_is_sha256_of_the_canonical_spec_and_tracks_every_definition() -> None:
    assert SCHEMA.hash.startswith("sha256:") and len(SCHEMA.hash) == 7 + 64
    assert SCHEMA.hash == FeatureSchema(SCHEMA.version, SCHEMA.window, SCHEMA.specs).hash
    changed = list(SCHEMA.specs)
    changed[0] = FeatureSpec(changed[0].name, changed[0].definition + " ")
    assert FeatureSchema(SCHEMA.version, SCHEMA.window, tuple(changed)).hash != SCHEMA.hash
    assert FeatureSchema(SCHEMA.version, SCHEMA.window + 1, SCHEMA.specs).hash != SCHEMA.hash
    assert len(SCHEMA.names) == SCHEMA.n_features == len(set(SCHEMA.names))


def test_batch_rows_are_nan_while_warming_up_then_finite_on_real_bars(gbpusd_m1: pd.DataFrame) -> None:
    x = compute_features(gbpusd_m1)
    assert x.shape == (len(gbpusd_m1), SCHEMA.n_features)
    assert np.isnan(x[: SCHEMA.window - 1]).all()
    assert np.isfinite(x[SCHEMA.window - 1 :]).all()


def test_online_rows_equal_batch_rows_on_real_gbpusd_m1_bars(gbpusd_m1: pd.DataFrame) -> None:
    # 10k bars (a week-end gap included) keep this quick; the benchmark feeds all 30k.
    bars = gbpusd_m1.iloc[:10_000]
    batch = compute_features(bars)
    online = OnlineFeatures()
    t_ms = (bars["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    rows = []
    for i, r in enumerate(bars.itertuples(index=False)):
        bar = marketdata_pb2.Bar(  # the proto the collector sends works as well as our own Bar
            symbol="GBPUSD",
            period_s=60,
            open_time_msc=int(t_ms.iloc[i]),
            open=r.open,
            high=r.high,
            low=r.low,
            close=r.close,
            tick_volume=int(r.tick_volume),
            spread_mean=r.spread,
        )
        row = online.update(bar)
        if i < SCHEMA.window - 1:
            assert row is None
        else:
            assert row is not None
            rows.append(row)
    np.testing.assert_allclose(np.array(rows), batch[SCHEMA.window - 1 :], rtol=0, atol=1e-9)


def test_online_rows_equal_batch_rows_on_bars_built_from_real_eurusd_ticks(
    eurusd_ticks: pd.DataFrame,
) -> None:
    builder = BarBuilder(60)
    online = OnlineFeatures(keep_rows=8)
    bars, rows = [], []
    for t, bid, ask in zip(eurusd_ticks["time_msc"], eurusd_ticks["bid"], eurusd_ticks["ask"], strict=True):
        for bar in builder.add_tick(int(t), float(bid), float(ask)):
            bars.append(bar)
            rows.append(online.update(bar))
    assert len(bars) > SCHEMA.window + 50
    batch = compute_features(bars_to_frame(bars))
    warm = [r for r in rows if r is not None]
    assert len(warm) == len(bars) - SCHEMA.window + 1
    np.testing.assert_allclose(np.array(warm), batch[SCHEMA.window - 1 :], rtol=0, atol=1e-9)
    last8 = online.window(8)
    assert last8 is not None
    np.testing.assert_array_equal(last8, np.array(warm[-8:]))


def test_no_feature_at_time_t_uses_data_after_t(gbpusd_m1: pd.DataFrame) -> None:
    bars = gbpusd_m1.iloc[:3000].reset_index(drop=True)
    full = compute_features(bars)
    rng = np.random.default_rng(7)
    for t in [SCHEMA.window - 1, SCHEMA.window, 500, 1234, 2998]:
        # Truncating everything after t must not change row t ...
        np.testing.assert_array_equal(compute_features(bars.iloc[: t + 1])[t], full[t])
        # ... and neither must scrambling every later bar's prices, spread, volume and spacing.
        future = bars.copy()
        n_after = len(bars) - t - 1
        for col in ("open", "high", "low", "close", "spread"):
            future.loc[t + 1 :, col] = future.loc[t + 1 :, col].to_numpy() * rng.uniform(0.5, 1.5, n_after)
        future.loc[t + 1 :, "tick_volume"] = rng.integers(0, 1000, n_after)
        future.loc[t + 1 :, "time"] = future["time"].iloc[t] + pd.to_timedelta(
            np.cumsum(rng.integers(1, 100, n_after)), unit="min"
        )
        np.testing.assert_array_equal(compute_features(future)[: t + 1], full[: t + 1])


def test_feature_values_match_their_documented_definitions_on_real_bars(gbpusd_m1: pd.DataFrame) -> None:
    bars = gbpusd_m1.iloc[:600].reset_index(drop=True)
    x = pd.DataFrame(compute_features(bars), columns=list(SCHEMA.names))
    c = bars["close"]
    t = 500
    sigma = np.diff(np.log(c[t - 240 : t + 1].to_numpy())).std()
    assert x["zret_5"][t] == pytest.approx(np.log(c[t] / c[t - 5]) / (sigma * np.sqrt(5)), abs=1e-9)
    r1 = np.diff(np.log(c[t - 60 : t + 1].to_numpy()))
    assert x["vol_60"][t] == pytest.approx(r1.std() * 1e4, abs=1e-9)
    assert x["spread_vol"][t] == pytest.approx(bars["spread"][t] / c[t] / r1.std(), abs=1e-9)
    assert x["ztrend_240"][t] == pytest.approx(np.log(c[t] / c[t - 239 : t + 1].mean()) / sigma, abs=1e-9)
    hi, lo = bars["high"][t - 14 : t + 1].max(), bars["low"][t - 14 : t + 1].min()
    assert x["channel_pos_15"][t] == pytest.approx((c[t] - lo) / (hi - lo) - 0.5, abs=1e-12)
    # 2012-02-01 was a Wednesday: the week position at 00:00 is 2/7.
    w = SCHEMA.window - 1  # the first finite row: bar 240, 04:02 on that Wednesday (two gaps before)
    assert np.arctan2(x["week_sin"][w], x["week_cos"][w]) == pytest.approx(
        2 * np.pi * (2 + (4 + 2 / 60) / 24) / 7, abs=1e-9
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop(columns=["spread"]), "lack column"),
        (lambda df: df.iloc[::-1].reset_index(drop=True), "strictly increasing time"),
        (lambda df: df.assign(time=df["time"].astype(str)), "column 'time'"),
    ],
)
def test_compute_features_rejects_malformed_bars_with_a_clear_message(
    gbpusd_m1: pd.DataFrame, mutate: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compute_features(mutate(gbpusd_m1.iloc[:100]))  # type: ignore[operator]


def test_online_features_reject_a_bar_that_is_not_newer() -> None:
    online = OnlineFeatures()
    builder = BarBuilder(60)
    builder.add_tick(60_000, 1.1, 1.1002)
    (bar,) = builder.flush()
    online.update(bar)
    with pytest.raises(ValueError, match="not newer"):
        online.update(dataclasses.replace(bar, close=1.2))


def test_importing_kairos_features_does_not_import_torch() -> None:
    code = "import sys, kairos.features; sys.exit(1 if 'torch' in sys.modules else 0)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
