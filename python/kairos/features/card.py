"""The model card: what a served model expects and how it was made.

Training writes it beside ``model.onnx`` as ``model.card.json`` and embeds the same JSON in the ONNX
``metadata_props`` under ``kairos.model_card``; inference reads it from either place and checks the
feature schema hash against its own ``kairos.features.SCHEMA`` before serving.

Card version 2 adds ``policy``: the decision policy (``DecisionPolicy``) that turns the model's
probabilities into positions, the same in the backtest and in live execution (docs/training.md,
ADR 0081). Version 1 cards (no policy) still load, with ``policy`` None.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kairos.features.schema import SCHEMA, FeatureSchema, schema_for

if TYPE_CHECKING:
    import onnx

CARD_VERSION = 2
SUPPORTED_CARD_VERSIONS = (1, 2)
METADATA_KEY = "kairos.model_card"
CLASSES = ("down", "flat", "up")


class ModelCardError(ValueError):
    """A card that is missing, malformed, or does not match this code's feature schema."""


@dataclass(frozen=True)
class DecisionPolicy:
    """How the model's probabilities become positions, bar by bar (docs/training.md, ADR 0081).

    The expected edge of a bar, in return units over the label horizon, is
    ``edge = p_up * move_up - p_down * move_down``. Flat goes long when edge >= entry_edge (short when
    edge <= -entry_edge) and at least ``cooldown_bars`` bars have closed since the last exit; a long
    exits when edge < exit_edge (a short when edge > -exit_edge) once held ``min_hold_bars``, reverses
    when the edge crosses the opposite entry threshold (directly only with no cooldown), and is closed
    after ``max_hold_bars``. Entries are sized to ``min(max_lots, target_vol / realised_vol)`` lots,
    rounded down to the volume step; the protective stop lies ``stop_vol_mult * realised_vol * price``
    from the price. Every count is in closed bars (one signal per bar live).
    """

    entry_edge: float
    """Entry threshold on |edge|, return units (> 0)."""
    exit_edge: float
    """Exit threshold: a long exits below it, a short above its negative (0 <= exit_edge <= entry_edge)."""
    move_up: float
    """Mean forward move of the bars labelled up, return units (> 0), measured on the training samples."""
    move_down: float
    """Mean absolute forward move of the bars labelled down, return units (> 0)."""
    min_hold_bars: int = 1
    """Bars a position is held before a signal may close or reverse it (>= 1)."""
    max_hold_bars: int = 0
    """Bars after which a position is closed whatever the signal; 0 for no limit (else >= min_hold_bars)."""
    cooldown_bars: int = 0
    """Bars that must close after an exit before the next entry (>= 0); 0 allows direct reversals."""
    max_lots: float = 1.0
    """Largest position, lots (> 0)."""
    target_vol: float = 0.0
    """Target per-bar volatility of the position, lots x return (>= 0); 0 sizes every entry max_lots."""
    vol_feature: str = "vol_60"
    """Feature whose value on the signal's bar is the realised volatility (must be a model feature)."""
    vol_unit: float = 1e-4
    """Return per unit of vol_feature (1e-4 for a feature in basis points); realised_vol = value x unit."""
    stop_vol_mult: float = 0.0
    """Protective stop distance in multiples of realised_vol x price (>= 0; 0 for no stop)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, source: str = "<dict>") -> DecisionPolicy:
        """Parse and validate; a ModelCardError names the offending ``policy.<field>``."""
        if not isinstance(d, dict):
            raise ModelCardError(f"{source}: policy must be a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ModelCardError(f"{source}: policy.{unknown[0]} is not a policy field")
        missing = [k for k in ("entry_edge", "exit_edge", "move_up", "move_down") if k not in d]
        if missing:
            raise ModelCardError(f"{source}: policy.{missing[0]} is missing")
        for k, v in d.items():
            kind = known[k].type
            if kind == "int" and (isinstance(v, bool) or not isinstance(v, int)):
                raise ModelCardError(f"{source}: policy.{k} must be an integer, got {v!r}")
            if kind == "float" and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise ModelCardError(f"{source}: policy.{k} must be a number, got {v!r}")
            if kind == "str" and not isinstance(v, str):
                raise ModelCardError(f"{source}: policy.{k} must be a string, got {v!r}")
        values: dict[str, Any] = {k: (float(v) if known[k].type == "float" else v) for k, v in d.items()}
        pol = cls(**values)
        problem = pol.problem()
        if problem is not None:
            raise ModelCardError(f"{source}: {problem}")
        return pol

    def problem(self) -> str | None:
        """The first field that cannot be applied, as ``policy.<field> ...``, or None."""
        for k in (
            "entry_edge",
            "exit_edge",
            "move_up",
            "move_down",
            "max_lots",
            "target_vol",
            "vol_unit",
            "stop_vol_mult",
        ):
            v = getattr(self, k)
            if not math.isfinite(v):
                return f"policy.{k} must be finite, got {v!r}"
        checks = (
            ("entry_edge", self.entry_edge > 0, "must be > 0"),
            ("exit_edge", 0 <= self.exit_edge <= self.entry_edge, "must be within 0..entry_edge"),
            ("move_up", self.move_up > 0, "must be > 0"),
            ("move_down", self.move_down > 0, "must be > 0"),
            ("min_hold_bars", self.min_hold_bars >= 1, "must be >= 1"),
            (
                "max_hold_bars",
                self.max_hold_bars == 0 or self.max_hold_bars >= self.min_hold_bars,
                "must be 0 or >= min_hold_bars",
            ),
            ("cooldown_bars", self.cooldown_bars >= 0, "must be >= 0"),
            ("max_lots", self.max_lots > 0, "must be > 0"),
            ("target_vol", self.target_vol >= 0, "must be >= 0"),
            ("vol_feature", bool(self.vol_feature), "must name a feature"),
            ("vol_unit", self.vol_unit > 0, "must be > 0"),
            ("stop_vol_mult", self.stop_vol_mult >= 0, "must be >= 0"),
        )
        for name, ok, why in checks:
            if not ok:
                return f"policy.{name} {why}, got {getattr(self, name)!r}"
        return None


@dataclass
class ModelCard:
    """Card version 2 (docs/training.md lists every field)."""

    name: str
    version: str
    architecture: str
    feature_schema_hash: str
    feature_names: list[str]
    window: int
    timeframe_s: int
    input_name: str = "features"
    output_name: str = "probs"
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    label: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    """How the model was fitted: family, calibration, ensemble seeds, search trials (ADR 0082)."""
    created_utc: str = ""
    policy: DecisionPolicy | None = None
    feature_distribution: dict[str, Any] = field(default_factory=dict)
    """The final model's training distribution of every feature (``kairos.features.drift.distribution``:
    mean, std, quantiles, decile histogram, dissimilarity-index reference); empty in older cards.
    Additive: inference monitors drift with it when present (ADR 0087)."""
    symbols: list[str] = field(default_factory=list)
    """The symbols the model was trained and validated on (one run may pool several); inference
    refuses any other symbol for this model. Empty in older cards and when the data named none: any
    symbol."""
    feature_blocks: list[str] = field(default_factory=lambda: ["base"])
    """The feature blocks of ``feature_names`` (``kairos.features.schema.BLOCKS``, ADR 0104); older
    cards have none: the base block."""
    card_version: int = CARD_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        # card_version first so a human reading the file sees it at once.
        return {"card_version": d.pop("card_version"), **d}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> ModelCard:
        if not isinstance(d, dict):
            raise ModelCardError(f"{source}: a model card is a JSON object")
        version = d.get("card_version")
        if version not in SUPPORTED_CARD_VERSIONS:
            raise ModelCardError(
                f"{source}: card_version {version!r} is not supported "
                f"(expected one of {list(SUPPORTED_CARD_VERSIONS)})"
            )
        known = {f.name for f in fields(cls)}
        required = [
            "name",
            "version",
            "architecture",
            "feature_schema_hash",
            "feature_names",
            "window",
            "timeframe_s",
        ]
        if version >= 2:
            required.append("policy")
        missing = [k for k in required if k not in d]
        if missing:
            raise ModelCardError(f"{source}: missing field(s) {missing}")
        values = {k: v for k, v in d.items() if k in known}
        if version < 2:
            values.pop("policy", None)  # a version 1 card has no policy, whatever it carries
        elif d["policy"] is not None:
            values["policy"] = DecisionPolicy.from_dict(d["policy"], source)
        card = cls(**values)
        if list(card.classes) != list(CLASSES):
            raise ModelCardError(f"{source}: classes must be {list(CLASSES)}, got {card.classes}")
        if not isinstance(card.window, int) or card.window < 1:
            raise ModelCardError(f"{source}: window must be a positive integer, got {card.window!r}")
        if not isinstance(card.timeframe_s, int) or card.timeframe_s < 1:
            raise ModelCardError(
                f"{source}: timeframe_s must be a positive integer, got {card.timeframe_s!r}"
            )
        if not isinstance(card.symbols, list) or not all(isinstance(s, str) and s for s in card.symbols):
            raise ModelCardError(f"{source}: symbols must be a list of symbol names, got {card.symbols!r}")
        try:
            schema = schema_for(card.feature_blocks)
        except (TypeError, ValueError) as e:
            raise ModelCardError(f"{source}: feature_blocks {card.feature_blocks!r}: {e}") from None
        if list(card.feature_blocks) != list(schema.blocks):
            raise ModelCardError(
                f"{source}: feature_blocks must be {list(schema.blocks)} (base first, in "
                f"kairos.features.schema.BLOCKS order), got {card.feature_blocks!r}"
            )
        if schema.has("cross") and len(card.symbols) < 2:
            raise ModelCardError(
                f"{source}: feature_blocks has 'cross' but symbols lists {card.symbols!r}: cross-symbol "
                "features need the two or more symbols they were trained on"
            )
        if card.policy is not None and card.policy.vol_feature not in card.feature_names:
            raise ModelCardError(
                f"{source}: policy.vol_feature {card.policy.vol_feature!r} is not one of the card's "
                "feature_names"
            )
        return card

    @classmethod
    def from_json(cls, text: str, source: str = "<json>") -> ModelCard:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelCardError(f"{source}: not valid JSON: {e}") from e
        return cls.from_dict(d, source)

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise ModelCardError(f"{p}: cannot read model card: {e}") from e
        return cls.from_json(text, str(p))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def from_onnx(cls, model: str | Path | onnx.ModelProto) -> ModelCard:
        """The card embedded in an ONNX file (or loaded ModelProto)."""
        import onnx

        source = "<onnx model>"
        if not isinstance(model, onnx.ModelProto):
            source = str(model)
            model = onnx.load(str(model), load_external_data=False)
        for prop in model.metadata_props:
            if prop.key == METADATA_KEY:
                return cls.from_json(prop.value, f"{source} metadata {METADATA_KEY}")
        raise ModelCardError(f"{source}: no '{METADATA_KEY}' entry in the ONNX metadata_props")

    def embed(self, model: onnx.ModelProto) -> None:
        """Write this card into the model's metadata_props (replacing an earlier card)."""
        keep = [p for p in model.metadata_props if p.key != METADATA_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
        entry = model.metadata_props.add()
        entry.key = METADATA_KEY
        entry.value = self.to_json()

    @property
    def schema(self) -> FeatureSchema:
        """The feature schema of the card's blocks, as this code computes it."""
        return schema_for(self.feature_blocks)

    def check_schema(self) -> None:
        """Raise ModelCardError unless the card's features are exactly what this code computes for
        the card's feature blocks."""
        schema = self.schema
        if self.feature_schema_hash != schema.hash:
            raise ModelCardError(
                f"model '{self.name}' was trained on feature schema {self.feature_schema_hash}, "
                f"this code computes {schema.hash} for the blocks {list(schema.blocks)}"
            )
        if list(self.feature_names) != list(schema.names):
            raise ModelCardError(
                f"model '{self.name}' feature_names differ from kairos.features' names for the blocks "
                f"{list(schema.blocks)}"
            )

    @property
    def bars_needed(self) -> int:
        """Closed bars a fresh symbol needs before the first prediction."""
        return SCHEMA.window + self.window - 1
