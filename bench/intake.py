"""In-process cost of the server's intakes: ``StreamState.process`` of one request and its model
inputs (no gRPC, no ONNX Runtime).

- Bars (the default): one request carrying a new closed M1 bar for each of 64 warm symbols; the same
  messages as ``bench/inference.py``'s throughput load (real GBPUSD M1 bars, 64 symbols). Prints the
  minimum, quartile and median over 40 chunks of 40 requests, in µs per request.
- ``--ticks``: the e2e bench's pushes, 40 real EURUSD ticks a request (the tick file replayed in
  laps, shifted in time, as ``bench/e2e.py`` does), the request parsed from its bytes as the server
  does; the median µs per request of those that close no bar and of those that make a model input.

The model fixture's shape (16 rows); which feature kernel ran (``KAIROS_FEATURES_KERNEL=numpy`` for
the numpy one). With the C++ kernel the C++ intakes take these requests (ADRs 0110, 0119);
``--python-intake`` runs the Python path instead. A diagnostic for before/after pairs (ADR 0103 item
6, ADRs 0110, 0119); ``bench/inference.py`` and ``bench/e2e.py`` are the benchmarks of record.

Usage: python bench/intake.py [--ticks] [--python-intake]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference as bench  # bench/inference.py: its data and messages

from kairos.inference.metrics import Metrics
from kairos.inference.model import ModelSource
from kairos.inference.pipeline import KERNEL, pipeline_spec
from kairos.inference.streams import StreamState
from kairos.inference.v1 import inference_pb2 as pb
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.training.data import read_ticks

WARM, CHUNKS, PER_CHUNK = 400, 40, 40


def _stream(python_intake: bool) -> StreamState:
    return StreamState(
        Metrics(),
        allowed_symbols=frozenset(),
        max_ticks_per_batch=10_000,
        max_bars_per_request=1_000,
        max_symbols=128,
        any_symbol=True,
        bar_intake=not python_intake,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python-intake", action="store_true", help="the Python path, not the C++ intakes")
    ap.add_argument(
        "--ticks", action="store_true", help="40-tick requests of one symbol, as in the e2e bench"
    )
    args = ap.parse_args()
    model = ModelSource(str(bench.MODEL), "", pipeline_spec(), 64).load("1")
    if args.ticks:
        ticks(model, args.python_intake)
        return
    n = WARM + CHUNKS * PER_CHUNK
    msgs = bench.bar_msgs(bench.gbpusd_bars(n), 0, n, bench.SYMBOLS)
    state = _stream(args.python_intake)
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


def ticks(model: object, python_intake: bool, laps: int = 6, push: int = 40) -> None:
    df = read_ticks(str(bench.DATA / "eurusd-ticks-2020-01-01.csv"))
    t = [int(x) for x in df["time_msc"]]
    bid, ask = df["bid"].astype(float).tolist(), df["ask"].astype(float).tolist()
    span = t[-1] - t[0] + 60_000
    raws = []
    seq = 0
    for lap in range(laps):
        for i in range(0, len(t) - push + 1, push):
            batch = md.TickBatch(
                symbol="EURUSD",
                time_msc=[x + lap * span for x in t[i : i + push]],
                bid=bid[i : i + push],
                ask=ask[i : i + push],
                sequence=range(seq + 1, seq + push + 1),
            )
            seq += push
            raws.append(pb.StreamPredictRequest(request_id=len(raws) + 1, ticks=[batch]).SerializeToString())
    state = _stream(python_intake)
    quiet, made = [], []
    for raw in raws:
        t0 = time.perf_counter()
        work = state.process(pb.StreamPredictRequest.FromString(raw), model, raw)
        if work.symbols:
            work.inputs()
        (made if work.symbols else quiet).append((time.perf_counter() - t0) * 1e6)
    path = "python" if python_intake or state.intake is None else "c++"
    q, m = statistics.median(quiet), statistics.median(made)
    print(
        f"{KERNEL} kernel, {path} intake, {len(raws)} requests of {push} ticks: median {q:.1f} µs "
        f"closing no bar ({len(quiet)}), {m:.1f} µs making a model input ({len(made)})"
    )


if __name__ == "__main__":
    main()
