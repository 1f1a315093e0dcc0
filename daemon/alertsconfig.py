"""Config sections of alerts: [alerts] with its [[alerts.webhooks]], [alerts.telegram] and
[alerts.signal_ws] tables.

Part of `daemon.config` (which re-exports every class here and loads the file); split out by
concept to keep each module readable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.typedtoml import require as _require

SHADOW_SIGNAL = "shadow_signal"  # the event type of a shadow ledger's signal (daemon/events.py ShadowSignal)


def _check_shadow(key: str, types: tuple[str, ...]) -> None:
    # Shadow signals are taken through `shadow = true` alone, so one switch means one thing.
    _require(
        SHADOW_SIGNAL not in types,
        f"{key}.types",
        f"{SHADOW_SIGNAL!r} is not a type to list: set {key}.shadow = true to receive shadow signals",
    )


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is 127.0.0.1, localhost or ::1."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class WebhookConfig:
    """One outgoing webhook: JSON POST per event, signed with HMAC-SHA256 of the body."""

    name: str = "webhook"
    url: str = ""
    secret_env: str = "SIGD_WEBHOOK_SECRET"
    types: tuple[str, ...] = ()  # event types sent; () = every type
    shadow: bool = False  # also send shadow-ledger signals (marked "shadow": true), whatever `types` says

    def check(self, key: str) -> None:
        _check_shadow(key, self.types)
        _require(self.name.replace("_", "").replace("-", "").isalnum(), f"{key}.name", "letters, digits, - and _ only")
        _require(self.url.startswith(("http://", "https://")), f"{key}.url", f"expected an http(s) URL, got {self.url!r}")
        _require(bool(self.secret_env), f"{key}.secret_env", "must name an environment variable")


@dataclass(frozen=True)
class TelegramConfig:
    """Telegram Bot API: alert messages to one chat, commands from allow-listed user ids."""

    enabled: bool = False
    base_url: str = "https://api.telegram.org"
    token_env: str = "SIGD_TELEGRAM_TOKEN"
    chat_id: int = 0  # where alerts go (a private chat id equals the user id)
    allowed_user_ids: tuple[int, ...] = ()  # numeric ids whose commands are obeyed; () = no commands
    types: tuple[str, ...] = ("signal", "fill", "error", "daily_summary", "retrain", "gate")
    poll_timeout_s: float = 30.0  # getUpdates long-poll timeout
    confirm_s: float = 60.0  # window for "/flat confirm"
    shadow: bool = False  # also send shadow-ledger signals (text starts with "SHADOW"), whatever `types` says

    def check(self, key: str) -> None:
        _check_shadow(key, self.types)
        _require(
            self.base_url.startswith("https://") or is_loopback_url(self.base_url),
            f"{key}.base_url",
            "must be https:// (the bot token travels in the URL), or http:// on loopback",
        )
        _require(not self.enabled or self.chat_id != 0, f"{key}.chat_id", "must be set when telegram is enabled")
        _require(all(u > 0 for u in self.allowed_user_ids), f"{key}.allowed_user_ids", "user ids are positive integers")
        _require(0 < self.poll_timeout_s <= 50, f"{key}.poll_timeout_s", "must be within (0, 50]")
        _require(self.confirm_s > 0, f"{key}.confirm_s", "must be > 0")


@dataclass(frozen=True)
class SignalWsConfig:
    """The local signal websocket: live JSON stream of events to loopback consumers."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8765  # 0 = an ephemeral port
    types: tuple[str, ...] = ("signal",)
    shadow: bool = False  # also stream shadow-ledger signals (marked "shadow": true), whatever `types` says

    def check(self, key: str) -> None:
        _check_shadow(key, self.types)
        _require(0 <= self.port <= 65535, f"{key}.port", "must be within 0..65535")
        _require(self.host in ("127.0.0.1", "localhost", "::1"), f"{key}.host", "the signal websocket binds loopback only")


@dataclass(frozen=True)
class AlertsConfig:
    """The durable alert outbox and its channels (log, webhooks, Telegram, signal websocket)."""

    log: bool = True  # one structlog line per event
    webhooks: tuple[WebhookConfig, ...] = ()
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    signal_ws: SignalWsConfig = field(default_factory=SignalWsConfig)
    max_attempts: int = 100  # failed attempts before a row is dead-lettered
    max_age_s: float = 86_400.0  # a row still failing this long after it was queued is dead-lettered
    backoff_base_s: float = 1.0  # first retry delay; doubles per attempt, with jitter
    backoff_max_s: float = 300.0
    delivery_timeout_s: float = 10.0
    keep_days: float = 7.0  # finished rows (sent, skipped, dead) are purged after this long
    daily_summary_utc: str = "00:00"  # HH:MM UTC of the daily summary event; "" = none

    def check(self, key: str) -> None:
        names = [w.name for w in self.webhooks]
        _require(len(names) == len(set(names)), f"{key}.webhooks", "webhook names must be unique")
        _require(self.max_attempts >= 1, f"{key}.max_attempts", "must be >= 1")
        _require(self.max_age_s > 0, f"{key}.max_age_s", "must be > 0")
        _require(0 < self.backoff_base_s <= self.backoff_max_s, f"{key}.backoff_base_s", "must be > 0 and <= backoff_max_s")
        _require(self.delivery_timeout_s > 0, f"{key}.delivery_timeout_s", "must be > 0")
        _require(self.keep_days > 0, f"{key}.keep_days", "must be > 0")
        hhmm = self.daily_summary_utc.split(":")
        _require(
            self.daily_summary_utc == ""
            or (len(hhmm) == 2 and all(p.isdigit() for p in hhmm) and int(hhmm[0]) < 24 and int(hhmm[1]) < 60),
            f"{key}.daily_summary_utc",
            'expected HH:MM or ""',
        )
