"""The bearer-token gate of the inference server (ADR 0064), the counterpart of go/auth/grpcauth.

Every InferenceService call needs ``authorization: Bearer <token>``, compared in constant time. gRPC
health (probes) and reflection (the schema is the public contract in proto/) stay open. With
``--open-reads-on-loopback`` the read-only GetModelStatus is served to loopback peers without the
token. An empty token refuses every gated call, so the server never runs open by accident.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

NO_TOKEN = (
    "the service has no token configured: every call is refused (set --token-file or KAIROS_INFERENCE_TOKEN)"
)
BAD_TOKEN = 'missing or wrong bearer token (metadata "authorization: Bearer <token>")'
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
READS = frozenset({"/kairos.inference.v1.InferenceService/GetModelStatus"})


def token_ok(metadata: Any, token: str) -> bool:
    """True when one ``authorization`` entry is ``Bearer <token>`` (constant-time comparison)."""
    if not token:
        return False
    want = token.encode()
    for key, value in metadata or ():
        if (
            key == "authorization"
            and isinstance(value, str)
            and value.startswith("Bearer ")
            and hmac.compare_digest(value[len("Bearer ") :].encode(), want)
        ):
            return True
    return False


def loopback_peer(peer: str) -> bool:
    """True for grpc peers like ``ipv4:127.0.0.1:5000`` or ``ipv6:[::1]:5000``."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _replace(handler: grpc.RpcMethodHandler, wrap: Callable[[Any], Any]) -> grpc.RpcMethodHandler:
    """The handler with its behaviour wrapped, of the same kind (unary/stream both ways)."""
    ser = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **ser)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **ser)


def _refuse(message: str) -> Callable[[Any], Any]:
    def wrap(_behaviour: Any) -> Any:
        async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        return refuse

    return wrap


def _loopback_only(behaviour: Any) -> Any:
    """Runs a unary read for loopback peers; refuses others."""

    async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not loopback_peer(context.peer()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, BAD_TOKEN)
        return await behaviour(request, context)

    return run


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """One interceptor for unary and streaming calls alike."""

    def __init__(self, token: str, open_reads_on_loopback: bool = False) -> None:
        self._token = token
        self._open_reads = open_reads_on_loopback

    def __repr__(self) -> str:  # never shows the token
        return f"BearerAuthInterceptor(open_reads_on_loopback={self._open_reads})"

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        if token_ok(details.invocation_metadata, self._token):
            return handler
        if self._open_reads and method in READS and handler.unary_unary:
            return _replace(handler, _loopback_only)
        return _replace(handler, _refuse(BAD_TOKEN if self._token else NO_TOKEN))


class _ClientAuth(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds the bearer token to every call of a (synchronous) channel."""

    def __init__(self, token: str) -> None:
        self._md = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:
        return "_ClientAuth(<redacted>)"

    def _details(self, details: Any) -> Any:
        md = [*(details.metadata or ()), self._md]
        return details._replace(metadata=md)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)

    def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return continuation(self._details(details), request_iterator)


def with_token(channel: grpc.Channel, token: str) -> grpc.Channel:
    """``channel`` sending ``authorization: Bearer <token>`` on every call (no-op for an empty token)."""
    return grpc.intercept_channel(channel, _ClientAuth(token)) if token else channel


def call_metadata(token: str) -> list[tuple[str, str]]:
    """Per-call metadata with the token, for grpc.aio stubs (``metadata=`` argument)."""
    return [("authorization", f"Bearer {token}")] if token else []
