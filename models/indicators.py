"""Causal technical indicators over bars [n, 6] for the sequence models (CNN-LSTM-attention etc.).

Every indicator is a finite-impulse-response function: the value at row t is computed from
rows t - WARMUP .. t only (EMAs are truncated to 4 x span and renormalized; RSI and ATR use
simple averages). So a value never depends on where the series starts or on anything after
t, and a live window of look_back + WARMUP bars reproduces the training features exactly.
All indicators are scale-free (ratios, log-ratios), so one model serves BTC and ETH.
The first WARMUP rows are NaN (not enough history).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

OPEN, HIGH, LOW, CLOSE, VOLUME = 1, 2, 3, 4, 5

FULL_NAMES: tuple[str, ...] = (
    "ret1",
    "range",
    "body",
    "upper_wick",
    "lower_wick",
    "volume_change",
    "ret5",
    "ret15",
    "rsi14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_pct20",
    "bb_width20",
    "atr14",
    "sma_ratio50",
    "stoch_k14",
    "volume_z20",
    "volatility20",
)
# The seed's fallback when there is too little history for the indicators.
MINIMAL_NAMES: tuple[str, ...] = ("ret1", "range", "body", "volume_change")
_EMA_SPANS = (12, 26, 9)


def _ema_len(span: int) -> int:
    return 4 * span


# Leading NaN rows: the MACD signal (EMA9 over MACD, itself from a 104-bar EMA26).
FULL_WARMUP = _ema_len(26) - 1 + _ema_len(9) - 1
MINIMAL_WARMUP = 1


def _rolling(x: np.ndarray, w: int, fn) -> np.ndarray:
    """fn over trailing windows of length w; NaN where fewer than w values exist. x: [..., n]."""
    out = np.full(x.shape, np.nan)
    if x.shape[-1] >= w:
        out[..., w - 1 :] = fn(sliding_window_view(x, w, axis=-1), axis=-1)
    return out


def _ema(x: np.ndarray, span: int) -> np.ndarray:
    """EMA truncated to 4 x span bars, weights renormalized (FIR, so start-independent)."""
    n = _ema_len(span)
    alpha = 2.0 / (span + 1.0)
    w = (1.0 - alpha) ** np.arange(n - 1, -1, -1)  # oldest .. newest
    w /= w.sum()
    out = np.full(x.shape, np.nan)
    if x.shape[-1] >= n:
        out[..., n - 1 :] = (sliding_window_view(x, n, axis=-1) * w).sum(axis=-1)
    return out


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(x.shape, np.nan)
    out[..., k:] = x[..., :-k]
    return out


def _price_shape(bars: np.ndarray) -> dict[str, np.ndarray]:
    o, h, l, c = (bars[..., i] for i in (OPEN, HIGH, LOW, CLOSE))
    logv = np.log1p(bars[..., VOLUME])
    return {
        "ret1": np.log(c / _lag(c, 1)),
        "range": np.log(h / l),
        "body": np.log(c / o),
        "upper_wick": np.log(h / np.maximum(o, c)),
        "lower_wick": np.log(np.minimum(o, c) / l),
        "volume_change": logv - _lag(logv, 1),
        "ret5": np.log(c / _lag(c, 5)),
        "ret15": np.log(c / _lag(c, 15)),
    }


def _oscillators(bars: np.ndarray, ret1: np.ndarray) -> dict[str, np.ndarray]:
    h, l, c = bars[..., HIGH], bars[..., LOW], bars[..., CLOSE]
    diff = c - _lag(c, 1)
    gain = _rolling(np.nan_to_num(np.maximum(diff, 0.0)), 14, np.mean)
    loss = _rolling(np.nan_to_num(np.maximum(-diff, 0.0)), 14, np.mean)
    gain[..., :14] = np.nan  # row 0 has no diff: the first full window ends at row 14
    rsi = np.where(gain + loss > 0, gain / np.where(gain + loss > 0, gain + loss, 1.0), 0.5) - 0.5
    macd = (_ema(c, 12) - _ema(c, 26)) / c
    signal = _ema(np.nan_to_num(macd), 9)
    signal[..., : _ema_len(26) - 1 + _ema_len(9) - 1] = np.nan
    tr = np.maximum(h - l, np.maximum(np.abs(h - _lag(c, 1)), np.abs(l - _lag(c, 1))))
    atr = _rolling(np.nan_to_num(tr), 14, np.mean)
    atr[..., :14] = np.nan
    hi14, lo14 = _rolling(h, 14, np.max), _rolling(l, 14, np.min)
    return {
        "rsi14": rsi,
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": macd - signal,
        "atr14": atr / c,
        "stoch_k14": (c - lo14) / np.maximum(hi14 - lo14, 1e-12 * c) - 0.5,
    }


def _bands(bars: np.ndarray, ret1: np.ndarray) -> dict[str, np.ndarray]:
    c = bars[..., CLOSE]
    logv = np.log1p(bars[..., VOLUME])
    sma20, sd20 = _rolling(c, 20, np.mean), _rolling(c, 20, np.std)
    vmean, vsd = _rolling(logv, 20, np.mean), _rolling(logv, 20, np.std)
    vol20 = _rolling(np.nan_to_num(ret1), 20, np.std)
    vol20[..., :20] = np.nan
    return {
        "bb_pct20": (c - sma20) / np.maximum(2.0 * sd20, 1e-12 * c),
        "bb_width20": 4.0 * sd20 / sma20,
        "sma_ratio50": c / _rolling(c, 50, np.mean) - 1.0,
        "volume_z20": (logv - vmean) / np.maximum(vsd, 1e-6),
        "volatility20": vol20,
    }


def indicator_features(bars: np.ndarray, feature_set: str = "full") -> np.ndarray:
    """Indicators for every row of bars [..., n, 6] -> float64 [..., n, F]; the first warmup rows are NaN.
    Every operation runs along the rows (the last axis of each column), so a batch of windows
    [B, n, 6] gives, bit for bit, what each window gives alone (the daemon encodes a cycle so)."""
    shape = _price_shape(bars)
    if feature_set == "minimal":
        return np.stack([shape[n] for n in MINIMAL_NAMES], axis=-1)
    if feature_set != "full":
        raise ValueError(f"unknown feature set {feature_set!r}; expected 'full' or 'minimal'")
    cols = {**shape, **_oscillators(bars, shape["ret1"]), **_bands(bars, shape["ret1"])}
    out = np.stack([cols[n] for n in FULL_NAMES], axis=-1)
    out[..., :FULL_WARMUP, :] = np.nan  # one warmup for all columns: rows are either complete or NaN
    return out


def names(feature_set: str) -> tuple[str, ...]:
    """Column names of a feature set."""
    return FULL_NAMES if feature_set == "full" else MINIMAL_NAMES


def warmup(feature_set: str) -> int:
    """Bars of history a feature row needs before it (leading NaN rows)."""
    return FULL_WARMUP if feature_set == "full" else MINIMAL_WARMUP
