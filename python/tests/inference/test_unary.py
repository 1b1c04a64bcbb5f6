"""Predict, GetModelStatus, health and reflection specs over loopback gRPC."""

from __future__ import annotations

import math
from pathlib import Path

import grpc
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # type: ignore[import-untyped]
from grpc_status import rpc_status  # type: ignore[import-untyped]
from tests.inference.harness import ServerThread, channel, metric, offline_predictions, proto_bars

from kairos.features import SCHEMA, ModelCard, compute_features
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.marketdata.v1 import marketdata_pb2 as md


def _stub(server: ServerThread) -> tuple[grpc.Channel, inference_pb2_grpc.InferenceServiceStub]:
    ch = channel(server.target)
    return ch, inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]


def _violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    st = rpc_status.from_call(err)
    assert st is not None, "INVALID_ARGUMENT must carry google.rpc.Status details"
    out = []
    for d in st.details:
        br = error_details_pb2.BadRequest()
        assert d.Unpack(br)
        out += [(v.field, v.reason) for v in br.field_violations]
    return out


def test_predict_on_a_window_of_real_bars_equals_the_training_pipeline(
    server: ServerThread, gbpusd: pd.DataFrame, model_path: Path, model_card: ModelCard
) -> None:
    need = SCHEMA.window + model_card.window - 1
    df = gbpusd.iloc[100 : 100 + need + 20].reset_index(drop=True)
    ch, stub = _stub(server)
    with ch:
        resp = stub.Predict(
            pb.PredictRequest(symbol="GBPUSD", bars=md.BarBatch(bars=proto_bars(df)[-need:])), timeout=10
        )
    _, probs = offline_predictions(model_path, df)
    p = resp.prediction
    assert p.symbol == "GBPUSD" and p.model_name == model_card.name
    assert p.time_msc == int(df.open_time_msc.iloc[-1]) + 60_000
    np.testing.assert_allclose(p.outputs, probs[-1], atol=1e-6)


def test_predict_on_a_feature_vector_runs_the_model_on_it(
    server: ServerThread, gbpusd: pd.DataFrame, model_path: Path, model_card: ModelCard
) -> None:
    x = compute_features(gbpusd.iloc[:300])[-model_card.window :].astype(np.float32)
    ch, stub = _stub(server)
    with ch:
        resp = stub.Predict(
            pb.PredictRequest(symbol="GBPUSD", features=pb.FeatureVector(values=x.ravel().tolist())),
            timeout=10,
        )
    _, probs = offline_predictions(model_path, gbpusd.iloc[:300])
    np.testing.assert_allclose(resp.prediction.outputs, probs[-1], atol=1e-6)


@pytest.mark.parametrize(
    ("request_", "violation"),
    [
        (pb.PredictRequest(symbol="GBPUSD"), ("input", "EMPTY_REQUEST")),
        (pb.PredictRequest(symbol="", features=pb.FeatureVector(values=[1.0])), ("symbol", "INVALID_SYMBOL")),
        (
            pb.PredictRequest(symbol="GBPUSD", features=pb.FeatureVector(values=[0.5] * 3)),
            ("features.values", "WRONG_FEATURE_COUNT"),
        ),
        (
            pb.PredictRequest(symbol="GBPUSD", bars=md.BarBatch(bars=[md.Bar(symbol="GBPUSD", period_s=60)])),
            ("bars.bars", "WINDOW_TOO_SHORT"),
        ),
    ],
    ids=["no input", "empty symbol", "wrong feature count", "too few bars"],
)
def test_predict_refuses_bad_input_with_field_violations(
    server: ServerThread, request_: pb.PredictRequest, violation: tuple[str, str]
) -> None:
    ch, stub = _stub(server)
    with ch, pytest.raises(grpc.RpcError) as e:
        stub.Predict(request_, timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violations(e.value) == [violation]
    text = server.metrics_text()
    assert metric(text, "kairos_inference_rejected_inputs_total", reason=violation[1]) == 1


def test_predict_names_the_bad_bar_and_the_bad_feature_by_index(
    server: ServerThread, gbpusd: pd.DataFrame, model_card: ModelCard
) -> None:
    need = SCHEMA.window + model_card.window - 1
    bars = proto_bars(gbpusd.iloc[:need])
    bars[7].close = math.nan
    bars[9].open_time_msc = bars[8].open_time_msc
    values = [0.0] * (model_card.window * SCHEMA.n_features)
    values[5] = math.inf
    ch, stub = _stub(server)
    with ch:
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(pb.PredictRequest(symbol="GBPUSD", bars=md.BarBatch(bars=bars)), timeout=10)
        assert _violations(e.value) == [
            ("bars.bars[7]", "NON_FINITE_PRICE"),
            ("bars.bars[9].open_time_msc", "TIME_WENT_BACKWARDS"),
        ]
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(
                pb.PredictRequest(symbol="GBPUSD", features=pb.FeatureVector(values=values)), timeout=10
            )
        assert _violations(e.value) == [("features.values[5]", "NON_FINITE_FEATURE")]


def test_predict_for_another_model_name_is_not_found(server: ServerThread) -> None:
    ch, stub = _stub(server)
    with ch, pytest.raises(grpc.RpcError) as e:
        stub.Predict(pb.PredictRequest(symbol="GBPUSD", model_name="nope"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_status_describes_the_serving_model(
    server: ServerThread, model_path: Path, model_card: ModelCard
) -> None:
    ch, stub = _stub(server)
    with ch:
        (st,) = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=10).models
    assert st.model_name == model_card.name and st.model_version == model_card.version
    assert st.source_uri == str(model_path)
    assert st.state == pb.MODEL_STATE_SERVING and not st.last_error
    assert st.feature_schema_hash == SCHEMA.hash
    assert list(st.feature_names) == list(SCHEMA.names)
    assert list(st.output_names) == ["down", "flat", "up"]
    assert st.window == SCHEMA.window + model_card.window - 1
    assert st.loaded_time_us > 0


def test_health_is_serving_and_reflection_lists_the_service(server: ServerThread) -> None:
    with grpc.insecure_channel(server.target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", "kairos.inference.v1.InferenceService"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        (resp,) = list(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
        names = {s.name for s in resp.list_services_response.service}
    assert {"kairos.inference.v1.InferenceService", "grpc.health.v1.Health"} <= names
