"""The tabular models: LightGBM (gradient-boosted trees) and multinomial logistic regression.

Both read the flattened input window (``window`` x n_features, the same raw rows the torch models
take) and are exported to ONNX with the torch models' contract: input ``features`` float32
[batch, window, n_features], output ``probs`` float32 [batch, 3] (down, flat, up), the calibration
temperature inside the graph. The converters' graphs (onnxmltools for LightGBM, skl2onnx for the
scikit-learn pipeline) output a label and a probability tensor; ``wrap_probabilities`` puts a
Flatten in front and log -> /T -> softmax behind the probabilities and drops the label.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

LGBM_OPSET = 15  # onnxmltools' LightGBM converter refuses newer opsets (DESIGN.md)
ML_OPSET = 3


@dataclass(frozen=True)
class LgbmParams:
    n_estimators: int = 400
    """Upper bound; early stopping on the inner fold picks the number of trees."""
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 100
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 30


@dataclass(frozen=True)
class LogregParams:
    c: float = 0.1
    """Inverse L2 strength (sklearn's C)."""


def _flat(x: F32) -> F32:
    return x.reshape(len(x), -1)


def _require_classes(y: IntArray, family: str) -> None:
    present = np.unique(y)
    if len(present) < 3:
        raise ValueError(
            f"{family}: the training samples hold only classes {present.tolist()} of (0 down, 1 flat, 2 up); "
            "use more data or a label band that leaves every class"
        )


def fit_lgbm(
    x_fit: F32,
    y_fit: IntArray,
    w_fit: FloatArray,
    x_inner: F32,
    y_inner: IntArray,
    w_inner: FloatArray,
    params: LgbmParams,
    seed: int,
    threads: int,
) -> Any:
    import lightgbm as lgb

    _require_classes(y_fit, "lgbm")
    model = lgb.LGBMClassifier(
        objective="multiclass",
        n_estimators=params.n_estimators,
        learning_rate=params.learning_rate,
        num_leaves=params.num_leaves,
        min_child_samples=params.min_child_samples,
        subsample=params.subsample,
        subsample_freq=1,
        colsample_bytree=params.colsample_bytree,
        reg_lambda=params.reg_lambda,
        random_state=seed,
        n_jobs=threads,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    model.fit(
        _flat(x_fit),
        y_fit,
        sample_weight=w_fit,
        eval_X=(_flat(x_inner),),
        eval_y=(y_inner,),
        eval_sample_weight=[w_inner],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    return model


def fit_logreg(x_fit: F32, y_fit: IntArray, w_fit: FloatArray, params: LogregParams, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
    from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
    from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

    _require_classes(y_fit, "logreg")
    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(C=params.c, max_iter=1000, random_state=seed)),
        ]
    )
    model.fit(_flat(x_fit), y_fit, logreg__sample_weight=w_fit)
    return model


def predict_proba(model: Any, x: F32) -> FloatArray:
    with warnings.catch_warnings():  # lightgbm: "X does not have valid feature names" on numpy input
        warnings.simplefilter("ignore")
        out: FloatArray = np.asarray(model.predict_proba(_flat(x)), dtype=np.float64)
    return out


def to_onnx(model: Any, window: int, n_features: int) -> onnx.ModelProto:
    """The converter's graph for ``model`` on flat float32 rows [batch, window * n_features]."""
    n = window * n_features
    if hasattr(model, "booster_"):
        from onnxmltools import convert_lightgbm  # type: ignore[import-untyped]
        from onnxmltools.convert.common.data_types import FloatTensorType  # type: ignore[import-untyped]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m: onnx.ModelProto = convert_lightgbm(
                model,
                initial_types=[("flat", FloatTensorType([None, n]))],
                zipmap=False,
                target_opset=LGBM_OPSET,
            )
        return m
    from skl2onnx import convert_sklearn  # type: ignore[import-untyped]
    from skl2onnx.common.data_types import FloatTensorType as SkFloat  # type: ignore[import-untyped]

    m = convert_sklearn(
        model,
        initial_types=[("flat", SkFloat([None, n]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": LGBM_OPSET, "ai.onnx.ml": ML_OPSET},
    )
    return m


def wrap_probabilities(
    model: onnx.ModelProto,
    window: int,
    n_features: int,
    temperature: float,
    bias: tuple[float, ...],
    input_name: str,
    output_name: str,
) -> onnx.ModelProto:
    """features [batch, window, n_features] -> Flatten -> the converter's graph -> probabilities
    -> softmax(log(max(p, 1e-12)) / T + bias) as ``output_name`` [batch, 3]; the label is dropped."""
    g = model.graph
    (old_in,) = [i.name for i in g.input]
    prob_out = next(o.name for o in g.output if o.name != "label" and "label" not in o.name)
    pre = helper.make_node("Flatten", [input_name], [old_in], axis=1, name="kairos_flatten")
    consts = [
        helper.make_tensor("kairos_eps", TensorProto.FLOAT, [], [1e-12]),
        helper.make_tensor("kairos_t", TensorProto.FLOAT, [], [float(temperature)]),
        helper.make_tensor("kairos_bias", TensorProto.FLOAT, [3], [float(b) for b in bias]),
    ]
    post = [
        helper.make_node("Max", [prob_out, "kairos_eps"], ["kairos_p"], name="kairos_floor"),
        helper.make_node("Log", ["kairos_p"], ["kairos_logp"], name="kairos_log"),
        helper.make_node("Div", ["kairos_logp", "kairos_t"], ["kairos_z"], name="kairos_temperature"),
        helper.make_node("Add", ["kairos_z", "kairos_bias"], ["kairos_zb"], name="kairos_class_bias"),
        helper.make_node("Softmax", ["kairos_zb"], [output_name], axis=-1, name="kairos_softmax"),
    ]
    nodes = [pre, *g.node, *post]
    new_in = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", window, n_features])
    new_out = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph(
        nodes, "kairos_tabular", [new_in], [new_out], initializer=[*g.initializer, *consts]
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="kairos-train")
    out.ir_version = model.ir_version
    # The converter's label output is no longer a graph output: drop the nodes that only fed it.
    needed = {output_name}
    keep: list[onnx.NodeProto] = []
    for node in reversed(list(out.graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del out.graph.node[:]
    out.graph.node.extend(reversed(keep))
    return out
