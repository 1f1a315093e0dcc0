"""Features: one definition used by training, backtest and live alike.

Two kinds of input, named by `FeatureSpec.kind`:

- "mtf" (hybrid multi-timeframe transformer): per-bar features that depend only on the bar and
  its predecessor, so the encoding of a past bar never changes and can be cached between bars.
  One window per input key ("1m", "1h", "1d", "btc_1m"; "1s" only when recorded history exists).
  Two versioned sets:
    "bar"  (feature version 1, the artifacts shipped before it was found broken): log(open,
           high, low, close / previous close) and the change of log(1 + volume). Its `log_open`
           = log(open / previous close) measures the exchange's tick relative to the price, not
           the market: on Binance the open nearly always equals the previous close, its scaler
           scale was 1.2e-5, and 20-58 % of the altcoins' values clipped at +-CLIP
           (`python -m daemon.research.ablation`). Kept only so those artifacts still load.
    "bar2" (feature version 2, what training uses now): comparable across coins and regimes.
           `log_open` is replaced by log_range = log(high / low), the bar's range; then the
           four price features (range, high, low, close against the previous close) are
           divided by the bar's recent volatility: the root mean square of log(close / previous
           close) over the VOL_BARS bars before it. So a value reads "this many recent sds",
           whatever the coin's price, tick or volatility and whatever the regime; the scaler
           (fitted on one month of one coin) no longer decides what is extreme. A bar's value
           still depends only on that bar and the bars before it, so a past bar's encoding never
           changes.
           The volume change is unchanged (already scale-free).
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

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from daemon.domain import timeframe_ms
from models import indicators

FEATURE_VERSION = 2  # what new artifacts are written with
SUPPORTED_VERSIONS = (1, 2)  # what loads; version 1 knows only the "bar" mtf set
CLIP = 10.0
BAR_NAMES: tuple[str, ...] = ("log_open", "log_high", "log_low", "log_close", "log_volume_change")  # v1 "bar"
BAR2_NAMES: tuple[str, ...] = ("log_range", "log_high", "log_low", "log_close", "log_volume_change")  # v2 "bar2"
MTF_SETS: dict[str, tuple[str, ...]] = {"bar": BAR_NAMES, "bar2": BAR2_NAMES}
VOL_BARS = 20  # bar2: bars of recent volatility each bar's price features are measured in
WINDOW_KEYS: tuple[str, ...] = ("1s", "1m", "1h", "1d", "btc_1m")
# The trigger timeframe: the primary series whose closed bars are samples (training) and
# decisions (live). At 1m a family reads its own `window_keys`; at 1h/4h/1d every family reads
# the trigger window plus the context the hourly data set can give (4h/1d derived from 1h,
# models/data.py) and BTC at 1h (the daemon's `reference_timeframe = "1h"`). 1h decisions take
# no 4h context: the live feed (and the local exchange) stream 1m/1h/1d, not 4h.
TRIGGER_TIMEFRAMES: tuple[str, ...] = ("1m", "1h", "4h", "1d")
HOURLY_KEYS: dict[str, tuple[str, ...]] = {
    "1h": ("1h", "1d", "btc_1h"),
    "4h": ("4h", "1h", "1d", "btc_1h"),
    "1d": ("1d", "4h", "btc_1h"),
}


def trigger_keys(trigger: str, minute_keys: tuple[str, ...]) -> tuple[str, ...]:
    """The window keys of a model triggered at `trigger` (the trigger's key first); at 1m the
    family's own keys `minute_keys`."""
    if trigger == "1m":
        return minute_keys
    if trigger not in HOURLY_KEYS:
        raise ValueError(f"trigger timeframe {trigger!r} is not one of {TRIGGER_TIMEFRAMES}")
    return HOURLY_KEYS[trigger]


def key_timeframe(key: str) -> str:
    """Window key -> timeframe ('btc_1m' -> '1m')."""
    return key.rsplit("_", 1)[-1]


def bar_features(bars: np.ndarray, feature_set: str = "bar") -> np.ndarray:
    """Per-bar features [..., n, 5] of bars [..., n, 6] (`MTF_SETS[feature_set]`); row 0 is NaN (no
    predecessor). A batch of windows [B, n, 6] gives, bit for bit, what each window gives alone."""
    if feature_set not in MTF_SETS:
        raise ValueError(f"unknown mtf feature set {feature_set!r}; known: {', '.join(MTF_SETS)}")
    first = np.full((*bars.shape[:-2], 1), np.nan)
    prev_close = np.concatenate([first, bars[..., :-1, 4]], axis=-1)
    logv = np.log1p(bars[..., 5])
    prev_logv = np.concatenate([first, logv[..., :-1]], axis=-1)
    out = np.log(bars[..., 1:5] / prev_close[..., None])
    if feature_set == "bar2":
        out[..., 0] = np.log(bars[..., 2] / bars[..., 3])
        out /= recent_vol(out[..., 3], VOL_BARS)[..., None]
    return np.concatenate([out, (logv - prev_logv)[..., None]], axis=-1)


def recent_vol(log_close: np.ndarray, n: int) -> np.ndarray:
    """Root mean square of the n values before each row ([..., k] -> [..., k]; NaN for the first n
    rows and where that is 0). Summed window by window, so a row's value is bit-identical whether
    computed over a whole series (training) or over a live window (parity)."""
    out = np.full(log_close.shape, np.nan)
    if log_close.shape[-1] > n:
        windows = np.lib.stride_tricks.sliding_window_view(log_close[..., :-1] ** 2, n, axis=-1)  # rows n.. use [i-n, i)
        rms = np.sqrt(windows.mean(axis=-1))
        out[..., n:] = np.where(rms > 0, rms, np.nan)
    return out


@dataclass(frozen=True)
class Scaler:
    """Per-feature affine scaling fitted on training rows: (x - center) / scale, clipped."""

    kind: Literal["standard", "minmax"]
    center: tuple[float, ...]
    scale: tuple[float, ...]

    @classmethod
    def fit(cls, rows: np.ndarray, kind: Literal["standard", "minmax"] = "standard") -> Scaler:
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

    def clipped(self, x: np.ndarray) -> np.ndarray:
        """bool [..., F]: which finite values of x `transform` clips at +-CLIP."""
        z = (x - np.asarray(self.center)) / np.asarray(self.scale)
        with np.errstate(invalid="ignore"):
            return np.abs(z) > CLIP

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "center": list(self.center), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scaler:
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
    "mtf": FeatureBuilder(lambda fs: MTF_SETS.get(fs, BAR_NAMES), lambda fs: VOL_BARS + 1 if fs == "bar2" else 1, bar_features),
    "sequence": FeatureBuilder(indicators.names, indicators.warmup, indicators.indicator_features),
}


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn windows into the model's input tensors (goes into the artifact)."""

    kind: str  # a key of BUILDERS: "mtf" (bar features) | "sequence" (indicators)
    seq_len: int
    inputs: tuple[str, ...]  # window keys the model was trained with
    feature_set: str = "bar"  # "bar2" | "bar" (mtf, v1 artifacts only) | "full" | "minimal"
    scalers: Mapping[str, Scaler] = field(default_factory=dict)
    version: int = FEATURE_VERSION
    # share of values clipped at +-CLIP per input key and feature, on the training rows
    clip_share: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    trigger: str = "1m"  # the input key whose closed bars are the samples / decisions

    def __post_init__(self) -> None:
        if self.trigger != "1m" and self.trigger not in self.inputs:  # 1m: older specs may name other inputs only
            raise ValueError(f"trigger {self.trigger!r} is not one of the inputs {list(self.inputs)}")
        if self.kind not in BUILDERS:
            raise ValueError(f"unknown feature kind {self.kind!r}; known: {', '.join(BUILDERS)}")
        if self.version not in SUPPORTED_VERSIONS:
            raise ValueError(f"feature version {self.version!r} is not one of {SUPPORTED_VERSIONS}")
        if self.kind == "mtf" and self.feature_set not in MTF_SETS:
            raise ValueError(f"unknown mtf feature set {self.feature_set!r}; known: {', '.join(MTF_SETS)}")
        if self.feature_set == "bar2" and self.version < 2:
            raise ValueError("feature set 'bar2' needs feature version >= 2")

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
        out = {
            "kind": self.kind,
            "seq_len": self.seq_len,
            "inputs": list(self.inputs),
            "feature_set": self.feature_set,
            "feature_names": list(self.feature_names),
            "scalers": {k: s.to_dict() for k, s in self.scalers.items()},
            "version": self.version,
        }
        if self.clip_share:
            out["clip_share"] = {k: list(v) for k, v in self.clip_share.items()}
        if self.trigger != "1m":  # absent = 1m: the 1m artifacts' JSON (and version) unchanged
            out["trigger"] = self.trigger
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        """Inverse of to_dict; refuses a feature version this code does not know."""
        if d.get("version") not in SUPPORTED_VERSIONS:
            raise ValueError(f"feature version {d.get('version')!r} is not one of the supported {SUPPORTED_VERSIONS}")
        spec = cls(
            d["kind"],
            int(d["seq_len"]),
            tuple(d["inputs"]),
            d["feature_set"],
            {k: Scaler.from_dict(s) for k, s in d["scalers"].items()},
            int(d["version"]),
            {k: tuple(float(x) for x in v) for k, v in d.get("clip_share", {}).items()},
            str(d.get("trigger", "1m")),
        )
        if list(spec.feature_names) != list(d.get("feature_names", spec.feature_names)):
            raise ValueError(f"feature names {d.get('feature_names')} do not match {list(spec.feature_names)}")
        return spec


def window_is_contiguous(bars: np.ndarray, timeframe: str) -> bool:
    """True when bars [n, 6] has no missing bar between its first and last row."""
    return bool(np.all(np.diff(bars[:, 0]) == timeframe_ms(timeframe)))


class ClipStats:
    """Running share of clipped values per input key and feature (live: the Predictor keeps one)."""

    def __init__(self) -> None:
        self.clipped: dict[str, np.ndarray] = {}
        self.values: dict[str, int] = {}
        self._lock = threading.Lock()  # a cycle's symbols may be encoded in parts on two threads

    def add(self, key: str, clipped: np.ndarray) -> None:
        """Count one window's clipped mask [rows, F] (only its newest row is new after the first)."""
        with self._lock:
            self.clipped[key] = self.clipped.get(key, 0) + clipped.sum(axis=0)
            self.values[key] = self.values.get(key, 0) + len(clipped)

    def share(self) -> dict[str, tuple[float, ...]]:
        """{key: per-feature share of clipped values} so far."""
        return {k: tuple(float(c) / max(self.values[k], 1) for c in v) for k, v in self.clipped.items()}


def encode_window(bars: np.ndarray | None, key: str, spec: FeatureSpec, stats: ClipStats | None = None) -> np.ndarray | None:
    """One window [n, 6] -> scaled features [seq_len, F] float32, or None (missing/short/gap)."""
    need = spec.required_windows[key]
    if bars is None or len(bars) < need:
        return None
    bars = np.asarray(bars, dtype=np.float64)[-need:]
    if not window_is_contiguous(bars, key_timeframe(key)):
        return None
    rows = spec.raw_features(bars)[-spec.seq_len :]
    if stats is not None:
        stats.add(key, spec.scalers[key].clipped(rows[-1:]))  # the newest bar: each bar counted once live
    return spec.scalers[key].transform(rows)


def encode_windows(windows: Mapping[str, Any], spec: FeatureSpec, stats: ClipStats | None = None) -> dict[str, np.ndarray | None]:
    """Live windows (the daemon's window convention) -> {key: [seq_len, F] float32 or None}."""
    return {k: encode_window(windows.get(k), k, spec, stats) for k in spec.inputs}


def encode_batch(
    windows: Sequence[np.ndarray | None], key: str, spec: FeatureSpec, stats: ClipStats | None = None
) -> list[np.ndarray | None]:
    """`encode_window` over many windows of one key (a decision cycle's symbols), the same values
    bit for bit: the full, gap-free windows are stacked [B, n, 6] and encoded in one vectorized
    pass (per-window numpy calls cost more than their arithmetic at a few hundred rows)."""
    need = spec.required_windows[key]
    out: list[np.ndarray | None] = [None] * len(windows)
    full = [i for i, w in enumerate(windows) if w is not None and len(w) >= need]
    if not full:
        return out
    bars = np.stack([np.asarray(windows[i], dtype=np.float64)[-need:] for i in full])  # [B, need, 6]
    gap_free = np.all(np.diff(bars[:, :, 0], axis=1) == timeframe_ms(key_timeframe(key)), axis=1)
    keep = [i for i, ok in zip(full, gap_free) if ok]
    if not keep:
        return out
    rows = spec.raw_features(bars[gap_free])[:, -spec.seq_len :]
    if stats is not None:
        stats.add(key, spec.scalers[key].clipped(rows[:, -1]))  # each window's newest bar, as encode_window counts
    scaled = spec.scalers[key].transform(rows)
    for j, i in enumerate(keep):
        out[i] = scaled[j]
    return out


def encode_windows_batch(
    windows: Sequence[Mapping[str, Any]], spec: FeatureSpec, stats: ClipStats | None = None
) -> list[dict[str, np.ndarray | None]]:
    """`encode_windows` over many window sets (one per symbol), each key in one vectorized pass."""
    per_key = {k: encode_batch([w.get(k) for w in windows], k, spec, stats) for k in spec.inputs}
    return [{k: per_key[k][i] for k in spec.inputs} for i in range(len(windows))]
