"""End-to-end benchmark: real ticks through bridge library → collector → inference → execution.

Runs the stack as `kairos up` does (real processes on loopback, the checked-in model trained on
real GBPUSD M1 bars, paper venue, SQLite journal) and replays the real EURUSD tick file through the
bridge's C++ client (Python extension):

- ``tick_to_order_ack_us_p50`` / ``_p99``: at ``--rate`` ticks/s (2,000), for every order the
  execution service acknowledged, the time from the bridge's network thread writing the frame
  that carried the bar-closing tick (HOP_STAGE_BRIDGE_SEND, the first stamp on the path) to the
  venue's acknowledgement (HOP_STAGE_VENUE_ACK), from the hop stamps in the execution reports.
  The tick file is replayed ``--laps`` times, each lap shifted in time, for enough orders.
- ``replay_ticks_per_s``: the same ticks at full speed, pushed until the bridge has sent them all;
  ``lost`` = ticks pushed but never sent, plus ticks sent but not counted in by the collector.

Writes bench/results/e2e.json (flat metric names → numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np

from kairos.stack import observe, processes, replay, services

MINUTE_MS = 60_000


def machine() -> dict[str, float | str]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"machine_cpu_model": model, "machine_cores": float(os.cpu_count() or 0)}


def laps(data: replay.ReplayData, n: int) -> replay.ReplayData:
    """The tick file n times in a row, each lap shifted past the previous one's end (+1 minute)."""
    span = int(data.time_msc[-1] - data.time_msc[0]) + MINUTE_MS
    shift = (span // MINUTE_MS + 1) * MINUTE_MS  # whole minutes, so bars align lap after lap
    times = np.concatenate([data.time_msc + i * shift for i in range(n)])
    return replay.ReplayData(
        data.symbol, data.digits, times, np.tile(data.bid, n), np.tile(data.ask, n), data.source, data.kind
    )


def run(rate: float, n_laps: int, out: Path) -> dict[str, float | str]:
    run_dir = services.REPO / "build" / "bench-e2e"
    settings = services.StackSettings(
        ports=services.Ports.free(),
        run_dir=run_dir,
        model=str(services.REPO / "python" / "tests" / "data" / "model" / "model.onnx"),
        threshold=0.0,
    )
    settings.mlflow_uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    for stale in run_dir.glob("journal.db*"):
        stale.unlink()
    binaries = services.build_go_binaries(settings.bin_dir)
    data = replay.load(
        str(services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"), symbol="EURUSD", strict=True
    )
    stats = observe.PipelineStats()
    stop, ready = threading.Event(), threading.Event()

    def watch() -> None:
        async def main() -> None:
            ev = asyncio.Event()
            tasks = [
                asyncio.create_task(
                    observe.watch_nats(
                        settings.nats_url, stats, ev, ready, settings.credentials().nats_creds("observer")
                    )
                ),
                asyncio.create_task(
                    observe.watch_execution(
                        f"127.0.0.1:{settings.ports.execution_grpc}", settings.token, stats, ev
                    )
                ),
            ]
            while not stop.is_set():
                await asyncio.sleep(0.05)
            ev.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())

    metrics: dict[str, float | str] = {}
    with processes.Stack(run_dir) as stack:
        stack.start_all(services.specs(settings, binaries))
        services.wait_pipeline_ready(settings)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        ready.wait(timeout=15)

        paced = laps(data, n_laps)
        result = replay.replay(
            paced,
            collector=f"127.0.0.1:{settings.ports.collector_bridge}",
            speed=rate,
            bridge_key=settings.ensure_bridge_key(),
        )
        time.sleep(3.0)
        acks = [
            float(rep_hops["total:bridge_send->venue_ack"])
            for rep in stats.reports_seen
            if "total:bridge_send->venue_ack" in (rep_hops := observe.hop_latencies(rep.hops))
        ]
        for name, values in stats.latencies.items():
            if not name.startswith("total"):
                key = name.replace("->", "_to_")
                metrics[f"hop_us_p50.{key}"] = round(float(np.percentile(values, 50)), 1)
                metrics[f"hop_us_p99.{key}"] = round(float(np.percentile(values, 99)), 1)
        metrics["offered_ticks_per_s"] = rate
        metrics["paced_ticks"] = float(result.pushed)
        metrics["orders_acked"] = float(len(acks))
        metrics["tick_to_order_ack_us_p50"] = (
            round(float(np.percentile(acks, 50)), 1) if acks else float("nan")
        )
        metrics["tick_to_order_ack_us_p99"] = (
            round(float(np.percentile(acks, 99)), 1) if acks else float("nan")
        )

        # Full speed: a fresh symbol so its bars and state start clean.
        url = f"http://127.0.0.1:{settings.ports.collector_metrics}/metrics"
        before = sum(services.metric_samples(url, "kairos_collector_ticks_in_total").values())
        fast = laps(data, n_laps)
        fast.symbol = "EURUSD.fast"
        full = replay.replay(
            fast,
            collector=f"127.0.0.1:{settings.ports.collector_bridge}",
            speed=0,
            bridge_key=settings.ensure_bridge_key(),
        )
        deadline = time.monotonic() + 30
        arrived = before
        while time.monotonic() < deadline:
            arrived = sum(services.metric_samples(url, "kairos_collector_ticks_in_total").values())
            if arrived - before >= full.sent:
                break
            time.sleep(0.05)
        metrics["replay_ticks"] = float(full.pushed)
        metrics["replay_ticks_per_s"] = round(full.ticks_per_s, 1)
        metrics["lost"] = float(full.lost + (full.sent - (arrived - before)))
        stop.set()
        watcher.join(timeout=10)
    metrics.update(machine())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="offered ticks per second for the latency run")
    ap.add_argument("--laps", type=int, default=5, help="replays of the tick file, shifted in time")
    ap.add_argument("--out", type=Path, default=services.REPO / "bench" / "results" / "e2e.json")
    args = ap.parse_args()
    print(json.dumps(run(args.rate, args.laps, args.out), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
