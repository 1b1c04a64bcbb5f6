"""Signals on NATS: every prediction becomes a ``kairos.inference.v1.Signal`` on ``kairos.signal.<symbol>``.

Publishing is on the hot path (the signal is what execution trades on), so it never waits for a task:
``offer`` serialises the signal and writes ``PUB`` straight to the socket of a lean core-NATS
connection (asyncio's transport sends at once when its buffer is empty), in the same loop turn as the
model run that made the prediction (ADR 0100). nats-py is not used here: its ``publish`` appends to a
buffer that a flusher task writes one loop turn later, which cost ~0.3 ms per signal under load.

The connection is kept by ``run`` in the background: while it is down (or before the first connect)
signals wait in a bounded backlog and go out on (re)connect; beyond ``queue_size`` they are dropped
and counted (``queue_full``), as are signals a backed-up socket cannot take, so a NATS outage never
stalls inference. The protocol subset is CONNECT (user/password), PUB, PING/PONG and -ERR; a server
that requires TLS is refused (the stack's NATS is loopback or a private network, ADR 0064).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import numpy as np

from kairos.inference.logs import get_logger
from kairos.inference.metrics import Metrics
from kairos.inference.pipeline import NATIVE
from kairos.inference.v1 import inference_pb2 as pb
from kairos.types.v1 import types_pb2

DIRECTIONS = (pb.DIRECTION_DOWN, pb.DIRECTION_FLAT, pb.DIRECTION_UP)
_DIRECTION_NUMBERS = [int(d) for d in DIRECTIONS]


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


@dataclasses.dataclass(frozen=True, slots=True)
class ModelRun:
    """One model run's predictions, as signals are made of them: per prediction its symbol, bar time,
    outputs, quote and realised volatility; shared by all, the model, the hops and its decision
    policy. ``outputs`` may be the model's (n, k) array; the C++ framing wants it so, and lists for
    the per-prediction fields."""

    symbols: Sequence[str]
    times_msc: Sequence[int]
    outputs: np.ndarray | Sequence[Sequence[float]]
    model_name: str
    model_version: str
    hops: Sequence[types_pb2.HopStamp]
    bids: Sequence[float]
    asks: Sequence[float]
    policy: pb.DecisionPolicy | None
    realised_vols: Sequence[float]

    def shared(self) -> pb.Signal:
        """What every signal of the run has: the model, the hops, the policy."""
        return pb.Signal(
            model_name=self.model_name, model_version=self.model_version, hops=self.hops, policy=self.policy
        )


def signal_for(
    symbol: str,
    time_msc: int,
    outputs: Sequence[float],
    model_name: str,
    model_version: str,
    hops: Sequence[types_pb2.HopStamp],
    bid: float,
    ask: float,
    policy: pb.DecisionPolicy | None = None,
    realised_vol: float = 0.0,
) -> pb.Signal:
    """Direction = argmax of [p_down, p_flat, p_up]; strength = p_up - p_down (docs/interfaces); the
    model's decision policy and the bar's realised volatility ride along for execution (ADR 0081)."""
    (sig,) = signals_for(
        ModelRun(
            [symbol],
            [time_msc],
            [outputs],
            model_name,
            model_version,
            hops,
            [bid],
            [ask],
            policy,
            [realised_vol],
        )
    )
    return sig


def signals_for(run: ModelRun) -> list[pb.Signal]:
    """``signal_for`` of each prediction of one model run. What they share (model, hops, policy) is
    built once and merged into each: keyword construction copied the hops and the policy per signal
    (2x the cost at 64 signals; ADR 0110)."""
    shared = run.shared()
    outputs = run.outputs.tolist() if isinstance(run.outputs, np.ndarray) else run.outputs
    sigs = []
    for k, symbol in enumerate(run.symbols):
        out = list(outputs[k])
        best = max(range(len(out)), key=out.__getitem__) if out else 1
        sig = pb.Signal(
            symbol=symbol,
            time_msc=run.times_msc[k],
            direction=DIRECTIONS[best] if best < 3 else pb.DIRECTION_UNSPECIFIED,
            strength=out[2] - out[0] if len(out) == 3 else 0.0,
            outputs=out,
            bid=run.bids[k],
            ask=run.asks[k],
            realised_vol=run.realised_vols[k],
        )
        sig.MergeFrom(shared)
        sigs.append(sig)
    return sigs


def signal_from(
    pred: pb.Prediction,
    bid: float,
    ask: float,
    policy: pb.DecisionPolicy | None = None,
    realised_vol: float = 0.0,
) -> pb.Signal:
    """The signal of a prediction (``signal_for`` on its fields)."""
    return signal_for(
        pred.symbol,
        pred.time_msc,
        pred.outputs,
        pred.model_name,
        pred.model_version,
        pred.hops,
        bid,
        ask,
        policy,
        realised_vol,
    )


def pub_frames(prefix: str, sigs: Sequence[pb.Signal], sent: types_pb2.HopStamp) -> bytes:
    """The NATS PUB frames of signals to ``<prefix>.<symbol>``, each stamped with the send hop."""
    parts: list[bytes] = []
    for sig in sigs:
        sig.hops.append(sent)
        data = sig.SerializeToString()
        parts += (b"PUB ", f"{prefix}.{sig.symbol} {len(data)}".encode(), b"\r\n", data, b"\r\n")
    return b"".join(parts)


def run_frames(prefix: str, sent: types_pb2.HopStamp, run: ModelRun) -> bytes:
    """``pub_frames(prefix, signals_for(run), sent)`` framed by the C++ extension from the bytes of what
    the signals share (ADR 0112): the same signals, without building 64 messages in Python (~5 µs
    each). Only with the extension built (``NATIVE``) and the outputs the model's array."""
    assert NATIVE is not None and isinstance(run.outputs, np.ndarray)
    frames: bytes = NATIVE.signal_frames(
        prefix.encode(),
        run.shared().SerializeToString(),
        pb.Signal(hops=(sent,)).SerializeToString(),
        _as_list(run.symbols),
        _as_list(run.times_msc),
        run.outputs,
        _as_list(run.bids),
        _as_list(run.asks),
        _as_list(run.realised_vols),
        _DIRECTION_NUMBERS,
    )
    return frames


def frames_for(prefix: str, sent: types_pb2.HopStamp, run: ModelRun) -> bytes:
    """A model run's PUB frames, as ``offer_run`` writes them when connected: framed in C++ with the
    extension built and the outputs the model's array, else from ``signals_for``."""
    if NATIVE is not None and isinstance(run.outputs, np.ndarray):
        return run_frames(prefix, sent, run)
    return pub_frames(prefix, signals_for(run), sent)


def _as_list(xs: Sequence[Any]) -> list[Any]:
    return xs if isinstance(xs, list) else list(xs)


class NatsError(ConnectionError):
    """The server refused us (-ERR) or the connection was lost."""


class _Conn(asyncio.Protocol):
    """One core-NATS connection: answers PING, resolves PONG waiters, records -ERR."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.info: asyncio.Future[dict[str, object]] = loop.create_future()
        self.pongs: deque[asyncio.Future[None]] = deque()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.error = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        why = self.error or f"connection lost: {exc or 'closed by the server'}"
        if not self.info.done():
            self.info.set_exception(NatsError(why))
        while self.pongs:
            f = self.pongs.popleft()
            if not f.done():
                f.set_exception(NatsError(why))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                break
            line = bytes(buf[:eol])
            del buf[: eol + 2]
            if line == b"PING":
                assert self.transport is not None
                self.transport.write(b"PONG\r\n")
            elif line == b"PONG":
                if self.pongs:
                    f = self.pongs.popleft()
                    if not f.done():
                        f.set_result(None)
            elif line.startswith(b"INFO "):
                if not self.info.done():
                    self.info.set_result(json.loads(line[5:]))
            elif line.startswith(b"-ERR"):
                self.error = line.decode(errors="replace")
        if len(buf) > 1 << 20:  # a publisher subscribes to nothing: no line is this long
            assert self.transport is not None
            self.transport.close()

    def ping(self) -> asyncio.Future[None]:
        f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pongs.append(f)
        assert self.transport is not None
        self.transport.write(b"PING\r\n")
        return f


class SignalPublisher:
    """Owns the NATS connection, the backlog while it is down, and publishing."""

    # Bytes the socket may hold unsent before a signal is dropped instead (a stalled server).
    MAX_UNSENT = 8 << 20

    def __init__(
        self, url: str, subject_prefix: str, metrics: Metrics, queue_size: int, creds_file: str = ""
    ) -> None:
        self.url = url
        self.urls = [u.strip() for u in url.split(",") if u.strip()]
        # Read once at start-up: a bad file stops the server instead of retrying forever.
        self.creds = nats_credentials(creds_file)
        self.prefix = subject_prefix
        self.metrics = metrics
        self.queue_size = queue_size
        self.backlog: deque[pb.Signal] = deque()
        self.nc: _Conn | None = None
        """The connection while it is up and past its handshake, else None."""
        self.log = get_logger(nats=url)

    def offer(self, sig: pb.Signal) -> None:
        """Publish now when connected (stamping HOP_STAGE_INFERENCE_SEND), else keep it in the backlog;
        never blocks, never raises."""
        nc = self.nc
        if nc is None or self.backlog:
            if len(self.backlog) >= self.queue_size:
                self.metrics.signals_dropped.labels("queue_full").inc()
            else:
                self.backlog.append(sig)
            return
        self._send(nc, (sig,))

    def offer_many(self, sigs: Sequence[pb.Signal]) -> None:
        """``offer`` of one model run's signals: published in one write to the socket (one system
        call instead of one per signal; ADR 0110)."""
        nc = self.nc
        if nc is None or self.backlog:
            for sig in sigs:
                self.offer(sig)
            return
        if sigs:
            self._send(nc, sigs)

    def offer_run(self, run: ModelRun) -> None:
        """One model run's signals. Connected with nothing in the backlog, the C++ extension built and
        the outputs the model's array: framed in C++ from the bytes of what they share, the same
        signals ``signals_for`` builds (ADR 0112); otherwise ``offer_many(signals_for(run))``."""
        if not run.symbols:
            return
        nc = self.nc
        if NATIVE is None or nc is None or self.backlog or not isinstance(run.outputs, np.ndarray):
            self.offer_many(signals_for(run))
            return
        self._write(nc, len(run.symbols), lambda sent: frames_for(self.prefix, sent, run))

    def _send(self, nc: _Conn, sigs: Sequence[pb.Signal]) -> None:
        self._write(nc, len(sigs), lambda sent: pub_frames(self.prefix, sigs, sent))

    def _write(self, nc: _Conn, n: int, frames: Any) -> None:
        """n signals' PUB frames (``frames(the send hop)``) in one write, or all n dropped and counted."""
        t = nc.transport
        if t is None or t.is_closing():
            self.metrics.signals_dropped.labels("nats_error").inc(n)
            return
        if t.get_write_buffer_size() > self.MAX_UNSENT:
            self.metrics.signals_dropped.labels("queue_full").inc(n)
            return
        # Stamp the hop as the signals leave the server (together, in one write).
        sent = types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_INFERENCE_SEND, time_us=time.time_ns() // 1000)
        t.write(frames(sent))
        self.metrics.signals_published.inc(n)

    def _drain_backlog(self, nc: _Conn) -> None:
        while self.backlog and self.nc is nc:
            self._send(nc, (self.backlog.popleft(),))

    async def _open(self, url: str, timeout: float = 2.0) -> _Conn:
        u = urlparse(url if "://" in url else f"nats://{url}")
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(_Conn, u.hostname or "127.0.0.1", u.port or 4222), timeout
        )
        try:
            info = await asyncio.wait_for(conn.info, timeout)
            if info.get("tls_required"):
                raise NatsError("the server requires TLS, which the signal publisher does not speak")
            opts: dict[str, object] = {
                "verbose": False,
                "pedantic": False,
                "name": "kairos-inference",
                "protocol": 1,
                "lang": "python-kairos",
                "version": "1",
                "headers": False,
            }
            user = self.creds.get("user") or u.username
            if user:
                opts["user"] = user
                opts["pass"] = self.creds.get("password") or u.password or ""
            assert conn.transport is not None
            conn.transport.write(b"CONNECT " + json.dumps(opts).encode() + b"\r\n")
            await asyncio.wait_for(conn.ping(), timeout)  # the server accepted CONNECT
            if conn.error:
                raise NatsError(conn.error)
        except BaseException:
            if conn.transport is not None:
                conn.transport.close()
            raise
        return conn

    async def _connect(self) -> _Conn:
        delay, i = 0.2, 0
        while True:
            url = self.urls[i % len(self.urls)]
            i += 1
            try:
                conn = await self._open(url)
                self.log.info("nats connected", url=url)
                return conn
            except (TimeoutError, OSError, NatsError, ValueError) as e:
                self.log.warning("nats connect failed; retrying", error=str(e) or type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def run(self) -> None:
        """Keep the connection (reconnecting with backoff); cancel to stop (``close`` flushes)."""
        while True:
            conn = await self._connect()
            self.nc = conn
            self._drain_backlog(conn)
            await asyncio.shield(conn.closed)
            self.nc = None
            self.log.warning("nats connection lost; reconnecting", error=conn.error or None)

    async def close(self) -> None:
        """Publish the backlog, wait (bounded) until the server has read everything, close."""
        nc = self.nc
        if nc is None or nc.transport is None or nc.transport.is_closing():
            return
        with contextlib.suppress(Exception):
            self._drain_backlog(nc)
            await asyncio.wait_for(nc.ping(), timeout=2)
        self.nc = None
        nc.transport.close()
