"""TrainSpec: everything one training run is asked to do, in one frozen value.

`sigd train`, the nightly retrain, walk-forward folds and tuning all build one and hand it to
`pipeline.train.train`; it is saved in the artifact (`train_spec`), so an artifact says how to
train it again. Artifacts written before it existed get one rebuilt from their JSON
(`spec_of_meta`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import strategies.threshold as thr
from models.labels import LabelSpec
from models.targets import TargetSpec

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = (str(REPO / "daemon" / "localexchange" / "tape"),)
DEFAULT_SYMBOLS = ("ETH/USDT", "BTC/USDT")
SCHEDULERS = ("cosine", "onecycle", "plateau")
DECISION_TIMEFRAMES = ("1m", "1h", "4h", "1d")


@dataclass(frozen=True)
class TrainSpec:
    """One training run: model and size, data, target, loop knobs, augmentation, threshold rule."""

    model: str  # a registry name (models/registry.py)
    preset: str = "small"  # tiny | small | seed
    config: Mapping[str, Any] = field(default_factory=dict)  # model config fields over the preset
    data_dirs: tuple[str, ...] = DEFAULT_DATA  # first dir holding a tape wins
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS  # the first is the primary (trading metrics)
    start: str | None = None  # ISO date/time of the first primary bar (inclusive)
    end: str | None = None  # ... and the end (exclusive)
    target: TargetSpec = field(default_factory=TargetSpec)
    # panel (pooled, cross-sectional) training: which target family -- triple barrier, forward
    # return, meta-label, vol forecast (models/labels.py); None for the per-symbol window models
    label: LabelSpec | None = None
    epochs: int = 0  # 0 = the loop's default (models.fit.FitConfig)
    batch_size: int = 0  # 0 = chosen from free memory
    max_batches: int = 0  # training batches per epoch; 0 = the whole split
    max_val: int = 0  # validation samples for the per-epoch loss; 0 = all
    lr: float = 1e-3
    scheduler: str = "cosine"  # cosine (warm restarts) | onecycle | plateau
    jitter: float = 0.0  # augmentation, training split only: Gaussian noise sd on scaled inputs
    scaling: float = 0.0  # augmentation: per-sample scale factor ~ N(1, scaling)
    seed: int = 0
    device: str = "auto"
    fee: float = thr.DEFAULT_FEE  # per side, for the threshold search and the reported Sharpe
    hold: int = 0  # the threshold rule's holding period in bars; 0 = the target's span
    # Where the model's decisions are made (sigd compare's setup trigger): its out-of-sample
    # validation decides at these bar closes only, not on every 1m bar.
    decision_timeframe: str = "1m"
    # The samples' timeframe: 1m (the 1m files), or 1h/4h/1d straight from 1h files (the hourly
    # data set, `sigd backfill` output; 4h/1d derived where complete). The target's horizon and
    # the threshold's holding period count bars of it; a 1h/4h/1d trigger decides at its closes.
    trigger_timeframe: str = "1m"

    def __post_init__(self) -> None:
        for key in ("data_dirs", "symbols"):
            value = getattr(self, key)
            if isinstance(value, (str, Path)) or not value:
                raise ValueError(f"TrainSpec.{key}: expected a non-empty list, got {value!r}")
            object.__setattr__(self, key, tuple(str(v) for v in value))
        object.__setattr__(self, "config", dict(self.config))
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"TrainSpec.scheduler: {self.scheduler!r} is not one of {SCHEDULERS}")
        for key in ("epochs", "batch_size", "max_batches", "max_val", "hold"):
            if getattr(self, key) < 0:
                raise ValueError(f"TrainSpec.{key}: must be >= 0, got {getattr(self, key)}")
        for key in ("jitter", "scaling"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"TrainSpec.{key}: must be in [0, 1), got {getattr(self, key)}")
        if not self.lr > 0:
            raise ValueError(f"TrainSpec.lr: must be > 0, got {self.lr}")
        if self.decision_timeframe not in DECISION_TIMEFRAMES:
            raise ValueError(f"TrainSpec.decision_timeframe: {self.decision_timeframe!r} is not one of {DECISION_TIMEFRAMES}")
        if self.trigger_timeframe not in DECISION_TIMEFRAMES:
            raise ValueError(f"TrainSpec.trigger_timeframe: {self.trigger_timeframe!r} is not one of {DECISION_TIMEFRAMES}")
        if self.trigger_timeframe != "1m":  # a model triggered at 1h decides at 1h closes, not finer
            if self.decision_timeframe == "1m":
                object.__setattr__(self, "decision_timeframe", self.trigger_timeframe)
            elif self.decision_timeframe != self.trigger_timeframe:
                raise ValueError(
                    f"TrainSpec.decision_timeframe: {self.decision_timeframe!r} differs from "
                    f"trigger_timeframe {self.trigger_timeframe!r}"
                )

    @property
    def hold_bars(self) -> int:
        """The holding period the threshold is optimized with."""
        return self.hold or self.target.span

    def replace(self, **changes: Any) -> TrainSpec:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved in the artifact as `train_spec`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(
            config=dict(self.config),
            data_dirs=list(self.data_dirs),
            symbols=list(self.symbols),
            target=self.target.to_dict(),
            label=self.label.to_dict() if self.label else None,
        )
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainSpec:
        """Inverse of to_dict; an unknown key is an error naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(d) - known):
            raise ValueError(f"TrainSpec: unknown key(s) {unknown}; known: {sorted(known)}")
        fields = dict(d)
        if "target" in fields:
            fields["target"] = TargetSpec.from_dict(fields["target"])
        if fields.get("label") is not None:
            fields["label"] = LabelSpec.from_dict(fields["label"])
        return cls(**fields)


def spec_of_meta(meta: Mapping[str, Any]) -> TrainSpec:
    """The TrainSpec an artifact was trained with (rebuilt from older artifacts' JSON)."""
    if "train_spec" in meta:
        return TrainSpec.from_dict(meta["train_spec"])
    training, data = meta.get("training", {}), meta.get("data", {})
    return TrainSpec(
        model=meta["model"]["name"],
        preset=training.get("preset", "small"),
        data_dirs=tuple(data.get("dirs") or DEFAULT_DATA),
        symbols=tuple(meta.get("samples", {}).get("symbols") or DEFAULT_SYMBOLS),
        start=data.get("start"),
        end=data.get("end"),
        target=TargetSpec.from_dict(meta["target"]),
        batch_size=int(training.get("batch_size") or 0),
        seed=int(training.get("seed", 0)),
        fee=float(meta["threshold"].get("fee", thr.DEFAULT_FEE)),
        hold=int(meta["threshold"].get("hold_bars", 1)),
    )
