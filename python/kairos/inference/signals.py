"""Signals on NATS: every prediction becomes a ``kairos.inference.v1.Signal`` on ``kairos.signal.<symbol>``.

Publishing never blocks a stream: predictions are queued (bounded) and one task hands them to nats-py,
which buffers and flushes on its own. The task (re)connects in the background, so a NATS outage drops
and counts signals instead of stalling inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient

from kairos.inference.logs import get_logger
from kairos.inference.metrics import Metrics
from kairos.inference.v1 import inference_pb2 as pb
from kairos.types.v1 import types_pb2

DIRECTIONS = (pb.DIRECTION_DOWN, pb.DIRECTION_FLAT, pb.DIRECTION_UP)


def nats_credentials(path: str) -> dict[str, str]:
    """``user``/``password`` keyword arguments for ``nats.connect`` from a credentials file (one line
    ``user:password``, ADR 0064); none for an empty path. Errors name the file, never its content."""
    if not path:
        return {}
    line = Path(path).read_text().split("\n", 1)[0].strip()
    user, sep, password = line.partition(":")
    if not sep or not user or not password:
        raise ValueError(f'NATS credentials {path}: want one line "user:password"')
    return {"user": user, "password": password}


def signal_from(
    pred: pb.Prediction,
    bid: float,
    ask: float,
    policy: pb.DecisionPolicy | None = None,
    realised_vol: float = 0.0,
) -> pb.Signal:
    """Direction = argmax of [p_down, p_flat, p_up]; strength = p_up - p_down (docs/interfaces); the
    model's decision policy and the bar's realised volatility ride along for execution (ADR 0081)."""
    out = list(pred.outputs)
    best = max(range(len(out)), key=out.__getitem__) if out else 1
    strength = out[2] - out[0] if len(out) == 3 else 0.0
    return pb.Signal(
        symbol=pred.symbol,
        time_msc=pred.time_msc,
        direction=DIRECTIONS[best] if best < 3 else pb.DIRECTION_UNSPECIFIED,
        strength=strength,
        model_name=pred.model_name,
        model_version=pred.model_version,
        outputs=out,
        hops=pred.hops,
        bid=bid,
        ask=ask,
        realised_vol=realised_vol,
        policy=policy,
    )


class SignalPublisher:
    """Owns the NATS connection and the queue of signals to publish."""

    def __init__(
        self, url: str, subject_prefix: str, metrics: Metrics, queue_size: int, creds_file: str = ""
    ) -> None:
        self.url = url
        # Read once at start-up: a bad file stops the server instead of retrying forever.
        self.creds = nats_credentials(creds_file)
        self.prefix = subject_prefix
        self.metrics = metrics
        self.queue: asyncio.Queue[pb.Signal] = asyncio.Queue(maxsize=queue_size)
        self.nc: NatsClient | None = None
        self.log = get_logger(nats=url)

    def offer(self, sig: pb.Signal) -> None:
        try:
            self.queue.put_nowait(sig)
        except asyncio.QueueFull:
            self.metrics.signals_dropped.labels("queue_full").inc()

    async def _connect(self) -> NatsClient:
        delay = 0.2
        while True:
            try:
                nc = await nats.connect(
                    self.url,
                    **self.creds,
                    name="kairos-inference",
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                )
                self.log.info("nats connected")
                return nc
            except Exception as e:  # nats-py raises several error types for an unreachable server
                self.log.warning("nats connect failed; retrying", error=str(e) or type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def run(self) -> None:
        """Connect, then publish forever; cancel to stop (``close`` flushes what is left)."""
        self.nc = await self._connect()
        nc = self.nc
        while True:
            sig = await self.queue.get()
            # Stamp the hop as the signal leaves the server.
            sig.hops.append(
                types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_INFERENCE_SEND, time_us=time.time_ns() // 1000)
            )
            try:
                await nc.publish(f"{self.prefix}.{sig.symbol}", sig.SerializeToString())
                self.metrics.signals_published.inc()
            except Exception as e:
                self.metrics.signals_dropped.labels("nats_error").inc()
                self.log.warning("signal publish failed", error=str(e) or type(e).__name__, symbol=sig.symbol)

    async def close(self) -> None:
        """Publish what is queued (bounded by a timeout), flush and close the connection."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            return
        with contextlib.suppress(Exception):
            while not self.queue.empty():
                sig = self.queue.get_nowait()
                await nc.publish(f"{self.prefix}.{sig.symbol}", sig.SerializeToString())
                self.metrics.signals_published.inc()
            await asyncio.wait_for(nc.flush(), timeout=2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout=2)
