"""kairos.features: the feature pipeline shared by training and inference.

One implementation computes features in batch (training, ``compute_features``) and one closed bar at
a time (serving, ``OnlineFeatures``), from the same kernel, with a documented schema (``SCHEMA``)
whose hash the model card records, so no training/serving skew can creep in. ``BarBuilder`` turns
ticks into bars by the rule the Go collector also follows. Nothing here imports torch.
"""

from kairos.features.bars import Bar, BarBuilder, bars_to_frame
from kairos.features.card import CLASSES, METADATA_KEY, DecisionPolicy, ModelCard, ModelCardError
from kairos.features.compute import (
    BAR_COLUMNS,
    OnlineFeatures,
    compute_features,
    rows_from_windows,
    to_epoch_ms,
)
from kairos.features.schema import SCHEMA, FeatureSchema, FeatureSpec

__all__ = [
    "BAR_COLUMNS",
    "CLASSES",
    "METADATA_KEY",
    "SCHEMA",
    "Bar",
    "BarBuilder",
    "DecisionPolicy",
    "FeatureSchema",
    "FeatureSpec",
    "ModelCard",
    "ModelCardError",
    "OnlineFeatures",
    "bars_to_frame",
    "compute_features",
    "rows_from_windows",
    "to_epoch_ms",
]
