"""Start, watch and stop the local Kairos services as plain processes.

`kairos up`, `kairos down` and the demo share this: each service runs in its own session (so a
Ctrl-C in the terminal reaches only us, and we stop the services in order), writes its output to
``<run_dir>/<name>.log``, and is recorded in ``<run_dir>/stack.json`` so that a later `kairos down`
(another process) can find and stop it. A service is ready when its gRPC health service answers
SERVING; one that exits before that is reported with the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kairos.stack.health import HealthState, check_health

STATE_FILE = "stack.json"


class ServiceDied(RuntimeError):
    """A service exited (or never became healthy); the message carries its log tail."""

    def __init__(self, name: str, reason: str, log_tail: str) -> None:
        super().__init__(f"{name} {reason}\n--- last lines of its log ---\n{log_tail}")
        self.name = name
        self.reason = reason
        self.log_tail = log_tail


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service."""

    name: str
    argv: Sequence[str]
    # gRPC address (host:port) whose grpc.health.v1 service says when the process is ready.
    grpc_addr: str
    env: dict[str, str] = field(default_factory=dict)
    # Prometheus endpoint, for `kairos status`.
    metrics_url: str = ""
    ready_timeout_s: float = 90.0
    # An HTTP service (the console) is ready when this URL answers 200; then grpc_addr is empty.
    ready_url: str = ""
    # The CPUs it may run on, as taskset takes them ("1", "0,2-3"); empty: any (ADR 0117).
    cpus: str = ""


@dataclass
class RunningService:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def pinned(argv: Sequence[str], cpus: str) -> list[str]:
    """argv run on these CPUs ("1", "0,2-3"; empty: any). taskset sets the mask before it execs the
    program, so every thread the program starts has it (Go's runtime starts threads before main)."""
    return ["taskset", "--cpu-list", cpus, *argv] if cpus else list(argv)


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class Stack:
    """The services started by this process, stopped in reverse order by `stop()`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.services: list[RunningService] = []

    def start(self, spec: ServiceSpec) -> RunningService:
        log_path = self.run_dir / f"{spec.name}.log"
        log = log_path.open("wb")
        env = {**os.environ, **spec.env}
        try:
            process = subprocess.Popen(
                pinned(spec.argv, spec.cpus),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ServiceDied(spec.name, f"could not start {spec.argv[0]}: {exc}", "") from exc
        finally:
            log.close()
        svc = RunningService(spec, process, log_path)
        self.services.append(svc)
        self._write_state()
        return svc

    def wait_ready(self, svc: RunningService) -> None:
        """Polls the health service until SERVING; raises ServiceDied if the process exits first."""
        deadline = time.monotonic() + svc.spec.ready_timeout_s
        last = HealthState.UNREACHABLE
        while time.monotonic() < deadline:
            code = svc.process.poll()
            if code is not None:
                raise ServiceDied(
                    svc.spec.name, f"exited with status {code} while starting", log_tail(svc.log_path)
                )
            last = (
                http_health(svc.spec.ready_url)
                if svc.spec.ready_url
                else check_health(svc.spec.grpc_addr, timeout_s=1.0)
            )
            if last is HealthState.SERVING:
                return
            time.sleep(0.1)
        raise ServiceDied(
            svc.spec.name,
            f"not healthy after {svc.spec.ready_timeout_s:.0f} s (last health: {last.name})",
            log_tail(svc.log_path),
        )

    def start_all(self, specs: Sequence[ServiceSpec]) -> None:
        """Starts the services in order, each one ready before the next starts."""
        for spec in specs:
            self.wait_ready(self.start(spec))

    def dead(self) -> list[RunningService]:
        """Services that have exited."""
        return [s for s in self.services if s.process.poll() is not None]

    def raise_if_dead(self) -> None:
        for svc in self.dead():
            raise ServiceDied(
                svc.spec.name, f"exited with status {svc.process.returncode}", log_tail(svc.log_path)
            )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM each service (reverse start order), SIGKILL what outlives timeout_s."""
        for svc in reversed(self.services):
            terminate(svc.process, timeout_s)
        self.services.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / STATE_FILE).unlink()

    def _write_state(self) -> None:
        state = [
            {
                "name": s.spec.name,
                "pid": s.pid,
                "start_ticks": process_start_ticks(s.pid),
                "argv": list(s.spec.argv),
                "log": str(s.log_path),
                **_addrs(s.spec),
            }
            for s in self.services
        ]
        path = self.run_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _addrs(spec: ServiceSpec) -> dict[str, str]:
    d = asdict(spec)
    return {"grpc_addr": d["grpc_addr"], "metrics_url": d["metrics_url"], "ready_url": d["ready_url"]}


def http_health(url: str, timeout_s: float = 1.0) -> HealthState:
    """SERVING when ``url`` answers 200, else UNREACHABLE (an HTTP service's readiness)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return HealthState.SERVING if resp.status == 200 else HealthState.NOT_SERVING
    except OSError:
        return HealthState.UNREACHABLE


def service_health(svc: RecordedService) -> HealthState:
    """A recorded service's health: gRPC health, or its HTTP readiness URL."""
    return http_health(svc.ready_url) if svc.ready_url else check_health(svc.grpc_addr)


def process_start_ticks(pid: int) -> int:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); 0 if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # The command name (field 2) may contain spaces; the fields after its closing parenthesis don't.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=5)


@dataclass(frozen=True)
class RecordedService:
    """A service recorded in stack.json by `kairos up` (possibly another process)."""

    name: str
    pid: int
    argv: list[str]
    log: str
    grpc_addr: str
    metrics_url: str

    start_ticks: int = 0
    ready_url: str = ""

    def alive(self) -> bool:
        """True if the pid still runs the recorded process (pids are reused: compare start times)."""
        return process_start_ticks(self.pid) == self.start_ticks != 0


def recorded_services(run_dir: Path) -> list[RecordedService]:
    path = run_dir / STATE_FILE
    if not path.exists():
        return []
    return [RecordedService(**entry) for entry in json.loads(path.read_text(encoding="utf-8"))]


def stop_recorded(run_dir: Path, timeout_s: float = 10.0) -> Iterator[tuple[str, str]]:
    """Stops every service `kairos up` recorded; yields (name, what happened)."""
    for svc in reversed(recorded_services(run_dir)):
        if not svc.alive():
            yield svc.name, "not running"
            continue
        os.kill(svc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while svc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if svc.alive():
            os.kill(svc.pid, signal.SIGKILL)
            yield svc.name, "killed after timeout"
        else:
            yield svc.name, "stopped"
    with contextlib.suppress(FileNotFoundError):
        (run_dir / STATE_FILE).unlink()
