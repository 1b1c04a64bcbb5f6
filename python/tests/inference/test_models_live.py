"""`kairos models list` joins the registry (versions, aliases, verdicts) with what the inference server
says now (GetModelStatus): which version serves, which is a shadow challenger, their live paper
figures and their drift; without a reachable server it says so. Real sqlite registry, real server."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd  # type: ignore[import-untyped]
import pytest
from tests.inference.harness import TOKEN, ServerThread, StreamClient, load_gbpusd_m1, proto_bars, with_card
from tests.inference.test_models import NAME, Registry
from typer.testing import CliRunner

from kairos.cli import app
from kairos.features import SCHEMA, ModelCard, compute_features
from kairos.features.drift import distribution
from kairos.inference.v1 import inference_pb2 as pb
from kairos.stack.loopback import free_port, wait_for
from kairos.stack.serving import serving_models

COLS = ["time", "open", "high", "low", "close", "spread", "tick_volume"]


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    r = Registry(tmp_path)
    yield r
    r.mlflow.set_tracking_uri(None)
    r.mlflow.set_registry_uri(None)


def kairos(*args: str) -> str:
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "260"})
    assert res.exit_code == 0, res.output
    return res.output


def row(listing: str, version: str) -> list[str]:
    """The cells of the table row of ``version`` of the test model."""
    for line in listing.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) > 2 and cells[0] == NAME and cells[1] == version:
            return cells
    raise AssertionError(f"no row for version {version}:\n{listing}")


def test_models_list_shows_live_figures_and_drift_of_the_served_versions(
    reg: Registry, model_path: Path, start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    gbpusd: pd.DataFrame = load_gbpusd_m1()
    dist = distribution(compute_features(gbpusd.iloc[:20000][COLS]), SCHEMA.names)
    card = ModelCard.from_onnx(model_path)
    assert card.policy is not None
    v1 = reg.register(with_card(model_path, tmp_path / "v1" / "model.onnx", feature_distribution=dist))
    v2 = reg.register(
        with_card(
            model_path,
            tmp_path / "v2" / "model.onnx",
            version="eager",
            policy=dataclasses.replace(card.policy, entry_edge=card.policy.entry_edge / 5),
            feature_distribution=dist,
        )
    )
    v3 = reg.register(model_path)  # registered, served by nobody
    reg.point("champion", v1)
    reg.point("challenger", v2)
    run_dir = tmp_path / "run"  # no stack was started here

    # Nothing to ask: the registry's table, and why there are no live figures.
    out = kairos("models", "list", NAME, "--tracking-uri", reg.uri, "--run-dir", str(run_dir))
    assert "inference not reachable: no inference address" in out
    assert row(out, v1)[2] == "champion" and row(out, v1)[6] == "-"
    out = kairos(
        "models", "list", NAME, "--tracking-uri", reg.uri, "--run-dir", str(run_dir),
        "--inference-addr", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert "inference not reachable: UNAVAILABLE" in out and row(out, v2)[6] == "-"

    srv = start_server(
        f"models:/{NAME}@champion",
        tracking_uri=reg.uri,
        shadow_models=(f"models:/{NAME}@challenger",),
        drift_window=200,
    )
    bars = proto_bars(gbpusd.iloc[20000:21000])
    c = StreamClient(srv.target)
    n = 0
    try:
        for k in range(0, len(bars), 50):
            n += len(c.ask(pb.StreamPredictRequest(request_id=k, bars=bars[k : k + 50])).predictions)
    finally:
        c.close()
    assert n > 500

    def accounted() -> bool:
        return all(m.shadow is not None and m.shadow.bars == n - 1 for m in serving_models(srv.target, TOKEN))

    wait_for(accounted, 20, "both versions accounted on every bar")
    live = {m.version: m for m in serving_models(srv.target, TOKEN)}
    token = tmp_path / "inference.token"
    token.write_text(TOKEN + "\n")
    out = kairos(
        "models", "list", NAME, "--tracking-uri", reg.uri, "--run-dir", str(run_dir),
        "--inference-addr", srv.target, "--inference-token-file", str(token),
    )  # fmt: skip
    assert "not reachable" not in out
    for version, role, alias in ((v1, "serving", "champion"), (v2, "shadow", "challenger")):
        cells = row(out, version)
        m = live[version]
        assert m.shadow is not None and m.drift is not None
        assert cells[2] == alias and cells[6] == role, cells
        assert cells[7:12] == [
            f"{n - 1:,}",
            f"{m.shadow.net_return * 1e4:+.1f} bp",
            f"{m.shadow.sharpe:.2f}",
            f"{m.shadow.turnover:.3f}",
            f"{m.shadow.trades:,}",
        ], cells
        assert (
            cells[12] == m.drift.text and cells[12].startswith("DI ") and m.drift.psi_max_feature in cells[12]
        )
    assert live[v2].shadow is not None and live[v1].shadow is not None
    assert live[v2].shadow.trades > live[v1].shadow.trades  # the eager challenger trades more
    assert row(out, v3)[6:13] == ["-"] * 7  # not served: no live figures
