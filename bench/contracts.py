"""Contract codec benchmark: what one tick costs on the wire, batched (TickBatch) or as rows (Tick).

Backs the hot-path design choice in proto/kairos/marketdata/v1 (ADR 0002): columnar TickBatch
messages of ~100 ticks instead of one Tick message per tick, measured in every codec Kairos uses:
Python protobuf (upb, the services), betterproto2 (the SDK), Go (the collector and execution) and
nanopb (the DLL). Input: the first 100 real EURUSD ticks of shared/data. Output: flat metrics in
bench/results/contracts.json (nanoseconds per tick, bytes per tick, ratios).

Usage: python bench/contracts.py --out bench/results/contracts.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

import kairos.sdk.marketdata.v1 as sdk
from kairos.marketdata.v1 import marketdata_pb2
from kairos.training.data import read_ticks
from kairos.wirecheck import DEFAULT_TICKS, as_quote_ticks

REPO = Path(__file__).resolve().parent.parent
BATCH = 100


def best_ns(fn: Callable[[], object]) -> float:
    """Best of 5 timeit rounds, each auto-ranged to at least 0.2 s, in ns per call."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(number, int(number * 0.2 / max(timer.timeit(number), 1e-9)))
    return min(timer.repeat(repeat=5, number=number)) / number * 1e9


def python_metrics(batch: marketdata_pb2.TickBatch, rows: list[marketdata_pb2.Tick]) -> dict[str, float]:
    wire = batch.SerializeToString()
    row_wires = [r.SerializeToString() for r in rows]
    n = len(rows)
    sdk_batch = sdk.TickBatch.parse(wire)
    m = {
        "py_upb_tickbatch_encode_ns_per_tick": best_ns(batch.SerializeToString) / n,
        "py_upb_tickbatch_decode_ns_per_tick": best_ns(lambda: marketdata_pb2.TickBatch.FromString(wire)) / n,
        "py_upb_tick_rows_encode_ns_per_tick": best_ns(lambda: [r.SerializeToString() for r in rows]) / n,
        "py_upb_tick_rows_decode_ns_per_tick": best_ns(
            lambda: [marketdata_pb2.Tick.FromString(w) for w in row_wires]
        )
        / n,
        "py_betterproto2_tickbatch_encode_ns_per_tick": best_ns(lambda: bytes(sdk_batch)) / n,
        "py_betterproto2_tickbatch_decode_ns_per_tick": best_ns(lambda: sdk.TickBatch.parse(wire)) / n,
        "bytes_per_tick_batch": len(wire) / n,
        "bytes_per_tick_rows": sum(len(w) for w in row_wires) / n,
    }
    return m


def go_metrics(batch_path: Path) -> dict[str, float]:
    env = {**os.environ, "KAIROS_BENCH_TICKBATCH": str(batch_path)}
    out = subprocess.run(
        ["go", "test", "-run", "^$", "-bench", ".", "-benchtime", "1s", "-count", "1", "./gen/go"],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = {
        "BenchmarkTickBatchMarshal": "go_tickbatch_encode_ns_per_tick",
        "BenchmarkTickBatchUnmarshal": "go_tickbatch_decode_ns_per_tick",
        "BenchmarkTickRowsMarshal": "go_tick_rows_encode_ns_per_tick",
        "BenchmarkTickRowsUnmarshal": "go_tick_rows_decode_ns_per_tick",
    }
    m = {}
    for line in out.splitlines():
        match = re.match(r"(Benchmark\w+)(?:-\d+)?\s.*?([\d.]+) ns/tick", line)
        if match and match.group(1) in names:
            m[names[match.group(1)]] = float(match.group(2))
    if len(m) != len(names):
        raise SystemExit(f"bench: go benchmarks missing from output:\n{out}")
    return m


def c_metrics(batch_path: Path) -> dict[str, float]:
    exe = REPO / "build" / "cpp" / "codec_bench"
    out = subprocess.run([str(exe), str(batch_path)], capture_output=True, text=True, check=True).stdout
    metrics: dict[str, float] = json.loads(out)
    return metrics


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    ticks = as_quote_ticks(read_ticks(str(DEFAULT_TICKS)))[:BATCH]
    batch = marketdata_pb2.TickBatch(
        symbol="EURUSD",
        time_msc=[t.time_msc for t in ticks],
        bid=[t.bid for t in ticks],
        ask=[t.ask for t in ticks],
        flags=[6] * len(ticks),
        sequence=range(1, len(ticks) + 1),
    )
    rows = [
        marketdata_pb2.Tick(symbol="EURUSD", time_msc=t.time_msc, bid=t.bid, ask=t.ask, flags=6, sequence=i)
        for i, t in enumerate(ticks, start=1)
    ]
    batch_path = REPO / "build" / "bench" / "tickbatch100.binpb"
    batch_path.parent.mkdir(parents=True, exist_ok=True)
    batch_path.write_bytes(batch.SerializeToString())

    m = {"ticks_per_batch": float(len(ticks)), "cpu_count": float(os.cpu_count() or 0)}
    m |= python_metrics(batch, rows)
    m |= go_metrics(batch_path)
    m |= c_metrics(batch_path)
    m["ratio_py_rows_vs_batch_decode"] = (
        m["py_upb_tick_rows_decode_ns_per_tick"] / m["py_upb_tickbatch_decode_ns_per_tick"]
    )
    m["ratio_go_rows_vs_batch_decode"] = (
        m["go_tick_rows_decode_ns_per_tick"] / m["go_tickbatch_decode_ns_per_tick"]
    )
    m["ratio_betterproto2_vs_upb_decode"] = (
        m["py_betterproto2_tickbatch_decode_ns_per_tick"] / m["py_upb_tickbatch_decode_ns_per_tick"]
    )
    m = {k: round(v, 3) for k, v in m.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    width = max(map(len, m))
    for k, v in sorted(m.items()):
        print(f"{k:{width}}  {v}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
