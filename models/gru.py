"""GRU window classifier (seeds/sequence_models_stage.ru.md: "GRU, a simplified LSTM").

    x [B, T, F] ─ GRU (hidden, layers; dropout between layers) ─ dense (ReLU, dropout) ─ [B, 3 | 1]

Unidirectional: the state at step t has seen steps ≤ t only, so `forward_steps` is causal by
construction; the prediction is read from the last step's state (the seed's `out[:, -1]`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from models.base import SequenceConfig, SequenceModel
from models.family import Family
from models.io import WindowIO


@dataclasses.dataclass(frozen=True)
class GRUConfig(SequenceConfig):
    """Sizes of the GRU; the seed's config: hidden 128, 2 layers, seq_length 50, dropout 0.2."""

    hidden: int = 128
    layers: int = 2
    dense: int = 64

    PRESETS = {
        "tiny": dict(seq_len=16, hidden=8, layers=1, dense=8),
        "small": dict(seq_len=50, hidden=64, layers=2, dense=32, dropout=0.2),
        "seed": dict(seq_len=50, hidden=128, layers=2, dense=64, dropout=0.2),
    }

    def check(self) -> None:
        """Validate sizes."""
        super().check()
        self.require_positive("hidden", "layers", "dense")


class GRUNet(SequenceModel):
    """Stacked unidirectional GRU and a small dense head."""

    def __init__(self, config: GRUConfig) -> None:
        super().__init__()
        c = self.config = config
        self.gru = nn.GRU(c.n_features, c.hidden, c.layers, batch_first=True, dropout=c.dropout if c.layers > 1 else 0.0)
        self.head = nn.Sequential(
            nn.Dropout(c.dropout), nn.Linear(c.hidden, c.dense), nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.dense, c.n_out)
        )

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] for the last step only)."""
        self.check_input(x)
        h, _ = self.gru(x)  # (B, T, H)
        return self.head(h[:, -1:] if last_only else h)


FAMILY = Family("gru", GRUNet, GRUConfig, WindowIO)
