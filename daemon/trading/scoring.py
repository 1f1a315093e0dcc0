"""How good are a model's calls, in research and live: forecast and trading scores, live
scoring of stored predictions, and shadow mode.

Forecast scores (`forecast_scores`, `calibration`, `confident_share`, `trading_scores`) are
pure functions shared by model selection (daemon/research/leaderboard.py) and the live
scorer, so a model is measured the same way before and after it ships.

Shadow mode: a model whose artifact carries no passing `validation` block (the gate of
daemon/research/stats.py, written by `sigd compare` / the nightly retrain) or that live
scoring demoted still runs, and its predictions are stored and scored, but they do not reach
the strategies. `Shadow.tradable()` is the one filter the engine applies.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from daemon import log as logging
from daemon.domain import Prediction
from models.evaluate import macro_f1
import strategies.threshold as thr

log = logging.get("scoring")
EPS = 1e-6  # probabilities are clipped here for the log-loss: one certain miss is not infinite


def forecast_scores(y: np.ndarray, probs: np.ndarray) -> dict[str, float | int]:
    """Accuracy and macro-F1 of the arg-max, multi-class Brier and log-loss, over labelled rows."""
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    keep = y >= 0
    y, p = y[keep], p[keep]
    if not len(y):
        return {"labelled": 0, "accuracy": math.nan, "macro_f1": math.nan, "brier": math.nan, "log_loss": math.nan}
    truth = np.eye(3)[y]
    return {
        "labelled": int(len(y)),
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
        "macro_f1": macro_f1(y, p.argmax(axis=1)),
        "brier": float(np.mean(np.sum((p - truth) ** 2, axis=1))),
        "log_loss": float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0)))),
    }


def calibration(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Arg-max confidence vs how often the arg-max class was right, per confidence bin."""
    y, p = np.asarray(y, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    keep = y >= 0
    conf, hit = p[keep].max(axis=1), (p[keep].argmax(axis=1) == y[keep])
    edges = np.linspace(1 / 3, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    return [{"confidence": float(conf[which == b].mean()), "hit_rate": float(hit[which == b].mean()),
             "count": int((which == b).sum())} for b in range(bins) if (which == b).any()]


def confident_share(sides: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Share of decisions that are a LONG or a SHORT call (a FLAT is not a call) and how often
    each was right where the label is known."""
    sides, y = np.asarray(sides, dtype=np.int64), np.asarray(y, dtype=np.int64)
    out: dict[str, float] = {}
    for name, side in (("long", 2), ("short", 0)):
        calls = sides == side
        known = calls & (y >= 0)
        out[name] = float(calls.mean()) if len(sides) else 0.0
        out[f"{name}_hit"] = float(np.mean(y[known] == side)) if known.any() else math.nan
    return out


def trading_scores(sides: np.ndarray, step_ret: np.ndarray, hold: int, fee: float,
                   bars_per_year: float) -> tuple[dict[str, float | int | None], np.ndarray]:
    """Trade the sides with unit positions (the same sizing for every rule) held >= `hold`
    decisions; (scores, net return per decision)."""
    pos = thr.positions(np.asarray(sides, dtype=np.int64), hold)
    ret = np.asarray(step_ret, dtype=np.float64)
    net = thr.net_returns(pos, ret, fee)
    gross = float(np.sum(pos * ret))
    fees = float(np.sum(fee * np.abs(np.diff(pos, prepend=0))))
    return {
        "sharpe": thr.sharpe(pos, ret, fee, bars_per_year),
        "total_return": float(np.prod(1.0 + net) - 1.0) if len(net) else 0.0,
        "trades": int(np.count_nonzero(np.diff(pos, prepend=0) * pos)),  # entries and flips
        "turnover": float(np.abs(np.diff(pos, prepend=0)).sum()),  # equity traded, in units of equity
        "time_in_market": float(np.mean(pos != 0)) if len(pos) else 0.0,
        "gross_pnl": gross, "fees": fees,
        # fees over the gross PnL they were paid for; None when there was no gross gain
        "fee_share": fees / gross if gross > 0 else None,
    }, net
