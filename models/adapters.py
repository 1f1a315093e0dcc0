"""How each family of networks meets the pipeline: feature spec, batches, loss, scores.

Two families: the window models of `registry.SEQUENCE_MODELS` (x [B, T, F] of indicator
features -> logits [B, 3] or a return [B, 1]) and the hybrid `mtf_transformer` (bars of several
timeframes -> a dict of heads). An adapter turns samples of a SampleSet into the model's
batch, computes the training loss, and turns outputs into scores for the threshold rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from models import registry
from models.datasets import TRAIN, SampleSet
from models.features import FeatureSpec
from models.losses import FocalLoss, make_loss
from models.mtf_transformer import mtf_loss
from models.targets import IGNORE

Batch = dict[str, Any]
AUX_KEYS = ("price", "volatility", "trend_strength", "pivots")


def _t(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


class SequenceAdapter:
    """Window models: one 1m window of indicator features per sample."""

    kind = "sequence"

    def __init__(self, name: str, mode: str) -> None:
        self.name, self.mode, self.loss = name, mode, make_loss(mode)

    def spec(self, seq_len: int, feature_set: str, inputs: tuple[str, ...]) -> FeatureSpec:
        """Feature spec before scalers are fitted."""
        return FeatureSpec("sequence", seq_len, ("1m",), feature_set)

    def config_overrides_base(self) -> dict[str, Any]:
        """Config fields known before the data is read."""
        return {"task": self.mode}

    def config_overrides(self, spec: FeatureSpec) -> dict[str, Any]:
        """Config fields the pipeline sets from the data."""
        return {"n_features": len(spec.feature_names), "task": self.mode}

    def inputs(self, ss: SampleSet, idx: np.ndarray, device: torch.device) -> Batch:
        """Model inputs for samples idx."""
        x, _ = ss.gather("1m", idx)  # (B, T, F)
        return {"x": _t(x, device)}

    def batch(self, ss: SampleSet, idx: np.ndarray, device: torch.device) -> Batch:
        """Inputs plus targets."""
        y = ss.y[idx].astype(np.int64 if self.mode == "classification" else np.float32)
        return {**self.inputs(ss, idx, device), "y": _t(y, device)}

    def forward(self, model: nn.Module, b: Batch) -> torch.Tensor:
        """Logits [B, 3] or value [B, 1]."""
        return model(b["x"])

    def step(self, model: nn.Module, b: Batch) -> tuple[torch.Tensor, int, int]:
        """Loss, correct argmax count (-1 in regression), labelled count."""
        out = self.forward(model, b)
        loss = self.loss(out, b["y"])
        if self.mode != "classification":
            return loss, -1, 0
        keep = b["y"] != IGNORE
        return loss, int((out.argmax(-1)[keep] == b["y"][keep]).sum()), int(keep.sum())

    def scores(self, model: nn.Module, b: Batch) -> np.ndarray:
        """Probabilities [B, 3] (classification) or predicted returns [B]."""
        out = self.forward(model, b).float()
        return torch.softmax(out, -1).cpu().numpy() if self.mode == "classification" else out[:, 0].cpu().numpy()


class MTFAdapter(SequenceAdapter):
    """The hybrid transformer: per-bar features of every trained timeframe, masked when missing."""

    kind = "mtf"

    def __init__(self, name: str, mode: str, aux_weight: float = 0.1) -> None:
        if mode != "classification":
            raise ValueError("mtf_transformer trains in classification mode only (its action head)")
        super().__init__(name, mode)
        self.focal, self.aux_weight, self.trend_tau = FocalLoss(), aux_weight, {}

    def spec(self, seq_len: int, feature_set: str, inputs: tuple[str, ...]) -> FeatureSpec:
        """Bar features of each input key."""
        return FeatureSpec("mtf", seq_len, inputs, "bar")

    def config_overrides_base(self) -> dict[str, Any]:
        """Nothing: the hybrid has no task switch."""
        return {}

    def config_overrides(self, spec: FeatureSpec) -> dict[str, Any]:
        """Nothing: the bar feature width is fixed at 5."""
        return {}

    def fit_trend_tau(self, ss: SampleSet) -> dict[str, float]:
        """tau_tf = median |rho| of next-bar returns over the training split (per timeframe)."""
        train = ss.split == TRAIN
        for key in ss.spec.inputs:
            rho = ss.extra[f"next_rho_{key}"][train]
            rho = np.abs(rho[np.isfinite(rho)])
            self.trend_tau[key] = float(np.median(rho)) if len(rho) else 0.0
        return self.trend_tau

    def inputs(self, ss: SampleSet, idx: np.ndarray, device: torch.device) -> Batch:
        """bars {key: [B, T, 5]} and present {key: [B]}."""
        bars, present = {}, {}
        for key in ss.spec.inputs:
            x, m = ss.gather(key, idx)
            bars[key], present[key] = _t(x, device), _t(m, device)
        return {"bars": bars, "present": present}

    def batch(self, ss: SampleSet, idx: np.ndarray, device: torch.device) -> Batch:
        """Inputs plus mtf_loss's targets: action, next bars and trends with masks, auxiliary heads."""
        b = self.inputs(ss, idx, device)
        b["y"] = _t(ss.y[idx].astype(np.int64), device)
        t: dict[str, Any] = {"action": b["y"], "next_bar": {}, "next_bar_mask": {}, "trend": {}, "trend_mask": {}}
        for key in ss.spec.inputs:
            ok = ss.extra[f"next_ok_{key}"][idx]
            t["next_bar"][key] = _t(ss.feats[key][np.where(ok, ss.ends[key][idx] + 1, 0)], device)
            rho, tau = ss.extra[f"next_rho_{key}"][idx], self.trend_tau.get(key, 0.0)
            t["trend"][key] = _t(np.where(rho > tau, 2, np.where(rho < -tau, 0, 1)), device)
            t["next_bar_mask"][key] = t["trend_mask"][key] = _t(ok, device)
        t.update({k: _t(ss.extra[f"aux_{k}"][idx].astype(np.float32), device) for k in AUX_KEYS})
        b["targets"] = t
        return b

    def forward(self, model: nn.Module, b: Batch) -> dict[str, Any]:
        """Every head's output."""
        return model(b["bars"], present=b["present"])

    def step(self, model: nn.Module, b: Batch) -> tuple[torch.Tensor, int, int]:
        """mtf_loss with focal action loss: + 0.1 x next-bar MSE + aux_weight x auxiliary heads."""
        out = self.forward(model, b)
        loss = mtf_loss(out, b["targets"], aux_weight=self.aux_weight, action_loss=self.focal)
        y, keep = b["y"], b["y"] != IGNORE
        return loss, int((out["action_logits"].argmax(-1)[keep] == y[keep]).sum()), int(keep.sum())

    def scores(self, model: nn.Module, b: Batch) -> np.ndarray:
        """Action probabilities [B, 3]."""
        return self.forward(model, b)["action_probs"].float().cpu().numpy()


def adapter_for(name: str, mode: str = "classification") -> SequenceAdapter:
    """The adapter of a registered model name."""
    registry.config_class(name)  # a clear error for an unknown name
    return MTFAdapter(name, mode) if name == "mtf_transformer" else SequenceAdapter(name, mode)


def mode_of(config: dict[str, Any]) -> str:
    """Classification or regression, from a model config dict."""
    return str(config.get("task", "classification"))
