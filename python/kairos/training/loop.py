"""``kairos-train loop``: scheduled retraining on a rolling window of recorded plus imported data.

Each round (``run_round``):

1. **window**: every ``[data] sources`` entry (``recorded:EURUSD:M1``, a file, ``sample:eurusd-h1``) is
   read by ``kairos.training.data.load_bars``; the bars are merged by time (a later source wins a bar
   time both have: list recorded data last), and the last ``window_days`` days before the newest bar
   are kept (``max_bars`` caps the count). Written as ``window.parquet`` in the round's directory.
2. **the existing pipeline steps**: ``step_import`` (of that file), ``step_train``, ``step_backtest``
   (the gate, with the rounds before counted as prior trials unless ``count_rounds_as_trials = false``),
   ``step_export``, ``registry.log_and_register`` with ``alias`` (default ``challenger``).
3. **the outcome** in ``round.json`` and one JSON log line: ``registered`` (version and alias),
   ``gate_failed`` (every failed condition), ``learned_nothing``, ``data_error`` or ``error``. Only a
   registered model moves an alias; anything else leaves the registry, and so what inference serves,
   as it was. ``history.jsonl`` in the loop directory keeps one line per round.

With ``[auto_promote] enabled = true`` each round first asks the inference server for its promotion
test of the ``challenger`` in shadow (GetModelStatus over gRPC with the token file) and promotes it
when the test is significant (``kairos.stack.models.promote_if_significant``, ADR 0097): before the
round, because a newly registered challenger starts a new record. ``interval`` also checks between
rounds. Every decision is in ``round.json`` (``promotion``), the JSON log and, with ``[loop]
metrics_addr``, ``kairos_train_promotions_total``.

The steps of a round are ``round_promote``, ``round_window``, ``round_train``, ``round_backtest`` and
``round_register``; ``run_round`` runs them through a ``step`` runner (called directly here; the Prefect
flow in ``kairos.training.flow`` passes one that runs each as a Prefect task), so there is one
implementation of a round.

The schedule is ``interval = "6h"`` (a Go duration) or ``cron = "0 */6 * * *"`` (five fields, UTC:
minute hour day-of-month month day-of-week, with ``*``, lists, ranges and ``/step``).

Config file (TOML)::

    [schedule]
    interval = "6h"            # or: cron = "30 22 * * 1-5"
    [data]
    sources = ["../shared/data/gbpusd-m1-bid-2012.csv", "recorded:GBPUSD:M1"]
    timeframe = "M1"
    window_days = 30
    [train]                     # kairos.training.train.TrainConfig fields
    arch = "logreg"
    folds = 4
    [label]                     # kairos.training.labels.LabelConfig fields
    horizon = 5
    [gate]                      # kairos.training.gate.GateConfig fields
    alpha = 0.05
    [register]
    name = "kairos-gbpusd"
    alias = "challenger"
    tracking_uri = ""           # empty: $KAIROS_MLFLOW_URI or <project>/.kairos/mlflow.db
    [loop]
    dir = ".kairos/loop"
    count_rounds_as_trials = true
    metrics_addr = ""           # host:port for /metrics (kairos_train_promotions_total); empty: off
    [auto_promote]
    enabled = false
    inference_addr = "127.0.0.1:7501"
    token_file = ".kairos/run/inference.token"
    interval = "5m"             # also check between rounds; omit to check only before each round
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd  # type: ignore[import-untyped]

T = TypeVar("T")
EXIT_REGISTERED, EXIT_ERROR, EXIT_DATA, EXIT_NOT_GOOD_ENOUGH, EXIT_TRACKING = 0, 1, 2, 3, 5


class LoopConfigError(ValueError):
    """The loop's config file is missing, malformed or names an unknown setting."""


# ---------------------------------------------------------------------------------------- schedule


def _parse_field(text: str, lo: int, hi: int, name: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a_s, b_s = rng.split("-", 1)
            a, b = int(a_s), int(b_s)
        else:
            a = int(rng)
            b = hi if step_s else a
        if not (lo <= a <= b <= hi) or step < 1:
            raise LoopConfigError(f"cron {name} field {part!r}: want values in {lo}..{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression in UTC; day-of-week 0 or 7 is Sunday. As in cron, when both
    day-of-month and day-of-week are restricted a day matching either fires."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    dom_any: bool
    dow_any: bool

    @classmethod
    def parse(cls, expr: str) -> Cron:
        f = expr.split()
        if len(f) != 5:
            raise LoopConfigError(f"cron {expr!r}: want five fields (minute hour day month weekday)")
        try:
            dow = _parse_field(f[4], 0, 7, "day-of-week")
            return cls(
                _parse_field(f[0], 0, 59, "minute"),
                _parse_field(f[1], 0, 23, "hour"),
                _parse_field(f[2], 1, 31, "day-of-month"),
                _parse_field(f[3], 1, 12, "month"),
                frozenset(d % 7 for d in dow),
                f[2] == "*",
                f[4] == "*",
            )
        except ValueError as e:
            raise LoopConfigError(f"cron {expr!r}: {e}") from e

    def _day_ok(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.dom_any or self.dow_any:
            return dom and dow
        return dom or dow

    def next_after(self, t: datetime) -> datetime:
        """The first matching minute strictly after ``t`` (UTC), within four years."""
        c = t.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = c + timedelta(days=4 * 366)
        while c < end:
            if c.month not in self.months or not self._day_ok(c):
                c = (c + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if c.hour not in self.hours:
                c = (c + timedelta(hours=1)).replace(minute=0)
                continue
            if c.minute in self.minutes:
                return c
            c += timedelta(minutes=1)
        raise LoopConfigError("the cron expression never fires")


@dataclass(frozen=True)
class Schedule:
    interval_s: float | None = None
    cron: Cron | None = None

    def next_after(self, t: datetime) -> datetime:
        if self.cron is not None:
            return self.cron.next_after(t)
        assert self.interval_s is not None
        return t + timedelta(seconds=self.interval_s)


# ------------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class AutoPromote:
    """``[auto_promote]``: promote the challenger when the server's promotion test is significant."""

    enabled: bool = False
    inference_addr: str = "127.0.0.1:7501"
    token_file: str = ""
    interval_s: float | None = None
    timeout_s: float = 5.0

    def token(self) -> str:
        if not self.token_file:
            return ""
        try:
            return Path(self.token_file).read_text().splitlines()[0].strip()
        except (OSError, IndexError) as e:
            raise LoopConfigError(f"[auto_promote] token_file {self.token_file}: cannot read it ({e})") from e


@dataclass
class LoopConfig:
    schedule: Schedule
    sources: list[str]
    timeframe: str | None = "M1"
    window_days: float = 30.0
    max_bars: int | None = None
    spread: float | None = None
    train: dict[str, Any] = field(default_factory=dict)
    label: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    alias: str = "challenger"
    tracking_uri: str = ""
    dir: Path = Path(".kairos/loop")
    count_rounds_as_trials: bool = True
    prior_trials: int = 0
    metrics_addr: str = ""
    auto_promote: AutoPromote = field(default_factory=AutoPromote)

    @classmethod
    def load(cls, path: Path) -> LoopConfig:
        from kairos.envconfig import parse_duration

        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError as e:
            raise LoopConfigError(f"{path}: no such file") from e
        except tomllib.TOMLDecodeError as e:
            raise LoopConfigError(f"{path}: {e}") from e
        known = {"schedule", "data", "train", "label", "gate", "register", "loop", "auto_promote"}
        unknown = set(raw) - known
        if unknown:
            raise LoopConfigError(f"{path}: unknown section(s) {sorted(unknown)}; known: {sorted(known)}")
        sched = raw.get("schedule", {})
        if ("interval" in sched) == ("cron" in sched):
            raise LoopConfigError(f"{path}: [schedule] needs exactly one of interval or cron")
        try:
            schedule = (
                Schedule(interval_s=parse_duration(str(sched["interval"])))
                if "interval" in sched
                else Schedule(cron=Cron.parse(str(sched["cron"])))
            )
        except ValueError as e:
            raise LoopConfigError(f"{path}: [schedule] {e}") from e
        if schedule.interval_s is not None and schedule.interval_s <= 0:
            raise LoopConfigError(f"{path}: [schedule] interval must be positive")
        data = raw.get("data", {})
        if not data.get("sources"):
            raise LoopConfigError(f"{path}: [data] sources is empty")
        reg, lp, ap = raw.get("register", {}), raw.get("loop", {}), raw.get("auto_promote", {})
        base = path.parent
        ap_known = {"enabled", "inference_addr", "token_file", "interval", "timeout"}
        if set(ap) - ap_known:
            bad = sorted(set(ap) - ap_known)
            raise LoopConfigError(
                f"{path}: [auto_promote] unknown setting(s) {bad}; known: {sorted(ap_known)}"
            )
        try:
            auto = AutoPromote(
                enabled=bool(ap.get("enabled", False)),
                inference_addr=str(ap.get("inference_addr", "127.0.0.1:7501")),
                token_file=str((base / ap["token_file"]).resolve()) if ap.get("token_file") else "",
                interval_s=parse_duration(str(ap["interval"])) if "interval" in ap else None,
                timeout_s=parse_duration(str(ap["timeout"])) if "timeout" in ap else 5.0,
            )
        except ValueError as e:
            raise LoopConfigError(f"{path}: [auto_promote] {e}") from e

        def rel(s: str) -> str:  # file sources relative to the config file
            if ":" in s.split("/")[0] or Path(s).is_absolute():
                return s
            return str((base / s).resolve())

        cfg = cls(
            schedule=schedule,
            sources=[rel(str(s)) for s in data["sources"]],
            timeframe=data.get("timeframe", "M1"),
            window_days=float(data.get("window_days", 30)),
            max_bars=data.get("max_bars"),
            spread=data.get("spread"),
            train=dict(raw.get("train", {})),
            label=dict(raw.get("label", {})),
            gate=dict(raw.get("gate", {})),
            name=str(reg.get("name", "")),
            alias=str(reg.get("alias", "challenger")),
            tracking_uri=str(reg.get("tracking_uri", "")),
            dir=(base / lp["dir"]).resolve() if "dir" in lp else Path(".kairos/loop").resolve(),
            count_rounds_as_trials=bool(lp.get("count_rounds_as_trials", True)),
            prior_trials=int(lp.get("prior_trials", 0)),
            metrics_addr=str(lp.get("metrics_addr", "")),
            auto_promote=auto,
        )
        cfg.configs()  # unknown train/label/gate keys fail now, not at the first round
        return cfg

    def configs(self) -> tuple[Any, Any, Any]:
        from kairos.training.gate import GateConfig
        from kairos.training.labels import LabelConfig
        from kairos.training.train import TrainConfig

        out = []
        for klass, values, section in (
            (TrainConfig, self.train, "train"),
            (LabelConfig, self.label, "label"),
            (GateConfig, self.gate, "gate"),
        ):
            names = {f.name for f in dataclasses.fields(klass)}
            bad = sorted(set(values) - names)
            if bad:
                raise LoopConfigError(f"[{section}] unknown setting(s) {bad}; known: {sorted(names)}")
            out.append(klass(**values))
        return out[0], out[1], out[2]


# ------------------------------------------------------------------------------------------- round


@dataclass
class RoundResult:
    round_id: str
    status: str  # registered | gate_failed | learned_nothing | data_error | error
    reason: str
    run_dir: str
    started: str
    seconds: float = 0.0
    window: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    version: str | None = None
    alias_uri: str | None = None
    gate: dict[str, Any] | None = None
    promotion: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return {
            "registered": EXIT_REGISTERED,
            "gate_failed": EXIT_NOT_GOOD_ENOUGH,
            "learned_nothing": EXIT_NOT_GOOD_ENOUGH,
            "data_error": EXIT_DATA,
            "tracking_error": EXIT_TRACKING,
        }.get(self.status, EXIT_ERROR)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_window(cfg: LoopConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The round's bars: every source read and merged by time (later sources win), the last
    ``window_days`` before the newest bar kept. DataError if a source is bad or nothing is left."""
    from kairos.training import data as data_mod

    frames, per_source = [], []
    for s in cfg.sources:
        bars, rep = data_mod.load_bars(s, timeframe=cfg.timeframe, spread=cfg.spread, dedupe="keep-last")
        frames.append(bars)
        per_source.append({"source": s, "bars": len(bars), "first": rep.first, "last": rep.last})
    merged = pd.concat(frames, ignore_index=True)
    merged = merged.drop_duplicates(subset="time", keep="last").sort_values("time", kind="stable")
    end = merged["time"].iloc[-1]
    start = end - pd.Timedelta(days=cfg.window_days)
    window = merged[merged["time"] > start]
    if cfg.max_bars is not None:
        window = window.iloc[-int(cfg.max_bars) :]
    window = window.reset_index(drop=True)
    info = {
        "sources": per_source,
        "window_days": cfg.window_days,
        "bars": len(window),
        "first": str(window["time"].iloc[0]) if len(window) else None,
        "last": str(end),
    }
    return window, info


def _history(cfg: LoopConfig) -> list[dict[str, Any]]:
    p = cfg.dir / "history.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _log(event: str, **fields: Any) -> None:
    rec = {
        "timestamp": datetime.now(UTC).isoformat(),
        "level": "info",
        "component": "train-loop",
        "event": event,
    }
    print(json.dumps({**rec, **fields}, default=str), file=sys.stderr, flush=True)


def direct_step(name: str, fn: Callable[..., T], *args: Any) -> T:
    """The default step runner: call the step."""
    return fn(*args)


METRICS: Any = None
"""The loop's Prometheus registry when ``[loop] metrics_addr`` serves one (``serve_metrics``)."""


def serve_metrics(cfg: LoopConfig) -> None:
    global METRICS
    if not cfg.metrics_addr or METRICS is not None:
        return
    from prometheus_client import CollectorRegistry, start_http_server

    from kairos.envconfig import split_hostport

    host, port = split_hostport(cfg.metrics_addr, "metrics_addr", "[loop] ")
    METRICS = CollectorRegistry()
    start_http_server(port, host, registry=METRICS)


def round_promote(cfg: LoopConfig) -> dict[str, Any] | None:
    """``[auto_promote]``: the challenger becomes champion if the server's test says so (never raises:
    a failed check is a decision not to promote, with its reason)."""
    ap = cfg.auto_promote
    if not ap.enabled:
        return None
    from kairos.stack import models as lifecycle
    from kairos.training import registry

    name = cfg.name or registry.model_name(cfg.sources[0])
    try:
        d = lifecycle.promote_if_significant(
            cfg.tracking_uri or registry.default_tracking_uri(),
            name,
            ap.inference_addr,
            ap.token(),
            timeout_s=ap.timeout_s,
            registry=METRICS,
            component="train-loop",
        )
    except Exception as e:  # the registry or the token file: say so, promote nothing
        _log("promotion_error", model=name, error=f"{type(e).__name__}: {e}")
        return {"name": name, "promoted": False, "reason": f"{type(e).__name__}: {e}"}
    return d.to_dict()


def round_window(cfg: LoopConfig, run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The round's bars (``build_window``) written as ``window.parquet``."""
    from kairos.training.data import DataError

    window, info = build_window(cfg)
    if window.empty:
        raise DataError(",".join(cfg.sources), None, None, "no bars in the window")
    wfile = run_dir / "window.parquet"
    window.assign(time=window["time"].astype("datetime64[ms, UTC]")).to_parquet(wfile, index=False)
    return wfile, info


def round_train(cfg: LoopConfig, run_dir: Path, wfile: Path) -> None:
    """``step_import`` of the window and ``step_train``."""
    from kairos.training import pipeline

    tcfg, lcfg, _ = cfg.configs()
    pipeline.step_import(
        run_dir,
        str(wfile),
        timeframe=None,
        ask_source=None,
        spread=None,
        source_tz="UTC",
        dedupe="error",
        max_bars=None,
    )
    pipeline.step_train(run_dir, tcfg, lcfg)


def round_backtest(cfg: LoopConfig, run_dir: Path) -> dict[str, Any]:
    """``step_backtest`` with the gate; the rounds before count as prior trials."""
    from kairos.training import pipeline

    _, _, gcfg = cfg.configs()
    prior = cfg.prior_trials + (len(_history(cfg)) if cfg.count_rounds_as_trials else 0)
    rep = pipeline.step_backtest(run_dir, gate_cfg=gcfg, prior_trials=prior)
    return {
        "passed": rep["gate"]["passed"],
        "reason": rep["gate"]["reason"],
        "n_trials": rep["gate"]["n_trials"],
        "conditions": [
            {k: c[k] for k in ("name", "passed", "figure", "text") if k in c}
            for c in rep["gate"]["conditions"]
        ],
    }


def round_register(cfg: LoopConfig, run_dir: Path, name: str, rid: str, passed: bool) -> dict[str, Any]:
    """``step_export`` and ``registry.log_and_register``: registered under the alias only if ``passed``
    (a failed round is logged to MLflow for the record, never registered: nothing moves)."""
    from kairos.training import pipeline, registry

    pipeline.step_export(run_dir, name, f"loop-{rid}")
    reg = registry.log_and_register(
        run_dir,
        tracking_uri=cfg.tracking_uri or registry.default_tracking_uri(),
        name=name,
        alias=cfg.alias if passed else None,
        register=passed,
    )
    return {
        "run_id": reg.run_id,
        "registered": reg.registered,
        "version": reg.version,
        "alias_uri": reg.alias_uri,
        "reason": reg.reason,
    }


def run_round(
    cfg: LoopConfig,
    *,
    now: datetime | None = None,
    after_train: Callable[[Path], None] | None = None,
    step: Callable[..., Any] = direct_step,
) -> RoundResult:
    """One retraining round (module docstring). Never raises for a failed round: the result says why.

    ``after_train(run_dir)`` runs between training and the backtest (a hook for extensions that
    post-process the fold predictions; the tests use it to plant a known-good model). ``step(name,
    fn, *args)`` runs each step (``direct_step``; the Prefect flow runs each as a task)."""
    from kairos.features import ModelCardError
    from kairos.training import pipeline, registry
    from kairos.training.data import DataError
    from kairos.training.export import ParityError

    now = now or datetime.now(UTC)
    rid = now.strftime("%Y%m%dT%H%M%SZ")
    run_dir = cfg.dir / "rounds" / rid
    run_dir.mkdir(parents=True, exist_ok=True)
    res = RoundResult(rid, "error", "", str(run_dir), now.isoformat())
    t0 = time.perf_counter()
    _log("round_start", round=rid, sources=cfg.sources, window_days=cfg.window_days)
    try:
        res.promotion = step("promote", round_promote, cfg)
        cfg.configs()
        wfile, res.window = step("window", round_window, cfg, run_dir)
        res.name = registry.model_name(cfg.sources[0], name=cfg.name or None)
        step("train", round_train, cfg, run_dir, wfile)
        if after_train is not None:
            after_train(run_dir)
        res.gate = step("backtest", round_backtest, cfg, run_dir)
        why = pipeline.learned_nothing(run_dir)
        if why:
            res.status, res.reason = "learned_nothing", why
        else:
            passed = bool(res.gate["passed"])
            reg = step("register", round_register, cfg, run_dir, res.name, rid, passed)
            if not passed:
                res.status = "gate_failed"
                res.reason = f"not registered ({reg['run_id']} logged): {res.gate['reason']}"
            else:
                res.version, res.alias_uri = reg["version"], reg["alias_uri"]
                res.status = "registered" if reg["registered"] else "gate_failed"
                res.reason = reg["reason"]
    except DataError as e:
        res.status, res.reason = "data_error", str(e)
    except (pipeline.StepError, ModelCardError, ParityError, registry.NamingError) as e:
        res.status, res.reason = "error", f"{type(e).__name__}: {e}"
    except pipeline.LearnedNothing as e:
        res.status, res.reason = "learned_nothing", str(e)
    except Exception as e:
        res.status, res.reason = "error", f"{type(e).__name__}: {e}"
        (run_dir / "error.txt").write_text(traceback.format_exc())
    res.seconds = round(time.perf_counter() - t0, 3)
    (run_dir / "round.json").write_text(json.dumps(res.to_dict(), indent=2, default=str) + "\n")
    with (cfg.dir / "history.jsonl").open("a") as f:
        f.write(json.dumps(res.to_dict(), default=str) + "\n")
    _log(
        "round_end",
        round=rid,
        status=res.status,
        reason=res.reason[:2000],
        model=res.name,
        version=res.version,
        alias=res.alias_uri,
        seconds=res.seconds,
        promoted=bool(res.promotion and res.promotion.get("promoted")),
    )
    return res


def run_loop(
    cfg: LoopConfig,
    *,
    once: bool = False,
    max_rounds: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> RoundResult | None:
    """Rounds on the schedule until ``stop()`` (or ``max_rounds``); ``once`` runs one round now."""
    cfg.dir.mkdir(parents=True, exist_ok=True)
    serve_metrics(cfg)
    if once:
        return run_round(cfg)
    done, last = 0, None
    nxt = datetime.now(UTC) if cfg.schedule.cron is None else cfg.schedule.next_after(datetime.now(UTC))
    while not (stop and stop()) and (max_rounds is None or done < max_rounds):
        wait = (nxt - datetime.now(UTC)).total_seconds()
        if wait > 0:
            _log("waiting", next_round=nxt.isoformat(), seconds=round(wait, 1))
            check = cfg.auto_promote.interval_s if cfg.auto_promote.enabled else None
            next_check = time.monotonic() + check if check else math.inf
            while wait > 0 and not (stop and stop()):
                time.sleep(min(wait, 1.0))
                wait = (nxt - datetime.now(UTC)).total_seconds()
                if check and time.monotonic() >= next_check and wait > 0:
                    round_promote(cfg)
                    next_check = time.monotonic() + check
            if stop and stop():
                break
        started = datetime.now(UTC)
        last = run_round(cfg, now=started)
        done += 1
        nxt = cfg.schedule.next_after(started)
        while nxt <= datetime.now(UTC):  # a round longer than the interval: skip the missed slots
            nxt = cfg.schedule.next_after(nxt)
    return last
