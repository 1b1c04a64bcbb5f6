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
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
import pytest
from nats.errors import Error as NatsError

from kairos.bridge.peer import hello_proof
from kairos.bridge.v1 import bridge_pb2
from kairos.collector.v1 import collector_pb2, collector_pb2_grpc
from kairos.execution.v1 import execution_pb2, execution_pb2_grpc
from kairos.inference.v1 import inference_pb2 as ipb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.stack import credentials, observe, processes, replay, services
from kairos.stack.loopback import free_port, wait_for

pytestmark = pytest.mark.slow

MODEL = services.REPO / "python" / "tests" / "data" / "model" / "model.onnx"
RESULTS = services.REPO / "bench" / "results" / "reliability.json"
TIMEOUT = 10.0

tally = {"tried": 0, "refused": 0}


@dataclass
class TradingListener:
    """A second execution service with the MT5 venue: its bridge listener is the trading channel."""

    bridge: int
    metrics: int


TRADING = TradingListener(bridge=free_port(), metrics=free_port())


def _mt5_execution(settings: services.StackSettings, binary: Path) -> processes.ServiceSpec:
    grpc_port = free_port()
    return processes.ServiceSpec(
        name="execution-mt5",
        argv=[
            str(binary),
            f"--grpc-addr=127.0.0.1:{grpc_port}",
            f"--bridge-addr=127.0.0.1:{TRADING.bridge}",
            f"--metrics-addr=127.0.0.1:{TRADING.metrics}",
            "--nats-url=",
            "--policy=false",
            f"--token-file={settings.credentials().token_file('execution')}",
            f"--db={settings.run_dir / 'journal-mt5.db'}",
            "--venue=mt5",
            f"--bridge-key-file={settings.bridge_key_file}",
        ],
        grpc_addr=f"127.0.0.1:{grpc_port}",
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.StackSettings]:
    run_dir = tmp_path_factory.mktemp("attacks")
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=run_dir, model=str(MODEL))
    settings.mlflow_uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    binaries = services.build_go_binaries(settings.bin_dir)
    with processes.Stack(run_dir) as st:
        st.start_all(services.specs(settings, binaries))
        st.start_all([_mt5_execution(settings, binaries["kairos-execution"])])
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


@pytest.mark.parametrize("identity", ["collector", "execution", "observer", "streams", "recorder"])
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


# --- Slowloris and length-prefix floods ----------------------------------------------------------
#
# Each attacker connects from its own loopback address (127.0.0.0/8 is all this machine's), so the
# bridge listeners' per-address gate on failed handshakes counts it apart from the honest peers,
# which use 127.0.0.1 as a terminal on another host would use its own address.

SLOWLORIS_CONNECTIONS = 20  # more than the bridge's 16 handshake slots
PREFIX_1MIB = 1 << 20


def _connect(port: int, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b, value = value & 0x7F, value >> 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_frame(s: socket.socket) -> bridge_pb2.Frame | None:
    """One varint-delimited bridge frame, or None when the server closed the connection."""
    size, shift = 0, 0
    while True:
        b = s.recv(1)
        if not b:
            return None
        size |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    buf = b""
    while len(buf) < size:
        chunk = s.recv(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bridge_pb2.Frame.FromString(buf)


def _frames_until_closed(s: socket.socket, timeout: float) -> list[bridge_pb2.Frame]:
    """Every frame the server sends until it closes the connection (a reset counts as closed)."""
    s.settimeout(timeout)
    out: list[bridge_pb2.Frame] = []
    with contextlib.suppress(ConnectionResetError):
        while (f := _read_frame(s)) is not None:
            out.append(f)
    return out


def _closed_by_server(s: socket.socket, timeout: float) -> bool:
    """Reads and discards until the server closes (True) or `timeout` passes (False)."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def _slowloris(
    port: int, source: str, n: int, drip: bytes, every: float, meanwhile: Callable[[], None] = lambda: None
) -> list[bool]:
    """n connections from `source` that send `drip` a byte every `every` seconds; `meanwhile` runs
    during the attack. Returns, per connection, whether the server closed it (within 15 s)."""
    socks = [_connect(port, source) for _ in range(n)]
    stop = threading.Event()

    def dribble(s: socket.socket) -> None:
        for b in drip:
            if stop.wait(every):
                return
            with contextlib.suppress(OSError):
                s.send(bytes([b]))

    for s in socks:
        threading.Thread(target=dribble, args=(s,), daemon=True).start()
    try:
        meanwhile()
        return [_closed_by_server(s, timeout=15) for s in socks]
    finally:
        stop.set()
        for s in socks:
            s.close()


# A Hello that announces 200 bytes and sends one every 250 ms: it never completes.
NEVER_A_HELLO = _varint(200) + bytes(40)


def _prefix_flood(port: int, source: str, then: str) -> None:
    """Takes the Challenge, sends a length prefix of 1 MiB, then stalls or sends 1 MiB; the server
    must refuse at the prefix."""
    with _connect(port, source) as s:
        first = _read_frame(s)
        assert first is not None and first.HasField("challenge"), first
        s.sendall(_varint(PREFIX_1MIB))
        if then == "floods":
            with contextlib.suppress(OSError):
                for _ in range(16):
                    s.sendall(bytes(64 << 10))
        frames = _frames_until_closed(s, timeout=TIMEOUT)
        errors = [f.error for f in frames if f.HasField("error")]
        assert errors and errors[0].code == bridge_pb2.ERROR_CODE_MALFORMED_FRAME, frames
        assert "exceeds the 4096-byte limit" in errors[0].message, errors[0].message


def _counter(url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in services.metric_samples(url, name).items() if all(w in k for w in want))


def _metrics(stack: services.StackSettings, service: str) -> str:
    port = {
        "collector": stack.ports.collector_metrics,
        "execution": stack.ports.execution_metrics,
        "inference": stack.ports.inference_metrics,
    }[service]
    return f"http://127.0.0.1:{port}/metrics"


class _HonestReplay(threading.Thread):
    """Real ticks replayed through the bridge extension (the DLL's own code) with the key."""

    def __init__(self, stack: services.StackSettings, ticks: int) -> None:
        super().__init__(daemon=True)
        self.data = replay.load(str(services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"), last=ticks)
        self.stack = stack
        self.stats = observe.PipelineStats()
        self.result: replay.ReplayResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = replay.replay(
                self.data,
                collector=f"127.0.0.1:{self.stack.ports.collector_bridge}",
                speed=1000,
                batch=10,
                stats=self.stats,
                bridge_key=self.stack.bridge_key,
            )
        except BaseException as e:  # reported by outcome()
            self.error = e

    def outcome(self) -> replay.ReplayResult:
        self.join(60)
        assert not self.is_alive(), "the honest replay did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def test_a_bridge_slowloris_is_cut_at_the_handshake_deadline_while_a_bridge_streams(
    stack: services.StackSettings,
) -> None:
    url = _metrics(stack, "collector")
    timeouts0 = _counter(url, "kairos_bridge_frame_errors_total", reason="handshake_timeout")
    refused0 = _counter(url, "kairos_bridge_connections_refused_total")
    honest = _HonestReplay(stack, ticks=4000)
    honest.start()
    wait_for(
        lambda: honest.stats.ticks_replayed > 0 or not honest.is_alive(),
        timeout=TIMEOUT,
        what="the honest replay",
    )

    with attack():
        welcomed: list[bridge_pb2.Frame | None] = []
        closed = _slowloris(
            stack.ports.collector_bridge,
            "127.0.0.2",
            SLOWLORIS_CONNECTIONS,
            NEVER_A_HELLO,
            0.25,
            # A terminal elsewhere connects while the attacker holds its slots: one address gets at
            # most 4 of the 16 handshake slots.
            lambda: welcomed.append(_good_handshake(stack)),
        )
        assert welcomed and welcomed[0] is not None and welcomed[0].HasField("welcome"), welcomed
        assert all(closed), f"{closed.count(False)} slowloris connections still open"
        timeouts = _counter(url, "kairos_bridge_frame_errors_total", reason="handshake_timeout") - timeouts0
        refused = _counter(url, "kairos_bridge_connections_refused_total") - refused0
        assert timeouts + refused == SLOWLORIS_CONNECTIONS and timeouts > 0 and refused > 0, (
            timeouts,
            refused,
        )
        result = honest.outcome()
        assert result.acked == result.pushed == 4000, result


@pytest.mark.parametrize("then", ["stalls", "floods"])
def test_a_bridge_length_prefix_of_1mib_before_the_key_is_refused_at_the_header(
    stack: services.StackSettings, then: str
) -> None:
    with attack():
        _prefix_flood(stack.ports.collector_bridge, "127.0.0.3", then)


def _bad_hello(challenge: bridge_pb2.Challenge) -> bytes:
    h = bridge_pb2.Hello(
        api_version=2,
        channel=bridge_pb2.CHANNEL_MARKET_DATA,
        session_id=secrets.randbits(62),
        bridge_version="attacker",
        client_nonce=secrets.token_bytes(32),
    )
    h.auth_proof = hello_proof(b"not-the-bridge-key-at-all", False, challenge.server_nonce,
                               h.client_nonce, h.session_id, h.channel, h.api_version)  # fmt: skip
    raw = bridge_pb2.Frame(hello=h).SerializeToString()
    return _varint(len(raw)) + raw


def _good_handshake(stack: services.StackSettings) -> bridge_pb2.Frame | None:
    """A Hello with the right key from 127.0.0.1; returns the server's answer."""
    with _connect(stack.ports.collector_bridge, "127.0.0.1") as s:
        ch = _read_frame(s)
        assert ch is not None and ch.HasField("challenge"), ch
        h = bridge_pb2.Hello(api_version=2, channel=bridge_pb2.CHANNEL_MARKET_DATA,
                             session_id=secrets.randbits(62), bridge_version="honest",
                             client_nonce=secrets.token_bytes(32))  # fmt: skip
        h.auth_proof = hello_proof(stack.bridge_key.encode(), False, ch.challenge.server_nonce,
                                   h.client_nonce, h.session_id, h.channel, h.api_version)  # fmt: skip
        raw = bridge_pb2.Frame(hello=h).SerializeToString()
        s.sendall(_varint(len(raw)) + raw)
        return _read_frame(s)


def test_failed_bridge_handshakes_are_rate_limited_per_address(stack: services.StackSettings) -> None:
    url = _metrics(stack, "collector")
    limited0 = _counter(url, "kairos_bridge_connections_refused_total", reason="rate_limited")
    with attack():
        answers: list[bridge_pb2.Frame] = []
        for _ in range(12):  # the default burst is 10 failed handshakes
            with _connect(stack.ports.collector_bridge, "127.0.0.4") as s:
                first = _read_frame(s)
                assert first is not None, "closed without a word"
                if first.HasField("challenge"):
                    s.sendall(_bad_hello(first.challenge))
                    rest = _frames_until_closed(s, timeout=TIMEOUT)
                    assert rest and rest[0].error.code == bridge_pb2.ERROR_CODE_UNAUTHENTICATED, rest
                answers.append(first)
        challenged = sum(1 for f in answers if f.HasField("challenge"))
        limited = [f.error for f in answers if f.HasField("error")]
        assert challenged == 10, f"{challenged} handshakes before the gate closed"
        assert len(limited) == 2 and all(e.code == bridge_pb2.ERROR_CODE_UNAUTHENTICATED for e in limited)
        assert "too many failed bridge handshakes from 127.0.0.4" in limited[0].message, limited[0].message
        assert _counter(url, "kairos_bridge_connections_refused_total", reason="rate_limited") - limited0 == 2
        # The honest address is not touched: the right key is welcomed.
        answer = _good_handshake(stack)
        assert answer is not None and answer.HasField("welcome"), answer


GRPC_SERVICES = ["collector", "execution", "inference"]


def _grpc_port(stack: services.StackSettings, service: str) -> int:
    return {
        "collector": stack.ports.collector_grpc,
        "execution": stack.ports.execution_grpc,
        "inference": stack.ports.inference_grpc,
    }[service]


def _honest_call(stack: services.StackSettings, service: str) -> None:
    """A gated read with the service's token: it must answer."""
    md_ = [("authorization", f"Bearer {credentials.Credentials(stack.run_dir).token(service)}")]
    with grpc.insecure_channel(f"127.0.0.1:{_grpc_port(stack, service)}") as ch:
        if service == "collector":
            collector_pb2_grpc.MarketDataServiceStub(ch).ListSymbols(  # type: ignore[no-untyped-call]
                collector_pb2.ListSymbolsRequest(), timeout=TIMEOUT, metadata=md_
            )
        elif service == "execution":
            execution_pb2_grpc.ExecutionServiceStub(ch).ListOrders(  # type: ignore[no-untyped-call]
                execution_pb2.ListOrdersRequest(), timeout=TIMEOUT, metadata=md_
            )
        else:
            inference_pb2_grpc.InferenceServiceStub(ch).GetModelStatus(  # type: ignore[no-untyped-call]
                ipb.GetModelStatusRequest(), timeout=TIMEOUT, metadata=md_
            )


@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_a_grpc_slowloris_is_cut_at_the_handshake_deadline_while_clients_are_served(
    stack: services.StackSettings, service: str
) -> None:
    n = 8
    incomplete = f"kairos_{service}_grpc_handshakes_incomplete_total"
    before = _counter(_metrics(stack, service), incomplete) if service != "inference" else 0.0
    with attack():
        # The 24-byte HTTP/2 preface at a byte every 500 ms: 12 s, past the 5 s deadline; an
        # authenticated call is served during the attack.
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        closed = _slowloris(
            _grpc_port(stack, service), "127.0.0.5", n, preface, 0.5, lambda: _honest_call(stack, service)
        )
        assert all(closed), f"{closed.count(False)} slowloris connections still open"
        if service != "inference":  # grpc-python exports no such counter
            wait_for(
                lambda: _counter(_metrics(stack, service), incomplete) - before >= n,
                timeout=TIMEOUT,
                what=f"{incomplete} counting the slowloris",
            )
        _honest_call(stack, service)


@pytest.mark.parametrize("service", GRPC_SERVICES)
def test_a_grpc_message_over_the_size_limit_is_refused_at_its_header(
    stack: services.StackSettings, service: str
) -> None:
    md_ = [("authorization", f"Bearer {credentials.Credentials(stack.run_dir).token(service)}")]
    with attack(), grpc.insecure_channel(f"127.0.0.1:{_grpc_port(stack, service)}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            if service == "collector":  # limit 4 MiB
                big = collector_pb2.PublishRequest(source="x" * (5 << 20))
                collector_pb2_grpc.MarketDataServiceStub(ch).Publish(  # type: ignore[no-untyped-call]
                    iter([big]), timeout=TIMEOUT, metadata=md_
                )
            elif service == "execution":  # limit 4 MiB
                order = execution_pb2.SubmitOrderRequest(client_order_id="x" * (5 << 20), symbol="EURUSD")
                execution_pb2_grpc.ExecutionServiceStub(ch).SubmitOrder(  # type: ignore[no-untyped-call]
                    order, timeout=TIMEOUT, metadata=md_
                )
            else:  # limit 16 MiB
                req = ipb.PredictRequest(symbol="x" * (17 << 20))
                inference_pb2_grpc.InferenceServiceStub(ch).Predict(  # type: ignore[no-untyped-call]
                    req, timeout=TIMEOUT, metadata=md_
                )
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value
        _honest_call(stack, service)


# --- The execution service's trading listener (order commands down, fills up) -----------------


def _trading_metrics() -> str:
    return f"http://127.0.0.1:{TRADING.metrics}/metrics"


def test_a_slowloris_on_the_trading_listener_is_cut_while_the_terminal_stays_connected(
    stack: services.StackSettings,
) -> None:
    from kairos.bridge.client import Bridge

    url = _trading_metrics()
    timeouts0 = _counter(url, "kairos_bridge_frame_errors_total", reason="handshake_timeout")
    refused0 = _counter(url, "kairos_bridge_connections_refused_total")
    with Bridge(
        collector="", execution=f"127.0.0.1:{TRADING.bridge}", bridge_key=stack.bridge_key
    ) as terminal:
        wait_for(lambda: terminal.counters()["trading_connected"] == 1, timeout=TIMEOUT, what="the terminal")
        with attack():
            closed = _slowloris(TRADING.bridge, "127.0.0.6", SLOWLORIS_CONNECTIONS, NEVER_A_HELLO, 0.25)
            assert all(closed), f"{closed.count(False)} slowloris connections still open"
            timeouts = (
                _counter(url, "kairos_bridge_frame_errors_total", reason="handshake_timeout") - timeouts0
            )
            refused = _counter(url, "kairos_bridge_connections_refused_total") - refused0
            assert timeouts + refused == SLOWLORIS_CONNECTIONS and timeouts > 0 and refused > 0
            counters = terminal.counters()
            # The terminal's connection was never cut: connected, no reconnect.
            assert counters["trading_connected"] == 1 and counters["reconnects"] == 0, counters
            assert _counter(url, "kairos_bridge_connections", channel="trading") == 1


@pytest.mark.parametrize("then", ["stalls", "floods"])
def test_a_1mib_length_prefix_on_the_trading_listener_is_refused_at_the_header(
    stack: services.StackSettings, then: str
) -> None:
    with attack():
        _prefix_flood(TRADING.bridge, "127.0.0.7", then)
