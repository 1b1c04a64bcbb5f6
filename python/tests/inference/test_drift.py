"""Drift in the real server: a dissimilarity index per prediction and PSI per feature against the
card's training distribution, as metrics; --abstain-ood sends flat signals (real NATS subscriber)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import ServerThread, StreamClient, load_gbpusd_m1, metric, proto_bars, with_card
from tests.inference.test_signals import Subscriber

from kairos.features import SCHEMA, compute_features
from kairos.features.drift import distribution
from kairos.inference.v1 import inference_pb2 as pb
from kairos.stack.loopback import wait_for


def _model_with_distribution(model_path: Path, bars: pd.DataFrame, dst: Path) -> Path:
    x = compute_features(bars[["time", "open", "high", "low", "close", "spread", "tick_volume"]])
    return with_card(model_path, dst, feature_distribution=distribution(x, SCHEMA.names))


def _drift_model(model_path: Path, tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    """Real GBPUSD M1 bars, and the fixture model carrying the distribution of their first 20,000
    (the tests stream later bars of the same market)."""
    gbpusd = load_gbpusd_m1()
    return gbpusd, _model_with_distribution(model_path, gbpusd.iloc[:20000], tmp_path / "m" / "model.onnx")


def _stream(srv: ServerThread, bars: list) -> list[pb.Prediction]:  # type: ignore[type-arg]
    c = StreamClient(srv.target)
    preds: list[pb.Prediction] = []
    try:
        for k in range(0, len(bars), 50):
            preds += c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 50])).predictions
    finally:
        c.close()
    return preds


def _ready(srv: ServerThread, signals: bool = True) -> None:
    """The server is up and, with ``signals``, its publisher connected to NATS."""
    wait_for(
        lambda: (
            srv.server is not None
            and (not signals or (srv.server.publisher is not None and srv.server.publisher.nc is not None))
        )
    )


def _wait_observed(srv: ServerThread, label: str, rows: int) -> None:
    wait_for(
        lambda: metric(srv.metrics_text(), "kairos_inference_dissimilarity_index_count", model=label) >= rows,
        10,
        f"the drift figures of {rows} rows",
    )


def test_dissimilarity_and_psi_are_exported_per_prediction(
    model_path: Path, start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    gbpusd, model = _drift_model(model_path, tmp_path)
    srv = start_server(model, drift_window=200)
    preds = _stream(srv, proto_bars(gbpusd.iloc[20000:20800]))
    assert len(preds) > 400
    label = f"{preds[0].model_name}/{preds[0].model_version}"
    _wait_observed(srv, label, len(preds))  # the figures follow the responses (ADR 0124)
    text = srv.metrics_text()
    mean_di = metric(text, "kairos_inference_dissimilarity_index_sum", model=label) / len(preds)
    assert 0.3 < mean_di < 3  # later real bars of the same market: typical rows
    psis = [metric(text, "kairos_inference_feature_psi", model=label, feature=f) for f in SCHEMA.names]
    assert all(np.isfinite(psis)) and max(psis) > 0
    assert metric(text, "kairos_inference_out_of_distribution_total", model=label) < 0.05 * len(preds)
    assert metric(text, "kairos_inference_abstained_total", model=label) == 0


def test_abstain_sends_flat_signals_for_out_of_distribution_rows(
    nats_url: str, model_path: Path, start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    gbpusd, model = _drift_model(model_path, tmp_path)
    sub = Subscriber(nats_url, "kairos.signal.>")
    # A threshold below every row's DI: every row is out of distribution.
    srv = start_server(model, nats_url=nats_url, abstain_ood=True, ood_di_threshold=1e-9)
    _ready(srv)
    try:
        preds = _stream(srv, proto_bars(gbpusd.iloc[20000:20400]))
        assert preds
        wait_for(lambda: sub.pump() >= len(preds), 10, f"{len(preds)} signals")
    finally:
        sub.close()
    text = srv.metrics_text()
    label = f"{preds[0].model_name}/{preds[0].model_version}"
    assert metric(text, "kairos_inference_abstained_total", model=label) == len(preds)
    assert metric(text, "kairos_inference_out_of_distribution_total", model=label) == len(preds)
    assert all(list(s.outputs) == [0.0, 1.0, 0.0] and s.strength == 0 for _, s in sub.got)
    assert any(list(p.outputs) != [0.0, 1.0, 0.0] for p in preds)  # the predictions are the model's own


@pytest.mark.parametrize("abstain", [False, True], ids=["signals-first", "drift-first-with-abstain-ood"])
def test_drift_figures_follow_the_signals_unless_they_decide_them(
    abstain: bool,
    nats_url: str,
    model_path: Path,
    start_server: Callable[..., ServerThread],
    tmp_path: Path,
) -> None:
    gbpusd, model = _drift_model(model_path, tmp_path)
    srv = start_server(model, nats_url=nats_url, abstain_ood=abstain)
    _ready(srv)
    assert srv.server is not None
    servicer, order = srv.server.servicer, []
    offer, observe = servicer.publisher.offer_run, servicer.observe_rows

    def offer_run(run: object) -> None:
        order.append("signals")
        offer(run)

    def observe_rows(model: object, rows: np.ndarray) -> list[bool]:
        order.append("drift")
        return observe(model, rows)  # type: ignore[no-any-return]

    servicer.publisher.offer_run = offer_run
    servicer.observe_rows = observe_rows
    preds = _stream(srv, proto_bars(gbpusd.iloc[20000:20400]))
    runs = len(order) // 2
    assert preds and runs > 0
    want = ["drift", "signals"] if abstain else ["signals", "drift"]
    assert order == want * runs
    label = f"{preds[0].model_name}/{preds[0].model_version}"
    _wait_observed(srv, label, len(preds))  # every prediction's row still reaches the monitor
    assert metric(srv.metrics_text(), "kairos_inference_dissimilarity_index_count", model=label) == len(preds)


@pytest.mark.parametrize(
    ("signals", "abstain", "answered_first"),
    [(False, False, True), (True, False, True), (False, True, True), (True, True, False)],
    ids=["no-signals", "signals", "abstain-ood-without-signals", "abstain-ood-with-signals"],
)
def test_the_response_does_not_wait_for_the_drift_figures_unless_they_decide_the_signals(
    signals: bool,
    abstain: bool,
    answered_first: bool,
    nats_url: str,
    model_path: Path,
    start_server: Callable[..., ServerThread],
    tmp_path: Path,
) -> None:
    # The monitor is held inside the server's loop until the client has its answer (or 2 s pass):
    # the answer can only arrive meanwhile if it was written before the drift figures (ADR 0124).
    gbpusd, model = _drift_model(model_path, tmp_path)
    srv = start_server(model, nats_url=nats_url if signals else "", abstain_ood=abstain)
    _ready(srv, signals)
    assert srv.server is not None
    servicer = srv.server.servicer
    observe, answered, seen = servicer.observe_rows, threading.Event(), []

    def observe_rows(model: object, rows: np.ndarray) -> list[bool]:
        seen.append(answered.wait(2.0))
        return observe(model, rows)  # type: ignore[no-any-return]

    servicer.observe_rows = observe_rows
    c = StreamClient(srv.target)
    try:
        resp = c.ask(pb.StreamPredictRequest(request_id=1, bars=proto_bars(gbpusd.iloc[20000:20300])))
        answered.set()
        assert resp.predictions
    finally:
        c.close()
    label = f"{resp.predictions[0].model_name}/{resp.predictions[0].model_version}"
    _wait_observed(srv, label, len(resp.predictions))
    assert seen == [answered_first]


def test_the_batch_histogram_exports_what_prometheus_histogram_exports_value_by_value() -> None:
    # The dissimilarity histogram counts a batch at a time; its series must be those of
    # prometheus_client's Histogram observed one value at a time, bucket edges included.
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from kairos.inference.metrics import BatchHistogram

    buckets = (0.25, 0.5, 1.0, 2.0, 10.0)
    values = [0.1, 0.25, 0.2500001, 0.5, 0.7, 1.0, 1.9, 2.0, 9.99, 10.0, 10.01, 1e9, float("inf")]
    reg_a, reg_b = CollectorRegistry(), CollectorRegistry()
    ref = Histogram("x_index", "doc", ["model"], buckets=buckets, registry=reg_a)
    got = BatchHistogram("x_index", "doc", ["model"], buckets=buckets, registry=reg_b)
    for v in values:
        ref.labels("m/1").observe(v)
    got.observe_many(("m/1",), values[:4])
    got.observe_many(("m/1",), np.asarray(values[4:]))
    ref.labels("m/2").observe(3.0)
    got.observe_many(["m/2"], [3.0])

    def series(reg: CollectorRegistry) -> list[str]:
        lines = generate_latest(reg).decode().splitlines()
        return sorted(ln for ln in lines if not ln.startswith("#") and "_created" not in ln)

    assert series(reg_b) == series(reg_a)
