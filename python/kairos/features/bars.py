"""Time bars from ticks, by the rule the Go collector also follows (docs/interfaces: "Bars").

A bar of period P seconds opens at floor(tick_time / P) * P (UTC, ms); OHLC are on the bid (MT5
convention); tick_volume counts ticks; spread_mean is the mean of ask - bid over the bar's ticks;
spread_points is the bar's largest spread in points. A bar closes, and is emitted once, when a tick
at or after open_time + P arrives, or on ``flush()``. Empty intervals produce no bar: gaps stay gaps.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from operator import le, sub

import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed bar. Field names match the ``kairos.marketdata.v1.Bar`` proto where they overlap,
    so ``OnlineFeatures.update`` takes either."""

    open_time_msc: int
    period_s: int
    open: float
    high: float
    low: float
    close: float
    tick_volume: int
    spread_mean: float
    spread_max: float
    spread_points: int
    real_volume: float = 0.0


class BarBuilder:
    """Aggregates one symbol's ticks into closed bars of ``timeframe_s`` seconds.

    ``point`` (price units per point, e.g. 1e-5 for EURUSD) converts the largest spread into
    ``spread_points``. Ticks older than the open bar (out of order) cannot be placed without
    rewriting an emitted bar: they are dropped and counted in ``late_ticks``.
    """

    def __init__(self, timeframe_s: int, point: float = 1e-5) -> None:
        if timeframe_s <= 0:
            raise ValueError("timeframe_s must be positive")
        if point <= 0:
            raise ValueError("point must be positive")
        self.timeframe_s = timeframe_s
        self.point = point
        self._p_ms = timeframe_s * 1000
        self._open_ms: int | None = None
        self._o = self._h = self._l = self._c = 0.0
        self._n = 0
        self._spread_sum = 0.0
        self._spread_max = 0.0
        self._volume = 0.0
        self.late_ticks = 0

    def add_tick(self, time_msc: int, bid: float, ask: float, volume: float = 0) -> list[Bar]:
        """Add one tick; returns the bar it closed (a list of 0 or 1 bars)."""
        open_ms = (int(time_msc) // self._p_ms) * self._p_ms
        closed: list[Bar] = []
        if self._open_ms is not None:
            if open_ms < self._open_ms:
                self.late_ticks += 1
                return closed
            if open_ms > self._open_ms:
                closed.append(self._emit())
        spread = ask - bid
        if self._open_ms is None:
            self._open_ms = open_ms
            self._o = self._h = self._l = bid
            self._n = 0
            self._spread_sum = 0.0
            self._spread_max = spread
            self._volume = 0.0
        else:
            self._h = max(self._h, bid)
            self._l = min(self._l, bid)
            self._spread_max = max(self._spread_max, spread)
        self._c = bid
        self._n += 1
        self._spread_sum += spread
        self._volume += volume
        return closed

    def add_ticks(
        self,
        times: Sequence[int],
        bids: Sequence[float],
        asks: Sequence[float],
        volumes: Sequence[float] | None = None,
    ) -> list[tuple[Bar, int]]:
        """``add_tick`` of each tick in order, a bar's ticks at a time; returns (bar, j) per bar closed,
        j the index of the tick that closed it.

        The state moves by the same operations in the same order as tick by tick (``max``/``min``
        over a bar's bids compare as the running ``max``/``min`` do; the sums are sequential), so the
        bars are identical to ``add_tick``'s, bit for bit. Times out of order fall back to
        ``add_tick`` itself. A request of 100 ticks costs the inference server ~10x less this way.
        """
        n = len(times)
        closed: list[tuple[Bar, int]] = []
        if n == 0:
            return closed
        if not all(map(le, times[:-1], times[1:])):
            for j in range(n):
                v = volumes[j] if volumes is not None else 0
                closed.extend((bar, j) for bar in self.add_tick(times[j], bids[j], asks[j], v))
            return closed
        p = self._p_ms
        j = 0
        while j < n:
            open_ms = (int(times[j]) // p) * p
            if self._open_ms is not None:
                if open_ms < self._open_ms:  # sorted: every tick before the open bar is late
                    k = bisect_left(times, self._open_ms, j)
                    self.late_ticks += k - j
                    j = k
                    continue
                if open_ms > self._open_ms:
                    closed.append((self._emit(), j))
            k = bisect_left(times, open_ms + p, j + 1)
            seg_b = bids[j:k]
            spreads = list(map(sub, asks[j:k], seg_b))
            if self._open_ms is None:  # the bar opens on this segment's first tick
                self._open_ms = open_ms
                self._o = seg_b[0]
                self._h = max(seg_b)
                self._l = min(seg_b)
                self._spread_max = max(spreads)
                self._n = 0
                self._spread_sum = 0.0
                self._volume = 0.0
            else:
                self._h = max(self._h, *seg_b)
                self._l = min(self._l, *seg_b)
                self._spread_max = max(self._spread_max, *spreads)
            self._c = seg_b[-1]
            self._n += k - j
            acc = self._spread_sum
            for sp in spreads:
                acc += sp
            self._spread_sum = acc
            vol = self._volume
            if volumes is None:
                vol += 0  # adding 0 once or k - j times gives the same float
            else:
                for v in volumes[j:k]:
                    vol += v
            self._volume = vol
            j = k
        return closed

    def flush(self) -> list[Bar]:
        """Close the open bar now (end of data, or a timer deciding the period is over)."""
        return [self._emit()] if self._open_ms is not None else []

    def _emit(self) -> Bar:
        assert self._open_ms is not None
        bar = Bar(
            open_time_msc=self._open_ms,
            period_s=self.timeframe_s,
            open=self._o,
            high=self._h,
            low=self._l,
            close=self._c,
            tick_volume=self._n,
            spread_mean=self._spread_sum / self._n,
            spread_max=self._spread_max,
            spread_points=round(self._spread_max / self.point),
            real_volume=self._volume,
        )
        self._open_ms = None
        return bar


def bars_to_frame(bars: Iterable[Bar]) -> pd.DataFrame:
    """Bars as the DataFrame ``compute_features`` takes (time as UTC datetimes, spread = spread_mean)."""
    rows = [asdict(b) for b in bars]
    df = pd.DataFrame(
        rows,
        columns=[
            "open_time_msc",
            "period_s",
            "open",
            "high",
            "low",
            "close",
            "tick_volume",
            "spread_mean",
            "spread_max",
            "spread_points",
            "real_volume",
        ],
    )
    df.insert(0, "time", pd.to_datetime(df["open_time_msc"].astype("int64"), unit="ms", utc=True))
    df["spread"] = df["spread_mean"].astype("float64")
    return df
