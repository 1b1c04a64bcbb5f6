"""The recorded market-data dataset: layout, writing, reading and retention (ADR 0084).

One Hive-partitioned Parquet tree, ``<root>/symbol=<SYM>/timeframe=<TF>/date=<YYYY-MM-DD>/part-*.parquet``:

- ``timeframe=tick``: every tick the collector published (``kairos.md.<SYM>``), columns ``time_msc``
  (int64 epoch ms), ``bid``, ``ask``, ``last``, ``volume`` (float64), ``flags`` (uint32), ``sequence``
  (uint64); optional columns the batch did not carry are 0.
- ``timeframe=M1`` (M5, H1, ...): every closed bar (``kairos.bar.<TF>.<SYM>``), columns ``time``
  (int64, the bar's open time in epoch ms), ``open high low close`` (bid), ``spread`` (the bar's mean
  ask - bid, price units), ``tick_volume``, ``real_volume`` (float64), ``spread_points`` (int32):
  the bar columns ``kairos.training.data`` reads from any Parquet file.

``date`` is the UTC day of the tick time / the bar open time. A part file is written to a temporary
name and renamed, so a reader never sees half a file. Delivery is at least once (a JetStream
redelivery after a crash): readers drop exact duplicates (``read_bars``, ``read_ticks``).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

TICK = "tick"
TICK_SCHEMA = pa.schema(
    [
        ("time_msc", pa.int64()),
        ("bid", pa.float64()),
        ("ask", pa.float64()),
        ("last", pa.float64()),
        ("volume", pa.float64()),
        ("flags", pa.uint32()),
        ("sequence", pa.uint64()),
    ]
)
BAR_SCHEMA = pa.schema(
    [
        ("time", pa.int64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("spread", pa.float64()),
        ("tick_volume", pa.float64()),
        ("real_volume", pa.float64()),
        ("spread_points", pa.int32()),
    ]
)
_DAY_MS = 86_400_000
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_root() -> Path:
    """``$KAIROS_RECORD_DIR``, else ``$KAIROS_HOME/recorded``, else ``<project>/.kairos/recorded`` (the
    project root holds .git): where `kairos up` has its recorder write."""
    env = os.environ.get("KAIROS_RECORD_DIR")
    if env:
        return Path(env)
    home = os.environ.get("KAIROS_HOME")
    if home:
        return Path(home) / "recorded"
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / ".git").exists():
            return p / ".kairos" / "recorded"
    return here / ".kairos" / "recorded"


def safe_symbol(symbol: str) -> str:
    """The symbol as a directory name (anything but letters, digits, '.', '_', '-' becomes '_')."""
    return _SAFE.sub("_", symbol)


def partition_dir(root: Path, symbol: str, timeframe: str, date: str) -> Path:
    return root / f"symbol={safe_symbol(symbol)}" / f"timeframe={timeframe}" / f"date={date}"


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms // _DAY_MS * 86_400, UTC).strftime("%Y-%m-%d")


def write_part(root: Path, symbol: str, timeframe: str, table: pa.Table, time_column: str) -> list[Path]:
    """Writes ``table`` (sorted or not) as one new part file per UTC day it spans; returns the files."""
    if table.num_rows == 0:
        return []
    t = table.column(time_column).to_numpy()
    days = t // _DAY_MS
    if len(days) > 1 and bool((days[1:] < days[:-1]).any()):
        # Out of order across days (rare: a late message): group the days, keeping arrival order.
        order = np.argsort(days, kind="stable")
        table, days = table.take(pa.array(order)), days[order]
    # One slice per day (zero-copy): the rows of a day are contiguous now.
    cuts = [0, *(np.flatnonzero(days[1:] != days[:-1]) + 1).tolist(), len(days)]
    written = []
    for lo, hi in itertools.pairwise(cuts):
        rows = table.slice(lo, hi - lo)
        d = partition_dir(root, symbol, timeframe, day_of(int(days[lo]) * _DAY_MS))
        d.mkdir(parents=True, exist_ok=True)
        first = int(rows.column(time_column)[0].as_py())
        name = f"part-{first}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = d / f".{name}.tmp"
        pq.write_table(rows, tmp, compression="zstd", compression_level=1, use_dictionary=False)
        os.replace(tmp, d / name)
        written.append(d / name)
    return written


def _files(root: Path, symbol: str, timeframe: str) -> list[Path]:
    base = root / f"symbol={safe_symbol(symbol)}" / f"timeframe={timeframe}"
    return sorted(base.glob("date=*/part-*.parquet"))


def _read(files: Iterable[Path], schema: pa.Schema) -> pd.DataFrame:
    tables = [pq.read_table(f, schema=schema) for f in files]
    if not tables:
        return schema.empty_table().to_pandas()
    return pa.concat_tables(tables).to_pandas()


def _since_files(files: list[Path], since_ms: int | None) -> list[Path]:
    if since_ms is None:
        return files
    first_day = day_of(since_ms)
    return [f for f in files if f.parent.name.removeprefix("date=") >= first_day]


def read_bars(root: Path, symbol: str, timeframe: str, since_ms: int | None = None) -> pd.DataFrame:
    """The recorded bars of ``symbol``/``timeframe`` in time order (BAR_SCHEMA columns), duplicates
    (a redelivered message) dropped, the last copy of a bar time kept; from ``since_ms`` on if given."""
    df = _read(_since_files(_files(root, symbol, timeframe), since_ms), BAR_SCHEMA)
    if since_ms is not None:
        df = df[df["time"] >= since_ms]
    df = df.drop_duplicates(subset="time", keep="last").sort_values("time", kind="stable")
    return df.reset_index(drop=True)


def read_ticks(root: Path, symbol: str, since_ms: int | None = None) -> pd.DataFrame:
    """The recorded ticks of ``symbol`` (TICK_SCHEMA columns) in arrival order within a part and part
    order by first time; exact duplicate rows (a redelivery) dropped."""
    df = _read(_since_files(_files(root, symbol, TICK), since_ms), TICK_SCHEMA)
    if since_ms is not None:
        df = df[df["time_msc"] >= since_ms]
    return df.drop_duplicates(keep="first").reset_index(drop=True)


def symbols(root: Path) -> dict[str, list[str]]:
    """{symbol directory name: [timeframes recorded]}."""
    out: dict[str, list[str]] = {}
    for s in sorted(root.glob("symbol=*")):
        out[s.name.removeprefix("symbol=")] = sorted(
            t.name.removeprefix("timeframe=") for t in s.glob("timeframe=*")
        )
    return out


def prune(root: Path, keep_days: int, now: float | None = None) -> list[Path]:
    """Retention: in each symbol/timeframe, removes the ``date=`` partitions more than ``keep_days``
    UTC days older than its newest partition (0 keeps everything): the last N days of data, live or
    replayed (a replay of 2020 is not wiped for being old). Returns the removed directories. Also
    removes temporary files of a writer that died mid-write (older than an hour before ``now``)."""
    removed: list[Path] = []
    now = time.time() if now is None else now
    for tmp in root.glob("symbol=*/timeframe=*/date=*/.*.tmp"):
        if now - tmp.stat().st_mtime > 3600:
            tmp.unlink(missing_ok=True)
    if keep_days <= 0:
        return removed
    for series in sorted(root.glob("symbol=*/timeframe=*")):
        days = sorted(d for d in series.glob("date=*") if d.is_dir())
        if not days:
            continue
        newest = datetime.strptime(days[-1].name.removeprefix("date="), "%Y-%m-%d").replace(tzinfo=UTC)
        cutoff = (newest - timedelta(days=keep_days)).strftime("%Y-%m-%d")
        for d in days:
            if d.name.removeprefix("date=") < cutoff:
                shutil.rmtree(d)
                removed.append(d)
    return removed
