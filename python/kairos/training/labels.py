"""Labels and model inputs: direction of the forward return with a cost-aware no-trade band.

The label of bar t compares r = log(close[t+h] / close[t]) with a band that a trade must clear to
pay for itself: band[t] = band_mult * (spread[t] / close[t] + 2 * commission) + min_move. r > band is
``up`` (2), r < -band is ``down`` (0), anything in between is ``flat`` (1). The last h bars have no
label. A model input is the window of the last ``window`` feature rows ending at bar t.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any

DOWN, FLAT, UP = 0, 1, 2


@dataclass(frozen=True)
class LabelConfig:
    horizon: int = 5
    """Bars ahead the direction is measured over."""
    band_mult: float = 1.0
    """Multiple of the round-trip cost (spread + two commissions) inside which the label is flat."""
    commission: float = 0.00002
    """Commission per side, as a fraction of notional (0.2 bp; about 2 USD per 100k lot)."""
    min_move: float = 0.0
    """Extra log-return margin added to the band."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "direction_with_cost_band", **asdict(self)}


def make_labels(bars: pd.DataFrame, cfg: LabelConfig) -> npt.NDArray[np.float64]:
    """Labels (0 down, 1 flat, 2 up) per bar, NaN for the last ``horizon`` bars."""
    if cfg.horizon < 1:
        raise ValueError("horizon must be >= 1 bar")
    close = bars["close"].to_numpy(np.float64)
    spread = bars["spread"].to_numpy(np.float64)
    n = len(close)
    out = np.full(n, np.nan)
    h = cfg.horizon
    if n <= h:
        return out
    r = np.log(close[h:] / close[:-h])
    band = cfg.band_mult * (spread[:-h] / close[:-h] + 2 * cfg.commission) + cfg.min_move
    out[:-h] = np.where(r > band, UP, np.where(r < -band, DOWN, FLAT))
    return out


def window_index(
    features: npt.NDArray[np.float64], labels: npt.NDArray[np.float64], window: int
) -> npt.NDArray[np.int64]:
    """Bars t whose input window (rows t-window+1..t) is complete and whose label is known."""
    finite_row = np.asarray(np.isfinite(features).all(axis=1), dtype=bool)
    # A window is complete when its first row is finite (warm-up NaNs only ever lead the series).
    ok = np.zeros(len(features), dtype=bool)
    if len(features) >= window:
        ok[window - 1 :] = finite_row[: len(features) - window + 1] & finite_row[window - 1 :]
    ok &= np.isfinite(labels)
    return np.flatnonzero(ok).astype(np.int64)


def windows(
    features: npt.NDArray[np.float64], idx: npt.NDArray[np.int64], window: int
) -> npt.NDArray[np.float32]:
    """Model inputs (len(idx), window, n_features) as float32, the ONNX input type."""
    view = np.lib.stride_tricks.sliding_window_view(features, window, axis=0)  # (n-w+1, F, w)
    return np.ascontiguousarray(view[idx - window + 1].transpose(0, 2, 1), dtype=np.float32)
