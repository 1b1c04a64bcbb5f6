"""Micro-batcher specs: rows of different requests share a model run, never across model versions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from kairos.inference.batcher import MicroBatcher
from kairos.inference.metrics import Metrics
from kairos.inference.model import ModelManager, ModelSource, ServedModel, build_served_model
from kairos.inference.pipeline import pipeline_spec


def _model(path: Path, version: str) -> ServedModel:
    return build_served_model(
        path, name="m", version=version, source_uri=str(path), pipeline=pipeline_spec(), max_batch=8
    )


def test_groups_from_different_streams_share_runs_of_at_most_max_batch_and_versions_never_mix(
    model_path: Path,
) -> None:
    a, b = _model(model_path, "a"), _model(model_path, "b")
    metrics = Metrics()
    manager = ModelManager(ModelSource(str(model_path), "", pipeline_spec(), 8), metrics, 0)

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(manager, metrics, max_batch=8, max_delay_us=0)
        task = asyncio.create_task(batcher.run())
        rng = np.random.default_rng(7)
        xs = [rng.normal(size=(n, a.rows, a.n_features)).astype(np.float32) for n in (3, 4, 6, 2)]
        # Submitted in one go (as several streams' readers would between two loop turns): a, a, a, b.
        futs = [
            batcher.submit(a, xs[0]),
            batcher.submit(a, xs[1]),
            batcher.submit(a, xs[2]),
            batcher.submit(b, xs[3]),
        ]
        results = await asyncio.wait_for(asyncio.gather(*futs), 10)
        task.cancel()
        for x, r in zip(xs, results, strict=True):
            np.testing.assert_allclose(r.outputs, a.run(x), atol=1e-6)
        return [r.outputs for r in results]

    asyncio.run(scenario())
    # 13 rows for version a in runs of at most 8 (8 + 5), then 2 rows for b alone: 3 runs.
    samples = {
        s.name: s.value for s in next(iter(metrics.batch_size.collect())).samples if "bucket" not in s.name
    }
    assert samples["kairos_inference_batch_size_sum"] == 15
    assert samples["kairos_inference_batch_size_count"] == 3
    assert manager.predictions_total == 15


def test_a_max_delay_lets_rows_that_arrive_later_join_the_same_run(model_path: Path) -> None:
    a = _model(model_path, "a")
    metrics = Metrics()
    manager = ModelManager(ModelSource(str(model_path), "", pipeline_spec(), 8), metrics, 0)
    x = np.zeros((1, a.rows, a.n_features), dtype=np.float32)

    async def scenario() -> None:
        # 0.5 s of patience: the second row, 20 ms later, must still make the same run.
        batcher = MicroBatcher(manager, metrics, max_batch=8, max_delay_us=500_000)
        task = asyncio.create_task(batcher.run())
        first = batcher.submit(a, x)
        await asyncio.sleep(0.02)
        second = batcher.submit(a, x)
        await asyncio.wait_for(asyncio.gather(first, second), 10)
        task.cancel()

    asyncio.run(scenario())
    samples = {
        s.name: s.value for s in next(iter(metrics.batch_size.collect())).samples if "bucket" not in s.name
    }
    assert samples["kairos_inference_batch_size_count"] == 1
    assert samples["kairos_inference_batch_size_sum"] == 2


def test_inline_a_group_submitted_to_an_idle_batcher_runs_at_once_and_later_ones_are_batched(
    model_path: Path,
) -> None:
    a = _model(model_path, "a")
    metrics = Metrics()
    manager = ModelManager(ModelSource(str(model_path), "", pipeline_spec(), 8), metrics, 0)
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(n, a.rows, a.n_features)).astype(np.float32) for n in (2, 3, 4, 9)]
    seen: list[tuple[str, int, bool]] = []

    async def scenario() -> None:
        batcher = MicroBatcher(manager, metrics, max_batch=8, max_delay_us=0, inline_when_idle=True)
        task = asyncio.create_task(batcher.run())
        # Idle: the model runs inside submit, and the follow-up with it, before submit returns.
        first = batcher.submit(a, xs[0], then=lambda r: seen.append(("first", len(r.outputs), True)))
        assert first.done() and seen == [("first", 2, True)]
        np.testing.assert_allclose(first.result().outputs, a.run(xs[0]), atol=1e-6)
        # More than max_batch rows never run inline: the batcher task splits them (8 + 1)...
        big = batcher.submit(a, xs[3], then=lambda r: seen.append(("big", len(r.outputs), big.done())))
        # ...and groups that arrive while it waits join its runs instead of running inline.
        second = batcher.submit(a, xs[1])
        third = batcher.submit(a, xs[2])
        assert not big.done() and not second.done() and not third.done()
        results = await asyncio.wait_for(asyncio.gather(big, second, third), 10)
        task.cancel()
        for x, r in zip((xs[3], xs[1], xs[2]), results, strict=True):
            np.testing.assert_allclose(r.outputs, a.run(x), atol=1e-6)

    asyncio.run(scenario())
    assert seen == [("first", 2, True), ("big", 9, True)]
    samples = {
        s.name: s.value for s in next(iter(metrics.batch_size.collect())).samples if "bucket" not in s.name
    }
    # 2 inline, then 8 of the big group, then its last row with second and third (1 + 3 + 4 = 8).
    assert samples["kairos_inference_batch_size_count"] == 3
    assert samples["kairos_inference_batch_size_sum"] == 2 + 9 + 3 + 4


def test_a_positive_max_delay_turns_the_inline_path_off(model_path: Path) -> None:
    a = _model(model_path, "a")
    metrics = Metrics()
    manager = ModelManager(ModelSource(str(model_path), "", pipeline_spec(), 8), metrics, 0)
    x = np.zeros((1, a.rows, a.n_features), dtype=np.float32)

    async def scenario() -> None:
        batcher = MicroBatcher(manager, metrics, max_batch=8, max_delay_us=1_000, inline_when_idle=True)
        task = asyncio.create_task(batcher.run())
        fut = batcher.submit(a, x)
        assert not fut.done()
        await asyncio.wait_for(fut, 10)
        task.cancel()

    asyncio.run(scenario())


def test_a_runs_follow_up_goes_before_the_run_is_counted_and_every_run_is_counted_after(
    model_path: Path,
) -> None:
    # The follow-up is what sends the signals: the run's counts (predictions, batch size, run time)
    # come after it, nothing it sends depends on them (docs/benchmarks.md, eighth session).
    a = _model(model_path, "a")
    metrics = Metrics()
    manager = ModelManager(ModelSource(str(model_path), "", pipeline_spec(), 8), metrics, 0)
    predictions = metrics.predictions.labels("m")
    seen: list[tuple[int, float, int]] = []

    async def scenario() -> None:
        batcher = MicroBatcher(manager, metrics, max_batch=8, max_delay_us=0, inline_when_idle=True)
        task = asyncio.create_task(batcher.run())
        x = np.random.default_rng(3).normal(size=(2, a.rows, a.n_features)).astype(np.float32)
        for _ in range(2):  # inline (idle), then again
            fut = batcher.submit(
                a,
                x,
                then=lambda r: seen.append(
                    (manager.predictions_total, predictions._value.get(), len(r.outputs))
                ),
            )
            await asyncio.wait_for(fut, 10)
        task.cancel()

    asyncio.run(scenario())
    assert seen == [(0, 0.0, 2), (2, 2.0, 2)]
    assert manager.predictions_total == 4 and predictions._value.get() == 4.0
    count = next(s.value for s in metrics.batch_size.collect()[0].samples if s.name.endswith("_count"))
    assert count == 2
