"""A fence for nats-py connections: ``fence`` returns once the server has read every command the client
queued before the call (``SUB``, ``PUB``, ``UNSUB``), so a subscription is in before anyone publishes.

``await nc.subscribe(...); await nc.flush()`` is not that fence with nats-py (2.16.0; flush's
``PING`` has bypassed the pending buffer since 2016, nats-io/nats.py e732136): ``subscribe`` (and
``publish``) append to the client's pending buffer, which the flusher task writes one loop turn
later, while ``flush`` writes its ``PING`` straight to the socket. The server therefore reads
``PING`` before ``SUB`` (every time: nats-server -V traces ``PING``, ``SUB``), answers ``PONG``,
and a message published on another connection as soon as that ``PONG`` arrives can be routed
before the subscriber's read loop has read the ``SUB``: the server counts it in and delivers it to
nobody. 2 to 5 in 60 tries on a loaded 2-core machine (docs/operations.md, "NATS: subscribe, then
fence"). nats.go is not affected: its ``SUB`` and ``PING`` share one buffer.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def fence(nc: Any, timeout: float = 5.0) -> None:
    """Wait (at most ``timeout`` seconds) until nats-py's flusher has put everything queued so far on
    the socket, then PING/PONG: the ``PONG`` now comes after the server read it all. TimeoutError (or
    nats-py's FlushTimeoutError) when that does not happen in time (e.g. while reconnecting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    turns = 0
    # The flusher empties the buffer (pending_data_size back to 0) when it writes it to the socket.
    while nc.pending_data_size > 0:
        if loop.time() >= deadline:
            raise TimeoutError(f"nats: {nc.pending_data_size} queued bytes not written in {timeout}s")
        turns += 1
        await asyncio.sleep(0 if turns < 100 else 0.001)  # one loop turn is normally enough
    await nc.flush(timeout=max(deadline - loop.time(), 0.001))
