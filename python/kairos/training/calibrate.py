"""Probability calibration and the "learned nothing" test.

Models are trained with plain (sample-weighted, not class-balanced) cross-entropy, so their
probabilities estimate class frequencies; temperature scaling with a class bias then fixes over- or
under-confidence and a shift of the class mix, fitted on an inner, purged fold the model never
trained on: p_cal = softmax(log(p) / T + b), b = (0, b_flat, b_up). T > 1 flattens, T < 1 sharpens.
(A LightGBM multiclass model starts from uniform scores, so an early-stopped one can sit near 1/3
for every class: the bias restores the class mix.)

A model has learned something only if its calibrated log loss on the inner fold is below that of a
constant prediction of the class mix, both cross-fitted: the calibration (or the class mix) is fitted
on one half of the inner fold and scored on the other, and the other way round. Scoring in-sample
would let the calibration's extra parameter beat the constant on pure noise.
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


def apply_temperature(p: FloatArray, t: float, bias: tuple[float, ...] = (0.0, 0.0, 0.0)) -> FloatArray:
    z = np.log(np.clip(p, EPS, 1.0)) / t + np.asarray(bias)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


def log_loss(p: FloatArray, y: IntArray, w: FloatArray | None = None) -> float:
    """Weighted mean negative log-likelihood of the labels, in nats."""
    nll = -np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))
    return float(np.average(nll, weights=w)) if len(y) else float("nan")


def fit_temperature_bias(
    p: FloatArray, y: IntArray, w: FloatArray | None = None
) -> tuple[float, tuple[float, float, float]]:
    """T and class bias (b_down = 0) minimising the weighted log loss of softmax(log(p) / T + b)."""
    from scipy.optimize import minimize

    if len(y) == 0:
        return 1.0, (0.0, 0.0, 0.0)
    t0 = fit_temperature(p, y, w)
    lo, hi = np.log(T_BOUNDS[0]), np.log(T_BOUNDS[1])

    def loss(v: FloatArray) -> float:
        return log_loss(apply_temperature(p, float(np.exp(v[0])), (0.0, v[1], v[2])), y, w)

    res = minimize(
        loss, np.array([np.log(t0), 0.0, 0.0]), method="L-BFGS-B", bounds=[(lo, hi), (-10, 10), (-10, 10)]
    )
    v = res.x if res.fun <= loss(np.array([np.log(t0), 0.0, 0.0])) else np.array([np.log(t0), 0.0, 0.0])
    return float(np.exp(v[0])), (0.0, float(v[1]), float(v[2]))


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
    bias: tuple[float, float, float]
    inner_samples: int
    inner_log_loss: float
    """Calibrated model on the inner fold, cross-fitted over its two halves."""
    prior_log_loss: float
    """The class mix as a constant prediction, cross-fitted the same way."""

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
    t, b = fit_temperature_bias(p_inner, y_inner, w_inner)
    n = len(y_inner)
    w = np.ones(n) if w_inner is None else w_inner
    half = n // 2
    model_nll, const_nll = np.zeros(n), np.zeros(n)
    for fit_sl, score_sl in ((slice(0, half), slice(half, n)), (slice(half, n), slice(0, half))):
        ti, bi = fit_temperature_bias(p_inner[fit_sl], y_inner[fit_sl], w[fit_sl])
        ys = y_inner[score_sl]
        pm = apply_temperature(p_inner[score_sl], ti, bi)
        model_nll[score_sl] = -np.log(np.clip(pm[np.arange(len(ys)), ys], EPS, 1.0))
        const_nll[score_sl] = -np.log(priors(y_inner[fit_sl], w[fit_sl])[ys])
    return Calibration(
        method="temperature+bias",
        temperature=t,
        bias=b,
        inner_samples=n,
        inner_log_loss=float(np.average(model_nll, weights=w)) if n else float("nan"),
        prior_log_loss=float(np.average(const_nll, weights=w)) if n else float("nan"),
    )
