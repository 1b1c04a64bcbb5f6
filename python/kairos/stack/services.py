"""The local stack's settings and how each service is started from them.

One place knows each service's command line: `kairos up`, the demo, the end-to-end test and the
deployment tests all start the services through `specs()`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kairos.envconfig import format_duration, parse_duration
from kairos.inference.config import MAX_KEEP_WARM_S
from kairos.stack import credentials
from kairos.stack.loopback import free_port, free_port_run
from kairos.stack.processes import ServiceSpec

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("KAIROS_SHARED_DATA", REPO.parent / "shared" / "data"))
STATE_DIR = Path(os.environ.get("KAIROS_HOME", REPO / ".kairos"))
GO_BINARIES = {
    "kairos-collector": "./go/collector/cmd/kairos-collector",
    "kairos-execution": "./go/execution/cmd/kairos-execution",
}


# The services a stack may run, by ServiceSpec.name (for --cpu-affinity).
SERVICE_NAMES = ("cpu-latency", "collector", "inference", "execution", "recorder", "console")


def parse_cpus(text: str, available: set[int] | None = None) -> list[int]:
    """A CPU list as taskset takes it ("1", "0-3", "0,2-3") → the CPUs, each one this process may
    use; ValueError naming what is wrong."""
    allowed = available if available is not None else os.sched_getaffinity(0)
    cpus: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ValueError(f"{text!r} is not a CPU list (like 1, 0-3 or 0,2-3)") from None
        if first < 0 or last < first:
            raise ValueError(f"{text!r} is not a CPU list (like 1, 0-3 or 0,2-3)")
        cpus.update(range(first, last + 1))
    if missing := sorted(cpus - allowed):
        usable = sorted(allowed)
        raise ValueError(f"CPU {missing[0]} of {text!r} is not one this machine lets us use ({usable})")
    return sorted(cpus)


# The stack's --keep-warm (ADR 0121): the inference server rehearses a recent request's path every 5 ms
# while idle. The server alone (kairos-inference) keeps its own default, off.
DEFAULT_KEEP_WARM = "5ms"


def check_keep_warm(raw: str) -> str:
    """kairos up's --keep-warm, checked as the inference server will (ADR 0118): "" (the server's own
    setting) or a Go duration from 0 to MAX_KEEP_WARM_S; a ValueError names the flag otherwise."""
    text = raw.strip()
    if not text:
        return ""
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise ValueError(f"--keep-warm: {e}") from None
    if seconds > MAX_KEEP_WARM_S:
        raise ValueError(f"--keep-warm {text}: at most {format_duration(MAX_KEEP_WARM_S)}")
    return text


def parse_cpu_affinity(items: Sequence[str], available: set[int] | None = None) -> dict[str, str]:
    """``SERVICE[,SERVICE...]=CPUS`` items (``*`` names every service not named otherwise) → the CPU
    list of each, normalized ("0,2,3"); ValueError naming the bad item."""
    out: dict[str, str] = {}
    for item in items:
        names, sep, cpus = item.partition("=")
        if not sep or not names.strip() or not cpus.strip():
            raise ValueError(f"--cpu-affinity {item!r}: expected SERVICE[,SERVICE...]=CPUS, e.g. inference=1")
        try:
            normalized = ",".join(str(c) for c in parse_cpus(cpus, available))
        except ValueError as e:
            raise ValueError(f"--cpu-affinity {item!r}: {e}") from None
        for name in (n.strip() for n in names.split(",")):
            if name != "*" and name not in SERVICE_NAMES:
                raise ValueError(
                    f"--cpu-affinity {item!r}: no service {name!r} (one of {', '.join(SERVICE_NAMES)} or *)"
                )
            if name in out:
                raise ValueError(f"--cpu-affinity {item!r}: {name} already has CPUs {out[name]}")
            out[name] = normalized
    return out


def default_cpu_affinity(workers: int, available: set[int] | None = None) -> dict[str, str]:
    """The stack's CPU layout when none is given (ADR 0122): the inference workers alone on the last
    ``workers`` CPUs this process may use, every other service on the rest. With no CPU left for the
    rest, none (the kernel places every service)."""
    cpus = sorted(available if available is not None else os.sched_getaffinity(0))
    if workers < 1 or len(cpus) - workers < 1:
        return {}
    return {"inference": ",".join(map(str, cpus[-workers:])), "*": ",".join(map(str, cpus[:-workers]))}


def resolve_cpu_affinity(
    items: Sequence[str] | None, workers: int, available: set[int] | None = None
) -> dict[str, str]:
    """kairos up's --cpu-affinity: not given (None or empty), the default layout for ``workers``
    inference workers; ``none``, no pinning at all; else the items (parse_cpu_affinity)."""
    if not items:
        return default_cpu_affinity(workers, available)
    if "none" in (names := [i.strip() for i in items]):
        if names != ["none"]:
            raise ValueError("--cpu-affinity none: given with other items; none alone turns pinning off")
        return {}
    return parse_cpu_affinity(items, available)


# Inference workers the local stack runs at most (`kairos up --inference-workers`): Ports keeps this
# many consecutive ports for the workers' own addresses and their metrics.
MAX_INFERENCE_WORKERS = 8


@dataclass
class Ports:
    """Loopback ports of one stack; `Ports.free()` picks unused ones (tests, parallel stacks).

    With several inference workers (ADR 0115), worker i serves on ``inference_workers + i`` (its own
    address, which the collector streams to) and its metrics on ``inference_metrics + i``."""

    collector_bridge: int = 7400
    collector_grpc: int = 7401
    collector_metrics: int = 9401
    nats: int = 4222
    inference_grpc: int = 7501
    inference_metrics: int = 9501
    inference_workers: int = 7511
    execution_grpc: int = 7601
    execution_bridge: int = 7600
    execution_metrics: int = 9601
    recorder_grpc: int = 7701
    recorder_metrics: int = 9701
    console: int = 7700
    cpu_latency_metrics: int = 9801

    @classmethod
    def free(cls) -> Ports:
        runs = {"inference_metrics", "inference_workers"}
        return cls(
            **{
                name: free_port_run(MAX_INFERENCE_WORKERS) if name in runs else free_port()
                for name in cls.__dataclass_fields__
            }
        )


@dataclass
class StackSettings:
    """Everything `kairos up` needs; defaults are the embedded, loopback-only demo set-up."""

    ports: Ports = field(default_factory=Ports)
    run_dir: Path = STATE_DIR / "run"
    bin_dir: Path = REPO / "build" / "bin"
    # models:/<name>@<alias>, or a path to a local .onnx with its model card beside it.
    model: str = ""
    mlflow_uri: str = f"sqlite:///{STATE_DIR / 'mlflow.db'}"
    journal: str = ""  # default: <run_dir>/journal.db (SQLite)
    token: str = ""
    bridge_key: str = ""
    symbols: tuple[str, ...] = ("EURUSD",)
    # Execution's fallback policy, for models whose card carries none (a card's policy wins, ADR 0081):
    # lots per position and the p(up) - p(down) needed to trade.
    lots: str = "0.10"
    threshold: float = 0.10
    # Extra execution flags (e.g. the paper venue's slippage model).
    execution_args: tuple[str, ...] = ()
    # Challengers inference evaluates in shadow on paper (ADR 0086): model sources, as --model.
    shadow_models: tuple[str, ...] = ()
    # Extra inference flags (e.g. --drift-window).
    inference_args: tuple[str, ...] = ()
    # Every inference worker's --keep-warm (ADR 0118), as a Go duration; the stack rehearses every 5 ms
    # while idle unless told otherwise ("0": off, ADR 0121); empty: the server's own setting (off
    # unless KAIROS_INFERENCE_KEEP_WARM says otherwise).
    inference_keep_warm: str = DEFAULT_KEEP_WARM
    # Every inference worker's --idle-spin (ADR 0123): a SCHED_IDLE thread keeps its CPU from going idle,
    # at the cost of that CPU. Off unless asked (kairos up --idle-spin).
    inference_idle_spin: bool = False
    # Inference server processes (ADR 0115). With more than one, each also serves on its own address
    # and the collector streams to those, spreading the symbols over the workers by its hash ring.
    inference_workers: int = 1
    # Extra collector flags (e.g. the tester's, TESTER_COLLECTOR_ARGS).
    collector_args: tuple[str, ...] = ()
    # Hold every CPU's wake-up latency at most this many µs while the stack runs (ADR 0117): a
    # service of its own, started first, holding /dev/cpu_dma_latency. None: the host as it is.
    cpu_latency_us: int | None = None
    # The CPUs each service may run on (parse_cpu_affinity; "*" for every service not named), e.g.
    # the inference server alone on one CPU and the rest on the others (ADR 0117). Empty: any.
    cpu_affinity: dict[str, str] = field(default_factory=dict)

    def cpus_for(self, service: str) -> str:
        return self.cpu_affinity.get(service, self.cpu_affinity.get("*", ""))

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports.nats}"

    def inference_worker_addrs(self) -> list[str]:
        """Each inference worker's own address; empty for a single worker (it has only the shared one)."""
        n = self.inference_workers
        if not 1 <= n <= MAX_INFERENCE_WORKERS:
            raise ValueError(f"inference workers must be 1 to {MAX_INFERENCE_WORKERS}, not {n}")
        if n == 1:
            return []
        return [f"127.0.0.1:{self.ports.inference_workers + i}" for i in range(n)]

    def inference_endpoints(self) -> list[str]:
        """Where the collector streams ticks: every worker's own address, else the shared one."""
        return self.inference_worker_addrs() or [f"127.0.0.1:{self.ports.inference_grpc}"]

    def inference_metrics_urls(self) -> list[str]:
        """Each inference worker's metrics endpoint (worker i on the metrics port + i)."""
        first = self.ports.inference_metrics
        return [f"http://127.0.0.1:{first + i}/metrics" for i in range(self.inference_workers)]

    def ensure_token(self) -> str:
        """The execution bearer token: given, or generated once per run dir (file mode 0600)."""
        self.token = self.credentials().token("execution")
        return self.token

    def credentials(self) -> credentials.Credentials:
        """Every credential of the run dir (tokens, NATS users), created once (mode 0600)."""
        return credentials.ensure(self.run_dir, self.token)

    @property
    def bridge_key_file(self) -> Path:
        """Where the bridge key lives; the services read it (--bridge-key-file), never their argv."""
        return self.run_dir / "bridge.key"

    def ensure_bridge_key(self) -> str:
        """The bridge key (docs/security.md): what the EA's BridgeKey input must hold and both bridge
        listeners check. Given, or generated once per run dir: 256 random bits as 64 hexadecimal
        characters, file mode 0600."""
        if self.bridge_key:
            credentials.write_secret(self.bridge_key_file, self.bridge_key + "\n")
        elif self.bridge_key_file.exists():
            self.bridge_key = self.bridge_key_file.read_text().strip()
        else:
            self.bridge_key = secrets.token_hex(32)
            credentials.write_secret(self.bridge_key_file, self.bridge_key + "\n")
        return self.bridge_key


# `kairos up --tester` (docs/mt5.md, ADR 0095): the execution service for an EA in the Strategy
# Tester: orders back to the terminal (the tester fills them), the engine on the tester's virtual
# time, and no duplicate-intent guard on wall-clock milliseconds (bars pass in milliseconds there).
TESTER_EXECUTION_ARGS = ("--venue=mt5", "--clock=market", "--duplicate-intent-window-ms=0")
# ... and no warm-up from history (ADR 0105): in lockstep every tick is one step the tester waits on,
# and a tester EA need not answer history requests, so a held symbol would stall the run for the
# warm-up timeout. The model warms on the test's own bars, as in the tester itself.
TESTER_COLLECTOR_ARGS = ("--inference-warmup-bars=0",)


def up_execution_args(tester: bool, venue: str) -> tuple[str, ...]:
    """The execution flags `kairos up` adds: the tester's, else the venue's (paper is the default)."""
    if venue not in ("paper", "mt5"):
        raise ValueError(f"venue must be paper or mt5, not {venue!r}")
    if tester:
        return TESTER_EXECUTION_ARGS
    return ("--venue=mt5",) if venue == "mt5" else ()


def build_go_binaries(bin_dir: Path, force: bool = False) -> dict[str, Path]:
    """`go build`s the Go services into bin_dir (Go's cache makes a rebuild of unchanged code fast)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, pkg in GO_BINARIES.items():
        target = bin_dir / name
        if force or not target.exists() or _stale(target, REPO / pkg.split("/cmd/")[0].lstrip("./")):
            subprocess.run(["go", "build", "-o", str(target), pkg], cwd=REPO, check=True)
        out[name] = target
    return out


def _stale(binary: Path, src: Path) -> bool:
    built = binary.stat().st_mtime
    return (
        any(p.stat().st_mtime > built for p in src.rglob("*.go")) or (src / "go.mod").stat().st_mtime > built
    )


def cpu_latency_spec(settings: StackSettings) -> ServiceSpec:
    """The holder of the CPUs' wake-up latency bound (kairos.stack.cpu_latency, ADR 0117): ready when
    it serves its metrics, which it does only once the kernel has the bound."""
    p = settings.ports
    return ServiceSpec(
        name="cpu-latency",
        cpus=settings.cpus_for("cpu-latency"),
        argv=[
            sys.executable,
            "-m",
            "kairos.stack.cpu_latency",
            f"--us={settings.cpu_latency_us}",
            f"--metrics-addr=127.0.0.1:{p.cpu_latency_metrics}",
        ],
        grpc_addr="",
        metrics_url=f"http://127.0.0.1:{p.cpu_latency_metrics}/metrics",
        ready_url=f"http://127.0.0.1:{p.cpu_latency_metrics}/metrics",
        ready_timeout_s=15.0,
    )


def specs(settings: StackSettings, binaries: dict[str, Path]) -> list[ServiceSpec]:
    """Collector (with embedded NATS), inference, execution (paper venue), in start order; first the
    holder of the CPUs' wake-up latency when the settings ask for one."""
    held = [cpu_latency_spec(settings)] if settings.cpu_latency_us is not None else []
    p = settings.ports
    creds = settings.credentials()
    settings.token = creds.token("execution")
    settings.ensure_bridge_key()
    key_file = f"--bridge-key-file={settings.bridge_key_file}"
    journal = settings.journal or str(settings.run_dir / "journal.db")
    inference_bin = shutil.which("kairos-inference") or str(Path(sys.executable).parent / "kairos-inference")
    return [
        *held,
        ServiceSpec(
            name="collector",
            cpus=settings.cpus_for("collector"),
            argv=[
                str(binaries["kairos-collector"]),
                f"--bridge-addr=127.0.0.1:{p.collector_bridge}",
                f"--grpc-addr=127.0.0.1:{p.collector_grpc}",
                f"--metrics-addr=127.0.0.1:{p.collector_metrics}",
                f"--nats-addr=127.0.0.1:{p.nats}",
                key_file,
                f"--nats-auth-file={creds.nats_auth_file}",
                f"--nats-creds={creds.nats_creds('collector')}",
                f"--token-file={creds.token_file('collector')}",
                f"--inference-endpoints={','.join(settings.inference_endpoints())}",
                f"--inference-token-file={creds.token_file('inference')}",
                # The inference server starts after the collector; keep the link's retries short.
                "--inference-backoff-max=500ms",
                *settings.collector_args,
            ],
            grpc_addr=f"127.0.0.1:{p.collector_grpc}",
            metrics_url=f"http://127.0.0.1:{p.collector_metrics}/metrics",
        ),
        ServiceSpec(
            name="inference",
            cpus=settings.cpus_for("inference"),
            argv=[
                inference_bin,
                f"--grpc-addr=127.0.0.1:{p.inference_grpc}",
                f"--metrics-addr=127.0.0.1:{p.inference_metrics}",
                f"--model={settings.model}",
                f"--tracking-uri={settings.mlflow_uri}",
                "--poll-interval-s=5",
                f"--nats-url={settings.nats_url}",
                f"--nats-creds={creds.nats_creds('inference')}",
                f"--token-file={creds.token_file('inference')}",
                *(
                    [f"--workers={settings.inference_workers}", f"--worker-addrs={','.join(workers)}"]
                    if (workers := settings.inference_worker_addrs())
                    else []
                ),
                *([f"--shadow-models={','.join(settings.shadow_models)}"] if settings.shadow_models else []),
                *([f"--keep-warm={settings.inference_keep_warm}"] if settings.inference_keep_warm else []),
                *(["--idle-spin"] if settings.inference_idle_spin else []),
                *settings.inference_args,
            ],
            grpc_addr=f"127.0.0.1:{p.inference_grpc}",
            metrics_url=f"http://127.0.0.1:{p.inference_metrics}/metrics",
        ),
        ServiceSpec(
            name="execution",
            cpus=settings.cpus_for("execution"),
            argv=[
                str(binaries["kairos-execution"]),
                f"--grpc-addr=127.0.0.1:{p.execution_grpc}",
                f"--bridge-addr=127.0.0.1:{p.execution_bridge}",
                f"--metrics-addr=127.0.0.1:{p.execution_metrics}",
                f"--nats-url={settings.nats_url}",
                f"--nats-creds={creds.nats_creds('execution')}",
                f"--token-file={creds.token_file('execution')}",
                f"--db={journal}",
                "--venue=paper",
                key_file,  # read once the venue is mt5
                f"--signal-lots={settings.lots}",
                f"--signal-threshold={settings.threshold}",
                # Replayed data carries its historical times: judge signal age by arrival, not tick time.
                "--signal-max-age=0",
                *settings.execution_args,
            ],
            grpc_addr=f"127.0.0.1:{p.execution_grpc}",
            metrics_url=f"http://127.0.0.1:{p.execution_metrics}/metrics",
        ),
    ]


def recorder_spec(settings: StackSettings, record_dir: Path | None = None) -> ServiceSpec:
    """The recorder (kairos.recording, ADR 0084): every tick and bar the collector publishes, kept as
    Parquet under record_dir (default $KAIROS_RECORD_DIR or <KAIROS_HOME>/recorded); started after
    the collector, whose embedded NATS it subscribes to as the read-only identity ``observer``."""
    p = settings.ports
    root = record_dir or Path(os.environ.get("KAIROS_RECORD_DIR", STATE_DIR / "recorded"))
    return ServiceSpec(
        name="recorder",
        cpus=settings.cpus_for("recorder"),
        argv=[
            sys.executable,
            "-m",
            "kairos.recording.recorder",
            f"--dir={root}",
            f"--nats-url={settings.nats_url}",
            f"--nats-creds={settings.credentials().nats_creds('observer')}",
            f"--grpc-addr=127.0.0.1:{p.recorder_grpc}",
            f"--metrics-addr=127.0.0.1:{p.recorder_metrics}",
        ],
        grpc_addr=f"127.0.0.1:{p.recorder_grpc}",
        metrics_url=f"http://127.0.0.1:{p.recorder_metrics}/metrics",
    )


def console_url(settings: StackSettings) -> str:
    return f"http://127.0.0.1:{settings.ports.console}/"


def console_spec(settings: StackSettings) -> ServiceSpec:
    """The operator console (kairos-console) on 127.0.0.1, reading the stack through its APIs with the
    run dir's credentials, passed as file paths (ADR 0090)."""
    p = settings.ports
    creds = settings.credentials()
    console_bin = shutil.which("kairos-console") or str(Path(sys.executable).parent / "kairos-console")
    return ServiceSpec(
        name="console",
        cpus=settings.cpus_for("console"),
        argv=[
            console_bin,
            f"--addr=127.0.0.1:{p.console}",
            f"--token-file={creds.token_file('execution')}",
            f"--execution-addr=127.0.0.1:{p.execution_grpc}",
            f"--inference-addr=127.0.0.1:{p.inference_grpc}",
            f"--inference-token-file={creds.token_file('inference')}",
            f"--collector-addr=127.0.0.1:{p.collector_grpc}",
            f"--nats-url={settings.nats_url}",
            f"--nats-creds={creds.nats_creds('observer')}",
        ],
        grpc_addr="",
        metrics_url=f"http://127.0.0.1:{p.console}/metrics",
        ready_url=f"http://127.0.0.1:{p.console}/healthz",
        ready_timeout_s=30.0,
    )


def metric_samples(url: str, name: str) -> dict[str, float]:
    """Samples of one metric from a Prometheus text endpoint, keyed by their label string."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            labels = key[len(name) :]
            if labels == "" or labels.startswith("{"):
                out[labels] = float(value)
    return out


def wait_pipeline_ready(settings: StackSettings, timeout_s: float = 30.0) -> None:
    """Waits until the collector's inference link is up (the services start in order, the link
    connects with backoff), so the first replayed tick already reaches the model."""
    url = f"http://127.0.0.1:{settings.ports.collector_metrics}/metrics"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            up = metric_samples(url, "kairos_collector_inference_endpoint_up")
            if up and all(v == 1 for v in up.values()):
                return
        time.sleep(0.1)
    raise TimeoutError(f"the collector's inference link did not come up within {timeout_s:.0f} s")
