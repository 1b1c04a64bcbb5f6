"""Fixtures of the deployment tests: the repository's deploy tools, built from the pinned tools/deploy
Go module on first use (so `pytest` alone works on a fresh clone), and free loopback ports."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from tests import natsconf

from kairos.stack.loopback import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / "build" / "deploy" / "bin"
GO_ENV = {**os.environ, "GOWORK": "off", "GOFLAGS": "-buildvcs=false"}


def load_tool(name: str) -> ModuleType:
    """Imports tools/deploy/<name>.py (the tools folder is not a package)."""
    path = REPO / "tools" / "deploy" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"kairos_tools_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def deploy() -> ModuleType:
    return load_tool("kairos_deploy")


def _go_build(out: Path, *pkgs: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["go", "build", "-o", f"{out}/", *pkgs],
        cwd=REPO / "tools" / "deploy",
        env=GO_ENV,
        check=True,
        timeout=900,
    )


@pytest.fixture(scope="session")
def deploy_bin() -> Path:
    """kairos-streams, kairos-healthprobe and nats-server, built from tools/deploy (cached by Go)."""
    _go_build(BIN, "./cmd/kairos-streams", "./cmd/kairos-healthprobe", "github.com/nats-io/nats-server/v2")
    return BIN


@pytest.fixture(scope="session")
def kustomize() -> Path:
    _go_build(BIN, "sigs.k8s.io/kustomize/kustomize/v5")
    return BIN / "kustomize"


@pytest.fixture(scope="session")
def compose() -> list[str]:
    """The docker compose CLI: `make lint`'s plugin build (.tools/docker) through the docker CLI or
    directly, or a system-wide compose plugin."""
    plugin = REPO / ".tools" / "docker" / "cli-plugins" / "docker-compose"
    docker = shutil.which("docker")
    if docker:
        env = {**os.environ, "DOCKER_CONFIG": str(REPO / ".tools" / "docker")}
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, env=env, check=False
        )
        if "Docker Compose version" in probe.stdout:
            return [docker, "compose"]
    if plugin.exists():
        return [str(plugin)]
    pytest.fail(f"docker compose is not built ({plugin}); `make test` and `make lint` build it")


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without KAIROS_* variables (they would leak into compose's view)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    env.setdefault("DOCKER_CONFIG", str(REPO / ".tools" / "docker"))
    return {**env, **extra}


@pytest.fixture
def nats_server(deploy_bin: Path, tmp_path: Path) -> Iterator[str]:
    """A real JetStream-enabled nats-server on a free loopback port; yields its URL."""
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\n" + natsconf.jetstream_block(tmp_path / "js"))
    proc = subprocess.Popen(
        [str(deploy_bin / "nats-server"), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
