"""Walk-forward training of every model family, calibrated and deterministic for a given seed.

Samples are bars in time order. The first ``min_train_frac`` of them only ever train; the rest is cut
into ``folds`` consecutive validation blocks. Fold k trains on the samples before block k (all of
them: "expanding", or the latest ``rolling_train``: "rolling") minus a purge gap of ``purge`` bars
(default: the label horizon), so no training label reaches into the validation block. Inside each
fold the last ``inner_frac`` of the training samples (again behind a purge gap) is the inner fold:
early stopping, the calibration temperature and the "learned nothing" test use it; the validation
block is never looked at while fitting. The exported model is trained the same way on all samples.

Families: torch ``mlp``/``tcn``/``gru`` (an ensemble of ``seeds`` networks, probabilities averaged)
and the tabular ``lgbm``/``logreg`` (python/kairos/training/tabular.py). Losses are sample-weighted
by label uniqueness and not class-balanced: the probabilities estimate frequencies.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from kairos.features.schema import FeatureSchema, schema_for
from kairos.training import tabular
from kairos.training.calibrate import Calibration, apply_temperature, calibrate, log_loss, priors
from kairos.training.labels import uniqueness_weights, windows
from kairos.training.models import ARCHITECTURES, KairosNet, ModelConfig

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
# (fold label, epoch, epochs, train loss, early-stop loss)
EpochCallback = Callable[[str, int, int, float, float], None]

TABULAR = ("lgbm", "logreg")
FAMILIES = (*ARCHITECTURES, *TABULAR)
BASELINE_FAMILIES = ("logreg", "lgbm")
"""The learned baselines every candidate is trained beside, on the same folds."""
TABULAR_WINDOW = 1
"""Feature rows a tabular model reads: the features already summarise up to 240 bars of history."""


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "mlp"
    """Model family: ``mlp``, ``tcn``, ``gru`` (torch), ``lgbm`` or ``logreg``."""
    window: int = 16
    """Feature rows per torch model input (tabular models read TABULAR_WINDOW rows)."""
    hidden: int = 32
    dropout: float = 0.1
    epochs: int = 60
    """Upper bound; early stopping usually ends sooner."""
    patience: int = 6
    """Epochs without a better inner-fold loss before stopping (best weights are restored)."""
    batch_size: int = 128
    """Upper bound: small training sets use smaller batches (min_steps_per_epoch)."""
    min_steps_per_epoch: int = 40
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seeds: int = 1
    """Torch: networks in the ensemble (seeds seed .. seed+seeds-1), probabilities averaged."""
    lgbm: tabular.LgbmParams = field(default_factory=tabular.LgbmParams)
    logreg: tabular.LogregParams = field(default_factory=tabular.LogregParams)
    folds: int = 4
    scheme: Literal["expanding", "rolling"] = "expanding"
    rolling_train: int = 0
    """Rolling scheme: training samples per fold (0 = as many as the first fold has)."""
    min_train_frac: float = 0.5
    purge: int | None = None
    """Bars between training and validation samples; None = the label horizon."""
    inner_frac: float = 0.2
    """Share of a fold's training samples held out (behind the purge) as its inner fold."""
    uniqueness: bool = True
    """Weight samples by the average uniqueness of their label spans."""
    seed: int = 0
    threads: int = 1
    features: tuple[str, ...] = ("base",)
    """Feature blocks (``kairos.features.schema.BLOCKS``): base, plus daily and/or cross (ADR 0104)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    @property
    def schema(self) -> FeatureSchema:
        return schema_for(self.features)

    @property
    def input_window(self) -> int:
        return TABULAR_WINDOW if self.arch in TABULAR else self.window

    def family(self, arch: str) -> TrainConfig:
        return replace(self, arch=arch)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["lgbm"] = tabular.LgbmParams(**d.get("lgbm", {}))
        d["logreg"] = tabular.LogregParams(**d.get("logreg", {}))
        d["features"] = tuple(schema_for(d.get("features")).blocks)  # runs from before blocks: base
        return cls(**d)


@dataclass
class Fold:
    k: int
    train: IntArray
    early: IntArray
    """The inner fold (early stopping, calibration)."""
    val: IntArray

    def span(self, times: Any) -> dict[str, str]:
        return {"val_first": str(times[int(self.val[0])]), "val_last": str(times[int(self.val[-1])])}


@dataclass
class Model:
    """A fitted, calibrated model of any family: ``predict`` gives calibrated (down, flat, up)."""

    family: str
    window: int
    n_features: int
    calibration: Calibration
    nets: list[KairosNet] = field(default_factory=list)
    estimator: Any = None
    best_epoch: int = 0
    epochs_run: int = 0
    train_loss: list[float] = field(default_factory=list)
    early_loss: list[float] = field(default_factory=list)

    @property
    def learned(self) -> bool:
        return self.calibration.learned

    def raw_probs(self, x: F32) -> FloatArray:
        if self.nets:
            mean: FloatArray = np.mean([predict_net(n, x) for n in self.nets], axis=0)
            return mean
        return tabular.predict_proba(self.estimator, x)

    def predict(self, x: F32) -> FloatArray:
        return apply_temperature(self.raw_probs(x), self.calibration.temperature, self.calibration.bias)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"family": self.family, "window": self.window, **self.calibration.to_dict()}
        if self.nets:
            out |= {"seeds": len(self.nets), "best_epoch": self.best_epoch, "epochs_run": self.epochs_run}
        elif self.family == "lgbm":
            out["trees"] = int(self.estimator.best_iteration_ or self.estimator.n_estimators)
        return out


@dataclass
class WalkForward:
    folds: list[Fold]
    probs: dict[str, list[FloatArray]]
    """Calibrated class probabilities of each family on each fold's validation samples."""
    models: dict[str, list[Model]]


def seed_everything(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def purged_before(rows: IntArray, first: int, purge: int, clock: IntArray | None = None) -> IntArray:
    """``rows`` more than ``purge`` bars before row ``first`` on ``clock`` (a row's time rank across
    the symbols of a run, ``kairos.training.panel``; None: the row number, one symbol)."""
    if clock is None:
        out: IntArray = rows[rows < first - purge]
    else:
        out = rows[clock[rows] < clock[first] - purge]
    return out


def split_early(
    train: IntArray, frac: float, purge: int, clock: IntArray | None = None
) -> tuple[IntArray, IntArray]:
    n_early = max(1, int(len(train) * frac))
    early = train[-n_early:]
    fit = purged_before(train, int(early[0]), purge, clock)
    return fit, early


def make_folds(idx: IntArray, cfg: TrainConfig, purge: int, clock: IntArray | None = None) -> list[Fold]:
    """Walk-forward folds over the samples ``idx`` (in time order: sorted rows for one symbol, clock
    order for several, see ``kairos.training.panel``)."""
    n = len(idx)
    if cfg.folds < 1:
        raise ValueError("folds must be >= 1")
    start = int(n * cfg.min_train_frac)
    block = (n - start) // cfg.folds
    if start < 50 or block < 20:
        need = max(100, int(np.ceil(20 * cfg.folds / (1 - cfg.min_train_frac))))
        raise ValueError(
            f"{n} samples are too few for {cfg.folds} folds (need >= 50 initial training and 20 per fold: "
            f"at least {need} samples)"
        )
    folds = []
    for k in range(cfg.folds):
        lo = start + k * block
        hi = n if k == cfg.folds - 1 else lo + block
        val = idx[lo:hi]
        train = idx[:lo]
        train = purged_before(train, int(val[0]), purge, clock)
        if cfg.scheme == "rolling":
            keep = cfg.rolling_train or start
            train = train[-keep:]
        fit, early = split_early(train, cfg.inner_frac, purge, clock)
        if len(fit) < 20:
            raise ValueError(f"fold {k}: only {len(fit)} training samples after purging (need >= 20)")
        folds.append(Fold(k, fit, early, val))
    return folds


def sample_weights(end: IntArray, idx: IntArray, cfg: TrainConfig) -> FloatArray:
    """Uniqueness weights of ``idx`` normalised to mean 1 (ones when ``cfg.uniqueness`` is off)."""
    if not cfg.uniqueness or len(idx) == 0:
        return np.ones(len(idx))
    w = uniqueness_weights(end, idx)
    out: FloatArray = w / w.mean()
    return out


def predict_net(net: KairosNet, x: F32, batch: int = 4096) -> FloatArray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(torch.softmax(net(torch.from_numpy(x[i : i + batch])), dim=-1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 3))


def _fit_net(
    x_fit: F32,
    y_fit: IntArray,
    w_fit: FloatArray,
    x_early: F32,
    y_early: IntArray,
    w_early: FloatArray,
    cfg: TrainConfig,
    seed: int,
    label: str,
    on_epoch: EpochCallback | None,
) -> tuple[KairosNet, int, int, list[float], list[float]]:
    seed_everything(seed, cfg.threads)
    mcfg = ModelConfig(
        arch=cfg.arch, window=cfg.window, n_features=x_fit.shape[2], hidden=cfg.hidden, dropout=cfg.dropout
    )
    net = KairosNet(mcfg)
    net.standardize.fit(x_fit)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt, wt = torch.from_numpy(x_fit), torch.from_numpy(y_fit), torch.from_numpy(w_fit).float()
    xe, ye, we = torch.from_numpy(x_early), torch.from_numpy(y_early), torch.from_numpy(w_early).float()
    # Enough optimiser steps per epoch even on small data (a 2,000-sample H1 fold at batch 256 is 8).
    batch = max(16, min(cfg.batch_size, len(xt) // cfg.min_steps_per_epoch))
    gen = torch.Generator().manual_seed(seed)
    best = (float("inf"), 0, copy.deepcopy(net.state_dict()))
    train_hist: list[float] = []
    early_hist: list[float] = []
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(order), batch):
            b = order[i : i + batch]
            opt.zero_grad()
            loss = (loss_fn(net(xt[b]), yt[b]) * wt[b]).sum() / wt[b].sum()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        net.eval()
        with torch.no_grad():
            early_loss = float((loss_fn(net(xe), ye) * we).sum() / we.sum())
        train_hist.append(total / len(xt))
        early_hist.append(early_loss)
        if on_epoch:
            on_epoch(label, epoch, cfg.epochs, total / len(xt), early_loss)
        if early_loss < best[0] - 1e-5:
            best = (early_loss, epoch, copy.deepcopy(net.state_dict()))
        elif epoch - best[1] >= cfg.patience:
            break
    net.load_state_dict(best[2])
    net.eval()
    return net, best[1], epoch, train_hist, early_hist


def fit_model(
    x_fit: F32,
    y_fit: IntArray,
    w_fit: FloatArray,
    x_early: F32,
    y_early: IntArray,
    w_early: FloatArray,
    cfg: TrainConfig,
    *,
    label: str = "final",
    on_epoch: EpochCallback | None = None,
) -> Model:
    """Fit ``cfg.arch`` on (x_fit, y_fit), stop early and calibrate on the inner fold (x_early, y_early)."""
    n_features = x_fit.shape[2]
    if cfg.arch in ARCHITECTURES:
        nets, best_epoch, epochs_run = [], 0, 0
        train_hist: list[float] = []
        early_hist: list[float] = []
        for s in range(max(1, cfg.seeds)):
            tag = label if cfg.seeds <= 1 else f"{label} seed {s + 1}"
            net, be, er, th, eh = _fit_net(
                x_fit, y_fit, w_fit, x_early, y_early, w_early, cfg, cfg.seed + s, tag, on_epoch
            )
            nets.append(net)
            if s == 0:
                best_epoch, epochs_run, train_hist, early_hist = be, er, th, eh
        raw = np.mean([predict_net(n, x_early) for n in nets], axis=0)
        cal = calibrate(raw, y_early, w_early, y_fit, w_fit)
        return Model(
            cfg.arch, cfg.window, n_features, cal, nets, None, best_epoch, epochs_run, train_hist, early_hist
        )
    if cfg.arch == "lgbm":
        est = tabular.fit_lgbm(
            x_fit, y_fit, w_fit, x_early, y_early, w_early, cfg.lgbm, cfg.seed, cfg.threads
        )
    elif cfg.arch == "logreg":
        est = tabular.fit_logreg(x_fit, y_fit, w_fit, cfg.logreg, cfg.seed)
    else:
        raise ValueError(f"unknown model family {cfg.arch!r}: choose one of {FAMILIES}")
    raw = tabular.predict_proba(est, x_early)
    cal = calibrate(raw, y_early, w_early, y_fit, w_fit)
    return Model(cfg.arch, x_fit.shape[1], n_features, cal, [], est)


def fold_metrics(p: FloatArray, y: IntArray, y_train: IntArray) -> dict[str, float]:
    """Out-of-sample quality of calibrated probabilities ``p`` against labels ``y``."""
    prior = np.tile(priors(y_train), (len(y), 1))
    onehot = np.eye(3)[y]
    return {
        "log_loss": log_loss(p, y),
        "prior_log_loss": log_loss(prior, y),
        "accuracy": float((p.argmax(axis=1) == y).mean()),
        "brier": float(((p - onehot) ** 2).sum(axis=1).mean()),
    }


def _fit_on(
    features: FloatArray,
    y: IntArray,
    end: IntArray,
    fit_idx: IntArray,
    early: IntArray,
    cfg: TrainConfig,
    label: str,
    on_epoch: EpochCallback | None,
) -> Model:
    w = cfg.input_window
    return fit_model(
        windows(features, fit_idx, w),
        y[fit_idx],
        sample_weights(end, fit_idx, cfg),
        windows(features, early, w),
        y[early],
        sample_weights(end, early, cfg),
        cfg,
        label=label,
        on_epoch=on_epoch,
    )


def walk_forward(
    features: FloatArray,
    labels: FloatArray,
    end: IntArray,
    idx: IntArray,
    cfg: TrainConfig,
    purge: int,
    on_epoch: EpochCallback | None = None,
    families: tuple[str, ...] | None = None,
    clock: IntArray | None = None,
) -> WalkForward:
    """Every family in ``families`` (default: the candidate plus the learned baselines) on the same
    folds; ``probs[family][k]`` are its calibrated probabilities on fold k's validation block."""
    fams = families or (cfg.arch, *(f for f in BASELINE_FAMILIES if f != cfg.arch))
    folds = make_folds(idx, cfg, purge, clock)
    y = np.nan_to_num(labels).astype(np.int64)
    res = WalkForward(folds=folds, probs={f: [] for f in fams}, models={f: [] for f in fams})
    for f in folds:
        for fam in fams:
            c = cfg.family(fam)
            m = _fit_on(features, y, end, f.train, f.early, c, f"{fam} fold {f.k + 1}", on_epoch)
            res.models[fam].append(m)
            res.probs[fam].append(m.predict(windows(features, f.val, c.input_window)))
    return res


def train_final(
    features: FloatArray,
    labels: FloatArray,
    end: IntArray,
    idx: IntArray,
    cfg: TrainConfig,
    purge: int,
    on_epoch: EpochCallback | None = None,
    clock: IntArray | None = None,
) -> tuple[Model, IntArray]:
    """The model to export: trained on all samples (the latest ``inner_frac`` as its inner fold).
    Returns the model and the inner-fold samples (held out from the weights: the parity check's rows)."""
    y = np.nan_to_num(labels).astype(np.int64)
    fit_idx, early = split_early(idx, cfg.inner_frac, purge, clock)
    return _fit_on(features, y, end, fit_idx, early, cfg, f"{cfg.arch} final", on_epoch), early
