"""Model expiry (ADR 0098) in the real server with a real MLflow registry (sqlite + artifact folder):
the serving champion past --model-max-age-days is flagged (ModelStatus.expired, the metric, the log),
with --abstain-expired its signals go flat (real NATS subscriber) and are counted; a newer version
registered after passing the gate ends the flag, a newer one that failed the gate does not; the
registry's created time reaches ModelStatus.created_time_us; `kairos models list` shows the same rule."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.inference.harness import ServerThread, StreamClient, channel, metric, proto_bars, with_card
from tests.inference.test_models import NAME, Registry
from tests.inference.test_signals import Subscriber
from typer.testing import CliRunner

from kairos.cli import app
from kairos.inference.expiry import DAY_US, is_expired
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.stack import models as lifecycle
from kairos.stack.loopback import wait_for

MAX_AGE_S = 8.0


def test_the_expiry_rule() -> None:
    now = 1_000 * DAY_US
    assert not is_expired(now - 29 * DAY_US, 0, 30, now)
    assert is_expired(now - 31 * DAY_US, 0, 30, now)
    assert not is_expired(now - 31 * DAY_US, now - 2 * DAY_US, 30, now)  # a newer passing retrain
    assert is_expired(now - 90 * DAY_US, now - 31 * DAY_US, 30, now)  # ...itself too old
    assert not is_expired(now - 90 * DAY_US, 0, 0, now)  # 0 disables
    assert not is_expired(0, 0, 30, now)  # creation unknown: never


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    r = Registry(tmp_path)
    yield r
    r.mlflow.set_tracking_uri(None)
    r.mlflow.set_registry_uri(None)


def _register(reg: Registry, path: Path, gate_passed: bool) -> str:
    v = reg.register(path)
    run_id = reg.client.get_model_version(NAME, v).run_id
    reg.client.set_tag(run_id, "gate_passed", str(gate_passed))  # as kairos-train tags its runs
    return v


def _serving(srv: ServerThread) -> pb.ModelStatus:
    with channel(srv.target) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        resp: pb.GetModelStatusResponse = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10)
    return next(m for m in resp.models if m.role == "serving")


def test_an_old_champion_is_flagged_demoted_to_flat_and_cleared_by_a_newer_passing_version(
    reg: Registry,
    model_path: Path,
    tmp_path: Path,
    nats_url: str,
    start_server: Callable[..., ServerThread],
    gbpusd: object,
) -> None:
    v1 = _register(reg, model_path, gate_passed=True)
    reg.point("champion", v1)
    registered_us = int(reg.client.get_model_version(NAME, v1).creation_timestamp) * 1000
    sub = Subscriber(nats_url, "kairos.signal.>")
    srv = start_server(
        f"models:/{NAME}@champion",
        tracking_uri=reg.uri,
        poll_interval_s=0.2,
        nats_url=nats_url,
        model_max_age_days=MAX_AGE_S / 86_400,
        abstain_expired=True,
    )
    wait_for(lambda: srv.server is not None and srv.server.publisher is not None and srv.server.publisher.nc)
    st = _serving(srv)
    assert st.created_time_us == registered_us and not st.expired
    bars = proto_bars(gbpusd.iloc[:600])  # type: ignore[attr-defined]
    c = StreamClient(srv.target)
    try:
        fresh = c.ask(pb.StreamPredictRequest(request_id=1, bars=bars[:300])).predictions
        wait_for(lambda: sub.pump() >= len(fresh), 10, "the fresh model's signals")
        assert any(list(s.outputs) != [0.0, 1.0, 0.0] for _, s in sub.got)  # the model's own

        # Past the maximum age with no newer passing version: flagged, and its signals go flat.
        wait_for(lambda: _serving(srv).expired, MAX_AGE_S + 20, "the champion to expire")
        label = f"{NAME}/{v1}"
        wait_for(lambda: metric(srv.metrics_text(), "kairos_inference_model_expired", model=label) == 1, 10)
        assert metric(srv.metrics_text(), "kairos_inference_model_age_seconds", model=label) > MAX_AGE_S
        sub.got.clear()
        old = c.ask(pb.StreamPredictRequest(request_id=2, bars=bars[300:450])).predictions
        assert old and any(list(p.outputs) != [0.0, 1.0, 0.0] for p in old)  # predictions stay the model's
        wait_for(lambda: sub.pump() >= len(old), 10, "the expired model's signals")
        assert all(list(s.outputs) == [0.0, 1.0, 0.0] and s.strength == 0 for _, s in sub.got)
        assert metric(srv.metrics_text(), "kairos_inference_expired_abstained_total", model=label) == len(old)

        # A newer version that failed the gate changes nothing; one that passed ends the flag.
        twin = with_card(model_path, tmp_path / "v" / "model.onnx", version="retrained")
        _register(reg, twin, gate_passed=False)
        time.sleep(1.0)  # a few refreshes (every 0.2 s)
        assert _serving(srv).expired
        _register(reg, twin, gate_passed=True)
        wait_for(lambda: not _serving(srv).expired, MAX_AGE_S / 2, "a passing retrain to clear the flag")
        assert metric(srv.metrics_text(), "kairos_inference_model_expired", model=label) == 0
        assert _serving(srv).model_version == v1  # still the champion: retraining does not promote
    finally:
        c.close()
        sub.close()

    # `kairos models list` applies the same rule to the registry: with a long maximum age nothing is
    # expired; with a tiny one the champion is, since the newer passing version too is past it.
    out = CliRunner().invoke(app, ["models", "list", NAME, "--tracking-uri", reg.uri], env={"COLUMNS": "250"})
    assert out.exit_code == 0 and "EXPIRED" not in out.output, out.output
    time.sleep(1.0)
    rows = lifecycle.list_versions(reg.uri, NAME, max_age_days=0.5 / 86_400)
    assert [r.version for r in rows if r.expired] == [v1]
    out = CliRunner().invoke(
        app,
        ["models", "list", NAME, "--tracking-uri", reg.uri, "--max-age-days", str(0.5 / 86_400)],
        env={"COLUMNS": "250"},
    )
    assert (
        out.exit_code == 0 and "EXPIRED" in out.output and f"{NAME} {v1} (@champion) is expired" in out.output
    )
