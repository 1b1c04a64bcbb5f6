"""The one market-data reader (kairos.training.data): compressed and Parquet copies of real files, time
columns it does not know, bad tick rows named by file, line and field, the import CLI's time options."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pyarrow as pa  # type: ignore[import-untyped]
import pytest

from kairos.training.cli import main as train_main
from kairos.training.data import (
    TICK_COLUMNS,
    TIME_COLUMNS,
    DataError,
    load_bars,
    read_market_data,
    read_ticks,
)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
EURUSD_TICKS = DATA / "eurusd-ticks-2020-01-01.csv"
GBPUSD_BID = DATA / "gbpusd-m1-bid-2012.csv"
GBPUSD_ASK = DATA / "gbpusd-m1-ask-2012.csv"


def _gzip(src: Path, dst: Path) -> None:
    dst.write_bytes(gzip.compress(src.read_bytes()))


def _zstd(src: Path, dst: Path) -> None:
    with pa.output_stream(str(dst), compression="zstd") as out:
        out.write(src.read_bytes())


def _parquet_ticks(src: Path, dst: Path) -> None:
    read_ticks(str(src))[["time", "bid", "ask", "volume"]].to_parquet(dst, index=False)


def _parquet_ticks_zstd(src: Path, dst: Path) -> None:
    plain = dst.with_name("plain.parquet")
    _parquet_ticks(src, plain)
    _zstd(plain, dst)


VARIANTS: list[tuple[str, Callable[[Path, Path], None]]] = [
    ("eurusd-ticks-2020-01-01.csv.gz", _gzip),
    ("eurusd-ticks-2020-01-01.csv.zst", _zstd),
    ("eurusd-ticks-2020-01-01.parquet", _parquet_ticks),
    ("eurusd-ticks-2020-01-01.parquet.zst", _parquet_ticks_zstd),
    ("compressed-without-a-suffix.csv", _gzip),  # recognised by content, not by name
]


@pytest.mark.parametrize(("name", "make"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_compressed_and_parquet_copies_of_the_real_tick_file_give_identical_rows(
    tmp_path: Path, name: str, make: Callable[[Path, Path], None]
) -> None:
    want = read_ticks(str(EURUSD_TICKS))
    assert list(want.columns) == list(TICK_COLUMNS) and len(want) == 9500
    copy = tmp_path / name
    make(EURUSD_TICKS, copy)
    got = read_ticks(str(copy))
    pd.testing.assert_frame_equal(got, want)  # the index is the line (the row for Parquet): 1..9500 both
    bars, rep = load_bars(str(copy))
    want_bars, want_rep = load_bars(str(EURUSD_TICKS))
    pd.testing.assert_frame_equal(bars, want_bars)
    assert rep.sha256 == want_rep.sha256


@pytest.mark.parametrize("compress", [_gzip, _zstd], ids=["gz", "zst"])
def test_compressed_bid_bars_pair_with_their_compressed_ask_twin(
    tmp_path: Path, compress: Callable[[Path, Path], None]
) -> None:
    suffix = ".gz" if compress is _gzip else ".zst"
    bid, ask = tmp_path / (GBPUSD_BID.name + suffix), tmp_path / (GBPUSD_ASK.name + suffix)
    compress(GBPUSD_BID, bid)
    compress(GBPUSD_ASK, ask)
    got, rep = load_bars(str(bid))
    want, want_rep = load_bars(str(GBPUSD_BID))
    assert str(ask) in rep.spread_source
    pd.testing.assert_frame_equal(got, want)
    assert rep.sha256 == want_rep.sha256


def test_a_corrupt_compressed_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv.gz"
    path.write_bytes(gzip.compress(EURUSD_TICKS.read_bytes())[:500])
    with pytest.raises(DataError, match="cannot decompress") as err:
        read_ticks(str(path))
    assert str(err.value).startswith(f"{path}: ")


def _dukascopy_csv(path: Path, header: str, n: int = 3000) -> pd.DataFrame:
    """The first n real EURUSD ticks with a time column named as Dukascopy names it, day-first."""
    ticks = read_ticks(str(EURUSD_TICKS)).iloc[:n]
    raw = EURUSD_TICKS.read_text().splitlines()[:n]
    lines = [header]
    for t, row in zip(ticks["time"], raw, strict=True):
        _, bid, ask, vol = row.split(",")
        lines.append(f"{t:%d.%m.%Y %H:%M:%S}.{t.microsecond // 1000:03d},{bid},{ask},{vol}")
    path.write_text("\n".join(lines) + "\n")
    return ticks


UNKNOWN_TIME_COLUMN = [
    ("csv", "Gmt time,Bid,Ask,Volume", ["Gmt time", "Bid", "Ask", "Volume"]),
    ("csv", "when,bid,ask,volume", ["when", "bid", "ask", "volume"]),
    ("parquet", "", ["Gmt time", "Bid", "Ask", "Volume"]),
]


@pytest.mark.parametrize(("kind", "header", "found"), UNKNOWN_TIME_COLUMN)
def test_an_unknown_time_column_is_an_error_naming_the_file_the_columns_found_and_accepted(
    tmp_path: Path, kind: str, header: str, found: list[str]
) -> None:
    path = tmp_path / f"ticks.{kind}"
    if kind == "csv":
        _dukascopy_csv(path, header, n=5)
    else:
        ticks = read_ticks(str(EURUSD_TICKS)).iloc[:5]
        frame = ticks[["time", "bid", "ask", "volume"]].set_axis(found, axis=1)
        frame.to_parquet(path, index=False)
    with pytest.raises(DataError) as err:
        read_ticks(str(path))
    msg = str(err.value)
    assert msg.startswith(f"{path}:1: " if kind == "csv" else f"{path}: "), msg
    assert f"the columns found are {found}" in msg
    assert str(list(TIME_COLUMNS)) in msg and "--time-column" in msg


def test_time_column_and_time_format_read_a_csv_the_reader_does_not_know(tmp_path: Path) -> None:
    path = tmp_path / "EURUSD_Ticks_01.01.2020.csv"
    want = _dukascopy_csv(path, "Gmt time,Bid,Ask,Volume")
    got = read_ticks(str(path), time_column="Gmt time", time_format="%d.%m.%Y %H:%M:%S.%f")
    assert got.index[0] == 2  # line 2: the header is line 1
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    # Day-first times read as ISO 8601 are refused, naming the line and the option that fixes it.
    with pytest.raises(DataError, match=r":2: field 'time': .* --time-format") as err:
        read_ticks(str(path), time_column="gmt time")
    assert str(err.value).startswith(str(path))
    with pytest.raises(DataError, match=r"no column 'Time \(UTC\)' \(--time-column\)"):
        read_ticks(str(path), time_column="Time (UTC)")


def test_time_column_names_a_parquet_column_holding_text_times(tmp_path: Path) -> None:
    want = read_ticks(str(EURUSD_TICKS)).iloc[:500]
    frame = pd.DataFrame(
        {
            "Gmt time": want["time"].dt.strftime("%d.%m.%Y %H:%M:%S.%f"),
            "Bid": want["bid"],
            "Ask": want["ask"],
        }
    )
    frame.to_parquet(tmp_path / "ticks.parquet", index=False)
    got = read_ticks(
        str(tmp_path / "ticks.parquet"), time_column="Gmt time", time_format="%d.%m.%Y %H:%M:%S.%f"
    )
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


def test_a_time_column_anywhere_in_the_header_is_found_by_its_name(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    want = read_ticks(str(EURUSD_TICKS)).iloc[:100]
    lines = ["Bid,Ask,Timestamp"] + [
        f"{b},{a},{t.isoformat()}" for t, b, a in zip(want["time"], want["bid"], want["ask"], strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    got = read_ticks(str(path))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))


def test_an_mt5_tick_export_in_utf16_carries_an_empty_side_forward(tmp_path: Path) -> None:
    path = tmp_path / "EURUSD_202001011700_202001011701.csv"
    path.write_bytes(
        (
            "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n"
            "2020.01.01\t17:00:00.065\t1.12120\t1.12172\t\t\t6\n"
            "2020.01.01\t17:00:10.447\t\t1.12192\t\t\t4\n"
        ).encode("utf-16")
    )
    ticks = read_ticks(str(path))
    assert ticks["time_msc"].tolist() == [1577898000065, 1577898010447]
    assert ticks["bid"].tolist() == [1.1212, 1.1212]  # an empty BID keeps the previous one
    assert ticks["ask"].tolist() == [1.12172, 1.12192]
    assert ticks.index.tolist() == [2, 3]


BAD_TICK_ROWS = [
    ("20200101 170000065,1.1212,1.12172", ":2: expected 4 fields (time, bid, ask, volume), got 3"),
    ("2020-01-01 17:00,1.1212,1.12172,0", ":2: field 'time': '2020-01-01 17:00' is not a time"),
    ("20200101 170000065,abc,1.12172,0", ":2: field 'bid': 'abc' is not a number"),
    ("20200101 170000065,1.1212,nan,0", ":2: field 'ask': 'nan' is not a number"),
    ("20200101 170000065,-1.1,1.12172,0", ":2: field 'bid': price must be positive and finite, got -1.1"),
    ("20200101 170000065,1.1212,inf,0", ":2: field 'ask': price must be positive and finite, got inf"),
    ("20200101 170000065,1.1212,1.1211,0", ":2: field 'ask': ask 1.1211 is below bid 1.1212"),
    ("20200101 165959999,1.1212,1.12172,0", ":2: field 'time': time goes backwards"),
]


@pytest.mark.parametrize(("row", "message"), BAD_TICK_ROWS)
def test_a_bad_tick_row_is_named_by_file_line_and_field(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "ticks.csv.gz"
    path.write_bytes(gzip.compress(f"20200101 170000065,1.121200,1.121720,0\n{row}\n".encode()))
    with pytest.raises(DataError) as err:
        read_ticks(str(path))
    assert str(err.value).startswith(f"{path}{message}"), str(err.value)
    # Skipping leaves the bad row out, reported, and keeps the line numbers of the file.
    data = read_market_data(str(path), skip_bad_rows=True)
    assert data.frame.index.tolist() == [1] and data.rejected == [str(err.value)]


def test_a_bar_file_is_not_read_as_ticks() -> None:
    with pytest.raises(DataError, match="holds bars, not ticks") as err:
        read_ticks(str(GBPUSD_BID))
    assert str(err.value).startswith(str(GBPUSD_BID))


def _train_main(args: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        train_main(args)
    return int(e.value.code or 0)


def test_kairos_train_import_takes_time_column_and_time_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "EURUSD_ticks.csv"
    _dukascopy_csv(path, "Gmt time,Bid,Ask,Volume")
    base = ["import", "--data", str(path), "--run", str(tmp_path / "run")]
    assert _train_main(base) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{path}:1: no time column" in err and "'Gmt time'" in err and "--time-column" in err
    fmt = "%d.%m.%Y %H:%M:%S.%f"
    assert _train_main([*base, "--time-column", "Gmt time", "--time-format", fmt]) == 0
    bars = pd.read_parquet(tmp_path / "run" / "bars.parquet")
    want, _ = load_bars(str(EURUSD_TICKS))
    # The 3,000 ticks end inside a minute: every bar but that last one equals the full file's.
    assert len(bars) > 10
    pd.testing.assert_frame_equal(bars.iloc[:-1], want.iloc[: len(bars) - 1])
