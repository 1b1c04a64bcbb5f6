"""Micro-batching of model inputs across symbols and streams into ONNX Runtime runs.

Callers submit groups of rows (one group per request: every prediction the request made due) and await
a future. One batcher task concatenates the groups that are waiting, up to ``max_batch`` rows per run,
runs the model once and hands each group its slice. Groups are batched only with groups for the same
``ServedModel`` object, so a hot swap never mixes versions inside one run.

Waiting for more rows: with ``inline_when_idle`` (the server's default, ADR 0100) a group submitted
while no other group waits runs at once, in the caller's loop turn: no hand-off to the batcher task
and back, which cost two task switches (~0.1-0.3 ms on a loaded loop) on every bar close. Groups
submitted while others wait (or larger than ``max_batch``) go through the batcher task as before.
There, ``max_delay_us == 0`` takes whatever is ready after one event-loop turn (work that other
streams already have queued joins the batch at no latency cost). A positive delay (which turns the
inline path off) keeps yielding to the loop until the batch is full or the delay is over: asyncio's
timers sleep in whole milliseconds on epoll, so sub-millisecond waits are made of loop turns rather
than a timer.

Keeping warm (``--keep-warm``) is ``kairos.inference.rehearsal``'s: it reads ``last_run`` (when
the last model run finished) and ``busy`` to stand aside while real work flows.

``submit(..., then=fn)`` calls ``fn(result)`` synchronously right after the group's model run, before
anything else runs on the loop: the server publishes the signals there (ADR 0100).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kairos.inference.logs import get_logger
from kairos.inference.metrics import Metrics
from kairos.inference.model import ModelManager, ServedModel


@dataclass(frozen=True)
class BatchResult:
    """Outputs of one group, and when the model run that made them finished (µs since the epoch)."""

    outputs: np.ndarray
    done_us: int


@dataclass
class _Group:
    model: ServedModel
    x: np.ndarray
    future: asyncio.Future[BatchResult]
    parts: list[np.ndarray]
    filled: int = 0
    then: Callable[[BatchResult], None] | None = None


class MicroBatcher:
    """One task that runs every model input of the process, batched."""

    def __init__(
        self,
        manager: ModelManager,
        metrics: Metrics,
        max_batch: int,
        max_delay_us: int,
        inline_when_idle: bool = False,
    ) -> None:
        self.manager = manager
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_delay_s = max_delay_us / 1e6
        self.inline = inline_when_idle and max_delay_us == 0
        self._queue: deque[_Group] = deque()
        self._rows_waiting = 0
        self._wake = asyncio.Event()
        self._closed = False
        self.last_run = time.perf_counter()
        self.log = get_logger()

    @property
    def busy(self) -> bool:
        """Groups are waiting for a model run."""
        return bool(self._queue)

    def submit(
        self, model: ServedModel, x: np.ndarray, then: Callable[[BatchResult], None] | None = None
    ) -> asyncio.Future[BatchResult]:
        """Queue rows x [n, rows, n_features] float32 for ``model``; the future gets outputs [n, k] (it is
        already done when the group ran inline). ``then(result)`` runs right after the model run."""
        fut: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        if self._closed:
            fut.set_exception(RuntimeError("inference server is shutting down"))
            return fut
        idle = not self._queue
        self._queue.append(_Group(model, x, fut, [], then=then))
        self._rows_waiting += len(x)
        if self.inline and idle and len(x) <= self.max_batch:
            self._run_once()  # nothing to batch with: run now, in the caller's loop turn
        else:
            self._wake.set()
        return fut

    async def run(self) -> None:
        """The batcher loop; cancel it to stop (waiting groups then fail)."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await asyncio.sleep(0)  # one loop turn: ready work from other streams joins in
                if self.max_delay_s > 0 and self._rows_waiting < self.max_batch:
                    deadline = time.perf_counter() + self.max_delay_s
                    while self._rows_waiting < self.max_batch and time.perf_counter() < deadline:
                        await asyncio.sleep(0)
                while self._queue:
                    self._run_once()
                    await asyncio.sleep(0)  # let writers and readers run between big runs
        finally:
            self._closed = True
            for g in self._queue:
                if not g.future.done():
                    g.future.set_exception(RuntimeError("inference server is shutting down"))
            self._queue.clear()

    def _run_once(self) -> None:
        while self._queue and self._queue[0].future.cancelled():  # its stream is gone
            self._drop(self._queue[0])
        if not self._queue:
            return
        model = self._queue[0].model
        take: list[tuple[_Group, int, int]] = []  # group, start row in group, row count
        n = 0
        for g in self._queue:
            if g.model is not model or n >= self.max_batch:
                break
            start = g.filled
            k = min(len(g.x) - start, self.max_batch - n)
            take.append((g, start, k))
            n += k
        xs = [g.x[s : s + k] for g, s, k in take]
        x = xs[0] if len(xs) == 1 else np.concatenate(xs)
        t0 = time.perf_counter()
        try:
            y = model.run(x)
        except Exception as e:  # ORT errors: fail these groups, keep the batcher alive
            self.log.error("model run failed", error=str(e), rows=n, model=model.name, version=model.version)
            for g, _, _ in take:
                self._drop(g)
                if not g.future.done():
                    g.future.set_exception(e)
            return
        self.last_run = time.perf_counter()
        elapsed = self.last_run - t0
        done_us = time.time_ns() // 1000
        off = 0
        for g, _, k in take:
            g.parts.append(y[off : off + k])
            off += k
            g.filled += k
            self._rows_waiting -= k
            if g.filled == len(g.x):
                self._queue.popleft()
                if not g.future.done():
                    out = g.parts[0] if len(g.parts) == 1 else np.concatenate(g.parts)
                    result = BatchResult(out, done_us)
                    g.future.set_result(result)
                    if g.then is not None:
                        try:
                            g.then(result)
                        except Exception as e:  # a failing follow-up must not stop the batcher
                            self.log.error("after-run callback failed", error=repr(e), model=model.name)
        # Counted after the follow-ups (the signals): nothing they send depends on these counts, and
        # the hop to execution is shorter without them in front (docs/benchmarks.md).
        self.metrics.model_run_seconds.observe(elapsed)
        self.metrics.batch_size.observe(n)
        self.metrics.predictions.labels(model.name).inc(n)
        self.manager.predictions_total += n

    def _drop(self, g: _Group) -> None:
        self._queue.remove(g)
        self._rows_waiting -= len(g.x) - g.filled
