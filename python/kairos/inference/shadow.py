"""Shadow evaluation in the inference server (issue #16, ADR 0086).

``--shadow-models`` names challengers (any model source). Each is loaded, checked and hot-swapped like
the serving model (its own ``ModelManager``, metrics kept apart so ``kairos_inference_model_info`` still
names only the serving version). After a stream's response is written, the rows the serving model
predicted on go to one worker thread that runs every shadow model on the same feature windows and
accounts every model, the serving one included, on paper: a ``kairos.shadow.ShadowBook`` per (model
version, symbol), the card's decision policy and the paper venue's fills, as the backtest does.
Shadow models never publish signals: only the serving model's reach execution.

Metrics per model (``name/version``; role ``serving`` or ``shadow``): bars accounted, net return,
annualised Sharpe, turnover per bar, trades.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from kairos.inference.metrics import Metrics
from kairos.inference.model import ModelManager, ServedModel


class ShadowMetrics:
    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        labels = ["model", "role"]
        self.bars = Gauge(
            "kairos_inference_shadow_bars", "Bars accounted on paper, by model.", labels, registry=r
        )
        self.ret = Gauge(
            "kairos_inference_shadow_net_return",
            "Paper net return, fractions of max_lots notional.",
            labels,
            registry=r,
        )
        self.sharpe = Gauge(
            "kairos_inference_shadow_sharpe", "Paper net Sharpe, annualised.", labels, registry=r
        )
        self.turnover = Gauge(
            "kairos_inference_shadow_turnover",
            "Mean |position change| per bar (fraction of max_lots).",
            labels,
            registry=r,
        )
        self.trades = Gauge(
            "kairos_inference_shadow_trades", "Position changes on paper.", labels, registry=r
        )
        self.skipped = Counter(
            "kairos_inference_shadow_skipped_total",
            "Shadow runs skipped, by reason (incompatible timeframe or window, model error).",
            ["model", "reason"],
            registry=r,
        )


class _Series:
    """Per model: one book per symbol, pooled figures."""

    def __init__(self, model: ServedModel) -> None:
        from kairos.features import ModelCard
        from kairos.shadow.book import ShadowBook
        from kairos.training.policy import Params

        card = ModelCard.from_dict(model.card)
        self.policy = card.policy
        self.vol_index = model.feature_names.index(card.policy.vol_feature) if card.policy else -1
        self.books: dict[str, ShadowBook] = {}
        self.params = Params(policy=card.policy) if card.policy is not None else None
        self._book = ShadowBook

    def update(
        self, symbol: str, time_ms: int, prices: tuple[float, float, float], probs: Any, row: Any
    ) -> None:
        if self.params is None or self.policy is None:
            return
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = self._book(self.params)
        vol = float(row[self.vol_index]) * self.policy.vol_unit
        o, c, sp = prices
        book.on_bar(time_ms, o, c, sp, float(probs[0]), float(probs[2]), vol)

    def figures(self) -> tuple[int, float, float, float, int]:
        """Pooled over symbols: bars, net return, Sharpe (per-bar returns annualised with the mean bars
        per year of the symbols), turnover per bar, trades."""
        books = list(self.books.values())
        n = sum(b.n for b in books)
        s1 = sum(b.s1 for b in books)
        s2 = sum(b.s2 for b in books)
        mean = s1 / n if n else 0.0
        var = s2 / n - mean * mean if n else 0.0
        rates = [
            b.decisions / ((b.last_ms - b.first_ms) / (365.25 * 86_400_000))
            for b in books
            if b.last_ms > b.first_ms
        ]
        ppy = sum(rates) / len(rates) if rates else 0.0
        sharpe = mean / math.sqrt(var) * math.sqrt(ppy) if var > 0 and ppy > 0 else 0.0
        decisions = sum(b.decisions for b in books)
        turnover = sum(b.turnover_sum for b in books) / decisions if decisions else 0.0
        return n, s1, sharpe, turnover, sum(b.trades for b in books)


class ShadowEvaluator:
    def __init__(
        self,
        managers: list[ModelManager],
        metrics: Metrics,
        observe: Callable[[ServedModel, np.ndarray], object] | None = None,
    ) -> None:
        self.managers = managers
        # The servicer's drift observation (DI, PSI), run here on each challenger's rows.
        self.observe = observe
        self.m = ShadowMetrics(metrics)
        self.series: dict[tuple[str, str], _Series] = {}
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")  # ordered accounting
        self.lock = threading.Lock()

    def submit(self, serving: ServedModel, work: Any, outputs: np.ndarray) -> None:
        """Account this response's rows (called after the response is written; never blocks it)."""
        symbols, times, windows, prices = (
            list(work.symbols),
            list(work.times_msc),
            list(work.windows),
            list(work.prices),
        )
        if not symbols or len(prices) != len(symbols):
            return
        self.pool.submit(self._run, serving, symbols, times, windows, prices, outputs.copy())

    def figures(self, model: ServedModel) -> tuple[int, float, float, float, int]:
        """The model's live paper figures (bars, net return, Sharpe, turnover per bar, trades), pooled
        over symbols; zeros before its first bar."""
        s = self.series.get((model.name, model.version))
        if s is None:
            return (0, 0.0, 0.0, 0.0, 0)
        with self.lock:
            return s.figures()

    def _series(self, model: ServedModel) -> _Series:
        key = (model.name, model.version)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = _Series(model)
        return s

    def _account(
        self,
        model: ServedModel,
        role: str,
        symbols: list[str],
        times: list[int],
        prices: Any,
        probs: np.ndarray,
        rows: np.ndarray,
    ) -> None:
        s = self._series(model)
        with self.lock:  # GetModelStatus reads the figures from the event loop
            for k, sym in enumerate(symbols):
                # Prediction time is the bar's close; the book counts bars by it.
                s.update(sym, times[k], prices[k], probs[k], rows[k])
            n, ret, sharpe, turnover, trades = s.figures()
        label = f"{model.name}/{model.version}"
        self.m.bars.labels(label, role).set(n)
        self.m.ret.labels(label, role).set(ret)
        self.m.sharpe.labels(label, role).set(sharpe)
        self.m.turnover.labels(label, role).set(turnover)
        self.m.trades.labels(label, role).set(trades)

    def _run(
        self,
        serving: ServedModel,
        symbols: list[str],
        times: list[int],
        windows: list[np.ndarray],
        prices: list[tuple[float, float, float]],
        outputs: np.ndarray,
    ) -> None:
        rows = np.stack([w[-1] for w in windows])
        self._account(serving, "serving", symbols, times, prices, outputs, rows)
        for mgr in self.managers:
            m = mgr.current
            if m is None or (m.name, m.version) == (serving.name, serving.version):
                continue
            label = f"{m.name}/{m.version}"
            if m.timeframe_s != serving.timeframe_s or m.rows > serving.rows:
                self.m.skipped.labels(label, "incompatible").inc(len(symbols))
                continue
            x = np.stack([w[-m.rows :] for w in windows]).astype(np.float32)
            try:
                probs = m.run(x)
            except Exception:
                self.m.skipped.labels(label, "model_error").inc(len(symbols))
                continue
            mgr.predictions_total += len(symbols)
            if self.observe is not None:  # before the accounting: a reader that sees the bars sees these
                self.observe(m, rows)
            self._account(m, "shadow", symbols, times, prices, probs, rows)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
