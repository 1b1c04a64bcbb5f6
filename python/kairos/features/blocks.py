"""The optional feature blocks (ADR 0104): the daily lookback and the cross-symbol means.

The base block (``compute.rows_from_windows``) looks back a fixed number of bars. The blocks here look
back in time instead, so they mean the same on M1 and H1:

- **daily**: the bars opened within the 24 hours up to bar t (a day of M1 is 1,440 bars, a day of H1
  24), their realised volatility, the day's return in units of it, and where the close stands in the
  day's channel. Batch (``daily_features``, training) and online (``DailyWindow``, serving) are two
  implementations of the definitions in ``schema.DAILY_SPECS``; the parity test holds them together
  on real bars (float64, 1e-9), as the C++ base kernel is held to the numpy one.
- **cross**: for a model trained on several symbols, the mean of the other symbols' vol-normalised
  returns (base ``zret_h``) at their latest bar opened strictly before bar t and at most
  ``CROSS_FRESH_BARS`` bars before it. Batch: ``cross_features`` on the stacked panel; online:
  ``CrossBoard``, one per stream, fed with every symbol's base rows as they are computed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]

from kairos.features.schema import CROSS_FRESH_BARS, CROSS_HORIZONS, DAILY_SPECS, DAY_MS, SCHEMA

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

N_DAILY = len(DAILY_SPECS)
N_CROSS = len(CROSS_HORIZONS)
CROSS_SOURCE_COLUMNS = tuple(SCHEMA.names.index(f"zret_{h}") for h in CROSS_HORIZONS)
"""The base columns the cross block averages."""
_BP = 1e4


def daily_features(time_ms: IntArray, high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """Daily-block rows (n, N_DAILY) for one symbol's bars in time order; NaN where the series does not
    yet reach back 24 hours."""
    n = len(close)
    out = np.full((n, N_DAILY), np.nan)
    if n < 2:
        return out
    log_close = np.log(close)
    r2 = np.zeros(n)
    r2[1:] = np.diff(log_close) ** 2
    csum = np.concatenate([[0.0], np.cumsum(r2)])
    start = np.searchsorted(time_ms, time_ms - DAY_MS, side="right")  # first bar opened after t - 24 h
    ok = start >= 1  # the bar before the day window (c0) exists
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        return out
    s = start[rows]
    ss = csum[rows + 1] - csum[s]
    rv = np.sqrt(np.maximum(ss, 0.0))
    move = log_close[rows] - log_close[s - 1]
    zret = np.zeros_like(move)
    np.divide(move, rv, out=zret, where=rv > 0)
    # (open - 24 h, open]: a time-based rolling window closed on the right
    index = pd.to_datetime(time_ms, unit="ms")
    lo = pd.Series(low, index=index).rolling(pd.Timedelta(milliseconds=DAY_MS), closed="right").min()
    hi = pd.Series(high, index=index).rolling(pd.Timedelta(milliseconds=DAY_MS), closed="right").max()
    lo_r, hi_r = lo.to_numpy()[rows], hi.to_numpy()[rows]
    width = hi_r - lo_r
    pos = np.zeros_like(width)
    np.divide(close[rows] - lo_r, width, out=pos, where=width > 0)
    out[rows, 0] = zret
    out[rows, 1] = rv * _BP
    out[rows, 2] = np.where(width > 0, pos - 0.5, 0.0)
    return out


class DailyWindow:
    """One symbol's bars of the last 24 hours (plus the one before), for the daily block online.

    Bounded: bars open at least ``timeframe_s`` apart, so a day holds at most 86,400 / timeframe_s of
    them (1,440 on M1)."""

    __slots__ = ("_buf", "_cap", "_head", "_n")

    def __init__(self, timeframe_s: int) -> None:
        self._cap = DAY_MS // (max(int(timeframe_s), 1) * 1000) + 2
        # Rows: open time, high, low, log(close), close; written at i and i + cap (one contiguous slice).
        self._buf = np.zeros((5, 2 * self._cap))
        self._head = 0  # index of the oldest bar kept
        self._n = 0

    def push(self, open_ms: int, high: float, low: float, close: float) -> FloatArray:
        """Add a closed bar (newer than the last); its daily-block row (N_DAILY,), NaN until a bar
        opened at or before open_ms - 24 h has been seen."""
        cap, buf = self._cap, self._buf
        if self._n == cap:  # cannot happen for bars a timeframe apart; keeps the ring bounded anyway
            self._head = (self._head + 1) % cap
            self._n -= 1
        i = (self._head + self._n) % cap
        col = (float(open_ms), high, low, math.log(close) if close > 0 else math.nan, close)
        buf[:, i] = col
        buf[:, i + cap] = col
        self._n += 1
        cut = open_ms - DAY_MS
        # Keep exactly one bar opened at or before the cut (c0): drop the oldest while the next one also is.
        while self._n >= 2 and buf[0, (self._head + 1) % cap] <= cut:
            self._head = (self._head + 1) % cap
            self._n -= 1
        if self._n < 2 or buf[0, self._head] > cut:
            return np.full(N_DAILY, np.nan)
        w = buf[:, self._head : self._head + self._n]
        log_close = w[3]
        ss = float(np.square(np.diff(log_close)).sum())
        rv = math.sqrt(ss)
        zret = (log_close[-1] - log_close[0]) / rv if rv > 0 else 0.0
        lo = float(w[2, 1:].min())
        hi = float(w[1, 1:].max())
        width = hi - lo
        pos = (close - lo) / width - 0.5 if width > 0 else 0.0
        return np.array([zret, rv * _BP, pos])


def cross_features(
    times: Sequence[IntArray], base_rows: Sequence[FloatArray], timeframe_s: int
) -> list[FloatArray]:
    """Cross-block rows (n_s, N_CROSS) for each of several symbols' bars: ``times[s]`` their open
    times (ms, increasing), ``base_rows[s]`` their base-block rows."""
    fresh_ms = CROSS_FRESH_BARS * int(timeframe_s) * 1000
    src = [rows[:, CROSS_SOURCE_COLUMNS] for rows in base_rows]
    out: list[FloatArray] = []
    for a, t_a in enumerate(times):
        total = np.zeros((len(t_a), N_CROSS))
        count = np.zeros(len(t_a))
        for b, t_b in enumerate(times):
            if b == a or len(t_b) == 0:
                continue
            j = np.searchsorted(t_b, t_a, side="left") - 1  # latest bar of b opened before bar t of a
            jj = np.clip(j, 0, None)
            vals = src[b][jj]
            ok = (j >= 0) & (t_b[jj] >= t_a - fresh_ms) & np.isfinite(vals).all(axis=1)
            total[ok] += vals[ok]
            count += ok
        mean = np.zeros_like(total)
        np.divide(total, count[:, None], out=mean, where=count[:, None] > 0)
        out.append(mean)
    return out


class CrossBoard:
    """The latest base rows of every symbol of one stream, for the cross block online.

    Each symbol keeps its last few (open time, zret_h...) entries: a bar of another symbol at the same
    open time may already be in when bar t is computed, and must not count."""

    KEEP = CROSS_FRESH_BARS + 1

    __slots__ = ("_latest", "max_symbols")

    def __init__(self, max_symbols: int) -> None:
        self.max_symbols = max_symbols
        self._latest: dict[str, list[tuple[int, FloatArray]]] = {}

    def record(self, symbol: str, open_ms: int, base_row: FloatArray) -> None:
        """Remember ``symbol``'s base row of the bar opened at open_ms (a non-finite one is not kept)."""
        vals = np.asarray(base_row[list(CROSS_SOURCE_COLUMNS)], dtype=np.float64)
        if not np.isfinite(vals).all():
            return
        entries = self._latest.get(symbol)
        if entries is None:
            if len(self._latest) >= self.max_symbols:
                return  # the stream's symbol bound is enforced upstream; never grow past it here
            entries = self._latest[symbol] = []
        entries.append((open_ms, vals))
        if len(entries) > self.KEEP:
            del entries[0]

    def row(self, symbol: str, open_ms: int, others: Sequence[str], timeframe_s: int) -> FloatArray:
        """The cross-block row of ``symbol``'s bar opened at open_ms, over ``others`` (the model's
        symbols; ``symbol`` itself is skipped)."""
        fresh = open_ms - CROSS_FRESH_BARS * int(timeframe_s) * 1000
        total = np.zeros(N_CROSS)
        count = 0
        for other in others:
            if other == symbol:
                continue
            for t, vals in reversed(self._latest.get(other, ())):
                if t < open_ms:
                    if t >= fresh:
                        total += vals
                        count += 1
                    break
        return total / count if count else total

    def forget(self, symbol: str) -> None:
        self._latest.pop(symbol, None)
