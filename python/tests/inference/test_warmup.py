"""Warm-up input (StreamPredictRequest.warmup, ADR 0105): history bars that only build a symbol's state.

Against the real server and model fixture over loopback gRPC, on real GBPUSD M1 bars: after a warm-up
of the model's window, the first live bar is predicted, as the training pipeline predicts it; the
warm-up bars themselves make no prediction and no NATS signal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from tests.inference.harness import (
    ServerThread,
    StreamClient,
    channel,
    metric,
    offline_predictions,
    proto_bars,
    wait_publisher_connected,
)
from tests.inference.test_signals import Subscriber

from kairos.features import SCHEMA, ModelCard
from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.stack.loopback import wait_for

PROB_ATOL = 1e-6


def test_model_status_says_how_many_bars_of_which_period_warm_a_symbol(
    server: ServerThread, model_card: ModelCard
) -> None:
    ch = channel(server.target)
    try:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        (st,) = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=5).models
    finally:
        ch.close()
    assert st.timeframe_s == 60
    assert st.window == SCHEMA.window + model_card.window - 1


def test_after_a_warmup_the_first_live_bar_is_predicted_as_training_does_and_warmup_signals_nothing(
    nats_url: str, model_path: Path, start_server: Callable[..., ServerThread], gbpusd: pd.DataFrame
) -> None:
    sub = Subscriber(nats_url, "kairos.signal.>")
    srv = start_server(model_path, nats_url=nats_url)
    wait_publisher_connected(srv)
    card = ModelCard.from_onnx(model_path)
    need = SCHEMA.window + card.window - 1
    df = gbpusd.iloc[: need + 40].reset_index(drop=True)
    bars = proto_bars(df)
    history, live = bars[:need], bars[need:]
    c = StreamClient(srv.target)
    try:
        # The history in a few requests, as the collector sends it; far more bars than would predict.
        for k in range(0, need, 100):
            resp = c.ask(pb.StreamPredictRequest(request_id=k, bars=history[k : k + 100], warmup=True))
            assert not resp.predictions and not resp.rejections, resp
        first = c.ask(pb.StreamPredictRequest(request_id=10_000, bars=[live[0]]))
        assert len(first.predictions) == 1, "the first live bar after a warm-up is predicted"
        got = {p.time_msc: list(p.outputs) for p in first.predictions}
        for i, bar in enumerate(live[1:]):
            got.update(
                (p.time_msc, list(p.outputs))
                for p in c.ask(pb.StreamPredictRequest(request_id=10_001 + i, bars=[bar])).predictions
            )
        wait_for(lambda: sub.pump() >= len(live), 10, f"{len(live)} signals")
        sub.pump()
    finally:
        c.close()
        sub.close()
    idx, probs = offline_predictions(model_path, df)
    want = {int(df.open_time_msc[i]) + 60_000: probs[j] for j, i in enumerate(idx)}
    # Training predicts the last warm-up bar too (window bars make the first input); live, it is state.
    assert sorted(got) == [b.open_time_msc + 60_000 for b in live]
    want = {t: want[t] for t in got}
    diff = max(float(np.max(np.abs(np.asarray(got[t]) - want[t]))) for t in want)
    assert diff <= PROB_ATOL, diff
    # Signals only for the live bars: none for the warm-up.
    assert sorted(s.time_msc for _, s in sub.got) == sorted(got)
    text = srv.metrics_text()
    assert metric(text, "kairos_inference_warmup_bars_total") == need
    assert metric(text, "kairos_inference_signals_published_total") == len(live)


def test_warmup_bars_older_than_the_symbols_state_are_refused_and_change_nothing(
    stream: StreamClient, gbpusd: pd.DataFrame, model_card: ModelCard, model_path: Path
) -> None:
    need = SCHEMA.window + model_card.window - 1
    df = gbpusd.iloc[: need + 3].reset_index(drop=True)
    bars = proto_bars(df)
    resp = stream.ask(pb.StreamPredictRequest(request_id=1, bars=bars[: need + 1], warmup=True))
    assert not resp.predictions and not resp.rejections
    # A reconnect-style repeat of history the symbol already has: refused, bar by bar.
    resp = stream.ask(pb.StreamPredictRequest(request_id=2, bars=bars[need - 5 : need + 1], warmup=True))
    assert not resp.predictions
    assert [r.reason for r in resp.rejections] == ["TIME_WENT_BACKWARDS"] * 6
    # The state did not move: the next live bars are predicted as the training pipeline does.
    got = {}
    for i, bar in enumerate(bars[need + 1 :]):
        (p,) = stream.ask(pb.StreamPredictRequest(request_id=3 + i, bars=[bar])).predictions
        got[p.time_msc] = list(p.outputs)
    idx, probs = offline_predictions(model_path, df)
    want = {int(df.open_time_msc[i]) + 60_000: probs[j] for j, i in enumerate(idx)}
    for t, out in got.items():
        assert np.max(np.abs(np.asarray(out) - want[t])) <= PROB_ATOL
