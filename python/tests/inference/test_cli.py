"""Config and process specs: flags over env over defaults, clear errors, the real `kairos-inference`
process serving, shutting down gracefully on SIGTERM, and N workers sharing one port."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from kairos.inference.config import ConfigError, InferenceConfig, load_config, settings
from kairos.inference.v1 import inference_pb2, inference_pb2_grpc
from kairos.stack.loopback import free_port, free_port_run, wait_for


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {
        "KAIROS_INFERENCE_MAX_BATCH": "32",
        "KAIROS_INFERENCE_MODEL": "env.onnx",
        "KAIROS_INFERENCE_ALLOWED_SYMBOLS": "A,B",
        "KAIROS_INFERENCE_SHUTDOWN_TIMEOUT": "1m30s",
    }
    cfg = load_config(["--model", "flag.onnx", "--max-delay-us", "250"], env)
    assert cfg.model == "flag.onnx"
    assert cfg.max_batch == 32
    assert cfg.max_delay_us == 250
    assert cfg.allowed_symbols == ("A", "B")
    assert cfg.shutdown_timeout == 90.0
    assert cfg.grpc_addr == InferenceConfig().grpc_addr == "127.0.0.1:7501"  # loopback by default
    assert cfg.metrics_addr == "127.0.0.1:9501"
    assert InferenceConfig().shutdown_timeout == 5.0
    assert load_config(["--model", "m", "--shutdown-timeout", "250ms"], env).shutdown_timeout == 0.25


@pytest.mark.parametrize("level", ["debug", "info", "warn", "warning", "error"])
def test_log_levels_are_the_go_services_with_warning_as_an_alias(level: str) -> None:
    assert load_config(["--model", "m", "--log-level", level], {}).log_level == level


def test_the_settings_shared_with_the_go_services_have_their_names() -> None:
    flags = {s["flag"]: s for s in settings()}
    for shared in (
        "--grpc-addr",
        "--metrics-addr",
        "--log-level",
        "--shutdown-timeout",
        "--nats-url",
        "--nats-queue",
        "--allowed-symbols",
        "--tls-cert",
        "--tls-key",
        "--tls-client-ca",
    ):
        assert shared in flags, shared
        assert flags[shared]["env"] == "KAIROS_INFERENCE_" + shared[2:].replace("-", "_").upper()
    assert flags["--shutdown-timeout"]["default"] == "5s"
    assert flags["--grpc-addr"]["default"] == '"127.0.0.1:7501"'


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--model / KAIROS_INFERENCE_MODEL: required"),
        (
            ["--model", "m.onnx", "--max-batch", "0"],
            "--max-batch / KAIROS_INFERENCE_MAX_BATCH: must be at least 1",
        ),
        (
            ["--model", "m.onnx", "--max-batch", "x"],
            "--max-batch / KAIROS_INFERENCE_MAX_BATCH: invalid literal",
        ),
        (
            ["--model", "m.onnx", "--grpc-addr", "7501"],
            "--grpc-addr / KAIROS_INFERENCE_GRPC_ADDR: expected host:port",
        ),
        (
            ["--model", "m.onnx", "--metrics-addr", "9501"],
            "--metrics-addr / KAIROS_INFERENCE_METRICS_ADDR: expected host:port",
        ),
        (
            ["--model", "m.onnx", "--shutdown-timeout", "5"],
            "--shutdown-timeout / KAIROS_INFERENCE_SHUTDOWN_TIMEOUT: invalid duration '5'",
        ),
        (
            ["--model", "m.onnx", "--log-level", "loud"],
            "--log-level / KAIROS_INFERENCE_LOG_LEVEL: unknown level 'loud'",
        ),
        (
            ["--model", "m.onnx", "--workers", "2", "--worker-addrs", "127.0.0.1:7601"],
            "--worker-addrs / KAIROS_INFERENCE_WORKER_ADDRS: one address per worker: 1 for 2 workers",
        ),
        (
            ["--model", "m.onnx", "--worker-addrs", "127.0.0.1:0"],
            "--worker-addrs / KAIROS_INFERENCE_WORKER_ADDRS: 127.0.0.1:0: a worker's address needs a fixed",
        ),
        (
            ["--model", "m.onnx", "--worker-addrs", "7601"],
            "--worker-addrs / KAIROS_INFERENCE_WORKER_ADDRS: expected host:port",
        ),
        (
            ["--model", "m.onnx", "--workers", "2", "--worker-addrs", "127.0.0.1:7601,127.0.0.1:7601"],
            "--worker-addrs / KAIROS_INFERENCE_WORKER_ADDRS: the addresses must differ",
        ),
        (
            ["--model", "m.onnx", "--worker-addrs", "127.0.0.1:7501"],
            "--worker-addrs / KAIROS_INFERENCE_WORKER_ADDRS: the addresses must differ",
        ),
    ],
)
def test_bad_config_names_the_flag_and_the_variable(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(argv, {})
    assert str(e.value).startswith(message)


def _exe() -> str:
    exe = shutil.which("kairos-inference", path=str(Path(sys.executable).parent))
    assert exe, "kairos-inference console script not installed (make setup)"
    return exe


def _healthy(port: int) -> bool:
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=0.5)
            return bool(r.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def _metrics_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=0.5) as r:
            return b"kairos_inference_model_info" in r.read()
    except OSError:
        return False


def _serve_then_stop(
    proc: subprocess.Popen[str],
    port: int,
    log: Callable[[], str],
    while_up: Callable[[], bool] = lambda: True,
) -> None:
    """The process reports SERVING within 60 s, ``while_up()`` holds, and SIGTERM stops it with exit 0;
    a failure shows its log (``log()``, read once the process is gone)."""
    try:
        try:
            wait_for(lambda: proc.poll() is not None or _healthy(port), 60, "the server to report SERVING")
        except TimeoutError:
            proc.kill()
            proc.wait(10)
            raise AssertionError(f"not SERVING after 60 s; its log:\n{log()}") from None
        assert proc.poll() is None, f"the server exited {proc.returncode}:\n{log()}"
        assert while_up()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_process_serves_from_env_config_and_stops_cleanly_on_sigterm(model_path: Path) -> None:
    port, mport = free_port(), free_port()
    env = {
        **os.environ,
        "KAIROS_INFERENCE_MODEL": str(model_path),
        "KAIROS_INFERENCE_GRPC_ADDR": f"127.0.0.1:{port}",
        "KAIROS_INFERENCE_METRICS_ADDR": f"127.0.0.1:{mport}",
        "KAIROS_INFERENCE_NATS_URL": "",
    }
    proc = subprocess.Popen([_exe()], env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    _serve_then_stop(proc, port, proc.stderr.read, while_up=lambda: _metrics_up(mport))
    lines = [json.loads(line) for line in proc.stderr.read().splitlines() if line.startswith("{")]  # type: ignore[union-attr]
    events = [e["event"] for e in lines]
    assert "serving" in events and events[-1] == "stopped"
    assert all(e["component"] == "inference" and "timestamp" in e and "level" in e for e in lines)


@pytest.mark.parametrize(
    ("grpc_experiments", "reads_with", "not_with"),
    [(None, "tcp_posix.cc", "posix_endpoint.cc"), ("", "posix_endpoint.cc", "tcp_posix.cc")],
    ids=["kairos-inference's default", "GRPC_EXPERIMENTS set empty: grpc's own"],
)
def test_the_server_reads_its_connections_with_grpcs_own_listener_unless_the_environment_says_otherwise(
    model_path: Path, tmp_path: Path, grpc_experiments: str | None, reads_with: str, not_with: str
) -> None:
    # ADR 0120: kairos-inference turns grpc's EventEngine listener off unless GRPC_EXPERIMENTS is set.
    # grpc's tcp trace names the file that reads an accepted connection: tcp_posix.cc (its iomgr
    # listener) or posix_endpoint.cc (the EventEngine's). A grpcio that no longer knows the
    # experiment fails this test: measure again before taking it.
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    if grpc_experiments is not None:
        env["GRPC_EXPERIMENTS"] = grpc_experiments
    env |= {"GRPC_TRACE": "tcp", "GRPC_VERBOSITY": "debug"}
    log = tmp_path / "server.log"
    argv = [_exe(), "--model", str(model_path), "--grpc-addr", f"127.0.0.1:{port}"]
    with log.open("w") as out:
        proc = subprocess.Popen([*argv, "--metrics-addr", "", "--nats-url", ""], env=env, stderr=out)
        _serve_then_stop(proc, port, log.read_text)
    text = log.read_text()
    assert "Unknown experiment" not in text
    assert reads_with in text and not_with not in text


def test_a_missing_model_stops_the_process_with_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.onnx"
    r = subprocess.run(
        [
            _exe(),
            "--model",
            str(missing),
            "--grpc-addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "",
            "--nats-url",
            "",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert str(missing) in r.stderr and "cannot read model" in r.stderr


def _no_requests_until(release: threading.Event) -> Iterator[inference_pb2.StreamPredictRequest]:
    """A stream's requests: none, and the stream ends once `release` is set."""
    release.wait(60)
    yield from ()


def _streams_active(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("kairos_inference_streams_active "):
                return float(line.split()[1])
    return float("nan")


@pytest.mark.slow
def test_workers_share_one_port_each_has_its_own_address_and_serves_metrics(
    model_path: Path, tmp_path: Path
) -> None:
    port, mport = free_port(), free_port_run(2)  # worker k serves metrics on mport + k
    own = [free_port(), free_port()]  # worker k also listens on own[k] (--worker-addrs)
    log = (tmp_path / "stderr.log").open("w")
    proc = subprocess.Popen(
        [
            _exe(),
            "--model",
            str(model_path),
            "--grpc-addr",
            f"127.0.0.1:{port}",
            "--metrics-addr",
            f"127.0.0.1:{mport}",
            "--nats-url",
            "",
            "--workers",
            "2",
            "--worker-addrs",
            f"127.0.0.1:{own[0]},127.0.0.1:{own[1]}",
        ],
        stderr=log,
        env={**os.environ, "KAIROS_INFERENCE_TOKEN": "t0ken"},
    )
    channels: list[grpc.Channel] = []
    release = threading.Event()
    try:
        try:
            wait_for(lambda: _metrics_up(mport) and _metrics_up(mport + 1), 90, "both workers' metrics")
        except TimeoutError as e:
            raise AssertionError((tmp_path / "stderr.log").read_text()[-4000:]) from e
        wait_for(lambda: _healthy(port) and _healthy(own[0]) and _healthy(own[1]), 30, "every address")
        # A worker's own address is the same server: a peer without the token is refused there too.
        with grpc.insecure_channel(f"127.0.0.1:{own[1]}") as ch:
            stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.StreamPredict(iter([inference_pb2.StreamPredictRequest(request_id=1)]), timeout=10))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # One stream on each worker's own address: each worker, not the kernel's hash, has one.
        calls = []
        for p in own:
            ch = grpc.insecure_channel(f"127.0.0.1:{p}")
            channels.append(ch)
            stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
            calls.append(
                stub.StreamPredict(_no_requests_until(release), metadata=(("authorization", "Bearer t0ken"),))
            )
        wait_for(
            lambda: _streams_active(mport) == 1 and _streams_active(mport + 1) == 1,
            30,
            "a stream on each worker",
        )
        release.set()
        for c in calls:
            assert list(c) == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        release.set()
        for ch in channels:
            ch.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
