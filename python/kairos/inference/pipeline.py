"""The server's use of kairos.features: bars from ticks, bar windows, feature rows in batches.

Everything here is the training pipeline's code (``BarBuilder``, ``SCHEMA`` and the feature kernel
that both ``compute_features`` and ``OnlineFeatures`` run). The server only changes *when* the kernel
runs: ``OnlineFeatures.update`` runs it on one window per call (~140 µs, numpy overhead), while a
request that closes bars on many symbols needs all their rows at once, so the server keeps each
symbol's bar window itself and runs the kernel once on the stacked windows (~4 µs per row at 64).
The parity tests check the result against ``compute_features`` on real data. With the C++ kernel
built (``kairos.features.native``, ADR 0100) the stacked windows go to it instead: the same rows
(parity-tested against the numpy kernel), without numpy's ~130 µs of per-call overhead. With it the
windows themselves live in C++ too (``BarWindows``, and the streams' rings of feature rows,
``RowRing``; ADR 0103 item 6): a request's bars go in and its model inputs come out in two calls,
instead of a numpy write, slice and copy per bar and per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kairos.features import SCHEMA, Bar, BarBuilder, native
from kairos.features import rows_from_windows as feature_kernel
from kairos.features.compute import BarLike
from kairos.inference.model import PipelineSpec

WINDOW = SCHEMA.window
N_FEATURES = SCHEMA.n_features
NATIVE = native.load()
KERNEL = "c++" if NATIVE is not None else "numpy"
"""Which feature kernel this process runs (logged at start-up)."""


def pipeline_spec() -> PipelineSpec:
    """The schema this server computes; models must carry the same hash."""
    return PipelineSpec(schema_hash=SCHEMA.hash, feature_names=SCHEMA.names, bars_per_row=SCHEMA.window)


class SymbolFeed:
    """One symbol's bar builder and its window of the latest ``SCHEMA.window`` closed bars.

    With the C++ kernel the window is a ``BarWindows`` ring in C++ (``windows``): a stream pushes all
    the bars of a request into their symbols' rings and gets all their feature rows in one call
    (``native_rows``). Without it the window is a numpy buffer (``buf``) that ``push`` fills. The
    builder is ``BarBuilder``, or with the C++ kernel its C++ twin ``TickBars`` (the same bars bit for
    bit; ADR 0119), which the tick intake moves too.
    """

    __slots__ = ("buf", "builder", "count", "pos", "windows")

    def __init__(self, timeframe_s: int) -> None:
        self.builder: Any = native.tick_bars(timeframe_s) if NATIVE is not None else BarBuilder(timeframe_s)
        # Rows: open time (ms), high, low, close, spread_mean, tick_volume (the layout OnlineFeatures
        # keeps). Each bar is written at column i and i + WINDOW, so the latest WINDOW bars, oldest
        # first, are always the contiguous columns pos+1 .. pos+WINDOW: no shifting per bar. The C++
        # ring keeps the same layout plus log(close) and log1p(tick_volume), computed once per bar.
        self.windows = native.bar_windows(WINDOW) if NATIVE is not None else None
        self.buf = np.zeros((6, 2 * WINDOW)) if NATIVE is None else None
        self.pos = 0
        self.count = 0

    def add_tick(self, time_msc: int, bid: float, ask: float, volume: float) -> list[Bar]:
        bars: list[Bar] = self.builder.add_tick(time_msc, bid, ask, volume)
        return bars

    def push_bar(self, bar: BarLike) -> np.ndarray | None:
        """Add a closed bar; its window (6 or 8, WINDOW) once SCHEMA.window bars were seen, else None."""
        return self.push(bar.open_time_msc, bar.high, bar.low, bar.close, bar.spread_mean, bar.tick_volume)

    def push(self, t: float, h: float, lo: float, c: float, sp: float, tv: float) -> np.ndarray | None:
        """``push_bar`` of the bar's fields (open time ms, high, low, close, spread_mean, tick_volume)."""
        if self.windows is not None:
            return self.windows.array() if self.windows.push(t, h, lo, c, sp, tv) else None
        buf = self.buf
        assert buf is not None
        col = (t, h, lo, c, sp, tv)
        pos = self.pos = (self.pos + 1) % WINDOW
        buf[:, pos] = col
        buf[:, pos + WINDOW] = col
        self.count += 1
        return buf[:, pos + 1 : pos + 1 + WINDOW].copy() if self.count >= WINDOW else None


def native_inputs(
    rings: list[Any], ready: list[bool], rows: np.ndarray, n_rows: int
) -> tuple[np.ndarray, list[bool]]:
    """With the C++ kernel: append the request's feature rows (one per ready bar, in order) to their
    symbols' ``RowRing``s (``rings[i]`` per closed bar; not ready: the ring restarts) and copy the model
    inputs due; (x (sum(due), n_rows, n_features) float32, due per closed bar)."""
    x, due = NATIVE.inputs(rings, ready, rows, n_rows)
    return np.asarray(x)[: sum(due)], due


def native_rows(windows: list[Any], bars: Sequence[tuple[float, ...]]) -> tuple[np.ndarray, list[bool]]:
    """With the C++ kernel: push bars[i] (``SymbolFeed.push``'s fields) into the ring windows[i] (a
    ``SymbolFeed.windows``), in order; the feature rows of the bars whose window was full, and per bar
    whether it was."""
    rows, ready = NATIVE.push_rows(windows, bars)
    return np.asarray(rows), ready


def feature_rows(windows: list[np.ndarray]) -> np.ndarray:
    """Feature rows (m, N_FEATURES) float64 for m bar windows from ``SymbolFeed.push_bar``."""
    if NATIVE is not None:
        return np.asarray(NATIVE.rows(windows))
    return numpy_rows(np.stack(windows))


def numpy_rows(w: np.ndarray) -> np.ndarray:
    """``feature_rows`` by kairos.features' numpy kernel, for stacked windows (m, 6, WINDOW)."""
    return feature_kernel(
        w[:, 0, -1].astype(np.int64),
        w[:, 1],
        w[:, 2],
        w[:, 3],
        w[:, 4, -1],
        w[:, 5],
    )
