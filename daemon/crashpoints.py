"""Named crash points: deterministic places where a test can make the process die hard.

`crash_point("after_signal_commit")` ends the process with `os._exit(CRASH_EXIT_CODE)` when
the environment variable SIGD_CRASH_AT names that point, and does nothing otherwise (one
string comparison). os._exit skips every `finally`, atexit hook and buffered write: what was
committed to SQLite before the point is all the next start finds, exactly as after a power
cut or a SIGKILL at that instruction. `SIGD_CRASH_AT=NAME@N` dies at the N-th time the
point is reached instead of the first.

The restart tests (tests/service/test_crash_points.py) aim at each point and then check the
invariants written down in the README ("Operations: crash recovery").
"""

from __future__ import annotations

import os

ENV = "SIGD_CRASH_AT"
CRASH_EXIT_CODE = 86  # distinct from 1 (failure) and 2 (bad config): a test knows the point was hit

POINTS: dict[str, str] = {
    "after_signal_commit": "a decision with a signal is committed (signal, alert row, order); no order sent",
    "after_order_recorded": "an order is committed PENDING; nothing was sent to the exchange",
    "after_order_sent_before_ack": "the exchange accepted an order; its answer is not recorded",
    "after_fill_commit": "a fill, the position and the fill alert are committed; nothing delivered yet",
    "mid_outbox_delivery": "the receiver has an alert; its outbox row is still pending",
    "mid_retrain_install": "a promoted artifact is copied beside its place; not renamed, not registered",
}


class CrashPointError(ValueError):
    """SIGD_CRASH_AT names no known crash point (or a bad count)."""


def parse(value: str) -> tuple[str, int]:
    """`NAME` or `NAME@N` -> (name, n); CrashPointError naming the variable when it is wrong."""
    name, _, count = value.partition("@")
    if name not in POINTS:
        raise CrashPointError(f"{ENV}={value[:80]!r}: unknown crash point; known: {', '.join(POINTS)}")
    if count and not (count.isdigit() and int(count) >= 1):
        raise CrashPointError(f"{ENV}={value[:80]!r}: the count after '@' must be an integer >= 1")
    return name, int(count or 1)


def check_env() -> None:
    """Raise CrashPointError when SIGD_CRASH_AT is set to something unknown (`sigd run` exits 2)."""
    if os.environ.get(ENV):
        parse(os.environ[ENV])


def _target() -> tuple[str, int] | None:
    # Read once at import; a bad value arms nothing here (`sigd run` refuses it by check_env).
    try:
        return parse(os.environ[ENV]) if os.environ.get(ENV) else None
    except CrashPointError:
        return None


_TARGET = _target()
_hits = 0


def crash_point(name: str) -> None:
    """Die here (hard, no cleanup) when SIGD_CRASH_AT names this point; otherwise nothing."""
    global _hits
    if _TARGET is None or _TARGET[0] != name:
        return
    _hits += 1
    if _hits < _TARGET[1]:
        return
    # One plain line on stderr (the log pipeline may buffer): the test sees where it died.
    os.write(2, f'{{"event": "crash_point", "point": "{name}", "hit": {_hits}}}\n'.encode())
    os._exit(CRASH_EXIT_CODE)
