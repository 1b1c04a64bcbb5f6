"""Market data import: every supported source normalised to one bar schema, validated row by row.

Sources: MT5 tick and bar exports (tab-separated ``<DATE> <TIME> ...``, UTF-8 or UTF-16), the CSV
formats of ``../shared/data`` (bid/ask bar files, ``YYYYMMDD HHMMSSmmm,bid,ask,vol`` tick files), Parquet
holding either schema, and ``sample:eurusd-h1`` (the real EURUSD H1 bars shipped by the ``backtesting``
package, read in place). Ticks become bars by the ``kairos.features`` bar rule.

A row that cannot be trusted stops the import with a ``DataError`` naming file, line and field.
Duplicate bars and gaps are reported in the ``ImportReport``; duplicates are an error unless the user
chose a policy (``dedupe``), gaps are kept: nothing is fixed silently.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
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


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
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
        raise DataError(str(path), None, None, f"neither UTF-8 nor UTF-16 text ({e})") from e


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
    t = pd.to_datetime(text.str.strip(), format=fmt, errors="coerce")
    bad = t.isna()
    if bad.any():
        line = int(bad[bad].index[0])
        raise DataError(
            file,
            line,
            fieldname,
            f"{text.loc[line]!r} is not a time ({fmt}) ({int(bad.sum())} bad rows in all)",
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
class _Parsed:
    kind: Literal["bars", "ticks"]
    frame: pd.DataFrame  # bars: BAR_SCHEMA (spread may be NaN); ticks: time, bid, ask, volume; index = line
    point: float
    spread_source: str


def _parse_mt5(path: Path, text: str, source_tz: str) -> _Parsed:
    file = str(path)
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
        return _Parsed("ticks", out, _point_from_text([df["bid"], df["ask"]]), "ask - bid of the ticks")
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
    return _Parsed("bars", out, point, src)


_TICK_CSV = re.compile(r"^\d{8} \d{9},")


def _parse_csv(path: Path, text: str, source_tz: str) -> _Parsed:
    file = str(path)
    first = text.split("\n", 1)[0]
    if _TICK_CSV.match(first):
        rows = _split_rows(text, ",")
        df = _frame(rows, ["time", "bid", "ask", "volume"], file, 1)
        time = _times(df["time"], "%Y%m%d %H%M%S%f", file, "time", source_tz)
        out = pd.DataFrame(
            {
                "time": time,
                "bid": _numbers(df, "bid", file),
                "ask": _numbers(df, "ask", file),
                "volume": _numbers(df, "volume", file),
            }
        )
        return _Parsed("ticks", out, _point_from_text([df["bid"], df["ask"]]), "ask - bid of the ticks")
    rows = _split_rows(text, ",")
    header = [h.strip().lower() for h in rows[0]]
    if header and header[0] in ("", "unnamed: 0", "datetime", "date", "timestamp", "time"):
        header[0] = "time"
    df = _frame(rows[1:], header, file, 2)
    if not len(df):
        raise DataError(file, None, None, "no data rows")
    time = _times(df["time"], "ISO8601", file, "time", source_tz)
    if {"bid", "ask"} <= set(header):
        vol = _numbers(df, "volume", file) if "volume" in header else 0.0
        out = pd.DataFrame({"time": time, "bid": _numbers(df, "bid", file), "ask": _numbers(df, "ask", file)})
        out["volume"] = vol
        return _Parsed("ticks", out, _point_from_text([df["bid"], df["ask"]]), "ask - bid of the ticks")
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
    return _Parsed("bars", out, _point_from_text([df["open"], df["close"]]), src)


def _parse_parquet(path: Path) -> _Parsed:
    df = pd.read_parquet(path)
    df.index = pd.RangeIndex(1, len(df) + 1, name="line")  # row numbers stand in for lines
    if "time" not in df.columns:
        raise DataError(str(path), None, "time", "Parquet data needs a 'time' column")
    t = df["time"]
    if pd.api.types.is_integer_dtype(t.dtype):
        t = pd.to_datetime(t, unit="ms", utc=True)
    elif getattr(t.dt, "tz", None) is None:
        t = t.dt.tz_localize("UTC")
    df["time"] = t.dt.tz_convert("UTC").astype("datetime64[ms, UTC]")
    if {"bid", "ask"} <= set(df.columns):
        if "volume" not in df.columns:
            df["volume"] = 0.0
        return _Parsed("ticks", df[["time", "bid", "ask", "volume"]], 1e-5, "ask - bid of the ticks")
    missing = [c for c in ("open", "high", "low", "close") if c not in df.columns]
    if missing:
        raise DataError(str(path), None, missing[0], "Parquet bars need time, open, high, low, close")
    if "tick_volume" not in df.columns:
        df["tick_volume"] = 0.0
    src = "spread column of the file (price units)" if "spread" in df.columns else "none in file"
    if "spread" not in df.columns:
        df["spread"] = np.nan
    return _Parsed("bars", df[list(BAR_SCHEMA)].astype({c: "float64" for c in BAR_SCHEMA[1:]}), 1e-5, src)


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


def _parse(source: str, source_tz: str) -> tuple[_Parsed, str]:
    if source == SAMPLE_EURUSD_H1:
        path = sample_path()
        parsed = _parse_csv(path, _read_text(path), "UTC")
        return parsed, str(path)
    path = Path(source)
    if not path.is_file():
        raise DataError(source, None, None, "no such file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return _parse_parquet(path), source
    text = _read_text(path)
    if not text.strip():
        raise DataError(source, None, None, "empty file")
    if text.lstrip("\ufeff").startswith("<DATE>"):
        return _parse_mt5(path, text.lstrip("\ufeff"), source_tz), source
    return _parse_csv(path, text, source_tz), source


def read_market_data(source: str, source_tz: str = "UTC") -> tuple[_Parsed, str]:
    """Reads ``source`` as it is (ticks stay ticks, bars keep their timeframe), every row validated.

    For replay (``kairos replay``): the same formats and the same errors as ``load_bars``, without
    resampling. The frame's index is the row's line number in the file.
    """
    parsed, file = _parse(source, source_tz)
    if parsed.kind == "ticks":
        _validate_ticks(parsed.frame, file)
    else:
        _validate_bars(parsed.frame, file)
    return parsed, file


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
        bad = df[col] <= 0
        if bad.any():
            line = int(bad[bad].index[0])
            raise DataError(file, line, col, f"price must be positive, got {df.loc[line, col]}")
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
) -> tuple[pd.DataFrame, ImportReport]:
    """Import ``source`` as validated bars (BAR_SCHEMA, UTC) plus a report of what was found.

    ``ask_source`` is a bar file on the ask with the same times (spread = mean of ask - bid over the
    four prices; crossed bars are clamped to 0 and reported); a ``*bid*`` file with an ``*ask*`` twin
    beside it is paired automatically. ``spread`` (price units) fills bars that carry no spread, and is
    recorded as such.
    """
    parsed, file = _parse(source, source_tz)
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
            ask, ask_file = _parse(ask_source, source_tz)
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
