"""No fault loses an acknowledged tick: a 3-node NATS JetStream cluster loses its KAIROS_MD stream
leader to kill -9 while real ticks are replayed through the bridge into the collector, which
publishes to JetStream (--nats-jetstream, every node's URL) and acknowledges a bridge frame only once
its ticks are stored (ADR 0024). Afterwards every tick the bridge saw acknowledged must be in the
stream, which the surviving two replicas still serve.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from tests.chaos import harness

from kairos.stack import processes, replay, services

pytestmark = pytest.mark.slow

SPEED = 2_500  # ticks/s: the 9,500 real ticks take ~4 s, the kill lands with most still to come
BATCH = 20  # ticks per push, so the replay is many frames
KILL_AT = 3_000  # ticks pushed when the leader dies


@dataclass
class Outcome:
    cluster: harness.Cluster
    result: replay.ReplayResult
    stored: harness.StoredTicks
    killed: str
    survivors_leader: str
    seconds: float


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    root = tmp_path_factory.mktemp("nats-cluster")
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=root / "run")
    key = settings.ensure_bridge_key()
    binaries = services.build_go_binaries(settings.bin_dir)
    data = replay.load(str(harness.TICKS), symbol="EURUSD", strict=True)
    with harness.Cluster(root) as cluster, processes.Stack(settings.run_dir) as stack:
        harness.apply_streams(cluster.urls, replicas=3)
        stack.start_all([harness.collector_spec(settings, binaries["kairos-collector"], cluster.urls)])
        leader = harness.stream_leader(cluster.urls, "KAIROS_MD")
        started = time.monotonic()

        run = harness.ReplayThread(data, f"127.0.0.1:{settings.ports.collector_bridge}", key, SPEED, BATCH)
        run.start()
        harness.wait_until(
            lambda: run.pushed() >= KILL_AT or not run.is_alive(), 30, f"{KILL_AT} ticks pushed"
        )
        assert run.is_alive(), "the replay ended before the fault"
        cluster.kill(leader)
        result = run.outcome(timeout=60)
        seconds = harness.elapsed(started)
        stack.raise_if_dead()

        survivors = ",".join(n.url for n in cluster.nodes if n.alive())
        new_leader = harness.stream_leader(survivors, "KAIROS_MD")
        stored = harness.read_ticks(survivors)
        yield Outcome(cluster, result, stored, leader, new_leader, seconds)


def test_a_node_killed_mid_replay_loses_no_acknowledged_tick(outcome: Outcome) -> None:
    acked = [("EURUSD", s) for s in range(1, outcome.result.acked + 1)]

    lost = outcome.stored.lost(acked)

    harness.record(
        {
            "cluster_acked_ticks_lost": lost,
            "cluster_ticks_duplicated": outcome.stored.duplicated,
            "cluster_node_kills": 1,
            "cluster_ticks_acked": outcome.result.acked,
            "cluster_scenario_s": outcome.seconds,
        }
    )
    assert outcome.result.pushed == 9_500
    assert outcome.result.acked == outcome.result.pushed, "the replay did not finish acknowledged"
    assert lost == 0, f"{lost} acknowledged ticks are not in the stream"
    assert outcome.survivors_leader != outcome.killed


def test_no_tick_is_stored_twice(outcome: Outcome) -> None:
    # The collector republishes a batch whose acknowledgement was lost with the same Nats-Msg-Id,
    # which the stream's duplicate window drops.
    assert outcome.stored.duplicated == 0
    assert outcome.stored.ticks == outcome.result.pushed


def test_the_count_catches_a_missing_tick(outcome: Outcome) -> None:
    # The check itself can fail: take one stored batch away and the same count reports its ticks lost.
    survivors = ",".join(n.url for n in outcome.cluster.nodes if n.alive())
    harness.delete_message(survivors, "KAIROS_MD", 10)
    acked = [("EURUSD", s) for s in range(1, outcome.result.acked + 1)]

    after = harness.read_ticks(survivors)

    assert after.messages == outcome.stored.messages - 1
    assert after.lost(acked) == outcome.stored.ticks - after.ticks > 0
