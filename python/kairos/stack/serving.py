"""Which model trades: the inference server's models (the serving one and its shadow challengers)
with their gate verdict and Sharpe interval (from the model card), their live paper figures and their
drift, all via GetModelStatus, so an unvalidated model never passes for a validated one in
`kairos status`, `kairos models list`, the console or the demo summary."""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc

from kairos.inference.v1 import inference_pb2, inference_pb2_grpc


@dataclass(frozen=True)
class Shadow:
    """Live paper accounting since the version was loaded (kairos.inference.v1.ShadowFigures)."""

    bars: int
    net_return: float
    sharpe: float
    turnover: float
    trades: int


@dataclass(frozen=True)
class Drift:
    """Input drift against the card's training distribution (kairos.inference.v1.DriftStatus)."""

    di_last: float
    di_threshold: float
    ood: int
    abstained: int
    psi_max: float
    psi_max_feature: str

    @property
    def text(self) -> str:
        """One line: DI last vs threshold, out-of-distribution rows, the worst feature's PSI."""
        psi = f"PSI {self.psi_max:.2f} {self.psi_max_feature}" if self.psi_max_feature else "PSI -"
        return f"DI {self.di_last:.2f} / {self.di_threshold:.2f}, OOD {self.ood:,}, {psi}"


@dataclass(frozen=True)
class Promotion:
    """A challenger's test against the serving model on the same live bars (filled by the server
    when it runs one; shown when present)."""

    bars: int
    mean_difference: float
    p_value: float
    method: str
    significant: bool


@dataclass(frozen=True)
class ServingModel:
    name: str
    version: str
    state: str
    source: str
    predictions: int
    validated: bool
    """The card carries a gate verdict."""
    gate_passed: bool
    verdict: str
    sharpe: float
    sharpe_ci_low: float
    sharpe_ci_high: float
    sharpe_ci_level: float
    deflated_sharpe: float
    n_trials: int
    role: str = ""
    """serving (its signals reach execution) or shadow (a challenger on paper)."""
    net_return: float = 0.0
    """The validation folds' net return (the card's)."""
    last_error: str = ""
    loaded_time_us: int = 0
    created_time_us: int = 0
    expired: bool = False
    shadow: Shadow | None = None
    """None when shadow evaluation is off (no --shadow-models) or the model never loaded."""
    drift: Drift | None = None
    """None when the card carries no training distribution."""
    promotion: Promotion | None = None

    @property
    def gate(self) -> str:
        """PASSED, FAILED or UNVALIDATED (no verdict in the card: trained before the gate, or by hand)."""
        if not self.validated:
            return "UNVALIDATED"
        return "PASSED" if self.gate_passed else "FAILED"

    @property
    def sharpe_text(self) -> str:
        if not self.validated:
            return "-"
        return (
            f"{self.sharpe:.2f} [{self.sharpe_ci_low:.2f}, {self.sharpe_ci_high:.2f}] "
            f"({self.sharpe_ci_level:.0%}, out of sample, net)"
        )

    @property
    def summary(self) -> str:
        """One line: what serves and how much to trust it."""
        head = f"{self.name} {self.version}: gate {self.gate}"
        if not self.validated:
            return head + " (the model card carries no gate verdict)"
        return (
            head + f", Sharpe {self.sharpe_text}, DSR {self.deflated_sharpe:.3f} over {self.n_trials} trials"
        )


def shadow_text(s: Shadow | None) -> tuple[str, str, str, str, str]:
    """bars, net return (bp), Sharpe, turnover per bar, trades as table cells; dashes when off."""
    if s is None:
        return ("-", "-", "-", "-", "-")
    return (
        f"{s.bars:,}",
        f"{s.net_return * 1e4:+.1f} bp",
        f"{s.sharpe:.2f}",
        f"{s.turnover:.3f}",
        f"{s.trades:,}",
    )


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def from_status(m: inference_pb2.ModelStatus) -> ServingModel:
    v = m.validation
    sh, dr, pr = m.shadow, m.drift, m.promotion
    return ServingModel(
        name=m.model_name,
        version=m.model_version,
        state=inference_pb2.ModelState.Name(m.state).removeprefix("MODEL_STATE_"),
        source=m.source_uri,
        predictions=m.predictions_total,
        validated=m.HasField("validation"),
        gate_passed=v.gate_passed,
        verdict=v.verdict,
        sharpe=v.sharpe,
        sharpe_ci_low=v.sharpe_ci_low,
        sharpe_ci_high=v.sharpe_ci_high,
        sharpe_ci_level=v.sharpe_ci_level,
        deflated_sharpe=v.deflated_sharpe,
        n_trials=v.n_trials,
        role=m.role,
        net_return=v.net_return,
        last_error=m.last_error,
        loaded_time_us=m.loaded_time_us,
        created_time_us=m.created_time_us,
        expired=m.expired,
        shadow=(
            Shadow(sh.bars, _finite(sh.net_return), _finite(sh.sharpe), _finite(sh.turnover), sh.trades)
            if m.HasField("shadow")
            else None
        ),
        drift=(
            Drift(
                _finite(dr.dissimilarity_last),
                _finite(dr.dissimilarity_threshold),
                dr.out_of_distribution_total,
                dr.abstained_total,
                _finite(dr.psi_max),
                dr.psi_max_feature,
            )
            if m.HasField("drift")
            else None
        ),
        promotion=(
            Promotion(
                pr.bars,
                _finite(pr.mean_difference),
                pr.p_value if math.isfinite(pr.p_value) else 1.0,
                pr.method,
                pr.significant,
            )
            if m.HasField("promotion")
            else None
        ),
    )


def serving_models(addr: str, token: str = "", timeout_s: float = 2.0) -> list[ServingModel]:
    """GetModelStatus on the inference server at ``addr`` (bearer ``token`` when the server wants
    one); raises grpc.RpcError when it fails."""
    from kairos.inference.auth import with_token

    with with_token(grpc.insecure_channel(addr), token) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        resp = stub.GetModelStatus(inference_pb2.GetModelStatusRequest(), timeout=timeout_s)
    return [from_status(m) for m in resp.models]
