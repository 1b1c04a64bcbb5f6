"""Hold the CPUs' wake-up latency low while the stack runs (ADR 0117): a PM QoS request on
``/dev/cpu_dma_latency``.

An idle CPU sleeps in the deepest state its idle driver allows. On a VM with the ``haltpoll`` driver
and no guest polling, that is a halt: the host takes the vCPU away, and waking it costs ~150 µs, with
cold caches after it (measured on the 2-vCPU host of docs/benchmarks.md: a process woken after 20 ms
idle 139-157 µs, one ORT run of the fixture model 488 µs against 17 µs hot). Every hop of the tick
path finds its CPU idle between the EA's 20 ms pushes and pays that.

The kernel's PM QoS interface lets a process ask for a bound on that latency for as long as it keeps
``/dev/cpu_dma_latency`` open with the bound written to it (4 bytes, an s32 in µs). At 0 the idle
loop polls instead of halting: the same hold tuned's ``latency-performance`` profile and cyclictest
take. The cost is the idle CPU time, which then spins (on a VM the host sees every vCPU busy), so it
is opt-in: ``kairos up --cpu-latency-us 0`` runs this module as a service of the stack, and
``python -m kairos.stack.cpu_latency --us 0 -- CMD ...`` holds it while one command runs (the
benchmarks' ``make bench-held``). The request ends when the holder exits, however it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

DEVICE = Path("/dev/cpu_dma_latency")
# The kernel's value when no process asks for a bound (PM_QOS_CPU_LATENCY_DEFAULT_VALUE: 2,000 s).
NO_BOUND_US = 2_000_000_000
FORMAT = "=i"  # the device takes and gives one s32 in the machine's byte order


class CpuLatencyError(RuntimeError):
    """The bound could not be held: the message names the device and what to do."""


def effective_us(device: Path = DEVICE) -> int | None:
    """The bound the kernel applies now (the smallest one any process holds; NO_BOUND_US when none),
    or None when the device cannot be read (not there, or not readable by this user)."""
    try:
        with device.open("rb") as f:
            raw = f.read(struct.calcsize(FORMAT))
    except OSError:
        return None
    if len(raw) != struct.calcsize(FORMAT):
        return None
    return int(struct.unpack(FORMAT, raw)[0])


def bench_figure(device: Path = DEVICE) -> float:
    """``machine_cpu_latency_us`` of a benchmark's results: the bound in effect while it ran
    (NO_BOUND_US: none; -1: unknown, the device unreadable)."""
    v = effective_us(device)
    return -1.0 if v is None else float(v)


def machine_figures(device: Path = DEVICE, cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, float | str]:
    """The host a benchmark ran on, as its results record it: ``machine_cpu_model`` (cpuinfo's first
    model name), ``machine_cores`` and ``machine_cpu_latency_us`` (``bench_figure``)."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "machine_cpu_model": model,
        "machine_cores": float(os.cpu_count() or 0),
        "machine_cpu_latency_us": bench_figure(device),
    }


# The stall probe's busy loop, one process per CPU (``python -c``): pinned, it waits for the shared
# start (monotonic ns), then reads the clock as fast as it can until the end and prints the time it
# ran, the time lost in gaps over the threshold, the longest gap and their count.
_STALL_LOOP = """
import os, sys, time
cpu, start, end, gap = (int(a) for a in sys.argv[1:5])
os.sched_setaffinity(0, {cpu})
clock = time.perf_counter_ns
while clock() < start:
    pass
first = last = clock()
lost = worst = n = 0
while last < end:
    now = clock()
    d = now - last
    if d > gap:
        lost += d
        n += 1
        worst = max(worst, d)
    last = now
print(last - first, lost, worst, n)
"""


def stall_probe(
    seconds: float = 2.0, gap_us: int = 100, cpus: Sequence[int] | None = None
) -> dict[str, float]:
    """How much time a busy CPU loses, as the benchmarks record it beside their figures: one process
    per CPU (``cpus``, default every CPU of the machine), each pinned to its CPU and reading the
    clock in a loop for ``seconds``, all at once. A gap of more than ``gap_us`` between two reads is
    time the process did not run: on a VM, mostly the host running something else where the vCPU
    was (on the 2-vCPU host of issue #17, one vCPU lost 0.6-0.75% in gaps of up to 4.7 ms while both
    were busy, and 0-0.2% while one alone was). A figure of the host, not a cause of the stack's p99s
    there (docs/benchmarks.md, eleventh session). Figures: ``machine_stall_pct_cpu<N>`` (% of the time
    lost on CPU N), ``machine_stall_pct`` (the worst CPU's), ``machine_stall_max_us`` (the longest
    gap) and ``machine_stall_gaps`` (their number, all CPUs)."""
    cpus = list(range(os.cpu_count() or 1)) if cpus is None else list(cpus)
    start = time.perf_counter_ns() + 300_000_000  # every process started and pinned by then
    end = start + int(seconds * 1e9)
    procs = {
        c: subprocess.Popen(
            [sys.executable, "-c", _STALL_LOOP, str(c), str(start), str(end), str(gap_us * 1000)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for c in cpus
    }
    out: dict[str, float] = {}
    worst = gaps = 0
    try:
        for c, p in procs.items():
            text, _ = p.communicate(timeout=seconds + 60)
            if p.returncode != 0:
                raise RuntimeError(f"stall probe on CPU {c} exited with {p.returncode}")
            ran, lost, longest, n = (int(v) for v in text.split())
            out[f"machine_stall_pct_cpu{c}"] = round(100.0 * lost / max(ran, 1), 3)
            worst, gaps = max(worst, longest), gaps + n
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    out["machine_stall_pct"] = max(out[f"machine_stall_pct_cpu{c}"] for c in cpus)
    out["machine_stall_max_us"] = worst / 1000
    out["machine_stall_gaps"] = float(gaps)
    return out


def check_bound(us: int) -> int:
    if not 0 <= us < NO_BOUND_US:
        raise CpuLatencyError(f"the wake-up latency bound must be 0 to {NO_BOUND_US - 1} µs, got {us}")
    return us


@contextlib.contextmanager
def hold(us: int, device: Path = DEVICE) -> Iterator[int | None]:
    """Asks the kernel to keep every CPU's wake-up latency at most ``us`` µs until the block ends;
    yields the bound the kernel then applies (None if the device cannot be read back)."""
    check_bound(us)
    try:
        fd = os.open(device, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise CpuLatencyError(
            f"{device} does not exist: this kernel (or container) has no PM QoS interface; "
            "run without --cpu-latency-us"
        ) from e
    except PermissionError as e:
        raise CpuLatencyError(
            f"cannot open {device} for writing: holding the CPUs' wake-up latency needs root, or write "
            "access to that device for this user (a udev rule); run without --cpu-latency-us"
        ) from e
    except OSError as e:
        raise CpuLatencyError(f"cannot open {device}: {e}") from e
    try:
        try:
            written = os.write(fd, struct.pack(FORMAT, us))
        except OSError as e:
            raise CpuLatencyError(f"{device} refused the bound {us} µs: {e}") from e
        if written != struct.calcsize(FORMAT):
            raise CpuLatencyError(f"{device} took {written} of the bound's 4 bytes")
        yield effective_us(device)
    finally:
        os.close(fd)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1 :]
    ap = argparse.ArgumentParser(
        prog="python -m kairos.stack.cpu_latency",
        description="Hold every CPU's wake-up latency at most --us µs (PM QoS, /dev/cpu_dma_latency): "
        "while COMMAND runs when one follows `--`, else until SIGTERM or SIGINT.",
    )
    env = os.environ.get("KAIROS_CPU_LATENCY_US", "").strip()
    ap.add_argument(
        "--us",
        type=int,  # argparse converts a string default too: a bad $KAIROS_CPU_LATENCY_US is a usage error
        default=env or None,
        required=not env,
        help="the bound in µs; 0 makes idle CPUs poll instead of halt ($KAIROS_CPU_LATENCY_US)",
    )
    ap.add_argument(
        "--metrics-addr",
        default="",
        help="serve Prometheus /metrics on this host:port while holding (a service of `kairos up`)",
    )
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    try:
        check_bound(args.us)
    except CpuLatencyError as e:
        ap.error(str(e))
    return args, command


def serve_metrics(addr: str, us: int, device: Path) -> None:
    from prometheus_client import REGISTRY, Gauge, start_http_server

    host, _, port = addr.rpartition(":")
    Gauge("kairos_cpu_latency_bound_seconds", "The wake-up latency bound this process holds.").set(us / 1e6)
    effective = Gauge(
        "kairos_cpu_latency_effective_seconds",
        "The bound the kernel applies now: the smallest any process holds (2000 = none; -1 = unreadable).",
    )
    effective.set_function(lambda: v / 1e6 if (v := effective_us(device)) is not None else -1.0)
    start_http_server(int(port), addr=host or "127.0.0.1", registry=REGISTRY)


def main(argv: Sequence[str] | None = None, device: Path = DEVICE) -> int:
    from kairos.inference import logs

    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(args.log_level)
    log = logs.get_logger().bind(component="cpu-latency", device=str(device))
    stop = threading.Event()
    if not command:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    rc = 0
    try:
        with hold(args.us, device) as effective:
            log.info("holding the CPUs' wake-up latency", bound_us=args.us, effective_us=effective)
            if command:
                try:
                    rc = subprocess.call(command)
                except OSError as e:
                    log.error("cannot run the command", command=command[0], error=str(e))
                    rc = 127
            else:
                if args.metrics_addr:
                    serve_metrics(args.metrics_addr, args.us, device)
                stop.wait()
    except CpuLatencyError as e:
        log.error("cannot hold the CPUs' wake-up latency", error=str(e))
        print(f"kairos cpu-latency: {e}", file=sys.stderr)
        return 1
    log.info("released the CPUs' wake-up latency", bound_us=args.us, effective_us=effective_us(device))
    return rc


if __name__ == "__main__":
    sys.exit(main())
