"""Watches a running stack from the outside: NATS subjects, execution reports and positions.

The demo's live view, its report and the end-to-end test read the pipeline only through the
interfaces a user has (NATS subjects, the Execution gRPC service), never through a service's
internals, so what they show is what a deployment would show.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from kairos.execution.v1 import execution_pb2, execution_pb2_grpc
from kairos.inference.v1 import inference_pb2
from kairos.marketdata.v1 import marketdata_pb2
from kairos.stack import credentials
from kairos.stack.natsfence import fence
from kairos.types.v1 import types_pb2

# The path a tick takes, in order; latency is reported between consecutive stages that were stamped.
HOPS = [
    types_pb2.HOP_STAGE_BRIDGE_PUSH,
    types_pb2.HOP_STAGE_BRIDGE_SEND,
    types_pb2.HOP_STAGE_COLLECTOR_RECEIVE,
    types_pb2.HOP_STAGE_COLLECTOR_SEND,
    types_pb2.HOP_STAGE_INFERENCE_RECEIVE,
    types_pb2.HOP_STAGE_INFERENCE_DONE,
    types_pb2.HOP_STAGE_INFERENCE_SEND,
    types_pb2.HOP_STAGE_EXECUTION_RECEIVE,
    types_pb2.HOP_STAGE_RISK_DONE,
    types_pb2.HOP_STAGE_VENUE_SEND,
    types_pb2.HOP_STAGE_VENUE_ACK,
]


def stage_name(stage: int) -> str:
    return str(types_pb2.HopStage.Name(stage)).removeprefix("HOP_STAGE_").lower()


def decimal_to_float(d: types_pb2.Decimal) -> float:
    return float(d.units) / (10**d.scale) if d.scale else float(d.units)


def hop_latencies(hops: Iterable[types_pb2.HopStamp]) -> dict[str, float]:
    """Microseconds between consecutive stamped stages, plus `total` from the first to the last."""
    at = {h.stage: h.time_us for h in hops if h.stage != types_pb2.HOP_STAGE_UNSPECIFIED}
    stamped = [s for s in HOPS if s in at]
    out: dict[str, float] = {}
    for a, b in itertools.pairwise(stamped):
        out[f"{stage_name(a)}->{stage_name(b)}"] = float(at[b] - at[a])
    if len(stamped) >= 2:
        out[f"total:{stage_name(stamped[0])}->{stage_name(stamped[-1])}"] = float(
            at[stamped[-1]] - at[stamped[0]]
        )
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else math.nan


@dataclass
class PipelineStats:
    """Everything the live view shows; updated by the watchers below."""

    started: float = field(default_factory=time.monotonic)
    ticks_replayed: int = 0
    rows_rejected: int = 0
    md_ticks: int = 0
    bars: Counter[int] = field(default_factory=Counter)  # by period in seconds
    predictions: int = 0
    signals: Counter[str] = field(default_factory=Counter)
    reports: Counter[str] = field(default_factory=Counter)
    denials: Counter[str] = field(default_factory=Counter)
    fills: list[execution_pb2.Fill] = field(default_factory=list)
    positions: dict[str, execution_pb2.Position] = field(default_factory=dict)
    latest_mid: dict[str, float] = field(default_factory=dict)
    # Market time (ms) of the newest tick seen on NATS: the equity curve's x axis.
    market_time_msc: int = 0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    bar_times: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    prediction_times: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    equity: list[tuple[float, float]] = field(default_factory=list)  # (market time s, P&L)
    reports_seen: list[execution_pb2.ExecutionReport] = field(default_factory=list)

    def ticks_per_s(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.ticks_replayed / elapsed if elapsed > 0 else 0.0

    def add_hops(self, hops: Iterable[types_pb2.HopStamp]) -> None:
        for name, us in hop_latencies(hops).items():
            self.latencies[name].append(us)

    def latency_table(self) -> list[tuple[str, int, float, float]]:
        return [
            (name, len(v), percentile(v, 50), percentile(v, 99))
            for name, v in sorted(self.latencies.items(), key=lambda kv: (kv[0].startswith("total"), kv[0]))
        ]

    def realized_pnl(self) -> float:
        return sum(decimal_to_float(p.realized_pnl) for p in self.positions.values())

    def unrealized_pnl(self) -> float:
        return sum(decimal_to_float(p.unrealized_pnl) for p in self.positions.values())


async def watch_nats(
    nats_url: str,
    stats: PipelineStats,
    stop: asyncio.Event,
    ready: threading.Event | None = None,
    creds: Path | None = None,
) -> None:
    """Counts ticks, bars, predictions and signals from the collector's and inference's subjects;
    sets `ready` once the server has registered every subscription."""
    import nats

    nc = await nats.connect(
        nats_url, connect_timeout=5, max_reconnect_attempts=-1, **credentials.nats_connect_kwargs(creds)
    )
    try:

        async def on_md(msg: Any) -> None:
            batch = marketdata_pb2.TickBatch.FromString(msg.data)
            stats.md_ticks += len(batch.time_msc)
            if batch.time_msc:
                stats.market_time_msc = max(stats.market_time_msc, batch.time_msc[-1])
            if batch.bid and batch.ask:
                stats.latest_mid[batch.symbol] = (batch.bid[-1] + batch.ask[-1]) / 2

        async def on_bar(msg: Any) -> None:
            bar = marketdata_pb2.Bar.FromString(msg.data)
            stats.bars[bar.period_s] += 1
            stats.bar_times[f"{bar.symbol}@{bar.period_s}"].append(bar.open_time_msc)

        async def on_pred(msg: Any) -> None:
            pred = inference_pb2.Prediction.FromString(msg.data)
            stats.predictions += 1
            stats.prediction_times[pred.symbol].append(pred.time_msc)

        async def on_signal(msg: Any) -> None:
            sig = inference_pb2.Signal.FromString(msg.data)
            stats.signals[inference_pb2.Direction.Name(sig.direction).removeprefix("DIRECTION_").lower()] += 1

        subs = [
            await nc.subscribe("kairos.md.>", cb=on_md),
            await nc.subscribe("kairos.bar.>", cb=on_bar),
            await nc.subscribe("kairos.pred.>", cb=on_pred),
            await nc.subscribe("kairos.signal.>", cb=on_signal),
        ]
        await fence(nc)  # ready means subscribed: nc.flush() alone can overtake the SUBs
        if ready is not None:
            ready.set()
        await stop.wait()
        for sub in subs:
            await sub.unsubscribe()
    finally:
        await nc.drain()


def _auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] if token else []


async def watch_execution(
    addr: str, token: str, stats: PipelineStats, stop: asyncio.Event, positions: bool = True
) -> None:
    """Follows StreamExecutionReports (from the journal's first report, so it misses none whenever it
    starts) and, with ``positions``, polls ListPositions for the P&L and the equity curve."""
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = execution_pb2_grpc.ExecutionServiceStub(channel)  # type: ignore[no-untyped-call]

        async def reports() -> None:
            after = 0
            while not stop.is_set():
                call = stub.StreamExecutionReports(
                    execution_pb2.StreamExecutionReportsRequest(after_sequence=after), metadata=_auth(token)
                )
                try:
                    async for resp in call:
                        for rep in _reports_of(resp):
                            after = max(after, rep.sequence)
                            stats.reports_seen.append(rep)
                            kind = (
                                execution_pb2.ReportType.Name(rep.type).removeprefix("REPORT_TYPE_").lower()
                            )
                            stats.reports[kind] += 1
                            if rep.type == execution_pb2.REPORT_TYPE_DENIED:
                                reason = execution_pb2.RiskDenyReason.Name(rep.order.denial.reason)
                                stats.denials[reason.removeprefix("RISK_DENY_REASON_").lower()] += 1
                            if rep.type == execution_pb2.REPORT_TYPE_FILLED and rep.HasField("fill"):
                                stats.fills.append(rep.fill)
                            if rep.hops:
                                stats.add_hops(rep.hops)
                except grpc.aio.AioRpcError:
                    if stop.is_set():
                        return
                    await asyncio.sleep(0.2)

        async def poll_positions() -> None:
            while not stop.is_set():
                with contextlib.suppress(grpc.aio.AioRpcError):
                    resp = await stub.ListPositions(
                        execution_pb2.ListPositionsRequest(include_flat=True), metadata=_auth(token)
                    )
                    stats.positions = {p.symbol: p for p in resp.positions}
                    if stats.market_time_msc and stats.positions:
                        equity = stats.realized_pnl() + stats.unrealized_pnl()
                        stats.equity.append((stats.market_time_msc / 1000, equity))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=0.2)

        tasks = [asyncio.create_task(reports())]
        if positions:
            tasks.append(asyncio.create_task(poll_positions()))
        await stop.wait()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def _reports_of(resp: Any) -> list[execution_pb2.ExecutionReport]:
    if hasattr(resp, "reports"):
        return list(resp.reports)
    if resp.HasField("report"):
        return [resp.report]
    return []
