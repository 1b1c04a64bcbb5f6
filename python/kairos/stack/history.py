"""`kairos history`: tick or bar history of a symbol, downloaded from the MT5 terminal through the bridge.

The range is split into chunks (a day of ticks, a month of bars by default). For each chunk the
collector asks the connected EA (`FetchHistory` -> a `HistoryRequest` on the bridge -> the EA's
`CopyTicksRange` / `CopyRates`), and the terminal's answer comes back in parts with a verdict. Every
chunk lands in its own Parquet file under ``<out>.parts/`` as it completes, so an interrupted download
resumes where it stopped (chunks already there are not asked for again); at the end the parts become
one Parquet file in the schema the training importer reads (``kairos.training.data``): ticks as
``time, bid, ask, last, volume, flags``, bars as ``time, open, high, low, close, spread, tick_volume,
real_volume`` (time in UTC, milliseconds).

Nothing is returned in silence: a chunk the terminal could not copy, a chunk that starts before the
terminal's history does (partial), parts lost on the way and a range without a single row are each a
``HistoryError`` naming the chunk and why. A chunk without rows inside a range that has some (a
weekend) is reported in the progress and kept as an empty part.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pandas as pd  # type: ignore[import-untyped]

from kairos.collector.v1 import collector_pb2, collector_pb2_grpc
from kairos.inference.auth import with_token
from kairos.marketdata.v1 import marketdata_pb2
from kairos.training.data import TIMEFRAMES

DAY_MS = 86_400_000
DEFAULT_TICK_CHUNK_MS = DAY_MS
DEFAULT_BAR_CHUNK_MS = 30 * DAY_MS
MAX_CHUNK_MS = 31 * DAY_MS  # the collector refuses longer ranges

TICK_COLUMNS = ("time", "bid", "ask", "last", "volume", "flags")
BAR_COLUMNS = ("time", "open", "high", "low", "close", "spread", "tick_volume", "real_volume")

_STATUS = marketdata_pb2.HistoryStatus


class HistoryError(RuntimeError):
    """The download cannot give a complete answer; the message names the chunk and why."""


@dataclass(frozen=True)
class Chunk:
    index: int  # from 1
    count: int
    from_msc: int
    to_msc: int

    def __str__(self) -> str:
        return f"chunk {self.index}/{self.count} [{_ts(self.from_msc)} .. {_ts(self.to_msc)}) UTC"

    def part_name(self, what: str) -> str:
        return f"{what}-{self.from_msc}-{self.to_msc}.parquet"


@dataclass
class Result:
    path: Path
    rows: int = 0
    chunks: int = 0
    downloaded: int = 0
    resumed: int = 0
    empty: list[str] = field(default_factory=list)
    terminal: str = ""


def _ts(msc: int) -> str:
    return dt.datetime.fromtimestamp(msc / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M")


def parse_time(text: str) -> int:
    """A UTC date or date-time (ISO 8601: 2020-01-02, 2020-01-02T10:00, with or without Z) in ms."""
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise HistoryError(f"{text!r} is not a date or date-time (ISO 8601, UTC), e.g. 2020-01-02") from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def parse_duration(text: str) -> int:
    """A chunk length such as 6h, 1d, 7d, in ms."""
    m = re.fullmatch(r"\s*(\d+)\s*([hd])\s*", text)
    if not m or int(m.group(1)) == 0:
        raise HistoryError(f"--chunk {text!r}: a whole number of hours or days, e.g. 6h or 1d")
    ms = int(m.group(1)) * (3_600_000 if m.group(2) == "h" else DAY_MS)
    if ms > MAX_CHUNK_MS:
        raise HistoryError(f"--chunk {text!r} is longer than the collector's limit of 31 days")
    return ms


def chunks(from_msc: int, to_msc: int, chunk_ms: int) -> list[Chunk]:
    """The range in chunks of chunk_ms (the last one shorter), numbered from 1."""
    if to_msc <= from_msc:
        raise HistoryError(f"--to {_ts(to_msc)} is not after --from {_ts(from_msc)}")
    edges = [*range(from_msc, to_msc, chunk_ms), to_msc]
    n = len(edges) - 1
    return [Chunk(i + 1, n, edges[i], edges[i + 1]) for i in range(n)]


def _empty_frame(bars: bool) -> pd.DataFrame:
    cols = BAR_COLUMNS if bars else TICK_COLUMNS
    df = pd.DataFrame({c: np.array([], dtype="float64") for c in cols[1:]})
    df.insert(0, "time", pd.Series([], dtype="datetime64[ms, UTC]"))
    if not bars:
        df["flags"] = df["flags"].astype("uint32")
    return df


def _frame(parts: list[collector_pb2.FetchHistoryResponse], bars: bool, point: float | None) -> pd.DataFrame:
    if bars:
        rows = [b for p in parts for b in p.bars]
        if not rows:
            return _empty_frame(True)
        spread = np.array([b.spread_points for b in rows], dtype="float64")
        return pd.DataFrame(
            {
                "time": pd.to_datetime(
                    np.array([b.open_time_msc for b in rows], dtype="int64"), unit="ms", utc=True
                ),
                "open": [b.open for b in rows],
                "high": [b.high for b in rows],
                "low": [b.low for b in rows],
                "close": [b.close for b in rows],
                # MqlRates.spread is in points; the importer's spread is in price units.
                "spread": spread * point if point else np.full(len(rows), np.nan),
                "tick_volume": np.array([b.tick_volume for b in rows], dtype="float64"),
                "real_volume": [b.real_volume for b in rows],
            }
        ).astype({"time": "datetime64[ms, UTC]"})
    batches = [p.ticks for p in parts if len(p.ticks.time_msc)]
    if not batches:
        return _empty_frame(False)

    def col(name: str, dtype: str) -> np.ndarray:
        out = []
        for b in batches:
            v = np.array(getattr(b, name), dtype=dtype)
            out.append(v if len(v) == len(b.time_msc) else np.zeros(len(b.time_msc), dtype=dtype))
        return np.concatenate(out)

    return pd.DataFrame(
        {
            "time": pd.to_datetime(col("time_msc", "int64"), unit="ms", utc=True),
            "bid": col("bid", "float64"),
            "ask": col("ask", "float64"),
            "last": col("last", "float64"),
            "volume": col("volume", "float64"),
            "flags": col("flags", "uint32"),
        }
    ).astype({"time": "datetime64[ms, UTC]"})


def fetch_chunk(
    stub: collector_pb2_grpc.MarketDataServiceStub,
    symbol: str,
    chunk: Chunk,
    period_s: int,
    point: float | None,
) -> tuple[pd.DataFrame, collector_pb2.FetchHistoryResponse]:
    """One chunk from the terminal: its rows and the last part (the verdict). Raises HistoryError
    for every answer that is not a complete one (EMPTY is complete: no rows)."""
    bars = period_s > 0
    req = collector_pb2.FetchHistoryRequest(
        symbol=symbol,
        kind=marketdata_pb2.HISTORY_KIND_BARS if bars else marketdata_pb2.HISTORY_KIND_TICKS,
        period_s=period_s,
        from_msc=chunk.from_msc,
        to_msc=chunk.to_msc,
    )
    parts: list[collector_pb2.FetchHistoryResponse] = []
    try:
        for part in stub.FetchHistory(req):
            if part.part != len(parts):
                raise HistoryError(f"{chunk}: part {part.part} arrived where part {len(parts)} was due")
            parts.append(part)
    except grpc.RpcError as e:
        raise HistoryError(f"{chunk}: the collector answered {e.code().name}: {e.details()}") from e
    if not parts or parts[-1].status == _STATUS.Value("HISTORY_STATUS_MORE"):
        raise HistoryError(f"{chunk}: the answer ended before the terminal's verdict (connection lost?)")
    last = parts[-1]
    df = _frame(parts, bars, point)
    status = _STATUS.Name(last.status).removeprefix("HISTORY_STATUS_")
    if status == "ERROR":
        raise HistoryError(f"{chunk}: the terminal could not copy it: {last.message or 'no reason given'}")
    if status == "PARTIAL":
        first = (
            f"starts at {_ts(last.first_available_msc)} UTC" if last.first_available_msc else "starts later"
        )
        raise HistoryError(
            f"{chunk}: partial: the terminal's history of {symbol} {first}, after the chunk's start "
            f"({last.message or 'no reason given'}); download from there, or let the terminal load more "
            f"history (Tools > Options > Charts > Max bars in history)"
        )
    if len(df) != last.total:
        raise HistoryError(
            f"{chunk}: {len(df)} rows arrived but the terminal sent {last.total}: parts were lost"
        )
    if len(df):
        t = df["time"].astype("int64").to_numpy()  # ms since the epoch
        if t.min() < chunk.from_msc or t.max() >= chunk.to_msc:
            span = f"{_ts(int(t.min()))} .. {_ts(int(t.max()))}"
            raise HistoryError(f"{chunk}: the terminal sent rows outside the chunk ({span})")
    return df, last


def _point(stub: collector_pb2_grpc.MarketDataServiceStub, symbol: str) -> float | None:
    try:
        got = stub.ListSymbols(collector_pb2.ListSymbolsRequest())
    except grpc.RpcError:
        return None
    for info in got.symbols:
        if info.symbol == symbol and info.point > 0:
            return float(info.point)
    return None


def download(
    symbol: str,
    from_msc: int,
    to_msc: int,
    *,
    out: Path,
    collector: str,
    token: str,
    timeframe: str | None = None,
    chunk_ms: int | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> Result:
    """Downloads the range chunk by chunk (resuming from ``<out>.parts/``) into one Parquet file."""
    period_s = 0
    if timeframe is not None:
        if timeframe.upper() not in TIMEFRAMES:
            raise HistoryError(f"--bars {timeframe!r}: one of {', '.join(TIMEFRAMES)}")
        period_s = TIMEFRAMES[timeframe.upper()]
    bars = period_s > 0
    what = f"bars-{timeframe.upper()}" if timeframe else "ticks"
    plan = chunks(from_msc, to_msc, chunk_ms or (DEFAULT_BAR_CHUNK_MS if bars else DEFAULT_TICK_CHUNK_MS))
    parts_dir = out.parent / (out.name + ".parts")
    parts_dir.mkdir(parents=True, exist_ok=True)
    result = Result(path=out, chunks=len(plan))
    unit = "bars" if bars else "ticks"
    with with_token(grpc.insecure_channel(collector), token) as channel:
        stub = collector_pb2_grpc.MarketDataServiceStub(channel)  # type: ignore[no-untyped-call]
        point = _point(stub, symbol) if bars else None
        for chunk in plan:
            part = parts_dir / chunk.part_name(what)
            if part.exists():
                n = len(pd.read_parquet(part, columns=["time"]))
                result.resumed += 1
                result.rows += n
                progress(f"{chunk}: {n} {unit}, already downloaded (resumed)")
                if n == 0:
                    result.empty.append(str(chunk))
                continue
            df, last = fetch_chunk(stub, symbol, chunk, period_s, point)
            result.terminal = last.terminal or result.terminal
            tmp = part.with_suffix(".tmp")
            df.to_parquet(tmp, index=False)
            tmp.replace(part)  # a part file exists only once its chunk is complete
            result.downloaded += 1
            result.rows += len(df)
            if len(df) == 0:
                result.empty.append(f"{chunk} ({last.message or 'no rows'})")
                progress(f"{chunk}: no {unit} ({last.message or 'the terminal has none'})")
            else:
                progress(f"{chunk}: {len(df)} {unit} (total {result.rows})")
    if result.rows == 0:
        raise HistoryError(
            f"the range {_ts(from_msc)} .. {_ts(to_msc)} UTC is empty: the terminal has no {unit} of "
            f"{symbol} in any of its {len(plan)} chunks (first: {result.empty[0] if result.empty else '?'}); "
            f"is the symbol right, and does the terminal's history reach back that far?"
        )
    frames = [pd.read_parquet(parts_dir / c.part_name(what)) for c in plan]
    df = pd.concat([f for f in frames if len(f)], ignore_index=True).sort_values("time", kind="stable")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(out)
    shutil.rmtree(parts_dir)
    return result
