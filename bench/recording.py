"""Recording benchmark (ADR 0084): does the recorder keep up with the collector's ingest, and what does
it cost the collector?

Real processes on loopback: the Go collector (embedded NATS, inference link off) and, in the
"recording" rounds, the recorder process as `kairos up` starts it. Input: the real EURUSD ticks of
shared/data replayed lap after lap (times shifted by the file's span each lap) through the bridge
library, 1,000 ticks per push, paced at ``--speed`` ticks/s (default 1,000,000), plus one unpaced pair
(the collector's burst rate). Rounds alternate off/on (paired); per round:

- ``ingest_ticks_per_s``: ticks / time from the first push until the collector counts them all
  accepted (its /metrics);
- ``recorded_ticks_per_s`` (recording rounds): ticks / time from the first push until the recorder
  has written them all to Parquet (its /metrics), so a recorder that falls behind shows here;
- ``recording_lag_s``: from the collector accepting the last tick to the recorder having written it
  (the flush interval, 1 s, plus one write when the recorder keeps up; it grows with the run if not);
- ``ratio``: a recording round's ingest rate over the previous round's without recording.

Writes bench/results/recording.json; docs/benchmarks.md has the figures and the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from kairos.stack import processes, replay, services

TICKS = services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"


def laps(n: int) -> replay.ReplayData:
    base = replay.load(str(TICKS), symbol="EURUSD", strict=True)
    span = int(base.time_msc[-1] - base.time_msc[0]) + 1000
    k = -(-n // len(base.time_msc))
    t = np.concatenate([base.time_msc + i * span for i in range(k)])[:n]
    bid = np.tile(base.bid, k)[:n]
    ask = np.tile(base.ask, k)[:n]
    return replay.ReplayData("EURUSD", base.digits, t, bid, ask, base.source, "ticks", [])


def _sum(url: str, name: str) -> float:
    try:
        return sum(services.metric_samples(url, name).values())
    except OSError:
        return -1.0


def one_round(
    data: replay.ReplayData, record: bool, binaries: dict[str, Path], timeout_s: float, speed: float
) -> dict[str, float]:
    n = len(data.time_msc)
    with tempfile.TemporaryDirectory(prefix="kairos-bench-rec-") as tmp:
        settings = services.StackSettings(ports=services.Ports.free(), run_dir=Path(tmp) / "run")
        col = services.specs(settings, binaries)[0]
        argv = [a for a in col.argv if not a.startswith("--inference-endpoints")]
        col = dataclasses.replace(col, argv=[*argv, "--inference-endpoints=none", "--bar-idle-close=0"])
        specs = [col] + ([services.recorder_spec(settings, Path(tmp) / "recorded")] if record else [])
        with processes.Stack(settings.run_dir) as stack:
            stack.start_all(specs)
            cm = f"http://127.0.0.1:{settings.ports.collector_metrics}/metrics"
            rm = f"http://127.0.0.1:{settings.ports.recorder_metrics}/metrics"
            t0 = time.perf_counter()
            res = replay.replay(
                data,
                collector=f"127.0.0.1:{settings.ports.collector_bridge}",
                batch=1000,
                speed=speed,
                bridge_key=settings.ensure_bridge_key(),
                flush_timeout_s=timeout_s,
            )
            t_ingest = t_rec = float("nan")
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                now = time.perf_counter()
                if t_ingest != t_ingest and _sum(cm, "kairos_collector_ticks_accepted_total") >= n:
                    t_ingest = now - t0
                if record and t_rec != t_rec and _sum(rm, "kairos_recorder_ticks_total") >= n:
                    t_rec = now - t0
                if t_ingest == t_ingest and (not record or t_rec == t_rec):
                    break
                time.sleep(0.005)
            out = {"ingest_ticks_per_s": n / t_ingest, "lost": float(res.lost)}
            if record:
                out["recorded_ticks_per_s"] = n / t_rec
                out["recording_lag_s"] = t_rec - t_ingest
                out["recorder_sequence_gaps"] = _sum(rm, "kairos_recorder_tick_sequence_gaps_total")
                parts = list((Path(tmp) / "recorded").rglob("*.parquet"))
                out["recorded_bytes_per_tick"] = sum(p.stat().st_size for p in parts) / n
            return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ticks", type=int, default=6_000_000)
    ap.add_argument("--rounds", type=int, default=3, help="pairs of rounds (off, on)")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--speed", type=float, default=1_000_000, help="offered ticks/s of the paced rounds")
    ap.add_argument("--out", default="bench/results/recording.json")
    args = ap.parse_args()
    binaries = services.build_go_binaries(services.REPO / "build" / "bin")
    data = laps(args.ticks)

    def pairs(speed: float, n: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        off, on = [], []
        for i in range(n):
            off.append(one_round(data, False, binaries, args.timeout, speed))
            on.append(one_round(data, True, binaries, args.timeout, speed))
            print(f"speed {speed:g} pair {i}: off {off[-1]}, on {on[-1]}", flush=True)
        return off, on

    def med(rows: list[dict[str, float]], key: str) -> int:
        return round(statistics.median(r[key] for r in rows))

    off, on = pairs(args.speed, args.rounds)  # paced at the target rate
    moff, mon = pairs(0, 1)  # unpaced: the collector's burst rate
    ratios = [b["ingest_ticks_per_s"] / a["ingest_ticks_per_s"] for a, b in zip(off, on, strict=True)]
    result = {
        "ticks_per_round": args.ticks,
        "pairs": args.rounds,
        "offered_ticks_per_s": args.speed,
        "ingest_ticks_per_s_without_recording_median": med(off, "ingest_ticks_per_s"),
        "ingest_ticks_per_s_with_recording_median": med(on, "ingest_ticks_per_s"),
        "recorded_ticks_per_s_median": med(on, "recorded_ticks_per_s"),
        "recorded_ticks_per_s_min": round(min(r["recorded_ticks_per_s"] for r in on)),
        # Time from the collector accepting the last tick to the recorder having written it: bounded
        # by the flush interval plus one write when the recorder keeps up, growing with the run if not.
        "recording_lag_s_median": round(statistics.median(r["recording_lag_s"] for r in on), 3),
        "recording_lag_s_max": round(max(r["recording_lag_s"] for r in on), 3),
        "ingest_ratio_with_to_without_median": round(statistics.median(ratios), 3),
        "ingest_ratios": [round(r, 3) for r in ratios],
        "unpaced_ingest_ticks_per_s_without_recording": med(moff, "ingest_ticks_per_s"),
        "unpaced_ingest_ticks_per_s_with_recording": med(mon, "ingest_ticks_per_s"),
        "unpaced_recorded_ticks_per_s": med(mon, "recorded_ticks_per_s"),
        "ticks_lost": int(sum(r["lost"] for r in off + on + moff + mon)),
        "recorder_sequence_gaps": int(sum(r["recorder_sequence_gaps"] for r in on + mon)),
        "recorded_bytes_per_tick": round(statistics.median(r["recorded_bytes_per_tick"] for r in on), 2),
        "machine_cores": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
