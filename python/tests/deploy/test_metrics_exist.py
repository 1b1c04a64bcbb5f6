"""Every metric the Grafana dashboards and the alert rules use is exported by the real services.

The test builds the Go services, starts nats-server (JetStream), kairos-inference (on the training
branch's model fixture, with a twin of it in shadow), kairos-collector, kairos-execution and
kairos-record as plain processes on free loopback ports, drives real traffic through them (an MT5
bridge session replaying real EURUSD ticks, one crossed tick, one oversized frame, a filled paper order
and a risk-denied one) and then scrapes the four /metrics endpoints until every name is there or the
deadline passes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from tests import natsconf
from tests.inference.harness import with_card

from kairos.stack.loopback import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[3]
DATA = REPO.parent / "shared" / "data" / "eurusd-ticks-2020-01-01.csv"
MODEL = REPO / "python" / "tests" / "data" / "model" / "model.onnx"
DEADLINE_S = 60.0
TOKEN = "metric-test-token"
BRIDGE_KEY = "metric-test-bridge-key-0123456789"

pytestmark = pytest.mark.slow


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return f"--- {self.name} (exit {self.popen.poll()}) last {n} log lines ---\n" + "\n".join(lines[-n:])


@dataclass
class Stack:
    tmp: Path
    procs: list[Proc] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        f = log.open("wb")
        popen = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        f.close()
        p = Proc(name, popen, log)
        self.procs.append(p)
        return p

    def logs(self) -> str:
        return "\n".join(p.tail() for p in self.procs)

    def stop(self) -> None:
        """Stops the processes one by one, newest first, so each can still reach what it depends on."""
        for p in reversed(self.procs):
            if p.popen.poll() is None:
                p.popen.terminate()
            try:
                p.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(timeout=5)


def _build(tmp: Path) -> Path:
    bin_dir = tmp / "bin"
    env = {**os.environ, "GOFLAGS": "-buildvcs=false"}
    for module, pkg in (
        ("go/collector", "./cmd/kairos-collector"),
        ("go/execution", "./cmd/kairos-execution"),
    ):
        subprocess.run(
            ["go", "build", "-o", f"{bin_dir}/", pkg], cwd=REPO / module, env=env, check=True, timeout=900
        )
    return bin_dir


def _wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited before serving {url}\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout}s\n{proc.tail()}")


@pytest.fixture(scope="module")
def stack(deploy_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    bins = _build(tmp)
    s = Stack(tmp)
    ports = s.ports
    for key in (
        "nats",
        "inf_grpc",
        "inf_metrics",
        "col_bridge",
        "col_grpc",
        "col_metrics",
        "ex_bridge",
        "ex_grpc",
        "ex_metrics",
        "rec_grpc",
        "rec_metrics",
    ):
        ports[key] = free_port()
    nats_url = f"nats://127.0.0.1:{ports['nats']}"
    (tmp / "token").write_text(TOKEN)
    (tmp / "bridge.key").write_text(BRIDGE_KEY + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    try:
        nats_conf = tmp / "nats.conf"
        nats_conf.write_text(f"listen: 127.0.0.1:{ports['nats']}\n" + natsconf.jetstream_block(tmp / "js"))
        nats = s.start("nats-server", [str(deploy_bin / "nats-server"), "-c", str(nats_conf)])
        wait_for_port(ports["nats"], None)
        assert nats.popen.poll() is None, nats.tail()

        collector = s.start(
            "kairos-collector",
            [
                str(bins / "kairos-collector"),
                "-bridge-addr",
                f"127.0.0.1:{ports['col_bridge']}",
                "-grpc-addr",
                f"127.0.0.1:{ports['col_grpc']}",
                "-metrics-addr",
                f"127.0.0.1:{ports['col_metrics']}",
                "-nats-url",
                nats_url,
                "-inference-endpoints",
                f"127.0.0.1:{ports['inf_grpc']}",
                "-inference-token-file",
                str(tmp / "token"),
                "-token-file",
                str(tmp / "token"),
                "-bar-periods",
                "M1,M5",
                "-bridge-key-file",
                str(tmp / "bridge.key"),
            ],
            env,
        )
        _wait_http(f"http://127.0.0.1:{ports['col_metrics']}/metrics", collector)
        wait_for_port(ports["col_bridge"], None)

        # Market data arrives before any inference endpoint is up (a real start-up order): the
        # collector must drop and count it rather than block.
        early_session(ports["col_bridge"])

        # A challenger in shadow (the fixture under another version): the shadow figures and the
        # promotion test are exported as they are in a real deployment with --shadow-models.
        twin = with_card(MODEL, tmp / "twin" / "model.onnx", version="twin")
        inference = s.start(
            "kairos-inference",
            [
                sys.executable,
                "-m",
                "kairos.inference.cli",
                "--model",
                str(MODEL),
                "--grpc-addr",
                f"127.0.0.1:{ports['inf_grpc']}",
                "--metrics-addr",
                f"127.0.0.1:{ports['inf_metrics']}",
                "--nats-url",
                nats_url,
                "--poll-interval-s",
                "0",
                "--token-file",
                str(tmp / "token"),
                "--shadow-models",
                str(twin),
            ],
            env,
        )
        _wait_http(f"http://127.0.0.1:{ports['inf_metrics']}/metrics", inference)
        recorder = s.start(
            "kairos-record",
            [
                sys.executable,
                "-m",
                "kairos.recording.recorder",
                "--dir",
                str(tmp / "recorded"),
                "--nats-url",
                nats_url,
                "--grpc-addr",
                f"127.0.0.1:{ports['rec_grpc']}",
                "--metrics-addr",
                f"127.0.0.1:{ports['rec_metrics']}",
            ],
            env,
        )
        _wait_http(f"http://127.0.0.1:{ports['rec_metrics']}/metrics", recorder)
        wait_for_port(ports["inf_grpc"], None)

        execution = s.start(
            "kairos-execution",
            [
                str(bins / "kairos-execution"),
                "serve",
                "-grpc-addr",
                f"127.0.0.1:{ports['ex_grpc']}",
                "-metrics-addr",
                f"127.0.0.1:{ports['ex_metrics']}",
                "-bridge-addr",
                f"127.0.0.1:{ports['ex_bridge']}",
                "-nats-url",
                nats_url,
                "-db",
                str(tmp / "execution.db"),
                "-venue",
                "paper",
                "-token-file",
                str(tmp / "token"),
            ],
            env,
        )
        _wait_http(f"http://127.0.0.1:{ports['ex_metrics']}/metrics", execution)
        wait_for_port(ports["ex_grpc"], None)
    except BaseException:
        print(s.logs())
        s.stop()
        raise
    try:
        yield s
    finally:
        s.stop()


# --- traffic --------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_frame(sock: socket.socket) -> bytes:
    length = shift = 0
    while True:
        b = sock.recv(1)
        if not b:
            raise ConnectionError("connection closed before a frame")
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            raise ConnectionError("connection closed inside a frame")
        data += chunk
    return data


def _ticks() -> list[tuple[int, float, float]]:
    from kairos.training.data import read_ticks

    ticks = read_ticks(str(DATA))
    return [
        (int(t), float(b), float(a))
        for t, b, a in zip(ticks["time_msc"], ticks["bid"], ticks["ask"], strict=True)
    ]


def early_session(port: int) -> None:
    """A short session just before the replay's first tick, sent while inference is still down."""
    first_time, bid, ask = _ticks()[0]
    ticks = [(first_time - 3000 + 1000 * i, bid, ask) for i in range(3)]
    replay_bridge_session(port, ticks, session_id=int(time.time()) - 1, tail=False).close()


def replay_bridge_session(
    port: int, ticks: list[tuple[int, float, float]] | None = None, session_id: int = 0, tail: bool = True
) -> socket.socket:
    """An MT5 bridge's market-data session: Hello, SymbolInfo, real ticks, then (tail) a crossed tick
    and fresh quotes. Returns the open socket: the collector counts the connection while it lives.
    """
    from kairos.bridge.peer import hello_proof
    from kairos.bridge.v1 import bridge_pb2
    from kairos.marketdata.v1 import marketdata_pb2

    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    challenge = bridge_pb2.Frame.FromString(_read_frame(sock)).challenge  # the server speaks first
    seq = 0

    def send(**body: Any) -> None:
        nonlocal seq
        is_heartbeat = "heartbeat" in body
        if not is_heartbeat:
            seq += 1
        frame = bridge_pb2.Frame(
            sequence=0 if is_heartbeat else seq, sent_time_us=time.time_ns() // 1000, **body
        )
        data = frame.SerializeToString()
        sock.sendall(_varint(len(data)) + data)

    hello = bridge_pb2.Hello(
        api_version=2,
        bridge_version="metric-test",
        channel=bridge_pb2.CHANNEL_MARKET_DATA,
        session_id=session_id or int(time.time()),
        terminal_name="kairos metric test",
        ea_symbol="EURUSD",
        client_nonce=os.urandom(32),
    )
    hello.auth_proof = hello_proof(
        BRIDGE_KEY.encode(),
        False,
        challenge.server_nonce,
        hello.client_nonce,
        hello.session_id,
        hello.channel,
        hello.api_version,
    )
    send(hello=hello)
    welcome = bridge_pb2.Frame.FromString(_read_frame(sock))
    assert welcome.WhichOneof("body") == "welcome", welcome
    info = marketdata_pb2.SymbolInfo(
        symbol="EURUSD",
        digits=5,
        point=1e-5,
        contract_size=100_000,
        volume_min=0.01,
        volume_max=500,
        volume_step=0.01,
        tick_size=1e-5,
        tick_value=1,
        currency_base="EUR",
        currency_profit="USD",
    )
    send(symbol_info=info)
    ticks = _ticks() if ticks is None else ticks
    tick_seq = 0

    def batch(chunk: list[tuple[int, float, float]]) -> None:
        nonlocal tick_seq
        tb = marketdata_pb2.TickBatch(
            symbol="EURUSD",
            time_msc=[t[0] for t in chunk],
            bid=[t[1] for t in chunk],
            ask=[t[2] for t in chunk],
            flags=[6] * len(chunk),  # TICK_FLAG_BID | TICK_FLAG_ASK
            sequence=range(tick_seq + 1, tick_seq + len(chunk) + 1),
        )
        send(ticks=tb)
        tick_seq += len(chunk)

    for i in range(0, len(ticks), 256):
        batch(ticks[i : i + 256])
        if i % 2048 == 0:
            send(heartbeat=bridge_pb2.Heartbeat(time_us=time.time_ns() // 1000))
    if not tail:
        return sock
    last_time, last_bid, last_ask = ticks[-1]
    batch([(last_time + 1000, last_ask + 0.0005, last_ask)])  # crossed: bid above ask, rejected
    now = int(time.time() * 1000)
    batch([(now - 200 + 10 * i, last_bid, last_ask) for i in range(20)])  # fresh quotes for execution
    return sock


def send_oversized_frame(port: int) -> None:
    """A frame announcing 2 MiB (the bound is 1 MiB): the collector must close with a counted reason."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(_varint(2 << 20) + b"\x00" * 64)
        sock.settimeout(10)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass


def trade(port: int, round_no: int = 0) -> None:
    """One small paper market order (filled) and one far over the size limit (denied by risk)."""
    import grpc

    from kairos.execution.v1 import execution_pb2, execution_pb2_grpc
    from kairos.types.v1 import types_pb2

    md = (("authorization", f"Bearer {TOKEN}"),)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = execution_pb2_grpc.ExecutionServiceStub(ch)  # type: ignore[no-untyped-call]
        for n, lots in enumerate(
            (types_pb2.Decimal(units=1, scale=2), types_pb2.Decimal(units=100_000, scale=0))
        ):
            req = execution_pb2.SubmitOrderRequest(
                client_order_id=f"metric-test-{round_no}-{n}-{int(time.time())}",
                symbol="EURUSD",
                side=execution_pb2.ORDER_SIDE_BUY,
                type=execution_pb2.ORDER_TYPE_MARKET,
                time_in_force=execution_pb2.TIME_IN_FORCE_IOC,
                quantity=lots,
                strategy_id="metric-test",
            )
            try:
                stub.SubmitOrder(req, metadata=md, timeout=10)
            except grpc.RpcError as e:
                # A denial may come back as a status; the metric is what this test is about.
                print(f"SubmitOrder {n}: {e.code()} {e.details()}")


# --- scrape ---------------------------------------------------------------------------------------


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        text: str = r.read().decode()
        return text


def _poll(ok: Callable[[], bool], what: str, stack: Stack, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{stack.logs()}")


def exported_names(url: str) -> set[str]:
    """Names in an exposition: declared families (# HELP/# TYPE) and every sample name."""
    text = _scrape(url)
    names = set()
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def missing_names(
    required: dict[str, list[str]], exported: set[str], deploy: ModuleType
) -> dict[str, list[str]]:
    return {
        n: where
        for n, where in required.items()
        if n not in exported and deploy.exported_family(n) not in exported
    }


def test_every_metric_of_the_dashboards_and_alerts_is_exported(stack: Stack, deploy: ModuleType) -> None:
    required = deploy.required_metrics()
    by_service = {
        "collector": f"http://127.0.0.1:{stack.ports['col_metrics']}/metrics",
        "inference": f"http://127.0.0.1:{stack.ports['inf_metrics']}/metrics",
        "execution": f"http://127.0.0.1:{stack.ports['ex_metrics']}/metrics",
        "recorder": f"http://127.0.0.1:{stack.ports['rec_metrics']}/metrics",
    }
    # kairos_bridge_* (go/bridgelink) is exported by the collector and execution, one channel each.
    owners = (*by_service, "bridge")
    unowned = [n for n in required if not any(n.startswith(f"kairos_{svc}_") for svc in owners)]
    assert not unowned, f"metrics no Kairos service could export: {unowned}"

    col_metrics = by_service["collector"]
    link_up = f'kairos_collector_inference_endpoint_up{{endpoint="127.0.0.1:{stack.ports["inf_grpc"]}"}} 1'
    _poll(lambda: link_up in _scrape(col_metrics), "the collector's StreamPredict link to come up", stack)
    bridge = replay_bridge_session(stack.ports["col_bridge"])
    try:
        send_oversized_frame(stack.ports["col_bridge"])
        deadline = time.monotonic() + DEADLINE_S
        traded = False
        next_trade = time.monotonic() + 3  # after the fresh quotes reached execution over NATS
        rounds = 0
        missing: dict[str, list[str]] = dict(required)
        while time.monotonic() < deadline:
            # Again every few seconds while the order series are missing: on a loaded machine the
            # first quotes can reach execution later than 3 s, and an order without one is refused.
            if time.monotonic() >= next_trade and (not traded or any("execution" in n for n in missing)):
                trade(stack.ports["ex_grpc"], rounds)
                traded, rounds, next_trade = True, rounds + 1, time.monotonic() + 3
            exported: set[str] = set()
            for url in by_service.values():
                exported |= exported_names(url)
            missing = missing_names(required, exported, deploy)
            if traded and not missing:
                break
            for p in stack.procs:
                assert p.popen.poll() is None, f"{p.name} died\n{stack.logs()}"
            time.sleep(0.5)
    finally:
        bridge.close()

    report = "\n".join(f"  {n}  (used by {where[0]})" for n, where in sorted(missing.items()))
    assert not missing, (
        f"{len(missing)} of {len(required)} metrics used by deploy/ are not exported after driving traffic. "
        "Fix the name in the dashboard/rule, or (for a labelled metric only seen on rare events) initialise "
        "its known label values at start-up so the series exists at 0:\n" + report + "\n" + stack.logs()
    )


def test_prometheus_evaluates_every_rule_and_dashboard_query_on_the_live_services(
    stack: Stack, deploy: ModuleType, tmp_path: Path
) -> None:
    """The real Prometheus (Debian package) scrapes the services with the shipped rules: every target
    is up, every rule evaluates without error and every dashboard query runs (promtool only parses)."""
    import json
    import shutil
    import urllib.error
    import urllib.parse

    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus (Debian package prometheus) is not installed; `make setup` installs it")
    targets = {
        "kairos-collector": stack.ports["col_metrics"],
        "kairos-inference": stack.ports["inf_metrics"],
        "kairos-execution": stack.ports["ex_metrics"],
        "kairos-recorder": stack.ports["rec_metrics"],
    }
    rules = sorted(str(p) for p in (REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
    scrape = [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        for job, port in targets.items()
    ]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": rules,
        "scrape_configs": scrape,
    }
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    proc = stack.start(
        "prometheus",
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    _wait_http(f"http://127.0.0.1:{port}/-/ready", proc)

    def get(path: str) -> Any:
        with urllib.request.urlopen(f"{api}/{path}", timeout=5) as r:
            return json.loads(r.read())["data"]

    def all_up() -> bool:
        active = get("targets")["activeTargets"]
        return len(active) == len(targets) and all(t["health"] == "up" for t in active)

    _poll(all_up, "Prometheus to scrape every service", stack)
    _poll(
        lambda: all(
            r.get("lastEvaluation", "").startswith("2") for g in get("rules")["groups"] for r in g["rules"]
        ),
        "every rule group to be evaluated once",
        stack,
    )
    broken = [
        f"{r['name']}: {r.get('lastError')}"
        for g in get("rules")["groups"]
        for r in g["rules"]
        if r["health"] != "ok"
    ]
    assert not broken, broken

    failures = []
    for path in sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json")):
        for q in deploy.dashboard_queries(path):
            expr = deploy.grafana_to_promql(q.expr)
            url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    status = json.loads(r.read())["status"]
            except urllib.error.HTTPError as e:
                status = f"{e.code} {e.read().decode()[:200]}"
            if status != "success":
                failures.append(f"{q.source}: {status}")
    assert not failures, failures
