"""Typed configuration of the inference server: one frozen dataclass, flags and KAIROS_INFERENCE_* env vars.

Every field documents itself (its ``help`` metadata feeds ``--help`` and docs/inference.md). Precedence:
command-line flag, then environment variable, then the default. Defaults are safe: loopback only.
A setting the Go services share has their name and value syntax (go/envflag): ``--grpc-addr``,
``--metrics-addr``, ``--log-level`` debug|info|warn|error, ``--shutdown-timeout`` as a Go duration
(500ms, 5s), ``--nats-url``, ``--nats-queue``, ``--allowed-symbols``, ``--tls-*``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kairos import envconfig, grpcpeer
from kairos.envconfig import ConfigError, format_duration, parse_duration, setting

__all__ = ["ConfigError", "InferenceConfig", "format_duration", "load_config", "parse_duration", "settings"]

ENV_PREFIX = "KAIROS_INFERENCE_"
_f = setting

# The longest --keep-warm interval (seconds): past it, caches are cold whatever the rehearsal does.
MAX_KEEP_WARM_S = 60.0


@dataclass(frozen=True)
class InferenceConfig:
    """Settings of one inference server process."""

    model: str = _f(
        "",
        "Model to serve: models:/<name>@<alias> (MLflow registry, alias polled), models:/<name>/<version>, "
        "or a path to a model.onnx whose model card is embedded or lies beside it as model.card.json.",
    )
    grpc_addr: str = _f("127.0.0.1:7501", "gRPC listen address host:port (port 0 picks a free port).")
    metrics_addr: str = _f(
        "127.0.0.1:9501", "Prometheus /metrics address host:port; empty disables (port 0 picks a free port)."
    )
    tracking_uri: str = _f(
        "",
        "MLflow tracking/registry URI; empty means $KAIROS_MLFLOW_URI, else "
        "sqlite:///<root>/.kairos/mlflow.db (root = the nearest directory above the working directory "
        "holding .git, as kairos-train uses).",
    )
    poll_interval_s: float = _f(
        30.0, "Seconds between checks of the model source (alias target or file change); 0 disables."
    )
    max_batch: int = _f(64, "Largest ONNX Runtime batch; every size 1..max_batch is warmed up at load.")
    max_delay_us: int = _f(
        0,
        "How long the micro-batcher waits for more rows after the first one, in microseconds. "
        "0 = one event-loop turn (rows that are already ready across streams batch together).",
    )
    batch_inline: bool = _f(
        True,
        "Run a request's model inputs at once when no other rows wait for the micro-batcher (no hand-off "
        "to the batcher task); rows that arrive while others wait are still batched. Off with a "
        "positive --max-delay-us.",
    )
    yield_after_signals: bool = _f(
        True,
        "Give up the CPU (sched_yield) right after a bar's signals are written to NATS, before the "
        "response to the stream, so nats-server and execution can run first on a busy machine (ADR 0103).",
    )
    keep_warm: float = _f(
        0.0,
        "While no request has come and no model has run for this long, rehearse a recent request's "
        "whole path at this interval (parse, bar or tick intake, model run, drift figures, signal "
        "frames, response bytes) on a private state, so the next real request finds it in cache (a "
        "duration: 5ms; 0 disables). Nothing rehearsed is published, answered or counted as a request "
        "or prediction (ADR 0118). On a 2-vCPU VM with the CPUs' wake-up latency held and the server "
        "on a CPU of its own, 5ms took the e2e bench's tick -> ack p50 from 1.9 to 1.35 ms, at ~11% of "
        "a core while idle (docs/benchmarks.md).",
        duration=True,
    )
    idle_spin: bool = _f(
        False,
        "Keep this process's CPU from going idle: a native thread under SCHED_IDLE spins whenever nothing "
        "else on the CPU wants to run, so a request never finds the CPU halted (ADR 0123). It costs a "
        "whole CPU, always; it pays when the server has a CPU of its own (kairos up's default layout) on "
        "a machine whose idle CPUs are slow to wake, such as a VM. Needs the C++ extension (make "
        "cpp-build). On the 2-vCPU VM of docs/benchmarks.md it took the stream latency p50 from ~470 to "
        "~290 µs and the e2e bench's Python hop from ~890 to ~700 µs.",
    )
    event_loop: str = _f(
        "uvloop", "Event loop: uvloop (libuv; lower per-turn cost) or asyncio (the standard library's)."
    )
    nats_url: str = _f("nats://127.0.0.1:4222", "NATS server for signals; empty disables publishing.")
    nats_creds: str = _f(
        "", "File holding this service's NATS user:password (mode 0600); empty connects without credentials."
    )
    signal_subject_prefix: str = _f("kairos.signal", "Signals go to <prefix>.<symbol>.")
    nats_queue: int = _f(
        100_000, "Signals waiting for NATS beyond this are dropped and counted (the stream never blocks)."
    )
    allowed_symbols: tuple[str, ...] = _f(
        (), "Comma-separated symbols the server accepts; empty accepts any well-formed symbol."
    )
    any_symbol: bool = _f(
        False,
        "Serve symbols outside the model card's list (the symbols it was validated on), e.g. a broker's "
        "suffixed name of the same market; off refuses them with SYMBOL_NOT_IN_CARD.",
    )
    max_ticks_per_batch: int = _f(10_000, "Largest TickBatch accepted; bigger ones are refused whole.")
    max_bars_per_request: int = _f(10_000, "Largest number of bars in one request or PredictRequest.")
    max_symbols_per_stream: int = _f(1_000, "Symbols one stream may hold state for.")
    max_message_bytes: int = _f(16 * 1024 * 1024, "Largest gRPC message received or sent, in bytes.")
    grpc_max_concurrent_streams: int = _f(
        grpcpeer.MAX_CONCURRENT_STREAMS, "gRPC concurrent streams per connection."
    )
    grpc_keepalive_min_time: float = _f(
        grpcpeer.KEEPALIVE_MIN_TIME_S,
        "Clients pinging more often than this are disconnected (a duration: 10s).",
        duration=True,
    )
    grpc_max_connections: int = _f(
        grpcpeer.MAX_CONNECTIONS, "gRPC connections open at once; more are refused at accept."
    )
    grpc_handshake_timeout: float = _f(
        grpcpeer.HANDSHAKE_TIMEOUT_S,
        "Time a new gRPC connection has to finish TLS and the HTTP/2 preface; slower ones are closed "
        "(a duration: 5s).",
        duration=True,
    )
    stream_pipeline_depth: int = _f(
        64, "Requests of one stream processed ahead of the response being written (backpressure)."
    )
    workers: int = _f(1, "Server processes sharing the listen port with SO_REUSEPORT (metrics port + index).")
    worker_addrs: tuple[str, ...] = _f(
        (),
        "Comma-separated host:port, one per worker: worker i also listens on the i-th, its own, besides "
        "the shared --grpc-addr. A client that lists them (the collector's inference endpoints, a load "
        "client) spreads its streams over the workers itself; on the shared port SO_REUSEPORT hashes "
        "each connection onto a worker, and one client's few connections may all land on one.",
    )
    shutdown_timeout: float = _f(
        5.0, "How long in-flight RPCs get to finish on SIGTERM/SIGINT (a duration: 500ms, 5s).", duration=True
    )
    log_level: str = _f("info", "Log level: debug, info, warn or error.")
    drift_window: int = _f(
        500,
        "Feature rows (per model, all symbols) over which each feature's PSI against the card's training "
        "distribution is computed; 0 disables drift monitoring.",
    )
    ood_di_threshold: float = _f(
        0.0,
        "Dissimilarity index above which a row is out of distribution; 0 = the card's training p99.9.",
    )
    shadow_models: tuple[str, ...] = _f(
        (),
        "Comma-separated model sources (models:/<name>@challenger, ...) evaluated in shadow on the same "
        "bars: their signals are never published; each is accounted on paper with its card's decision "
        "policy and the paper venue's fills (kairos_inference_shadow_* metrics), the serving model too.",
    )
    promotion_min_bars: int = _f(
        1000,
        "Bars a shadow model must have been paired with the serving model on before its promotion test "
        "can be significant (ModelStatus.promotion, kairos_inference_promotion_significant).",
    )
    promotion_alpha: float = _f(
        0.05,
        "Significance level of the promotion test: one-sided Diebold-Mariano test of the per-bar net "
        "return difference, Newey-West variance (docs/adr/0097).",
    )
    model_max_age_days: float = _f(
        30.0,
        "Days after which the serving version counts as expired unless a newer version passed the "
        "gate since (registered after it); 0 disables (ModelStatus.expired, kairos_inference_model_expired).",
    )
    abstain_expired: bool = _f(
        False,
        "Abstain while the serving version is expired: its signals carry flat probabilities (the policy "
        "enters nothing) and are counted in kairos_inference_expired_abstained_total.",
    )
    abstain_ood: bool = _f(
        False,
        "Abstain on out-of-distribution rows: their signals carry flat probabilities (edge 0: no entry) "
        "and are counted in kairos_inference_abstained_total; the prediction itself is unchanged.",
    )
    tls_cert: str = _f(
        "",
        "PEM certificate chain of the gRPC server; with --tls-key the port serves TLS only "
        "(TLS 1.2 minimum), re-read when the files change.",
    )
    tls_key: str = _f("", "PEM private key of the gRPC server (with --tls-cert).")
    tls_client_ca: str = _f(
        "", "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)."
    )
    token: str = field(
        default="",
        repr=False,
        metadata={
            "help": "Bearer token every InferenceService call needs (prefer --token-file or the env var); "
            "empty refuses every call.",
            "duration": False,
            "secret": True,
        },
    )
    token_file: str = _f("", "File holding the bearer token (first line).")
    open_reads_on_loopback: bool = _f(False, "Serve GetModelStatus to loopback peers without the token.")

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        env = os.environ.get("KAIROS_MLFLOW_URI", "")
        if env:
            return env
        here = Path.cwd().resolve()
        root = next((p for p in (here, *here.parents) if (p / ".git").exists()), here)
        return f"sqlite:///{root / '.kairos' / 'mlflow.db'}"

    def validate(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"--{_flag(name)} / {ENV_PREFIX}{name.upper()}: {why}")

        if not self.model:
            raise bad("model", "required (models:/<name>@<alias> or a path to model.onnx)")
        _split_hostport(self.grpc_addr, "grpc_addr")
        if self.worker_addrs:
            if len(self.worker_addrs) != self.workers:
                raise bad(
                    "worker_addrs",
                    f"one address per worker: {len(self.worker_addrs)} for {self.workers} workers",
                )
            for a in self.worker_addrs:
                if _split_hostport(a, "worker_addrs")[1] == 0:
                    raise bad("worker_addrs", f"{a}: a worker's address needs a fixed port")
            if len(set(self.worker_addrs) | {self.grpc_addr}) != len(self.worker_addrs) + 1:
                raise bad("worker_addrs", "the addresses must differ from each other and from --grpc-addr")
        if self.metrics_addr:
            _split_hostport(self.metrics_addr, "metrics_addr")
        positive = (
            "max_batch",
            "max_ticks_per_batch",
            "max_bars_per_request",
            "max_symbols_per_stream",
            "max_message_bytes",
            "grpc_max_concurrent_streams",
            "grpc_max_connections",
            "stream_pipeline_depth",
            "workers",
            "nats_queue",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise bad(name, f"must be at least 1, got {getattr(self, name)}")
        if self.max_batch > 4096:
            raise bad("max_batch", f"at most 4096, got {self.max_batch}")
        if self.max_delay_us < 0 or self.max_delay_us > 1_000_000:
            raise bad("max_delay_us", f"must be 0..1000000, got {self.max_delay_us}")
        if self.keep_warm < 0 or self.keep_warm > MAX_KEEP_WARM_S:
            most, got = format_duration(MAX_KEEP_WARM_S), format_duration(self.keep_warm)
            raise bad("keep_warm", f"must be 0 (off) up to {most}, got {got}")
        if self.event_loop not in ("uvloop", "asyncio"):
            raise bad("event_loop", f"want uvloop or asyncio, got {self.event_loop!r}")
        if self.promotion_min_bars < 2:
            raise bad("promotion_min_bars", f"must be at least 2, got {self.promotion_min_bars}")
        if not 0 < self.promotion_alpha < 1:
            raise bad("promotion_alpha", f"must be in (0, 1), got {self.promotion_alpha}")
        if self.model_max_age_days < 0:
            raise bad("model_max_age_days", f"must be >= 0, got {self.model_max_age_days}")
        if self.poll_interval_s < 0:
            raise bad("poll_interval_s", f"must be >= 0, got {self.poll_interval_s}")
        if self.grpc_keepalive_min_time <= 0:
            raise bad("grpc_keepalive_min_time", "must be positive")
        if self.grpc_handshake_timeout <= 0:
            raise bad("grpc_handshake_timeout", "must be positive")
        if self.shutdown_timeout < 0:
            raise bad("shutdown_timeout", f"must be >= 0, got {format_duration(self.shutdown_timeout)}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError(
                f"--tls-cert / {ENV_PREFIX}TLS_CERT and --tls-key / {ENV_PREFIX}TLS_KEY must be set together"
            )
        if self.tls_client_ca and not self.tls_cert:
            raise bad("tls_client_ca", "mutual TLS needs --tls-cert and --tls-key")
        # "warning" (Python's name) is accepted too; the documented spelling is the Go services' warn.
        if self.log_level.lower() not in ("debug", "info", "warn", "warning", "error"):
            raise bad("log_level", f"unknown level {self.log_level!r}: want debug, info, warn or error")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _split_hostport(value: str, name: str) -> tuple[str, int]:
    return envconfig.split_hostport(value, name, ENV_PREFIX)


def split_hostport(value: str) -> tuple[str, int]:
    """Host and port of an address validated by InferenceConfig.validate."""
    return _split_hostport(value, "address")


def build_parser() -> argparse.ArgumentParser:
    return envconfig.build_parser(
        InferenceConfig,
        ENV_PREFIX,
        "kairos-inference",
        "Kairos inference server: ONNX Runtime over gRPC bidi streams, signals on NATS.",
    )


def load_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> InferenceConfig:
    """Config from flags, then KAIROS_INFERENCE_* variables, then defaults; validated."""
    values = envconfig.load(InferenceConfig, ENV_PREFIX, build_parser(), argv, env)
    if values.get("token_file"):
        values["token"] = envconfig.read_secret(values["token_file"], "token_file", ENV_PREFIX)
    cfg = InferenceConfig(**values)
    cfg.validate()
    return cfg


def settings() -> list[dict[str, str]]:
    """Every setting: flag, environment variable, default and help, in field order (envconfig.settings):
    the configuration reference in docs/operations.md (``make config-docs``) and the deployment tests."""
    return envconfig.settings(InferenceConfig, ENV_PREFIX)
