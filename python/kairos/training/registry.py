"""MLflow: log a run (params, metrics, dataset hash, git SHA, seed, the ONNX model with signature and
card, the report) and register the model under an alias, only when it beat the baselines.

Default store: ``sqlite:///<root>/.kairos/mlflow.db`` with artifacts in ``<root>/.kairos/mlartifacts``,
where <root> is the nearest directory above the working directory holding ``.git`` (else the working
directory). ``KAIROS_MLFLOW_URI`` or ``--tracking-uri`` point elsewhere (a file path, sqlite, a server).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kairos.features import ModelCard

ENV_URI = "KAIROS_MLFLOW_URI"
EXPERIMENT = "kairos-train"


def project_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / ".git").exists():
            return p
    return here


def default_tracking_uri() -> str:
    env = os.environ.get(ENV_URI)
    if env:
        return env
    return f"sqlite:///{project_root() / '.kairos' / 'mlflow.db'}"


def _artifact_root(uri: str) -> str | None:
    """Where artifacts go for a local sqlite store: beside the database, never the working directory."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


@dataclass
class RegisterResult:
    run_id: str
    model_uri: str
    registered: bool
    reason: str
    version: str | None = None
    alias_uri: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _flat(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(key + ".", v))
        else:
            out[key] = v
    return out


def log_and_register(
    run_dir: Path, *, tracking_uri: str, name: str, alias: str | None, register: bool, force: bool = False
) -> RegisterResult:
    """Log the run; register ``name`` and point ``alias`` at it only if the report says the model
    beat the baselines (or ``force``, recorded as a tag)."""
    import mlflow
    import mlflow.onnx
    import onnx
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    # mlflow sets up its own INFO handlers on import; the CLI prints its own summary.
    for logger in ("mlflow", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)

    onnx_path = run_dir / "model.onnx"
    card_path = run_dir / "model.card.json"
    report_path = run_dir / "report.json"
    for p, step in ((onnx_path, "export"), (report_path, "backtest")):
        if not p.exists():
            from kairos.training.pipeline import StepError

            raise StepError(f"{p} not found: run `kairos-train {step} --run {run_dir}` first")
    card = ModelCard.load(card_path)
    report = json.loads(report_path.read_text())
    run_info = json.loads((run_dir / "run.json").read_text())
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(EXPERIMENT, artifact_location=_artifact_root(tracking_uri))
    )
    model = onnx.load(str(onnx_path))
    from kairos.training.export import INPUT_NAME, OUTPUT_NAME, ort_session

    example = np.zeros((1, card.window, len(card.feature_names)), dtype=np.float32)
    out = ort_session(onnx_path).run([OUTPUT_NAME], {INPUT_NAME: example})[0]
    signature = infer_signature(example, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{card.name}-{card.version}") as run:
            params = {
                **_flat("train.", run_info["train"]),
                **_flat("label.", run_info["label"]),
                "purge": run_info["purge"],
                "seed": run_info["train"]["seed"],
                "dataset.source": card.dataset.get("source"),
                "dataset.timeframe_s": card.timeframe_s,
                "dataset.bars": card.dataset.get("bars"),
            }
            mlflow.log_params({k: ("None" if v is None else v) for k, v in params.items()})
            mlflow.set_tags(
                {
                    "git_sha": run_info["git_sha"],
                    "dataset_sha256": card.dataset.get("sha256", ""),
                    "feature_schema_hash": card.feature_schema_hash,
                    "beats_baselines": str(report["beats_baselines"]),
                    "verdict": report["reason"],
                }
            )
            metrics: dict[str, float] = {}
            for strat, s in report["strategies"].items():
                metrics[f"{strat}.mean_fold_sharpe"] = s["mean_fold_sharpe"]
                for k, v in s["overall"].items():
                    metrics[f"{strat}.{k}"] = float(v)
            export_json = run_dir / "export.json"
            if export_json.exists():
                metrics["onnx.parity_max_abs_diff"] = json.loads(export_json.read_text())["max_abs_diff"]
            mlflow.log_metrics(metrics)
            info = mlflow.onnx.log_model(
                model,
                name="model",
                signature=signature,
                metadata=card.to_dict(),
                onnx_execution_providers=["CPUExecutionProvider"],
                save_as_external_data=False,
                # Stated, not inferred: inference takes ~10 s and probes uv/pip on every run.
                pip_requirements=[
                    f"{p}=={importlib.metadata.version(p)}" for p in ("onnx", "onnxruntime", "numpy")
                ],
            )
            for p in (
                card_path,
                report_path,
                run_dir / "report.md",
                run_dir / "equity.png",
                run_dir / "import.json",
            ):
                if p.exists():
                    mlflow.log_artifact(str(p))
            if force and not report["beats_baselines"]:
                mlflow.set_tag("registered_by_force", "true")
        result = RegisterResult(run.info.run_id, info.model_uri, False, report["reason"])
        if not register:
            result.reason = "registration not requested; " + report["reason"]
            return result
        if not report["beats_baselines"] and not force:
            return result
        mv = mlflow.register_model(info.model_uri, name)
        result.registered = True
        result.version = str(mv.version)
        if alias:
            client.set_registered_model_alias(name, alias, mv.version)
            result.alias_uri = f"models:/{name}@{alias}"
        if force and not report["beats_baselines"]:
            result.reason = "registered with --force although: " + report["reason"]
        return result
