"""The real Alertmanager and Prometheus on loopback, for the alert tests.

Alertmanager and amtool come from the pinned tools/alertmanager module (the version of the compose
and Kubernetes image), built on first use; Prometheus is Debian's. The shipped configuration keeps
its route tree, grouping and inhibition; only each receiver's integrations (Telegram, e-mail, which
would need the outside world) become webhooks to a local receiver, one URL per receiver and kind, so
a test sees exactly which integrations an alert would have reached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from kairos.stack.loopback import free_port, wait_for

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = REPO / "deploy" / "prometheus" / "rules"
TOOLS = REPO / "tools" / "alertmanager"
BIN = REPO / "build" / "deploy" / "bin"


def alertmanager_bin() -> Path:
    """alertmanager and amtool: `make`'s build in .tools/bin, else built here (Go caches it)."""
    installed = REPO / ".tools" / "bin"
    if (installed / "alertmanager").exists() and (installed / "amtool").exists():
        return installed
    BIN.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOWORK": "off", "GOFLAGS": "-buildvcs=false"}
    subprocess.run(["go", "build", "-o", f"{BIN}/", "tool"], cwd=TOOLS, env=env, check=True, timeout=900)
    return BIN


def image_version() -> str:
    """The Alertmanager version tools/alertmanager pins (v0.28.1)."""
    for line in (TOOLS / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "github.com/prometheus/alertmanager":
            return parts[1]
        if len(parts) >= 3 and parts[0] == "require" and parts[1] == "github.com/prometheus/alertmanager":
            return parts[2]
    raise AssertionError("tools/alertmanager/go.mod does not require github.com/prometheus/alertmanager")


def with_webhooks(base_url: str, config: Path = CONFIG) -> dict[str, Any]:
    """The shipped configuration with every integration replaced by a webhook to
    ``{base_url}/{receiver}/{kind}`` (kind: telegram, email, ...)."""
    doc: dict[str, Any] = yaml.safe_load(config.read_text())
    doc["global"] = {k: v for k, v in doc.get("global", {}).items() if not k.startswith("smtp_")}
    for receiver in doc["receivers"]:
        hooks = []
        for key in [k for k in receiver if k.endswith("_configs")]:
            kind = key.removesuffix("_configs")
            for _ in receiver.pop(key):
                hooks.append({"url": f"{base_url}/{receiver['name']}/{kind}", "send_resolved": True})
        receiver["webhook_configs"] = hooks
    return doc


class Webhooks:
    """A local HTTP receiver of Alertmanager's webhook notifications, kept by path."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with hooks.lock:
                    hooks.received.setdefault(self.path, []).append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def alerts(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for n in self.received.get(path, []) for a in n["alerts"]]

    def __enter__(self) -> Webhooks:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return int(r.status) == 200
    except OSError:
        return False


@contextmanager
def _process(argv: list[str], log: Path, ready_url: str, what: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as f:
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            return _ready(ready_url)

        wait_for(up, timeout=60, what=f"{what} at {ready_url}", poll=0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def alertmanager(config: dict[str, Any], tmp: Path) -> Iterator[str]:
    """The real Alertmanager on a free loopback port with ``config``; yields its base URL."""
    binary = alertmanager_bin() / "alertmanager"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        str(binary),
        f"--config.file={tmp / 'alertmanager.yml'}",
        f"--storage.path={tmp / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    url = f"http://127.0.0.1:{port}"
    with _process(argv, tmp / "alertmanager.log", url + "/-/ready", "alertmanager"):
        yield url


@contextmanager
def prometheus(targets: dict[str, str], alertmanager_url: str, tmp: Path) -> Iterator[str]:
    """Debian's Prometheus scraping ``targets`` (job -> host:port) every second with the shipped
    rules, sending alerts to ``alertmanager_url``; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus (Debian package prometheus) is not installed; `make setup` installs it")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": sorted(str(p) for p in RULES.glob("*.yml")),
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}]
        },
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
        ],
    }
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    argv = [
        binary,
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    with _process(argv, tmp / "prometheus.log", url + "/-/ready", "prometheus"):
        yield url
