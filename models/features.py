"""Features: one definition used by training, backtest and live alike.

Two kinds of input, named by `FeatureSpec.kind`:

- "mtf" (hybrid multi-timeframe transformer): per-bar features that depend only on the bar and
  its predecessor -- log(open, high, low, close / previous close) and the change of log(1 +
  volume) -- so the encoding of a past bar never changes and can be cached between bars.
  One window per input key ("1m", "1h", "1d", "btc_1m"; "1s" only when recorded history exists).
- "sequence" (CNN-LSTM-attention and the other sequence models): the causal indicators of
  `models.indicators` over the primary 1m window, or the seed's minimal set as fallback.

Scalers (per input key, per feature) are fitted on the training split only and travel in the
artifact; scaled values are clipped to +-CLIP so one crash bar cannot blow up the inputs.

Gaps: a window (the bars a sample's features are computed from) that spans a missing bar is
not used: in training and backtests the sample is dropped (sequence models) or that timeframe
is masked (hybrid, whose other timeframes still answer); live, `encode_windows` applies the
same rule, so the model sees exactly what it saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import numpy as np

from daemon.domain import timeframe_ms
from models import indicators

FEATURE_VERSION = 1
CLIP = 10.0
BAR_NAMES: tuple[str, ...] = ("log_open", "log_high", "log_low", "log_close", "log_volume_change")
WINDOW_KEYS: tuple[str, ...] = ("1s", "1m", "1h", "1d", "btc_1m")


def key_timeframe(key: str) -> str:
    """Window key -> timeframe ('btc_1m' -> '1m')."""
    return key.rsplit("_", 1)[-1]


def bar_features(bars: np.ndarray) -> np.ndarray:
    """Per-bar features [n, 5] of bars [n, 6]; row 0 is NaN (it has no predecessor)."""
    prev_close = np.concatenate([[np.nan], bars[:-1, 4]])
    logv = np.log1p(bars[:, 5])
    prev_logv = np.concatenate([[np.nan], logv[:-1]])
    out = np.log(bars[:, 1:5] / prev_close[:, None])
    return np.concatenate([out, (logv - prev_logv)[:, None]], axis=1)


@dataclass(frozen=True)
class Scaler:
    """Per-feature affine scaling fitted on training rows: (x - center) / scale, clipped."""

    kind: Literal["standard", "minmax"]
    center: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(cls, rows: np.ndarray, kind: Literal["standard", "minmax"] = "standard") -> "Scaler":
        """Fit on finite rows [n, F] (training split only)."""
        rows = rows[np.isfinite(rows).all(axis=1)]
        if len(rows) == 0:
            raise ValueError("cannot fit a scaler on zero finite rows")
        if kind == "standard":
            center, scale = rows.mean(axis=0), rows.std(axis=0)
        elif kind == "minmax":
            center, scale = rows.min(axis=0), rows.max(axis=0) - rows.min(axis=0)
        else:
            raise ValueError(f"unknown scaler {kind!r}; expected 'standard' or 'minmax'")
        scale = np.where(scale > 1e-12, scale, 1.0)
        return cls(kind, tuple(float(v) for v in center), tuple(float(v) for v in scale))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scale [..., F] -> float32 [..., F]."""
        z = (x - np.asarray(self.center)) / np.asarray(self.scale)
        return np.clip(z, -CLIP, CLIP).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "center": list(self.center), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Scaler":
        """Inverse of to_dict."""
        return cls(d["kind"], tuple(float(v) for v in d["center"]), tuple(float(v) for v in d["scale"]))


@dataclass(frozen=True)
class FeatureBuilder:
    """How one kind of feature rows is made from bars: names, history needed, the rows."""

    names: Callable[[str], tuple[str, ...]]  # feature_set -> column names
    history: Callable[[str], int]  # feature_set -> bars needed before a window's first row
    rows: Callable[[np.ndarray, str], np.ndarray]  # (bars [n, 6], feature_set) -> [n, F]


# FeatureSpec.kind -> its builder; a family's IO names the kind it trains on.
BUILDERS: dict[str, FeatureBuilder] = {
    "mtf": FeatureBuilder(lambda _: BAR_NAMES, lambda _: 1, lambda bars, _: bar_features(bars)),
    "sequence": FeatureBuilder(indicators.names, indicators.warmup, indicators.indicator_features),
}


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn windows into the model's input tensors (goes into the artifact)."""

    kind: str  # a key of BUILDERS: "mtf" (bar features) | "sequence" (indicators)
    seq_len: int
    inputs: tuple[str, ...]  # window keys the model was trained with
    feature_set: str = "bar"  # "bar" (mtf) | "full" | "minimal"
    scalers: Mapping[str, Scaler] = field(default_factory=dict)
    version: int = FEATURE_VERSION

    def __post_init__(self) -> None:
        if self.kind not in BUILDERS:
            raise ValueError(f"unknown feature kind {self.kind!r}; known: {', '.join(BUILDERS)}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Column names of one input's feature rows."""
        return BUILDERS[self.kind].names(self.feature_set)

    @property
    def history(self) -> int:
        """Bars needed before the first row of a window."""
        return BUILDERS[self.kind].history(self.feature_set)

    @property
    def required_windows(self) -> dict[str, int]:
        """Bars per window key the model needs at each prediction."""
        return {k: self.seq_len + self.history for k in self.inputs}

    def raw_features(self, bars: np.ndarray) -> np.ndarray:
        """Unscaled feature rows [n, F] for bars [n, 6] (NaN for rows without enough history)."""
        return BUILDERS[self.kind].rows(bars, self.feature_set)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "seq_len": self.seq_len, "inputs": list(self.inputs),
                "feature_set": self.feature_set, "feature_names": list(self.feature_names),
                "scalers": {k: s.to_dict() for k, s in self.scalers.items()}, "version": self.version}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FeatureSpec":
        """Inverse of to_dict; refuses another feature version."""
        if d.get("version") != FEATURE_VERSION:
            raise ValueError(f"feature version {d.get('version')!r} != supported {FEATURE_VERSION}")
        spec = cls(d["kind"], int(d["seq_len"]), tuple(d["inputs"]), d["feature_set"],
                   {k: Scaler.from_dict(s) for k, s in d["scalers"].items()}, int(d["version"]))
        if list(spec.feature_names) != list(d.get("feature_names", spec.feature_names)):
            raise ValueError(f"feature names {d.get('feature_names')} do not match {list(spec.feature_names)}")
        return spec


def window_is_contiguous(bars: np.ndarray, timeframe: str) -> bool:
    """True when bars [n, 6] has no missing bar between its first and last row."""
    return bool(np.all(np.diff(bars[:, 0]) == timeframe_ms(timeframe)))


def encode_window(bars: np.ndarray | None, key: str, spec: FeatureSpec) -> np.ndarray | None:
    """One window [n, 6] -> scaled features [seq_len, F] float32, or None (missing/short/gap)."""
    need = spec.required_windows[key]
    if bars is None or len(bars) < need:
        return None
    bars = np.asarray(bars, dtype=np.float64)[-need:]
    if not window_is_contiguous(bars, key_timeframe(key)):
        return None
    rows = spec.raw_features(bars)[-spec.seq_len:]
    return spec.scalers[key].transform(rows)


def encode_windows(windows: Mapping[str, Any], spec: FeatureSpec) -> dict[str, np.ndarray | None]:
    """Live windows (the daemon's window convention) -> {key: [seq_len, F] float32 or None}."""
    return {k: encode_window(windows.get(k), k, spec) for k in spec.inputs}
