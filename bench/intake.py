"""In-process cost of the server's bar intake: ``StreamState.process`` of one request carrying a new
closed M1 bar for each of 64 warm symbols, and its model inputs (no gRPC, no ONNX Runtime).

The same messages as ``bench/inference.py``'s throughput load (real GBPUSD M1 bars, 64 symbols), the
model fixture's shape (16 rows). Prints the minimum, quartile and median over 40 chunks of 40
requests, in µs per request, and which feature kernel ran (``KAIROS_FEATURES_KERNEL=numpy`` for the
numpy one). A diagnostic for before/after pairs (ADR 0103 item 6); ``bench/inference.py`` is the
benchmark of record.

Usage: python bench/intake.py
"""

from __future__ import annotations

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
    model = ModelSource(str(bench.MODEL), "", pipeline_spec(), 64).load("1")
    n = WARM + CHUNKS * PER_CHUNK
    msgs = bench.bar_msgs(bench.gbpusd_bars(n), 0, n, bench.SYMBOLS)
    state = StreamState(
        Metrics(),
        allowed_symbols=frozenset(),
        max_ticks_per_batch=10_000,
        max_bars_per_request=1_000,
        max_symbols=128,
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
    print(
        f"{KERNEL} kernel, one 64-bar request: min {per_request[0]:.0f} µs, "
        f"p25 {per_request[CHUNKS // 4]:.0f}, median {per_request[CHUNKS // 2]:.0f}"
    )


if __name__ == "__main__":
    main()
