"""Replay market data through the bridge library into the collector (`kairos replay`).

The data is read by the training importer (`kairos.training.data`: the shared CSV formats, MT5 tick
and bar exports in UTF-8 or UTF-16, CSV with a named time column, Parquet, any of them gzip or zstd
compressed, `sample:eurusd-h1`), so replay and training accept the same files and report bad rows the
same way: file, line, field and reason. Without `strict`, a bad row is reported and skipped and the
rest is replayed.

The symbol comes from `--symbol`, else from the file name (an MT5 export's `EURUSD_..._...csv`, the
shared data's `eurusd-ticks-2020-01-01.csv`); a file whose name names no symbol needs `--symbol`.

Bar files are replayed the way MT5's strategy tester models "1 minute OHLC": four ticks per bar
(open, then high and low in the order the bar's direction implies, then close) spread over the
bar's first three quarters, with the bar's spread on the ask; the collector rebuilds the same bars
from them.

The ticks go through `kairos.bridge.client.Bridge`, the pybind11 extension over the DLL's own C++ client:
the same queues, framing, sequencing and reconnect logic the terminal runs. A collector that cannot be
reached fails the replay at once (`CollectorUnreachable`, naming the address), before any tick is pushed.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kairos.features import to_epoch_ms

PUSH_BATCH = 100  # ticks per push call, as the EA pushes a CopyTicks slice
CONNECT_TIMEOUT_S = 5.0  # longest wait for the collector's Welcome before the replay gives up

# Three-letter codes a symbol name is made of (ISO 4217 currencies, metals, common crypto): a file
# name starting with two of them (eurusd-ticks-2020-01-01.csv, GBPUSD_M1.csv) names its symbol.
CODES = frozenset(
    re.findall(
        r"\w+",
        "USD EUR JPY GBP CHF AUD NZD CAD SEK NOK DKK PLN HUF CZK TRY ZAR MXN SGD HKD CNH CNY RUB INR BRL KRW"
        " ILS THB XAU XAG XPT XPD BTC ETH LTC XRP BCH SOL ADA DOT",
    )
)
# An MT5 export: SYMBOL_[TIMEFRAME_]YYYYMMDDHHMM_YYYYMMDDHHMM.csv; the symbol as the terminal spells it.
_MT5_EXPORT = re.compile(r"^(?P<symbol>[A-Za-z#][^_\s]*)_(?:(?:M|H|D|W|MN)\d*_)?\d{12}_\d{12}(?:\.|$)")


class BadData(ValueError):
    """The data cannot be replayed (unreadable, or a bad row with strict)."""


class ReplayError(RuntimeError):
    """The replay cannot run: no symbol for the data, or no collector at the address."""


class CollectorUnreachable(ReplayError):
    """The bridge could not connect to the collector."""


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
    log: list[str] = field(default_factory=list)  # the bridge's connect/disconnect lines

    @property
    def lost(self) -> int:
        return self.pushed - self.acked

    @property
    def ticks_per_s(self) -> float:
        return self.pushed / self.seconds if self.seconds > 0 else 0.0


def _digits(point: float) -> int:
    return max(0, round(-np.log10(point))) if point > 0 else 5


def symbol_from_name(source: str) -> str | None:
    """The symbol a data file's name states, or None (see the module docstring for the rules)."""
    from kairos.training.data import SAMPLE_EURUSD_H1

    if source == SAMPLE_EURUSD_H1:
        return "EURUSD"
    name = Path(source).name
    if m := _MT5_EXPORT.match(name):
        return m.group("symbol")
    token = re.split(r"[-_.\s]", name, maxsplit=1)[0].upper()
    if len(token) == 6 and token.isalpha() and token[:3] in CODES and token[3:] in CODES:
        return token
    return None


def resolve_symbol(source: str, symbol: str | None) -> str:
    """``symbol`` when given, else the one the file name states; neither is a ReplayError."""
    if symbol:
        return symbol
    found = symbol_from_name(source)
    if found is None:
        raise ReplayError(
            f"{source}: the file name does not say which symbol the data is "
            "(like EURUSD_202001020000_202001031159.csv or eurusd-ticks.csv): pass --symbol NAME"
        )
    return found


def load(
    source: str,
    *,
    symbol: str | None = None,
    strict: bool = False,
    last: int = 0,
    time_column: str | None = None,
    time_format: str | None = None,
    digits: int | None = None,
) -> ReplayData:
    """Reads ``source`` for replay as ``symbol`` (None: from the file name, see ``resolve_symbol``).

    ``digits`` overrides the price digits found in the data.
    """
    from kairos.training.data import SAMPLE_EURUSD_H1, SAMPLE_EURUSD_SPREAD, DataError, read_market_data

    symbol = resolve_symbol(source, symbol)
    try:
        parsed = read_market_data(
            source, time_column=time_column, time_format=time_format, skip_bad_rows=not strict
        )
    except DataError as exc:
        raise BadData(str(exc)) from exc
    frame = parsed.frame
    if last:
        frame = frame.iloc[-last:]
    point = float(parsed.point) or 1e-5
    digits = _digits(point) if digits is None else digits
    name = parsed.file  # the sample's path for sample:eurusd-h1
    if parsed.kind == "ticks":
        return ReplayData(
            symbol,
            digits,
            to_epoch_ms(frame["time"]),
            frame["bid"].to_numpy(np.float64),
            frame["ask"].to_numpy(np.float64),
            name,
            "ticks",
            parsed.rejected,
        )
    # Bars without a spread get the one training assumes for them (sample) or two points.
    default_spread = SAMPLE_EURUSD_SPREAD if source == SAMPLE_EURUSD_H1 else 2 * point
    time_msc, bid, ask = bars_to_ticks(frame, point, default_spread)
    return ReplayData(symbol, digits, time_msc, bid, ask, name, "bars", parsed.rejected)


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
    realtime: float = 0.0,
    batch: int = PUSH_BATCH,
    stats: Any = None,
    cancel: threading.Event | None = None,
    flush_timeout_s: float = 30.0,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    bridge_key: str = "",
) -> ReplayResult:
    """Pushes the ticks through a bridge connected to `collector` at `speed` ticks/s (0: full speed),
    or, with `realtime` > 0, at the pace of the data's own times (1: as recorded, 10: ten times faster).

    bridge_key is the collector's bridge key (StackSettings.ensure_bridge_key), proven as the EA does.
    The bridge must reach the collector first: a refused or failed connection raises
    CollectorUnreachable naming the address (after at most `connect_timeout_s`). A full queue is
    retried, never skipped (the bridge counts each refusal in `dropped`; `lost` is what was pushed but
    never acknowledged by the collector). Returns once the collector has acknowledged everything
    queued (bounded by flush_timeout_s).
    """
    from kairos.bridge.client import Bridge, BridgeOptions, Status

    n = len(data.time_msc)
    started = time.perf_counter()
    pushed = 0
    with Bridge(
        collector=collector,
        execution="",
        terminal_name="kairos-replay",
        options=BridgeOptions(tick_queue_capacity=1 << 16),
        bridge_key=bridge_key,
    ) as bridge:
        bridge.announce_symbol(data.symbol, data.digits, contract_size=100_000.0)
        _wait_connected(bridge, collector, connect_timeout_s)
        paced_from = time.perf_counter()
        first_msc = int(data.time_msc[0]) if n else 0
        while pushed < n and not (cancel and cancel.is_set()):
            end = min(n, pushed + batch)
            if realtime > 0:
                due = (int(data.time_msc[pushed]) - first_msc) / 1000 / realtime
                ahead = due - (time.perf_counter() - paced_from)
                if ahead > 0:
                    time.sleep(ahead)
            answer_history(bridge, data.time_msc[:pushed], data.bid[:pushed], data.ask[:pushed], data.digits)
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
            if speed > 0 and realtime <= 0:
                ahead = pushed / speed - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
        # Done when the collector has acknowledged every tick: closing earlier could reset the
        # connection while the collector still has unread frames in its socket buffer.
        deadline = time.monotonic() + flush_timeout_s
        counters = bridge.counters()
        while counters["ticks_acked"] < counters["ticks_queued"] and time.monotonic() < deadline:
            answer_history(bridge, data.time_msc[:pushed], data.bid[:pushed], data.ask[:pushed], data.digits)
            time.sleep(0.005)
            counters = bridge.counters()
        seconds = time.perf_counter() - started
        log = bridge.drain_log()
    return ReplayResult(
        pushed=pushed,
        sent=counters["ticks_sent"],
        dropped=counters["ticks_dropped"],
        seconds=seconds,
        acked=counters["ticks_acked"],
        counters=counters,
        log=log,
    )


def answer_history(
    bridge: Any,
    time_msc: npt.NDArray[np.int64],
    bid: npt.NDArray[np.float64],
    ask: npt.NDArray[np.float64],
    digits: int,
) -> int:
    """Answers the collector's history requests as a terminal would, from the ticks replayed so far
    (``time_msc``/``bid``/``ask``, the quotes already pushed):
    the replay's "terminal" has no history before its first tick. A bar request gets the bars of the
    replayed ticks in its range (both ends inclusive, as CopyRates; a bar still forming included, as
    the terminal returns it), bid OHLC, tick count, mean spread in points; a tick request gets
    EMPTY. The collector warms inference from these (ADR 0105). Returns the requests answered."""
    from kairos.bridge.client import HISTORY_BARS, HISTORY_DONE, HISTORY_EMPTY, MQL_RATES_DTYPE, Status

    answered = 0
    while (req := bridge.poll_history()) is not None:
        answered += 1
        rates = np.zeros(0, dtype=MQL_RATES_DTYPE)
        if req.kind == HISTORY_BARS and req.period_s > 0 and len(time_msc):
            period_ms = req.period_s * 1000
            opens = time_msc // period_ms * period_ms
            keep = (opens >= req.from_msc) & (opens <= req.to_msc)
            if keep.any():
                o, b, a = opens[keep], bid[keep], ask[keep]
                starts = np.flatnonzero(np.concatenate([[True], o[1:] != o[:-1]]))
                ends = np.concatenate([starts[1:], [len(o)]])
                rates = np.zeros(len(starts), dtype=MQL_RATES_DTYPE)
                rates["time"] = o[starts] // 1000
                rates["open"] = b[starts]
                rates["close"] = b[ends - 1]
                rates["high"] = np.maximum.reduceat(b, starts)
                rates["low"] = np.minimum.reduceat(b, starts)
                rates["tick_volume"] = ends - starts
                rates["spread"] = np.rint(np.add.reduceat(a - b, starts) / (ends - starts) * 10.0**digits)
        for at in range(0, len(rates), 4096):
            while bridge.history_bars(req.request_id, rates[at : at + 4096]) == Status.E_QUEUE_FULL:
                time.sleep(0.001)
        verdict = HISTORY_DONE if len(rates) else HISTORY_EMPTY
        while bridge.history_end(req.request_id, verdict) == Status.E_QUEUE_FULL:
            time.sleep(0.001)
    return answered


def _wait_connected(bridge: Any, collector: str, timeout_s: float) -> None:
    """Returns once the collector has welcomed the bridge; a failed connect is fatal at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        counters = bridge.counters()
        if counters["market_data_connected"]:
            return
        if counters["last_error"] or time.monotonic() >= deadline:
            why = bridge.last_error() or f"no answer within {timeout_s:g} s"
            # "(error 111)" is errno: say what it means.
            why = re.sub(r"\(error (\d+)\)", lambda m: f"({os.strerror(int(m.group(1)))})", why)
            raise CollectorUnreachable(
                f"no collector at {collector}: {why}. Is the stack running (`kairos up`)? "
                "--collector HOST:PORT names another bridge listener"
            )
        time.sleep(0.005)
