"""Keeping the server's CPU awake (``--idle-spin``, ADR 0123): the native thread, and the server that
starts it, against the real extension (``make cpp-build``), the model fixture and loopback gRPC.

The spin thread must only ever run when nothing else wants its CPU (SCHED_IDLE), be visible by name,
really spin, and be gone when the server stops; without the extension the server refuses to start,
naming what to build. What it buys is measured, not tested (bench/e2e.py --idle-spin,
bench/inference.py's ``_idle_spin`` figures).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.inference.harness import ServerThread, StreamClient, metric, proto_bars

from kairos.features import native
from kairos.inference.v1 import inference_pb2 as pb
from kairos.stack.loopback import free_port, wait_for

THREAD = "kairos-idlespin"
GAUGE = "kairos_inference_idle_spin_threads"


def _threads(name: str) -> list[int]:
    """This process's threads with that name (their kernel ids)."""
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except FileNotFoundError:  # ended meanwhile
            continue
        if comm == name:
            out.append(int(tid))
    return out


def _cpu_ticks(tid: int) -> int:
    """The thread's user + system CPU time in clock ticks (/proc/<pid>/task/<tid>/stat)."""
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat


@pytest.fixture
def spin() -> Iterator[object]:
    assert native.extension() is not None, "the C++ extension is not built: run `make cpp-build`"
    s = native.idle_spin()
    yield s
    s.stop()  # type: ignore[attr-defined]


def test_the_spin_thread_runs_under_sched_idle_by_name_and_spins_until_stopped(spin: object) -> None:
    s: object = spin
    assert not s.running and s.tid == 0  # type: ignore[attr-defined]
    s.start()  # type: ignore[attr-defined]
    tid = s.tid  # type: ignore[attr-defined]
    assert s.running and tid in _threads(THREAD)  # type: ignore[attr-defined]
    assert os.sched_getscheduler(tid) == os.SCHED_IDLE  # only ever runs when nothing else wants the CPU
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the thread alone, not the process
    before = _cpu_ticks(tid)
    # It spins whenever a CPU has nothing else to run: 50 ms of CPU comes within seconds even on a busy
    # test machine.
    wait_for(lambda: _cpu_ticks(tid) - before >= 5, 30, "the spin thread's CPU time")
    s.stop()  # type: ignore[attr-defined]
    assert not s.running and s.tid == 0  # type: ignore[attr-defined]
    assert tid not in _threads(THREAD)


@pytest.mark.parametrize(
    ("calls", "threads"),
    [
        (["start", "start"], 1),  # a second start while running does nothing
        (["stop"], 0),  # stopping what never ran does nothing
        (["start", "stop", "stop"], 0),
        (["start", "stop", "start"], 1),  # it can start again
    ],
)
def test_start_and_stop_are_idempotent(spin: object, calls: list[str], threads: int) -> None:
    before = len(_threads(THREAD))
    for c in calls:
        getattr(spin, c)()
    assert len(_threads(THREAD)) - before == threads
    assert spin.running == bool(threads)  # type: ignore[attr-defined]


def test_the_server_spins_while_it_serves_and_stops_spinning_when_it_stops(
    model_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    from tests.inference.harness import load_gbpusd_m1

    srv = start_server(model_path, idle_spin=True)
    assert srv.server is not None
    tid = srv.server._idle_spin.tid
    assert tid in _threads(THREAD) and os.sched_getscheduler(tid) == os.SCHED_IDLE
    assert metric(srv.metrics_text(), GAUGE) == 1
    # It serves as without the thread: predictions for real bars over the stream.
    client = StreamClient(srv.target)
    try:
        bars = proto_bars(load_gbpusd_m1(300))
        resp = client.ask(pb.StreamPredictRequest(bars=bars))
        assert len(resp.predictions) > 0
    finally:
        client.close()
    srv.call(srv.server.stop())
    assert tid not in _threads(THREAD)
    assert srv.server._idle_spin is None


def test_without_the_extension_the_server_refuses_to_start_naming_what_to_build(
    model_path: Path, tmp_path: Path
) -> None:
    exe = Path(sys.executable).parent / "kairos-inference"
    env = {
        **os.environ,
        "KAIROS_FEATURES_EXT": str(tmp_path / "absent.so"),  # the extension "not built"
        "KAIROS_INFERENCE_TOKEN": "idle-spin-test-token",
    }
    argv = [str(exe), "--model", str(model_path), "--grpc-addr", f"127.0.0.1:{free_port()}"]
    argv += ["--metrics-addr", "", "--nats-url", "", "--idle-spin"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "cannot start" in proc.stderr and "--idle-spin" in proc.stderr, proc.stderr
    assert "make cpp-build" in proc.stderr, proc.stderr


def test_the_server_without_idle_spin_starts_no_spin_thread(
    model_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    before = len(_threads(THREAD))
    srv = start_server(model_path)
    assert f"{GAUGE} 0.0" in srv.metrics_text()  # the gauge is there, and says off
    assert len(_threads(THREAD)) == before
