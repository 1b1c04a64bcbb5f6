"""The model card: what a served model expects and how it was made.

Training writes it beside ``model.onnx`` as ``model.card.json`` and embeds the same JSON in the ONNX
``metadata_props`` under ``kairos.model_card``; inference reads it from either place and checks the
feature schema hash against its own ``kairos.features.SCHEMA`` before serving.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kairos.features.schema import SCHEMA

if TYPE_CHECKING:
    import onnx

CARD_VERSION = 1
METADATA_KEY = "kairos.model_card"
CLASSES = ("down", "flat", "up")


class ModelCardError(ValueError):
    """A card that is missing, malformed, or does not match this code's feature schema."""


@dataclass
class ModelCard:
    """Card version 1 (docs/training.md lists every field)."""

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
        if version != CARD_VERSION:
            raise ModelCardError(
                f"{source}: card_version {version!r} is not supported (expected {CARD_VERSION})"
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
        missing = [k for k in required if k not in d]
        if missing:
            raise ModelCardError(f"{source}: missing field(s) {missing}")
        card = cls(**{k: v for k, v in d.items() if k in known})
        if list(card.classes) != list(CLASSES):
            raise ModelCardError(f"{source}: classes must be {list(CLASSES)}, got {card.classes}")
        if not isinstance(card.window, int) or card.window < 1:
            raise ModelCardError(f"{source}: window must be a positive integer, got {card.window!r}")
        if not isinstance(card.timeframe_s, int) or card.timeframe_s < 1:
            raise ModelCardError(
                f"{source}: timeframe_s must be a positive integer, got {card.timeframe_s!r}"
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

    def check_schema(self) -> None:
        """Raise ModelCardError unless the card's features are exactly this code's SCHEMA."""
        if self.feature_schema_hash != SCHEMA.hash:
            raise ModelCardError(
                f"model '{self.name}' was trained on feature schema {self.feature_schema_hash}, "
                f"this code computes {SCHEMA.hash}"
            )
        if list(self.feature_names) != list(SCHEMA.names):
            raise ModelCardError(
                f"model '{self.name}' feature_names differ from kairos.features.SCHEMA.names"
            )

    @property
    def bars_needed(self) -> int:
        """Closed bars a fresh symbol needs before the first prediction."""
        return SCHEMA.window + self.window - 1
