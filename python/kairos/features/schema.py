"""The feature schema: which features exist, in which order, and how much history they need.

The schema is data, not code comments: its canonical JSON (names, definitions, window, version) is
hashed, and the model card records that hash, so a server refuses a model trained on different
features instead of silently feeding it the wrong columns.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: its name and the exact definition the code implements."""

    name: str
    definition: str


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered feature columns plus the bars of history one feature row needs.

    ``window`` counts bars including the current one: the row of bar t is computed from bars
    t-window+1 .. t and nothing later.
    """

    version: int
    window: int
    specs: tuple[FeatureSpec, ...]
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(s.name for s in self.specs))
        if len(set(self.names)) != len(self.names):
            raise ValueError("feature names must be unique")

    @property
    def n_features(self) -> int:
        return len(self.specs)

    def canonical_json(self) -> str:
        """The JSON the hash covers: sorted keys, no whitespace, so it is stable across runs."""
        spec = {
            "version": self.version,
            "window": self.window,
            "features": [{"name": s.name, "definition": s.definition} for s in self.specs],
        }
        return json.dumps(spec, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical_json().encode()).hexdigest()


# Lookbacks, in bars. The longest one sets the window. 240 bars is four hours of M1 and ten days of
# H1; 24 bars is a day of H1. A day of M1 (1440 bars) would make every symbol wait a day of bars
# before its first prediction (ADR 0082), so the long lookback stops at 240.
RETURN_HORIZONS = (1, 5, 15, 24, 60, 240)
VOL_WINDOWS = (15, 60, 240)
LONG_WINDOW = 240
"""The volatility that scales returns and trends: std of the last LONG_WINDOW one-bar returns."""
RANGE_WINDOW = 15
CHANNEL_WINDOWS = (15, 240)
MOMENTUM_WINDOW = 14
TREND_WINDOWS = (60, 240)
ACTIVITY_WINDOW = 60
SPREAD_VOL_WINDOW = 60

_SIGMA = f"sigma = population std of the last {LONG_WINDOW} one-bar log returns of close"

SCHEMA = FeatureSchema(
    version=2,
    # ret_240 and vol_240 need close[t-240]: 241 bars including the current one.
    window=LONG_WINDOW + 1,
    specs=(
        *(
            FeatureSpec(
                f"zret_{h}", f"log(close[t] / close[t-{h}]) / (sigma * sqrt({h})); {_SIGMA}; 0 when sigma = 0"
            )
            for h in RETURN_HORIZONS
        ),
        *(
            FeatureSpec(f"vol_{n}", f"population std of the last {n} one-bar log returns of close * 1e4")
            for n in VOL_WINDOWS
        ),
        FeatureSpec(
            "vol_ratio_15_240", "log(vol_15 / vol_240); 0 when either is 0 (short against long volatility)"
        ),
        FeatureSpec("range_1", "(high[t] - low[t]) / close[t] * 1e4"),
        FeatureSpec(
            f"range_{RANGE_WINDOW}", f"mean over the last {RANGE_WINDOW} bars of (high - low) / close * 1e4"
        ),
        *(
            FeatureSpec(
                f"channel_pos_{n}",
                f"(close[t] - min(low)) / (max(high) - min(low)) - 0.5 over the last {n} bars; "
                "0 when the channel is flat",
            )
            for n in CHANNEL_WINDOWS
        ),
        FeatureSpec(
            f"up_balance_{MOMENTUM_WINDOW}",
            f"sum(one-bar returns) / sum(|one-bar returns|) over the last {MOMENTUM_WINDOW} bars; "
            "0 when all are 0",
        ),
        *(
            FeatureSpec(
                f"ztrend_{n}",
                f"log(close[t] / mean(close over the last {n} bars)) / sigma; {_SIGMA}; 0 when sigma = 0",
            )
            for n in TREND_WINDOWS
        ),
        FeatureSpec(
            "spread_vol",
            f"spread[t] / close[t] / (std of the last {SPREAD_VOL_WINDOW} one-bar log returns): the bar's "
            "quoted spread in units of one-bar volatility; 0 when that std is 0",
        ),
        FeatureSpec(
            f"activity_{ACTIVITY_WINDOW}",
            f"log1p(tick_volume[t]) - mean(log1p(tick_volume)) over the last {ACTIVITY_WINDOW} bars",
        ),
        FeatureSpec("hour_sin", "sin(2 pi * seconds of the UTC day of the bar open time / 86400)"),
        FeatureSpec("hour_cos", "cos(2 pi * seconds of the UTC day of the bar open time / 86400)"),
        FeatureSpec(
            "week_sin", "sin(2 pi * position in the UTC week (Monday 00:00 = 0) of the bar open time)"
        ),
        FeatureSpec(
            "week_cos", "cos(2 pi * position in the UTC week (Monday 00:00 = 0) of the bar open time)"
        ),
    ),
)
