"""The engine's portfolio cycle (mixed into daemon.trading.engine.Engine): the cycle's
predictions → daemon.trading.rebalance targets → one signal and one order intent per symbol
whose position moves, all in the cycle's one transaction (decision rows, predictions, signals
with their outbox rows, orders, the portfolio state): all of it commits or none of it."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from daemon import log as logging
from daemon.domain import EventSink, Prediction, Signal
from daemon.store import Reason
from daemon.trading.cycle import Job
from daemon.trading.decide import Outcome, portfolio_equity
from daemon.trading.orders import OrderIntent, wall_ms
from daemon.trading.rebalance import Plan, Rebalancer, side_of
from strategies.base import EPSILON

if TYPE_CHECKING:
    from daemon.store import Store
    from daemon.trading.decide import SymbolState
    from daemon.trading.ledgers import ShadowLedgers
    from daemon.trading.orders import Broker
    from daemon.trading.scoring import Shadow

log = logging.get("engine")
PORTFOLIO_STRATEGY = "portfolio"  # the `strategy` of the signals and orders of a portfolio cycle
MODEL_TIMEFRAME = "1m"  # the served models' own trigger: they predict at the close of a 1m bar


def model_bar_ts(job: Job, decision_timeframe: str) -> int:
    """The bar the models predict at: the decision bar itself at 1m; at a longer decision
    timeframe, the newest 1m bar in the job's windows (the one that closes with the decision
    bar, or the one before it when that 1m bar has not arrived yet)."""
    w = job.windows.get(MODEL_TIMEFRAME)
    if decision_timeframe == MODEL_TIMEFRAME or w is None or not len(w):
        return job.bar.ts
    return int(w[-1][0])


class PortfolioCycle:
    """Portfolio decisions for Engine (its attributes are the engine's)."""

    rebalancer: Rebalancer | None
    store: Store
    broker: Broker
    shadow: Shadow
    states: dict[str, SymbolState]
    symbols: tuple[str, ...]
    starting_balance: float
    paused: bool
    sink: EventSink
    predictors: dict[str, Any]
    ledgers: ShadowLedgers | None
    last_commit: float

    def _emit(self, signal: Signal, received: float | None) -> dict[str, Any] | None:
        raise NotImplementedError("provided by Engine")

    def _rebalance(self, jobs: Sequence[Job], answers: Sequence[Sequence[Prediction]]) -> tuple[list[Outcome], Plan]:
        """One portfolio decision for the cycle, inside the caller's transaction."""
        assert self.rebalancer is not None
        now = wall_ms()
        positions = {s: self.broker.position(s) for s in self.symbols}
        closes = {j.bar.symbol: j.bar.close for j in jobs}
        marks = {s: closes.get(s) or st.mark() or positions[s].entry_price for s, st in self.states.items()}
        equity = portfolio_equity(positions, marks, self.starting_balance)
        tradable = {}
        for job, predictions in zip(jobs, answers):
            self.store.add_predictions(job.bar.symbol, predictions, now)
            tradable[job.bar.symbol] = self.shadow.allowed(predictions)
        frozen = frozenset(s for s, st in self.states.items() if st.paused or self.paused)
        was_halted = self.rebalancer.risk_state.halted
        plan = self.rebalancer.plan(
            self.symbols,
            {j.bar.symbol: j.bar for j in jobs},
            {j.bar.symbol: j.windows for j in jobs},
            tradable,
            positions,
            marks,
            equity,
            frozen,
        )
        if plan.halted and not was_halted:
            self._alert_book_halt(plan)
        index = {s: i for i, s in enumerate(plan.symbols)}
        outcomes = []
        for job, predictions in zip(jobs, answers):
            bar, state = job.bar, self.states[job.bar.symbol]
            out = Outcome(state, bar, state.risk_state, predictions=predictions)
            i = index[bar.symbol]
            if abs(plan.amounts[i] - positions[bar.symbol].amount) > EPSILON:
                self._order_for(job, out, plan, i, tradable[bar.symbol])
            reason = Reason.PAUSED if bar.symbol in frozen else Reason.HALTED if plan.halted else Reason.DECIDED
            self.store.mark_decided(bar.symbol, bar.timeframe, bar.ts, len(out.signals), now, reason)
            outcomes.append(out)
        self.rebalancer.save(self.store, plan)
        return outcomes, plan

    def _alert_book_halt(self, plan: Plan) -> None:
        """Tell the operator: the book's drawdown reached the limit; new exposure stops until resume."""
        assert self.rebalancer is not None
        payload = {
            "kind": "drawdown_halt",
            "symbol": "portfolio",
            "bar_ts": plan.bar_ts,
            "equity": plan.equity,
            "peak_equity": self.rebalancer.risk_state.peak_equity,
            "max_drawdown": self.rebalancer.max_drawdown,
            "message": "portfolio drawdown limit reached: no new exposure until resume (exits still trade)",
        }
        log.error("drawdown_halt", **payload)
        self.sink.publish("error", payload, event_id=f"drawdown-halt-portfolio-{plan.bar_ts}")

    def _order_for(self, job: Job, out: Outcome, plan: Plan, i: int, predictions: Sequence[Prediction]) -> None:
        """The signal (target weight) and the order intent that moves one symbol to its target."""
        bar, weight = job.bar, float(plan.target[i])
        why = plan.reasons.get(bar.symbol)
        score = float(plan.scores[i])
        reasons = (
            f"target weight {weight:+.4f} (held {float(plan.current[i]):+.4f})",
            f"score {score:+.4f}" if math.isfinite(score) else "no score: weight kept",
        ) + ((why,) if why else ())
        signal = Signal(
            bar.symbol,
            bar.ts,
            side_of(weight),
            min(1.0, abs(score)) if math.isfinite(score) else 0.0,
            bar.close,
            PORTFOLIO_STRATEGY,
            reasons,
            {p.model: p.version for p in predictions},
        )
        event = self._emit(signal, job.received)
        if event is None:  # this bar was already signalled (a replayed cycle)
            return
        event["target_weight"] = weight
        out.signals.append(event)
        order = self.broker.prepare(
            OrderIntent(bar.symbol, float(plan.amounts[i]), bar.close, bar.ts, bar.close_ts, PORTFOLIO_STRATEGY)
        )
        if order is not None:
            out.orders.append(order)

    def _say_who_trades(self) -> None:
        """At start, in plain words: which models place real orders, which only keep a shadow ledger."""
        shadowed = sorted(n for n in self.predictors if n in self.shadow.reasons)
        if not shadowed:
            return
        trading = sorted(n for n in self.predictors if n not in self.shadow.reasons)
        log.warning(
            "shadow_models",
            models=shadowed,
            trading=trading,
            message=f"{', '.join(shadowed)} failed the gate: {'it places' if len(shadowed) == 1 else 'they place'} "
            f"no real {self.broker.mode} order; {'its' if len(shadowed) == 1 else 'their'} shadow ledger "
            "shows what it would have done (decision_cycle lines, sigd status, /status)"
            + ("" if trading else "; no model trades, so no order is placed"),
        )

    def cycle_line(self, jobs: Sequence[Job], outcomes: Sequence[Outcome], plan: Plan | None) -> dict[str, Any]:
        """The one INFO line of a decision cycle: the bars' close time, the symbols decided, the
        sides (per-symbol strategies) or target weights (portfolio) that moved, the orders, the
        close → decision latency and each shadow ledger's equity."""
        close_ts = max(j.bar.close_ts for j in jobs)
        latency = max((self.last_commit - j.received) * 1000.0 for j in jobs)  # to the cycle's commit
        line: dict[str, Any] = {"close": iso_minute(close_ts), "symbols": len(jobs)}
        if plan is not None:
            line["targets"] = {
                o.bar.symbol: round(float(o.signals[0].get("target_weight", 0.0)), 4) for o in outcomes if o.signals
            }
            line["halted"] = plan.halted
        else:
            line["sides"] = {o.bar.symbol: "/".join(e["side"] for e in o.signals) for o in outcomes if o.signals}
        line["orders"] = sum(len(o.orders) for o in outcomes)
        line["latency_ms"] = round(latency, 1)
        if self.ledgers is not None:
            line["shadow_equity"] = self.ledgers.brief()
        return line


def iso_minute(ts_ms: int) -> str:
    """A bar time for the terminal: 2021-05-19T12:00Z."""
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ts_ms / 1000))
