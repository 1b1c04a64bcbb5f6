"""Labels, their spans and sample weights, and model inputs.

Two label kinds (``LabelConfig.kind``), both with classes down (0), flat (1), up (2):

``fixed_horizon``: r = log(close[t+h] / close[t]) against a band a trade must clear to pay for
itself: band[t] = band_mult * (spread[t] / close[t] + 2 * commission) + min_move; r > band is up,
r < -band down, anything between flat. The label's span is bars t+1 .. t+h.

``triple_barrier`` (Lopez de Prado 2018, ch. 3): from close[t], an upper and a lower barrier at
+-b[t] in log price, b[t] = max(vol_mult * sigma[t] * sqrt(h), band_mult * round-trip cost[t]) +
min_move, sigma[t] the std of the last ``vol_window`` one-bar log returns up to bar t (past only),
and a time limit of h bars. Up if the close path touches the upper barrier first, down if the lower,
flat if neither within h bars. The span ends at the touch (or at t+h).

Overlapping spans share information, so each sample is weighted by its average uniqueness: the mean
over the bars of its span of 1 / (number of labels whose span covers that bar).

A model input is the window of the last ``window`` feature rows ending at bar t.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any

DOWN, FLAT, UP = 0, 1, 2
LABEL_KINDS = ("fixed_horizon", "triple_barrier")
LabelKind = Literal["fixed_horizon", "triple_barrier"]


@dataclass(frozen=True)
class LabelConfig:
    horizon: int = 5
    """Bars ahead the direction is measured over (the time limit of the triple barrier)."""
    band_mult: float = 1.0
    """Multiple of the round-trip cost (spread + two commissions) a move must exceed."""
    commission: float = 0.00002
    """Commission per side, as a fraction of notional (0.2 bp; about 2 USD per 100k lot)."""
    min_move: float = 0.0
    """Extra log-return margin added to the band / barrier."""
    kind: LabelKind = "fixed_horizon"
    """``fixed_horizon`` or ``triple_barrier``."""
    vol_mult: float = 1.0
    """Triple barrier: barrier distance in units of sigma * sqrt(horizon)."""
    vol_window: int = 60
    """Triple barrier: one-bar returns in the volatility estimate."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.kind == "fixed_horizon":  # the card says what the label used, nothing else
            d.pop("vol_mult")
            d.pop("vol_window")
        return d


@dataclass(frozen=True)
class Labels:
    y: npt.NDArray[np.float64]
    """0 down, 1 flat, 2 up per bar; NaN where the label is unknown (the last bars, warm-up)."""
    end: npt.NDArray[np.int64]
    """Last bar of each label's span (-1 where the label is unknown)."""


def _round_trip(bars: pd.DataFrame, cfg: LabelConfig) -> npt.NDArray[np.float64]:
    close = bars["close"].to_numpy(np.float64)
    spread = bars["spread"].to_numpy(np.float64)
    out: npt.NDArray[np.float64] = cfg.band_mult * (spread / close + 2 * cfg.commission) + cfg.min_move
    return out


def _past_vol(close: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    r = np.diff(np.log(close), prepend=np.nan)
    out: npt.NDArray[np.float64] = pd.Series(r).rolling(n, min_periods=n).std(ddof=0).to_numpy()
    return out


def label_bars(bars: pd.DataFrame, cfg: LabelConfig) -> Labels:
    """Labels and their span ends for every bar (see the module docstring)."""
    if cfg.horizon < 1:
        raise ValueError("horizon must be >= 1 bar")
    if cfg.kind not in LABEL_KINDS:
        raise ValueError(f"label kind must be one of {LABEL_KINDS}, not {cfg.kind!r}")
    close = bars["close"].to_numpy(np.float64)
    n, h = len(close), cfg.horizon
    y = np.full(n, np.nan)
    end = np.full(n, -1, dtype=np.int64)
    if n <= h:
        return Labels(y, end)
    cost = _round_trip(bars, cfg)
    t = np.arange(n - h)
    if cfg.kind == "fixed_horizon":
        r = np.log(close[h:] / close[:-h])
        band = cost[:-h]
        y[:-h] = np.where(r > band, UP, np.where(r < -band, DOWN, FLAT))
        end[:-h] = t + h
        return Labels(y, end)
    if cfg.vol_window < 2:
        raise ValueError("vol_window must be >= 2 returns")
    sigma = _past_vol(close, cfg.vol_window)
    barrier = np.maximum(cfg.vol_mult * sigma * np.sqrt(h), cost - cfg.min_move) + cfg.min_move
    log_c = np.log(close)
    # paths[t, j] = log(close[t+1+j] / close[t]), j < h
    paths = np.lib.stride_tricks.sliding_window_view(log_c[1:], h)[: n - h] - log_c[: n - h, None]
    b = barrier[: n - h, None]
    hit_up = paths >= b
    hit_dn = paths <= -b
    first_up = np.where(hit_up.any(axis=1), hit_up.argmax(axis=1), h)
    first_dn = np.where(hit_dn.any(axis=1), hit_dn.argmax(axis=1), h)
    lab = np.where(first_up < first_dn, UP, np.where(first_dn < first_up, DOWN, FLAT)).astype(np.float64)
    lab[~np.isfinite(barrier[: n - h])] = np.nan  # volatility still warming up
    y[: n - h] = lab
    end[: n - h] = t + 1 + np.minimum(np.minimum(first_up, first_dn), h - 1)
    end[~np.isfinite(y)] = -1
    return Labels(y, end)


def make_labels(bars: pd.DataFrame, cfg: LabelConfig) -> npt.NDArray[np.float64]:
    """Labels (0 down, 1 flat, 2 up) per bar, NaN where unknown."""
    return label_bars(bars, cfg).y


def uniqueness_weights(end: npt.NDArray[np.int64], idx: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Average uniqueness of the spans (idx[i]+1 .. end[idx[i]]) of the samples ``idx``: the mean
    over the span's bars of 1 / concurrency, concurrency counting the samples whose span covers
    the bar. 1 for a sample that shares no bar with another, 1/h for h fully overlapping ones."""
    if len(idx) == 0:
        return np.zeros(0)
    start = idx + 1
    stop = end[idx]
    if (stop < start).any():
        raise ValueError("a sample has no label span (end < start): label it before weighting")
    n = int(stop.max()) + 2
    delta = np.zeros(n)
    np.add.at(delta, start, 1.0)
    np.add.at(delta, stop + 1, -1.0)
    conc = np.cumsum(delta)
    inv = np.zeros(n)
    np.divide(1.0, conc, out=inv, where=conc > 0)
    csum = np.concatenate([[0.0], np.cumsum(inv)])
    out: npt.NDArray[np.float64] = (csum[stop + 1] - csum[start]) / (stop - start + 1)
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
