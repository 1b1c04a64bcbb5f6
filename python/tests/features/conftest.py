"""Real data for the feature tests: GBPUSD M1 bid/ask bars and EURUSD ticks from ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

from kairos.training.data import load_bars, read_ticks

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def load_gbpusd_m1(n: int | None = None) -> pd.DataFrame:
    """Bid bars read by the training importer, spread from the ask twin beside them (mean of ask - bid
    over open, high, low, close); the files carry no tick counts."""
    bars, _ = load_bars(str(DATA / "gbpusd-m1-bid-2012.csv"))
    return bars.iloc[:n].reset_index(drop=True) if n is not None else bars


def load_eurusd_ticks() -> pd.DataFrame:
    """The real EURUSD ticks (time, time_msc, bid, ask, volume), read by the training importer."""
    return read_ticks(str(DATA / "eurusd-ticks-2020-01-01.csv")).reset_index(drop=True)


@pytest.fixture(scope="session")
def gbpusd_m1() -> pd.DataFrame:
    return load_gbpusd_m1()


@pytest.fixture(scope="session")
def eurusd_ticks() -> pd.DataFrame:
    return load_eurusd_ticks()
