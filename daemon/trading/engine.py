"""Decisions for N symbols: trigger bars → cycles → one batched forward pass per model →
strategies, risk and portfolio limits per symbol → one SQLite transaction per decision.

`await engine.on_bar(bar)` is called by the feed after the bar is in its ring buffer. On a
trigger bar (a traded symbol, the trigger timeframe) the engine copies that symbol's windows
at once (the rings change with the next bar) and hands them to the cycle assembler
(daemon/trading/cycle.py): the trigger bars that close at the same instant are decided
together, each model running once over all of them on its device's inference thread
(daemon/trading/inference.py), never on the event loop. Back on the loop (the one thread that
owns state), each symbol's decision (daemon/trading/decide.py) writes its predictions, its
signals with their outbox rows, its order intents and its decision row inside one savepoint
of the cycle's transaction: all of it commits or none of it, so no signal exists without its
alert and no order without its signal. Orders are sent (or paper-filled) after the commit.
A decision is made once: a bar already decided (say, before a restart) is not decided again.

State is kept per symbol (position via the broker, risk state, cooldown, halt, pause, last
decision) and persisted in the `kv` table under per-symbol keys; a single-symbol state file
of the first version keeps working (its keys are read for the first symbol).

Time comes from the data: decisions use bar timestamps; only latency, the assembly deadline
and the prewarm timer read the clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from daemon import events
from daemon import log as logging
from daemon.config import Config
from daemon.crashpoints import crash_point
from daemon.domain import (
    PRIMARY_TIMEFRAMES,
    REFERENCE_SYMBOL,
    Bar,
    EventSink,
    Position,
    Prediction,
    PredictorLike,
    Side,
    Signal,
    timeframe_ms,
)
from daemon.health import FAILURES
from daemon.metrics import REGISTRY
from daemon.store import Reason, Store
from daemon.trading.audit import AuditTrail
from daemon.trading.cycle import Cycles, Job
from daemon.trading.decide import (
    KV_PAUSED,
    Book,
    Outcome,
    SymbolState,
    candidates,
    decision_summary,
    make_book,
    signal_payload,
    verdict_for,
)
from daemon.trading.inference import Inference
from daemon.trading.ledgers import ShadowLedgers, publish_signals
from daemon.trading.orders import AlertsBroker, Broker, OrderIntent, client_order_id, wall_ms
from daemon.trading.portfoliocycle import MODEL_TIMEFRAME, PortfolioCycle, model_bar_ts
from daemon.trading.rebalance import Plan, Rebalancer
from daemon.trading.scoring import Shadow
from daemon.trading.wiring import (
    broker_from_config,
    check_model_windows,
    engine_options,
    risk_params_from_config,
    strategies_from_config,
)
from strategies import risk
from strategies.base import Strategy
from strategies.confidence import ConfidenceStrategy
from strategies.risk import PortfolioLimits, RiskParams

log = logging.get("engine")
DECISIONS = REGISTRY.counter("sigd_decisions_total", "Trigger bars decided, by symbol")
SKIPPED = REGISTRY.counter("sigd_decisions_skipped_total", "Trigger bars not decided, by reason")
FAILED = REGISTRY.counter("sigd_decisions_failed_total", "Decisions rolled back by an error, by symbol")
SIGNALS = REGISTRY.counter("sigd_signals_total", "Signals emitted, by symbol and side")
BAR_TO_SIGNAL_MS = REGISTRY.histogram("sigd_bar_to_signal_ms", "Trigger bar received to signal committed, ms")
DECISION_MS = REGISTRY.histogram("sigd_decision_ms", "Trigger bar received to decision committed, ms")
COMMIT_ATTEMPTS = 3  # a decision SQLite refuses is tried this often in all, then recorded Reason.FAILED_COMMIT
__all__ = ["Engine", "broker_from_config", "risk_params_from_config", "strategies_from_config", "signal_payload"]


class WindowSource(Protocol):
    """daemon.market.bars.Buffers: copies of the newest rows of each stream in the window convention."""

    def windows(
        self,
        symbol: str,
        timeframes: Sequence[str],
        reference_symbol: str,
        reference_timeframe: str = "1m",
        sizes: Mapping[str, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """Owned copies of the newest rows per window key, float64 [n, 6]."""
        ...


class Engine(PortfolioCycle):
    """Runs every model on each cycle of closed trigger bars and turns the answers into signals and
    orders: per symbol (strategies → risk → limits), or, with a `rebalancer`, as one portfolio
    (scores → target weights → rebalancing orders; daemon/trading/portfoliocycle.py)."""

    def __init__(
        self,
        *,
        store: Store,
        buffers: WindowSource,
        predictors: Mapping[str, PredictorLike],
        sink: EventSink,
        strategies: Sequence[Strategy] | None = None,
        broker: Broker | None = None,
        risk_params: RiskParams | None = None,
        symbol: str = "ETH/USDT",
        symbols: Sequence[str] | None = None,
        per_symbol: Mapping[str, tuple[Sequence[Strategy], RiskParams]] | None = None,
        portfolio: PortfolioLimits | None = None,
        reference_symbol: str = REFERENCE_SYMBOL,
        timeframes: Sequence[str] = PRIMARY_TIMEFRAMES,
        reference_timeframe: str = "1m",
        trigger_timeframe: str = "1m",
        wait_for_decision: bool = False,
        cycle_deadline_ms: int = 250,
        prewarm_ms: int = 0,
        speed: float = 1.0,
        perf_clock: Callable[[], float] = time.perf_counter,
        rebalancer: Rebalancer | None = None,
        ledgers: ShadowLedgers | None = None,
    ) -> None:
        self.store, self.buffers, self.sink = store, buffers, sink
        self.predictors: dict[str, PredictorLike] = dict(predictors)
        self.broker: Broker = broker if broker is not None else AlertsBroker(store)
        self.symbols = tuple(symbols) if symbols else (symbol,)
        self.symbol = self.symbols[0]  # the first traded symbol (single-symbol callers)
        self.reference_symbol = reference_symbol
        self.timeframes, self.reference_timeframe = tuple(timeframes), reference_timeframe
        self.trigger_timeframe = trigger_timeframe
        bar_ms = timeframe_ms(trigger_timeframe)  # a clear error for an unknown timeframe
        default = (
            list(strategies) if strategies is not None else [ConfidenceStrategy()],
            risk_params or RiskParams(bar_ms=bar_ms),
        )
        self.states = {s: SymbolState(s, *(per_symbol or {}).get(s, default)) for s in self.symbols}
        self.starting_balance = self.states[self.symbol].risk_params.starting_balance
        self.portfolio = portfolio or PortfolioLimits()
        self.rebalancer = rebalancer  # portfolio decisions instead of per-symbol strategies
        self.ledgers = ledgers  # every model's paper book of what it would have done (trading or shadow)
        self.wait_for_decision = wait_for_decision
        self.perf_clock = perf_clock
        self.paused = False  # the global pause (every symbol)
        self.inference = Inference()
        self.cycles = Cycles(self.symbols, cycle_deadline_ms / 1000.0, self._run_cycle, self._skip, wait=wait_for_decision)
        self.prewarm_s = 0.0 if wait_for_decision else prewarm_ms / 1000.0
        self.interval_s = bar_ms / 1000.0 / max(speed, 1e-9)  # wall seconds between trigger closes
        self._prewarm: asyncio.TimerHandle | None = None
        self._prewarm_ts = -1  # the newest trigger bar the pre-warm timer was set from
        self._prewarm_pass_s = 0.0  # how long the last pre-warm pass took
        self._act_lock = asyncio.Lock()
        self.decisions = self.skipped = 0
        self.shadow = Shadow()  # every model trades unless the service sets trade_only_validated
        self.last_commit = 0.0  # perf clock at the newest cycle's commit (benchmarks read it)
        self.audit = AuditTrail(store)  # rows of the trigger bars that were not decided

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        *,
        store: Store,
        buffers: WindowSource,
        predictors: Mapping[str, PredictorLike],
        sink: EventSink,
        exchange: Any = None,
        wait_for_decision: bool = False,
        quotes: Any = None,
    ) -> Engine:
        """An Engine for every symbol of exchange.symbols with the strategies, risk rules, portfolio
        limits and broker the config names (per-symbol [symbols."X/Y"] overrides applied).

        `exchange` (a daemon.market.exchange.ExchangeClient) is needed only for broker.mode = "testnet";
        `quotes` (a QuoteSource) lets paper orders fill at the live bid/ask.
        """
        check_model_windows(cfg, predictors)
        return cls(
            store=store,
            buffers=buffers,
            predictors=predictors,
            sink=sink,
            **engine_options(cfg, store=store, sink=sink, exchange=exchange, quotes=quotes),
            wait_for_decision=wait_for_decision,
        )

    # --- compatibility: the first symbol's strategies, risk rules and state ------------------

    @property
    def risk_state(self) -> risk.RiskState:
        """The first symbol's risk state."""
        return self.states[self.symbol].risk_state

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Restore pause and risk state per symbol, start the broker (reconcile)."""
        self.paused = self.store.get_kv(KV_PAUSED, "0") == "1"
        self.store.adopt_decisions(self.trigger_timeframe)  # rows from before they had a timeframe
        for i, state in enumerate(self.states.values()):
            state.load(self.store, legacy=i == 0)
        if self.rebalancer is not None:
            self.rebalancer.load(self.store)
        if self.ledgers is not None:
            self.ledgers.load(self.store)
        await self.broker.start()
        log.info(
            "engine_started",
            symbols=list(self.symbols),
            trigger=self.trigger_timeframe,
            mode=self.broker.mode,
            models=sorted(self.predictors),
            paused=self.paused,
            halted=sorted(s for s, st in self.states.items() if st.risk_state.halted),
        )
        self._say_who_trades()

    async def close(self) -> None:
        """Decide what is assembled, let the running cycle finish, then stop the inference threads."""
        if self._prewarm is not None:
            self._prewarm.cancel()
        await self.cycles.flush()
        self.audit.flush()  # rows still owed, if SQLite takes them now
        await self.broker.close()
        self.inference.close()

    # --- the bar path -----------------------------------------------------------------------

    async def on_bar(self, bar: Bar) -> None:
        """Called after `bar` is in its ring buffer; decides on trigger bars (see module doc)."""
        received = self.perf_clock()
        state = self.states.get(bar.symbol)
        if state is None:
            return
        await self.broker.on_bar(bar)
        if bar.timeframe != self.trigger_timeframe:
            return
        if bar.ts <= state.last_decided_ts:  # decided before (a restart, a replayed frame)
            self._skip(Job(bar, {}, received), "already_decided")
            return
        self.audit.catch_up(bar, state.last_decided_ts)  # rows for bars that closed while sigd was down
        await self.cycles.add(Job(bar, self._snapshot(bar.symbol), received))

    def _skip(self, job: Job, reason: str) -> None:
        self.skipped += 1
        SKIPPED.inc(reason=reason, symbol=job.bar.symbol)
        log.warning("decision_skipped", symbol=job.bar.symbol, bar_ts=job.bar.ts, reason=reason)
        if reason == Reason.SUPERSEDED:  # an already decided bar has its row
            self.audit.record(job.bar, Reason.SUPERSEDED)

    def _sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for predictor in self.predictors.values():
            for key, n in predictor.required_windows.items():
                sizes[key] = max(sizes.get(key, 0), int(n))
        return sizes

    def _snapshot(self, symbol: str) -> dict[str, np.ndarray]:
        return self.buffers.windows(symbol, self.timeframes, self.reference_symbol, self.reference_timeframe, self._sizes())

    async def _run_cycle(self, jobs: list[Job]) -> None:
        """Inference for the whole cycle, then every symbol's decision; one commit for the cycle."""
        try:
            predictors = dict(self.predictors)  # a swap applies from the next cycle
            for job in jobs:
                await self._settle(job.bar.symbol)
            answers = await self.inference.predict(
                predictors,
                [j.windows for j in jobs],
                [model_bar_ts(j, self.trigger_timeframe) for j in jobs],
                [j.bar.symbol for j in jobs],
            )
            if self.trigger_timeframe != MODEL_TIMEFRAME:  # stored and scored under the decision bar
                answers = [[dataclasses.replace(p, bar_ts=j.bar.ts) for p in a] for j, a in zip(jobs, answers)]
            async with self._act_lock:
                self.audit.flush()  # rows owed since SQLite last refused writes
                if self.rebalancer is not None:
                    outcomes, plan = self._decide_portfolio(jobs, answers)
                else:
                    outcomes, plan = self._commit(jobs, answers), None
                self.last_commit = self.perf_clock()
                await self._after_commit(outcomes, {j.bar.symbol: j.received for j in jobs}, plan)
                if self.ledgers is not None:  # every model's answers, the shadow ones too
                    shadow_signals = self.ledgers.on_cycle(
                        max(j.bar.ts for j in jobs),
                        {j.bar.symbol: j.bar.close for j in jobs},
                        {j.bar.symbol: a for j, a in zip(jobs, answers)},
                    )
                    with self.store.transaction():  # the books and their signals' alerts commit together
                        self.ledgers.save(self.store)
                        publish_signals(self.sink, self.store, shadow_signals, self.shadow.reasons)
                log.info("decision_cycle", **self.cycle_line(jobs, outcomes, plan))
        except Exception as exc:  # one bad cycle never stops the bar path (health counts it)
            log.exception("cycle_failed", symbols=[j.bar.symbol for j in jobs], error=repr(exc))
            FAILURES.failed("decision", repr(exc))
            for job in jobs:  # those decided keep their row (the first stays)
                self.audit.record(job.bar, Reason.FAILED, repr(exc))
        newest = max(j.bar.ts for j in jobs)
        self._schedule_prewarm(newest, min(j.received for j in jobs if j.bar.ts == newest))

    async def _settle(self, symbol: str) -> None:
        settle = getattr(self.broker, "settle", None)  # the testnet broker: unresolved orders first
        if settle is not None:
            await settle(symbol)

    def _commit(self, jobs: Sequence[Job], answers: Sequence[Sequence[Prediction]]) -> list[Outcome]:
        """_decide_all, the decisions SQLite refused tried again (COMMIT_ATTEMPTS in all); one still
        refused is recorded Reason.FAILED_COMMIT, at once or once SQLite takes writes again."""
        pending = list(zip(jobs, answers))
        outcomes: list[Outcome] = []
        error = ""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                done, refused = self._decide_all([j for j, _ in pending], [a for _, a in pending])
            except sqlite3.Error as exc:  # the cycle's COMMIT failed: none of it was written (the store counted it)
                done, refused = [], [(j, a, f"{type(exc).__name__}: {exc}") for j, a in pending]
            outcomes += done
            pending = [(j, a) for j, a, _ in refused]
            if not pending:
                break
            error = refused[-1][2]
            log.warning(
                "decision_commit_retry",
                attempt=attempt,
                of=COMMIT_ATTEMPTS,
                symbols=[j.bar.symbol for j, _ in pending],
                error=error,
            )
        for job, _ in pending:
            self.audit.record(job.bar, Reason.FAILED_COMMIT, error)
        return outcomes

    def _decide_all(
        self, jobs: Sequence[Job], answers: Sequence[Sequence[Prediction]]
    ) -> tuple[list[Outcome], list[tuple[Job, Sequence[Prediction], str]]]:
        """Every symbol's decision in its own savepoint of one transaction (all-or-nothing each):
        (the outcomes, the decisions whose writes SQLite refused, with the error)."""
        book = self._book({j.bar.symbol: j.bar.close for j in jobs})
        outcomes: list[Outcome] = []
        refused: list[tuple[Job, Sequence[Prediction], str]] = []
        with self.store.transaction():
            # Live scoring reads every symbol's matured predictions: once per cycle, not per symbol.
            self.shadow.score()
            for job, predictions in zip(jobs, answers):
                try:
                    with self.store.transaction():
                        outcomes.append(self._decide(job, predictions, book))
                    FAILURES.succeeded("decision")
                    FAILURES.succeeded("write")
                except sqlite3.Error as exc:  # a full disk, a failing trigger: health red at once, retried
                    FAILED.inc(symbol=job.bar.symbol)
                    log.error("decision_failed", symbol=job.bar.symbol, bar_ts=job.bar.ts, error=repr(exc), storage=True)
                    FAILURES.failed("write", f"{type(exc).__name__}: {exc}")
                    refused.append((job, predictions, f"{type(exc).__name__}: {exc}"))
                except Exception as exc:
                    FAILED.inc(symbol=job.bar.symbol)
                    log.exception("decision_failed", symbol=job.bar.symbol, bar_ts=job.bar.ts, error=repr(exc))
                    FAILURES.failed("decision", repr(exc))
                    bar = job.bar  # a bug is not retried: the bar's row says so
                    self.store.mark_decided(bar.symbol, bar.timeframe, bar.ts, 0, wall_ms(), Reason.FAILED, repr(exc))
        return outcomes, refused

    def _decide_portfolio(self, jobs: Sequence[Job], answers: Sequence[Sequence[Prediction]]) -> tuple[list[Outcome], Plan]:
        """The cycle as one portfolio decision, in one transaction (all or nothing)."""
        assert self.rebalancer is not None
        before = self.rebalancer.risk_state
        try:
            with self.store.transaction():
                self.shadow.score()
                outcomes, plan = self._rebalance(jobs, answers)
        except Exception:
            self.rebalancer.risk_state = before  # rolled back: the book's state too
            raise
        FAILURES.succeeded("decision")
        return outcomes, plan

    def _book(self, closes: Mapping[str, float]) -> Book:
        positions = {s: self.broker.position(s) for s in self.symbols}
        marks = {s: closes.get(s, st.mark()) for s, st in self.states.items()}
        return make_book(positions, marks, self.starting_balance, self.portfolio)

    def _decide(self, job: Job, predictions: Sequence[Prediction], book: Book) -> Outcome:
        """One symbol's decision (inside its savepoint): predictions, signals, order intents, decision row."""
        bar, state = job.bar, self.states[job.bar.symbol]
        now = wall_ms()
        self.store.add_predictions(bar.symbol, predictions, now)
        out = Outcome(state, bar, state.risk_state, predictions=predictions)
        if self.paused or state.paused:
            log.info("decision_paused", symbol=bar.symbol, bar_ts=bar.ts)
        else:
            self._act(job, out, book)
        if out.risk_state != state.risk_state:  # most bars change nothing: no write for them
            state.save_risk(self.store, out.risk_state)
        reason = Reason.PAUSED if self.paused or state.paused else Reason.HALTED if out.risk_state.halted else Reason.DECIDED
        self.store.mark_decided(bar.symbol, bar.timeframe, bar.ts, len(out.signals), now, reason)
        return out

    def _act(self, job: Job, out: Outcome, book: Book) -> None:
        """Strategies → risk gate → portfolio gate → signal (stored, published) → order intent."""
        bar, state, params = job.bar, out.state, out.state.risk_params
        position = self.broker.position(bar.symbol)
        out.risk_state = risk.observe(out.risk_state, position, bar, params)
        if out.risk_state.halted and not state.risk_state.halted:
            self._alert_halt(bar, position, out.risk_state, params)
        for signal in candidates(state, self.shadow.allowed(out.predictions), position, bar, out.risk_state):
            verdict = verdict_for(signal, self.broker.position(bar.symbol), out.risk_state, params, book)
            if verdict.signal is None or verdict.target is None:
                continue
            event = self._emit(verdict.signal, job.received)
            if event is None:
                continue
            out.signals.append(event)
            order = self.broker.prepare(
                OrderIntent(bar.symbol, verdict.target, verdict.signal.price, bar.ts, bar.close_ts, verdict.signal.strategy)
            )
            if order is not None:
                out.orders.append(order)
                out.risk_state = risk.after_trade(out.risk_state, bar.ts)
                book.notional[bar.symbol] = abs(verdict.target) * bar.close

    def _alert_halt(self, bar: Bar, position: Position, state: risk.RiskState, params: RiskParams) -> None:
        """Tell the operator: new entries of this symbol stop until they resume."""
        eq = risk.equity(position, bar.close, params.starting_balance)
        payload = {
            "kind": "drawdown_halt",
            "symbol": bar.symbol,
            "bar_ts": bar.ts,
            "equity": eq,
            "peak_equity": state.peak_equity,
            "max_drawdown": params.max_drawdown,
            "message": "drawdown limit reached: no new entries until resume",
        }
        log.error("drawdown_halt", **payload)
        self.sink.publish("error", payload, event_id=f"drawdown-halt-{bar.symbol}-{bar.ts}")

    def _emit(self, signal: Signal, received: float | None) -> dict[str, Any] | None:
        """Store a signal and queue its event (same transaction); the event, or None when the
        strategy already signalled on this bar."""
        latency_ms = None if received is None else (self.perf_clock() - received) * 1000.0
        signal_id = self.store.add_signal(signal, latency_ms if latency_ms is not None else -1.0, wall_ms())
        if signal_id is None:
            return None
        event_id = f"signal-{signal_id}"
        payload = signal_payload(signal_id, signal, latency_ms)
        self.sink.publish("signal", payload, event_id=event_id)
        return {"id": event_id, **payload}

    async def _after_commit(self, outcomes: Sequence[Outcome], received: Mapping[str, float], plan: Plan | None = None) -> None:
        """The committed decisions: state in memory, metrics, then the orders are executed
        (sells first: their proceeds pay for the buys)."""
        if any(out.signals for out in outcomes):
            crash_point("after_signal_commit")
        for out in outcomes:
            state, symbol = out.state, out.bar.symbol
            state.risk_state, state.last_bar, state.last_decided_ts = out.risk_state, out.bar, out.bar.ts
            state.last_decision = decision_summary(out.bar, out.predictions, len(out.signals))
            state.decisions += 1
            self.decisions += 1
            DECISIONS.inc(symbol=symbol)
            events.publish(events.DecisionMade.of(symbol, out.bar.ts, out.predictions, self.paused or state.paused))
            elapsed = (self.perf_clock() - received[symbol]) * 1000.0
            DECISION_MS.observe(elapsed, symbol=symbol)
            for event in out.signals:
                state.last_signal = event
                SIGNALS.inc(symbol=symbol, side=event["side"])
                BAR_TO_SIGNAL_MS.observe(elapsed, symbol=symbol)
                events.publish(events.SignalEmitted.of_payload(event))
                # The cycle's one INFO line says it (decision_cycle); the detail is for debugging.
                log.debug(
                    "signal",
                    symbol=symbol,
                    bar_ts=event["bar_ts"],
                    side=event["side"],
                    confidence=round(event["confidence"], 4),
                    price=event["price"],
                    strategy=event["strategy"],
                    latency_ms=None if event["latency_ms"] is None else round(event["latency_ms"], 3),
                )
        if plan is not None and self.rebalancer is not None:
            self.rebalancer.commit(plan)
        orders = sorted((o for out in outcomes for o in out.orders), key=lambda o: o.side != "sell")
        for order in orders:
            try:
                await self.broker.execute(order)
            except Exception as exc:  # the order row is committed: reconciliation settles it
                log.exception("order_execute_failed", client_order_id=order.client_order_id, error=repr(exc))

    # --- prewarm ------------------------------------------------------------------------------

    def _schedule_prewarm(self, bar_ts: int, arrived: float) -> None:
        """One throwaway forward pass `prewarm_ms` before the next trigger bar is due (see inference.py).

        The next bar is due one trigger interval after this cycle's first bar arrived (the feed's
        delay after a close is about the same each bar), not after the cycle ended: a slow cycle
        would push a short lead past the next close. A late bar's cycle leaves the timer as it is.
        The pass starts early by as long as the last one took, so that it ends `prewarm_ms` before
        the bar is due (at N = 200 a pass takes a few hundred ms) instead of holding the threads
        the bar's cycle needs."""
        if self.prewarm_s <= 0 or self.prewarm_s >= self.interval_s or bar_ts <= self._prewarm_ts:
            return
        self._prewarm_ts = bar_ts
        if self._prewarm is not None:
            self._prewarm.cancel()
        delay = arrived + self.interval_s - self.prewarm_s - self._prewarm_pass_s - self.perf_clock()
        if delay > 0:  # else the next bar is nearly due: a pass now could only delay it
            self._prewarm = asyncio.get_running_loop().call_later(delay, self._fire_prewarm)

    def _fire_prewarm(self) -> None:
        self._prewarm = None
        if self.cycles.idle:  # a bar already in (a cycle assembling or running) goes first
            asyncio.ensure_future(self.prewarm())

    async def prewarm(self) -> float:
        """One throwaway batched forward pass over every symbol's current windows; its ms."""
        windows = [self._snapshot(s) for s in self.symbols]
        ms = await self.inference.prewarm(dict(self.predictors), windows)
        self._prewarm_pass_s = ms / 1000.0
        return ms

    # --- operator actions -------------------------------------------------------------------

    def swap_predictor(self, name: str, predictor: PredictorLike) -> None:
        """Replace (or add) a model; a reference assignment that applies from the next cycle."""
        old = self.predictors.get(name)
        self.predictors[name] = predictor
        self.shadow.review(name, predictor.version, getattr(predictor, "meta", None))
        log.info("predictor_swapped", model=name, old=getattr(old, "version", None), new=predictor.version)

    def _targets(self, symbol: str | None) -> list[SymbolState]:
        if symbol is None:
            return list(self.states.values())
        if symbol not in self.states:
            raise KeyError(f"{symbol!r} is not traded (exchange.symbols: {', '.join(self.symbols)})")
        return [self.states[symbol]]

    def pause(self, symbol: str | None = None) -> None:
        """Stop emitting signals and orders (predictions go on), for one symbol or all; persisted."""
        if symbol is None:
            self.paused = True
            self.store.set_kv(KV_PAUSED, "1")
        else:
            state = self._targets(symbol)[0]
            state.paused = True
            self.store.set_kv(state.paused_key, "1")
        log.warning("engine_paused", symbol=symbol or "all")

    def resume(self, symbol: str | None = None) -> None:
        """Emit signals again (one symbol, or all and the global pause); also lifts a drawdown
        halt: the operator has looked, and the drawdown is measured afresh from here."""
        if symbol is None:
            self.paused = False
            self.store.set_kv(KV_PAUSED, "0")
        with self.store.transaction():
            for state in self._targets(symbol):
                state.paused = False
                self.store.set_kv(state.paused_key, "0")
                position = self.broker.position(state.symbol)
                price = state.mark() or position.entry_price
                eq = risk.equity(position, price, state.risk_params.starting_balance)
                state.risk_state = dataclasses.replace(state.risk_state, halted=False, peak_equity=eq)
                state.save_risk(self.store, state.risk_state)
            if self.rebalancer is not None and symbol is None:  # the book's halt: lifted with all symbols
                self.rebalancer.resume(self._book({}).equity)
                self.store.set_kv("portfolio.risk", json.dumps(self.rebalancer.risk_state.to_dict()))
        log.warning("engine_resumed", symbol=symbol or "all")

    async def flatten(
        self, reason: str = "operator", symbol: str | None = None, fallback: Mapping[str, Bar] | None = None
    ) -> bool:
        """Close positions now (one symbol or all) at their last trigger bar (before this run's
        first decision: at `fallback[symbol]`); False when nothing was sent."""
        async with self._act_lock:
            orders = []
            with self.store.transaction():
                for state in self._targets(symbol):
                    order = self._flatten_one(state, reason, (fallback or {}).get(state.symbol))
                    if order is not None:
                        orders.append(order)
            for order in orders:
                events.publish(events.SignalEmitted.of_payload(self.states[order.symbol].last_signal))
                await self.broker.execute(order)
            return bool(orders)

    def _flatten_one(self, state: SymbolState, reason: str, fallback: Bar | None = None) -> Any:
        bar, position = state.last_bar or fallback, self.broker.position(state.symbol)
        if bar is None or position.amount == 0:
            return None
        if self.store.orders(client_order_id=client_order_id(state.symbol, bar.ts, "manual")):
            return None  # already asked on this bar: the same order id, never sent twice
        signal = Signal(state.symbol, bar.ts, Side.FLAT, 1.0, bar.close, "manual", (f"flat: {reason}",))
        event = self._emit(signal, None)
        if event is None:
            return None
        state.last_signal = event
        return self.broker.prepare(OrderIntent(state.symbol, 0.0, bar.close, bar.ts, bar.close_ts, "manual"))

    def status(self) -> dict[str, Any]:
        """JSON-ready state for /status and Telegram: global fields and `symbols` per symbol.

        The top-level position, equity and last_signal are the first symbol's (single-symbol readers).
        """
        symbols = {s: st.status(self.broker.position(s), self.starting_balance) for s, st in self.states.items()}
        first = symbols[self.symbol]
        return {
            "symbol": self.symbol,
            "trigger_timeframe": self.trigger_timeframe,
            "mode": self.broker.mode,
            "paused": self.paused,
            "halted": any(v["halted"] for v in symbols.values()),
            "busy": self.cycles.busy,
            "decisions": self.decisions,
            "skipped": self.skipped,
            "late": self.cycles.late,
            "models": {n: {"version": p.version, "threshold": p.threshold} for n, p in self.predictors.items()},
            "symbols": symbols,
            "portfolio": dataclasses.asdict(self.portfolio),
            "position": first["position"],
            "equity": first["equity"],
            "last_signal": first["last_signal"],
            "last_bar_ts": first["last_bar_ts"],
            "broker": self.broker.status(),
            **self.shadow.status(),
            "rebalance": self.rebalancer.status() if self.rebalancer is not None else None,
            "ledgers": self.ledgers.status() if self.ledgers is not None else None,
        }
