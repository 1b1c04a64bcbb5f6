"""The console's HTTP side (Starlette): login with execution's token, the page, its server-sent
event stream, the kill switch, /metrics and /healthz.

A login is a POST of the token, compared in constant time; it opens a session (a random id in an
HttpOnly, SameSite=Strict cookie) with a CSRF token of its own that the kill switch must echo. API
clients may send ``authorization: Bearer <token>`` instead. Without either, nothing but the login
page, /healthz and /metrics (the console's own counters, no trading data) answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qs

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kairos.console.hub import MAX_SYMBOLS, Hub
from kairos.console.logs import get_logger

COOKIE = "kairos_console"
STATIC = resources.files("kairos.console") / "static"
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
KEEPALIVE_S = 15.0
KNOWN_ROUTES = {"/", "/login", "/logout", "/events", "/api/state", "/api/kill", "/metrics", "/healthz"}
MAX_BODY = 4096  # a login form or a kill request; anything larger is refused unread
MAX_SESSIONS = 1000
# Refused logins allowed per minute (all clients together) before the login answers 429.
MAX_REFUSED_PER_MINUTE = 20

log = get_logger()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.logins = Counter(
            "kairos_console_logins_total", "Login attempts by result.", ["result"], registry=self.registry
        )
        self.requests = Counter(
            "kairos_console_http_requests_total",
            "HTTP requests by route and status code.",
            ["route", "code"],
            registry=self.registry,
        )
        self.streams = Gauge(
            "kairos_console_event_streams", "Open server-sent event streams.", registry=self.registry
        )
        self.events = Counter(
            "kairos_console_events_sent_total", "State updates pushed to browsers.", registry=self.registry
        )
        self.kills = Counter(
            "kairos_console_kill_switch_total",
            "Kill switch uses by result.",
            ["result"],
            registry=self.registry,
        )
        self.source_up = Gauge(
            "kairos_console_source_up",
            "1 while a data source (execution, reports, inference, nats) answers.",
            ["source"],
            registry=self.registry,
        )
        self.mids_refused = Counter(
            "kairos_console_mid_symbols_refused_total",
            f"Tick batches of a symbol whose mid is not shown: {MAX_SYMBOLS} symbols already are.",
            registry=self.registry,
        )
        self.sessions_ended = Counter(
            "kairos_console_sessions_ended_total",
            f"Login sessions dropped before a logout: expired, or the oldest at {MAX_SESSIONS} sessions.",
            ["reason"],
            registry=self.registry,
        )
        for r in ("accepted", "refused", "throttled"):
            self.logins.labels(r)
        for r in ("expired", "capacity"):
            self.sessions_ended.labels(r)
        for r in ("halted", "failed"):
            self.kills.labels(r)


@dataclass
class Session:
    csrf: str
    expires: float


class Console:
    def __init__(self, hub: Hub, token: str, session_ttl_s: float) -> None:
        if not token:
            raise ValueError("the console needs execution's token: an empty token would let anyone in")
        self.hub = hub
        self.token = token
        self.ttl = session_ttl_s
        self.sessions: dict[str, Session] = {}
        self.refused: deque[float] = deque()
        self.metrics = Metrics()
        hub.mid_refused = self.metrics.mids_refused.inc

    # --- authentication ---------------------------------------------------------------------------

    def token_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def session(self, request: Request) -> Session | None:
        sid = request.cookies.get(COOKIE, "")
        s = self.sessions.get(sid) if sid else None
        if s is None:
            return None
        if s.expires < time.time():
            del self.sessions[sid]
            self.metrics.sessions_ended.labels("expired").inc()
            return None
        return s

    def bearer_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and bool(value) and self.token_ok(value.strip())

    def authorized(self, request: Request) -> bool:
        return self.session(request) is not None or self.bearer_ok(request)

    # --- pages ------------------------------------------------------------------------------------

    @staticmethod
    def _page(name: str, **subst: str) -> str:
        text = (STATIC / name).read_text(encoding="utf-8")
        for k, v in subst.items():
            text = text.replace("{{" + k + "}}", v)
        return text

    @staticmethod
    async def _small_body(request: Request) -> bytes | None:
        """The request body, or None when it is larger than any login or kill request can be."""
        declared = request.headers.get("content-length", "")
        if declared and (not declared.isdigit() or int(declared) > MAX_BODY):
            return None
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return None
        return body

    async def login_page(self, request: Request) -> Response:
        return HTMLResponse(self._page("login.html", error=""), headers=HEADERS)

    def _throttled(self) -> bool:
        now = time.monotonic()
        while self.refused and now - self.refused[0] > 60:
            self.refused.popleft()
        return len(self.refused) >= MAX_REFUSED_PER_MINUTE

    def _new_session(self) -> str:
        now = time.time()
        for sid in [k for k, v in self.sessions.items() if v.expires < now]:
            del self.sessions[sid]
            self.metrics.sessions_ended.labels("expired").inc()
        while len(self.sessions) >= MAX_SESSIONS:
            del self.sessions[next(iter(self.sessions))]  # the oldest login
            self.metrics.sessions_ended.labels("capacity").inc()
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = Session(csrf=secrets.token_urlsafe(24), expires=now + self.ttl)
        return sid

    async def login(self, request: Request) -> Response:
        if self._throttled():
            self.metrics.logins.labels("throttled").inc()
            page = self._page(
                "login.html", error='<p class="error" id="error">Too many attempts; wait a minute.</p>'
            )
            return HTMLResponse(page, status_code=429, headers=HEADERS)
        body = await self._small_body(request)
        if body is None:
            return JSONResponse({"error": "request too large"}, status_code=413, headers=HEADERS)
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].strip()
        if not given or not self.token_ok(given):
            self.metrics.logins.labels("refused").inc()
            self.refused.append(time.monotonic())
            log.warning("login refused", client=request.client.host if request.client else "")
            page = self._page("login.html", error='<p class="error" id="error">Token refused.</p>')
            return HTMLResponse(page, status_code=401, headers=HEADERS)
        sid = self._new_session()
        self.metrics.logins.labels("accepted").inc()
        log.info("login accepted", client=request.client.host if request.client else "")
        resp = RedirectResponse("/", status_code=303, headers=HEADERS)
        resp.set_cookie(COOKIE, sid, max_age=int(self.ttl), httponly=True, samesite="strict", path="/")
        return resp

    async def logout(self, request: Request) -> Response:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        resp = RedirectResponse("/login", status_code=303, headers=HEADERS)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    async def index(self, request: Request) -> Response:
        s = self.session(request)
        if s is None:
            return RedirectResponse("/login", status_code=303, headers=HEADERS)
        return HTMLResponse(self._page("index.html", csrf=s.csrf), headers=HEADERS)

    # --- data -------------------------------------------------------------------------------------

    def _refuse(self) -> Response:
        return JSONResponse({"error": "unauthenticated"}, status_code=401, headers=HEADERS)

    def _update_source_gauges(self) -> None:
        for name, src in self.hub.sources.items():
            self.metrics.source_up.labels(name).set(1 if src.ok else 0)

    async def state(self, request: Request) -> Response:
        if not self.authorized(request):
            return self._refuse()
        self._update_source_gauges()
        return JSONResponse(self.hub.snapshot(), headers=HEADERS)

    async def events(self, request: Request) -> Response:
        if not self.authorized(request):
            return self._refuse()

        async def stream() -> AsyncIterator[bytes]:
            self.metrics.streams.inc()
            seen, quiet_since = -1, time.monotonic()
            try:
                while True:
                    if not self.authorized(request):
                        return  # logged out or expired
                    if self.hub.version != seen:
                        seen, quiet_since = self.hub.version, time.monotonic()
                        self._update_source_gauges()
                        self.metrics.events.inc()
                        yield f"event: state\ndata: {json.dumps(self.hub.snapshot())}\n\n".encode()
                    elif time.monotonic() - quiet_since > KEEPALIVE_S:
                        quiet_since = time.monotonic()
                        yield b": keep-alive\n\n"
                    # A version check per tick, an update at most twice a second: a replay's bursts
                    # stay readable and cheap, and no change waits longer than one tick.
                    await asyncio.sleep(min(0.5, self.hub.cfg.poll_interval))
            finally:
                self.metrics.streams.dec()

        headers = {**HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def kill(self, request: Request) -> Response:
        s = self.session(request)
        if s is None and not self.bearer_ok(request):
            return self._refuse()
        csrf = request.headers.get("x-csrf-token", "")
        if (
            s is not None
            and not self.bearer_ok(request)
            and not hmac.compare_digest(csrf.encode(), s.csrf.encode())
        ):
            return JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403, headers=HEADERS)
        raw = await self._small_body(request)
        if raw is None:
            return JSONResponse({"error": "request too large"}, status_code=413, headers=HEADERS)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        if not isinstance(body, dict) or body.get("confirm") != "HALT":
            return JSONResponse(
                {"error": 'confirm with {"confirm": "HALT"}'}, status_code=400, headers=HEADERS
            )
        reason = str(body.get("reason") or "kill switch (console)")[:200]
        try:
            result = await self.hub.halt(reason)
        except grpc.aio.AioRpcError as exc:
            self.metrics.kills.labels("failed").inc()
            code = exc.code().name if exc.code() else "ERROR"
            log.error("kill switch failed", code=code, details=exc.details())
            return JSONResponse(
                {"error": f"execution refused or unreachable: {code} {exc.details() or ''}".strip()},
                status_code=502,
                headers=HEADERS,
            )
        self.metrics.kills.labels("halted").inc()
        log.warning(
            "kill switch",
            previous=result["previous"],
            current=result["current"],
            reason=reason,
            canceled=len(result["canceled"]),
        )
        return JSONResponse(result, headers=HEADERS)

    async def metrics_endpoint(self, request: Request) -> Response:
        self._update_source_gauges()
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    # --- app --------------------------------------------------------------------------------------

    def app(
        self, lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]] | None = None
    ) -> Starlette:
        console = self

        class RequestLog:
            """Counts and logs every request (method, path, status; never a query, cookie or header)."""

            def __init__(self, app: ASGIApp) -> None:
                self.app = app

            async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
                if scope["type"] != "http":
                    await self.app(scope, receive, send)
                    return
                started, status = time.perf_counter(), [500]

                async def send_status(message: Message) -> None:
                    if message["type"] == "http.response.start":
                        status[0] = message["status"]
                    await send(message)

                path = scope["path"]
                try:
                    await self.app(scope, receive, send_status)
                finally:
                    route = (
                        path if path in KNOWN_ROUTES else "static" if path.startswith("/static/") else "other"
                    )
                    console.metrics.requests.labels(route, str(status[0])).inc()
                    if path not in ("/metrics", "/healthz"):
                        log.info(
                            "request",
                            method=scope["method"],
                            path=path if route != "other" else "(other)",
                            status=status[0],
                            ms=round((time.perf_counter() - started) * 1000, 1),
                        )

        routes = [
            Route("/", self.index),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/events", self.events),
            Route("/api/state", self.state),
            Route("/api/kill", self.kill, methods=["POST"]),
            Route("/metrics", self.metrics_endpoint),
            Route("/healthz", self.healthz),
            Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        ]
        return Starlette(routes=routes, middleware=[Middleware(RequestLog)], lifespan=lifespan)
