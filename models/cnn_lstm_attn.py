"""CNN-LSTM-attention window classifier (seeds/cnn_lstm_attention_pipeline.vi.md), causal.

    x [B, T, F] ─ causal CNN (64 features) ─ LSTM (hidden 32, unidirectional)
                ─ multi-head attention (query = the step being predicted, keys = steps ≤ it)
                ─ dense ─ [B, 3] logits (0 SHORT, 1 FLAT, 2 LONG) or [B, 1] next return

The seed's switches select the variant: `use_cnn` → CNN-LSTM-attention; `use_attention`
without CNN → LSTM-attention; neither → plain LSTM (the last LSTM state feeds the dense head).

No look-ahead inside the window: the convolutions are padded on the left only, the LSTM runs
forward in time, and the attention for step t uses step t as its only query over keys 0..t
(a causal mask in `forward_steps`; for the prediction itself the query is the last step, whose
keys are all in the past by construction).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from models.base import SequenceConfig, SequenceModel, causal_mask
from models.family import Family
from models.io import WindowIO


class CausalCNN(nn.Module):
    """Two Conv1d layers over time, padded on the left so step t sees steps ≤ t only."""

    def __init__(self, n_in: int, n_out: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.pad = kernel - 1
        self.conv1 = nn.Conv1d(n_in, n_out, kernel)
        self.conv2 = nn.Conv1d(n_out, n_out, kernel)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, F] → [B, T, C]."""
        h = x.transpose(1, 2)  # (B, F, T): Conv1d wants channels first
        h = self.drop(F.relu(self.conv1(F.pad(h, (self.pad, 0)))))
        h = self.drop(F.relu(self.conv2(F.pad(h, (self.pad, 0)))))
        return h.transpose(1, 2)  # (B, T, C)


@dataclasses.dataclass(frozen=True)
class CNNLSTMAttnConfig(SequenceConfig):
    """Sizes of the CNN-LSTM-attention model; the seed's look_back is `seq_len`."""

    use_cnn: bool = True
    use_attention: bool = True
    cnn_features: int = 64
    kernel_size: int = 3
    lstm_hidden: int = 32
    lstm_layers: int = 2
    n_head: int = 4

    PRESETS = {
        "tiny": dict(seq_len=16, cnn_features=8, lstm_hidden=8, lstm_layers=1, n_head=2),
        "small": dict(seq_len=60),  # the seed's sizes already run in well under a millisecond
        "seed": dict(seq_len=60),
    }

    def check(self) -> None:
        """Validate sizes; the attention width must split evenly over the heads."""
        super().check()
        self.require_positive("cnn_features", "kernel_size", "lstm_hidden", "lstm_layers", "n_head")
        self.require(self.lstm_hidden % self.n_head == 0, "lstm_hidden", f"must be divisible by n_head={self.n_head}")


class CNNLSTMAttn(SequenceModel):
    """CNN-LSTM-attention / LSTM-attention / LSTM, as the config's switches select."""

    def __init__(self, config: CNNLSTMAttnConfig) -> None:
        super().__init__()
        c = self.config = config
        self.cnn = CausalCNN(c.n_features, c.cnn_features, c.kernel_size, c.dropout) if c.use_cnn else None
        self.lstm = nn.LSTM(
            c.cnn_features if c.use_cnn else c.n_features,
            c.lstm_hidden,
            c.lstm_layers,
            batch_first=True,
            dropout=c.dropout if c.lstm_layers > 1 else 0.0,
        )
        self.attn = nn.MultiheadAttention(c.lstm_hidden, c.n_head, batch_first=True) if c.use_attention else None
        self.ln = nn.LayerNorm(c.lstm_hidden)
        self.head = nn.Sequential(
            nn.Linear(c.lstm_hidden, c.lstm_hidden),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.lstm_hidden, c.n_out),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, F] → LSTM states [B, T, H] (causal: state t has seen steps ≤ t)."""
        self.check_input(x)
        h = self.cnn(x) if self.cnn is not None else x  # (B, T, C)
        h, _ = self.lstm(h)  # (B, T, H)
        return h

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] for the last step only)."""
        h = self.encode(x)  # (B, T, H)
        q = h[:, -1:] if last_only else h  # (B, Tq, H) the steps we predict for
        if self.attn is not None:
            mask = None if last_only else causal_mask(h.shape[1], h.device)  # the last query sees all keys ≤ it
            a, _ = self.attn(q, h, h, attn_mask=mask, need_weights=False)  # (B, Tq, H)
            q = q + a
        return self.head(self.ln(q))  # (B, Tq, n_out)

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Weights [B, T] of the last step's attention over the window (mean over heads)."""
        if self.attn is None:
            raise ValueError("CNNLSTMAttn: attention_weights needs use_attention=True")
        h = self.encode(x)
        _, w = self.attn(h[:, -1:], h, h, need_weights=True, average_attn_weights=True)  # (B, 1, T)
        return w[:, 0]


FAMILY = Family("cnn_lstm_attn", CNNLSTMAttn, CNNLSTMAttnConfig, WindowIO)
