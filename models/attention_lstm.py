"""Attention-LSTM window classifier (seeds/attention_lstm.zh.md), made causal.

    x [B, T, F] ─ LSTM 128 ─ dropout ─ LSTM 64 ─ dropout
                ─ attention pooling over the steps ≤ t ─ dense 64 (ReLU, dropout) ─ [B, 3]

The seed's LSTMs are bidirectional; its own notes warn that this leaks the future in trading,
so both run forward in time only. Attention pooling scores every step once
(score_s = v·tanh(W h_s)) and, for the prediction at step t, takes the softmax of the scores of
steps 0..t only (a causal mask in `forward_steps`; the last step's pool covers the whole window).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from models.base import LSTMStack, SequenceConfig, SequenceModel, causal_mask
from models.family import Family
from models.io import WindowIO


@dataclasses.dataclass(frozen=True)
class AttentionLSTMConfig(SequenceConfig):
    """Sizes of the Attention-LSTM; the seed's sequence_length is `seq_len`."""

    lstm_units: tuple[int, ...] = (128, 64)
    attention_units: int = 64
    dense_units: int = 64

    PRESETS = {
        "tiny": dict(seq_len=16, lstm_units=(16, 8), attention_units=8, dense_units=8),
        "small": dict(seq_len=30),
        "seed": dict(seq_len=30),
    }

    def check(self) -> None:
        """Validate sizes."""
        super().check()
        self.require_positive("lstm_units", "attention_units", "dense_units")


class AttentionLSTM(SequenceModel):
    """Stacked unidirectional LSTMs with causal attention pooling."""

    def __init__(self, config: AttentionLSTMConfig) -> None:
        super().__init__()
        c = self.config = config
        self.lstm = LSTMStack(c.n_features, c.lstm_units, c.dropout)
        hidden = c.lstm_units[-1]
        self.score = nn.Sequential(  # additive attention: v·tanh(W h)
            nn.Linear(hidden, c.attention_units),
            nn.Tanh(),
            nn.Linear(c.attention_units, 1, bias=False),
        )
        self.head = nn.Sequential(
            nn.Linear(hidden, c.dense_units),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.dense_units, c.n_out),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, F] → LSTM states [B, T, H] and attention scores [B, T]."""
        self.check_input(x)
        h = self.lstm(x)  # (B, T, H)
        return h, self.score(h).squeeze(-1)

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] for the last step only)."""
        h, s = self.encode(x)  # (B, T, H), (B, T)
        if last_only:
            w = torch.softmax(s, dim=-1)[:, None, :]  # (B, 1, T): the last step pools the whole window
        else:
            future = causal_mask(s.shape[1], s.device)  # (T, T)
            w = torch.softmax(s[:, None, :].masked_fill(future, float("-inf")), dim=-1)  # (B, T, T)
        pooled = w @ h  # (B, Tq, H)
        return self.head(pooled)  # (B, Tq, n_out)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Pooling weights [B, T] of the last step over the window."""
        _, s = self.encode(x)
        return torch.softmax(s, dim=-1)


FAMILY = Family("attention_lstm", AttentionLSTM, AttentionLSTMConfig, WindowIO)
