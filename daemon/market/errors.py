"""The exchange errors the rest of sigd sees (ccxt's many exceptions mapped by exchange.py)."""

from __future__ import annotations


class ExchangeFailure(Exception):
    """Base of the exchange errors the rest of sigd sees."""


class TemporaryError(ExchangeFailure):
    """Network trouble, timeouts, 5xx: worth retrying later."""


class RateLimited(TemporaryError):
    """HTTP 429/418 or Binance -1003: back off at least `retry_after_s`."""

    def __init__(self, msg: str, retry_after_s: float | None = None) -> None:
        super().__init__(msg)
        self.retry_after_s = retry_after_s


class FatalError(ExchangeFailure):
    """Retrying will not help: bad credentials, unknown symbol, invalid request."""


class AuthError(FatalError):
    """The exchange refused our key or signature."""


class OrderRejected(FatalError):
    """The exchange refused an order (insufficient funds, invalid order, duplicate id)."""


class UnknownOrder(OrderRejected):
    """The exchange has no order with that id."""
