"""Structured JSON logs for the console: one line per event on stderr, component=console. uvicorn's
own records go through the same renderer; request logs carry method, path and status, never a
query string, a cookie or a header (the login token travels in a POST body and is never logged)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "event": record.getMessage(),
            "level": record.levelname.lower(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "component": "console",
            "logger": record.name,
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure(level: str = "info") -> None:
    lvl = LEVELS[level]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter())
    for name in ("uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.setLevel(lvl)
        lg.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # the app logs its requests itself
    # Everything else that logs through the standard library (asyncio, grpc) in the same format.
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(lvl, logging.WARNING))


def get_logger(**fields: Any) -> Any:
    # Lazy: bound on first use, so a module-level logger follows configure() called later.
    return structlog.get_logger(component="console", **fields)
