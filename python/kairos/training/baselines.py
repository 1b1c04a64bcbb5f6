"""The baselines every model is measured against, on the same out-of-sample bars.

flat (never in the market), buy-and-hold, momentum (the sign of the last ``horizon``-bar return) and a
multinomial logistic regression on the same feature rows (the current row, standardised with the
fold's training statistics, class-balanced like the torch models).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BASELINES = ("flat", "buy_and_hold", "momentum", "logreg")


def fit_logreg(features: FloatArray, y: IntArray, train: IntArray, val: IntArray, seed: int) -> FloatArray:
    """Class probabilities (len(val), 3) of a logistic regression trained on ``train`` rows."""
    model = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=500, class_weight="balanced", random_state=seed)
    )
    model.fit(features[train], y[train])
    p = model.predict_proba(features[val])
    out = np.zeros((len(val), 3))
    out[:, model.classes_] = p  # a class absent from training keeps probability 0
    return out


def momentum_positions(close: FloatArray, idx: IntArray, horizon: int) -> FloatArray:
    """+1 after a rise over the last ``horizon`` bars, -1 after a fall, 0 if unchanged or unknown."""
    prev = idx - horizon
    out = np.zeros(len(idx))
    ok = prev >= 0
    out[ok] = np.sign(np.log(close[idx[ok]] / close[prev[ok]]))
    return out
