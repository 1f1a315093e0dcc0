"""Fault injection: what the local exchange does wrong on purpose, set at start-up or at run time.

Every action is a method of `Faults` and, with the same name and keyword arguments as JSON,
`POST /_control/<action>` (see CONTROL.md). Streams are named as Binance names them
(`btcusdt@kline_1m`); `stream=None` means every stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("localexchange.faults")
ALL = "*"
MALFORMED_KINDS = ("json", "text", "shape")


@dataclass
class RestFault:
    """The next `count` REST calls (optionally only those whose path contains `path`) fail."""

    kind: str  # "status" or "timeout"
    count: int
    status: int = 429
    retry_after: int = 1
    hang_s: float = 30.0
    path: str | None = None


class Faults:
    """Fault state shared by the REST handlers and the stream pump."""

    def __init__(self) -> None:
        self.rest: RestFault | None = None
        self.stalls: dict[str, float] = {}  # stream (or ALL) -> wall deadline (monotonic), inf = until resumed
        self.stalls_until_resubscribed: set[str] = set()  # of `stalls`: those a client's SUBSCRIBE ends
        self.malformed_left: dict[str, tuple[int, str]] = {}
        self.bad_ohlc_left: dict[str, int] = {}
        self.skip_left: dict[str, int] = {}
        self.rest_delay_s: tuple[float, str | None] = (0.0, None)  # (seconds, path filter)
        self.released = asyncio.Event()  # set on stop so that hanging REST calls end
        self._drop: Callable[[], int] = lambda: 0
        self.counts: dict[str, int] = {}

    def _note(self, action: str, **kw: Any) -> None:
        self.counts[action] = self.counts.get(action, 0) + 1
        log.warning("fault_set", action=action, **kw)

    # -- websockets ---------------------------------------------------------------------
    def drop_websockets(self) -> int:
        """Close every websocket now (code 1001); returns how many were open."""
        n = self._drop()
        self._note("drop_websockets", sockets=n)
        return n

    def stall(self, stream: str | None = None, seconds: float | None = None, until_resubscribed: bool = False) -> None:
        """Send no frames on `stream` (or all) for `seconds` of wall time, or until `resume`.

        `until_resubscribed`: the stall also ends when a client subscribes `stream` again (a
        stream stuck on the exchange's side, which Binance clients heal with an UNSUBSCRIBE and
        SUBSCRIBE of that stream on the same connection). Needs a named stream.
        """
        if until_resubscribed and not stream:
            raise ValueError("until_resubscribed needs a stream (e.g. 'btcusdt@kline_1m')")
        deadline = float("inf") if seconds is None else time.monotonic() + float(seconds)
        self.stalls[stream or ALL] = deadline
        if until_resubscribed:
            self.stalls_until_resubscribed.add(stream or ALL)
        self._note("stall", stream=stream or ALL, seconds=seconds, until_resubscribed=until_resubscribed)

    def subscribed(self, stream: str) -> None:
        """A client subscribed `stream`: a stall that a resubscribe ends is over."""
        if stream in self.stalls_until_resubscribed:
            self.stalls_until_resubscribed.discard(stream)
            self.stalls.pop(stream, None)
            log.warning("fault_stall_healed", stream=stream)

    def resume(self, stream: str | None = None) -> None:
        """End a stall of `stream`, or every stall when `stream` is None."""
        if stream is None:
            self.stalls.clear()
            self.stalls_until_resubscribed.clear()
        else:
            self.stalls.pop(stream, None)
            self.stalls_until_resubscribed.discard(stream)
        self._note("resume", stream=stream or ALL)

    def malformed(self, count: int = 1, stream: str | None = None, kind: str = "json") -> None:
        """Insert `count` malformed frames before the next frames of `stream` (or any stream).

        kinds: "json" = a kline event whose prices are not numbers, "text" = truncated JSON,
        "shape" = a kline event without its "k" object. The real frames still follow.
        """
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"kind must be one of {MALFORMED_KINDS}, got {kind!r}")
        self.malformed_left[stream or ALL] = (int(count), kind)
        self._note("malformed", count=count, stream=stream or ALL, kind=kind)

    def bad_ohlc(self, count: int = 1, stream: str | None = None) -> None:
        """Replace the next `count` closing updates with bars that break OHLC invariants."""
        self.bad_ohlc_left[stream or ALL] = int(count)
        self._note("bad_ohlc", count=count, stream=stream or ALL)

    def skip_bars(self, count: int = 1, stream: str | None = None) -> None:
        """A gap: the next `count` bars of `stream` are never sent (REST still has them)."""
        self.skip_left[stream or ALL] = int(count)
        self._note("skip_bars", count=count, stream=stream or ALL)

    # -- REST ---------------------------------------------------------------------------
    def rest_error(self, status: int = 429, count: int = 1, retry_after: int = 1, path: str | None = None) -> None:
        """Answer the next `count` REST calls with HTTP `status` (429/418 carry Retry-After)."""
        if not 400 <= int(status) <= 599:
            raise ValueError(f"status must be an HTTP error status 400..599, got {status}")
        self.rest = RestFault("status", int(count), int(status), int(retry_after), path=path)
        self._note("rest_error", status=status, count=count, path=path)

    def rest_timeout(self, count: int = 1, hang_s: float = 30.0, path: str | None = None) -> None:
        """Let the next `count` REST calls hang `hang_s` seconds (longer than the client's timeout)."""
        self.rest = RestFault("timeout", int(count), hang_s=float(hang_s), path=path)
        self._note("rest_timeout", count=count, hang_s=hang_s, path=path)

    def rest_delay(self, seconds: float = 0.2, path: str | None = None) -> None:
        """Answer every REST call (whose path contains `path`, if given) `seconds` late, until
        cleared (seconds=0 or `clear`): a slow exchange, which shows how many calls a client
        keeps in flight (`rest_in_flight_max` in the status)."""
        if float(seconds) < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        self.rest_delay_s = (float(seconds), path)
        self._note("rest_delay", seconds=seconds, path=path)

    def delay_for(self, path: str) -> float:
        """Seconds to hold this REST call (0 = none)."""
        seconds, only = self.rest_delay_s
        return seconds if seconds and (not only or only in path) else 0.0

    def clear(self) -> None:
        """Remove every pending fault."""
        self.rest = None
        self.rest_delay_s = (0.0, None)
        self.stalls.clear()
        self.stalls_until_resubscribed.clear()
        self.malformed_left.clear()
        self.bad_ohlc_left.clear()
        self.skip_left.clear()
        log.info("faults_cleared")

    # -- used by the server -------------------------------------------------------------
    def bind_drop(self, drop: Callable[[], int]) -> None:
        """Tell `drop_websockets` how to close the sockets (set by the server)."""
        self._drop = drop

    def take_rest(self, path: str) -> RestFault | None:
        """The fault for this REST call, if one is pending (consumes one count)."""
        f = self.rest
        if f is None or (f.path and f.path not in path):
            return None
        f.count -= 1
        if f.count <= 0:
            self.rest = None
        return f

    def stalled(self, stream: str) -> bool:
        """Is `stream` stalled right now?"""
        now = time.monotonic()
        for key in (stream, ALL):
            deadline = self.stalls.get(key)
            if deadline is not None:
                if now < deadline:
                    return True
                del self.stalls[key]
                self.stalls_until_resubscribed.discard(key)
        return False

    def take(self, table: dict[str, Any], stream: str) -> Any:
        """Consume one pending count for `stream` from a per-stream table; the value or None."""
        for key in (stream, ALL):
            entry = table.get(key)
            if entry is None:
                continue
            count, extra = entry if isinstance(entry, tuple) else (entry, None)
            if count <= 1:
                del table[key]
            else:
                table[key] = (count - 1, extra) if extra is not None else count - 1
            return extra if extra is not None else True
        return None

    @staticmethod
    def pending(table: dict[str, Any], stream: str) -> bool:
        """Is a count pending for `stream` (or all streams) in a per-stream table?"""
        return stream in table or ALL in table

    def snapshot(self) -> dict[str, Any]:
        """The pending faults, for `GET /_control/status`."""
        return {
            "rest": None if self.rest is None else vars(self.rest).copy(),
            "stalls": {k: (None if v == float("inf") else round(v - time.monotonic(), 3)) for k, v in self.stalls.items()},
            "malformed": {k: v[0] for k, v in self.malformed_left.items()},
            "bad_ohlc": dict(self.bad_ohlc_left),
            "skip_bars": dict(self.skip_left),
            "rest_delay": {"seconds": self.rest_delay_s[0], "path": self.rest_delay_s[1]},
            "applied": dict(self.counts),
        }
