"""What the console shows, gathered only through the services' own APIs (ADR 0090).

Execution: StreamExecutionReports (fills, trading-state changes, hop stamps), ListPositions,
ListOrders (working orders) and GetRiskLimits (the trading state) with its bearer token. Inference:
GetModelStatus (the serving model and its shadow challengers, each with its card's gate verdict,
its live paper figures and its drift). NATS, as the read-only observer
identity: signals and market data. Health: each service's grpc.health.v1. No database is read.

Each source keeps its own status, so a service that is down shows as down in its panel while the
others keep updating. `snapshot()` is the JSON the page renders; `version` grows on every change
and the event streams compare it to send only what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from kairos.console.config import ConsoleConfig
from kairos.console.logs import get_logger
from kairos.execution.v1 import execution_pb2, execution_pb2_grpc
from kairos.inference.v1 import inference_pb2, inference_pb2_grpc
from kairos.marketdata.v1 import marketdata_pb2
from kairos.stack import credentials, natsfence
from kairos.stack.observe import HOPS, decimal_to_float, hop_latencies, stage_name
from kairos.stack.serving import from_status

KEEP = 50  # fills and signals shown
LATENCY_WINDOW = 2000  # samples per hop for p50/p99
EQUITY_POINTS = 5000
MAX_SYMBOLS = 4096  # last mids held (the collector's default --max-symbols); further symbols are refused

log = get_logger()


def _name(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def _auth(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")] if token else []


def _rpc_error(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        code = exc.code()
        return f"{code.name if code else 'ERROR'}: {exc.details() or ''}".strip().rstrip(":")
    return f"{type(exc).__name__}: {exc}"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def model_view(m: inference_pb2.ModelStatus, index: int) -> dict[str, Any]:
    """One served model as the page shows it: identity, the card's gate verdict, the live paper
    figures (None when shadow evaluation is off) and drift (None without a training distribution)."""
    s = from_status(m)
    return {
        "role": s.role or ("serving" if index == 0 else "shadow"),
        "name": s.name,
        "version": s.version,
        "state": s.state,
        "source": s.source,
        "predictions": s.predictions,
        "gate": s.gate,
        "verdict": s.verdict,
        # Annualised net Sharpe over the validation folds, its bootstrap interval and level.
        "sharpe": (
            f"{s.sharpe:.2f} [{s.sharpe_ci_low:.2f}, {s.sharpe_ci_high:.2f}] {s.sharpe_ci_level:.0%}"
            if s.validated
            else "-"
        ),
        "deflated_sharpe": s.deflated_sharpe if s.validated else None,
        "n_trials": s.n_trials if s.validated else None,
        "net_return": s.net_return if s.validated else None,
        "last_error": s.last_error,
        "loaded_us": s.loaded_time_us,
        "created_us": s.created_time_us,
        "expired": s.expired,
        "shadow": dataclasses.asdict(s.shadow) if s.shadow is not None else None,
        "drift": dataclasses.asdict(s.drift) if s.drift is not None else None,
        "promotion": dataclasses.asdict(s.promotion) if s.promotion is not None else None,
    }


@dataclass
class Source:
    """One data source's state: ok, or the error that stops it, and when it last answered."""

    ok: bool = False
    error: str = "not contacted yet"
    updated: float = 0.0

    def good(self) -> bool:
        changed = not self.ok
        self.ok, self.error, self.updated = True, "", time.time()
        return changed

    def bad(self, error: str) -> bool:
        changed = self.ok or self.error != error
        self.ok, self.error = False, error
        return changed

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "error": self.error, "updated": self.updated}


@dataclass
class Hub:
    cfg: ConsoleConfig
    token: str
    inference_token: str = ""
    version: int = 0
    trading_state: str = "UNKNOWN"
    trading_reason: str = ""
    positions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    fills: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEEP))
    signals: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=KEEP))
    models: list[dict[str, Any]] = field(default_factory=list)
    equity: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=EQUITY_POINTS))
    latencies: dict[str, deque[float]] = field(default_factory=dict)
    reports: Counter[str] = field(default_factory=Counter)
    ticks: int = 0
    last_mid: dict[str, float] = field(default_factory=dict)  # at most MAX_SYMBOLS
    # Called for a tick batch of a symbol beyond MAX_SYMBOLS (the console counts them in its metrics).
    mid_refused: Callable[[], object] = lambda: None
    health: dict[str, str] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._creds = self.cfg.channel_credentials()
        for name in ("execution", "reports", "inference", "nats"):
            self.sources[name] = Source()
        for name in ("collector", "inference", "execution"):
            self.health[name] = "UNKNOWN"

    def channel(self, addr: str) -> Any:
        """A gRPC channel to addr: TLS when --tls-ca is set, else plaintext."""
        if self._creds is None:
            return grpc.aio.insecure_channel(addr)
        return grpc.aio.secure_channel(addr, self._creds)

    def touch(self) -> None:
        self.version += 1

    # --- execution --------------------------------------------------------------------------------

    def apply_report(self, rep: execution_pb2.ExecutionReport) -> None:
        kind = _name(execution_pb2.ReportType, rep.type, "REPORT_TYPE_").lower()
        self.reports[kind] += 1
        if rep.type == execution_pb2.REPORT_TYPE_TRADING_STATE_CHANGED:
            self.trading_state = _name(execution_pb2.TradingState, rep.trading_state, "TRADING_STATE_")
            self.trading_reason = rep.reason
        if rep.type == execution_pb2.REPORT_TYPE_FILLED and rep.HasField("fill"):
            f = rep.fill
            self.fills.appendleft(
                {
                    "time_us": f.time_us,
                    "symbol": f.symbol,
                    "side": _name(execution_pb2.OrderSide, f.side, "ORDER_SIDE_"),
                    "quantity": decimal_to_float(f.quantity),
                    "price": decimal_to_float(f.price),
                    "order": f.client_order_id,
                    "model": f"{rep.order.model_name} {rep.order.model_version}".strip(),
                }
            )
        for hop, us in hop_latencies(rep.hops).items():
            if hop.startswith("total:"):
                continue
            self.latencies.setdefault(hop, deque(maxlen=LATENCY_WINDOW)).append(us)

    async def _reports(self, stub: Any) -> None:
        after = 0
        while True:
            call = stub.StreamExecutionReports(
                execution_pb2.StreamExecutionReportsRequest(after_sequence=after), metadata=_auth(self.token)
            )
            try:
                async for resp in call:
                    if self.sources["reports"].good():
                        self.touch()
                    if resp.HasField("report"):
                        after = max(after, resp.report.sequence)
                        self.apply_report(resp.report)
                        self.touch()
                # The stream ended (server stopping): reconnect.
                if self.sources["reports"].bad("the report stream ended"):
                    self.touch()
            except grpc.aio.AioRpcError as exc:
                if self.sources["reports"].bad(_rpc_error(exc)):
                    self.touch()
            await asyncio.sleep(self.cfg.poll_interval)

    async def _execution_poll(self, stub: Any) -> None:
        md = _auth(self.token)
        timeout = max(2.0, self.cfg.poll_interval * 2)
        while True:
            try:
                limits = await stub.GetRiskLimits(
                    execution_pb2.GetRiskLimitsRequest(), metadata=md, timeout=timeout
                )
                pos = await stub.ListPositions(
                    execution_pb2.ListPositionsRequest(include_flat=True), metadata=md, timeout=timeout
                )
                orders = await stub.ListOrders(
                    execution_pb2.ListOrdersRequest(open_only=True, page_size=200),
                    metadata=md,
                    timeout=timeout,
                )
            except grpc.aio.AioRpcError as exc:
                self.sources["execution"].bad(_rpc_error(exc))
                self.touch()
            else:
                self.sources["execution"].good()
                self.trading_state = _name(execution_pb2.TradingState, limits.trading_state, "TRADING_STATE_")
                self.positions = [
                    {
                        "symbol": p.symbol,
                        "net": decimal_to_float(p.net_quantity),
                        "avg_price": decimal_to_float(p.avg_price),
                        "realized": decimal_to_float(p.realized_pnl),
                        "unrealized": decimal_to_float(p.unrealized_pnl),
                        "currency": p.currency,
                        "venue": p.venue,
                    }
                    for p in pos.positions
                ]
                self.orders = [
                    {
                        "id": o.client_order_id,
                        "symbol": o.symbol,
                        "side": _name(execution_pb2.OrderSide, o.side, "ORDER_SIDE_"),
                        "type": _name(execution_pb2.OrderType, o.type, "ORDER_TYPE_"),
                        "quantity": decimal_to_float(o.quantity),
                        "filled": decimal_to_float(o.filled_quantity),
                        "price": decimal_to_float(o.price),
                        "status": _name(execution_pb2.OrderStatus, o.status, "ORDER_STATUS_"),
                        "created_us": o.created_time_us,
                    }
                    for o in orders.orders
                ]
                if self.positions:
                    self._sample_equity(sum(p["realized"] + p["unrealized"] for p in self.positions))
                self.touch()
            await asyncio.sleep(self.cfg.poll_interval)

    def _sample_equity(self, total: float) -> None:
        """A point when equity moved, else one a minute: the curve covers hours, not minutes."""
        now = time.time()
        if not self.equity or self.equity[-1][1] != total or now - self.equity[-1][0] >= 60:
            self.equity.append((now, total))

    async def halt(self, reason: str) -> dict[str, Any]:
        """The kill switch: HALTED, every working order's cancel requested, in one call."""
        async with self.channel(self.cfg.execution_addr) as ch:
            stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
            resp = await stub.SetTradingState(
                execution_pb2.SetTradingStateRequest(
                    state=execution_pb2.TRADING_STATE_HALTED, reason=reason, cancel_all=True
                ),
                metadata=_auth(self.token),
                timeout=5,
            )
        self.trading_state = _name(execution_pb2.TradingState, resp.current, "TRADING_STATE_")
        self.trading_reason = reason
        self.touch()
        return {
            "previous": _name(execution_pb2.TradingState, resp.previous, "TRADING_STATE_"),
            "current": self.trading_state,
            "canceled": list(resp.canceled_client_order_ids),
        }

    # --- inference --------------------------------------------------------------------------------

    async def _inference_poll(self) -> None:
        async with self.channel(self.cfg.inference_addr) as ch:
            stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
            while True:
                try:
                    resp = await stub.GetModelStatus(
                        inference_pb2.GetModelStatusRequest(),
                        metadata=_auth(self.inference_token),
                        timeout=max(2.0, self.cfg.poll_interval * 2),
                    )
                except grpc.aio.AioRpcError as exc:
                    self.sources["inference"].bad(_rpc_error(exc))
                else:
                    self.sources["inference"].good()
                    self.models = [model_view(m, i) for i, m in enumerate(resp.models)]
                self.touch()
                await asyncio.sleep(self.cfg.poll_interval * 2)

    # --- NATS -------------------------------------------------------------------------------------

    async def _nats(self) -> None:
        import nats

        if not self.cfg.nats_url:
            self.sources["nats"].bad("disabled (--nats-url is empty)")
            return

        async def on_signal(msg: Any) -> None:
            s = inference_pb2.Signal.FromString(msg.data)
            self.signals.appendleft(
                {
                    "time_msc": s.time_msc,
                    "symbol": s.symbol,
                    "direction": _name(inference_pb2.Direction, s.direction, "DIRECTION_"),
                    "strength": round(float(s.strength), 4),
                    "model": f"{s.model_name} {s.model_version}".strip(),
                }
            )
            self.touch()

        async def on_md(msg: Any) -> None:
            batch = marketdata_pb2.TickBatch.FromString(msg.data)
            self.ticks += len(batch.time_msc)
            if batch.bid and batch.ask:
                if batch.symbol not in self.last_mid and len(self.last_mid) >= MAX_SYMBOLS:
                    self.mid_refused()
                    return
                self.last_mid[batch.symbol] = (batch.bid[-1] + batch.ask[-1]) / 2

        async def on_disconnect() -> None:
            self.sources["nats"].bad("disconnected")
            self.touch()

        async def on_reconnect() -> None:
            self.sources["nats"].good()
            self.touch()

        async def on_error(exc: Exception) -> None:
            if self.sources["nats"].bad(f"{type(exc).__name__}: {exc}"):
                self.touch()

        while True:
            try:
                nc = await nats.connect(
                    self.cfg.nats_url,
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    disconnected_cb=on_disconnect,
                    reconnected_cb=on_reconnect,
                    error_cb=on_error,
                    **credentials.nats_connect_kwargs(self.cfg.nats_creds or None),
                )
            except Exception as exc:  # nats-py raises several kinds; all mean "not reachable now"
                self.sources["nats"].bad(f"{type(exc).__name__}: {exc}")
                self.touch()
                await asyncio.sleep(max(1.0, self.cfg.poll_interval))
                continue
            try:
                await nc.subscribe("kairos.signal.>", cb=on_signal)
                await nc.subscribe("kairos.md.>", cb=on_md)
                await natsfence.fence(nc)
                self.sources["nats"].good()
                self.touch()
                await asyncio.Future()  # runs until cancelled; nats-py reconnects by itself
            finally:
                with contextlib.suppress(Exception):
                    await nc.close()

    # --- health -----------------------------------------------------------------------------------

    async def _health(self) -> None:
        addrs = {
            "collector": self.cfg.collector_addr,
            "inference": self.cfg.inference_addr,
            "execution": self.cfg.execution_addr,
        }
        channels = {name: self.channel(addr) for name, addr in addrs.items()}
        try:
            while True:
                for name, ch in channels.items():
                    stub = health_pb2_grpc.HealthStub(ch)
                    try:
                        resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                        state = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
                    except grpc.aio.AioRpcError:
                        state = "UNREACHABLE"
                    if self.health.get(name) != state:
                        self.health[name] = state
                        self.touch()
                await asyncio.sleep(self.cfg.poll_interval)
        finally:
            for ch in channels.values():
                await ch.close()

    # --- run and render ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Every source as its own task, until cancelled."""
        async with self.channel(self.cfg.execution_addr) as ch:
            stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
            tasks = [
                asyncio.create_task(self._supervise("reports", lambda: self._reports(stub))),
                asyncio.create_task(self._supervise("execution", lambda: self._execution_poll(stub))),
                asyncio.create_task(self._supervise("inference", self._inference_poll)),
                asyncio.create_task(self._supervise("nats", self._nats)),
                asyncio.create_task(self._supervise("health", self._health)),
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Runs one source's loop; an unexpected error is logged, shown on its panel, and the loop
        restarts, so one broken source never stops the others."""
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("source failed; restarting it", source=name, error=f"{type(exc).__name__}: {exc}")
                if name in self.sources:
                    self.sources[name].bad(f"{type(exc).__name__}: {exc}")
                    self.touch()
                await asyncio.sleep(max(1.0, self.cfg.poll_interval))

    def waterfall(self) -> list[dict[str, Any]]:
        """Per-hop p50/p99 in path order, with each hop's start at the sum of the earlier p50s."""
        order = {stage_name(s): i for i, s in enumerate(HOPS)}
        hops = sorted(self.latencies.items(), key=lambda kv: order.get(kv[0].split("->")[0], 99))
        out, start = [], 0.0
        for name, values in hops:
            v = list(values)
            p50, p99 = _percentile(v, 50), _percentile(v, 99)
            out.append({"hop": name, "n": len(v), "p50_us": p50, "p99_us": p99, "start_us": start})
            start += p50
        return out

    def snapshot(self) -> dict[str, Any]:
        realized = sum(p["realized"] for p in self.positions)
        unrealized = sum(p["unrealized"] for p in self.positions)
        return {
            "version": self.version,
            "time": time.time(),
            "trading_state": self.trading_state,
            "trading_reason": self.trading_reason,
            "positions": self.positions,
            "orders": self.orders,
            "fills": list(self.fills),
            "pnl": {"realized": realized, "unrealized": unrealized, "total": realized + unrealized},
            "equity": [[t, e] for t, e in self.equity],
            "signals": list(self.signals),
            "models": self.models,
            "latency": self.waterfall(),
            "reports": dict(self.reports),
            "ticks": self.ticks,
            "mid": self.last_mid,
            "health": self.health,
            "sources": {k: v.as_dict() for k, v in self.sources.items()},
        }
