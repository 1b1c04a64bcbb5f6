"""Model source specs: MLflow alias (real sqlite registry), hot swap under a running stream, schema-hash
refusal, failed loads that keep the old version serving."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import (
    ServerThread,
    StreamClient,
    channel,
    metric,
    proto_bars,
    server_config,
    with_card,
)

from kairos.features import SCHEMA, ModelCard
from kairos.inference.model import ModelRefused
from kairos.inference.server import InferenceServer
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.stack.loopback import wait_for

NAME = "kairos-gbpusd"
WRONG_HASH = "sha256:" + "0" * 64


class Registry:
    """A real MLflow registry: sqlite store and artifact folder under tmp_path."""

    def __init__(self, root: Path) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        self.mlflow = mlflow
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.experiment = self.client.create_experiment(
            "inference-tests", artifact_location=str(root / "art")
        )

    def register(self, onnx_path: Path) -> str:
        import onnx

        card = ModelCard.from_onnx(onnx_path)
        with self.mlflow.start_run(experiment_id=self.experiment):
            info = self.mlflow.onnx.log_model(
                onnx.load(str(onnx_path)),
                name="model",
                registered_model_name=NAME,
                onnx_execution_providers=["CPUExecutionProvider"],
                save_as_external_data=False,
                pip_requirements=["onnxruntime"],
                metadata={"kairos_model_card": card.to_dict()},
            )
        return str(info.registered_model_version)

    def point(self, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(NAME, alias, version)


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    # mlflow.set_*_uri also export MLFLOW_*_URI; monkeypatch puts the environment back afterwards.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    reg = Registry(tmp_path)
    yield reg
    reg.mlflow.set_tracking_uri(None)
    reg.mlflow.set_registry_uri(None)


def _status(srv: ServerThread) -> pb.ModelStatus:
    with channel(srv.target) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        resp: pb.GetModelStatusResponse = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10)
        return resp.models[0]


def test_serves_the_version_an_alias_points_to(
    registry: Registry, model_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    v1 = registry.register(model_path)
    registry.point("champion", v1)
    srv = start_server(f"models:/{NAME}@champion", tracking_uri=registry.uri)
    st = _status(srv)
    assert (st.model_name, st.model_version, st.source_uri) == (NAME, v1, f"models:/{NAME}@champion")
    assert st.state == pb.MODEL_STATE_SERVING


def test_moving_the_alias_hot_swaps_under_a_running_stream_and_a_bad_schema_is_refused(
    registry: Registry,
    model_path: Path,
    tmp_path: Path,
    start_server: Callable[..., ServerThread],
    gbpusd: pd.DataFrame,
) -> None:
    v1 = registry.register(model_path)
    v2 = registry.register(with_card(model_path, tmp_path / "v2" / "model.onnx", version="retrained"))
    bad = registry.register(
        with_card(model_path, tmp_path / "bad" / "model.onnx", feature_schema_hash=WRONG_HASH)
    )
    registry.point("champion", v1)
    srv = start_server(f"models:/{NAME}@champion", tracking_uri=registry.uri, poll_interval_s=0.1)
    bars = iter(proto_bars(gbpusd))
    c = StreamClient(srv.target)
    versions: list[str] = []
    rid = 0

    def step() -> list[str]:
        nonlocal rid
        rid += 1
        resp = c.ask(pb.StreamPredictRequest(request_id=rid, bars=[next(bars)]))
        assert resp.request_id == rid and not resp.rejections
        got = [p.model_version for p in resp.predictions]
        versions.extend(got)
        return got

    try:
        while not versions:  # warm up on v1
            step()
        assert versions == [v1]

        registry.point("champion", v2)
        for _ in range(400):  # the poller checks every 0.1 s; each step is one round trip
            if step() == [v2]:
                break
        assert versions[-1] == v2, "alias moved but the stream never saw the new version"
        # One switch, no flapping, and the same stream carried on throughout.
        switch = versions.index(v2)
        assert set(versions[:switch]) == {v1} and set(versions[switch:]) == {v2}

        registry.point("champion", bad)
        wait_for(lambda: _status(srv).state == pb.MODEL_STATE_FAILED, 20, "the refused load")
        st = _status(srv)
        assert st.model_version == v2, "a refused model must leave the old version serving"
        assert WRONG_HASH in st.last_error and SCHEMA.hash in st.last_error
        assert step() == [v2]  # the stream still predicts with v2
    finally:
        c.close()
    text = srv.metrics_text()
    assert metric(text, "kairos_inference_model_loads_total", result="ok") == 2
    assert metric(text, "kairos_inference_model_loads_total", result="refused") == 1
    assert metric(text, "kairos_inference_model_info", model=NAME, version=v2) == 1
    assert metric(text, "kairos_inference_model_info", model=NAME, version=v1) == 0
    # The serving version's gate verdict from its card, the replaced version's gone.
    assert metric(text, "kairos_inference_model_validation_info", model=NAME, version=v2) == 1
    assert metric(text, "kairos_inference_model_validation_info", model=NAME, version=v1) == 0


def test_a_local_model_with_another_feature_schema_is_refused_at_start(
    model_path: Path, tmp_path: Path
) -> None:
    bad = with_card(model_path, tmp_path / "model.onnx", feature_schema_hash=WRONG_HASH)

    async def start() -> None:
        s = InferenceServer(server_config(bad))
        try:
            await s.start()
        finally:
            await s.stop()

    with pytest.raises(ModelRefused) as e:
        asyncio.run(start())
    assert WRONG_HASH in str(e.value) and SCHEMA.hash in str(e.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"exit_edge": 1.0}, "policy.exit_edge"),
        ({"min_hold_bars": 0}, "policy.min_hold_bars"),
        ({"move_up": float("nan")}, "policy.move_up"),
        ({"vol_feature": "no_such_feature"}, "policy.vol_feature"),
    ],
)
def test_a_card_whose_policy_cannot_be_applied_is_refused_at_load_naming_the_field(
    model_path: Path, tmp_path: Path, change: dict[str, object], field: str
) -> None:
    card = ModelCard.from_onnx(model_path)
    assert card.policy is not None
    bad = with_card(model_path, tmp_path / "model.onnx", policy=dataclasses.replace(card.policy, **change))

    async def start() -> None:
        s = InferenceServer(server_config(bad))
        try:
            await s.start()
        finally:
            await s.stop()

    with pytest.raises(ModelRefused, match=field):
        asyncio.run(start())


def test_a_replaced_local_file_is_swapped_in_and_a_broken_one_keeps_the_old_serving(
    model_path: Path, tmp_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    live = tmp_path / "live" / "model.onnx"
    live.parent.mkdir()
    shutil.copy(model_path, live)
    srv = start_server(live, poll_interval_s=0.1)
    first = _status(srv).model_version

    staged = with_card(model_path, tmp_path / "staged" / "model.onnx", version="next")
    os.replace(staged, live)  # atomic rename, as a deploy would do
    wait_for(lambda: _status(srv).model_version == "next", 20, "the new file to be served")

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    os.replace(broken, live)
    wait_for(lambda: _status(srv).state == pb.MODEL_STATE_FAILED, 20, "the broken file to fail")
    st = _status(srv)
    assert st.model_version == "next" and "cannot load" in st.last_error
    assert first != "next"


def test_a_source_that_keeps_failing_is_counted_every_poll_and_logged_once_per_episode(
    model_path: Path, tmp_path: Path
) -> None:
    """An alias a promotion removed, a file taken away: every poll fails the same way. Each failure
    is counted; the log says it once, and again only after the source has served in between."""
    from prometheus_client import generate_latest
    from structlog.testing import capture_logs

    from kairos.inference.metrics import Metrics
    from kairos.inference.model import ModelManager, ModelSource
    from kairos.inference.pipeline import pipeline_spec

    live = tmp_path / "model.onnx"
    shutil.copy(model_path, live)
    metrics = Metrics()
    mgr = ModelManager(ModelSource(str(live), "", pipeline_spec(), 8), metrics, 0)

    async def polls(n: int) -> None:
        for _ in range(n):
            await mgr.check()

    asyncio.run(mgr.load_initial())
    with capture_logs() as logs:
        live.unlink()
        asyncio.run(polls(3))
        shutil.copy(model_path, live)
        os.utime(live, ns=(1, 1))  # another fingerprint: a new version to load
        asyncio.run(polls(1))
        live.unlink()
        asyncio.run(polls(2))
    failed = [e for e in logs if e["event"] == "model load failed"]
    assert len(failed) == 2 and all("cannot read model" in e["error"] for e in failed)
    text = generate_latest(metrics.registry).decode()
    assert metric(text, "kairos_inference_model_loads_total", result="failed") == 5
    assert mgr.current is not None and mgr.state == pb.MODEL_STATE_FAILED  # the last version still serves
