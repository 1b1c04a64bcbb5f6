"""Market data import: every supported source normalised to one bar schema, validated row by row.

The one reader of market-data files in Kairos: training (``load_bars``), replay (``read_market_data``),
the wire check, tests and benchmarks (``read_ticks``) all read files through this module.

Sources: MT5 tick and bar exports (tab-separated ``<DATE> <TIME> ...``, UTF-8 or UTF-16), the CSV
formats of ``../shared/data`` (bid/ask bar files, ``YYYYMMDD HHMMSSmmm,bid,ask,vol`` tick files), CSV
files with a header naming their columns (the time column by one of ``TIME_COLUMNS``, or chosen with
``time_column``; its format ISO 8601 unless ``time_format`` says otherwise), Parquet holding either
schema, and ``sample:eurusd-h1`` (the real EURUSD H1 bars shipped by the ``backtesting`` package,
read in place). Any of the files may be compressed (gzip ``.gz`` or zstd ``.zst``, recognised by their
content). Ticks become bars by the ``kairos.features`` bar rule.

A row that cannot be trusted stops the import with a ``DataError`` naming file, line and field.
Duplicate bars and gaps are reported in the ``ImportReport``; duplicates are an error unless the user
chose a policy (``dedupe``), gaps are kept: nothing is fixed silently.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import io
import re
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any

SAMPLE_EURUSD_H1 = "sample:eurusd-h1"
# The sample has no spread column. 1.0 pip is a typical retail EURUSD spread of 2017-2018; the model
# card states it whenever it is used.
SAMPLE_EURUSD_SPREAD = 0.0001
BAR_SCHEMA = ("time", "open", "high", "low", "close", "spread", "tick_volume")
TIMEFRAMES = {
    "M1": 60,
    "M2": 120,
    "M5": 300,
    "M10": 600,
    "M15": 900,
    "M30": 1800,
    "H1": 3600,
    "H4": 14400,
    "D1": 86400,
}

Dedupe = Literal["error", "keep-first", "keep-last"]
# Names a CSV or Parquet time column is recognised by (any case); an unnamed first column (a pandas
# index written to CSV) counts too. Another name needs time_column (--time-column).
TIME_COLUMNS = ("time", "timestamp", "datetime", "date_time", "date")
# The columns of read_ticks: UTC time, the same in epoch milliseconds, quote prices and volume.
TICK_COLUMNS = ("time", "time_msc", "bid", "ask", "volume")
MAX_SKIPPED = 10_000  # read_market_data(skip_bad_rows=True) gives up beyond this many bad rows
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_PARQUET_MAGIC = b"PAR1"
_PARQUET_SUFFIXES = (".parquet", ".pq")
_COMPRESSED_SUFFIXES = (".gz", ".zst", ".zstd")


class DataError(ValueError):
    """A bad input row or file; the message names the file, the line (1-based) and the field."""

    def __init__(self, file: str, line: int | None, fieldname: str | None, message: str) -> None:
        self.file, self.line, self.field = file, line, fieldname
        where = (
            file + (f":{line}" if line is not None else "") + (f": field '{fieldname}'" if fieldname else "")
        )
        super().__init__(f"{where}: {message}")


@dataclass
class Gap:
    start: str
    end: str
    missing_bars: int


@dataclass
class ImportReport:
    """What the import found: shape, time span, duplicates and gaps, how spread was obtained."""

    source: str
    kind: str
    rows_in: int
    bars: int
    timeframe_s: int
    first: str
    last: str
    spread_source: str
    point: float
    duplicates: int = 0
    duplicate_lines: list[int] = field(default_factory=list)
    duplicate_policy: str = "error"
    crossed_spread_bars: int = 0
    crossed_spread_lines: list[int] = field(default_factory=list)
    gaps: int = 0
    missing_bars: int = 0
    largest_gaps: list[Gap] = field(default_factory=list)
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def timeframe_seconds(tf: str | int) -> int:
    """``M1``/``H1``/... or a number of seconds."""
    if isinstance(tf, int):
        return tf
    key = tf.strip().upper()
    if key in TIMEFRAMES:
        return TIMEFRAMES[key]
    if key.isdigit() and int(key) > 0:
        return int(key)
    raise ValueError(f"unknown timeframe {tf!r}: use one of {', '.join(TIMEFRAMES)} or seconds")


def timeframe_name(seconds: int) -> str:
    for name, s in TIMEFRAMES.items():
        if s == seconds:
            return name
    return f"{seconds}s"


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _TimeSpec:
    """Where a file's time is and how it is written (None: found by name / the format's default)."""

    column: str | None = None
    format: str | None = None


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when they are gzip or zstd (recognised by content, not name)."""
    raw = path.read_bytes()
    try:
        if raw.startswith(_GZIP_MAGIC):
            return gzip.decompress(raw)
        if raw.startswith(_ZSTD_MAGIC):
            import pyarrow as pa  # type: ignore[import-untyped]  # a dependency already; its zstd codec saves one more

            with pa.input_stream(pa.py_buffer(raw), compression="zstd") as f:
                return bytes(f.read())
    except (OSError, EOFError, ValueError, zlib.error) as e:  # pyarrow's errors are OSError/ValueError
        raise DataError(str(path), None, None, f"cannot decompress ({e})") from e
    return raw


def _decode(raw: bytes, file: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8")
    # MT5 writes UTF-16LE, sometimes without a BOM: every other byte of ASCII text is then zero.
    if len(raw) >= 4 and raw[1] == 0 and raw[3] == 0:
        return raw.decode("utf-16-le")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(file, None, None, f"neither UTF-8 nor UTF-16 text ({e})") from e


def _bare_suffix(path: Path) -> str:
    """The suffix that names the format: ``.csv`` of ``x.csv.gz``."""
    suffixes = [x.lower() for x in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSED_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _split_rows(text: str, sep: str) -> list[list[str]]:
    return [line.split(sep) for line in text.splitlines()]


def _frame(rows: list[list[str]], names: list[str], file: str, first_line: int) -> pd.DataFrame:
    """Rows of strings as a DataFrame; a row with the wrong number of fields is an error."""
    width = len(names)
    for i, r in enumerate(rows):
        if len(r) != width and not (len(r) == 1 and r[0].strip() == ""):
            raise DataError(
                file, first_line + i, None, f"expected {width} fields ({', '.join(names)}), got {len(r)}"
            )
    keep = [r for r in rows if not (len(r) == 1 and r[0].strip() == "")]
    lines = [first_line + i for i, r in enumerate(rows) if not (len(r) == 1 and r[0].strip() == "")]
    df = pd.DataFrame(keep, columns=names, dtype=str)
    df.index = pd.Index(lines, name="line")
    return df


def _numbers(df: pd.DataFrame, col: str, file: str, *, required: bool = True) -> pd.Series:
    s = df[col].str.strip()
    num = pd.to_numeric(s, errors="coerce")
    bad = num.isna() & ((s != "") | required)
    if bad.any():
        line = int(bad.idxmax()) if bad.dtype == bool else int(bad[bad].index[0])
        raise DataError(
            file, line, col, f"{s.loc[line]!r} is not a number ({int(bad.sum())} bad rows in all)"
        )
    return num.astype("float64")


def _times(text: pd.Series, fmt: str, file: str, fieldname: str, source_tz: str) -> pd.Series:
    try:
        t = pd.to_datetime(text.str.strip(), format=fmt, errors="coerce")
    except ValueError as e:  # a format pandas cannot use at all
        raise DataError(file, None, fieldname, f"time format {fmt!r} is not usable: {e}") from e
    bad = t.isna()
    if bad.any():
        line = int(bad[bad].index[0])
        raise DataError(
            file,
            line,
            fieldname,
            f"{text.loc[line]!r} is not a time ({fmt}; --time-format sets another) "
            f"({int(bad.sum())} bad rows in all)",
        )
    if getattr(t.dt, "tz", None) is None:
        t = t.dt.tz_localize(source_tz)
    return t.dt.tz_convert("UTC").astype("datetime64[ms, UTC]")


def _mt5_time_format(sample: str) -> str:
    if re.fullmatch(r"\d\d:\d\d:\d\d\.\d+", sample):
        return "%Y.%m.%d %H:%M:%S.%f"
    if re.fullmatch(r"\d\d:\d\d:\d\d", sample):
        return "%Y.%m.%d %H:%M:%S"
    return "%Y.%m.%d %H:%M"


def _point_from_text(cols: list[pd.Series]) -> float:
    """Price point from the most decimals printed (5-digit FX quotes -> 1e-5)."""
    digits = 0
    for c in cols:
        frac = c.str.strip().str.rstrip("0").str.extract(r"\.(\d+)$")[0].dropna()
        if len(frac):
            digits = max(digits, int(frac.str.len().max()))
    return float(10.0**-digits) if digits else 1.0


def _check_order(time: pd.Series, file: str) -> None:
    back = time.diff() < pd.Timedelta(0)
    if back.any():
        line = int(back[back].index[0])
        raise DataError(
            file, line, "time", f"time goes backwards ({time.loc[line]} after an earlier row's later time)"
        )


@dataclass
class MarketData:
    """A file as it is: ticks stay ticks, bars keep their timeframe (``read_market_data``)."""

    kind: Literal["bars", "ticks"]
    frame: pd.DataFrame  # bars: BAR_SCHEMA (spread may be NaN); ticks: time, bid, ask, volume; index = line
    point: float
    spread_source: str
    file: str = ""  # the file read (the sample's path for sample:eurusd-h1)
    rejected: list[str] = field(default_factory=list)  # bad rows skipped (skip_bad_rows), as DataError text


def _parse_mt5(file: str, text: str, source_tz: str, spec: _TimeSpec) -> MarketData:
    rows = _split_rows(text, "\t")
    header = [h.strip().strip("<>").lower() for h in rows[0]]
    df = _frame(rows[1:], header, file, 2)
    if "date" not in header:
        raise DataError(file, 1, None, "MT5 export header must start with <DATE>")
    if "time" in header:
        stamp = df["date"].str.strip() + " " + df["time"].str.strip()
        fmt = _mt5_time_format(df["time"].iloc[0].strip() if len(df) else "00:00")
    else:  # D1 and longer bars have no <TIME> column
        stamp, fmt = df["date"].str.strip(), "%Y.%m.%d"
    fmt = spec.format or fmt
    if not len(df):
        raise DataError(file, None, None, "no data rows")
    time = _times(stamp, fmt, file, "time" if "time" in header else "date", source_tz)
    if {"bid", "ask"} <= set(header):
        # MT5 leaves <BID> or <ASK> empty when only the other side changed (see <FLAGS>): carry the
        # last known value forward; ticks before both sides are known cannot be priced and are skipped.
        bid = _numbers(df, "bid", file, required=False).ffill()
        ask = _numbers(df, "ask", file, required=False).ffill()
        vol = _numbers(df, "volume", file, required=False).fillna(0.0) if "volume" in header else 0.0
        out = pd.DataFrame({"time": time, "bid": bid, "ask": ask, "volume": vol}).dropna(
            subset=["bid", "ask"]
        )
        return MarketData("ticks", out, _point_from_text([df["bid"], df["ask"]]), "ask - bid of the ticks")
    need = {"open", "high", "low", "close"}
    if not need <= set(header):
        raise DataError(
            file, 1, None, f"MT5 export header has neither <BID>/<ASK> nor {sorted(need)}: {rows[0]}"
        )
    point = _point_from_text([df["open"], df["close"]])
    out = pd.DataFrame({"time": time})
    for c in ("open", "high", "low", "close"):
        out[c] = _numbers(df, c, file)
    out["tick_volume"] = _numbers(df, "tickvol", file) if "tickvol" in header else 0.0
    if "spread" in header:
        out["spread"] = _numbers(df, "spread", file) * point
        src = f"MT5 <SPREAD> column in points x point {point:g}"
    else:
        out["spread"] = np.nan
        src = "none in file"
    return MarketData("bars", out, point, src)


_TICK_CSV = re.compile(r"^\d{8} \d{9},")


def _headerless(first: str) -> bool:
    """A CSV without a header: the shared tick format, or a first line whose second field is a number."""
    if _TICK_CSV.match(first):
        return True
    fields = first.split(",")
    try:
        float(fields[1])
    except (IndexError, ValueError):
        return False
    return True


def _has_header(text: str) -> bool:
    return text.startswith("<DATE>") or not _headerless(text.split("\n", 1)[0])


def _time_column(names: list[str], file: str, wanted: str | None, line: int | None) -> int:
    """Index of the time column among ``names``: the one asked for, else the first known name."""
    lower = [n.strip().lower() for n in names]
    if wanted is not None:
        if wanted.strip().lower() in lower:
            return lower.index(wanted.strip().lower())
        raise DataError(file, line, None, f"no column {wanted!r} (--time-column); the columns found: {names}")
    for name in TIME_COLUMNS:
        if name in lower:
            return lower.index(name)
    if lower and lower[0] in ("", "unnamed: 0"):  # a pandas index written to CSV
        return 0
    raise DataError(
        file,
        line,
        None,
        f"no time column: the columns found are {names}; a time column is named one of "
        f"{list(TIME_COLUMNS)} (any case) or is an unnamed first column; "
        "name yours with --time-column NAME",
    )


def _parse_csv(file: str, text: str, source_tz: str, spec: _TimeSpec) -> MarketData:
    first = text.split("\n", 1)[0]
    if _headerless(first):
        if spec.column is not None:
            raise DataError(file, 1, None, "--time-column names a header column, but this CSV has no header")
        rows = _split_rows(text, ",")
        df = _frame(rows, ["time", "bid", "ask", "volume"], file, 1)
        fmt = spec.format or ("%Y%m%d %H%M%S%f" if _TICK_CSV.match(first) else "ISO8601")
        time = _times(df["time"], fmt, file, "time", source_tz)
        out = pd.DataFrame(
            {
                "time": time,
                "bid": _numbers(df, "bid", file),
                "ask": _numbers(df, "ask", file),
                "volume": _numbers(df, "volume", file),
            }
        )
        return MarketData("ticks", out, _point_from_text([df["bid"], df["ask"]]), "ask - bid of the ticks")
    rows = _split_rows(text, ",")
    header = [h.strip().lower() for h in rows[0]]
    header[_time_column([h.strip() for h in rows[0]], file, spec.column, 1)] = "time"
    df = _frame(rows[1:], header, file, 2)
    if not len(df):
        raise DataError(file, None, None, "no data rows")
    time = _times(df["time"], spec.format or "ISO8601", file, "time", source_tz)
    if {"bid", "ask"} <= set(header):
        vol = _numbers(df, "volume", file) if "volume" in header else 0.0
        out = pd.DataFrame({"time": time, "bid": _numbers(df, "bid", file), "ask": _numbers(df, "ask", file)})
        out["volume"] = vol
        return MarketData("ticks", out, _point_from_text([df["bid"], df["ask"]]), "ask - bid of the ticks")
    need = ["open", "high", "low", "close"]
    missing = [c for c in need if c not in header]
    if missing:
        raise DataError(file, 1, None, f"header lacks {missing}; a bar CSV needs time,open,high,low,close")
    out = pd.DataFrame({"time": time})
    for c in need:
        out[c] = _numbers(df, c, file)
    tv = next((c for c in ("tick_volume", "tickvol", "volume") if c in header), None)
    out["tick_volume"] = _numbers(df, tv, file) if tv else 0.0
    if "spread" in header:
        out["spread"] = _numbers(df, "spread", file)
        src = "spread column of the file (price units)"
    else:
        out["spread"] = np.nan
        src = "none in file"
    return MarketData("bars", out, _point_from_text([df["open"], df["close"]]), src)


def _parse_parquet(file: str, raw: bytes, source_tz: str, spec: _TimeSpec) -> MarketData:
    try:
        df = pd.read_parquet(io.BytesIO(raw))
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(file, None, None, f"not a readable Parquet file ({e})") from e
    if df.index.name is not None or isinstance(df.index, pd.MultiIndex):
        df = df.reset_index()  # a time index written by pandas
    names = [str(c) for c in df.columns]
    df.columns = [n.strip().lower() for n in names]
    df = df.rename(columns={df.columns[_time_column(names, file, spec.column, None)]: "time"})
    df.index = pd.RangeIndex(1, len(df) + 1, name="line")  # row numbers stand in for lines
    t = df["time"]
    if pd.api.types.is_integer_dtype(t.dtype):  # epoch milliseconds
        t = pd.to_datetime(t, unit="ms", utc=True)
    elif pd.api.types.is_string_dtype(t.dtype):  # times as text: read like a CSV's
        t = _times(t.astype(str), spec.format or "ISO8601", file, "time", source_tz)
    elif not pd.api.types.is_datetime64_any_dtype(t.dtype):
        raise DataError(file, None, "time", f"the time column holds {t.dtype}, not times")
    elif getattr(t.dt, "tz", None) is None:
        t = t.dt.tz_localize("UTC")
    df["time"] = t.dt.tz_convert("UTC").astype("datetime64[ms, UTC]")
    if {"bid", "ask"} <= set(df.columns):
        if "volume" not in df.columns:
            df["volume"] = 0.0
        return MarketData("ticks", df[["time", "bid", "ask", "volume"]], 1e-5, "ask - bid of the ticks")
    missing = [c for c in ("open", "high", "low", "close") if c not in df.columns]
    if missing:
        raise DataError(file, None, missing[0], "Parquet bars need time, open, high, low, close")
    if "tick_volume" not in df.columns:
        df["tick_volume"] = 0.0
    src = "spread column of the file (price units)" if "spread" in df.columns else "none in file"
    if "spread" not in df.columns:
        df["spread"] = np.nan
    return MarketData("bars", df[list(BAR_SCHEMA)].astype({c: "float64" for c in BAR_SCHEMA[1:]}), 1e-5, src)


def sample_path() -> Path:
    """The backtesting package's EURUSD.csv, located through importlib.metadata (read in place)."""
    try:
        dist = importlib.metadata.distribution("backtesting")
    except importlib.metadata.PackageNotFoundError as e:
        raise DataError(
            SAMPLE_EURUSD_H1, None, None, "needs the 'backtesting' package (training extra)"
        ) from e
    for f in dist.files or []:
        if f.name == "EURUSD.csv":
            return Path(str(dist.locate_file(f)))
    raise DataError(SAMPLE_EURUSD_H1, None, None, "backtesting package ships no EURUSD.csv")


RECORDED_PREFIX = "recorded:"


def _recorded(source: str) -> bytes:
    """``recorded:[ROOT:]SYMBOL:TIMEFRAME``: the stack's own recording (kairos.recording, ADR 0084) as
    the bytes of one Parquet file; ROOT defaults to $KAIROS_RECORD_DIR or <project>/.kairos/recorded.
    TIMEFRAME ``tick`` reads the recorded ticks, else the recorded bars of that timeframe (M1, H1...)."""
    from kairos.recording import store

    parts = source.removeprefix(RECORDED_PREFIX).rsplit(":", 2)
    if len(parts) < 2 or not all(parts[-2:]):
        raise DataError(source, None, None, "want recorded:SYMBOL:TIMEFRAME (e.g. recorded:EURUSD:M1)")
    root = Path(parts[0]) if len(parts) == 3 else store.default_root()
    symbol, tf = parts[-2], parts[-1]
    if tf.lower() == store.TICK:
        t = store.read_ticks(root, symbol)
        frame = pd.DataFrame({"time": t["time_msc"], "bid": t["bid"], "ask": t["ask"], "volume": t["volume"]})
        frame = frame[(frame["bid"] > 0) & (frame["ask"] > 0)]  # one-sided updates carry a 0 side
    else:
        frame = store.read_bars(root, symbol, tf.upper())
    if frame.empty:
        raise DataError(source, None, None, f"nothing recorded for {symbol} {tf} under {root}")
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _open(source: str) -> tuple[str, str | bytes]:
    """The file's name and its content: text (CSV, MT5 export) or the bytes of a Parquet file."""
    if source.startswith(RECORDED_PREFIX):
        return source, _recorded(source)
    if source == SAMPLE_EURUSD_H1:
        path = sample_path()
        return str(path), _decode(path.read_bytes(), str(path))
    path = Path(source)
    if not path.is_file():
        raise DataError(source, None, None, "no such file")
    raw = _read_bytes(path)
    if raw.startswith(_PARQUET_MAGIC) or _bare_suffix(path) in _PARQUET_SUFFIXES:
        return source, raw
    return source, _decode(raw, source)


def _parse_content(file: str, content: str | bytes, source_tz: str, spec: _TimeSpec) -> MarketData:
    if isinstance(content, bytes):
        parsed = _parse_parquet(file, content, source_tz, spec)
    else:
        text = content.lstrip("\ufeff")
        if not text.strip():
            raise DataError(file, None, None, "empty file")
        if text.startswith("<DATE>"):
            parsed = _parse_mt5(file, text, source_tz, spec)
        else:
            parsed = _parse_csv(file, text, source_tz, spec)
    parsed.file = file
    return parsed


def _parse(source: str, source_tz: str, spec: _TimeSpec) -> tuple[MarketData, str]:
    if source == SAMPLE_EURUSD_H1:
        spec, source_tz = _TimeSpec(), "UTC"  # the sample's own format
    file, content = _open(source)
    return _parse_content(file, content, source_tz, spec), file


def _validated(data: MarketData) -> MarketData:
    if data.kind == "ticks":
        _validate_ticks(data.frame, data.file)
    else:
        _validate_bars(data.frame, data.file)
    return data


def read_market_data(
    source: str,
    source_tz: str = "UTC",
    *,
    time_column: str | None = None,
    time_format: str | None = None,
    skip_bad_rows: bool = False,
) -> MarketData:
    """Reads ``source`` as it is (ticks stay ticks, bars keep their timeframe), every row validated.

    For replay (``kairos replay``): the same formats and the same errors as ``load_bars``, without
    resampling. The frame's index is the row's line number in the file. With ``skip_bad_rows`` a bad
    row of a text file is left out and reported in ``rejected`` (file, line, field, reason) and the
    rest is read; a bad header, a Parquet file or more than MAX_SKIPPED bad rows still raise.
    """
    spec = _TimeSpec(time_column, time_format)
    if source == SAMPLE_EURUSD_H1:
        spec, source_tz = _TimeSpec(), "UTC"
    file, content = _open(source)
    try:
        return _validated(_parse_content(file, content, source_tz, spec))
    except DataError as exc:
        if not skip_bad_rows or isinstance(content, bytes) or not _skippable(exc, content):
            raise
        first = exc
    assert isinstance(content, str)
    lines = content.splitlines(keepends=True)
    bad, rejected = {first.line}, [str(first)]
    while len(bad) <= MAX_SKIPPED:
        # A skipped line becomes empty, so later line numbers still match the original file.
        text = "".join("\n" if i + 1 in bad else ln for i, ln in enumerate(lines))
        try:
            data = _validated(_parse_content(file, text, source_tz, spec))
        except DataError as exc:
            if exc.line in bad or not _skippable(exc, content):
                raise
            bad.add(exc.line)
            rejected.append(str(exc))
            continue
        data.rejected = rejected
        return data
    raise DataError(file, None, None, f"more than {MAX_SKIPPED} bad rows; giving up")


def _skippable(exc: DataError, text: str) -> bool:
    """A data row's error (not the header's, not the whole file's) can be skipped."""
    return exc.line is not None and not (exc.line == 1 and _has_header(text.lstrip("\ufeff")))


def read_ticks(
    source: str,
    source_tz: str = "UTC",
    *,
    time_column: str | None = None,
    time_format: str | None = None,
) -> pd.DataFrame:
    """Reads a tick file (any supported format, compressed or not) into validated quote ticks.

    Columns ``TICK_COLUMNS``: ``time`` (datetime64[ms, UTC]), ``time_msc`` (int64 epoch
    milliseconds), ``bid``, ``ask``, ``volume`` (float64); the index is the row's line in the file. A
    bar file is a DataError (``load_bars`` reads bars).
    """
    data = read_market_data(source, source_tz, time_column=time_column, time_format=time_format)
    if data.kind != "ticks":
        raise DataError(data.file, None, None, "holds bars, not ticks (no bid and ask columns)")
    f = data.frame
    time_msc = (f["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    out = pd.DataFrame(
        {
            "time": f["time"],
            "time_msc": time_msc.astype("int64"),
            "bid": f["bid"].astype("float64"),
            "ask": f["ask"].astype("float64"),
            "volume": pd.Series(f["volume"], index=f.index).astype("float64"),
        },
        index=f.index,
    )
    return out


# ------------------------------------------------------------------------------------------- validation


def _validate_bars(df: pd.DataFrame, file: str) -> None:
    checks: list[tuple[str, pd.Series, str]] = [
        ("open", df["open"] <= 0, "price must be positive"),
        ("close", df["close"] <= 0, "price must be positive"),
        ("low", df["low"] <= 0, "price must be positive"),
        ("high", df["high"] < df[["open", "close", "low"]].max(axis=1), "high is below open, close or low"),
        ("low", df["low"] > df[["open", "close"]].min(axis=1), "low is above open or close"),
        ("spread", df["spread"] < 0, "spread must not be negative"),
        ("tick_volume", df["tick_volume"] < 0, "tick volume must not be negative"),
    ]
    first: tuple[int, str, str] | None = None
    for col, bad, msg in checks:
        if bad.any():
            line = int(bad[bad].index[0])
            if first is None or line < first[0]:
                first = (line, col, msg)
    if first:
        line, col, msg = first
        row = df.loc[line]
        raise DataError(
            file, line, col, f"{msg} (open={row.open} high={row.high} low={row.low} close={row.close})"
        )
    _check_order(df["time"], file)


def _validate_ticks(df: pd.DataFrame, file: str) -> None:
    for col in ("bid", "ask"):
        bad = ~np.isfinite(df[col]) | (df[col] <= 0)
        if bad.any():
            line = int(bad[bad].index[0])
            raise DataError(file, line, col, f"price must be positive and finite, got {df.loc[line, col]}")
    crossed = df["ask"] < df["bid"]
    if crossed.any():
        line = int(crossed[crossed].index[0])
        raise DataError(file, line, "ask", f"ask {df.loc[line, 'ask']} is below bid {df.loc[line, 'bid']}")
    _check_order(df["time"], file)


# ------------------------------------------------------------------------------------------ aggregation


def ticks_to_bars(ticks: pd.DataFrame, timeframe_s: int) -> pd.DataFrame:
    """Vectorised form of ``kairos.features.BarBuilder`` (same rule; a test holds them equal)."""
    p_ms = timeframe_s * 1000
    t_ms = (ticks["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    key = (t_ms // p_ms) * p_ms
    g = pd.DataFrame(
        {
            "key": key.to_numpy(),
            "bid": ticks["bid"].to_numpy(),
            "spread": (ticks["ask"] - ticks["bid"]).to_numpy(),
        }
    ).groupby("key", sort=True)
    out = pd.DataFrame(
        {
            "open": g["bid"].first(),
            "high": g["bid"].max(),
            "low": g["bid"].min(),
            "close": g["bid"].last(),
            "spread": g["spread"].mean(),
            "tick_volume": g["bid"].size().astype("float64"),
        }
    )
    out.insert(
        0, "time", pd.to_datetime(out.index.to_numpy(), unit="ms", utc=True).astype("datetime64[ms, UTC]")
    )
    return out.reset_index(drop=True)


def resample_bars(bars: pd.DataFrame, timeframe_s: int) -> pd.DataFrame:
    """Bars of a longer period from shorter ones (floor open time, OHLC, volume summed, spread averaged)."""
    p_ms = timeframe_s * 1000
    t_ms = (bars["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    g = bars.assign(key=(t_ms // p_ms) * p_ms).groupby("key", sort=True)
    out = pd.DataFrame(
        {
            "open": g["open"].first(),
            "high": g["high"].max(),
            "low": g["low"].min(),
            "close": g["close"].last(),
            "spread": g["spread"].mean(),
            "tick_volume": g["tick_volume"].sum(),
        }
    )
    out.insert(
        0, "time", pd.to_datetime(out.index.to_numpy(), unit="ms", utc=True).astype("datetime64[ms, UTC]")
    )
    return out.reset_index(drop=True)


def infer_timeframe(time: pd.Series) -> int:
    d = time.diff().dropna().dt.total_seconds()
    d = d[d > 0]
    if not len(d):
        raise ValueError("cannot infer a timeframe from fewer than two distinct bar times")
    return int(d.mode().iloc[0])


def dataset_hash(bars: pd.DataFrame) -> str:
    """sha256 over the normalised bars (time in ms, then each column's float64 bytes)."""
    h = hashlib.sha256()
    t_ms = ((bars["time"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy(np.int64)
    h.update(t_ms.tobytes())
    for c in BAR_SCHEMA[1:]:
        h.update(np.ascontiguousarray(bars[c].to_numpy(np.float64)).tobytes())
    return "sha256:" + h.hexdigest()


def _pair_ask_file(path: Path) -> Path | None:
    """``...-bid-...csv`` beside ``...-ask-...csv`` (the shared data layout)."""
    name = path.name
    if "bid" not in name:
        return None
    other = path.with_name(name.replace("bid", "ask"))
    return other if other.is_file() else None


def load_bars(
    source: str,
    *,
    timeframe: str | int | None = None,
    ask_source: str | None = None,
    spread: float | None = None,
    source_tz: str = "UTC",
    dedupe: Dedupe = "error",
    time_column: str | None = None,
    time_format: str | None = None,
) -> tuple[pd.DataFrame, ImportReport]:
    """Import ``source`` as validated bars (BAR_SCHEMA, UTC) plus a report of what was found.

    ``ask_source`` is a bar file on the ask with the same times (spread = mean of ask - bid over the
    four prices; crossed bars are clamped to 0 and reported); a ``*bid*`` file with an ``*ask*`` twin
    beside it is paired automatically. ``spread`` (price units) fills bars that carry no spread, and is
    recorded as such. ``time_column`` and ``time_format`` say where a CSV's time is and how it is
    written, when the file's own header does not (they apply to ``ask_source`` too).
    """
    spec = _TimeSpec(time_column, time_format)
    parsed, file = _parse(source, source_tz, spec)
    rows_in = len(parsed.frame)
    if not rows_in:
        raise DataError(file, None, None, "no data rows")
    spread_source = parsed.spread_source
    clamped, clamped_lines = 0, []
    if parsed.kind == "ticks":
        _validate_ticks(parsed.frame, file)
        tf = timeframe_seconds(timeframe) if timeframe is not None else 60
        bars = ticks_to_bars(parsed.frame, tf)
    else:
        bars = parsed.frame
        if ask_source is None and source != SAMPLE_EURUSD_H1 and bars["spread"].isna().all():
            twin = _pair_ask_file(Path(source))
            ask_source = str(twin) if twin else None
        if ask_source is not None:
            ask, ask_file = _parse(ask_source, source_tz, spec)
            if ask.kind != "bars" or len(ask.frame) != len(bars):
                raise DataError(
                    ask_file, None, None, f"ask bars must match the {len(bars)} bid bars row for row"
                )
            differ = ask.frame["time"].to_numpy() != bars["time"].to_numpy()
            if differ.any():
                i = int(np.argmax(differ))
                raise DataError(
                    ask_file, int(ask.frame.index[i]), "time", "ask bar time differs from the bid bar's"
                )
            a = ask.frame.set_index(bars.index)
            bars = bars.copy()
            raw = sum(a[c] - bars[c] for c in ("open", "high", "low", "close")) / 4
            # Bid and ask bars are separate snapshots: a few real bars come out crossed (ask < bid).
            # They are clamped to a zero spread and reported, never dropped.
            crossed = raw < 0
            clamped = int(crossed.sum())
            clamped_lines = [int(x) for x in bars.index[crossed][:10]]
            bars["spread"] = raw.clip(lower=0.0)
            spread_source = f"ask bars {ask_file}: mean of ask - bid over open, high, low, close"
        if bars["spread"].isna().any():
            fill = (
                spread
                if spread is not None
                else (SAMPLE_EURUSD_SPREAD if source == SAMPLE_EURUSD_H1 else None)
            )
            if fill is None:
                line = int(bars["spread"].isna().idxmax())
                raise DataError(
                    file,
                    line,
                    "spread",
                    "no spread in the data: pass --ask-data FILE or --spread PRICE_UNITS",
                )
            bars = bars.assign(spread=bars["spread"].fillna(fill))
            spread_source = f"constant {fill:g} (price units; the data has no spread)"
        _validate_bars(bars, file)
        dup = bars["time"].duplicated(keep=False)
        n_dup = int(bars["time"].duplicated().sum())
        dup_lines = [int(x) for x in bars.index[dup][:10]]
        if n_dup:
            if dedupe == "error":
                raise DataError(
                    file,
                    dup_lines[1] if len(dup_lines) > 1 else dup_lines[0],
                    "time",
                    f"{n_dup} duplicate bar time(s), first at lines {dup_lines[:2]}; "
                    "choose --dedupe keep-first or keep-last to import anyway",
                )
            bars = bars[~bars["time"].duplicated(keep="first" if dedupe == "keep-first" else "last")]
        native = infer_timeframe(bars["time"]) if len(bars) > 1 else 60
        tf = timeframe_seconds(timeframe) if timeframe is not None else native
        if tf < native or tf % native:
            raise DataError(
                file, None, None, f"cannot make {timeframe_name(tf)} bars from {timeframe_name(native)} bars"
            )
        if tf != native:
            bars = resample_bars(bars, tf)
    bars = bars.reset_index(drop=True)[list(BAR_SCHEMA)]
    bars["tick_volume"] = bars["tick_volume"].astype("float64")
    gaps = bars["time"].diff().dt.total_seconds().fillna(tf) / tf
    big = gaps[gaps > 1]
    largest = big.sort_values(ascending=False).head(5)
    report = ImportReport(
        source=source,
        kind=parsed.kind,
        rows_in=rows_in,
        bars=len(bars),
        timeframe_s=tf,
        first=str(bars["time"].iloc[0]),
        last=str(bars["time"].iloc[-1]),
        spread_source=spread_source,
        point=parsed.point,
        duplicates=0 if parsed.kind == "ticks" else n_dup,
        duplicate_lines=[] if parsed.kind == "ticks" else dup_lines,
        duplicate_policy=dedupe,
        crossed_spread_bars=clamped,
        crossed_spread_lines=clamped_lines,
        gaps=len(big),
        missing_bars=int((big - 1).round().sum()),
        largest_gaps=[
            Gap(str(bars["time"].iloc[i - 1]), str(bars["time"].iloc[i]), round(v) - 1)
            for i, v in largest.items()
        ],
        sha256=dataset_hash(bars),
    )
    return bars, report
