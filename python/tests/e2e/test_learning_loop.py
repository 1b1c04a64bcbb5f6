"""The live learning loop end to end, in compressed time, on real data (issue #16):

a replay of the real GBPUSD M1 bars through the bridge library feeds the real collector; the recorder
fills the Parquet dataset; retraining rounds on the recorded bars register challengers (a known-good
model planted after real training, as in the training tests, so the gate passes); the real inference
server serves the champion and evaluates the challenger in shadow on the same bars; a forced promotion
hot-swaps the serving model; a rollback restores it; an honest retraining round changes nothing."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import ServerThread, StreamClient, metric, proto_bars, server_config
from tests.training.test_loop import _aliases, _oracle

from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.recording import store
from kairos.stack import models as lifecycle
from kairos.stack import processes, replay, services
from kairos.stack.loopback import wait_for
from kairos.training.loop import LoopConfig, run_round

pytestmark = pytest.mark.slow

BARS = services.SHARED_DATA / "gbpusd-m1-bid-2012.csv"
NAME = "kairos-gbpusd"


def _config(tmp: Path, root: Path, uri: str) -> LoopConfig:
    p = tmp / "loop.toml"
    p.write_text(
        f'[schedule]\ninterval = "1h"\n[data]\nsources = ["recorded:{root}:GBPUSD:M1"]\ntimeframe = "M1"\n'
        'window_days = 30\nmax_bars = 3000\n[train]\narch = "mlp"\nepochs = 2\nfolds = 2\nwindow = 8\n'
        f'hidden = 16\n[register]\nname = "{NAME}"\nalias = "challenger"\ntracking_uri = "{uri}"\n'
        '[loop]\ndir = "loop"\n'
    )
    return LoopConfig.load(p)


def _version(srv: ServerThread) -> str:
    from tests.inference.harness import channel

    with channel(srv.target) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        st: pb.GetModelStatusResponse = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10)
        return str(st.models[0].model_version)


def test_record_retrain_shadow_promote_rollback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    root = tmp_path / "recorded"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    # 1. Recording: the real bars replayed through the collector (four ticks a bar), recorded as M1 bars.
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=tmp_path / "run")
    binaries = services.build_go_binaries(settings.bin_dir)
    col = services.specs(settings, binaries)[0]
    argv = [a for a in col.argv if not a.startswith("--inference-endpoints")]
    col = dataclasses.replace(col, argv=[*argv, "--inference-endpoints=none", "--bar-periods=M1"])
    data = replay.load(str(BARS), symbol="GBPUSD", strict=True)
    with processes.Stack(settings.run_dir) as stack:
        stack.start_all([col, services.recorder_spec(settings, root)])
        res = replay.replay(
            data,
            collector=f"127.0.0.1:{settings.ports.collector_bridge}",
            bridge_key=settings.ensure_bridge_key(),
            batch=1000,
        )
        assert res.lost == 0
        n_bars = len(np.unique(data.time_msc // 60_000))
        # Every bar a later tick closed (the last one waits for the idle close or never comes).
        wait_for(lambda: len(store.read_bars(root, "GBPUSD", "M1")) >= n_bars - 1, 60, "the recorded bars")
    recorded = store.read_bars(root, "GBPUSD", "M1")
    assert recorded["time"].is_unique and len(recorded) >= n_bars - 1

    # 2. Retraining rounds on the recorded bars: v1 registered as challenger and promoted (the
    # operator's first champion), then v2 as the new challenger.
    cfg = _config(tmp_path, root, uri)
    r1 = run_round(cfg, now=datetime(2026, 1, 1, tzinfo=UTC), after_train=_oracle)
    assert r1.status == "registered", r1.reason
    lifecycle.promote(uri, NAME)
    r2 = run_round(cfg, now=datetime(2026, 1, 1, 1, tzinfo=UTC), after_train=_oracle)
    assert r2.status == "registered" and r2.version == "2", r2.reason
    assert _aliases(uri, NAME) == ({"champion": "1", "challenger": "2"}, 2)

    # 3. Serving the champion with the challenger in shadow on the same recorded bars.
    srv = ServerThread(
        server_config(
            f"models:/{NAME}@champion",
            tracking_uri=uri,
            poll_interval_s=0.2,
            shadow_models=(f"models:/{NAME}@challenger",),
        )
    ).start()
    try:
        assert _version(srv) == "1"
        df = recorded.iloc[-1200:].assign(time=lambda d: pd.to_datetime(d["time"], unit="ms", utc=True))
        df["open_time_msc"] = recorded["time"].iloc[-1200:].to_numpy()
        bars = proto_bars(df, symbol="GBPUSD")
        c = StreamClient(srv.target)
        preds: list[pb.Prediction] = []
        try:
            for k in range(0, 800, 50):
                preds += c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 50])).predictions
            assert preds and {p.model_version for p in preds} == {"1"}
            text = ""

            def accounted() -> bool:
                nonlocal text
                text = srv.metrics_text()
                return metric(text, "kairos_inference_shadow_bars", model=f"{NAME}/2", role="shadow") > 0

            wait_for(accounted, 20, "the challenger accounted in shadow")
            assert metric(text, "kairos_inference_shadow_bars", model=f"{NAME}/1", role="serving") > 0

            # 4. A forced promotion hot-swaps under the running stream; a rollback restores.
            lifecycle.promote(uri, NAME, "2")
            wait_for(lambda: _version(srv) == "2", 20, "the promoted version to serve")
            resp = c.ask(pb.StreamPredictRequest(request_id=900, bars=bars[800:850]))
            assert {p.model_version for p in resp.predictions} == {"2"}
            lifecycle.rollback(uri, NAME)
            wait_for(lambda: _version(srv) == "1", 20, "the rolled-back version to serve")
            resp = c.ask(pb.StreamPredictRequest(request_id=901, bars=bars[850:900]))
            assert {p.model_version for p in resp.predictions} == {"1"}
        finally:
            c.close()
    finally:
        srv.stop()
    before = _aliases(uri, NAME)
    assert before == ({"champion": "1", "previous-champion": "2"}, 2)

    # 5. An honest round on the recorded bars: the gate refuses and nothing moves.
    r3 = run_round(cfg, now=datetime(2026, 1, 1, 2, tzinfo=UTC))
    assert r3.status in ("gate_failed", "learned_nothing") and r3.version is None, r3
    assert _aliases(uri, NAME) == before
    history = [json.loads(x)["status"] for x in (cfg.dir / "history.jsonl").read_text().splitlines()]
    assert history == ["registered", "registered", r3.status]
