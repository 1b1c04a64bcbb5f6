"""Walk-forward training of the torch models, deterministic for a given seed.

Samples are bars in time order. The first ``min_train_frac`` of them only ever train; the rest is cut
into ``folds`` consecutive validation blocks. Fold k trains on the samples before block k (all of
them: "expanding", or the latest ``rolling_train``: "rolling") minus a purge gap of ``purge`` bars
(default: the label horizon), so no training label reaches into the validation block. Inside each
fold the last ``early_stop_frac`` of the training samples (again behind a purge gap) decide early
stopping; the validation block is never looked at while fitting. The model that is exported is
trained the same way on all samples.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from kairos.training.baselines import fit_logreg
from kairos.training.labels import windows
from kairos.training.models import KairosNet, ModelConfig

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
# (fold label, epoch, epochs, train loss, early-stop loss)
EpochCallback = Callable[[str, int, int, float, float], None]


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "mlp"
    """Model: ``mlp`` (flattened window), ``tcn`` (causal dilated convolutions) or ``gru``."""
    window: int = 16
    """Feature rows per model input (bars of history beyond the features' own window)."""
    hidden: int = 32
    dropout: float = 0.1
    epochs: int = 20
    """Upper bound; early stopping usually ends sooner."""
    patience: int = 3
    """Epochs without a better early-stop loss before stopping (best weights are restored)."""
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    folds: int = 4
    scheme: Literal["expanding", "rolling"] = "expanding"
    rolling_train: int = 0
    """Rolling scheme: training samples per fold (0 = as many as the first fold has)."""
    min_train_frac: float = 0.5
    purge: int | None = None
    """Bars between training and validation samples; None = the label horizon."""
    early_stop_frac: float = 0.15
    seed: int = 0
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fold:
    k: int
    train: IntArray
    early: IntArray
    val: IntArray

    def span(self, times: Any) -> dict[str, str]:
        return {"val_first": str(times[int(self.val[0])]), "val_last": str(times[int(self.val[-1])])}


@dataclass
class FitResult:
    net: KairosNet
    best_epoch: int
    epochs_run: int
    train_loss: list[float] = field(default_factory=list)
    early_loss: list[float] = field(default_factory=list)


@dataclass
class WalkForward:
    folds: list[Fold]
    probs: list[FloatArray]
    """Model class probabilities on each fold's validation samples."""
    logreg_probs: list[FloatArray]
    fits: list[FitResult]


def seed_everything(seed: int, threads: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def split_early(train: IntArray, frac: float, purge: int) -> tuple[IntArray, IntArray]:
    n_early = max(1, int(len(train) * frac))
    early = train[-n_early:]
    fit = train[train < early[0] - purge]
    return fit, early


def make_folds(idx: IntArray, cfg: TrainConfig, purge: int) -> list[Fold]:
    """Walk-forward folds over the sample bars ``idx`` (sorted)."""
    n = len(idx)
    if cfg.folds < 1:
        raise ValueError("folds must be >= 1")
    start = int(n * cfg.min_train_frac)
    block = (n - start) // cfg.folds
    if start < 50 or block < 20:
        raise ValueError(
            f"{n} samples are too few for {cfg.folds} folds (need >= 50 initial training and 20 per fold)"
        )
    folds = []
    for k in range(cfg.folds):
        lo = start + k * block
        hi = n if k == cfg.folds - 1 else lo + block
        val = idx[lo:hi]
        train = idx[:lo]
        train = train[train < val[0] - purge]
        if cfg.scheme == "rolling":
            keep = cfg.rolling_train or start
            train = train[-keep:]
        fit, early = split_early(train, cfg.early_stop_frac, purge)
        if len(fit) < 20:
            raise ValueError(f"fold {k}: only {len(fit)} training samples after purging")
        folds.append(Fold(k, fit, early, val))
    return folds


def _class_weights(y: IntArray) -> torch.Tensor:
    counts = np.bincount(y, minlength=3).astype(np.float64)
    w = np.where(counts > 0, len(y) / (3 * np.maximum(counts, 1)), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def fit(
    x_fit: npt.NDArray[np.float32],
    y_fit: IntArray,
    x_early: npt.NDArray[np.float32],
    y_early: IntArray,
    cfg: TrainConfig,
    n_features: int,
    *,
    label: str = "final",
    on_epoch: EpochCallback | None = None,
) -> FitResult:
    """Train one model with early stopping on (x_early, y_early); returns the best weights."""
    seed_everything(cfg.seed, cfg.threads)
    mcfg = ModelConfig(
        arch=cfg.arch, window=cfg.window, n_features=n_features, hidden=cfg.hidden, dropout=cfg.dropout
    )
    net = KairosNet(mcfg)
    net.standardize.fit(x_fit)
    loss_fn = nn.CrossEntropyLoss(weight=_class_weights(y_fit))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt = torch.from_numpy(x_fit), torch.from_numpy(y_fit)
    xe, ye = torch.from_numpy(x_early), torch.from_numpy(y_early)
    gen = torch.Generator().manual_seed(cfg.seed)
    best = (float("inf"), 0, copy.deepcopy(net.state_dict()))
    result = FitResult(net=net, best_epoch=0, epochs_run=0)
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(order), cfg.batch_size):
            b = order[i : i + cfg.batch_size]
            opt.zero_grad()
            loss = loss_fn(net(xt[b]), yt[b])
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        net.eval()
        with torch.no_grad():
            early_loss = float(loss_fn(net(xe), ye))
        result.train_loss.append(total / len(xt))
        result.early_loss.append(early_loss)
        result.epochs_run = epoch
        if on_epoch:
            on_epoch(label, epoch, cfg.epochs, total / len(xt), early_loss)
        if early_loss < best[0] - 1e-6:
            best = (early_loss, epoch, copy.deepcopy(net.state_dict()))
        elif epoch - best[1] >= cfg.patience:
            break
    net.load_state_dict(best[2])
    net.eval()
    result.best_epoch = best[1]
    return result


def predict(net: KairosNet, x: npt.NDArray[np.float32], batch: int = 4096) -> FloatArray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(torch.softmax(net(torch.from_numpy(x[i : i + batch])), dim=-1).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 3))


def walk_forward(
    features: FloatArray,
    labels: FloatArray,
    idx: IntArray,
    cfg: TrainConfig,
    purge: int,
    on_epoch: EpochCallback | None = None,
) -> WalkForward:
    folds = make_folds(idx, cfg, purge)
    y = np.nan_to_num(labels).astype(np.int64)
    res = WalkForward(folds=folds, probs=[], logreg_probs=[], fits=[])
    for f in folds:
        xf, xe, xv = (windows(features, i, cfg.window) for i in (f.train, f.early, f.val))
        r = fit(
            xf, y[f.train], xe, y[f.early], cfg, features.shape[1], label=f"fold {f.k + 1}", on_epoch=on_epoch
        )
        res.fits.append(r)
        res.probs.append(predict(r.net, xv))
        train_all = np.concatenate([f.train, f.early])
        res.logreg_probs.append(fit_logreg(features, y, train_all, f.val, cfg.seed))
    return res


def train_final(
    features: FloatArray,
    labels: FloatArray,
    idx: IntArray,
    cfg: TrainConfig,
    purge: int,
    on_epoch: EpochCallback | None = None,
) -> tuple[FitResult, IntArray]:
    """The model to export: trained on all samples (the latest ``early_stop_frac`` for early stopping).
    Returns the fit and the early-stopping samples (held out from the weights, used for the parity check)."""
    y = np.nan_to_num(labels).astype(np.int64)
    fit_idx, early = split_early(idx, cfg.early_stop_frac, purge)
    r = fit(
        windows(features, fit_idx, cfg.window),
        y[fit_idx],
        windows(features, early, cfg.window),
        y[early],
        cfg,
        features.shape[1],
        label="final",
        on_epoch=on_epoch,
    )
    return r, early
