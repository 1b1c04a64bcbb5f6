"""Loopback helpers shared by the stack, its tests and the benchmarks: one implementation each.

``free_port`` picks an unused 127.0.0.1 port (``free_port_run``: n consecutive ones); ``wait_for``
polls a condition with a deadline and says what it waited for; ``wait_for_port`` waits until
something accepts TCP on a port, failing at once if the process that should listen has died.
"""

from __future__ import annotations

import collections
import socket
import subprocess
import time
from collections.abc import Callable

# The ports free_port handed out lately in this process. The kernel may offer a port again as soon
# as its probe socket closes (4 times in 50,000 back-to-back pairs here), and two listeners given
# the same one fail: one exits "address already in use".
_RECENT: collections.deque[int] = collections.deque(maxlen=256)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (the kernel's choice; free when this returns), never one of
    the last 256 this process was given."""
    for _ in range(64):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _RECENT:
            _RECENT.append(port)
            return port
    raise RuntimeError("no unused 127.0.0.1 port outside the recently given ones in 64 tries")


def free_port_run(n: int, tries: int = 50) -> int:
    """The first of ``n`` consecutive unused TCP ports on 127.0.0.1 (a service whose workers take
    port, port+1, ...); RuntimeError after ``tries`` candidates."""
    for _ in range(tries):
        first = free_port()
        if any(p in _RECENT for p in range(first + 1, first + n)):
            continue
        held: list[socket.socket] = []
        try:
            for p in range(first, first + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
            _RECENT.extend(range(first + 1, first + n))  # free_port then never hands them out
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports on 127.0.0.1 in {tries} tries")


def wait_for(
    cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition", poll: float = 0.02
) -> None:
    """Polls ``cond`` until it is true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> None:
    """Polls until something accepts TCP on 127.0.0.1:port; RuntimeError if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}: {err}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")
