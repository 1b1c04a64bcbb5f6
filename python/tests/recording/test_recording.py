"""Recording: the real collector process (embedded NATS), the real recorder process, a real replay of
the shared EURUSD ticks through the bridge library; the recorded Parquet rows must equal what the
collector published on NATS (captured by an independent subscriber), and training reads them."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.recording import store
from kairos.stack import processes, replay, services
from kairos.stack.credentials import nats_connect_kwargs
from kairos.stack.loopback import wait_for
from kairos.stack.natsfence import fence
from kairos.training.data import load_bars

pytestmark = pytest.mark.slow

TICKS = services.SHARED_DATA / "eurusd-ticks-2020-01-01.csv"


def _collector_spec(settings: services.StackSettings, binaries: dict[str, Path]) -> processes.ServiceSpec:
    spec = services.specs(settings, binaries)[0]
    argv = [a for a in spec.argv if not a.startswith("--inference-endpoints")]
    return dataclasses.replace(spec, argv=[*argv, "--inference-endpoints=none"])


def test_recorded_rows_equal_what_the_collector_published(tmp_path: Path) -> None:
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=tmp_path / "run")
    root = tmp_path / "recorded"
    binaries = services.build_go_binaries(settings.bin_dir)
    metrics_port = settings.ports.recorder_metrics
    published_ticks: list[bytes] = []
    published_bars: dict[str, list[bytes]] = {}
    with processes.Stack(settings.run_dir) as stack:
        # The recorder as `kairos up` starts it, ready (gRPC health SERVING) once subscribed.
        stack.start_all([_collector_spec(settings, binaries), services.recorder_spec(settings, root)])
        rec = stack.services[-1].process
        try:
            data = replay.load(str(TICKS), symbol="EURUSD", strict=True)

            async def capture_and_replay() -> replay.ReplayResult:
                import nats

                nc = await nats.connect(
                    settings.nats_url, **nats_connect_kwargs(settings.credentials().nats_creds("observer"))
                )

                async def on_md(msg: Any) -> None:
                    published_ticks.append(msg.data)

                async def on_bar(msg: Any) -> None:
                    published_bars.setdefault(msg.subject.split(".")[2], []).append(msg.data)

                await nc.subscribe("kairos.md.>", cb=on_md, pending_msgs_limit=1_000_000)
                await nc.subscribe("kairos.bar.>", cb=on_bar, pending_msgs_limit=1_000_000)
                await fence(nc)
                result = await asyncio.to_thread(
                    replay.replay,
                    data,
                    collector=f"127.0.0.1:{settings.ports.collector_bridge}",
                    bridge_key=settings.ensure_bridge_key(),
                )
                url = f"http://127.0.0.1:{settings.ports.collector_metrics}/metrics"
                accepted = sum(services.metric_samples(url, "kairos_collector_ticks_accepted_total").values())
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if sum(len(md.TickBatch.FromString(r).time_msc) for r in published_ticks) >= accepted:
                        break
                    await asyncio.sleep(0.1)
                # The collector closes the last bar once the symbol is idle (--bar-idle-close 2s).
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and len(published_bars.get("M1", [])) < 2:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(3.0)  # the idle closes of the last bars of every timeframe
                await nc.drain()
                return result

            result = asyncio.run(capture_and_replay())
            assert result.lost == 0 and result.pushed == 9500
            rurl = f"http://127.0.0.1:{metrics_port}/metrics"
            n_pub = sum(len(md.TickBatch.FromString(r).time_msc) for r in published_ticks)
            wait_for(
                lambda: sum(services.metric_samples(rurl, "kairos_recorder_ticks_total").values()) >= n_pub,
                30,
                "the recorder to write every published tick",
            )
        finally:
            rec.send_signal(signal.SIGTERM)
            assert rec.wait(timeout=30) == 0, (settings.run_dir / "recorder.log").read_text()

    # Ticks: every published tick, in order, every column.
    batches = [md.TickBatch.FromString(r) for r in published_ticks]
    assert sum(len(b.time_msc) for b in batches) == 9500
    got = store.read_ticks(root, "EURUSD")
    want_t = np.concatenate([np.asarray(b.time_msc, dtype=np.int64) for b in batches])
    want_bid = np.concatenate([np.asarray(b.bid) for b in batches])
    want_ask = np.concatenate([np.asarray(b.ask) for b in batches])
    want_seq = np.concatenate([np.asarray(b.sequence, dtype=np.uint64) for b in batches])
    order = np.lexsort((got["sequence"].to_numpy(), got["time_msc"].to_numpy()))
    worder = np.lexsort((want_seq, want_t))
    assert len(got) == len(want_t)
    np.testing.assert_array_equal(got["time_msc"].to_numpy()[order], want_t[worder])
    np.testing.assert_array_equal(got["bid"].to_numpy()[order], want_bid[worder])
    np.testing.assert_array_equal(got["ask"].to_numpy()[order], want_ask[worder])
    np.testing.assert_array_equal(got["sequence"].to_numpy()[order], want_seq[worder])
    # The replayed file's ticks are what was published (nothing lost on the way).
    np.testing.assert_array_equal(np.sort(want_t), np.sort(data.time_msc))

    # Bars: every published bar of every timeframe, every field.
    assert set(published_bars) >= {"M1", "M5", "M15", "H1"}
    for tf, raws in published_bars.items():
        bars = [md.Bar.FromString(r) for r in raws]
        rec_bars = store.read_bars(root, "EURUSD", tf)
        want = (
            pd.DataFrame(
                {
                    "time": [b.open_time_msc for b in bars],
                    "open": [b.open for b in bars],
                    "high": [b.high for b in bars],
                    "low": [b.low for b in bars],
                    "close": [b.close for b in bars],
                    "spread": [b.spread_mean for b in bars],
                    "tick_volume": [float(b.tick_volume) for b in bars],
                    "real_volume": [b.real_volume for b in bars],
                    "spread_points": [b.spread_points for b in bars],
                }
            )
            .sort_values("time")
            .reset_index(drop=True)
        )
        pd.testing.assert_frame_equal(rec_bars, want.astype(rec_bars.dtypes.to_dict()), check_exact=True)

    # Training reads the recording: recorded:ROOT:EURUSD:M1 gives the bars the importer builds from
    # the same ticks in the file (the shared bar rule), and recorded ticks import too.
    recorded, report = load_bars(f"recorded:{root}:EURUSD:M1")
    from_file, _ = load_bars(str(TICKS), timeframe="M1")
    common = from_file.merge(recorded, on="time", suffixes=("_f", "_r"))
    assert len(common) >= len(from_file) - 1 and report.bars == len(recorded)
    for c in ("open", "high", "low", "close", "tick_volume"):
        np.testing.assert_array_equal(common[f"{c}_f"], common[f"{c}_r"])
    np.testing.assert_allclose(common["spread_f"], common["spread_r"], rtol=1e-9, atol=1e-12)
    from_ticks, _ = load_bars(f"recorded:{root}:EURUSD:tick", timeframe="M1")
    pd.testing.assert_frame_equal(from_ticks, from_file)


def test_retention_keeps_the_last_days_of_data(tmp_path: Path) -> None:
    import pyarrow as pa

    now = time.time()
    day = 86_400_000
    t_now = int(now * 1000)
    table = pa.table(
        {
            "time": [t_now - 40 * day, t_now - 2 * day, t_now],
            "open": [1.0] * 3,
            "high": [1.0] * 3,
            "low": [1.0] * 3,
            "close": [1.0] * 3,
            "spread": [0.0] * 3,
            "tick_volume": [1.0] * 3,
            "real_volume": [0.0] * 3,
            "spread_points": pa.array([0] * 3, pa.int32()),
        },
        schema=store.BAR_SCHEMA,
    )
    files = store.write_part(tmp_path, "EURUSD", "M1", table, "time")
    assert len(files) == 3
    removed = store.prune(tmp_path, keep_days=30, now=now)
    assert len(removed) == 1 and removed[0].name == f"date={store.day_of(t_now - 40 * day)}"
    assert list(store.read_bars(tmp_path, "EURUSD", "M1")["time"]) == [t_now - 2 * day, t_now]
    assert store.prune(tmp_path, keep_days=0, now=now) == []
    # Counted from the newest data, not the clock: a year later nothing more goes.
    assert store.prune(tmp_path, keep_days=30, now=now + 365 * 86_400) == []
    os.environ.pop("KAIROS_RECORD_DIR", None)


@pytest.mark.parametrize("order", ["in_time", "a_late_message"])
def test_a_write_makes_one_part_per_day_with_every_row_in_arrival_order_within_it(
    tmp_path: Path, order: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kairos.features import to_epoch_ms

    bars, _ = load_bars(str(services.SHARED_DATA / "gbpusd-m1-bid-2012.csv"))
    t = to_epoch_ms(bars["time"])[:5000]  # real minutes over several UTC days
    if order == "a_late_message":  # the last 100 rows (of a later day) arrive before the rest
        t = np.concatenate([t[-100:], t[:-100]])
    table = pa.table(
        {"time_msc": t, "bid": np.arange(len(t), dtype=np.float64)},  # bid: the arrival number
    )
    files = store.write_part(tmp_path, "EURUSD", store.TICK, table, "time_msc")
    days = sorted({store.day_of(int(x)) for x in t})
    assert len(days) >= 3, days
    assert sorted(f.parent.name.removeprefix("date=") for f in files) == days
    back = pa.concat_tables([pq.read_table(f) for f in files])
    assert back.num_rows == len(t)
    for f in files:
        part = pq.read_table(f)
        arrival = part.column("bid").to_numpy()
        assert (np.diff(arrival) > 0).all(), "arrival order kept within a day"
        assert {store.day_of(int(x)) for x in part.column("time_msc").to_numpy()} == {
            f.parent.name.removeprefix("date=")
        }


def test_sequences_are_followed_for_at_most_max_symbols_and_every_tick_is_written_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kairos.recording import recorder

    monkeypatch.setattr(recorder, "MAX_SYMBOLS", 2, raising=False)
    metrics = recorder.Metrics()
    writer = recorder.Writer(tmp_path, metrics)
    t0 = 1_700_000_000_000

    def batch(symbol: str, seqs: list[int]) -> bytes:
        return md.TickBatch(
            symbol=symbol,
            time_msc=[t0 + s for s in seqs],
            bid=[1.0] * len(seqs),
            ask=[1.1] * len(seqs),
            sequence=seqs,
        ).SerializeToString()

    # Two writes; between them each symbol misses sequences 4 and 5. USDJPY comes third: its sequence
    # is not followed across writes (counted refused), its gap within a write still is (7).
    writes = [
        {"EURUSD": [1, 2, 3], "GBPUSD": [1, 2, 3], "USDJPY": [1, 2, 3]},
        {"EURUSD": [6, 7], "GBPUSD": [6, 7], "USDJPY": [6, 8]},
    ]
    for w in writes:
        buf = recorder.Buffer()
        for sym, seqs in w.items():
            buf.ticks[f"kairos.md.{sym}"].append(batch(sym, seqs))
        writer.write(buf)

    def value(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    assert sorted(writer.last_seq) == ["EURUSD", "GBPUSD"]
    assert value("kairos_recorder_sequence_symbols_refused_total") == 2
    assert value("kairos_recorder_tick_sequence_gaps_total") == 2 + 2 + 1
    assert value("kairos_recorder_ticks_total") == 15
    for sym in ("EURUSD", "GBPUSD", "USDJPY"):
        got = store.read_ticks(tmp_path, sym)["sequence"].tolist()
        assert got == writes[0][sym] + writes[1][sym], sym


def test_a_connection_to_the_health_server_that_never_sends_its_preface_is_cut_at_the_handshake_deadline(
    nats_url: str, tmp_path: Path
) -> None:
    import socket
    import subprocess
    import sys

    from kairos.grpcpeer import HANDSHAKE_TIMEOUT_S
    from kairos.stack.loopback import free_port

    grpc_port = free_port()
    with (tmp_path / "recorder.log").open("wb") as log:
        rec = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kairos.recording.recorder",
                f"--dir={tmp_path / 'recorded'}",
                f"--nats-url={nats_url}",
                f"--grpc-addr=127.0.0.1:{grpc_port}",
                "--metrics-addr=",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", grpc_port), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_for(listening, 30, "the recorder's gRPC health port")
        with socket.create_connection(("127.0.0.1", grpc_port), timeout=10) as slow:  # sends nothing
            t0 = time.monotonic()
            while slow.recv(4096):  # the server's SETTINGS, then its close (a 10 s silence raises)
                pass
            assert time.monotonic() - t0 < HANDSHAKE_TIMEOUT_S + 3
    finally:
        rec.send_signal(signal.SIGTERM)
        rec.wait(10)
