"""Keeping the request path warm while idle (``--keep-warm``, ADR 0109, ADR 0118).

On a machine whose caches and TLB are emptied while a process sleeps (a VM whose host runs other
work on the same cores), the first request after a quiet spell pays for every line of code and
data it touches again: on the 2-vCPU VM of issue #17 one ONNX Runtime run took 29 µs after 1 ms
asleep, 52 µs after 20 ms, 291 µs after 50 ms and 331-858 µs after 200 ms; the bar intake, the
signal framing and the response cost the same ~10x. Running only the model while idle (ADR 0109)
kept one of these warm.

A rehearsal runs the whole path of a recent request on a private copy of the stream state, so the
next real request finds the same code and data in cache. The request is parsed; its bars (by the
C++ bar intake) or its ticks are taken into a state of its own, their times moved onto the
rehearsal's own clock so that the state only moves forward and each rehearsal closes a bar; the
model runs on the inputs made due; the signals are framed as for NATS and the response encoded as
for the stream; the drift monitor's per-row figures are computed on a monitor of its own, in the
stream's order (ADR 0124); and all of it is thrown away. Nothing is published, written, answered,
counted as a request or a prediction, or seen by the serving drift monitor, the shadow evaluator or
the stream states of real clients; only ``kairos_inference_keep_warm_runs_total`` counts rehearsals.
Until a request has made predictions, and while the private state fills its windows, the rehearsal
is ADR 0109's: one model run on a zero input.

The recorded requests are the last ``RECENT`` requests (of bars or of ticks) that made predictions,
each at most ``MAX_RECORDED_BYTES`` (larger ones are not recorded): a bounded ring of at most
8 MiB. The rehearsal's symbols are those of the recorded requests; past the stream's symbol limit
it starts over with a fresh state.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from kairos.inference.batcher import BatchResult, MicroBatcher
from kairos.inference.logs import get_logger
from kairos.inference.metrics import Metrics
from kairos.inference.model import ServedModel
from kairos.inference.service import now_us
from kairos.inference.signals import frames_for
from kairos.inference.streams import StreamState
from kairos.inference.v1 import inference_pb2 as pb
from kairos.types.v1 import types_pb2

if TYPE_CHECKING:
    from kairos.inference.service import InferenceServicer

RECENT = 32
MAX_RECORDED_BYTES = 256 << 10


class Rehearsal:
    """Recent requests that made predictions and the private state they are rehearsed on."""

    def __init__(self, servicer: InferenceServicer, batcher: MicroBatcher, metrics: Metrics) -> None:
        self.servicer = servicer
        self.batcher = batcher
        self.metrics = metrics
        self.recent: deque[bytes] = deque(maxlen=RECENT)
        self.recording = True  # off for good once a rehearsal of the path failed
        self.log = get_logger()
        self._next = 0
        self._model: ServedModel | None = None
        self._state: StreamState | None = None
        # Per symbol, the rehearsal clock's next period (its index since the epoch) and last sequence.
        self._period: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._drift: Any = None
        self._zeros: np.ndarray | None = None
        # The rehearsal's own metrics: nothing it does is counted as the server's work.
        self._own_metrics = Metrics()
        self.last_request = time.perf_counter()  # set by the stream reader on every request

    def record(self, raw: bytes) -> None:
        """Keep a request that made predictions (called by the stream reader)."""
        if self.recording and len(raw) <= MAX_RECORDED_BYTES:
            self.recent.append(raw)

    def _reset(self, model: ServedModel) -> None:
        if self._state is not None:
            self._state.close()
        cfg = self.servicer.cfg
        self._state = StreamState(
            self._own_metrics,
            allowed_symbols=self.servicer.allowed,
            max_ticks_per_batch=cfg.max_ticks_per_batch,
            max_bars_per_request=cfg.max_bars_per_request,
            max_symbols=cfg.max_symbols_per_stream,
            any_symbol=cfg.any_symbol,
            keep_prices=self.servicer.shadow is not None,
        )
        self._period = {}
        self._seq = {}
        self._drift = self.servicer._new_drift_monitor(model)
        self._zeros = np.zeros((1, model.rows, model.n_features), dtype=np.float32)
        self._model = model

    def run_once(self) -> str | None:
        """One rehearsal: "request" (the whole path of a recorded request), "model" (the model on
        zeros: nothing recorded yet, or the private state still filling its windows), or None (no
        model)."""
        model = self.servicer.manager.current
        if model is None:
            return None
        if model is not self._model or len(self._period) > self.servicer.cfg.max_symbols_per_stream:
            self._reset(model)
        assert self._state is not None and self._zeros is not None
        if not self.recent:
            model.run(self._zeros)
            return "model"
        raw = self.recent[self._next % len(self.recent)]
        self._next += 1
        recv_us = now_us()
        req = pb.StreamPredictRequest.FromString(raw)
        self._onto_clock(req, model.timeframe_s * 1000)
        work = self._state.process(req, model, req.SerializeToString())
        if not work.windows:  # the private state is still filling its windows
            model.run(self._zeros)
            return "model"
        result = BatchResult(model.run(work.inputs()), now_us())
        # In the order the stream takes them: the drift figures first only when they decide the
        # signals, else after the response (ADR 0124).
        after = self.servicer.drift_after_response
        ood = [] if after else self._observe(work)
        run = self.servicer.model_run(req, recv_us, model, work, result, ood, count=False)
        sent = types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_INFERENCE_SEND, time_us=now_us())
        frames_for(self.servicer.cfg.signal_subject_prefix, sent, run)
        resp = pb.StreamPredictResponse(request_id=req.request_id)
        predictions = self.servicer.fill(resp, req, recv_us, model, work, result)
        _ = resp.SerializeToString() + predictions  # the bytes the stream would write, dropped
        if after:
            self._observe(work)
        return "request"

    def _observe(self, work: Any) -> list[bool]:
        """The per-row drift figures of a rehearsed request, on the rehearsal's own monitor."""
        if self._drift is None:
            return []
        ood: list[bool] = self._drift.observe(work.predicted_rows())[1].tolist()
        return ood

    def _onto_clock(self, req: pb.StreamPredictRequest, period_ms: int) -> None:
        """Move a recorded request onto the rehearsal's own clock, so its private state only ever moves
        forward: per symbol, each bar, and each tick batch (shifted by whole periods, its sequence
        numbers after the last ones), starts in the period after the last one rehearsed; a tick
        batch's first tick closes the bar the previous rehearsal left open."""
        nxt = self._period
        for bar in req.bars:
            k = nxt.get(bar.symbol, 1)
            bar.open_time_msc = k * period_ms
            nxt[bar.symbol] = k + 1
        for batch in req.ticks:
            times = batch.time_msc
            if not times:
                continue
            sym = batch.symbol
            shift = (nxt.get(sym, 1) - times[0] // period_ms) * period_ms
            shifted = [t + shift for t in times]
            batch.time_msc[:] = shifted
            nxt[sym] = shifted[-1] // period_ms + 1
            seqs = batch.sequence
            if seqs:
                by = self._seq.get(sym, 0) + 1 - seqs[0]
                batch.sequence[:] = [q + by for q in seqs]
                self._seq[sym] = batch.sequence[-1]

    async def run(self, interval_s: float) -> None:
        """Rehearse every ``interval_s`` while no request came and no model ran for as long; cancel it
        to stop. A rehearsal of the path that fails is logged and the path is no longer rehearsed (the
        model alone is kept warm from then on); a model that cannot run stops keeping warm."""
        while True:
            await asyncio.sleep(interval_s)
            now = time.perf_counter()
            if now - max(self.last_request, self.batcher.last_run) < interval_s or self.batcher.busy:
                continue  # real work keeps it warm
            try:
                path = self.run_once()
            except Exception as e:
                if not self.recent:
                    self.log.error("keep-warm run failed; keeping warm stops", error=repr(e))
                    return
                self.log.error("rehearsal failed; keeping only the model warm", error=repr(e))
                self.recording = False
                self.recent.clear()
                continue
            if path is not None:
                self.batcher.last_run = time.perf_counter()
                self.metrics.keep_warm_runs.labels(path).inc()
