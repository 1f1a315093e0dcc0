"""Per-bar decisions: on each closed trigger bar, both models off the loop → strategies → risk → broker.

`await engine.on_bar(bar)` is called by the feed after the bar is in its ring buffer. On a
trigger bar (primary symbol, trigger timeframe) the engine copies the windows every predictor
needs, runs the predictors on a dedicated single-thread executor (the feed never waits on
inference), and then, back on the event loop (the one thread that owns state), applies the
strategies and the risk rules, stores predictions and signals, publishes each signal, and
hands order intents to the broker. Never two decisions at once: a trigger bar that arrives
while one runs waits and is decided next; if a newer one arrives meanwhile it replaces the
waiting one, which is skipped, logged and counted (so after a backfill burst the newest bar
is decided, not the stale ones in between). With `wait_for_decision=True` (backtests)
on_bar awaits the decision instead, so the same bars give the same signals.

Time comes from the data: decisions use bar timestamps; only latency metrics read the clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from daemon import log as logging
from daemon.config import BrokerConfig, Config, EngineConfig, StrategyConfig
from daemon.domain import PRIMARY_TIMEFRAMES, REFERENCE_SYMBOL, Bar, EventSink, PredictorLike, Side, Signal
from daemon.domain import Position, Prediction, timeframe_ms
from daemon.metrics import REGISTRY
from daemon.trading.orders import AlertsBroker, Broker, OrderIntent, client_order_id, wall_ms
from daemon.trading.scoring import Shadow
from daemon.store import Store
from strategies import risk
from strategies.base import Strategy
from strategies.confidence import ConfidenceStrategy
from strategies.risk import RiskParams, RiskState

log = logging.get("engine")
DECISIONS = REGISTRY.counter("sigd_decisions_total", "Trigger bars decided")
SKIPPED = REGISTRY.counter("sigd_decisions_skipped_total", "Trigger bars skipped because a decision was running")
STRATEGY_ERRORS = REGISTRY.counter("sigd_strategy_errors_total", "Strategies that raised, by strategy")
PREDICTOR_ERRORS = REGISTRY.counter("sigd_predictor_errors_total", "Predictors that raised, by model")
SIGNALS = REGISTRY.counter("sigd_signals_total", "Signals emitted, by side")
BLOCKED = REGISTRY.counter("sigd_signals_blocked_total", "Strategy signals the risk rules stopped, by reason")
INFERENCE_MS = REGISTRY.histogram("sigd_inference_ms", "Inference time per model and bar, ms")
BAR_TO_SIGNAL_MS = REGISTRY.histogram("sigd_bar_to_signal_ms", "Trigger bar received to signal committed, ms")
DECISION_MS = REGISTRY.histogram("sigd_decision_ms", "Trigger bar received to decision finished, ms")
KV_PAUSED, KV_RISK = "engine.paused", "engine.risk"
# A decision to make: the trigger bar, its window snapshot, the predictors, the perf time received.
Job = tuple[Bar, Mapping[str, np.ndarray], Sequence[tuple[str, PredictorLike]], float]


class WindowSource(Protocol):
    """daemon.market.bars.Buffers: copies of the newest rows of each stream in the window convention."""

    def windows(self, symbol: str, timeframes: Sequence[str], reference_symbol: str,
                reference_timeframe: str = "1m", sizes: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
        """Owned copies of the newest rows per window key, float64 [n, 6]."""
        ...


def predict_all(predictors: Sequence[tuple[str, PredictorLike]], windows: Mapping[str, np.ndarray],
                bar_ts: int) -> list[Prediction]:
    """Every predictor on its own windows (runs on the inference thread); one that raises is left out."""
    out: list[Prediction] = []
    for name, predictor in predictors:
        mine = {k: windows[k][-n:] for k, n in predictor.required_windows.items() if k in windows}
        start = time.perf_counter()
        try:
            prediction = predictor.predict(mine, bar_ts)
        except Exception as exc:
            PREDICTOR_ERRORS.inc(model=name)
            log.error("predictor_failed", model=name, bar_ts=bar_ts, error=repr(exc))
            continue
        elapsed = (time.perf_counter() - start) * 1000.0
        INFERENCE_MS.observe(elapsed, model=name)
        out.append(prediction if prediction.inference_ms else dataclasses.replace(prediction, inference_ms=elapsed))
    return out


def signal_payload(signal_id: int, signal: Signal, latency_ms: float | None) -> dict[str, Any]:
    """The "signal" event: symbol, side, confidence, price, bar_ts, model versions, ...

    The event id ("signal-<row id>") travels beside the payload: the outbox adds it as `id`.
    """
    return {
        "signal_id": signal_id, "symbol": signal.symbol, "side": signal.side.name,
        "confidence": signal.confidence, "price": signal.price, "bar_ts": signal.bar_ts,
        "strategy": signal.strategy, "reasons": list(signal.reasons),
        "model_versions": dict(signal.model_versions), "latency_ms": latency_ms,
    }


def strategies_from_config(scfg: StrategyConfig, ecfg: EngineConfig) -> list[Strategy]:
    """The strategies [engine].strategies names, configured from [strategy]."""
    known: dict[str, Callable[[], Strategy]] = {
        "confidence": lambda: ConfidenceStrategy(combine=scfg.combine, weights=dict(scfg.weights),
                                                 min_score=scfg.min_score, exit_on_flat=scfg.exit_on_flat),
    }
    return [known[name]() for name in ecfg.strategies]


def risk_params_from_config(cfg: Config) -> RiskParams:
    """Risk limits from [strategy], the starting balance from [broker]."""
    s = cfg.strategy
    return RiskParams(
        starting_balance=cfg.broker.starting_balance, position_fraction=s.position_fraction,
        max_position=s.max_position, cooldown_bars=s.cooldown_bars, stop_loss=s.stop_loss,
        take_profit=s.take_profit, max_drawdown=s.max_drawdown, allow_short=s.allow_short,
        bar_ms=timeframe_ms(cfg.engine.trigger_timeframe),
    )


def broker_from_config(bcfg: BrokerConfig, *, store: Store, sink: EventSink, exchange: Any = None,
                       endpoint: str = "local", symbols: Sequence[str] = ()) -> Broker:
    """The broker of [broker].mode (testnet needs the exchange client)."""
    if bcfg.mode == "alerts":
        return AlertsBroker(store)
    if bcfg.mode == "paper":
        from daemon.trading.paper import PaperBroker

        return PaperBroker(store, sink, fee=bcfg.fee, slippage=bcfg.slippage)
    if exchange is None:
        raise ValueError("broker.mode = 'testnet' needs an exchange client")
    if endpoint == "live":
        raise ValueError("broker.mode = 'testnet' refuses exchange.endpoint = 'live' (real money)")
    from daemon.trading.broker import TestnetBroker  # imports ccxt through daemon.market.exchange

    return TestnetBroker(store, sink, exchange, symbols=symbols, unknown_grace_ms=int(bcfg.unknown_grace_s * 1000))


class Engine:
    """Runs both models on every closed trigger bar and turns their answers into signals and orders."""

    def __init__(
        self, *, store: Store, buffers: WindowSource, predictors: Mapping[str, PredictorLike], sink: EventSink,
        strategies: Sequence[Strategy] | None = None, broker: Broker | None = None, risk_params: RiskParams | None = None,
        symbol: str = "ETH/USDT", reference_symbol: str = REFERENCE_SYMBOL,
        timeframes: Sequence[str] = PRIMARY_TIMEFRAMES, reference_timeframe: str = "1m",
        trigger_timeframe: str = "1m", wait_for_decision: bool = False,
        perf_clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.store, self.buffers, self.sink = store, buffers, sink
        self.predictors: dict[str, PredictorLike] = dict(predictors)
        self.strategies = list(strategies) if strategies is not None else [ConfidenceStrategy()]
        self.broker: Broker = broker if broker is not None else AlertsBroker(store)
        self.risk_params = risk_params or RiskParams(bar_ms=timeframe_ms(trigger_timeframe))
        self.symbol, self.reference_symbol = symbol, reference_symbol
        self.timeframes, self.reference_timeframe = tuple(timeframes), reference_timeframe
        self.trigger_timeframe = trigger_timeframe
        timeframe_ms(trigger_timeframe)  # a clear error for an unknown timeframe
        self.wait_for_decision = wait_for_decision
        self.perf_clock = perf_clock
        self.risk_state = RiskState()
        self.paused = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sigd-inference")
        self._inflight: asyncio.Task[None] | None = None
        self._pending: Job | None = None
        self._act_lock = asyncio.Lock()
        self._last_bar: Bar | None = None
        self._last_signal: dict[str, Any] | None = None
        self.decisions = self.skipped = 0
        self.shadow = Shadow()  # every model trades unless the service sets trade_only_validated

    @classmethod
    def from_config(
        cls, cfg: Config, *, store: Store, buffers: WindowSource, predictors: Mapping[str, PredictorLike],
        sink: EventSink, exchange: Any = None, wait_for_decision: bool = False,
    ) -> "Engine":
        """An Engine with the strategies, risk rules and broker the config names.

        `exchange` (a daemon.market.exchange.ExchangeClient) is needed only for broker.mode = "testnet".
        """
        return cls(
            store=store, buffers=buffers, predictors=predictors, sink=sink,
            strategies=strategies_from_config(cfg.strategy, cfg.engine),
            broker=broker_from_config(cfg.broker, store=store, sink=sink, exchange=exchange,
                                      endpoint=cfg.exchange.endpoint, symbols=(cfg.exchange.symbol,)),
            risk_params=risk_params_from_config(cfg), symbol=cfg.exchange.symbol,
            reference_symbol=cfg.exchange.reference_symbol, timeframes=cfg.exchange.timeframes,
            reference_timeframe=cfg.exchange.reference_timeframe,
            trigger_timeframe=cfg.engine.trigger_timeframe, wait_for_decision=wait_for_decision,
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore pause and risk state, start the broker (reconcile), republish lost signal events."""
        self.paused = self.store.get_kv(KV_PAUSED, "0") == "1"
        raw = self.store.get_kv(KV_RISK)
        self.risk_state = RiskState.from_dict(json.loads(raw)) if raw else RiskState()
        await self.broker.start()
        self.republish()
        log.info("engine_started", symbol=self.symbol, trigger=self.trigger_timeframe, mode=self.broker.mode,
                 models=sorted(self.predictors), paused=self.paused, halted=self.risk_state.halted)

    async def close(self) -> None:
        """Let a running decision finish, then stop the inference thread."""
        if self._inflight is not None:
            await asyncio.gather(self._inflight, return_exceptions=True)
        await self.broker.close()
        self._executor.shutdown(wait=True)

    # --- the bar path -----------------------------------------------------------------------

    async def on_bar(self, bar: Bar) -> None:
        """Called after `bar` is in its ring buffer; decides on trigger bars (see module doc)."""
        received = self.perf_clock()
        if bar.symbol == self.symbol:
            await self.broker.on_bar(bar)
        if bar.symbol != self.symbol or bar.timeframe != self.trigger_timeframe:
            return
        # Copy the windows now, on the loop: the rings change with the next bar.
        job = (bar, self._snapshot(), tuple(self.predictors.items()), received)
        if self._inflight is not None and not self._inflight.done():
            # Busy: the newest trigger bar waits and runs next; an older waiting one is dropped.
            # After a reconnect the feed backfills a burst of bars, and the decision that
            # matters is the one on the newest, not on the stale ones in between.
            if self._pending is not None:
                self._skip(self._pending[0], "superseded")
            self._pending = job
            return
        self._inflight = asyncio.create_task(self._run_decisions(job))
        if self.wait_for_decision:
            await self._inflight

    def _skip(self, bar: Bar, reason: str) -> None:
        self.skipped += 1
        SKIPPED.inc(reason=reason)
        log.warning("decision_skipped", symbol=bar.symbol, bar_ts=bar.ts, reason=reason)

    async def _run_decisions(self, job: Job) -> None:
        """Decide `job`, then whatever trigger bar arrived meanwhile (never two at once)."""
        next_job: Job | None = job
        while next_job is not None:
            await self._decide(*next_job)
            next_job, self._pending = self._pending, None

    def _snapshot(self) -> dict[str, np.ndarray]:
        sizes: dict[str, int] = {}
        for predictor in self.predictors.values():
            for key, n in predictor.required_windows.items():
                sizes[key] = max(sizes.get(key, 0), int(n))
        return self.buffers.windows(self.symbol, self.timeframes, self.reference_symbol,
                                    self.reference_timeframe, sizes)

    async def _decide(self, bar: Bar, windows: Mapping[str, np.ndarray],
                      predictors: Sequence[tuple[str, PredictorLike]], received: float) -> None:
        try:
            loop = asyncio.get_running_loop()
            predictions = await loop.run_in_executor(self._executor, predict_all, predictors, windows, bar.ts)
            async with self._act_lock:
                self.store.add_predictions(bar.symbol, predictions, wall_ms())
                self._last_bar = bar
                if self.paused:
                    log.info("decision_paused", symbol=bar.symbol, bar_ts=bar.ts)
                else:
                    await self._act(bar, self.shadow.tradable(predictions), received)
                self.decisions += 1
                DECISIONS.inc()
                DECISION_MS.observe((self.perf_clock() - received) * 1000.0)
        except Exception as exc:  # one bad decision never stops the bar path
            log.exception("decision_failed", symbol=bar.symbol, bar_ts=bar.ts, error=repr(exc))

    async def _act(self, bar: Bar, predictions: Sequence[Prediction], received: float) -> None:
        """Strategies → risk gate → signal (stored, published) → broker; all on the loop."""
        position = self.broker.position(self.symbol)
        before = self.risk_state
        self.risk_state = risk.observe(self.risk_state, position, bar, self.risk_params)
        if self.risk_state.halted and not before.halted:
            self._alert_halt(bar, position)
        exit_signal = risk.protective_exit(position, bar, self.risk_params)
        # A protective exit takes the bar: no strategy trades on a position being closed.
        candidates = [exit_signal] if exit_signal else self._strategy_signals(predictions, position, bar)
        for signal in candidates:
            verdict = risk.gate(signal, self.broker.position(self.symbol), self.risk_state, self.risk_params)
            if verdict.blocked:
                BLOCKED.inc(reason=verdict.blocked)
                log.info("signal_blocked", strategy=signal.strategy, side=signal.side.name, reason=verdict.blocked)
            if verdict.signal is None or verdict.target is None:
                continue
            self.emit(verdict.signal, received)
            intent = OrderIntent(self.symbol, verdict.target, verdict.signal.price, bar.ts, bar.close_ts,
                                 verdict.signal.strategy)
            if await self.broker.submit(intent) is not None:
                self.risk_state = risk.after_trade(self.risk_state, bar.ts)
        if self.risk_state != before:  # most bars change nothing: no commit for them
            self._save_risk()

    def _alert_halt(self, bar: Bar, position: Position) -> None:
        """Tell the operator: new entries stop until they resume."""
        eq = risk.equity(position, bar.close, self.risk_params.starting_balance)
        payload = {"kind": "drawdown_halt", "symbol": self.symbol, "bar_ts": bar.ts, "equity": eq,
                   "peak_equity": self.risk_state.peak_equity, "max_drawdown": self.risk_params.max_drawdown,
                   "message": "drawdown limit reached: no new entries until resume"}
        log.error("drawdown_halt", **payload)
        try:
            self.sink.publish("error", payload, event_id=f"drawdown-halt-{self.symbol}-{bar.ts}")
        except Exception as exc:
            log.error("halt_publish_failed", error=repr(exc))

    def _strategy_signals(self, predictions: Sequence[Prediction], position: Position, bar: Bar) -> list[Signal]:
        """Every strategy's signal; a strategy that raises is logged and counted, the others go on."""
        out: list[Signal] = []
        for strategy in self.strategies:
            try:
                signal = strategy.decide(predictions, position, bar, self.risk_state)
            except Exception as exc:
                STRATEGY_ERRORS.inc(strategy=strategy.name)
                log.error("strategy_failed", strategy=strategy.name, bar_ts=bar.ts, error=repr(exc))
                continue
            if signal is not None:
                out.append(signal)
        return out

    # --- signals ----------------------------------------------------------------------------

    def emit(self, signal: Signal, received: float | None) -> int:
        """Commit a signal, then publish it to the sink in the same step; its row id.

        `received` is the perf_clock reading when the trigger bar arrived (None: not bar-driven).
        """
        latency_ms = None if received is None else (self.perf_clock() - received) * 1000.0
        signal_id = self.store.add_signal(signal, latency_ms if latency_ms is not None else -1.0, wall_ms())
        log.info("signal", symbol=signal.symbol, bar_ts=signal.bar_ts, side=signal.side.name,
                 confidence=round(signal.confidence, 4), price=signal.price, strategy=signal.strategy,
                 latency_ms=None if latency_ms is None else round(latency_ms, 3))
        self._publish(signal_id, signal, latency_ms)
        SIGNALS.inc(side=signal.side.name)
        if received is not None:  # committed and queued: what the bar → signal latency means
            BAR_TO_SIGNAL_MS.observe((self.perf_clock() - received) * 1000.0)
        return signal_id

    def _publish(self, signal_id: int, signal: Signal, latency_ms: float | None) -> None:
        event_id = f"signal-{signal_id}"
        payload = signal_payload(signal_id, signal, latency_ms)
        self._last_signal = {"id": event_id, **payload}
        try:
            self.sink.publish("signal", payload, event_id=event_id)
        except Exception as exc:  # stays unpublished in SQLite; republish() sends it later
            log.error("signal_publish_failed", signal_id=signal_id, error=repr(exc))
            return
        self.store.set_signal_event(signal_id, event_id)

    def republish(self) -> int:
        """Publish signals whose event never reached the sink (the event id is stable)."""
        pending = list(reversed(self.store.signals(unpublished=True, limit=10_000)))
        for signal_id, signal in pending:
            self._publish(signal_id, signal, None)
        if pending:
            log.info("signals_republished", count=len(pending))
        return len(pending)

    # --- operator actions -------------------------------------------------------------------

    def swap_predictor(self, name: str, predictor: PredictorLike) -> None:
        """Replace (or add) a model; a reference assignment that applies from the next decision."""
        old = self.predictors.get(name)
        self.predictors[name] = predictor
        self.shadow.review(name, predictor.version, getattr(predictor, "meta", None))
        log.info("predictor_swapped", model=name, old=getattr(old, "version", None), new=predictor.version)

    def pause(self) -> None:
        """Stop emitting signals and orders (predictions go on); persisted across restarts."""
        self.paused = True
        self.store.set_kv(KV_PAUSED, "1")
        log.warning("engine_paused")

    def resume(self) -> None:
        """Emit signals again; also lifts a drawdown halt (the operator has looked)."""
        self.paused = False
        # The drawdown is measured afresh from here: the operator has accepted the loss so far.
        self.risk_state = dataclasses.replace(self.risk_state, halted=False,
                                              peak_equity=self._equity(self.broker.position(self.symbol)))
        self.store.set_kv(KV_PAUSED, "0")
        self._save_risk()
        log.warning("engine_resumed")

    def _save_risk(self) -> None:
        self.store.set_kv(KV_RISK, json.dumps(self.risk_state.to_dict()))

    def _equity(self, position: Position) -> float:
        """Equity marked at the last trigger bar's close (the entry price before the first bar)."""
        price = self._last_bar.close if self._last_bar else position.entry_price
        return risk.equity(position, price, self.risk_params.starting_balance)

    async def flatten(self, reason: str = "operator") -> bool:
        """Close the position now (e.g. Telegram /flat) at the last trigger bar; False when flat."""
        async with self._act_lock:
            bar, position = self._last_bar, self.broker.position(self.symbol)
            if bar is None or position.amount == 0:
                return False
            if self.store.orders(client_order_id=client_order_id(self.symbol, bar.ts, "manual")):
                return False  # already asked on this bar: the same order id, never sent twice
            signal = Signal(self.symbol, bar.ts, Side.FLAT, 1.0, bar.close, "manual", (f"flat: {reason}",))
            self.emit(signal, None)
            await self.broker.submit(OrderIntent(self.symbol, 0.0, bar.close, bar.ts, bar.close_ts, "manual"))
            return True

    def status(self) -> dict[str, Any]:
        """JSON-ready state for /status and Telegram."""
        position = self.broker.position(self.symbol)
        return {
            "symbol": self.symbol, "trigger_timeframe": self.trigger_timeframe, "mode": self.broker.mode,
            "paused": self.paused, "halted": self.risk_state.halted,
            "busy": self._inflight is not None and not self._inflight.done(),
            "decisions": self.decisions, "skipped": self.skipped,
            "last_bar_ts": self._last_bar.ts if self._last_bar else None,
            "models": {n: {"version": p.version, "threshold": p.threshold} for n, p in self.predictors.items()},
            "position": dataclasses.asdict(position),
            "equity": self._equity(position),
            "last_signal": self._last_signal, "broker": self.broker.status(), **self.shadow.status(),
        }
