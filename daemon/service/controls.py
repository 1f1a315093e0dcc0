"""The one control protocol of the running daemon: pause, resume and flat (per symbol or all)
and retrain, behind /pause /resume /flat /retrain, Telegram commands and the dashboard.
Reads are delegated to the read model (daemon/service/readmodel.py); pause persists in
SQLite so a restart keeps it."""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from typing import Any

from daemon import events, log
from daemon.config import Config
from daemon.domain import Bar
from daemon.events import ControlApplied
from daemon.metrics import REGISTRY
from daemon.service.parts import Parts
from daemon.service.readmodel import ReadModel
from daemon.service.watchdog import Freshness

_log = log.get("sigd.controls")
_STREAM_AGE = REGISTRY.gauge("sigd_stream_bar_age_seconds", "wall seconds since each stream's newest bar")


def _applied(action: str, symbol: str | None) -> None:
    """Every channel's action (HTTP, dashboard, Telegram) refreshes the pages at once."""
    events.publish(ControlApplied(action, symbol or "all"))


class UnknownSymbol(ValueError):
    """An action named a symbol the daemon does not trade."""


class DaemonControls:
    """Controls (daemon.domain) over the read model, plus `refresh_metrics` and a systemd STATUS line."""

    def __init__(self, cfg: Config, parts: Parts, freshness: Freshness) -> None:
        self.cfg, self.parts, self.freshness = cfg, parts, freshness
        self.read = ReadModel(cfg, parts, freshness)

    # --- reads (the read model's) ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The /status JSON."""
        return self.read.status()

    def positions(self) -> list[dict[str, Any]]:
        """Open positions with unrealized PnL at the newest close."""
        return self.read.positions()

    def recent_signals(self, n: int) -> list[dict[str, Any]]:
        """The newest `n` signals, newest first."""
        return self.read.recent_signals(n)

    def pnl(self) -> dict[str, Any]:
        """Realized and unrealized PnL, fees and the number of fills."""
        return self.read.pnl()

    def models(self) -> list[dict[str, Any]]:
        """Served models: name, version, threshold, artifact directory."""
        return self.read.models()

    def status_line(self) -> str:
        """One line for systemd's STATUS=."""
        bar = self.freshness.last_bar
        paused = all(self.read.symbol_state(s)["paused"] for s in self.read.symbols())
        last = (
            f"last bar {bar.symbol} {bar.timeframe} {time.strftime('%H:%M:%S', time.gmtime(bar.ts / 1000))}Z"
            if bar
            else "no live bar yet"
        )
        positions = " ".join(f"{p['symbol']} {p['amount']:+g}" for p in self.read.positions()) or "flat"
        return (
            f"{self.parts.mode}{' PAUSED' if paused else ''}; {last}; "
            f"position {positions}; outbox pending {self.read.outbox_totals().get('pending', 0)}"
        )

    def refresh_metrics(self) -> None:
        """Gauges that are read, not pushed: outbox depth, per-stream bar age."""
        self.parts.notifier.outbox.refresh_depth()
        for name, s in self.read.streams().items():
            if s.get("age_s") is not None:
                _STREAM_AGE.set(s["age_s"], stream=name)

    # --- actions --------------------------------------------------------------------------

    def pause(self, symbol: str | None = None) -> dict[str, Any]:
        """Stop new signals and orders of one symbol (None: all); persists across restarts."""
        self._engine_call("pause", symbol)
        _log.warning("pause_requested", symbol=symbol or "all")
        _applied("pause", symbol)
        return {"paused": True, "symbol": symbol or "all"}

    def resume(self, symbol: str | None = None) -> dict[str, Any]:
        """Emit signals and orders again (also lifts a drawdown halt)."""
        self._engine_call("resume", symbol)
        _log.warning("resume_requested", symbol=symbol or "all")
        _applied("resume", symbol)
        return {"paused": False, "symbol": symbol or "all"}

    async def flat(self, symbol: str | None = None) -> Mapping[str, Any]:
        """Close the position(s) now through the broker (a paper order fills at the next price).

        Right after a start no bar of this run has been decided yet: a stored position is then
        closed at the newest buffered trigger bar (warm-up history), not ignored."""
        targets = [self._check(symbol)] if symbol else self.read.symbols()
        before = {s: self.parts.broker.position(s).amount for s in targets}
        newest = {s: b for s in targets if (b := self._newest_trigger_bar(s)) is not None}
        sent = await self.parts.engine.flatten("operator", symbol=symbol, fallback=newest)
        if sent:
            note = "fills at the next price"
        elif not any(before.values()):
            note = "already flat"
        elif not newest:
            note = "refused: no closed bar yet to price the order; try again after the first bar"
        else:
            note = "refused: a close was already sent on this bar; it fills at the next price"
        _log.warning("flat_requested", symbol=symbol or "all", before=before, order_sent=sent, note=note)
        _applied("flat", symbol)
        # One traded symbol: the amount, as single-symbol clients read it; several: per symbol.
        return {
            "symbol": symbol or "all",
            "position_before": before[targets[0]] if len(targets) == 1 else before,
            "order_sent": sent,
            "note": note,
        }

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
        _applied("retrain", None)
        return {"started": True}

    # --- helpers --------------------------------------------------------------------------

    def _check(self, symbol: str) -> str:
        if symbol not in self.read.symbols():
            raise UnknownSymbol(f"unknown symbol {symbol!r}; traded: {', '.join(self.read.symbols())}")
        return symbol

    def _engine_call(self, name: str, symbol: str | None, *args: Any) -> Any:
        """engine.NAME(*args, symbol=...) on an engine keyed by symbol; on a single-symbol
        engine the one symbol is the whole engine."""
        method = getattr(self.parts.engine, name)
        if symbol is not None:
            self._check(symbol)
        if "symbol" in inspect.signature(method).parameters:
            return method(*args, symbol=symbol)
        return method(*args)
