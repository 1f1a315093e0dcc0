"""Binance-style API errors: `{"code": -NNNN, "msg": "..."}` with an HTTP status."""

from __future__ import annotations


class ApiError(Exception):
    """An error answer as Binance gives it; ccxt maps the code to its exception classes."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.status = code, msg, status


def insufficient_balance() -> ApiError:
    """-2010 as Binance words it (ccxt matches the text to InsufficientFunds)."""
    return ApiError(-2010, "Account has insufficient balance for requested action.")


def missing(param: str) -> ApiError:
    """-1102: a mandatory parameter is absent."""
    return ApiError(-1102, f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed.")
