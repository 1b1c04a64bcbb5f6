"""kairos.stack: replay input, P&L recomputation, hop latencies, process supervision, the CLI's errors."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from kairos.execution.v1 import execution_pb2
from kairos.features import BarBuilder
from kairos.stack import observe, pnl, processes, replay, services
from kairos.types.v1 import types_pb2

TICKS = services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"


def test_replay_reads_the_real_tick_file_in_utc_milliseconds() -> None:
    data = replay.load(str(TICKS), symbol="EURUSD", strict=True)
    assert data.kind == "ticks" and data.digits == 5 and len(data.time_msc) == 9500
    assert int(data.time_msc[0]) == 1577898000065  # 20200101 170000065
    assert data.rejected == []


def test_replayed_bars_rebuild_into_the_same_bars() -> None:
    """Four ticks per bar (MT5 '1 minute OHLC') give the collector back the file's bars."""
    data = replay.load("sample:eurusd-h1", symbol="EURUSD", last=200)
    assert data.kind == "bars" and len(data.time_msc) == 800
    builder = BarBuilder(3600)
    bars = []
    for t, b, a in zip(data.time_msc, data.bid, data.ask, strict=True):
        bars.extend(builder.add_tick(int(t), float(b), float(a)))
    bars.extend(builder.flush())
    assert len(bars) == 200
    o, h, lo, c = data.bid[0::4], data.bid, data.bid, data.bid[3::4]
    assert [b.open for b in bars] == pytest.approx(list(o))
    assert [b.close for b in bars] == pytest.approx(list(c))
    for i, bar in enumerate(bars):
        assert bar.high == pytest.approx(h[4 * i : 4 * i + 4].max())
        assert bar.low == pytest.approx(lo[4 * i : 4 * i + 4].min())
        assert bar.tick_volume == 4


def test_replay_skips_bad_rows_naming_file_line_and_field(tmp_path: Path) -> None:
    lines = TICKS.read_text().splitlines()[:50]
    lines[9] = "20200101 170100000,abc,1.12172,0"
    lines[19] = "20200101 170200000,1.1212,-1,0"
    bad = tmp_path / "ticks.csv"
    bad.write_text("\n".join(lines) + "\n")
    data = replay.load(str(bad), symbol="EURUSD")
    assert len(data.time_msc) == 48
    assert len(data.rejected) == 2
    assert f"{bad}:10" in data.rejected[0] and "bid" in data.rejected[0]
    assert f"{bad}:20" in data.rejected[1] and "ask" in data.rejected[1]
    with pytest.raises(replay.BadData, match=rf"{bad}:10"):
        replay.load(str(bad), symbol="EURUSD", strict=True)


def test_kairos_replay_strict_exits_2_with_the_bad_line(tmp_path: Path) -> None:
    bad = tmp_path / "ticks.csv"
    bad.write_text("20200101 170000065,1.1212,1.12172,0\n20200101 170000066,x,1.12172,0\n")
    args = ["replay", str(bad), "--strict", "--symbol", "EURUSD", "--collector", "127.0.0.1:9"]
    out = subprocess.run(
        [sys.executable, "-m", "kairos.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert f"{bad}:2" in out.stderr.replace("\n", "")


def _fill(
    trade: str, side: execution_pb2.OrderSide, qty: str, price: str, t: int, commission: str = "0"
) -> execution_pb2.Fill:
    def dec(s: str) -> types_pb2.Decimal:
        d = Decimal(s)
        exp = -int(d.as_tuple().exponent)
        return types_pb2.Decimal(units=int(d.scaleb(exp)), scale=exp)

    return execution_pb2.Fill(
        trade_id=trade,
        symbol="EURUSD",
        side=side,
        quantity=dec(qty),
        price=dec(price),
        commission=dec(commission),
        time_us=t,
    )


BUY, SELL = execution_pb2.ORDER_SIDE_BUY, execution_pb2.ORDER_SIDE_SELL


@pytest.mark.parametrize(
    ("fills", "net", "realized"),
    [
        ([_fill("1", BUY, "0.10", "1.10000", 1), _fill("2", SELL, "0.10", "1.10100", 2)], "0", "10"),
        ([_fill("1", SELL, "0.10", "1.10000", 1), _fill("2", BUY, "0.10", "1.10100", 2)], "0", "-10"),
        # Adding at a second price averages the entry; a partial close realizes against the average.
        (
            [_fill("1", BUY, "0.10", "1.10000", 1), _fill("2", BUY, "0.10", "1.10200", 2),
             _fill("3", SELL, "0.10", "1.10300", 3)],
            "0.10", "20",
        ),
        # A flip realizes the closed part and opens the rest at the fill price.
        ([_fill("1", BUY, "0.10", "1.10000", 1), _fill("2", SELL, "0.30", "1.09900", 2)], "-0.20", "-10"),
        # The same deal reported twice counts once.
        ([_fill("1", BUY, "0.10", "1.10000", 1), _fill("1", BUY, "0.10", "1.10000", 1)], "0.10", "0"),
    ],
)  # fmt: skip
def test_pnl_recompute_uses_average_cost_in_exact_decimals(
    fills: list[execution_pb2.Fill], net: str, realized: str
) -> None:
    book = pnl.recompute(fills)["EURUSD"]
    assert book.net_lots == Decimal(net)
    assert book.realized == Decimal(realized)


def test_pnl_after_a_flip_marks_the_new_position_from_the_flip_price() -> None:
    book = pnl.recompute([_fill("1", BUY, "0.10", "1.10000", 1), _fill("2", SELL, "0.30", "1.09900", 2)])[
        "EURUSD"
    ]
    assert book.avg_price == Decimal("1.09900")
    assert book.unrealized(Decimal("1.09800"), Decimal(100_000)) == Decimal("20")


def test_hop_latencies_are_between_consecutive_stamped_stages() -> None:
    hops = [
        types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_VENUE_ACK, time_us=1_000),
        types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_BRIDGE_SEND, time_us=100),
        types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_COLLECTOR_RECEIVE, time_us=150),
    ]
    assert observe.hop_latencies(hops) == {
        "bridge_send->collector_receive": 50.0,
        "collector_receive->venue_ack": 850.0,
        "total:bridge_send->venue_ack": 900.0,
    }


def test_a_service_that_exits_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    spec = processes.ServiceSpec(
        name="broken",
        argv=[sys.executable, "-c", "import sys; print('no model configured'); sys.exit(4)"],
        grpc_addr=f"127.0.0.1:{services.free_port()}",
        ready_timeout_s=20,
    )
    with processes.Stack(tmp_path) as stack, pytest.raises(processes.ServiceDied) as err:
        stack.wait_ready(stack.start(spec))
    assert "exited with status 4" in str(err.value)
    assert "no model configured" in err.value.log_tail


def test_stop_ends_every_process_and_forgets_the_state(tmp_path: Path) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    stack = processes.Stack(tmp_path)
    started = [stack.start(processes.ServiceSpec(name=f"s{i}", argv=sleeper, grpc_addr="")) for i in range(2)]
    recorded = processes.recorded_services(tmp_path)
    assert [r.name for r in recorded] == ["s0", "s1"] and all(r.alive() for r in recorded)
    stack.stop(timeout_s=5)
    assert all(s.process.poll() is not None for s in started)
    assert processes.recorded_services(tmp_path) == []


def test_a_recorded_pid_is_not_alive_once_its_process_is_gone(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    rec = processes.RecordedService("x", proc.pid, [sys.executable], "", "", "", start_ticks=12345)
    assert not rec.alive()


@pytest.mark.parametrize(
    ("tester", "venue", "last_venue"),
    [(False, "paper", "--venue=paper"), (False, "mt5", "--venue=mt5"), (True, "paper", "--venue=mt5")],
)
def test_kairos_up_sends_orders_to_the_venue_asked_for(
    tmp_path: Path, tester: bool, venue: str, last_venue: str
) -> None:
    settings = services.StackSettings(
        ports=services.Ports.free(),
        run_dir=tmp_path,
        model="m.onnx",
        execution_args=services.up_execution_args(tester, venue),
    )
    bins = {n: tmp_path / n for n in ("kairos-collector", "kairos-execution")}
    (spec,) = [s for s in services.specs(settings, bins) if s.name == "execution"]
    venues = [a for a in spec.argv if a.startswith("--venue=")]
    assert venues[-1] == last_venue  # the last flag wins (Go's flag package)
    assert ("--clock=market" in spec.argv) == tester


def test_kairos_up_refuses_an_unknown_venue_before_starting_anything(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kairos.cli", "up", "--venue", "ib", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "'paper'" in out.stderr and "'mt5'" in out.stderr
    assert not any(tmp_path.iterdir()), "nothing started"
