"""Strategy Tester lockstep under Wine (ADR 0095; run by `make test-bridge-wine`, part of `make test`).

Not collected by the plain pytest run (the file name does not start with test_): it needs the
MinGW-w64 build in $KAIROS_BRIDGE_WIN_DIR. The loader drives the real kairos_bridge.dll as the MT5
Strategy Tester drives the Expert Advisor: the bridge opened in lockstep, one tick per OnTick on the
data's own (virtual) time, `kb_tester_wait` after each, the execution service's commands filled by
the "tester" at that tick's prices. Against it run the real collector, inference server and execution
service (MT5 venue, `--clock=market`).

Done when (issue #18): the lockstep run holds the same positions, bar for bar, as a replay of the
same ticks through the same stack with the paper venue (the reference, paced on every decision like
tests/e2e/test_policy_parity.py). The data are the last bars of the real GBPUSD M1 file, four ticks a
bar with the real spread; the model is the checked-in fixture with a lively policy whose stops lie
out of the replay's reach (the tester here does not simulate stops).

The timeout path: the same loader against a stack whose inference server is down. Every step times
out with KB_E_TIMEOUT, is counted and logged, and every tick still reaches the collector.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import grpc
import numpy as np
import pytest
from tests.inference.harness import lively, offline_predictions, with_card

from kairos.execution.v1 import execution_pb2, execution_pb2_grpc
from kairos.features import BarBuilder, ModelCard, bars_to_frame
from kairos.stack import pnl, processes, replay, services
from kairos.training.data import load_bars

MODEL = services.REPO / "python" / "tests" / "data" / "model" / "model.onnx"
BID = services.SHARED_DATA / "gbpusd-m1-bid-2012.csv"
ASK = services.SHARED_DATA / "gbpusd-m1-ask-2012.csv"
SYMBOL = "GBPUSD"
BARS = 900  # 256 bars of warm-up, then about 640 decisions
STEP_TIMEOUT_MS = 10_000  # generous: a timeout in the main run is a failure
SIGNAL_WAIT_S = 10.0
# Both runs: the engine on the data's time, market orders filled at the quote (the tester's price),
# repeated entries minutes apart in data time are not the accidental duplicate that guard is for.
COMMON_ARGS = ("--clock=market", "--duplicate-intent-window-ms=0")


@pytest.fixture(scope="module")
def win_dir() -> Path:
    value = os.environ.get("KAIROS_BRIDGE_WIN_DIR")
    assert value, "KAIROS_BRIDGE_WIN_DIR is not set: run `make test-bridge-wine`"
    path = Path(value)
    assert (path / "kb_loader.exe").is_file(), f"{path}/kb_loader.exe missing: run `make bridge-dll`"
    return path


@dataclass
class Data:
    model: Path
    t_ms: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    decision_ticks: list[int]  # index of every tick that closes a bar the model decides on
    csv: Path


@dataclass
class Reference:
    decision_times: list[int]
    lots: list[Decimal]  # the net position after each decision
    fills: list[tuple[float, float]]  # (signed lots, price) of every filled strategy order
    orders: list[execution_pb2.Order]


@dataclass
class Lockstep:
    stdout: str
    fills: list[tuple[int, float, float]]  # (tick time ms, signed lots, price)
    tester: dict[str, int]
    position: float
    stack_net: Decimal
    orders: list[execution_pb2.Order]


def _csv_line(t: int, b: float, a: float) -> str:
    d = datetime.fromtimestamp(t / 1000, UTC)
    return f"{d:%Y%m%d %H%M%S}{t % 1000:03d},{b:.5f},{a:.5f}\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("tester-data")
    card = lively(ModelCard.from_onnx(MODEL), 60.0)  # stops set on every entry, out of the replay's reach
    model = with_card(MODEL, root / "model" / "model.onnx", policy=card.policy)
    bars, _ = load_bars(str(BID), ask_source=str(ASK))
    frame = bars.iloc[-BARS:].reset_index(drop=True)
    t_ms, bid, ask = replay.bars_to_ticks(frame, 1e-5, 2e-5)
    bid, ask = np.round(bid, 5), np.round(ask, 5)
    builder = BarBuilder(card.timeframe_s)
    closed, closing = [], []
    for k, (t, b_, a) in enumerate(zip(t_ms, bid, ask, strict=True)):
        for b in builder.add_tick(int(t), b_, a):
            closed.append(b)
            closing.append(k)
    rows, _ = offline_predictions(model, bars_to_frame(closed))
    csv = root / "ticks.csv"
    csv.write_text(
        "".join(_csv_line(int(t), float(b), float(a)) for t, b, a in zip(t_ms, bid, ask, strict=True))
    )
    return Data(model, t_ms, bid, ask, [closing[r] for r in rows], csv)


def _settings(run_dir: Path, model: Path, *args: str) -> services.StackSettings:
    settings = services.StackSettings(
        ports=services.Ports.free(),
        run_dir=run_dir,
        model=str(model),
        execution_args=(*COMMON_ARGS, *args),
        collector_args=services.TESTER_COLLECTOR_ARGS,  # both runs warm on their own bars
    )
    settings.mlflow_uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    return settings


def _auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _net(stub: execution_pb2_grpc.ExecutionServiceStub, token: str) -> Decimal:
    resp = stub.ListPositions(
        execution_pb2.ListPositionsRequest(symbol=SYMBOL, include_flat=True), metadata=_auth(token), timeout=5
    )
    return next((pnl.to_decimal(p.net_quantity) for p in resp.positions if p.symbol == SYMBOL), Decimal(0))


def _orders(stub: execution_pb2_grpc.ExecutionServiceStub, token: str) -> list[execution_pb2.Order]:
    resp = stub.ListOrders(
        execution_pb2.ListOrdersRequest(symbol=SYMBOL, page_size=1000), metadata=_auth(token), timeout=5
    )
    return sorted(resp.orders, key=lambda o: (o.created_time_us, o.client_order_id))


def _unfilled(orders: list[execution_pb2.Order]) -> list[tuple[str, str, str, str]]:
    return [
        (o.client_order_id, execution_pb2.OrderStatus.Name(o.status), o.reject_reason, str(o.denial).strip())
        for o in orders
        if o.status != execution_pb2.ORDER_STATUS_FILLED
    ]


def _signed(o: execution_pb2.Order) -> float:
    q = float(pnl.to_decimal(o.filled_quantity))
    return q if o.side == execution_pb2.ORDER_SIDE_BUY else -q


@pytest.fixture(scope="module")
def reference(data: Data, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """The same ticks replayed through the stack with the paper venue, paced on every decision."""
    from kairos.bridge.client import Bridge, BridgeOptions, Status

    run_dir = tmp_path_factory.mktemp("reference")
    settings = _settings(
        run_dir, data.model, "--paper-slippage-points=0", "--paper-slippage-points-per-lot=0"
    )
    binaries = services.build_go_binaries(settings.bin_dir)
    stack = processes.Stack(run_dir)
    metrics_url = f"http://127.0.0.1:{settings.ports.execution_metrics}/metrics"

    def signals() -> float:
        samples = services.metric_samples(metrics_url, "kairos_execution_signals_total")
        return sum(v for k, v in samples.items() if f'symbol="{SYMBOL}"' in k)

    try:
        stack.start_all(services.specs(settings, binaries))
        services.wait_pipeline_ready(settings)
        token = settings.ensure_token()
        times: list[int] = []
        lots: list[Decimal] = []
        with (
            Bridge(
                collector=f"127.0.0.1:{settings.ports.collector_bridge}",
                execution="",
                options=BridgeOptions(tick_queue_capacity=1 << 16),
                bridge_key=settings.ensure_bridge_key(),
            ) as bridge,
            grpc.insecure_channel(f"127.0.0.1:{settings.ports.execution_grpc}") as ch,
        ):
            stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
            bridge.announce_symbol(SYMBOL, 5, contract_size=100_000.0)
            decide = set(data.decision_ticks)
            seen = 0.0
            t_ms, bid, ask = data.t_ms, data.bid, data.ask
            for k in range(len(t_ms)):
                while bridge.push_quotes(SYMBOL, 5, t_ms[k : k + 1], bid[k : k + 1], ask[k : k + 1]) == (
                    Status.E_QUEUE_FULL
                ):
                    time.sleep(0.0005)
                if k in decide:
                    deadline = time.monotonic() + SIGNAL_WAIT_S
                    while signals() <= seen:
                        stack.raise_if_dead()
                        assert time.monotonic() < deadline, f"no signal handled for the tick at {t_ms[k]}"
                        time.sleep(0.002)
                    seen += 1
                    times.append(int(t_ms[k]))
                    lots.append(_net(stub, token))
            orders = _orders(stub, token)
            fills = [
                (_signed(o), float(pnl.to_decimal(o.avg_fill_price)))
                for o in orders
                if o.strategy_id and o.status == execution_pb2.ORDER_STATUS_FILLED
            ]
        yield Reference(times, lots, fills, orders)
    finally:
        stack.stop()


FILL = re.compile(r"^fill (\d+) (buy|sell) ([\d.]+) ([\d.]+) (\S+)$", re.MULTILINE)


def _run_loader(
    win_dir: Path, settings: services.StackSettings, csv: Path, timeout_ms: int
) -> subprocess.CompletedProcess[str]:
    wine = shutil.which("wine")
    assert wine, "wine is not installed (APT_PACKAGES in mk/bridge.mk)"
    return subprocess.run(
        [
            wine,
            str(win_dir / "kb_loader.exe"),
            "--tester",
            "Z:" + str(win_dir / "kairos_bridge.dll").replace("/", "\\"),
            f"127.0.0.1:{settings.ports.collector_bridge}",
            f"127.0.0.1:{settings.ports.execution_bridge}",
            "Z:" + str(csv).replace("/", "\\"),
            settings.ensure_bridge_key(),
            str(timeout_ms),
            SYMBOL,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )


def _tester_line(stdout: str) -> dict[str, int]:
    m = re.search(r"^tester (\{.*\})$", stdout, re.MULTILINE)
    assert m, stdout[-3000:]
    return {k: int(v) for k, v in json.loads(m.group(1)).items()}


@pytest.fixture(scope="module")
def lockstep(data: Data, win_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lockstep]:
    """The loader as the Strategy Tester, the stack with the MT5 venue on the tester's time."""
    run_dir = tmp_path_factory.mktemp("lockstep")
    # What `kairos up --tester` starts.
    settings = _settings(run_dir, data.model, *services.TESTER_EXECUTION_ARGS)
    binaries = services.build_go_binaries(settings.bin_dir)
    stack = processes.Stack(run_dir)
    try:
        stack.start_all(services.specs(settings, binaries))
        services.wait_pipeline_ready(settings)
        token = settings.ensure_token()
        started = time.monotonic()
        proc = _run_loader(win_dir, settings, data.csv, STEP_TIMEOUT_MS)
        elapsed = time.monotonic() - started
        out = f"{proc.stdout}\n{proc.stderr[-3000:]}"
        assert proc.returncode == 0, f"loader failed ({proc.returncode}):\n{out[-6000:]}"
        assert "loader: ok" in proc.stdout
        fills = [
            (int(t), float(v) if side == "buy" else -float(v), float(p))
            for t, side, v, p, _ in FILL.findall(proc.stdout)
        ]
        m = re.search(rf"^position {SYMBOL} (-?[\d.]+)$", proc.stdout, re.MULTILINE)
        assert m, out[-3000:]
        tester = _tester_line(proc.stdout)
        print(
            f"\nlockstep: {len(data.t_ms)} ticks in {elapsed:.1f} s "
            f"({len(data.t_ms) / elapsed:.0f} steps/s), {tester}"
        )
        with grpc.insecure_channel(f"127.0.0.1:{settings.ports.execution_grpc}") as ch:
            stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
            net, orders = _net(stub, token), _orders(stub, token)
        yield Lockstep(proc.stdout, fills, tester, float(m.group(1)), net, orders)
    finally:
        stack.stop()


def test_every_tick_is_one_step_and_none_times_out(data: Data, lockstep: Lockstep) -> None:
    t = lockstep.tester
    assert t["ticks"] == t["ticks_acked"] == len(data.t_ms)
    assert t["timeouts"] == t["tick_timeouts"] == 0 and "KB_E_TIMEOUT" not in lockstep.stdout
    assert t["steps"] >= len(data.t_ms)
    # One tick per frame: each frame is a decision or the collector's "no decision" marker.
    assert t["decisions"] == len(data.decision_ticks)
    assert t["no_decision"] == len(data.t_ms) - len(data.decision_ticks)
    assert t["reports_dropped"] == 0


def test_the_lockstep_run_holds_the_replays_positions_bar_for_bar(
    data: Data, reference: Reference, lockstep: Lockstep
) -> None:
    assert len(reference.decision_times) == len(data.decision_ticks) >= 600
    live = [float(x) for x in reference.lots]
    tester, net, k = [], 0.0, 0
    for t in reference.decision_times:
        while k < len(lockstep.fills) and lockstep.fills[k][0] <= t:
            net = round(net + lockstep.fills[k][1], 2)
            k += 1
        tester.append(net)
    assert k == len(lockstep.fills), "a fill after the last decision"
    changes = sum(1 for a, b in zip([0.0, *live], live, strict=False) if a != b)
    mismatches = [(t, a, b) for t, a, b in zip(reference.decision_times, live, tester, strict=True) if a != b]
    print(
        f"\nlockstep vs replay: {len(live)} decisions, {changes} position changes, "
        f"{len(mismatches)} mismatches"
    )
    assert changes >= 15, "the replay should exercise the policy"
    assert not mismatches, (mismatches[:10], _unfilled(reference.orders), _unfilled(lockstep.orders))
    # Neither run refused an order (under the market clock a decision sees its own tick's quote, never
    # the previous one as stale).
    assert not _unfilled([o for o in reference.orders if o.strategy_id])
    # The same orders, in the same order, at the same prices: the tester fills at the deciding tick, and
    # the paper venue (no slippage) at the quote the decision saw, the same tick's.
    assert [q for q, _ in reference.fills] == pytest.approx([q for _, q, _ in lockstep.fills])
    same_price = sum(
        1 for (_, a), (_, _, b) in zip(reference.fills, lockstep.fills, strict=True) if abs(a - b) < 1e-9
    )
    print(f"fill prices equal: {same_price} of {len(lockstep.fills)}")
    assert same_price == len(lockstep.fills)


def test_the_stack_books_the_testers_fills_on_the_testers_time(data: Data, lockstep: Lockstep) -> None:
    assert float(lockstep.stack_net) == pytest.approx(lockstep.position)
    strategy = [o for o in lockstep.orders if o.strategy_id]
    assert len(strategy) == len(lockstep.fills)
    assert all(o.status == execution_pb2.ORDER_STATUS_FILLED for o in strategy), _unfilled(strategy)
    assert [_signed(o) for o in strategy] == pytest.approx([q for _, q, _ in lockstep.fills])
    # --clock=market: orders carry the data's (virtual) time, not the machine's.
    first, last = int(data.t_ms[0]) * 1000, int(data.t_ms[-1]) * 1000
    assert all(first <= o.created_time_us <= last for o in strategy), [
        o.created_time_us for o in strategy[:3]
    ]


def test_a_step_the_stack_cannot_decide_times_out_counted_and_logged(
    data: Data, win_dir: Path, tmp_path: Path
) -> None:
    """Inference down: the collector's marker is never answered, so every step times out; the DLL
    says KB_E_TIMEOUT, counts it, the loader logs it as the EA does, and no tick is lost."""
    n = 12
    csv = tmp_path / "ticks.csv"
    csv.write_text("".join(data.csv.read_text().splitlines(keepends=True)[:n]))
    settings = _settings(tmp_path / "run", data.model, *services.TESTER_EXECUTION_ARGS)
    binaries = services.build_go_binaries(settings.bin_dir)
    stack = processes.Stack(settings.run_dir)
    try:
        # Collector and execution only: the collector's inference endpoint has nobody listening.
        stack.start_all([s for s in services.specs(settings, binaries) if s.name != "inference"])
        proc = _run_loader(win_dir, settings, csv, 200)
        out = f"{proc.stdout}\n{proc.stderr[-3000:]}"
        assert proc.returncode == 0, f"loader failed ({proc.returncode}):\n{out[-6000:]}"
        t = _tester_line(proc.stdout)
        # Each tick's wait, and the last one at the end of the test (OnDeinit), timed out.
        assert t["tick_timeouts"] == n and t["timeouts"] == n + 1 and t["steps"] == 0, t
        assert t["ticks"] == t["ticks_acked"] == n, "every tick reached the collector"
        logged = re.findall(
            r"^Kairos tester: no decision on the tick at \d+ within 200 ms \(KB_E_TIMEOUT\)",
            proc.stdout,
            re.MULTILINE,
        )
        assert len(logged) == n
        assert "waiting for the collector's answer" in proc.stdout
    finally:
        stack.stop()
