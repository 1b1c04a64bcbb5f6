"""ModelCard round trips through JSON and ONNX metadata, and refuses cards it cannot trust."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from kairos.features import METADATA_KEY, SCHEMA, DecisionPolicy, ModelCard, ModelCardError

POLICY = DecisionPolicy(
    entry_edge=1e-4, exit_edge=0.0, move_up=4e-4, move_down=4.5e-4, max_hold_bars=30, target_vol=5e-5
)


def _card() -> ModelCard:
    return ModelCard(
        name="kairos-gbpusd",
        version="1",
        architecture="mlp",
        feature_schema_hash=SCHEMA.hash,
        feature_names=list(SCHEMA.names),
        window=16,
        timeframe_s=60,
        label={"horizon": 5},
        dataset={"sha256": "x"},
        metrics={"sharpe": 0.1},
        created_utc="2026-11-21T00:00:00Z",
        policy=POLICY,
    )


def _identity_model() -> onnx.ModelProto:
    node = helper.make_node("Identity", ["features"], ["probs"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 3])],
    )
    return helper.make_model(graph)


def test_card_saves_and_loads_unchanged(tmp_path: Path) -> None:
    card = _card()
    card.save(tmp_path / "model.card.json")
    loaded = ModelCard.load(tmp_path / "model.card.json")
    assert loaded == card
    saved = json.loads((tmp_path / "model.card.json").read_text())
    assert saved["card_version"] == 2 and saved["policy"]["entry_edge"] == 1e-4
    loaded.check_schema()
    assert loaded.bars_needed == SCHEMA.window + 15


def test_card_embedded_in_onnx_metadata_is_read_back_and_replaced_not_duplicated(tmp_path: Path) -> None:
    model = _identity_model()
    _card().embed(model)
    newer = _card()
    newer.version = "2"
    newer.embed(model)
    assert [p.key for p in model.metadata_props].count(METADATA_KEY) == 1
    onnx.save(model, tmp_path / "m.onnx")
    assert ModelCard.from_onnx(tmp_path / "m.onnx").version == "2"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"card_version": 3}, "card_version 3 is not supported"),
        ({"policy": None, "__drop__": "policy"}, "missing field"),
        ({"policy": {**POLICY.to_dict(), "exit_edge": 2e-4}}, r"policy\.exit_edge must be within"),
        ({"policy": {**POLICY.to_dict(), "min_hold_bars": 1.5}}, r"policy\.min_hold_bars must be an integer"),
        ({"policy": {**POLICY.to_dict(), "max_hold_bars": -1}}, r"policy\.max_hold_bars must be 0 or"),
        ({"policy": {**POLICY.to_dict(), "entry_edge": "x"}}, r"policy\.entry_edge must be a number"),
        ({"policy": {**POLICY.to_dict(), "stop_loss": 1}}, r"policy\.stop_loss is not a policy field"),
        ({"policy": {"entry_edge": 1e-4}}, r"policy\.exit_edge is missing"),
        ({"policy": {**POLICY.to_dict(), "vol_feature": "vol_99"}}, r"policy\.vol_feature 'vol_99' is not"),
        ({"classes": ["up", "flat", "down"]}, "classes must be"),
        ({"window": 0}, "window must be"),
        ({"name": None, "__drop__": "name"}, "missing field"),
    ],
)
def test_a_malformed_card_is_refused_naming_the_file(
    tmp_path: Path, patch: dict[str, object], message: str
) -> None:
    d = _card().to_dict()
    drop = patch.pop("__drop__", None)
    d.update(patch)
    if drop:
        del d[str(drop)]
    path = tmp_path / "bad.card.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ModelCardError, match=message) as err:
        ModelCard.load(path)
    assert str(path) in str(err.value)


def test_a_card_for_another_feature_schema_fails_the_schema_check() -> None:
    card = _card()
    card.feature_schema_hash = "sha256:" + "0" * 64
    with pytest.raises(ModelCardError, match="trained on feature schema"):
        card.check_schema()


def test_onnx_without_a_card_is_an_error(tmp_path: Path) -> None:
    onnx.save(_identity_model(), tmp_path / "m.onnx")
    with pytest.raises(ModelCardError, match=r"no 'kairos\.model_card'"):
        ModelCard.from_onnx(tmp_path / "m.onnx")


def test_a_version_1_card_still_loads_without_a_policy(tmp_path: Path) -> None:
    d = _card().to_dict()
    d["card_version"] = 1
    d["policy"] = {"whatever": "a version 1 card carried"}
    path = tmp_path / "v1.card.json"
    path.write_text(json.dumps(d))
    card = ModelCard.load(path)
    assert card.card_version == 1 and card.policy is None
