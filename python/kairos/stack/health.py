"""gRPC health checks (grpc.health.v1) against the local services."""

from __future__ import annotations

import enum

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]


class HealthState(enum.Enum):
    SERVING = "SERVING"
    NOT_SERVING = "NOT_SERVING"
    UNKNOWN = "UNKNOWN"
    UNREACHABLE = "UNREACHABLE"


def check_health(addr: str, service: str = "", timeout_s: float = 1.0) -> HealthState:
    """One Check call; UNREACHABLE when nothing answers within timeout_s."""
    with grpc.insecure_channel(addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError:
            return HealthState.UNREACHABLE
    if resp.status == health_pb2.HealthCheckResponse.SERVING:
        return HealthState.SERVING
    if resp.status == health_pb2.HealthCheckResponse.NOT_SERVING:
        return HealthState.NOT_SERVING
    return HealthState.UNKNOWN
