"""The transformer block both transformers use (mtf_transformer, seq_transformer).

A pre-norm encoder layer written out, nanoGPT style, on F.scaled_dot_product_attention: the
fused kernels (flash / memory-efficient, CPU and GPU) take the padding mask and the causal
flag directly. nn.TransformerEncoderLayer's inference fast path falls back to a slow masked
softmax whenever a padding mask is given (~3x slower on a CPU), which is the hybrid's
degraded mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """x + attention(LN(x)), then x + MLP(LN(x)); GELU, dropout on both residual branches."""

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.n_head, self.attn_dropout = n_head, attn_dropout
        self.ln_1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """x [B, L, d]; keep [B, L] bool, True = a real token others may attend to (None = all).

        causal: query i attends to keys ≤ i only; not combined with `keep` (the window models
        that use it have no padding).
        """
        if causal and keep is not None:
            raise ValueError("Block: give a padding mask or causal=True, not both")
        x = x + self.drop(self.attend(self.ln_1(x), keep, causal))
        x = x + self.drop(self.mlp(self.ln_2(x)))
        return x

    def attend(self, x: torch.Tensor, keep: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """Multi-head self-attention over the kept keys (and, if causal, keys ≤ the query)."""
        B, L, d = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)  # 3 × (B, nh, L, hs)
        mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, L) broadcast over heads and queries
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.attn_dropout if self.training else 0.0,
            is_causal=causal,
        )  # (B, nh, L, hs)
        return self.proj(y.transpose(1, 2).reshape(B, L, d))  # (B, L, d)
