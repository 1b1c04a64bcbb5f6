"""kairos.bridge.replay: real ticks replayed through the bridge into a real TCP peer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kairos.bridge.peer import BridgePeer
from kairos.bridge.replay import TickFileError, main, read_ticks
from kairos.wirecheck import DEFAULT_TICKS


def test_replay_delivers_every_real_tick_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    with BridgePeer() as peer:
        rc = main(["--ticks", str(DEFAULT_TICKS), "--symbol", "EURUSD", "--collector", peer.endpoint])
        assert rc == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["ticks_read"] == summary["ticks_sent"] == summary["ticks_acked"] == 9500
        assert peer.wait_for(lambda: len(peer.ticks) == 9500, timeout=10)
    expected = read_ticks(Path(DEFAULT_TICKS))
    assert peer.ticks.time_msc == expected["time_msc"].tolist()
    assert peer.ticks.sequence == list(range(1, 9501))
    assert peer.symbol_infos[0].symbol == "EURUSD" and peer.symbol_infos[0].digits == 5


def test_mt5_export_in_utf16_is_read(tmp_path: Path) -> None:
    text = (
        "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n"
        "2020.01.01\t17:00:00.065\t1.12120\t1.12172\t\t\t6\n"
        "2020.01.01\t17:00:10.447\t\t1.12192\t\t\t4\n"
    )
    path = tmp_path / "EURUSD.csv"
    path.write_bytes(text.encode("utf-16"))
    ticks = read_ticks(path)
    assert ticks["time_msc"].tolist() == [1577898000065, 1577898010447]
    assert ticks["bid"].tolist() == [1.1212, 1.1212]  # an empty BID keeps the previous one
    assert ticks["ask"].tolist() == [1.12172, 1.12192]


def test_bad_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("20200101 170000065,1.1212,1.12172,0\n20200101 1700xx065,1.1,1.2,0\n")
    with pytest.raises(TickFileError, match=r"bad.csv:2"):
        read_ticks(path)
    assert main(["--ticks", str(path), "--symbol", "EURUSD", "--collector", "127.0.0.1:1"]) == 2
