"""Feature rows from bars, in batch (training) and one closed bar at a time (serving).

Both paths run the same kernel, ``rows_from_windows``, on a matrix of bar windows: batch passes a
strided view of every window of the series, the online state passes its single latest window. So the
two cannot drift apart, and the row of bar t only ever sees bars t-window+1 .. t.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any

from kairos.features.schema import (
    ACTIVITY_WINDOW,
    CHANNEL_WINDOWS,
    LONG_WINDOW,
    MOMENTUM_WINDOW,
    RANGE_WINDOW,
    RETURN_HORIZONS,
    SCHEMA,
    SPREAD_VOL_WINDOW,
    TREND_WINDOWS,
    VOL_WINDOWS,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BAR_COLUMNS = ("time", "open", "high", "low", "close", "spread", "tick_volume")
_MS_PER_DAY = 86_400_000
_MS_PER_WEEK = 7 * _MS_PER_DAY
# 1970-01-01 was a Thursday: shift so that Monday 00:00 UTC is position 0 of the week.
_EPOCH_WEEKDAY_OFFSET_MS = 3 * _MS_PER_DAY
_BP = 1e4
# Batch rows per kernel call: bounds the (rows x window) temporaries to a few MB.
_CHUNK = 2048


class BarLike(Protocol):
    """What ``OnlineFeatures.update`` reads from a bar: a ``kairos.features.Bar`` or a proto ``Bar``."""

    @property
    def open_time_msc(self) -> int: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def tick_volume(self) -> int: ...
    @property
    def spread_mean(self) -> float: ...


def _safe_div(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


def rows_from_windows(
    time_ms: IntArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    spread: FloatArray,
    tick_volume: FloatArray,
) -> FloatArray:
    """Feature rows for m windows. ``time_ms`` and ``spread`` are (m,), the others (m, window),
    the last column being the bar the row belongs to."""
    last = close[:, -1]
    log_close = np.log(close)
    r1 = np.diff(log_close, axis=1)
    vols = {n: r1[:, -n:].std(axis=1) for n in VOL_WINDOWS}
    sigma = vols[LONG_WINDOW] if LONG_WINDOW in vols else r1[:, -LONG_WINDOW:].std(axis=1)
    cols: list[FloatArray] = []
    for h in RETURN_HORIZONS:
        cols.append(_safe_div(log_close[:, -1] - log_close[:, -1 - h], sigma * np.sqrt(h)))
    for n in VOL_WINDOWS:
        cols.append(vols[n] * _BP)
    short, long = vols[VOL_WINDOWS[0]], vols[VOL_WINDOWS[-1]]
    both = (short > 0) & (long > 0)
    cols.append(np.where(both, np.log(np.where(both, short, 1.0) / np.where(both, long, 1.0)), 0.0))
    rel_range = (high[:, -RANGE_WINDOW:] - low[:, -RANGE_WINDOW:]) / close[:, -RANGE_WINDOW:]
    cols.append(rel_range[:, -1] * _BP)
    cols.append(rel_range.mean(axis=1) * _BP)
    for n in CHANNEL_WINDOWS:
        lo = low[:, -n:].min(axis=1)
        hi = high[:, -n:].max(axis=1)
        width = hi - lo
        cols.append(np.where(width > 0, _safe_div(last - lo, width) - 0.5, 0.0))
    moves = r1[:, -MOMENTUM_WINDOW:]
    cols.append(_safe_div(moves.sum(axis=1), np.abs(moves).sum(axis=1)))
    for n in TREND_WINDOWS:
        cols.append(_safe_div(np.log(last / close[:, -n:].mean(axis=1)), sigma))
    cols.append(_safe_div(spread / last, r1[:, -SPREAD_VOL_WINDOW:].std(axis=1)))
    lv = np.log1p(tick_volume[:, -ACTIVITY_WINDOW:])
    cols.append(lv[:, -1] - lv.mean(axis=1))
    day = (time_ms % _MS_PER_DAY).astype(np.float64) / _MS_PER_DAY * (2 * np.pi)
    week = (
        ((time_ms + _EPOCH_WEEKDAY_OFFSET_MS) % _MS_PER_WEEK).astype(np.float64) / _MS_PER_WEEK * (2 * np.pi)
    )
    cols += [np.sin(day), np.cos(day), np.sin(week), np.cos(week)]
    return np.stack(cols, axis=1)


def to_epoch_ms(time: Any) -> IntArray:
    """UTC epoch milliseconds from a datetime column (naive means UTC) or integer milliseconds."""
    values = pd.Series(time)
    if pd.api.types.is_integer_dtype(values.dtype):
        return np.asarray(values.to_numpy(dtype=np.int64), dtype=np.int64)
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        raise ValueError(f"column 'time': expected datetimes or integer epoch ms, got dtype {values.dtype}")
    if getattr(values.dt, "tz", None) is None:
        values = values.dt.tz_localize("UTC")
    delta = values - pd.Timestamp(0, tz="UTC")
    return np.asarray((delta // pd.Timedelta(milliseconds=1)).to_numpy(dtype=np.int64), dtype=np.int64)


def compute_features(bars: pd.DataFrame) -> FloatArray:
    """Feature matrix (len(bars), SCHEMA.n_features), float64, row i for bar i, NaN while warming up.

    ``bars`` holds closed bars in time order with the columns time (UTC open time), open, high, low,
    close (bid), spread (mean, price units) and tick_volume.
    """
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack column(s) {missing}; need {list(BAR_COLUMNS)}")
    n = len(bars)
    out = np.full((n, SCHEMA.n_features), np.nan)
    time_ms = to_epoch_ms(bars["time"])
    if n > 1:
        bad = np.flatnonzero(np.diff(time_ms) <= 0)
        if bad.size:
            i = int(bad[0]) + 1
            raise ValueError(
                f"bars must be in strictly increasing time order: row {i} does not follow row {i - 1}"
            )
    w = SCHEMA.window
    if n < w:
        return out
    cols = {c: bars[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close", "spread", "tick_volume")}
    if not (cols["close"] > 0).all():
        raise ValueError(f"column 'close': row {int(np.argmin(cols['close'] > 0))} is not a positive price")

    def windows(a: FloatArray) -> FloatArray:
        return np.lib.stride_tricks.sliding_window_view(a, w)

    views = {c: windows(cols[c]) for c in ("high", "low", "close", "tick_volume")}
    for lo in range(0, n - w + 1, _CHUNK):
        hi = min(lo + _CHUNK, n - w + 1)
        out[w - 1 + lo : w - 1 + hi] = rows_from_windows(
            time_ms[w - 1 + lo : w - 1 + hi],
            views["high"][lo:hi],
            views["low"][lo:hi],
            views["close"][lo:hi],
            cols["spread"][w - 1 + lo : w - 1 + hi],
            views["tick_volume"][lo:hi],
        )
    return out


class OnlineFeatures:
    """Incremental feature state of one symbol: feed closed bars in order, get each bar's row.

    ``keep_rows`` > 1 also keeps the latest rows so a model's input window is one call away
    (``window(n)``).
    """

    def __init__(self, keep_rows: int = 1) -> None:
        if keep_rows < 1:
            raise ValueError("keep_rows must be >= 1")
        self._w = SCHEMA.window
        # Rows: time, high, low, close, spread, tick_volume; the newest bar is the last column.
        self._buf = np.zeros((6, self._w))
        self._count = 0
        self._last_time: int | None = None
        self._keep = keep_rows
        self._rows = np.full((keep_rows, SCHEMA.n_features), np.nan)
        self._n_rows = 0

    @property
    def bars_seen(self) -> int:
        return self._count

    @property
    def warm(self) -> bool:
        return self._count >= self._w

    def update(self, bar: BarLike) -> FloatArray | None:
        """Feature row (n_features,) for this closed bar, or None while fewer than SCHEMA.window bars
        have been seen. Raises ValueError for a bar that is not newer than the previous one."""
        t = int(bar.open_time_msc)
        if self._last_time is not None and t <= self._last_time:
            raise ValueError(f"bar at {t} ms is not newer than the previous bar at {self._last_time} ms")
        if not float(bar.close) > 0:
            raise ValueError(f"bar at {t} ms has a non-positive close {bar.close}")
        self._last_time = t
        buf = self._buf
        buf[:, :-1] = buf[:, 1:]
        buf[:, -1] = (t, bar.high, bar.low, bar.close, bar.spread_mean, bar.tick_volume)
        self._count += 1
        if self._count < self._w:
            return None
        row: FloatArray = rows_from_windows(
            np.array([t], dtype=np.int64),
            buf[1:2],
            buf[2:3],
            buf[3:4],
            buf[4, -1:],
            buf[5:6],
        )[0]
        self._rows[:-1] = self._rows[1:]
        self._rows[-1] = row
        self._n_rows = min(self._n_rows + 1, self._keep)
        return row

    def window(self, n: int) -> FloatArray | None:
        """The latest n feature rows, oldest first, shape (n, n_features); None until n rows exist."""
        if n > self._keep:
            raise ValueError(f"window({n}) needs OnlineFeatures(keep_rows>={n})")
        if self._n_rows < n:
            return None
        return self._rows[-n:].copy()

    def reset(self) -> None:
        """Forget all history (e.g. after a data gap the caller does not want to bridge)."""
        self.__init__(self._keep)  # type: ignore[misc]
