"""In-process cost of the server's bar intake: ``StreamState.process`` of one request carrying a new
closed M1 bar for each of 64 warm symbols, and its model inputs (no gRPC, no ONNX Runtime).

The same messages as ``bench/inference.py``'s throughput load (real GBPUSD M1 bars, 64 symbols), the
model fixture's shape (16 rows). Prints the minimum, quartile and median over 40 chunks of 40
requests, in µs per request, and which feature kernel ran (``KAIROS_FEATURES_KERNEL=numpy`` for the
numpy one). With the C++ kernel the bar intake in C++ takes these requests (ADR 0110);
``--python-intake`` runs the Python path instead. A diagnostic for before/after pairs (ADR 0103 item
6, ADR 0110); ``bench/inference.py`` is the benchmark of record.

Usage: python bench/intake.py [--python-intake]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference as bench  # bench/inference.py: its data and messages

from kairos.inference.metrics import Metrics
from kairos.inference.model import ModelSource
from kairos.inference.pipeline import KERNEL, pipeline_spec
from kairos.inference.streams import StreamState

WARM, CHUNKS, PER_CHUNK = 400, 40, 40


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python-intake", action="store_true", help="the Python path, not the C++ bar intake")
    args = ap.parse_args()
    model = ModelSource(str(bench.MODEL), "", pipeline_spec(), 64).load("1")
    n = WARM + CHUNKS * PER_CHUNK
    msgs = bench.bar_msgs(bench.gbpusd_bars(n), 0, n, bench.SYMBOLS)
    state = StreamState(
        Metrics(),
        allowed_symbols=frozenset(),
        max_ticks_per_batch=10_000,
        max_bars_per_request=1_000,
        max_symbols=128,
        bar_intake=not args.python_intake,
    )
    for m in msgs[:WARM]:
        state.process(m, model)
    per_request = []
    for c in range(CHUNKS):
        chunk = msgs[WARM + c * PER_CHUNK : WARM + (c + 1) * PER_CHUNK]
        t0 = time.perf_counter()
        for m in chunk:
            work = state.process(m, model)
            work.inputs()
        per_request.append((time.perf_counter() - t0) / len(chunk) * 1e6)
        assert len(work.symbols) == len(bench.SYMBOLS), "every symbol is warm: 64 inputs a request"
    per_request.sort()
    path = "python" if args.python_intake or state.intake is None else "c++"
    print(
        f"{KERNEL} kernel, {path} intake, one 64-bar request: min {per_request[0]:.0f} µs, "
        f"p25 {per_request[CHUNKS // 4]:.0f}, median {per_request[CHUNKS // 2]:.0f}"
    )


if __name__ == "__main__":
    main()
