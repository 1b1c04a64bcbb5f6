"""Which model trades: the inference server's serving models with their gate verdict and Sharpe
interval (from the model card, via GetModelStatus), so an unvalidated model never passes for a
validated one in `kairos status` or the demo summary."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from kairos.inference.v1 import inference_pb2, inference_pb2_grpc


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


def from_status(m: inference_pb2.ModelStatus) -> ServingModel:
    v = m.validation
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
    )


def serving_models(addr: str, token: str = "", timeout_s: float = 2.0) -> list[ServingModel]:
    """GetModelStatus on the inference server at ``addr`` (bearer ``token`` when the server wants
    one); raises grpc.RpcError when it fails."""
    from kairos.inference.auth import with_token

    with with_token(grpc.insecure_channel(addr), token) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        resp = stub.GetModelStatus(inference_pb2.GetModelStatusRequest(), timeout=timeout_s)
    return [from_status(m) for m in resp.models]
