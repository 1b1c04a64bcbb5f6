"""Real data for the training tests (../shared/data and the backtesting package's EURUSD H1 sample)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.fixture(scope="session")
def gbpusd_bars() -> pd.DataFrame:
    from kairos.training.data import load_bars

    bars, _ = load_bars(str(DATA / "gbpusd-m1-bid-2012.csv"))
    return bars


@pytest.fixture(scope="session")
def sample_h1() -> pd.DataFrame:
    """The backtesting package's real EURUSD H1 bars (read in place), spread 1 pip."""
    from kairos.training.data import load_bars

    bars, _ = load_bars("sample:eurusd-h1")
    return bars
