"""The gRPC servicer: StreamPredict (bidi, the hot path), Predict (unary) and GetModelStatus.

StreamPredict reads requests in a task of its own and processes each as soon as it arrives (features,
model inputs submitted to the micro-batcher, which runs them at once when it is idle), while the
handler writes the responses in request order as their batches finish: reading, batching and writing
overlap, and every request gets exactly one response echoing its request_id. The signals of a
request's predictions are published right after its model run, before the response is written: the
signal is what execution trades on, the response only feeds the collector's prediction fan-out
(ADR 0100).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status  # type: ignore[import-untyped]

from kairos.features.blocks import DailyWindow
from kairos.inference.batcher import BatchResult, MicroBatcher
from kairos.inference.config import InferenceConfig
from kairos.inference.logs import get_logger
from kairos.inference.metrics import Metrics
from kairos.inference.model import ModelManager, ServedModel
from kairos.inference.pipeline import NATIVE, SymbolFeed, feature_rows
from kairos.inference.signals import ModelRun, SignalPublisher
from kairos.inference.streams import StreamState, bar_problem, symbol_problem
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.types.v1 import types_pb2

HOP_RECEIVE = types_pb2.HOP_STAGE_INFERENCE_RECEIVE
HOP_DONE = types_pb2.HOP_STAGE_INFERENCE_DONE
HOP_SEND = types_pb2.HOP_STAGE_INFERENCE_SEND


def now_us() -> int:
    return time.time_ns() // 1000


class InvalidArgument(Exception):
    """A unary request that cannot be served: field violations for google.rpc.BadRequest."""

    def __init__(self, violations: list[tuple[str, str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {d}" for f, _, d in violations))
        self.violations = violations  # (field, reason, description)


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):
    """InferenceService over the model manager, the micro-batcher and the signal publisher."""

    def __init__(
        self,
        cfg: InferenceConfig,
        manager: ModelManager,
        batcher: MicroBatcher,
        metrics: Metrics,
        publisher: SignalPublisher | None,
    ) -> None:
        self.cfg = cfg
        self.manager = manager
        self.batcher = batcher
        self.metrics = metrics
        self.publisher = publisher
        self.allowed = frozenset(cfg.allowed_symbols)
        self.log = get_logger()
        self._stream_requests = metrics.requests.labels("StreamPredict")
        self._stream_seconds = metrics.request_seconds.labels("StreamPredict")
        self._drift: dict[tuple[str, str], Any] = {}  # (name, version) -> DriftMonitor or None
        self._psi_gauges: dict[str, dict[str, Any]] = {}  # model label -> feature -> its PSI gauge
        self._drift_lock = threading.Lock()
        self.shadow: Any = None  # kairos.inference.shadow.ShadowEvaluator with --shadow-models
        self.expiry: Any = None  # kairos.inference.expiry.ExpiryWatch (set by the server)
        self.rehearsal: Any = None  # kairos.inference.rehearsal.Rehearsal with --keep-warm (ADR 0118)

    def _drift_of(self, model: ServedModel) -> Any:
        """The model's drift monitor (None without a training distribution in its card); shared by the
        event loop (serving model) and the shadow worker thread (challengers), hence the lock."""
        key = (model.name, model.version)
        if key in self._drift:
            return self._drift[key]
        with self._drift_lock:
            if key not in self._drift:
                self._drift[key] = self._new_drift_monitor(model)
        return self._drift[key]

    def _new_drift_monitor(self, model: ServedModel) -> Any:
        dist = model.card.get("feature_distribution") or {}
        if not dist or self.cfg.drift_window <= 0:
            return None
        from kairos.features.drift import DriftMonitor

        try:
            return DriftMonitor(dist, model.feature_names, self.cfg.drift_window, self.cfg.ood_di_threshold)
        except (KeyError, ValueError) as e:
            self.log.warning("drift monitoring off", model=model.name, version=model.version, error=str(e))
            return None

    def _observe_drift(self, model: ServedModel, work: Any) -> list[bool]:
        """DI and PSI of the predicted rows (the windows' last rows); which rows are out of distribution."""
        if not work.windows:
            return []
        if self._drift_of(model) is None:
            return []
        return self.observe_rows(model, work.predicted_rows())

    def observe_rows(self, model: ServedModel, rows: np.ndarray) -> list[bool]:
        """DI and PSI of feature rows a model predicted on (metrics, and the monitor's figures for
        GetModelStatus); which rows are out of distribution. The shadow worker calls it for challengers."""
        mon = self._drift_of(model)
        if mon is None or not len(rows):
            return []
        di, ood = mon.observe(rows)
        label = f"{model.name}/{model.version}"
        self.metrics.dissimilarity.observe_many((label,), di)
        n_ood = int(ood.sum())
        if n_ood:
            self.metrics.ood.labels(label).inc(n_ood)
        # PSI every 50 rows, at most once a second: a scrape reads it every few seconds, and at 64
        # rows a request "every 50 rows" was every request (ADR 0110).
        if mon.n - mon.psi_n >= 50 and time.monotonic() - mon.psi_time >= 1.0:
            gauges = self._psi_gauges.get(label)
            if gauges is None:  # the labelled gauges, looked up once per model
                psi_gauge = self.metrics.feature_psi
                gauges = self._psi_gauges[label] = {n: psi_gauge.labels(label, n) for n in mon.names}
            for name, v in mon.psi().items():
                if v == v:  # not NaN
                    gauges[name].set(v)
        return list(ood.tolist())

    def _model(self) -> ServedModel:
        m = self.manager.current
        if m is None:  # the server only starts with a model; kept for type narrowing
            raise RuntimeError("no model loaded")
        return m

    # --- StreamPredict -------------------------------------------------------------------------

    async def StreamPredict(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> None:
        """Registered by ``add_to_server`` with bytes both ways (ADR 0113): StreamPredictRequest bytes
        in, StreamPredictResponse bytes out."""
        state = StreamState(
            self.metrics,
            allowed_symbols=self.allowed,
            max_ticks_per_batch=self.cfg.max_ticks_per_batch,
            max_bars_per_request=self.cfg.max_bars_per_request,
            max_symbols=self.cfg.max_symbols_per_stream,
            any_symbol=self.cfg.any_symbol,
            keep_prices=self.shadow is not None,
        )
        pending: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.cfg.stream_pipeline_depth)
        peer = context.peer()
        self.metrics.streams_active.inc()
        self.log.info("stream opened", peer=peer)

        rehearsal = self.rehearsal

        async def read() -> None:
            try:
                # The request's bytes as they came (ADR 0113): the C++ bar intake reads them, the
                # rest of the server the parsed message.
                seen = 0
                async for raw in request_iterator:
                    seen += 1
                    recv_t = time.perf_counter()
                    recv_us = now_us()
                    self._stream_requests.inc()
                    if rehearsal is not None:
                        rehearsal.last_request = recv_t
                    try:
                        req = pb.StreamPredictRequest.FromString(raw)
                    except DecodeError as e:
                        # Ends the call once the requests before it are answered (the handler task
                        # aborts: one task owns the call's writes and its status).
                        await pending.put(
                            f"request {seen} of the stream is not a "
                            f"kairos.inference.v1.StreamPredictRequest ({len(raw)} bytes): {e}"
                        )
                        return
                    model = self._model()
                    work = state.process(req, model, raw)
                    fut = None
                    if work.windows:
                        # The signals go out right after the model run (in this loop turn when the
                        # batcher is idle), before the response is written (ADR 0100).
                        after = functools.partial(self._after_run, req, recv_us, model, work)
                        fut = self.batcher.submit(model, work.inputs(), then=after)
                        if rehearsal is not None:
                            rehearsal.record(raw)
                    await pending.put((req, recv_t, recv_us, model, work, fut))
            finally:
                with contextlib.suppress(asyncio.QueueFull):
                    pending.put_nowait(None)

        reader = asyncio.create_task(read(), name=f"stream-reader {peer}")
        try:
            while True:
                item = await pending.get()
                if item is None:
                    break
                if isinstance(item, str):  # a request that could not be read
                    self.log.warning("stream refused", peer=peer, reason=item)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, item)
                req, recv_t, recv_us, model, work, fut = item
                resp = pb.StreamPredictResponse(request_id=req.request_id)
                predictions = b""
                shadow_outputs = None
                observe = False  # the drift figures of this request's rows, once it is answered
                if work.rejections:
                    resp.rejections.extend(work.rejections)
                if fut is not None:
                    try:
                        result: BatchResult = await fut
                    except Exception as e:  # the model run failed: refuse these rows, keep the stream
                        self.metrics.rejected.labels("MODEL_ERROR").inc(len(work.symbols))
                        resp.rejections.add(
                            field="", reason="MODEL_ERROR", description=f"model run failed: {e}"
                        )
                        work.symbols.clear()
                    else:
                        predictions = self.fill(resp, req, recv_us, model, work, result)
                        shadow_outputs = result.outputs
                        observe = self.drift_after_response
                # The response's bytes (StreamPredict's handler passes bytes both ways, ADR 0113).
                try:
                    await context.write(resp.SerializeToString() + predictions)
                finally:  # predicted rows reach the monitor even when the client is gone
                    if observe:
                        self._observe_drift(model, work)
                self._stream_seconds.observe(time.perf_counter() - recv_t)
                if self.shadow is not None and work.symbols and shadow_outputs is not None:
                    self.shadow.submit(model, work, shadow_outputs)
                if pending.empty() and reader.done():
                    break
            await reader  # re-raises a reader failure (ends the call with its status)
        except (asyncio.CancelledError, grpc.aio.AbortError):  # an abort was already answered with its status
            raise
        except Exception as e:
            self.log.error("stream failed", peer=peer, error=repr(e))
            raise
        finally:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
            state.close()
            self.metrics.streams_active.dec()
            self.log.info("stream closed", peer=peer)

    def _after_run(
        self,
        req: pb.StreamPredictRequest,
        recv_us: int,
        model: ServedModel,
        work: Any,
        result: BatchResult,
    ) -> None:
        """Right after the model run: one signal per prediction straight onto NATS; the response to
        the stream is written afterwards by the handler. The drift figures follow the response
        (``drift_after_response``) unless they decide the signals (--abstain-ood): nothing else a
        signal or a response carries depends on them, and computing them in front cost a model-making
        request ~100 µs on the 2-vCPU host of issue #17 (ADR 0124)."""
        pub = self.publisher
        if pub is None:
            return
        ood = self._observe_drift(model, work) if self.cfg.abstain_ood else []
        pub.offer_run(self.model_run(req, recv_us, model, work, result, ood))
        if self.cfg.yield_after_signals and work.symbols:
            # The signals are on the socket: let nats-server and execution take the CPU before this
            # process goes on to the response write (ADR 0103; safe since execution never moves a
            # quote back when a signal overtakes the collector's tick batch).
            os.sched_yield()

    @property
    def drift_after_response(self) -> bool:
        """The drift figures of a request's rows are computed once its response is written, not in
        the model run's callback (only --abstain-ood with signals on NATS needs them first)."""
        return not (self.cfg.abstain_ood and self.publisher is not None)

    def model_run(
        self,
        req: pb.StreamPredictRequest,
        recv_us: int,
        model: ServedModel,
        work: Any,
        result: BatchResult,
        ood: list[bool],
        count: bool = True,
    ) -> ModelRun:
        """The run's signals as the publisher frames them: abstentions (an expired model, rows out
        of distribution with --abstain-ood) made flat and, with ``count``, counted."""
        hops = [
            *req.hops,
            types_pb2.HopStamp(stage=HOP_RECEIVE, time_us=recv_us),
            types_pb2.HopStamp(stage=HOP_DONE, time_us=result.done_us),
        ]
        pol, col, unit = model.policy, model.vol_index, model.vol_unit
        # The model's array as it is (framed in C++, ADR 0112), or lists when abstentions replace rows.
        outputs: Any = result.outputs
        # The bar's own feature row (the window's last) carries the realised volatility.
        if pol is None:
            vols = [0.0] * len(work.symbols)
        elif work.x is not None:
            vols = (work.x[:, -1, col].astype(np.float64) * unit).tolist()
        else:
            vols = [float(w[-1, col]) * unit for w in work.windows]
        abstain = self.cfg.abstain_ood and ood
        expired = self.expiry is not None and self.expiry.abstaining(model)
        flat = [0.0, 1.0, 0.0]  # an abstention: expected edge 0, the policy enters nothing
        if expired:  # demoted to flat: the model is past its age (ADR 0098)
            outputs = [flat] * len(outputs)
            if count:
                self.expiry.abstained.labels(f"{model.name}/{model.version}").inc(len(outputs))
        elif abstain and any(ood):
            outputs = outputs.tolist()
            for k, out_of_distribution in enumerate(ood):
                if out_of_distribution:
                    outputs[k] = flat
                    if count:
                        self.metrics.abstained.labels(f"{model.name}/{model.version}").inc()
                        self._drift_of(model).abstained_total += 1
        return ModelRun(
            work.symbols,
            work.times_msc,
            outputs,
            model.name,
            model.version,
            hops,
            work.bids,
            work.asks,
            pol,
            vols,
        )

    def fill(
        self,
        resp: pb.StreamPredictResponse,
        req: pb.StreamPredictRequest,
        recv_us: int,
        model: ServedModel,
        work: Any,
        result: BatchResult,
    ) -> bytes:
        """The request's predictions: with the C++ extension, as StreamPredictResponse bytes to append
        to the serialised ``resp`` (ADR 0110, 0113); otherwise added to ``resp`` (returns b"")."""
        send_us = now_us()
        # What every prediction of the request shares, built once: copying it into each prediction
        # is one C call, where keyword construction re-creates the hop stamps per prediction (2x the
        # cost of the response at 64 predictions; ADR 0103).
        template = pb.Prediction(
            model_name=model.name, model_version=model.version, request_id=req.request_id, hops=req.hops
        )
        template.hops.add(stage=HOP_RECEIVE, time_us=recv_us)
        template.hops.add(stage=HOP_DONE, time_us=result.done_us)
        template.hops.add(stage=HOP_SEND, time_us=send_us)
        if NATIVE is not None:
            # The predictions as bytes from the template's (ADR 0110), appended to the response's
            # own bytes as they go out (ADR 0113): the same message, without building 64 of them.
            out: bytes = NATIVE.prediction_bytes(
                template.SerializeToString(), work.symbols, work.times_msc, result.outputs
            )
            return out
        outputs = result.outputs.tolist()
        add = resp.predictions.add
        times = work.times_msc
        for k, sym in enumerate(work.symbols):
            p = add()
            p.CopyFrom(template)
            p.symbol = sym
            p.time_msc = times[k]
            p.outputs.extend(outputs[k])
        return b""

    def add_to_server(self, server: Any) -> None:
        """The InferenceService on ``server``, its generated handlers, except that StreamPredict passes
        bytes both ways (ADR 0113): the C++ bar intake reads the request's bytes, and the response's
        predictions go out as the bytes the C++ wrote, without a parse and a serialisation of each."""

        class Capture:  # the generated registration, held instead of made
            def __init__(self) -> None:
                self.service, self.handlers = "", dict[str, Any]()

            def add_generic_rpc_handlers(self, _handlers: Any) -> None:
                pass

            def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
                self.service, self.handlers = service, dict(handlers)

        cap = Capture()
        inference_pb2_grpc.add_InferenceServiceServicer_to_server(self, cap)  # type: ignore[no-untyped-call]
        handlers = cap.handlers
        handlers["StreamPredict"] = grpc.stream_stream_rpc_method_handler(self.StreamPredict)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(cap.service, handlers),))
        server.add_registered_method_handlers(cap.service, handlers)

    # --- Predict ---------------------------------------------------------------------------------

    async def Predict(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        t0 = time.perf_counter()
        recv_us = now_us()
        self.metrics.requests.labels("Predict").inc()
        model = self._model()
        try:
            if request.model_name and request.model_name != model.name:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"model {request.model_name!r} is not served here (serving {model.name!r})",
                )
            x, time_msc = self._predict_input(request, model)
        except InvalidArgument as e:
            for _, reason, _ in e.violations:
                self.metrics.rejected.labels(reason).inc()
            await context.abort_with_status(bad_request(str(e), e.violations))
            raise AssertionError("unreachable") from None
        result = await self.batcher.submit(model, x[np.newaxis])
        pred = pb.Prediction(
            symbol=request.symbol,
            time_msc=time_msc,
            model_name=model.name,
            model_version=model.version,
            outputs=result.outputs[0].tolist(),
            hops=[
                types_pb2.HopStamp(stage=HOP_RECEIVE, time_us=recv_us),
                types_pb2.HopStamp(stage=HOP_DONE, time_us=result.done_us),
                types_pb2.HopStamp(stage=HOP_SEND, time_us=now_us()),
            ],
        )
        self.metrics.request_seconds.labels("Predict").observe(time.perf_counter() - t0)
        return pb.PredictResponse(prediction=pred)

    def _predict_input(self, request: pb.PredictRequest, model: ServedModel) -> tuple[np.ndarray, int]:
        problem = symbol_problem(request.symbol)
        if problem is not None:
            raise InvalidArgument([("symbol", "INVALID_SYMBOL", problem)])
        if self.allowed and request.symbol not in self.allowed:
            raise InvalidArgument(
                [("symbol", "UNKNOWN_SYMBOL", f"symbol {request.symbol!r} is not served here")]
            )
        which = request.WhichOneof("input")
        if which == "features":
            values = np.asarray(request.features.values, dtype=np.float32)
            want = model.rows * model.n_features
            if values.size != want:
                raise InvalidArgument(
                    [
                        (
                            "features.values",
                            "WRONG_FEATURE_COUNT",
                            f"{values.size} values, the model takes {model.rows} rows x "
                            f"{model.n_features} features = {want} (row-major, oldest row first)",
                        )
                    ]
                )
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                i = int(bad[0])
                raise InvalidArgument(
                    [(f"features.values[{i}]", "NON_FINITE_FEATURE", f"value {values[i]} is not finite")]
                )
            return values.reshape(model.rows, model.n_features), 0
        if which == "bars":
            return self._bars_input(request, model)
        raise InvalidArgument([("input", "EMPTY_REQUEST", "set either features or bars")])

    def _bars_input(self, request: pb.PredictRequest, model: ServedModel) -> tuple[np.ndarray, int]:
        bars = request.bars.bars
        need = model.history_bars
        if len(bars) > self.cfg.max_bars_per_request:
            raise InvalidArgument(
                [
                    (
                        "bars.bars",
                        "OVERSIZED_BATCH",
                        f"{len(bars)} bars (at most {self.cfg.max_bars_per_request})",
                    )
                ]
            )
        if len(bars) < need:
            raise InvalidArgument(
                [("bars.bars", "WINDOW_TOO_SHORT", f"{len(bars)} bars, the model needs at least {need}")]
            )
        violations: list[tuple[str, str, str]] = []
        last_open = None
        for i, bar in enumerate(bars):
            if bar.symbol and bar.symbol != request.symbol:
                violations.append(
                    (f"bars.bars[{i}].symbol", "SYMBOL_MISMATCH", f"{bar.symbol!r} != {request.symbol!r}")
                )
                continue
            p = bar_problem(bar, model.timeframe_s)
            if p is not None:
                violations.append((f"bars.bars[{i}]", p[0], p[1]))
                continue
            if last_open is not None and bar.open_time_msc <= last_open:
                violations.append(
                    (
                        f"bars.bars[{i}].open_time_msc",
                        "TIME_WENT_BACKWARDS",
                        f"{bar.open_time_msc} <= previous bar {last_open}",
                    )
                )
            last_open = bar.open_time_msc
        if violations:
            raise InvalidArgument(violations[:100])
        if model.blocks == ("base",):
            feed = SymbolFeed(model.timeframe_s)
            windows = [w for w in (feed.push_bar(b) for b in bars[-need:]) if w is not None]
            rows = feature_rows(windows)[-model.rows :].astype(np.float32)
        else:
            rows = self._block_input(bars, model)
        last = bars[-1]
        return rows, last.open_time_msc + last.period_s * 1000

    def _block_input(self, bars: Any, model: ServedModel) -> np.ndarray:
        """A daily-block model's input from a window of bars (ADR 0104): the daily columns need the
        bars of the 24 hours before each input row; cross-symbol columns cannot come from one symbol."""
        if "cross" in model.blocks:
            raise InvalidArgument(
                [
                    (
                        "bars",
                        "NEEDS_STREAM",
                        f"model {model.name} uses cross-symbol features: they need every symbol of the "
                        "model on one StreamPredict stream, or send the feature vector",
                    )
                ]
            )
        feed = SymbolFeed(model.timeframe_s)
        daily = DailyWindow(model.timeframe_s)
        windows, dailies = [], []
        for b in bars:
            w = feed.push_bar(b)
            d = daily.push(b.open_time_msc, b.high, b.low, b.close)
            if w is not None:
                windows.append(w)
                dailies.append(d)
        rows = np.concatenate([feature_rows(windows), np.array(dailies)], axis=1)[-model.rows :]
        if not np.isfinite(rows).all():
            raise InvalidArgument(
                [
                    (
                        "bars.bars",
                        "WINDOW_TOO_SHORT",
                        f"{len(bars)} bars: the daily features of model {model.name} need the bars of the "
                        f"24 hours before each of its {model.rows} input rows",
                    )
                ]
            )
        return rows.astype(np.float32)

    # --- GetModelStatus --------------------------------------------------------------------------

    async def GetModelStatus(
        self, request: pb.GetModelStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelStatusResponse:
        self.metrics.requests.labels("GetModelStatus").inc()
        models = self._model_statuses()
        if request.model_name:
            models = [m for m in models if m.model_name == request.model_name]
            if not models:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"model {request.model_name!r} is not served here"
                )
        return pb.GetModelStatusResponse(models=models)

    def _model_statuses(self) -> list[pb.ModelStatus]:
        """The serving model, then every shadow challenger (issue #19): each with its role, its live
        paper figures and its drift (kairos.inference.status)."""
        from kairos.inference.status import live_status

        serving = self.manager.current
        out = [live_status(self.manager, "serving", self.shadow, self._drift_of)]
        for mgr in self.shadow.managers if self.shadow is not None else []:
            m = mgr.current
            if (
                m is not None
                and serving is not None
                and (m.name, m.version) == (serving.name, serving.version)
            ):
                continue  # the challenger was promoted: it is the serving row now
            out.append(live_status(mgr, "shadow", self.shadow, self._drift_of))
        if self.expiry is not None:
            self.expiry.fill(out[0])  # the serving model's expiry (ADR 0098)
        if self.shadow is not None:  # each challenger's promotion test (ADR 0097)
            from kairos.inference.shadow import fill_promotion

            fill_promotion(out, self.shadow, serving)
        return out


def bad_request(message: str, violations: list[tuple[str, str, str]]) -> grpc.Status:
    """INVALID_ARGUMENT with google.rpc.BadRequest field violations in grpc-status-details-bin."""
    br = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, reason=r, description=d)
            for f, r, d in violations
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(br)
    return rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message[:1000], details=[detail])
    )
