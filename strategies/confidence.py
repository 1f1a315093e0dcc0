"""The confidence-threshold strategy: each model's thresholded side, combined across models.

Each Prediction already carries the side its model's artifact threshold gives
(strategies/threshold.py applied by the predictor), so swapping a model swaps its threshold.
This module only combines those per-model answers:

- "both":     every model present says the same non-FLAT side (and at least `min_models` answered);
- "either":   some model says a non-FLAT side and no model says the opposite one;
- "weighted": score = sum(w_m * dir_m * confidence_m) / sum(w_m) with dir LONG = +1, SHORT = -1,
              FLAT = 0; LONG when score >= min_score, SHORT when score <= -min_score.

The combined side then goes through the holding-period rule the thresholds were optimized with
(`strategies.threshold.next_position`, hold = the largest `hold_bars` of the predictions): a
FLAT answer closes a position only once it is `hold` bars old (bars since the last trade, from
`state.last_trade_ts`); an opposite side flips at once. With one model this trades exactly the
positions `optimize()` measured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from daemon.domain import Bar, Position, Prediction, Side, Signal, timeframe_ms
from strategies.base import StrategyState, model_versions, position_side
from strategies.threshold import next_position

Combine = Literal["both", "either", "weighted"]
COMBINE_MODES: tuple[str, ...] = ("both", "either", "weighted")
_DIRECTION = {Side.SHORT: -1.0, Side.FLAT: 0.0, Side.LONG: 1.0}


@dataclass(frozen=True)
class Combined:
    """The models' joint answer: a side, its confidence and why."""

    side: Side
    confidence: float
    reasons: tuple[str, ...]


def bars_since_trade(bar: Bar, state: StrategyState) -> int:
    """Bars from the last trade (the open position's entry) to `bar`; large when there was none."""
    if state.last_trade_ts is None:
        return 1 << 30
    return (bar.ts - state.last_trade_ts) // timeframe_ms(bar.timeframe)


def held_side(wanted: Side, predictions: Sequence[Prediction], position: Position, bar: Bar, state: StrategyState) -> Side:
    """The side to be in after `wanted` under the predictions' holding period (threshold rule)."""
    hold = max((p.hold_bars for p in predictions), default=1)
    current = int(position_side(position)) - 1
    return Side(next_position(current, bars_since_trade(bar, state), int(wanted), hold) + 1)


def _describe(p: Prediction) -> str:
    return f"{p.model}={p.side.name}@{p.confidence:.3f}/thr{p.threshold:.3f}"


def combine_both(predictions: Sequence[Prediction], min_models: int = 2) -> Combined:
    """A side only when every model agrees on it (FLAT when a model is missing)."""
    reasons = tuple(_describe(p) for p in predictions)
    sides = {p.side for p in predictions}
    if len(predictions) < min_models or len(sides) != 1 or Side.FLAT in sides:
        return Combined(Side.FLAT, 0.0, reasons + ("no agreement",))
    conf = sum(p.confidence for p in predictions) / len(predictions)
    return Combined(predictions[0].side, conf, reasons + ("all agree",))


def combine_either(predictions: Sequence[Prediction]) -> Combined:
    """A side when at least one model says it and none says the opposite."""
    reasons = tuple(_describe(p) for p in predictions)
    active = [p for p in predictions if p.side != Side.FLAT]
    sides = {p.side for p in active}
    if len(sides) != 1:
        why = "conflict" if sides else "all flat"
        return Combined(Side.FLAT, 0.0, reasons + (why,))
    conf = max(p.confidence for p in active)
    return Combined(active[0].side, conf, reasons + (f"{len(active)} of {len(predictions)} say it",))


def combine_weighted(predictions: Sequence[Prediction], weights: Mapping[str, float], min_score: float) -> Combined:
    """Weighted vote of each model's direction times its confidence."""
    reasons = tuple(_describe(p) for p in predictions)
    # A configured model that did not answer still counts in the denominator: missing input
    # must weaken the vote, never strengthen the remaining model.
    w = {p.model: weights.get(p.model, 1.0) for p in predictions} | dict(weights)
    total = sum(w.values())
    if total <= 0:
        return Combined(Side.FLAT, 0.0, reasons + ("no weight",))
    score = sum(w[p.model] * _DIRECTION[p.side] * p.confidence for p in predictions) / total
    why = f"score={score:+.3f} min={min_score:.3f}"
    if score >= min_score:
        return Combined(Side.LONG, score, reasons + (why,))
    if score <= -min_score:
        return Combined(Side.SHORT, -score, reasons + (why,))
    return Combined(Side.FLAT, abs(score), reasons + (why,))


@dataclass(frozen=True)
class ConfidenceStrategy:
    """Trade the combined thresholded side of the models; FLAT closes when exit_on_flat."""

    name: str = "confidence"
    combine: Combine = "both"
    weights: Mapping[str, float] = field(default_factory=dict)
    min_score: float = 0.5
    min_models: int = 2
    exit_on_flat: bool = True

    def __post_init__(self) -> None:
        if self.combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {self.combine!r}")

    def joint(self, predictions: Sequence[Prediction]) -> Combined:
        """The combined answer of the models under this strategy's combine mode."""
        if self.combine == "both":
            return combine_both(predictions, self.min_models)
        if self.combine == "either":
            return combine_either(predictions)
        return combine_weighted(predictions, self.weights, self.min_score)

    def decide(self, predictions: Sequence[Prediction], position: Position, bar: Bar, state: StrategyState) -> Signal | None:
        """A Signal when the combined side, held for the holding period, differs from the position's."""
        joint = self.joint(predictions)
        current = position_side(position)
        side = held_side(joint.side, predictions, position, bar, state)
        if side == current:
            return None
        if side == Side.FLAT and not self.exit_on_flat:
            return None
        return Signal(
            symbol=bar.symbol,
            bar_ts=bar.ts,
            side=side,
            confidence=float(joint.confidence),
            price=bar.close,
            strategy=self.name,
            reasons=(f"combine={self.combine}",) + joint.reasons,
            model_versions=model_versions(predictions),
        )
