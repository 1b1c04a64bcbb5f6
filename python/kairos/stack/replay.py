"""Replay market data through the bridge library into the collector.

The data is read by the training importer (`kairos.training.data`: the shared CSV formats, MT5 tick
and bar exports in UTF-8 or UTF-16, Parquet, `sample:eurusd-h1`), so replay and training accept
the same files and report bad rows the same way: file, line, field and reason. Without `strict`,
a bad row is reported and skipped and the rest is replayed.

Bar files are replayed the way MT5's strategy tester models "1 minute OHLC": four ticks per bar
(open, then high and low in the order the bar's direction implies, then close) spread over the
bar's first three quarters, with the bar's spread on the ask; the collector rebuilds the same bars
from them.

The ticks go through `kairos.bridge.client.Bridge`, the pybind11 extension over the DLL's own C++ client:
the same queues, framing, sequencing and reconnect logic the terminal runs.
"""

from __future__ import annotations

import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kairos.features import to_epoch_ms

MAX_SKIPPED = 10_000  # beyond this many bad rows the file is not worth replaying
PUSH_BATCH = 100  # ticks per push call, as the EA pushes a CopyTicks slice


class BadData(ValueError):
    """The data cannot be replayed (unreadable, or a bad row with strict)."""


@dataclass
class ReplayData:
    symbol: str
    digits: int
    time_msc: npt.NDArray[np.int64]
    bid: npt.NDArray[np.float64]
    ask: npt.NDArray[np.float64]
    source: str
    kind: str  # "ticks" or "bars" (replayed as four ticks per bar)
    rejected: list[str] = field(default_factory=list)


@dataclass
class ReplayResult:
    pushed: int
    sent: int
    dropped: int
    seconds: float
    counters: dict[str, int]

    acked: int = 0

    @property
    def lost(self) -> int:
        return self.pushed - self.acked

    @property
    def ticks_per_s(self) -> float:
        return self.pushed / self.seconds if self.seconds > 0 else 0.0


def _digits(point: float) -> int:
    return max(0, round(-np.log10(point))) if point > 0 else 5


def _read(source: str) -> tuple[Any, str]:
    from kairos.training import data as td

    return td.read_market_data(source)


def _read_skipping(source: str, strict: bool) -> tuple[Any, str, list[str]]:
    """Parses the file; without strict, drops each bad line (reported) and parses the rest again."""
    from kairos.training.data import DataError

    rejected: list[str] = []
    try:
        parsed, name = _read(source)
        return parsed, name, rejected
    except DataError as exc:
        if strict or exc.line is None or source.startswith("sample:"):
            raise BadData(str(exc)) from exc
        rejected.append(str(exc))
        first_error = exc
    path = Path(source)
    raw = path.read_bytes()
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    lines = raw.decode(encoding).splitlines(keepends=True)
    bad = {first_error.line}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        while len(bad) <= MAX_SKIPPED:
            # A skipped line becomes empty, so later line numbers still match the original file.
            copy.write_text(
                "".join("\n" if i + 1 in bad else ln for i, ln in enumerate(lines)), encoding="utf-8"
            )
            try:
                parsed, _ = _read(str(copy))
                return parsed, source, [r.replace(str(copy), source) for r in rejected]
            except DataError as exc:
                if exc.line is None or exc.line in bad:
                    raise BadData(str(exc).replace(str(copy), source)) from exc
                bad.add(exc.line)
                rejected.append(str(exc).replace(str(copy), source))
    raise BadData(f"{source}: more than {MAX_SKIPPED} bad rows; giving up")


def load(source: str, *, symbol: str, strict: bool = False, last: int = 0) -> ReplayData:
    parsed, name, rejected = _read_skipping(source, strict)
    frame = parsed.frame
    if last:
        frame = frame.iloc[-last:]
    point = float(parsed.point) or 1e-5
    if parsed.kind == "ticks":
        return ReplayData(
            symbol,
            _digits(point),
            to_epoch_ms(frame["time"]),
            frame["bid"].to_numpy(np.float64),
            frame["ask"].to_numpy(np.float64),
            name,
            "ticks",
            rejected,
        )
    from kairos.training.data import SAMPLE_EURUSD_H1, SAMPLE_EURUSD_SPREAD

    # Bars without a spread get the one training assumes for them (sample) or two points.
    default_spread = SAMPLE_EURUSD_SPREAD if source == SAMPLE_EURUSD_H1 else 2 * point
    time_msc, bid, ask = bars_to_ticks(frame, point, default_spread)
    return ReplayData(symbol, _digits(point), time_msc, bid, ask, name, "bars", rejected)


def bars_to_ticks(
    bars: Any, point: float, default_spread: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Four ticks per bar (open, high/low in the bar's direction, close) at 0, 1/4, 1/2, 3/4 of it."""
    t0 = to_epoch_ms(bars["time"])
    period = int(np.median(np.diff(t0))) if len(t0) > 1 else 60_000
    o, h, lo, c = (bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    spread = bars["spread"].to_numpy(np.float64) if "spread" in bars else np.full(len(o), np.nan)
    spread = np.where(np.isfinite(spread), spread, default_spread)
    up = c >= o
    path = np.stack([o, np.where(up, lo, h), np.where(up, h, lo), c], axis=1)
    offsets = np.array([0, period // 4, period // 2, 3 * period // 4], dtype=np.int64)
    time_msc = (t0[:, None] + offsets[None, :]).ravel()
    bid = path.ravel()
    ask = bid + np.repeat(spread, 4)
    return time_msc, bid, ask


def replay(
    data: ReplayData,
    *,
    collector: str,
    speed: float = 0.0,
    stats: Any = None,
    cancel: threading.Event | None = None,
    flush_timeout_s: float = 30.0,
    bridge_key: str = "",
) -> ReplayResult:
    """Pushes the ticks through a bridge connected to `collector` at `speed` ticks/s (0: full speed).

    bridge_key is the collector's bridge key (StackSettings.ensure_bridge_key), proven as the EA does.
    A full queue is retried, never skipped (the bridge counts each refusal in `dropped`; `lost` is
    what was pushed but never acknowledged by the collector). Returns once the collector has
    acknowledged everything queued (bounded by flush_timeout_s).
    """
    from kairos.bridge.client import Bridge, BridgeOptions, Status

    n = len(data.time_msc)
    started = time.perf_counter()
    pushed = 0
    with Bridge(
        collector=collector,
        execution="",
        options=BridgeOptions(tick_queue_capacity=1 << 16),
        bridge_key=bridge_key,
    ) as bridge:
        bridge.announce_symbol(data.symbol, data.digits, contract_size=100_000.0)
        while pushed < n and not (cancel and cancel.is_set()):
            end = min(n, pushed + PUSH_BATCH)
            status = bridge.push_quotes(
                data.symbol,
                data.digits,
                data.time_msc[pushed:end],
                data.bid[pushed:end],
                data.ask[pushed:end],
            )
            if status == Status.E_QUEUE_FULL:
                time.sleep(0.0005)
                continue
            pushed = end
            if stats is not None:
                stats.ticks_replayed = pushed
            if speed > 0:
                ahead = pushed / speed - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
        # Done when the collector has acknowledged every tick: closing earlier could reset the
        # connection while the collector still has unread frames in its socket buffer.
        deadline = time.monotonic() + flush_timeout_s
        counters = bridge.counters()
        while counters["ticks_acked"] < counters["ticks_queued"] and time.monotonic() < deadline:
            time.sleep(0.005)
            counters = bridge.counters()
        seconds = time.perf_counter() - started
    return ReplayResult(
        pushed=pushed,
        sent=counters["ticks_sent"],
        dropped=counters["ticks_dropped"],
        seconds=seconds,
        acked=counters["ticks_acked"],
        counters=counters,
    )
