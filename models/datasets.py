"""Samples without look-ahead: which trigger bars become samples, their split, their windows.

A sample is one closed bar t of the primary (trigger) series: 1m by default, or 1h/4h/1d
(`FeatureSpec.trigger`; its close time T = ts + one trigger bar). For each
input key the window is the `seq_len` newest bars that had closed at T -- exactly the ring
buffer the daemon holds at T. The primary 1m series is cut chronologically into 70 / 15 / 15
blocks; a sample belongs to a block only if its whole 1m input window (with indicator
history) AND its target span lie inside that block, so no window or label crosses a split
boundary. Context windows (1h, 1d, BTC) only ever hold bars closed before T, i.e. the past.
Per-symbol tables are built separately and concatenated (a global model concatenates
windows, never raw rows); feature arrays are concatenated with offsets, and every window is
checked to lie inside its own symbol's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from daemon.domain import timeframe_ms
from models.data import contiguous_ends
from models.features import FeatureSpec, Scaler, key_timeframe
from models.targets import TargetSpec, labels

TRAIN, VAL, TEST = 0, 1, 2
RATIOS = (0.70, 0.15, 0.15)
MIN_SAMPLES = 10


@dataclass
class SymbolSamples:
    """One symbol's samples: trigger rows, split, per-key window ends (-1 = masked), targets."""

    symbol: str
    rows: np.ndarray  # int64 [N] rows of the primary 1m series
    split: np.ndarray  # int64 [N] TRAIN/VAL/TEST
    ends: dict[str, np.ndarray]  # key -> int64 [N] index of the window's newest bar, -1 = masked
    y: np.ndarray  # [N] int64 labels (classification) or float64 returns (regression)
    next_ret: np.ndarray  # float64 [N] close[t+1]/close[t]-1 (0 across a gap): the Sharpe series
    close_ts: np.ndarray  # int64 [N] T, close time of the trigger bar
    block_end_ts: np.ndarray  # int64 [N] end (close time) of the sample's split block
    next_ok: dict[str, np.ndarray]  # key -> bool [N]: the bar after the window is known, in-block
    aux: dict[str, np.ndarray]  # the hybrid's auxiliary targets (models.targets.mtf_aux_targets)


def _blocks(n: int, ratios: tuple[float, float, float]) -> np.ndarray:
    if abs(sum(ratios) - 1.0) > 1e-9 or min(ratios) <= 0:
        raise ValueError(f"split ratios must be positive and sum to 1, got {ratios}")
    b0, b1 = int(n * ratios[0]), int(n * (ratios[0] + ratios[1]))
    return np.array([0, b0, b1, n])


def _context_ends(bars: np.ndarray | None, key: str, close_ts: np.ndarray, need: int) -> np.ndarray:
    """Index of the newest bar closed at each T, -1 where the window is short, stale or gappy."""
    if bars is None or len(bars) == 0:
        return np.full(len(close_ts), -1, dtype=np.int64)
    tf = timeframe_ms(key_timeframe(key))
    closes = bars[:, 0].astype(np.int64) + tf
    ends = np.searchsorted(closes, close_ts, side="right") - 1
    run = contiguous_ends(bars, key_timeframe(key))
    safe = np.clip(ends, 0, None)
    ok = (ends >= need - 1) & (run[safe] >= need) & (close_ts - closes[safe] < tf)
    return np.where(ok, ends, -1).astype(np.int64)


def _next_ok(bars: np.ndarray | None, key: str, ends: np.ndarray, block_end_ts: np.ndarray) -> np.ndarray:
    """The bar after each window's newest bar exists, follows without a gap and closes in-block."""
    if bars is None or len(bars) == 0:
        return np.zeros(len(ends), dtype=bool)
    tf = timeframe_ms(key_timeframe(key))
    ts = bars[:, 0].astype(np.int64)
    nxt = np.clip(ends + 1, 0, len(ts) - 1)
    return (ends >= 0) & (ends + 1 < len(ts)) & (ts[nxt] - ts[np.clip(ends, 0, None)] == tf) & (ts[nxt] + tf <= block_end_ts)


AuxTargets = Callable[[np.ndarray, np.ndarray, int], dict[str, np.ndarray]]


def build_symbol_samples(
    symbol: str,
    series: dict[str, np.ndarray | None],
    spec: FeatureSpec,
    target: TargetSpec,
    ratios: tuple[float, float, float] = RATIOS,
    aux_targets: AuxTargets | None = None,
) -> SymbolSamples:
    """Samples of one symbol. `series[spec.trigger]` is the primary trigger series; other keys
    context. aux_targets(bars, rows, horizon): a family's extra targets (its IO's `aux_targets`)."""
    trigger = spec.trigger
    prim = series[trigger]
    if prim is None or len(prim) == 0:
        raise ValueError(f"{symbol}: no {trigger} bars in the span")
    n = len(prim)
    need = spec.required_windows[trigger]
    close = prim[:, 4]
    close_ts = prim[:, 0].astype(np.int64) + timeframe_ms(trigger)
    run = contiguous_ends(prim, trigger)
    rows = np.arange(n)
    bounds = _blocks(n, ratios)
    block = np.searchsorted(bounds[1:], rows, side="right")
    span = target.span
    after = np.clip(rows + span, None, n - 1)
    ok = (rows + span < bounds[block + 1]) & (rows - need + 1 >= bounds[block])
    ok &= (run >= need) & (run[after] >= span + 1)
    y = labels(close, target)
    nxt = np.clip(rows + 1, None, n - 1)
    next_ret = np.where(run[nxt] >= 2, close[nxt] / close - 1.0, 0.0)
    sel = rows[ok]
    ends = {trigger: sel.astype(np.int64)}
    for key in spec.inputs:
        if key != trigger:
            ends[key] = _context_ends(series.get(key), key, close_ts[sel], spec.required_windows[key])
    block_end = close_ts[np.clip(bounds[block[sel] + 1] - 1, 0, None)]
    next_ok = {k: _next_ok(series.get(k), k, ends[k], block_end) for k in spec.inputs}
    aux = aux_targets(prim, sel, target.horizon) if aux_targets is not None else {}
    return SymbolSamples(
        symbol, sel, block[sel].astype(np.int64), ends, y[sel], next_ret[sel], close_ts[sel], block_end, next_ok, aux
    )


def train_rows(ends: np.ndarray, is_train: np.ndarray, seq_len: int, n_rows: int) -> np.ndarray:
    """Boolean [n_rows]: rows covered by some training sample's window (what scalers may see)."""
    e = ends[is_train & (ends >= 0)]
    cover = np.zeros(n_rows + 1, dtype=np.int64)
    np.add.at(cover, e - seq_len + 1, 1)
    np.add.at(cover, e + 1, -1)
    return np.cumsum(cover)[:n_rows] > 0


@dataclass
class SampleSet:
    """All symbols' samples concatenated; features per key concatenated with row offsets."""

    spec: FeatureSpec
    feats: dict[str, np.ndarray]  # key -> float32 [rows, F] scaled
    ends: dict[str, np.ndarray]  # key -> int64 [N] global row, -1 masked
    split: np.ndarray
    y: np.ndarray
    next_ret: np.ndarray
    symbol_id: np.ndarray
    symbols: list[str]
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def indices(self, part: int) -> np.ndarray:
        """Sample indices of one split, in time order within each symbol."""
        return np.flatnonzero(self.split == part)

    def gather(self, key: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows [B, seq, F] float32 (zeros where masked) and mask [B] bool for samples idx."""
        e = self.ends[key][idx]
        mask = e >= 0
        seq = self.spec.seq_len
        feats = self.feats[key]
        # Only present windows are read: a timeframe with fewer rows than one window (a short
        # 1d history) is masked everywhere and must not be indexed at all.
        x = np.zeros((len(idx), seq, feats.shape[1]), dtype=np.float32)
        if mask.any():
            x[mask] = feats[e[mask][:, None] + np.arange(-seq + 1, 1)]
        return x, mask


def _fit_scalers(per_symbol: list, raw: list[dict[str, np.ndarray]], spec: FeatureSpec, kind: str) -> dict[str, Scaler]:
    """One scaler per input key over the rows of training windows of every symbol."""
    scalers = {}
    for key in spec.inputs:
        stacked = np.concatenate(
            [
                r[key][train_rows(ss.ends[key], ss.split == TRAIN, spec.seq_len, len(r[key]))]
                for (ss, _), r in zip(per_symbol, raw)
            ]
        )
        finite = np.isfinite(stacked).all(axis=1).any()
        scalers[key] = Scaler.fit(stacked, kind) if finite else Scaler(kind, (0.0,) * stacked.shape[1], (1.0,) * stacked.shape[1])  # type: ignore[arg-type]
    return scalers


def assemble(
    per_symbol: list[tuple[SymbolSamples, dict[str, np.ndarray | None]]],
    spec: FeatureSpec,
    scaler_kind: str = "standard",
    scalers: Mapping[str, Scaler] | None = None,
) -> SampleSet:
    """Fit scalers on training windows only (or use given ones), scale, and concatenate symbols."""
    raw = [
        {k: (spec.raw_features(s[k]) if s.get(k) is not None else np.zeros((0, len(spec.feature_names)))) for k in spec.inputs}
        for _, s in per_symbol
    ]
    scalers = dict(scalers) if scalers else _fit_scalers(per_symbol, raw, spec, scaler_kind)
    clip = {}  # share clipped per input and feature over the training rows (saved in the artifact)
    for key in spec.inputs:
        rows = [
            r[key][train_rows(ss.ends[key], ss.split == TRAIN, spec.seq_len, len(r[key]))] for (ss, _), r in zip(per_symbol, raw)
        ]
        stacked = np.concatenate(rows) if rows else np.zeros((0, len(spec.feature_names)))
        stacked = stacked[np.isfinite(stacked).all(axis=1)]
        clip[key] = (
            tuple(float(v) for v in scalers[key].clipped(stacked).mean(axis=0))
            if len(stacked)
            else (0.0,) * len(spec.feature_names)
        )
    spec = FeatureSpec(spec.kind, spec.seq_len, spec.inputs, spec.feature_set, scalers, spec.version, clip, spec.trigger)
    feats, ends = {}, {}
    for key in spec.inputs:
        offsets = np.cumsum([0] + [len(r[key]) for r in raw])
        feats[key] = (
            np.concatenate([scalers[key].transform(r[key]) for r in raw])
            if offsets[-1]
            else np.zeros((spec.seq_len, len(spec.feature_names)), np.float32)
        )
        ends[key] = np.concatenate(
            [np.where(ss.ends[key] >= 0, ss.ends[key] + off, -1) for (ss, _), off in zip(per_symbol, offsets)]
        )

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(ss, name) for ss, _ in per_symbol])

    n_total = sum(len(ss.rows) for ss, _ in per_symbol)
    if n_total < MIN_SAMPLES:
        raise ValueError(f"only {n_total} samples; need at least {MIN_SAMPLES} (more bars or a shorter window)")
    sym_id = np.concatenate([np.full(len(ss.rows), i) for i, (ss, _) in enumerate(per_symbol)])
    extra = {"close_ts": cat("close_ts"), "block_end_ts": cat("block_end_ts")}
    for key in spec.inputs:
        extra[f"next_ok_{key}"] = np.concatenate([ss.next_ok[key] for ss, _ in per_symbol])
        # rho = log(close_next / close_newest): the unscaled log_close feature of the next bar
        extra[f"next_rho_{key}"] = np.concatenate(
            [
                np.where(
                    ss.next_ok[key],
                    r[key][np.clip(ss.ends[key] + 1, 0, max(len(r[key]) - 1, 0))][:, 3] if len(r[key]) else 0.0,
                    np.nan,
                )
                for (ss, _), r in zip(per_symbol, raw)
            ]
        )
    for name in per_symbol[0][0].aux:
        extra[f"aux_{name}"] = np.concatenate([ss.aux[name] for ss, _ in per_symbol])
    return SampleSet(
        spec, feats, ends, cat("split"), cat("y"), cat("next_ret"), sym_id, [ss.symbol for ss, _ in per_symbol], extra
    )


def live_windows(
    series: dict[str, np.ndarray | None], bar_ts: int, sizes: dict[str, int], trigger: str = "1m"
) -> dict[str, np.ndarray]:
    """The windows the daemon's ring buffers hold at the close of the trigger bar opening at
    bar_ts: for each key the newest `sizes[key]` bars closed by then (the backtest's view of live)."""
    close = bar_ts + timeframe_ms(trigger)
    out = {}
    for key, n in sizes.items():
        bars = series.get(key)
        if bars is None:
            continue
        end = int(np.searchsorted(bars[:, 0] + timeframe_ms(key_timeframe(key)), close, side="right"))
        out[key] = bars[max(0, end - n) : end]
    return out
