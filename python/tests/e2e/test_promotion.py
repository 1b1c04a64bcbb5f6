"""Automatic promotion on live bars, end to end (issue #16, ADR 0097): the real inference server serves
models:/<name>@champion from a real MLflow store (sqlite + artifact folder) with the @challenger in
shadow; real GBPUSD M1 bars from shared/data stream through one StreamPredict call; the promotion test
of the challenger's per-bar net returns against the champion's (one-sided Diebold-Mariano, Newey-West)
is read over gRPC with the token by `kairos models promote --if-significant` and by `kairos-train loop`
with ``[auto_promote]``.

The models are the test fixture (trained on real GBPUSD bars) with two decision policies: the card's
own (it rarely trades on these bars) and a "wild" one whose entry threshold is 1/1000 of it (it trades
on every flicker of edge and pays the spread each time). On 3,000 bars the wild champion's losses are
not yet distinguishable from noise (kept), on 20,000 the card's policy is significantly better
(promoted: the alias moves, the server hot-swaps under the running stream); then the wild policy as
the new challenger against that champion is not promoted, and nothing moves."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tests.inference.harness import (
    MODEL_DIR,
    TOKEN,
    ServerThread,
    StreamClient,
    channel,
    load_gbpusd_m1,
    metric,
    proto_bars,
    server_config,
    with_card,
)
from tests.inference.test_models import NAME, Registry
from typer.testing import CliRunner

from kairos.cli import app
from kairos.features import ModelCard
from kairos.inference.auth import with_token
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.stack import models as lifecycle
from kairos.stack import processes, replay, services
from kairos.stack.loopback import free_port, wait_for
from kairos.training.loop import LoopConfig, run_loop

pytestmark = pytest.mark.slow


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    r = Registry(tmp_path)
    yield r
    r.mlflow.set_tracking_uri(None)
    r.mlflow.set_registry_uri(None)


def _models(srv: ServerThread) -> dict[str, pb.ModelStatus]:
    with channel(srv.target) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        resp: pb.GetModelStatusResponse = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10)
    return {m.role: m for m in resp.models}


def _promote(reg: Registry, srv: ServerThread, token_file: Path) -> tuple[int, str]:
    res = CliRunner().invoke(
        app,
        [
            "models",
            "promote",
            NAME,
            "--if-significant",
            "--tracking-uri",
            reg.uri,
            "--inference-addr",
            srv.target,
            "--token-file",
            str(token_file),
        ],
        env={"COLUMNS": "300"},
    )
    return res.exit_code, res.output


def test_a_significant_challenger_is_promoted_and_a_worse_one_is_not(
    reg: Registry, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    model_path = MODEL_DIR / "model.onnx"
    card = ModelCard.from_onnx(model_path)
    assert card.policy is not None
    wild = with_card(
        model_path,
        tmp_path / "wild" / "model.onnx",
        version="wild",
        policy=dataclasses.replace(card.policy, entry_edge=card.policy.entry_edge / 1000),
    )
    v_wild = reg.register(wild)
    v_card = reg.register(model_path)
    reg.point("champion", v_wild)
    reg.point("challenger", v_card)
    token_file = tmp_path / "inference.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)

    srv = ServerThread(
        server_config(
            f"models:/{NAME}@champion",
            tracking_uri=reg.uri,
            poll_interval_s=0.2,
            shadow_models=(f"models:/{NAME}@challenger",),
            promotion_min_bars=1000,
            promotion_alpha=0.01,
        )
    ).start()
    bars = proto_bars(load_gbpusd_m1(30_000))
    c = StreamClient(srv.target)
    sent = 0
    served: list[str] = []

    def stream_to(n: int) -> None:
        nonlocal sent
        for k in range(sent, n, 100):
            served.extend(
                p.model_version
                for p in c.ask(
                    pb.StreamPredictRequest(request_id=k, bars=bars[k : min(k + 100, n)])
                ).predictions
            )
        sent = n

    def accounted(challenger: str) -> pb.PromotionTest:
        """Waits until the shadow worker (it runs behind the stream) has accounted every bar streamed so
        far: the challenger is in shadow and its paired bar count stops moving."""
        last = [-1]

        def done() -> bool:
            time.sleep(0.3)
            st = _models(srv).get("shadow")
            n = st.promotion.bars if st is not None and st.model_version == challenger else -1
            settled = n > 0 and n == last[0]
            last[0] = n
            return settled

        wait_for(done, 60, "the shadow accounting to catch up")
        return _models(srv)["shadow"].promotion

    try:
        # 1. 3,000 bars: the record is not conclusive yet; nothing moves.
        stream_to(3000)
        early = accounted(v_card)
        print(f"3,000 bars: {early.bars} paired, t {early.statistic:.2f}, p {early.p_value:.4g}")
        assert early.bars > 2000 and not early.significant, early
        code, out = _promote(reg, srv, token_file)
        assert code == 2 and "not promoted: not significant" in out, out
        assert {r.version: r.aliases for r in lifecycle.list_versions(reg.uri, NAME)} == {
            v_card: ["challenger"],
            v_wild: ["champion"],
        }

        # 2. `kairos-train loop` with [auto_promote]: its round (which fails here on a missing data file:
        # promotion does not depend on it) checks first and keeps the champion (3,000 bars are not
        # enough); then, waiting for the next round, it checks every 200 ms while the stream goes on to
        # 20,000 bars, and promotes as soon as the test is significant.
        port = free_port()
        (tmp_path / "loop.toml").write_text(
            f'[schedule]\ninterval = "6h"\n[data]\nsources = ["{tmp_path / "gbpusd-missing.csv"}"]\n'
            f'[register]\nname = "{NAME}"\ntracking_uri = "{reg.uri}"\n'
            f'[loop]\ndir = "loop"\nmetrics_addr = "127.0.0.1:{port}"\n'
            f'[auto_promote]\nenabled = true\ninference_addr = "{srv.target}"\n'
            'token_file = "inference.token"\ninterval = "200ms"\n'
        )
        cfg = LoopConfig.load(tmp_path / "loop.toml")
        stop = threading.Event()
        loop = threading.Thread(target=run_loop, args=(cfg,), kwargs={"stop": stop.is_set}, daemon=True)
        capfd.readouterr()
        loop.start()
        try:
            wait_for(lambda: (cfg.dir / "history.jsonl").exists(), 30, "the loop's first round")
            stream_to(20_000)
            wait_for(
                lambda: lifecycle.promotion_decision(reg.uri, NAME, srv.target, TOKEN).champion == v_card,
                30,
                "the loop to promote the challenger",
            )
        finally:
            stop.set()
            loop.join(10)
        assert not loop.is_alive()
        (first,) = [json.loads(x) for x in (cfg.dir / "history.jsonl").read_text().splitlines()]
        assert first["status"] == "data_error" and not first["promotion"]["promoted"]
        assert first["promotion"]["reason"].startswith("not significant: "), first["promotion"]
        # Never silently: a JSON log line per decision with its reason, the loop's counter, the tags.
        logged = capfd.readouterr().err
        assert '"event": "promotion_kept"' in logged and '"event": "promotion"' in logged, logged
        assert '"component": "train-loop"' in logged
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            loop_metrics = r.read().decode()
        assert metric(loop_metrics, "kairos_train_promotions_total", model=NAME, decision="promoted") == 1
        assert metric(loop_metrics, "kairos_train_promotions_total", model=NAME, decision="kept") >= 1
        versions = {r.version: r for r in lifecycle.list_versions(reg.uri, NAME)}
        assert versions[v_card].aliases == ["champion"] and versions[v_wild].aliases == ["previous-champion"]
        assert versions[v_card].tags["kairos.promoted_by"] == "significance test"
        test = json.loads(versions[v_card].tags["kairos.promotion_test"])
        print(
            f"promoted at: {test['bars']} paired bars, d {test['mean_difference']:.3g}, "
            f"t {test['statistic']:.2f}, p {test['p_value']:.4g}"
        )
        assert test["significant"] and test["bars"] >= 1000 and test["p_value"] <= 0.01
        assert test["mean_difference"] > 0 and test["statistic"] > 2.32
        assert "Diebold-Mariano" in test["method"] and "Newey-West" in test["method"]
        # The server hot-swaps on its alias poll, under the same running stream.
        wait_for(lambda: _models(srv)["serving"].model_version == v_card, 20, "the promoted version to serve")
        before = len(served)
        stream_to(20_500)
        assert set(served[before:]) == {v_card} and set(served[:before]) >= {v_wild}

        # 3. The wild policy again, as the challenger of the new champion: worse, never promoted.
        v_again = reg.register(wild)
        reg.point("challenger", v_again)
        # (Until the shadow poll loads it, the old challenger is the serving model and is not listed twice.)
        wait_for(
            lambda: getattr(_models(srv).get("shadow"), "model_version", "") == v_again,
            20,
            "the new challenger in shadow",
        )
        stream_to(30_000)
        worse = accounted(v_again)
        print(f"wild challenger: {worse.bars} paired, t {worse.statistic:.2f}, p {worse.p_value:.4g}")
        assert worse.bars > 9000 and worse.mean_difference < 0 and worse.p_value > 0.5, worse
        aliases = {r.version: r.aliases for r in lifecycle.list_versions(reg.uri, NAME)}
        code, out = _promote(reg, srv, token_file)
        assert code == 2 and "not significant" in out, out
        assert {r.version: r.aliases for r in lifecycle.list_versions(reg.uri, NAME)} == aliases
        assert _models(srv)["serving"].model_version == v_card
    finally:
        c.close()
        srv.stop()


def test_the_stack_promotes_a_significant_challenger_on_bars_replayed_through_the_collector(
    reg: Registry, tmp_path: Path
) -> None:
    """The same decision through the stack `kairos up` starts (its service specs, real processes): the
    real GBPUSD M1 file replayed through the bridge library into the collector, which builds the bars
    and streams them to the inference process (champion from the registry, challenger in shadow,
    passed like `kairos up --shadow-models`); `kairos models promote --if-significant` with the run
    directory's token moves the alias, and the inference process hot-swaps."""
    model_path = MODEL_DIR / "model.onnx"
    card = ModelCard.from_onnx(model_path)
    assert card.policy is not None
    wild = with_card(
        model_path,
        tmp_path / "wild" / "model.onnx",
        version="wild",
        policy=dataclasses.replace(card.policy, entry_edge=card.policy.entry_edge / 1000),
    )
    v_wild, v_card = reg.register(wild), reg.register(model_path)
    reg.point("champion", v_wild)
    reg.point("challenger", v_card)
    settings = services.StackSettings(
        ports=services.Ports.free(),
        run_dir=tmp_path / "run",
        model=f"models:/{NAME}@champion",
        mlflow_uri=reg.uri,
        shadow_models=(f"models:/{NAME}@challenger",),
        inference_args=("--promotion-alpha=0.01",),
    )
    binaries = services.build_go_binaries(settings.bin_dir)
    col, inf = services.specs(settings, binaries)[:2]
    col = dataclasses.replace(col, argv=[*col.argv, "--bar-periods=M1"])
    data = replay.load(str(services.SHARED_DATA / "gbpusd-m1-bid-2012.csv"), symbol="GBPUSD", strict=True)
    with processes.Stack(settings.run_dir) as stack:
        stack.start_all([col, inf])
        services.wait_pipeline_ready(settings)
        res = replay.replay(
            data,
            collector=f"127.0.0.1:{settings.ports.collector_bridge}",
            bridge_key=settings.ensure_bridge_key(),
            speed=40_000,
            batch=500,
        )
        assert res.lost == 0
        token = settings.credentials().token("inference")

        def shadow() -> pb.ModelStatus | None:
            with with_token(grpc.insecure_channel(inf.grpc_addr), token) as ch:
                stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
                resp = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10)
            return next((m for m in resp.models if m.role == "shadow"), None)

        last = [-1]

        def settled() -> bool:  # the shadow worker has accounted every bar the collector sent
            time.sleep(0.5)
            st = shadow()
            n = st.promotion.bars if st is not None else -1
            done = n > 0 and n == last[0]
            last[0] = n
            return done

        wait_for(settled, 60, "the shadow accounting of the replayed bars")
        st = shadow()
        assert st is not None and st.model_version == v_card
        test = st.promotion
        print(f"stack: {test.bars} paired bars, t {test.statistic:.2f}, p {test.p_value:.4g}")
        assert test.bars > 20_000 and test.significant, test
        res_cli = CliRunner().invoke(
            app,
            [
                "models",
                "promote",
                NAME,
                "--if-significant",
                "--tracking-uri",
                reg.uri,
                "--inference-addr",
                inf.grpc_addr,
                "--run-dir",
                str(settings.run_dir),
            ],
            env={"COLUMNS": "300"},
        )
        assert res_cli.exit_code == 0 and f"version {v_wild} -> {v_card}" in res_cli.output, res_cli.output

        def serving() -> str:
            with with_token(grpc.insecure_channel(inf.grpc_addr), token) as ch:
                stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
                resp = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10)
            return next(m.model_version for m in resp.models if m.role == "serving")

        wait_for(lambda: serving() == v_card, 30, "the inference process to serve the promoted version")
