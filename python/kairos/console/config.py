"""Typed configuration of the console: one frozen dataclass, flags and KAIROS_CONSOLE_* variables.

Precedence: command-line flag, then environment variable, then the default, like every Kairos
service. Defaults are the local stack's (`kairos up`) on loopback. Secrets travel as file paths:
the execution token (the console's login and its credential on ExecutionService), inference's
token and the NATS observer identity are read from files, never from argv or the environment.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kairos import envconfig
from kairos.envconfig import ConfigError, setting

__all__ = ["ConfigError", "ConsoleConfig", "load_config", "settings"]

ENV_PREFIX = "KAIROS_CONSOLE_"
_f = setting


@dataclass(frozen=True)
class ConsoleConfig:
    """Settings of one console process."""

    addr: str = _f(
        "127.0.0.1:7700",
        "HTTP listen address host:port of the page, its event stream, /metrics and /healthz "
        "(port 0 picks a free port).",
    )
    token_file: str = _f(
        "",
        "File holding execution's bearer token: what an operator types to log in, and the console's "
        "credential on ExecutionService. Required.",
    )
    execution_addr: str = _f("127.0.0.1:7601", "Execution gRPC host:port (orders, positions, kill switch).")
    inference_addr: str = _f("127.0.0.1:7501", "Inference gRPC host:port (served models, gate verdicts).")
    inference_token_file: str = _f("", "File holding inference's bearer token; empty sends none.")
    collector_addr: str = _f("127.0.0.1:7401", "Collector gRPC host:port (health only).")
    nats_url: str = _f("nats://127.0.0.1:4222", "NATS server (signals, market data); empty disables.")
    nats_creds: str = _f(
        "", "File holding the NATS observer identity's user:password; empty connects without credentials."
    )
    tls_ca: str = _f(
        "",
        "CA certificate (PEM) that signs the services' certificates: gRPC to execution, inference and "
        "the collector over TLS. Empty: plaintext gRPC, as on the local stack.",
    )
    tls_cert: str = _f("", "Client certificate (PEM) for services that require mutual TLS; with --tls-key.")
    tls_key: str = _f("", "Private key (PEM) of --tls-cert.")
    poll_interval: float = _f(1.0, "How often the services are polled and the page is refreshed.", True)
    session_ttl: float = _f(43200.0, "How long a login lasts.", True)
    log_level: str = _f("info", "Log level: debug, info, warn or error (JSON lines on stderr).")

    def channel_credentials(self) -> Any:
        """grpc.ChannelCredentials for TLS (mutual with --tls-cert), or None for plaintext."""
        if not self.tls_ca:
            return None
        import grpc

        ca = Path(self.tls_ca).read_bytes()
        cert = Path(self.tls_cert).read_bytes() if self.tls_cert else None
        key = Path(self.tls_key).read_bytes() if self.tls_key else None
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)

    @property
    def host_port(self) -> tuple[str, int]:
        return split_hostport(self.addr, "addr")

    def token(self) -> str:
        return read_secret(self.token_file, "token_file")

    def inference_token(self) -> str:
        return (
            read_secret(self.inference_token_file, "inference_token_file")
            if self.inference_token_file
            else ""
        )

    def validate(self) -> None:
        self.host_port  # noqa: B018 - raises ConfigError when malformed
        if not self.token_file:
            raise ConfigError(f"--token-file / {ENV_PREFIX}TOKEN_FILE: required (execution's bearer token)")
        self.token()
        self.inference_token()
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError(
                f"--tls-cert / {ENV_PREFIX}TLS_CERT and --tls-key / {ENV_PREFIX}TLS_KEY: set both or neither"
            )
        if self.tls_cert and not self.tls_ca:
            raise ConfigError(f"--tls-cert / {ENV_PREFIX}TLS_CERT needs --tls-ca / {ENV_PREFIX}TLS_CA")
        for name in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"--{_flag(name)} / {ENV_PREFIX}{name.upper()}: no such file: {path}")
        if self.poll_interval <= 0:
            raise ConfigError(f"--poll-interval / {ENV_PREFIX}POLL_INTERVAL: must be positive")
        if self.log_level not in ("debug", "info", "warn", "error"):
            raise ConfigError(f"--log-level / {ENV_PREFIX}LOG_LEVEL: debug, info, warn or error")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def split_hostport(value: str, name: str) -> tuple[str, int]:
    return envconfig.split_hostport(value, name, ENV_PREFIX)


def read_secret(path: str, name: str) -> str:
    """The first line of a secret file; ConfigError naming the setting (never the content)."""
    return envconfig.read_secret(path, name, ENV_PREFIX)


def build_parser() -> argparse.ArgumentParser:
    return envconfig.build_parser(
        ConsoleConfig,
        ENV_PREFIX,
        "kairos-console",
        "Kairos operator console: positions, orders, fills, P&L, models, health, kill switch.",
    )


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ConsoleConfig:
    """Config from flags, then KAIROS_CONSOLE_* variables, then defaults; validated."""
    cfg = ConsoleConfig(**envconfig.load(ConsoleConfig, ENV_PREFIX, build_parser(), argv, env))
    cfg.validate()
    return cfg


def settings() -> list[dict[str, str]]:
    """Every setting (flag, environment variable, default, help) for `make config-docs`."""
    return envconfig.settings(ConsoleConfig, ENV_PREFIX)
