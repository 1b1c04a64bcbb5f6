"""Data import: every supported source, normalised and validated; bad rows name file, line and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

from kairos.features import BarBuilder, bars_to_frame
from kairos.training.data import BAR_SCHEMA, DataError, dataset_hash, load_bars, resample_bars

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
GBPUSD_BID = DATA / "gbpusd-m1-bid-2012.csv"
GBPUSD_ASK = DATA / "gbpusd-m1-ask-2012.csv"
EURUSD_TICKS = DATA / "eurusd-ticks-2020-01-01.csv"


def test_gbpusd_bid_bars_pair_with_their_ask_twin_and_report_gaps_and_crossed_quotes() -> None:
    bars, rep = load_bars(str(GBPUSD_BID))
    assert list(bars.columns) == list(BAR_SCHEMA)
    assert (rep.bars, rep.timeframe_s, rep.kind) == (30117, 60, "bars")
    assert "gbpusd-m1-ask-2012.csv" in rep.spread_source
    assert str(bars["time"].dtype) == "datetime64[ms, UTC]"
    # Weekends are the largest gaps; they are reported and kept, not filled.
    assert rep.largest_gaps[0].missing_bars > 2800 and rep.gaps > 4
    assert bars["time"].diff().max() > pd.Timedelta(days=2)
    # Real bid/ask bar snapshots are sometimes crossed: reported with their lines, spread clamped to 0.
    assert rep.crossed_spread_bars > 0 and rep.crossed_spread_lines
    assert (bars["spread"] >= 0).all() and bars["spread"].median() == pytest.approx(6.5e-5, abs=1e-5)
    same, rep2 = load_bars(str(GBPUSD_BID), ask_source=str(GBPUSD_ASK))
    assert rep2.sha256 == rep.sha256 == dataset_hash(same)


def test_eurusd_tick_file_becomes_m1_bars_identical_to_the_bar_builder() -> None:
    bars, rep = load_bars(str(EURUSD_TICKS))
    assert rep.kind == "ticks" and rep.rows_in == 9500 and rep.timeframe_s == 60
    raw = pd.read_csv(EURUSD_TICKS, header=None, names=["t", "bid", "ask", "v"], dtype={"t": str})
    t = pd.to_datetime(raw["t"], format="%Y%m%d %H%M%S%f", utc=True)
    ms = ((t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)).to_numpy()
    b = BarBuilder(60)
    built = [bar for i in range(len(raw)) for bar in b.add_tick(int(ms[i]), raw["bid"][i], raw["ask"][i])]
    built += b.flush()
    ref = bars_to_frame(built)
    assert len(ref) == len(bars) == rep.bars
    np.testing.assert_array_equal(
        bars["time"].to_numpy(), ref["time"].astype("datetime64[ms, UTC]").to_numpy()
    )
    for col in ("open", "high", "low", "close", "tick_volume"):
        np.testing.assert_array_equal(bars[col].to_numpy(), ref[col].to_numpy(dtype=float), err_msg=col)
    np.testing.assert_allclose(bars["spread"], ref["spread"], rtol=0, atol=1e-15)


def test_builtin_eurusd_h1_sample_fills_the_missing_spread_with_the_stated_default() -> None:
    bars, rep = load_bars("sample:eurusd-h1")
    assert (rep.bars, rep.timeframe_s) == (5000, 3600)
    assert rep.spread_source.startswith("constant 0.0001")
    assert (bars["spread"] == 0.0001).all() and bars["tick_volume"].gt(0).all()
    _, rep2 = load_bars("sample:eurusd-h1", spread=0.00015)
    assert rep2.spread_source.startswith("constant 0.00015")


def _mt5_ticks(path: Path, n: int, encoding: str) -> pd.DataFrame:
    """The first n real EURUSD ticks as an MT5 tick export (an unchanged side is left empty, as MT5 does)."""
    raw = pd.read_csv(EURUSD_TICKS, header=None, names=["t", "bid", "ask", "v"], dtype=str, nrows=n)
    lines = ["<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>"]
    prev_bid = prev_ask = None
    for t, bid, ask in zip(raw["t"], raw["bid"], raw["ask"], strict=True):
        d, c = t.split(" ")
        stamp = f"{d[:4]}.{d[4:6]}.{d[6:]}\t{c[:2]}:{c[2:4]}:{c[4:6]}.{c[6:]}"
        flags = (2 if bid != prev_bid else 0) | (4 if ask != prev_ask else 0)
        lines.append(
            f"{stamp}\t{bid if bid != prev_bid else ''}\t{ask if ask != prev_ask else ''}\t\t\t{flags}"
        )
        prev_bid, prev_ask = bid, ask
    path.write_text("\r\n".join(lines) + "\r\n", encoding=encoding)
    return raw


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-8"])
def test_mt5_tick_export_in_any_encoding_gives_the_same_bars_as_the_csv_ticks(
    tmp_path: Path, encoding: str
) -> None:
    mt5 = tmp_path / "EURUSD_ticks.csv"
    raw = _mt5_ticks(mt5, 2000, encoding)
    csv = tmp_path / "ticks.csv"
    csv.write_text("\n".join(f"{t},{b},{a},{v}" for t, b, a, v in raw.itertuples(index=False)) + "\n")
    got, rep = load_bars(str(mt5))
    want, _ = load_bars(str(csv))
    assert rep.kind == "ticks" and rep.rows_in == 2000
    pd.testing.assert_frame_equal(got, want)


def _mt5_bars(path: Path, n: int, *, with_time: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    bid = pd.read_csv(GBPUSD_BID, nrows=n, dtype=str)
    ask = pd.read_csv(GBPUSD_ASK, nrows=n)
    spread_pts = np.round((ask["close"] - bid["close"].astype(float)) / 1e-5).astype(int).clip(lower=0)
    head = "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"
    lines = [head]
    for i, r in bid.iterrows():
        date = r["timestamp"][:10].replace("-", ".")
        lines.append(
            f"{date}\t{r['timestamp'][11:19]}\t{r.open}\t{r.high}\t{r.low}\t{r.close}"
            f"\t{10 + i}\t0\t{spread_pts[i]}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bid, spread_pts


def test_mt5_bar_export_reads_prices_volumes_and_spread_points(tmp_path: Path) -> None:
    path = tmp_path / "GBPUSD_M1.csv"
    bid, pts = _mt5_bars(path, 300)
    bars, rep = load_bars(str(path))
    assert (rep.bars, rep.timeframe_s, rep.point) == (300, 60, 1e-5)
    np.testing.assert_array_equal(bars["close"], bid["close"].astype(float))
    np.testing.assert_allclose(bars["spread"], pts * 1e-5, atol=1e-15)
    assert bars["tick_volume"].tolist() == [10.0 + i for i in range(300)]
    # Broker server time: --source-tz shifts to UTC.
    shifted, _ = load_bars(str(path), source_tz="Etc/GMT-2")
    assert (bars["time"] - shifted["time"]).eq(pd.Timedelta(hours=2)).all()
    m5, rep5 = load_bars(str(path), timeframe="M5")
    assert (
        rep5.timeframe_s == 300
        and len(m5) == len(resample_bars(bars, 300)) == bars["time"].dt.floor("5min").nunique()
    )
    assert m5["high"].iloc[0] == bars["high"].iloc[:5].max() and m5["tick_volume"].iloc[0] == sum(
        range(10, 15)
    )


def test_parquet_bars_round_trip_to_the_same_dataset_hash(tmp_path: Path, gbpusd_bars: pd.DataFrame) -> None:
    gbpusd_bars.iloc[:1000].to_parquet(tmp_path / "bars.parquet")
    bars, rep = load_bars(str(tmp_path / "bars.parquet"))
    assert rep.sha256 == dataset_hash(gbpusd_bars.iloc[:1000].reset_index(drop=True))
    assert len(bars) == 1000


def _rewrite_line(path: Path, line: int, fn: object) -> None:
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line - 1] = fn(lines[line - 1])  # type: ignore[operator]
    path.write_text("\n".join(lines), encoding="utf-8")


def _field(i: int, value: str) -> object:
    def f(s: str) -> str:
        parts = s.split("\t")
        parts[i] = value
        return "\t".join(parts)

    return f


@pytest.mark.parametrize(
    ("line", "mutate", "where", "message"),
    [
        (3, _field(5, "1.5x"), ":3: field 'close'", "not a number"),
        (4, _field(0, "2012.13.01"), ":4: field 'time'", "not a time"),
        (5, _field(3, "0.5"), ":5: field 'high'", "high is below"),
        (6, _field(4, "0"), ":6: field 'low'", "positive"),
        (7, _field(8, "-3"), ":7: field 'spread'", "negative"),
        (8, lambda s: s + "\t42", ":8", "expected 9 fields"),
        (9, _field(1, "00:00:00"), ":9: field 'time'", "backwards"),
    ],
)
def test_a_bad_row_in_an_mt5_bar_export_is_refused_naming_file_line_and_field(
    tmp_path: Path, line: int, mutate: object, where: str, message: str
) -> None:
    path = tmp_path / "GBPUSD_M1.csv"
    _mt5_bars(path, 50)
    _rewrite_line(path, line, mutate)
    with pytest.raises(DataError, match=message) as err:
        load_bars(str(path))
    assert f"{path}{where}" in str(err.value)


def test_duplicate_bars_are_an_error_unless_a_policy_is_chosen(tmp_path: Path) -> None:
    path = tmp_path / "GBPUSD_M1.csv"
    _mt5_bars(path, 50)
    lines = path.read_text().split("\n")
    lines.insert(11, _field(6, "999")(lines[10]))  # type: ignore[operator]  # line 11 again, as line 12
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match=r"1 duplicate bar time\(s\), first at lines \[11, 12\]") as err:
        load_bars(str(path))
    assert err.value.line == 12 and err.value.field == "time"
    first, rep = load_bars(str(path), dedupe="keep-first")
    last, _ = load_bars(str(path), dedupe="keep-last")
    assert rep.duplicates == 1 and rep.duplicate_lines == [11, 12] and len(first) == 50
    assert last["tick_volume"].iloc[9] == 999 and first["tick_volume"].iloc[9] == 19


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("20200101 170000065,1.1212,1.1210,0\n", r":1: field 'ask': ask 1.121 is below bid 1.1212"),
        ("20200101 170000065,1.1212,1.1213,0\n20200101 1700000,1.1,1.2,0\n", r":2: field 'time'"),
        ("timestamp,open,high,low\n2012-02-01 00:00:00+00:00,1,1,1\n", r":1: header lacks \['close'\]"),
        ("", "empty file"),
    ],
)
def test_bad_csv_files_are_refused_with_the_place_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message) as err:
        load_bars(str(path))
    assert str(err.value).startswith(str(path))


def test_bars_without_any_spread_need_an_ask_file_or_a_stated_spread(tmp_path: Path) -> None:
    path = tmp_path / "gbpusd-only.csv"
    path.write_text("".join(GBPUSD_BID.read_text().splitlines(keepends=True)[:100]))
    with pytest.raises(DataError, match="no spread in the data"):
        load_bars(str(path))
    bars, rep = load_bars(str(path), spread=0.0001)
    assert rep.spread_source.startswith("constant") and len(bars) == 99


def test_mt5_daily_export_without_a_time_column_is_read_as_midnight_bars(tmp_path: Path) -> None:
    h1, _ = load_bars("sample:eurusd-h1")
    daily = resample_bars(h1, 86400).iloc[:40]
    lines = ["<DATE>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>"]
    for r in daily.itertuples(index=False):
        lines.append(
            f"{r.time:%Y.%m.%d}\t{r.open}\t{r.high}\t{r.low}\t{r.close}\t{int(r.tick_volume)}\t0\t10"
        )
    path = tmp_path / "EURUSD_D1.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-16")
    bars, rep = load_bars(str(path))
    assert rep.timeframe_s == 86400 and len(bars) == 40
    np.testing.assert_array_equal(bars["time"].to_numpy(), daily["time"].to_numpy())
    np.testing.assert_array_equal(bars["close"].to_numpy(), daily["close"].to_numpy())
    assert rep.gaps > 0  # weekends
