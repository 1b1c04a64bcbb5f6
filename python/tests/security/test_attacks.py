"""Attacks on a running stack, each refused with a clear status (ADR 0064, docs/security.md).

The real collector (embedded NATS with deploy/nats/auth.conf), inference and execution run as
processes on loopback ports with the credentials `kairos up` generates. Each test is one attack from
the issue "Nobody trades or reads without credentials"; the module counts them and merges
``attacks_tried`` and ``attacks_refused`` into bench/results/reliability.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import nats
import pytest
from nats.errors import Error as NatsError

from kairos.collector.v1 import collector_pb2, collector_pb2_grpc
from kairos.execution.v1 import execution_pb2, execution_pb2_grpc
from kairos.inference.v1 import inference_pb2 as ipb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.stack import credentials, processes, services

pytestmark = pytest.mark.slow

MODEL = services.REPO / "python" / "tests" / "data" / "model" / "model.onnx"
RESULTS = services.REPO / "bench" / "results" / "reliability.json"
TIMEOUT = 10.0

tally = {"tried": 0, "refused": 0}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.StackSettings]:
    run_dir = tmp_path_factory.mktemp("attacks")
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=run_dir, model=str(MODEL))
    settings.mlflow_uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    binaries = services.build_go_binaries(settings.bin_dir)
    with processes.Stack(run_dir) as st:
        st.start_all(services.specs(settings, binaries))
        services.wait_pipeline_ready(settings)
        yield settings
    _merge_results(tally["tried"], tally["refused"])


def _merge_results(tried: int, refused: int) -> None:
    """Adds our two keys to reliability.json, keeping every other helper's keys."""
    data = {}
    if RESULTS.exists():
        with contextlib.suppress(json.JSONDecodeError):
            data = json.loads(RESULTS.read_text())
    data.update({"attacks_tried": tried, "attacks_refused": refused})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def attack() -> Iterator[None]:
    """Counts one attack; it is refused when the block's assertions hold."""
    tally["tried"] += 1
    yield
    tally["refused"] += 1


def _attacker_signal(symbol: str = "EURUSD") -> bytes:
    sig = ipb.Signal(
        symbol=symbol,
        time_msc=int(time.time() * 1000),
        direction=ipb.DIRECTION_UP,
        strength=0.99,
        model_name="attacker",
        model_version="1",
    )
    return sig.SerializeToString()


def _orders(settings: services.StackSettings) -> list[execution_pb2.Order]:
    with grpc.insecure_channel(f"127.0.0.1:{settings.ports.execution_grpc}") as ch:
        stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
        resp = stub.ListOrders(
            execution_pb2.ListOrdersRequest(),
            timeout=TIMEOUT,
            metadata=[("authorization", f"Bearer {settings.token}")],
        )
        return list(resp.orders)


# --- NATS --------------------------------------------------------------------------------------


def test_a_nats_client_without_credentials_is_refused_and_no_order_follows(
    stack: services.StackSettings,
) -> None:
    async def go() -> str:
        try:
            nc = await nats.connect(
                stack.nats_url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0
            )
        except (NatsError, OSError, TimeoutError) as e:
            return str(e) or type(e).__name__
        try:
            await nc.publish("kairos.signal.EURUSD", _attacker_signal())
            await nc.flush(timeout=2)
        finally:
            await nc.close()
        return ""

    with attack():
        refused = asyncio.run(go())
        assert "authorization" in refused.lower(), refused
        time.sleep(1.0)
        assert not [o for o in _orders(stack) if o.model_name == "attacker"]


@pytest.mark.parametrize("identity", ["collector", "execution", "observer", "streams"])
def test_only_inference_may_publish_signals(stack: services.StackSettings, identity: str) -> None:
    creds = credentials.Credentials(stack.run_dir).nats_creds(identity)

    async def go() -> list[str]:
        errors: list[str] = []

        async def on_error(e: Exception) -> None:
            errors.append(str(e))

        nc = await nats.connect(
            stack.nats_url,
            connect_timeout=3,
            allow_reconnect=False,
            error_cb=on_error,
            **credentials.nats_connect_kwargs(creds),
        )
        try:
            await nc.publish("kairos.signal.EURUSD", _attacker_signal())
            await nc.flush(timeout=2)
            deadline = time.monotonic() + 3
            while not errors and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await nc.close()
        return errors

    with attack():
        errors = asyncio.run(go())
        assert any("permissions violation" in e.lower() for e in errors), errors
        time.sleep(0.5)
        assert not [o for o in _orders(stack) if o.model_name == "attacker"]


def test_a_non_collector_identity_cannot_publish_quotes(stack: services.StackSettings) -> None:
    creds = credentials.Credentials(stack.run_dir).nats_creds("observer")
    batch = md.TickBatch(symbol="EURUSD", time_msc=[int(time.time() * 1000)], bid=[0.5], ask=[0.50001])

    async def go() -> list[str]:
        errors: list[str] = []

        async def on_error(e: Exception) -> None:
            errors.append(str(e))

        nc = await nats.connect(
            stack.nats_url, connect_timeout=3, allow_reconnect=False, error_cb=on_error,
            **credentials.nats_connect_kwargs(creds),
        )  # fmt: skip
        try:
            await nc.publish("kairos.md.EURUSD", batch.SerializeToString())
            await nc.flush(timeout=2)
            deadline = time.monotonic() + 3
            while not errors and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await nc.close()
        return errors

    with attack():
        errors = asyncio.run(go())
        assert any("permissions violation" in e.lower() for e in errors), errors


# --- gRPC --------------------------------------------------------------------------------------

ExecCall = Callable[[execution_pb2_grpc.ExecutionServiceStub, list[tuple[str, str]]], object]

EXECUTION_CALLS: dict[str, ExecCall] = {
    "ListOrders": lambda s, m: s.ListOrders(execution_pb2.ListOrdersRequest(), timeout=TIMEOUT, metadata=m),
    "ListPositions": lambda s, m: s.ListPositions(
        execution_pb2.ListPositionsRequest(), timeout=TIMEOUT, metadata=m
    ),
    "StreamExecutionReports": lambda s, m: next(
        iter(
            s.StreamExecutionReports(
                execution_pb2.StreamExecutionReportsRequest(), timeout=TIMEOUT, metadata=m
            )
        )
    ),
    "SubmitOrder": lambda s, m: s.SubmitOrder(
        execution_pb2.SubmitOrderRequest(client_order_id="attacker-1", symbol="EURUSD"),
        timeout=TIMEOUT,
        metadata=m,
    ),
}


@pytest.mark.parametrize("auth", ["none", "wrong"])
@pytest.mark.parametrize("method", list(EXECUTION_CALLS))
def test_execution_refuses_calls_without_the_token(
    stack: services.StackSettings, method: str, auth: str
) -> None:
    metadata = [] if auth == "none" else [("authorization", "Bearer not-the-token")]
    with attack(), grpc.insecure_channel(f"127.0.0.1:{stack.ports.execution_grpc}") as ch:
        stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as e:
            EXECUTION_CALLS[method](stub, metadata)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value
        assert "token" in (e.value.details() or "")


def test_collector_refuses_publish_without_the_token(stack: services.StackSettings) -> None:
    reqs = [
        collector_pb2.PublishRequest(source="attacker", symbol_info=md.SymbolInfo(symbol="EURUSD", digits=5)),
        collector_pb2.PublishRequest(
            source="attacker",
            ticks=md.TickBatch(symbol="EURUSD", time_msc=[int(time.time() * 1000)], bid=[0.5], ask=[0.50001]),
        ),
    ]
    with attack(), grpc.insecure_channel(f"127.0.0.1:{stack.ports.collector_grpc}") as ch:
        stub = collector_pb2_grpc.MarketDataServiceStub(ch)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as e:
            stub.Publish(iter(reqs), timeout=TIMEOUT)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value


def test_collector_refuses_subscribe_without_the_token(stack: services.StackSettings) -> None:
    with attack(), grpc.insecure_channel(f"127.0.0.1:{stack.ports.collector_grpc}") as ch:
        stub = collector_pb2_grpc.MarketDataServiceStub(ch)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as e:
            next(iter(stub.Subscribe(collector_pb2.SubscribeRequest(ticks=True), timeout=TIMEOUT)))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value


def test_inference_refuses_stream_predict_without_the_token(stack: services.StackSettings) -> None:
    with attack(), grpc.insecure_channel(f"127.0.0.1:{stack.ports.inference_grpc}") as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as e:
            list(stub.StreamPredict(iter([ipb.StreamPredictRequest(request_id=1)]), timeout=TIMEOUT))
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value


def test_the_credential_files_are_private(stack: services.StackSettings) -> None:
    creds = credentials.Credentials(stack.run_dir)
    files = [creds.token_file(s) for s in credentials.SERVICES]
    files += [creds.nats_creds(i) for i in credentials.NATS_IDENTITIES]
    files += [creds.nats_auth_file, creds.nats_auth_file.with_name("passwords.conf")]
    for f in files:
        assert Path(f).stat().st_mode & 0o077 == 0, f"{f} is readable by others"
