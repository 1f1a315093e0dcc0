"""The one read-only query module: what /status, `sigd status`, Telegram and the dashboard show.

Live state comes from the parts (feed, engine, broker, outbox) and history from SQLite, with
small bounded queries only (this runs on the event loop). Nothing here writes. The result
is plain JSON-ready data; markers carry stable ids ("signal-<row id>", "fill-<client order
id>") so a page that resyncs after a reconnect replaces what it shows instead of duplicating it.
Works with a single-symbol engine and with one keyed by symbol (`status()["symbols"]`).
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from daemon.config import Config
from daemon.domain import CLASS_SCORES, Position
from daemon.service.parts import Parts
from daemon.service.watchdog import Freshness
from daemon.trading.orders import apply_fill

CHART_BARS = 500  # bars per chart snapshot: a trading day of 1m bars is enough to read
EQUITY_POINTS = 2000
MARKERS = 500  # signal and fill markers per chart, the newest of each
LIVE_SCORES_TTL_S = 5.0  # the page's live scores are at most this old
RECENT_ORDERS = 20  # the dashboard's rebalancing orders table
# The live scorer's figures the page and /status's models show (a hit rate only beside its base
# rate, an accuracy only beside always-FLAT and persistence).
LIVE_FIGURES = (
    "scored",
    "calls",
    "horizon_bars",
    "hit_rate",
    "hit_base_rate",
    "accuracy",
    "flat_accuracy",
    "persistence_accuracy",
)


R = TypeVar("R")


def one_read(method: Callable[..., R]) -> Callable[..., R]:
    """The engine's status is asked once per read, however many symbols the read covers (asked
    per symbol, a 50-symbol state cost the engine's loop half a second)."""

    @functools.wraps(method)
    def wrapper(self: ReadModel, *args: Any, **kw: Any) -> R:
        if self._engine_state is not None:  # inside another read: its engine status holds
            return method(self, *args, **kw)
        self._engine_state = self.parts.engine.status()
        try:
            return method(self, *args, **kw)
        finally:
            self._engine_state = None

    return wrapper


class ReadModel:
    """Queries over the running daemon's parts; every method is quick and side-effect free."""

    def __init__(self, cfg: Config, parts: Parts, freshness: Freshness) -> None:
        self.cfg, self.parts, self.freshness = cfg, parts, freshness
        self.started = time.time()
        self._engine_state: dict[str, Any] | None = None
        self._live_cache: tuple[float, dict[str, dict[str, Any]]] | None = None  # (monotonic s, scores)

    # --- the whole daemon -----------------------------------------------------------------

    @one_read
    def status(self) -> dict[str, Any]:
        """Streams and freshness, degraded flags, models, position, last signal, outbox, retrain."""
        streams = self.streams()
        healthy, reason = self.healthy(streams)
        symbols = {s: self.symbol_state(s) for s in self.symbols()}
        shadow = self.parts.engine.shadow.status()  # asked once: the live scores are computed on each ask
        engine = self._engine_state or {}
        return {
            "healthy": healthy,
            "health_reason": reason,
            "mode": self.parts.mode,
            "paused": all(v["paused"] for v in symbols.values()),
            "uptime_s": round(time.time() - self.started, 1),
            "symbol": self.cfg.exchange.symbol,
            "symbols": symbols,
            "streams": streams,
            "newest_bar_age_s": _round(self.freshness.age_s()),
            "models": self.models(shadow),
            "position": self.position(self.cfg.exchange.symbol),
            "positions": self.positions(),  # every symbol's open one ("position": the primary's)
            "last_signal": self.last_signal(),
            "last_decision": self.last_decision(),
            "outbox": self.outbox_totals(),
            "retrain": self.retrain(),
            "shadow": shadow,  # which models do not trade and why; live scores
            # every model's paper book beside always-flat and buy-and-hold; the portfolio's targets
            "ledgers": engine.get("ledgers"),
            "rebalance": engine.get("rebalance"),
        }

    def healthy(self, streams: Mapping[str, Mapping[str, Any]]) -> tuple[bool, str]:
        """(healthy?, why not): fresh bars, no failures in a row, no degraded stream."""
        fresh, why = self.freshness.healthy()
        degraded = sorted(name for name, s in streams.items() if s.get("degraded"))
        return fresh and not degraded, why or (f"degraded: {', '.join(degraded)}" if degraded else "")

    def symbols(self) -> list[str]:
        """The traded symbols, in config order."""
        return list(self.cfg.exchange.symbols)

    def symbol_state(self, symbol: str) -> dict[str, Any]:
        """Paused and halted flags of one symbol (global ones for a single-symbol engine)."""
        state = self._engine_state if self._engine_state is not None else self.parts.engine.status()
        per = (state.get("symbols") or {}).get(symbol, {})
        # A global pause pauses every symbol; a symbol's own pause only itself.
        return {
            "paused": bool(state.get("paused")) or bool(per.get("paused")),
            "halted": bool(per.get("halted", state.get("halted"))),
        }

    def streams(self) -> dict[str, dict[str, Any]]:
        """Per stream: last bar, wall age, degraded flag, reconnects, backfills, drops."""
        now = time.time()
        out = {}
        for name, s in self.parts.feed.status().items():
            wall = s.get("last_bar_wall")
            out[name] = {**s, "age_s": _round(now - wall) if wall else None}
        return out

    def models(self, shadow: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Served models: name, version, threshold, artifact directory, state ("trading", or
        "shadow" with the reason: daemon/trading/scoring.py) and live scores. `shadow`: the
        engine's shadow status when the caller has it already."""
        scores, reasons = self.live_scores(shadow), self.parts.engine.shadow.reasons
        return [
            {
                "name": name,
                "version": p.version,
                "threshold": p.threshold,
                "state": "shadow" if name in reasons else "trading",
                "shadow": reasons.get(name, ""),
                "live": scores.get(name, {k: 0 if k in ("scored", "calls") else None for k in LIVE_FIGURES}),
                "path": str(self.parts.model_dirs.get(name, "")),
            }
            for name, p in sorted(self.parts.predictors.items())
        ]

    def live_scores(self, shadow: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Per model, the live scorer's figures (daemon/trading/scoring.py LiveScorer) at the
        model's own horizon: the hit rate of its LONG/SHORT calls beside their base rate, and its
        accuracy beside always-FLAT and persistence. Not yet measurable figures are None (the
        page gets JSON, which has no NaN)."""
        if shadow is None:
            # The scores move with the scored window (one bar at a time out of ~1440), and computing
            # them costs ~8 ms at 5 symbols and 2 models: the page's updates reuse them for a few
            # seconds instead of paying that on the engine's loop after every bar.
            now = time.monotonic()
            if self._live_cache is not None and now - self._live_cache[0] < LIVE_SCORES_TTL_S:
                return self._live_cache[1]
            status = getattr(self.parts.engine.shadow, "status", None)
            scores = self.live_scores(status() if status is not None else {})
            self._live_cache = (now, scores)
            return scores
        return {model: {k: _finite(st.get(k)) for k in LIVE_FIGURES} for model, st in (shadow.get("live_scores") or {}).items()}

    def outbox_totals(self) -> dict[str, int]:
        """Pending and dead rows summed over channels."""
        totals: dict[str, int] = {}
        for per_status in self.outbox().values():
            for status, n in per_status.items():
                totals[status] = totals.get(status, 0) + n
        return totals

    def outbox(self) -> dict[str, dict[str, int]]:
        """Pending and dead rows per channel."""
        return self.parts.notifier.outbox.depth()

    def retrain(self) -> dict[str, Any]:
        """Whether retraining runs, its schedule and the last outcome."""
        r = self.parts.retrainer
        if r is None:
            return {"enabled": False}
        job = self.parts.scheduler.get_job("retrain") if self.parts.scheduler else None
        return {
            "enabled": True,
            "running": r.running,
            "cron": self.cfg.retrain.cron,
            "next_run": str(job.next_run_time) if job and job.next_run_time else None,
            "last_outcome": json.loads(json.dumps([o.__dict__ for o in r.last])) if r.last else "never",
        }

    def retrain_history(self, n: int = 20) -> list[dict[str, Any]]:
        """The model registry, newest first: version, status (current/previous/retired), scores."""
        rows = self.parts.store.model_rows()[:n]
        return [
            {
                "name": r["name"],
                "version": r["version"],
                "status": r["status"],
                "created_ms": r["created_ms"],
                "metrics": _json(r.get("metrics")),
            }
            for r in rows
        ]

    # --- one symbol -----------------------------------------------------------------------

    def position(self, symbol: str) -> dict[str, Any]:
        """The position with unrealized PnL at the newest close, and its stop/take levels."""
        p = self.parts.broker.position(symbol)
        last = self.parts.last_close(symbol)
        unreal = (last - p.entry_price) * p.amount if p.amount and last else 0.0
        return {
            "symbol": symbol,
            "amount": p.amount,
            "entry_price": p.entry_price,
            "last_price": last,
            "realized_pnl": round(p.realized_pnl, 6),
            "unrealized_pnl": round(unreal, 6),
            "fees": round(p.fees, 6),
            "net_pnl": round(p.realized_pnl - p.fees + unreal, 6),
            **self.levels(symbol, p),
        }

    def levels(self, symbol: str, p: Position) -> dict[str, float | None]:
        """Stop-loss and take-profit prices of an open position (None when flat or unset)."""
        if not p.amount or p.entry_price <= 0:
            return {"stop": None, "take": None}
        strategy = self.cfg.strategy_for(symbol) if hasattr(self.cfg, "strategy_for") else self.cfg.strategy
        sign = 1.0 if p.amount > 0 else -1.0
        stop = p.entry_price * (1 - sign * strategy.stop_loss) if strategy.stop_loss > 0 else None
        take = p.entry_price * (1 + sign * strategy.take_profit) if strategy.take_profit > 0 else None
        return {"stop": stop, "take": take}

    def chart(self, symbol: str, timeframe: str, n: int = CHART_BARS) -> dict[str, Any]:
        """Bars of one stream and the signal and fill markers inside their time range."""
        bars = self.parts.store.latest_bars(symbol, timeframe, n)
        start = bars[0].ts if bars else 0
        return {
            "symbol": symbol,
            "timeframe": timeframe,
            "bars": [
                {"ts": b.ts, "open": b.open, "high": b.high, "low": b.low, "close": b.close, "volume": b.volume} for b in bars
            ],
            "markers": self.markers(symbol, start),
        }

    def markers(self, symbol: str, since_ts: int) -> list[dict[str, Any]]:
        """Signals and fills of a symbol from `since_ts` on, oldest first, with stable ids."""
        store = self.parts.store
        out = [
            {
                "id": f"signal-{m.id}",
                "kind": "signal",
                "ts": m.bar_ts,
                "side": m.side.name,
                "confidence": round(m.confidence, 4),
                "price": m.price,
                "strategy": m.strategy,
            }
            for m in store.signal_marks(symbol, since_ts, MARKERS)
        ]
        out += [
            {
                "id": f"fill-{f.client_order_id}",
                "kind": "fill",
                "ts": f.ts,
                "side": f.side,
                "price": f.price,
                "amount": f.amount,
                "fee": f.fee,
            }
            for f in store.fills(symbol=symbol, since_ts=since_ts, newest=MARKERS)
        ]
        return sorted(out, key=lambda m: (m["ts"], m["id"]))

    @one_read
    def last_decision(self, symbol: str | None = None) -> dict[str, Any] | None:
        """Every model's answer at the newest decided trigger bar, and why it did (not) signal."""
        symbol = symbol or self.cfg.exchange.symbol
        rows = self.parts.store.latest_predictions(symbol)
        if not rows:
            return None
        bar_ts = rows[0].bar_ts
        models = {
            r.model: {
                "version": r.version,
                **_scores(r.scores),
                "side": r.side.name,
                "confidence": round(r.confidence, 4),
                "threshold": r.threshold,
            }
            for r in rows
        }
        return {"symbol": symbol, "bar_ts": bar_ts, "models": models, "why": self._why(symbol, bar_ts, models)}

    def _why(self, symbol: str, bar_ts: int, models: Mapping[str, Mapping[str, Any]]) -> str:
        """A sentence on the decision: the signal's reasons, or why there was none."""
        rows = self.parts.store.signal_rows(symbol=symbol, bar_ts=bar_ts, limit=1)
        if rows:
            signal = rows[0].signal
            reasons = "; ".join(signal.reasons)
            return f"signal {signal.side.name} by {signal.strategy}" + (f": {reasons}" if reasons else "")
        state = self.symbol_state(symbol)
        if state["paused"]:
            return "no signal: paused"
        if state["halted"]:
            return "no signal: drawdown halt (resume to lift it)"
        # A shadowed model's answer never reaches the strategies: say so, or the line reads as if
        # confident answers had been ignored.
        shadow = getattr(getattr(self.parts.engine, "shadow", None), "reasons", None) or {}
        answers = ", ".join(
            f"{m} {a['side']} {a['confidence']:.3f} vs {a['threshold']:.3f}"
            + (" (shadow mode: not traded)" if m in shadow else "")
            for m, a in sorted(models.items())
        )
        held = self.parts.store.get_position(symbol).amount  # committed with the decision's fills
        holding = f"; holding {'LONG' if held > 0 else 'SHORT'} {abs(held):g}" if held else ""
        every = "every model is in shadow mode; " if models and all(m in shadow for m in models) else ""
        return f"no signal: {every}{answers}{holding}"

    def last_signal(self) -> dict[str, Any] | None:
        """The newest signal of any symbol."""
        rows = self.recent_signals(1)
        return dict(rows[0]) if rows else None

    def recent_signals(self, n: int) -> list[dict[str, Any]]:
        """The newest `n` signals, newest first."""
        return [
            {
                "bar_ts": r.signal.bar_ts,
                "strategy": r.signal.strategy,
                "side": r.signal.side.name,
                "confidence": round(r.signal.confidence, 4),
                "price": r.signal.price,
                "latency_ms": _round(r.latency_ms),
                "symbol": r.signal.symbol,
            }
            for r in self.parts.store.signal_rows(limit=n)
        ]

    # --- the portfolio --------------------------------------------------------------------

    def positions(self) -> list[dict[str, Any]]:
        """Open positions with unrealized PnL at the newest close."""
        return [p for p in (self.position(s) for s in self.symbols()) if p["amount"]]

    def pnl(self) -> dict[str, Any]:
        """Realized and unrealized PnL, fees and the number of fills, over all symbols; each
        model's live scores."""
        rows = [self.position(s) for s in self.symbols()]
        return {
            "symbol": self.cfg.exchange.symbol if len(rows) == 1 else "all",
            "realized_pnl": round(sum(r["realized_pnl"] for r in rows), 6),
            "unrealized_pnl": round(sum(r["unrealized_pnl"] for r in rows), 6),
            "fees": round(sum(r["fees"] for r in rows), 6),
            "fills": self.parts.store.count("fills"),
            "models": self.parts.engine.shadow.summary(),
        }  # live scores, one line per model (daily summary)

    @one_read
    def portfolio(self) -> dict[str, Any]:
        """Positions, PnL net of fees, equity curve (per fill, then at the newest trigger bar's
        close, so the curve is never empty and moves with the marks), drawdown, halt flags."""
        start = self.cfg.broker.starting_balance
        curve = self.equity_curve()
        pnl = self.pnl()
        now_equity = start + pnl["realized_pnl"] - pnl["fees"] + pnl["unrealized_pnl"]
        newest = self.newest_bar_ts()
        if newest is not None and (not curve or curve[-1]["ts"] <= newest):
            curve.append({"ts": newest, "equity": round(now_equity, 6)})  # marked at the newest close
        peak = max([start, now_equity] + [p["equity"] for p in curve])
        return {
            "positions": [self.position(s) for s in self.symbols()],
            "pnl": pnl,
            "net_pnl": round(now_equity - start, 6),
            "equity": round(now_equity, 6),
            "starting_balance": start,
            "equity_curve": curve,
            "drawdown": round((peak - now_equity) / peak, 6) if peak > 0 else 0.0,
            "halted": {s: self.symbol_state(s)["halted"] for s in self.symbols()},
        }

    def equity_curve(self) -> list[dict[str, Any]]:
        """Equity (start + realized - fees) after each fill, from the fills table (bar time)."""
        positions: dict[str, Position] = {}
        equity, out = self.cfg.broker.starting_balance, []
        for fill in self.parts.store.fills_by_time(EQUITY_POINTS):
            before = positions.get(fill.symbol, Position(fill.symbol))
            after = positions[fill.symbol] = apply_fill(before, fill)
            equity += (after.realized_pnl - before.realized_pnl) - fill.fee
            out.append({"ts": fill.ts, "equity": round(equity, 6)})
        return out

    def newest_bar_ts(self) -> int | None:
        """Open time of the newest stored trigger-timeframe bar of any traded symbol (bar time,
        like the fills: the demo replays 2021)."""
        tf = self.cfg.engine.trigger_timeframe
        newest = [b[-1].ts for b in (self.parts.store.latest_bars(s, tf, 1) for s in self.symbols()) if b]
        return max(newest) if newest else None

    @one_read
    def book(self) -> dict[str, Any]:
        """The paper books and the portfolio's targets as the engine holds them (no query), and
        the newest orders with the reason their signal gave."""
        state = self._engine_state or {}
        return {"ledgers": state.get("ledgers"), "rebalance": state.get("rebalance"), "orders": self.recent_orders()}

    def recent_orders(self, n: int = RECENT_ORDERS) -> list[dict[str, Any]]:
        """The newest `n` orders, newest first, each with its signal's strategy and reasons (a
        portfolio order: the target weight, the weight held, the score; a flatten has no signal)."""
        return [
            {
                "client_order_id": r.order.client_order_id,
                "symbol": r.order.symbol,
                "side": r.order.side,
                "amount": r.order.amount,
                "price": r.order.price,
                "bar_ts": r.order.bar_ts,
                "status": r.order.status.value,
                "error": r.error,
                "created_ms": r.created_ms,
                "strategy": r.strategy or None,
                "reasons": list(r.reasons),
            }
            for r in self.parts.store.recent_orders(n)
        ]

    # --- the dashboard's snapshot ---------------------------------------------------------

    @one_read
    def health(self) -> dict[str, Any]:
        """Streams, outbox per channel, models and their state, retrain schedule and history."""
        streams = self.streams()  # not the whole status(): this runs after every state-changing event
        return {
            "healthy": self.healthy(streams)[0],
            "streams": streams,
            "outbox": self.outbox(),
            "models": self.models(),
            "retrain": self.retrain(),
            "retrain_history": self.retrain_history(),
        }

    @one_read
    def state(self) -> dict[str, Any]:
        """What the page shows besides the charts: per symbol flags, position, last decision;
        portfolio; the book (shadow ledgers, target vs actual weights, recent orders); health."""
        return {
            "mode": self.parts.mode,
            "symbols": {
                s: {**self.symbol_state(s), "position": self.position(s), "decision": self.last_decision(s)}
                for s in self.symbols()
            },
            "portfolio": self.portfolio(),
            "book": self.book(),
            "health": self.health(),
        }

    @one_read
    def snapshot(self, timeframe: str = "1m") -> dict[str, Any]:
        """The state and every symbol's chart (what a page loads and resyncs from)."""
        state = self.state()
        for symbol, per in state["symbols"].items():
            per["chart"] = self.chart(symbol, timeframe)
        return {**state, "timeframe": timeframe}


def _scores(scores: Mapping[str, float]) -> dict[str, Any]:
    """`probs` [P(SHORT), P(FLAT), P(LONG)] (None where a model has no class scores) and the
    model's other named scores (e.g. a regression's "return")."""
    return {
        "probs": [_round(scores.get(k), 4) for k in CLASS_SCORES],
        "scores": {k: _round(v, 6) for k, v in scores.items() if k not in CLASS_SCORES},
    }


def _json(raw: Any) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def _finite(v: Any) -> Any:
    """Numbers rounded to 4 places, NaN and infinities as None; anything else as it is."""
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    return v


def _round(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(v, nd)
