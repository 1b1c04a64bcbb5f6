"""The checked-in model fixture is what the inference server is promised: a single-file ONNX whose card
matches kairos.features, serving raw online feature windows built from real ticks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]

from kairos.features import SCHEMA, BarBuilder, ModelCard, OnlineFeatures
from kairos.training.data import read_ticks

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "model"
TICKS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "eurusd-ticks-2020-01-01.csv"


def test_fixture_is_one_small_onnx_file_with_the_card_embedded_and_beside_it() -> None:
    path = FIXTURE / "model.onnx"
    assert path.stat().st_size < 1_000_000
    model = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    # No exporter debug metadata (stack traces with local paths): the file depends on the weights only.
    assert b"stack_trace" not in path.read_bytes() and b"/python/training/" not in path.read_bytes()
    card = ModelCard.load(FIXTURE / "model.card.json")
    assert ModelCard.from_onnx(path) == card
    card.check_schema()
    assert (card.timeframe_s, card.input_name, card.output_name) == (60, "features", "probs")
    assert card.feature_schema_hash == SCHEMA.hash


def test_fixture_serves_online_windows_from_real_eurusd_ticks_with_a_dynamic_batch() -> None:
    card = ModelCard.load(FIXTURE / "model.card.json")
    sess = ort.InferenceSession(str(FIXTURE / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert inp.name == "features" and inp.type == "tensor(float)"
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [card.window, SCHEMA.n_features]
    builder, online = BarBuilder(card.timeframe_s), OnlineFeatures(keep_rows=card.window)
    batch = []
    bars = 0
    ticks = read_ticks(str(TICKS))
    for t, bid, ask in zip(ticks["time_msc"], ticks["bid"], ticks["ask"], strict=True):
        for bar in builder.add_tick(int(t), float(bid), float(ask)):
            bars += 1
            online.update(bar)
            w = online.window(card.window)
            assert (w is None) == (bars < card.bars_needed)
            if w is not None:
                batch.append(w.astype(np.float32))
    x = np.stack(batch)
    probs = sess.run(["probs"], {"features": x})[0]
    assert probs.shape == (len(batch), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    one = sess.run(["probs"], {"features": x[-1:]})[0]
    np.testing.assert_allclose(one[0], probs[-1], atol=1e-6)
