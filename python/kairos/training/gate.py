"""The registration gate: a model becomes champion only if its out-of-sample record, after costs,
survives luck and the competition.

A candidate passes when, on the validation folds (the same bars for every strategy):

(a) ``net_return``: its net return summed over all folds is positive;
(b) ``deflated_sharpe``: its Deflated Sharpe Ratio, given the number of trials behind it, is
    significant (1 - DSR < ``alpha``); or, with ``significance="bootstrap"``, ``sharpe_interval``:
    the lower bound of its block-bootstrap Sharpe interval is above 0;
(c) ``beats_<name>``: its net Sharpe is above that of the strongest *other* model or rule
    (``role`` learned or rule) on the same folds, and ``alpha_vs_<name>``: its OLS alpha against
    each market benchmark (``role`` market, buy-and-hold) is positive. A market benchmark is
    regressed on, not out-Sharped: a model uncorrelated with a rising market still adds something.

``gate`` returns a ``Verdict`` naming every condition with its figure, threshold and outcome.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from kairos.training import stats

FloatArray = npt.NDArray[np.float64]
Role = Literal["learned", "rule", "market"]


@dataclass(frozen=True)
class GateConfig:
    """Defaults in one place; every field is a CLI option of ``kairos-train backtest`` / ``run``."""

    candidate: str = "best"
    """Which learned model is the candidate: ``best`` = the family with the highest net Sharpe on the
    validation folds among those whose final model learned something (the selection is one of the
    trials the Deflated Sharpe deflates by), or a family name (``mlp``, ``lgbm`` ...) to gate that one."""
    significance: Literal["dsr", "bootstrap"] = "dsr"
    """Which test decides (b): the Deflated Sharpe Ratio, or the bootstrap interval's lower bound."""
    alpha: float = 0.05
    """Significance level: DSR must exceed 1 - alpha; the bootstrap interval is (1 - alpha) two-sided."""
    n_boot: int = 2000
    """Bootstrap replicates."""
    bootstrap: Literal["stationary", "circular"] = "stationary"
    block_length: float | None = None
    """Mean bootstrap block length in bars; None = stats.default_block_length (n^(1/3), >= 2 x holding)."""
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OOSResult:
    """One strategy's out-of-sample record: per-fold per-bar returns and positions on the validation
    bars. Every result compared in one gate must cover exactly the same bars."""

    name: str
    role: Role
    net: list[FloatArray]
    gross: list[FloatArray]
    positions: list[FloatArray]
    periods_per_year: float

    @property
    def net_all(self) -> FloatArray:
        return np.concatenate(self.net) if self.net else np.zeros(0)

    @property
    def bars(self) -> int:
        return sum(len(x) for x in self.net)


@dataclass(frozen=True)
class Condition:
    name: str
    passed: bool
    figure: float
    threshold: float
    text: str
    """Human-readable: what was measured against what."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    candidate: str
    passed: bool
    conditions: tuple[Condition, ...]
    n_trials: int
    config: GateConfig
    figures: dict[str, Any] = field(default_factory=dict)
    """The candidate's honest statistics (see ``summarize``) behind the conditions."""

    @property
    def reason(self) -> str:
        failed = [c for c in self.conditions if not c.passed]
        shown = failed or list(self.conditions)
        head = "passes the gate" if self.passed else "fails the gate"
        return f"{self.candidate} {head}: " + "; ".join(
            ("" if c.passed else "FAILED ") + c.text for c in shown
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "passed": self.passed,
            "reason": self.reason,
            "n_trials": self.n_trials,
            "conditions": [c.to_dict() for c in self.conditions],
            "config": self.config.to_dict(),
        }


def summarize(
    r: OOSResult,
    *,
    cfg: GateConfig,
    n_trials: int = 1,
    trial_sharpes: list[float] | None = None,
    market: OOSResult | None = None,
) -> dict[str, Any]:
    """Every honest figure of one strategy, out of sample and after costs: annualised net Sharpe and
    its bootstrap interval, PSR against 0, DSR given the trials, gross/net return, costs, break-even
    cost, mean holding time, and alpha/beta against ``market``."""
    net = r.net_all
    n = len(net)
    sr_bar = stats.sharpe_per_bar(net)
    skew, kurt = stats.skew_kurtosis(net)
    trades = stats.trade_stats(r.gross, r.net, r.positions)
    ci = stats.bootstrap_sharpe_interval(
        net,
        r.periods_per_year,
        level=1 - cfg.alpha,
        n_boot=cfg.n_boot,
        block_length=cfg.block_length,
        mean_holding_bars=trades.mean_holding_bars,
        method=cfg.bootstrap,
        seed=cfg.seed,
    )
    variance = stats.trial_variance(trial_sharpes if trial_sharpes is not None else [sr_bar], n)
    sr0 = stats.expected_max_sharpe(n_trials, variance)
    out: dict[str, Any] = {
        "bars": n,
        "periods_per_year": r.periods_per_year,
        "sharpe": sr_bar * math.sqrt(r.periods_per_year),
        "sharpe_ci_low": ci.low,
        "sharpe_ci_high": ci.high,
        "sharpe_ci_level": ci.level,
        "bootstrap": {"method": ci.method, "mean_block_bars": ci.block_length, "replicates": ci.n_boot},
        "fold_sharpes": [stats.sharpe(x, r.periods_per_year) for x in r.net],
        "skew": skew,
        "kurtosis": kurt,
        "psr": stats.probabilistic_sharpe_ratio(sr_bar, n, skew, kurt, 0.0),
        "n_trials": n_trials,
        "trial_sharpe_variance": variance,
        "expected_max_sharpe": sr0 * math.sqrt(r.periods_per_year),
        "dsr": stats.probabilistic_sharpe_ratio(sr_bar, n, skew, kurt, sr0),
        **trades.to_dict(),
    }
    if market is not None and market.bars == n:
        reg = stats.regress(net, market.net_all, r.periods_per_year)
        out["vs_" + market.name] = reg.to_dict()
    return out


def gate(candidate: OOSResult, others: list[OOSResult], n_trials: int, cfg: GateConfig) -> Verdict:
    """The verdict on ``candidate`` against ``others`` (same bars), given ``n_trials`` configurations
    tried (the candidate and the other learned models at least)."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    for o in others:
        if o.bars != candidate.bars:
            raise ValueError(
                f"{o.name} covers {o.bars} bars, {candidate.name} {candidate.bars}: not the same folds"
            )
    n = candidate.bars
    learned = [candidate, *(o for o in others if o.role == "learned")]
    trial_sharpes = [stats.sharpe_per_bar(o.net_all) for o in learned]
    markets = [o for o in others if o.role == "market"]
    fig = summarize(
        candidate,
        cfg=cfg,
        n_trials=n_trials,
        trial_sharpes=trial_sharpes,
        market=markets[0] if markets else None,
    )
    conds: list[Condition] = []
    net = fig["net_return"]
    conds.append(
        Condition(
            "net_return",
            net > 0,
            net,
            0.0,
            f"net return {net * 1e4:+.1f} bp over {len(candidate.net)} folds ({n} bars) "
            f"{'>' if net > 0 else '<='} 0 (gross {fig['gross_return'] * 1e4:+.1f} bp, costs "
            f"{fig['cost'] * 1e4:.1f} bp)",
        )
    )
    if cfg.significance == "dsr":
        p = 1.0 - fig["dsr"]
        conds.append(
            Condition(
                "deflated_sharpe",
                p < cfg.alpha,
                fig["dsr"],
                1.0 - cfg.alpha,
                f"deflated Sharpe {fig['dsr']:.3f} (p {p:.3f}) {'>' if p < cfg.alpha else '<='} "
                f"{1 - cfg.alpha:.2f}: Sharpe {fig['sharpe']:.2f} vs {fig['expected_max_sharpe']:.2f} "
                f"expected from the best of {n_trials} unskilled trials",
            )
        )
    else:
        lo = fig["sharpe_ci_low"]
        conds.append(
            Condition(
                "sharpe_interval",
                lo > 0,
                lo,
                0.0,
                f"Sharpe {fig['sharpe']:.2f}, {fig['sharpe_ci_level']:.0%} interval "
                f"[{lo:.2f}, {fig['sharpe_ci_high']:.2f}], lower bound {'>' if lo > 0 else '<='} 0",
            )
        )
    rivals = [o for o in others if o.role in ("learned", "rule")]
    if rivals:
        sharpes = {o.name: stats.sharpe(o.net_all, o.periods_per_year) for o in rivals}
        best = max(sharpes, key=lambda k: sharpes[k])
        ok = fig["sharpe"] > sharpes[best]
        conds.append(
            Condition(
                f"beats_{best}",
                ok,
                fig["sharpe"],
                sharpes[best],
                f"Sharpe {fig['sharpe']:.2f} {'>' if ok else '<='} {sharpes[best]:.2f} of {best}, the "
                f"strongest of {', '.join(sorted(sharpes))}",
            )
        )
    for m in markets:
        reg = stats.regress(candidate.net_all, m.net_all, candidate.periods_per_year)
        ok = reg.alpha > 0
        conds.append(
            Condition(
                f"alpha_vs_{m.name}",
                ok,
                reg.alpha_annual,
                0.0,
                f"alpha vs {m.name} {reg.alpha_annual * 1e4:+.0f} bp/year (t {reg.alpha_t:.2f}, beta "
                f"{reg.beta:.2f} ± {reg.beta_se:.2f}) {'>' if ok else '<='} 0",
            )
        )
    return Verdict(candidate.name, all(c.passed for c in conds), tuple(conds), n_trials, cfg, fig)
