"""Model lifecycle in the MLflow registry: list, promote, rollback (`kairos models`, issue #16).

``promote_if_significant`` promotes the ``challenger`` only when the inference server's promotion
test (GetModelStatus, ``ModelStatus.promotion``: a one-sided Diebold-Mariano test of the per-bar net
returns of the challenger in shadow against the serving champion on the same live bars, ADR 0097)
says it is significantly better, and only when the server tested exactly the registry's champion and
challenger versions. Every decision, either way, is logged as one JSON line with its reason, counted
(``kairos_train_promotions_total{model,decision}`` where a registry is given) and, when promoted,
recorded on the version as tags (``kairos.promoted_by``, ``kairos.promotion_test``).

Aliases: ``champion`` is what inference serves (``models:/<name>@champion``, polled and hot-swapped,
ADR 0033); ``challenger`` is what `kairos-train loop` registers when a round passes the gate;
``previous-champion`` is kept by ``promote`` so that ``rollback`` can put it back. Every move is
recorded as a tag on the model version it concerns (``kairos.promoted_at``, ``kairos.rolled_back_at``).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"


class ModelsError(RuntimeError):
    """A lifecycle step that cannot be done (no such model, version or alias); the message says why."""


@dataclass
class VersionRow:
    name: str
    version: str
    aliases: list[str]
    created: str
    gate: str  # PASSED, FAILED, FORCED or "" (not a kairos-train run)
    sharpe: float | None = None
    sharpe_ci: tuple[float, float] | None = None
    dsr: float | None = None
    n_trials: float | None = None
    dataset: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created_us: int = 0
    expired: bool = False
    """The champion only: older than the maximum age without a newer passing version (ADR 0098)."""


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    for logger in ("mlflow", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def list_versions(
    tracking_uri: str, name: str | None = None, max_age_days: float = 0.0, now_us: int | None = None
) -> list[VersionRow]:
    """Every version of every registered model (or of ``name``), newest first, with its aliases, gate
    verdict and out-of-sample figures from its training run; the champion's ``expired`` by the
    inference server's rule (``kairos.inference.expiry.is_expired``) with ``max_age_days``."""
    c = _client(tracking_uri)
    models = c.search_registered_models(filter_string=f"name = '{name}'" if name else None)
    if name and not models:
        raise ModelsError(f"no registered model {name!r} in {tracking_uri}")
    rows: list[VersionRow] = []
    for m in sorted(models, key=lambda m: m.name):
        by_version: dict[str, list[str]] = {}
        for alias, v in (m.aliases or {}).items():
            by_version.setdefault(str(v), []).append(alias)
        for mv in sorted(c.search_model_versions(f"name = '{m.name}'"), key=lambda v: -int(v.version)):
            row = VersionRow(
                m.name,
                str(mv.version),
                sorted(by_version.get(str(mv.version), [])),
                datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M"),
                "",
                tags=dict(mv.tags or {}),
                created_us=int(mv.creation_timestamp) * 1000,
            )
            if mv.run_id:
                try:
                    run = c.get_run(mv.run_id)
                except Exception:
                    run = None
                if run is not None:
                    met, tags = run.data.metrics, run.data.tags
                    if "gate_passed" in tags:
                        row.gate = "PASSED" if tags["gate_passed"] == "True" else "FAILED"
                        if tags.get("registered_by_force") == "true":
                            row.gate = "FORCED"
                    row.sharpe = met.get("oos.model.sharpe")
                    if "oos.model.sharpe_ci_low" in met:
                        row.sharpe_ci = (met["oos.model.sharpe_ci_low"], met["oos.model.sharpe_ci_high"])
                    row.dsr = met.get("oos.model.dsr")
                    row.n_trials = met.get("gate.n_trials")
                    row.dataset = run.data.params.get("dataset.source", "")
            rows.append(row)
    _mark_expired(rows, max_age_days, now_us)
    return rows


def _mark_expired(rows: list[VersionRow], max_age_days: float, now_us: int | None) -> None:
    import time

    from kairos.inference.expiry import is_expired

    now = time.time_ns() // 1000 if now_us is None else now_us
    for champ in (r for r in rows if CHAMPION in r.aliases):
        newer = [
            r.created_us
            for r in rows
            if r.name == champ.name and int(r.version) > int(champ.version) and r.gate == "PASSED"
        ]
        champ.expired = is_expired(champ.created_us, max(newer, default=0), max_age_days, now)


def _alias_version(c: Any, name: str, alias: str) -> str | None:
    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


def promote(tracking_uri: str, name: str, version: str | None = None) -> tuple[str | None, str]:
    """Point ``champion`` at ``version`` (default: the ``challenger``); the old champion becomes
    ``previous-champion``. Returns (old champion, new champion). Inference swaps on its next poll."""
    c = _client(tracking_uri)
    if version is None:
        version = _alias_version(c, name, CHALLENGER)
        if version is None:
            raise ModelsError(f"{name} has no @{CHALLENGER}: name the version to promote")
    try:
        mv = c.get_model_version(name, version)
    except Exception as e:
        raise ModelsError(f"{name} has no version {version}") from e
    old = _alias_version(c, name, CHAMPION)
    if old == str(mv.version):
        return old, old
    if old is not None:
        c.set_registered_model_alias(name, PREVIOUS, old)
    c.set_registered_model_alias(name, CHAMPION, str(mv.version))
    c.set_model_version_tag(name, str(mv.version), "kairos.promoted_at", datetime.now(UTC).isoformat())
    if _alias_version(c, name, CHALLENGER) == str(mv.version):
        c.delete_registered_model_alias(name, CHALLENGER)  # promoted: no longer a challenger
    return old, str(mv.version)


def rollback(tracking_uri: str, name: str) -> tuple[str, str]:
    """Put ``previous-champion`` back as ``champion`` (the rolled-back version becomes
    ``previous-champion``, so a second rollback undoes the first). Returns (from, to)."""
    c = _client(tracking_uri)
    prev = _alias_version(c, name, PREVIOUS)
    cur = _alias_version(c, name, CHAMPION)
    if prev is None:
        raise ModelsError(f"{name} has no @{PREVIOUS} to roll back to (nothing was promoted over it)")
    if cur is None:
        raise ModelsError(f"{name} has no @{CHAMPION}")
    c.set_registered_model_alias(name, CHAMPION, prev)
    c.set_registered_model_alias(name, PREVIOUS, cur)
    c.set_model_version_tag(name, cur, "kairos.rolled_back_at", datetime.now(UTC).isoformat())
    return cur, prev


@dataclass
class PromotionDecision:
    name: str
    promoted: bool
    reason: str
    champion: str | None = None
    challenger: str | None = None
    test: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _status(addr: str, token: str, timeout_s: float) -> Any:
    import grpc

    from kairos.inference.auth import with_token
    from kairos.inference.v1 import inference_pb2, inference_pb2_grpc

    with with_token(grpc.insecure_channel(addr), token) as ch:
        stub = inference_pb2_grpc.InferenceServiceStub(ch)  # type: ignore[no-untyped-call]
        return stub.GetModelStatus(inference_pb2.GetModelStatusRequest(), timeout=timeout_s)


def promotion_decision(
    tracking_uri: str, name: str, inference_addr: str, token: str, timeout_s: float = 5.0
) -> PromotionDecision:
    """What ``promote_if_significant`` would do, and why (nothing is moved)."""
    import grpc

    c = _client(tracking_uri)
    champ, chal = _alias_version(c, name, CHAMPION), _alias_version(c, name, CHALLENGER)
    d = PromotionDecision(name, False, "", champ, chal)
    if chal is None:
        d.reason = f"{name} has no @{CHALLENGER}"
        return d
    if champ is None:
        d.reason = f"{name} has no @{CHAMPION} to test the challenger against"
        return d
    try:
        resp = _status(inference_addr, token, timeout_s)
    except grpc.RpcError as e:
        d.reason = f"inference GetModelStatus at {inference_addr}: {e.code().name} {e.details()}"
        return d
    serving = next((m for m in resp.models if m.role in ("serving", "")), None)
    if serving is None or serving.model_name != name or serving.model_version != champ:
        got = f"{serving.model_name} {serving.model_version}" if serving else "nothing"
        d.reason = (
            f"the server serves {got}, not {name} {champ} (@{CHAMPION}): its test is not of these versions"
        )
        return d
    shadow = next(
        (m for m in resp.models if m.role == "shadow" and m.model_name == name and m.model_version == chal),
        None,
    )
    if shadow is None:
        d.reason = f"the server does not run {name} {chal} (@{CHALLENGER}) in shadow (--shadow-models)"
        return d
    if not shadow.HasField("promotion"):
        d.reason = f"{name} {chal} has not been accounted on a bar beside the champion yet"
        return d
    p = shadow.promotion
    d.test = {
        "bars": p.bars,
        "mean_difference": p.mean_difference,
        "statistic": p.statistic,
        "p_value": p.p_value,
        "method": p.method,
        "significant": p.significant,
    }
    figures = (
        f"{p.bars} bars, mean difference {p.mean_difference:+.3g}/bar, t {p.statistic:.2f}, "
        f"p {p.p_value:.4g} ({p.method})"
    )
    if not p.significant:
        d.reason = f"not significant: {figures}"
        return d
    d.promoted = True
    d.reason = f"significantly better than {champ}: {figures}"
    return d


def promote_if_significant(
    tracking_uri: str,
    name: str,
    inference_addr: str,
    token: str,
    *,
    timeout_s: float = 5.0,
    registry: Any = None,
    component: str = "models",
) -> PromotionDecision:
    """Promote the challenger when the server's promotion test is significant (module docstring);
    log, count and tag every decision."""
    d = promotion_decision(tracking_uri, name, inference_addr, token, timeout_s)
    if d.promoted and d.challenger is not None:
        old, new = promote(tracking_uri, name, d.challenger)
        c = _client(tracking_uri)
        c.set_model_version_tag(name, new, "kairos.promoted_by", "significance test")
        c.set_model_version_tag(name, new, "kairos.promotion_test", json.dumps(d.test)[:4900])
        d.champion = old
    _log_decision(d, component)
    if registry is not None:
        _promotion_counter(registry).labels(name, "promoted" if d.promoted else "kept").inc()
    return d


_COUNTERS: dict[int, Any] = {}


def _promotion_counter(registry: Any) -> Any:
    from prometheus_client import Counter

    key = id(registry)
    if key not in _COUNTERS:
        _COUNTERS[key] = Counter(
            "kairos_train_promotions_total",
            "Automatic promotion decisions, by model and decision (promoted, kept).",
            ["model", "decision"],
            registry=registry,
        )
    return _COUNTERS[key]


def _log_decision(d: PromotionDecision, component: str) -> None:
    rec = {
        "timestamp": datetime.now(UTC).isoformat(),
        "level": "warning" if d.promoted else "info",
        "component": component,
        "event": "promotion" if d.promoted else "promotion_kept",
        **d.to_dict(),
    }
    print(json.dumps(rec, default=str), file=sys.stderr, flush=True)


@dataclass
class LiveRow:
    """One line of `kairos models list`: a registered version (None for a model served from a file)
    and, when the inference server serves it, what GetModelStatus says about it now."""

    version: VersionRow | None
    live: Any = None  # kairos.stack.serving.ServingModel


def live_models(addr: str, token: str, timeout_s: float = 2.0) -> tuple[list[Any] | None, str]:
    """GetModelStatus of the inference server at ``addr``: (models, "") or (None, why not)."""
    import grpc

    from kairos.stack.serving import serving_models

    if not addr:
        return None, "no inference address (no stack running in the run dir; --inference-addr)"
    try:
        return serving_models(addr, token, timeout_s), ""
    except grpc.RpcError as exc:
        code = exc.code()
        return None, f"{code.name if code else 'ERROR'}: {exc.details()}"


def join_live(rows: list[VersionRow], served: list[Any] | None) -> list[LiveRow]:
    """Each registered version with the served model of the same name and version (the serving one or
    a shadow challenger); served models that are not registered versions (a file) come last."""
    by_key = {(m.name, m.version): m for m in served or [] if m.name}
    out = [LiveRow(r, by_key.pop((r.name, r.version), None)) for r in rows]
    out += [LiveRow(None, m) for m in served or [] if (m.name, m.version) in by_key]
    return out
