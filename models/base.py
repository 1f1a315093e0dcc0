"""Shared bases of the networks: configs with presets and a JSON round trip, and the window models.

`ModelConfig` is mixed into every frozen config dataclass: `preset(name, **overrides)`,
`to_dict()` (JSON-safe: tuples become lists) and `from_dict()` (unknown keys and wrong types
are refused with a clear error). `SequenceModel` is the contract every window model shares,
so one training harness fits them all:

    x [B, T, F] float (F = config.n_features, T ≤ config.seq_len, oldest bar first)
      → forward(x)       [B, 3] class logits (0 SHORT, 1 FLAT, 2 LONG), or [B, 1] value
      → forward_steps(x) [B, T, 3 | 1]: the output for every position t, computed from x[:, :t+1] only

The prediction is the one for the window's last position; `forward_steps` exists so that tests
(and plots) can prove causality: position t never sees positions after t.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, Self

import torch
from torch import nn

TASKS = ("classification", "regression")
N_CLASSES = 3  # 0 = SHORT, 1 = FLAT, 2 = LONG


class ModelConfig:
    """Mixin for the frozen config dataclasses: named presets and a checked dict round trip."""

    PRESETS: dict[str, dict[str, Any]] = {}

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            _check_type(type(self).__name__, f.name, value, hints[f.name])
            if hints[f.name] is float:
                object.__setattr__(self, f.name, float(value))  # 0 → 0.0: one JSON form per value
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the field when a value is impossible (subclasses extend)."""

    def require(self, ok: bool, key: str, why: str) -> None:
        """Raise a ValueError naming this config's field `key` unless `ok`."""
        if not ok:
            raise ValueError(f"{type(self).__name__}.{key}: {why} (got {getattr(self, key)!r})")

    def require_positive(self, *keys: str) -> None:
        """Every named field is a positive int, or a non-empty tuple of positive ints."""
        for key in keys:
            value = getattr(self, key)
            sizes = value if isinstance(value, tuple) else (value,)
            self.require(len(sizes) > 0 and min(sizes) > 0, key, "needs positive sizes")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Self:
        """The named size preset (`tiny`, `small`, `seed`), with field overrides."""
        if name not in cls.PRESETS:
            raise ValueError(f"{cls.__name__}: unknown preset {name!r}; known: {', '.join(cls.PRESETS)}")
        return cls.from_dict({**cls.PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (tuples as lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from `to_dict()` output; unknown keys are an error, missing keys take defaults."""
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; known: {known}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _check_type(owner: str, key: str, value: Any, hint: Any) -> None:
    """Plain runtime check of int / float / bool / str / tuple[T, ...] fields."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        ok = isinstance(value, tuple) and all(_is(v, args[0]) for v in value)
    else:
        ok = _is(value, hint)
    if not ok:
        raise ValueError(f"{owner}.{key}: expected {hint}, got {value!r}")


def _is(value: Any, t: Any) -> bool:
    if t is float:  # ints are fine where a float is expected; bools are not numbers here
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


@dataclasses.dataclass(frozen=True)
class SequenceConfig(ModelConfig):
    """Fields every window model shares; the pipeline sets `n_features` from its feature spec."""

    n_features: int = 8  # F: features per time step
    seq_len: int = 60  # T: window length the pipeline builds (the seed's look_back)
    task: str = "classification"  # or "regression": one value, the next return
    dropout: float = 0.3

    def check(self) -> None:
        """Validate the shared fields."""
        self.require_positive("n_features", "seq_len")
        self.require(self.task in TASKS, "task", f"must be one of {TASKS}")
        self.require(0.0 <= self.dropout < 1.0, "dropout", "must be in [0, 1)")

    @property
    def n_out(self) -> int:
        """Width of the output: 3 class logits, or 1 regression value."""
        return N_CLASSES if self.task == "classification" else 1


class SequenceModel(nn.Module):
    """Base of the window models: forward = the last position of forward_steps."""

    config: SequenceConfig

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, F] → [B, 3] logits (or [B, 1] value) for the window's last position."""
        return self.forward_steps(x, last_only=True)[:, -1]

    def forward_steps(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """x [B, T, F] → [B, T, n_out] (or [B, 1, n_out] when last_only); causal in t."""
        raise NotImplementedError

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, 3] (classification only). Call .eval() first for inference."""
        if self.config.task != "classification":
            raise ValueError(f"{type(self).__name__}: predict_proba needs task='classification'")
        return torch.softmax(self(x), dim=-1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class index [B] (0 SHORT, 1 FLAT, 2 LONG), or the predicted value [B] for regression."""
        out = self(x)
        return out.argmax(dim=-1) if self.config.task == "classification" else out.squeeze(-1)

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse a window of the wrong rank, width or length with a clear error."""
        name, cfg = type(self).__name__, self.config
        if x.dim() != 3 or x.shape[-1] != cfg.n_features:
            raise ValueError(f"{name}: expected x [B, T, {cfg.n_features}], got {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError(f"{name}: empty window (T = 0)")


def causal_mask(t: int, device: torch.device) -> torch.Tensor:
    """[t, t] bool, True where query i may NOT attend key j (j > i): the future is hidden."""
    return torch.ones(t, t, dtype=torch.bool, device=device).triu(1)


class LSTMStack(nn.Module):
    """Unidirectional LSTMs of decreasing width with dropout after each: [B, T, F] → [B, T, H_last]."""

    def __init__(self, n_in: int, units: tuple[int, ...], dropout: float) -> None:
        super().__init__()
        sizes = (n_in, *units)
        self.lstms = nn.ModuleList(nn.LSTM(i, o, batch_first=True) for i, o in zip(sizes, sizes[1:]))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the stack forward in time; state t has seen steps ≤ t only."""
        for lstm in self.lstms:
            x, _ = lstm(x)
            x = self.drop(x)  # (B, T, H_i)
        return x
