"""Temporal Convolutional Network (seeds/sequence_models_stage.ru.md; Bai, Kolter & Koltun 2018).

    x [B, T, F] ─ residual blocks, block i: dilation 2^i,
                  [causal dilated Conv1d ─ ReLU ─ dropout] × 2  + 1×1 conv skip when widths differ
                ─ dense on each step ─ [B, T, 3 | 1]

Causal: every convolution is padded on the left only, (kernel - 1) × dilation steps, so
output t is a function of steps ≤ t (`forward_steps` is causal by construction). Receptive
field = 1 + 2 (kernel - 1) Σ 2^i steps; a window longer than it changes nothing.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from models.base import SequenceConfig, SequenceModel
from models.family import Family
from models.io import WindowIO


@dataclasses.dataclass(frozen=True)
class TCNConfig(SequenceConfig):
    """Channels per residual block (block i has dilation 2^i) and the kernel width."""

    channels: tuple[int, ...] = (64, 64, 64, 64)
    kernel_size: int = 3

    PRESETS = {
        "tiny": dict(seq_len=16, channels=(8, 8), kernel_size=2),
        "small": dict(seq_len=50, channels=(32, 32, 32, 32), dropout=0.2),  # receptive field 31
        "seed": dict(seq_len=50, channels=(64, 64, 64, 64, 64), dropout=0.2),  # receptive field 63
    }

    def check(self) -> None:
        """Validate sizes."""
        super().check()
        self.require_positive("channels", "kernel_size")

    @property
    def receptive_field(self) -> int:
        """Steps of history one output sees."""
        return 1 + 2 * (self.kernel_size - 1) * sum(2**i for i in range(len(self.channels)))


class CausalConv(nn.Conv1d):
    """Conv1d over [B, C, T] padded on the left: output t sees inputs ≤ t."""

    def __init__(self, n_in: int, n_out: int, kernel: int, dilation: int = 1) -> None:
        super().__init__(n_in, n_out, kernel, dilation=dilation)
        self.left = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, T] → [B, C_out, T]."""
        return super().forward(F.pad(x, (self.left, 0)))


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions with ReLU and dropout, plus a residual connection."""

    def __init__(self, n_in: int, n_out: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = CausalConv(n_in, n_out, kernel, dilation)
        self.conv2 = CausalConv(n_out, n_out, kernel, dilation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(n_in, n_out, 1) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C_in, T] → [B, C_out, T]."""
        h = self.drop(F.relu(self.conv1(x)))
        h = self.drop(F.relu(self.conv2(h)))
        return F.relu(h + self.skip(x))


class TCN(SequenceModel):
    """A stack of TemporalBlocks with doubling dilation and a per-step dense head."""

    def __init__(self, config: TCNConfig) -> None:
        super().__init__()
        c = self.config = config
        widths = (c.n_features, *c.channels)
        self.blocks = nn.Sequential(
            *(TemporalBlock(i, o, c.kernel_size, 2**k, c.dropout) for k, (i, o) in enumerate(zip(widths, widths[1:])))
        )
        self.head = nn.Linear(c.channels[-1], c.n_out)

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] for the last step only)."""
        self.check_input(x)
        h = self.blocks(x.transpose(1, 2)).transpose(1, 2)  # (B, T, C): Conv1d wants channels first
        return self.head(h[:, -1:] if last_only else h)


FAMILY = Family("tcn", TCN, TCNConfig, WindowIO)
