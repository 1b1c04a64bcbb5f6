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

Bounds (peer input): at most ``MAX_PENDING`` responses wait for the worker (more are dropped whole,
counted, and accounted for no model); a model's paper record holds at most ``--max-symbols-per-stream``
symbols over all streams (bars of a further symbol are skipped, reason ``too_many_symbols``).

The promotion test (ADR 0097): for every challenger, the per-bar net returns it and the serving model
earned on the same bars (same symbol, same bar, both books settled) are paired, d = challenger -
serving, one series per symbol, and tested with ``kairos.training.stats.paired_test`` (one-sided
Diebold-Mariano, Newey-West variance). ``significant`` when the pairs number at least
``--promotion-min-bars`` and p <= ``--promotion-alpha``. A hot swap of either model starts a new
record: the test is always of these two versions. Exported as ``kairos_inference_promotion_*{model,
against}`` and in GetModelStatus (``ModelStatus.promotion``). The server only reports; moving the
alias is the promoter's job (``kairos models promote --if-significant``, ``kairos-train loop``'s
``[auto_promote]``), which holds the registry's credentials.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge

from kairos.inference.metrics import Metrics
from kairos.inference.model import ModelManager, ServedModel
from kairos.inference.v1 import inference_pb2 as pb

PROMOTION_UPDATE_S = 1.0
"""How often the worker recomputes the promotion metrics (GetModelStatus computes on demand)."""

MAX_PENDING = 256
"""Responses waiting for the shadow worker at most; each holds copies of its windows and outputs. When
the challengers are slower than the requests, later responses are not evaluated (counted in
``kairos_inference_shadow_dropped_total``) rather than queued without limit."""


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
        pair = ["model", "against"]
        self.promo_bars = Gauge(
            "kairos_inference_promotion_bars",
            "Bars on which a shadow model and the serving model (against) were both accounted.",
            pair,
            registry=r,
        )
        self.promo_diff = Gauge(
            "kairos_inference_promotion_mean_difference",
            "Mean per-bar net return, shadow minus serving, fraction of max_lots notional.",
            pair,
            registry=r,
        )
        self.promo_stat = Gauge(
            "kairos_inference_promotion_statistic",
            "Diebold-Mariano statistic of the difference (Newey-West variance).",
            pair,
            registry=r,
        )
        self.promo_p = Gauge(
            "kairos_inference_promotion_p_value",
            "One-sided p-value that the shadow model is not better than the serving one.",
            pair,
            registry=r,
        )
        self.promo_sig = Gauge(
            "kairos_inference_promotion_significant",
            "1 when bars >= --promotion-min-bars and p <= --promotion-alpha, else 0.",
            pair,
            registry=r,
        )
        self.skipped = Counter(
            "kairos_inference_shadow_skipped_total",
            "Shadow runs skipped, by reason (incompatible timeframe or window, model error).",
            ["model", "reason"],
            registry=r,
        )
        self.dropped = Counter(
            "kairos_inference_shadow_dropped_total",
            f"Rows not evaluated in shadow by any model: {MAX_PENDING} responses were already waiting.",
            registry=r,
        )
        self.pending = Gauge(
            "kairos_inference_shadow_pending",
            "Responses waiting for the shadow worker.",
            registry=r,
        )


class _Series:
    """Per model: one book per symbol, pooled figures."""

    def __init__(self, model: ServedModel, max_symbols: int) -> None:
        from kairos.features import ModelCard
        from kairos.shadow.book import ShadowBook
        from kairos.training.policy import Params

        card = ModelCard.from_dict(model.card)
        self.policy = card.policy
        self.vol_index = model.feature_names.index(card.policy.vol_feature) if card.policy else -1
        self.books: dict[str, ShadowBook] = {}  # at most max_symbols
        self.max_symbols = max_symbols
        self.params = Params(policy=card.policy) if card.policy is not None else None
        self._book = ShadowBook

    def update(
        self,
        symbol: str,
        time_ms: int,
        prices: tuple[float, float, float, float, float],
        probs: Any,
        row: Any,
    ) -> float | None:
        """Account one bar; the net return settled on it (NaN on a book's first bar or without a policy),
        None for a new symbol beyond ``max_symbols`` (refused: no book, the bar is not accounted)."""
        if self.params is None or self.policy is None:
            return math.nan
        book = self.books.get(symbol)
        if book is None:
            if len(self.books) >= self.max_symbols:
                return None
            book = self.books[symbol] = self._book(self.params)
        vol = float(row[self.vol_index]) * self.policy.vol_unit
        o, c, sp, lo, hi = prices  # low and high: the card's protective stop is worked on the bar
        book.on_bar(time_ms, o, c, sp, float(probs[0]), float(probs[2]), vol, lo, hi)
        return book.last_net if book.decisions > 1 else math.nan

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


class _Pairs:
    """Per (shadow version, serving version): d = shadow net - serving net on each bar both settled,
    one series per symbol, in bar order."""

    def __init__(self) -> None:
        # 8 bytes a bar. Bounded by the books: a pair needs both models' books settled on the symbol,
        # and each model holds at most max_symbols books.
        self.by_symbol: dict[str, array[float]] = {}

    def add(self, symbol: str, d: float) -> None:
        a = self.by_symbol.get(symbol)
        if a is None:
            a = self.by_symbol[symbol] = array("d")
        a.append(d)

    def segments(self) -> list[np.ndarray]:
        """Copies of the per-symbol series (taken under the evaluator's lock)."""
        return [np.frombuffer(v, dtype=np.float64).copy() for v in self.by_symbol.values()]


class ShadowEvaluator:
    def __init__(
        self,
        managers: list[ModelManager],
        metrics: Metrics,
        promotion_min_bars: int = 1000,
        promotion_alpha: float = 0.05,
        observe: Callable[[ServedModel, np.ndarray], object] | None = None,
        max_symbols: int = 1_000,
    ) -> None:
        self.managers = managers
        self.max_symbols = max_symbols  # per model, over all streams (--max-symbols-per-stream)
        self.max_pending = MAX_PENDING
        # The servicer's drift observation (DI, PSI), run here on each challenger's rows.
        self.observe = observe
        self.m = ShadowMetrics(metrics)
        self.series: dict[tuple[str, str], _Series] = {}
        self.pairs: dict[tuple[str, str, str, str], _Pairs] = {}  # (name, version, serving name, version)
        self.min_bars = promotion_min_bars
        self.alpha = promotion_alpha
        self._promo_labels: set[tuple[str, str]] = set()
        self._tests: dict[tuple[str, str, str, str], pb.PromotionTest] = {}  # the last computed tests
        self._promo_at = 0.0
        self._pending = 0  # submitted runs not finished (the figures are exported when it drops to 0)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")  # ordered accounting
        self.lock = threading.Lock()

    def submit(self, serving: ServedModel, work: Any, outputs: np.ndarray) -> None:
        """Account this response's rows (called after the response is written; never blocks it). Beyond
        ``max_pending`` responses waiting, the rows are dropped (counted) before anything is copied."""
        n = len(work.symbols)
        if not n or len(work.prices) != n:
            return
        with self.lock:
            full = self._pending >= self.max_pending
            if not full:
                self._pending += 1
                self.m.pending.set(self._pending)
        if full:  # the challengers are behind: this response is accounted for no model
            self.m.dropped.inc(n)
            return
        symbols, times, windows, prices = (
            list(work.symbols),
            list(work.times_msc),
            list(work.windows),
            list(work.prices),
        )
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
            s = self.series[key] = _Series(model, self.max_symbols)
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
    ) -> list[float]:
        s = self._series(model)
        with self.lock:  # GetModelStatus reads the figures from the event loop
            # Prediction time is the bar's close; the book counts bars by it.
            got = [s.update(sym, times[k], prices[k], probs[k], rows[k]) for k, sym in enumerate(symbols)]
            n, ret, sharpe, turnover, trades = s.figures()
        label = f"{model.name}/{model.version}"
        nets = [math.nan if v is None else v for v in got]  # a refused symbol's bar pairs with nothing
        refused = len(got) - sum(v is not None for v in got)
        if refused:
            self.m.skipped.labels(label, "too_many_symbols").inc(refused)
        self.m.bars.labels(label, role).set(n)
        self.m.ret.labels(label, role).set(ret)
        self.m.sharpe.labels(label, role).set(sharpe)
        self.m.turnover.labels(label, role).set(turnover)
        self.m.trades.labels(label, role).set(trades)
        return nets

    def _run(
        self,
        serving: ServedModel,
        symbols: list[str],
        times: list[int],
        windows: list[np.ndarray],
        prices: list[tuple[float, float, float]],
        outputs: np.ndarray,
    ) -> None:
        try:
            self._run_models(serving, symbols, times, windows, prices, outputs)
        finally:
            with self.lock:
                self._pending -= 1
                self.m.pending.set(self._pending)
                idle = self._pending == 0
            now = time.monotonic()
            if idle or now - self._promo_at >= PROMOTION_UPDATE_S:
                self._promo_at = now
                self._export_promotion(serving)

    def _run_models(
        self,
        serving: ServedModel,
        symbols: list[str],
        times: list[int],
        windows: list[np.ndarray],
        prices: list[tuple[float, float, float]],
        outputs: np.ndarray,
    ) -> None:
        rows = np.stack([w[-1] for w in windows])
        base = self._account(serving, "serving", symbols, times, prices, outputs, rows)
        for mgr in self.managers:
            m = mgr.current
            if m is None or (m.name, m.version) == (serving.name, serving.version):
                continue
            label = f"{m.name}/{m.version}"
            if (
                m.timeframe_s != serving.timeframe_s
                or m.rows > serving.rows
                or m.feature_names != serving.feature_names  # other feature blocks (ADR 0104)
            ):
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
            nets = self._account(m, "shadow", symbols, times, prices, probs, rows)
            key = (m.name, m.version, serving.name, serving.version)
            with self.lock:
                pairs = self.pairs.get(key)
                if pairs is None:
                    pairs = self.pairs[key] = _Pairs()
                for sym, a, b in zip(symbols, nets, base, strict=True):
                    if a == a and b == b:  # both books settled this bar (not NaN)
                        pairs.add(sym, a - b)

    # --- the promotion test -----------------------------------------------------------------------

    def promotion(self, name: str, version: str, serving: ServedModel | None) -> pb.PromotionTest | None:
        """The last computed test of the shadow model ``name``/``version`` against ``serving`` (the
        worker recomputes it every second and when it goes idle, so GetModelStatus never computes on
        the event loop); None before any pair."""
        if serving is None:
            return None
        with self.lock:
            t = self._tests.get((name, version, serving.name, serving.version))
        if t is None:
            return None
        out = pb.PromotionTest()
        out.CopyFrom(t)
        return out

    def _compute(self, name: str, version: str, serving: ServedModel) -> pb.PromotionTest | None:
        with self.lock:
            pairs = self.pairs.get((name, version, serving.name, serving.version))
            if pairs is None:
                return None
            segments = pairs.segments()
        from kairos.training.stats import paired_test

        t = paired_test(segments)  # outside the lock: the accounting goes on meanwhile
        return pb.PromotionTest(
            bars=t.n,
            mean_difference=t.mean_difference,
            statistic=t.statistic,
            p_value=t.p_value,
            method=f"{t.method}; significant at p <= {self.alpha:g} after >= {self.min_bars} bars",
            significant=t.n >= self.min_bars and t.p_value <= self.alpha,
        )

    def _export_promotion(self, serving: ServedModel) -> None:
        against = f"{serving.name}/{serving.version}"
        seen: set[tuple[str, str]] = set()
        for mgr in self.managers:
            m = mgr.current
            if m is None:
                continue
            p = self._compute(m.name, m.version, serving)
            if p is None:
                continue
            with self.lock:
                self._tests[(m.name, m.version, serving.name, serving.version)] = p
            labels = (f"{m.name}/{m.version}", against)
            seen.add(labels)
            self.m.promo_bars.labels(*labels).set(p.bars)
            self.m.promo_diff.labels(*labels).set(p.mean_difference)
            self.m.promo_stat.labels(*labels).set(p.statistic)
            self.m.promo_p.labels(*labels).set(p.p_value)
            self.m.promo_sig.labels(*labels).set(1.0 if p.significant else 0.0)
        with self.lock:  # tests of versions no longer loaded (either side swapped) are dropped
            live = {(m.name, m.version) for m in (g.current for g in self.managers) if m is not None}
            for key in [
                k for k in self.pairs if k[:2] not in live or k[2:] != (serving.name, serving.version)
            ]:
                del self.pairs[key]
                self._tests.pop(key, None)
        for labels in self._promo_labels - seen:  # a swapped version: its old test no longer applies
            sm = self.m
            for g in (sm.promo_bars, sm.promo_diff, sm.promo_stat, sm.promo_p, sm.promo_sig):
                g.remove(*labels)
        self._promo_labels = seen

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def fill_promotion(
    models: list[pb.ModelStatus], shadow: ShadowEvaluator, serving: ServedModel | None
) -> None:
    """Set ``promotion`` on every shadow entry that has been paired with the serving model."""
    for st in models:
        if st.role != "shadow" or not st.model_version:
            continue
        p = shadow.promotion(st.model_name, st.model_version, serving)
        if p is not None:
            st.promotion.CopyFrom(p)
