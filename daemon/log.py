"""structlog, configured once: JSON lines off a TTY (journald), readable on a TTY.

Secrets never reach a log line: every secret read from the environment is registered with
`register_secret()`, and a processor replaces any occurrence of it (in any value, nested or
inside an exception's text) with "***". Keys that look like secrets are masked as well.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
_SECRET_KEY = re.compile(r"(secret|token|password|api_?key|signature)", re.IGNORECASE)
# A key like "api_key_env" names a variable, it does not hold a secret.
_NOT_SECRET_KEY = re.compile(r"_env$")
MASK = "***"


def register_secret(value: str) -> None:
    """Remember a secret value so that it is masked wherever it would be logged."""
    if value and len(value) >= 4:
        with _LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """Replace every registered secret inside `text`."""
    for s in _SECRETS:
        if s in text:
            text = text.replace(s, MASK)
    return text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, tuple):  # a plain tuple: a named tuple's constructor takes its fields one by one
        return tuple(_scrub(v) for v in value)
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if _SECRET_KEY.search(key) and not _NOT_SECRET_KEY.search(key) and event[key]:
            event[key] = MASK
        else:
            event[key] = _scrub(event[key])
    return event


def _error_detail(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # A library may log an exception that was never raised (aiohttp's "Error handling request"
    # for a malformed request): no traceback, so nothing rendered. Name it in one line always.
    record = event.get("_record")
    exc = record.exc_info[1] if record is not None and record.exc_info else None
    if exc is not None and "error" not in event:
        event["error"] = redact(f"{type(exc).__name__}: {exc}".strip())
    return event


def _final_scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Formatted exception text is produced late, so scrub it again after formatting.
    if "exception" in event and isinstance(event["exception"], str):
        event["exception"] = redact(event["exception"])
    return event


class _Stderr:
    """Whatever `sys.stderr` is at write time (it is replaced by test runners and daemonizers)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def setup(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger (which ccxt/apscheduler use) once."""
    out: Any = stream or _Stderr()
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_processor,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _final_scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Third-party stdlib logging goes through the same renderer and redaction.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, _error_detail, structlog.processors.format_exc_info, _final_scrub],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.getLevelName(level.upper()), logging.INFO))


def get(name: str = "sigd") -> Any:
    """A bound structlog logger."""
    return structlog.get_logger(name)
