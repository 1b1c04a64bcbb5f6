"""Training distribution of the features, dissimilarity of live rows, drift over a window (ADR 0087).

Training stores ``distribution(rows)`` in the model card (``feature_distribution``); the inference
server builds a ``DriftMonitor`` from it and feeds it every feature row it predicts on.

- **Per feature**: mean, standard deviation, quantiles (``QUANTILES``) and a 10-bin histogram whose
  edges are the training deciles (open-ended outer bins), with the training share of each bin.
- **Dissimilarity index (DI)**, after FreqAI's idea: the distance of a row from the training data,
  relative to the training data's own spread. FreqAI divides the mean distance to every training
  point by the mean pairwise training distance; keeping every training point in the card is too
  heavy, so here the distance is to the training mean in standardised units (Euclidean over z-scores,
  features with zero variance left out), divided by the mean of that distance over the training rows:
  DI ~ 1 for a typical row. The card keeps the training DI's quantiles; a row whose DI exceeds
  the training p99.9 (``di.q999``, or a configured threshold) is **out of distribution**.
- **Population Stability Index (PSI)** per feature over the last ``window`` rows against the training
  bin shares: sum((a - e) x ln(a / e)), shares floored at 1e-4. Rule of thumb: < 0.1 stable,
  0.1-0.25 moderate shift, > 0.25 significant shift.

numpy only (the inference server imports it). The monitor's per-row work, each row's DI and its
bins, runs in the C++ feature extension when it is built (``kairos.features.native``, ADR 0111); the
numpy path here is its definition and the tests hold the two equal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from kairos.features import native as native_ext

QUANTILES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)
BIN_EDGES = tuple(i / 10 for i in range(1, 10))  # deciles: 10 bins, the outer two open-ended
PSI_FLOOR = 1e-4
DI_QUANTILES = {"q50": 0.5, "q90": 0.9, "q99": 0.99, "q999": 0.999, "max": 1.0}

F64 = npt.NDArray[np.float64]


def distribution(rows: npt.ArrayLike, names: Sequence[str]) -> dict[str, Any]:
    """The card's ``feature_distribution`` from training feature rows [n, n_features] (NaN rows dropped)."""
    x = np.asarray(rows, dtype=np.float64)
    x = x[np.isfinite(x).all(axis=1)]
    if len(x) < 20:
        raise ValueError(f"{len(x)} finite feature rows: too few for a distribution")
    feats: dict[str, Any] = {}
    for j, name in enumerate(names):
        col = x[:, j]
        edges = np.unique(np.quantile(col, BIN_EDGES))
        counts = np.bincount(np.searchsorted(edges, col, side="right"), minlength=len(edges) + 1)
        feats[name] = {
            "mean": float(col.mean()),
            "std": float(col.std()),
            "quantiles": [float(q) for q in np.quantile(col, QUANTILES)],
            "bin_edges": [float(e) for e in edges],
            "bin_shares": [float(c) / len(col) for c in counts],
        }
    out: dict[str, Any] = {"rows": len(x), "quantile_levels": list(QUANTILES), "features": feats}
    mean = np.array([v["mean"] for v in feats.values()])
    std = np.array([v["std"] for v in feats.values()])
    dist0 = DissimilarityIndex(mean, std, 1.0).distance(x)
    md = float(dist0.mean()) or 1.0
    out["di"] = {
        "method": "z-score distance to the training mean / its mean over the training rows",
        "mean_distance": md,
        **{k: float(np.quantile(dist0 / md, q)) for k, q in DI_QUANTILES.items()},
    }
    return out


class DissimilarityIndex:
    """DI of rows against a card's ``feature_distribution`` (module docstring)."""

    def __init__(self, mean: F64, std: F64, mean_distance: float) -> None:
        self.use = std > 0
        self.mean = mean[self.use]
        self.std = std[self.use]
        self.mean_distance = mean_distance

    @classmethod
    def from_distribution(cls, dist: dict[str, Any], names: Sequence[str]) -> DissimilarityIndex:
        f = dist["features"]
        return cls(
            np.array([f[n]["mean"] for n in names], dtype=np.float64),
            np.array([f[n]["std"] for n in names], dtype=np.float64),
            float(dist["di"]["mean_distance"]),
        )

    def distance(self, rows: npt.ArrayLike) -> F64:
        x = np.atleast_2d(np.asarray(rows, dtype=np.float64))[:, self.use]
        return np.asarray(np.sqrt((((x - self.mean) / self.std) ** 2).sum(axis=1)), dtype=np.float64)

    def index(self, rows: npt.ArrayLike) -> F64:
        return self.distance(rows) / self.mean_distance


def psi(actual: npt.ArrayLike, edges: Sequence[float], expected_shares: Sequence[float]) -> float:
    """Population Stability Index of ``actual`` values against the training bins."""
    a = np.asarray(actual, dtype=np.float64)
    a = a[np.isfinite(a)]
    if not len(a):
        return float("nan")
    counts = np.bincount(np.searchsorted(np.asarray(edges), a, side="right"), minlength=len(edges) + 1)
    p = np.maximum(counts / len(a), PSI_FLOOR)
    e = np.maximum(np.asarray(expected_shares, dtype=np.float64), PSI_FLOOR)
    return float(((p - e) * np.log(p / e)).sum())


class DriftMonitor:
    """Per-model state in the server: DI of each row, a ring of the last ``window`` rows for PSI.

    The PSI is kept as it goes: each row's bin per feature is found once, when it enters the ring,
    and the ring's bin counts move by the rows that enter and leave; ``psi()`` then reads the counts
    (the same figure as ``psi`` over the ring's rows, held to it by the tests) instead of binning the
    whole window again (~570 µs for 23 features over 500 rows, on every 64-row request).

    ``native``: the per-row work in C++ (``DriftTally``) when the extension is built (None: when it
    is; True: it must be; False: numpy). 64 rows cost ~65 µs in numpy and a few µs in C++ (ADR 0111).
    """

    def __init__(
        self,
        dist: dict[str, Any],
        feature_names: Sequence[str],
        window: int = 500,
        di_threshold: float = 0.0,
        native: bool | None = None,
    ) -> None:
        self.names = list(feature_names)
        f = dist["features"]
        missing = [n for n in self.names if n not in f]
        if missing:
            raise ValueError(f"feature_distribution lacks {missing}")
        self.edges = [f[n]["bin_edges"] for n in self.names]
        self.shares = [f[n]["bin_shares"] for n in self.names]
        self.di = DissimilarityIndex.from_distribution(dist, self.names)
        self.threshold = di_threshold if di_threshold > 0 else float(dist["di"]["q999"])
        if window <= 0:
            raise ValueError(f"drift window {window}: must be positive")
        self.window = window
        self.n = 0
        # What GetModelStatus reports (kairos.inference.v1.DriftStatus): the latest row's DI, the
        # out-of-distribution rows and abstentions so far, the latest PSI per feature.
        self.di_last = float("nan")
        self.ood_total = 0
        self.abstained_total = 0
        self.psi_last: dict[str, float] = {}
        # When the PSI was last computed: self.n then, and time.monotonic() (the server's cadence).
        self.psi_n = 0
        self.psi_time = float("-inf")
        # Every feature's edges padded to one width with +inf (no finite value reaches a padded edge),
        # its bins' training shares, and which bins exist; each ring row's bin per feature (-1: not
        # finite, or no row yet) and the ring's count per (feature, bin).
        nf = len(self.names)
        self._nb = max(len(e) for e in self.edges) + 1 if nf else 1
        edges = np.full((nf, self._nb - 1), np.inf)
        self._expected = np.ones((nf, self._nb))
        self._exists = np.zeros((nf, self._nb), dtype=bool)
        for j, (e, sh) in enumerate(zip(self.edges, self.shares, strict=True)):
            if len(sh) != len(e) + 1:
                raise ValueError(f"feature {self.names[j]}: {len(sh)} bin shares for {len(e)} edges")
            edges[j, : len(e)] = e
            self._expected[j, : len(sh)] = np.maximum(np.asarray(sh, dtype=np.float64), PSI_FLOOR)
            self._exists[j, : len(sh)] = True
        self._native: Any = None
        if native is not False and native_ext.load() is not None:
            self._native = native_ext.drift_tally(
                edges,
                window,
                np.array([f[n]["mean"] for n in self.names], dtype=np.float64),
                np.array([f[n]["std"] for n in self.names], dtype=np.float64),
                self.di.mean_distance,
            )
            return
        if native:
            raise RuntimeError("the C++ feature extension is not built (make cpp-build)")
        # The numpy path's state. (edge, 1, feature): a batch of rows compares against it in one
        # broadcast, and the count of edges at or below each value sums whole planes (summing along a
        # short last axis is slow).
        self._edges = np.ascontiguousarray(edges.T)[:, None, :]
        self._bins = np.full((window, nf), -1, dtype=np.int64)
        self._counts = np.zeros((nf, self._nb), dtype=np.int64)
        self._offsets = np.arange(nf, dtype=np.int64) * self._nb

    def _bin(self, x: F64) -> npt.NDArray[np.int64]:
        """Each value's training bin (``psi``'s searchsorted, side right: edges <= value); -1: not finite."""
        b: npt.NDArray[np.int64] = (x[None] >= self._edges).sum(axis=0, dtype=np.int64)
        b[~np.isfinite(x)] = -1
        return b

    def _tally(self, bins: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Counts per (feature, bin) of rows of bins (-1 not counted)."""
        flat = (bins + self._offsets)[bins >= 0]
        counts: npt.NDArray[np.int64] = np.bincount(flat, minlength=self._counts.size)
        return counts.reshape(self._counts.shape)

    def observe(self, rows: npt.ArrayLike) -> tuple[F64, npt.NDArray[np.bool_]]:
        """DI of each row and whether it is out of distribution; the rows join the PSI window."""
        x = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        if self._native is not None:
            d = self._native.observe(x)
            self.n = self._native.n
        else:
            d = self._observe(x)
        ood = d > self.threshold
        if len(d):
            self.di_last = float(d[-1])
            self.ood_total += int(ood.sum())
        return d, ood

    def _observe(self, x: F64) -> F64:
        """The numpy path of ``observe``: DI of each row; the rows' bins join the window's counts."""
        new = x[-self.window :]
        bins = self._bin(new)
        start = self.n % self.window
        # The ring positions the rows go to: one slice, or two when they wrap around.
        for lo, hi, part in (
            (start, min(start + len(new), self.window), slice(0, self.window - start)),
            (0, start + len(new) - self.window, slice(self.window - start, None)),
        ):
            if hi > lo:
                self._counts += self._tally(bins[part]) - self._tally(self._bins[lo:hi])
                self._bins[lo:hi] = bins[part]
        self.n += len(new)
        return self.di.index(x) if len(x) else np.zeros(0)

    def psi(self) -> dict[str, float]:
        """PSI per feature over the rows in the window (NaN until it holds ``window`` // 5 rows)."""
        k = min(self.n, self.window)
        if k < max(self.window // 5, 20):
            return {n: float("nan") for n in self.names}
        counts = self._native.counts() if self._native is not None else self._counts
        finite = counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = np.maximum(counts / finite[:, None], PSI_FLOOR)
            e = self._expected
            terms = np.where(self._exists, (p - e) * np.log(p / e), 0.0)
        values = np.where(finite > 0, terms.sum(axis=1), np.nan)
        out = dict(zip(self.names, values.tolist(), strict=True))
        self.psi_last = out
        self.psi_n = self.n
        self.psi_time = time.monotonic()
        return out

    def psi_max(self) -> tuple[float, str]:
        """The largest PSI of the latest computation and its feature; (NaN, "") before the first."""
        finite = [(v, n) for n, v in self.psi_last.items() if v == v]
        return max(finite) if finite else (float("nan"), "")
