"""Labels with spans, uniqueness weights, calibration, every model family's ONNX contract and the
search, on real GBPUSD M1 bars and the EURUSD H1 sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

from kairos.features import SCHEMA, ModelCard, compute_features
from kairos.training.calibrate import apply_temperature, fit_temperature, log_loss
from kairos.training.export import export_onnx, ort_session
from kairos.training.labels import (
    DOWN,
    FLAT,
    UP,
    LabelConfig,
    label_bars,
    uniqueness_weights,
    window_index,
    windows,
)
from kairos.training.search import SearchConfig, search
from kairos.training.train import TrainConfig, fit_model, make_folds, sample_weights, split_early


@pytest.fixture(scope="module")
def bars(gbpusd_bars: pd.DataFrame) -> pd.DataFrame:
    return gbpusd_bars.iloc[:8000].reset_index(drop=True)


def test_triple_barrier_label_is_the_first_barrier_the_close_path_touches_within_the_time_limit(
    bars: pd.DataFrame,
) -> None:
    cfg = LabelConfig(kind="triple_barrier", horizon=10, vol_mult=1.5, band_mult=2.0)
    lab = label_bars(bars, cfg)
    c = bars["close"].to_numpy()
    s = bars["spread"].to_numpy()
    r = np.diff(np.log(c), prepend=np.nan)
    sigma = pd.Series(r).rolling(60).std(ddof=0).to_numpy()
    checked = 0
    for t in range(61, len(c) - 10, 37):
        b = max(1.5 * sigma[t] * np.sqrt(10), 2.0 * (s[t] / c[t] + 2 * cfg.commission))
        path = np.log(c[t + 1 : t + 11] / c[t])
        touch = np.flatnonzero(np.abs(path) >= b)
        if touch.size == 0:
            want, end = FLAT, t + 10
        else:
            j = int(touch[0])
            want, end = (UP if path[j] > 0 else DOWN), t + 1 + j
        assert (lab.y[t], lab.end[t]) == (want, end), t
        checked += 1
    assert checked > 150
    assert np.isnan(lab.y[:60]).all() and np.isnan(lab.y[-10:]).all()
    assert {DOWN, FLAT, UP} <= set(np.unique(lab.y[np.isfinite(lab.y)]).astype(int))


def test_fixed_horizon_labels_keep_their_span_of_h_bars(bars: pd.DataFrame) -> None:
    lab = label_bars(bars, LabelConfig(horizon=5))
    ok = np.isfinite(lab.y)
    np.testing.assert_array_equal(lab.end[ok] - np.flatnonzero(ok), 5)
    assert (lab.end[~ok] == -1).all()


@pytest.mark.parametrize("kind", ["fixed_horizon", "triple_barrier"])
def test_uniqueness_is_the_mean_inverse_concurrency_over_each_label_span(
    bars: pd.DataFrame, kind: str
) -> None:
    lab = label_bars(bars.iloc[:1500], LabelConfig(kind=kind, horizon=8))  # type: ignore[arg-type]
    idx = np.flatnonzero(np.isfinite(lab.y)).astype(np.int64)
    w = uniqueness_weights(lab.end, idx)
    conc = np.zeros(len(lab.y) + 1)
    for i in idx:
        conc[i + 1 : lab.end[i] + 1] += 1
    want = np.array([np.mean(1 / conc[i + 1 : lab.end[i] + 1]) for i in idx])
    np.testing.assert_allclose(w, want, rtol=0, atol=1e-12)
    assert (w > 0).all() and (w <= 1).all()
    if kind == "fixed_horizon":  # h fully overlapping spans in steady state
        assert np.median(w) == pytest.approx(1 / 8)


def _fold(bars: pd.DataFrame, window: int = 1) -> tuple[np.ndarray, ...]:
    feats = compute_features(bars)
    lab = label_bars(bars, LabelConfig())
    idx = window_index(feats, lab.y, window)
    fold = make_folds(idx, TrainConfig(folds=1), purge=5)[0]
    y = np.nan_to_num(lab.y).astype(np.int64)
    return feats, lab.end, y, fold.train, fold.early, fold.val


def _fit(bars: pd.DataFrame, cfg: TrainConfig) -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    feats, end, y, train, early, val = _fold(bars, cfg.input_window)
    w = cfg.input_window
    m = fit_model(
        windows(feats, train, w),
        y[train],
        sample_weights(end, train, cfg),
        windows(feats, early, w),
        y[early],
        sample_weights(end, early, cfg),
        cfg,
    )
    return m, windows(feats, val, w), y[val], y[early]


def test_temperature_scaling_undoes_a_sharpening_exactly_and_never_changes_the_argmax(
    bars: pd.DataFrame,
) -> None:
    m, x, y, _ = _fit(bars, TrainConfig(arch="lgbm"))
    p = m.raw_probs(x)  # type: ignore[attr-defined]
    t = fit_temperature(p, y)
    assert fit_temperature(apply_temperature(p, 0.5), y) == pytest.approx(2 * t, rel=1e-3)
    assert log_loss(apply_temperature(p, t), y) <= log_loss(p, y) + 1e-12
    np.testing.assert_array_equal(apply_temperature(p, t).argmax(axis=1), p.argmax(axis=1))


@pytest.mark.parametrize("arch", ["lgbm", "logreg", "mlp"])
def test_calibrated_probabilities_track_the_class_mix_not_a_balanced_one(
    bars: pd.DataFrame, arch: str
) -> None:
    m, _, _, y_inner = _fit(bars, TrainConfig(arch=arch, epochs=5))
    feats, _, _, _, early, _ = _fold(bars, m.window)  # type: ignore[attr-defined]
    p = m.predict(windows(feats, early, m.window))  # type: ignore[attr-defined]
    freq = np.bincount(y_inner, minlength=3) / len(y_inner)
    np.testing.assert_allclose(p.mean(axis=0), freq, atol=0.05)


@pytest.mark.parametrize(
    ("arch", "seeds", "temperature", "bias"),
    [
        ("lgbm", 1, 1.0, (0.0, 0.0, 0.0)),
        ("lgbm", 1, 1.7, (0.0, 0.4, -0.2)),
        ("logreg", 1, 0.6, (0.0, -0.3, 0.1)),
        ("mlp", 2, 1.3, (0.0, 0.2, 0.2)),
    ],
)
def test_onnx_graph_serves_features_to_probs_and_matches_the_python_model(
    bars: pd.DataFrame, arch: str, seeds: int, temperature: float, bias: tuple[float, ...], tmp_path: Path
) -> None:
    from dataclasses import replace

    m, x, _, _ = _fit(bars, TrainConfig(arch=arch, seeds=seeds, epochs=3, window=4))
    m.calibration = replace(m.calibration, temperature=temperature, bias=bias)  # type: ignore[attr-defined]
    card = ModelCard(
        name="t",
        version="0",
        architecture=arch,
        feature_schema_hash=SCHEMA.hash,
        feature_names=list(SCHEMA.names),
        window=m.window,  # type: ignore[attr-defined]
        timeframe_s=60,
    )
    res = export_onnx(m, card, tmp_path, x)  # type: ignore[arg-type]
    assert res.max_abs_diff <= 1e-5
    sess = ort_session(res.onnx_path)
    assert [i.name for i in sess.get_inputs()] == ["features"]
    assert [(o.name, o.type) for o in sess.get_outputs()] == [("probs", "tensor(float)")]
    got = sess.run(["probs"], {"features": x})[0]
    assert got.shape == (len(x), 3)
    if (
        arch == "lgbm" and temperature == 1.0 and not any(bias)
    ):  # the plain converter output is LightGBM's predict_proba
        want = m.estimator.predict_proba(x.reshape(len(x), -1))  # type: ignore[attr-defined]
    else:  # raw_probs: the mean of the ensemble's softmax for torch, predict_proba for the others
        want = apply_temperature(m.raw_probs(x), temperature, bias)  # type: ignore[attr-defined]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert ModelCard.from_onnx(res.onnx_path) == card


def test_search_counts_and_logs_every_trial_and_stops_at_the_timeout(sample_h1: pd.DataFrame) -> None:
    feats = compute_features(sample_h1)
    lab = label_bars(sample_h1, LabelConfig())
    idx = window_index(feats, lab.y, 1)
    base = TrainConfig(arch="logreg")
    cfg, rec = search(
        feats, lab.y, lab.end, idx, base, 5, SearchConfig(trials=4, families=("logreg", "lgbm"))
    )
    assert rec["trials"] == 4 == len(rec["trial_log"]) == rec["completed"] + rec["failed"]
    assert cfg.arch == rec["best"]["params"]["family"]
    assert all(t["params"]["family"] in ("logreg", "lgbm") for t in rec["trial_log"])
    # The search never sees the outer validation blocks.
    first_val = make_folds(idx, base, 5)[0].val[0]
    assert rec["samples"] == int((idx < first_val - 5).sum())
    _, timed = search(
        feats, lab.y, lab.end, idx, base, 5, SearchConfig(trials=500, timeout_s=2.0, families=("lgbm",))
    )
    assert 1 <= timed["trials"] < 500 and timed["trials"] == len(timed["trial_log"])


def test_inner_fold_split_keeps_a_purge_gap(bars: pd.DataFrame) -> None:
    idx = np.arange(300, 5000, dtype=np.int64)
    fit, early = split_early(idx, 0.2, 7)
    assert fit.max() + 7 < early.min() and len(early) == int(len(idx) * 0.2)
