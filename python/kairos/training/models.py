"""The torch models: an MLP over the flattened window, a causal temporal-conv net (TCN) and a GRU.

Every model starts with the standardisation of the raw ``kairos.features`` rows (training-set mean
and scale held as buffers, clipped to +-10 standard deviations), so the exported ONNX graph takes raw
rows and the server needs no scaler of its own. ``forward`` returns logits; ``ProbsHead`` adds the
softmax for export.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

ARCHITECTURES = ("mlp", "tcn", "gru")
CLIP = 10.0


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "mlp"
    window: int = 16
    n_features: int = 17
    hidden: int = 32
    dropout: float = 0.1
    # TCN: kernel size and the dilations of its residual blocks (receptive field 1 + 2 * sum(dilations)).
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4)


class Standardize(nn.Module):
    """(x - mean) * scale, clipped; scale is 1/std, or 0 for a feature constant in training data
    (so a feature the model never saw vary cannot inject noise when it does vary in serving)."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def fit(self, x: npt.NDArray[np.float32]) -> None:
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
        mean = flat.mean(axis=0)
        std = flat.std(axis=0)
        scale = np.where(std > 1e-12, 1.0 / np.maximum(std, 1e-12), 0.0)
        self.mean.copy_(torch.from_numpy(mean).float())
        self.scale.copy_(torch.from_numpy(scale).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) * self.scale, -CLIP, CLIP)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(cfg.window * cfg.n_features, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, 3),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(z)
        return out


class _CausalBlock(nn.Module):
    """Dilated causal conv + ReLU with a residual connection; left padding keeps it causal."""

    def __init__(self, channels_in: int, channels: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(channels_in, channels, kernel, dilation=dilation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(channels_in, channels, 1) if channels_in != channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(nn.functional.pad(x, (self.pad, 0))))
        out: torch.Tensor = self.drop(y) + self.skip(x)
        return out


class TCN(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        c_in = cfg.n_features
        for d in cfg.dilations:
            blocks.append(_CausalBlock(c_in, cfg.hidden, cfg.kernel, d, cfg.dropout))
            c_in = cfg.hidden
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cfg.hidden, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.blocks(z.transpose(1, 2))  # (batch, channels, time)
        out: torch.Tensor = self.head(h[:, :, -1])
        return out


class GRU(nn.Module):
    """One GRU layer over the window; the last step's hidden state feeds the head."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gru = nn.GRU(cfg.n_features, cfg.hidden, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        seq, _ = self.gru(z)
        out: torch.Tensor = self.head(self.drop(seq[:, -1, :]))
        return out


_CORES: dict[str, type[nn.Module]] = {"mlp": MLP, "tcn": TCN, "gru": GRU}


class KairosNet(nn.Module):
    """Standardisation + a core model; returns logits over (down, flat, up)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {cfg.arch!r}: choose one of {ARCHITECTURES}")
        self.cfg = cfg
        self.standardize = Standardize(cfg.n_features)
        self.core: nn.Module = _CORES[cfg.arch](cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.core(self.standardize(x))
        return out


class ProbsHead(nn.Module):
    """The exported graph: raw feature windows in, calibrated class probabilities out.

    probs = softmax(log(mean over the ensemble of softmax(logits)) / T + bias); for one network,
    T = 1 and no bias that is its softmax."""

    inv_t: torch.Tensor
    bias: torch.Tensor

    def __init__(
        self,
        nets: KairosNet | list[KairosNet],
        temperature: float = 1.0,
        bias: tuple[float, ...] = (0.0, 0.0, 0.0),
    ) -> None:
        super().__init__()
        self.nets = nn.ModuleList([nets] if isinstance(nets, KairosNet) else nets)
        self.register_buffer("inv_t", torch.tensor(1.0 / temperature))
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        p = torch.stack([torch.softmax(n(features), dim=-1) for n in self.nets]).mean(dim=0)
        return torch.softmax(torch.log(torch.clamp(p, min=1e-12)) * self.inv_t + self.bias, dim=-1)
