"""A subscription fence for nats-py: ``subscriptions_in`` returns once the server holds every SUB the
client queued before the call, so a message published after it (on any connection) is delivered.

``await nc.subscribe(...); await nc.flush()`` is not that fence with nats-py (2.16.0, and every
version since 2022): ``subscribe`` appends ``SUB`` to the client's pending buffer for the flusher
task, which writes it one loop turn later, while ``flush`` writes its ``PING`` straight to the
socket. The server therefore reads ``PING`` before ``SUB`` (every time: nats-server -V traces show
``PING``, ``SUB``), answers ``PONG``, and a publish made on another connection as soon as that
``PONG`` arrives can be routed before the subscriber's read loop has read the ``SUB``: the server
counts it in and delivers it to nobody. Seen in 1 to 3% of tries on a loaded machine
(docs/operations.md, "NATS: subscribe, then flush"). nats.go is not affected (``SUB`` and ``PING``
share one buffer).
"""

from __future__ import annotations

import asyncio
from typing import Any


async def subscriptions_in(nc: Any, timeout: float = 5.0) -> None:
    """Wait (at most ``timeout`` seconds) until nats-py's flusher has put everything queued so far
    (the ``SUB``s) on the socket, then PING/PONG: the ``PONG`` now comes after the server took them.
    TimeoutError (or nats-py's FlushTimeoutError) when that does not happen in time."""
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
