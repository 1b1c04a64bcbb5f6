"""The stack's latency settings. Holding the CPUs' wake-up latency (ADR 0117): a PM QoS request on
the kernel's real /dev/cpu_dma_latency, taken while a block, a command or the stack's `cpu-latency`
service runs and given back when it ends. The tests run as root, as CI does; they read the kernel's
bound before, during and after, so another holder on the machine (a lower bound) would only make
"during" lower. Then the services' CPUs (--cpu-affinity) and `kairos up --keep-warm` (ADR 0118).
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kairos.stack import cpu_latency, processes, services


def _bound() -> int:
    v = cpu_latency.effective_us()
    assert v is not None, "the tests need /dev/cpu_dma_latency readable (root)"
    return v


def test_holding_puts_the_bound_in_the_kernel_and_leaving_gives_it_back() -> None:
    before = _bound()
    with cpu_latency.hold(0) as during:
        assert during == 0
        assert _bound() == 0
    assert _bound() == before


def test_the_bound_is_written_as_one_s32_in_the_machines_byte_order(tmp_path: Path) -> None:
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    with cpu_latency.hold(1234, device) as during:
        assert device.read_bytes() == struct.pack("=i", 1234)
        assert during == 1234


@pytest.mark.parametrize("us", [-1, cpu_latency.NO_BOUND_US, 2**31])
def test_a_bound_the_kernel_cannot_take_is_refused_before_the_device_is_opened(
    tmp_path: Path, us: int
) -> None:
    missing = tmp_path / "not-there"
    limit = cpu_latency.NO_BOUND_US - 1
    refused = pytest.raises(cpu_latency.CpuLatencyError, match=f"0 to {limit} µs, got {us}")
    with refused, cpu_latency.hold(us, missing):
        pass
    assert not missing.exists()


def test_a_kernel_without_the_device_is_a_clear_error(tmp_path: Path) -> None:
    refused = pytest.raises(cpu_latency.CpuLatencyError, match="no PM QoS interface")
    with refused, cpu_latency.hold(0, tmp_path / "cpu_dma_latency"):
        pass
    assert cpu_latency.bench_figure(tmp_path / "cpu_dma_latency") == -1.0


def test_the_machine_figures_name_the_cpu_model_the_cores_and_the_bound(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Test CPU @ 1.00GHz\nprocessor\t: 1\nmodel name\t: other\n"
    )
    m = cpu_latency.machine_figures(tmp_path / "cpu_dma_latency", cpuinfo)
    assert m == {
        "machine_cpu_model": "Test CPU @ 1.00GHz",
        "machine_cores": float(os.cpu_count() or 0),
        "machine_cpu_latency_us": -1.0,
    }
    assert cpu_latency.machine_figures(tmp_path / "cpu_dma_latency", tmp_path / "none")["machine_cpu_model"]


def test_the_command_form_holds_while_the_command_runs_and_returns_its_exit_status() -> None:
    before = _bound()
    probe = (
        "import struct,sys;"
        "v=struct.unpack('=i',open('/dev/cpu_dma_latency','rb').read(4))[0];"
        "sys.exit(7 if v == 0 else 1)"
    )
    out = subprocess.run(
        [sys.executable, "-m", "kairos.stack.cpu_latency", "--us", "0", "--", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 7, out.stderr
    assert '"event": "holding the CPUs\' wake-up latency"' in out.stderr
    assert _bound() == before


def test_the_stack_service_holds_until_stopped_and_says_so_in_its_metrics(tmp_path: Path) -> None:
    before = _bound()
    settings = services.StackSettings(
        ports=services.Ports.free(), run_dir=tmp_path, model="m.onnx", cpu_latency_us=0
    )
    bins = {n: tmp_path / n for n in ("kairos-collector", "kairos-execution")}
    specs = services.specs(settings, bins)
    assert [s.name for s in specs][:2] == ["cpu-latency", "collector"], "held before anything starts"
    with processes.Stack(tmp_path) as stack:
        stack.start_all(specs[:1])
        assert _bound() == 0
        url = specs[0].metrics_url
        assert services.metric_samples(url, "kairos_cpu_latency_bound_seconds") == {"": 0.0}
        assert services.metric_samples(url, "kairos_cpu_latency_effective_seconds") == {"": 0.0}
    assert _bound() == before


def test_without_a_bound_the_stack_has_no_holder(tmp_path: Path) -> None:
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=tmp_path, model="m.onnx")
    bins = {n: tmp_path / n for n in ("kairos-collector", "kairos-execution")}
    assert "cpu-latency" not in [s.name for s in services.specs(settings, bins)]


# --- The stall probe: how much time a busy CPU loses (the benchmarks' machine_stall_* figures) ---


def test_the_stall_probe_reports_each_cpu_and_the_worst_of_them() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    m = cpu_latency.stall_probe(0.3, cpus=cpus)
    per_cpu = {f"machine_stall_pct_cpu{c}" for c in cpus}
    assert set(m) == per_cpu | {"machine_stall_pct", "machine_stall_max_us", "machine_stall_gaps"}
    assert all(0 <= m[k] <= 100 for k in per_cpu)
    assert m["machine_stall_pct"] == max(m[k] for k in per_cpu)
    assert m["machine_stall_max_us"] >= 0 and m["machine_stall_gaps"] >= 0


def test_the_stall_probe_counts_the_time_another_process_takes_from_its_cpu() -> None:
    # A busy process pinned to the probe's CPU: the scheduler gives each about half of it, in
    # slices far longer than the probe's 100 µs threshold.
    cpu = max(os.sched_getaffinity(0))
    hog = subprocess.Popen(
        [sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"]
    )
    try:
        m = cpu_latency.stall_probe(1.0, cpus=[cpu])
    finally:
        hog.kill()
        hog.wait()
    assert m[f"machine_stall_pct_cpu{cpu}"] > 25, m
    assert m["machine_stall_max_us"] > 300 and m["machine_stall_gaps"] > 20, m


# --- The services' CPUs (--cpu-affinity, ADR 0117) ----------------------------------------------

TWO = {0, 1}


@pytest.mark.parametrize(
    ("items", "want"),
    [
        (["inference=1"], {"inference": "1"}),
        (["inference=1", "*=0"], {"inference": "1", "*": "0"}),
        (["collector,execution=0-1"], {"collector": "0,1", "execution": "0,1"}),
        ([" inference = 1,0 "], {"inference": "0,1"}),
    ],
)
def test_cpu_affinity_names_services_and_their_cpus(items: list[str], want: dict[str, str]) -> None:
    assert services.parse_cpu_affinity(items, TWO) == want


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("inference", "expected SERVICE"),
        ("inference=", "expected SERVICE"),
        ("=1", "expected SERVICE"),
        ("infer=1", "no service 'infer'"),
        ("inference=one", "not a CPU list"),
        ("inference=1-0", "not a CPU list"),
        ("inference=2", "CPU 2 of '2' is not one this machine lets us use"),
    ],
)
def test_a_bad_cpu_affinity_is_refused_naming_the_item(item: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        services.parse_cpu_affinity([item], TWO)


def test_a_service_given_cpus_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="inference already has CPUs 1"):
        services.parse_cpu_affinity(["inference=1", "collector,inference=0"], TWO)


@pytest.mark.parametrize(
    ("items", "workers", "cpus", "want"),
    [
        # Not given: the inference workers alone on the last CPUs, the rest on the others (ADR 0122).
        (None, 1, {0, 1}, {"inference": "1", "*": "0"}),
        ([], 1, {0, 1}, {"inference": "1", "*": "0"}),
        (None, 2, {0, 1, 2, 3}, {"inference": "2,3", "*": "0,1"}),
        (None, 1, {2, 5, 7}, {"inference": "7", "*": "2,5"}),  # the CPUs this process may use
        # No CPU left for the rest: the kernel places every service.
        (None, 1, {0}, {}),
        (None, 2, {0, 1}, {}),
        # none: no pinning; items: as given, nothing added.
        (["none"], 1, {0, 1}, {}),
        ([" none "], 1, {0, 1}, {}),
        (["inference=0"], 1, {0, 1}, {"inference": "0"}),
    ],
)
def test_the_stack_pins_inference_alone_by_default_unless_told_otherwise(
    items: list[str] | None, workers: int, cpus: set[int], want: dict[str, str]
) -> None:
    assert services.resolve_cpu_affinity(items, workers, cpus) == want


def test_none_with_other_cpu_affinity_items_is_refused() -> None:
    with pytest.raises(ValueError, match="none alone turns pinning off"):
        services.resolve_cpu_affinity(["none", "inference=1"], 1, TWO)


def test_each_service_gets_its_own_cpus_and_the_rest_those_of_the_star(tmp_path: Path) -> None:
    settings = services.StackSettings(
        ports=services.Ports.free(),
        run_dir=tmp_path,
        model="m.onnx",
        cpu_latency_us=0,
        cpu_affinity=services.parse_cpu_affinity(["inference=1", "*=0"], TWO),
    )
    bins = {n: tmp_path / n for n in ("kairos-collector", "kairos-execution")}
    got = {s.name: s.cpus for s in services.specs(settings, bins)}
    assert got == {"cpu-latency": "0", "collector": "0", "inference": "1", "execution": "0"}
    assert services.console_spec(settings).cpus == "0"
    plain = services.StackSettings(ports=services.Ports.free(), run_dir=tmp_path, model="m.onnx")
    assert {s.cpus for s in services.specs(plain, bins)} == {""}


def _cpus_allowed(pid: int) -> set[str]:
    """Cpus_allowed_list of every thread of the process."""
    out = set()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out.add(line.split(":", 1)[1].strip())
    return out


def test_a_pinned_service_and_every_thread_it_starts_run_only_on_its_cpus(tmp_path: Path) -> None:
    cpu = max(os.sched_getaffinity(0))
    settings = services.StackSettings(
        ports=services.Ports.free(),
        run_dir=tmp_path,
        model="m.onnx",
        cpu_latency_us=0,
        cpu_affinity=services.parse_cpu_affinity([f"cpu-latency={cpu}"]),
    )
    with processes.Stack(tmp_path) as stack:
        stack.start_all([services.cpu_latency_spec(settings)])
        (svc,) = stack.services
        assert len(list(Path(f"/proc/{svc.pid}/task").iterdir())) > 1, "the holder serves metrics on a thread"
        assert _cpus_allowed(svc.pid) == {str(cpu)}


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--cpu-latency-us", "-1"], 2, "--cpu-latency-us"),  # a usage error (typer's range)
        (["--cpu-affinity", "infer=0"], 1, "no service 'infer'"),
        (["--keep-warm", "5"], 1, "--keep-warm: invalid duration '5'"),
    ],
)
def test_kairos_up_refuses_a_bad_latency_setting_before_starting_anything(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kairos.cli", "up", *args, "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == code, out.stderr
    assert says in out.stderr
    assert not any(tmp_path.iterdir()), "nothing started"


def test_a_bound_from_the_environment_that_is_not_a_number_is_a_usage_error() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kairos.stack.cpu_latency", "--", sys.executable, "-c", "pass"],
        env={**os.environ, "KAIROS_CPU_LATENCY_US": "zero"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "argument --us: invalid int value: 'zero'" in out.stderr


# --- The inference server's rehearsal while idle (kairos up --keep-warm, ADR 0118) ------------------

MODEL = Path(__file__).resolve().parents[2] / "tests" / "data" / "model" / "model.onnx"


@pytest.mark.parametrize(
    ("raw", "want"), [("", ""), (" 5ms ", "5ms"), ("0", "0"), ("1m", "1m"), ("250us", "250us")]
)
def test_keep_warm_takes_a_go_duration_up_to_a_minute(raw: str, want: str) -> None:
    assert services.check_keep_warm(raw) == want


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("5", "--keep-warm: invalid duration '5'"),
        ("fast", "--keep-warm: invalid duration 'fast'"),
        ("-5ms", "--keep-warm: invalid duration '-5ms'"),
        ("61s", "--keep-warm 61s: at most 1m0s"),
    ],
)
def test_a_bad_keep_warm_is_refused_naming_the_flag(raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        services.check_keep_warm(raw)


def test_keep_warm_reaches_every_inference_worker_and_only_them(tmp_path: Path) -> None:
    bins = {n: tmp_path / n for n in ("kairos-collector", "kairos-execution")}
    for workers in (1, 2):
        settings = services.StackSettings(
            ports=services.Ports.free(),
            run_dir=tmp_path,
            model="m.onnx",
            inference_keep_warm="5ms",
            inference_workers=workers,
        )
        argv = {s.name: s.argv for s in services.specs(settings, bins)}
        assert argv["inference"].count("--keep-warm=5ms") == 1  # the workers take the server's settings
        assert not [a for name, v in argv.items() if name != "inference" for a in v if "keep-warm" in a]


@pytest.mark.parametrize(
    ("setting", "flags"),
    [
        (None, ["--keep-warm=5ms"]),  # the stack's default (ADR 0121)
        ("0", ["--keep-warm=0"]),  # off, said to the server (whose own default is off too)
        ("", []),  # the server's own setting, or KAIROS_INFERENCE_KEEP_WARM in its environment
    ],
)
def test_the_stack_rehearses_every_5ms_unless_told_otherwise(
    tmp_path: Path, setting: str | None, flags: list[str]
) -> None:
    given = {} if setting is None else {"inference_keep_warm": setting}
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=tmp_path, model="m.onnx", **given)
    bins = {n: tmp_path / n for n in ("kairos-collector", "kairos-execution")}
    argv = [a for s in services.specs(settings, bins) for a in s.argv if "keep-warm" in a]
    assert argv == flags


def test_the_inference_server_kairos_up_starts_rehearses_while_idle(tmp_path: Path) -> None:
    settings = services.StackSettings(
        ports=services.Ports.free(), run_dir=tmp_path / "run", model=str(MODEL), inference_keep_warm="5ms"
    )
    binaries = services.build_go_binaries(settings.bin_dir)
    collector, inference = services.specs(settings, binaries)[:2]
    with processes.Stack(settings.run_dir) as stack:
        stack.start_all([collector, inference])
        runs = 0.0
        deadline = time.monotonic() + 20
        while runs < 10:  # with no request yet, the model alone is rehearsed (every 5 ms when idle)
            assert time.monotonic() < deadline, f"{runs:g} keep-warm runs in 20 s"
            stack.raise_if_dead()
            time.sleep(0.1)
            samples = services.metric_samples(inference.metrics_url, "kairos_inference_keep_warm_runs_total")
            runs = sum(v for k, v in samples.items() if 'path="model"' in k)


# --- The inference workers' CPUs kept awake (kairos up --idle-spin, ADR 0123) ------------------------


@pytest.mark.parametrize(
    ("given", "workers", "flags"),
    [
        ({}, 1, []),  # off unless asked: it costs a whole CPU
        ({"inference_idle_spin": False}, 2, []),
        ({"inference_idle_spin": True}, 1, ["--idle-spin"]),
        ({"inference_idle_spin": True}, 2, ["--idle-spin"]),  # the workers take the server's settings
    ],
)
def test_idle_spin_reaches_the_inference_workers_only_when_asked(
    tmp_path: Path, given: dict[str, bool], workers: int, flags: list[str]
) -> None:
    settings = services.StackSettings(
        ports=services.Ports.free(), run_dir=tmp_path, model="m.onnx", inference_workers=workers, **given
    )
    bins = {n: tmp_path / n for n in ("kairos-collector", "kairos-execution")}
    argv = {s.name: s.argv for s in services.specs(settings, bins)}
    assert [a for a in argv["inference"] if "idle-spin" in a] == flags
    assert not [a for name, v in argv.items() if name != "inference" for a in v if "idle-spin" in a]


def thread_names(pid: int) -> list[tuple[int, str]]:
    """(thread id, name) of each thread of pid; a thread that exits while they are read is left out
    (the server's short-lived threads come and go)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            out.append((int(task.name), (task / "comm").read_text().strip()))
    return out


def test_the_inference_server_kairos_up_starts_with_idle_spin_keeps_its_own_cpu_awake(tmp_path: Path) -> None:
    layout = services.default_cpu_affinity(1)
    settings = services.StackSettings(
        ports=services.Ports.free(),
        run_dir=tmp_path / "run",
        model=str(MODEL),
        cpu_affinity=layout,
        inference_idle_spin=True,
    )
    binaries = services.build_go_binaries(settings.bin_dir)
    collector, inference = services.specs(settings, binaries)[:2]
    with processes.Stack(settings.run_dir) as stack:
        stack.start(collector)
        svc = stack.start(inference)
        stack.wait_ready(svc)
        samples = services.metric_samples(inference.metrics_url, "kairos_inference_idle_spin_threads")
        assert list(samples.values()) == [1.0]
        (tid,) = [tid for tid, name in thread_names(svc.pid) if name == "kairos-idlespin"]
        assert os.sched_getscheduler(tid) == os.SCHED_IDLE
        # The thread keeps the server's own CPUs awake: it has the mask the stack gave the server.
        want = set(services.parse_cpus(layout["inference"])) if layout else os.sched_getaffinity(0)
        assert os.sched_getaffinity(tid) == want
