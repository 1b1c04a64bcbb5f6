"""Model loading: ONNX Runtime sessions, model cards, MLflow registry, schema-hash check, hot swap.

A ``ServedModel`` is immutable: a swap replaces the manager's reference in one assignment, so every
prediction is made entirely by one version and carries that version's name. Loads run in a worker
thread (download, session creation, warm-up) while the old version keeps serving; a failed or refused
load leaves the old version in place and records the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]  # ships no type information

from kairos.features.card import DecisionPolicy, ModelCardError
from kairos.features.schema import DAY_MS, FeatureSchema, schema_for
from kairos.inference.logs import get_logger
from kairos.inference.metrics import Metrics
from kairos.inference.v1 import inference_pb2 as pb

CARD_METADATA_KEY = "kairos.model_card"
CARD_FILE = "model.card.json"
CLASSES = ("down", "flat", "up")


class ModelLoadError(Exception):
    """The model could not be loaded (missing file, bad ONNX, registry error)."""


class ModelRefused(ModelLoadError):
    """The model loaded but does not fit this server (feature schema hash, shapes, card)."""


@dataclass(frozen=True)
class PipelineSpec:
    """What the server's feature pipeline computes; a model must have been trained on exactly this."""

    schema_hash: str
    feature_names: tuple[str, ...]
    bars_per_row: int  # bars of history one feature row needs (kairos.features SCHEMA.window)
    blocks: tuple[str, ...] = ("base",)

    def for_card(self, card: dict[str, Any], where: str) -> PipelineSpec:
        """The pipeline of the feature blocks the card names (ADR 0104); this one for a base card."""
        raw = card.get("feature_blocks") or ["base"]
        try:
            schema = schema_for(raw)
        except (TypeError, ValueError) as e:
            raise ModelRefused(f"{where}: feature_blocks {raw!r}: {e}") from None
        if schema.blocks == self.blocks:
            return self
        return PipelineSpec(schema.hash, schema.names, self.bars_per_row, schema.blocks)


@dataclass(frozen=True)
class ServedModel:
    """One loaded, checked and warmed-up model version."""

    name: str
    version: str
    source_uri: str
    card: dict[str, Any]
    session: ort.InferenceSession = field(repr=False)
    input_name: str
    output_name: str
    rows: int  # feature rows per model input (the model's sequence length; 1 for a rank-2 input)
    n_features: int
    rank: int
    timeframe_s: int
    output_names: tuple[str, ...]
    feature_schema_hash: str
    feature_names: tuple[str, ...]
    history_bars: int  # closed bars needed before the first prediction
    loaded_time_us: int
    sha256: str
    policy: pb.DecisionPolicy | None = None
    """The card's decision policy, attached to every signal; None for a card without one."""
    vol_index: int = -1
    """Column of the policy's vol_feature in a feature row (-1 without a policy)."""
    vol_unit: float = 0.0
    created_time_us: int = 0
    """When the version was registered (registry) or trained (card created_utc, else the file's mtime),
    microseconds since the epoch; 0 if unknown."""
    symbols: frozenset[str] = frozenset()
    """The card's symbols (the model was validated on them only); empty: any symbol."""
    blocks: tuple[str, ...] = ("base",)
    """The card's feature blocks (ADR 0104): the base block's columns come first, then daily and cross."""

    @property
    def schema(self) -> FeatureSchema:
        return schema_for(self.blocks)

    @property
    def warmup_bars(self) -> int:
        """Closed bars a symbol needs before its first prediction (``ModelStatus.window``): the base
        window, or for the daily block (ADR 0104) a day of bars before each input row if that is more
        (an upper bound: across a weekend a day back is fewer bars)."""
        if "daily" not in self.blocks:
            return self.history_bars
        day = DAY_MS // (self.timeframe_s * 1000) + 1
        return max(self.history_bars, day + self.rows)

    def run(self, x: np.ndarray) -> np.ndarray:
        """Probabilities [n, n_outputs] for inputs [n, rows, n_features] (float32)."""
        if self.rank == 2:
            x = x.reshape(x.shape[0], self.n_features)
        out = self.session.run([self.output_name], {self.input_name: x})[0]
        return np.asarray(out, dtype=np.float32)


def session_options() -> ort.SessionOptions:
    # One intra-op thread: the default pool gives ms-scale p99 when cores are shared (DESIGN.md).
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


def _card_from(session: ort.InferenceSession, onnx_path: Path) -> dict[str, Any]:
    meta = session.get_modelmeta().custom_metadata_map
    raw = meta.get(CARD_METADATA_KEY)
    where = f"{onnx_path} metadata_props[{CARD_METADATA_KEY}]"
    if raw is None:
        beside = onnx_path.with_name(CARD_FILE)
        if not beside.is_file():
            raise ModelRefused(
                f"{onnx_path}: no model card (neither metadata_props[{CARD_METADATA_KEY}] nor {beside})"
            )
        raw = beside.read_text(encoding="utf-8")
        where = str(beside)
    try:
        card = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ModelRefused(f"{where}: model card is not valid JSON: {e}") from None
    if not isinstance(card, dict):
        raise ModelRefused(f"{where}: model card must be a JSON object")
    for key in ("name", "version", "feature_schema_hash", "feature_names", "timeframe_s"):
        if key not in card:
            raise ModelRefused(f"{where}: model card lacks {key!r}")
    return card


def build_served_model(
    onnx_path: Path,
    *,
    name: str | None,
    version: str | None,
    source_uri: str,
    pipeline: PipelineSpec,
    max_batch: int,
) -> ServedModel:
    """Open, check against the pipeline and warm up one model file (blocking; call from a thread)."""
    try:
        data = onnx_path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"cannot read model {onnx_path}: {e.strerror}") from None
    try:
        session = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types for every parse/graph problem
        raise ModelLoadError(f"{onnx_path}: ONNX Runtime cannot load the model: {e}") from None
    card = _card_from(session, onnx_path)
    pipeline = pipeline.for_card(card, f"{onnx_path} model card")
    if "cross" in pipeline.blocks and len(card.get("symbols") or []) < 2:
        raise ModelRefused(
            f"{onnx_path} model card: feature_blocks has 'cross' but the card lists symbols "
            f"{card.get('symbols')!r}; cross-symbol features need the symbols they were trained on"
        )

    if card["feature_schema_hash"] != pipeline.schema_hash:
        raise ModelRefused(
            f"model {card['name']} {version or card['version']} was trained on feature schema "
            f"{card['feature_schema_hash']}, but this server computes {pipeline.schema_hash} for the "
            f"feature blocks {list(pipeline.blocks)}; "
            "retrain the model on the current kairos.features or serve it with the matching server"
        )
    if tuple(card["feature_names"]) != pipeline.feature_names:
        raise ModelRefused(
            f"model {card['name']}: card feature_names {card['feature_names']} differ from the "
            f"pipeline's {list(pipeline.feature_names)}"
        )

    policy, vol_index, vol_unit = _policy_from(card, where=f"{onnx_path} model card")

    inputs = session.get_inputs()
    outputs = session.get_outputs()
    want_in = card.get("input_name", "features")
    want_out = card.get("output_name", "probs")
    inp = next((i for i in inputs if i.name == want_in), None)
    out = next((o for o in outputs if o.name == want_out), None)
    if inp is None or out is None:
        raise ModelRefused(
            f"{onnx_path}: expected input {want_in!r} and output {want_out!r}, the graph has inputs "
            f"{[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
        )
    if inp.type != "tensor(float)":
        raise ModelRefused(f"{onnx_path}: input {inp.name} is {inp.type}, expected tensor(float)")
    shape = list(inp.shape)
    n_features = len(pipeline.feature_names)
    if len(shape) == 3 and shape[2] == n_features and isinstance(shape[1], int):
        rows, rank = int(shape[1]), 3
    elif len(shape) == 2 and shape[1] == n_features:
        rows, rank = 1, 2
    else:
        raise ModelRefused(
            f"{onnx_path}: input {inp.name} has shape {shape}, expected [batch, window, {n_features}] "
            f"or [batch, {n_features}]"
        )
    if "window" in card and rank == 3 and int(card["window"]) != rows:
        raise ModelRefused(f"{onnx_path}: card window {card['window']} != graph input window {rows}")
    timeframe_s = int(card["timeframe_s"])
    if timeframe_s <= 0:
        raise ModelRefused(f"{onnx_path}: card timeframe_s must be positive, got {timeframe_s}")

    # Warm up every batch size the micro-batcher can produce, and check the output on the way.
    n_out = 0
    for b in range(1, max_batch + 1):
        x = np.zeros((b, rows, n_features) if rank == 3 else (b, n_features), dtype=np.float32)
        y = session.run([out.name], {inp.name: x})[0]
        if y.ndim != 2 or y.shape[0] != b or not np.all(np.isfinite(y)):
            raise ModelRefused(f"{onnx_path}: output {out.name} for batch {b} has shape {y.shape}")
        n_out = y.shape[1]
    classes = tuple(card.get("classes", CLASSES))
    output_names = classes if len(classes) == n_out else tuple(f"{out.name}[{i}]" for i in range(n_out))

    return ServedModel(
        name=name or str(card["name"]),
        version=version or str(card["version"]),
        source_uri=source_uri,
        card=card,
        session=session,
        input_name=inp.name,
        output_name=out.name,
        rows=rows,
        n_features=n_features,
        rank=rank,
        timeframe_s=timeframe_s,
        output_names=output_names,
        feature_schema_hash=str(card["feature_schema_hash"]),
        feature_names=tuple(card["feature_names"]),
        history_bars=pipeline.bars_per_row + rows - 1,
        blocks=pipeline.blocks,
        loaded_time_us=time.time_ns() // 1000,
        sha256="sha256:" + hashlib.sha256(data).hexdigest(),
        policy=policy,
        vol_index=vol_index,
        vol_unit=vol_unit,
        symbols=_symbols_from(card, f"{onnx_path} model card"),
    )


def _symbols_from(card: dict[str, Any], where: str) -> frozenset[str]:
    raw = card.get("symbols") or []
    if not isinstance(raw, list) or not all(isinstance(s, str) and s for s in raw):
        raise ModelRefused(f"{where}: card symbols must be a list of symbol names, got {raw!r}")
    return frozenset(raw)


def _policy_from(card: dict[str, Any], where: str) -> tuple[pb.DecisionPolicy | None, int, float]:
    """The card's decision policy as the signal carries it; a policy that cannot be applied refuses
    the model, naming the field (the same rules execution applies to every signal)."""
    raw = card.get("policy")
    if raw is None:
        return None, -1, 0.0
    try:
        pol = DecisionPolicy.from_dict(raw, where)
    except ModelCardError as e:
        raise ModelRefused(str(e)) from None
    names = list(card["feature_names"])
    if pol.vol_feature not in names:
        raise ModelRefused(f"{where}: policy.vol_feature {pol.vol_feature!r} is not one of its features")
    msg = pb.DecisionPolicy(
        entry_edge=pol.entry_edge,
        exit_edge=pol.exit_edge,
        move_up=pol.move_up,
        move_down=pol.move_down,
        min_hold_bars=pol.min_hold_bars,
        max_hold_bars=pol.max_hold_bars,
        cooldown_bars=pol.cooldown_bars,
        max_lots=pol.max_lots,
        target_vol=pol.target_vol,
        stop_vol_mult=pol.stop_vol_mult,
    )
    return msg, names.index(pol.vol_feature), pol.vol_unit


@dataclass(frozen=True)
class RegistryRef:
    name: str
    alias: str | None
    version: str | None


def parse_models_uri(uri: str) -> RegistryRef | None:
    """models:/name@alias or models:/name/version; None for anything else (a file path)."""
    if not uri.startswith("models:/"):
        return None
    rest = uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in name:
            return RegistryRef(name, alias, None)
    elif rest.count("/") == 1:
        name, version = rest.split("/")
        if name and version.isdigit():
            return RegistryRef(name, None, version)
    raise ModelLoadError(f"model URI {uri!r}: expected models:/<name>@<alias> or models:/<name>/<version>")


class ModelSource:
    """Where versions come from: ``current_version()`` is cheap (polled), ``load(version)`` is not."""

    def __init__(self, uri: str, tracking_uri: str, pipeline: PipelineSpec, max_batch: int) -> None:
        self.uri = uri
        self.tracking_uri = tracking_uri
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.ref = parse_models_uri(uri)
        self._client: Any = None

    def _mlflow(self) -> Any:
        if self._client is None:
            # Imported lazily: mlflow costs ~1 s to import and a file-served model never needs it.
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def current_version(self) -> str:
        """The version the source points at now: registry version, or a file's size+mtime fingerprint."""
        if self.ref is None:
            try:
                st = os.stat(self.uri)
            except OSError as e:
                raise ModelLoadError(f"cannot read model {self.uri}: {e.strerror}") from None
            return f"file:{st.st_size}:{st.st_mtime_ns}"
        if self.ref.version is not None:
            return self.ref.version
        try:
            mv = self._mlflow().get_model_version_by_alias(self.ref.name, self.ref.alias)
        except Exception as e:  # MlflowException for unknown name/alias, OperationalError for the store
            raise ModelLoadError(f"{self.uri}: registry lookup failed: {e}") from None
        return str(mv.version)

    def load(self, version: str) -> ServedModel:
        if self.ref is None:
            model = build_served_model(
                Path(self.uri),
                name=None,
                version=None,
                source_uri=self.uri,
                pipeline=self.pipeline,
                max_batch=self.max_batch,
            )
            return dataclasses.replace(model, created_time_us=_file_created_us(Path(self.uri), model.card))
        model = self._load_registered(version)
        created = 0
        with contextlib.suppress(Exception):  # the age is informative; a registry hiccup must not refuse
            created = int(self._mlflow().get_model_version(self.ref.name, version).creation_timestamp) * 1000
        return dataclasses.replace(model, created_time_us=created)

    def newest_passing_after(self, version: str) -> int:
        """Creation time (us) of the newest registered version newer than ``version`` whose training run
        passed the gate (run tag gate_passed = True; kairos-train registers nothing else but forced
        runs); 0 if none, or for a file."""
        if self.ref is None or not version.isdigit():
            return 0
        c = self._mlflow()
        newer = [
            mv
            for mv in c.search_model_versions(f"name = '{self.ref.name}'")
            if str(mv.version).isdigit() and int(mv.version) > int(version)
        ]
        for mv in sorted(newer, key=lambda v: -int(v.version)):
            try:
                tags = c.get_run(mv.run_id).data.tags if mv.run_id else {}
            except Exception:
                continue
            if tags.get("gate_passed") == "True" and tags.get("registered_by_force") != "true":
                return int(mv.creation_timestamp) * 1000
        return 0

    def _load_registered(self, version: str) -> ServedModel:
        assert self.ref is not None
        import mlflow.artifacts

        with tempfile.TemporaryDirectory(prefix="kairos-model-") as tmp:
            try:
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{self.ref.name}/{version}",
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
            except Exception as e:
                raise ModelLoadError(f"{self.uri} (version {version}): download failed: {e}") from None
            found = sorted(Path(local).rglob("*.onnx"))
            if not found:
                raise ModelLoadError(f"{self.uri} (version {version}): no .onnx file among the artifacts")
            return build_served_model(
                found[0],
                name=self.ref.name,
                version=version,
                source_uri=self.uri,
                pipeline=self.pipeline,
                max_batch=self.max_batch,
            )


class ModelManager:
    """Holds the serving model, polls its source and swaps versions atomically."""

    def __init__(self, source: ModelSource, metrics: Metrics, poll_interval_s: float) -> None:
        self.source = source
        self.metrics = metrics
        self.poll_interval_s = poll_interval_s
        self.current: ServedModel | None = None
        self.state = pb.MODEL_STATE_LOADING
        self.last_error = ""
        self.predictions_total = 0
        self._current_key = ""
        self._failed_key = ""
        self._last_exc: ModelLoadError | None = None
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[ServedModel], None]] = []
        self.log = get_logger(source=source.uri)

    def on_swap(self, fn: Callable[[ServedModel], None]) -> None:
        self._listeners.append(fn)

    async def load_initial(self) -> ServedModel:
        """First load; raises (the server does not start without a model)."""
        await self.check()
        if self.current is None:
            raise self._last_exc or ModelLoadError(f"{self.source.uri}: no model loaded")
        return self.current

    async def check(self) -> bool:
        """Load the source's current version if it differs from the serving one; True if swapped."""
        async with self._lock:
            try:
                key = await asyncio.to_thread(self.source.current_version)
            except ModelLoadError as e:
                self._last_exc = e
                self._fail(str(e), "failed", "")
                return False
            if key == self._current_key or key == self._failed_key:
                return False
            self.state = pb.MODEL_STATE_LOADING
            started = time.perf_counter()
            try:
                model = await asyncio.to_thread(self.source.load, key)
            except ModelRefused as e:
                self._last_exc = e
                self._fail(str(e), "refused", key)
                return False
            except ModelLoadError as e:
                self._last_exc = e
                self._fail(str(e), "failed", key)
                return False
            old = self.current
            self.current = model  # the swap: one reference assignment, seen by the next request
            self._current_key = key
            self._failed_key = ""
            self.state = pb.MODEL_STATE_SERVING
            self.last_error = ""
            self.metrics.model_loads.labels("ok").inc()
            if old is not None:
                self.metrics.model_info.remove(old.name, old.version, old.source_uri)
                self.metrics.model_validation.remove(*validation_labels(old.name, old.version, old.card))
            self.metrics.model_info.labels(model.name, model.version, model.source_uri).set(1)
            verdict = validation_labels(model.name, model.version, model.card)
            self.metrics.model_validation.labels(*verdict).set(1)
            self.log.info(
                "model serving",
                model=model.name,
                version=model.version,
                previous=old.version if old else None,
                rows=model.rows,
                timeframe_s=model.timeframe_s,
                schema=model.feature_schema_hash,
                load_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            for fn in self._listeners:
                fn(model)
            return True

    def _fail(self, message: str, result: str, key: str) -> None:
        repeated = message == self.last_error and self.state == pb.MODEL_STATE_FAILED
        self.last_error = message
        self.state = pb.MODEL_STATE_FAILED
        if key:
            self._failed_key = key  # do not retry the same broken version on every poll
        self.metrics.model_loads.labels(result).inc()
        if repeated:  # e.g. an alias a promotion removed, polled again: counted, logged once
            return
        self.log.error(
            "model load failed" if result == "failed" else "model refused",
            error=message,
            still_serving=self.current.version if self.current else None,
        )

    async def poll_forever(self) -> None:
        if self.poll_interval_s <= 0:
            return
        while True:
            await asyncio.sleep(self.poll_interval_s)
            with contextlib.suppress(Exception):
                await self.check()

    def status(self) -> pb.ModelStatus:
        m = self.current
        st = pb.ModelStatus(
            source_uri=self.source.uri,
            state=self.state,
            last_error=self.last_error,
            predictions_total=self.predictions_total,
        )
        if m is not None:
            st.model_name = m.name
            st.model_version = m.version
            st.feature_schema_hash = m.feature_schema_hash
            st.feature_names.extend(m.feature_names)
            st.output_names.extend(m.output_names)
            st.window = m.warmup_bars
            st.timeframe_s = m.timeframe_s
            st.loaded_time_us = m.loaded_time_us
            st.created_time_us = m.created_time_us
            validation = validation_from_card(m.card)
            if validation is not None:
                st.validation.CopyFrom(validation)
        return st


def _file_created_us(path: Path, card: dict[str, Any]) -> int:
    """A model file's training time: the card's created_utc, else the file's modification time."""
    from datetime import datetime

    raw = str(card.get("created_utc") or "")
    if raw:
        with contextlib.suppress(ValueError):
            return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1_000_000)
    try:
        return path.stat().st_mtime_ns // 1000
    except OSError:
        return 0


def validation_labels(name: str, version: str, card: dict[str, Any]) -> tuple[str, ...]:
    """The labels of ``kairos_inference_model_validation_info`` for a model: name, version, gate
    (PASSED, FAILED, UNVALIDATED), net Sharpe, its interval and the trials ("" when unvalidated)."""
    v = validation_from_card(card)
    if v is None:
        return (name, version, "UNVALIDATED", "", "", "")
    return (
        name,
        version,
        "PASSED" if v.gate_passed else "FAILED",
        f"{v.sharpe:.2f}",
        f"[{v.sharpe_ci_low:.2f}, {v.sharpe_ci_high:.2f}] ({v.sharpe_ci_level:.0%})",
        str(v.n_trials),
    )


def validation_from_card(card: dict[str, Any]) -> pb.ModelValidation | None:
    """The gate's verdict and Sharpe interval from a model card's metrics (training writes them;
    docs/adr/0083); None for a card without a verdict, i.e. a model nobody validated."""
    metrics = card.get("metrics") or {}
    gate = metrics.get("gate")
    if not isinstance(gate, dict) or "passed" not in gate:
        return None
    low, high = (metrics.get("sharpe_ci") or [0.0, 0.0])[:2]
    return pb.ModelValidation(
        gate_passed=bool(gate["passed"]),
        verdict=str(gate.get("reason", "")),
        sharpe=float(metrics.get("sharpe", 0.0)),
        sharpe_ci_low=float(low),
        sharpe_ci_high=float(high),
        sharpe_ci_level=float(metrics.get("sharpe_ci_level", 0.0)),
        deflated_sharpe=float(metrics.get("dsr", 0.0)),
        n_trials=int(metrics.get("n_trials", 0)),
        net_return=float(metrics.get("net_return", 0.0)),
    )
