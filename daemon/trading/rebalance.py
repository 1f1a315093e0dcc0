"""Portfolio decisions: one cycle of closed decision bars (every traded symbol's bar of the
decision timeframe) → one score per symbol → target weights → rebalancing order intents.

The scores come from the models that may trade (shadow-mode models are left out): each model's
P(long) - P(short), averaged over the models that answered. strategies/portfolio.py, the module
research and backtests use, turns the scores and the weights held now into target weights; the
portfolio risk rules (strategies/risk.py) then apply: a drawdown halt that blocks new exposure
(exits and reductions pass), and buys the cash can pay for. A symbol with no score this cycle
(no bar, no tradable model, paused) keeps its weight.

Pure apart from the SQLite kv reads and writes of its state (the engine calls it inside the
cycle's transaction); nothing here awaits or sends.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daemon.domain import Bar, Position, Prediction, Side, timeframe_ms
from daemon.store import Store
from strategies import risk
from strategies.portfolio import PortfolioSpec, target_weights
from strategies.risk import RiskState

YEAR_MS = 365 * 86_400_000
KV_RISK, KV_TARGETS = "portfolio.risk", "portfolio.targets"


def score(predictions: Sequence[Prediction]) -> float:
    """P(long) - P(short) averaged over the models that answered; NaN when none did."""
    if not predictions:
        return math.nan
    return float(np.mean([p.probs[2] - p.probs[0] for p in predictions]))


def period_vol(window: np.ndarray | None, n: int) -> float:
    """Standard deviation of the last `n` log returns of a window's closes; NaN when too short."""
    if window is None or len(window) < 3:
        return math.nan
    closes = window[-(n + 1) :, 4]
    closes = closes[np.isfinite(closes) & (closes > 0)]
    if len(closes) < 3:
        return math.nan
    return float(np.std(np.diff(np.log(closes)), ddof=1))


@dataclass
class Plan:
    """One cycle's portfolio: per traded symbol (in the engine's order) the score, the weight
    held, the target weight and the target amount; the equity and whether the halt holds."""

    symbols: tuple[str, ...]
    scores: np.ndarray
    current: np.ndarray
    target: np.ndarray
    amounts: np.ndarray  # signed base amounts the positions should become
    prices: np.ndarray
    equity: float
    halted: bool
    bar_ts: int
    reasons: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Target vs actual weight per symbol, for /status and the dashboard."""

        def f(x: float) -> float | None:
            return None if not math.isfinite(x) else round(float(x), 6)

        return {
            "bar_ts": self.bar_ts,
            "equity": round(self.equity, 4),
            "halted": self.halted,
            "symbols": {
                s: {"score": f(self.scores[i]), "weight": f(self.current[i]), "target": f(self.target[i])}
                for i, s in enumerate(self.symbols)
            },
        }


class Rebalancer:
    """Scores → target weights → target amounts for one cycle, with the portfolio risk rules."""

    def __init__(
        self, spec: PortfolioSpec, *, timeframe: str, vol_window: int = 48, max_drawdown: float = 0.0, cost_rate: float = 0.0
    ) -> None:
        self.spec, self.timeframe, self.vol_window = spec, timeframe, vol_window
        self.max_drawdown, self.cost_rate = max_drawdown, cost_rate
        self.periods_per_year = YEAR_MS / timeframe_ms(timeframe)
        self.risk_state = RiskState()
        self.last: Plan | None = None

    def load(self, store: Store) -> None:
        """The drawdown state and the last cycle's targets a previous run left."""
        raw = store.get_kv(KV_RISK)
        self.risk_state = RiskState.from_dict(json.loads(raw)) if raw else RiskState()

    def plan(
        self,
        symbols: Sequence[str],
        bars: Mapping[str, Bar],
        windows: Mapping[str, Mapping[str, np.ndarray]],
        predictions: Mapping[str, Sequence[Prediction]],
        positions: Mapping[str, Position],
        marks: Mapping[str, float],
        equity: float,
        frozen: frozenset[str] = frozenset(),
    ) -> Plan:
        """The cycle's targets. `bars`/`windows`/`predictions`: the symbols decided this cycle
        (tradable models only); `marks`: a price for every symbol; `frozen`: symbols that keep
        their weight (paused)."""
        prices = np.array([marks[s] for s in symbols], dtype=np.float64)
        amounts = np.array([positions[s].amount for s in symbols], dtype=np.float64)
        current = amounts * prices / equity if equity > 0 else np.zeros(len(symbols))
        scores = np.array([score(predictions[s]) if s in bars and s not in frozen else math.nan for s in symbols])
        vol = np.array([period_vol(windows.get(s, {}).get(self.timeframe), self.vol_window) for s in symbols])
        target = target_weights(scores, current, vol if self.spec.vol_target else None, self.spec, self.periods_per_year)
        self.risk_state = risk.portfolio_drawdown(self.risk_state, equity, self.max_drawdown)
        reasons: dict[str, str] = {}
        if self.risk_state.halted:
            halted = risk.halt_exposure(target, current)
            reasons.update({s: "drawdown halt: no new exposure" for s, a, b in zip(symbols, target, halted) if a != b})
            target = halted
        funded = risk.fund_buys(target, current, self.cost_rate)
        reasons.update({s: "buy cut to the cash available" for s, a, b in zip(symbols, target, funded) if abs(a - b) > 1e-12})
        target = funded
        # A symbol whose weight does not change keeps its exact amount (no rounding churn).
        moving = np.abs(target - current) > 1e-12
        amounts_out = np.where(moving, target * equity / np.where(prices > 0, prices, np.nan), amounts)
        amounts_out = np.nan_to_num(amounts_out, nan=0.0)
        bar_ts = max((b.ts for b in bars.values()), default=-1)
        plan = Plan(tuple(symbols), scores, current, target, amounts_out, prices, equity, self.risk_state.halted, bar_ts, reasons)
        return plan

    def save(self, store: Store, plan: Plan) -> None:
        """Persist the drawdown state and the cycle's targets (inside the cycle's transaction)."""
        store.set_kv(KV_RISK, json.dumps(self.risk_state.to_dict()))
        store.set_kv(KV_TARGETS, json.dumps(plan.as_json()))

    def commit(self, plan: Plan) -> None:
        """After the cycle's commit: the plan /status shows."""
        self.last = plan

    def resume(self, equity: float) -> None:
        """An operator resume lifts the halt; the drawdown is measured afresh from here."""
        self.risk_state = dataclasses.replace(self.risk_state, halted=False, peak_equity=equity)

    def status(self) -> dict[str, Any]:
        """The spec, the halt and the last cycle's target vs actual weights."""
        return {
            "decision_timeframe": self.timeframe,
            "spec": dataclasses.asdict(self.spec),
            "halted": self.risk_state.halted,
            "peak_equity": self.risk_state.peak_equity,
            "max_drawdown": self.max_drawdown,
            "last_cycle": self.last.as_json() if self.last else None,
        }


def side_of(weight: float) -> Side:
    """The signal side a target weight stands for."""
    return Side.LONG if weight > 0 else Side.SHORT if weight < 0 else Side.FLAT
