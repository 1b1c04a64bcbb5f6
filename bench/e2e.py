"""End-to-end benchmark: real ticks through bridge library → collector → inference → execution.

Runs the stack as `kairos up` does (real processes on loopback, the checked-in model trained on
real GBPUSD M1 bars, paper venue, SQLite journal) and replays the real EURUSD tick file through the
bridge's C++ client (Python extension):

- ``tick_to_order_ack_us_p50`` / ``_p99``: at ``--rate`` ticks/s (2,000), for every order the
  execution service acknowledged, the time from the bridge's network thread writing the frame
  that carried the bar-closing tick (HOP_STAGE_BRIDGE_SEND, the first stamp on the path) to the
  venue's acknowledgement (HOP_STAGE_VENUE_ACK), from the hop stamps in the execution reports.
  The tick file is replayed ``--laps`` times, each lap shifted in time, for enough orders. The
  ticks are pushed as the EA pushes them: every ``--timer-ms`` (its ``InpTimerMs``, 20 ms) the
  slice that arrived since the last push, so 40 ticks a push at 2,000 ticks/s (the bench pushed
  100-tick slices before ADR 0108; ``--timer-ms 50`` gives those).
  ``--policy frequent`` (the default) serves the checked-in model with a copy of its card whose
  decision policy trades often: enter on any edge, exit after two bars, two bars of cooldown, so
  two of every five bars place an order (hundreds a run, not the ~16 of the card's own policy) and
  the p99 is a percentile, not the slowest order; ``--policy card`` keeps the model's own policy.
  Either way the card also carries the training distribution of the fixture's data, as every card
  `kairos-train` exports does, so the server runs its drift monitor on each prediction as it would
  for a real model (``inference_drift_monitor`` = 1).
- ``python_hop_us_p50`` / ``_p99``: per acknowledged order, collector send -> execution receive (the
  inference server and its signal on NATS, issue #17), from the same hop stamps.
- ``hop_us_p50.<hop>`` / ``hop_us_p99.<hop>``: each hop between consecutive stamps, and
  ``slowest_5pct_hop_us.<hop>``: each hop's median over the slowest 5% of orders end to end, the
  hop that makes the tail. Every figure counts an order once (each of its reports, the
  acknowledgement and the fill, carries its stamps). ``--hops-out FILE`` writes every order's stamps
  (JSON lines) for a closer look.
- ``replay_ticks_per_s``: the same ticks at full speed, pushed until the bridge has sent them all;
  ``lost`` = ticks pushed but never sent, plus ticks sent but not counted in by the collector.

The whole measurement is repeated ``--runs`` times (3), each on a fresh stack, and every figure in
bench/results/e2e.json is the median of the runs, with ``<name>.min`` / ``<name>.max`` beside it
(the run-to-run spread) and the machine's 1-minute load average at the start and end of each run
(``loadavg_1m.*``), so a reader can tell a regression from noise on a shared machine. The hop table
(p50 and p99 per hop, median and range over the runs) is printed at the end.

- ``machine_wake_us_p50`` / ``_p99``: the machine's own floor, measured before each run. One
  process writes its clock to another over a socket pair once per ``--timer-ms``, and the other
  reads it once woken: the one-way time of a process woken after a timer period of idleness, as
  every process on the path is woken for every push. ``machine_wake_hot_us_p50`` is the same at
  one message every 0.5 ms. Every hop between processes pays at least one such wake-up, so VMs
  whose figures differ by 2x in the hops can be compared by this one.
- ``machine_stall_pct`` (and ``_cpu<N>``, ``machine_stall_max_us``): the time a busy CPU lost, measured
  before each run with every CPU busy at once for 2 s (``kairos.stack.cpu_latency.stall_probe``): on a
  VM, the host running something else where a vCPU was. A figure of the host beside the wake-up;
  it is not the p99's cause (docs/benchmarks.md, eleventh session).
- ``machine_cpu_latency_us``: the CPUs' wake-up latency bound the kernel applied while it ran
  (PM QoS; 2e9 = none, the host as it is). ``make bench-held`` runs this benchmark under
  ``python -m kairos.stack.cpu_latency --us 0 --`` into e2e-held.json (ADR 0117).
- ``inference_keep_warm_ms``: the inference server's ``--keep-warm`` interval, as ``kairos up``
  runs it (5 ms since ADR 0121; ``--keep-warm 0`` measures the stack without the rehearsal).
- ``inference_idle_spin``: 1 when the inference server ran with ``--idle-spin`` (``kairos up
  --idle-spin``, ADR 0123: a SCHED_IDLE thread keeps its CPU awake), else 0.
- ``cpu_affinity``: the services' CPUs (``--cpu-affinity``, as ``kairos up``'s, by default its
  layout of ADR 0122: the inference server alone on the last CPU, the rest on the others; the
  harness runs on those of ``*``), or ``any`` (``--cpu-affinity none``).
- The harness watches only the execution reports, which carry the stamps: no NATS observer and no
  position polling on the cores it measures.

``--variant NAME=OPTIONS`` (repeatable) measures other configurations in the same command: each
round runs the base (this command's options) and every variant once, each on a fresh stack in a
process of its own, in an order that rotates from round to round, so all of them share the
host's drift over the rounds rather than each meeting its own hour. Each writes NAME.json beside
``--out`` and gets ``vs_base.<metric>`` (``PAIRED`` and each ``hop_us_p50``): its figure minus
the base's in the same round, the median over the rounds with .min / .max. A table of those is
printed at the end. A variant with no options (``NAME=``) runs the base's configuration again: a
control, whose ``vs_base.*`` is what the pairing gives two identical stacks, so the other variants'
differences can be read against it. ``make bench-e2e`` measures the stack as ``kairos up`` runs it
with its variants this way (``--keep-warm 0``, ``--cpu-affinity none``, ``--idle-spin``, and the
control ``e2e-control``).

Writes bench/results/e2e.json (flat metric names → numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import itertools
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from kairos.envconfig import parse_duration
from kairos.features import ModelCard
from kairos.stack import cpu_latency, observe, processes, replay, services
from kairos.types.v1 import types_pb2

MINUTE_MS = 60_000
# The stamped stages of an order, in path order (observe.stage_name of each HOP_STAGE_*).
STAGES = [observe.stage_name(s) for s in observe.HOPS if s != types_pb2.HOP_STAGE_BRIDGE_PUSH]
PY_HOP = {"collector_send", "execution_receive"}


# The probe's reader: woken by each message, it answers with how long ago (monotonic ns) it was sent.
_WAKE_READER = """
import socket, sys, time
s = socket.socket(fileno=int(sys.argv[1]))
while (d := s.recv(64)):
    s.send(str(time.perf_counter_ns() - int(d)).encode())
"""


def wake_probe(gap_s: float, n: int = 200) -> tuple[float, float]:
    """One-way µs (p50, p99) from a process's send to a reader process woken by it, n messages
    gap_s apart (perf_counter_ns is CLOCK_MONOTONIC, shared by the two processes)."""
    mine, theirs = socket.socketpair()
    reader = subprocess.Popen(
        [sys.executable, "-c", _WAKE_READER, str(theirs.fileno())], pass_fds=(theirs.fileno(),)
    )
    theirs.close()
    lat = []
    try:
        mine.settimeout(5.0)
        for _ in range(n):
            time.sleep(gap_s)
            mine.send(str(time.perf_counter_ns()).encode())
            lat.append(int(mine.recv(64)) / 1000)
    finally:
        mine.close()
        reader.wait(timeout=10)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def laps(data: replay.ReplayData, n: int) -> replay.ReplayData:
    """The tick file n times in a row, each lap shifted past the previous one's end (+1 minute)."""
    span = int(data.time_msc[-1] - data.time_msc[0]) + MINUTE_MS
    shift = (span // MINUTE_MS + 1) * MINUTE_MS  # whole minutes, so bars align lap after lap
    times = np.concatenate([data.time_msc + i * shift for i in range(n)])
    return replay.ReplayData(
        data.symbol, data.digits, times, np.tile(data.bid, n), np.tile(data.ask, n), data.source, data.kind
    )


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


MODEL_DIR = services.REPO / "python" / "tests" / "data" / "model"
# The bench's decision policy (ADR 0103): the card's policy with the smallest entry edge the rules
# accept, a position held exactly two bars and two bars of cooldown after it, so two of every five
# bars' signals place an order (~600 orders a run instead of ~16) and orders are at least two bars
# apart: trading on every bar made execution's journal (full sync) the queue the signals waited in.
FREQUENT_POLICY = {
    "entry_edge": 1e-12,
    "exit_edge": 0.0,
    "min_hold_bars": 2,
    "max_hold_bars": 2,
    "cooldown_bars": 2,
}


@functools.cache
def training_distribution(source: str, n_bars: int) -> dict[str, Any]:
    """The feature distribution of the fixture's training bars (its card's dataset: real GBPUSD M1,
    spread from the ask twin), as `kairos-train` puts in every card it exports: with it the server
    runs its drift monitor on each prediction, as it does for a real model (the fixture predates
    the field). Computed once per process, whatever the number of runs."""
    from kairos.features import SCHEMA, compute_features
    from kairos.features.drift import distribution
    from kairos.training.data import load_bars

    bars, _ = load_bars(str(services.SHARED_DATA / source))
    bars = bars.iloc[:n_bars]
    x = compute_features(bars[["time", "open", "high", "low", "close", "spread", "tick_volume"]])
    return distribution(x, SCHEMA.names)


def bench_model(run_dir: Path, policy: str) -> Path:
    """The model to serve: a copy of the checked-in one whose card (embedded in the ONNX file, and
    beside it) carries its training distribution, as a trained model's does, and, unless ``policy``
    is "card", a policy that trades often."""
    import onnx

    m = onnx.load(str(MODEL_DIR / "model.onnx"))
    card = ModelCard.from_onnx(m)
    card.feature_distribution = training_distribution(card.dataset["source"], int(card.dataset["bars"]))
    if policy != "card":
        assert card.policy is not None, "the model fixture's card carries a policy"
        card.policy = dataclasses.replace(card.policy, **FREQUENT_POLICY)
    card.embed(m)
    out = run_dir / f"model-{policy}" / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(out))
    card.save(out.with_name("model.card.json"))
    return out


def order_stamps(reports: list[Any]) -> dict[str, dict[str, int]]:
    """Each order's hop stamps (stage name -> µs), gathered over its reports (a later report carries
    the earlier stamps and its own)."""
    out: dict[str, dict[str, int]] = {}
    for rep in reports:
        cid = rep.order.client_order_id
        if not (rep.hops and cid):
            continue
        st = out.setdefault(cid, {})
        for h in rep.hops:
            if h.stage != types_pb2.HOP_STAGE_UNSPECIFIED:
                st.setdefault(observe.stage_name(h.stage), int(h.time_us))
    return out


def order_figures(orders: list[dict[str, int]]) -> dict[str, float]:
    """Per hop p50 and p99 over the orders; the Python hop end to end; and, over the slowest 5% of
    orders end to end, each hop's median (``slowest_5pct_hop_us.<hop>``): which hop makes the tail."""
    out: dict[str, float] = {}
    hops: dict[str, list[float]] = {}
    for st in orders:
        stamped = [s for s in STAGES if s in st]
        for a, b in itertools.pairwise(stamped):
            hops.setdefault(f"{a}_to_{b}", []).append(float(st[b] - st[a]))
    for key, values in hops.items():
        out[f"hop_us_p50.{key}"] = round(float(np.percentile(values, 50)), 1)
        out[f"hop_us_p99.{key}"] = round(float(np.percentile(values, 99)), 1)
    py_hop = [float(st["execution_receive"] - st["collector_send"]) for st in orders if st.keys() >= PY_HOP]
    if py_hop:
        out["python_hop_us_p50"] = round(float(np.percentile(py_hop, 50)), 1)
        out["python_hop_us_p99"] = round(float(np.percentile(py_hop, 99)), 1)
    full = [st for st in orders if all(s in st for s in STAGES)]
    if len(full) >= 20:
        full.sort(key=lambda st: st[STAGES[-1]] - st[STAGES[0]])
        tail = full[-max(1, len(full) // 20) :]
        for a, b in itertools.pairwise(STAGES):
            hop = [st[b] - st[a] for st in tail]
            out[f"slowest_5pct_hop_us.{a}_to_{b}"] = round(float(np.median(hop)), 1)
    return out


def run(
    rate: float,
    n_laps: int,
    policy: str = "frequent",
    push_batch: int = replay.PUSH_BATCH,
    hops_out: Path | None = None,
    run_no: int = 0,
    affinity: dict[str, str] | None = None,
    keep_warm: str = services.DEFAULT_KEEP_WARM,
    idle_spin: bool = False,
) -> dict[str, float]:
    """One measurement on a fresh stack: the flat metrics of one run."""
    run_dir = services.REPO / "build" / "bench-e2e"
    settings = services.StackSettings(
        ports=services.Ports.free(),
        run_dir=run_dir,
        model=str(bench_model(run_dir, policy)),
        threshold=1e-6,  # trade (nearly) every signal of a model without a policy; 0 is refused
        # The replay passes a bar in ~40 ms of wall time, so the guard against the same order twice
        # within 500 wall-clock ms (meant for a live feed) denied 86% of the orders before they reached
        # the venue, leaving ~80 acknowledged a run; off, as for the Strategy Tester (ADR 0095).
        execution_args=("--duplicate-intent-window-ms=0",),
        cpu_affinity=dict(affinity or {}),
        inference_keep_warm=keep_warm,
        inference_idle_spin=idle_spin,
    )
    settings.mlflow_uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    for stale in run_dir.glob("journal.db*"):
        stale.unlink()
    binaries = services.build_go_binaries(settings.bin_dir)
    data = replay.load(
        str(services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"), symbol="EURUSD", strict=True
    )
    stats = observe.PipelineStats()
    stop = threading.Event()

    def watch() -> None:
        # Only the execution reports, which carry each order's stamps: no NATS observer and no
        # position polling, whose Python work on every tick batch, bar, prediction and signal ran on
        # the same cores at the same moments as the path it measured (and used none of it).
        async def main() -> None:
            ev = asyncio.Event()
            tasks = [
                asyncio.create_task(
                    observe.watch_execution(
                        f"127.0.0.1:{settings.ports.execution_grpc}",
                        settings.token,
                        stats,
                        ev,
                        positions=False,
                    )
                ),
            ]
            while not stop.is_set():
                await asyncio.sleep(0.05)
            ev.set()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())

    metrics: dict[str, float] = {"loadavg_1m_start": loadavg()}
    with processes.Stack(run_dir) as stack:
        stack.start_all(services.specs(settings, binaries))
        services.wait_pipeline_ready(settings)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        paced = laps(data, n_laps)
        result = replay.replay(
            paced,
            collector=f"127.0.0.1:{settings.ports.collector_bridge}",
            speed=rate,
            batch=push_batch,
            bridge_key=settings.ensure_bridge_key(),
        )
        time.sleep(3.0)
        # What execution did with the signals of the paced part (order, hold, stale, ...).
        exec_url = f"http://127.0.0.1:{settings.ports.execution_metrics}/metrics"
        for labels, v in services.metric_samples(exec_url, "kairos_execution_signals_total").items():
            outcome = labels.partition('outcome="')[2].partition('"')[0]
            if 'symbol="EURUSD"' in labels and outcome:
                metrics[f"signals.{outcome}"] = v
        # Where each signal's own tick was when it came (in, caught_up, timed_out; ADR 0108).
        waits = services.metric_samples(exec_url, "kairos_execution_signal_quote_waits_total")
        for labels, v in waits.items():
            outcome = labels.partition('outcome="')[2].partition('"')[0]
            if outcome:
                metrics[f"signal_quote_waits.{outcome}"] = v
        # One sample per order: every report of an order (its acknowledgement, its fill) carries the
        # order's stamps, so the reports are taken once per client order id.
        stamps = order_stamps(stats.reports_seen)
        if hops_out is not None:
            with hops_out.open("a") as f:
                for cid, st in stamps.items():
                    f.write(json.dumps({"run": run_no, "order": cid, "stamps_us": st}) + "\n")
        metrics.update(order_figures(list(stamps.values())))
        acks = [
            float(st["venue_ack"] - st["bridge_send"])
            for st in stamps.values()
            if "venue_ack" in st and "bridge_send" in st
        ]
        metrics["offered_ticks_per_s"] = rate
        metrics["ticks_per_push"] = float(push_batch)
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
    metrics["loadavg_1m_end"] = loadavg()
    return metrics


def aggregate(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median of the runs under each metric's own name, and its spread as .min / .max.

    A hop missing from a run (no sample) is left out of that metric's median; ``runs`` says how many
    runs there were and ``<name>.runs`` how many had the metric when fewer did.
    """
    out: dict[str, float] = {"runs": float(len(runs))}
    names = sorted({k for r in runs for k in r})
    for name in names:
        values = [r[name] for r in runs if name in r and not np.isnan(r[name])]
        if not values:
            out[name] = float("nan")
            continue
        out[name] = round(float(np.median(values)), 1)
        if name in ("offered_ticks_per_s",):
            continue
        out[f"{name}.min"] = round(float(min(values)), 1)
        out[f"{name}.max"] = round(float(max(values)), 1)
        if len(values) < len(runs):
            out[f"{name}.runs"] = float(len(values))
    loads = [r[k] for r in runs for k in ("loadavg_1m_start", "loadavg_1m_end") if k in r]
    if loads:
        out["loadavg_1m.median"] = round(float(np.median(loads)), 2)
        out["loadavg_1m.min"] = round(float(min(loads)), 2)
        out["loadavg_1m.max"] = round(float(max(loads)), 2)
    return out


def hop_table(m: dict[str, float]) -> str:
    """The per-hop table: p50 and p99 (µs), median of the runs with the range beside it."""

    def cell(name: str, fmt: str = ",.0f") -> str:
        if name not in m or np.isnan(m[name]):
            return "-"
        lo, hi = m.get(f"{name}.min", m[name]), m.get(f"{name}.max", m[name])
        return f"{m[name]:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"

    hops = sorted({k.split(".", 1)[1] for k in m if k.startswith("hop_us_p50.") and k.count(".") == 1})
    order = [
        "bridge_send_to_collector_receive",
        "collector_receive_to_collector_send",
        "collector_send_to_inference_receive",
        "inference_receive_to_inference_done",
        "inference_done_to_inference_send",
        "inference_send_to_execution_receive",
        "execution_receive_to_risk_done",
        "risk_done_to_venue_send",
        "venue_send_to_venue_ack",
    ]
    hops = [h for h in order if h in hops] + [h for h in hops if h not in order]
    rows = [("hop", "p50 us median (min-max)", "p99 us median (min-max)", "slowest 5% of orders, median")]
    rows += [
        (
            h.replace("_to_", " -> "),
            cell(f"hop_us_p50.{h}"),
            cell(f"hop_us_p99.{h}"),
            cell(f"slowest_5pct_hop_us.{h}"),
        )
        for h in hops
    ]
    rows.append(
        (
            "collector_send -> execution_receive (Python hop)",
            cell("python_hop_us_p50"),
            cell("python_hop_us_p99"),
            "",
        )
    )
    rows.append(
        (
            "tick -> order ack (end to end)",
            cell("tick_to_order_ack_us_p50"),
            cell("tick_to_order_ack_us_p99"),
            "",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    runs = int(m.get("runs", 0))
    lines.append(
        f"{runs} runs; orders acked per run {cell('orders_acked')}; 1-minute load average "
        f"{m.get('loadavg_1m.median', float('nan')):.2f} "
        f"({m.get('loadavg_1m.min', float('nan')):.2f}-{m.get('loadavg_1m.max', float('nan')):.2f}) "
        f"on {m.get('machine_cores', 0):.0f} cores"
    )
    lines.append(
        f"a process woken after {m.get('timer_ms', 0):.0f} ms idle (the machine's floor per hop): "
        f"p50 {cell('machine_wake_us_p50')} us, p99 {cell('machine_wake_us_p99')} us; "
        f"woken every 0.5 ms: p50 {cell('machine_wake_hot_us_p50')} us"
    )
    lines.append(
        f"time a busy CPU lost (every CPU busy, 2 s): {cell('machine_stall_pct', '.1f')} % on the worst CPU, "
        f"longest gap {cell('machine_stall_max_us')} us"
    )
    lines.append(f"services' CPUs: {m.get('cpu_affinity', 'any')}")
    bound = m.get("machine_cpu_latency_us", -1.0)
    lines.append(
        "CPUs' wake-up latency: "
        + (
            "unknown (/dev/cpu_dma_latency unreadable)"
            if bound < 0
            else "no bound (the host as it is)"
            if bound >= cpu_latency.NO_BOUND_US
            else f"held at {bound:.0f} us (ADR 0117)"
        )
    )
    return "\n".join(lines)


def idle_spin_from_environment() -> bool:
    """KAIROS_INFERENCE_IDLE_SPIN as the inference server reads it (its config's own conversion)."""
    from kairos import envconfig
    from kairos.inference.config import ENV_PREFIX, InferenceConfig

    raw = os.environ.get(ENV_PREFIX + "IDLE_SPIN", "")
    (field,) = [f for f in dataclasses.fields(InferenceConfig) if f.name == "idle_spin"]
    return bool(envconfig.convert(field, raw, ENV_PREFIX))


# Each variant's figures against the base's of the same round (``vs_base.<metric>``): the paired
# difference, median and range over the rounds.
PAIRED = ("python_hop_us_p50", "python_hop_us_p99", "tick_to_order_ack_us_p50", "tick_to_order_ack_us_p99")
# Options of the whole command, not of a configuration.
COMMAND_OPTIONS = ("--out", "--runs", "--variant", "--hops-out", "--run-out")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="offered ticks per second for the latency run")
    ap.add_argument(
        "--timer-ms",
        type=float,
        default=20.0,
        help="the EA's timer period (InpTimerMs): the paced run pushes rate x timer ticks at a time",
    )
    ap.add_argument("--laps", type=int, default=5, help="replays of the tick file, shifted in time")
    ap.add_argument(
        "--policy",
        choices=("frequent", "card"),
        default="frequent",
        help="frequent: a card policy trading two bars in five (a meaningful p99); card: the model's own",
    )
    ap.add_argument(
        "--runs", type=int, default=3, help="measurements on a fresh stack each; figures are their median"
    )
    ap.add_argument(
        "--keep-warm",
        default=services.DEFAULT_KEEP_WARM,
        help="run inference with --keep-warm this interval (0: off); default: as `kairos up` runs it "
        f"({services.DEFAULT_KEEP_WARM}, ADR 0121)",
    )
    ap.add_argument(
        "--idle-spin",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="run inference with --idle-spin, as `kairos up --idle-spin` does (ADR 0123)",
    )
    ap.add_argument(
        "--cpu-affinity",
        action="append",
        default=[],
        metavar="SERVICE=CPUS",
        help="pin the stack's services as `kairos up --cpu-affinity` does (repeatable; none: no "
        "pinning); the harness (the EA's stand-in) runs on the CPUs of * (ADR 0117). Default: "
        "kairos up's layout (ADR 0122: inference alone on the last CPU, the rest on the others)",
    )
    ap.add_argument("--out", type=Path, default=services.REPO / "bench" / "results" / "e2e.json")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OPTIONS",
        help="also measure the stack with these options, which replace the same options of this "
        "command (e.g. e2e-unpinned='--cpu-affinity none'), into NAME.json beside --out. Each round "
        "runs every configuration once, the order rotating, so they share the host's drift; each "
        "variant's file gets vs_base.* (its figures minus this command's of the same round). NAME= "
        "alone runs this command's configuration again: a control, the pairing's noise floor. Repeatable",
    )
    ap.add_argument(
        "--hops-out",
        type=Path,
        default=None,
        help="also write every acknowledged order's hop stamps here (JSON lines: run, order, stamps_us)",
    )
    ap.add_argument("--run-out", type=Path, default=None, help=argparse.SUPPRESS)  # a round of --variant
    return ap


def option_groups(args: argparse.Namespace) -> list[list[str]]:
    """A parsed command's measurement options as argument groups, each led by its option."""
    groups = [
        ["--rate", repr(args.rate)],
        ["--timer-ms", repr(args.timer_ms)],
        ["--laps", str(args.laps)],
        ["--policy", args.policy],
        ["--keep-warm", args.keep_warm],
        ["--idle-spin" if args.idle_spin else "--no-idle-spin"],
    ]
    return groups + [["--cpu-affinity", item] for item in args.cpu_affinity]


def _option_name(token: str) -> str:
    name = token.split("=", 1)[0]
    return "--" + name[len("--no-") :] if name.startswith("--no-") else name


def variant_argv(base: list[list[str]], options: list[str]) -> list[str]:
    """The base's option groups, those of every option the variant names replaced by the variant's."""
    named = {_option_name(t) for t in options if t.startswith("--")}
    return [tok for group in base if _option_name(group[0]) not in named for tok in group] + options


def parse_variants(ap: argparse.ArgumentParser, args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """The base configuration (named by --out) and each --variant NAME=OPTIONS, as (name, argv), each
    checked by this parser before anything runs."""
    base = option_groups(args)
    out: list[tuple[str, list[str]]] = [(args.out.stem, variant_argv(base, []))]
    for item in args.variant:
        name, sep, raw = item.partition("=")
        if not sep or not name or not all(c.isalnum() or c in "-_" for c in name):
            ap.error(f"--variant {item!r}: expected NAME=OPTIONS, NAME of letters, digits, - and _")
        if name in {n for n, _ in out}:
            ap.error(f"--variant {item!r}: {name} is measured twice")
        options = shlex.split(raw)
        whole = [t for t in options if _option_name(t) in COMMAND_OPTIONS]
        if whole:
            ap.error(
                f"--variant {name}: {_option_name(whole[0])} belongs to the whole command, not to a variant"
            )
        argv = variant_argv(base, options)
        check = parser()
        check.error = _refuse  # type: ignore[method-assign]  # a message naming the variant, below
        try:
            resolve(check.parse_args(argv))
        except ValueError as e:
            ap.error(f"--variant {name} ({shlex.join(options)}): {e}")
        out.append((name, argv))
    return out


def _refuse(message: str) -> NoReturn:
    raise ValueError(message)


def round_order(n: int, round_no: int) -> list[int]:
    """The order of n configurations in round round_no (from 0): rotated, each first once in n rounds."""
    k = round_no % n
    return list(range(k, n)) + list(range(k))


def paired(base: list[dict[str, float]], variant: list[dict[str, float]]) -> dict[str, float]:
    """``vs_base.<metric>``: the variant's figure minus the base's of the same round, median over the
    rounds, with .min / .max; ``vs_base_rounds``: the rounds that had both."""
    names = list(PAIRED) + sorted({k for r in base for k in r if k.startswith("hop_us_p50.")})
    out: dict[str, float] = {}
    rounds = 0
    for name in names:
        diffs = [
            v[name] - b[name]
            for b, v in zip(base, variant, strict=True)
            if name in b and name in v and not (np.isnan(b[name]) or np.isnan(v[name]))
        ]
        if not diffs:
            continue
        rounds = max(rounds, len(diffs))
        out[f"vs_base.{name}"] = round(float(np.median(diffs)), 1)
        out[f"vs_base.{name}.min"] = round(float(min(diffs)), 1)
        out[f"vs_base.{name}.max"] = round(float(max(diffs)), 1)
    out["vs_base_rounds"] = float(rounds)
    return out


def paired_table(base: str, pairs: dict[str, dict[str, float]]) -> str:
    """Each variant minus the base in the same round (µs): the median and range over the rounds."""
    names = [
        *PAIRED,
        "hop_us_p50.collector_send_to_inference_receive",
        "hop_us_p50.inference_receive_to_inference_done",
        "hop_us_p50.inference_send_to_execution_receive",
    ]
    rows = [(f"minus {base}, same round (us)", *pairs)]
    for name in names:
        cells = []
        for m in pairs.values():
            k = f"vs_base.{name}"
            cells.append(f"{m[k]:+,.0f} ({m[k + '.min']:+,.0f} to {m[k + '.max']:+,.0f})" if k in m else "-")
        rows.append((name, *cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def resolve(args: argparse.Namespace) -> tuple[dict[str, str], str]:
    """The command's CPU layout and keep-warm interval (ValueError naming what is wrong)."""
    if args.runs < 1:
        raise ValueError("--runs must be at least 1")
    return services.resolve_cpu_affinity(args.cpu_affinity, workers=1), services.check_keep_warm(
        args.keep_warm
    )


def measure(args: argparse.Namespace, affinity: dict[str, str], keep: str, run_no: int) -> dict[str, float]:
    """One run on a fresh stack, the machine's floor measured just before it."""
    wake = wake_probe(args.timer_ms / 1000)
    hot = wake_probe(0.0005)
    stalls = cpu_latency.stall_probe()
    push = max(1, round(args.rate * args.timer_ms / 1000))
    m = run(args.rate, args.laps, args.policy, push, args.hops_out, run_no, affinity, keep, args.idle_spin)
    m["machine_wake_us_p50"], m["machine_wake_us_p99"] = wake
    m["machine_wake_hot_us_p50"] = hot[0]
    m.update(stalls)
    return m


def run_line(label: str, m: dict[str, float]) -> str:
    nan = float("nan")
    return (
        f"{label}: tick -> order ack p50 {m.get('tick_to_order_ack_us_p50', nan):,.0f} us, "
        f"p99 {m.get('tick_to_order_ack_us_p99', nan):,.0f} us, "
        f"Python hop p50 {m.get('python_hop_us_p50', nan):,.0f} us, "
        f"{m.get('orders_acked', 0):.0f} orders, load {m.get('loadavg_1m_start', nan):.2f}"
    )


def figures(
    runs: list[dict[str, float]], args: argparse.Namespace, affinity: dict[str, str], keep: str
) -> dict[str, Any]:
    """A result file's metrics: the runs' medians and spread, and how the stack ran."""
    metrics: dict[str, Any] = dict(aggregate(runs))
    metrics.update(cpu_latency.machine_figures())
    metrics["timer_ms"] = args.timer_ms
    metrics["inference_drift_monitor"] = 1.0
    metrics["cpu_affinity"] = " ".join(f"{k}={v}" for k, v in affinity.items()) or "any"
    keep = keep or os.environ.get("KAIROS_INFERENCE_KEEP_WARM", "")  # or the environment the server reads
    metrics["inference_keep_warm_ms"] = parse_duration(keep) * 1000 if keep else 0.0
    metrics["inference_idle_spin"] = 1.0 if args.idle_spin or idle_spin_from_environment() else 0.0
    if metrics.get("machine_wake_us_p50", 0) > 0 and "python_hop_us_p50" in metrics:
        # The Python hop in the machine's wake-ups: comparable across VMs whose floors differ.
        metrics["python_hop_vs_machine_wake"] = round(
            float(metrics["python_hop_us_p50"]) / float(metrics["machine_wake_us_p50"]), 2
        )
    return metrics


def write(path: Path, metrics: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def interleaved(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--variant: each round runs the base and every variant once, each in a process of its own (as
    separate commands would), in a rotating order; then each one's file, with the paired figures."""
    configs = parse_variants(ap, args)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in configs}
    me = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="kairos-e2e-") as tmp:
        for r in range(args.runs):
            for i in round_order(len(configs), r):
                name, argv = configs[i]
                out = Path(tmp) / f"{name}-{r}.json"
                subprocess.run([sys.executable, me, *argv, "--runs", "1", "--run-out", str(out)], check=True)
                runs[name].append(json.loads(out.read_text(encoding="utf-8")))
                print(run_line(f"round {r + 1}/{args.runs}, {name}", runs[name][-1]), flush=True)
    base = configs[0][0]
    pairs: dict[str, dict[str, float]] = {}
    for name, argv in configs:
        ns = ap.parse_args(argv)
        affinity, keep = resolve(ns)
        metrics = figures(runs[name], ns, affinity, keep)
        metrics["interleaved_configurations"] = float(len(configs))
        if name != base:
            pairs[name] = paired(runs[base], runs[name])
            metrics.update(pairs[name])
        write(args.out.parent / f"{name}.json", metrics)
        print(f"\n{name}: {shlex.join(argv)}\n{hop_table(metrics)}")
    if pairs:
        print("\n" + paired_table(base, pairs))


def main() -> None:
    ap = parser()
    args = ap.parse_args()
    try:
        affinity, keep = resolve(args)
    except ValueError as e:
        ap.error(str(e))
    if args.variant and (args.hops_out is not None or args.run_out is not None):
        ap.error("--hops-out is for one configuration: leave out --variant")
    # The steady state is measured: the replaying client answers history requests only between its
    # pushes, so the collector's warm-up (ADR 0105) would hold the first ticks of a paced run for up to
    # a push interval and put that in the p99. The warm-up has its own measurements (docs/benchmarks.md).
    os.environ.setdefault("KAIROS_COLLECTOR_INFERENCE_WARMUP_BARS", "0")
    if args.variant:
        interleaved(ap, args)
        return
    if "*" in affinity:  # before any thread starts, so the bridge's threads inherit it
        os.sched_setaffinity(0, services.parse_cpus(affinity["*"]))
    if args.hops_out is not None:
        args.hops_out.write_text("")
    if args.run_out is not None:  # a round of --variant: this run's own figures, for the parent
        write(args.run_out, measure(args, affinity, keep, 1))
        return
    runs = []
    for i in range(args.runs):
        runs.append(measure(args, affinity, keep, i + 1))
        print(run_line(f"run {i + 1}/{args.runs}", runs[-1]), flush=True)
    metrics = figures(runs, args, affinity, keep)
    write(args.out, metrics)
    print(hop_table(metrics))


if __name__ == "__main__":
    main()
