"""The hybrid transformer's IO (models/mtf_transformer.py's FAMILY): windows of every timeframe,
masks for missing ones, mtf_loss with its auxiliary targets, and the extra heads as scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from models.datasets import TRAIN, SampleSet
from models.features import WINDOW_KEYS, FeatureSpec
from models.io import Batch, Log, WindowIO, tensor
from models.losses import FocalLoss
from models.mtf_transformer import BAR_FEATURES, mtf_loss
from models.targets import IGNORE, mtf_aux_targets

AUX_KEYS = ("price", "volatility", "trend_strength", "pivots")
EXTRA_SCORES = ("confidence", "price", "volatility", "trend_strength")  # served beside the class probabilities


class MTFIO(WindowIO):
    """The hybrid's IO: per-bar features of every trained timeframe, masked when missing."""

    minute_keys = WINDOW_KEYS
    feature_kind = "mtf"
    aux_targets = staticmethod(mtf_aux_targets)

    def __init__(self, name: str, mode: str, trigger: str = "1m", aux_weight: float = 0.1) -> None:
        if mode != "classification":
            raise ValueError(f"{name} trains in classification mode only (its action head)")
        super().__init__(name, mode, trigger)
        self.focal, self.aux_weight, self.trend_tau = FocalLoss(), aux_weight, {}

    def feature_spec(self, seq_len: int, shortest: int, inputs: tuple[str, ...], log: Log) -> FeatureSpec:
        """Bar features of each input key (no indicator history needed): the v2 set, whose inputs
        are comparable across coins (models/features.py says why v1's log_open was not)."""
        return FeatureSpec(self.feature_kind, seq_len, inputs, "bar2", trigger=self.trigger)

    def config_overrides_base(self) -> dict[str, Any]:
        """Nothing: the hybrid has no task switch."""
        return {}

    def config_overrides(self, spec: FeatureSpec) -> dict[str, Any]:
        """At a 1h/4h/1d trigger, the timeframe embedding's slots are the trained inputs (the
        1m layout of TIMEFRAMES otherwise); the bar feature width is fixed at 5."""
        return {} if spec.trigger == "1m" else {"timeframes": tuple(spec.inputs)}

    def prepare(self, ss: SampleSet) -> None:
        """tau_tf = median |rho| of next-bar returns over the training split (per timeframe)."""
        train = ss.split == TRAIN
        for key in ss.spec.inputs:
            rho = ss.extra[f"next_rho_{key}"][train]
            rho = np.abs(rho[np.isfinite(rho)])
            self.trend_tau[key] = float(np.median(rho)) if len(rho) else 0.0

    def state(self) -> dict[str, Any] | None:
        """The trend thresholds (training.trend_tau in the artifact)."""
        return dict(self.trend_tau)

    def restore(self, state: Mapping[str, Any] | None) -> None:
        """Reload the trend thresholds."""
        self.trend_tau = dict(state or {})

    def inputs(self, ss: SampleSet, idx: np.ndarray, device: torch.device) -> Batch:
        """bars {key: [B, T, 5]} and present {key: [B]}."""
        bars, present = {}, {}
        for key in ss.spec.inputs:
            x, m = ss.gather(key, idx)
            bars[key], present[key] = tensor(x, device), tensor(m, device)
        return {"bars": bars, "present": present}

    def batch(self, ss: SampleSet, idx: np.ndarray, device: torch.device) -> Batch:
        """Inputs plus mtf_loss's targets: action, next bars and trends with masks, auxiliary heads."""
        b = self.inputs(ss, idx, device)
        b["y"] = tensor(ss.y[idx].astype(np.int64), device)
        t: dict[str, Any] = {"action": b["y"], "next_bar": {}, "next_bar_mask": {}, "trend": {}, "trend_mask": {}}
        for key in ss.spec.inputs:
            ok = ss.extra[f"next_ok_{key}"][idx]
            t["next_bar"][key] = tensor(ss.feats[key][np.where(ok, ss.ends[key][idx] + 1, 0)], device)
            rho, tau = ss.extra[f"next_rho_{key}"][idx], self.trend_tau.get(key, 0.0)
            t["trend"][key] = tensor(np.where(rho > tau, 2, np.where(rho < -tau, 0, 1)), device)
            t["next_bar_mask"][key] = t["trend_mask"][key] = tensor(ok, device)
        t.update({k: tensor(ss.extra[f"aux_{k}"][idx].astype(np.float32), device) for k in AUX_KEYS})
        b["targets"] = t
        return b

    def stack(self, encoded: Sequence[Mapping[str, np.ndarray | None]], spec: FeatureSpec, device: torch.device) -> Batch:
        """bars per trained key (zeros where a window is missing) and the present masks."""
        shape = (spec.seq_len, len(spec.feature_names))
        bars = {
            k: tensor(np.stack([e[k] if e[k] is not None else np.zeros(shape, np.float32) for e in encoded]), device)
            for k in spec.inputs
        }
        present = {k: tensor(np.array([e[k] is not None for e in encoded]), device) for k in spec.inputs}
        return {"bars": bars, "present": present}

    def example(
        self, config: Any, batch: int, device: torch.device, generator: torch.Generator | None = None, steps: int | None = None
    ) -> Batch:
        """Random bars of every timeframe but 1s (the daemon's usual inputs) and action labels."""
        t = steps or config.seq_len
        keys = [k for k in config.timeframes if k != "1s"]
        y = self.random_labels(batch, device, generator)
        return {
            "bars": {k: torch.randn(batch, t, BAR_FEATURES, generator=generator).to(device) for k in keys},
            "present": {k: torch.ones(batch, dtype=torch.bool, device=device) for k in keys},
            "y": y,
            "targets": {"action": y},
        }

    def float_inputs(self, b: Batch) -> list[tuple[Any, str]]:
        """Every timeframe's bars."""
        return [(b["bars"], k) for k in b["bars"]]

    def forward(self, model: nn.Module, b: Batch) -> dict[str, Any]:
        """Every head's output."""
        return model(b["bars"], present=b["present"])

    def step(self, model: nn.Module, b: Batch) -> tuple[torch.Tensor, int, int]:
        """mtf_loss with focal action loss: + 0.1 x next-bar MSE + aux_weight x auxiliary heads."""
        out = self.forward(model, b)
        loss = mtf_loss(out, b["targets"], aux_weight=self.aux_weight, action_loss=self.focal)
        y, keep = b["y"], b["y"] != IGNORE
        return loss, int((out["action_logits"].argmax(-1)[keep] == y[keep]).sum()), int(keep.sum())

    def named(self, out: Any) -> dict[str, np.ndarray]:
        """Action probabilities, the confidence head and the market heads (H-bar log return,
        volatility, trend strength)."""
        named = super().named(out["action_logits"])
        named.update({k: out[k][:, 0].detach().float().cpu().numpy() for k in EXTRA_SCORES})
        return named

    def attention(self, model: nn.Module, b: Batch) -> np.ndarray | None:
        """The summary token's attention over the window's ages (last main layer)."""
        return model.attention_weights(b["bars"], b["present"]).detach().float().cpu().numpy()
