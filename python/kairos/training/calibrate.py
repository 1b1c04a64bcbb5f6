"""Probability calibration and the "learned nothing" test.

Models are trained with plain (sample-weighted, not class-balanced) cross-entropy, so their
probabilities estimate class frequencies; temperature scaling then fixes over- or under-confidence
with one parameter T fitted on an inner, purged fold the model never trained on:
p_cal = softmax(log(p) / T). T > 1 flattens, T < 1 sharpens, argmax never changes.

A model has learned something only if its calibrated log loss on that inner fold is below the loss
of the best constant prediction there: the training class priors, temperature-scaled on the same
fold (one parameter each, so neither side gets an unfair fit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar  # type: ignore[import-untyped]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
EPS = 1e-12
T_BOUNDS = (0.05, 20.0)


def apply_temperature(p: FloatArray, t: float) -> FloatArray:
    z = np.log(np.clip(p, EPS, 1.0)) / t
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def log_loss(p: FloatArray, y: IntArray, w: FloatArray | None = None) -> float:
    """Weighted mean negative log-likelihood of the labels, in nats."""
    nll = -np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))
    return float(np.average(nll, weights=w)) if len(y) else float("nan")


def fit_temperature(p: FloatArray, y: IntArray, w: FloatArray | None = None) -> float:
    """The T in T_BOUNDS minimising the weighted log loss of softmax(log(p) / T)."""
    if len(y) == 0:
        return 1.0
    res = minimize_scalar(
        lambda lt: log_loss(apply_temperature(p, float(np.exp(lt))), y, w),
        bounds=(np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(res.x))


def priors(y: IntArray, w: FloatArray | None = None, n_classes: int = 3) -> FloatArray:
    counts = np.bincount(y, weights=w, minlength=n_classes).astype(np.float64)
    out: FloatArray = (counts + 1.0) / (counts.sum() + n_classes)  # Laplace: an unseen class is not 0
    return out


@dataclass(frozen=True)
class Calibration:
    method: str
    temperature: float
    inner_samples: int
    inner_log_loss: float
    """Calibrated model on the inner fold."""
    prior_log_loss: float
    """Training class priors, temperature-scaled on the same inner fold."""

    @property
    def learned(self) -> bool:
        return self.inner_log_loss < self.prior_log_loss

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "learned": self.learned}


def calibrate(
    p_inner: FloatArray,
    y_inner: IntArray,
    w_inner: FloatArray | None,
    y_fit: IntArray,
    w_fit: FloatArray | None,
) -> Calibration:
    t = fit_temperature(p_inner, y_inner, w_inner)
    const = np.tile(priors(y_fit, w_fit), (len(y_inner), 1))
    t0 = fit_temperature(const, y_inner, w_inner)
    return Calibration(
        method="temperature",
        temperature=t,
        inner_samples=len(y_inner),
        inner_log_loss=log_loss(apply_temperature(p_inner, t), y_inner, w_inner),
        prior_log_loss=log_loss(apply_temperature(const, t0), y_inner, w_inner),
    )
