"""``kairos-record``: keeps every tick batch and closed bar the collector publishes as Parquet (ADR 0084).

Two ways in, one writer:

- **core NATS** (default; the embedded server `kairos up` runs): plain subscriptions to
  ``kairos.md.>`` and ``kairos.bar.>``. What is published while the recorder is down is not recorded;
  ticks missing by their bridge sequence numbers are counted (``kairos_recorder_tick_sequence_gaps_total``).
- **JetStream** (``--jetstream``; compose, Kubernetes): durable pull consumers on the ``KAIROS_MD`` and
  ``KAIROS_BARS`` streams with explicit acks. A message is acknowledged only after the part file
  holding it has been renamed into place, so a recorder restart resumes with what was not written:
  no gap; a crash between write and ack re-delivers, and readers drop the exact duplicates.

Messages are buffered in memory and written every ``--flush-interval`` or ``--flush-rows`` rows,
whichever comes first, one part file per symbol, timeframe and UTC day (kairos.recording.store).
Retention keeps the last ``--retention-days`` days of each symbol and timeframe (counted from its newest
date partition, so a replay of old data is kept), checked once an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.recording import store
from kairos.recording.corenats import CoreSubscriber, NatsError

ENV_PREFIX = "KAIROS_RECORDER_"
TICK_SUBJECT = "kairos.md.>"
BAR_SUBJECT = "kairos.bar.>"
STREAMS = {TICK_SUBJECT: "KAIROS_MD", BAR_SUBJECT: "KAIROS_BARS"}
MAX_SYMBOLS = 4096
"""Symbols whose tick sequence is followed across writes (the collector's default --max-symbols); a
further symbol's ticks are written all the same, its gaps counted within each write only."""


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class RecorderConfig:
    """Flags, then KAIROS_RECORDER_* variables, then these defaults."""

    dir: str = _f(
        "", "Root of the recorded dataset; empty: $KAIROS_RECORD_DIR, else <project>/.kairos/recorded."
    )
    nats_url: str = _f("nats://127.0.0.1:4222", "NATS server(s), comma-separated.")
    nats_creds: str = _f(
        "", "File with one line user:password (identity observer, or recorder for JetStream)."
    )
    jetstream: bool = _f(
        False,
        "Consume the KAIROS_MD and KAIROS_BARS streams with durable consumers (no gap across restarts).",
    )
    durable: str = _f("kairos-recorder", "Durable consumer name prefix (JetStream).")
    ticks: bool = _f(True, "Record ticks (kairos.md.>); bars are always recorded.")
    flush_interval: float = _f(1.0, "Seconds between writes of the buffered rows.")
    flush_rows: int = _f(500_000, "Write as soon as this many rows are buffered.")
    retention_days: int = _f(
        90,
        "Keep this many UTC days of data per symbol and timeframe, counted back from its newest date "
        "partition (0 keeps everything).",
    )
    grpc_addr: str = _f(
        "127.0.0.1:7701", "gRPC health (grpc.health.v1, SERVING once subscribed) host:port; empty disables."
    )
    metrics_addr: str = _f("127.0.0.1:9701", "Prometheus /metrics address host:port; empty disables.")
    log_level: str = _f("info", "debug, info, warn or error.")

    @property
    def root(self) -> Path:
        return Path(self.dir) if self.dir else store.default_root()


def parse_args(argv: list[str] | None = None, env: dict[str, str] | None = None) -> RecorderConfig:
    env = dict(os.environ) if env is None else env
    p = argparse.ArgumentParser(
        prog="kairos-record",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in fields(RecorderConfig):
        var = ENV_PREFIX + f.name.upper()
        flag = "--" + f.name.replace("_", "-")
        raw = env.get(var)
        default: Any = f.default
        kind: Any = type(default)
        if raw is not None:
            default = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
        help_ = f"{f.metadata['help']} (env {var})"
        if kind is bool:
            p.add_argument(flag, default=default, action=argparse.BooleanOptionalAction, help=help_)
        else:
            p.add_argument(flag, default=default, type=kind, help=help_)
    ns = p.parse_args(argv)
    return RecorderConfig(**vars(ns))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ticks = Counter("kairos_recorder_ticks_total", "Ticks written to Parquet", registry=r)
        self.bars = Counter(
            "kairos_recorder_bars_total", "Bars written to Parquet", ["timeframe"], registry=r
        )
        self.messages = Counter(
            "kairos_recorder_messages_total", "NATS messages received", ["kind"], registry=r
        )
        self.files = Counter("kairos_recorder_files_written_total", "Part files written", registry=r)
        self.errors = Counter("kairos_recorder_errors_total", "Failures", ["kind"], registry=r)
        self.gaps = Counter(
            "kairos_recorder_tick_sequence_gaps_total", "Ticks missing by bridge sequence numbers", registry=r
        )
        self.pruned = Counter(
            "kairos_recorder_partitions_pruned_total", "Date partitions removed", registry=r
        )
        self.sequences_refused = Counter(
            "kairos_recorder_sequence_symbols_refused_total",
            f"Writes of a symbol's ticks whose sequence is not followed across writes ({MAX_SYMBOLS} "
            "symbols already are): a gap between two writes of it is not counted",
            registry=r,
        )
        self.buffered = Gauge("kairos_recorder_buffered_rows", "Rows waiting for the next write", registry=r)
        self.flush_seconds = Histogram(
            "kairos_recorder_flush_seconds",
            "Time to write one flush",
            registry=r,
            buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.last_write = Gauge(
            "kairos_recorder_last_write_timestamp_seconds", "Unix time of the last write", registry=r
        )


def ticks_table(batches: list[md.TickBatch]) -> pa.Table:
    """One table from TickBatches of one symbol, in arrival order; absent optional columns are 0."""
    n = [len(b.time_msc) for b in batches]
    total = sum(n)

    def col(name: str, dtype: Any) -> np.ndarray[Any, Any]:
        values = [getattr(b, name) for b in batches]
        if not any(len(v) for v in values):  # a column no batch carries (last, volume, flags)
            return np.zeros(total, dtype=dtype)
        return np.concatenate(
            [
                np.asarray(v, dtype=dtype) if len(v) == k else np.zeros(k, dtype=dtype)
                for v, k in zip(values, n, strict=True)
            ]
        )

    return pa.table(
        {
            "time_msc": col("time_msc", np.int64),
            "bid": col("bid", np.float64),
            "ask": col("ask", np.float64),
            "last": col("last", np.float64),
            "volume": col("volume", np.float64),
            "flags": col("flags", np.uint32),
            "sequence": col("sequence", np.uint64),
        },
        schema=store.TICK_SCHEMA,
    )


def bars_table(bars: list[md.Bar]) -> pa.Table:
    return pa.table(
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
        },
        schema=store.BAR_SCHEMA,
    )


class Buffer:
    """Raw payloads waiting to be written, decoded in the writer thread (the event loop only appends)."""

    def __init__(self) -> None:
        self.ticks: dict[str, list[bytes]] = defaultdict(list)  # subject -> payloads, in arrival order
        self.bars: list[tuple[str, bytes]] = []  # (timeframe token of the subject, payload)
        self.rows = 0
        self.acks: list[Any] = []  # JetStream messages received since the last write

    def swap(self) -> Buffer:
        out = Buffer()
        out.ticks, out.bars, out.rows, out.acks = self.ticks, self.bars, self.rows, self.acks
        self.ticks, self.bars, self.rows, self.acks = defaultdict(list), [], 0, []
        return out


class Writer:
    """Decodes a swapped buffer and writes it as part files; tracks per-symbol tick sequences."""

    def __init__(self, root: Path, metrics: Metrics) -> None:
        self.root = root
        self.metrics = metrics
        self.last_seq: dict[str, int] = {}  # at most max_symbols (the symbols are the publishers' choice)
        self.max_symbols = MAX_SYMBOLS

    def write(self, buf: Buffer) -> int:
        files = 0
        for sym, table in self._tick_tables(buf):
            self._gaps(sym, table.column("sequence").to_numpy())
            files += len(store.write_part(self.root, sym, store.TICK, table, "time_msc"))
            self.metrics.ticks.inc(table.num_rows)
        per_bar: dict[tuple[str, str], list[md.Bar]] = defaultdict(list)
        for tf, raw in buf.bars:
            bar = md.Bar.FromString(raw)
            per_bar[(bar.symbol, tf)].append(bar)
        for (sym, tf), bars in per_bar.items():
            files += len(store.write_part(self.root, sym, tf, bars_table(bars), "time"))
            self.metrics.bars.labels(tf).inc(len(bars))
        self.metrics.files.inc(files)
        return files

    @staticmethod
    def _tick_tables(buf: Buffer) -> list[tuple[str, pa.Table]]:
        """One table per symbol. Fast path: the payloads of one subject concatenated parse as one
        TickBatch (protobuf appends repeated fields when messages are concatenated), valid when every
        column is either complete or absent over the whole run; else message by message."""
        out: dict[str, list[pa.Table]] = defaultdict(list)
        for raws in buf.ticks.values():
            merged = md.TickBatch.FromString(b"".join(raws))
            n = len(merged.time_msc)
            cols = (merged.bid, merged.ask, merged.last, merged.volume, merged.flags, merged.sequence)
            if merged.symbol and n and all(len(c) in (0, n) for c in cols) and len(merged.bid) == n:
                # The symbol of the last payload names them all: one subject carries one symbol.
                out[merged.symbol].append(ticks_table([merged]))
                continue
            per: dict[str, list[md.TickBatch]] = defaultdict(list)
            for raw in raws:
                b = md.TickBatch.FromString(raw)
                if b.symbol and len(b.time_msc):
                    per[b.symbol].append(b)
            for sym, batches in per.items():
                out[sym].append(ticks_table(batches))
        return [(sym, pa.concat_tables(ts) if len(ts) > 1 else ts[0]) for sym, ts in out.items()]

    def _gaps(self, symbol: str, seq: np.ndarray[Any, Any]) -> None:
        seq = seq[seq > 0].astype(np.int64)
        if not len(seq):
            return
        prev = self.last_seq.get(symbol)
        if prev is not None and seq[0] > prev + 1:
            self.metrics.gaps.inc(int(seq[0] - prev - 1))
        d = np.diff(seq)
        missing = int((d[d > 1] - 1).sum())
        if missing:
            self.metrics.gaps.inc(missing)
        if prev is None and len(self.last_seq) >= self.max_symbols:
            self.metrics.sequences_refused.inc()
            return
        self.last_seq[symbol] = max(int(seq[-1]), prev or 0)


class Recorder:
    def __init__(self, cfg: RecorderConfig, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.root = cfg.root
        self.root.mkdir(parents=True, exist_ok=True)
        self.writer = Writer(self.root, self.metrics)
        self.buf = Buffer()
        self.log = structlog.get_logger().bind(component="recorder")
        self._stop = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._lost = asyncio.Event()
        self._last_prune = 0.0
        self._md_messages = self.metrics.messages.labels("md")
        self._bar_messages = self.metrics.messages.labels("bar")

    def stop(self) -> None:
        self._stop.set()

    def _add(self, subject: str, data: bytes) -> None:
        parts = subject.split(".")
        if parts[1] == "md":
            self.buf.ticks[subject].append(data)
            self.buf.rows += max(1, len(data) // 40)  # an estimate: ~40 bytes a tick encoded
            self._md_messages.inc()
        elif parts[1] == "bar" and len(parts) >= 4:
            self.buf.bars.append((parts[2], data))
            self.buf.rows += 1
            self._bar_messages.inc()
        if self.buf.rows >= self.cfg.flush_rows:
            self._flush_now.set()

    def _add_many(self, msgs: list[tuple[bytes, bytes]]) -> None:
        """The core subscriber's batch: ticks grouped by subject, counters moved once."""
        ticks = self.buf.ticks
        n_md = rows = 0
        for subject, data in msgs:
            if subject.startswith(b"kairos.md."):
                ticks[subject.decode()].append(data)
                rows += len(data) // 40 + 1
                n_md += 1
            else:
                self._add(subject.decode(), data)
        if n_md:
            self._md_messages.inc(n_md)
            self.buf.rows += rows
            if self.buf.rows >= self.cfg.flush_rows:
                self._flush_now.set()

    async def _flush(self) -> None:
        buf = self.buf.swap()
        self.metrics.buffered.set(0)
        if not buf.ticks and not buf.bars:
            return
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self.writer.write, buf)
        except Exception as e:
            self.metrics.errors.labels("write").inc()
            self.log.error("write_failed", error=str(e), ticks_msgs=len(buf.ticks), bars=len(buf.bars))
            if self.cfg.jetstream:
                # Unacknowledged, they would come back only after the ack wait, behind newer data:
                # stop instead; a restart gets everything unacknowledged again.
                raise
            return
        self.metrics.flush_seconds.observe(time.perf_counter() - started)
        self.metrics.last_write.set(time.time())
        failed, last_error = 0, ""
        for msg in buf.acks:
            try:
                await msg.ack()
            except Exception as e:
                failed += 1
                last_error = str(e)
        if failed:
            self.metrics.errors.labels("ack").inc(failed)
            self.log.warning("ack_failed", messages=failed, error=last_error)

    def _prune(self) -> None:
        if time.monotonic() - self._last_prune < 3600:
            return
        self._last_prune = time.monotonic()
        removed = store.prune(self.root, self.cfg.retention_days)
        if removed:
            self.metrics.pruned.inc(len(removed))
            self.log.info("retention", removed=[str(p) for p in removed], keep_days=self.cfg.retention_days)

    async def run(self, ready: asyncio.Event | None = None) -> None:
        import nats

        from kairos.stack.credentials import nats_connect_kwargs

        subjects = [BAR_SUBJECT] + ([TICK_SUBJECT] if self.cfg.ticks else [])
        tasks: list[asyncio.Task[None]] = []
        nc: Any = None
        core: CoreSubscriber | None = None
        try:
            if self.cfg.jetstream:
                nc = await nats.connect(
                    servers=self.cfg.nats_url.split(","),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    pending_size=256 * 1024 * 1024,
                    **nats_connect_kwargs(self.cfg.nats_creds),
                )
                tasks = [asyncio.create_task(self._pull(nc, s)) for s in subjects]
            else:
                creds = nats_connect_kwargs(self.cfg.nats_creds)
                core = CoreSubscriber(
                    self.cfg.nats_url, self._add_many, creds.get("user", ""), creds.get("password", "")
                )
                await core.connect(subjects)
                lost = core.closed
                lost.add_done_callback(lambda _: self._lost.set())
            self.log.info(
                "recording",
                root=str(self.root),
                subjects=subjects,
                jetstream=self.cfg.jetstream,
                retention_days=self.cfg.retention_days,
            )
            if ready is not None:
                ready.set()
            while not self._stop.is_set():
                if self._lost.is_set():
                    raise NatsError(f"the NATS connection to {self.cfg.nats_url} was lost")
                self._prune()
                with contextlib.suppress(TimeoutError):
                    waiters = [
                        asyncio.ensure_future(self._stop.wait()),
                        asyncio.ensure_future(self._flush_now.wait()),
                    ]
                    await asyncio.wait(
                        waiters, timeout=self.cfg.flush_interval, return_when=asyncio.FIRST_COMPLETED
                    )
                    for w in waiters:
                        w.cancel()
                self._flush_now.clear()
                self.metrics.buffered.set(self.buf.rows)
                await self._flush()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if core is not None:
                if not self._lost.is_set():
                    with contextlib.suppress(Exception):
                        await core.flush()  # everything the server sent before stop is in the buffer
                core.close()
            await self._flush()
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            self.log.info("stopped")

    async def _pull(self, nc: Any, subject: str) -> None:
        from nats.js import api
        from nats.js.errors import FetchTimeoutError

        js = nc.jetstream()
        stream = STREAMS[subject]
        durable = f"{self.cfg.durable}-{stream.lower()}"
        cfg = api.ConsumerConfig(
            durable_name=durable,
            # Explicit acks, every message: with ack-all, a message delivered to a recorder that died
            # before writing it would be acknowledged by its successor's first ack (a gap).
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=max(10.0, 10 * self.cfg.flush_interval),
            max_ack_pending=-1,
            deliver_policy=api.DeliverPolicy.ALL,
        )
        sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=cfg)
        while True:
            try:
                msgs = await sub.fetch(batch=2000, timeout=0.5)
            except (TimeoutError, FetchTimeoutError):
                continue
            for m in msgs:
                self._add(m.subject, m.data)
            self.buf.acks.extend(msgs)  # acknowledged once the part files holding them are in place


def configure_logs(level: str) -> None:
    import logging

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[{"warn": "WARNING"}.get(level, level).upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    configure_logs(cfg.log_level)
    metrics = Metrics()
    if cfg.metrics_addr:
        host, _, port = cfg.metrics_addr.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1", registry=metrics.registry)
    rec = Recorder(cfg, metrics)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, rec.stop)
        server = None
        ready = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []  # referenced until the run ends
        if cfg.grpc_addr:
            import grpc
            from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

            from kairos.grpcpeer import peer_limit_options

            server = grpc.aio.server(options=peer_limit_options())  # the inference server's defaults
            hs = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(hs, server)
            server.add_insecure_port(cfg.grpc_addr)
            await hs.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
            await server.start()

            async def serving() -> None:
                await ready.wait()
                await hs.set("", health_pb2.HealthCheckResponse.SERVING)

            tasks.append(loop.create_task(serving()))
        try:
            await rec.run(ready)
        finally:
            if server is not None:
                await server.stop(1.0)

    asyncio.run(go())


if __name__ == "__main__":
    main()
