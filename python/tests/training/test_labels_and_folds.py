"""Labels, model inputs and walk-forward folds on real bars: the cost band, the windows, the purge gap."""

from __future__ import annotations

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

from kairos.features import SCHEMA, compute_features
from kairos.training.labels import DOWN, FLAT, UP, LabelConfig, make_labels, window_index, windows
from kairos.training.train import TrainConfig, make_folds


def test_labels_are_forward_direction_outside_a_band_that_pays_for_spread_and_commission(
    gbpusd_bars: pd.DataFrame,
) -> None:
    cfg = LabelConfig(horizon=5, band_mult=1.5, commission=0.00002)
    y = make_labels(gbpusd_bars, cfg)
    assert np.isnan(y[-5:]).all() and np.isfinite(y[:-5]).all()
    c, s = gbpusd_bars["close"].to_numpy(), gbpusd_bars["spread"].to_numpy()
    r = np.log(c[5:] / c[:-5])
    band = 1.5 * (s[:-5] / c[:-5] + 0.00004)
    assert (y[:-5][r > band] == UP).all() and (y[:-5][r < -band] == DOWN).all()
    assert (y[:-5][np.abs(r) <= band] == FLAT).all()
    assert {DOWN, FLAT, UP} <= set(np.unique(y[:-5]).astype(int))
    wider = make_labels(gbpusd_bars, LabelConfig(horizon=5, band_mult=3.0))
    assert (wider[:-5] == FLAT).sum() > (y[:-5] == FLAT).sum()


def test_a_model_input_is_the_last_window_feature_rows_ending_at_its_bar(gbpusd_bars: pd.DataFrame) -> None:
    bars = gbpusd_bars.iloc[:2000].reset_index(drop=True)
    x = compute_features(bars)
    y = make_labels(bars, LabelConfig(horizon=5))
    idx = window_index(x, y, 16)
    assert idx[0] == SCHEMA.window - 1 + 15 and idx[-1] == len(bars) - 6
    w = windows(x, idx, 16)
    assert w.shape == (len(idx), 16, SCHEMA.n_features) and w.dtype == np.float32
    np.testing.assert_array_equal(w[100], x[idx[100] - 15 : idx[100] + 1].astype(np.float32))


@pytest.mark.parametrize("scheme", ["expanding", "rolling"])
def test_walk_forward_folds_never_let_a_training_label_reach_into_validation(scheme: str) -> None:
    idx = np.arange(100, 10_000, dtype=np.int64)
    horizon = 5
    cfg = TrainConfig(folds=4, scheme=scheme)  # type: ignore[arg-type]
    folds = make_folds(idx, cfg, purge=horizon)
    assert len(folds) == 4
    for prev, f in zip([None, *folds[:-1]], folds, strict=True):
        # labels of training and early-stopping samples end before the validation block starts
        assert f.train.max() + horizon < f.val.min() and f.early.max() + horizon < f.val.min()
        assert f.train.max() + horizon < f.early.min()
        if prev is not None:
            assert f.val.min() == prev.val.max() + 1  # validation blocks tile the out-of-sample period
    assert folds[-1].val.max() == idx.max()
    sizes = [len(f.train) + len(f.early) for f in folds]
    if scheme == "expanding":
        assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    else:
        assert max(sizes) - min(sizes) <= horizon + 1


def test_too_little_data_for_the_folds_is_refused_with_the_numbers() -> None:
    with pytest.raises(ValueError, match="too few for 4 folds"):
        make_folds(np.arange(120, dtype=np.int64), TrainConfig(folds=4), purge=5)
