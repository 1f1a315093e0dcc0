"""Config sections of trading: [engine], [strategy], [symbols."X/Y"] overrides, [portfolio], [broker].

Part of `daemon.config` (which re-exports every class here and loads the file); split out by
concept to keep each module readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from daemon.domain import TIMEFRAME_MS
from daemon.typedtoml import require as _require


@dataclass(frozen=True)
class EngineConfig:
    """Per-bar decisions: which closed bars trigger both models."""

    trigger_timeframe: str = "1m"  # closed bars of this primary-symbol timeframe trigger a decision
    strategies: tuple[str, ...] = ("confidence",)  # names of [strategy]-configured strategies
    # A decision cycle waits this long after its first trigger bar for the other symbols' bars;
    # a later one is decided in the next cycle (counted as late).
    cycle_deadline_ms: int = 250
    prewarm_ms: int = 1500  # one throwaway forward pass this long before each expected close; 0 = off

    def check(self, key: str) -> None:
        _require(self.trigger_timeframe in TIMEFRAME_MS, f"{key}.trigger_timeframe",
                 f"unknown timeframe {self.trigger_timeframe!r}")
        _require(len(self.strategies) > 0, f"{key}.strategies", "name at least one strategy")
        _require(0 <= self.cycle_deadline_ms <= 60_000, f"{key}.cycle_deadline_ms", "must be within [0, 60000]")
        _require(0 <= self.prewarm_ms <= 60_000, f"{key}.prewarm_ms", "must be within [0, 60000] (0 = off)")
        for name in self.strategies:
            _require(name == "confidence", f"{key}.strategies", f"unknown strategy {name!r} (known: confidence)")


@dataclass(frozen=True)
class StrategyConfig:
    """The confidence strategy's combination of the two models and the risk rules."""

    combine: Literal["both", "either", "weighted"] = "both"
    weights: dict[str, float] = field(default_factory=dict)  # model name -> weight ("weighted"); {} = equal
    min_score: float = 0.5  # |weighted score| needed for a side ("weighted")
    exit_on_flat: bool = True  # a combined FLAT closes the position
    position_fraction: float = 0.1  # entry notional as a fraction of equity
    max_position: float = 5_000.0  # cap on a position's notional, quote currency
    cooldown_bars: int = 3  # trigger bars after a trade without new entries
    stop_loss: float = 0.02  # fraction from entry; 0 = off
    take_profit: float = 0.04  # fraction from entry; 0 = off
    max_drawdown: float = 0.1  # fraction of peak equity that halts new entries; 0 = off
    allow_short: bool = True

    def check(self, key: str) -> None:
        for name, w in self.weights.items():
            _require(w >= 0, f"{key}.weights.{name}", "must be >= 0")
        _require(not self.weights or sum(self.weights.values()) > 0, f"{key}.weights", "need a positive weight")
        _require(0 < self.min_score <= 1, f"{key}.min_score", "must be within (0, 1]")
        _require(0 < self.position_fraction <= 1, f"{key}.position_fraction", "must be within (0, 1]")
        _require(self.max_position > 0, f"{key}.max_position", "must be > 0")
        _require(self.cooldown_bars >= 0, f"{key}.cooldown_bars", "must be >= 0")
        for name in ("stop_loss", "take_profit", "max_drawdown"):
            _require(0 <= getattr(self, name) < 1, f"{key}.{name}", "must be within [0, 1) (0 = off)")


@dataclass(frozen=True)
class SymbolConfig:
    """Per-symbol overrides of [strategy] (`[symbols."SOL/USDT"]`); unset keys use [strategy]."""

    position_fraction: float | None = None
    max_position: float | None = None
    allow_short: bool | None = None

    def check(self, key: str) -> None:
        if self.position_fraction is not None:
            _require(0 < self.position_fraction <= 1, f"{key}.position_fraction", "must be within (0, 1]")
        if self.max_position is not None:
            _require(self.max_position > 0, f"{key}.max_position", "must be > 0")


@dataclass(frozen=True)
class PortfolioConfig:
    """Limits across all symbols; every entry is gated by them (exits never are)."""

    max_open_positions: int = 0  # 0 = no limit
    max_gross_exposure: float = 1.0  # sum of |position notional| as a fraction of equity
    per_symbol_cap: float = 1.0  # one symbol's |notional| as a fraction of equity

    def check(self, key: str) -> None:
        _require(self.max_open_positions >= 0, f"{key}.max_open_positions", "must be >= 0 (0 = no limit)")
        _require(0 < self.max_gross_exposure <= 10, f"{key}.max_gross_exposure", "must be within (0, 10]")
        _require(0 < self.per_symbol_cap <= 10, f"{key}.per_symbol_cap", "must be within (0, 10]")


@dataclass(frozen=True)
class BrokerConfig:
    """Where signals go: alerts only, the internal paper broker, or real testnet orders."""

    mode: Literal["alerts", "paper", "testnet"] = "paper"
    fee: float = 0.001  # paper: fee per side as a fraction of notional
    slippage: float = 0.0005  # paper: adverse price move per fill, fraction
    starting_balance: float = 10_000.0  # quote currency; equity before any trade
    unknown_grace_s: float = 15.0  # testnet: an order not found this long after sending was never placed

    def check(self, key: str) -> None:
        _require(0 <= self.fee < 0.1, f"{key}.fee", "must be within [0, 0.1)")
        _require(0 <= self.slippage < 0.1, f"{key}.slippage", "must be within [0, 0.1)")
        _require(self.starting_balance > 0, f"{key}.starting_balance", "must be > 0")
        _require(self.unknown_grace_s >= 0, f"{key}.unknown_grace_s", "must be >= 0")
