"""`kairos up --inference-workers N` (ADR 0115): the stack's inference server runs N workers, each on
its own address as well as the shared one, and the collector streams to those addresses, so its hash
ring spreads the symbols over the workers.

The command lines are checked on their own (fast); the slow test starts the stack as `kairos up`
does (the same `services.specs`) with two workers and replays six symbols of real GBPUSD M1 bars.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.chaos import harness

from kairos.stack import processes, replay, services

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "NZDUSD")
# The ring is keyed by the workers' addresses, and the test's ports are random: about one run in 32
# puts all six symbols on one worker. Then these are replayed too, one at a time, until each worker
# holds a symbol (all 26 names on one worker: about one run in 2^25).
MORE = ("USDCAD", "EURGBP", "EURJPY", "GBPJPY", "EURCHF", "AUDJPY", "EURAUD", "GBPCHF", "CADJPY", "NZDJPY")
MORE += ("AUDNZD", "EURCAD", "GBPAUD", "CHFJPY", "AUDCAD", "EURNZD", "GBPCAD", "AUDCHF", "NZDCAD", "GBPNZD")
BARS = 400  # each replayed as four ticks: the model warms on 256 bars (schema v2), ~140 predicted


def _argv(settings: services.StackSettings, tmp_path: Path, name: str) -> list[str]:
    bins = {n: tmp_path / n for n in ("kairos-collector", "kairos-execution")}
    (spec,) = [s for s in services.specs(settings, bins) if s.name == name]
    return list(spec.argv)


def _flag(argv: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    return values[-1] if values else None


def test_one_worker_serves_only_the_shared_address_and_the_collector_streams_there(tmp_path: Path) -> None:
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=tmp_path, model="m.onnx")
    inference = _argv(settings, tmp_path, "inference")
    assert _flag(inference, "workers") is None and _flag(inference, "worker-addrs") is None
    collector = _argv(settings, tmp_path, "collector")
    assert _flag(collector, "inference-endpoints") == f"127.0.0.1:{settings.ports.inference_grpc}"


def test_each_worker_gets_its_own_address_and_the_collector_streams_to_every_one(tmp_path: Path) -> None:
    ports = services.Ports.free()
    settings = services.StackSettings(ports=ports, run_dir=tmp_path, model="m.onnx", inference_workers=3)
    own = [f"127.0.0.1:{ports.inference_workers + i}" for i in range(3)]
    inference = _argv(settings, tmp_path, "inference")
    assert _flag(inference, "workers") == "3"
    assert _flag(inference, "worker-addrs") == ",".join(own)
    assert _flag(inference, "grpc-addr") == f"127.0.0.1:{ports.inference_grpc}"  # the shared one stays
    assert _flag(_argv(settings, tmp_path, "collector"), "inference-endpoints") == ",".join(own)
    assert settings.inference_metrics_urls()[2] == f"http://127.0.0.1:{ports.inference_metrics + 2}/metrics"


def test_free_ports_keep_a_run_for_the_workers_that_no_other_service_takes() -> None:
    ports = services.Ports.free()
    taken = [v for k, v in vars(ports).items() if k not in ("inference_workers", "inference_metrics")]
    for base in (ports.inference_workers, ports.inference_metrics):
        run = range(base, base + services.MAX_INFERENCE_WORKERS)
        assert not set(run) & set(taken), f"a service's port inside the workers' run {run}"


@pytest.mark.parametrize("workers", [0, services.MAX_INFERENCE_WORKERS + 1])
def test_a_worker_count_outside_the_range_is_refused_with_the_range(tmp_path: Path, workers: int) -> None:
    settings = services.StackSettings(run_dir=tmp_path, model="m.onnx", inference_workers=workers)
    with pytest.raises(ValueError, match=f"1 to {services.MAX_INFERENCE_WORKERS}, not {workers}"):
        services.specs(settings, {n: tmp_path / n for n in ("kairos-collector", "kairos-execution")})


def _gauge(url: str, name: str) -> float:
    return sum(services.metric_samples(url, name).values())


@pytest.mark.slow
def test_two_workers_share_the_collectors_symbols_and_predict_every_one(tmp_path: Path) -> None:
    settings = services.StackSettings(
        ports=services.Ports.free(), run_dir=tmp_path, model=str(harness.MODEL), inference_workers=2
    )
    key = settings.ensure_bridge_key()
    binaries = services.build_go_binaries(settings.bin_dir)
    ticks = replay.load(str(harness.GBPUSD_M1), symbol="GBPUSD", strict=True, last=BARS)
    urls = settings.inference_metrics_urls()
    with processes.Stack(tmp_path) as stack:
        stack.start_all(services.specs(settings, binaries))
        services.wait_pipeline_ready(settings)  # the collector's link is up to both workers
        # One stream from the collector to each worker's own address.
        assert [_gauge(u, "kairos_inference_streams_active") for u in urls] == [1.0, 1.0]

        def replay_all(symbols: tuple[str, ...]) -> None:
            runs = [
                harness.ReplayThread(
                    replay.ReplayData(**{**ticks.__dict__, "symbol": s}),
                    f"127.0.0.1:{settings.ports.collector_bridge}",
                    key,
                    2_000,
                    50,
                )
                for s in symbols
            ]
            for r in runs:
                r.start()
            results = [r.outcome(timeout=60) for r in runs]
            assert all(r.acked == r.pushed for r in results), "ticks not acknowledged by the collector"

        replay_all(SYMBOLS)
        replayed = len(SYMBOLS)
        held = [_gauge(u, "kairos_inference_symbol_states") for u in urls]
        for extra in MORE:
            if min(held) >= 1:
                break
            replay_all((extra,))
            replayed += 1
            held = [_gauge(u, "kairos_inference_symbol_states") for u in urls]
        # Every symbol is held by exactly one worker, and the ring gave each worker some.
        assert sum(held) == replayed and min(held) >= 1, f"symbol states per worker: {held}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            predicted = [_gauge(u, "kairos_inference_predictions_total") for u in urls]
            if min(predicted) >= 100 * min(held):
                break
            time.sleep(0.2)
        # ~140 bars per symbol come after the warm-up; both workers predicted for theirs.
        assert min(predicted) >= 100 * min(held), f"predictions per worker {predicted}, symbols {held}"


def test_kairos_up_refuses_more_workers_than_the_stack_has_ports_for(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kairos.cli", "up", "--inference-workers", "9", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "less than or equal to 8" in out.stderr
    assert not any(tmp_path.iterdir()), "nothing started"
