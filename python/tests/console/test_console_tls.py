"""The console over TLS (ADR 0063): with --tls-ca and a client certificate it reads a real inference
server that requires mutual TLS; without its certificate the handshake is refused and the models
panel says inference is unavailable. Both as processes on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from tests.inference.pki import Files

from kairos.stack import processes
from kairos.stack.loopback import free_port, wait_for

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "python" / "tests" / "data" / "model" / "model.onnx"
TOKEN = "console-tls-test-token"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files.new(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def inference(pki: Files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """kairos-inference requiring mutual TLS; yields its address and its token file."""
    tmp = tmp_path_factory.mktemp("inference")
    (tmp / "inference.token").write_text("inference-tls-token\n")
    addr = f"127.0.0.1:{free_port()}"
    argv = [
        _bin("kairos-inference"),
        f"--grpc-addr={addr}",
        "--metrics-addr=",
        f"--model={MODEL}",
        "--nats-url=",
        "--max-batch=4",
        f"--token-file={tmp / 'inference.token'}",
        f"--tls-cert={pki.server_cert}",
        f"--tls-key={pki.server_key}",
        f"--tls-client-ca={pki.ca_file}",
    ]
    log = (tmp / "inference.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    creds = grpc.ssl_channel_credentials(
        pki.ca_file.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes()
    )

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"inference exited: {(tmp / 'inference.log').read_text()[-2000:]}")
        with grpc.secure_channel(addr, creds) as ch:
            try:
                resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)

    try:
        wait_for(serving, timeout=90, what="inference over mutual TLS", poll=0.2)
        yield addr, tmp / "inference.token"
    finally:
        processes.terminate(proc, 10)
        log.close()


def _console(tmp: Path, inference: tuple[str, Path], *tls: str) -> tuple[processes.Stack, str]:
    (tmp / "token").write_text(TOKEN + "\n")
    port = free_port()
    stack = processes.Stack(tmp)
    spec = processes.ServiceSpec(
        name="console",
        argv=[
            _bin("kairos-console"),
            f"--addr=127.0.0.1:{port}",
            f"--token-file={tmp / 'token'}",
            f"--inference-addr={inference[0]}",
            f"--inference-token-file={inference[1]}",
            f"--execution-addr=127.0.0.1:{free_port()}",
            f"--collector-addr=127.0.0.1:{free_port()}",
            "--nats-url=",
            "--poll-interval=200ms",
            *tls,
        ],
        grpc_addr="",
        ready_url=f"http://127.0.0.1:{port}/healthz",
        ready_timeout_s=30,
    )
    stack.wait_ready(stack.start(spec))
    return stack, f"http://127.0.0.1:{port}"


def _state(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url + "/api/state", headers={"authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    return out


def test_the_console_reads_a_mutual_tls_service_with_its_certificate(
    pki: Files, inference: tuple[str, Path], tmp_path: Path
) -> None:
    stack, url = _console(
        tmp_path,
        inference,
        f"--tls-ca={pki.ca_file}",
        f"--tls-cert={pki.client_cert}",
        f"--tls-key={pki.client_key}",
    )
    with stack:
        wait_for(lambda: _state(url)["sources"]["inference"]["ok"], timeout=30, what="models over TLS")
        state = _state(url)
        assert state["models"] and state["models"][0]["gate"] == "UNVALIDATED"
        wait_for(lambda: _state(url)["health"]["inference"] == "SERVING", timeout=30, what="health over TLS")


def test_without_its_certificate_the_console_is_refused_and_says_so(
    pki: Files, inference: tuple[str, Path], tmp_path: Path
) -> None:
    stack, url = _console(tmp_path, inference, f"--tls-ca={pki.ca_file}")
    with stack:
        wait_for(
            lambda: _state(url)["sources"]["inference"]["error"] not in ("", "not contacted yet"),
            timeout=30,
            what="the refused handshake",
        )
        state = _state(url)
        assert not state["sources"]["inference"]["ok"] and not state["models"]
        assert state["sources"]["inference"]["error"].startswith("UNAVAILABLE")


def test_half_a_client_certificate_is_a_configuration_error(pki: Files, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN)
    out = subprocess.run(
        [_bin("kairos-console"), f"--token-file={tmp_path / 'token'}", f"--tls-cert={pki.client_cert}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "--tls-cert / KAIROS_CONSOLE_TLS_CERT and --tls-key / KAIROS_CONSOLE_TLS_KEY" in out.stderr


def test_the_console_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    out = subprocess.run(
        [_bin("kairos-console"), "--addr=127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 2
    assert "--token-file / KAIROS_CONSOLE_TOKEN_FILE: required" in out.stderr
    (tmp_path / "empty").write_text("\n")
    out = subprocess.run(
        [_bin("kairos-console"), f"--token-file={tmp_path / 'empty'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "is empty" in out.stderr
