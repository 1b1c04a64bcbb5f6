"""`kairos-console`: the operator console's process. Reads its settings (flags, KAIROS_CONSOLE_*),
starts the data hub and serves the page with uvicorn until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence

import uvicorn
from starlette.applications import Starlette

from kairos.console import logs
from kairos.console.app import Console
from kairos.console.config import ConfigError, ConsoleConfig, load_config
from kairos.console.hub import Hub


def build(cfg: ConsoleConfig) -> tuple[Console, Starlette]:
    hub = Hub(cfg, token=cfg.token(), inference_token=cfg.inference_token())
    console = Console(hub, cfg.token(), cfg.session_ttl)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(hub.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    return console, console.app(lifespan)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cfg = load_config(argv)
    except ConfigError as exc:
        print(f"kairos-console: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    logs.configure(cfg.log_level)
    log = logs.get_logger()
    _, app = build(cfg)
    host, port = cfg.host_port
    log.info(
        "console starting",
        addr=cfg.addr,
        execution=cfg.execution_addr,
        inference=cfg.inference_addr,
        collector=cfg.collector_addr,
        nats=cfg.nats_url,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
    )
    server.run()
    log.info("console stopped")


if __name__ == "__main__":
    main()
