"""A reference bridge server in Python: the protocol of proto/kairos/bridge/v1/bridge.proto, as the
collector and the execution service speak it, for tests and tools that need a real TCP peer.

One listener on 127.0.0.1, one connection at a time. Every connection opens with a Challenge; with a
``key`` a Hello must carry HMAC-SHA256(key, ...) over its nonce (``hello_proof``; the services do
the same, docs/adr/0015-bridge-authentication.md) or is refused with Error{UNAUTHENTICATED}, and
Welcome proves the key back. It answers Hello with Welcome (resume_after =
the highest sequence processed from that session and channel), drops duplicates by sequence and
counts them, acknowledges every sequenced frame with a heartbeat, sends heartbeats on its own and
records what it received. ``send_command`` pushes an OrderCommand down the current connection.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kairos.bridge.v1 import bridge_pb2
from kairos.marketdata.v1 import marketdata_pb2

MAX_FRAME_BYTES = 1 << 20


@dataclass
class ReceivedTicks:
    """Every tick received, columnar, in arrival order."""

    symbol: list[str] = field(default_factory=list)
    time_msc: list[int] = field(default_factory=list)
    bid: list[float] = field(default_factory=list)
    ask: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    volume: list[float] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)
    sequence: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.time_msc)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _now_us() -> int:
    return time.time_ns() // 1000


NONCE_BYTES = 32


def hello_proof(
    key: bytes,
    server: bool,
    server_nonce: bytes,
    client_nonce: bytes,
    session_id: int,
    channel: int,
    api_version: int,
) -> bytes:
    """The handshake proof: HMAC-SHA256(key, label 0x00 || server_nonce || client_nonce ||
    session_id (BE64) || channel (BE32) || api_version (BE32)); the label names the prover."""
    label = b"kairos-bridge-v1 server" if server else b"kairos-bridge-v1 client"
    msg = label + b"\0" + server_nonce + client_nonce + struct.pack(">QII", session_id, channel, api_version)
    return hmac.new(key, msg, hashlib.sha256).digest()


class BridgePeer:
    """A bridge server on 127.0.0.1 (port 0 picks a free port); use as a context manager."""

    def __init__(
        self,
        *,
        port: int = 0,
        heartbeat_ms: int = 1000,
        ack: bool = True,
        server_version: str = "kairos-bridge-peer 0.1",
        key: str = "",
    ) -> None:
        self.key = key.strip().encode()
        self._nonce = b""
        self.auth_failures = 0
        self.heartbeat_ms = heartbeat_ms
        self.ack = ack
        self.server_version = server_version
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._conn: socket.socket | None = None
        self._out_seq = 0
        self._processed: dict[tuple[int, int], int] = {}
        self._key = (0, 0)
        self._thread = threading.Thread(target=self._run, name="bridge-peer", daemon=True)
        self.ticks = ReceivedTicks()
        self.hellos: list[bridge_pb2.Hello] = []
        self.symbol_infos: list[marketdata_pb2.SymbolInfo] = []
        self.results: list[bridge_pb2.OrderResult] = []
        self.transactions: list[bridge_pb2.TradeTransaction] = []
        self.accounts: list[bridge_pb2.AccountSnapshot] = []
        self.positions: list[bridge_pb2.PositionSnapshot] = []
        self.errors: list[bridge_pb2.Error] = []
        self.history: list[bridge_pb2.HistoryData] = []
        self.checks: list[bridge_pb2.TerminalCheck] = []
        self.duplicates = 0
        self.malformed = 0
        self.connections = 0
        self.welcomed = 0
        self.tick_order_violations = 0
        self._last_tick_seq: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> BridgePeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._listener.close()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Polls predicate every millisecond until it holds or timeout seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.001)
        return predicate()

    def send_command(self, command: bridge_pb2.OrderCommand) -> bool:
        """Sends a sequenced OrderCommand on the current connection; False if there is none."""
        return self._send(order_command=command)

    def send_history_request(self, request: bridge_pb2.HistoryRequest) -> bool:
        """Sends a sequenced HistoryRequest (as the collector does); False if there is no connection."""
        return self._send(history_request=request)

    def send_tester_step(self, step: bridge_pb2.TesterStep) -> bool:
        """Sends a sequenced TesterStep (the collector's answer to a lockstep tick frame, ADR 0095)."""
        return self._send(tester_step=step)

    def send_tester_decision(self, decision: bridge_pb2.TesterDecision) -> bool:
        """Sends a sequenced TesterDecision (the execution service's, ADR 0095)."""
        return self._send(tester_decision=decision)

    def _send(self, **body: object) -> bool:
        with self._lock:
            conn = self._conn
            if conn is None:
                return False
            self._out_seq += 1
            frame = bridge_pb2.Frame(
                sequence=self._out_seq,
                ack=self._processed.get(self._key, 0),
                sent_time_us=_now_us(),
                **body,  # type: ignore[arg-type]
            )
        return self._write(conn, frame)

    def _write(self, conn: socket.socket, frame: bridge_pb2.Frame) -> bool:
        data = frame.SerializeToString()
        try:
            with self._write_lock:
                conn.sendall(_varint(len(data)) + data)
        except OSError:
            return False
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.02)
            self.connections += 1
            try:
                self._serve(conn)
            finally:
                with self._lock:
                    self._conn = None
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        last_hb = time.monotonic()
        peer_hb_us = 0
        with self._lock:
            self._out_seq = 0
        self._nonce = os.urandom(NONCE_BYTES)
        challenge = bridge_pb2.Frame(
            sent_time_us=_now_us(),
            challenge=bridge_pb2.Challenge(server_nonce=self._nonce, auth_required=bool(self.key)),
        )
        if not self._write(conn, challenge):
            return
        while not self._stop.is_set():
            try:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    return
                buf += chunk
            except TimeoutError:
                pass
            except OSError:
                return
            sequenced = False
            while True:
                size, shift, i = 0, 0, 0
                while i < len(buf) and i < 10:
                    b = buf[i]
                    size |= (b & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not b & 0x80:
                        break
                else:
                    if len(buf) >= 10:
                        self.malformed += 1
                        return
                    break
                if size > MAX_FRAME_BYTES:
                    self.malformed += 1
                    return
                if len(buf) < i + size:
                    break
                frame = bridge_pb2.Frame()
                try:
                    frame.ParseFromString(bytes(buf[i : i + size]))
                except Exception:
                    self.malformed += 1
                    return
                del buf[: i + size]
                sequenced |= frame.sequence != 0
                if frame.WhichOneof("body") == "heartbeat":
                    peer_hb_us = frame.heartbeat.time_us
                if not self._handle(conn, frame):
                    return
            now = time.monotonic()
            if (sequenced and self.ack) or now - last_hb >= self.heartbeat_ms / 1000:
                last_hb = now
                with self._lock:
                    ack = self._processed.get(self._key, 0) if self.ack else 0
                hb = bridge_pb2.Frame(
                    ack=ack,
                    sent_time_us=_now_us(),
                    heartbeat=bridge_pb2.Heartbeat(time_us=_now_us(), echo_time_us=peer_hb_us),
                )
                if not self._write(conn, hb):
                    return

    def _handle(self, conn: socket.socket, frame: bridge_pb2.Frame) -> bool:
        kind = frame.WhichOneof("body")
        if kind == "hello":
            h = frame.hello
            fields = (h.client_nonce, h.session_id, int(h.channel), h.api_version)
            server_proof = b""
            if self.key:
                want = hello_proof(self.key, False, self._nonce, *fields)
                if len(h.client_nonce) != NONCE_BYTES or not hmac.compare_digest(want, h.auth_proof):
                    self.auth_failures += 1
                    refusal = bridge_pb2.Error(
                        code=bridge_pb2.ERROR_CODE_UNAUTHENTICATED, message="no valid bridge key proof"
                    )
                    self._write(conn, bridge_pb2.Frame(sent_time_us=_now_us(), error=refusal))
                    return False
                server_proof = hello_proof(self.key, True, self._nonce, *fields)
            with self._lock:
                self.hellos.append(frame.hello)
                self._key = (frame.hello.session_id, int(frame.hello.channel))
                resume = self._processed.get(self._key, 0)
            welcome = bridge_pb2.Frame(
                sent_time_us=_now_us(),
                welcome=bridge_pb2.Welcome(
                    server_version=self.server_version,
                    resume_after=resume,
                    heartbeat_interval_ms=self.heartbeat_ms,
                    server_proof=server_proof,
                ),
            )
            ok = self._write(conn, welcome)
            with self._lock:
                self._conn = conn
                self.welcomed += 1
            return ok
        with self._lock:
            if frame.sequence:
                if frame.sequence <= self._processed.get(self._key, 0):
                    self.duplicates += 1
                    return True
                self._processed[self._key] = frame.sequence
            if kind == "ticks":
                self._add_ticks(frame.ticks)
            elif kind == "symbol_info":
                self.symbol_infos.append(frame.symbol_info)
            elif kind == "order_result":
                self.results.append(frame.order_result)
            elif kind == "trade_transaction":
                self.transactions.append(frame.trade_transaction)
            elif kind == "account":
                self.accounts.append(frame.account)
            elif kind == "positions":
                self.positions.append(frame.positions)
            elif kind == "error":
                self.errors.append(frame.error)
            elif kind == "history_data":
                self.history.append(frame.history_data)
            elif kind == "terminal_check":
                self.checks.append(frame.terminal_check)
        return True

    def _add_ticks(self, b: marketdata_pb2.TickBatch) -> None:
        n = len(b.time_msc)
        t = self.ticks
        last_seq = self._last_tick_seq.get(b.symbol, 0)
        for s in b.sequence:
            if s != last_seq + 1:
                self.tick_order_violations += 1
            last_seq = s
        self._last_tick_seq[b.symbol] = last_seq
        t.symbol.extend([b.symbol] * n)
        t.time_msc.extend(b.time_msc)
        t.bid.extend(b.bid)
        t.ask.extend(b.ask)
        t.last.extend(b.last if len(b.last) else [0.0] * n)
        t.volume.extend(b.volume if len(b.volume) else [0.0] * n)
        t.flags.extend(b.flags)
        t.sequence.extend(b.sequence)
