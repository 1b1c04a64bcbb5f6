"""Models trained on the daily and cross-symbol feature blocks (ADR 0104), served.

kairos-train trains real models on real GBPUSD bars with ``--features``; the server computes the
blocks its card names, and its streamed predictions equal the model run on the training pipeline's
own feature rows, symbol by symbol, whatever order the symbols' bars arrive in within a minute.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import ServerThread, StreamClient, channel, proto_bars

from kairos.features import METADATA_KEY, ModelCard, to_epoch_ms
from kairos.inference.model import ModelRefused, PipelineSpec
from kairos.inference.pipeline import pipeline_spec
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.marketdata.v1 import marketdata_pb2 as md

PROB_ATOL = 1e-6  # float32 features through ONNX Runtime, as in test_stream
DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _train(tmp: Path, features: str, *data: str) -> Path:
    from kairos.training.cli import main

    args = ["run", "--run", str(tmp / "run"), *(x for d in data for x in ("--data", d))]
    args += ["--spread", "0.00015", "--max-bars", "5000", "--epochs", "2", "--folds", "2", "--window", "4"]
    args += ["--hidden", "8", "--arch", "logreg", "--features", features, "--no-register"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--out", str(tmp / "out")])
    assert e.value.code in (0, None), e.value.code
    return tmp / "run"


@pytest.fixture(scope="module")
def cross_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GBPUSD on the bid and on the ask as two symbols on the same minutes: base + daily + cross."""
    return _train(
        tmp_path_factory.mktemp("cross"),
        "daily,cross",
        f"BID={DATA / 'gbpusd-m1-bid-2012.csv'}",
        f"ASK={DATA / 'gbpusd-m1-ask-2012.csv'}",
    )


@pytest.fixture(scope="module")
def daily_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("daily"), "daily", str(DATA / "gbpusd-m1-bid-2012.csv"))


def _offline(run: Path) -> dict[tuple[str, int], np.ndarray]:
    """(symbol, prediction time) -> the exported model run on the training pipeline's feature rows."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    from kairos.training.panel import Panel
    from kairos.training.pipeline import load_run_bars, run_features, run_schema

    bars, imp = load_run_bars(run)
    schema = run_schema(json.loads((run / "run.json").read_text()))
    feats = run_features(bars, imp, schema)
    card = ModelCard.load(run / "model.card.json")
    assert card.feature_names == list(schema.names)
    sess = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    t = to_epoch_ms(bars["time"])
    panel = Panel.of(bars)
    out: dict[tuple[str, int], np.ndarray] = {}
    for sym, (a, b) in zip(panel.symbols, panel.segments(), strict=True):
        x = feats[a:b]
        first = int(np.argmax(np.isfinite(x).all(axis=1)))
        assert np.isfinite(x[first:]).all()
        idx = np.arange(first + card.window - 1, len(x))
        windows = np.stack([x[i - card.window + 1 : i + 1] for i in idx]).astype(np.float32)
        probs = sess.run([card.output_name], {card.input_name: windows})[0]
        for i, p in zip(idx, probs, strict=True):
            out[(sym or "GBPUSD", int(t[a + i]) + 60_000)] = p
    return out


def _stream(srv: ServerThread, run: Path, seed: int) -> dict[tuple[str, int], list[float]]:
    bars = pd.read_parquet(run / "bars.parquet")
    bars["open_time_msc"] = to_epoch_ms(bars["time"])
    if "symbol" not in bars.columns:
        bars["symbol"] = "GBPUSD"
    rng = random.Random(seed)
    protos = []
    for sym, df in bars.groupby("symbol", sort=False):
        protos += [(b.open_time_msc, rng.random(), b) for b in proto_bars(df, symbol=str(sym))]
    protos.sort(key=lambda e: (e[0], e[1]))  # time order; the symbols of one minute in a random order
    ordered = [b for _, _, b in protos]
    got: dict[tuple[str, int], list[float]] = {}
    c = StreamClient(srv.target)
    try:
        for k in range(0, len(ordered), 37):
            resp = c.ask(pb.StreamPredictRequest(request_id=k, bars=ordered[k : k + 37]))
            assert not resp.rejections, resp.rejections[:3]
            for p in resp.predictions:
                got[(p.symbol, p.time_msc)] = list(p.outputs)
    finally:
        c.close()
    return got


@pytest.mark.parametrize("seed", [0, 1])
def test_a_cross_symbol_daily_model_streams_the_predictions_of_its_training_features(
    seed: int, cross_run: Path, start_server: Callable[..., ServerThread]
) -> None:
    srv = start_server(cross_run / "model.onnx")
    got = _stream(srv, cross_run, seed)
    want = _offline(cross_run)
    assert sorted(got) == sorted(want)
    assert {s for s, _ in want} == {"BID", "ASK"}
    diff = max(float(np.max(np.abs(np.asarray(got[k]) - want[k]))) for k in want)
    assert diff <= PROB_ATOL, diff
    # warm-up: the daily block waits for a bar 24 hours back, so the first prediction is a day in
    first = min(t for _, t in want)
    bars = pd.read_parquet(cross_run / "bars.parquet")
    assert first - int(to_epoch_ms(bars["time"]).min()) >= 86_400_000


def test_a_daily_model_streams_the_predictions_of_its_training_features(
    daily_run: Path, start_server: Callable[..., ServerThread]
) -> None:
    card = ModelCard.load(daily_run / "model.card.json")
    assert card.feature_blocks == ["base", "daily"] and card.feature_names[-3:] == [
        "zret_1d",
        "rv_1d",
        "channel_pos_1d",
    ]
    srv = start_server(daily_run / "model.onnx")
    ch = channel(srv.target)
    try:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        status = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=30).models[0]
    finally:
        ch.close()
    assert status.window == 1441 + card.window, "the warm-up a collector must send: a day of M1 bars per row"
    got = _stream(srv, daily_run, 0)
    want = _offline(daily_run)
    assert sorted(got) == sorted(want) and len(want) > 2000
    diff = max(float(np.max(np.abs(np.asarray(got[k]) - want[k]))) for k in want)
    assert diff <= PROB_ATOL, diff


def _predict(srv: ServerThread, req: pb.PredictRequest) -> Any:
    ch = channel(srv.target)
    try:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        return stub.Predict(req, timeout=30)
    finally:
        ch.close()


def test_predict_by_bars_computes_the_daily_block_and_refuses_a_short_window(
    daily_run: Path, start_server: Callable[..., ServerThread]
) -> None:
    srv = start_server(daily_run / "model.onnx")
    bars = pd.read_parquet(daily_run / "bars.parquet")
    bars["open_time_msc"] = to_epoch_ms(bars["time"])
    window = proto_bars(bars.iloc[:3000])
    resp = _predict(srv, pb.PredictRequest(symbol="GBPUSD", bars=md.BarBatch(bars=window)))
    want = _offline(daily_run)[("GBPUSD", int(bars["open_time_msc"].iloc[2999]) + 60_000)]
    assert np.max(np.abs(np.asarray(resp.prediction.outputs) - want)) <= PROB_ATOL
    t = bars["open_time_msc"].to_numpy()
    i = int(np.flatnonzero(t[600:3000] - t[:2400] < 86_400_000)[0])  # 600 bars within one day
    short = proto_bars(bars.iloc[i : i + 600])
    with pytest.raises(grpc.RpcError) as e:
        _predict(srv, pb.PredictRequest(symbol="GBPUSD", bars=md.BarBatch(bars=short)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "24 hours" in str(e.value.details())


def test_predict_by_bars_refuses_a_cross_symbol_model_it_cannot_feed(
    cross_run: Path, start_server: Callable[..., ServerThread]
) -> None:
    srv = start_server(cross_run / "model.onnx")
    bars = pd.read_parquet(cross_run / "bars.parquet")
    bars = bars[bars["symbol"] == "BID"].iloc[:3000]
    bars["open_time_msc"] = to_epoch_ms(bars["time"])
    req = pb.PredictRequest(symbol="BID", bars=md.BarBatch(bars=proto_bars(bars, symbol="BID")))
    with pytest.raises(grpc.RpcError) as e:
        _predict(srv, req)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cross-symbol" in str(e.value.details())


def test_a_card_whose_blocks_or_symbols_the_server_cannot_serve_is_refused_naming_the_field(
    cross_run: Path, tmp_path: Path
) -> None:
    import onnx

    from kairos.inference.model import build_served_model

    spec: PipelineSpec = pipeline_spec()
    for change, needle in [
        ({"feature_blocks": ["base", "weekly"]}, "feature_blocks"),
        ({"symbols": ["BID"]}, "cross-symbol features need the symbols"),
    ]:
        model = onnx.load(str(cross_run / "model.onnx"))
        card = ModelCard.from_onnx(model).to_dict() | change
        for prop in model.metadata_props:
            if prop.key == METADATA_KEY:
                prop.value = json.dumps(card)
        path = tmp_path / "m.onnx"
        onnx.save(model, str(path))
        with pytest.raises(ModelRefused, match=needle):
            build_served_model(
                path, name=None, version=None, source_uri=str(path), pipeline=spec, max_batch=4
            )
