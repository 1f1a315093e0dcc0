"""How a family meets the pipeline: windows, features, batches, loss and named scores.

`WindowIO` serves the window models (x [B, T, F] of indicator features over the trigger
window -> logits [B, 3] or a return [B, 1]; at a 1h/4h/1d trigger the context windows -- 1d,
BTC at 1h, ... (`models.features.trigger_keys`) -- are encoded the same way and stacked beside
it on the feature axis, x [B, T, F x inputs], zeros where a context window is missing); a family with other inputs or heads subclasses it in its
own model file (the hybrid transformer: models/mtf_transformer.py). The training pipeline, the
Predictor and the benchmarks only call these methods: no family is named outside its file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from daemon.domain import CLASS_SCORES
from models.datasets import SampleSet
from models.features import FeatureSpec, trigger_keys
from models.indicators import FULL_WARMUP
from models.losses import make_loss
from models.targets import IGNORE

Batch = dict[str, Any]
Log = Callable[[str], None]
REGRESSION_SCORE = "return"  # the regression families' one score: the predicted next-bar return


def tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """numpy -> torch on device (contiguous copy when needed)."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def decision_scores(named: Mapping[str, np.ndarray], mode: str) -> np.ndarray:
    """The threshold rule's input from named scores: probabilities [B, 3] or returns [B]."""
    if mode == "classification":
        return np.stack([np.asarray(named[k]) for k in CLASS_SCORES], axis=-1)
    return np.asarray(named[REGRESSION_SCORE])


class WindowIO:
    """Window models: one window of the 1m series' indicator features per sample."""

    minute_keys: tuple[str, ...] = ("1m",)  # the windows this family can use at a 1m trigger
    feature_kind = "sequence"  # FeatureSpec.kind: models.features' builder of its features

    def __init__(self, name: str, mode: str, trigger: str = "1m") -> None:
        self.name, self.mode, self.loss = name, mode, make_loss(mode)
        self.trigger = trigger  # the samples' (and decisions') timeframe
        self.window_keys = trigger_keys(trigger, self.minute_keys)  # the trigger's key first

    def feature_spec(self, seq_len: int, shortest: int, inputs: tuple[str, ...], log: Log) -> FeatureSpec:
        """Feature spec before scalers are fitted; `shortest` = trigger bars of the shortest symbol."""
        # The seed's fallback: too few rows for the indicators -> the minimal feature set.
        need = seq_len + FULL_WARMUP + 50
        if shortest < need:
            log(f"only {shortest} bars: minimal feature set (indicators need {need})")
        keys = inputs if self.trigger != "1m" else ("1m",)
        return FeatureSpec(self.feature_kind, seq_len, keys, "full" if shortest >= need else "minimal", trigger=self.trigger)

    def config_overrides_base(self) -> dict[str, Any]:
        """Config fields known before the data is read."""
        return {"task": self.mode}

    def config_overrides(self, spec: FeatureSpec) -> dict[str, Any]:
        """Config fields the pipeline sets from the data: every input's features side by side."""
        return {"n_features": len(spec.feature_names) * len(spec.inputs), "task": self.mode}

    aux_targets: Callable[[np.ndarray, np.ndarray, int], dict[str, np.ndarray]] | None = None

    def prepare(self, ss: SampleSet) -> None:
        """Fit anything the family learns from the training split before training (nothing here)."""

    def state(self) -> dict[str, Any] | None:
        """What `prepare` learned, saved in the artifact (training.trend_tau)."""
        return None

    def restore(self, state: Mapping[str, Any] | None) -> None:
        """Reload what `prepare` learned from an artifact."""

    def inputs(self, ss: SampleSet, idx: np.ndarray, device: torch.device) -> Batch:
        """Model inputs for samples idx: (B, T, F x inputs), a masked context window as zeros."""
        parts = [ss.gather(key, idx)[0] for key in ss.spec.inputs]  # (B, T, F) each, zeros where masked
        return {"x": tensor(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1), device)}

    def batch(self, ss: SampleSet, idx: np.ndarray, device: torch.device) -> Batch:
        """Inputs plus targets."""
        y = ss.y[idx].astype(np.int64 if self.mode == "classification" else np.float32)
        return {**self.inputs(ss, idx, device), "y": tensor(y, device)}

    def stack(self, encoded: Sequence[Mapping[str, np.ndarray | None]], spec: FeatureSpec, device: torch.device) -> Batch:
        """Model inputs from live encoded windows (models.features.encode_windows), one per sample;
        a missing context window is zeros, as in training."""
        zeros = np.zeros((spec.seq_len, len(spec.feature_names)), np.float32)
        rows = [np.concatenate([e[k] if e[k] is not None else zeros for k in spec.inputs], axis=-1) for e in encoded]
        return {"x": tensor(np.stack(rows), device)}

    def example(
        self, config: Any, batch: int, device: torch.device, generator: torch.Generator | None = None, steps: int | None = None
    ) -> Batch:
        """Random inputs of the model's shape and random labels (benchmarks, tests): `step` runs on it."""
        t = steps or config.seq_len
        return {
            "x": torch.randn(batch, t, config.n_features, generator=generator).to(device),
            "y": self.random_labels(batch, device, generator),
        }

    def random_labels(self, batch: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        """Classes [B] (classification) or returns [B] (regression), for `example`."""
        if self.mode == "classification":
            return torch.randint(0, 3, (batch,), generator=generator).to(device)
        return (0.001 * torch.randn(batch, generator=generator)).to(device)

    def float_inputs(self, b: Batch) -> list[tuple[Any, str]]:
        """(container, key) of every float input tensor: what augmentation may perturb."""
        return [(b, "x")]

    def forward(self, model: nn.Module, b: Batch) -> Any:
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

    def named(self, out: Any) -> dict[str, np.ndarray]:
        """Outputs -> named scores [B] each: p_short/p_flat/p_long, or the regression "return"."""
        out = out.detach().float()
        if self.mode != "classification":
            return {REGRESSION_SCORE: out[:, 0].cpu().numpy()}
        probs = torch.softmax(out, -1).cpu().numpy()
        return {k: probs[:, i] for i, k in enumerate(CLASS_SCORES)}

    def outputs(self, model: nn.Module, b: Batch) -> dict[str, np.ndarray]:
        """Every named score of a batch."""
        return self.named(self.forward(model, b))

    def scores(self, model: nn.Module, b: Batch) -> np.ndarray:
        """The threshold rule's input: probabilities [B, 3] (classification) or returns [B]."""
        return decision_scores(self.outputs(model, b), self.mode)

    def attention(self, model: nn.Module, b: Batch) -> np.ndarray | None:
        """Attention of the prediction over the window [B, T] (oldest first), or None without one."""
        if not hasattr(model, "attention_weights") or not getattr(model.config, "use_attention", True):
            return None
        return model.attention_weights(b["x"]).detach().float().cpu().numpy()
