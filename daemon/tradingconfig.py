"""Config sections of trading: [engine], [strategy], [symbols."X/Y"] overrides, [portfolio], [broker].

Part of `daemon.config` (which re-exports every class here and loads the file); split out by
concept to keep each module readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from strategies.portfolio import PortfolioSpec

from daemon.domain import TIMEFRAME_MS
from daemon.typedtoml import ConfigError
from daemon.typedtoml import require as _require

STRATEGIES = ("confidence", "portfolio")  # names [engine].strategies may list
DECISION_TIMEFRAMES = ("1m", "1h", "4h", "1d")  # [portfolio].decision_timeframe


@dataclass(frozen=True)
class EngineConfig:
    """Per-bar decisions: which closed bars trigger both models."""

    trigger_timeframe: str = "1m"  # closed bars of this primary-symbol timeframe trigger a decision
    strategies: tuple[str, ...] = ("confidence",)  # names of [strategy]-configured strategies
    # A decision cycle waits this long after its first trigger bar for the other symbols' bars;
    # a later one is decided in the next cycle (counted as late).
    cycle_deadline_ms: int = 250
    # One throwaway forward pass (never stored) that ends this long before the next trigger bar is
    # due (one trigger interval after the last cycle's first bar arrived); 0 = off.
    prewarm_ms: int = 1500

    def check(self, key: str) -> None:
        _require(
            self.trigger_timeframe in TIMEFRAME_MS, f"{key}.trigger_timeframe", f"unknown timeframe {self.trigger_timeframe!r}"
        )
        _require(len(self.strategies) > 0, f"{key}.strategies", "name at least one strategy")
        _require(0 <= self.cycle_deadline_ms <= 60_000, f"{key}.cycle_deadline_ms", "must be within [0, 60000]")
        _require(0 <= self.prewarm_ms <= 60_000, f"{key}.prewarm_ms", "must be within [0, 60000] (0 = off)")
        for name in self.strategies:
            _require(name in STRATEGIES, f"{key}.strategies", f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
        _require(
            not ("portfolio" in self.strategies and len(self.strategies) > 1),
            f"{key}.strategies",
            "the portfolio strategy decides the whole book: list it alone",
        )

    @property
    def portfolio(self) -> bool:
        """Portfolio decisions (scores -> target weights -> rebalancing orders) instead of per-symbol signals."""
        return "portfolio" in self.strategies


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
    """Limits across all symbols; every entry is gated by them (exits never are). With
    [engine].strategies = ["portfolio"], also the portfolio strategy: every traded symbol's bar
    of `decision_timeframe` forms one cycle whose scores become target weights
    (strategies/portfolio.py, the keys long_short .. min_score) and rebalancing orders."""

    max_open_positions: int = 0  # 0 = no limit
    max_gross_exposure: float = 1.0  # sum of |position notional| as a fraction of equity
    per_symbol_cap: float = 1.0  # one symbol's |notional| as a fraction of equity
    # --- the portfolio strategy ---
    decision_timeframe: str = "1h"  # 1m, 1h, 4h or 1d; must be in exchange.timeframes
    long_short: bool = False
    top_k: int = 0  # symbols per side; 0 = every symbol whose score passes min_score
    max_weight: float = 0.25  # per-symbol cap on |weight|
    gross_cap: float = 1.0  # cap on sum |weight|
    net_cap: float = 1.0  # cap on |sum weight|
    vol_target: float = 0.0  # annualised volatility target; 0 = equal weights
    vol_window: int = 48  # decision bars the per-symbol volatility is measured over
    no_trade_band: float = 0.0  # a weight move smaller than this is not made
    turnover_penalty: float = 0.0  # move 1 / (1 + penalty) of the way to the target
    min_score: float = 0.0  # a long needs score > min_score (a short < -min_score)
    max_drawdown: float = 0.0  # portfolio drawdown from peak equity that halts new exposure; 0 = off

    def check(self, key: str) -> None:
        _require(self.max_open_positions >= 0, f"{key}.max_open_positions", "must be >= 0 (0 = no limit)")
        _require(0 < self.max_gross_exposure <= 10, f"{key}.max_gross_exposure", "must be within (0, 10]")
        _require(0 < self.per_symbol_cap <= 10, f"{key}.per_symbol_cap", "must be within (0, 10]")
        _require(
            self.decision_timeframe in DECISION_TIMEFRAMES,
            f"{key}.decision_timeframe",
            f"expected one of {', '.join(DECISION_TIMEFRAMES)}, got {self.decision_timeframe!r}",
        )
        _require(self.top_k >= 0, f"{key}.top_k", "must be >= 0 (0 = no limit)")
        _require(self.vol_window >= 2, f"{key}.vol_window", "must be >= 2 bars")
        _require(0 <= self.max_drawdown < 1, f"{key}.max_drawdown", "must be within [0, 1) (0 = off)")
        self.spec()  # the construction keys, validated by strategies/portfolio.py

    def spec(self, n_symbols: int | None = None) -> PortfolioSpec:
        """The strategies/portfolio.py settings; ConfigError naming `portfolio.<key>` when they cannot work
        (e.g. per-symbol caps that sum below gross_cap for `n_symbols` symbols)."""
        from strategies.portfolio import PortfolioError, PortfolioSpec

        spec = PortfolioSpec(
            long_short=self.long_short,
            top_k=self.top_k or None,
            max_weight=self.max_weight,
            gross_cap=self.gross_cap,
            net_cap=self.net_cap,
            vol_target=self.vol_target or None,
            no_trade_band=self.no_trade_band,
            turnover_penalty=self.turnover_penalty,
            min_score=self.min_score,
        )
        try:
            spec.validate(n_symbols)
        except PortfolioError as exc:
            raise ConfigError(f"portfolio.{exc}") from None
        return spec


@dataclass(frozen=True)
class BrokerConfig:
    """Where signals go: alerts only, the internal paper broker, or real testnet orders."""

    mode: Literal["alerts", "paper", "testnet"] = "paper"
    fee: float = 0.001  # paper: fee per side as a fraction of notional
    slippage: float = 0.0005  # paper: adverse price move per fill, fraction
    starting_balance: float = 10_000.0  # quote currency; equity before any trade
    unknown_grace_s: float = 15.0  # testnet: an order not found this long after sending was never placed
    # Orders below this notional (quote currency) are skipped where the exchange's own limits
    # are unknown (backtests); live, the exchange's limits as ccxt reports them apply.
    min_notional: float = 5.0

    def check(self, key: str) -> None:
        _require(0 <= self.fee < 0.1, f"{key}.fee", "must be within [0, 0.1)")
        _require(0 <= self.slippage < 0.1, f"{key}.slippage", "must be within [0, 0.1)")
        _require(self.starting_balance > 0, f"{key}.starting_balance", "must be > 0")
        _require(self.unknown_grace_s >= 0, f"{key}.unknown_grace_s", "must be >= 0")
        _require(self.min_notional >= 0, f"{key}.min_notional", "must be >= 0 (0 = no minimum)")
