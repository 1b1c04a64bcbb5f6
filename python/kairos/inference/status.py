"""GetModelStatus's live part (issues #16 and #19): per served model its role, its paper figures from
the shadow books and its drift from the drift monitor, added to what the model manager knows (version,
source, the card's gate verdict)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kairos.inference.model import ModelManager, ServedModel
from kairos.inference.v1 import inference_pb2 as pb


def shadow_figures(evaluator: Any, model: ServedModel) -> pb.ShadowFigures:
    """A model's live paper figures, summed over symbols (kairos.inference.shadow.ShadowEvaluator)."""
    bars, net, sharpe, turnover, trades = evaluator.figures(model)
    return pb.ShadowFigures(bars=bars, net_return=net, sharpe=sharpe, turnover=turnover, trades=trades)


def drift_status(mon: Any) -> pb.DriftStatus:
    """A kairos.features.drift.DriftMonitor's figures; NaN (nothing seen yet) is sent as 0 / ""."""
    psi_max, feature = mon.psi_max()
    return pb.DriftStatus(
        dissimilarity_last=mon.di_last if mon.di_last == mon.di_last else 0.0,
        dissimilarity_threshold=mon.threshold,
        out_of_distribution_total=mon.ood_total,
        abstained_total=mon.abstained_total,
        psi_max=psi_max if psi_max == psi_max else 0.0,
        psi_max_feature=feature,
    )


def live_status(
    manager: ModelManager,
    role: str,
    evaluator: Any,
    drift_of: Callable[[ServedModel], Any],
) -> pb.ModelStatus:
    """The manager's ModelStatus with ``role``, ``shadow`` (when shadow evaluation runs) and ``drift``
    (when the card carries a training distribution)."""
    st = manager.status()
    st.role = role
    m = manager.current
    if m is None:
        return st
    if evaluator is not None:
        st.shadow.CopyFrom(shadow_figures(evaluator, m))
    mon = drift_of(m)
    if mon is not None:
        st.drift.CopyFrom(drift_status(mon))
    return st
