"""Telegram commands by long polling: /status /positions /signals /pnl /pause /resume /flat.

Deny by default: only messages whose sender is a numeric user id on the allow-list are
obeyed; any other message is ignored and logged with the sender's ids but never its text
(it could hold anything). `/flat` closes positions, so it needs a second step: "/flat" arms
it for `confirm_s` seconds and "/flat confirm" from the same user does it. The getUpdates
offset is stored in SQLite *before* a command runs, so a restart never runs a command twice.
Polling survives every API or network error (backoff, 429 retry_after, 409 conflicts).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from daemon import log as log_mod
from daemon.alerts.telegram import TelegramApi, TelegramError, render
from daemon.domain import Controls
from daemon.metrics import REGISTRY
from daemon.store import Store

log = log_mod.get("sigd.telegram")

OFFSET_KEY = "telegram.update_offset"
HELP = (
    "commands: /status /positions /signals [n] /pnl /pause [SYMBOL] /resume [SYMBOL] /flat [SYMBOL] "
    "(then /flat confirm); without SYMBOL: every symbol"
)

_COMMANDS = REGISTRY.counter("sigd_telegram_commands_total", "Telegram commands, by command and outcome")


def parse_command(text: str) -> tuple[str, list[str]] | None:
    """("/flat", ["confirm"]) from "/flat@sigd_bot confirm"; None when the text is no command."""
    parts = text.strip().split()
    if not parts or not parts[0].startswith("/"):
        return None
    return parts[0].split("@", 1)[0].lower(), parts[1:]


def _render_list(items: list[Mapping[str, Any]], empty: str) -> str:
    return "\n\n".join(render(i) for i in items) if items else empty


class TelegramCommands:
    """Long-polls getUpdates and answers allow-listed users through `Controls`."""

    def __init__(
        self,
        api: TelegramApi,
        controls: Controls,
        allowed_user_ids: frozenset[int],
        store: Store,
        *,
        poll_timeout_s: float = 30.0,
        confirm_s: float = 60.0,
    ) -> None:
        self.api = api
        self.controls = controls
        self.allowed = allowed_user_ids
        self.store = store
        self.poll_timeout_s = poll_timeout_s
        self.confirm_s = confirm_s
        self._flat_armed: dict[int, tuple[float, list[str]]] = {}  # user id -> (monotonic deadline, symbol)
        self._rng = random.Random()
        self._handlers: dict[str, Callable[[int, list[str]], Awaitable[str]]] = {
            "/status": self._status,
            "/positions": self._positions,
            "/signals": self._signals,
            "/pnl": self._pnl,
            "/pause": self._pause,
            "/resume": self._resume,
            "/flat": self._flat,
            "/help": self._help,
            "/start": self._help,
        }

    async def run(self) -> None:
        """Poll until cancelled; errors are logged and waited out, never raised."""
        failures = 0
        while True:
            try:
                updates = await self._poll()
                failures = 0
            except TelegramError as exc:
                failures += 1
                await asyncio.sleep(self._error_delay_s(exc, failures))
                continue
            for update in updates:
                try:
                    await self.handle(update)
                except Exception:  # one bad update must not end command polling
                    log.exception("telegram_update_failed", update_id=update.get("update_id"))

    async def _poll(self) -> list[dict[str, Any]]:
        offset = int(self.store.get_kv(OFFSET_KEY, "0") or 0)
        params = {"offset": offset, "timeout": int(self.poll_timeout_s), "allowed_updates": ["message"]}
        result = await self.api.call("getUpdates", params, timeout_s=self.poll_timeout_s + 10)
        return [u for u in result if isinstance(u, dict)] if isinstance(result, list) else []

    def _error_delay_s(self, exc: TelegramError, failures: int) -> float:
        if exc.retry_after_s is not None:
            delay = exc.retry_after_s
        else:
            delay = min(60.0, 2 ** min(failures, 6)) * self._rng.uniform(0.5, 1.0)
        # 409: another process polls with this token; 401: the token is wrong.
        level = log.error if exc.code in (401, 404, 409) else log.warning
        level("telegram_poll_failed", error=str(exc), code=exc.code, retry_in_s=round(delay, 2))
        return delay

    async def handle(self, update: Mapping[str, Any]) -> None:
        """Act on one update (offset first, so a crash mid-command never repeats it)."""
        update_id = update.get("update_id")
        if isinstance(update_id, int):
            self.store.set_kv(OFFSET_KEY, str(update_id + 1))
        message = update.get("message")
        if not isinstance(message, dict):
            return
        user_id = (message.get("from") or {}).get("id")
        chat_id = (message.get("chat") or {}).get("id")
        if not isinstance(user_id, int) or user_id not in self.allowed or not isinstance(chat_id, int):
            # Never log the text: it is an unknown sender's message.
            log.warning("telegram_message_ignored", user_id=user_id, chat_id=chat_id, reason="not on allow-list")
            _COMMANDS.inc(command="-", outcome="ignored")
            return
        parsed = parse_command(str(message.get("text") or ""))
        if parsed is None:
            return
        name, args = parsed
        reply = await self._run_command(user_id, name, args)
        await self._reply(chat_id, reply)

    async def _run_command(self, user_id: int, name: str, args: list[str]) -> str:
        handler = self._handlers.get(name)
        if handler is None:
            _COMMANDS.inc(command="unknown", outcome="unknown")
            return f"unknown command {name}\n{HELP}"
        log.info("telegram_command", user_id=user_id, command=name)
        try:
            reply = await handler(user_id, args)
        except Exception as exc:  # a failing control answers with an error, polling goes on
            log.exception("telegram_command_failed", command=name)
            _COMMANDS.inc(command=name, outcome="error")
            return log_mod.redact(f"{name} failed: {type(exc).__name__}: {exc}")
        _COMMANDS.inc(command=name, outcome="ok")
        return reply

    async def _reply(self, chat_id: int, text: str) -> None:
        for attempt in range(2):
            try:
                await self.api.send_message(chat_id, text)
                return
            except TelegramError as exc:
                if exc.retry_after_s is None or attempt:
                    log.warning("telegram_reply_failed", error=str(exc), code=exc.code)
                    return
                await asyncio.sleep(exc.retry_after_s)

    # --- commands (each returns the reply text) -------------------------------------------

    async def _help(self, user_id: int, args: list[str]) -> str:
        return HELP

    async def _status(self, user_id: int, args: list[str]) -> str:
        return render(self.controls.status())

    async def _positions(self, user_id: int, args: list[str]) -> str:
        return _render_list(self.controls.positions(), "no open positions")

    async def _signals(self, user_id: int, args: list[str]) -> str:
        n = int(args[0]) if args and args[0].isdigit() else 5
        return _render_list(self.controls.recent_signals(max(1, min(n, 20))), "no signals yet")

    async def _pnl(self, user_id: int, args: list[str]) -> str:
        return render(self.controls.pnl())

    async def _pause(self, user_id: int, args: list[str]) -> str:
        self.controls.pause(*args[:1])  # the one control protocol: a symbol, or all
        return f"paused{' ' + args[0] if args else ''}: no new entries until /resume"

    async def _resume(self, user_id: int, args: list[str]) -> str:
        self.controls.resume(*args[:1])
        return f"resumed{' ' + args[0] if args else ''}"

    async def _flat(self, user_id: int, args: list[str]) -> str:
        now = time.monotonic()
        if args[:1] != ["confirm"]:
            self._flat_armed[user_id] = (now + self.confirm_s, args[:1])
            what = f"the {args[0]} position" if args else "every position"
            return f"this closes {what}: reply /flat confirm within {self.confirm_s:g} s"
        deadline, symbol = self._flat_armed.pop(user_id, (None, []))
        if deadline is None or now > deadline:
            return "no /flat pending (or it expired): send /flat first"
        result = await self.controls.flat(*symbol)
        return "flat: done\n" + render(result)
