"""Recording from JetStream (the compose/Kubernetes mode): a real nats-server with JetStream and the
committed stream definitions and the deployed NATS permissions (deploy/nats/auth.conf), the real
collector publishing as in compose (the streams store its subjects), the recorder (identity recorder) on
durable consumers killed with SIGKILL mid-replay and restarted: every replayed tick and every
published bar is in the recorded dataset, once."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tests import natsconf

from kairos.recording import store
from kairos.stack import credentials, processes, replay, services
from kairos.stack.loopback import free_port, wait_for, wait_for_port

pytestmark = pytest.mark.slow

REPO = services.REPO
DEPLOY_BIN = REPO / "build" / "deploy" / "bin"
TICKS = services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"
GO_ENV = {"GOWORK": "off", "GOFLAGS": "-buildvcs=false"}


def _build() -> None:
    import os

    DEPLOY_BIN.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["go", "build", "-o", f"{DEPLOY_BIN}/", "./cmd/kairos-streams", "github.com/nats-io/nats-server/v2"],
        cwd=REPO / "tools" / "deploy",
        env={**os.environ, **GO_ENV},
        check=True,
        timeout=600,
    )


def _recorder(url: str, root: Path, metrics: int, log: Path, creds: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kairos.recording.recorder",
                f"--dir={root}",
                f"--nats-url={url}",
                "--jetstream",
                "--grpc-addr=",
                f"--metrics-addr=127.0.0.1:{metrics}",
                "--flush-interval=0.2",
                "--durable=test-recorder",
                f"--nats-creds={creds}",
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _recorded(metrics: int) -> float:
    try:
        return sum(
            services.metric_samples(
                f"http://127.0.0.1:{metrics}/metrics", "kairos_recorder_ticks_total"
            ).values()
        )
    except OSError:
        return -1


def test_a_killed_and_restarted_recorder_leaves_no_gap(tmp_path: Path) -> None:
    _build()
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    # The deployed permissions (deploy/nats/auth.conf) with fresh passwords, as compose runs them.
    nats_dir = tmp_path / "nats"
    credentials.write_nats_credentials(nats_dir)
    (nats_dir / "nats.conf").write_text(
        f'listen: 127.0.0.1:{port}\ninclude "auth.conf"\n' + natsconf.jetstream_block(tmp_path / "js")
    )
    nats = subprocess.Popen(
        [str(DEPLOY_BIN / "nats-server"), "-c", str(nats_dir / "nats.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rec: subprocess.Popen[bytes] | None = None
    try:
        wait_for_port(port, nats)
        out = subprocess.run(
            [
                str(DEPLOY_BIN / "kairos-streams"),
                "-password-file",
                str(nats_dir / "streams.creds"),
                "-server",
                url,
                "-dir",
                str(REPO / "deploy" / "nats" / "streams"),
                "-timeout",
                "20s",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        settings = services.StackSettings(ports=services.Ports.free(), run_dir=tmp_path / "run")
        binaries = services.build_go_binaries(settings.bin_dir)
        spec = services.specs(settings, binaries)[0]
        argv = [a for a in spec.argv if not a.startswith(("--inference-endpoints", "--nats-", "--nats-addr"))]
        spec = dataclasses.replace(
            spec,
            argv=[
                *argv,
                "--inference-endpoints=none",
                f"--nats-url={url}",
                f"--nats-creds={nats_dir / 'collector.creds'}",
            ],
        )
        root, metrics, log = tmp_path / "recorded", free_port(), tmp_path / "recorder.log"
        data = replay.load(str(TICKS), symbol="EURUSD", strict=True)
        with processes.Stack(settings.run_dir) as stack:
            stack.start_all([spec])
            bridge = f"127.0.0.1:{settings.ports.collector_bridge}"
            rec = _recorder(url, root, metrics, log, nats_dir / "recorder.creds")
            wait_for(lambda: _recorded(metrics) >= 0, 30, "the recorder's metrics")
            # One bridge session (a second one would restart the tick sequences the collector builds
            # its JetStream message ids from), paced so the recorder dies and restarts mid-replay.
            result: list[replay.ReplayResult] = []
            pusher = threading.Thread(
                target=lambda: result.append(
                    replay.replay(
                        data, collector=bridge, bridge_key=settings.ensure_bridge_key(), speed=2_000
                    )
                )
            )
            pusher.start()
            wait_for(lambda: _recorded(metrics) > 0, 30, "the first part files")
            rec.send_signal(signal.SIGKILL)  # mid-stream: whatever it had not written is unacknowledged
            rec.wait(10)
            time.sleep(1.0)  # ticks keep arriving while no recorder runs
            rec = _recorder(url, root, metrics, log, nats_dir / "recorder.creds")  # the same consumers resume
            pusher.join(60)
            assert result and result[0].lost == 0 and result[0].pushed == len(data.time_msc)
            # Every replayed tick is in the KAIROS_MD stream; the restarted recorder must write them all.
            wait_for(
                lambda: len(store.read_ticks(root, "EURUSD")) >= len(data.time_msc),
                60,
                "the restarted recorder to catch up",
            )
            rec.send_signal(signal.SIGTERM)
            assert rec.wait(30) == 0, log.read_text()
            rec = None
    finally:
        if rec is not None:
            rec.kill()
        nats.send_signal(signal.SIGTERM)
        nats.wait(10)

    got = store.read_ticks(root, "EURUSD")
    assert len(got) == len(data.time_msc)  # none missing, none twice (redelivered copies dropped)
    order = np.argsort(got["time_msc"].to_numpy(), kind="stable")
    np.testing.assert_array_equal(got["time_msc"].to_numpy()[order], np.sort(data.time_msc))
    np.testing.assert_array_equal(np.sort(got["bid"].to_numpy()), np.sort(data.bid))
    bars = store.read_bars(root, "EURUSD", "M1")
    assert len(bars) > 300 and bars["time"].is_monotonic_increasing and bars["time"].is_unique
