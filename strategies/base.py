"""The Strategy protocol: predictions + position + bar (+ explicit state) in, a Signal or None out.

Strategies are pure: no I/O, no clock, no hidden mutable state. Everything a strategy may
depend on is an argument, so the same bars give the same signals live and in a backtest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from daemon.domain import Bar, Position, Prediction, Side, Signal

# Amounts smaller than this (in base units) count as no position at all.
EPSILON = 1e-12


class StrategyState(Protocol):
    """The read-only state a strategy may look at (strategies.risk.RiskState implements it)."""

    @property
    def last_trade_ts(self) -> int | None:
        """Bar ts of the last trade, or None."""
        ...

    @property
    def halted(self) -> bool:
        """True while the drawdown halt holds."""
        ...


class Strategy(Protocol):
    """One trading rule; the engine calls `decide` once per trigger bar."""

    name: str

    def decide(
        self,
        predictions: Sequence[Prediction],
        position: Position,
        bar: Bar,
        state: StrategyState,
    ) -> Signal | None:
        """The side the position should move to, or None when nothing should change."""
        ...


def position_side(position: Position) -> Side:
    """LONG, SHORT or FLAT from the sign of a position's amount."""
    if position.amount > EPSILON:
        return Side.LONG
    if position.amount < -EPSILON:
        return Side.SHORT
    return Side.FLAT


def model_versions(predictions: Sequence[Prediction]) -> dict[str, str]:
    """{model name: version} of the predictions a signal came from."""
    return {p.model: p.version for p in predictions}
