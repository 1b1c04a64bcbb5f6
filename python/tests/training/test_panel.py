"""Several symbols in one run (kairos.training.panel): per-symbol features, labels and samples on one
clock, folds purged by time, fills and policy runs that never cross a symbol, returns pooled per time;
then the whole kairos-train run on two real markets, and inference refusing a symbol outside the card.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from kairos.features import SCHEMA, ModelCard, compute_features
from kairos.training.backtest import BarPrices, FillModel, fill_returns, panel_returns, policy_positions
from kairos.training.data import load_bars
from kairos.training.labels import LabelConfig, label_bars, window_index
from kairos.training.panel import Panel, stack
from kairos.training.policy import Params, PolicyConfig
from kairos.training.train import TrainConfig, make_folds

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
GBPUSD = DATA / "gbpusd-m1-bid-2012.csv"
GBPUSD_ASK = DATA / "gbpusd-m1-ask-2012.csv"
BTCUSD = DATA / "btcusd-perp-m1-2022-01.csv"
N = 2500


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """Two real markets years apart (GBPUSD February 2012, BTCUSD January 2022)."""
    gbp, _ = load_bars(str(GBPUSD))
    btc, _ = load_bars(str(BTCUSD), spread=0.5)
    return {"GBPUSD": gbp.iloc[-N:].reset_index(drop=True), "BTCUSD": btc.iloc[:N].reset_index(drop=True)}


@pytest.fixture(scope="module")
def overlapping() -> dict[str, pd.DataFrame]:
    """Two real books on the same minutes: GBPUSD on the bid and on the ask (February 2012), traded
    as two symbols, so the clock has ties and validation blocks interleave the symbols."""
    bid, _ = load_bars(str(GBPUSD))
    ask, _ = load_bars(str(GBPUSD_ASK), spread=0.0)
    return {"BID": bid.iloc[:N].reset_index(drop=True), "ASK": ask.iloc[:N].reset_index(drop=True)}


def test_one_symbol_panel_is_the_row_numbers(frames: dict[str, pd.DataFrame]) -> None:
    bars = frames["GBPUSD"]
    p = Panel.of(bars)
    assert p.symbols == ("",)
    np.testing.assert_array_equal(p.clock, np.arange(len(bars)))
    feats = p.features(bars)
    labels = p.labels(bars, LabelConfig()).y
    np.testing.assert_array_equal(p.window_index(feats, labels, 8), window_index(feats, labels, 8))


def test_features_labels_and_samples_are_per_symbol_and_never_cross_a_symbol(
    frames: dict[str, pd.DataFrame],
) -> None:
    bars = stack(frames)
    p = Panel.of(bars)
    assert p.symbols == ("GBPUSD", "BTCUSD")
    feats = p.features(bars)
    lab = p.labels(bars, LabelConfig(horizon=5))
    for (a, b), sym in zip(p.segments(), p.symbols, strict=True):
        np.testing.assert_array_equal(feats[a:b], compute_features(frames[sym]))
        alone = label_bars(frames[sym], LabelConfig(horizon=5))
        np.testing.assert_array_equal(lab.y[a:b], alone.y)
        ok = alone.end >= 0
        np.testing.assert_array_equal(lab.end[a:b][ok], alone.end[ok] + a)
    w = 8
    idx = p.window_index(feats, lab.y, w)
    seg = p.segment_of(idx)
    np.testing.assert_array_equal(p.segment_of(idx - w + 1), seg)  # a window lies within its symbol
    np.testing.assert_array_equal(p.segment_of(lab.end[idx]), seg)  # so does the label's span
    assert np.all(np.diff(p.clock[idx]) >= 0), "samples are in clock order"
    warm = SCHEMA.window + w - 2
    for s, (a, _) in enumerate(p.segments()):
        assert idx[seg == s].min() == a + warm, "each symbol warms up on its own bars"


def test_folds_purge_training_samples_by_time_across_symbols(overlapping: dict[str, pd.DataFrame]) -> None:
    bars = stack(overlapping)
    p = Panel.of(bars)
    assert len(p.grid_ms) == N, "both books trade the same minutes"
    feats, lab = p.features(bars), p.labels(bars, LabelConfig(horizon=5))
    idx = p.window_index(feats, lab.y, 8)
    purge = 7
    folds = make_folds(idx, TrainConfig(folds=3), purge, p.clock)
    for f in folds:
        start = p.clock[f.val[0]]
        assert p.clock[f.train].max() < start - purge
        assert p.clock[f.early].max() < start
        assert p.clock[f.train].max() < p.clock[f.early[0]] - purge
        assert set(p.segment_of(f.val).tolist()) == {0, 1}, "a validation block holds both symbols"
    # Row arithmetic (the single-symbol rule) would purge every ASK row from training: their row
    # numbers all follow BID's, whatever their time.
    naive = make_folds(idx, TrainConfig(folds=3), purge)
    assert all(set(p.segment_of(f.train).tolist()) == {0} for f in naive)


def test_pooled_returns_add_the_symbols_per_time_and_fills_stay_in_their_symbol(
    overlapping: dict[str, pd.DataFrame],
) -> None:
    bars = stack(overlapping)
    p = Panel.of(bars)
    prices = BarPrices(*(bars[c].to_numpy(np.float64) for c in ("open", "close", "spread")))
    fill = FillModel(commission=0.00002)
    # The last 50 minutes of both books, long all the way: each book's last bar has no next bar.
    a_end, b_end = int(p.bounds[1]), int(p.bounds[2])
    idx = np.concatenate([np.arange(a_end - 50, a_end), np.arange(b_end - 50, b_end)]).astype(np.int64)
    pos = np.ones(len(idx))
    g, n = panel_returns(prices, idx, pos, fill, 1.0, p)
    ga, na = fill_returns(prices.open, prices.close, prices.spread, idx[:50], pos[:50], fill, 1.0, a_end - 1)
    np.testing.assert_allclose(n[:50], na)
    np.testing.assert_allclose(g[:50], ga)
    assert g[49] == 0.0, "BID's last bar has no next bar of BID: no return, never ASK's price"
    clocks, (pooled,) = p.pool(idx, n)
    assert len(clocks) == 50, "the two books share their minutes"
    np.testing.assert_allclose(pooled, n[:50] + n[50:])


def test_the_policy_runs_per_symbol_with_its_own_state(overlapping: dict[str, pd.DataFrame]) -> None:
    bars = stack(overlapping)
    p = Panel.of(bars)
    prices = BarPrices(*(bars[c].to_numpy(np.float64) for c in ("open", "close", "spread")))
    params = Params(PolicyConfig(cooldown_bars=3).policy(1e-3, 1e-3))
    rng = np.random.default_rng(7)
    a = np.arange(100, 400, dtype=np.int64)
    idx = np.concatenate([a, a + int(p.bounds[1])])
    idx = idx[np.lexsort((idx, p.clock[idx]))]  # interleaved as in a validation block
    probs = rng.dirichlet([1, 1, 1], size=len(idx))
    vol = np.full(len(idx), 1e-4)
    got = policy_positions(params, prices, idx, probs, vol, p)
    for s in (0, 1):
        at = np.flatnonzero(p.segment_of(idx) == s)
        alone = policy_positions(params, prices, idx[at], probs[at], vol[at])
        np.testing.assert_array_equal(got[at], alone)


def _run(tmp: Path, *data: str) -> Path:
    from kairos.training.cli import main

    run = tmp / "run"
    args = ["run", "--run", str(run), *(x for d in data for x in ("--data", d)), "--spread", "0.5"]
    args += ["--max-bars", "4000", "--epochs", "2", "--folds", "2", "--window", "8", "--hidden", "16"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--no-register", "--out", str(tmp / "out")])
    assert e.value.code in (0, None), e.value.code
    return run


def test_a_run_on_two_real_markets_pools_them_reports_each_and_lists_them_in_the_card(
    tmp_path: Path,
) -> None:
    run = _run(tmp_path, str(GBPUSD), f"BTCUSD={BTCUSD}")
    imp = json.loads((run / "import.json").read_text())
    assert imp["symbols"] == ["GBPUSD", "BTCUSD"]
    assert imp["bars"] == 8000 and set(imp["per_symbol"]) == {"GBPUSD", "BTCUSD"}
    assert imp["timeframe_s"] == 60
    rj = json.loads((run / "run.json").read_text())
    assert set(rj["symbols"]) == {"GBPUSD", "BTCUSD"} and sum(rj["symbols"].values()) == rj["samples"]
    rep = json.loads((run / "report.json").read_text())
    assert rep["dataset"]["symbols"] == ["GBPUSD", "BTCUSD"]
    for name, s in rep["strategies"].items():
        assert s["symbols"], f"{name} has per-symbol figures"
    md = (run / "report.md").read_text()
    assert "## Per symbol (GBPUSD, BTCUSD)" in md
    card = ModelCard.load(run / "model.card.json")
    assert card.symbols == ["GBPUSD", "BTCUSD"]
    assert card.name == "kairos-gbpusd-btcusd"
    assert card.dataset["source"] == f"{GBPUSD.name} + {BTCUSD.name}"


@pytest.mark.parametrize(
    ("second", "needle"),
    [
        (str(GBPUSD), "already imported"),
        ("minutes.csv", "no trading symbol in the file name"),  # a copy named without its symbol
    ],
)
def test_several_sources_that_cannot_be_pooled_are_data_errors_naming_the_file(
    tmp_path: Path, second: str, needle: str
) -> None:
    from kairos.training.data import DataError
    from kairos.training.pipeline import step_import

    if not Path(second).is_absolute():
        (tmp_path / second).write_bytes(GBPUSD.read_bytes())
        second = str(tmp_path / second)
    with pytest.raises(DataError) as e:
        step_import(
            tmp_path / "run",
            [str(GBPUSD), second],
            timeframe=None,
            ask_source=None,
            spread=0.5,
            source_tz="UTC",
            dedupe="error",
            max_bars=500,
        )
    assert needle in str(e.value)
    assert Path(second).name in str(e.value)


def test_sources_of_different_timeframes_are_refused(tmp_path: Path) -> None:
    from kairos.training.data import DataError
    from kairos.training.pipeline import step_import

    with pytest.raises(DataError, match=r"H1 bars, but .*gbpusd-m1-bid-2012.csv has M1") as e:
        step_import(
            tmp_path,
            [str(GBPUSD), "sample:eurusd-h1"],
            timeframe=None,
            ask_source=None,
            spread=None,
            source_tz="UTC",
            dedupe="error",
            max_bars=500,
        )
    assert "--timeframe" in str(e.value)


def test_pooled_bars_per_year_count_only_the_time_the_symbols_cover(
    frames: dict[str, pd.DataFrame], overlapping: dict[str, pd.DataFrame]
) -> None:
    from kairos.features import to_epoch_ms
    from kairos.training.backtest import periods_per_year

    apart = Panel.of(stack(frames))  # 2012 and 2022: the decade between them is not trading time
    own = [periods_per_year(to_epoch_ms(f["time"])) for f in frames.values()]
    assert min(own) * 0.9 <= apart.periods_per_year() <= max(own) * 1.1
    same = Panel.of(stack(overlapping))  # the same minutes twice: the one series' rate
    assert same.periods_per_year() == pytest.approx(
        periods_per_year(to_epoch_ms(overlapping["BID"]["time"])), rel=1e-3
    )
