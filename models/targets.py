"""Training targets on the trigger timeframe: 3 classes or the next return.

Classification (0 = SHORT, 1 = FLAT, 2 = LONG) from the forward return over `horizon` bars,
r = close[t + horizon] / close[t] - 1:
LONG when r >= threshold, SHORT when r <= -threshold, FLAT when |r| <= neutral_zone; a return
between the neutral zone and the threshold is ambiguous and gets the label IGNORE (-1): it is
left out of the loss and of accuracy, but its bar still trades in the Sharpe evaluation.
Balancing (as the seed's create_balanced_target) happens on the training split only:
every class is downsampled to the size of the smallest one.
Regression: the target is the next bar's return close[t + 1] / close[t] - 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from daemon.domain import Side

IGNORE = -1


@dataclass(frozen=True)
class TargetSpec:
    """How labels are made; stored in the artifact."""

    mode: Literal["classification", "regression"] = "classification"
    horizon: int = 15
    threshold: float = 0.002
    neutral_zone: float = 0.001

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 bar, got {self.horizon}")
        if not 0 <= self.neutral_zone <= self.threshold:
            raise ValueError(f"need 0 <= neutral_zone ({self.neutral_zone}) <= threshold ({self.threshold})")
        if self.mode not in ("classification", "regression"):
            raise ValueError(f"unknown target mode {self.mode!r}")

    @property
    def span(self) -> int:
        """Bars after t the target looks at."""
        return self.horizon if self.mode == "classification" else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TargetSpec:
        """Inverse of to_dict."""
        return cls(**d)


def forward_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """close[t + horizon] / close[t] - 1, NaN where t + horizon is past the end. [n] -> [n]."""
    out = np.full(len(close), np.nan)
    out[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    return out


def labels(close: np.ndarray, spec: TargetSpec) -> np.ndarray:
    """Class labels int64 [n] (IGNORE where ambiguous or unknown) or, in regression, float [n]."""
    r = forward_return(close, spec.span)
    if spec.mode == "regression":
        return r
    y = np.full(len(close), IGNORE, dtype=np.int64)
    y[r >= spec.threshold] = int(Side.LONG)
    y[r <= -spec.threshold] = int(Side.SHORT)
    y[np.abs(r) <= spec.neutral_zone] = int(Side.FLAT)
    return y


def balance(indices: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Downsample sample `indices` so every class in y[indices] is equally frequent (sorted out)."""
    keep = []
    per_class = [indices[y[indices] == c] for c in (Side.SHORT, Side.FLAT, Side.LONG)]
    n = min(len(p) for p in per_class)
    if n == 0:
        raise ValueError(
            f"cannot balance: a class has no training sample (counts {[len(p) for p in per_class]}); lower the target threshold"
        )
    for p in per_class:
        keep.append(rng.choice(p, size=n, replace=False))
    return np.sort(np.concatenate(keep))


def class_counts(y: np.ndarray) -> list[int]:
    """[SHORT, FLAT, LONG] counts (IGNORE not counted)."""
    return [int(np.count_nonzero(y == c)) for c in (Side.SHORT, Side.FLAT, Side.LONG)]


def mtf_aux_targets(bars: np.ndarray, rows: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
    """The hybrid's auxiliary targets at trigger rows (definitions: models/mtf_transformer.py).

    With c_t the trigger close and r_i = log(c_{t+i} / c_{t+i-1}), i = 1..H:
    price = log(c_{t+H}/c_t); volatility = sqrt(mean r_i^2); trend_strength = price / sum |r_i|
    (0 when the sum is 0); pivots = floor pivots (S2, S1, P, R1, R2) of bars t+1..t+H as
    log(level / c_t). Rows must have H bars after them (the sample builder guarantees it).
    """
    c, hi, lo = bars[:, 4], bars[:, 2], bars[:, 3]
    steps = rows[:, None] + np.arange(1, horizon + 1)  # (N, H) the bars after t
    r = np.log(c[steps] / c[steps - 1])
    price = np.log(c[rows + horizon] / c[rows])
    abs_sum = np.abs(r).sum(axis=1)
    hh, ll, cc = hi[steps].max(axis=1), lo[steps].min(axis=1), c[rows + horizon]
    p = (hh + ll + cc) / 3.0
    levels = np.stack([p - (hh - ll), 2 * p - hh, p, 2 * p - ll, p + (hh - ll)], axis=1)
    # A range wider than the pivot (a coin doubling within the horizon: DOGE 2021 at 24 1h
    # bars) puts S2 below zero: its log is NaN, and mtf_loss leaves NaN rows out.
    with np.errstate(invalid="ignore"):
        pivots = np.log(levels / c[rows][:, None])
    return {
        "price": price[:, None],
        "volatility": np.sqrt((r**2).mean(axis=1))[:, None],
        "trend_strength": np.where(abs_sum > 0, price / np.where(abs_sum > 0, abs_sum, 1.0), 0.0)[:, None],
        "pivots": pivots,
    }
