"""Model families by name, one line each, resolved lazily (no torch on import).

    family("gru").build(preset="tiny")                        # a named size preset
    build("cnn_lstm_attn", {"n_features": 12})                 # defaults + overrides
    build("seq_transformer", cfg.to_dict())                    # rebuild from an artifact's JSON

Every model file exports `FAMILY` (models.family.Family): its network, config and IO.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

FAMILIES: dict[str, str] = {
    "mtf_transformer": "models.mtf_transformer:FAMILY",
    "cnn_lstm_attn": "models.cnn_lstm_attn:FAMILY",
    "attention_lstm": "models.attention_lstm:FAMILY",
    "seq_transformer": "models.seq_transformer:FAMILY",
    "stacked_lstm": "models.stacked_lstm:FAMILY",
    "gru": "models.gru:FAMILY",
    "tcn": "models.tcn:FAMILY",
    "seq2seq_attention": "models.seq2seq_attention:FAMILY",
    "tft": "models.tft:FAMILY",
    "informer": "models.informer:FAMILY",
    "cnn_lstm": "models.cnn_lstm:FAMILY",
}
MODELS = FAMILIES  # the names sigd serves and trains


def resolve(path: str) -> Any:
    """Import "package.module:Name" and return the object."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def family(name: str) -> Any:
    """The Family registered under `name`; a clear error naming the known ones otherwise."""
    try:
        path = FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(FAMILIES)}") from None
    return resolve(path)


def model_class(name: str) -> Any:
    """The nn.Module class registered under `name`."""
    return family(name).model


def config_class(name: str) -> Any:
    """The config dataclass registered under `name`."""
    return family(name).config


def make_config(name: str, config: Mapping[str, Any] | None = None, preset: str | None = None) -> Any:
    """Config of model `name`: the preset (or the defaults) with the fields of `config` on top."""
    return family(name).make_config(config, preset)


def build(name: str, config: Mapping[str, Any] | None = None, preset: str | None = None) -> Any:
    """A fresh model `name` built from its config (see `make_config`)."""
    return family(name).build(config, preset)
