"""`kairos replay`, the one replay: real ticks into a real TCP bridge peer, the symbol from the file name
or --symbol (never a default), a clear and fast failure without a collector, the file's time options."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kairos.bridge.peer import BridgePeer
from kairos.stack import replay
from kairos.training.data import read_ticks

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
TICKS = DATA / "eurusd-ticks-2020-01-01.csv"


def kairos(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kairos.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "1000"},  # no wrapped lines in the messages
    )


def dead_endpoint() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


SYMBOLS = [
    # the shared data's names
    ("eurusd-ticks-2020-01-01.csv", "EURUSD"),
    ("gbpusd-m1-bid-2012.csv", "GBPUSD"),
    ("gbpusd-m1-ask-2012.csv", "GBPUSD"),
    ("btcusd-perp-m1-2022-01.csv", "BTCUSD"),
    ("eurusd-ticks-2020-01-01.csv.gz", "EURUSD"),
    ("/some/dir/usdjpy-ticks.parquet", "USDJPY"),
    # MT5 exports: the symbol as the terminal spells it, broker suffixes and all
    ("EURUSD_202001020000_202001031159.csv", "EURUSD"),
    ("USDJPY_M1_202001020000_202001031159.csv", "USDJPY"),
    ("XAUUSD.a_H1_202001020000_202001312300.csv", "XAUUSD.a"),
    ("US30_M5_202301020000_202301312355.csv", "US30"),
    ("GER40_202301020000_202301031159.csv.zst", "GER40"),
    # other names that start with a currency pair
    ("EURUSD_ticks.csv", "EURUSD"),
    ("GBPUSD_M1.csv", "GBPUSD"),
    ("audnzd.csv", "AUDNZD"),
    ("sample:eurusd-h1", "EURUSD"),
    # names that state no symbol
    ("ticks.csv", None),
    ("prices-2020.csv", None),
    ("bars.parquet", None),
    ("export_20200102.csv", None),
    ("EURUSDX_ticks.csv", None),
    ("US30_M5.csv", None),
]


@pytest.mark.parametrize(("name", "symbol"), SYMBOLS)
def test_the_symbol_comes_from_the_file_name(name: str, symbol: str | None) -> None:
    assert replay.symbol_from_name(name) == symbol


def test_every_shared_data_file_names_its_symbol() -> None:
    names = sorted(p.name for p in DATA.glob("*.csv"))
    assert len(names) >= 4
    assert all(replay.symbol_from_name(n) for n in names), names


def test_a_file_naming_no_symbol_needs_symbol(tmp_path: Path) -> None:
    path = tmp_path / "ticks.csv"
    path.write_text("".join(TICKS.read_text().splitlines(keepends=True)[:20]))
    with pytest.raises(replay.ReplayError, match=r"ticks.csv: the file name does not say which symbol"):
        replay.load(str(path))
    assert replay.load(str(path), symbol="EURUSD").symbol == "EURUSD"
    out = kairos("replay", str(path), "--collector", dead_endpoint())
    assert out.returncode == 1
    assert f"{path}: the file name does not say which symbol" in out.stderr.replace("\n", "")
    assert "--symbol" in out.stderr


def test_without_a_collector_replay_fails_at_once_naming_the_address() -> None:
    endpoint = dead_endpoint()
    data = replay.load(str(TICKS), last=100)
    started = time.monotonic()
    with pytest.raises(replay.CollectorUnreachable) as err:
        replay.replay(data, collector=endpoint)
    assert time.monotonic() - started < 5
    assert f"no collector at {endpoint}" in str(err.value) and "Connection refused" in str(err.value)
    out = kairos("replay", str(TICKS), "--collector", endpoint, timeout=30)
    assert out.returncode == 1
    stderr = out.stderr.replace("\n", "")
    assert f"no collector at {endpoint}" in stderr and "Connection refused" in stderr
    assert "lost" not in out.stdout  # nothing was pushed, so nothing is reported lost


def test_kairos_replay_delivers_every_real_tick_in_order_as_the_named_symbol() -> None:
    with BridgePeer() as peer:
        out = kairos("replay", str(TICKS), "--json", "--collector", peer.endpoint)
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout)
        assert summary["symbol"] == "EURUSD" and summary["digits"] == 5
        assert summary["ticks_read"] == summary["ticks_sent"] == summary["ticks_acked"] == 9500
        assert summary["ticks_lost"] == 0 and summary["rows_skipped"] == 0
        assert any("connected" in line for line in summary["log"])
        assert peer.wait_for(lambda: len(peer.ticks) == 9500, timeout=10)
    expected = read_ticks(str(TICKS))
    assert peer.ticks.time_msc == expected["time_msc"].tolist()
    assert peer.ticks.bid == expected["bid"].tolist() and peer.ticks.ask == expected["ask"].tolist()
    assert peer.ticks.sequence == list(range(1, 9501))
    assert peer.symbol_infos[0].symbol == "EURUSD" and peer.symbol_infos[0].digits == 5
    assert peer.hellos[0].terminal_name == "kairos-replay"


def test_a_usdjpy_file_is_replayed_as_usdjpy_with_its_own_time_column(tmp_path: Path) -> None:
    """Real ticks in a file named for USDJPY, with a time column kairos does not know: replayed as
    USDJPY (never EURUSD by default), read with --time-column and --time-format, gzip-compressed."""
    ticks = read_ticks(str(TICKS)).iloc[:300]
    lines = ["Gmt time,Bid,Ask"] + [
        f"{t:%d.%m.%Y %H:%M:%S}.{t.microsecond // 1000:03d},{b * 100:.3f},{a * 100:.3f}"
        for t, b, a in zip(ticks["time"], ticks["bid"], ticks["ask"], strict=True)
    ]
    path = tmp_path / "usdjpy-ticks-2020-01-01.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with BridgePeer() as peer:
        unknown = kairos("replay", str(path), "--collector", peer.endpoint)
        assert unknown.returncode == 2
        assert f"{path}:1: no time column" in unknown.stderr.replace("\n", "")
        out = kairos(
            "replay",
            str(path),
            "--json",
            "--time-column",
            "Gmt time",
            "--time-format",
            "%d.%m.%Y %H:%M:%S.%f",
            "--collector",
            peer.endpoint,
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["ticks_acked"] == 300
        assert peer.wait_for(lambda: len(peer.ticks) == 300, timeout=10)
    assert [s.symbol for s in peer.symbol_infos] == ["USDJPY"] and peer.symbol_infos[0].digits == 3
    assert set(peer.ticks.symbol) == {"USDJPY"}
    assert peer.ticks.time_msc == ticks["time_msc"].tolist()


def test_realtime_paces_by_the_data_s_own_times() -> None:
    data = replay.load(str(TICKS), symbol="EURUSD")
    n = 40
    data.time_msc, data.bid, data.ask = data.time_msc[:n], data.bid[:n], data.ask[:n]
    span_s = (int(data.time_msc[-1]) - int(data.time_msc[0])) / 1000
    with BridgePeer() as peer:
        result = replay.replay(data, collector=peer.endpoint, realtime=span_s / 0.5, batch=1)
    assert result.acked == n
    assert result.seconds >= 0.5 * 0.95  # the last tick waited for its time, at span/0.5 x real time
