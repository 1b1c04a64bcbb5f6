"""Model lifecycle in the MLflow registry: list, promote, rollback (`kairos models`, issue #16).

Aliases: ``champion`` is what inference serves (``models:/<name>@champion``, polled and hot-swapped,
ADR 0033); ``challenger`` is what `kairos-train loop` registers when a round passes the gate;
``previous-champion`` is kept by ``promote`` so that ``rollback`` can put it back. Every move is
recorded as a tag on the model version it concerns (``kairos.promoted_at``, ``kairos.rolled_back_at``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
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


def _client(tracking_uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    for logger in ("mlflow", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def list_versions(tracking_uri: str, name: str | None = None) -> list[VersionRow]:
    """Every version of every registered model (or of ``name``), newest first, with its aliases, gate
    verdict and out-of-sample figures from its training run."""
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
    return rows


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
