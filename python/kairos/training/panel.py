"""Several symbols in one run: bars stacked symbol by symbol, one clock for all (issue #14 item 9).

A run's ``bars.parquet`` holds one symbol, or several with a ``symbol`` column, each symbol's bars
contiguous and in time order. Everything per bar (features, labels, the policy's volatility, prices)
is computed per symbol and stacked, so no feature window, label span or fill crosses from one symbol
into another. Sample indices stay row numbers of the stacked frame.

Time is the ``clock``: each bar's rank among the distinct bar times of all symbols. Walk-forward folds
are cut on it, training samples are purged by it (a sample is kept for a validation block only if its
clock is more than ``purge`` before the block's first), and out-of-sample returns are pooled on it: the
portfolio's return at a time is the sum of every symbol's return then (each symbol traded at its own
notional). With a single symbol the clock is the row number, and all of this is what it was before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]

from kairos.features import SCHEMA, FeatureSchema, compute_features, to_epoch_ms
from kairos.features.blocks import cross_features, daily_features
from kairos.training.labels import LabelConfig, Labels, label_bars, window_index

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

SYMBOL_COLUMN = "symbol"


def _daily(bars: pd.DataFrame) -> FloatArray:
    return daily_features(
        to_epoch_ms(bars["time"]),
        bars["high"].to_numpy(np.float64),
        bars["low"].to_numpy(np.float64),
        bars["close"].to_numpy(np.float64),
    )


@dataclass(frozen=True)
class Panel:
    symbols: tuple[str, ...]
    """The symbols, in row order ("" for a single-symbol frame without a symbol column)."""
    bounds: IntArray
    """Row offsets of the symbols' segments: symbol s holds rows bounds[s] .. bounds[s+1]-1."""
    clock: IntArray
    """Per row: the rank of its bar time among the distinct bar times of every symbol."""
    grid_ms: IntArray
    """The distinct bar times (epoch ms), indexed by clock."""

    @classmethod
    def of(cls, bars: pd.DataFrame) -> Panel:
        t = to_epoch_ms(bars["time"])
        n = len(bars)
        if SYMBOL_COLUMN in bars.columns and n:
            sym = bars[SYMBOL_COLUMN].astype(str).to_numpy()
            starts = np.flatnonzero(np.concatenate([[True], sym[1:] != sym[:-1]]))
            names = tuple(str(s) for s in sym[starts])
            if len(set(names)) != len(names):
                raise ValueError("bars: each symbol's rows must be contiguous (sorted by symbol, then time)")
            bounds = np.concatenate([starts, [n]]).astype(np.int64)
        else:
            names, bounds = ("",), np.array([0, n], dtype=np.int64)
        grid = np.unique(t)
        return cls(names, bounds, np.searchsorted(grid, t).astype(np.int64), grid.astype(np.int64))

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    def segments(self) -> list[tuple[int, int]]:
        return [(int(a), int(b)) for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True)]

    def segment_of(self, rows: IntArray) -> IntArray:
        """The symbol number of each row."""
        out: IntArray = np.searchsorted(self.bounds, rows, side="right").astype(np.int64) - 1
        return out

    def segment_end(self, rows: IntArray) -> IntArray:
        """The last row of each row's symbol."""
        out: IntArray = self.bounds[self.segment_of(rows) + 1] - 1
        return out

    def stacked(self, bars: pd.DataFrame, fn: Callable[[pd.DataFrame], FloatArray]) -> FloatArray:
        """``fn`` (a per-bar array of one symbol's bars) over each symbol, stacked."""
        if self.n_symbols == 1:
            return fn(bars)
        parts = [fn(bars.iloc[a:b].reset_index(drop=True)) for a, b in self.segments()]
        return np.concatenate(parts, axis=0)

    def features(
        self, bars: pd.DataFrame, schema: FeatureSchema = SCHEMA, timeframe_s: int = 0
    ) -> FloatArray:
        """Feature rows of ``schema`` (its blocks, ADR 0104), per symbol and stacked; ``timeframe_s``
        is needed by the cross block (how fresh another symbol's bar must be)."""
        base = self.stacked(bars, compute_features)
        if schema.blocks == ("base",):
            return base
        parts = [base]
        if schema.has("daily"):
            parts.append(self.stacked(bars, _daily))
        if schema.has("cross"):
            if self.n_symbols < 2:
                raise ValueError("the cross feature block needs several symbols in the run (--data repeated)")
            if timeframe_s <= 0:
                raise ValueError("the cross feature block needs the bars' timeframe")
            t = to_epoch_ms(bars["time"])
            segs = self.segments()
            rows = cross_features([t[a:b] for a, b in segs], [base[a:b] for a, b in segs], timeframe_s)
            parts.append(np.concatenate(rows, axis=0))
        return np.concatenate(parts, axis=1)

    def labels(self, bars: pd.DataFrame, cfg: LabelConfig) -> Labels:
        if self.n_symbols == 1:
            return label_bars(bars, cfg)
        ys, ends = [], []
        for a, b in self.segments():
            lab = label_bars(bars.iloc[a:b].reset_index(drop=True), cfg)
            ys.append(lab.y)
            ends.append(np.where(lab.end >= 0, lab.end + a, -1))
        return Labels(np.concatenate(ys), np.concatenate(ends).astype(np.int64))

    def window_index(self, features: FloatArray, labels: FloatArray, window: int) -> IntArray:
        """The usable samples of every symbol (``labels.window_index`` per symbol), in clock order
        (ties in symbol order): the order walk-forward folds are cut in."""
        if self.n_symbols == 1:
            return window_index(features, labels, window)
        parts = [window_index(features[a:b], labels[a:b], window) + a for a, b in self.segments()]
        idx = np.concatenate(parts).astype(np.int64)
        out: IntArray = idx[np.lexsort((idx, self.clock[idx]))]
        return out

    def periods_per_year(self) -> float:
        """Distinct bar times per year of the time the symbols cover: the union of each symbol's
        first..last span (a run on markets years apart does not count the years between them)."""
        spans = sorted(
            (int(self.grid_ms[self.clock[a]]), int(self.grid_ms[self.clock[b - 1]]))
            for a, b in self.segments()
            if b > a
        )
        covered, end = 0, None
        for lo, hi in spans:
            if end is None or lo > end:
                covered += hi - lo
                end = hi
            elif hi > end:
                covered += hi - end
                end = hi
        years = covered / (365.25 * 86_400_000)
        return float(len(self.grid_ms) / years) if years > 0 else 1.0

    def before(self, rows: IntArray, first: int, purge: int) -> IntArray:
        """``rows`` whose clock is more than ``purge`` before the clock of row ``first``."""
        out: IntArray = rows[self.clock[rows] < self.clock[first] - purge]
        return out

    def groups(self, rows: IntArray) -> list[tuple[int, IntArray]]:
        """(symbol number, positions into ``rows``) for each symbol present, positions in row order."""
        if self.n_symbols == 1:
            return [(0, np.arange(len(rows), dtype=np.int64))] if len(rows) else []
        seg = self.segment_of(rows)
        return [(int(s), np.flatnonzero(seg == s).astype(np.int64)) for s in np.unique(seg)]

    def pool(self, rows: IntArray, *values: FloatArray) -> tuple[IntArray, list[FloatArray]]:
        """Per distinct clock of ``rows`` (ascending): the sum of each of ``values`` (per row) over the
        symbols at that time. With one symbol and rows in order, the values unchanged."""
        if self.n_symbols == 1:
            return self.clock[rows], [np.asarray(v, dtype=np.float64) for v in values]
        clocks, inv = np.unique(self.clock[rows], return_inverse=True)
        out = []
        for v in values:
            acc = np.zeros(len(clocks))
            np.add.at(acc, inv, v)
            out.append(acc)
        return clocks.astype(np.int64), out


def stack(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Bars of several symbols as one frame with a ``symbol`` column, symbol by symbol."""
    parts = [f.assign(**{SYMBOL_COLUMN: s}) for s, f in frames.items()]
    return pd.concat(parts, ignore_index=True)


def describe(panel: Panel) -> dict[str, Any]:
    return {"symbols": list(panel.symbols), "rows": [b - a for a, b in panel.segments()]}
