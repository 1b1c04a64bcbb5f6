"""kairos.bridge.client: the Python extension drives the DLL's client code against a real TCP peer."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import kairos.bridge.client as kb
from kairos.bridge.peer import BridgePeer
from kairos.bridge.v1 import bridge_pb2
from kairos.training.data import read_ticks
from kairos.types.v1 import types_pb2
from kairos.wirecheck import DEFAULT_TICKS


@pytest.fixture(scope="module")
def real_ticks() -> np.ndarray:
    ticks = read_ticks(str(DEFAULT_TICKS))
    return kb.quote_ticks(ticks["time_msc"], ticks["bid"], ticks["ask"])


@pytest.fixture
def peer() -> Iterator[BridgePeer]:
    with BridgePeer() as p:
        yield p


def dead_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_missing_extension_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAIROS_BRIDGE_EXT", str(tmp_path / "nope.so"))
    monkeypatch.setattr(kb, "_EXT", None)
    with pytest.raises(kb.BridgeNotBuiltError, match="make cpp-build"):
        kb.load_extension()


def test_mql_tick_dtype_matches_the_abi() -> None:
    assert kb.MQL_TICK_DTYPE.itemsize == kb.load_extension().MQL_TICK_SIZE == 60


def test_replayed_real_ticks_arrive_intact_and_in_order(peer: BridgePeer, real_ticks: np.ndarray) -> None:
    offset = 2 * 3600 * 1000
    server_time = real_ticks.copy()
    server_time["time_msc"] += offset
    with kb.Bridge(peer.endpoint, "") as bridge:
        bridge.set_server_offset(offset)
        for start in range(0, len(server_time), 500):
            assert bridge.push_ticks("EURUSD", 5, server_time[start : start + 500]) == kb.Status.OK
        assert peer.wait_for(lambda: len(peer.ticks) == len(real_ticks), timeout=20)
        counters = bridge.counters()
    got = peer.ticks
    assert got.time_msc == real_ticks["time_msc"].tolist()
    assert got.bid == real_ticks["bid"].tolist()
    assert got.ask == real_ticks["ask"].tolist()
    assert got.sequence == list(range(1, len(real_ticks) + 1))
    assert peer.duplicates == 0 and peer.tick_order_violations == 0
    assert counters["ticks_sent"] == len(real_ticks) and counters["ticks_dropped"] == 0
    assert peer.symbol_infos[0].symbol == "EURUSD"


def test_parallel_arrays_push_the_same_ticks(peer: BridgePeer, real_ticks: np.ndarray) -> None:
    with kb.Bridge(peer.endpoint, "") as bridge:
        status = bridge.push_quotes("EURUSD", 5, real_ticks["time_msc"], real_ticks["bid"], real_ticks["ask"])
        assert status == kb.Status.OK
        assert peer.wait_for(lambda: len(peer.ticks) == len(real_ticks), timeout=20)
    assert peer.ticks.bid == real_ticks["bid"].tolist()
    assert set(peer.ticks.flags) == {6}


def test_commands_come_down_and_results_go_up(peer: BridgePeer) -> None:
    with kb.Bridge("", peer.endpoint, account_login=42) as bridge:
        assert peer.wait_for(lambda: bridge.counters()["trading_connected"] == 1, timeout=5)
        sent = bridge_pb2.OrderCommand(
            command_id=9,
            client_order_id="K-9",
            kind=bridge_pb2.COMMAND_KIND_PLACE,
            symbol="EURUSD",
            side=bridge_pb2.SIDE_SELL,
            order_type=bridge_pb2.ORDER_TYPE_LIMIT,
            volume=types_pb2.Decimal(units=5, scale=1),
            price=types_pb2.Decimal(units=112500, scale=5),
        )
        assert peer.send_command(sent)
        commands: list[kb.Command] = []

        def polled() -> bool:
            got = bridge.poll_command()
            if got is not None:
                commands.append(got)
            return bool(commands)

        assert peer.wait_for(polled, timeout=5)
        cmd = commands[0]
        assert (cmd.command_id, cmd.client_order_id, cmd.symbol) == (9, "K-9", "EURUSD")
        assert (cmd.side, cmd.order_type, cmd.volume, cmd.price) == (2, 2, 0.5, 1.125)
        assert bridge.poll_command() is None
        status = bridge.report_result(
            9,
            client_order_id="K-9",
            retcode=10008,
            order_ticket=777,
            volume=0.5,
            price=1.125,
            comment="placed",
        )
        assert status == kb.Status.OK
        assert peer.wait_for(lambda: len(peer.results) == 1, timeout=5)
    result = peer.results[0]
    assert (result.command_id, result.client_order_id) == (9, "K-9")
    assert (result.retcode, result.order_ticket) == (10008, 777)
    assert (result.price.units, result.price.scale) == (112500, 5)
    assert peer.hellos[0].account_login == 42


def test_bad_input_raises_with_the_status_code(real_ticks: np.ndarray) -> None:
    with pytest.raises(kb.BridgeError) as err:
        kb.Bridge("localhost", "")
    assert err.value.status == kb.Status.E_BAD_ENDPOINT
    with kb.Bridge(dead_endpoint(), "") as bridge:
        bad = real_ticks[:3].copy()
        bad["bid"] = np.nan
        with pytest.raises(kb.BridgeError) as err:
            bridge.push_ticks("EURUSD", 5, bad)
        assert err.value.status == kb.Status.E_NON_FINITE
        with pytest.raises(kb.BridgeError) as err:
            bridge.push_ticks("X" * 40, 5, real_ticks[:3])
        assert err.value.status == kb.Status.E_STRING_TOO_LONG
        with pytest.raises(TypeError):
            bridge.push_ticks("EURUSD", 5, np.zeros(3, dtype=np.float64))
        with pytest.raises(kb.BridgeError) as err:
            bridge.poll_command()
        assert err.value.status == kb.Status.E_NO_CHANNEL
        assert bridge.counters()["ticks_rejected"] == 3
    bridge.close()  # a second close is a no-op


def test_full_ring_returns_queue_full_and_counts(real_ticks: np.ndarray) -> None:
    options = kb.BridgeOptions(tick_queue_capacity=1024)
    with kb.Bridge(dead_endpoint(), "", options=options) as bridge:
        assert bridge.push_ticks("EURUSD", 5, real_ticks[:1024]) == kb.Status.OK
        assert bridge.push_ticks("EURUSD", 5, real_ticks[1024:1030]) == kb.Status.E_QUEUE_FULL
        counters = bridge.counters()
    assert counters["ticks_dropped"] == 6 and counters["tick_queue_depth"] == 1024


def test_tester_lockstep_waits_for_the_step_and_live_mode_never_waits(real_ticks: np.ndarray) -> None:
    """kb_tester_wait through the extension (ADR 0095): a live bridge refuses it at once; a lockstep
    bridge times out (counted) until the collector answers the pushed tick, then the step is done."""
    with BridgePeer() as live_peer, kb.Bridge(live_peer.endpoint, "") as live:
        with pytest.raises(kb.BridgeError) as e:
            live.tester_wait(100)
        assert e.value.status == kb.Status.E_STATE
    with (
        BridgePeer() as peer,
        kb.Bridge(peer.endpoint, "", options=kb.BridgeOptions(lockstep=1)) as bridge,
    ):
        assert bridge.push_ticks("EURUSD", 5, real_ticks[:1]) == kb.Status.OK
        assert bridge.tester_wait(150) == kb.Status.E_TIMEOUT
        assert peer.wait_for(lambda: len(peer.ticks) == 1, timeout=5)
        assert peer.hellos[0].lockstep
        assert peer.send_tester_step(bridge_pb2.TesterStep(symbol="EURUSD", tick_sequence=1))
        assert bridge.tester_wait(3000) == kb.Status.OK
        c = bridge.counters()
        assert (c["tester_timeouts"], c["tester_steps"], c["tester_no_decision"]) == (1, 1, 1)
        assert any("tester step: no decision within 150 ms" in line for line in bridge.drain_log())
