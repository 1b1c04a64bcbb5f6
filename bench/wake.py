"""What sleeping costs on this machine: a diagnostic for hosts whose latencies differ (issue #17).

- the one-way time from a process's send to a reader process woken by it, with the reader idle for
  0.5, 2 and 20 ms before each message (``bench/e2e.py``'s ``machine_wake_us_*`` probe);
- a small CPU-bound Python step (one ``json.dumps`` of a 200-float dict, one 16x16 matmul) run back
  to back, after sleeping 0.5, 2 and 20 ms, and after spinning 20 ms: how much slower the first work
  after idling is than the same work hot in cache;
- the same for one ONNX Runtime run of one row of the checked-in model fixture (one intra-op
  thread, as the inference server runs it).

Prints p50 / p90 in µs. Not a benchmark of record (nothing is written to bench/results); the
figures and how to read them are in docs/benchmarks.md.

Usage: python bench/wake.py
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e import wake_probe

N = 300
DOC = {"a": [1.5] * 200, "b": "x" * 100}
M = np.random.default_rng(0).random((16, 16))
MODEL = Path(__file__).resolve().parent.parent / "python" / "tests" / "data" / "model" / "model.onnx"


def step() -> None:
    json.dumps(DOC)
    (M @ M.T).sum()


def ort_step() -> Callable[[], object]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(MODEL), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    return lambda: sess.run(None, {inp.name: x})


def timed(pause: float, spin: bool, work: Callable[[], object] = step) -> tuple[float, float]:
    lat = []
    for _ in range(N):
        if spin:
            end = time.perf_counter() + pause
            while time.perf_counter() < end:
                pass
        elif pause:
            time.sleep(pause)
        t = time.perf_counter_ns()
        work()
        lat.append((time.perf_counter_ns() - t) / 1000)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 90))


def main() -> None:
    for gap in (0.0005, 0.002, 0.02):
        p50, p99 = wake_probe(gap)
        print(f"reader woken after {gap * 1000:4.1f} ms idle: one-way p50 {p50:6.0f} us, p99 {p99:6.0f} us")
    for label, pause, spin in (
        ("back to back", 0.0, False),
        ("after sleeping 0.5 ms", 0.0005, False),
        ("after sleeping 2 ms", 0.002, False),
        ("after sleeping 20 ms", 0.02, False),
        ("after spinning 20 ms", 0.02, True),
    ):
        p50, p90 = timed(pause, spin)
        print(f"a Python step {label:>22}: p50 {p50:6.0f} us, p90 {p90:6.0f} us")
    run = ort_step()
    for label, pause in (
        ("back to back", 0.0),
        ("after sleeping 2 ms", 0.002),
        ("after sleeping 20 ms", 0.02),
    ):
        p50, p90 = timed(pause, False, run)
        print(f"an ORT run {label:>25}: p50 {p50:6.0f} us, p90 {p90:6.0f} us")


if __name__ == "__main__":
    main()
