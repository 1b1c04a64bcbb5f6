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
from dataclasses import dataclass, field
from pathlib import Path

from kairos.stack.loopback import free_port
from kairos.stack.processes import ServiceSpec

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("KAIROS_SHARED_DATA", REPO.parent / "shared" / "data"))
STATE_DIR = Path(os.environ.get("KAIROS_HOME", REPO / ".kairos"))
GO_BINARIES = {
    "kairos-collector": "./go/collector/cmd/kairos-collector",
    "kairos-execution": "./go/execution/cmd/kairos-execution",
}


@dataclass
class Ports:
    """Loopback ports of one stack; `Ports.free()` picks unused ones (tests, parallel stacks)."""

    collector_bridge: int = 7400
    collector_grpc: int = 7401
    collector_metrics: int = 9401
    nats: int = 4222
    inference_grpc: int = 7501
    inference_metrics: int = 9501
    execution_grpc: int = 7601
    execution_bridge: int = 7600
    execution_metrics: int = 9601

    @classmethod
    def free(cls) -> Ports:
        return cls(**{name: free_port() for name in cls.__dataclass_fields__})


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
    symbols: tuple[str, ...] = ("EURUSD",)
    # Execution's fallback policy, for models whose card carries none (a card's policy wins, ADR 0081):
    # lots per position and the p(up) - p(down) needed to trade.
    lots: str = "0.10"
    threshold: float = 0.10
    # Extra execution flags (e.g. the paper venue's slippage model).
    execution_args: tuple[str, ...] = ()

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.ports.nats}"

    def ensure_token(self) -> str:
        """The execution bearer token: given, or generated once per run dir (file mode 0600)."""
        if self.token:
            return self.token
        path = self.run_dir / "token"
        if path.exists():
            self.token = path.read_text().strip()
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.token = secrets.token_urlsafe(24)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.token + "\n")
        return self.token


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


def specs(settings: StackSettings, binaries: dict[str, Path]) -> list[ServiceSpec]:
    """Collector (with embedded NATS), inference, execution (paper venue), in start order."""
    p = settings.ports
    token = settings.ensure_token()
    journal = settings.journal or str(settings.run_dir / "journal.db")
    inference_bin = shutil.which("kairos-inference") or str(Path(sys.executable).parent / "kairos-inference")
    return [
        ServiceSpec(
            name="collector",
            argv=[
                str(binaries["kairos-collector"]),
                f"--bridge-addr=127.0.0.1:{p.collector_bridge}",
                f"--grpc-addr=127.0.0.1:{p.collector_grpc}",
                f"--metrics-addr=127.0.0.1:{p.collector_metrics}",
                f"--nats-addr=127.0.0.1:{p.nats}",
                f"--inference-endpoints=127.0.0.1:{p.inference_grpc}",
                # The inference server starts after the collector; keep the link's retries short.
                "--inference-backoff-max=500ms",
            ],
            grpc_addr=f"127.0.0.1:{p.collector_grpc}",
            metrics_url=f"http://127.0.0.1:{p.collector_metrics}/metrics",
        ),
        ServiceSpec(
            name="inference",
            argv=[
                inference_bin,
                f"--grpc-addr=127.0.0.1:{p.inference_grpc}",
                f"--metrics-addr=127.0.0.1:{p.inference_metrics}",
                f"--model={settings.model}",
                f"--tracking-uri={settings.mlflow_uri}",
                "--poll-interval-s=5",
                f"--nats-url={settings.nats_url}",
            ],
            grpc_addr=f"127.0.0.1:{p.inference_grpc}",
            metrics_url=f"http://127.0.0.1:{p.inference_metrics}/metrics",
        ),
        ServiceSpec(
            name="execution",
            argv=[
                str(binaries["kairos-execution"]),
                f"--grpc-addr=127.0.0.1:{p.execution_grpc}",
                f"--bridge-addr=127.0.0.1:{p.execution_bridge}",
                f"--metrics-addr=127.0.0.1:{p.execution_metrics}",
                f"--nats-url={settings.nats_url}",
                f"--db={journal}",
                "--venue=paper",
                f"--signal-lots={settings.lots}",
                f"--signal-threshold={settings.threshold}",
                # Replayed data carries its historical times: judge signal age by arrival, not tick time.
                "--signal-max-age=0",
                *settings.execution_args,
            ],
            env={"KAIROS_EXECUTION_TOKEN": token},
            grpc_addr=f"127.0.0.1:{p.execution_grpc}",
            metrics_url=f"http://127.0.0.1:{p.execution_metrics}/metrics",
        ),
    ]


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
