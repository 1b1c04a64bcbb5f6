"""The retraining round as a Prefect 3 flow (kairos.training.flow), run for real: Prefect's test harness
starts its API server as a subprocess on a loopback port with a temporary SQLite database; the flow
runs the loop's round on real GBPUSD M1 bars (a known-good model planted after real training, as in
test_loop) through a real MLflow registry; every step is a Prefect task whose state the API records.
Runs in a subprocess of its own (Prefect's settings are process-wide), bounded by a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.training.test_loop import GBPUSD_BID, _aliases, _config

REPO = Path(__file__).resolve().parents[3]

SCRIPT = r"""
import json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness
from kairos.training.flow import retrain_round

with prefect_test_harness(server_startup_timeout=120):
    state = retrain_round(sys.argv[1], after_train="tests.training.test_loop:_oracle", return_state=True)
    result = state.result()
    with get_client(sync_client=True) as client:
        api = client.api_url
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
print("RESULT " + json.dumps({
    "api": str(api),
    "flow": flow_run.name and flow_run.state.type.value,
    "tasks": sorted((r.name.rsplit("-", 1)[0], r.state.type.value) for r in runs),
    "round": result,
}, default=str))
"""


@pytest.mark.slow
def test_the_prefect_flow_runs_the_loops_round_as_tasks(tmp_path: Path) -> None:
    cfg = _config(tmp_path, [str(GBPUSD_BID)])
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "python"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    for k in ("PREFECT_API_URL", "PREFECT_API_KEY", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(k, None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cfg)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-5000:]
    got = json.loads(line.removeprefix("RESULT "))
    # Prefect's API ran on loopback, and recorded the flow and one completed task per step of the round.
    assert got["api"].startswith("http://127.0.0.1:"), got["api"]
    assert got["flow"] == "COMPLETED"
    names = [n for n, _ in got["tasks"]]
    assert sorted(names) == sorted(
        ["kairos-promote", "kairos-window", "kairos-train", "kairos-backtest", "kairos-register"]
    ), got["tasks"]
    assert {s for _, s in got["tasks"]} == {"COMPLETED"}
    # The round is the loop's own: registered as @challenger, in the loop's history.
    rnd = got["round"]
    assert rnd["status"] == "registered" and rnd["version"] == "1", rnd
    assert rnd["alias_uri"] == "models:/kairos-gbpusd@challenger"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert _aliases(uri, "kairos-gbpusd") == ({"challenger": "1"}, 1)
    history = (tmp_path / "loop" / "history.jsonl").read_text().splitlines()
    assert [json.loads(h)["status"] for h in history] == ["registered"]
