"""Typed service configuration from flags and KAIROS_* variables: the Python counterpart of go/envflag.

A service declares one frozen dataclass whose fields are made with ``setting(default, help)``; this
module turns it into argparse flags (``--field-name``), reads ``<PREFIX><FIELD_NAME>`` variables, and
lists every setting for the configuration reference (``make config-docs``). Precedence: flag, then
environment variable, then the default, as in the Go services. Values convert by the field's type
(str, int, float, bool, comma-separated tuple) or as a Go duration (``duration=True``: 500ms, 5s,
1m30s, in seconds). Every error is a ``ConfigError`` naming the flag and the variable, never a value
that could be a secret.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag and the environment variable."""


def setting(default: Any, help: str, duration: bool = False) -> Any:
    """A dataclass field with its help text (and whether it is a duration)."""
    return dataclasses.field(default=default, metadata={"help": help, "duration": duration})


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(raw: str) -> float:
    """Seconds in a Go duration (500ms, 5s, 1m30s; 0 alone), the syntax the Go services' flags take."""
    text = raw.strip()
    if text == "0":
        return 0.0
    total, pos = 0.0, 0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"invalid duration {raw!r}: want e.g. 500ms, 5s or 1m30s")
    return total


def format_duration(seconds: float) -> str:
    """A duration as Go prints it (5s, 500ms, 1m30s, 1h0m0s)."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        for unit, scale in (("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
            if seconds >= scale:
                return f"{round(seconds / scale, 9):g}{unit}"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{round(secs, 9):g}s"
    if hours or minutes:
        out = f"{int(minutes)}m{out}"
    if hours:
        out = f"{int(hours)}h{out}"
    return out


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def where(prefix: str, name: str) -> str:
    """How an error names a setting: its flag and its environment variable."""
    return f"{flag(name)} / {prefix}{name.upper()}"


def _kind(f: dataclasses.Field[Any]) -> str:
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def convert(f: dataclasses.Field[Any], raw: str, prefix: str) -> Any:
    """``raw`` (from a flag or the environment) as the field's type."""
    kind = _kind(f)
    try:
        if f.metadata.get("duration"):
            return parse_duration(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("", "0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not a boolean (true or false)")
        if kind.startswith("tuple"):
            return tuple(s.strip() for s in raw.split(",") if s.strip())
        return raw
    except ValueError as e:
        raise ConfigError(f"{where(prefix, f.name)}: {e}") from None


def build_parser(cls: type, prefix: str, prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"Every flag also reads the environment variable {prefix}<FLAG_IN_UPPER_SNAKE_CASE>.",
    )
    for f in dataclasses.fields(cls):
        # argparse formats help with %: a setting's prose ("~11% of a core") is taken as it is.
        text = f.metadata["help"].replace("%", "%%")
        if _kind(f) == "bool":  # a bare --flag means true, like the Go services' boolean flags
            p.add_argument(flag(f.name), dest=f.name, default=None, nargs="?", const="true", help=text)
        else:
            p.add_argument(flag(f.name), dest=f.name, default=None, help=text)
    return p


def load(
    cls: type,
    prefix: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The fields set by a flag or a variable, converted (defaults left to the dataclass)."""
    env = os.environ if env is None else env
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw = getattr(args, f.name)
        if raw is None:
            raw = env.get(prefix + f.name.upper())
        if raw is not None:
            values[f.name] = convert(f, raw, prefix)
    return values


def settings(cls: type, prefix: str) -> list[dict[str, str]]:
    """Every setting: flag, environment variable, default (as the flag takes it) and help, in field
    order. The counterpart of envflag's Settings(): docs/operations.md's configuration reference."""
    out = []
    for f in dataclasses.fields(cls):
        d: Any = f.default
        if f.metadata.get("duration"):
            default = format_duration(d)
        else:
            d = ",".join(d) if isinstance(d, tuple) else d
            default = "" if d in ("", None) else json.dumps(d)
        out.append(
            {
                "flag": flag(f.name),
                "env": prefix + f.name.upper(),
                "default": default,
                "help": f.metadata.get("help", ""),
            }
        )
    return out


def split_hostport(value: str, name: str, prefix: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{where(prefix, name)}: expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


def read_secret(path: str, name: str, prefix: str) -> str:
    """The first line of a secret file; ConfigError naming the setting (never the content)."""
    try:
        value = Path(path).read_text().split("\n", 1)[0].strip()
    except OSError as e:
        raise ConfigError(f"{where(prefix, name)}: {e.strerror}: {path}") from None
    if not value:
        raise ConfigError(f"{where(prefix, name)}: {path} is empty")
    return value
