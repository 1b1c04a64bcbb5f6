"""The feature schema: which features exist, in which order, and how much history they need.

The schema is data, not code comments: its canonical JSON (names, definitions, window, version) is
hashed, and the model card records that hash, so a server refuses a model trained on different
features instead of silently feeding it the wrong columns.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
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
    blocks: tuple[str, ...] = ("base",)
    """The feature blocks the columns come from, in column order (``BLOCKS``)."""
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(s.name for s in self.specs))
        if len(set(self.names)) != len(self.names):
            raise ValueError("feature names must be unique")

    @property
    def n_features(self) -> int:
        return len(self.specs)

    def has(self, block: str) -> bool:
        return block in self.blocks

    def block_slice(self, block: str) -> slice:
        """The columns of ``block`` in a row of this schema."""
        start = 0
        for b in self.blocks:
            n = len(BLOCK_SPECS[b])
            if b == block:
                return slice(start, start + n)
            start += n
        raise KeyError(f"schema has no block {block!r} (blocks {list(self.blocks)})")

    def canonical_json(self) -> str:
        """The JSON the hash covers: sorted keys, no whitespace, so it is stable across runs."""
        spec: dict[str, object] = {
            "version": self.version,
            "window": self.window,
            "features": [{"name": s.name, "definition": s.definition} for s in self.specs],
        }
        if self.blocks != ("base",):  # the base schema's hash is what it was before blocks existed
            spec["blocks"] = list(self.blocks)
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

_BASE_SPECS = (
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
    FeatureSpec("week_sin", "sin(2 pi * position in the UTC week (Monday 00:00 = 0) of the bar open time)"),
    FeatureSpec("week_cos", "cos(2 pi * position in the UTC week (Monday 00:00 = 0) of the bar open time)"),
)

# The optional blocks (ADR 0104): a model's card names the blocks it was trained on; the base block
# alone is the schema every model had before blocks existed (same names, same hash).
DAY_MS = 86_400_000
"""The daily block's lookback: the bars opened within the 24 hours up to and including bar t."""
_DAY = (
    "day window = the bars opened in (open[t] - 24 h, open[t]], with c0 = close of the bar before "
    "it; defined once a bar opened at or before open[t] - 24 h exists"
)
DAILY_SPECS = (
    FeatureSpec(
        "zret_1d",
        f"log(close[t] / c0) / sqrt(sum of squared one-bar log returns over the day window); {_DAY}; "
        "0 when that sum is 0",
    ),
    FeatureSpec("rv_1d", f"sqrt(sum of squared one-bar log returns over the day window) * 1e4; {_DAY}"),
    FeatureSpec(
        "channel_pos_1d",
        f"(close[t] - min(low)) / (max(high) - min(low)) - 0.5 over the day window; {_DAY}; "
        "0 when the channel is flat",
    ),
)
CROSS_HORIZONS = (1, 15, 60)
CROSS_FRESH_BARS = 2
"""Another symbol's row counts for bar t if that symbol's bar opened in [open[t] - 2 bars, open[t])."""
_CROSS = (
    f"over the other symbols of the model (the card's symbols), each at its latest bar opened in "
    f"[open[t] - {CROSS_FRESH_BARS} * timeframe, open[t]) (strictly before bar t: it has closed by the "
    "time bar t closes, whatever order the symbols' ticks arrive in); 0 when no other symbol has such a bar"
)
CROSS_SPECS = tuple(FeatureSpec(f"xs_zret_{h}", f"mean of zret_{h} {_CROSS}") for h in CROSS_HORIZONS)
BLOCK_SPECS: dict[str, tuple[FeatureSpec, ...]] = {
    "base": _BASE_SPECS,
    "daily": DAILY_SPECS,
    "cross": CROSS_SPECS,
}
BLOCKS = tuple(BLOCK_SPECS)
"""Every block, in the order their columns appear in a row."""

SCHEMA = FeatureSchema(
    version=2,
    # ret_240 and vol_240 need close[t-240]: 241 bars including the current one.
    window=LONG_WINDOW + 1,
    specs=_BASE_SPECS,
)
"""The base block alone: the default schema."""


def schema_for(blocks: Sequence[str] | None) -> FeatureSchema:
    """The schema of a model trained on ``blocks`` (None or empty: the base block). The base block is
    always in; the others are appended in ``BLOCKS`` order whatever order they are named in."""
    names = set(blocks or ()) | {"base"}
    unknown = sorted(names - set(BLOCKS))
    if unknown:
        raise ValueError(f"unknown feature block(s) {unknown}; known: {list(BLOCKS)}")
    return _schema_of(tuple(b for b in BLOCKS if b in names))


@functools.cache
def _schema_of(chosen: tuple[str, ...]) -> FeatureSchema:
    if chosen == ("base",):
        return SCHEMA
    return FeatureSchema(
        version=SCHEMA.version,
        window=SCHEMA.window,
        specs=tuple(spec for b in chosen for spec in BLOCK_SPECS[b]),
        blocks=chosen,
    )
