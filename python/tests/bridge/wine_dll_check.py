"""The Windows DLL under Wine (run by `make test-bridge-wine`, part of `make test`).

Not collected by the plain pytest run (the file name does not start with test_): it needs the
MinGW-w64 build in $KAIROS_BRIDGE_WIN_DIR, which `make bridge-dll` produces, and fails if it is
missing. A loader .exe loads kairos_bridge.dll with LoadLibraryW/GetProcAddress and drives it as the
Expert Advisor does against two real TCP peers on 127.0.0.1; the peers check every tick and result.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from kairos.bridge.peer import BridgePeer
from kairos.bridge.v1 import bridge_pb2
from kairos.marketdata.v1 import marketdata_pb2
from kairos.training.data import read_ticks
from kairos.types.v1 import types_pb2

REPO = Path(__file__).resolve().parents[3]
HEADER = REPO / "cpp/mt5_bridge/include/kairos_bridge.h"
TICKS_CSV = REPO.parent / "shared/data/eurusd-ticks-2020-01-01.csv"
SERVER_OFFSET_MS = 2 * 3600 * 1000  # the loader sets it as the EA would; the bridge removes it


@pytest.fixture(scope="module")
def win_dir() -> Path:
    value = os.environ.get("KAIROS_BRIDGE_WIN_DIR")
    assert value, "KAIROS_BRIDGE_WIN_DIR is not set: run `make test-bridge-wine`"
    path = Path(value)
    assert (path / "kairos_bridge.dll").is_file(), f"{path}/kairos_bridge.dll missing: run `make bridge-dll`"
    return path


def expected_ticks() -> list[tuple[int, float, float]]:
    ticks = read_ticks(str(TICKS_CSV))
    return [
        (int(t), float(b), float(a))
        for t, b, a in zip(ticks["time_msc"], ticks["bid"], ticks["ask"], strict=True)
    ]


def test_dll_imports_only_kernel32_msvcrt_ws2_32_and_exports_the_header(win_dir: Path) -> None:
    objdump = shutil.which("x86_64-w64-mingw32-objdump") or "objdump"
    dump = subprocess.run(
        [objdump, "-p", str(win_dir / "kairos_bridge.dll")], check=True, capture_output=True, text=True
    ).stdout
    imports = {m.upper() for m in re.findall(r"DLL Name: (\S+)", dump)}
    assert imports == {"KERNEL32.DLL", "MSVCRT.DLL", "WS2_32.DLL"}, imports
    exported = set(re.findall(r"^\s*\[\s*\d+\]\s+(\w+)$", dump, re.MULTILINE))
    declared = set(re.findall(r"KB_API\s+[\w\s\*]+?\b(kb_\w+)\(", HEADER.read_text()))
    assert declared and exported == declared, exported ^ declared


def test_loader_drives_the_dll_like_the_ea_against_real_peers(win_dir: Path) -> None:
    wine = shutil.which("wine")
    assert wine, "wine is not installed (APT_PACKAGES in mk/bridge.mk)"
    expected = expected_ticks()
    commands = [
        bridge_pb2.OrderCommand(
            command_id=100 + i,
            client_order_id=f"K-WINE-{i}",
            kind=bridge_pb2.COMMAND_KIND_PLACE,
            symbol="EURUSD",
            side=bridge_pb2.SIDE_BUY if i % 2 == 0 else bridge_pb2.SIDE_SELL,
            order_type=bridge_pb2.ORDER_TYPE_MARKET,
            volume=types_pb2.Decimal(units=10 * (i + 1), scale=2),
            deviation_points=10,
        )
        for i in range(3)
    ]
    # Both peers check the bridge key as the services do: the DLL's SHA-256/HMAC and its rand_s
    # nonces run under Windows (Wine) here, not only in the Linux build.
    key = "wine-bridge-key-0123456789abcdef"
    with BridgePeer(key=key) as md, BridgePeer(key=key) as tr:
        history_request = bridge_pb2.HistoryRequest(
            request_id=7,
            symbol="EURUSD",
            kind=marketdata_pb2.HISTORY_KIND_TICKS,
            from_msc=1577898000000,  # 2020-01-01 17:00 UTC: the file's first hour
            to_msc=1577901600000,
        )

        def send_commands() -> None:
            if tr.wait_for(lambda: tr.welcomed >= 1, timeout=120):
                for c in commands:
                    tr.send_command(c)
            # The collector's side of history: one chunk asked for on the market-data connection.
            md.wait_for(lambda: md.welcomed >= 1, timeout=120)
            md.send_history_request(history_request)

        sender = threading.Thread(target=send_commands, daemon=True)
        sender.start()
        csv_windows_path = "Z:" + str(TICKS_CSV).replace("/", "\\")
        proc = subprocess.run(
            [
                wine,
                str(win_dir / "kb_loader.exe"),
                "Z:" + str(win_dir / "kairos_bridge.dll").replace("/", "\\"),
                md.endpoint,
                tr.endpoint,
                csv_windows_path,
                str(len(commands)),
                key,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        sender.join(timeout=1)
        output = f"{proc.stdout}\n{proc.stderr[-3000:]}"
        assert proc.returncode == 0, f"loader failed ({proc.returncode}):\n{output}"
        assert "loader: ok" in proc.stdout
        assert md.wait_for(lambda: len(tr.transactions) == len(commands), timeout=10)

        # Every tick arrived intact, once, in order, in UTC, with per-symbol sequences from 1.
        got = md.ticks
        assert len(got) == len(expected) == 9500
        assert got.sequence == list(range(1, len(expected) + 1))
        assert got.time_msc == [t for t, _, _ in expected]
        assert got.bid == [b for _, b, _ in expected]
        assert got.ask == [a for _, _, a in expected]
        assert set(got.symbol) == {"EURUSD"}
        assert set(got.flags) == {6}
        assert md.tick_order_violations == 0 and md.duplicates == 0 and md.malformed == 0
        assert md.symbol_infos and md.symbol_infos[0].symbol == "EURUSD" and md.symbol_infos[0].digits == 5
        hello = md.hellos[0]
        assert hello.channel == bridge_pb2.CHANNEL_MARKET_DATA
        assert hello.terminal_name == "MetaTrader 5 (Wine)"
        assert hello.account_login == 5550001 and hello.api_version == 4
        # The peers verified each proof (a wrong one is refused): the Windows build's HMAC agrees.
        assert len(hello.auth_proof) == 32 and md.auth_failures == 0 and tr.auth_failures == 0
        assert hello.client_nonce != tr.hellos[0].client_nonce, "nonces must be fresh per connection"

        # Every command came down once and its result and deal came back, mapped to its client order id.
        assert tr.hellos[0].channel == bridge_pb2.CHANNEL_TRADING
        assert tr.hellos[0].session_id == hello.session_id
        assert [r.command_id for r in tr.results] == [c.command_id for c in commands]
        for cmd, res, tx in zip(commands, tr.results, tr.transactions, strict=True):
            assert res.client_order_id == cmd.client_order_id
            assert res.status == bridge_pb2.BRIDGE_STATUS_SENT and res.retcode == 10009
            assert res.deal_ticket == 80000 + cmd.command_id
            assert (res.volume.units, res.volume.scale) == (cmd.volume.units, 2)
            assert (res.price.units, res.price.scale) == (112172, 5)
            assert tx.client_order_id == cmd.client_order_id and tx.deal_ticket == res.deal_ticket
            assert tx.symbol == "EURUSD"
        assert tr.duplicates == 0

        # The EA's self-check reached the execution side as a TerminalCheck frame.
        assert tr.wait_for(lambda: len(tr.checks) == 1, timeout=10)
        assert not tr.checks[0].terminal_trade_allowed and "Algo Trading" in tr.checks[0].problems

        # History: the hour's ticks came back through the Windows DLL in parts, in UTC, the verdict last.
        assert md.wait_for(lambda: bool(md.history) and md.history[-1].status != 1, timeout=10)
        hour = [(t, b, a) for t, b, a in expected if 1577898000000 <= t < 1577901600000]
        parts = md.history
        assert [p.part for p in parts] == list(range(len(parts))) and {p.request_id for p in parts} == {7}
        rows = [
            (t, b, a)
            for p in parts
            for t, b, a in zip(p.ticks.time_msc, p.ticks.bid, p.ticks.ask, strict=True)
        ]
        assert rows == hour and len(hour) > 100
        assert parts[-1].status == marketdata_pb2.HISTORY_STATUS_DONE and parts[-1].total == len(hour)
