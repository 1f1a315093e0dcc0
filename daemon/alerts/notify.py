"""Alerts: the `Notifier` builds the outbox and its channels from `[alerts]` and runs them.

    notifier = Notifier(cfg.alerts, store)          # reads secrets; ConfigError if one is missing
    engine = Engine(..., sink=notifier)              # publish() -> the durable outbox
    await notifier.start(controls)                   # sessions, websocket server
    tg.create_task(notifier.run())                   # senders, Telegram commands, daily summary
    ...
    await notifier.stop(deadline_s=5)                # drain what is due, close everything

Channels: `log` (one structlog line per event), `webhook:<name>` (signed JSON POST),
`telegram` (messages; commands through `Controls`), and `signal_ws` (a live JSON stream fed
from the event bus once the outbox has committed an event; it keeps no outbox rows). Event
types the daemon publishes: "signal", "order", "fill", "error", "retrain", "daily_summary", "gate";
any other type is delivered too (a generic message). Each channel takes the types in its
`types` list (empty = all). "shadow_signal" (a model's shadow ledger changed side, what it
would have done; daemon/trading/ledgers.py) goes only to channels with `shadow = true`, marked
`"shadow": true` (Telegram: the text starts with "SHADOW"); the log channel never takes it.

For publishers: pass a deterministic `event_id` where the event has a natural key (as the
engine does: f"signal-{row id}", f"fill-{client_order_id}"), so that re-publishing after a
crash adds nothing twice; payload values are JSON data, enums go out by name (Side.LONG ->
"LONG"), dataclasses as objects; the keys id, type and created_ms are reserved.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from daemon import log as log_mod
from daemon.alerts.outbox import Channel, Event, Outbox, Outcome, RetryPolicy
from daemon.alerts.signalws import SignalWebsocket
from daemon.alerts.telegram import TelegramApi, TelegramChannel
from daemon.alerts.telegram_bot import TelegramCommands
from daemon.alerts.webhook import WebhookChannel
from daemon.config import AlertsConfig, secret
from daemon.domain import Controls
from daemon.store import Store

log = log_mod.get("sigd.alerts")


class LogChannel:
    """One structlog line per event (the payload's fields as key-values)."""

    def __init__(self, types: frozenset[str] = frozenset()) -> None:
        self.name = "log"
        self.types = types

    async def deliver(self, event: Event) -> Outcome:
        """Log the event; never fails."""
        fields = {f"data_{k}" if k in ("event", "level") else k: v for k, v in event.payload.items()}
        log.info("alert", event_id=event.id, type=event.type, **fields)
        return Outcome.SENT


def build_channels(cfg: AlertsConfig) -> list[Channel]:
    """The enabled channels; secrets are read from the environment here (ConfigError when missing)."""
    channels: list[Channel] = []
    if cfg.log:
        channels.append(LogChannel())
    for wh in cfg.webhooks:
        key = secret(wh.secret_env, f"alerts.webhooks[{wh.name}].secret_env")
        log_mod.register_secret(key)
        channels.append(WebhookChannel(wh.name, wh.url, key, frozenset(wh.types), cfg.delivery_timeout_s, shadow=wh.shadow))
    tg = cfg.telegram
    if tg.enabled:
        api = TelegramApi(tg.base_url, secret(tg.token_env, "alerts.telegram.token_env"), cfg.delivery_timeout_s)
        channels.append(TelegramChannel(api, tg.chat_id, frozenset(tg.types), shadow=tg.shadow))
    return channels


LEDGER_FIELDS = ("equity", "pnl", "return", "drawdown", "max_drawdown", "turnover", "fills")


def summary_ledgers(status: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per shadow ledger (/status "ledgers": models and baselines), the daily summary's figures."""
    books = (status or {}).get("books") or {}
    return {name: {k: book[k] for k in LEDGER_FIELDS if k in book} for name, book in books.items()}


def seconds_until(hhmm: str, now: dt.datetime) -> float:
    """Seconds from `now` (UTC) to the next HH:MM UTC."""
    hour, minute = (int(p) for p in hhmm.split(":"))
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at <= now:
        at += dt.timedelta(days=1)
    return (at - now).total_seconds()


class Notifier:
    """The alert service: an EventSink over the outbox, plus the channels' lifecycles."""

    def __init__(self, cfg: AlertsConfig, store: Store, *, seed: int | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.channels = build_channels(cfg)
        ws = cfg.signal_ws  # a live bus subscriber, not an outbox channel (daemon/alerts/signalws.py)
        self.signal_ws = SignalWebsocket(ws.host, ws.port, frozenset(ws.types), ws.shadow) if ws.enabled else None
        policy = RetryPolicy(
            max_attempts=cfg.max_attempts,
            max_age_s=cfg.max_age_s,
            backoff_base_s=cfg.backoff_base_s,
            backoff_max_s=cfg.backoff_max_s,
            delivery_timeout_s=cfg.delivery_timeout_s,
            keep_days=cfg.keep_days,
        )
        self.outbox = Outbox(store, self.channels, policy, seed=seed)
        self.commands: TelegramCommands | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._controls: Controls | None = None

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        """EventSink: durably queue one event for every channel; return its stable id."""
        return self.outbox.publish(type, payload, event_id)

    def channel(self, name: str) -> Any:
        """A channel by name (e.g. "signal_ws", "telegram", "webhook:ops")."""
        if name == "signal_ws" and self.signal_ws is not None:
            return self.signal_ws
        return self.outbox.channels[name]

    async def start(self, controls: Controls | None = None) -> None:
        """Open sessions and bind the websocket; wire Telegram commands to `controls`."""
        self._controls = controls
        for ch in [*self.channels, *([self.signal_ws] if self.signal_ws else [])]:
            start = getattr(ch, "start", None)
            if start is not None:
                await start()
        tg = self.cfg.telegram
        telegram = next((c for c in self.channels if isinstance(c, TelegramChannel)), None)
        if telegram is not None and controls is not None and tg.allowed_user_ids:
            self.commands = TelegramCommands(
                telegram.api,
                controls,
                frozenset(tg.allowed_user_ids),
                self.store,
                poll_timeout_s=tg.poll_timeout_s,
                confirm_s=tg.confirm_s,
            )
        elif telegram is not None:
            log.info("telegram_commands_off", reason="no allowed_user_ids" if controls else "no controls")
        log.info("alerts_started", channels=[c.name for c in self.channels], depth=self.outbox.depth())

    async def run(self) -> None:
        """Senders, Telegram polling and the daily summary, until stop() or cancellation."""
        self._tasks = [asyncio.create_task(self.outbox.run(), name="alerts:outbox")]
        if self.commands is not None:
            self._tasks.append(asyncio.create_task(self.commands.run(), name="alerts:telegram"))
        if self.cfg.daily_summary_utc and self._controls is not None:
            self._tasks.append(asyncio.create_task(self._daily_summaries(), name="alerts:summary"))
        try:
            await self._tasks[0]
        finally:
            for t in self._tasks[1:]:
                t.cancel()
            await asyncio.gather(*self._tasks[1:], return_exceptions=True)

    async def stop(self, deadline_s: float) -> bool:
        """Drain what is due within the deadline, stop polling, close channels. True when drained."""
        for t in self._tasks[1:]:
            t.cancel()
        drained = await self.outbox.drain(deadline_s)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ch in [*self.channels, *([self.signal_ws] if self.signal_ws else [])]:
            close = getattr(ch, "close", None)
            if close is not None:
                await close()
        return drained

    def status(self) -> dict[str, Any]:
        """Outbox depth per channel and the websocket's client count, for /status."""
        ws = self.signal_ws
        return {
            "outbox": self.outbox.depth(),
            "signal_ws_clients": ws.clients if ws else None,
            "telegram_commands": self.commands is not None,
        }

    def publish_daily_summary(self, day: dt.date) -> str:
        """Queue the summary labelled `day` (id "daily_summary:<date>": a restart never repeats it)."""
        if self._controls is None:
            raise RuntimeError("a daily summary needs Controls: call start(controls) first")
        payload = {"date": day.isoformat(), **self._controls.pnl()}
        books = summary_ledgers(self._controls.status().get("ledgers"))
        if books:  # each model's shadow ledger beside the always-flat and buy-and-hold ones
            payload["ledgers"] = books
        return self.publish("daily_summary", payload, event_id=f"daily_summary:{day.isoformat()}")

    async def _daily_summaries(self) -> None:
        while True:
            await asyncio.sleep(seconds_until(self.cfg.daily_summary_utc, dt.datetime.now(dt.UTC)))
            # Labelled with the day the 24 hours end in (at 00:00 UTC: the day before).
            try:
                self.publish_daily_summary((dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).date())
            except Exception:  # a failing summary must not end the alert service
                log.exception("daily_summary_failed")
            await asyncio.sleep(1)
