"""The rule baselines every model is measured against, on the same out-of-sample bars: flat (never in
the market), buy-and-hold, and momentum (the sign of the last ``horizon``-bar return).

The learned baselines (logistic regression, LightGBM) are model families trained beside every
candidate on the same folds (``kairos.training.train.BASELINE_FAMILIES``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

RULES = ("flat", "buy_and_hold", "momentum")


def momentum_positions(
    close: FloatArray, idx: IntArray, horizon: int, first: IntArray | None = None
) -> FloatArray:
    """+1 after a rise over the last ``horizon`` bars, -1 after a fall, 0 if unchanged or unknown
    (``first``: the first bar of each row's symbol, when a run has several)."""
    prev = idx - horizon
    out = np.zeros(len(idx))
    ok = prev >= (0 if first is None else first)
    out[ok] = np.sign(np.log(close[idx[ok]] / close[prev[ok]]))
    return out
