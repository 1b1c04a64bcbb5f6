"""The console's login on its own (kairos-console as a process, no services behind it): sessions
expire, refused logins are throttled, and the pages carry their security headers."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.console.process import console_spec

from kairos.console import app
from kairos.stack import processes
from kairos.stack.loopback import wait_for

TOKEN = "console-login-test-token"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


OPENER = urllib.request.build_opener(_NoRedirect)


def request(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with OPENER.open(req, timeout=10) as resp:
            return int(resp.status), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return int(exc.code), dict(exc.headers)


def login(url: str, token: str) -> tuple[int, dict[str, str]]:
    return request(
        url + "/login", f"token={token}".encode(), {"content-type": "application/x-www-form-urlencoded"}
    )


def _console(tmp_path: Path, ttl: str) -> Iterator[str]:
    spec, url = console_spec(tmp_path, TOKEN, "--nats-url=", f"--session-ttl={ttl}")
    with processes.Stack(tmp_path) as stack:
        stack.wait_ready(stack.start(spec))
        yield url


@pytest.fixture
def console(tmp_path: Path) -> Iterator[str]:
    yield from _console(tmp_path, "2s")


@pytest.fixture
def long_console(tmp_path: Path) -> Iterator[str]:
    """Sessions that outlast the test: none expires while it logs in past the bound."""
    yield from _console(tmp_path, "10m")


def test_a_session_expires_after_its_ttl(console: str) -> None:
    status, headers = login(console, TOKEN)
    assert status == 303 and headers["location"] == "/"
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=strict" in headers["set-cookie"]
    assert request(console + "/api/state", headers={"cookie": cookie})[0] == 200
    wait_for(
        lambda: request(console + "/api/state", headers={"cookie": cookie})[0] == 401,
        timeout=30,
        what="the session to expire",
        poll=0.2,
    )
    status, headers = request(console + "/", headers={"cookie": cookie})
    assert status == 303 and headers["location"] == "/login"
    assert 'kairos_console_sessions_ended_total{reason="expired"} 1.0' in metrics(console)


def metrics(console: str) -> str:
    with urllib.request.urlopen(console + "/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def test_sessions_are_bounded_the_oldest_making_room_counted(long_console: str) -> None:
    first = login(long_console, TOKEN)[1]["set-cookie"].split(";", 1)[0]
    for _ in range(app.MAX_SESSIONS):
        assert login(long_console, TOKEN)[0] == 303
    assert request(long_console + "/api/state", headers={"cookie": first})[0] == 401, "the oldest made room"
    assert 'kairos_console_sessions_ended_total{reason="capacity"} 1.0' in metrics(long_console)


def test_refused_logins_are_throttled(console: str) -> None:
    for _ in range(20):
        assert login(console, "wrong")[0] == 401
    assert login(console, "wrong")[0] == 429
    assert login(console, TOKEN)[0] == 429, "no guessing while throttled, right token or not"
    text = metrics(console)
    assert 'kairos_console_logins_total{result="refused"} 20.0' in text
    assert 'kairos_console_logins_total{result="throttled"} 2.0' in text


def test_pages_carry_security_headers_and_nothing_is_served_without_a_login(console: str) -> None:
    status, headers = request(console + "/login")
    assert status == 200
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert request(console + "/")[0] == 303
    for path in ("/api/state", "/events"):
        assert request(console + path)[0] == 401
    assert request(console + "/healthz")[0] == 200


def test_an_oversized_login_is_refused_unread(console: str) -> None:
    big = b"token=" + b"x" * 100_000
    assert request(console + "/login", big, {"content-type": "application/x-www-form-urlencoded"})[0] == 413
    assert login(console, TOKEN)[0] == 303
