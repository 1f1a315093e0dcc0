"""A model family: everything the pipeline needs to know about one network, in one object.

Each model file exports `FAMILY = Family(name, Model, Config, IO)`; `models.registry` maps a
name to it, one line per family. The pipeline never asks which family it holds: it asks the
family's IO (`models.io.WindowIO` or a subclass in the model's own file) for

    window_keys      the windows it needs at its trigger timeframe ("1m" only, every timeframe,
                     or at 1h/4h/1d the trigger plus its 1d/BTC context)
    feature_spec()   its feature builder (FeatureSpec.kind names it)
    step()           its training loss
    outputs()        its outputs as named scores: p_short/p_flat/p_long (or the regression
                     "return") plus any extra head (confidence, next-bar return, quantiles)
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    """One network: its module class, its config dataclass (with presets) and its IO class."""

    name: str
    model: Any  # nn.Module class; its only constructor argument is its config
    config: Any  # a frozen ModelConfig dataclass with PRESETS tiny/small/seed
    io: Any  # models.io.WindowIO or a subclass (or its "module:Class" path): windows, features, loss, scores

    def make_config(self, config: Mapping[str, Any] | None = None, preset: str | None = None) -> Any:
        """The preset (or the defaults) with the fields of `config` on top."""
        overrides = dict(config or {})
        return self.config.preset(preset, **overrides) if preset is not None else self.config.from_dict(overrides)

    def build(self, config: Mapping[str, Any] | None = None, preset: str | None = None) -> Any:
        """A fresh network built from `make_config(config, preset)`."""
        return self.model(self.make_config(config, preset))

    def make_io(self, mode: str = "classification", trigger: str = "1m") -> Any:
        """The IO object for training or serving in `mode` (classification | regression), its
        samples at the close of `trigger` bars (1m, 1h, 4h or 1d)."""
        io = self.io
        if isinstance(io, str):
            module, _, name = io.partition(":")
            io = getattr(importlib.import_module(module), name)
        return io(self.name, mode, trigger)
