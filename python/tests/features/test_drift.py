"""Drift statistics on real bars: the training distribution, the dissimilarity index on real later
rows and on shifted ones, PSI, and the card field round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kairos.features import SCHEMA, ModelCard, compute_features
from kairos.features.drift import DriftMonitor, distribution, psi
from kairos.training.data import load_bars

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
MODEL_CARD = Path(__file__).resolve().parents[1] / "data" / "model" / "model.card.json"


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    bars, _ = load_bars(str(DATA / "gbpusd-m1-bid-2012.csv"))
    x = compute_features(bars)
    return x[np.isfinite(x).all(axis=1)]


def test_real_later_rows_are_in_distribution_shifted_ones_are_not(rows: np.ndarray) -> None:
    n = len(rows) * 6 // 10
    train, later = rows[:n], rows[n:]
    dist = distribution(train, SCHEMA.names)
    assert dist["rows"] == n and set(dist["features"]) == set(SCHEMA.names)
    f = dist["features"]["vol_60"]
    assert f["quantiles"][0] <= f["quantiles"][6] <= f["quantiles"][-1]
    assert abs(sum(f["bin_shares"]) - 1) < 1e-12 and len(f["bin_shares"]) == len(f["bin_edges"]) + 1
    mon = DriftMonitor(dist, SCHEMA.names, window=2000)
    di_train, ood_train = mon.observe(train[-2000:])
    assert 0.5 < float(np.median(di_train)) < 1.5
    assert ood_train.mean() < 0.01
    di_later, ood_later = mon.observe(later)
    assert ood_later.mean() < 0.05  # another month of the same market: mostly familiar
    psi_later = mon.psi()
    assert np.nanmedian(list(psi_later.values())) < 0.25
    # A volatility regime five times the training one (the vol features scaled; returns the same).
    shifted = later.copy()
    for name in ("vol_15", "vol_60", "vol_240", "range_1", "range_15"):
        shifted[:, SCHEMA.names.index(name)] *= 5
    di_shift, ood_shift = mon.observe(shifted)
    assert (
        ood_shift.mean() > 0.5 > 0.05 > ood_later.mean()
        and float(np.median(di_shift)) > float(np.median(di_later)) * 2
    )
    psi_shift = mon.psi()
    assert psi_shift["vol_60"] > 1.0 > psi_later["vol_60"]
    assert psi_shift["hour_sin"] < 0.25  # the features that did not move did not drift


def test_psi_is_zero_for_the_training_sample_itself(rows: np.ndarray) -> None:
    dist = distribution(rows, SCHEMA.names)
    f = dist["features"]["zret_5"]
    assert psi(rows[:, SCHEMA.names.index("zret_5")], f["bin_edges"], f["bin_shares"]) < 1e-9


def test_the_card_carries_the_distribution_and_older_cards_still_load(rows: np.ndarray) -> None:
    card = ModelCard.load(MODEL_CARD)
    assert card.feature_distribution == {}  # a card from before the field
    card.feature_distribution = distribution(rows, SCHEMA.names)
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert json.loads(card.to_json())["feature_distribution"]["di"]["q999"] > 1


@pytest.mark.parametrize("native", [False, True], ids=["numpy", "c++"])
@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param([1] * 130, id="a row at a time, past the window"),
        pytest.param([64] * 9, id="64-row requests, wrapping the window"),
        pytest.param([7, 250, 3, 64, 1, 499], id="mixed sizes, one larger than the window"),
    ],
)
def test_the_monitors_running_psi_equals_psi_over_its_window(
    rows: np.ndarray, sizes: list[int], native: bool
) -> None:
    # The monitor keeps bin counts as rows come and go; the figure must be psi() over the rows the
    # window holds, for every feature, with non-finite values among them (psi drops them).
    n = len(rows) * 6 // 10
    dist = distribution(rows[:n], SCHEMA.names)
    window = 120
    mon = DriftMonitor(dist, SCHEMA.names, window=window, native=native)
    later = rows[n:].copy()
    later[::37, 3] = np.nan  # a non-finite value now and then in one feature
    later[5::53, :] = np.inf  # and whole rows of them
    fed = 0
    checked = 0
    for size in sizes:
        mon.observe(later[fed : fed + size])
        fed += size
        got = mon.psi()
        held = later[max(0, fed - window) : fed]
        if len(held) < max(window // 5, 20):
            assert all(np.isnan(v) for v in got.values())
            continue
        for j, name in enumerate(SCHEMA.names):
            f = dist["features"][name]
            want = psi(held[:, j], f["bin_edges"], f["bin_shares"])
            assert got[name] == pytest.approx(want, rel=1e-12, abs=1e-12), (fed, name)
        checked += 1
    assert checked >= 3


def test_the_c_plus_plus_monitor_gives_the_numpy_monitors_figures(rows: np.ndarray) -> None:
    # The server runs the per-row work in C++ (ADR 0111); the numpy path is its definition. Fed the
    # same real rows, as the server feeds them (float32 model inputs) and as float64, with
    # non-finite values and a vol regime far from training's (out-of-distribution rows), both must
    # give each row's DI, the out-of-distribution flags, the window's counts and the PSI.
    n = len(rows) * 6 // 10
    dist = distribution(rows[:n], SCHEMA.names)
    later = rows[n:].copy()
    later[::41, 7] = np.nan
    later[9::97, :] = -np.inf
    later[300:400, SCHEMA.names.index("vol_60")] *= 8
    py_mon = DriftMonitor(dist, SCHEMA.names, window=500, native=False)
    cc_mon = DriftMonitor(dist, SCHEMA.names, window=500, native=True)
    fed = 0
    feeds = [(64, np.float32), (1, np.float64), (499, np.float32), (700, np.float64), (64, np.float32)]
    for size, dtype in feeds:
        batch = later[fed : fed + size].astype(dtype)
        fed += size
        d_py, ood_py = py_mon.observe(batch)
        d_cc, ood_cc = cc_mon.observe(batch)
        np.testing.assert_allclose(d_cc, d_py, rtol=1e-12, atol=0)
        assert np.array_equal(np.isnan(d_cc), np.isnan(d_py))
        assert np.array_equal(ood_cc, ood_py)
        assert cc_mon.n == py_mon.n and cc_mon.ood_total == py_mon.ood_total
        assert np.array_equal(cc_mon._native.counts(), py_mon._counts)
        np.testing.assert_equal(cc_mon.psi(), py_mon.psi())  # NaN equal to NaN (a window not yet full)
    assert fed == 1328 and all(v == v for v in py_mon.psi().values())
    assert 0 < py_mon.ood_total < fed  # both kinds of row were fed


def test_a_monitor_that_must_be_native_says_so_without_the_extension(
    rows: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kairos.features import native as native_ext

    monkeypatch.setattr(native_ext, "load", lambda: None)
    dist = distribution(rows[:5000], SCHEMA.names)
    with pytest.raises(RuntimeError, match="make cpp-build"):
        DriftMonitor(dist, SCHEMA.names, native=True)
    assert DriftMonitor(dist, SCHEMA.names)._native is None  # the numpy path otherwise
