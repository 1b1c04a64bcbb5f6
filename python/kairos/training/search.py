"""Hyperparameter and model-family search with Optuna, on inner folds only.

The search sees only the samples before the first outer validation block (behind the purge gap),
walk-forwards them into ``folds`` inner folds and minimises the mean calibrated log loss on the inner
validation blocks. The outer walk-forward (the one the backtest and the registration gate read) then
trains the chosen configuration on folds the search never looked at. Every trial, whatever its end
(complete, failed, timed out), is counted and logged: the count is the number of strategies tried,
which the Deflated Sharpe Ratio needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from kairos.training import tabular
from kairos.training.labels import windows
from kairos.training.train import FAMILIES, TrainConfig, fit_model, make_folds, purged_before, sample_weights

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# (trials done, trials total or None, best value so far)
TrialCallback = Callable[[int, int | None, float], None]


class SearchDataError(ValueError):
    """Too few samples before the first outer validation block to search on."""


@dataclass(frozen=True)
class SearchConfig:
    trials: int = 20
    timeout_s: float | None = None
    families: tuple[str, ...] = ("lgbm", "logreg", "mlp")
    folds: int = 3
    """Inner walk-forward folds the objective averages over."""


def _suggest(trial: Any, base: TrainConfig, families: tuple[str, ...]) -> TrainConfig:
    fam = trial.suggest_categorical("family", list(families))
    if fam == "lgbm":
        return replace(
            base,
            arch=fam,
            lgbm=replace(
                base.lgbm,
                num_leaves=trial.suggest_int("num_leaves", 7, 63, log=True),
                learning_rate=trial.suggest_float("learning_rate", 0.01, 0.1, log=True),
                min_child_samples=trial.suggest_int("min_child_samples", 20, 400, log=True),
                colsample_bytree=trial.suggest_float("colsample_bytree", 0.5, 1.0),
                reg_lambda=trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
            ),
        )
    if fam == "logreg":
        return replace(
            base, arch=fam, logreg=tabular.LogregParams(c=trial.suggest_float("c", 1e-3, 10.0, log=True))
        )
    return replace(
        base,
        arch=fam,
        seeds=1,
        hidden=trial.suggest_categorical("hidden", [16, 32, 64]),
        dropout=trial.suggest_float("dropout", 0.0, 0.3),
        lr=trial.suggest_float("lr", 3e-4, 3e-3, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-5, 1e-2, log=True),
    )


def search_samples(idx: IntArray, base: TrainConfig, purge: int, clock: IntArray | None = None) -> IntArray:
    """The samples the search may use: those before the first outer validation block, purged."""
    first_val = int(make_folds(idx, base, purge, clock)[0].val[0])
    return purged_before(idx, first_val, purge, clock)


def search(
    features: FloatArray,
    labels: FloatArray,
    end: IntArray,
    idx: IntArray,
    base: TrainConfig,
    purge: int,
    scfg: SearchConfig,
    on_trial: TrialCallback | None = None,
    clock: IntArray | None = None,
) -> tuple[TrainConfig, dict[str, Any]]:
    """The best configuration and the search record (every trial)."""
    import optuna

    unknown = [f for f in scfg.families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"search families {unknown} unknown: choose from {FAMILIES}")
    sidx = search_samples(idx, base, purge, clock)
    inner_cfg = replace(base, folds=scfg.folds, scheme="expanding")
    try:
        folds = make_folds(sidx, inner_cfg, purge, clock)
    except ValueError as e:
        raise SearchDataError(
            f"the search has {len(sidx)} samples before the first validation block: {e}; "
            "import more data, or use fewer --folds or --search-folds"
        ) from None
    y = np.nan_to_num(labels).astype(np.int64)
    records: list[dict[str, Any]] = []
    t_start = time.perf_counter()

    def objective(trial: Any) -> float:
        cfg = _suggest(trial, base, scfg.families)
        losses = []
        for f in folds:
            w = cfg.input_window
            m = fit_model(
                windows(features, f.train, w),
                y[f.train],
                sample_weights(end, f.train, cfg),
                windows(features, f.early, w),
                y[f.early],
                sample_weights(end, f.early, cfg),
                cfg,
                label=f"trial {trial.number}",
            )
            p = m.predict(windows(features, f.val, w))
            losses.append(float(-np.log(np.clip(p[np.arange(len(f.val)), y[f.val]], 1e-12, 1)).mean()))
        return float(np.mean(losses))

    def log_trial(study: Any, trial: Any) -> None:
        records.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "params": trial.params,
                "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()
                if trial.datetime_complete and trial.datetime_start
                else None,
            }
        )
        if on_trial:
            best = study.best_value if any(r["state"] == "COMPLETE" for r in records) else float("nan")
            on_trial(len(records), scfg.trials, best)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=base.seed), study_name="kairos-search"
    )
    study.optimize(
        objective, n_trials=scfg.trials, timeout=scfg.timeout_s, callbacks=[log_trial], catch=(ValueError,)
    )
    complete = [r for r in records if r["state"] == "COMPLETE"]
    if not complete:
        raise SearchDataError(f"none of the {len(records)} search trials completed: {records[:3]}")
    best_cfg = _suggest(optuna.trial.FixedTrial(study.best_params), base, scfg.families)
    record = {
        "trials": len(records),
        "completed": len(complete),
        "failed": sum(r["state"] == "FAIL" for r in records),
        "families": list(scfg.families),
        "inner_folds": scfg.folds,
        "samples": len(sidx),
        "objective": "mean calibrated log loss over the inner validation blocks",
        "best": {"value": study.best_value, "params": study.best_params, "trial": study.best_trial.number},
        "seconds": time.perf_counter() - t_start,
        "trial_log": records,
    }
    return replace(best_cfg, seeds=base.seeds), record
