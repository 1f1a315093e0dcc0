"""Risk rules: position sizing, maximum position, cooldown, stop-loss / take-profit, drawdown halt.

Pure functions over explicit state (RiskState) and parameters (RiskParams); the engine keeps
the state and persists it. Exits always pass (they reduce risk); entries pass only when no
rule blocks them. Time is the bars' time: the cooldown counts trigger bars by timestamp.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.domain import Bar, Position, Side, Signal
from strategies.base import position_side

RISK_STRATEGY = "risk"  # the `strategy` of signals the risk rules emit themselves


@dataclass(frozen=True)
class RiskParams:
    """Limits; a fraction of 0 switches a rule off."""

    starting_balance: float = 10_000.0  # quote currency, the equity before any trade
    position_fraction: float = 0.1  # entry notional as a fraction of equity
    max_position: float = 5_000.0  # cap on the notional of a position, quote currency
    cooldown_bars: int = 0  # trigger bars after a trade during which no new entry is made
    stop_loss: float = 0.0  # adverse move from entry (fraction) that closes the position
    take_profit: float = 0.0  # favourable move from entry (fraction) that closes the position
    max_drawdown: float = 0.0  # drawdown from peak equity (fraction) that halts new entries
    allow_short: bool = True
    bar_ms: int = 60_000  # length of a trigger bar, for the cooldown


@dataclass(frozen=True)
class RiskState:
    """What the rules remember between bars."""

    last_trade_ts: int | None = None  # bar ts of the last trade (entry or exit)
    peak_equity: float = 0.0
    halted: bool = False  # drawdown halt; cleared only by an operator (engine.resume)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the store."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RiskState:
        """Inverse of to_dict."""
        return cls(**{k: raw[k] for k in ("last_trade_ts", "peak_equity", "halted") if k in raw})


@dataclass(frozen=True)
class Verdict:
    """The outcome of the gate: the signal to emit and the target amount, or why nothing."""

    signal: Signal | None
    target: float | None  # signed base amount the position should become
    blocked: str | None = None


def equity(position: Position, price: float, starting_balance: float) -> float:
    """Starting balance + realized PnL - fees + unrealized PnL at `price`."""
    unrealized = position.amount * (price - position.entry_price)
    return starting_balance + position.realized_pnl - position.fees + unrealized


def observe(state: RiskState, position: Position, bar: Bar, params: RiskParams) -> RiskState:
    """Track peak equity at the bar's close and halt entries once the drawdown limit is hit."""
    eq = equity(position, bar.close, params.starting_balance)
    peak = max(state.peak_equity or params.starting_balance, eq)
    halted = state.halted
    if params.max_drawdown > 0 and peak > 0 and (peak - eq) / peak >= params.max_drawdown:
        halted = True
    return dataclasses.replace(state, peak_equity=peak, halted=halted)


def protective_exit(position: Position, bar: Bar, params: RiskParams) -> Signal | None:
    """A FLAT signal when the bar's range reached the stop-loss or take-profit level."""
    side = position_side(position)
    if side == Side.FLAT or position.entry_price <= 0:
        return None
    sign = 1.0 if side == Side.LONG else -1.0
    adverse = bar.low if side == Side.LONG else bar.high
    favourable = bar.high if side == Side.LONG else bar.low
    move_adverse = sign * (position.entry_price - adverse) / position.entry_price
    move_favourable = sign * (favourable - position.entry_price) / position.entry_price
    # Both inside one bar: assume the stop came first (we cannot know the order).
    if params.stop_loss > 0 and move_adverse >= params.stop_loss:
        rule, level, price, move = "stop_loss", params.stop_loss, adverse, -move_adverse
    elif params.take_profit > 0 and move_favourable >= params.take_profit:
        rule, level, price, move = "take_profit", params.take_profit, favourable, move_favourable
    else:
        return None
    extreme = "low" if (rule == "stop_loss") == (side == Side.LONG) else "high"  # the bar price that hit
    # The rule's name comes first and alone, so that a reader (or a filter) sees why the
    # position closed, and that a risk exit does not wait for the models' holding period.
    reasons = (
        rule,
        f"{side.name} entry {position.entry_price:g}, bar {extreme} {price:g}: {move * 100:+.2f} % (limit {level * 100:.2f} %)",
        "risk exit: overrides the holding period",
    )
    return Signal(bar.symbol, bar.ts, Side.FLAT, 1.0, bar.close, RISK_STRATEGY, reasons)


def _entry_block(signal: Signal, state: RiskState, params: RiskParams) -> str | None:
    """Why a new entry is not allowed now, or None."""
    if state.halted:
        return "drawdown_halt"
    if signal.side == Side.SHORT and not params.allow_short:
        return "short_not_allowed"
    if params.cooldown_bars > 0 and state.last_trade_ts is not None:
        bars_since = (signal.bar_ts - state.last_trade_ts) // params.bar_ms
        if bars_since < params.cooldown_bars:
            return "cooldown"
    return None


def size(eq: float, price: float, params: RiskParams) -> float:
    """Base amount of a new entry: a fraction of equity, capped by the maximum position."""
    if price <= 0 or eq <= 0:
        return 0.0
    return min(eq * params.position_fraction, params.max_position) / price


def gate(signal: Signal, position: Position, state: RiskState, params: RiskParams) -> Verdict:
    """Apply the rules to a strategy's signal: exits pass, entries are checked and sized."""
    current = position_side(position)
    if signal.side == current:
        return Verdict(None, None, "already_there")
    if signal.side == Side.FLAT:
        return Verdict(signal, 0.0)
    blocked = _entry_block(signal, state, params)
    if blocked is None:
        amount = size(equity(position, signal.price, params.starting_balance), signal.price, params)
        if amount <= 0:
            blocked = "no_equity"
        else:
            sign = 1.0 if signal.side == Side.LONG else -1.0
            return Verdict(signal, sign * amount)
    if current == Side.FLAT:
        return Verdict(None, None, blocked)
    # Flipping while entries are blocked: close the opposite position, open nothing.
    exit_signal = dataclasses.replace(signal, side=Side.FLAT, reasons=signal.reasons + (f"entry blocked: {blocked}",))
    return Verdict(exit_signal, 0.0, blocked)


def after_trade(state: RiskState, bar_ts: int) -> RiskState:
    """Start the cooldown at the bar of a trade."""
    return dataclasses.replace(state, last_trade_ts=bar_ts)


# --- portfolio: limits across symbols (the engine keeps the book) ------------------------


@dataclass(frozen=True)
class PortfolioLimits:
    """[portfolio]: limits across all traded symbols; 0 switches a limit off."""

    max_open_positions: int = 0  # symbols holding a position at once
    max_gross_exposure: float = 0.0  # sum of |notional| as a fraction of portfolio equity
    per_symbol_cap: float = 0.0  # one symbol's |notional| as a fraction of portfolio equity


TOLERANCE = 1e-9  # relative slack so that an entry sized exactly at a cap passes


def portfolio_block(
    symbol: str, target_notional: float, book: Mapping[str, float], eq: float, limits: PortfolioLimits
) -> str | None:
    """Why an entry that makes `symbol`'s |notional| `target_notional` breaks a limit, or None.

    `book` maps every symbol to its |notional| now (positions and orders already decided).
    """
    others = {s: abs(n) for s, n in book.items() if s != symbol and abs(n) > 0}
    held = abs(book.get(symbol, 0.0)) > 0
    slack = TOLERANCE * max(1.0, abs(eq))
    if limits.max_open_positions and not held and len(others) >= limits.max_open_positions:
        return "max_open_positions"
    if limits.per_symbol_cap and target_notional > limits.per_symbol_cap * eq + slack:
        return "per_symbol_cap"
    if limits.max_gross_exposure and sum(others.values()) + target_notional > limits.max_gross_exposure * eq + slack:
        return "max_gross_exposure"
    return None


def gate_portfolio(
    verdict: Verdict, position: Position, book: Mapping[str, float], eq: float, limits: PortfolioLimits
) -> Verdict:
    """Apply the portfolio limits to the risk gate's verdict: exits and reductions always pass;
    an entry or increase that breaks a limit is blocked (a flip becomes the exit alone)."""
    if verdict.signal is None or verdict.target is None:
        return verdict
    target, current = verdict.target, position.amount
    increases = abs(target) > abs(current) + TOLERANCE or (target * current < 0)
    if not increases:
        return verdict
    blocked = portfolio_block(verdict.signal.symbol, abs(target) * verdict.signal.price, book, eq, limits)
    if blocked is None:
        return verdict
    if position_side(position) == Side.FLAT:
        return Verdict(None, None, blocked)
    exit_signal = dataclasses.replace(
        verdict.signal, side=Side.FLAT, reasons=verdict.signal.reasons + (f"entry blocked: {blocked}",)
    )
    return Verdict(exit_signal, 0.0, blocked)


# --- portfolio decisions: rules on target weights (strategies/portfolio.py builds them) ------


def halt_exposure(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Target weights while a drawdown halt holds: no new exposure. Each symbol may shrink
    toward 0 or close, never grow or flip (a flip becomes the exit alone)."""
    same_side = np.sign(target) == np.sign(current)
    kept = np.where(same_side, np.sign(current) * np.minimum(np.abs(target), np.abs(current)), 0.0)
    return np.where(np.abs(current) > 0, kept, 0.0)


def fund_buys(target: np.ndarray, current: np.ndarray, cost_rate: float) -> np.ndarray:
    """Target weights whose purchases the cash pays for: cash after the rebalance, as a
    fraction of equity (1 - sum of weights - costs), never goes below 0. Only the buys shrink
    (proportionally); sells and reductions are never touched."""
    delta = target - current
    buys, other = np.clip(delta, 0.0, None), np.clip(delta, None, 0.0)
    need = float(buys.sum())
    if need <= 0.0:
        return target
    spare = 1.0 - float(current.sum()) - float(other.sum()) - cost_rate * float(np.abs(other).sum())
    scale = min(1.0, max(0.0, spare / (need * (1.0 + cost_rate))))
    funded: np.ndarray = current + other + buys * scale
    return funded


def portfolio_drawdown(state: RiskState, eq: float, max_drawdown: float) -> RiskState:
    """Track the book's peak equity; halt new exposure once the drawdown reaches the limit (0 = off)."""
    peak = max(state.peak_equity or eq, eq)
    halted = state.halted or (max_drawdown > 0 and peak > 0 and (peak - eq) / peak >= max_drawdown)
    return dataclasses.replace(state, peak_equity=peak, halted=halted)
