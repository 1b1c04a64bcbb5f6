"""Which features a model uses: permutation importance for every family, TreeSHAP for LightGBM.

Permutation importance of feature j: the rise in log loss on out-of-sample rows when column j is
shuffled across samples (in every row of the input window at once), averaged over ``repeats``
shuffles. For LightGBM the mean absolute TreeSHAP contribution (``pred_contrib``, LightGBM's own
implementation; no shap package needed) per feature, summed over the classes, is added.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from kairos.training.calibrate import log_loss
from kairos.training.train import Model

F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


def permutation_importance(
    model: Model, x: F32, y: IntArray, names: list[str], *, repeats: int = 2, seed: int = 0
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    base = log_loss(model.predict(x), y)
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        rises = []
        for _ in range(repeats):
            xp = x.copy()
            xp[:, :, j] = x[rng.permutation(len(x)), :, j]
            rises.append(log_loss(model.predict(xp), y) - base)
        out[name] = float(np.mean(rises))
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def tree_shap(model: Model, x: F32, names: list[str]) -> dict[str, float] | None:
    if model.family != "lgbm":
        return None
    contrib = np.asarray(model.estimator.predict(x.reshape(len(x), -1), pred_contrib=True))
    n_in = x.shape[1] * x.shape[2]
    per_class = contrib.reshape(len(x), -1, n_in + 1)[:, :, :n_in]  # drop each class's bias column
    mean_abs = np.abs(per_class).mean(axis=0).sum(axis=0).reshape(x.shape[1], x.shape[2]).sum(axis=0)
    out = {n: float(v) for n, v in zip(names, mean_abs, strict=True)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def importance_report(
    model: Model, x: F32, y: IntArray, names: list[str], *, seed: int = 0, max_rows: int = 5000
) -> dict[str, Any]:
    """Both measures on (at most the latest ``max_rows``) out-of-sample rows."""
    x, y = x[-max_rows:], y[-max_rows:]
    rep: dict[str, Any] = {
        "rows": len(x),
        "permutation_log_loss_rise": permutation_importance(model, x, y, names, seed=seed),
    }
    shap = tree_shap(model, x, names)
    if shap is not None:
        rep["tree_shap_mean_abs"] = shap
    return rep


def plot_importance(importance: dict[str, Any], path: Any, top: int = 12, candidate: str = "") -> None:
    """One bar chart per model family: the ``top`` features by permutation importance (log-loss rise
    when shuffled, out of sample), and LightGBM's mean |TreeSHAP| beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (fam, kind, rep[key])
        for fam, rep in importance.items()
        for kind, key in (
            ("permutation: log-loss rise", "permutation_log_loss_rise"),
            ("mean |TreeSHAP|", "tree_shap_mean_abs"),
        )
        if key in rep
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.5), dpi=100, squeeze=False)
    for ax, (fam, kind, values) in zip(axes[0], panels, strict=True):
        items = list(values.items())[:top][::-1]
        ax.barh([k for k, _ in items], [v for _, v in items], color="C0" if fam == candidate else "C7")
        ax.set_title(f"{fam}{' (candidate)' if fam == candidate else ''}\n{kind}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.axvline(0, color="black", lw=0.5)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
