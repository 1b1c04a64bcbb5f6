"""kairos.bridge.replay: replays recorded ticks through the bridge client into a collector.

The ticks take the exact path a terminal's ticks take (kairos_bridge_ext, the DLL's code): batches
of MqlTick records into kb_push_ticks, then TickBatch frames over TCP. Input files:

- Kairos/NautilusTrader quote ticks: ``YYYYMMDD HHMMSSmmm,bid,ask,0`` (shared/data);
- MT5 tick exports: tab-separated ``<DATE> <TIME> <BID> <ASK> <LAST> <VOLUME> <FLAGS>`` with a
  header line, UTF-8 or UTF-16.

    python -m kairos.bridge.replay --ticks ../shared/data/eurusd-ticks-2020-01-01.csv --symbol EURUSD

prints a JSON summary (ticks read, sent, acknowledged by the collector, dropped, rate, the bridge
counters) and exits non-zero unless the collector acknowledged every tick.
"""

from __future__ import annotations

import argparse
import calendar
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

import kairos.bridge.client as kb


class TickFileError(ValueError):
    """A tick file line could not be read; the message names the file and line."""


@dataclass(frozen=True)
class Replayed:
    """Outcome of a replay."""

    read: int
    sent: int
    acked: int
    dropped: int
    seconds: float
    counters: dict[str, int]


def _utc_ms(day: str, clock: str, path: Path, lineno: int) -> int:
    try:
        if "." in day:  # MT5: 2020.01.01 17:00:00.065
            t = time.strptime(f"{day} {clock[:8]}", "%Y.%m.%d %H:%M:%S")
            ms = int(clock[9:12] or 0)
        else:  # 20200101 170000065
            t = time.strptime(day + clock[:6], "%Y%m%d%H%M%S")
            ms = int(clock[6:9])
    except ValueError as e:
        raise TickFileError(f"{path}:{lineno}: bad time {day!r} {clock!r}: {e}") from None
    return calendar.timegm(t) * 1000 + ms


def read_ticks(path: Path) -> npt.NDArray[np.void]:
    """Reads a tick file (either format) into MqlTick records, time_msc in UTC."""
    raw = path.read_bytes()
    text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig")
    times: list[int] = []
    bids: list[float] = []
    asks: list[float] = []
    last_bid = last_ask = 0.0
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("<"):
            continue
        try:
            if "\t" in line:  # MT5 export: empty BID/ASK means unchanged
                cols = line.split("\t")
                bid = float(cols[2]) if cols[2] else last_bid
                ask = float(cols[3]) if cols[3] else last_ask
                t = _utc_ms(cols[0], cols[1], path, lineno)
            else:
                stamp, b, a = line.split(",")[:3]
                day, clock = stamp.split(" ")
                t, bid, ask = _utc_ms(day, clock, path, lineno), float(b), float(a)
        except (IndexError, ValueError) as e:
            if isinstance(e, TickFileError):
                raise
            raise TickFileError(f"{path}:{lineno}: cannot read tick line {line!r}: {e}") from None
        last_bid, last_ask = bid, ask
        times.append(t)
        bids.append(bid)
        asks.append(ask)
    if not times:
        raise TickFileError(f"{path}: no ticks")
    return kb.quote_ticks(times, bids, asks)


def replay(
    bridge: kb.Bridge,
    symbol: str,
    digits: int,
    ticks: npt.NDArray[np.void],
    *,
    batch: int = 100,
    speed: float = 0.0,
    timeout: float = 60.0,
) -> Replayed:
    """Pushes ticks in batches (speed 0: as fast as the bridge takes them; 1: real time) and waits
    until the bridge has sent them all or timeout seconds pass."""
    start = time.monotonic()
    first = int(ticks["time_msc"][0])
    i = 0
    deadline = start + timeout
    while i < len(ticks) and time.monotonic() < deadline:
        chunk = ticks[i : i + batch]
        if speed > 0:
            due = start + (int(chunk["time_msc"][0]) - first) / 1000 / speed
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
        status = bridge.push_ticks(symbol, digits, chunk)
        if status == kb.Status.E_QUEUE_FULL:
            time.sleep(0.001)  # like the EA's watermark: the same ticks go again
            continue
        i += len(chunk)
    base = bridge.counters()["ticks_dropped"]
    # Delivered means acknowledged: the collector processed the frames carrying them.
    while bridge.counters()["ticks_acked"] < i and time.monotonic() < deadline:
        time.sleep(0.005)
    counters = bridge.counters()
    return Replayed(
        read=len(ticks),
        sent=counters["ticks_sent"],
        acked=counters["ticks_acked"],
        dropped=counters["ticks_dropped"] - base,
        seconds=time.monotonic() - start,
        counters=counters,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kairos.bridge.replay", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--ticks", type=Path, required=True, help="tick file (shared/data CSV or MT5 export)")
    parser.add_argument("--symbol", required=True, help="symbol name to send the ticks as")
    parser.add_argument("--digits", type=int, default=5, help="price digits of the symbol (default 5)")
    parser.add_argument("--collector", default="127.0.0.1:7400", help="collector bridge endpoint")
    parser.add_argument("--speed", type=float, default=0.0, help="0: as fast as possible; 1: real time")
    parser.add_argument("--batch", type=int, default=100, help="ticks per push (the EA's CopyTicks batch)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    parser.add_argument(
        "--bridge-key-file",
        type=Path,
        help="file holding the collector's bridge key (`kairos up` writes one)",
    )
    args = parser.parse_args(argv)
    try:
        ticks = read_ticks(args.ticks)
    except (OSError, TickFileError) as e:
        print(f"replay: {e}", file=sys.stderr)
        return 2
    key = args.bridge_key_file.read_text().strip() if args.bridge_key_file else ""
    with kb.Bridge(args.collector, "", terminal_name="kairos-replay", bridge_key=key) as bridge:
        bridge.announce_symbol(args.symbol, args.digits)
        done = replay(
            bridge, args.symbol, args.digits, ticks, batch=args.batch, speed=args.speed, timeout=args.timeout
        )
        log = bridge.drain_log()
    summary = {
        "ticks_read": done.read,
        "ticks_sent": done.sent,
        "ticks_acked": done.acked,
        "ticks_dropped": done.dropped,
        "seconds": round(done.seconds, 3),
        "ticks_per_s": round(done.sent / done.seconds) if done.seconds > 0 else 0,
        "counters": done.counters,
        "log": log,
    }
    print(json.dumps(summary, indent=2))
    return 0 if done.acked == done.read else 1


if __name__ == "__main__":
    sys.exit(main())
