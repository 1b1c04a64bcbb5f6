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
