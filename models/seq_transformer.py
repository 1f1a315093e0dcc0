"""Small causal Transformer window classifier (the Transformer of seeds/attention_lstm.zh.md).

    x [B, T, F] ─ Linear(F, 64) + learned position (0 = the window's oldest step)
                ─ 2 pre-norm encoder layers (4 heads, causal mask) ─ LayerNorm ─ [B, 3]

Causal: every layer masks keys after the query, so the output at step t is a function of
x[:, :t+1] alone; positions count from the window's start, so `forward_steps(x)[:, t]` equals
`forward(x[:, :t+1])`. The prediction is read at the last step.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from models.base import SequenceConfig, SequenceModel
from models.family import Family
from models.io import WindowIO
from models.layers import Block


@dataclasses.dataclass(frozen=True)
class SeqTransformerConfig(SequenceConfig):
    """Sizes of the window Transformer; `seq_len` is also the longest window it accepts."""

    d_model: int = 64
    n_head: int = 4
    n_layer: int = 2
    d_ff: int = 256

    PRESETS = {
        "tiny": dict(seq_len=16, d_model=16, n_head=2, n_layer=1, d_ff=32),
        "small": dict(seq_len=30, dropout=0.1),
        "seed": dict(seq_len=30, dropout=0.1),
    }

    def check(self) -> None:
        """Validate sizes; d_model must split evenly over the heads."""
        super().check()
        self.require_positive("d_model", "n_head", "n_layer", "d_ff")
        self.require(self.d_model % self.n_head == 0, "d_model", f"must be divisible by n_head={self.n_head}")


class SeqTransformer(SequenceModel):
    """Causal Transformer encoder over a window of feature vectors."""

    def __init__(self, config: SeqTransformerConfig) -> None:
        super().__init__()
        c = self.config = config
        self.inp = nn.Linear(c.n_features, c.d_model)
        self.pos = nn.Embedding(c.seq_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.d_model, c.n_head, c.d_ff, c.dropout, c.dropout) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.n_out)

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] for the last step only)."""
        self.check_input(x)
        t = x.shape[1]
        if t > self.config.seq_len:
            raise ValueError(f"SeqTransformer: window of {t} steps exceeds seq_len={self.config.seq_len}")
        h = self.drop(self.inp(x) + self.pos.weight[:t])  # (B, T, D)
        for block in self.blocks:
            h = block(h, causal=True)  # (B, T, D): step t attends to steps ≤ t
        if last_only:
            h = h[:, -1:]  # (B, 1, D)
        return self.head(self.ln_f(h))  # (B, Tq, n_out)


FAMILY = Family("seq_transformer", SeqTransformer, SeqTransformerConfig, WindowIO)
