"""Real data for the feature tests: GBPUSD M1 bid/ask bars and EURUSD ticks from ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any
import pytest

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def load_gbpusd_m1(n: int | None = None) -> pd.DataFrame:
    """Bid bars with spread = mean of ask - bid over open and close (the files carry no tick counts)."""
    bid = pd.read_csv(DATA / "gbpusd-m1-bid-2012.csv", nrows=n)
    ask = pd.read_csv(DATA / "gbpusd-m1-ask-2012.csv", nrows=n)
    assert (bid["timestamp"] == ask["timestamp"]).all()
    df = bid.rename(columns={"timestamp": "time"})
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df["spread"] = ((ask["open"] - bid["open"]) + (ask["close"] - bid["close"])) / 2
    df["tick_volume"] = 0
    return df


def load_eurusd_ticks() -> pd.DataFrame:
    raw = pd.read_csv(
        DATA / "eurusd-ticks-2020-01-01.csv", header=None, names=["t", "bid", "ask", "v"], dtype={"t": str}
    )
    time = pd.to_datetime(raw["t"], format="%Y%m%d %H%M%S%f", utc=True)
    raw["time_msc"] = (time - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    return raw


@pytest.fixture(scope="session")
def gbpusd_m1() -> pd.DataFrame:
    return load_gbpusd_m1()


@pytest.fixture(scope="session")
def eurusd_ticks() -> pd.DataFrame:
    return load_eurusd_ticks()
