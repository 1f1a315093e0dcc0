"""1D-CNN + LSTM hybrid (seeds/sequence_models_stage.ru.md): convolutions find local patterns,
the LSTM carries them through time.

    x [B, T, F] ─ causal Conv1d × len(filters) (ReLU) ─ causal max-pool over the last `pool`
                  steps ─ LSTM (hidden, layers) ─ dense (ReLU, dropout) ─ [B, 3 | 1]

Causal: convolutions and the max-pool look only left (padding on the left, stride 1, so every
step keeps an output), and the LSTM runs forward in time; `forward_steps` is causal by
construction. (The classic hybrid pools with stride 2; here the stride is 1 so that the
prediction for every step exists and uses the window ending at that step.)
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from models.base import SequenceConfig, SequenceModel
from models.family import Family
from models.io import WindowIO
from models.tcn import CausalConv


@dataclasses.dataclass(frozen=True)
class CNNLSTMConfig(SequenceConfig):
    """Convolution widths, kernel, pooling span and the LSTM size."""

    filters: tuple[int, ...] = (64, 64)
    kernel_size: int = 3
    pool: int = 2
    hidden: int = 128
    layers: int = 2
    dense: int = 64

    PRESETS = {
        "tiny": dict(seq_len=16, filters=(8,), hidden=8, layers=1, dense=8),
        "small": dict(seq_len=50, filters=(32, 32), hidden=64, dense=32, dropout=0.2),
        "seed": dict(seq_len=50, filters=(64, 64), hidden=128, dense=64, dropout=0.2),
    }

    def check(self) -> None:
        """Validate sizes."""
        super().check()
        self.require_positive("filters", "kernel_size", "pool", "hidden", "layers", "dense")


class CNNLSTM(SequenceModel):
    """Causal convolutions, causal max-pooling, an LSTM and a dense head."""

    def __init__(self, config: CNNLSTMConfig) -> None:
        super().__init__()
        c = self.config = config
        widths = (c.n_features, *c.filters)
        self.convs = nn.ModuleList(CausalConv(i, o, c.kernel_size) for i, o in zip(widths, widths[1:]))
        self.lstm = nn.LSTM(c.filters[-1], c.hidden, c.layers, batch_first=True, dropout=c.dropout if c.layers > 1 else 0.0)
        self.head = nn.Sequential(
            nn.Dropout(c.dropout), nn.Linear(c.hidden, c.dense), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.dense, c.n_out)
        )

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] for the last step only)."""
        self.check_input(x)
        h = x.transpose(1, 2)  # (B, F, T)
        for conv in self.convs:
            h = F.relu(conv(h))
        p = self.config.pool - 1  # max over steps t-p..t; -inf padding never wins
        h = F.max_pool1d(F.pad(h, (p, 0), value=float("-inf")), self.config.pool, stride=1)
        h, _ = self.lstm(h.transpose(1, 2))  # (B, T, H)
        return self.head(h[:, -1:] if last_only else h)


FAMILY = Family("cnn_lstm", CNNLSTM, CNNLSTMConfig, WindowIO)
