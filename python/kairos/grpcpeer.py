"""The peer bounds every Python gRPC server sets (the same as the Go services' go/auth/peerlimit):
streams per connection, keepalive enforcement, the handshake deadline and connections open at once."""

from __future__ import annotations

MAX_CONCURRENT_STREAMS = 256
KEEPALIVE_MIN_TIME_S = 10.0
HANDSHAKE_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 256


def peer_limit_options(
    max_concurrent_streams: int = MAX_CONCURRENT_STREAMS,
    keepalive_min_time_s: float = KEEPALIVE_MIN_TIME_S,
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
) -> list[tuple[str, int]]:
    """grpc-core server options: at most ``max_concurrent_streams`` streams per connection; pings
    more often than ``keepalive_min_time_s`` get the connection closed; a connection must finish TLS
    and the HTTP/2 preface within ``handshake_timeout_s`` (a slowloris is cut; grpc's default is
    120 s); at most ``max_connections`` are open, more are refused at accept."""
    return [
        ("grpc.max_concurrent_streams", max_concurrent_streams),
        ("grpc.http2.min_ping_interval_without_data_ms", int(keepalive_min_time_s * 1000)),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.server_handshake_timeout_ms", int(handshake_timeout_s * 1000)),
        ("grpc.max_allowed_incoming_connections", max_connections),
    ]
