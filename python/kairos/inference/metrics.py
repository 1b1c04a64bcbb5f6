"""Prometheus metrics of the inference server, on a registry of its own (one per server instance)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

# Explicit latency buckets (seconds): the hot path lives between 20 µs and a few ms.
LATENCY_BUCKETS = (
    20e-6,
    50e-6,
    100e-6,
    200e-6,
    300e-6,
    500e-6,
    1e-3,
    2e-3,
    5e-3,
    10e-3,
    25e-3,
    100e-3,
    1.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class BatchHistogram:
    """A labelled Prometheus histogram observed a batch of values at a time.

    prometheus_client's ``Histogram.observe`` takes one value (a lock and a bucket search each: 64
    values cost ~54 µs); this one counts a numpy batch into its buckets in one pass (~5 µs) and
    exports the same series (``_bucket``, ``_count``, ``_sum``) through a custom collector.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or bounds[-1] != float("inf"):
            bounds.append(float("inf"))
        self._bounds = np.asarray(bounds)
        self._le = [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], tuple[npt.NDArray[np.int64], list[float]]] = {}
        registry.register(self)

    def observe_many(self, labels: Sequence[str], values: npt.ArrayLike) -> None:
        """Observe every value (NaN ones are dropped; ``observe`` would count them nowhere but the sum)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[~np.isnan(v)]
        # Bucket i counts bounds[i-1] < value <= bounds[i] (Prometheus' le), cumulated on export.
        counts = np.bincount(np.searchsorted(self._bounds, v, side="left"), minlength=len(self._bounds))
        key = tuple(labels)
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = (np.zeros(len(self._bounds), dtype=np.int64), [0.0])
            series[0][:] += counts
            series[1][0] += float(v.sum())

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        fam = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            snapshot = [(k, np.cumsum(c).tolist(), s[0]) for k, (c, s) in self._series.items()]
        for key, cum, total in snapshot:
            fam.add_metric(list(key), list(zip(self._le, cum, strict=True)), sum_value=total)
        yield fam


class Metrics:
    """Every counter, gauge and histogram the server exports (names start with kairos_inference_)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "kairos_inference_requests_total", "Requests received, by RPC.", ["rpc"], registry=r
        )
        self.predictions = Counter(
            "kairos_inference_predictions_total", "Predictions made, by model.", ["model"], registry=r
        )
        self.rejected = Counter(
            "kairos_inference_rejected_inputs_total",
            "Input items refused (ticks, batches, bars, requests), by reason.",
            ["reason"],
            registry=r,
        )
        self.keep_warm_runs = Counter(
            "kairos_inference_keep_warm_runs_total",
            "Rehearsals while idle (--keep-warm, ADR 0118), by what they ran: the whole path of a recent "
            "request (request) or the model on a zero input (model). Not requests, not predictions.",
            ["path"],
            registry=r,
        )
        self.idle_spin = Gauge(
            "kairos_inference_idle_spin_threads",
            "Threads keeping this process's CPU from going idle (--idle-spin, ADR 0123): 1 while on. Each "
            "shows as a whole CPU busy, under SCHED_IDLE (it yields to any other thread at once).",
            registry=r,
        )
        self.batch_size = Histogram(
            "kairos_inference_batch_size", "Rows per ONNX Runtime run.", buckets=BATCH_BUCKETS, registry=r
        )
        self.model_run_seconds = Histogram(
            "kairos_inference_model_run_seconds",
            "Wall time of one ONNX Runtime run.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "kairos_inference_request_seconds",
            "Time from reading a request to writing its response, by RPC.",
            ["rpc"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "kairos_inference_model_info",
            "1 for the model version serving now (labels name, version, source).",
            ["model", "version", "source"],
            registry=r,
        )
        self.model_validation = Gauge(
            "kairos_inference_model_validation_info",
            "1 for the serving version: the registration gate's verdict in its card (PASSED, FAILED, or "
            "UNVALIDATED without one), its out-of-sample net Sharpe with the interval, and the trials "
            "behind it.",
            ["model", "version", "gate", "sharpe", "sharpe_ci", "n_trials"],
            registry=r,
        )
        self.model_loads = Counter(
            "kairos_inference_model_loads_total",
            "Model loads, by result (ok, failed, refused = schema hash mismatch or bad card).",
            ["result"],
            registry=r,
        )
        self.streams_active = Gauge(
            "kairos_inference_streams_active", "Open StreamPredict calls.", registry=r
        )
        self.symbol_states = Gauge(
            "kairos_inference_symbol_states", "Per-symbol feature states held by open streams.", registry=r
        )
        self.bar_intake = Counter(
            "kairos_inference_bar_intake_total",
            "Requests of bars only, by the path that took them: c++ (the bar intake took every bar, ADR "
            "0110) or python (a refusal to word, a new symbol or model, a model with more than the base "
            "block).",
            ["path"],
            registry=r,
        )
        self.tick_intake = Counter(
            "kairos_inference_tick_intake_total",
            "Requests of ticks only, by the path that took them: c++ (the tick intake took every tick, "
            "ADR 0119) or python (a refusal to word, a new symbol or model, a model with more than the "
            "base block).",
            ["path"],
            registry=r,
        )
        self.warmup_bars = Counter(
            "kairos_inference_warmup_bars_total",
            "Bars closed by warm-up requests (StreamPredictRequest.warmup, ADR 0105): state, no prediction.",
            registry=r,
        )
        self.signals_published = Counter(
            "kairos_inference_signals_published_total", "Signals handed to NATS.", registry=r
        )
        self.signals_dropped = Counter(
            "kairos_inference_signals_dropped_total",
            "Signals not published, by reason (queue_full, nats_error).",
            ["reason"],
            registry=r,
        )
        self.tls_reload_failures = Counter(
            "kairos_inference_tls_reload_failures_total",
            "Changed TLS certificate files that failed to load; the previous pair keeps serving.",
            registry=r,
        )
        # Drift (ADR 0087): per prediction and over a window, against the card's training distribution.
        self.dissimilarity = BatchHistogram(
            "kairos_inference_dissimilarity_index",
            "Dissimilarity index of each predicted row (1 = a typical training row).",
            ["model"],
            buckets=(0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0),
            registry=r,
        )
        self.ood = Counter(
            "kairos_inference_out_of_distribution_total",
            "Predicted rows whose dissimilarity index exceeded the threshold.",
            ["model"],
            registry=r,
        )
        self.abstained = Counter(
            "kairos_inference_abstained_total",
            "Signals sent flat because their row was out of distribution (--abstain-ood).",
            ["model"],
            registry=r,
        )
        self.feature_psi = Gauge(
            "kairos_inference_feature_psi",
            "Population Stability Index of a feature over the drift window vs training.",
            ["model", "feature"],
            registry=r,
        )
