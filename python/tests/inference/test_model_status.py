"""GetModelStatus describes every served model (issues #16 and #19): the serving one and each shadow
challenger, with its role, its card's gate verdict, its live paper figures summed over symbols and
its drift against its own card's training distribution. Real server, real bars, real models."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from tests.inference.harness import (
    TOKEN,
    ServerThread,
    StreamClient,
    channel,
    load_gbpusd_m1,
    metric,
    proto_bars,
    with_card,
)

from kairos.features import SCHEMA, ModelCard, compute_features
from kairos.features.drift import distribution
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.stack.loopback import wait_for
from kairos.stack.serving import serving_models

COLS = ["time", "open", "high", "low", "close", "spread", "tick_volume"]


def _status(target: str, name: str = "") -> list[pb.ModelStatus]:
    with channel(target) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        resp = stub.GetModelStatus(pb.GetModelStatusRequest(model_name=name), timeout=5)
    return list(resp.models)


def _stream(srv: ServerThread, bars: list) -> list[pb.Prediction]:  # type: ignore[type-arg]
    c = StreamClient(srv.target)
    preds: list[pb.Prediction] = []
    try:
        for k in range(0, len(bars), 50):
            preds += c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 50])).predictions
    finally:
        c.close()
    return preds


def test_the_serving_model_and_every_challenger_with_live_figures_and_drift(
    model_path: Path, start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    gbpusd = load_gbpusd_m1()
    card = ModelCard.from_onnx(model_path)
    assert card.policy is not None
    # The champion's training distribution is the first 20,000 bars; the challenger's the 10,000 bars
    # before the streamed ones (a different card, so a different dissimilarity for the same rows).
    champion_dist = distribution(compute_features(gbpusd.iloc[:20000][COLS]), SCHEMA.names)
    challenger_dist = distribution(compute_features(gbpusd.iloc[10000:20000][COLS]), SCHEMA.names)
    champion = with_card(model_path, tmp_path / "c" / "model.onnx", feature_distribution=champion_dist)
    challenger = with_card(
        model_path,
        tmp_path / "eager" / "model.onnx",
        version="eager",
        policy=dataclasses.replace(card.policy, entry_edge=card.policy.entry_edge / 5),
        feature_distribution=challenger_dist,
        metrics={
            "gate": {"passed": False, "reason": "FAILED net return -3.0 bp", "conditions": {}},
            "sharpe": -0.4,
            "sharpe_ci": [-1.9, 1.1],
            "sharpe_ci_level": 0.95,
            "dsr": 0.12,
            "n_trials": 3,
            "net_return": -0.0003,
        },
    )
    plain = with_card(model_path, tmp_path / "plain" / "model.onnx", version="plain")  # no distribution
    srv = start_server(
        champion,
        shadow_models=(str(challenger), str(plain), str(tmp_path / "missing.onnx")),
        drift_window=200,
    )
    # Before any bar: every model listed, zero figures, no dissimilarity seen yet.
    before = _status(srv.target)
    assert [m.role for m in before] == ["serving", "shadow", "shadow", "shadow"]
    assert all(m.HasField("shadow") and m.shadow.bars == 0 for m in before[:3])
    preds = _stream(srv, proto_bars(gbpusd.iloc[20000:21000]))
    assert len(preds) > 500
    label = {v: f"{card.name}/{v}" for v in (card.version, "eager", "plain")}

    def accounted() -> bool:
        return all(m.shadow.bars == len(preds) - 1 for m in _status(srv.target)[:3])

    wait_for(accounted, 20, "every model accounted on every bar")
    serving, eager, no_dist, missing = _status(srv.target)
    text = srv.metrics_text()

    # Role, version, source and the card's verdict.
    assert (serving.role, serving.model_version, serving.source_uri) == (
        "serving",
        card.version,
        str(champion),
    )
    assert not serving.HasField("validation")  # the fixture's card carries no verdict
    assert (eager.role, eager.model_version, eager.source_uri) == ("shadow", "eager", str(challenger))
    assert not eager.validation.gate_passed and eager.validation.verdict == "FAILED net return -3.0 bp"
    assert (eager.validation.sharpe_ci_low, eager.validation.sharpe_ci_high) == (-1.9, 1.1)
    assert eager.predictions_total == len(preds)  # the challenger ran on every predicted row
    # The live figures are the shadow books' (the metrics carry the same numbers).
    for m in (serving, eager, no_dist):
        lab = label[m.model_version]
        assert m.shadow.net_return == pytest.approx(
            metric(text, "kairos_inference_shadow_net_return", model=lab)
        )
        assert m.shadow.sharpe == pytest.approx(metric(text, "kairos_inference_shadow_sharpe", model=lab))
        assert m.shadow.turnover == pytest.approx(metric(text, "kairos_inference_shadow_turnover", model=lab))
        assert m.shadow.trades == metric(text, "kairos_inference_shadow_trades", model=lab)
    assert eager.shadow.trades > serving.shadow.trades  # a lower entry threshold trades more
    # Drift: each model against its own card.
    for m, dist in ((serving, champion_dist), (eager, challenger_dist)):
        assert m.HasField("drift"), m.model_version
        d = m.drift
        assert d.dissimilarity_threshold == pytest.approx(dist["di"]["q999"])
        assert d.dissimilarity_last > 0
        assert d.psi_max > 0 and d.psi_max_feature in SCHEMA.names
        ood = metric(text, "kairos_inference_out_of_distribution_total", model=label[m.model_version])
        assert d.out_of_distribution_total == ood
        psi = metric(
            text, "kairos_inference_feature_psi", model=label[m.model_version], feature=d.psi_max_feature
        )
        assert d.psi_max == pytest.approx(psi)
        assert d.abstained_total == 0
    assert serving.drift.dissimilarity_threshold != eager.drift.dissimilarity_threshold
    assert not no_dist.HasField("drift")  # a card without a training distribution
    # A challenger that never loaded is listed with its error, and serves nothing.
    assert missing.role == "shadow" and missing.state == pb.MODEL_STATE_FAILED
    assert "missing.onnx" in missing.last_error and not missing.HasField("shadow")
    # The typed view the CLI and the console use.
    views = serving_models(srv.target, TOKEN)
    assert [v.role for v in views] == ["serving", "shadow", "shadow", "shadow"]
    assert views[1].shadow is not None and views[1].shadow.bars == len(preds) - 1
    assert views[1].drift is not None and views[1].drift.psi_max_feature == eager.drift.psi_max_feature
    assert views[2].drift is None and views[3].shadow is None
    # Selecting by name: the challengers share the champion's registered name.
    assert len(_status(srv.target, card.name)) == 3
    with pytest.raises(grpc.RpcError) as exc:
        _status(srv.target, "no-such-model")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


def test_without_shadow_models_only_the_serving_model_without_paper_figures(
    model_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    srv = start_server(model_path)
    _stream(srv, proto_bars(load_gbpusd_m1(600)))
    (m,) = _status(srv.target)
    assert m.role == "serving" and m.predictions_total > 0
    assert not m.HasField("shadow")  # shadow evaluation is off
    assert not m.HasField("drift")  # the fixture's card carries no training distribution
