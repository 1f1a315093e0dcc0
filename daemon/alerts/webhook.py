"""Webhook channel: one signed JSON POST per event.

The body is the event envelope (`id`, `type`, `created_ms` and the payload's fields:
`symbol`, `side`, `confidence`, `price`, `bar_ts`, `model_versions`, ... whatever the event
carries; a shadow-ledger signal, sent only with `shadow = true`, has type "shadow_signal"
and `"shadow": true`), serialized once with sorted keys. `X-Sigd-Signature: sha256=<hex>` is the
HMAC-SHA256 of exactly those body bytes under the webhook's secret; the same event is sent
with the same `id` on every retry, so a receiver uses it as an idempotency key.
2xx = delivered; 4xx other than 408/429 = dead letter; anything else is retried.
"""

from __future__ import annotations

import hashlib
import hmac

import aiohttp

from daemon.alerts.outbox import DeliveryError, Event, Outcome, compact_json, http_failure

SIGNATURE_HEADER = "X-Sigd-Signature"
USER_AGENT = "sigd-webhook/1"


def sign(secret: str, body: bytes) -> str:
    """The signature header value for a body: "sha256=" + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """True when `header` is the signature of `body` (constant-time compare); for receivers."""
    return hmac.compare_digest(sign(secret, body), header or "")


def encode(event: Event) -> bytes:
    """The exact body bytes sent (and signed) for an event."""
    return compact_json(event.envelope()).encode()


def _retry_after_s(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:  # an HTTP date: fall back to our own backoff
        return None


class WebhookChannel:
    """POSTs each event to one URL, signed with the secret read from the environment."""

    def __init__(
        self, name: str, url: str, secret: str, types: frozenset[str] = frozenset(), timeout_s: float = 10.0, shadow: bool = False
    ) -> None:
        self.name = f"webhook:{name}"
        self.url = url
        self.types = types
        self.shadow = shadow  # also POST shadow-ledger signals (their body has "shadow": true)
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the HTTP session."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers={"User-Agent": USER_AGENT})

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, event: Event) -> Outcome:
        """POST the signed envelope; classify the response."""
        await self.start()
        assert self._session is not None
        body = encode(event)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            "X-Sigd-Event-Id": event.id,
            "X-Sigd-Event-Type": event.type,
        }
        try:
            async with self._session.post(self.url, data=body, headers=headers) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return Outcome.SENT
                raise http_failure(resp.status, self.name, _retry_after_s(resp.headers.get("Retry-After")))
        except aiohttp.ClientError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from None
