"""Honest statistics of out-of-sample returns: how good, how sure, how lucky.

Every function takes per-bar *net* returns (after spread and commission) of the validation folds,
in time order. Numpy and the standard library only (no torch, no scipy), so the gate and the
report can run anywhere the training code runs.

- ``sharpe``: annualised Sharpe ratio, mean / std x sqrt(bars per year).
- ``bootstrap_sharpe_interval``: a stationary block bootstrap (Politis & Romano 1994) percentile
  interval. Positions are held for several bars and volatility clusters, so bars are not
  independent; resampling blocks keeps that dependence. The mean block length defaults to
  ``default_block_length``: n^(1/3) (the rate of the optimal block length, Politis & White 2004),
  at least twice the mean holding time, at least 5 bars.
- ``probabilistic_sharpe_ratio``: PSR, Bailey & López de Prado (2012), "The Sharpe Ratio Efficient
  Frontier", J. of Risk 15(2), eq. for PSR(SR*) with skewness and (non-excess) kurtosis.
- ``expected_max_sharpe`` / ``deflated_sharpe_ratio``: DSR, Bailey & López de Prado (2014), "The
  Deflated Sharpe Ratio", J. of Portfolio Management 40(5), eqs. 1-2: PSR against the Sharpe the best
  of N unskilled trials would show, via the Euler-Mascheroni approximation of E[max of N normals].
- ``pbo_cscv``: Probability of Backtest Overfitting by combinatorially symmetric cross-validation,
  Bailey, Borwein, López de Prado & Zhu (2015/2017), J. of Computational Finance 20(4).
- ``regress``: OLS alpha and beta of a strategy on buy-and-hold, with standard errors.
- ``trade_stats``: gross vs net return, cost per trade, break-even cost, mean holding time.
- ``paired_test``: is one model's per-bar net return higher than another's on the same bars? The
  Diebold & Mariano (1995) test of the mean difference, one-sided, with the Newey & West (1987)
  heteroskedasticity- and autocorrelation-consistent variance (Bartlett kernel; lags by the Newey &
  West 1994 rule, floor(4 (n/100)^(2/9))) and a normal p-value; several symbols are separate series
  of one pooled mean (no cross-symbol covariance). Used to promote a challenger on live bars (ADR 0097).

Sharpe ratios passed to PSR/DSR are per bar (not annualised), as in the papers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import combinations
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

EULER_MASCHERONI = 0.5772156649015329
_N = NormalDist()


def norm_cdf(x: float) -> float:
    return _N.cdf(x)


def norm_ppf(p: float) -> float:
    return _N.inv_cdf(p)


# ------------------------------------------------------------------------------------------- moments


def sharpe_per_bar(returns: FloatArray) -> float:
    """mean / std (population std, as in the papers' estimator); 0 for fewer than 2 bars or no variance."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return 0.0
    sd = float(r.std())
    return float(r.mean() / sd) if sd > 0 else 0.0


def sharpe(returns: FloatArray, periods_per_year: float) -> float:
    """Annualised Sharpe ratio: per-bar Sharpe x sqrt(bars per year)."""
    return sharpe_per_bar(returns) * math.sqrt(periods_per_year)


def skew_kurtosis(returns: FloatArray) -> tuple[float, float]:
    """Sample skewness and (non-excess) kurtosis, population moments; (0, 3) when there is no variance."""
    r = np.asarray(returns, dtype=np.float64)
    sd = float(r.std())
    if len(r) < 2 or sd == 0:
        return 0.0, 3.0
    z = (r - r.mean()) / sd
    return float((z**3).mean()), float((z**4).mean())


# -------------------------------------------------------------------------------------- PSR and DSR


def sharpe_std_error(sr: float, n: int, skew: float = 0.0, kurtosis: float = 3.0) -> float:
    """Standard error of a per-bar Sharpe estimate from n bars with the given skew and kurtosis
    (Mertens 2002; the denominator of PSR in Bailey & López de Prado 2012). For normal returns
    (skew 0, kurtosis 3) this is Lo's (2002) sqrt((1 + SR^2/2) / (n - 1))."""
    if n < 2:
        return math.inf
    var = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    return math.sqrt(max(var, 1e-12) / (n - 1))


def probabilistic_sharpe_ratio(
    sr: float, n: int, skew: float = 0.0, kurtosis: float = 3.0, sr_benchmark: float = 0.0
) -> float:
    """PSR(SR*): the probability that the true per-bar Sharpe exceeds ``sr_benchmark``, given the
    estimate ``sr`` from ``n`` bars (Bailey & López de Prado 2012)."""
    se = sharpe_std_error(sr, n, skew, kurtosis)
    if not math.isfinite(se):
        return 0.5
    return norm_cdf((sr - sr_benchmark) / se)


def expected_max_sharpe(n_trials: int, variance: float, mean: float = 0.0) -> float:
    """E[max] of ``n_trials`` Sharpe estimates with the given cross-trial mean and variance and no skill
    (Bailey & López de Prado 2014, eq. 1; Bailey et al. 2014 for the approximation):
    mean + sqrt(V) ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e))), g the Euler-Mascheroni constant.
    One trial involves no selection: its expected maximum is the mean."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1 or variance <= 0:
        return mean
    g = EULER_MASCHERONI
    z = (1 - g) * norm_ppf(1 - 1 / n_trials) + g * norm_ppf(1 - 1 / (n_trials * math.e))
    return mean + math.sqrt(variance) * z


def deflated_sharpe_ratio(
    sr: float, n: int, skew: float, kurtosis: float, n_trials: int, trial_variance: float
) -> float:
    """DSR: PSR against the expected maximum Sharpe of ``n_trials`` unskilled trials whose Sharpe
    estimates vary with ``trial_variance`` (Bailey & López de Prado 2014, eq. 2). Per-bar Sharpes."""
    return probabilistic_sharpe_ratio(sr, n, skew, kurtosis, expected_max_sharpe(n_trials, trial_variance))


MIN_TRIALS_FOR_VARIANCE = 10
"""Below this many trials their sample variance says more about the candidate than about luck."""


def trial_variance(
    trial_sharpes: list[float], n_bars: int, min_trials: int = MIN_TRIALS_FOR_VARIANCE
) -> float:
    """The variance of the trials' per-bar Sharpes that DSR deflates with.

    Under the null that no trial has skill, each Sharpe estimate on ``n_bars`` bars scatters around 0
    with variance 1/(n-1) (Lo 2002): that is the floor, and the whole answer for fewer than
    ``min_trials`` trials. With two or three trials the sample variance is dominated by the candidate
    itself (a skilled model next to an unskilled one) and would deflate a real edge by its own size;
    with many trials it measures the spread of the search, as in Bailey & López de Prado (2014)."""
    floor = 1.0 / max(n_bars - 1, 1)
    if len(trial_sharpes) < max(min_trials, 2):
        return floor
    return max(float(np.var(trial_sharpes, ddof=1)), floor)


# ------------------------------------------------------------------------------------------ bootstrap


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    block_length: float
    n_boot: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_block_length(n: int, mean_holding_bars: float = 0.0) -> float:
    """Mean block length for the bootstrap: n^(1/3), at least twice the mean holding time (returns of
    one held position are dependent), at least 5 bars, at most n/4."""
    block = max(n ** (1 / 3), 2.0 * mean_holding_bars, 5.0)
    return float(min(block, max(n / 4, 1.0)))


def bootstrap_indices(
    n: int,
    n_boot: int,
    block_length: float,
    rng: np.random.Generator,
    method: Literal["stationary", "circular"],
) -> npt.NDArray[np.int64]:
    """(n_boot, n) resampled bar indices. Stationary: blocks of geometric length with the given mean
    (Politis & Romano 1994); circular: blocks of fixed length (Politis & Romano 1992). Both wrap."""
    t = np.arange(n)
    if method == "stationary":
        starts_new = rng.random((n_boot, n)) < 1.0 / block_length
    elif method == "circular":
        starts_new = np.broadcast_to(t % max(round(block_length), 1) == 0, (n_boot, n)).copy()
    else:
        raise ValueError(f"method must be stationary or circular, not {method!r}")
    starts_new[:, 0] = True
    origin = rng.integers(0, n, size=(n_boot, n))
    # For every position, the index where its block began, and that block's random origin.
    block_start = np.maximum.accumulate(np.where(starts_new, t, 0), axis=1)
    rows = np.arange(n_boot)[:, None]
    return np.asarray((origin[rows, block_start] + (t - block_start)) % n, dtype=np.int64)


def bootstrap_sharpe_interval(
    returns: FloatArray,
    periods_per_year: float,
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    block_length: float | None = None,
    mean_holding_bars: float = 0.0,
    method: Literal["stationary", "circular"] = "stationary",
    seed: int = 0,
) -> Interval:
    """Percentile interval of the annualised Sharpe ratio under a block bootstrap."""
    r = np.asarray(returns, dtype=np.float64)
    n = len(r)
    block = block_length if block_length is not None else default_block_length(n, mean_holding_bars)
    if n < 2:
        return Interval(0.0, 0.0, level, block, 0, method)
    rng = np.random.default_rng(seed)
    sharpes = np.empty(n_boot)
    chunk = max(1, 4_000_000 // n)  # bound memory at a few tens of MB
    for lo in range(0, n_boot, chunk):
        hi = min(n_boot, lo + chunk)
        sample = r[bootstrap_indices(n, hi - lo, block, rng, method)]
        sd = sample.std(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sharpes[lo:hi] = np.where(sd > 0, sample.mean(axis=1) / np.where(sd > 0, sd, 1.0), 0.0)
    sharpes *= math.sqrt(periods_per_year)
    tail = (1 - level) / 2
    low, high = np.quantile(sharpes, [tail, 1 - tail])
    return Interval(float(low), float(high), level, block, n_boot, method)


# ------------------------------------------------------------------------------------------------ PBO


@dataclass(frozen=True)
class PBO:
    pbo: float
    """Share of CSCV splits whose in-sample best configuration ranks at or below the out-of-sample median."""
    n_splits: int
    """Combinations evaluated: C(S, S/2)."""
    n_configs: int
    logits: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"pbo": self.pbo, "n_splits": self.n_splits, "n_configs": self.n_configs}


def pbo_cscv(returns: FloatArray, n_blocks: int = 16) -> PBO:
    """Probability of Backtest Overfitting by CSCV (Bailey, Borwein, López de Prado & Zhu).

    ``returns`` is (T bars, N configurations). The rows are cut into ``n_blocks`` (S, even) blocks in
    time order; for every choice of S/2 blocks as in-sample (the rest out-of-sample) the configuration
    with the best in-sample Sharpe is located in the out-of-sample ranking: relative rank w = rank/(N+1)
    (1 = worst), logit l = ln(w / (1 - w)). PBO is the share of splits with l <= 0, i.e. where the
    in-sample winner is no better than the out-of-sample median."""
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("pbo_cscv needs a (bars, configurations) matrix with at least 2 configurations")
    if n_blocks < 2 or n_blocks % 2:
        raise ValueError(f"n_blocks must be even and >= 2, got {n_blocks}")
    t, n_cfg = m.shape
    if t < 2 * n_blocks:
        raise ValueError(f"{t} bars are too few for {n_blocks} CSCV blocks (need >= {2 * n_blocks})")
    blocks = np.array_split(np.arange(t), n_blocks)
    # Per-block sums let each split's Sharpe come from block moments without touching the rows again.
    s1 = np.array([m[b].sum(axis=0) for b in blocks])
    s2 = np.array([(m[b] ** 2).sum(axis=0) for b in blocks])
    cnt = np.array([len(b) for b in blocks], dtype=np.float64)

    def sr(sel: list[int]) -> FloatArray:
        k = cnt[sel].sum()
        mean = s1[sel].sum(axis=0) / k
        var = np.maximum(s2[sel].sum(axis=0) / k - mean**2, 0.0)
        sd = np.sqrt(var)
        return np.where(sd > 0, mean / np.where(sd > 0, sd, 1.0), 0.0)

    logits = []
    all_blocks = set(range(n_blocks))
    for ins in combinations(range(n_blocks), n_blocks // 2):
        oos = sorted(all_blocks - set(ins))
        best = int(np.argmax(sr(list(ins))))
        perf = sr(oos)
        rank = 1 + int((perf < perf[best]).sum()) + 0.5 * int((perf == perf[best]).sum() - 1)
        w = rank / (n_cfg + 1)
        logits.append(math.log(w / (1 - w)))
    lg = np.array(logits)
    return PBO(float((lg <= 0).mean()), len(logits), n_cfg, tuple(float(x) for x in lg))


# ----------------------------------------------------------------------------------------- regression


@dataclass(frozen=True)
class Regression:
    """OLS of strategy returns on buy-and-hold returns: r = alpha + beta x r_bh + e."""

    alpha: float
    """Per bar."""
    alpha_se: float
    alpha_annual: float
    """alpha x bars per year."""
    alpha_t: float
    beta: float
    beta_se: float
    r2: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def regress(y: FloatArray, x: FloatArray, periods_per_year: float) -> Regression:
    """Alpha and beta with classical OLS standard errors."""
    yv, xv = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    n = len(yv)
    if n < 3:
        return Regression(0.0, math.inf, 0.0, 0.0, 0.0, math.inf, 0.0, n)
    design = np.column_stack([np.ones(n), xv])
    coef, *_ = np.linalg.lstsq(design, yv, rcond=None)
    resid = yv - design @ coef
    s2 = float(resid @ resid) / (n - 2)
    xtx_inv = np.linalg.pinv(design.T @ design)
    se = np.sqrt(np.maximum(np.diag(xtx_inv) * s2, 0.0))
    tss = float(((yv - yv.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / tss if tss > 0 else 0.0
    alpha, beta = float(coef[0]), float(coef[1])
    t = alpha / float(se[0]) if se[0] > 0 else 0.0
    return Regression(alpha, float(se[0]), alpha * periods_per_year, t, beta, float(se[1]), r2, n)


# --------------------------------------------------------------------------------------------- trades


@dataclass(frozen=True)
class TradeStats:
    gross_return: float
    """Sum of per-bar gross returns (no compounding), fraction of notional."""
    net_return: float
    cost: float
    """gross - net: spread and commission paid."""
    units_traded: float
    """Sum of |position change| including the close-out at each fold end."""
    trades: int
    """Entries: bars where a position is opened or reversed."""
    cost_per_unit: float
    """Mean cost per unit of position change (one side of a round trip), fraction of notional."""
    break_even_cost: float
    """Cost per unit of position change at which the net return would be 0: gross / units traded."""
    mean_holding_bars: float
    """Mean length, in bars, of a run of one non-zero position."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def holding_runs(pos: FloatArray) -> list[int]:
    """Lengths of the runs of one constant non-zero position."""
    p = np.asarray(pos, dtype=np.float64)
    runs, length, prev = [], 0, 0.0
    for x in p:
        if x != 0 and x == prev:
            length += 1
        else:
            if length:
                runs.append(length)
            length = 1 if x != 0 else 0
        prev = x
    if length:
        runs.append(length)
    return runs


def trade_stats(gross: list[FloatArray], net: list[FloatArray], pos: list[FloatArray]) -> TradeStats:
    """Per-fold arrays (each fold starts flat and is closed out at its end, as the backtest does)."""
    g = float(sum(float(x.sum()) for x in gross))
    n = float(sum(float(x.sum()) for x in net))
    units, trades, runs = 0.0, 0, []
    for p in pos:
        change = np.abs(np.diff(np.asarray(p, dtype=np.float64), prepend=0.0))
        units += float(change.sum()) + (abs(float(p[-1])) if len(p) else 0.0)
        entered = (change > 0) & (np.asarray(p) != 0)
        trades += int(entered.sum())
        runs += holding_runs(p)
    cost = g - n
    return TradeStats(
        gross_return=g,
        net_return=n,
        cost=cost,
        units_traded=units,
        trades=trades,
        cost_per_unit=cost / units if units > 0 else 0.0,
        break_even_cost=g / units if units > 0 else 0.0,
        mean_holding_bars=float(np.mean(runs)) if runs else 0.0,
    )


def min_backtest_length_years(n_trials: int, sharpe_annual: float) -> float:
    """Years of data below which the best of ``n_trials`` unskilled configurations is expected to
    show an annualised Sharpe of ``sharpe_annual`` (Bailey, Borwein, López de Prado & Zhu 2014,
    "Pseudo-mathematics and financial charlatanism", Notices of the AMS 61(5): MinBTL)."""
    return (expected_max_sharpe(n_trials, 1.0) / sharpe_annual) ** 2


# ------------------------------------------------------------------------------------ paired test


def newey_west_lags(n: int) -> int:
    """The Newey & West (1994) rule of thumb for the Bartlett kernel: floor(4 (n/100)^(2/9)), >= 1."""
    rule: float = 4.0 * (max(n, 1) / 100.0) ** (2.0 / 9.0)
    return max(1, math.floor(rule))


def newey_west_long_run_variance(segments: list[FloatArray], lags: int, mean: float | None = None) -> float:
    """The long-run variance of a series (or of several independent series sharing one mean): the
    Newey & West (1987) estimator gamma_0 + 2 sum_{j=1..L} (1 - j/(L+1)) gamma_j, the autocovariances
    gamma_j = (1/n) sum_t (x_t - m)(x_{t-j} - m) summed within each segment and divided by the total
    n (population form, as in the paper). ``mean`` defaults to the pooled mean."""
    xs = [np.asarray(s, dtype=np.float64) for s in segments if len(s)]
    n = sum(len(x) for x in xs)
    if n == 0:
        return 0.0
    m = float(sum(float(x.sum()) for x in xs) / n) if mean is None else mean
    lrv = 0.0
    for x in xs:
        e = x - m
        lrv += float(e @ e)
        for j in range(1, min(lags, len(e) - 1) + 1):
            lrv += 2.0 * (1.0 - j / (lags + 1.0)) * float(e[j:] @ e[:-j])
    return lrv / n


@dataclass(frozen=True)
class PairedTest:
    """One-sided test that the mean of d = a - b (per bar, same bars) is above 0."""

    n: int
    mean_difference: float
    statistic: float
    p_value: float
    lags: int
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_test(segments: list[FloatArray], lags: int | None = None) -> PairedTest:
    """Diebold-Mariano: t = mean(d) / sqrt(LRV / n), LRV the Newey-West long-run variance of d with
    ``lags`` (default ``newey_west_lags(n)``), p = 1 - Phi(t) (H0: E[d] <= 0, H1: E[d] > 0).

    ``segments`` are the per-bar differences of one or more series (e.g. one per symbol), each in
    time order. With fewer than 2 bars, or no variance, the statistic is 0 and p is 1 (no evidence)
    unless every difference is the same positive number (p 0)."""
    xs = [np.asarray(s, dtype=np.float64) for s in segments if len(s)]
    n = sum(len(x) for x in xs)
    big_l = newey_west_lags(n) if lags is None else int(lags)
    method = f"one-sided Diebold-Mariano t-test, Newey-West variance (Bartlett, {big_l} lags), normal p-value"
    if n < 2:
        return PairedTest(n, float(xs[0][0]) if n else 0.0, 0.0, 1.0, big_l, method)
    mean = float(sum(float(x.sum()) for x in xs) / n)
    lrv = newey_west_long_run_variance(xs, big_l, mean)
    if lrv <= 1e-300:
        # No variance at all (identical models): the mean is exact.
        return PairedTest(n, mean, 0.0, 0.0 if mean > 0 else 1.0, big_l, method)
    t = mean / math.sqrt(lrv / n)
    return PairedTest(n, mean, t, 1.0 - norm_cdf(t), big_l, method)
