"""Informer (Zhou et al. 2021; seeds/sequence_models_stage.ru.md) encoder, as a window classifier.

    x [B, T, F] ─ causal Conv1d token embedding + learned position
                ─ encoder layer: ProbSparse self-attention + FFN (post-norm)
                ─ distilling between layers: causal Conv1d ─ LayerNorm ─ ELU ─ max over 3 steps,
                  keeping every second step counted back from the newest (the length halves)
                ─ LayerNorm ─ the newest position ─ dense ─ [B, 3 | 1]

ProbSparse: a query's sparsity M_i = max_j s_ij − mean_j s_ij (over the keys j ≤ i it may see);
only the top u = factor · ⌈ln(L + 1)⌉ queries attend, every other ("lazy") query outputs the mean of
the values it may see (its cumulative mean: still causal). At these window lengths the scores are
computed densely, so the sparsity shapes the model but saves no FLOPs.
Look-ahead: the window ends at the bar predicted for, and nothing in it is later. Which queries are
active depends on the whole window, so step t of a longer window is not the model on the window
ending at t; `forward_steps` therefore runs the model on every prefix (tests and plots only).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from models.base import SequenceConfig, SequenceModel, causal_mask
from models.family import Family
from models.io import WindowIO
from models.tcn import CausalConv


@dataclasses.dataclass(frozen=True)
class InformerConfig(SequenceConfig):
    """Width, heads, encoder layers (a distilling step between each pair) and the ProbSparse factor."""

    d_model: int = 64
    n_head: int = 4
    n_layer: int = 2
    d_ff: int = 128
    factor: int = 5

    PRESETS = {
        "tiny": dict(seq_len=16, d_model=8, n_head=2, n_layer=2, d_ff=16, factor=1),
        "small": dict(seq_len=50, d_model=32, n_head=4, n_layer=2, d_ff=64, dropout=0.1),
        "seed": dict(seq_len=96, d_model=64, n_head=4, n_layer=3, d_ff=256, dropout=0.1),
    }

    def check(self) -> None:
        """Validate sizes; the width must split over the heads."""
        super().check()
        self.require_positive("d_model", "n_head", "n_layer", "d_ff", "factor")
        self.require(self.d_model % self.n_head == 0, "d_model", f"must be divisible by n_head={self.n_head}")


class ProbSparseAttention(nn.Module):
    """Causal multi-head self-attention where only the top-u queries by sparsity attend."""

    def __init__(self, d: int, n_head: int, factor: int, dropout: float) -> None:
        super().__init__()
        self.n_head, self.factor = n_head, factor
        self.qkv, self.proj, self.drop = nn.Linear(d, 3 * d), nn.Linear(d, d), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, d] → [B, L, d]."""
        B, L, d = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)  # (B, nh, L, hs)
        future = causal_mask(L, x.device)
        s = (q @ k.transpose(-2, -1) / math.sqrt(d // self.n_head)).masked_fill(future, float("-inf"))
        seen = torch.arange(1, L + 1, device=x.device, dtype=x.dtype)  # keys each query may see
        sparsity = s.amax(-1) - s.masked_fill(future, 0.0).sum(-1) / seen  # (B, nh, L)
        u = min(L, self.factor * math.ceil(math.log(L + 1)))
        top = sparsity.topk(u, dim=-1).indices  # (B, nh, u)
        active = torch.zeros_like(sparsity, dtype=torch.bool).scatter(-1, top, True)
        full = self.drop(torch.softmax(s, dim=-1)) @ v  # (B, nh, L, hs)
        lazy = v.cumsum(-2) / seen[:, None]  # the mean of the values each query may see
        y = torch.where(active[..., None], full, lazy)
        return self.proj(y.transpose(1, 2).reshape(B, L, d))


class EncoderLayer(nn.Module):
    """x = LN(x + attention(x)); x = LN(x + FFN(x)), the Informer's post-norm layer."""

    def __init__(self, c: InformerConfig) -> None:
        super().__init__()
        self.attn = ProbSparseAttention(c.d_model, c.n_head, c.factor, c.dropout)
        self.ff = nn.Sequential(nn.Linear(c.d_model, c.d_ff), nn.GELU(), nn.Linear(c.d_ff, c.d_model))
        self.ln1, self.ln2, self.drop = nn.LayerNorm(c.d_model), nn.LayerNorm(c.d_model), nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, d] → [B, L, d]."""
        x = self.ln1(x + self.drop(self.attn(x)))
        return self.ln2(x + self.drop(self.ff(x)))


class Distill(nn.Module):
    """Causal conv, LayerNorm, ELU, max over 3 steps, every second step kept (anchored at the newest)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.conv, self.ln = CausalConv(d, d, 3), nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, d] → [B, ceil(L / 2), d]."""
        h = F.elu(self.ln(self.conv(x.transpose(1, 2)).transpose(1, 2))).transpose(1, 2)  # (B, d, L)
        h = F.max_pool1d(F.pad(h, (2, 0), value=float("-inf")), 3, stride=1)  # max over steps t-2..t
        keep = torch.arange(h.shape[-1] - 1, -1, -2, device=h.device).flip(0)  # ..., newest-2, newest
        return h[:, :, keep].transpose(1, 2)


class Informer(SequenceModel):
    """Token embedding, ProbSparse encoder layers with distilling between them, a dense head."""

    def __init__(self, config: InformerConfig) -> None:
        super().__init__()
        c = self.config = config
        self.embed = CausalConv(c.n_features, c.d_model, 3)
        self.pos = nn.Embedding(c.seq_len, c.d_model)
        self.layers = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_layer))
        self.distill = nn.ModuleList(Distill(c.d_model) for _ in range(c.n_layer - 1))
        self.ln_f, self.drop = nn.LayerNorm(c.d_model), nn.Dropout(c.dropout)
        self.head = nn.Linear(c.d_model, c.n_out)

    def last(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, F] → [B, n_out], the prediction for the newest step."""
        t = x.shape[1]
        if t > self.config.seq_len:
            raise ValueError(f"Informer: window of {t} steps exceeds seq_len={self.config.seq_len}")
        age = torch.arange(t - 1, -1, -1, device=x.device)  # 0 = newest: the same position whatever t
        h = self.drop(self.embed(x.transpose(1, 2)).transpose(1, 2) + self.pos(age))
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.distill):
                h = self.distill[i](h)
        return self.head(self.ln_f(h[:, -1]))

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out]); step t = the model on x[:, :t+1]."""
        self.check_input(x)
        if last_only:
            return self.last(x)[:, None]
        return torch.stack([self.last(x[:, : t + 1]) for t in range(x.shape[1])], dim=1)


FAMILY = Family("informer", Informer, InformerConfig, WindowIO)
