"""``kairos-train``: import -> train -> export -> backtest -> register, or all of it with ``run``.

Every command works on a run directory (``--run``, default ``.kairos/runs/latest``) so each step can be
repeated alone. Exit codes scripts can rely on:

    0  success
    1  usage error: bad option, or an earlier step's output is missing
    2  bad input data (the message names file, line and field)
    3  the model failed the gate, or learned nothing (its calibrated loss is not below the class
       priors'), so it was not registered (every failed condition or the reason is printed)
    4  export failed: ONNX check or ONNX Runtime parity
    5  the MLflow tracking store failed
  130  interrupted
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

try:  # typer >= 0.2x runs on its own vendored copy of click: catch that copy's exceptions
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover
    from click import exceptions as click_exc  # type: ignore[no-redef]

EXIT_OK, EXIT_USAGE, EXIT_DATA, EXIT_NOT_GOOD_ENOUGH, EXIT_EXPORT, EXIT_TRACKING = 0, 1, 2, 3, 4, 5
DEFAULT_RUN = Path(".kairos/runs/latest")

app = typer.Typer(
    name="kairos-train",
    help="Train Kairos models on real market data: import, train (walk-forward), export ONNX, "
    "backtest against baselines, gate, register in MLflow. Exit codes: 0 ok, 1 usage, 2 bad data, "
    "3 failed the gate (not registered), 4 export/parity failure, 5 MLflow failure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide enough for the tables when output is captured (rich falls back to 80 columns off a terminal).
out = Console(width=None if sys.stdout.isatty() else 130)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 130)


class CliFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------------------- options

RunOpt = Annotated[
    Path, typer.Option("--run", envvar="KAIROS_TRAIN_RUN", help="Run directory holding every step's output.")
]
DataOpt = Annotated[
    list[str],
    typer.Option(
        "--data",
        help="Market data: an MT5 tick/bar export (tab-separated, UTF-8/UTF-16), a CSV bar or tick file, "
        "a Parquet file, recorded:SYMBOL:TF, or sample:eurusd-h1. Repeat for several symbols in one run "
        "(pooled training, per-symbol and pooled figures); SYMBOL=PATH names a file's symbol.",
    ),
]
AskOpt = Annotated[
    str | None, typer.Option("--ask-data", help="Bars on the ask with the same times (spread = ask - bid).")
]
SpreadOpt = Annotated[
    float | None,
    typer.Option("--spread", help="Spread in price units for data without one (sample:eurusd-h1: 0.0001)."),
]
TfOpt = Annotated[
    str | None,
    typer.Option("--timeframe", help="Bar timeframe (M1, M5, H1, ... or seconds); ticks default to M1."),
]
TzOpt = Annotated[
    str, typer.Option("--source-tz", help="Time zone of naive times in the file (MT5 server time).")
]
DedupeOpt = Annotated[
    str, typer.Option("--dedupe", help="Duplicate bar times: error (default), keep-first or keep-last.")
]
TimeColOpt = Annotated[
    str | None,
    typer.Option(
        "--time-column",
        help="The CSV/Parquet time column, when its name is not time/timestamp/datetime/date.",
    ),
]
TimeFmtOpt = Annotated[
    str | None,
    typer.Option("--time-format", help="strftime format of the time column (default: ISO 8601)."),
]
MaxBarsOpt = Annotated[int | None, typer.Option("--max-bars", min=1, help="Keep only the latest N bars.")]
ArchOpt = Annotated[
    str,
    typer.Option(
        "--arch", help="Model family: mlp, tcn (causal temporal conv), gru, lgbm (LightGBM) or logreg."
    ),
]
LabelKindOpt = Annotated[
    str, typer.Option("--label", help="Label: fixed_horizon or triple_barrier (volatility-scaled barriers).")
]
VolMultOpt = Annotated[
    float, typer.Option("--vol-mult", min=0.0, help="Triple barrier: distance in sigma * sqrt(horizon).")
]
SeedsOpt = Annotated[
    int, typer.Option("--seeds", min=1, help="Torch: ensemble of N seeds (mean probabilities).")
]
UniqOpt = Annotated[
    bool,
    typer.Option("--uniqueness/--no-uniqueness", help="Weight samples by label uniqueness (Lopez de Prado)."),
]
SearchOpt = Annotated[
    bool, typer.Option("--search", help="Optuna search over model family and hyperparameters on inner folds.")
]
TrialsOpt = Annotated[int, typer.Option("--trials", min=1, help="Search: maximum trials.")]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", min=1.0, help="Search: stop starting trials after N seconds.")
]
SearchFoldsOpt = Annotated[
    int, typer.Option("--search-folds", min=1, help="Search: inner walk-forward folds per trial.")
]
FamiliesOpt = Annotated[
    str, typer.Option("--search-families", help="Search: comma-separated families to choose from.")
]
WindowOpt = Annotated[int, typer.Option("--window", min=1, help="Feature rows per model input.")]
FeaturesOpt = Annotated[
    str,
    typer.Option(
        "--features",
        help="Comma-separated feature blocks: base (always), daily (the last 24 hours: realised "
        "volatility, the day's return in units of it, the day's channel), cross (the other symbols' "
        "returns; needs --data repeated). ADR 0104.",
    ),
]
HiddenOpt = Annotated[int, typer.Option("--hidden", min=1, help="Hidden units/channels.")]
EpochsOpt = Annotated[
    int, typer.Option("--epochs", min=1, help="Maximum epochs (early stopping may end sooner).")
]
PatienceOpt = Annotated[int, typer.Option("--patience", min=1, help="Early-stopping patience in epochs.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1)]
LrOpt = Annotated[float, typer.Option("--lr", min=0.0)]
FoldsOpt = Annotated[int, typer.Option("--folds", min=1, help="Walk-forward validation folds.")]
SchemeOpt = Annotated[str, typer.Option("--scheme", help="Walk-forward training set: expanding or rolling.")]
PurgeOpt = Annotated[
    int | None,
    typer.Option("--purge", min=0, help="Bars between training and validation (default: horizon)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random number (torch, numpy, sklearn).")]
ThreadsOpt = Annotated[int, typer.Option("--threads", min=1, help="torch CPU threads.")]
HorizonOpt = Annotated[int, typer.Option("--horizon", min=1, help="Label horizon in bars.")]
BandOpt = Annotated[
    float, typer.Option("--band-mult", min=0.0, help="No-trade band as a multiple of the costs.")
]
CommOpt = Annotated[
    float, typer.Option("--commission", min=0.0, help="Commission per side, fraction of notional.")
]
NameOpt = Annotated[
    str | None,
    typer.Option(
        "--name", help="Model name (default: kairos-<symbol>, the symbol from --symbol or the data)."
    ),
]
SymbolOpt = Annotated[
    str | None,
    typer.Option(
        "--symbol",
        help="Trading symbol of the data (e.g. EURUSD), for the model name when the file name has none.",
    ),
]
SignificanceOpt = Annotated[
    str,
    typer.Option(
        "--significance",
        help="Gate test: dsr (deflated Sharpe p < --gate-alpha) or bootstrap (interval lower bound > 0).",
    ),
]
GateAlphaOpt = Annotated[
    float, typer.Option("--gate-alpha", min=1e-6, max=0.5, help="Gate significance level.")
]
CandidateOpt = Annotated[
    str,
    typer.Option(
        "--candidate",
        help="The model the gate judges and export takes: best (the family with the highest net Sharpe "
        "on the validation folds among those that learned; the choice counts as trials) or a family "
        "(mlp, tcn, gru, lgbm, logreg) trained by this run.",
    ),
]
StopOpt = Annotated[
    float,
    typer.Option(
        "--stop-vol-mult",
        min=0.0,
        help="Protective stop on every entry, in realised volatility x price (the card's "
        "policy.stop_vol_mult; the backtest works it on the bars' lows and highs as the venue does). "
        "0: none.",
    ),
]
PriorTrialsOpt = Annotated[
    int,
    typer.Option(
        "--prior-trials",
        min=0,
        help="Configurations tried on this data before this run (they deflate the Sharpe: be honest).",
    ),
]
VersionOpt = Annotated[
    str | None, typer.Option("--version", help="Model version in the card (default: arch-datahash).")
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Also copy model.onnx and model.card.json here.")]
AliasOpt = Annotated[str | None, typer.Option("--alias", help="Registry alias to point at the new version.")]
UriOpt = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri", help="MLflow tracking URI (default: env KAIROS_MLFLOW_URI, else .kairos/mlflow.db)."
    ),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Register even if the model failed the gate (tagged).")
]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


# ------------------------------------------------------------------------------------------ commands


def _do_import(
    run: Path,
    data: list[str],
    ask: str | None,
    spread: float | None,
    tf: str | None,
    tz: str,
    dedupe: str,
    max_bars: int | None,
    time_column: str | None = None,
    time_format: str | None = None,
) -> Any:
    from kairos.training import pipeline
    from kairos.training.data import Dedupe, timeframe_name

    if dedupe not in ("error", "keep-first", "keep-last"):
        raise CliFailure(EXIT_USAGE, f"--dedupe must be error, keep-first or keep-last, not {dedupe!r}")
    rep = pipeline.step_import(
        run,
        data,
        timeframe=tf,
        ask_source=ask,
        spread=spread,
        source_tz=tz,
        dedupe=cast(Dedupe, dedupe),
        max_bars=max_bars,
        time_column=time_column,
        time_format=time_format,
    )
    t = Table(title=f"import {' + '.join(data)}", show_header=False)
    t.add_row("kind", rep.kind)
    t.add_row("rows read", str(rep.rows_in))
    t.add_row("bars", f"{rep.bars} {timeframe_name(rep.timeframe_s)}")
    t.add_row("span", f"{rep.first} .. {rep.last}")
    t.add_row("spread", rep.spread_source)
    if rep.crossed_spread_bars:
        t.add_row(
            "crossed bid/ask bars",
            f"{rep.crossed_spread_bars} set to spread 0 (lines {rep.crossed_spread_lines[:5]} ...)",
        )
    t.add_row("duplicates", f"{rep.duplicates} ({rep.duplicate_policy})")
    gaps = f"{rep.gaps} gaps, {rep.missing_bars} missing bars (kept as gaps)"
    if rep.largest_gaps:
        g = rep.largest_gaps[0]
        gaps += f"; largest {g.start} .. {g.end} ({g.missing_bars} bars)"
    t.add_row("gaps", gaps)
    t.add_row("dataset sha256", rep.sha256)
    t.add_row("written", str(run / "bars.parquet"))
    out.print(t)
    return rep


@app.command("import")
def import_cmd(
    data: DataOpt,
    run: RunOpt = DEFAULT_RUN,
    ask_data: AskOpt = None,
    spread: SpreadOpt = None,
    timeframe: TfOpt = None,
    source_tz: TzOpt = "UTC",
    dedupe: DedupeOpt = "error",
    max_bars: MaxBarsOpt = None,
    time_column: TimeColOpt = None,
    time_format: TimeFmtOpt = None,
) -> None:
    """Import market data into validated, normalised bars (run/bars.parquet); report duplicates, gaps."""
    _do_import(run, data, ask_data, spread, timeframe, source_tz, dedupe, max_bars, time_column, time_format)


def _do_train(run: Path, tcfg: Any, lcfg: Any, scfg: Any = None) -> dict[str, Any]:
    from kairos.training import pipeline

    with _progress() as prog:
        tasks: dict[str, Any] = {}

        def on_epoch(label: str, epoch: int, epochs: int, tl: float, el: float) -> None:
            if label.startswith("trial "):  # search trials have their own bar
                return
            if label not in tasks:
                tasks[label] = prog.add_task(f"train {label}", total=epochs, loss="")
            prog.update(tasks[label], completed=epoch, loss=f"loss {tl:.4f} / early-stop {el:.4f}")

        def on_trial(done: int, total: int | None, best: float) -> None:
            if "search" not in tasks:
                tasks["search"] = prog.add_task("search trials", total=total, loss="")
            prog.update(tasks["search"], completed=done, loss=f"best inner log loss {best:.4f}")

        info = pipeline.step_train(run, tcfg, lcfg, on_epoch, scfg, on_trial)
        for t in tasks.values():  # early stopping ends a task before its total: show it as done
            prog.update(t, total=prog.tasks[t].completed)
    t = Table(title=f"walk-forward ({tcfg.arch}, {tcfg.scheme}, purge {info['purge']} bars)")
    for c in ("fold", "train", "early-stop", "validation", "validation span", "best epoch"):
        t.add_column(c)
    for f in info["folds"]:
        t.add_row(
            str(f["k"] + 1),
            str(f["train"]),
            str(f["early_stop"]),
            str(f["val"]),
            f"{f['val_first'][:16]} .. {f['val_last'][:16]}",
            str(f["best_epoch"]),
        )
    out.print(t)
    out.print(f"samples {info['samples']}, classes {info['class_counts']}, label {lcfg.kind}")
    if info["search"]:
        s = info["search"]
        out.print(
            f"search: {s['trials']} trials ({s['completed']} completed, {s['failed']} failed) in "
            f"{s['seconds']:.0f} s; best {s['best']['params']} (inner log loss {s['best']['value']:.4f})"
        )
    m = Table(title="out-of-sample log loss per model (calibrated; class priors for comparison)")
    for c in ("model", "role", *(f"fold {f['k'] + 1}" for f in info["folds"]), "mean", "priors"):
        m.add_column(c)
    for fam, rec in info["models"].items():
        m.add_row(
            fam,
            rec["role"],
            *(f"{f['log_loss']:.4f}" for f in rec["folds"]),
            f"{rec['mean_log_loss']:.4f}",
            f"{rec['mean_prior_log_loss']:.4f}",
        )
    out.print(m)
    for f in info["finals"].values():
        out.print(
            f"final {f['family']}: temperature {f['temperature']:.3f}, inner-fold log loss "
            f"{f['inner_log_loss']:.4f} vs class priors {f['prior_log_loss']:.4f}"
            + ("" if f["learned"] else " -> [bold]learned nothing[/bold]: cannot be exported")
        )
    return info


def _configs(
    arch: str,
    window: int,
    hidden: int,
    epochs: int,
    patience: int,
    batch_size: int,
    lr: float,
    folds: int,
    scheme: str,
    purge: int | None,
    seed: int,
    threads: int,
    horizon: int,
    band_mult: float,
    commission: float,
    label: str = "fixed_horizon",
    vol_mult: float = 1.0,
    seeds: int = 1,
    uniqueness: bool = True,
    features: str = "base",
) -> tuple[Any, Any]:
    from kairos.features.schema import BLOCKS, schema_for
    from kairos.training.labels import LABEL_KINDS, LabelConfig, LabelKind
    from kairos.training.train import FAMILIES, TrainConfig

    if arch not in FAMILIES:
        raise CliFailure(EXIT_USAGE, f"--arch must be one of {', '.join(FAMILIES)}, not {arch!r}")
    if label not in LABEL_KINDS:
        raise CliFailure(EXIT_USAGE, f"--label must be one of {', '.join(LABEL_KINDS)}, not {label!r}")
    if scheme not in ("expanding", "rolling"):
        raise CliFailure(EXIT_USAGE, f"--scheme must be expanding or rolling, not {scheme!r}")
    try:
        blocks = schema_for([b.strip() for b in features.split(",") if b.strip()]).blocks
    except ValueError:
        raise CliFailure(
            EXIT_USAGE, f"--features must name blocks among {', '.join(BLOCKS)}, not {features!r}"
        ) from None
    tcfg = TrainConfig(
        arch=arch,
        window=window,
        hidden=hidden,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        lr=lr,
        folds=folds,
        scheme=cast(Literal["expanding", "rolling"], scheme),
        purge=purge,
        seed=seed,
        threads=threads,
        seeds=seeds,
        uniqueness=uniqueness,
        features=blocks,
    )
    lcfg = LabelConfig(
        horizon=horizon,
        band_mult=band_mult,
        commission=commission,
        kind=cast(LabelKind, label),
        vol_mult=vol_mult,
    )
    return tcfg, lcfg


def _search_cfg(search: bool, trials: int, timeout: float | None, families: str, folds: int) -> Any:
    if not search:
        return None
    from kairos.training.search import SearchConfig
    from kairos.training.train import FAMILIES

    fams = tuple(f.strip() for f in families.split(",") if f.strip())
    bad = [f for f in fams if f not in FAMILIES]
    if bad or not fams:
        raise CliFailure(EXIT_USAGE, f"--search-families: {bad or families!r} not in {', '.join(FAMILIES)}")
    return SearchConfig(trials=trials, timeout_s=timeout, families=fams, folds=folds)


@app.command()
def train(
    run: RunOpt = DEFAULT_RUN,
    arch: ArchOpt = "mlp",
    window: WindowOpt = 16,
    features: FeaturesOpt = "base",
    hidden: HiddenOpt = 32,
    epochs: EpochsOpt = 60,
    patience: PatienceOpt = 6,
    batch_size: BatchOpt = 128,
    lr: LrOpt = 1e-3,
    folds: FoldsOpt = 4,
    scheme: SchemeOpt = "expanding",
    purge: PurgeOpt = None,
    seed: SeedOpt = 0,
    threads: ThreadsOpt = 1,
    horizon: HorizonOpt = 5,
    band_mult: BandOpt = 1.0,
    commission: CommOpt = 0.00002,
    label: LabelKindOpt = "fixed_horizon",
    vol_mult: VolMultOpt = 1.0,
    seeds: SeedsOpt = 1,
    uniqueness: UniqOpt = True,
    search: SearchOpt = False,
    trials: TrialsOpt = 20,
    timeout: TimeoutOpt = None,
    search_families: FamiliesOpt = "lgbm,logreg,mlp",
    search_folds: SearchFoldsOpt = 3,
) -> None:
    """Label, then train with walk-forward validation (fold predictions) and fit the final model."""
    tcfg, lcfg = _configs(
        arch,
        window,
        hidden,
        epochs,
        patience,
        batch_size,
        lr,
        folds,
        scheme,
        purge,
        seed,
        threads,
        horizon,
        band_mult,
        commission,
        label,
        vol_mult,
        seeds,
        uniqueness,
        features,
    )
    _do_train(run, tcfg, lcfg, _search_cfg(search, trials, timeout, search_families, search_folds))


def _run_sources(run: Path) -> str | list[str]:
    """What the run was imported from, for its name: the symbols of a run on several."""
    import json

    from kairos.training.pipeline import _need

    imp = json.loads(_need(run, "import.json", "import").read_text())
    syms = imp.get("symbols") or []
    return [f"{s}={s}" for s in syms] if imp.get("per_symbol") else str(imp["source"])


def _model_name(
    run: Path, name: str | None, symbol: str | None, source: str | list[str] | None = None
) -> str:
    from kairos.training.registry import NamingError, model_name

    try:
        return model_name(source if source is not None else _run_sources(run), name=name, symbol=symbol)
    except NamingError as e:
        raise CliFailure(EXIT_USAGE, str(e)) from e


def _do_export(
    run: Path, name: str | None, version: str | None, out_dir: Path | None, symbol: str | None = None
) -> Any:
    import json

    from kairos.training import pipeline

    name = _model_name(run, name, symbol)
    if version is None:
        imp = json.loads((run / "import.json").read_text()) if (run / "import.json").exists() else {}
        arch = (
            json.loads((run / "run.json").read_text())["train"]["arch"]
            if (run / "run.json").exists()
            else "model"
        )
        version = f"{arch}-{imp.get('sha256', 'sha256:unknown')[7:15]}"
    res = pipeline.step_export(run, name, version, out_dir)
    out.print(
        f"exported {res.onnx_path} ({res.size_bytes} bytes) and {res.card_path.name}: onnx.checker ok, "
        f"ONNX Runtime parity max abs diff {res.max_abs_diff:.2e} on {res.parity_rows} held-out rows "
        "(limit 1e-05)"
    )
    if out_dir is not None:
        out.print(f"copied to {out_dir}")
    return res


@app.command()
def export(
    run: RunOpt = DEFAULT_RUN,
    name: NameOpt = None,
    symbol: SymbolOpt = None,
    version: VersionOpt = None,
    out_dir: OutOpt = None,
) -> None:
    """Export the final model as one ONNX file plus model card; check it against ONNX Runtime (parity)."""
    _do_export(run, name, version, out_dir, symbol)


def _gate_config(significance: str, gate_alpha: float, candidate: str = "best", seed: int = 0) -> Any:
    from kairos.training.gate import GateConfig
    from kairos.training.train import FAMILIES

    if significance not in ("dsr", "bootstrap"):
        raise CliFailure(EXIT_USAGE, f"--significance must be dsr or bootstrap, not {significance!r}")
    if candidate not in ("best", *FAMILIES):
        raise CliFailure(
            EXIT_USAGE, f"--candidate must be best or one of {', '.join(FAMILIES)}, not {candidate!r}"
        )
    return GateConfig(
        candidate=candidate,
        significance=cast(Literal["dsr", "bootstrap"], significance),
        alpha=gate_alpha,
        seed=seed,
    )


def _do_backtest(
    run: Path,
    commission: float | None,
    gate_cfg: Any = None,
    prior_trials: int = 0,
    stop_vol_mult: float = 0.0,
) -> dict[str, Any]:
    from kairos.training import pipeline
    from kairos.training.policy import PolicyConfig

    rep = pipeline.step_backtest(
        run,
        commission,
        policy_cfg=PolicyConfig(stop_vol_mult=stop_vol_mult),
        gate_cfg=gate_cfg,
        prior_trials=prior_trials,
    )
    level = rep["stats"]["model"]["sharpe_ci_level"]
    t = Table(
        title=f"out of sample (validation folds), net of costs; {rep['trials']['n']} trials behind the "
        "learned models"
    )
    for c in (
        "strategy",
        "Sharpe",
        f"{level:.0%} interval",
        "PSR(0)",
        "DSR",
        "net",
        "gross",
        "break-even/unit",
    ):
        t.add_column(c)
    t.add_column("hold (bars)")
    t.add_column("trades")
    for k, f in rep["stats"].items():
        t.add_row(
            k,
            f"{f['sharpe']:.2f}",
            f"[{f['sharpe_ci_low']:.2f}, {f['sharpe_ci_high']:.2f}]",
            f"{f['psr']:.3f}",
            f"{f['dsr']:.3f}" if f["n_trials"] > 1 or k == "model" else "-",
            f"{f['net_return'] * 1e4:+.1f} bp",
            f"{f['gross_return'] * 1e4:+.1f} bp",
            f"{f['break_even_cost'] * 1e4:.2f} bp",
            f"{f['mean_holding_bars']:.1f}",
            str(f["trades"]),
        )
    out.print(t)
    sel = rep["selection"]
    out.print(
        f"candidate: {rep['candidate_family']} ({sel['rule']}; net Sharpe "
        + ", ".join(f"{k} {v:.2f}" for k, v in sel["sharpes"].items())
        + ")"
    )
    g = rep["gate"]
    out.print(f"gate: {'PASSED' if g['passed'] else 'FAILED'}")
    for c in g["conditions"]:
        out.print(f"  {'pass' if c['passed'] else 'FAIL'}  {c['name']}: {c['text']}", highlight=False)
    if rep.get("pbo"):
        out.print(f"probability of backtest overfitting (CSCV): {rep['pbo']['pbo']:.2f}")
    out.print(f"report: {run / 'report.md'}, {run / 'report.json'}, {run / 'equity.png'}")
    return rep


@app.command()
def backtest(
    run: RunOpt = DEFAULT_RUN,
    commission: Annotated[
        float | None, typer.Option("--commission", min=0.0, help="Override the label's commission.")
    ] = None,
    candidate: CandidateOpt = "best",
    significance: SignificanceOpt = "dsr",
    gate_alpha: GateAlphaOpt = 0.05,
    prior_trials: PriorTrialsOpt = 0,
    stop_vol_mult: StopOpt = 0.0,
) -> None:
    """Backtest every model family's fold predictions and the rule baselines (flat, buy-and-hold,
    momentum) with honest statistics, choose the candidate, and the gate's verdict."""
    _do_backtest(
        run, commission, _gate_config(significance, gate_alpha, candidate), prior_trials, stop_vol_mult
    )


def _do_register(
    run: Path,
    name: str | None,
    alias: str | None,
    uri: str | None,
    force: bool,
    register: bool = True,
    symbol: str | None = None,
) -> None:
    import json

    from kairos.training import registry

    uri = uri or registry.default_tracking_uri()
    card_name = None
    if (run / "model.card.json").exists():
        card_name = json.loads((run / "model.card.json").read_text())["name"]
    name = name or (_model_name(run, None, symbol) if symbol else card_name) or _model_name(run, None, None)
    try:
        res = registry.log_and_register(
            run, tracking_uri=uri, name=name, alias=alias, register=register, force=force
        )
    except Exception as e:
        from kairos.training.pipeline import StepError

        if isinstance(e, StepError):
            raise
        raise CliFailure(EXIT_TRACKING, f"MLflow ({uri}): {type(e).__name__}: {e}") from e
    (run / "mlflow.json").write_text(json.dumps({**res.to_dict(), "tracking_uri": uri}, indent=2) + "\n")
    out.print(f"MLflow run {res.run_id} logged to {uri}: {res.model_uri}")
    if res.registered:
        out.print(
            f"registered {name} version {res.version}"
            + (f", alias {res.alias_uri}" if res.alias_uri else "")
            + f" ({res.reason})"
        )
    elif register:
        raise CliFailure(EXIT_NOT_GOOD_ENOUGH, f"not registered: {res.reason}")


@app.command()
def register(
    run: RunOpt = DEFAULT_RUN,
    name: NameOpt = None,
    symbol: SymbolOpt = None,
    alias: AliasOpt = "champion",
    tracking_uri: UriOpt = None,
    force: ForceOpt = False,
) -> None:
    """Log the run to MLflow and register the model with an alias, only if it passed the gate."""
    _do_register(run, name, alias, tracking_uri, force, symbol=symbol)


@app.command("run")
def run_all(
    data: DataOpt,
    run: RunOpt = DEFAULT_RUN,
    ask_data: AskOpt = None,
    spread: SpreadOpt = None,
    timeframe: TfOpt = None,
    source_tz: TzOpt = "UTC",
    dedupe: DedupeOpt = "error",
    max_bars: MaxBarsOpt = None,
    time_column: TimeColOpt = None,
    time_format: TimeFmtOpt = None,
    arch: ArchOpt = "mlp",
    window: WindowOpt = 16,
    features: FeaturesOpt = "base",
    hidden: HiddenOpt = 32,
    epochs: EpochsOpt = 60,
    patience: PatienceOpt = 6,
    batch_size: BatchOpt = 128,
    lr: LrOpt = 1e-3,
    folds: FoldsOpt = 4,
    scheme: SchemeOpt = "expanding",
    purge: PurgeOpt = None,
    seed: SeedOpt = 0,
    threads: ThreadsOpt = 1,
    horizon: HorizonOpt = 5,
    band_mult: BandOpt = 1.0,
    commission: CommOpt = 0.00002,
    label: LabelKindOpt = "fixed_horizon",
    vol_mult: VolMultOpt = 1.0,
    seeds: SeedsOpt = 1,
    uniqueness: UniqOpt = True,
    search: SearchOpt = False,
    trials: TrialsOpt = 20,
    timeout: TimeoutOpt = None,
    search_families: FamiliesOpt = "lgbm,logreg,mlp",
    search_folds: SearchFoldsOpt = 3,
    name: NameOpt = None,
    symbol: SymbolOpt = None,
    version: VersionOpt = None,
    out_dir: OutOpt = None,
    alias: AliasOpt = "champion",
    tracking_uri: UriOpt = None,
    do_register: Annotated[
        bool, typer.Option("--register/--no-register", help="Log to MLflow and register.")
    ] = True,
    force: ForceOpt = False,
    candidate: CandidateOpt = "best",
    significance: SignificanceOpt = "dsr",
    gate_alpha: GateAlphaOpt = 0.05,
    prior_trials: PriorTrialsOpt = 0,
    stop_vol_mult: StopOpt = 0.0,
) -> None:
    """All steps: import, train, backtest and gate, export, then (unless --no-register) log and register."""
    tcfg, lcfg = _configs(
        arch,
        window,
        hidden,
        epochs,
        patience,
        batch_size,
        lr,
        folds,
        scheme,
        purge,
        seed,
        threads,
        horizon,
        band_mult,
        commission,
        label,
        vol_mult,
        seeds,
        uniqueness,
        features,
    )
    name = _model_name(run, name, symbol, source=data)  # before any work: a nameless run fails fast
    gate_cfg = _gate_config(significance, gate_alpha, candidate, seed)
    scfg = _search_cfg(search, trials, timeout, search_families, search_folds)
    _do_import(run, data, ask_data, spread, timeframe, source_tz, dedupe, max_bars, time_column, time_format)
    _do_train(run, tcfg, lcfg, scfg)
    _do_backtest(
        run, None, gate_cfg, prior_trials, stop_vol_mult
    )  # before export: the card carries the verdict
    from kairos.training.pipeline import learned_nothing

    why = learned_nothing(run)
    if why:
        raise CliFailure(EXIT_NOT_GOOD_ENOUGH, f"{why} or registered")
    _do_export(run, name, version, out_dir)
    if do_register:
        _do_register(run, name, alias, tracking_uri, force)


@app.command("loop")
def loop_cmd(
    config: Annotated[Path, typer.Option("--config", help="The loop's TOML file (kairos.training.loop).")],
    once: Annotated[bool, typer.Option(help="Run one round now and exit with its code.")] = False,
) -> None:
    """Scheduled retraining: rounds on a rolling window of recorded + imported data, gate, @challenger."""
    from kairos.training import loop

    try:
        cfg = loop.LoopConfig.load(config)
    except loop.LoopConfigError as e:
        raise CliFailure(EXIT_USAGE, str(e)) from e
    res = loop.run_loop(cfg, once=once)
    if once and res is not None:
        out.print(f"round {res.round_id}: {res.status}: {res.reason}", highlight=False, soft_wrap=True)
        if res.exit_code:
            raise CliFailure(res.exit_code, f"round {res.status}")


# ------------------------------------------------------------------------------------------ entry point


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps every failure to its documented exit code."""
    from kairos.features import ModelCardError
    from kairos.training.data import DataError

    code = EXIT_OK
    try:
        rv = typer.main.get_command(app).main(args=argv, prog_name="kairos-train", standalone_mode=False)
        code = rv if isinstance(rv, int) else EXIT_OK
    except click_exc.UsageError as e:
        e.show(file=sys.stderr)
        code = EXIT_USAGE
    except click_exc.ClickException as e:
        e.show(file=sys.stderr)
        code = EXIT_USAGE
    except typer.Abort:
        err.print("interrupted")
        code = 130
    except KeyboardInterrupt:
        err.print("interrupted")
        code = 130
    except DataError as e:
        err.print(f"[red]bad data:[/red] {e}", highlight=False, soft_wrap=True)
        code = EXIT_DATA
    except CliFailure as e:
        err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        code = e.code

    except Exception as e:
        from kairos.training.export import ParityError
        from kairos.training.pipeline import LearnedNothing, StepError

        if isinstance(e, LearnedNothing):
            err.print(f"[red]not exported:[/red] {e}", highlight=False, soft_wrap=True)
            code = EXIT_NOT_GOOD_ENOUGH
        elif isinstance(e, StepError | ModelCardError | ValueError) and not isinstance(e, ParityError):
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            code = EXIT_USAGE
        elif isinstance(e, ParityError) or type(e).__module__.startswith("onnx"):
            err.print(f"[red]export failed:[/red] {e}", highlight=False, soft_wrap=True)
            code = EXIT_EXPORT
        else:
            raise
    sys.exit(code)


if __name__ == "__main__":
    main()
