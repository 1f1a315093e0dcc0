"""The engine's portfolio cycle (mixed into daemon.trading.engine.Engine): the cycle's
predictions → daemon.trading.rebalance targets → one signal and one order intent per symbol
whose position moves, all in the cycle's one transaction (decision rows, predictions, signals
with their outbox rows, orders, the portfolio state): all of it commits or none of it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from daemon import log as logging
from daemon.domain import EventSink, Prediction, Signal
from daemon.trading.cycle import Job
from daemon.trading.decide import Outcome, portfolio_equity
from daemon.trading.orders import OrderIntent, wall_ms
from daemon.trading.rebalance import Plan, Rebalancer, side_of
from strategies.base import EPSILON

if TYPE_CHECKING:
    from daemon.trading.decide import SymbolState
    from daemon.trading.orders import Broker
    from daemon.trading.scoring import Shadow
    from daemon.store import Store

log = logging.get("engine")
PORTFOLIO_STRATEGY = "portfolio"  # the `strategy` of the signals and orders of a portfolio cycle


class PortfolioCycle:
    """Portfolio decisions for Engine (its attributes are the engine's)."""

    rebalancer: Rebalancer | None
    store: "Store"
    broker: "Broker"
    shadow: "Shadow"
    states: dict[str, "SymbolState"]
    symbols: tuple[str, ...]
    starting_balance: float
    paused: bool
    sink: EventSink

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
        plan = self.rebalancer.plan(self.symbols, {j.bar.symbol: j.bar for j in jobs},
                                    {j.bar.symbol: j.windows for j in jobs}, tradable, positions, marks, equity, frozen)
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
            self.store.mark_decided(bar.symbol, bar.ts, len(out.signals), now)
            outcomes.append(out)
        self.rebalancer.save(self.store, plan)
        return outcomes, plan

    def _alert_book_halt(self, plan: Plan) -> None:
        """Tell the operator: the book's drawdown reached the limit; new exposure stops until resume."""
        assert self.rebalancer is not None
        payload = {"kind": "drawdown_halt", "symbol": "portfolio", "bar_ts": plan.bar_ts, "equity": plan.equity,
                   "peak_equity": self.rebalancer.risk_state.peak_equity, "max_drawdown": self.rebalancer.max_drawdown,
                   "message": "portfolio drawdown limit reached: no new exposure until resume (exits still trade)"}
        log.error("drawdown_halt", **payload)
        self.sink.publish("error", payload, event_id=f"drawdown-halt-portfolio-{plan.bar_ts}")

    def _order_for(self, job: Job, out: Outcome, plan: Plan, i: int, predictions: Sequence[Prediction]) -> None:
        """The signal (target weight) and the order intent that moves one symbol to its target."""
        bar, weight = job.bar, float(plan.target[i])
        why = plan.reasons.get(bar.symbol)
        score = float(plan.scores[i])
        reasons = (f"target weight {weight:+.4f} (held {float(plan.current[i]):+.4f})",
                   f"score {score:+.4f}" if math.isfinite(score) else "no score: weight kept") + ((why,) if why else ())
        signal = Signal(bar.symbol, bar.ts, side_of(weight), min(1.0, abs(score)) if math.isfinite(score) else 0.0,
                        bar.close, PORTFOLIO_STRATEGY, reasons, {p.model: p.version for p in predictions})
        event = self._emit(signal, job.received)
        if event is None:  # this bar was already signalled (a replayed cycle)
            return
        event["target_weight"] = weight
        out.signals.append(event)
        order = self.broker.prepare(OrderIntent(bar.symbol, float(plan.amounts[i]), bar.close, bar.ts, bar.close_ts,
                                                PORTFOLIO_STRATEGY))
        if order is not None:
            out.orders.append(order)

    @staticmethod
    def cycle_line(plan: Plan, outcomes: Sequence[Outcome], latency_ms: float) -> dict[str, Any]:
        """The one INFO line of a portfolio cycle: time, symbols, target weights that moved, latency."""
        moved = {o.bar.symbol: round(float(o.signals[0].get("target_weight", 0.0)), 4) for o in outcomes if o.signals}
        orders = sum(len(o.orders) for o in outcomes)
        return {"bar_ts": plan.bar_ts, "symbols": len(outcomes), "targets": moved, "orders": orders,
                "equity": round(plan.equity, 2), "halted": plan.halted, "latency_ms": round(latency_ms, 1)}

