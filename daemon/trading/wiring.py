"""The trading parts the config names: strategies, risk parameters and the broker."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from daemon.config import BrokerConfig, Config, ConfigError, EngineConfig, StrategyConfig
from daemon.domain import EventSink, PredictorLike, timeframe_ms
from daemon.market.orders import MarketLimits
from daemon.store import Store
from daemon.trading.ledgers import ShadowLedgers
from daemon.trading.orders import AlertsBroker, Broker
from daemon.trading.rebalance import YEAR_MS, Rebalancer
from strategies.base import Strategy
from strategies.confidence import ConfidenceStrategy
from strategies.portfolio import PortfolioSpec
from strategies.risk import PortfolioLimits, RiskParams


def strategies_from_config(scfg: StrategyConfig, ecfg: EngineConfig) -> list[Strategy]:
    """The strategies [engine].strategies names, configured from [strategy] (or a symbol's overrides)."""
    if ecfg.portfolio:  # the portfolio cycle decides instead (daemon/trading/rebalance.py)
        return []
    known: dict[str, Callable[[], Strategy]] = {
        "confidence": lambda: ConfidenceStrategy(
            combine=scfg.combine, weights=dict(scfg.weights), min_score=scfg.min_score, exit_on_flat=scfg.exit_on_flat
        ),
    }
    return [known[name]() for name in ecfg.strategies]


def risk_params_from_config(cfg: Config, symbol: str | None = None) -> RiskParams:
    """Risk limits from [strategy] with the symbol's overrides, the starting balance from [broker]."""
    s = cfg.strategy_for(symbol) if symbol else cfg.strategy
    return RiskParams(
        starting_balance=cfg.broker.starting_balance,
        position_fraction=s.position_fraction,
        max_position=s.max_position,
        cooldown_bars=s.cooldown_bars,
        stop_loss=s.stop_loss,
        take_profit=s.take_profit,
        max_drawdown=s.max_drawdown,
        allow_short=s.allow_short,
        bar_ms=timeframe_ms(cfg.decision_timeframe()[1]),
    )


def broker_from_config(
    bcfg: BrokerConfig,
    *,
    store: Store,
    sink: EventSink,
    exchange: Any = None,
    endpoint: str = "local",
    symbols: Sequence[str] = (),
    quotes: Any = None,
    decision_ms: int | None = None,
) -> Broker:
    """The broker of [broker].mode (testnet needs the exchange client; paper uses `quotes` when given)."""
    if bcfg.mode == "alerts":
        return AlertsBroker(store)
    if bcfg.mode == "paper":
        from daemon.trading.paper import PaperBroker

        # The exchange's minimums and clock, when there is one (not in a backtest).
        limits, clock = getattr(exchange, "limits", None), getattr(exchange, "server_time_ms", None)
        if limits is None:  # a backtest: the minimum notional the config gives, as an exchange would
            fallback = MarketLimits(min_notional=bcfg.min_notional)
            limits = lambda symbol: fallback  # noqa: E731
        return PaperBroker(
            store,
            sink,
            fee=bcfg.fee,
            slippage=bcfg.slippage,
            quotes=quotes,
            limits=limits,
            server_time=clock,
            decision_ms=decision_ms,
        )
    if exchange is None:
        raise ValueError("broker.mode = 'testnet' needs an exchange client")
    if endpoint == "live":
        raise ValueError("broker.mode = 'testnet' refuses exchange.endpoint = 'live' (real money)")
    from daemon.trading.broker import TestnetBroker  # imports ccxt through daemon.market.exchange

    return TestnetBroker(
        store, sink, exchange, symbols=symbols, unknown_grace_ms=int(bcfg.unknown_grace_s * 1000), decision_ms=decision_ms
    )


def engine_options(cfg: Config, *, store: Store, sink: EventSink, exchange: Any = None, quotes: Any = None) -> dict[str, Any]:
    """The Engine's keyword arguments the config gives: every symbol of exchange.symbols with its
    strategies and risk rules ([symbols."X/Y"] overrides applied), the portfolio limits, the
    broker, the streams, the trigger, the cycle deadline and the pre-warm."""
    per_symbol = {
        s: (strategies_from_config(cfg.strategy_for(s), cfg.engine), risk_params_from_config(cfg, s))
        for s in cfg.exchange.symbols
    }
    p, x = cfg.portfolio, cfg.exchange
    return dict(
        broker=broker_from_config(
            cfg.broker,
            store=store,
            sink=sink,
            exchange=exchange,
            endpoint=x.endpoint,
            symbols=x.symbols,
            quotes=quotes,
            decision_ms=timeframe_ms(cfg.decision_timeframe()[1]),
        ),
        symbols=x.symbols,
        per_symbol=per_symbol,
        portfolio=PortfolioLimits(p.max_open_positions, p.max_gross_exposure, p.per_symbol_cap),
        reference_symbol=x.reference_symbol,
        timeframes=x.timeframes,
        reference_timeframe=x.reference_timeframe,
        trigger_timeframe=cfg.decision_timeframe()[1],
        cycle_deadline_ms=cfg.engine.cycle_deadline_ms,
        prewarm_ms=cfg.engine.prewarm_ms,
        speed=cfg.local_exchange.speed if x.endpoint == "local" else 1.0,
        rebalancer=rebalancer_from_config(cfg),
        ledgers=ledgers_from_config(cfg),
    )


def ledgers_from_config(cfg: Config) -> ShadowLedgers:
    """Shadow ledgers built like the live book: the portfolio strategy's construction, or for the
    per-symbol confidence strategy each call held at position_fraction of equity (shorts when allowed)."""
    ppy = YEAR_MS / timeframe_ms(cfg.decision_timeframe()[1])
    return ShadowLedgers(
        cfg.exchange.symbols,
        book_spec(cfg),
        periods_per_year=ppy,
        cost_rate=cfg.broker.fee + cfg.broker.slippage,
        starting_balance=cfg.broker.starting_balance,
        by_side=not cfg.engine.portfolio,
        history=cfg.models.ledger_window,  # the record the live gate reads
    )


def book_spec(cfg: Config) -> PortfolioSpec:
    """How the book is sized: the portfolio strategy's construction, or for the per-symbol
    confidence strategy each call held at position_fraction of equity (shorts when allowed)."""
    n, s = len(cfg.exchange.symbols), cfg.strategy
    if cfg.engine.portfolio:
        return cfg.portfolio.spec(n)
    size = s.position_fraction * n
    return PortfolioSpec(long_short=s.allow_short, max_weight=s.position_fraction, gross_cap=size, net_cap=size)


def rebalancer_from_config(cfg: Config) -> Rebalancer | None:
    """The portfolio strategy of [portfolio] when [engine].strategies = ["portfolio"], else None.
    Trading costs (for the cash check) are the paper broker's fee and slippage."""
    if not cfg.engine.portfolio:
        return None
    p = cfg.portfolio
    return Rebalancer(
        p.spec(len(cfg.exchange.symbols)),
        timeframe=p.decision_timeframe,
        vol_window=p.vol_window,
        max_drawdown=p.max_drawdown,
        cost_rate=cfg.broker.fee + cfg.broker.slippage,
    )


def check_model_windows(cfg: Config, predictors: Mapping[str, PredictorLike]) -> None:
    """ConfigError naming exchange.timeframes (or reference_timeframe) when a model needs the
    windows of a timeframe the config does not stream (it would decide on a window that never fills)."""
    x = cfg.exchange
    base = x.reference_symbol.split("/")[0].lower() + "_"
    streamed: tuple[str, ...]
    for name, predictor in sorted(predictors.items()):
        for key in getattr(predictor, "required_windows", {}) or {}:
            if key.startswith(base):
                tf, streamed, where = key[len(base) :], (x.reference_timeframe,), "exchange.reference_timeframe"
            else:
                tf, streamed, where = key, x.timeframes, "exchange.timeframes"
            if tf not in streamed:
                raise ConfigError(
                    f"{where}: model {name!r} needs {key!r} windows but {tf!r} is not streamed ({where} = {list(streamed)})"
                )
