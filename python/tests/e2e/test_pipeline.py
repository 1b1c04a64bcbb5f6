"""End to end: real ticks through the bridge library, collector, inference and execution.

Every component is real: the bridge's C++ client (Python extension), the Go collector with its
embedded NATS server, the Python inference server with the checked-in model trained on real data,
and the Go execution service with the paper venue and a SQLite journal. One stack is started for
the module; the replay of the shared EURUSD tick file runs once and every test checks one promise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from tests.inference.harness import with_card

from kairos.execution.v1 import execution_pb2, execution_pb2_grpc
from kairos.features import BarBuilder, ModelCard
from kairos.stack import observe, pnl, processes, replay, services

pytestmark = pytest.mark.slow

MODEL = services.REPO / "python" / "tests" / "data" / "model" / "model.onnx"
TICKS = services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"


@dataclass
class Run:
    settings: services.StackSettings
    stack: processes.Stack
    binaries: dict[str, Path]
    data: replay.ReplayData
    result: replay.ReplayResult
    stats: observe.PipelineStats


def _observe(
    settings: services.StackSettings,
    stats: observe.PipelineStats,
    stop: threading.Event,
    ready: threading.Event,
) -> None:
    async def main() -> None:
        ev = asyncio.Event()
        tasks = [
            asyncio.create_task(
                observe.watch_nats(
                    settings.nats_url, stats, ev, ready, settings.credentials().nats_creds("observer")
                )
            ),
            asyncio.create_task(
                observe.watch_execution(
                    f"127.0.0.1:{settings.ports.execution_grpc}", settings.token, stats, ev
                )
            ),
        ]
        while not stop.is_set():
            await asyncio.sleep(0.05)
        ev.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    run_dir = tmp_path_factory.mktemp("stack")
    # The fixture's card policy rarely trades a few quiet hours of EURUSD; a lower entry threshold
    # makes the replay trade (the policy itself is tested in test_policy_parity.py).
    card = ModelCard.from_onnx(MODEL)
    assert card.policy is not None
    model = with_card(
        MODEL, run_dir / "model" / "model.onnx", policy=dataclasses.replace(card.policy, entry_edge=0.5e-5)
    )
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=run_dir, model=str(model))
    settings.mlflow_uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    binaries = services.build_go_binaries(settings.bin_dir)
    stack = processes.Stack(run_dir)
    stats = observe.PipelineStats()
    stop = threading.Event()
    ready = threading.Event()
    watcher = threading.Thread(target=_observe, args=(settings, stats, stop, ready), daemon=True)
    try:
        stack.start_all(services.specs(settings, binaries))
        services.wait_pipeline_ready(settings)
        watcher.start()
        assert ready.wait(timeout=15), "the NATS watcher did not subscribe"
        data = replay.load(str(TICKS), symbol="EURUSD", strict=True)
        result = replay.replay(
            data,
            collector=f"127.0.0.1:{settings.ports.collector_bridge}",
            speed=0,
            stats=stats,
            bridge_key=settings.ensure_bridge_key(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and stats.md_ticks < result.sent:
            stack.raise_if_dead()
            time.sleep(0.1)
        time.sleep(2.0)  # the last bars' predictions, signals and orders
        yield Run(settings, stack, binaries, data, result, stats)
    finally:
        stop.set()
        watcher.join(timeout=10)
        stack.stop()


def test_every_replayed_tick_is_accounted_for(run: Run) -> None:
    assert run.result.lost == 0
    assert run.result.pushed == len(run.data.time_msc) == 9500
    url = f"http://127.0.0.1:{run.settings.ports.collector_metrics}/metrics"
    arrived = sum(services.metric_samples(url, "kairos_collector_ticks_in_total").values())
    received = sum(services.metric_samples(url, "kairos_collector_ticks_accepted_total").values())
    rejected = sum(services.metric_samples(url, "kairos_collector_ticks_rejected_total").values())
    assert arrived == run.result.sent
    assert received + rejected == run.result.pushed
    assert run.stats.md_ticks == received


def test_a_prediction_for_every_closed_bar(run: Run) -> None:
    card = ModelCard.from_onnx(MODEL)
    builder = BarBuilder(card.timeframe_s)
    closed = []
    for t, b, a in zip(run.data.time_msc, run.data.bid, run.data.ask, strict=True):
        closed.extend(builder.add_tick(int(t), float(b), float(a)))
    idle_closed = builder.flush()  # the collector also closes the last bar once the symbol goes idle
    # Prediction.time_msc of a bar model is the bar's close time (inference.proto). The inference
    # server closes bars on the next tick; the collector's idle close of the last bar does not
    # reach it (docs/e2e.md, known gap), so the expectation is every bar a later tick closed.
    expected = {bar.open_time_msc + card.timeframe_s * 1000 for bar in closed[card.bars_needed - 1 :]}
    published = run.stats.bar_times[f"EURUSD@{card.timeframe_s}"]
    deadline = time.monotonic() + 15  # the collector closes the last bar when the symbol goes idle
    while len(published) < len(closed) + len(idle_closed) and time.monotonic() < deadline:
        time.sleep(0.1)
    got = run.stats.prediction_times["EURUSD"]
    assert expected, "the replay closed no bar after warm-up"
    assert sorted(published) == [b.open_time_msc for b in closed + idle_closed], "collector bars differ"
    assert sorted(got) == sorted(expected)  # each closed bar once, none missing


def test_orders_follow_signals_and_respect_risk_limits(run: Run) -> None:
    orders = [r.order for r in run.stats.reports_seen if r.type == execution_pb2.REPORT_TYPE_SUBMITTED]
    assert sum(run.stats.signals.values()) > 0
    assert orders, "no signal led to an order"
    for order in orders:
        assert order.strategy_id and order.model_name, order
    with grpc.insecure_channel(f"127.0.0.1:{run.settings.ports.execution_grpc}") as ch:
        stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
        limits = stub.GetRiskLimits(
            execution_pb2.GetRiskLimitsRequest(),
            timeout=5,
            metadata=[("authorization", f"Bearer {run.settings.token}")],
        ).limits
    max_pos = (
        pnl.to_decimal(limits.max_position_quantity) if limits.HasField("max_position_quantity") else None
    )
    for book in pnl.recompute(run.stats.fills).values():
        if max_pos:
            assert abs(book.net_lots) <= max_pos


def _positions(settings: services.StackSettings) -> dict[str, tuple[Decimal, Decimal]]:
    with grpc.insecure_channel(f"127.0.0.1:{settings.ports.execution_grpc}") as ch:
        stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
        resp = stub.ListPositions(
            execution_pb2.ListPositionsRequest(include_flat=True),
            metadata=[("authorization", f"Bearer {settings.token}")],
            timeout=5,
        )
    return {
        p.symbol: (pnl.to_decimal(p.net_quantity), pnl.to_decimal(p.realized_pnl)) for p in resp.positions
    }


def test_pnl_equals_an_independent_recomputation_from_the_fills(run: Run) -> None:
    books = pnl.recompute(run.stats.fills)
    assert books, "no fills to check"
    positions = _positions(run.settings)
    for symbol, book in books.items():
        net, realized = positions[symbol]
        assert net == book.net_lots
        # The service books realized P&L net of commission, in account currency to the cent.
        assert realized == (book.realized - book.commission).quantize(Decimal("0.01"))


def test_journal_replay_reproduces_the_final_positions(run: Run) -> None:
    before = _positions(run.settings)
    execution = next(s for s in run.stack.services if s.spec.name == "execution")
    processes.terminate(execution.process, timeout_s=10)
    run.stack.services.remove(execution)
    restarted = run.stack.start(execution.spec)
    run.stack.wait_ready(restarted)
    assert _positions(run.settings) == before
