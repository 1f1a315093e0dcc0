"""Targets on a panel of closes (T, S) that fit the economics of trading, and the decision rules
that turn a model's answers into a score per pair.

Four kinds (`LabelSpec.kind`), all at decision bar t (its close c_t) over `horizon` bars:

triple_barrier   +1 / -1 when the close path c_{t+1..t+H} first reaches the upper / lower
                 barrier, 0 when neither is reached by t+H (the time limit). Barriers sit at
                 log(c/c_t) = +-width * vol_t * sqrt(H), vol_t = sd of the last `vol_window`
                 1-bar log returns: wide in turbulent markets, narrow in quiet ones.
                 Score = P(+1) - P(-1).
forward_return   log(c_{t+H}/c_t), regressed. Cost-aware decision rule: a bet only where the
                 predicted move is larger than the round-trip `cost`; score = the prediction
                 there, 0 elsewhere.
meta             The primary rule (time-series momentum: side = sign of log(c_t/c_{t-L}),
                 L = `momentum`) proposes the bet; the label is 1 when that bet's H-bar return
                 beats the cost (side * r > cost), else 0; NaN where the rule has no side.
                 The model says whether to take it and how large: score = side * P(take) where
                 P(take) > 0.5, else 0.
vol              Realised volatility of the next H bars, sqrt(mean r_{t+i}^2), as a log;
                 regressed. Used for sizing: score = momentum side * (median forecast vol /
                 forecast vol), i.e. the momentum bet held at constant forecast risk.

A label is NaN when it cannot be known (too close to the end, a gap on its path, no vol yet).
`label_end` gives the bar each label's information ends on, for purging (CPCV).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from models.xsfeatures import log_returns, rolling

KINDS = ("triple_barrier", "forward_return", "meta", "vol")
CLASSIFICATION = {"triple_barrier": 3, "meta": 2}  # kind -> classes; the others are regressions


@dataclass(frozen=True)
class LabelSpec:
    """Which target a panel model learns, and its knobs (recorded in the TrainSpec)."""

    kind: Literal["triple_barrier", "forward_return", "meta", "vol"] = "triple_barrier"
    horizon: int = 24  # bars: the time limit / forward horizon
    width: float = 1.0  # triple barrier: barrier distance in units of vol * sqrt(horizon)
    vol_window: int = 48  # bars of realised vol scaling the barriers
    momentum: int = 96  # bars: lookback of the momentum rule (meta, vol sizing)
    cost: float = 0.002  # round trip (fees + spread + slippage), as a return

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"label.kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        for key in ("horizon", "momentum"):
            if getattr(self, key) < 1:
                raise ValueError(f"label.{key}: must be >= 1 bar, got {getattr(self, key)}")
        if self.vol_window < 2:
            raise ValueError(f"label.vol_window: must be >= 2 bars, got {self.vol_window}")
        if not self.width > 0:
            raise ValueError(f"label.width: must be > 0, got {self.width}")
        if self.cost < 0:
            raise ValueError(f"label.cost: must be >= 0, got {self.cost}")

    @property
    def classes(self) -> int:
        """Number of classes, 0 for a regression."""
        return CLASSIFICATION.get(self.kind, 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LabelSpec:
        """Inverse of to_dict; an unknown key is an error naming it."""
        known = set(cls.__dataclass_fields__)
        if unknown := sorted(set(d) - known):
            raise ValueError(f"label: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


def realised_vol(close: np.ndarray, window: int) -> np.ndarray:
    """Trailing sd of 1-bar log returns over `window` bars (up to and including t)."""
    return rolling(log_returns(close), window, "std")


def forward_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """log(c_{t+H} / c_t) (T, S); NaN past the end or where either close is missing."""
    out = np.full(close.shape, np.nan)
    out[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return out


def _path_ok(close: np.ndarray, horizon: int) -> np.ndarray:
    """c_t and every close of t+1..t+H present."""
    ok = np.isfinite(close).copy()
    for i in range(1, horizon + 1):
        ok[:-i] &= np.isfinite(close[i:])
        ok[len(close) - i :] = False
    return ok


def triple_barrier(close: np.ndarray, vol: np.ndarray, horizon: int, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(label in {-1, 0, +1} or NaN, bars until the label was decided 1..H) per (t, s)."""
    barrier = width * vol * np.sqrt(horizon)
    label = np.zeros(close.shape)
    decided_at = np.full(close.shape, horizon, dtype=np.int64)
    open_ = np.ones(close.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for i in range(1, horizon + 1):
            r = np.full(close.shape, np.nan)
            r[:-i] = np.log(close[i:] / close[:-i])
            up, down = open_ & (r >= barrier), open_ & (r <= -barrier)
            label[up], label[down] = 1.0, -1.0
            decided_at[up | down] = i
            open_ &= ~(up | down)
    ok = _path_ok(close, horizon) & np.isfinite(barrier) & (barrier > 0)
    return np.where(ok, label, np.nan), decided_at


def momentum_side(close: np.ndarray, lookback: int) -> np.ndarray:
    """sign(log(c_t / c_{t-L})): +1, -1, or 0 (flat or unknown)."""
    r = np.full(close.shape, np.nan)
    r[lookback:] = np.log(close[lookback:] / close[:-lookback])
    return np.nan_to_num(np.sign(r))


def meta_labels(close: np.ndarray, side: np.ndarray, horizon: int, cost: float) -> np.ndarray:
    """1 when the primary side's H-bar return beats the cost, 0 when not, NaN without a side."""
    r = forward_return(close, horizon)
    ok = np.isfinite(r) & (side != 0)
    return np.where(ok, (side * r > cost).astype(np.float64), np.nan)


def forward_vol(close: np.ndarray, horizon: int) -> np.ndarray:
    """sqrt(mean of r_{t+1..t+H}^2) of the next H 1-bar log returns; NaN on a gap or the end."""
    r2 = log_returns(close) ** 2
    acc = np.zeros(close.shape)
    for i in range(1, horizon + 1):
        shifted = np.full(close.shape, np.nan)
        shifted[:-i] = r2[i:]
        acc += shifted
    return np.sqrt(acc / horizon)


def make_labels(close: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """The target of `spec.kind` (T, S): class ids 0.. for classification (triple barrier:
    0 = down, 1 = time limit, 2 = up; meta: 0 = skip, 1 = take), values for regressions; NaN
    where unknown."""
    if spec.kind == "triple_barrier":
        label, _ = triple_barrier(close, realised_vol(close, spec.vol_window), spec.horizon, spec.width)
        return label + 1.0
    if spec.kind == "forward_return":
        return forward_return(close, spec.horizon)
    if spec.kind == "meta":
        return meta_labels(close, momentum_side(close, spec.momentum), spec.horizon, spec.cost)
    with np.errstate(divide="ignore"):
        v = np.log(forward_vol(close, spec.horizon))
    return np.where(np.isfinite(v), v, np.nan)


def label_end(ts: np.ndarray, spec: LabelSpec, step_ms: int) -> np.ndarray:
    """Open time of the last bar each decision's label reads: ts + H bars (for purging)."""
    return np.asarray(ts, dtype=np.int64) + spec.horizon * step_ms


def cost_aware_positions(pred: np.ndarray, cost: float) -> np.ndarray:
    """+1 / -1 where the predicted return beats the round-trip cost, 0 elsewhere (NaN -> 0)."""
    p = np.nan_to_num(pred)
    return np.sign(p) * (np.abs(p) > cost)


def scores(spec: LabelSpec, output: np.ndarray, close: np.ndarray) -> np.ndarray:
    """A model's output at decision rows (T, S[, classes]) -> signed scores (T, S), NaN-free where
    the output is. Larger = more long; the portfolio module turns scores into weights."""
    if spec.kind == "triple_barrier":  # class probabilities: down, time limit, up
        return output[..., 2] - output[..., 0]
    if spec.kind == "forward_return":
        return np.where(cost_aware_positions(output, spec.cost) != 0, output, 0.0)
    side = momentum_side(close, spec.momentum)
    if spec.kind == "meta":
        p = output[..., 1]
        return np.where(p > 0.5, side * p, 0.0)
    forecast = np.exp(output)  # vol: a log-vol forecast; size inversely to it
    ref = np.nanmedian(forecast)
    return side * ref / forecast
