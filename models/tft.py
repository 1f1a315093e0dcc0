"""Temporal Fusion Transformer (Lim et al. 2021; seeds/sequence_models_stage.ru.md), for one window.

    x [B, T, F] ─ variable selection: each feature embedded on its own (Linear(1, d)) and
                  passed through its own GRN; softmax weights from a GRN over all of them
                ─ LSTM encoder (causal) ─ gated skip + LayerNorm
                ─ interpretable multi-head attention (per-head Q/K, one V shared by every head,
                  heads averaged; causal mask) ─ gated skip + LayerNorm
                ─ position-wise GRN ─ gated skip (to the LSTM output) + LayerNorm ─ dense ─ [B, 3 | 1]

GRN (gated residual network): LayerNorm(a + GLU(W1 ELU(W2 a + b2) + b1)). There are no static
covariates or known future inputs here (the window is all the model gets), so the static
encoders and the decoder half of the paper are left out: every step is an "observed past".
Causal: variable selection and GRNs act per step, the LSTM runs forward and the attention masks
keys after the query, so `forward_steps` is causal by construction.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from models.base import SequenceConfig, SequenceModel, causal_mask
from models.family import Family
from models.io import WindowIO


@dataclasses.dataclass(frozen=True)
class TFTConfig(SequenceConfig):
    """Model width, LSTM layers and attention heads."""

    d_model: int = 64
    lstm_layers: int = 1
    n_head: int = 4

    PRESETS = {
        "tiny": dict(seq_len=16, d_model=8, n_head=2),
        "small": dict(seq_len=50, d_model=32, n_head=4, dropout=0.1),
        "seed": dict(seq_len=50, d_model=64, n_head=4, dropout=0.1),
    }

    def check(self) -> None:
        """Validate sizes; the width must split over the heads."""
        super().check()
        self.require_positive("d_model", "lstm_layers", "n_head")
        self.require(self.d_model % self.n_head == 0, "d_model", f"must be divisible by n_head={self.n_head}")


class GatedAddNorm(nn.Module):
    """LayerNorm(skip + GLU(dropout(x))): the TFT's gate that may switch a block off."""

    def __init__(self, d_in: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.drop, self.glu, self.ln = nn.Dropout(dropout), nn.Linear(d_in, 2 * d_out), nn.LayerNorm(d_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """[..., d_in], [..., d_out] → [..., d_out]."""
        return self.ln(skip + F.glu(self.glu(self.drop(x)), dim=-1))


class GRN(nn.Module):
    """Gated residual network: GatedAddNorm(W1 ELU(W2 a), skip(a))."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.fc2, self.fc1 = nn.Linear(d_in, d_hidden), nn.Linear(d_hidden, d_hidden)
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.gate = GatedAddNorm(d_hidden, d_out, dropout)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """[..., d_in] → [..., d_out]."""
        return self.gate(self.fc1(F.elu(self.fc2(a))), self.skip(a))


class VariableGRN(nn.Module):
    """F GRNs of width d, one per variable, run at once (weights stacked: one einsum per layer)."""

    def __init__(self, n_vars: int, d: int, dropout: float) -> None:
        super().__init__()

        def init(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape) / shape[-2] ** 0.5)

        self.w2, self.b2 = init(n_vars, d, d), nn.Parameter(torch.zeros(n_vars, d))
        self.w1, self.b1 = init(n_vars, d, d), nn.Parameter(torch.zeros(n_vars, d))
        self.wg, self.bg = init(n_vars, d, 2 * d), nn.Parameter(torch.zeros(n_vars, 2 * d))
        self.ln_w, self.ln_b = nn.Parameter(torch.ones(n_vars, d)), nn.Parameter(torch.zeros(n_vars, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """e [..., F, d] → [..., F, d]: variable j through its own GRN."""
        h = F.elu(torch.einsum("...fi,fio->...fo", e, self.w2) + self.b2)
        h = torch.einsum("...fi,fio->...fo", h, self.w1) + self.b1
        g = F.glu(torch.einsum("...fi,fio->...fo", self.drop(h), self.wg) + self.bg, dim=-1)
        return F.layer_norm(e + g, e.shape[-1:]) * self.ln_w + self.ln_b


class VariableSelection(nn.Module):
    """Per-feature embeddings and GRNs, mixed by softmax weights a GRN computes from all of them."""

    def __init__(self, n_vars: int, d: int, dropout: float) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.randn(n_vars, d) * 0.1), nn.Parameter(torch.zeros(n_vars, d))
        self.per_var = VariableGRN(n_vars, d, dropout)
        self.select = GRN(n_vars * d, d, n_vars, dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, F] → selected [B, T, d] and the variable weights [B, T, F]."""
        e = x[..., None] * self.weight + self.bias  # (B, T, F, d): each feature embedded on its own
        w = torch.softmax(self.select(e.flatten(-2)), dim=-1)  # (B, T, F)
        return (w[..., None] * self.per_var(e)).sum(-2), w


class InterpretableAttention(nn.Module):
    """Multi-head attention whose heads share V and are averaged: one attention map to read."""

    def __init__(self, d: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head, self.hs = n_head, d // n_head
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, self.hs)
        self.out, self.drop = nn.Linear(self.hs, d), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, last_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, d] → [B, Tq, d] and the head-averaged attention [B, Tq, T]."""
        B, T, _ = x.shape
        q = x[:, -1:] if last_only else x
        q = self.q(q).view(B, -1, self.n_head, self.hs).transpose(1, 2)  # (B, nh, Tq, hs)
        k = self.k(x).view(B, T, self.n_head, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        att = q @ k.transpose(-2, -1) / self.hs**0.5  # (B, nh, Tq, T)
        if not last_only:
            att = att.masked_fill(causal_mask(T, x.device), float("-inf"))
        a = torch.softmax(att, dim=-1).mean(1)  # (B, Tq, T): one map for all heads
        return self.out(self.drop(a) @ self.v(x)), a


class TFT(SequenceModel):
    """Variable selection → LSTM → interpretable attention → GRN → head, gated residuals between."""

    def __init__(self, config: TFTConfig) -> None:
        super().__init__()
        c = self.config = config
        self.vsn = VariableSelection(c.n_features, c.d_model, c.dropout)
        self.lstm = nn.LSTM(c.d_model, c.d_model, c.lstm_layers, batch_first=True)
        self.lstm_gate = GatedAddNorm(c.d_model, c.d_model, c.dropout)
        self.attn = InterpretableAttention(c.d_model, c.n_head, c.dropout)
        self.attn_gate = GatedAddNorm(c.d_model, c.d_model, c.dropout)
        self.ff = GRN(c.d_model, c.d_model, c.d_model, c.dropout)
        self.out_gate = GatedAddNorm(c.d_model, c.d_model, 0.0)
        self.head = nn.Linear(c.d_model, c.n_out)

    def run(self, x: torch.Tensor, last_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """→ outputs [B, Tq, n_out] and the attention [B, Tq, T]."""
        self.check_input(x)
        v, _ = self.vsn(x)  # (B, T, d)
        h, _ = self.lstm(v)
        h = self.lstm_gate(h, v)  # (B, T, d)
        a, weights = self.attn(h, last_only)  # (B, Tq, d)
        hq = h[:, -1:] if last_only else h
        z = self.ff(self.attn_gate(a, hq))
        return self.head(self.out_gate(z, hq)), weights

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] for the last step only)."""
        return self.run(x, last_only)[0]

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction's (head-averaged) attention over the window [B, T]."""
        return self.run(x, last_only=True)[1][:, 0]

    def variable_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Variable selection weights of the newest step [B, F]: which features it used."""
        return self.vsn(x)[1][:, -1]


FAMILY = Family("tft", TFT, TFTConfig, WindowIO)
