"""No fault loses an acknowledged tick: the collector itself is killed with SIGKILL mid-replay.

The collector runs as deployed for durability: JetStream publishes (--nats-jetstream, so a bridge
frame is acknowledged only once its ticks are stored, ADR 0024) and a state file written every
100 ms (sessions, validation watermarks, open bars). Real ticks are replayed through the bridge
extension (the DLL's own code). The worst moment is chosen: the JetStream server dies first, so the
collector has validated ticks that are not stored and writes state files meanwhile; then the
collector is killed with SIGKILL, NATS comes back on its store, and a new collector process starts
on the same ports with the same state file. The bridge reconnects and resends what was not
acknowledged, and the replay ends with every tick acknowledged. The stream must then hold every
tick the bridge saw acknowledged, and none twice (the republished batches carry the same
Nats-Msg-Id).

Before the fix this test found, the state file kept the watermarks of ticks validated but never
stored; the next run dropped their resend as already seen and acknowledged it: 20 acknowledged
ticks (one frame) were lost. The open bars saved beside them had the same flaw (a resent tick was
counted again in the bar that was open): every stored bar's tick volume must equal its stored ticks.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.chaos import harness

from kairos.stack import processes, replay, services

pytestmark = pytest.mark.slow

SPEED = 2_500  # ticks/s: the 9,500 real ticks take ~4 s
BATCH = 20  # ticks per push, so the replay is many frames
KILL_AT = 3_000  # ticks pushed when the collector dies


@dataclass
class Outcome:
    result: replay.ReplayResult
    stored: harness.StoredTicks
    bars: dict[tuple[str, int, int], list[int]]
    pushed_at_kill: int
    restarted_log: Path
    seconds: float


def _collector(
    name: str, settings: services.StackSettings, binary: Path, servers: str, state: Path
) -> processes.ServiceSpec:
    """The collector as deployed for durability: JetStream and a state file written every 100 ms."""
    return harness.collector_spec(
        settings, binary, servers, f"--state-file={state}", "--state-interval=100ms", name=name
    )


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    root = tmp_path_factory.mktemp("collector-kill")
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=root / "run")
    key = settings.ensure_bridge_key()
    binaries = services.build_go_binaries(settings.bin_dir)
    data = replay.load(str(harness.TICKS), symbol="EURUSD", strict=True)
    state = root / "collector.state"
    with harness.Cluster(root, size=1) as nats, processes.Stack(settings.run_dir) as stack:
        harness.apply_streams(nats.urls, replicas=1)
        binary = binaries["kairos-collector"]
        first = stack.start(_collector("collector", settings, binary, nats.urls, state))
        stack.wait_ready(first)
        started = time.monotonic()

        run = harness.ReplayThread(data, f"127.0.0.1:{settings.ports.collector_bridge}", key, SPEED, BATCH)
        run.start()
        harness.wait_until(
            lambda: run.pushed() >= KILL_AT or not run.is_alive(), 30, f"{KILL_AT} ticks pushed"
        )
        assert run.is_alive(), "the replay ended before the fault"
        harness.wait_until(state.exists, 10, "the collector's state file")
        # NATS dies first, so frames are validated but never stored (and never acknowledged)
        # when the collector writes its state file and dies.
        nats.kill("n1")
        for _ in range(3):  # a few state files written while ticks wait for NATS
            written = state.stat().st_mtime_ns
            harness.wait_until(
                lambda w=written: state.stat().st_mtime_ns != w, 10, "a state file written while NATS is down"
            )
        first.process.kill()  # SIGKILL: no shutdown, no last state file, frames in flight
        first.process.wait(timeout=10)
        nats.restart("n1")
        pushed_at_kill = run.pushed()
        stack.services.remove(first)  # dead on purpose; raise_if_dead watches the new one

        second = stack.start(_collector("collector-restarted", settings, binary, nats.urls, state))
        stack.wait_ready(second)
        result = run.outcome(timeout=90)
        seconds = harness.elapsed(started)
        stack.raise_if_dead()
        stored = harness.read_ticks(nats.urls)
        bars = harness.read_bars(nats.urls)
        yield Outcome(result, stored, bars, pushed_at_kill, second.log_path, seconds)


def test_a_collector_killed_mid_replay_loses_no_acknowledged_tick(outcome: Outcome) -> None:
    acked = [("EURUSD", s) for s in range(1, outcome.result.acked + 1)]

    lost = outcome.stored.lost(acked)

    harness.record(
        {
            "collector_kills": 1,
            "collector_kill_nats_kills": 1,  # the JetStream server died first, in the same scenario
            "collector_kill_acked_ticks_lost": lost,
            "collector_kill_ticks_duplicated": outcome.stored.duplicated,
            "collector_kill_ticks_acked": outcome.result.acked,
            "collector_kill_scenario_s": outcome.seconds,
        }
    )
    assert outcome.result.pushed == 9_500
    assert outcome.result.acked == outcome.result.pushed, "the replay did not finish acknowledged"
    assert lost == 0, f"{lost} acknowledged ticks are not in the stream"


def test_no_tick_is_stored_twice_after_the_restart(outcome: Outcome) -> None:
    assert outcome.stored.duplicated == 0
    assert outcome.stored.ticks == outcome.result.pushed


def test_every_stored_bar_counts_each_of_its_stored_ticks_once(outcome: Outcome) -> None:
    # The open bars saved in the state file are the committed ones (as the watermarks are), so the
    # ticks resent after the kill are counted once in the bar that was open, not twice.
    per_bar: Counter[tuple[str, int, int]] = Counter()
    for (symbol, _), t in outcome.stored.times.items():
        for period_s in sorted({p for (_, p, _) in outcome.bars}):
            per_bar[(symbol, period_s, t - t % (period_s * 1000))] += 1
    wrong = {k: (v, per_bar[k]) for k, v in outcome.bars.items() if any(n != per_bar[k] for n in v)}
    harness.record({"collector_kill_bars_miscounted": len(wrong)})
    assert len(outcome.bars) >= 20, "bars closed before and after the kill"
    assert not wrong, f"bars whose tick volume is not their stored ticks (stored, expected): {wrong}"


def test_the_kill_landed_mid_replay_and_the_bridge_resumed(outcome: Outcome) -> None:
    # The fault hit a live stream: ticks were still to come, and the new process took the session.
    assert outcome.pushed_at_kill < outcome.result.pushed
    log = outcome.restarted_log.read_text(errors="replace")
    assert "state restored" in log
    assert "bridge session started" in log
