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


# Lookbacks, in bars. The longest one sets the window.
RETURN_HORIZONS = (1, 5, 15, 60)
VOL_WINDOWS = (15, 60)
RANGE_WINDOW = 15
CHANNEL_WINDOW = 15
MOMENTUM_WINDOW = 14
TREND_WINDOW = 60
ACTIVITY_WINDOW = 60

SCHEMA = FeatureSchema(
    version=1,
    # ret_60 and vol_60 need close[t-60]: 61 bars including the current one.
    window=61,
    specs=(
        *(
            FeatureSpec(f"ret_{h}", f"log(close[t] / close[t-{h}]) * 1e4 (basis points)")
            for h in RETURN_HORIZONS
        ),
        *(
            FeatureSpec(f"vol_{n}", f"population std of the last {n} one-bar log returns of close * 1e4")
            for n in VOL_WINDOWS
        ),
        FeatureSpec("range_1", "(high[t] - low[t]) / close[t] * 1e4"),
        FeatureSpec(
            f"range_{RANGE_WINDOW}", f"mean over the last {RANGE_WINDOW} bars of (high - low) / close * 1e4"
        ),
        FeatureSpec(
            f"channel_pos_{CHANNEL_WINDOW}",
            f"(close[t] - min(low)) / (max(high) - min(low)) - 0.5 over the last {CHANNEL_WINDOW} bars; "
            "0 when the channel is flat",
        ),
        FeatureSpec(
            f"up_balance_{MOMENTUM_WINDOW}",
            f"sum(one-bar returns) / sum(|one-bar returns|) over the last {MOMENTUM_WINDOW} bars; "
            "0 when all are 0",
        ),
        FeatureSpec(
            f"trend_{TREND_WINDOW}", f"(close[t] / mean(close over the last {TREND_WINDOW} bars) - 1) * 1e4"
        ),
        FeatureSpec("spread_rel", "spread[t] / close[t] * 1e4 (mean quoted spread of the bar)"),
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
