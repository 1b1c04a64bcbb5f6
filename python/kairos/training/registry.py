"""MLflow: log a run (params, metrics, dataset hash, git SHA, seed, the ONNX model with signature and
card, the report) and register the model under an alias, only when it passed the gate
(kairos.training.gate: net return, deflated Sharpe, the strongest other model). Model names come
from the symbol in the data (``model_name``), never one shared default.

Default store: ``sqlite:///<root>/.kairos/mlflow.db`` with artifacts in ``<root>/.kairos/mlartifacts``,
where <root> is the nearest directory above the working directory holding ``.git`` (else the working
directory). ``KAIROS_MLFLOW_URI`` or ``--tracking-uri`` point elsewhere (a file path, sqlite, a server).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
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


# ISO 4217 codes a trading symbol is built from (majors, minors, metals) plus the common crypto assets.
_CODES = (
    "USD EUR GBP JPY CHF CAD AUD NZD SEK NOK DKK PLN HUF CZK TRY ZAR MXN SGD HKD CNH CNY RUB ILS INR"
    " KRW THB BRL XAU XAG XPT XPD BTC ETH LTC XRP SOL ADA DOT BNB DOGE USDT"
)
CURRENCIES = frozenset(_CODES.split())


class NamingError(ValueError):
    """No registry name can be derived: the data names no symbol and no --name/--symbol was given."""


def symbol_of(source: str) -> str | None:
    """The trading symbol named in a data source's file name (``EURUSD_M1.csv``, ``gbpusd-m1-bid``,
    ``sample:eurusd-h1``, ``btcusd-perp``, ``USDJPYm_H1``): two known currency or asset codes back to
    back at the start of a word."""
    stem = Path(source.removeprefix("sample:")).name.upper()
    for m in re.finditer(r"(?<![A-Z])[A-Z]{6,}", stem):
        word = m.group(0)  # a broker suffix may follow: EURUSDm, EURUSD.pro
        for split in (3, 4):
            base = word[:split]
            for qlen in (4, 3):
                quote = word[split : split + qlen]
                if len(quote) == qlen and base in CURRENCIES and quote in CURRENCIES and base != quote:
                    return base + quote
    return None


def model_name(source: str | list[str], *, name: str | None = None, symbol: str | None = None) -> str:
    """The registered model name: ``name`` as given, else ``kairos-<symbol>`` from ``symbol`` or from
    the data's file name (``SYMBOL=path`` names it explicitly); a run on several sources is
    ``kairos-<symbol>-<symbol>...`` in their order. Runs on different markets never share a name (and
    so never take each other's champion alias)."""
    if name:
        return name
    sources = [source] if isinstance(source, str) else list(source)
    if len(sources) > 1:
        if symbol:
            raise NamingError(
                "--symbol names the symbol of one --data; with several, write --data SYMBOL=PATH"
            )
        return "-".join(["kairos", *(model_name(s).removeprefix("kairos-") for s in sources)])
    m = re.fullmatch(r"([A-Za-z0-9._-]+)=(.+)", sources[0])
    if m:
        symbol, source = symbol or m.group(1), m.group(2)
    else:
        source = sources[0]
    sym = symbol or symbol_of(source)
    if not sym:
        raise NamingError(
            f"no trading symbol in the data source name {source!r}: pass --symbol (e.g. --symbol EURUSD) "
            "or --name so this model is not registered under a name shared with other markets"
        )
    if not re.fullmatch(r"[A-Za-z0-9._-]+", sym):
        raise NamingError(f"--symbol {sym!r}: use letters, digits, '.', '_' or '-'")
    return f"kairos-{sym.lower()}"


def _numeric(prefix: str, d: dict[str, Any]) -> dict[str, float]:
    """The numbers of a nested dict as flat MLflow metric names (lists by index; non-numbers skipped)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_numeric(key + ".", v))
        elif isinstance(v, list):
            out.update(_numeric(key + ".", {str(i): x for i, x in enumerate(v)}))
        elif isinstance(v, bool) or (isinstance(v, int | float) and np.isfinite(v)):
            out[key] = float(v)
    return out


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
    """Log the run; register ``name`` and point ``alias`` at it only if the model passed the gate
    (or ``force``, recorded as a tag). The run carries every honest figure of every strategy (out of
    sample, net of costs, with intervals and the trials behind them) and the verdict."""
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
    verdict = report["gate"]
    card_gate = (card.metrics.get("gate") or {}).get("passed")
    if (
        card.architecture != report.get("candidate_family", card.architecture)
        or card_gate != verdict["passed"]
    ):
        from kairos.training.pipeline import StepError

        # A card from an export before the latest backtest would register one model under another's verdict.
        raise StepError(
            f"{card_path} ({card.architecture}, gate passed {card_gate}) was exported before the latest "
            f"backtest (candidate {report.get('candidate_family')}, gate passed {verdict['passed']}): "
            f"run `kairos-train export --run {run_dir}` again"
        )
    passed = bool(verdict["passed"])
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
                "gate.n_trials": verdict["n_trials"],
                **_flat("gate.", verdict["config"]),
            }
            mlflow.log_params({k: ("None" if v is None else v) for k, v in params.items()})
            mlflow.set_tags(
                {
                    "git_sha": run_info["git_sha"],
                    "dataset_sha256": card.dataset.get("sha256", ""),
                    "feature_schema_hash": card.feature_schema_hash,
                    "gate_passed": str(passed),
                    # MLflow tag values are limited to 5,000 characters; the full verdict is in report.json.
                    "verdict": verdict["reason"][:4900],
                }
            )
            metrics: dict[str, float] = {}
            for strat, s in report["strategies"].items():
                metrics[f"{strat}.mean_fold_sharpe"] = s["mean_fold_sharpe"]
                for k, v in s["overall"].items():
                    metrics[f"{strat}.{k}"] = float(v)
            for strat, f in report["stats"].items():
                metrics.update(_numeric(f"oos.{strat}.", {k: v for k, v in f.items() if k != "bootstrap"}))
            metrics["gate.passed"] = float(passed)
            metrics["gate.n_trials"] = float(verdict["n_trials"])
            for c in verdict["conditions"]:
                metrics[f"gate.{c['name']}.figure"] = float(c["figure"])
                metrics[f"gate.{c['name']}.passed"] = float(c["passed"])
            if report.get("pbo"):
                metrics["oos.pbo"] = float(report["pbo"]["pbo"])
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
                run_dir / "importance.json",
                run_dir / "importance.png",
                run_dir / "import.json",
            ):
                if p.exists():
                    mlflow.log_artifact(str(p))
            if force and not passed:
                mlflow.set_tag("registered_by_force", "true")
        result = RegisterResult(run.info.run_id, info.model_uri, False, verdict["reason"])
        if not register:
            result.reason = "registration not requested; " + verdict["reason"]
            return result
        if not passed and not force:
            return result
        mv = mlflow.register_model(info.model_uri, name)
        result.registered = True
        result.version = str(mv.version)
        if alias:
            client.set_registered_model_alias(name, alias, mv.version)
            result.alias_uri = f"models:/{name}@{alias}"
        if force and not passed:
            result.reason = "registered with --force although: " + verdict["reason"]
        return result
