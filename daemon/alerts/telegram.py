"""Telegram Bot API: the alert channel (sendMessage) and the HTTP client it shares with the commands.

The bot token is part of every request URL (`<base>/bot<TOKEN>/<method>`), so nothing that
may carry the URL leaves this module unscrubbed: client exceptions are rewrapped with the
token replaced (and raised `from None`, so no chained traceback holds the original), and
the token is registered with the log redaction. Messages are plain text (no parse mode, so
no escaping pitfalls), cut to Telegram's 4096 characters.
"""

from __future__ import annotations

import datetime as dt
import json
import string
from collections.abc import Mapping
from typing import Any

import aiohttp

from daemon import log as log_mod
from daemon.alerts.outbox import DeliveryError, Event, Outcome, is_permanent

MAX_TEXT = 4096
MASK = log_mod.MASK


class TelegramError(Exception):
    """A failed Bot API call; `code` is the API's error_code (None for a network failure)."""

    def __init__(self, message: str, code: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s = retry_after_s


class TelegramApi:
    """Minimal Bot API client: `await call(method, params)` returns the `result` field."""

    def __init__(self, base_url: str, token: str, timeout_s: float = 10.0) -> None:
        log_mod.register_secret(token)
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def scrub(self, text: str) -> str:
        """`text` with the token (and every other registered secret) masked."""
        return log_mod.redact(text.replace(self._token, MASK))

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(self, method: str, params: Mapping[str, Any], timeout_s: float | None = None) -> Any:
        """POST one API method with a JSON body; TelegramError (token-free) on any failure."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=timeout_s or self._timeout_s)
        url = f"{self._base}/bot{self._token}/{method}"
        try:
            async with self._session.post(url, json=dict(params), timeout=timeout) as resp:
                status, raw = resp.status, await resp.read()
        except (aiohttp.ClientError, ValueError) as exc:
            raise TelegramError(self.scrub(f"telegram {method}: {type(exc).__name__}: {exc}")) from None
        except TimeoutError:
            raise TelegramError(f"telegram {method}: timed out") from None
        return self._result(method, status, raw)

    def _result(self, method: str, status: int, raw: bytes) -> Any:
        try:
            body = json.loads(raw)
        except ValueError:
            raise TelegramError(f"telegram {method}: HTTP {status}, not JSON", code=status) from None
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        body = body if isinstance(body, dict) else {}
        params = body.get("parameters") or {}
        retry_after = params.get("retry_after") if isinstance(params, dict) else None
        code = body.get("error_code") if isinstance(body.get("error_code"), int) else status
        description = self.scrub(str(body.get("description", "")))[:200]
        raise TelegramError(
            f"telegram {method}: {code} {description}",
            code=code,
            retry_after_s=float(retry_after) if isinstance(retry_after, (int, float)) else None,
        )

    async def send_message(self, chat_id: int, text: str) -> Any:
        """sendMessage with plain text, cut to the API's limit."""
        if len(text) > MAX_TEXT:
            text = text[: MAX_TEXT - 1] + "…"
        return await self.call("sendMessage", {"chat_id": chat_id, "text": text, "link_preview_options": {"is_disabled": True}})


class TelegramChannel:
    """Outbox channel: each event becomes one message in the configured chat."""

    def __init__(self, api: TelegramApi, chat_id: int, types: frozenset[str] = frozenset(), shadow: bool = False) -> None:
        self.name = "telegram"
        self.types = types
        self.shadow = shadow  # also send shadow-ledger signals (their text starts with "SHADOW")
        self.api = api
        self.chat_id = chat_id

    async def close(self) -> None:
        """Close the API session."""
        await self.api.close()

    async def deliver(self, event: Event) -> Outcome:
        """sendMessage; 429 waits out retry_after, other 4xx are permanent, the rest retried."""
        try:
            await self.api.send_message(self.chat_id, format_event(event))
        except TelegramError as exc:
            if exc.code is None:
                raise DeliveryError(str(exc)) from None
            raise DeliveryError(str(exc), permanent=is_permanent(exc.code), retry_after_s=exc.retry_after_s) from None
        return Outcome.SENT


# --- message text -------------------------------------------------------------------------

# First line per event type; the fields it uses are not repeated below it.
HEADLINES: dict[str, str] = {
    "signal": "{side} {symbol} @ {price} (confidence {confidence})",
    "order": "order {status}: {side} {amount} {symbol} @ {price}",
    "fill": "fill: {side} {amount} {symbol} @ {price}",
    "error": "error: {message}",
    "retrain": "retrain {outcome}: {model}",
    "daily_summary": "daily summary {date}",
    "gate": "gate: {model} {verdict}: {why}",
    "shadow_signal": "{model} would go {side} {symbol} @ {price} (paper weight {prev_weight} -> {weight})",
}
SHADOW_PREFIX = "SHADOW "  # a shadow-ledger signal: what a model would have done, not an order
BASELINES = ("always_flat", "buy_and_hold")  # the baseline books of daemon/trading/ledgers.py, listed last


def _value(key: str, v: Any) -> str:
    if key.endswith("_ts") and isinstance(v, int) and v > 10**11:
        return dt.datetime.fromtimestamp(v / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, separators=(", ", ": "))
    return str(v)


def render(fields: Mapping[str, Any]) -> str:
    """Fields as "key: value" lines (timestamps in UTC, floats to 6 significant digits)."""
    return "\n".join(f"{k}: {_value(k, v)}" for k, v in fields.items())


def ledger_lines(books: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per shadow ledger, models first, then the baselines: equity, PnL, drawdown."""
    order = sorted(books, key=lambda n: (n in BASELINES, BASELINES.index(n) if n in BASELINES else 0, n))
    return [
        f"  {n}: equity {books[n]['equity']:.2f}, pnl {books[n]['pnl']:+.2f}, drawdown "
        f"{books[n]['drawdown']:.2%} (max {books[n]['max_drawdown']:.2%})"
        for n in order
    ]


def _summary_sections(payload: dict[str, Any]) -> list[str]:
    """The daily summary's per-model lines and shadow ledgers, taken out of `payload`."""
    lines = []
    models = payload.pop("models", None)
    if isinstance(models, Mapping) and models:
        lines += ["models (live scores):", *(f"  {m}: {text}" for m, text in sorted(models.items()))]
    elif models is not None:
        payload["models"] = models
    books = payload.pop("ledgers", None)
    if isinstance(books, Mapping) and books:
        lines += ["shadow ledgers (paper; what each model would have done):", *ledger_lines(books)]
    return lines


def format_event(event: Event) -> str:
    """The message text for an event: a headline for known types, then the other fields; a
    shadow signal starts with "SHADOW"; a daily summary lists models and shadow ledgers."""
    payload = dict(event.payload)
    shadow = payload.pop("shadow", None) is True
    sections = _summary_sections(payload) if event.type == "daily_summary" else []
    template = HEADLINES.get(event.type, event.type)
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    headline = template.format_map({k: _value(k, payload.get(k, "?")) for k in used})
    rest = {k: v for k, v in payload.items() if k not in used}
    lines = ([render(rest)] if rest else []) + sections
    return (SHADOW_PREFIX if shadow else "") + "sigd " + headline + "".join("\n" + line for line in lines)
