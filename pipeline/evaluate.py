"""Evaluation numbers reported after training: accuracy, macro-F1, majority baseline, Sharpe."""

from __future__ import annotations

from typing import Any

import numpy as np

import strategies.threshold as thr
from models.targets import IGNORE


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 3) -> float:
    """Unweighted mean of per-class F1 (classes absent from both count as 0)."""
    f1s = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s))


def classification_report(y_true: np.ndarray, probs: np.ndarray, majority_class: int) -> dict[str, Any]:
    """Accuracy and macro-F1 of argmax beside always predicting the training majority class."""
    keep = y_true != IGNORE
    y, pred = y_true[keep], probs[keep].argmax(axis=1)
    base = np.full_like(y, majority_class)
    return {
        "labelled": int(keep.sum()),
        "accuracy": float(np.mean(pred == y)) if len(y) else 0.0,
        "macro_f1": macro_f1(y, pred),
        "baseline_class": int(majority_class),
        "baseline_accuracy": float(np.mean(base == y)) if len(y) else 0.0,
        "baseline_macro_f1": macro_f1(y, base),
    }


def trading_report(
    scores: np.ndarray, next_ret: np.ndarray, threshold: float, mode: str, fee: float, bars_per_year: float, hold: int = 1
) -> dict[str, float]:
    """Sharpe of trading the thresholded signals (holding period `hold`) net of fees beside
    buy-and-hold, same bars."""
    pos = thr.positions(thr.decide(scores, threshold, mode), hold)  # type: ignore[arg-type]
    r = thr.net_returns(pos, next_ret, fee)
    return {
        "bars": int(len(next_ret)),
        "sharpe": thr.sharpe(pos, next_ret, fee, bars_per_year),
        "buy_and_hold_sharpe": thr.buy_and_hold_sharpe(next_ret, fee, bars_per_year),
        "total_return": float(np.prod(1.0 + r) - 1.0),
        "buy_and_hold_return": float(np.prod(1.0 + next_ret) - 1.0),
        "trades": int(np.count_nonzero(np.diff(pos, prepend=0))),
        "time_in_market": float(np.mean(pos != 0)) if len(pos) else 0.0,
    }
