"""ONNX export: one self-contained file, pinned opset, dynamic batch axis, checked and parity-tested.

Every family has one contract: raw ``kairos.features`` windows ``features`` float32
[batch, window, n_features] in, calibrated ``probs`` float32 [batch, 3] (down, flat, up) out, with
standardisation (torch) and the calibration temperature inside. Torch models export
``ProbsHead(ensemble, T)``; LightGBM and logistic regression their converter's graph wrapped by
``tabular.wrap_probabilities``. The model card is embedded in ``metadata_props`` and written beside
the file. Parity: ONNX Runtime against the Python model's calibrated ``predict`` on held-out rows.
"""

from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import torch

from kairos.features import ModelCard
from kairos.training import tabular
from kairos.training.models import ProbsHead
from kairos.training.train import Model

OPSET = 18
PARITY_TOL = 1e-5
INPUT_NAME = "features"
OUTPUT_NAME = "probs"


class ParityError(RuntimeError):
    """ONNX Runtime and torch disagree beyond PARITY_TOL."""


@dataclass
class ExportResult:
    onnx_path: Path
    card_path: Path
    max_abs_diff: float
    parity_rows: int
    size_bytes: int


def ort_session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _strip_exporter_metadata(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node debug metadata (Python stack traces with absolute paths and line
    numbers, module stacks): it leaks local paths and makes the artefact depend on where and from
    which source lines it was built, so identical weights would give different files."""

    def clean(props: Any) -> None:
        keep = [p for p in props if not p.key.startswith("pkg.torch.")]
        del props[:]
        props.extend(keep)

    def walk(graph: onnx.GraphProto) -> None:
        clean(graph.metadata_props)
        for node in graph.node:
            clean(node.metadata_props)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            clean(vi.metadata_props)
        for init in graph.initializer:
            clean(init.metadata_props)

    walk(model.graph)
    for fn in model.functions:
        for node in fn.node:
            clean(node.metadata_props)


def _torch_graph(model: Model) -> onnx.ModelProto:
    head = ProbsHead(model.nets, model.calibration.temperature, model.calibration.bias).eval()
    example = torch.zeros(2, model.window, model.n_features)
    # The exporter logs that torchvision (not needed here) is missing and prints its progress.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            head,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            dynamic_shapes={"features": {0: torch.export.Dim("batch", min=1)}},
            verbose=False,
        )
    assert program is not None
    proto = program.model_proto
    _strip_exporter_metadata(proto)
    return proto


def model_graph(model: Model) -> onnx.ModelProto:
    """The ONNX graph of a fitted model, with the contract of the module docstring (no card yet)."""
    if model.nets:
        return _torch_graph(model)
    inner = tabular.to_onnx(model.estimator, model.window, model.n_features)
    return tabular.wrap_probabilities(
        inner,
        model.window,
        model.n_features,
        model.calibration.temperature,
        model.calibration.bias,
        INPUT_NAME,
        OUTPUT_NAME,
    )


def training_distribution(bars_path: Path) -> dict[str, Any]:
    """The feature distribution of the bars the final model was fitted on, for the card (drift, ADR 0087)."""
    import pandas as pd  # type: ignore[import-untyped]

    from kairos.features import SCHEMA, compute_features
    from kairos.features.drift import distribution

    return distribution(compute_features(pd.read_parquet(bars_path)), SCHEMA.names)


def export_onnx(
    model: Model, card: ModelCard, out_dir: Path, parity_x: npt.NDArray[np.float32]
) -> ExportResult:
    """Write ``model.onnx`` and ``model.card.json`` to ``out_dir``; raises ParityError on mismatch."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "model.onnx"
    proto = model_graph(model)
    proto.doc_string = f"kairos {card.name} {card.version}: {card.architecture}"
    bars_path = out_dir / "bars.parquet"
    if not card.feature_distribution and bars_path.exists():
        card.feature_distribution = training_distribution(bars_path)
    card.embed(proto)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, str(onnx_path), save_as_external_data=False)
    card_path = out_dir / "model.card.json"
    card.save(card_path)
    sess = ort_session(onnx_path)
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: parity_x})[0]
    want = model.predict(parity_x)
    diff = float(np.max(np.abs(got - want))) if len(parity_x) else 0.0
    if not diff <= PARITY_TOL:
        raise ParityError(
            f"ONNX Runtime differs from {model.family} by {diff:.3e} > {PARITY_TOL:g} on {len(parity_x)} rows"
        )
    return ExportResult(onnx_path, card_path, diff, len(parity_x), onnx_path.stat().st_size)
