"""Training losses: focal loss for the 3 classes (the seed's alpha 0.25, gamma 2), MSE for returns."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.targets import IGNORE


class FocalLoss(nn.Module):
    """Multi-class focal loss: mean over labelled samples of -alpha (1 - p_y)^gamma log p_y."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha, self.gamma = alpha, gamma

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """logits [B, 3] (any float dtype), y [B] int64 with IGNORE (-1) left out -> scalar."""
        keep = y != IGNORE
        if not bool(keep.any()):
            return logits.sum() * 0.0  # keeps the graph; nothing labelled in this batch
        logp = F.log_softmax(logits[keep].float(), dim=-1)  # float32 even under autocast
        logp_y = logp.gather(1, y[keep, None])[:, 0]
        return (-self.alpha * (1.0 - logp_y.exp()) ** self.gamma * logp_y).mean()


class MaskedMSE(nn.Module):
    """MSE over finite targets: out [B, 1] or [B], y [B]."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean squared error, NaN targets left out."""
        out = out.reshape(-1).float()
        keep = torch.isfinite(y)
        if not bool(keep.any()):
            return out.sum() * 0.0
        return F.mse_loss(out[keep], y[keep].float())


def make_loss(mode: str) -> nn.Module:
    """Focal loss for classification, MSE for regression."""
    return FocalLoss() if mode == "classification" else MaskedMSE()
