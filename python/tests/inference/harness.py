"""Helpers of the inference tests: real data loaders, the server in a thread, stream client, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import queue
import threading
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import onnx
import pandas as pd  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families

from kairos.features import ModelCard, compute_features, to_epoch_ms
from kairos.inference.auth import with_token
from kairos.inference.config import InferenceConfig
from kairos.inference.server import InferenceServer
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.training.data import load_bars, read_ticks

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data"
# KAIROS_TEST_MODEL_DIR points the tests at another model directory (e.g. a freshly trained one).
MODEL_DIR = Path(os.environ.get("KAIROS_TEST_MODEL_DIR", REPO / "python" / "tests" / "data" / "model"))
T = TypeVar("T")


# --- real data ---------------------------------------------------------------------------------


def load_gbpusd_m1(n: int | None = None) -> pd.DataFrame:
    """Real GBPUSD M1 bid bars read by the training importer; spread = mean of ask - bid over open,
    high, low, close from the ask twin (clamped to 0 where crossed), as the fixture's training data
    (see its card)."""
    bars, _ = load_bars(str(DATA / "gbpusd-m1-bid-2012.csv"))
    df = bars.iloc[:n].reset_index(drop=True) if n is not None else bars
    df["open_time_msc"] = to_epoch_ms(df["time"])
    return df


def proto_bars(df: pd.DataFrame, symbol: str = "GBPUSD") -> list[md.Bar]:
    return [
        md.Bar(
            symbol=symbol,
            period_s=60,
            open_time_msc=int(r.open_time_msc),
            open=r.open,
            high=r.high,
            low=r.low,
            close=r.close,
            tick_volume=int(r.tick_volume),
            spread_mean=r.spread,
        )
        for r in df.itertuples(index=False)
    ]


def load_eurusd_ticks() -> pd.DataFrame:
    """The real EURUSD ticks (time, time_msc, bid, ask, volume), read by the training importer."""
    return read_ticks(str(DATA / "eurusd-ticks-2020-01-01.csv")).reset_index(drop=True)


# --- the model ---------------------------------------------------------------------------------


def with_card(src: Path, dst: Path, **changes: Any) -> Path:
    """A copy of the model with some card fields changed (embedded card and model.card.json)."""
    m = onnx.load(str(src))
    card = ModelCard.from_onnx(m)
    for k, v in changes.items():
        setattr(card, k, v)
    card.embed(m)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(dst))
    card.save(dst.with_name("model.card.json"))
    return dst


def lively(card: ModelCard, stop_vol_mult: float) -> ModelCard:
    """The fixture's card with a policy that trades often on a short real replay (the end-to-end parity
    checks: test_policy_parity, wine_tester_check); ``stop_vol_mult`` sets how far its stops are."""
    assert card.policy is not None, "the model fixture carries a policy (regenerate: make model-fixture)"
    pol = dataclasses.replace(
        card.policy,
        entry_edge=0.2e-4,
        exit_edge=0.05e-4,
        min_hold_bars=2,
        max_hold_bars=12,
        cooldown_bars=1,
        target_vol=0.6e-4,
        max_lots=1.0,
        stop_vol_mult=stop_vol_mult,
    )
    return dataclasses.replace(card, policy=pol)


def offline_predictions(model_path: Path, bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The training pipeline's answer: batch features of all bars, model run on every full window.
    Returns (row index of the bar each prediction is for, probabilities)."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    card = ModelCard.from_onnx(model_path)
    x = compute_features(bars[["time", "open", "high", "low", "close", "spread", "tick_volume"]])
    ok = np.isfinite(x).all(axis=1)
    first = int(np.argmax(ok))
    idx = np.arange(first + card.window - 1, len(x))
    windows = np.stack([x[i - card.window + 1 : i + 1] for i in idx]).astype(np.float32)
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    probs = sess.run([card.output_name], {card.input_name: windows})[0]
    return idx, np.asarray(probs)


# --- servers -----------------------------------------------------------------------------------


class ServerThread:
    """An InferenceServer on its own event loop in a thread; tests talk to it over loopback gRPC."""

    def __init__(self, cfg: InferenceConfig) -> None:
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="inference-server", daemon=True)
        self.server: InferenceServer | None = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ServerThread:
        self.thread.start()

        async def make() -> InferenceServer:
            s = InferenceServer(self.cfg)
            await s.start()
            return s

        self.server = self.call(make())
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def target(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    def metrics_text(self) -> str:
        assert self.server is not None
        url = f"http://127.0.0.1:{self.server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    """Value of one sample in Prometheus text (0 if absent)."""
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


# The bearer token of the test servers; channel() sends it.
TOKEN = "inference-test-token-3e8a"


def wait_publisher_connected(srv: ServerThread) -> None:
    """Until the server's NATS signal publisher is connected (signals offered earlier wait in its backlog)."""
    from kairos.stack.loopback import wait_for

    wait_for(
        lambda: (
            srv.server is not None
            and srv.server.publisher is not None
            and srv.server.publisher.nc is not None
        )
    )


def channel(target: str, token: str = TOKEN) -> grpc.Channel:
    """An insecure channel to a test server that sends the token on every call."""
    return with_token(grpc.insecure_channel(target), token)


def server_config(model: Path | str, **kw: Any) -> InferenceConfig:
    base: dict[str, Any] = {
        "token": TOKEN,
        "model": str(model),
        "grpc_addr": "127.0.0.1:0",
        "metrics_addr": "127.0.0.1:0",
        "nats_url": "",
        "poll_interval_s": 0.0,
        "max_batch": 16,
    }
    base.update(kw)
    return InferenceConfig(**base)


class StreamClient:
    """A StreamPredict call driven step by step: send a request, read its response (bounded waits)."""

    def __init__(self, target: str) -> None:
        self.channel = channel(target)
        self.stub = inference_pb2_grpc.InferenceServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self._out: queue.Queue[pb.StreamPredictRequest | None] = queue.Queue()
        self.responses = self.stub.StreamPredict(iter(self._out.get, None), timeout=120)

    def send(self, req: pb.StreamPredictRequest) -> None:
        self._out.put(req)

    def recv(self) -> pb.StreamPredictResponse:
        resp: pb.StreamPredictResponse = next(self.responses)
        return resp

    def ask(self, req: pb.StreamPredictRequest) -> pb.StreamPredictResponse:
        self.send(req)
        return self.recv()

    def close(self) -> None:
        self._out.put(None)
        with contextlib.suppress(grpc.RpcError, StopIteration):
            for _ in self.responses:
                pass
        self.channel.close()

    def cancel(self) -> None:
        self.responses.cancel()
        self.channel.close()
