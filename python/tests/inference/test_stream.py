"""StreamPredict specs, over loopback gRPC against the real model fixture and real market data."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import ServerThread, StreamClient, metric, offline_predictions, proto_bars

from kairos.features import SCHEMA, BarBuilder, ModelCard, bars_to_frame, compute_features
from kairos.inference.pipeline import SymbolFeed, feature_rows
from kairos.inference.v1 import inference_pb2 as pb
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.stack.loopback import wait_for
from kairos.types.v1 import types_pb2

# Server predictions vs the offline model run on batch features: both are float32 ORT runs on the
# same float64 features cast to float32, so they agree to float32 rounding of the outputs.
PROB_ATOL = 1e-6


def history(card: ModelCard) -> int:
    return SCHEMA.window + card.window - 1


def test_every_request_is_answered_and_every_closed_bar_predicted_once_warm(
    stream: StreamClient, gbpusd: pd.DataFrame, model_card: ModelCard
) -> None:
    bars = proto_bars(gbpusd.iloc[:150])
    need = history(model_card)
    for i, bar in enumerate(bars):
        resp = stream.ask(pb.StreamPredictRequest(request_id=1000 + i, bars=[bar]))
        assert resp.request_id == 1000 + i
        assert not resp.rejections
        assert len(resp.predictions) == (1 if i + 1 >= need else 0), f"bar {i}"
        for p in resp.predictions:
            assert p.symbol == "GBPUSD"
            assert p.request_id == 1000 + i
            assert p.time_msc == bar.open_time_msc + 60_000  # stamped at the bar's close
            assert p.model_name == model_card.name and p.model_version == model_card.version
            assert len(p.outputs) == 3 and math.isclose(sum(p.outputs), 1.0, abs_tol=1e-5)
            assert [h.stage for h in p.hops] == [
                types_pb2.HOP_STAGE_INFERENCE_RECEIVE,
                types_pb2.HOP_STAGE_INFERENCE_DONE,
                types_pb2.HOP_STAGE_INFERENCE_SEND,
            ]
            times = [h.time_us for h in p.hops]
            assert times == sorted(times)


def test_request_hops_are_carried_into_predictions(
    stream: StreamClient, gbpusd: pd.DataFrame, model_card: ModelCard
) -> None:
    bars = proto_bars(gbpusd.iloc[: history(model_card)])
    hop = types_pb2.HopStamp(stage=types_pb2.HOP_STAGE_COLLECTOR_SEND, time_us=123)
    resp = stream.ask(pb.StreamPredictRequest(request_id=7, bars=bars, hops=[hop]))
    (p,) = resp.predictions
    assert p.hops[0] == hop
    assert [h.stage for h in p.hops[1:]] == [
        types_pb2.HOP_STAGE_INFERENCE_RECEIVE,
        types_pb2.HOP_STAGE_INFERENCE_DONE,
        types_pb2.HOP_STAGE_INFERENCE_SEND,
    ]


def test_stream_predictions_equal_the_training_pipeline_on_real_bars(
    stream: StreamClient, gbpusd: pd.DataFrame, model_path: Path
) -> None:
    df = gbpusd.iloc[:600].reset_index(drop=True)
    bars = proto_bars(df)
    got: dict[int, list[float]] = {}
    for k in range(0, len(bars), 50):  # many bars per message: batches bigger than max_batch split
        resp = stream.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 50]))
        assert not resp.rejections, resp.rejections
        for p in resp.predictions:
            got[p.time_msc] = list(p.outputs)
    idx, probs = offline_predictions(model_path, df)
    want = {int(df.open_time_msc[i]) + 60_000: probs[j] for j, i in enumerate(idx)}
    assert sorted(got) == sorted(want)
    diff = max(float(np.max(np.abs(np.asarray(got[t]) - want[t]))) for t in want)
    assert diff <= PROB_ATOL, diff


def _pandas_bars(ticks: pd.DataFrame) -> pd.DataFrame:
    """Bars by the shared rule, built independently of BarBuilder: the batch pipeline's view."""
    t = ticks.copy()
    t["open_time_msc"] = (t["time_msc"] // 60_000) * 60_000
    t["spread"] = t["ask"] - t["bid"]
    g = t.groupby("open_time_msc", sort=True)
    bars = pd.DataFrame(
        {
            "open": g["bid"].first(),
            "high": g["bid"].max(),
            "low": g["bid"].min(),
            "close": g["bid"].last(),
            "spread": g["spread"].mean(),
            "tick_volume": g["bid"].size(),
        }
    ).reset_index()
    bars["time"] = pd.to_datetime(bars["open_time_msc"], unit="ms", utc=True)
    return bars.iloc[:-1].reset_index(drop=True)  # the last bar never closed


def test_server_feature_path_fed_tick_by_tick_equals_batch_features_on_real_ticks(
    eurusd_ticks: pd.DataFrame,
) -> None:
    # The exact code StreamPredict runs per tick (SymbolFeed: BarBuilder + bar window, then the
    # kairos.features kernel), one tick at a time, against compute_features on bars built by pandas.
    feed = SymbolFeed(60)
    rows: dict[int, np.ndarray] = {}
    for r in eurusd_ticks.itertuples(index=False):
        for bar in feed.add_tick(int(r.time_msc), r.bid, r.ask, 0.0):
            w = feed.push_bar(bar)
            if w is not None:
                rows[bar.open_time_msc] = feature_rows([w])[0]
    ref = _pandas_bars(eurusd_ticks)
    x = compute_features(ref)
    want = {int(t): x[i] for i, t in enumerate(ref["open_time_msc"]) if np.isfinite(x[i]).all()}
    assert len(want) > 100, "the real tick file closes ~360 M1 bars, 241 of them warm-up"
    assert sorted(rows) == sorted(want)
    worst = max(float(np.max(np.abs(rows[t] - want[t]))) for t in want)
    assert worst <= 1e-9, worst  # the stated parity tolerance (float64)


def test_ticks_streamed_one_per_message_predict_like_the_training_pipeline(
    server: ServerThread, eurusd_ticks: pd.DataFrame, model_path: Path
) -> None:
    c = StreamClient(server.target)
    try:
        for i, r in enumerate(eurusd_ticks.itertuples(index=False)):
            c.send(
                pb.StreamPredictRequest(
                    request_id=i + 1,
                    ticks=[
                        md.TickBatch(symbol="EURUSD", time_msc=[int(r.time_msc)], bid=[r.bid], ask=[r.ask])
                    ],
                )
            )
        got: dict[int, list[float]] = {}
        for i in range(len(eurusd_ticks)):
            resp = c.recv()
            assert resp.request_id == i + 1
            assert not resp.rejections, resp.rejections
            for p in resp.predictions:
                got[p.time_msc] = list(p.outputs)
    finally:
        c.close()
    ref = _pandas_bars(eurusd_ticks)
    idx, probs = offline_predictions(model_path, ref)
    want = {int(ref.open_time_msc[i]) + 60_000: probs[j] for j, i in enumerate(idx)}
    assert len(want) > 50
    assert sorted(got) == sorted(want)
    diff = max(float(np.max(np.abs(np.asarray(got[t]) - want[t]))) for t in want)
    assert diff <= PROB_ATOL, diff


def _ticks(symbol: str, t0: int, n: int = 3, **cols: list[float] | list[int]) -> md.TickBatch:
    b = md.TickBatch(
        symbol=symbol,
        time_msc=[t0 + i for i in range(n)],
        bid=[1.1 + i * 1e-5 for i in range(n)],
        ask=[1.1002 + i * 1e-5 for i in range(n)],
    )
    for k, v in cols.items():
        getattr(b, k)[:] = v
    return b


T0 = 1_577_898_000_000  # 2020-01-01 17:00 UTC, after every tick of the cases below
BAD_CASES: list[tuple[str, Callable[[list[md.Bar]], pb.StreamPredictRequest], str, str]] = [
    (
        "nan bid",
        lambda _: pb.StreamPredictRequest(ticks=[_ticks("EURUSD", T0, bid=[1.1, math.nan, 1.1])]),
        "NON_FINITE_PRICE",
        "ticks[0].bid[1]",
    ),
    (
        "infinite ask",
        lambda _: pb.StreamPredictRequest(ticks=[_ticks("EURUSD", T0 + 10, ask=[1.2, 1.2, math.inf])]),
        "NON_FINITE_PRICE",
        "ticks[0].ask[2]",
    ),
    (
        "negative bid",
        lambda _: pb.StreamPredictRequest(ticks=[_ticks("EURUSD", T0 + 20, bid=[-1.1, 1.1, 1.1])]),
        "NON_POSITIVE_PRICE",
        "ticks[0].bid[0]",
    ),
    (
        "crossed quote",
        lambda _: pb.StreamPredictRequest(ticks=[_ticks("EURUSD", T0 + 30, bid=[1.1, 1.3, 1.1])]),
        "CROSSED_QUOTE",
        "ticks[0].bid[1]",
    ),
    (
        "time went backwards",
        lambda _: pb.StreamPredictRequest(
            ticks=[_ticks("EURUSD", T0 + 40, time_msc=[T0 + 40, T0 + 41, T0 + 5])]
        ),
        "TIME_WENT_BACKWARDS",
        "ticks[0].time_msc[2]",
    ),
    (
        "duplicate sequence",
        lambda _: pb.StreamPredictRequest(ticks=[_ticks("EURUSD", T0 + 50, sequence=[10, 11, 11])]),
        "DUPLICATE_SEQUENCE",
        "ticks[0].sequence[2]",
    ),
    (
        "columns of different lengths",
        lambda _: pb.StreamPredictRequest(ticks=[_ticks("EURUSD", T0 + 60, ask=[1.2, 1.2])]),
        "MALFORMED_BATCH",
        "ticks[0]",
    ),
    (
        "empty batch",
        lambda _: pb.StreamPredictRequest(ticks=[md.TickBatch(symbol="EURUSD")]),
        "EMPTY_BATCH",
        "ticks[0]",
    ),
    (
        "oversized batch",
        lambda _: pb.StreamPredictRequest(ticks=[_ticks("EURUSD", T0 + 100, n=1001)]),
        "OVERSIZED_BATCH",
        "ticks[0]",
    ),
    (
        "unknown symbol",
        lambda _: pb.StreamPredictRequest(ticks=[_ticks("USDJPY", T0)]),
        "UNKNOWN_SYMBOL",
        "ticks[0]",
    ),
    (
        "malformed symbol",
        lambda _: pb.StreamPredictRequest(ticks=[_ticks("EUR USD", T0)]),
        "INVALID_SYMBOL",
        "ticks[0]",
    ),
    ("empty request", lambda _: pb.StreamPredictRequest(), "EMPTY_REQUEST", ""),
    (
        "bar of another period",
        lambda bars: pb.StreamPredictRequest(bars=[_bar(bars[-1], period_s=300)]),
        "PERIOD_MISMATCH",
        "bars[0]",
    ),
    (
        "bar with a NaN close",
        lambda bars: pb.StreamPredictRequest(bars=[_bar(bars[-1], close=math.nan, next_=True)]),
        "NON_FINITE_PRICE",
        "bars[0]",
    ),
    (
        "bar older than the last one",
        lambda bars: pb.StreamPredictRequest(bars=[_bar(bars[-2])]),
        "TIME_WENT_BACKWARDS",
        "bars[0].open_time_msc",
    ),
    (
        "bar whose high is below its close",
        lambda bars: pb.StreamPredictRequest(bars=[_bar(bars[-1], high=0.5, next_=True)]),
        "INVALID_BAR",
        "bars[0]",
    ),
    (
        "too many bars",
        lambda bars: pb.StreamPredictRequest(bars=[_bar(bars[-1], next_=True)] * 201),
        "OVERSIZED_BATCH",
        "bars",
    ),
]


def _bar(src: md.Bar, next_: bool = False, **changes: float | int) -> md.Bar:
    b = md.Bar()
    b.CopyFrom(src)
    if next_:
        b.open_time_msc += 60_000
    for k, v in changes.items():
        setattr(b, k, v)
    return b


def test_bad_items_are_refused_with_reason_and_never_touch_good_state(
    start_server: Callable[..., ServerThread], model_path: Path, gbpusd: pd.DataFrame
) -> None:
    srv = start_server(
        model_path, allowed_symbols=("GBPUSD", "EURUSD"), max_ticks_per_batch=1000, max_bars_per_request=200
    )
    df = gbpusd.iloc[:300].reset_index(drop=True)
    bars = proto_bars(df)
    c = StreamClient(srv.target)
    got: dict[int, list[float]] = {}
    sent: list[md.Bar] = []
    rid = 0
    try:
        for k, bar in enumerate(bars):
            rid += 1
            sent.append(bar)
            resp = c.ask(pb.StreamPredictRequest(request_id=rid, bars=[bar]))
            assert not resp.rejections
            for p in resp.predictions:
                got[p.time_msc] = list(p.outputs)
            if k >= 100 and k - 100 < len(BAD_CASES):  # one bad request between good bars, warm or not
                name, make, reason, field = BAD_CASES[k - 100]
                rid += 1
                req = make(sent)
                req.request_id = rid
                resp = c.ask(req)
                assert resp.request_id == rid, name
                assert not resp.predictions, name
                assert [(r.reason, r.field) for r in resp.rejections][:1] == [(reason, field)], name
                assert resp.rejections[0].description, name
        text = srv.metrics_text()
    finally:
        c.close()
    # GBPUSD saw NaN, out-of-order and invalid bars in between: its predictions are still exactly
    # those of the clean series.
    idx, probs = offline_predictions(model_path, df)
    want = {int(df.open_time_msc[i]) + 60_000: probs[j] for j, i in enumerate(idx)}
    assert sorted(got) == sorted(want)
    assert max(float(np.max(np.abs(np.asarray(got[t]) - want[t]))) for t in want) <= PROB_ATOL
    for reason in {case[2] for case in BAD_CASES}:
        expected = sum(1 for case in BAD_CASES if case[2] == reason)
        assert metric(text, "kairos_inference_rejected_inputs_total", reason=reason) == expected, reason


def test_one_bad_tick_in_a_batch_refuses_only_that_tick(stream: StreamClient) -> None:
    # Three ticks in three different minutes: the bad middle one is refused, the other two make a bar.
    t = 1_577_898_000_000
    batch = md.TickBatch(
        symbol="EURUSD", time_msc=[t, t + 60_000, t + 120_000], bid=[1.1, math.nan, 1.1001], ask=[1.1002] * 3
    )
    resp = stream.ask(pb.StreamPredictRequest(request_id=1, ticks=[batch]))
    assert [r.field for r in resp.rejections] == ["ticks[0].bid[1]"]
    # The stream is alive: the next request is answered.
    resp = stream.ask(pb.StreamPredictRequest(request_id=2, ticks=[_ticks("EURUSD", t + 180_000)]))
    assert resp.request_id == 2 and not resp.rejections


def test_a_client_that_disconnects_frees_its_state(server: ServerThread, gbpusd: pd.DataFrame) -> None:
    c = StreamClient(server.target)
    bars = proto_bars(gbpusd.iloc[:5])
    reqs = [_bar(b) for b in bars]
    for sym in ("GBPUSD", "EURUSD", "USDJPY"):
        for b in reqs:
            b.symbol = sym
        c.ask(pb.StreamPredictRequest(request_id=1, bars=reqs))
    text = server.metrics_text()
    assert metric(text, "kairos_inference_symbol_states") == 3
    assert metric(text, "kairos_inference_streams_active") == 1
    c.cancel()  # mid-stream, no half-close
    wait_for(
        lambda: metric(server.metrics_text(), "kairos_inference_streams_active") == 0, what="stream to end"
    )
    assert metric(server.metrics_text(), "kairos_inference_symbol_states") == 0


def test_symbols_in_one_message_are_predicted_in_one_model_run(
    server: ServerThread, gbpusd: pd.DataFrame, model_card: ModelCard
) -> None:
    n_symbols = 8
    bars = proto_bars(gbpusd.iloc[: history(model_card)])
    c = StreamClient(server.target)
    try:
        for i, b in enumerate(bars):
            batch = []
            for s in range(n_symbols):
                x = _bar(b)
                x.symbol = f"SYM{s}"
                batch.append(x)
            resp = c.ask(pb.StreamPredictRequest(request_id=i, bars=batch))
        assert sorted(p.symbol for p in resp.predictions) == sorted(f"SYM{s}" for s in range(n_symbols))
        assert len({tuple(p.outputs) for p in resp.predictions}) == 1  # same data, same answer
    finally:
        c.close()
    text = server.metrics_text()
    assert metric(text, "kairos_inference_batch_size_count") == 1
    assert metric(text, "kairos_inference_batch_size_sum") == n_symbols


def test_tick_built_bars_match_the_feature_package_bars(eurusd_ticks: pd.DataFrame) -> None:
    # SymbolFeed builds bars with kairos.features.BarBuilder itself; guard that it stays that way.
    feed, ref = SymbolFeed(60), BarBuilder(60)
    a, b = [], []
    for r in eurusd_ticks.head(2000).itertuples(index=False):
        a += feed.add_tick(int(r.time_msc), r.bid, r.ask, 0.0)
        b += ref.add_tick(int(r.time_msc), r.bid, r.ask)
    assert a == b and len(a) > 10
    assert len(bars_to_frame(a)) == len(a)


def _with_symbols(model_path: Path, tmp_path: Path, symbols: list[str]) -> Path:
    """The fixture model with a card listing the symbols it was validated on, as kairos-train writes it."""
    import onnx

    model = onnx.load(str(model_path))
    card = ModelCard.from_onnx(model)
    card.symbols = symbols
    card.embed(model)
    out = tmp_path / "model.onnx"
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize("any_symbol", [False, True])
def test_a_symbol_outside_the_cards_symbols_is_refused_unless_any_symbol_is_set(
    any_symbol: bool,
    start_server: Callable[..., ServerThread],
    model_path: Path,
    tmp_path: Path,
    gbpusd: pd.DataFrame,
) -> None:
    srv = start_server(_with_symbols(model_path, tmp_path, ["GBPUSD", "BTCUSD"]), any_symbol=any_symbol)
    bars = proto_bars(gbpusd.iloc[:3])
    c = StreamClient(srv.target)
    try:
        ok = c.ask(pb.StreamPredictRequest(request_id=1, bars=bars))
        other = proto_bars(gbpusd.iloc[:3], symbol="EURUSD")
        resp = c.ask(pb.StreamPredictRequest(request_id=2, bars=other))
        text = srv.metrics_text()
    finally:
        c.close()
    assert not ok.rejections
    if any_symbol:
        assert not resp.rejections
        return
    assert [(r.reason, r.field, r.symbol) for r in resp.rejections][:1] == [
        ("SYMBOL_NOT_IN_CARD", "bars[0]", "EURUSD")
    ]
    assert "validated on BTCUSD, GBPUSD only" in resp.rejections[0].description
    assert metric(text, "kairos_inference_rejected_inputs_total", reason="SYMBOL_NOT_IN_CARD") == 3
    assert metric(text, "kairos_inference_symbol_states") == 1, "no state for the refused symbol"


def test_bytes_that_are_not_a_request_end_the_stream_with_invalid_argument_naming_the_request(
    server: ServerThread, gbpusd: pd.DataFrame
) -> None:
    # StreamPredict takes the request's bytes (ADR 0113) and parses them itself: a message that is
    # not a StreamPredictRequest ends the call with INVALID_ARGUMENT, saying which request it was,
    # after the good requests before it were answered.
    import grpc
    from tests.inference.harness import channel

    good = pb.StreamPredictRequest(request_id=1, bars=proto_bars(gbpusd.iloc[:5])).SerializeToString()
    bad = b"\x12\x05\x0a\x03GB"  # a bar whose symbol runs past the end of the bar
    ch = channel(server.target)
    try:
        call = ch.stream_stream("/kairos.inference.v1.InferenceService/StreamPredict")(
            iter([good, bad]), timeout=30
        )
        got = []
        with pytest.raises(grpc.RpcError) as err:
            for raw in call:
                got.append(pb.StreamPredictResponse.FromString(raw))
    finally:
        ch.close()
    assert [r.request_id for r in got] == [1]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request 2 of the stream is not a kairos.inference.v1.StreamPredictRequest (6 bytes)" in str(
        err.value.details()
    )
