"""One symbol's decision at one trigger bar: the state it keeps, and the strategies → risk →
portfolio steps that turn predictions into signals and order intents.

Everything here runs on the event loop inside the decision's SQLite transaction (the engine
opens it); nothing awaits. What the decision changes in memory is returned as an `Outcome`
and applied by the engine only after the commit, so a rolled-back decision leaves no trace.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon import log as logging
from daemon.domain import Bar, Order, Position, Prediction, Signal
from daemon.metrics import REGISTRY
from daemon.store import Store
from strategies import risk
from strategies.base import Strategy
from strategies.risk import PortfolioLimits, RiskParams, RiskState

log = logging.get("engine")
STRATEGY_ERRORS = REGISTRY.counter("sigd_strategy_errors_total", "Strategies that raised, by strategy")
BLOCKED = REGISTRY.counter("sigd_signals_blocked_total", "Strategy signals the risk rules stopped, by reason")
KV_PAUSED, KV_RISK = "engine.paused", "engine.risk"  # the global pause; the first version's risk key


@dataclass
class SymbolState:
    """What the engine keeps per traded symbol."""

    symbol: str
    strategies: Sequence[Strategy]
    risk_params: RiskParams
    risk_state: RiskState = field(default_factory=RiskState)
    paused: bool = False
    last_bar: Bar | None = None
    last_signal: dict[str, Any] | None = None
    last_decision: dict[str, Any] | None = None
    last_decided_ts: int = -1
    decisions: int = 0

    @property
    def risk_key(self) -> str:
        return f"{KV_RISK}.{self.symbol}"

    @property
    def paused_key(self) -> str:
        return f"{KV_PAUSED}.{self.symbol}"

    def load(self, store: Store, legacy: bool) -> None:
        """Pause and risk state from SQLite; `legacy`: fall back to the single-symbol keys."""
        self.paused = store.get_kv(self.paused_key, "0") == "1"
        raw = store.get_kv(self.risk_key) or (store.get_kv(KV_RISK) if legacy else None)
        self.risk_state = RiskState.from_dict(json.loads(raw)) if raw else RiskState()
        last = store.last_decided_ts(self.symbol)
        self.last_decided_ts = -1 if last is None else last

    def save_risk(self, store: Store, state: RiskState) -> None:
        store.set_kv(self.risk_key, json.dumps(state.to_dict()))

    def mark(self) -> float | None:
        """The price positions are marked at: the last trigger bar's close."""
        return self.last_bar.close if self.last_bar else None

    def status(self, position: Position, starting_balance: float) -> dict[str, Any]:
        price = self.mark() or position.entry_price
        cooldown_until = None
        if self.risk_state.last_trade_ts is not None and self.risk_params.cooldown_bars > 0:
            cooldown_until = self.risk_state.last_trade_ts + self.risk_params.cooldown_bars * self.risk_params.bar_ms
        return {
            "position": dataclasses.asdict(position),
            "paused": self.paused,
            "halted": self.risk_state.halted,
            "cooldown_until_ts": cooldown_until,
            "decisions": self.decisions,
            "last_bar_ts": self.last_bar.ts if self.last_bar else None,
            "last_decision": self.last_decision,
            "last_signal": self.last_signal,
            "equity": risk.equity(position, price, starting_balance),
        }


@dataclass
class Outcome:
    """What one committed decision changes in memory."""

    state: SymbolState
    bar: Bar
    risk_state: RiskState
    signals: list[dict[str, Any]] = field(default_factory=list)  # the published signal events
    orders: list[Order] = field(default_factory=list)  # prepared, to execute after the commit
    predictions: Sequence[Prediction] = ()


@dataclass
class Book:
    """The portfolio while a cycle is decided: |notional| per symbol and the equity."""

    notional: dict[str, float]
    equity: float
    limits: PortfolioLimits


def signal_payload(signal_id: int, signal: Signal, latency_ms: float | None) -> dict[str, Any]:
    """The "signal" event: symbol, side, confidence, price, bar_ts, model versions, ...

    The event id ("signal-<row id>") travels beside the payload: the outbox adds it as `id`.
    """
    return {
        "signal_id": signal_id,
        "symbol": signal.symbol,
        "side": signal.side.name,
        "confidence": signal.confidence,
        "price": signal.price,
        "bar_ts": signal.bar_ts,
        "strategy": signal.strategy,
        "reasons": list(signal.reasons),
        "model_versions": dict(signal.model_versions),
        "latency_ms": latency_ms,
    }


def strategy_signals(
    strategies: Sequence[Strategy], predictions: Sequence[Prediction], position: Position, bar: Bar, state: RiskState
) -> list[Signal]:
    """Every strategy's signal; a strategy that raises is logged and counted, the others go on."""
    out: list[Signal] = []
    for strategy in strategies:
        try:
            signal = strategy.decide(predictions, position, bar, state)
        except Exception as exc:
            STRATEGY_ERRORS.inc(strategy=strategy.name)
            log.error("strategy_failed", strategy=strategy.name, symbol=bar.symbol, bar_ts=bar.ts, error=repr(exc))
            continue
        if signal is not None:
            out.append(signal)
    return out


def candidates(
    state: SymbolState, predictions: Sequence[Prediction], position: Position, bar: Bar, risk_state: RiskState
) -> list[Signal]:
    """A protective exit takes the bar (no strategy trades on a position being closed); else the strategies."""
    exit_signal = risk.protective_exit(position, bar, state.risk_params)
    if exit_signal is not None:
        return [exit_signal]
    return strategy_signals(state.strategies, predictions, position, bar, risk_state)


def verdict_for(signal: Signal, position: Position, state: RiskState, params: RiskParams, book: Book) -> risk.Verdict:
    """The risk rules, then the portfolio limits; a block is logged and counted."""
    verdict = risk.gate(signal, position, state, params)
    if verdict.blocked is None:
        verdict = risk.gate_portfolio(verdict, position, book.notional, book.equity, book.limits)
    if verdict.blocked:
        BLOCKED.inc(reason=verdict.blocked)
        log.info("signal_blocked", symbol=signal.symbol, strategy=signal.strategy, side=signal.side.name, reason=verdict.blocked)
    return verdict


def decision_summary(bar: Bar, predictions: Sequence[Prediction], signals: int) -> dict[str, Any]:
    """The last decision as /status shows it (a decision need not signal)."""
    return {
        "bar_ts": bar.ts,
        "signals": signals,
        "models": {p.model: {"side": p.side.name, "confidence": round(float(p.confidence), 4)} for p in predictions},
    }


def portfolio_equity(positions: Mapping[str, Position], marks: Mapping[str, float | None], starting_balance: float) -> float:
    """Starting balance plus every symbol's realized and unrealized PnL less fees."""
    total = starting_balance
    for symbol, p in positions.items():
        price = marks.get(symbol) or p.entry_price
        total += risk.equity(p, price, 0.0)
    return total


def make_book(
    positions: Mapping[str, Position], marks: Mapping[str, float | None], starting_balance: float, limits: PortfolioLimits
) -> Book:
    """The book at the start of a cycle."""
    notional = {s: abs(p.amount) * (marks.get(s) or p.entry_price) for s, p in positions.items()}
    return Book(notional, portfolio_equity(positions, marks, starting_balance), limits)
