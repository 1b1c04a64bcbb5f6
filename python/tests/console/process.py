"""kairos-console as a process of its own with no services behind it (their addresses lead nowhere):
what the login and market-data tests start."""

from __future__ import annotations

import sys
from pathlib import Path

from kairos.stack import processes
from kairos.stack.loopback import free_port


def console_spec(tmp_path: Path, token: str, *extra: str) -> tuple[processes.ServiceSpec, str]:
    """The console's spec, its token in tmp_path/token, on a free loopback port, with extra flags;
    and its base URL."""
    (tmp_path / "token").write_text(token + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    spec = processes.ServiceSpec(
        name="console",
        argv=[
            str(Path(sys.executable).parent / "kairos-console"),
            f"--addr=127.0.0.1:{port}",
            f"--token-file={tmp_path / 'token'}",
            f"--execution-addr=127.0.0.1:{free_port()}",
            f"--inference-addr=127.0.0.1:{free_port()}",
            f"--collector-addr=127.0.0.1:{free_port()}",
            *extra,
        ],
        grpc_addr="",
        ready_url=f"{url}/healthz",
        ready_timeout_s=30,
    )
    return spec, url
