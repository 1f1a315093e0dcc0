"""What a person may ask of the running daemon: the `Controls` behind /status, Telegram
commands and the bearer-token actions. Reads are quick (memory or one small SQLite query);
pause persists in SQLite so a restart keeps it."""

from __future__ import annotations

import json
import time
from typing import Any, Mapping

from daemon import log
from daemon.config import Config
from daemon.domain import Bar, Side
from daemon.metrics import REGISTRY
from daemon.service.parts import Parts
from daemon.service.watchdog import Freshness

_log = log.get("sigd.controls")
_STREAM_AGE = REGISTRY.gauge("sigd_stream_bar_age_seconds", "wall seconds since each stream's newest bar")


class DaemonControls:
    """Controls (daemon.domain) plus `refresh_metrics` and a one-line systemd STATUS."""

    def __init__(self, cfg: Config, parts: Parts, freshness: Freshness) -> None:
        self.cfg, self.parts, self.freshness = cfg, parts, freshness
        self.started = time.time()

    # --- reads ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Streams and freshness, degraded flags, models, position, last signal, outbox, retrain."""
        streams = self._streams()
        fresh, why = self.freshness.healthy()
        degraded = sorted(name for name, s in streams.items() if s.get("degraded"))
        reason = why or (f"degraded: {', '.join(degraded)}" if degraded else "")
        return {
            "healthy": fresh and not degraded, "health_reason": reason, "mode": self.parts.mode,
            "paused": self.parts.engine.paused, "uptime_s": round(time.time() - self.started, 1),
            "symbol": self.cfg.exchange.symbol, "streams": streams,
            "newest_bar_age_s": _round(self.freshness.age_s()),
            "models": self.models(), "position": self._position(), "last_signal": self._last_signal(),
            "last_decision": self._last_decision(),
            "outbox": self._outbox(), "retrain": self._retrain(),
            "shadow": self.parts.engine.shadow.status(),  # which models do not trade and why; live scores
        }

    def positions(self) -> list[Mapping[str, Any]]:
        """Open positions with unrealized PnL at the newest close."""
        pos = self._position()
        return [pos] if pos["amount"] else []

    def recent_signals(self, n: int) -> list[Mapping[str, Any]]:
        """The newest `n` signals, newest first."""
        rows = self.parts.store.db.execute(
            "SELECT bar_ts, strategy, side, confidence, price, latency_ms FROM signals ORDER BY id DESC LIMIT ?",
            [n]).fetchall()
        return [{"bar_ts": r[0], "strategy": r[1], "side": Side(r[2]).name, "confidence": round(r[3], 4),
                 "price": r[4], "latency_ms": _round(r[5])} for r in rows]

    def pnl(self) -> Mapping[str, Any]:
        """Realized and unrealized PnL, fees, the number of fills and each model's live scores."""
        pos = self._position()
        fills = self.parts.store.count("fills")
        return {"symbol": pos["symbol"], "realized_pnl": pos["realized_pnl"], "unrealized_pnl": pos["unrealized_pnl"],
                "fees": pos["fees"], "fills": fills,
                "models": self.parts.engine.shadow.summary()}  # live scores (the daily summary's too)

    def models(self) -> list[dict[str, Any]]:
        """Served models: name, version, threshold, artifact directory."""
        shadow = self.parts.engine.shadow.reasons
        return [{"name": name, "version": p.version, "threshold": p.threshold,
                 "path": str(self.parts.model_dirs.get(name, "")), "trades": name not in shadow,
                 "shadow": shadow.get(name, "")} for name, p in sorted(self.parts.predictors.items())]

    def status_line(self) -> str:
        """One line for systemd's STATUS=."""
        bar = self.freshness.last_bar
        pos = self._position()
        last = f"last bar {bar.symbol} {bar.timeframe} {time.strftime('%H:%M:%S', time.gmtime(bar.ts / 1000))}Z" \
            if bar else "no live bar yet"
        depth = self._outbox()
        return (f"{self.parts.mode}{' PAUSED' if self.parts.engine.paused else ''}; {last}; "
                f"position {pos['amount']:+g}; outbox pending {depth.get('pending', 0)}")

    def refresh_metrics(self) -> None:
        """Gauges that are read, not pushed: outbox depth, per-stream bar age."""
        self.parts.notifier.outbox.refresh_depth()
        for name, s in self._streams().items():
            if s.get("age_s") is not None:
                _STREAM_AGE.set(s["age_s"], stream=name)

    # --- actions --------------------------------------------------------------------------

    def pause(self) -> None:
        """Stop emitting signals and orders; the engine persists it across restarts."""
        self.parts.engine.pause()

    def resume(self) -> None:
        """Emit signals and orders again."""
        self.parts.engine.resume()

    async def flat(self) -> Mapping[str, Any]:
        """Close the position now through the broker (a paper order fills at the next price).

        Right after a start no bar of this run has been decided yet: the stored position is
        then closed at the newest buffered trigger bar (warm-up history), not ignored."""
        before = self._position()["amount"]
        newest = {s: b for s in self.cfg.exchange.symbols if (b := self._newest_trigger_bar(s)) is not None}
        bar = newest.get(self.cfg.exchange.symbol)
        sent = await self.parts.engine.flatten("operator", fallback=newest)
        if sent:
            note = "fills at the next price"
        elif not before:
            note = "already flat"
        elif bar is None:
            note = "refused: no closed bar yet to price the order; try again after the first bar"
        else:
            note = "refused: a close was already sent on this bar; it fills at the next price"
        _log.warning("flat_requested", before=before, order_sent=sent, note=note)
        return {"position_before": before, "order_sent": sent, "note": note}

    def _newest_trigger_bar(self, symbol: str) -> Bar | None:
        timeframe = self.cfg.engine.trigger_timeframe
        try:
            rows = self.parts.buffers.ring(symbol, timeframe).window(1)
        except KeyError:
            return None
        if not len(rows):
            return None
        ts, o, h, low, c, v = (float(x) for x in rows[-1])
        return Bar(symbol, timeframe, int(ts), o, h, low, c, v)

    async def retrain(self) -> Mapping[str, Any]:
        """Run the retrain job now (in the background); its outcome arrives as an alert."""
        if self.parts.retrainer is None:
            return {"started": False, "reason": "retraining is disabled"}
        if self.parts.retrainer.running:
            return {"started": False, "reason": "a retrain is already running"}
        self.parts.spawn_retrain()
        return {"started": True}

    # --- helpers --------------------------------------------------------------------------

    def _streams(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        out = {}
        for name, s in self.parts.feed.status().items():
            wall = s.get("last_bar_wall")
            out[name] = {**s, "age_s": _round(now - wall) if wall else None}
        return out

    def _position(self) -> dict[str, Any]:
        symbol = self.cfg.exchange.symbol
        p = self.parts.broker.position(symbol)
        last = self.parts.last_close(symbol)
        unreal = (last - p.entry_price) * p.amount if p.amount and last else 0.0
        return {"symbol": symbol, "amount": p.amount, "entry_price": p.entry_price, "last_price": last,
                "realized_pnl": round(p.realized_pnl, 6), "unrealized_pnl": round(unreal, 6), "fees": round(p.fees, 6)}

    def _last_decision(self) -> dict[str, Any] | None:
        """Both models' answers at the newest decided trigger bar (a decision need not signal)."""
        rows = self.parts.store.db.execute(
            "SELECT bar_ts, model, side, confidence, threshold FROM predictions "
            "WHERE bar_ts = (SELECT MAX(bar_ts) FROM predictions) ORDER BY model").fetchall()
        if not rows:
            return None
        return {"bar_ts": rows[0][0], "models": {r[1]: {"side": Side(r[2]).name, "confidence": round(r[3], 4),
                                                       "threshold": r[4]} for r in rows}}

    def _last_signal(self) -> dict[str, Any] | None:
        rows = self.recent_signals(1)
        return dict(rows[0]) if rows else None

    def _outbox(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for per_status in self.parts.notifier.outbox.depth().values():
            for status, n in per_status.items():
                totals[status] = totals.get(status, 0) + n
        return totals

    def _retrain(self) -> dict[str, Any]:
        r = self.parts.retrainer
        if r is None:
            return {"enabled": False}
        job = self.parts.scheduler.get_job("retrain") if self.parts.scheduler else None
        return {"enabled": True, "running": r.running, "cron": self.cfg.retrain.cron,
                "next_run": str(job.next_run_time) if job and job.next_run_time else None,
                "last_outcome": json.loads(json.dumps([o.__dict__ for o in r.last])) if r.last else "never"}


def _round(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(v, nd)
