"""Keeping the request path warm (``--keep-warm``, ADR 0118): rehearsals while idle, against the real
server, the model fixture and a real nats-server over loopback, on real GBPUSD M1 bars.

A rehearsal runs a recent bar request's whole path (parse, C++ bar intake, model, drift figures,
signal frames, response bytes) on a private state: the tests hold it to changing nothing a client,
NATS, the drift monitor or the metrics can see, and to standing aside while requests flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import (
    ServerThread,
    StreamClient,
    channel,
    metric,
    proto_bars,
    wait_publisher_connected,
)
from tests.inference.test_signals import Subscriber

from kairos.inference.v1 import inference_pb2 as pb
from kairos.inference.v1 import inference_pb2_grpc
from kairos.marketdata.v1 import marketdata_pb2 as md
from kairos.stack.loopback import wait_for

RUNS = "kairos_inference_keep_warm_runs_total"


def _runs(srv: ServerThread, path: str) -> float:
    return metric(srv.metrics_text(), RUNS, path=path)


def _drift(srv: ServerThread) -> pb.DriftStatus:
    ch = channel(srv.target)
    try:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        (st,) = stub.GetModelStatus(pb.GetModelStatusRequest(), timeout=5).models
        return st.drift
    finally:
        ch.close()


def _bar_requests(gbpusd: pd.DataFrame) -> list[pb.StreamPredictRequest]:
    """300 bars in 20-bar requests (256 warm the symbol, then predictions), then 40 one at a time."""
    bars = proto_bars(gbpusd.iloc[:340])
    out = [pb.StreamPredictRequest(bars=bars[k : k + 20]) for k in range(0, 300, 20)]
    return out + [pb.StreamPredictRequest(bars=bars[k : k + 1]) for k in range(300, 340)]


def _tick_requests(ticks: pd.DataFrame) -> list[pb.StreamPredictRequest]:
    """The real EURUSD ticks in 40-tick batches with their sequence numbers, as the collector sends
    them (~360 M1 bars, 241 of them warm-up)."""
    out = []
    for k in range(0, len(ticks), 40):
        part = ticks.iloc[k : k + 40]
        batch = md.TickBatch(
            symbol="EURUSD",
            time_msc=part.time_msc.astype(int).tolist(),
            bid=part.bid.tolist(),
            ask=part.ask.tolist(),
            sequence=list(range(k + 1, k + 1 + len(part))),
        )
        out.append(pb.StreamPredictRequest(ticks=[batch]))
    return out


@pytest.mark.parametrize("kind", ["bars", "ticks"])
def test_rehearsals_run_the_whole_path_and_change_no_prediction_signal_drift_figure_or_count(
    kind: str,
    nats_url: str,
    model_path: Path,
    start_server: Callable[..., ServerThread],
    gbpusd: pd.DataFrame,
    eurusd_ticks: pd.DataFrame,
) -> None:
    sub = Subscriber(nats_url, "kairos.signal.>")
    plain = start_server(model_path)
    warm = start_server(model_path, nats_url=nats_url, keep_warm=0.005)
    wait_publisher_connected(warm)
    requests = _bar_requests(gbpusd) if kind == "bars" else _tick_requests(eurusd_ticks)
    for i, req in enumerate(requests):
        req.request_id = i + 1
    # The last 40 requests come with idle spells between them, in which the warm server rehearses.
    tail = len(requests) - 40
    got: dict[str, list[pb.StreamPredictResponse]] = {"plain": [], "warm": []}
    clients = {"plain": StreamClient(plain.target), "warm": StreamClient(warm.target)}
    try:
        for i, req in enumerate(requests):
            for name, c in clients.items():
                got[name].append(c.ask(req))
            if i == tail - 1:  # wait for rehearsals of the whole path
                wait_for(lambda: _runs(warm, "request") >= 3, 30, "3 rehearsals of the request path")
            elif i >= tail:
                time.sleep(0.02)
        rehearsed = _runs(warm, "request")
        preds = [p for r in got["warm"] for p in r.predictions]
        assert len(preds) > 40
        wait_for(lambda: sub.pump() >= len(preds), 10, f"{len(preds)} signals")
        time.sleep(0.2)  # any signal a rehearsal published would be here by now
        sub.pump()
    finally:
        for c in clients.values():
            c.close()
        sub.close()
    assert rehearsed >= 3 + 30, "rehearsals between the last requests"
    # The same responses, prediction for prediction, as a server that never rehearses.
    for a, b in zip(got["plain"], got["warm"], strict=True):
        assert a.request_id == b.request_id
        assert not a.rejections and not b.rejections
        assert [(p.symbol, p.time_msc, list(p.outputs)) for p in a.predictions] == [
            (p.symbol, p.time_msc, list(p.outputs)) for p in b.predictions
        ]
    # One signal per prediction: no rehearsal reached NATS.
    assert sorted(s.time_msc for _, s in sub.got) == sorted(p.time_msc for p in preds)
    text, plain_text = warm.metrics_text(), plain.metrics_text()
    assert metric(text, "kairos_inference_predictions_total", model=preds[0].model_name) == len(preds)
    assert metric(text, "kairos_inference_requests_total", rpc="StreamPredict") == len(requests)
    assert metric(text, "kairos_inference_signals_published_total") == len(preds)
    for path in ("c++", "python"):
        assert metric(text, "kairos_inference_bar_intake_total", path=path) == metric(
            plain_text, "kairos_inference_bar_intake_total", path=path
        )
    assert "kairos_inference_rejected_inputs_total{" not in text  # no input refused, rehearsed or not
    # The serving drift monitor saw the real rows only: the same figures as the plain server's.
    assert _drift(warm) == _drift(plain)


def test_idle_with_nothing_recorded_only_the_model_runs_and_requests_in_flow_keep_it_aside(
    model_path: Path, start_server: Callable[..., ServerThread], gbpusd: pd.DataFrame
) -> None:
    srv = start_server(model_path, keep_warm=0.02)
    time.sleep(0.3)  # idle, nothing recorded: about one model run per 20 ms
    idle = _runs(srv, "model")
    assert 5 <= idle <= 16, idle
    assert _runs(srv, "request") == 0
    bars = proto_bars(gbpusd.iloc[:400])
    c = StreamClient(srv.target)
    try:
        # Warm the symbol, then a bar every 2 ms: real work keeps the path warm, no rehearsal runs.
        c.ask(pb.StreamPredictRequest(request_id=0, bars=bars[:300]))
        before = _runs(srv, "model") + _runs(srv, "request")
        for k in range(300, 400):
            assert c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 1])).predictions
            time.sleep(0.002)
        during = _runs(srv, "model") + _runs(srv, "request") - before
    finally:
        c.close()
    # One at most, if a loop turn stalls past the interval on a loaded machine.
    assert during <= 1, during


def test_a_rehearsal_that_fails_stops_rehearsing_the_path_and_keeps_the_model_warm(
    model_path: Path, start_server: Callable[..., ServerThread]
) -> None:
    srv = start_server(model_path, keep_warm=0.01)
    assert srv.server is not None and srv.server.servicer is not None
    rehearsal = srv.server.servicer.rehearsal
    # Bytes that are no StreamPredictRequest (the reader never records such; here it stands for any
    # fault in the path).
    srv.call(_record(rehearsal, b"\x0a\xff\xff"))
    wait_for(lambda: not rehearsal.recording, 10, "the failed rehearsal")
    model_runs = _runs(srv, "model")
    wait_for(lambda: _runs(srv, "model") >= model_runs + 3, 10, "model-only keep-warm runs")
    assert _runs(srv, "request") == 0
    srv.call(_record(rehearsal, b"\x10\x01"))
    assert not rehearsal.recent  # no longer recorded


async def _record(rehearsal: object, raw: bytes) -> None:
    rehearsal.record(raw)  # type: ignore[attr-defined]
