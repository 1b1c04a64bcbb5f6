"""The server's use of kairos.features: bars from ticks, bar windows, feature rows in batches.

Everything here is the training pipeline's code (``BarBuilder``, ``SCHEMA`` and the feature kernel
that both ``compute_features`` and ``OnlineFeatures`` run). The server only changes *when* the kernel
runs: ``OnlineFeatures.update`` runs it on one window per call (~140 µs, numpy overhead), while a
request that closes bars on many symbols needs all their rows at once, so the server keeps each
symbol's bar window itself and runs the kernel once on the stacked windows (~4 µs per row at 64).
The parity tests check the result against ``compute_features`` on real data. With the C++ kernel
built (``kairos.features.native``, ADR 0100) the stacked windows go to it instead: the same rows
(parity-tested against the numpy kernel), without numpy's ~130 µs of per-call overhead.
"""

from __future__ import annotations

import math

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
    """One symbol's bar builder and its window of the latest ``SCHEMA.window`` closed bars."""

    __slots__ = ("buf", "builder", "count", "pos")

    def __init__(self, timeframe_s: int) -> None:
        self.builder = BarBuilder(timeframe_s)
        # Rows: open time (ms), high, low, close, spread_mean, tick_volume (the layout OnlineFeatures
        # keeps), then log(close) and log1p(tick_volume), computed once per bar for the C++ kernel.
        # Each bar is written at column i and i + WINDOW, so the latest WINDOW bars, oldest first, are
        # always the contiguous columns pos+1 .. pos+WINDOW: no shifting per bar.
        self.buf = np.zeros((8 if NATIVE is not None else 6, 2 * WINDOW))
        self.pos = 0
        self.count = 0

    def add_tick(self, time_msc: int, bid: float, ask: float, volume: float) -> list[Bar]:
        return self.builder.add_tick(time_msc, bid, ask, volume)

    def push_bar(self, bar: BarLike) -> np.ndarray | None:
        """Add a closed bar; its window (6 or 8, WINDOW) once SCHEMA.window bars were seen, else None."""
        buf = self.buf
        col: tuple[float, ...] = (
            bar.open_time_msc,
            bar.high,
            bar.low,
            bar.close,
            bar.spread_mean,
            bar.tick_volume,
        )
        if len(buf) == 8:
            # A non-positive close never gets here in serving (refused as input); the numpy kernel
            # makes NaN of it, so does this.
            c = bar.close
            col += (math.log(c) if c > 0 else math.nan, math.log1p(bar.tick_volume))
        pos = self.pos = (self.pos + 1) % WINDOW
        buf[:, pos] = col
        buf[:, pos + WINDOW] = col
        self.count += 1
        return buf[:, pos + 1 : pos + 1 + WINDOW].copy() if self.count >= WINDOW else None


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
