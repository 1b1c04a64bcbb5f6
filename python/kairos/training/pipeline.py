"""The steps of ``kairos-train``, each reading and writing a run directory.

A run directory holds everything one run produced, so every step can be re-run on its own:

    bars.parquet, import.json        import   (normalised bars, what the import found)
    run.json, model.pkl, oos.npz     train    (configs, folds, per-model fold results; final model;
                                              fold predictions of every model)
    importance.json, search.json     train    (feature importance; every search trial, with --search)
    model.onnx, model.card.json      export
    report.json, report.md, equity.png, importance.png   backtest
    mlflow.json                      register (run id, model URI, version, alias)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the lock; kept Any

from kairos.features import SCHEMA, DecisionPolicy, FeatureSchema, ModelCard, to_epoch_ms
from kairos.features.schema import schema_for
from kairos.training import data as data_mod
from kairos.training.labels import LabelConfig, windows
from kairos.training.panel import Panel
from kairos.training.policy import Params, PolicyConfig, class_moves

# torch (and what needs it) is imported by the steps that use it: `import` and `--help` stay fast.
if TYPE_CHECKING:
    from kairos.training.backtest import FillModel
    from kairos.training.export import ExportResult
    from kairos.training.gate import GateConfig, OOSResult
    from kairos.training.search import SearchConfig, TrialCallback
    from kairos.training.train import EpochCallback, Model, TrainConfig


class StepError(RuntimeError):
    """A step cannot run: an earlier step's output is missing or does not fit (a usage error)."""


class LearnedNothing(RuntimeError):
    """The final model's calibrated inner-fold loss is not below the class priors': nothing to export."""


def _need(run_dir: Path, name: str, step: str) -> Path:
    p = run_dir / name
    if not p.exists():
        raise StepError(f"{p} not found: run `kairos-train {step} --run {run_dir}` first")
    return p


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def git_sha() -> str:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def created_utc() -> str:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible artefacts, e.g. the test model fixture)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    ts = datetime.fromtimestamp(int(epoch), UTC) if epoch else datetime.now(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------- import


def step_import(
    run_dir: Path,
    source: str | list[str],
    *,
    timeframe: str | None,
    ask_source: str | None,
    spread: float | None,
    source_tz: str,
    dedupe: data_mod.Dedupe,
    max_bars: int | None,
    time_column: str | None = None,
    time_format: str | None = None,
) -> data_mod.ImportReport:
    """Import one source, or several (one symbol each: ``SYMBOL=path`` or a symbol in the file name)
    stacked into one run (``kairos.training.panel``); ``max_bars`` keeps the latest bars of each."""
    sources = [source] if isinstance(source, str) else list(source)
    if len(sources) > 1:
        return _import_several(
            run_dir,
            sources,
            timeframe=timeframe,
            ask_source=ask_source,
            spread=spread,
            source_tz=source_tz,
            dedupe=dedupe,
            max_bars=max_bars,
            time_column=time_column,
            time_format=time_format,
        )
    sym, src = split_source(sources[0])
    bars, report = _import_one(
        src, timeframe, ask_source, spread, source_tz, dedupe, max_bars, time_column, time_format
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    bars.to_parquet(run_dir / "bars.parquet", index=False)
    symbol = sym or symbol_of(src)
    _write_json(run_dir / "import.json", {**report.to_dict(), "symbols": [symbol] if symbol else []})
    return report


def split_source(spec: str) -> tuple[str | None, str]:
    """``SYMBOL=source`` -> (SYMBOL, source); a plain source -> (None, source)."""
    import re

    m = re.fullmatch(r"([A-Za-z0-9._-]+)=(.+)", spec)
    return (m.group(1), m.group(2)) if m else (None, spec)


def symbol_of(source: str) -> str | None:
    from kairos.training.registry import symbol_of as named

    return named(source)


def _import_one(
    source: str,
    timeframe: str | None,
    ask_source: str | None,
    spread: float | None,
    source_tz: str,
    dedupe: data_mod.Dedupe,
    max_bars: int | None,
    time_column: str | None,
    time_format: str | None,
) -> tuple[pd.DataFrame, data_mod.ImportReport]:
    bars, report = data_mod.load_bars(
        source,
        timeframe=timeframe,
        ask_source=ask_source,
        spread=spread,
        source_tz=source_tz,
        dedupe=dedupe,
        time_column=time_column,
        time_format=time_format,
    )
    if max_bars is not None and max_bars < len(bars):
        # The latest bars: a slice keeps the most recent market, the one a model would trade next.
        bars = bars.iloc[-max_bars:].reset_index(drop=True)
        report.bars = len(bars)
        report.first = str(bars["time"].iloc[0])
        report.sha256 = data_mod.dataset_hash(bars)
    return bars, report


def _import_several(
    run_dir: Path,
    sources: list[str],
    *,
    timeframe: str | None,
    ask_source: str | None,
    spread: float | None,
    source_tz: str,
    dedupe: data_mod.Dedupe,
    max_bars: int | None,
    time_column: str | None,
    time_format: str | None,
) -> data_mod.ImportReport:
    import hashlib

    from kairos.training.panel import stack

    if ask_source is not None:
        raise data_mod.DataError(
            ask_source,
            None,
            None,
            "--ask-data pairs one --data file; with several, name the ask files "
            "*ask* beside their *bid* twins so each is paired automatically",
        )
    frames: dict[str, pd.DataFrame] = {}
    reports: dict[str, data_mod.ImportReport] = {}
    for spec in sources:
        sym, src = split_source(spec)
        sym = sym or symbol_of(src)
        if not sym:
            raise data_mod.DataError(
                src,
                None,
                None,
                "no trading symbol in the file name: with several --data, write "
                "--data SYMBOL=PATH (e.g. --data EURUSD=eurusd.csv)",
            )
        if sym in frames:
            raise data_mod.DataError(
                src,
                None,
                None,
                f"symbol {sym} is already imported from {reports[sym].source}: one --data per symbol",
            )
        bars, rep = _import_one(
            src, timeframe, None, spread, source_tz, dedupe, max_bars, time_column, time_format
        )
        first = next(iter(reports.values()), None)
        if first is not None and rep.timeframe_s != first.timeframe_s:
            raise data_mod.DataError(
                src,
                None,
                None,
                f"{data_mod.timeframe_name(rep.timeframe_s)} bars, but {first.source} "
                f"has {data_mod.timeframe_name(first.timeframe_s)}: pass --timeframe to resample all to one",
            )
        frames[sym], reports[sym] = bars, rep
    bars = stack(frames)
    digest = hashlib.sha256("".join(f"{s}:{r.sha256};" for s, r in reports.items()).encode())
    reps = list(reports.values())
    report = data_mod.ImportReport(
        source=" + ".join(r.source for r in reps),
        kind=reps[0].kind,
        rows_in=sum(r.rows_in for r in reps),
        bars=len(bars),
        timeframe_s=reps[0].timeframe_s,
        first=min(r.first for r in reps),
        last=max(r.last for r in reps),
        spread_source="; ".join(f"{s}: {r.spread_source}" for s, r in reports.items()),
        point=min(r.point for r in reps),
        duplicates=sum(r.duplicates for r in reps),
        duplicate_policy=dedupe,
        crossed_spread_bars=sum(r.crossed_spread_bars for r in reps),
        gaps=sum(r.gaps for r in reps),
        missing_bars=sum(r.missing_bars for r in reps),
        sha256="sha256:" + digest.hexdigest(),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    bars.to_parquet(run_dir / "bars.parquet", index=False)
    _write_json(
        run_dir / "import.json",
        {
            **report.to_dict(),
            "symbols": list(frames),
            "per_symbol": {s: r.to_dict() for s, r in reports.items()},
        },
    )
    return report


def load_run_bars(run_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    bars = pd.read_parquet(_need(run_dir, "bars.parquet", "import"))
    return bars, _read_json(_need(run_dir, "import.json", "import"))


def run_schema(run: dict[str, Any]) -> FeatureSchema:
    """The feature schema a trained run used (its train config's blocks; base for older runs)."""
    return schema_for(run["train"].get("features"))


def run_features(bars: pd.DataFrame, imp: dict[str, Any], schema: FeatureSchema) -> np.ndarray:
    """The run's feature rows (every symbol, stacked): what training, export and the backtest read."""
    return Panel.of(bars).features(bars, schema, int(imp["timeframe_s"]))


# ------------------------------------------------------------------------------------------------ train


def _too_little(source: str, msg: str) -> data_mod.DataError:
    # Not enough data is a property of the input (exit 2), not of how the CLI was called.
    return data_mod.DataError(source, None, None, msg)


def step_train(
    run_dir: Path,
    cfg: TrainConfig,
    label_cfg: LabelConfig,
    on_epoch: EpochCallback | None = None,
    search_cfg: SearchConfig | None = None,
    on_trial: TrialCallback | None = None,
) -> dict[str, Any]:
    import pickle

    from kairos.training.importance import importance_report
    from kairos.training.search import SearchDataError, search
    from kairos.training.train import BASELINE_FAMILIES, fold_metrics, make_folds, train_final, walk_forward

    bars, imp = load_run_bars(run_dir)
    for stale in (
        "report.json",
        "report.md",
        "equity.png",
        "importance.png",
    ):  # a backtest of an earlier training
        (run_dir / stale).unlink(missing_ok=True)
    t0 = time.perf_counter()
    panel = Panel.of(bars)
    clock = panel.clock
    schema = cfg.schema
    try:
        feats = panel.features(bars, schema, int(imp["timeframe_s"]))
    except ValueError as e:
        raise _too_little(imp["source"], str(e)) from None
    lab = panel.labels(bars, label_cfg)
    labels = lab.y
    purge = cfg.purge if cfg.purge is not None else label_cfg.horizon
    # One sample set for every family, so all are compared on the same folds: the longest input window.
    idx = panel.window_index(feats, labels, max(cfg.window, cfg.input_window))
    warm = SCHEMA.window + max(cfg.window, cfg.input_window) - 1
    day = " plus a day of bars for the daily block" if schema.has("daily") else ""
    where = f"{len(bars)} bars (feature warm-up {warm} bars{day}, label horizon {label_cfg.horizon})"
    need = max(200, int(np.ceil(20 * cfg.folds / (1 - cfg.min_train_frac))))
    if len(idx) < need:
        raise _too_little(
            imp["source"],
            f"only {len(idx)} usable samples from {where}; {cfg.folds} folds need at least {need} "
            f"samples, i.e. about {need + warm + label_cfg.horizon} bars: import more data "
            "or use fewer --folds",
        )
    try:
        make_folds(idx, cfg, purge, clock)
    except ValueError as e:
        raise _too_little(imp["source"], f"{e}; from {where}") from None
    search_record = None
    if search_cfg is not None:
        try:
            cfg, search_record = search(
                feats, labels, lab.end, idx, cfg, purge, search_cfg, on_trial, clock=clock
            )
        except SearchDataError as e:
            raise _too_little(imp["source"], f"{e}; from {where}") from None
        _write_json(run_dir / "search.json", search_record)
    families = (cfg.arch, *(f for f in BASELINE_FAMILIES if f != cfg.arch))
    wf = walk_forward(feats, labels, lab.end, idx, cfg, purge, on_epoch, families, clock=clock)
    # The final model of every family: the backtest picks the candidate among them (GateConfig.candidate).
    finals: dict[str, Model] = {}
    for fam in families:
        finals[fam], held_out = train_final(
            feats, labels, lab.end, idx, cfg.family(fam), purge, on_epoch, clock=clock
        )
    final = finals[cfg.arch]
    times = bars["time"].astype(str).to_numpy()
    y_all = np.nan_to_num(labels).astype(np.int64)
    y = y_all[idx]
    models: dict[str, dict[str, Any]] = {
        fam: {
            "role": "candidate" if fam == cfg.arch else "baseline",
            "folds": [
                {**fold_metrics(p, y_all[f.val], y_all[f.train]), "fit": m.summary()}
                for f, p, m in zip(wf.folds, wf.probs[fam], wf.models[fam], strict=True)
            ],
        }
        for fam in families
    }
    for rec in models.values():
        rec["mean_log_loss"] = float(np.mean([f["log_loss"] for f in rec["folds"]]))
        rec["mean_prior_log_loss"] = float(np.mean([f["prior_log_loss"] for f in rec["folds"]]))
    # Importance on out-of-sample rows: each family's last-fold model on the last validation block.
    last = wf.folds[-1]
    importance = {
        fam: importance_report(
            wf.models[fam][-1],
            windows(feats, last.val, wf.models[fam][-1].window),
            y_all[last.val],
            list(schema.names),
            seed=cfg.seed,
        )
        for fam in families
    }
    _write_json(run_dir / "importance.json", importance)
    cand = wf.models[cfg.arch]
    run = {
        "train": cfg.to_dict(),
        "label": label_cfg.to_dict(),
        "purge": purge,
        "import": imp,
        "samples": len(idx),
        # Samples per symbol (a run on several, kairos.training.panel).
        "symbols": {
            s: int(((idx >= a) & (idx < b)).sum())
            for s, (a, b) in zip(panel.symbols, panel.segments(), strict=True)
            if panel.n_symbols > 1
        },
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(("down", "flat", "up"))},
        "folds": [
            {
                "k": f.k,
                "train": len(f.train),
                "early_stop": len(f.early),
                "val": len(f.val),
                **f.span(times),
                "best_epoch": m.best_epoch,
                "epochs_run": m.epochs_run,
                "early_loss": m.early_loss,
                "learned": m.learned,
            }
            for f, m in zip(wf.folds, cand, strict=True)
        ],
        "models": models,
        "final": {
            **final.summary(),
            "best_epoch": final.best_epoch,
            "epochs_run": final.epochs_run,
            "early_loss": final.early_loss,
            "held_out": len(held_out),
        },
        "finals": {
            fam: {**m.summary(), "best_epoch": m.best_epoch, "epochs_run": m.epochs_run, "learned": m.learned}
            for fam, m in finals.items()
        },
        "learned_nothing": not final.learned,
        "search": None
        if search_record is None
        else {k: v for k, v in search_record.items() if k != "trial_log"},
        "trials": search_record["trials"] if search_record else 1,
        "train_seconds": time.perf_counter() - t0,
        "git_sha": git_sha(),
        "feature_schema_hash": schema.hash,
        "feature_blocks": list(schema.blocks),
    }
    with (run_dir / "model.pkl").open("wb") as fh:
        pickle.dump({"models": finals, "arch": cfg.arch, "held_out": held_out}, fh)
    arrays: dict[str, Any] = {f"val_{f.k}": f.val for f in wf.folds}
    arrays |= {f"inner_{f.k}": f.early for f in wf.folds} | {"inner_final": held_out}
    for fam in families:  # every family's calibrated fold probabilities: the gate compares them
        arrays |= {f"{fam}_{k}": p for k, p in enumerate(wf.probs[fam])}
        # ... and on the inner folds (before each validation block): the policy's thresholds are tuned there
        fw = cfg.family(fam).input_window
        arrays |= {
            f"{fam}_inner_{f.k}": m.predict(windows(feats, f.early, fw))
            for f, m in zip(wf.folds, wf.models[fam], strict=True)
        }
        arrays[f"{fam}_inner_final"] = finals[fam].predict(windows(feats, held_out, fw))
    np.savez(run_dir / "oos.npz", **arrays)
    _write_json(run_dir / "run.json", run)
    return run


def load_model(run_dir: Path, family: str | None = None) -> tuple[Model, np.ndarray[Any, Any]]:
    """A final model of ``kairos-train train`` (``family``, default the ``--arch`` one) and its held-out
    (inner-fold) samples."""
    import pickle

    import kairos.training.train  # noqa: F401  # the pickled classes live there

    with _need(run_dir, "model.pkl", "train").open("rb") as fh:
        saved = pickle.load(fh)  # our own artefact, written by step_train above
    fam = family or saved["arch"]
    if fam not in saved["models"]:
        raise StepError(f"{run_dir} has no {fam} model (trained: {', '.join(saved['models'])})")
    return saved["models"][fam], np.asarray(saved["held_out"], dtype=np.int64)


def candidate_family(run_dir: Path) -> str:
    """The family export takes: the backtest's candidate when there is a report, else ``--arch``."""
    report = run_dir / "report.json"
    if report.exists():
        fam = _read_json(report).get("candidate_family")
        if fam:
            return str(fam)
    return str(_read_json(_need(run_dir, "run.json", "train"))["train"]["arch"])


def learned_nothing(run_dir: Path) -> str | None:
    """Why the family export would take learned nothing (None when it learned something)."""
    run = _read_json(_need(run_dir, "run.json", "train"))
    fam = candidate_family(run_dir)
    f = run.get("finals", {}).get(fam) or run["final"]
    if f.get("learned", not run.get("learned_nothing")):
        return None
    return (
        f"learned nothing: the {f['family']} model's calibrated inner-fold log loss "
        f"{f['inner_log_loss']:.4f} is not below the class priors' {f['prior_log_loss']:.4f} "
        f"({f['inner_samples']} samples); no model exported"
    )


# ----------------------------------------------------------------------------------------------- export


def card_metrics(rep: dict[str, Any]) -> dict[str, Any]:
    """What the model card says about how good the model is: out of sample, after costs, with the
    bootstrap interval, the trials behind it, and the gate's verdict (what `kairos status` shows)."""
    f = rep["stats"][CANDIDATE]
    g = rep["gate"]
    model = rep["strategies"][CANDIDATE]["overall"]
    return {
        "validation": f"walk-forward, {len(rep['folds'])} folds, out of sample, net of costs",
        "gate": {
            "passed": g["passed"],
            "reason": g["reason"],
            "conditions": {c["name"]: c["passed"] for c in g["conditions"]},
        },
        "n_trials": rep["trials"]["n"],
        "sharpe": f["sharpe"],
        "sharpe_ci": [f["sharpe_ci_low"], f["sharpe_ci_high"]],
        "sharpe_ci_level": f["sharpe_ci_level"],
        "fold_sharpes": f["fold_sharpes"],
        "psr": f["psr"],
        "dsr": f["dsr"],
        "net_return": f["net_return"],
        "gross_return": f["gross_return"],
        "cost_per_unit": f["cost_per_unit"],
        "break_even_cost": f["break_even_cost"],
        "mean_holding_bars": f["mean_holding_bars"],
        "alpha_vs_buy_and_hold": f.get("vs_buy_and_hold"),
        "pbo": rep["pbo"]["pbo"] if rep.get("pbo") else None,
        "baseline_sharpes": {k: v["sharpe"] for k, v in rep["stats"].items() if k != CANDIDATE},
        "model_hit_rate": model["hit_rate"],
        "model_max_drawdown": model["max_drawdown"],
        "model_turnover": model["turnover"],
    }


def _source_names(imp: dict[str, Any]) -> str:
    """The data source(s) without local directories (a card travels)."""
    srcs = [r["source"] for r in imp["per_symbol"].values()] if imp.get("per_symbol") else [imp["source"]]
    return " + ".join(s if s.startswith(("sample:", "recorded:")) else Path(s).name for s in srcs)


def _strip_dirs(imp: dict[str, Any]) -> str:
    text = str(imp["spread_source"])
    srcs = [r["source"] for r in imp["per_symbol"].values()] if imp.get("per_symbol") else [imp["source"]]
    for src in srcs:
        text = text.replace(str(Path(src).parent) + "/", "")
    return text


def step_export(run_dir: Path, name: str, version: str, out_dir: Path | None = None) -> ExportResult:
    from kairos.features.drift import distribution
    from kairos.training.export import export_onnx

    bars, imp = load_run_bars(run_dir)
    run = _read_json(_need(run_dir, "run.json", "train"))
    schema = run_schema(run)
    if run["feature_schema_hash"] != schema.hash:
        raise StepError(
            f"{run_dir} was trained on feature schema {run['feature_schema_hash']}, this code computes "
            f"{schema.hash} for the blocks {list(schema.blocks)}"
        )
    why = learned_nothing(run_dir)
    if why:
        raise LearnedNothing(why)
    model, held_out = load_model(run_dir, candidate_family(run_dir))
    feats = run_features(bars, imp, schema)
    parity_x = windows(feats, held_out, model.window)
    report_path = run_dir / "report.json"
    metrics: dict[str, Any] = {}
    # The policy the backtest traded by; without a backtest, the default policy with measured moves.
    policy = final_policy(bars, run, PolicyConfig())
    if report_path.exists():
        rep = _read_json(report_path)
        if "policy" in rep:
            policy = DecisionPolicy.from_dict(rep["policy"], str(report_path))
        metrics = card_metrics(rep)
    card = ModelCard(
        name=name,
        version=version,
        architecture=model.family,
        feature_schema_hash=schema.hash,
        feature_names=list(schema.names),
        feature_blocks=list(schema.blocks),
        window=model.window,
        timeframe_s=int(imp["timeframe_s"]),
        label=run["label"],
        dataset={
            "source": _source_names(imp),
            "sha256": imp["sha256"],
            "bars": imp["bars"],
            "first": imp["first"],
            "last": imp["last"],
            "spread_source": _strip_dirs(imp),
            "samples": run["samples"],
            "class_counts": run["class_counts"],
        },
        metrics=metrics,
        training={
            **model.summary(),
            "uniqueness_weights": run["train"]["uniqueness"],
            "trials": run.get("trials", 1),
            "search": run.get("search"),
        },
        created_utc=created_utc(),
        policy=policy,
        symbols=list(imp.get("symbols") or []),
    )
    card.metrics["seed"] = run["train"]["seed"]
    # Every symbol's rows of the run's own feature blocks (a stacked frame is not one series).
    card.feature_distribution = distribution(feats, schema.names)
    result = export_onnx(model, card, run_dir, parity_x)
    if out_dir is not None and out_dir.resolve() != run_dir.resolve():
        out_dir.mkdir(parents=True, exist_ok=True)
        for p in (result.onnx_path, result.card_path):
            (out_dir / p.name).write_bytes(p.read_bytes())
    _write_json(
        run_dir / "export.json",
        {
            "max_abs_diff": result.max_abs_diff,
            "parity_rows": result.parity_rows,
            "size_bytes": result.size_bytes,
        },
    )
    return result


# --------------------------------------------------------------------------------------------- backtest


def _policy_inputs(
    bars: pd.DataFrame, run: dict[str, Any], cfg: PolicyConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, labelled sample index, realised volatility per bar in return units) as the policy
    sees them: the volatility passes through float32, as it does in the served model's feature rows."""
    panel = Panel.of(bars)
    labels = panel.labels(bars, LabelConfig(**run["label"])).y
    schema = run_schema(run)
    feats = run_features(bars, run["import"], schema)
    idx = panel.window_index(feats, labels, int(run["train"]["window"]))
    col = list(schema.names).index(cfg.vol_feature)
    vol = feats[:, col].astype(np.float32).astype(np.float64) * cfg.vol_unit
    return labels, idx, vol


def final_policy(bars: pd.DataFrame, run: dict[str, Any], cfg: PolicyConfig) -> DecisionPolicy:
    """The card's policy: ``cfg`` with the class moves measured on every labelled sample (the final
    model's training data)."""
    labels, idx, _ = _policy_inputs(bars, run, cfg)
    close = bars["close"].to_numpy(np.float64)
    return cfg.policy(*class_moves(close, labels, idx, int(run["label"]["horizon"])))


def _tuned(
    base: Params,
    cfg: PolicyConfig,
    prices: Any,
    oos: Any,
    name: str,
    fold: str,
    vol: np.ndarray,
    fill: FillModel,
    panel: Panel | None = None,
) -> tuple[Params, dict[str, Any]]:
    """``base`` with the entry threshold tuned on model ``name``'s inner block of ``fold`` (a fold
    number or ``final``); unchanged when tuning is off or the run has no inner predictions for it."""
    from kairos.training.backtest import tune_entry_edge

    probs, inner = oos.get(f"{name}_inner_{fold}"), oos.get(f"inner_{fold}")
    if not cfg.tune_entry or probs is None or inner is None or len(inner) == 0:
        return base, {"entry_edge": base.policy.entry_edge, "tuned": False}
    t = tune_entry_edge(base, prices, inner, probs, vol, fill, cfg.tune_entry, panel)
    e = t.entry_edge
    return base.with_policy(entry_edge=e, exit_edge=min(base.policy.exit_edge, e)), {
        **t.to_dict(),
        "tuned": True,
    }


MARKET, RULES, NEVER_TRADES = ("buy_and_hold",), ("momentum",), ("flat",)
CANDIDATE = "model"


def oos_results(cmp: Any, ppy: float) -> dict[str, OOSResult]:
    """Every strategy of a backtest comparison as a gate input; flat (never trades) is left out, its
    bar is the gate's net-return condition. Strategies other than the market and rule baselines are
    learned models (the candidate and every other model family of the run)."""
    from kairos.training.gate import OOSResult, Role

    out = {}
    for name, r in cmp.strategies.items():
        if name in NEVER_TRADES:
            continue
        role: Role = "market" if name in MARKET else "rule" if name in RULES else "learned"
        out[name] = OOSResult(name, role, r.fold_net, r.fold_gross, r.legs or r.fold_pos, ppy)
    return out


def pbo_of(results: dict[str, OOSResult]) -> dict[str, Any] | None:
    """PBO (CSCV) over the configurations the champion is chosen from: the learned models and rules."""
    from kairos.training import stats

    chosen = [r for r in results.values() if r.role in ("learned", "rule")]
    bars = chosen[0].bars if chosen else 0
    blocks = min(16, (bars // 40) // 2 * 2)  # >= 20 bars per block half; 16 blocks = 12,870 splits
    if len(chosen) < 2 or blocks < 4:
        return None
    m = np.column_stack([r.net_all for r in chosen])
    res = stats.pbo_cscv(m, n_blocks=blocks)
    return {**res.to_dict(), "blocks": blocks, "configurations": [r.name for r in chosen]}


def step_backtest(
    run_dir: Path,
    commission: float | None = None,
    policy_cfg: PolicyConfig | None = None,
    fill: FillModel | None = None,
    gate_cfg: GateConfig | None = None,
    prior_trials: int = 0,
) -> dict[str, Any]:
    """Backtest the fold predictions through the decision policy with live-like fills (and the
    baselines); the report carries the policy the card will hold. Then the gate: the candidate
    (``model``) against the other learned models, the rules and the market, given the trials behind
    it (the learned models of this run plus ``prior_trials`` configurations tried before on this data)."""
    bars, imp = load_run_bars(run_dir)
    run = _read_json(_need(run_dir, "run.json", "train"))
    oos = np.load(_need(run_dir, "oos.npz", "train"))
    from kairos.training import stats as st
    from kairos.training.backtest import (
        BarPrices,
        Comparison,
        FillModel,
        compare,
        periods_per_year,
        plot_equity,
    )
    from kairos.training.gate import GateConfig, gate, summarize

    cfg = policy_cfg or PolicyConfig()
    gcfg = gate_cfg or GateConfig()
    n_folds = len(run["folds"])
    fold_idx = [oos[f"val_{k}"] for k in range(n_folds)]
    label = run["label"]
    comm = float(label["commission"] if commission is None else commission)
    fill = replace(fill or FillModel(), commission=comm)
    close = bars["close"].to_numpy(np.float64)
    prices = BarPrices(
        bars["open"].to_numpy(np.float64),
        close,
        bars["spread"].to_numpy(np.float64),
        bars["low"].to_numpy(np.float64),
        bars["high"].to_numpy(np.float64),
        float(imp.get("point") or 0.0),
    )
    times_ms = to_epoch_ms(bars["time"])
    panel = Panel.of(bars)
    labels, idx, vol = _policy_inputs(bars, run, cfg)
    horizon = int(label["horizon"])
    purge = int(run.get("purge", horizon))
    # Each fold's class moves come from its own training samples only (no look-ahead).
    fold_params = [
        Params(cfg.policy(*class_moves(close, labels, panel.before(idx, int(f[0]), purge), horizon)))
        for f in fold_idx
    ]
    # Every learned family of the run (and an explicitly named candidate the run did not train, e.g.
    # a benchmark's oracle) through the same policy, fills and folds.
    families = list(run["models"])
    names = families + ([gcfg.candidate] if gcfg.candidate not in ("best", *families) else [])
    missing = [f for f in names if f"{f}_0" not in oos]
    if missing:
        raise StepError(
            f"--candidate {missing[0]}: not a model family of this run ({', '.join(families)}) "
            f"and {run_dir}/oos.npz has no fold predictions of it"
        )
    learned_probs = {f: [oos[f"{f}_{k}"] for k in range(n_folds)] for f in names}
    # Each model's entry threshold for fold k is tuned on its own predictions on fold k's inner block
    # (before the validation block), so a model with no edge after costs stays flat out of sample.
    tuning: dict[str, list[dict[str, Any]]] = {}
    params_by: dict[str, list[Params]] = {}
    for f in names:
        params_by[f], tuning[f] = [], []
        for k, base in enumerate(fold_params):
            p, t = _tuned(base, cfg, prices, oos, f, str(k), vol, fill, panel)
            params_by[f].append(p)
            tuning[f].append(t)
    cmp = compare(prices, times_ms, fold_idx, learned_probs, horizon, fill, params_by, vol, panel)
    ppy = panel.periods_per_year() if panel.n_symbols > 1 else periods_per_year(times_ms)
    sharpes = {f: st.sharpe(np.concatenate(cmp.strategies[f].fold_net), ppy) for f in names}
    finals = run.get("finals", {})
    eligible = [f for f in families if finals.get(f, {}).get("learned", True)]
    if gcfg.candidate == "best":
        # The best out-of-sample family among those that could be exported; with none, the --arch one
        # (export then says it learned nothing).
        if eligible:
            chosen = max(eligible, key=lambda f: sharpes[f])
            rule = (
                "the highest net Sharpe on the validation folds among the families whose final model learned"
            )
        else:
            chosen = run["train"]["arch"]
            rule = (
                "no family's final model learned anything: the --arch family, for the record (not exportable)"
            )
    else:
        chosen, rule = gcfg.candidate, "named with --candidate"
    # The candidate is reported as CANDIDATE; the other families keep their names.
    strategies = {CANDIDATE: cmp.strategies[chosen]} | {
        k: v for k, v in cmp.strategies.items() if k != chosen
    }
    cmp = Comparison(strategies)
    card_params, card_tuning = _tuned(
        Params(cfg.policy(*class_moves(close, labels, idx, horizon))),
        cfg,
        prices,
        oos,
        chosen,
        "final",
        vol,
        fill,
        panel,
    )
    card_policy = card_params.policy
    results = oos_results(cmp, ppy)
    candidate = results[CANDIDATE]
    others = [r for k, r in results.items() if k != CANDIDATE]
    learned = [r.name for r in results.values() if r.role == "learned"]
    # Every configuration tried on these folds is a trial: the candidate family's search trials, each
    # other model family trained (backtested or not; choosing the best of them is what DSR deflates),
    # and what the user declares was tried before.
    searched = int(run.get("trials", 1))
    n_trials = searched + len(families) - 1 + prior_trials
    verdict = gate(candidate, others, n_trials, gcfg)
    market = next((r for r in others if r.role == "market"), None)
    trial_sharpes = [st.sharpe_per_bar(results[k].net_all) for k in learned]
    figures = {CANDIDATE: verdict.figures}
    for r in others:
        # The other learned models are trials of the same search: deflated by the same count.
        is_trial = r.role == "learned"
        figures[r.name] = summarize(
            r,
            cfg=gcfg,
            n_trials=n_trials if is_trial else 1,
            trial_sharpes=trial_sharpes if is_trial else None,
            market=None if r is market else market,
        )
    report = {
        **cmp.to_dict(),
        "candidate_family": chosen,
        "selection": {"rule": rule, "eligible": eligible, "sharpes": sharpes},
        "gate": verdict.to_dict(),
        "stats": figures,
        "trials": {
            "n": n_trials,
            "search": searched,
            "families": families,
            "learned_in_run": learned,
            "prior": prior_trials,
        },
        "pbo": pbo_of(results),
        "commission_per_side": comm,
        "fill": asdict(fill),
        "policy": card_policy.to_dict(),
        "fold_policies": [p.policy.to_dict() for p in params_by[chosen]],
        "tuning": {"candidate_final": card_tuning, "folds": tuning},
        "spread": imp["spread_source"],
        "folds": run["folds"],
        "architecture": chosen,
        "dataset": {
            **{k: imp[k] for k in ("source", "sha256", "bars", "first", "last", "timeframe_s")},
            "symbols": imp.get("symbols", []),
        },
    }
    for f, fold, pooled in zip(report["folds"], fold_idx, cmp.strategies[CANDIDATE].fold_net, strict=True):
        f.pop("early_loss", None)
        f["bars"] = len(pooled)  # distinct bar times (one symbol: its bars)
        f["samples"] = len(fold)
    _write_json(run_dir / "report.json", report)
    (run_dir / "report.md").write_text(render_report(report), encoding="utf-8")
    tf_name = data_mod.timeframe_name(imp["timeframe_s"])
    several = imp.get("per_symbol")
    on = " + ".join(imp["symbols"]) if several else Path(imp["source"]).name
    title = f"{chosen} on {on} ({tf_name})"
    plot_equity(cmp, panel.grid_ms, run_dir / "equity.png", title)
    if (run_dir / "importance.json").exists():
        from kairos.training.importance import plot_importance

        plot_importance(_read_json(run_dir / "importance.json"), run_dir / "importance.png", candidate=chosen)
    return report


def render_report(rep: dict[str, Any]) -> str:
    """The report: every figure out of sample (validation folds), after costs, with its uncertainty
    and the number of trials behind it; then the gate's verdict condition by condition."""
    g = rep["gate"]
    n_trials = rep["trials"]["n"]
    level = next(iter(rep["stats"].values()))["sharpe_ci_level"] if rep["stats"] else 0.95
    lines = [
        f"# Backtest: {rep['architecture']} vs baselines",
        "",
        f"Data: {rep['dataset']['source']} ({rep['dataset']['bars']} bars, {rep['dataset']['first']} .. "
        f"{rep['dataset']['last']}), spread: {rep['spread']}, "
        f"commission {rep['commission_per_side']:g} per side.",
        f"Out of sample: {len(rep['folds'])} walk-forward validation folds, every strategy on the same "
        f"bars, after costs. Trials behind the learned models: {n_trials} "
        f"({rep['trials'].get('search', 1)} configuration(s) of the candidate, model families "
        f"{', '.join(rep['trials'].get('families', rep['trials']['learned_in_run']))}, "
        f"{rep['trials']['prior']} declared before).",
        "",
        f"## Verdict: {'PASSED' if g['passed'] else 'FAILED'}",
        "",
        "| condition | figure | threshold | result |",
        "|---|---|---|---|",
    ]
    for c in g["conditions"]:
        result = "pass" if c["passed"] else "FAIL"
        lines.append(f"| {c['name']} | {c['figure']:.4g} | {c['threshold']:.4g} | {result} |")
    lines += ["", g["reason"] + ".", ""]
    lines += [
        "## Honest statistics (net of costs)",
        "",
        f"| strategy | Sharpe | {level:.0%} interval | PSR(0) | DSR | net return | gross return | cost/unit "
        "| break-even cost/unit | mean holding | trades | alpha vs buy-and-hold | beta |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in rep["stats"].items():
        reg = f.get("vs_buy_and_hold")
        alpha = (
            f"{reg['alpha_annual'] * 1e4:+.0f} ± {reg['alpha_se'] * f['periods_per_year'] * 1e4:.0f} bp/y"
            if reg
            else "-"
        )
        beta = f"{reg['beta']:.2f} ± {reg['beta_se']:.2f}" if reg else "-"
        dsr = f"{f['dsr']:.3f} (N={f['n_trials']})" if f["n_trials"] > 1 or name == CANDIDATE else "-"
        lines.append(
            f"| {name} | {f['sharpe']:.2f} | [{f['sharpe_ci_low']:.2f}, {f['sharpe_ci_high']:.2f}] | "
            f"{f['psr']:.3f} | {dsr} | {f['net_return'] * 1e4:+.1f} bp | {f['gross_return'] * 1e4:+.1f} bp | "
            f"{f['cost_per_unit'] * 1e4:.2f} bp | {f['break_even_cost'] * 1e4:.2f} bp | "
            f"{f['mean_holding_bars']:.1f} bars | {f['trades']} | {alpha} | {beta} |"
        )
    boot = rep["stats"][CANDIDATE]["bootstrap"] if CANDIDATE in rep["stats"] else None
    if boot:
        lines += [
            "",
            f"Interval: {boot['method']} block bootstrap, mean block {boot['mean_block_bars']:.0f} bars, "
            f"{boot['replicates']} replicates. DSR: probability that the true Sharpe exceeds the best of "
            f"N unskilled trials (expected max Sharpe {rep['stats'][CANDIDATE]['expected_max_sharpe']:.2f}).",
        ]
    if rep.get("pbo"):
        p = rep["pbo"]
        lines.append(
            f"Probability of backtest overfitting (CSCV, {p['blocks']} blocks, {p['n_splits']} splits, "
            f"choosing among {', '.join(p['configurations'])}): {p['pbo']:.2f}."
        )
    lines += [
        "",
        "## Per strategy (walk-forward folds)",
        "",
        "| strategy | mean fold Sharpe | Sharpe (all folds) | total return | hit rate | max drawdown "
        "| turnover | trades |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in rep["strategies"].items():
        o = s["overall"]
        lines.append(
            f"| {name} | {s['mean_fold_sharpe']:.3f} | {o['sharpe']:.3f} | "
            f"{o['total_return'] * 1e4:.1f} bp | "
            f"{o['hit_rate']:.3f} | {o['max_drawdown'] * 1e4:.1f} bp | {o['turnover']:.3f} | {o['trades']} |"
        )
    syms = rep["dataset"].get("symbols") or []
    if len(syms) > 1:
        lines += [
            "",
            f"## Per symbol ({', '.join(syms)})",
            "",
            "Each symbol traded on its own bars by the same model and policy; the figures above pool "
            "the symbols' returns per bar time (each symbol at its own notional).",
            "",
            "| strategy | symbol | Sharpe | total return | max drawdown | turnover | trades |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, s in rep["strategies"].items():
            for sym, o in (s.get("symbols") or {}).items():
                lines.append(
                    f"| {name} | {sym} | {o['sharpe']:.3f} | {o['total_return'] * 1e4:.1f} bp | "
                    f"{o['max_drawdown'] * 1e4:.1f} bp | {o['turnover']:.3f} | {o['trades']} |"
                )
    lines += ["", "![equity](equity.png)", ""]
    lines += [
        "## Feature importance",
        "",
        "Permutation importance (log-loss rise when a feature is shuffled) of each family's last-fold "
        "model on its validation block; mean |TreeSHAP| for LightGBM (`importance.json`).",
        "",
        "![importance](importance.png)",
        "",
    ]
    return "\n".join(lines)
