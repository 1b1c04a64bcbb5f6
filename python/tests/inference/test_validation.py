"""Which model trades, and how far to trust it: GetModelStatus carries the model card's gate verdict
and Sharpe interval; a card without a verdict is reported as unvalidated, never as validated."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from tests.inference.harness import TOKEN, ServerThread

from kairos.features import ModelCard
from kairos.stack.serving import serving_models


def _with_verdict(model_path: Path, tmp_path: Path, passed: bool) -> Path:
    """The fixture model with a card that carries a gate verdict, as kairos-train writes it."""
    model = onnx.load(str(model_path))
    card = ModelCard.from_onnx(model)
    card.metrics = {
        "gate": {
            "passed": passed,
            "reason": "model fails the gate: FAILED net return -3.0 bp",
            "conditions": {},
        },
        "n_trials": 3,
        "sharpe": -0.4,
        "sharpe_ci": [-1.9, 1.1],
        "sharpe_ci_level": 0.95,
        "dsr": 0.12,
        "net_return": -0.0003,
    }
    card.embed(model)
    out = tmp_path / "model.onnx"
    onnx.save(model, str(out))
    return out


def test_a_card_without_a_verdict_serves_as_unvalidated(server: ServerThread) -> None:
    (m,) = serving_models(server.target, TOKEN)
    assert not m.validated and m.gate == "UNVALIDATED" and m.sharpe_text == "-"
    assert "no gate verdict" in m.summary


@pytest.mark.parametrize(("passed", "gate"), [(False, "FAILED"), (True, "PASSED")])
def test_the_serving_models_verdict_and_sharpe_interval_come_from_its_card(
    passed: bool,
    gate: str,
    start_server: Callable[..., ServerThread],
    model_path: Path,
    tmp_path: Path,
) -> None:
    server = start_server(_with_verdict(model_path, tmp_path, passed))
    (m,) = serving_models(server.target, TOKEN)
    assert m.validated and m.gate == gate and m.n_trials == 3
    assert (m.sharpe, m.sharpe_ci_low, m.sharpe_ci_high, m.sharpe_ci_level) == (-0.4, -1.9, 1.1, 0.95)
    assert m.deflated_sharpe == pytest.approx(0.12) and m.verdict.startswith("model fails the gate")
    assert m.summary.endswith(
        f"gate {gate}, Sharpe -0.40 [-1.90, 1.10] (95%, out of sample, net), DSR 0.120 over 3 trials"
    )
