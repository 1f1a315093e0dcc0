"""Seq2Seq with (Bahdanau) attention (seeds/sequence_models_stage.ru.md), as a window classifier.

    x [B, T, F] ─ GRU encoder ─ states h_1..h_T
    decoder: s_0 = h_t (the step predicted for); for k = 1..decode_steps:
        e_j = v·tanh(W_s s + W_h h_j) over j ≤ t,  a = softmax(e),  c = Σ a_j h_j
        s = GRUCell(c, s)
    ─ dense([s; c]) ─ [B, 3 | 1]

The decoder reads the encoded window several times (each step re-attends with its new
state), which is what distinguishes it from a single attention pooling. Causal: the encoder is
unidirectional and the decoder for step t attends to encoder states j ≤ t only (a mask in
`forward_steps`; for the prediction itself the last step's keys are the whole window).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from models.base import SequenceConfig, SequenceModel, causal_mask
from models.family import Family
from models.io import WindowIO


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig(SequenceConfig):
    """Sizes of the encoder, attention and decoder."""

    hidden: int = 128
    layers: int = 2  # encoder GRU layers
    attention_units: int = 64
    decode_steps: int = 3

    PRESETS = {
        "tiny": dict(seq_len=16, hidden=8, layers=1, attention_units=8, decode_steps=2),
        "small": dict(seq_len=50, hidden=64, layers=2, attention_units=32, decode_steps=3, dropout=0.2),
        "seed": dict(seq_len=50, hidden=128, layers=2, attention_units=64, decode_steps=3, dropout=0.2),
    }

    def check(self) -> None:
        """Validate sizes."""
        super().check()
        self.require_positive("hidden", "layers", "attention_units", "decode_steps")


class Seq2SeqAttention(SequenceModel):
    """GRU encoder, a GRUCell decoder re-attending over the encoder states, a dense head."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        c = self.config = config
        self.encoder = nn.GRU(c.n_features, c.hidden, c.layers, batch_first=True, dropout=c.dropout if c.layers > 1 else 0.0)
        self.w_s = nn.Linear(c.hidden, c.attention_units, bias=False)
        self.w_h = nn.Linear(c.hidden, c.attention_units)
        self.v = nn.Linear(c.attention_units, 1, bias=False)
        self.cell = nn.GRUCell(c.hidden, c.hidden)
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(2 * c.hidden, c.n_out)

    def decode(self, x: torch.Tensor, last_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """→ head input [B, Tq, 2H] and the last decoder step's attention [B, Tq, T]."""
        self.check_input(x)
        h, _ = self.encoder(x)  # (B, T, H)
        B, T, H = h.shape
        s = h[:, -1:] if last_only else h  # (B, Tq, H): one decoder per predicted step
        future = None if last_only else causal_mask(T, x.device)  # (Tq, T) True = key after the query
        keys = self.w_h(h)[:, None]  # (B, 1, T, A)
        for _ in range(self.config.decode_steps):
            e = self.v(torch.tanh(self.w_s(s)[:, :, None] + keys)).squeeze(-1)  # (B, Tq, T)
            if future is not None:
                e = e.masked_fill(future, float("-inf"))
            a = torch.softmax(e, dim=-1)
            ctx = a @ h  # (B, Tq, H)
            s = self.cell(ctx.reshape(-1, H), s.reshape(-1, H)).view(B, -1, H)
        return self.drop(torch.cat([s, ctx], dim=-1)), a

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] for the last step only)."""
        return self.head(self.decode(x, last_only)[0])

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder step's attention of the prediction over the window [B, T]."""
        return self.decode(x, last_only=True)[1][:, 0]


FAMILY = Family("seq2seq_attention", Seq2SeqAttention, Seq2SeqConfig, WindowIO)
