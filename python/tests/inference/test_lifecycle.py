"""`kairos models`: promote and rollback move the MLflow aliases (real sqlite registry) and the real
inference server serving models:/<name>@champion hot-swaps to each, while a stream keeps running."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import ServerThread, StreamClient, proto_bars, with_card
from tests.inference.test_models import NAME, Registry, _status
from typer.testing import CliRunner

from kairos.cli import app
from kairos.inference.v1 import inference_pb2 as pb
from kairos.stack import models as lifecycle
from kairos.stack.loopback import wait_for


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    # mlflow.set_*_uri also export MLFLOW_*_URI; monkeypatch puts the environment back afterwards.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    r = Registry(tmp_path)
    yield r
    r.mlflow.set_tracking_uri(None)
    r.mlflow.set_registry_uri(None)


def kairos(*args: str) -> str:
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    return res.output


def test_promote_and_rollback_hot_swap_the_served_champion(
    reg: Registry,
    model_path: Path,
    start_server: Callable[..., ServerThread],
    gbpusd: pd.DataFrame,
    tmp_path: Path,
) -> None:
    v1 = reg.register(model_path)
    v2 = reg.register(with_card(model_path, tmp_path / "v2" / "model.onnx", version="challenger-build"))
    reg.point("champion", v1)
    reg.point("challenger", v2)
    srv = start_server(f"models:/{NAME}@champion", tracking_uri=reg.uri, poll_interval_s=0.2)
    assert _status(srv).model_version == v1
    bars = proto_bars(gbpusd.iloc[:600])
    c = StreamClient(srv.target)
    try:
        served = [
            p.model_version
            for k in range(0, 300, 50)
            for p in c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 50])).predictions
        ]
        assert set(served) == {v1}

        out = kairos("models", "promote", NAME, "--tracking-uri", reg.uri)
        assert f"version {v1} -> {v2}" in out
        aliases = {r.version: r.aliases for r in lifecycle.list_versions(reg.uri, NAME)}
        assert aliases == {v2: ["champion"], v1: ["previous-champion"]}  # no longer a challenger
        wait_for(lambda: _status(srv).model_version == v2, 20, "the promoted version to serve")
        resp = c.ask(pb.StreamPredictRequest(request_id=300, bars=bars[300:350]))  # the same stream
        assert {p.model_version for p in resp.predictions} == {v2}

        out = kairos("models", "rollback", NAME, "--tracking-uri", reg.uri)
        assert f"version {v2} -> {v1} (rolled back)" in out
        wait_for(lambda: _status(srv).model_version == v1, 20, "the rolled-back version to serve")
        resp = c.ask(pb.StreamPredictRequest(request_id=350, bars=bars[350:400]))
        assert {p.model_version for p in resp.predictions} == {v1}
    finally:
        c.close()

    listing = kairos("models", "list", NAME, "--tracking-uri", reg.uri)
    assert "champion" in listing and "previous-champion" in listing and NAME in listing
    res = CliRunner().invoke(app, ["models", "rollback", "kairos-nothing", "--tracking-uri", reg.uri])
    assert res.exit_code == 1 and "no @previous-champion" in res.output
