"""Model names → ("module:ModelClass", "module:ConfigClass"), resolved lazily (no torch on import).

    build("cnn_lstm_attn", {"n_features": 12})            # defaults + overrides
    build("mtf_transformer", preset="small")               # a named size preset
    build("seq_transformer", cfg.to_dict())                # rebuild from an artifact's JSON

A full "module:Class" pair is not accepted as a name: models are registered here, one line each.
Every model takes its config as its only constructor argument; every config has
`preset(name, **overrides)`, `to_dict()` and `from_dict()`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

MODELS: dict[str, tuple[str, str]] = {
    "mtf_transformer": ("models.mtf_transformer:MTFTransformer", "models.mtf_transformer:MTFConfig"),
    "cnn_lstm_attn": ("models.cnn_lstm_attn:CNNLSTMAttn", "models.cnn_lstm_attn:CNNLSTMAttnConfig"),
    "attention_lstm": ("models.attention_lstm:AttentionLSTM", "models.attention_lstm:AttentionLSTMConfig"),
    "seq_transformer": ("models.seq_transformer:SeqTransformer", "models.seq_transformer:SeqTransformerConfig"),
    "stacked_lstm": ("models.stacked_lstm:StackedLSTM", "models.stacked_lstm:StackedLSTMConfig"),
}
# The window models share one contract: x [B, T, F] → [B, 3] logits or [B, 1] value.
SEQUENCE_MODELS = ("cnn_lstm_attn", "attention_lstm", "seq_transformer", "stacked_lstm")


def resolve(path: str) -> Any:
    """Import "package.module:Name" and return the object."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _entry(name: str) -> tuple[str, str]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def model_class(name: str) -> Any:
    """The nn.Module class registered under `name`."""
    return resolve(_entry(name)[0])


def config_class(name: str) -> Any:
    """The config dataclass registered under `name`."""
    return resolve(_entry(name)[1])


def make_config(name: str, config: Mapping[str, Any] | None = None, preset: str | None = None) -> Any:
    """Config of model `name`: the preset (or the defaults) with the fields of `config` on top."""
    cls = config_class(name)
    overrides = dict(config or {})
    return cls.preset(preset, **overrides) if preset is not None else cls.from_dict(overrides)


def build(name: str, config: Mapping[str, Any] | None = None, preset: str | None = None) -> Any:
    """A fresh model `name` built from its config (see `make_config`)."""
    return model_class(name)(make_config(name, config, preset))
