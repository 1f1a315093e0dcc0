"""Stacked LSTM window classifier (seeds/lstm_model_builder.pl.md), in PyTorch.

    x [B, T, F] ─ LSTM 128 ─ LSTM 64 ─ LSTM 32 (dropout 0.3 between)
                ─ dense 32 ─ dense 16 (ReLU, dropout 0.3) ─ [B, 3] (SHORT, FLAT, LONG)

The prediction for step t is read from the last LSTM's state at t, which has seen steps ≤ t
only (unidirectional), so `forward_steps` is causal by construction. The seed's softmax is
left to the loss / `predict_proba`: the network returns logits.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from models.base import LSTMStack, SequenceConfig, SequenceModel
from models.family import Family
from models.io import WindowIO


@dataclasses.dataclass(frozen=True)
class StackedLSTMConfig(SequenceConfig):
    """Sizes of the stacked LSTM; the seed's SEQUENCE_LENGTH is `seq_len`."""

    lstm_units: tuple[int, ...] = (128, 64, 32)
    dense_units: tuple[int, ...] = (32, 16)

    PRESETS = {
        "tiny": dict(seq_len=16, lstm_units=(16, 8), dense_units=(8,)),
        "small": dict(seq_len=60),
        "seed": dict(seq_len=120),
    }

    def check(self) -> None:
        """Validate sizes."""
        super().check()
        self.require_positive("lstm_units")
        self.require(min(self.dense_units, default=1) > 0, "dense_units", "needs positive sizes")  # () = none


class StackedLSTM(SequenceModel):
    """Progressively narrower unidirectional LSTMs, then a small dense head."""

    def __init__(self, config: StackedLSTMConfig) -> None:
        super().__init__()
        c = self.config = config
        self.lstm = LSTMStack(c.n_features, c.lstm_units, c.dropout)
        dense: list[nn.Module] = []
        widths = (c.lstm_units[-1], *c.dense_units)
        for i, o in zip(widths, widths[1:]):
            dense += [nn.Linear(i, o), nn.ReLU(), nn.Dropout(c.dropout)]
        self.head = nn.Sequential(*dense, nn.Linear(widths[-1], c.n_out))

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] for the last step only)."""
        self.check_input(x)
        h = self.lstm(x)  # (B, T, H)
        if last_only:
            h = h[:, -1:]  # (B, 1, H)
        return self.head(h)  # (B, Tq, n_out)


FAMILY = Family("stacked_lstm", StackedLSTM, StackedLSTMConfig, WindowIO)
