"""Warm-up from the terminal's history end to end (ADR 0105): the real collector and inference server
(the model fixture, 256 M1 bars of window), the real bridge library driven by a stand-in terminal
that answers bar history from real GBPUSD M1 bars (moved in time to end at the current minute) and
streams live quotes. The inference server starts, or restarts, while the terminal streams: its
first prediction comes at the close of the first live minute, not 256 minutes later.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import kairos.bridge.client as kb
from kairos.stack import processes, services
from kairos.training.data import read_market_data

REPO = Path(__file__).resolve().parents[3]
BARS = REPO.parent / "shared" / "data" / "gbpusd-m1-bid-2012.csv"
MODEL = REPO / "python" / "tests" / "data" / "model" / "model.onnx"
MINUTE_MS = 60_000


class Terminal:
    """Answers BARS history requests with real bars laid end to end up to the current minute, and
    pushes a live quote every 100 ms (near the last bar's close)."""

    def __init__(self, collector: str, key: str) -> None:
        b = read_market_data(str(BARS)).frame.iloc[:3000]
        self.rates = np.zeros(len(b), dtype=kb.MQL_RATES_DTYPE)
        for c in ("open", "high", "low", "close"):
            self.rates[c] = b[c].to_numpy()
        self.rates["tick_volume"] = 1
        self.price = float(self.rates["close"][-1])
        self.asked: list[tuple[int, int]] = []
        self.stop = threading.Event()
        self.bridge = kb.Bridge(collector, "", terminal_name="terminal-stand-in", bridge_key=key)
        self.bridge.set_server_offset(0)
        self.bridge.announce_symbol("GBPUSD", 5)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        next_tick = 0.0
        while not self.stop.is_set():
            req = self.bridge.poll_history()
            if req is not None:
                self.asked.append((req.from_msc, req.to_msc))
                self.answer(req)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + 0.1
                now = int(time.time() * 1000)
                self.bridge.push_ticks(
                    "GBPUSD", 5, kb.quote_ticks([now], [self.price], [self.price + 0.0002])
                )
            time.sleep(0.002)

    def answer(self, req: kb.HistoryRequest) -> None:
        # The real bars, the last one opening at the current minute (the bar still forming, as
        # CopyRates returns it when the range reaches the present).
        now_open = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
        rates = self.rates.copy()
        rates["time"] = (now_open - (len(rates) - 1 - np.arange(len(rates))) * MINUTE_MS) // 1000
        t = rates["time"] * 1000
        rows = rates[(t >= req.from_msc) & (t <= req.to_msc)]  # CopyRates: both ends inclusive
        for at in range(0, len(rows), 4096):
            while self.bridge.history_bars(req.request_id, rows[at : at + 4096]) == kb.Status.E_QUEUE_FULL:
                time.sleep(0.005)
        status = kb.HISTORY_DONE if len(rows) else kb.HISTORY_EMPTY
        while self.bridge.history_end(req.request_id, status, 0, "") == kb.Status.E_QUEUE_FULL:
            time.sleep(0.005)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.bridge.close()


def metric(url: str, name: str, **labels: str) -> float:
    with contextlib.suppress(OSError):
        samples = services.metric_samples(url, name)
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return sum(v for k, v in samples.items() if want in k)
    return 0.0


def diagnosis(collector_url: str, inference_url: str, term: Terminal) -> str:
    """What the warm-up did, for a failure's message: the collector's warm-ups by outcome, the bars
    inference took, the history the terminal was asked for."""
    with contextlib.suppress(OSError):
        warmups = services.metric_samples(collector_url, "kairos_collector_inference_warmups_total")
        bars = metric(inference_url, "kairos_inference_warmup_bars_total")
        return f"collector warm-ups {warmups}, inference warm-up bars {bars}, terminal asked {term.asked}"
    return f"metrics unreadable; terminal asked {term.asked}"


@pytest.fixture
def stack(
    tmp_path: Path,
) -> Iterator[tuple[services.StackSettings, processes.Stack, list[processes.ServiceSpec]]]:
    settings = services.StackSettings(ports=services.Ports.free(), run_dir=tmp_path / "run", model=str(MODEL))
    binaries = services.build_go_binaries(settings.bin_dir)
    specs = services.specs(settings, binaries)[:2]  # collector, inference
    procs = processes.Stack(settings.run_dir)
    try:
        yield settings, procs, specs
    finally:
        procs.stop()


@pytest.mark.slow
def test_after_an_inference_restart_the_first_prediction_comes_within_a_minute(
    stack: tuple[services.StackSettings, processes.Stack, list[processes.ServiceSpec]],
) -> None:
    settings, procs, (collector, inference) = stack
    procs.start_all([collector])
    term = Terminal(f"127.0.0.1:{settings.ports.collector_bridge}", settings.ensure_bridge_key())
    try:
        deadline = time.monotonic() + 15
        while not term.bridge.counters()["market_data_connected"]:
            assert time.monotonic() < deadline, "the bridge did not connect to the collector"
            time.sleep(0.01)
        waits = []
        for _ in range(2):  # a start, then a restart, while the terminal streams
            svc = procs.start(inference)
            procs.wait_ready(svc)
            started = time.monotonic()
            services.wait_pipeline_ready(settings)
            url = inference.metrics_url
            deadline = (
                started + 150
            )  # at most a minute to the next bar's close, plus slack on a loaded machine
            while metric(url, "kairos_inference_predictions_total") < 1:
                assert time.monotonic() < deadline, (
                    "no prediction within two and a half minutes of the start; "
                    + diagnosis(collector.metrics_url, url, term)
                )
                procs.raise_if_dead()
                time.sleep(0.2)
            waits.append(time.monotonic() - started)
            assert metric(url, "kairos_inference_warmup_bars_total") >= 256
            processes.terminate(svc.process, 10)
            procs.services.remove(svc)
        print(
            f"first prediction after the inference start: {waits[0]:.1f} s, after a restart: {waits[1]:.1f} s"
        )
        c = collector.metrics_url
        assert metric(c, "kairos_collector_inference_warmups_total", outcome="done") == 2
        assert metric(c, "kairos_collector_inference_warmup_bars_total") == 2 * 256
        # Asked once per stream: the bars of the model's window and a weekend's slack, ending at the
        # current minute (the forming bar left out by the collector).
        assert len(term.asked) == 2
        for lo, hi in term.asked:
            assert hi % MINUTE_MS == 0 and hi - lo >= 256 * MINUTE_MS
    finally:
        term.close()
