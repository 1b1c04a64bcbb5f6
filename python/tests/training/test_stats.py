"""The statistics behind the gate, checked against the papers' published numbers and against
simulation where a paper states a property rather than a number."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kairos.training import stats


def test_deflated_sharpe_matches_the_worked_example_of_bailey_and_lopez_de_prado_2014() -> None:
    """DSR paper (J. Portfolio Management 40(5), 2014), section "A numerical example": N = 100
    trials, variance of the annualised trial Sharpes 1/2, best annualised Sharpe 2.5 on T = 1250
    daily returns (250 a year), skewness -3, kurtosis 10. The paper states E[max SR] = 0.1132 per
    day (eq. 1) and DSR = 0.9004 (eq. 2). Tolerance: the paper's 4 decimals (5e-5)."""
    days = 250
    sr0 = stats.expected_max_sharpe(100, 0.5) / math.sqrt(days)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = stats.deflated_sharpe_ratio(
        2.5 / math.sqrt(days), 1250, skew=-3.0, kurtosis=10.0, n_trials=100, trial_variance=0.5 / days
    )
    assert dsr == pytest.approx(0.9004, abs=5e-5)


@pytest.mark.parametrize(
    ("n_trials", "sharpe", "years"),
    [
        # Bailey, Borwein, López de Prado & Zhu (2014), Notices of the AMS 61(5), section on MinBTL:
        # with 5 years of data no more than 45 independent configurations should be tried, or the
        # best is expected to show an annualised Sharpe of 1 by luck alone.
        (45, 1.0, 5.0),
        # Same paper: after only 7 configurations a researcher expects a 2-year backtest with a
        # Sharpe above 1 (MinBTL just under 2 years).
        (7, 1.0, 1.92),
    ],
)
def test_minimum_backtest_length_matches_bailey_et_al_2014(
    n_trials: int, sharpe: float, years: float
) -> None:
    """Tolerance 0.05 years: the paper quotes whole configurations and rounded years."""
    assert stats.min_backtest_length_years(n_trials, sharpe) == pytest.approx(years, abs=0.05)


def test_expected_max_sharpe_agrees_with_simulated_maxima_of_normal_trials() -> None:
    """The Euler-Mascheroni approximation (DSR paper, eq. 1) against the mean maximum of N standard
    normals over 20,000 draws; the approximation is asymptotic: within 3% for N >= 10."""
    rng = np.random.default_rng(1)
    for n in (10, 50, 200):
        simulated = rng.standard_normal((20_000, n)).max(axis=1).mean()
        assert stats.expected_max_sharpe(n, 1.0) == pytest.approx(simulated, rel=0.03)
    assert stats.expected_max_sharpe(1, 4.0) == 0.0  # one trial: no selection


def test_psr_with_normal_returns_is_lo_2002() -> None:
    """For skew 0 and kurtosis 3 the PSR denominator (Bailey & López de Prado 2012, PSR eq.) is Lo's
    (2002) standard error sqrt((1 + SR^2 / 2) / (n - 1)). Exact to 1e-12."""
    sr, n = 0.1, 500
    se = math.sqrt((1 + sr**2 / 2) / (n - 1))
    assert stats.sharpe_std_error(sr, n) == pytest.approx(se, abs=1e-12)
    assert stats.probabilistic_sharpe_ratio(sr, n, 0.0, 3.0, 0.05) == pytest.approx(
        0.5 * (1 + math.erf((sr - 0.05) / se / math.sqrt(2))), abs=1e-12
    )


def test_psr_penalises_negative_skew_and_fat_tails() -> None:
    base = stats.probabilistic_sharpe_ratio(0.05, 1000)
    assert stats.probabilistic_sharpe_ratio(0.05, 1000, skew=-2.0, kurtosis=10.0) < base
    assert stats.probabilistic_sharpe_ratio(0.05, 1000, skew=1.0, kurtosis=3.0) > base


def test_psr_of_zero_edge_is_significant_at_5_percent_in_about_5_percent_of_samples() -> None:
    """The size of a PSR(0) > 0.95 test on 1,000 zero-mean normal returns, 2,000 samples: within
    3 binomial standard errors of 0.05."""
    rng = np.random.default_rng(2)
    draws = rng.standard_normal((2000, 1000))
    hits = 0
    for r in draws:
        sk, ku = stats.skew_kurtosis(r)
        hits += stats.probabilistic_sharpe_ratio(stats.sharpe_per_bar(r), len(r), sk, ku) > 0.95
    rate = hits / len(draws)
    assert abs(rate - 0.05) < 3 * math.sqrt(0.05 * 0.95 / len(draws))


@pytest.mark.parametrize(
    ("sharpes", "n_bars", "variance"),
    [
        ([0.01] * 12, 1001, 1 / 1000),  # many trials that agree: never below one Sharpe's sampling variance
        ([0.0], 101, 1 / 100),  # one trial: the null variance
        ([0.0, 1.0], 101, 1 / 100),  # two trials: their spread is the candidate's own skill, not luck
        ([0.0, 1.0] * 5, 101, float(np.var([0.0, 1.0] * 5, ddof=1))),  # ten: the search's spread
    ],
)
def test_trial_variance_is_the_null_sampling_variance_until_there_are_enough_trials(
    sharpes: list[float], n_bars: int, variance: float
) -> None:
    assert stats.trial_variance(sharpes, n_bars) == pytest.approx(variance)


@pytest.mark.parametrize("method", ["stationary", "circular"])
def test_bootstrap_interval_covers_the_true_sharpe_about_95_percent_of_the_time(method: str) -> None:
    """AR(1) returns (phi 0.3: dependent, like held positions) with a known mean: over 200 series the
    95% interval covers the true annualised Sharpe in 88-99% of them (binomial spread of 200 draws plus
    the percentile method's small-sample bias)."""
    rng = np.random.default_rng(3)
    phi, n, ppy = 0.3, 2000, 252.0
    mu = 0.05
    true_sr = mu / math.sqrt(1 / (1 - phi**2)) * math.sqrt(ppy)
    covered = 0
    for seed in range(200):
        e = rng.standard_normal(n)
        x = np.empty(n)
        x[0] = e[0] / math.sqrt(1 - phi**2)
        for t in range(1, n):
            x[t] = phi * x[t - 1] + e[t]
        ci = stats.bootstrap_sharpe_interval(x + mu, ppy, n_boot=300, method=method, seed=seed)  # type: ignore[arg-type]
        covered += ci.low <= true_sr <= ci.high
    assert 0.88 <= covered / 200 <= 0.99


def test_bootstrap_blocks_are_contiguous_runs_of_the_series() -> None:
    rng = np.random.default_rng(4)
    idx = stats.bootstrap_indices(100, 3, 10, rng, "circular")
    assert idx.shape == (3, 100)
    for row in idx:
        for b in range(0, 100, 10):
            block = row[b : b + 10]
            assert ((np.diff(block) % 100) == 1).all()


def test_block_length_follows_the_holding_time_and_the_cube_root_rule() -> None:
    assert stats.default_block_length(8000) == pytest.approx(20.0)
    assert stats.default_block_length(8000, mean_holding_bars=30) == pytest.approx(60.0)
    assert stats.default_block_length(10) == pytest.approx(2.5)  # at most n/4


def test_pbo_is_near_half_when_every_configuration_is_noise_and_near_zero_with_a_real_edge() -> None:
    """CSCV (Bailey, Borwein, López de Prado & Zhu): with N unskilled configurations the in-sample
    winner is no better than a random draw out of sample, so PBO is at least about 1/2 (above it on a
    fixed sample: in- and out-of-sample halves are complements, so a lucky in-sample half leaves an
    unlucky rest); one configuration with a real edge wins in and out of sample, PBO near 0.
    16 blocks -> C(16, 8) = 12,870 splits."""
    rng = np.random.default_rng(5)
    noise = rng.standard_normal((4000, 20))
    res = stats.pbo_cscv(noise, n_blocks=16)
    assert res.n_splits == math.comb(16, 8) and res.n_configs == 20
    assert 0.45 <= res.pbo <= 0.9
    edge = noise.copy()
    edge[:, 7] += 0.3
    assert stats.pbo_cscv(edge, n_blocks=16).pbo < 0.05


def test_pbo_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="at least 2 configurations"):
        stats.pbo_cscv(np.zeros((100, 1)))
    with pytest.raises(ValueError, match="even"):
        stats.pbo_cscv(np.zeros((100, 3)), n_blocks=5)
    with pytest.raises(ValueError, match="too few"):
        stats.pbo_cscv(np.zeros((10, 3)), n_blocks=16)


def test_regression_recovers_a_planted_alpha_and_beta_with_honest_standard_errors() -> None:
    """y = 0.001 + 0.5 x + e on 5,000 bars: the estimates are within 3 of their standard errors of the
    truth, and the standard errors equal the textbook OLS ones (exact to 1e-12)."""
    rng = np.random.default_rng(6)
    x = rng.normal(0, 0.01, 5000)
    y = 0.001 + 0.5 * x + rng.normal(0, 0.01, 5000)
    r = stats.regress(y, x, periods_per_year=100.0)
    assert abs(r.alpha - 0.001) < 3 * r.alpha_se and abs(r.beta - 0.5) < 3 * r.beta_se
    design = np.column_stack([np.ones(5000), x])
    coef = np.linalg.solve(design.T @ design, design.T @ y)
    resid = y - design @ coef
    cov = np.linalg.inv(design.T @ design) * (resid @ resid) / (5000 - 2)
    assert r.alpha_se == pytest.approx(math.sqrt(cov[0, 0]), abs=1e-12)
    assert r.beta_se == pytest.approx(math.sqrt(cov[1, 1]), abs=1e-12)
    assert r.alpha_annual == pytest.approx(r.alpha * 100)
    assert r.alpha_t == pytest.approx(r.alpha / r.alpha_se)


def test_trade_stats_of_known_positions() -> None:
    """Two folds. Fold 1: long 3 bars then flat, fold 2: short 2 bars (closed out at the end).
    Units traded: 1 + 1 (fold 1) + 1 + 1 (fold 2) = 4; each unit costs 1 bp here."""
    pos = [np.array([1.0, 1.0, 1.0, 0.0]), np.array([0.0, -1.0, -1.0])]
    gross = [np.array([0.002, 0.001, -0.001, 0.0]), np.array([0.0, 0.003, 0.0])]
    cost = [np.array([0.0001, 0, 0, 0.0001]), np.array([0, 0.0001, 0.0001])]
    net = [g - c for g, c in zip(gross, cost, strict=True)]
    t = stats.trade_stats(gross, net, pos)
    assert t.gross_return == pytest.approx(0.005)
    assert t.net_return == pytest.approx(0.0046)
    assert t.cost == pytest.approx(0.0004)
    assert t.units_traded == 4 and t.trades == 2
    assert t.cost_per_unit == pytest.approx(0.0001)
    assert t.break_even_cost == pytest.approx(0.005 / 4)
    assert t.mean_holding_bars == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("pos", "runs"),
    [
        ([0, 0, 0], []),
        ([1, 1, -1, -1, -1, 0, 1], [2, 3, 1]),
        ([-1], [1]),
        ([1, 0, 1], [1, 1]),
    ],
)
def test_holding_runs(pos: list[float], runs: list[int]) -> None:
    assert stats.holding_runs(np.array(pos, dtype=np.float64)) == runs


def test_paired_test_matches_a_hand_computed_newey_west_example() -> None:
    """d = 1, 2, 3, 4, 5 with one lag, by hand: mean 3, deviations -2 -1 0 1 2, gamma_0 = 10/5 = 2,
    gamma_1 = ((-1)(-2) + 0(-1) + 1(0) + 2(1)) / 5 = 0.8, Bartlett weight 1 - 1/2 = 0.5, long-run
    variance 2 + 2 x 0.5 x 0.8 = 2.8, t = 3 / sqrt(2.8 / 5) = 4.008918628686366, one-sided
    p = 1 - Phi(t) = 3.0494e-05 (standard normal upper tail at 4.0089)."""
    assert stats.newey_west_long_run_variance([np.array([1.0, 2, 3, 4, 5])], 1) == pytest.approx(2.8)
    t = stats.paired_test([np.array([1.0, 2, 3, 4, 5])], lags=1)
    assert (t.n, t.mean_difference, t.lags) == (5, 3.0, 1)
    assert t.statistic == pytest.approx(4.008918628686366, rel=1e-12)
    assert t.p_value == pytest.approx(3.0494e-05, rel=1e-3)
    assert "Newey-West" in t.method and "1 lags" in t.method
    # Two symbols are two series of one pooled mean: lag products never cross from one to the other.
    split = stats.newey_west_long_run_variance([np.array([1.0, 2]), np.array([13.0, 14, 15])], 1)
    joined = stats.newey_west_long_run_variance([np.array([1.0, 2, 13, 14, 15])], 1)
    # By hand: mean 9, e = -8 -7 | 4 5 6; gamma_0 = (64+49+16+25+36)/5 = 38; within-series lag-1
    # products 56 + 20 + 30 = 106 -> 21.2, so 38 + 21.2 = 59.2 (joined adds (4)(-7) = -28: 53.6).
    assert split == pytest.approx(59.2) and joined == pytest.approx(53.6)


def test_newey_west_variance_equals_the_bartlett_weighted_covariance_matrix_sum() -> None:
    """The same estimator written as a double sum, (1/n) sum_s sum_t w(|s-t|) e_s e_t with Bartlett
    weights w(j) = 1 - j/(L+1) for j <= L, on real-looking data (AR(1) with fat tails)."""
    rng = np.random.default_rng(7)
    x = np.zeros(300)
    shocks = rng.standard_t(4, 300)
    for i in range(1, 300):
        x[i] = 0.4 * x[i - 1] + shocks[i]
    e = x - x.mean()
    for lags in (0, 3, 9):
        j = np.abs(np.subtract.outer(np.arange(300), np.arange(300)))
        w = np.where(j <= lags, 1.0 - j / (lags + 1.0), 0.0)
        brute = float(e @ w @ e) / 300
        assert stats.newey_west_long_run_variance([x], lags) == pytest.approx(brute, rel=1e-10)
    assert stats.newey_west_lags(100) == 4 and stats.newey_west_lags(1000) == 6


def test_paired_test_holds_its_size_under_autocorrelation_where_the_naive_t_test_does_not() -> None:
    """Zero-mean AR(1) differences (phi 0.5, as when positions are held for several bars), 400 series
    of 500 bars: at the 5% level the naive t-test (lag 0) rejects far more often than 5%; the
    Newey-West test stays close to it. A real edge of 0.3 sd a bar is found nearly always."""
    rng = np.random.default_rng(11)
    naive = nw = found = 0
    for _ in range(400):
        e = rng.standard_normal(500)
        d = np.zeros(500)
        for i in range(1, 500):
            d[i] = 0.5 * d[i - 1] + e[i]
        naive += stats.paired_test([d], lags=0).p_value <= 0.05
        nw += stats.paired_test([d]).p_value <= 0.05
        found += stats.paired_test([d + 0.3 * d.std()]).p_value <= 0.05
    # Theory: the naive variance is short by (1 + phi) / (1 - phi) = 3: P(Z > 1.645 / sqrt(3)) = 0.17.
    assert naive / 400 > 0.12  # 0.155 with this seed
    assert nw / 400 < 0.10  # 0.06
    assert found / 400 > 0.95


def test_paired_test_of_identical_models_is_never_significant() -> None:
    t = stats.paired_test([np.zeros(1000), np.zeros(10)])
    assert (t.n, t.statistic, t.p_value) == (1010, 0.0, 1.0)
    assert stats.paired_test([]).p_value == 1.0
