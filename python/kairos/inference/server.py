"""The inference server process: wiring, start-up, graceful shutdown and the ``kairos-inference`` CLI.

``InferenceServer`` owns every task it starts (micro-batcher, model poller, signal publisher) and the
gRPC and metrics servers, and stops them in order: health goes NOT_SERVING, in-flight RPCs get the
grace period, then the tasks are cancelled and awaited and the NATS connection is flushed and closed.
With ``--workers N`` the parent starts N such servers as processes sharing the port (SO_REUSEPORT:
the kernel hashes each connection onto one) and forwards SIGTERM/SIGINT to them; ``--worker-addrs``
gives each worker an address of its own too, for clients that spread their streams themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection  # type: ignore[import-untyped]
from prometheus_client import start_http_server

from kairos.grpcpeer import peer_limit_options
from kairos.inference import auth, logs, tls
from kairos.inference.batcher import MicroBatcher
from kairos.inference.config import ConfigError, InferenceConfig, load_config, split_hostport
from kairos.inference.metrics import Metrics
from kairos.inference.model import ModelLoadError, ModelManager, ModelSource
from kairos.inference.pipeline import pipeline_spec
from kairos.inference.service import InferenceServicer
from kairos.inference.signals import SignalPublisher
from kairos.inference.v1 import inference_pb2

SERVICE_NAME = inference_pb2.DESCRIPTOR.services_by_name["InferenceService"].full_name


class InferenceServer:
    """One server instance (a process may hold several in tests)."""

    def __init__(self, cfg: InferenceConfig) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.log = logs.get_logger()
        self.port = 0
        self.metrics_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._http: Any = None
        self._http_thread: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._health = health.aio.HealthServicer()
        self.tls: tls.TLSFiles | None = None
        self.expiry: Any = None  # kairos.inference.expiry.ExpiryWatch, made at start
        self.servicer: InferenceServicer | None = None  # made at start
        self._idle_spin: Any = None  # kairos_features_ext.IdleSpin while --idle-spin runs (ADR 0123)
        source = ModelSource(cfg.model, cfg.resolved_tracking_uri, pipeline_spec(), cfg.max_batch)
        self.manager = ModelManager(source, self.metrics, cfg.poll_interval_s)
        self.batcher = MicroBatcher(
            self.manager, self.metrics, cfg.max_batch, cfg.max_delay_us, inline_when_idle=cfg.batch_inline
        )
        # Shadow models (ADR 0086): their own managers and metrics registries (model_info, loads and
        # predictions stay the serving model's); accounted by kairos.inference.shadow.
        self.shadow_managers = [
            ModelManager(
                ModelSource(uri, cfg.resolved_tracking_uri, pipeline_spec(), cfg.max_batch),
                Metrics(),
                cfg.poll_interval_s,
            )
            for uri in cfg.shadow_models
        ]
        self.publisher = (
            SignalPublisher(
                cfg.nats_url, cfg.signal_subject_prefix, self.metrics, cfg.nats_queue, cfg.nats_creds
            )
            if cfg.nats_url
            else None
        )

    async def start(self) -> None:
        """Load the model (raises ModelLoadError), then serve gRPC and metrics."""
        c = self.cfg
        if c.tls_cert:
            failures = self.metrics.tls_reload_failures
            self.tls = tls.TLSFiles(c.tls_cert, c.tls_key, c.tls_client_ca, failures, self.log)
        model = await self.manager.load_initial()
        for mgr in self.shadow_managers:
            try:
                await mgr.load_initial()
            except Exception as e:
                self.log.warning("shadow model not loaded", source=mgr.source.uri, error=str(e))
        opts = [
            ("grpc.max_receive_message_length", self.cfg.max_message_bytes),
            ("grpc.max_send_message_length", self.cfg.max_message_bytes),
            ("grpc.so_reuseport", 1),
            # The same peer bounds as the Go services (go/auth/peerlimit).
            *peer_limit_options(
                self.cfg.grpc_max_concurrent_streams,
                self.cfg.grpc_keepalive_min_time,
                self.cfg.grpc_handshake_timeout,
                self.cfg.grpc_max_connections,
            ),
        ]
        if not c.token:
            self.log.warning("no bearer token configured: every call but health and reflection is refused")
        server = self._grpc = grpc.aio.server(
            options=opts, interceptors=[auth.BearerAuthInterceptor(c.token, c.open_reads_on_loopback)]
        )
        servicer = self.servicer = InferenceServicer(
            self.cfg, self.manager, self.batcher, self.metrics, self.publisher
        )
        if self.shadow_managers:
            from kairos.inference.shadow import ShadowEvaluator

            servicer.shadow = ShadowEvaluator(
                self.shadow_managers,
                self.metrics,
                promotion_min_bars=c.promotion_min_bars,
                promotion_alpha=c.promotion_alpha,
                observe=servicer.observe_rows,
                max_symbols=c.max_symbols_per_stream,
            )
        from kairos.inference.expiry import ExpiryWatch

        servicer.expiry = self.expiry = ExpiryWatch(
            self.manager, self.metrics, c.model_max_age_days, c.abstain_expired
        )
        servicer.add_to_server(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self.port = tls.add_port(server, self.cfg.grpc_addr, self.tls)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.cfg.grpc_addr}")
        for addr in self.cfg.worker_addrs:  # this worker's own address (one; run_serve of a worker)
            if tls.add_port(server, addr, self.tls) == 0:
                raise OSError(f"cannot listen on {addr}")
        if self.cfg.metrics_addr:
            host, port = split_hostport(self.cfg.metrics_addr)
            self._http, self._http_thread = start_http_server(port, host, registry=self.metrics.registry)
            self.metrics_port = self._http.server_port
        self._tasks.append(asyncio.create_task(self.batcher.run(), name="micro-batcher"))
        if self.cfg.keep_warm > 0:
            from kairos.inference.rehearsal import Rehearsal

            servicer.rehearsal = Rehearsal(servicer, self.batcher, self.metrics)
            warm = servicer.rehearsal.run(self.cfg.keep_warm)
            self._tasks.append(asyncio.create_task(warm, name="keep-warm"))
        self._tasks.append(asyncio.create_task(self.manager.poll_forever(), name="model-poller"))
        self._tasks.append(asyncio.create_task(self.expiry.run(), name="model-expiry"))
        for i, mgr in enumerate(self.shadow_managers):
            self._tasks.append(asyncio.create_task(mgr.poll_forever(), name=f"shadow-poller-{i}"))
        if self.publisher is not None:
            self._tasks.append(asyncio.create_task(self.publisher.run(), name="signal-publisher"))
        if c.idle_spin:
            self._start_idle_spin()
        await server.start()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.log.info(
            "serving",
            grpc_addr=self.cfg.grpc_addr,
            port=self.port,
            metrics_port=self.metrics_port,
            model=model.name,
            version=model.version,
            max_batch=self.cfg.max_batch,
            max_delay_us=self.cfg.max_delay_us,
            nats=self.cfg.nats_url or None,
            tls=self.tls is not None,
            mtls=bool(self.cfg.tls_client_ca),
        )

    def _start_idle_spin(self) -> None:
        """--idle-spin (ADR 0123): the SCHED_IDLE thread that keeps this process's CPU awake."""
        from kairos.features import native

        try:
            spin = native.idle_spin()
            spin.start()
        except RuntimeError as e:
            raise OSError(f"--idle-spin: {e}") from e
        self._idle_spin = spin
        self.metrics.idle_spin.set(1)
        self.log.info("idle spin on", cpus=sorted(os.sched_getaffinity(0)), tid=spin.tid)

    async def stop(self) -> None:
        """Graceful stop: refuse new work, let in-flight RPCs finish, then stop every task."""
        with contextlib.suppress(Exception):
            await self._health.enter_graceful_shutdown()
        if self._grpc is not None:
            await self._grpc.stop(self.cfg.shutdown_timeout)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks.clear()
        if self._idle_spin is not None:
            self._idle_spin.stop()
            self._idle_spin = None
            self.metrics.idle_spin.set(0)
        if self.publisher is not None:
            await self.publisher.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http_thread.join(timeout=5)
            self._http = None
        self.log.info("stopped")


async def serve(cfg: InferenceConfig) -> int:
    server = InferenceServer(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except (ModelLoadError, OSError, tls.TLSError) as e:
        server.log.error("cannot start", error=str(e))
        await server.stop()
        return 2
    # Everything alive now (modules, the model, the server) lives until exit: take it out of the
    # collector's scans, and collect the young generation less often, so GC pauses stay off the p99.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    await stop.wait()
    server.log.info("shutting down", shutdown_timeout_s=cfg.shutdown_timeout)
    await server.stop()
    return 0


def run_serve(cfg: InferenceConfig) -> int:
    """``serve`` on the configured event loop (uvloop by default, ADR 0100)."""
    if cfg.event_loop == "uvloop":
        import uvloop

        return uvloop.run(serve(cfg))
    return asyncio.run(serve(cfg))


def _worker(cfg: InferenceConfig) -> None:
    logs.configure(cfg.log_level)
    sys.exit(run_serve(cfg))


def _run_workers(cfg: InferenceConfig) -> int:
    """N processes on one port (SO_REUSEPORT); worker i serves metrics on the metrics port + i and,
    with --worker-addrs, also listens on the i-th address, its own."""
    _, port = split_hostport(cfg.grpc_addr)
    if port == 0:
        print("kairos-inference: --workers > 1 needs a fixed --grpc-addr port", file=sys.stderr)
        return 2
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for i in range(cfg.workers):
        metrics = cfg.metrics_addr
        if metrics:
            mhost, mport = split_hostport(metrics)
            metrics = f"{mhost}:{mport + i if mport else 0}"
        own = cfg.worker_addrs[i : i + 1]  # worker i's own address, if configured
        wcfg = dataclasses.replace(cfg, workers=1, metrics_addr=metrics, worker_addrs=own)
        p = ctx.Process(target=_worker, args=(wcfg,), name=f"kairos-inference-{i}")
        p.start()
        procs.append(p)

    def forward(signum: int, _frame: Any) -> None:
        for p in procs:
            if p.is_alive() and p.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for p in procs:
        p.join()
        code = max(code, p.exitcode or 0)
    return code


def main(argv: Sequence[str] | None = None) -> None:
    """The server's command line; ``kairos-inference`` runs it through ``kairos.inference.cli``, which
    sets grpc's environment first (ADR 0120)."""
    try:
        cfg = load_config(argv)
    except ConfigError as e:
        print(f"kairos-inference: {e}", file=sys.stderr)
        sys.exit(2)
    logs.configure(cfg.log_level)
    if cfg.workers > 1:
        sys.exit(_run_workers(cfg))
    sys.exit(run_serve(cfg))
