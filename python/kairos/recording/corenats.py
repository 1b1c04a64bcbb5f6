"""A lean core-NATS subscriber for the recorder's hot path (ADR 0084).

nats-py costs ~15 µs of Python per message (parser, Msg object, asyncio queue, callback task); the
collector publishes one message per bridge frame (~20 ticks at full speed), so at 1,000,000 ticks/s
that client alone needs a whole core. This reader speaks the subset of the NATS client protocol the
recorder needs (CONNECT with user/password, SUB, PING/PONG, MSG) on an asyncio Protocol and hands
the (subject, payload) pairs of each read to a callback straight from the receive buffer: a few µs a
message.

It does not reconnect: a lost connection ends ``run()`` with an error and the recorder process exits
non-zero, to be restarted by its supervisor (``kairos up`` reports it; compose/Kubernetes restart it).
JetStream consumption uses nats-py (acknowledgements, flow control).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from urllib.parse import urlparse

MAX_PENDING = 256 * 1024 * 1024


class NatsError(ConnectionError):
    """The server refused us (-ERR) or the connection was lost."""


class _Proto(asyncio.Protocol):
    def __init__(self, on_msg: Callable[[list[tuple[bytes, bytes]]], None]) -> None:
        self.on_msg = on_msg
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.info: asyncio.Future[dict[str, object]] = asyncio.get_running_loop().create_future()
        self.pong: asyncio.Future[None] | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if not self.info.done():
            self.info.set_exception(NatsError(f"connection lost before INFO: {exc}"))
        if self.pong is not None and not self.pong.done():
            self.pong.set_exception(NatsError(self.error or f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, n = 0, len(buf)
        got: list[tuple[bytes, bytes]] = []
        while pos < n:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            if buf.startswith(b"MSG ", pos):
                parts = bytes(buf[pos + 4 : eol]).split()
                size = int(parts[-1])
                start, end = eol + 2, eol + 2 + size
                if end + 2 > n:
                    break  # the payload has not fully arrived
                got.append((parts[0], bytes(buf[start:end])))
                pos = end + 2
                continue
            line = bytes(buf[pos:eol])
            pos = eol + 2
            if line == b"PING":
                assert self.transport is not None
                self.transport.write(b"PONG\r\n")
            elif line == b"PONG":
                if self.pong is not None and not self.pong.done():
                    self.pong.set_result(None)
            elif line.startswith(b"INFO "):
                if not self.info.done():
                    self.info.set_result(json.loads(line[5:]))
            elif line.startswith(b"-ERR"):
                self.error = line.decode(errors="replace")
                if self.pong is not None and not self.pong.done():
                    self.pong.set_exception(NatsError(self.error))
        del buf[:pos]
        if got:
            self.on_msg(got)
        if len(buf) > MAX_PENDING:
            self.error = "receive buffer over 256 MiB"
            assert self.transport is not None
            self.transport.close()


class CoreSubscriber:
    """Connect, subscribe to subjects, deliver the messages of each socket read to
    ``on_msg([(subject, payload), ...])`` (subjects as bytes, in arrival order)."""

    def __init__(
        self,
        url: str,
        on_msg: Callable[[list[tuple[bytes, bytes]]], None],
        user: str = "",
        password: str = "",
    ) -> None:
        self.url = url.split(",")[0]
        self.on_msg = on_msg
        self.user, self.password = user, password
        self.proto: _Proto | None = None

    async def connect(self, subjects: list[str], timeout: float = 10.0) -> None:
        u = urlparse(self.url if "://" in self.url else f"nats://{self.url}")
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(lambda: _Proto(self.on_msg), u.hostname or "127.0.0.1", u.port or 4222),
            timeout,
        )
        self.proto = proto
        info = await asyncio.wait_for(proto.info, timeout)
        if info.get("tls_required"):
            raise NatsError("the server requires TLS: use --jetstream (nats-py) for TLS servers")
        opts: dict[str, object] = {
            "verbose": False,
            "pedantic": False,
            "name": "kairos-recorder",
            "protocol": 1,
            "lang": "python-kairos",
            "version": "1",
            "headers": False,
        }
        if self.user or u.username:
            opts["user"] = self.user or u.username
            opts["pass"] = self.password or u.password or ""
        assert proto.transport is not None
        out = b"CONNECT " + json.dumps(opts).encode() + b"\r\n"
        for sid, s in enumerate(subjects, 1):
            out += f"SUB {s} {sid}\r\n".encode()
        proto.pong = loop.create_future()
        proto.transport.write(out + b"PING\r\n")
        await asyncio.wait_for(proto.pong, timeout)  # the server answered after CONNECT and every SUB

    async def flush(self, timeout: float = 10.0) -> None:
        """Round trip: every message published before this call has been delivered to on_msg."""
        assert self.proto is not None and self.proto.transport is not None
        self.proto.pong = asyncio.get_running_loop().create_future()
        self.proto.transport.write(b"PING\r\n")
        await asyncio.wait_for(self.proto.pong, timeout)

    @property
    def closed(self) -> asyncio.Future[None]:
        assert self.proto is not None
        return self.proto.closed

    def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()
