"""Signals on a real NATS server, received by a real subscriber."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import nats
import pandas as pd  # type: ignore[import-untyped]
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from tests.inference.harness import ServerThread, StreamClient, metric, proto_bars

from kairos.features import SCHEMA, ModelCard, compute_features, to_epoch_ms
from kairos.inference.v1 import inference_pb2 as pb
from kairos.stack.loopback import wait_for
from kairos.types.v1 import types_pb2


class Subscriber:
    """A nats-py subscriber on its own loop (the test thread stays synchronous)."""

    def __init__(self, url: str, subject: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.got: list[tuple[str, pb.Signal]] = []

        async def sub() -> NatsClient:
            nc = await nats.connect(url)

            async def on(msg: Msg) -> None:
                self.got.append((msg.subject, pb.Signal.FromString(msg.data)))

            await nc.subscribe(subject, cb=on)
            await nc.flush()
            return nc

        self.nc = self.loop.run_until_complete(sub())

    def pump(self) -> int:
        self.loop.run_until_complete(asyncio.sleep(0.05))
        return len(self.got)

    def close(self) -> None:
        self.loop.run_until_complete(self.nc.close())
        self.loop.close()


def test_every_prediction_is_published_as_a_signal_on_its_symbol_subject(
    nats_url: str, model_path: Path, start_server: Callable[..., ServerThread], gbpusd: pd.DataFrame
) -> None:
    sub = Subscriber(nats_url, "kairos.signal.>")
    srv = start_server(model_path, nats_url=nats_url)
    wait_for(
        lambda: (
            srv.server is not None
            and srv.server.publisher is not None
            and srv.server.publisher.nc is not None
        )
    )
    preds: list[pb.Prediction] = []
    c = StreamClient(srv.target)
    try:
        for sym in ("GBPUSD", "EURUSD"):
            bars = proto_bars(gbpusd.iloc[:300], symbol=sym)  # 256 warm-up bars, then predictions
            for k in range(0, 300, 20):
                preds += c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 20])).predictions
        assert preds
        wait_for(lambda: sub.pump() >= len(preds), 10, f"{len(preds)} signals")
    finally:
        c.close()
        sub.close()
    assert len(sub.got) == len(preds)
    by_key = {(s.symbol, s.time_msc): (subject, s) for subject, s in sub.got}
    for p in preds:
        subject, s = by_key[(p.symbol, p.time_msc)]
        assert subject == f"kairos.signal.{p.symbol}"
        assert list(s.outputs) == list(p.outputs)
        assert (s.model_name, s.model_version) == (p.model_name, p.model_version)
        best = max(range(3), key=lambda i: p.outputs[i])
        assert s.direction == (pb.DIRECTION_DOWN, pb.DIRECTION_FLAT, pb.DIRECTION_UP)[best]
        assert abs(s.strength - (p.outputs[2] - p.outputs[0])) < 1e-6
        # A bar input's quote: bid = close, ask = close + mean spread of that bar.
        assert s.bid > 0 and s.ask >= s.bid
        assert [h.stage for h in s.hops][-1] == types_pb2.HOP_STAGE_INFERENCE_SEND
    assert metric(srv.metrics_text(), "kairos_inference_signals_published_total") == len(preds)


def test_signals_carry_the_cards_policy_and_the_bars_realised_volatility(
    nats_url: str, model_path: Path, start_server: Callable[..., ServerThread], gbpusd: pd.DataFrame
) -> None:
    card = ModelCard.from_onnx(model_path)
    assert card.policy is not None, "the model fixture has a policy (regenerate: make model-fixture)"
    sub = Subscriber(nats_url, "kairos.signal.>")
    srv = start_server(model_path, nats_url=nats_url)
    wait_for(
        lambda: (
            srv.server is not None
            and srv.server.publisher is not None
            and srv.server.publisher.nc is not None
        )
    )
    c = StreamClient(srv.target)
    try:
        preds = c.ask(pb.StreamPredictRequest(request_id=1, bars=proto_bars(gbpusd.iloc[:150]))).predictions
        assert preds
        wait_for(lambda: sub.pump() >= len(preds), 10, f"{len(preds)} signals")
    finally:
        c.close()
        sub.close()
    # The training pipeline's volatility of each bar, keyed by the bar's close time.
    feats = compute_features(gbpusd.iloc[:150])
    col = list(SCHEMA.names).index(card.policy.vol_feature)
    close_ms = to_epoch_ms(gbpusd["time"].iloc[:150]) + card.timeframe_s * 1000
    want_vol = dict(zip(close_ms.tolist(), (feats[:, col] * card.policy.vol_unit).tolist(), strict=True))
    for _, s in sub.got:
        assert s.HasField("policy")
        assert s.policy.entry_edge == card.policy.entry_edge and s.policy.move_up == card.policy.move_up
        assert s.policy.max_hold_bars == card.policy.max_hold_bars
        assert s.realised_vol > 0
        assert abs(s.realised_vol - want_vol[s.time_msc]) <= 1e-6 * want_vol[s.time_msc]


def test_an_unreachable_nats_never_blocks_predictions(
    model_path: Path, start_server: Callable[..., ServerThread], gbpusd: pd.DataFrame
) -> None:
    srv = start_server(model_path, nats_url="nats://127.0.0.1:1", nats_queue=10)
    c = StreamClient(srv.target)
    try:
        # Enough bars to warm up (SCHEMA.window + card.window - 1) and predict a few dozen.
        resp = c.ask(pb.StreamPredictRequest(request_id=1, bars=proto_bars(gbpusd.iloc[:320])))
    finally:
        c.close()
    assert len(resp.predictions) > 10
    dropped = metric(srv.metrics_text(), "kairos_inference_signals_dropped_total", reason="queue_full")
    assert dropped == len(resp.predictions) - 10
