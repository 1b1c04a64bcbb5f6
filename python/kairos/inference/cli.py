"""``kairos-inference``'s entry point: grpc's server transport chosen before grpc loads, then the server.

grpcio reads ``GRPC_EXPERIMENTS`` once, when it loads. Its EventEngine listener (on by default in
grpcio 1.85) hands each message from the poller thread to an EventEngine worker before the
completion queue's poller and the asyncio loop see it; grpc's own iomgr listener reads the socket in
the thread that polls the completion queue, one hand-off fewer. On the e2e bench that took
collector_send → inference_receive from 219-239 to 170-198 µs p50 (ADR 0120). So the server runs with
``GRPC_EXPERIMENTS=-event_engine_listener`` unless the environment sets ``GRPC_EXPERIMENTS`` itself
(an empty value gives grpc's own defaults). Only the listener changes: the server's gRPC contract,
TLS and authentication are the same either way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

GRPC_EXPERIMENTS = "-event_engine_listener"


def grpc_defaults() -> None:
    """The server's grpc settings, unless the environment has its own; before grpc is imported."""
    os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``kairos-inference`` (and ``python -m kairos.inference.cli``)."""
    grpc_defaults()
    from kairos.inference import server  # imports grpc: after its settings

    server.main(argv)


if __name__ == "__main__":
    main()
