"""Shadow evaluation in the real server: challengers run on the same bars, are accounted on paper
with their card's policy and the paper fills, and never publish a signal (real NATS subscriber)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.inference.harness import (
    TOKEN,
    ServerThread,
    StreamClient,
    load_gbpusd_m1,
    metric,
    proto_bars,
    with_card,
)
from tests.inference.test_signals import Subscriber

from kairos import cli
from kairos.features import ModelCard
from kairos.inference import shadow
from kairos.inference.v1 import inference_pb2 as pb
from kairos.stack.loopback import wait_for


def test_challengers_are_accounted_on_paper_and_only_the_champion_signals(
    nats_url: str,
    model_path: Path,
    start_server: Callable[..., ServerThread],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    card = ModelCard.from_onnx(model_path)
    assert card.policy is not None
    twin = with_card(model_path, tmp_path / "twin" / "model.onnx", version="twin")  # same weights, policy
    eager = with_card(
        model_path,
        tmp_path / "eager" / "model.onnx",
        version="eager",
        policy=dataclasses.replace(card.policy, entry_edge=card.policy.entry_edge / 5),
    )
    # The eager policy with a tight protective stop: the server passes each bar's low and high to
    # the paper book, which works the stop as the backtest does.
    stopped = with_card(
        model_path,
        tmp_path / "stopped" / "model.onnx",
        version="stopped",
        policy=dataclasses.replace(card.policy, entry_edge=card.policy.entry_edge / 5, stop_vol_mult=1.0),
    )
    sub = Subscriber(nats_url, "kairos.signal.>")
    srv = start_server(model_path, nats_url=nats_url, shadow_models=(str(twin), str(eager), str(stopped)))
    wait_for(
        lambda: (
            srv.server is not None
            and srv.server.publisher is not None
            and srv.server.publisher.nc is not None
        )
    )
    bars = proto_bars(load_gbpusd_m1(1500))
    c = StreamClient(srv.target)
    preds: list[pb.Prediction] = []
    try:
        for k in range(0, len(bars), 50):
            preds += c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 50])).predictions
        wait_for(lambda: sub.pump() >= len(preds), 10, f"{len(preds)} signals")
    finally:
        c.close()
        sub.close()
    assert len(preds) > 1000
    serving = f"{card.name}/{card.version}"
    text = ""

    def accounted() -> bool:
        nonlocal text
        text = srv.metrics_text()
        return all(
            metric(text, "kairos_inference_shadow_bars", model=m) == len(preds) - 1
            for m in (serving, f"{card.name}/twin", f"{card.name}/eager", f"{card.name}/stopped")
        )

    wait_for(accounted, 20, "every model accounted on every bar")
    # Only the serving model's signals were published.
    assert len(sub.got) == len(preds) and {s.model_version for _, s in sub.got} == {card.version}
    fig = {
        m: {
            k: metric(text, f"kairos_inference_shadow_{k}", model=m)
            for k in ("net_return", "sharpe", "turnover", "trades")
        }
        for m in (serving, f"{card.name}/twin", f"{card.name}/eager", f"{card.name}/stopped")
    }
    assert fig[serving] == fig[f"{card.name}/twin"]  # same weights and policy: the same paper record
    assert fig[f"{card.name}/eager"]["trades"] > fig[serving]["trades"]  # a lower entry threshold trades more
    # Stops close positions the eager policy would hold (then its cooldown runs): another paper record.
    assert fig[f"{card.name}/stopped"]["net_return"] != fig[f"{card.name}/eager"]["net_return"]
    assert fig[f"{card.name}/stopped"]["trades"] != fig[f"{card.name}/eager"]["trades"]
    assert metric(text, "kairos_inference_shadow_bars", model=serving, role="serving") == len(preds) - 1
    assert (
        metric(text, "kairos_inference_shadow_bars", model=f"{card.name}/eager", role="shadow")
        == len(preds) - 1
    )
    # `kairos status` shows the paper figures (GetModelStatus), the serving model first.
    cli._print_models(srv.target, TOKEN)
    shown = capsys.readouterr().out
    live = shown[shown.index("Live, on paper since loaded") :]
    assert live.count("│ serving") == 1 and live.count("│ shadow") == 3, shown
    assert live.index("│ serving") < live.index("│ shadow")
    assert f"{len(preds) - 1:,}" in live, shown
    # ... and each challenger's promotion test against it on the same bars (ADR 0097): the twin's
    # returns are the serving model's exactly (no evidence either way), the eager one's differ.
    n = f"{len(preds) - 1:,} bars"
    assert (
        f"promotion test {card.name} twin vs serving: {n}, mean difference +0.000 bp/bar, p 1: not" in shown
    )
    assert f"promotion test {card.name} eager vs serving: {n}" in shown and "Diebold-Mariano" in shown
    # model_info still names only the serving version.
    assert metric(text, "kairos_inference_model_info", model=card.name, version="twin") == 0


def _twin(model_path: Path, tmp_path: Path) -> Path:
    return with_card(model_path, tmp_path / "twin" / "model.onnx", version="twin")


def test_responses_beyond_the_pending_bound_are_dropped_counted_and_accounted_for_no_model(
    model_path: Path,
    start_server: Callable[..., ServerThread],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shadow, "MAX_PENDING", 3, raising=False)
    card = ModelCard.from_onnx(model_path)
    srv = start_server(model_path, shadow_models=(str(_twin(model_path, tmp_path)),))
    assert srv.server is not None
    ev = srv.server.servicer.shadow
    behind = threading.Event()
    ev.pool.submit(behind.wait)  # the challengers fall behind: the one worker is busy until released
    bars = proto_bars(load_gbpusd_m1(1000))
    c = StreamClient(srv.target)
    counts: list[int] = []  # predictions of each response that had some, in order
    try:
        for k in range(0, len(bars), 50):
            n = len(c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 50])).predictions)
            if n:
                counts.append(n)
    finally:
        c.close()
        text = srv.metrics_text()
        behind.set()
    assert len(counts) > 3
    assert metric(text, "kairos_inference_shadow_pending") == 3
    assert metric(text, "kairos_inference_shadow_dropped_total") == sum(counts[3:])
    # The three that waited are accounted, by every model; the dropped ones by none.
    kept = sum(counts[:3]) - 1  # a book's first bar settles nothing
    for m in (f"{card.name}/{card.version}", f"{card.name}/twin"):
        wait_for(
            lambda m=m: metric(srv.metrics_text(), "kairos_inference_shadow_bars", model=m) == kept,
            20,
            f"{m} accounted on the {kept} bars that waited",
        )
    text = srv.metrics_text()
    assert metric(text, "kairos_inference_shadow_pending") == 0
    assert metric(text, "kairos_inference_promotion_bars", model=f"{card.name}/twin") == kept


def test_a_paper_record_holds_at_most_the_symbol_cap_over_all_streams_and_counts_the_bars_refused(
    model_path: Path, start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    card = ModelCard.from_onnx(model_path)
    srv = start_server(
        model_path,
        shadow_models=(str(_twin(model_path, tmp_path)),),
        any_symbol=True,
        max_symbols_per_stream=1,
    )
    df = load_gbpusd_m1(600)
    preds: dict[str, int] = {}
    for symbol in ("GBPUSD", "EURUSD", "AUDUSD"):  # one stream each: every stream is within its cap
        bars = proto_bars(df, symbol)
        c = StreamClient(srv.target)
        try:
            preds[symbol] = sum(
                len(c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 100])).predictions)
                for k in range(0, len(bars), 100)
            )
        finally:
            c.close()
    assert all(preds.values())
    refused = preds["EURUSD"] + preds["AUDUSD"]
    skipped = "kairos_inference_shadow_skipped_total"
    for m in (f"{card.name}/{card.version}", f"{card.name}/twin"):
        wait_for(
            lambda m=m: metric(srv.metrics_text(), skipped, model=m, reason="too_many_symbols") == refused,
            20,
            f"{m}: the bars of the symbols beyond the first refused",
        )
        assert metric(srv.metrics_text(), "kairos_inference_shadow_bars", model=m) == preds["GBPUSD"] - 1
    assert srv.server is not None
    ev = srv.server.servicer.shadow
    assert [list(s.books) for s in ev.series.values()] == [["GBPUSD"], ["GBPUSD"]]
    assert [list(p.by_symbol) for p in ev.pairs.values()] == [["GBPUSD"]]
