"""The local exchange: REST + websockets + control on one loopback aiohttp port.

async with LocalExchange(speed=0, paused=True) as lx:   # bundled tape, dev credentials
    ...  # point ccxt at lx.rest_url / lx.ws_url, then lx.resume_clock()
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from aiohttp import web

from daemon.localexchange.clock import ReplayClock
from daemon.localexchange.control import add_control_routes
from daemon.localexchange.faults import Faults
from daemon.localexchange.market import Market
from daemon.localexchange.orders import Account
from daemon.localexchange.rest import LX_KEY, add_routes, fault_middleware
from daemon.localexchange.streams import PUMP_KEY, Pump, ws_handler
from daemon.localexchange.tape import SYNTHETIC_BASE, TapeError, bundled_tape_dir, load_tape, synthetic_tapes

log = structlog.get_logger("localexchange")
# Loopback-only development credentials, used when no others are given. They protect nothing
# real: the server refuses to use them on a non-loopback address.
DEV_API_KEY = "sigd-local-dev-key"
DEV_API_SECRET = "sigd-local-dev-secret"
DEFAULT_BALANCES = {"USDT": 100_000.0, "BTC": 1.0, "ETH": 10.0}
DAY_MS = 86_400_000


class LocalExchange:
    """A Binance-spot-protocol server replaying a tape on one replay clock."""

    def __init__(
        self,
        tape: Path | None = None,
        *,
        start_ms: int | None = None,
        speed: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 7,
        api_key: str = DEV_API_KEY,
        api_secret: str = DEV_API_SECRET,
        balances: dict[str, float] | None = None,
        paused: bool = False,
        spread_bps: float = 2.0,
        synthetic: int = 0,
    ) -> None:
        """`spread_bps`: the derived bid/ask spread around the replay price (book.py);
        `synthetic`: that many SYNTHETIC symbols SYN001.. (load tests only, see tape.py)."""
        if (api_key, api_secret) == (DEV_API_KEY, DEV_API_SECRET) and not _is_loopback(host):
            raise ValueError(f"refusing the built-in dev credentials on non-loopback host {host!r}")
        self.tape_dir = Path(tape) if tape is not None else bundled_tape_dir()
        tapes = load_tape(self.tape_dir)
        if not 0 <= synthetic <= 999:
            raise ValueError(f"synthetic must be within 0..999, got {synthetic}")
        tapes = {**tapes, **synthetic_tapes(tapes, synthetic)}
        self.markets = {sym: Market(t, seed) for sym, t in tapes.items()}
        first = max(m.first_ms for m in self.markets.values())
        end = min(m.end_ms for m in self.markets.values())
        start = _default_start(first, end) if start_ms is None else int(start_ms)
        if not first <= start < end:
            raise TapeError(f"{self.tape_dir}: replay start {_iso(start)} outside the 1m tape [{_iso(first)}, {_iso(end)})")
        self.clock = ReplayClock(start, end, speed, paused=True)  # runs from start() on
        self._paused_at_start = paused
        self.faults = Faults()
        self.account = Account(
            self.markets,
            {**{m.base: 0.0 for m in self.markets.values()}, **(balances if balances is not None else DEFAULT_BALANCES)},
        )
        if not 0 <= spread_bps <= 1000:
            raise ValueError(f"spread_bps must be within 0..1000, got {spread_bps}")
        self.spread_bps = float(spread_bps)
        self.pump = Pump(self.markets, self.clock, self.faults, self.spread_bps)
        self.faults.bind_drop(self._schedule_drop)
        self.host, self.port, self.api_key, self.api_secret = host, port, api_key, api_secret
        self._runner: web.AppRunner | None = None
        self.rest_in_flight = self.rest_in_flight_max = 0  # REST calls being answered now / at most
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the port and start the replay."""
        app = web.Application(middlewares=[fault_middleware])
        app[LX_KEY], app[PUMP_KEY] = self, self.pump
        add_routes(app)
        app.router.add_get("/stream/ws/{n}", ws_handler)
        app.router.add_get("/ws/{n}", ws_handler)
        add_control_routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.faults.released.clear()
        if not self._paused_at_start:
            self.clock.resume()
        self._spawn(self.pump.run())
        synthetic = sorted(m.symbol for m in self.markets.values() if m.base.startswith(SYNTHETIC_BASE))
        if synthetic:
            log.warning(
                "synthetic_symbols",
                count=len(synthetic),
                note="time-shifted copies of real tapes for load tests: never train on them",
            )
        derived = sorted(m.symbol for m in self.markets.values() if m.derived_1s)
        if derived:
            log.warning(
                "derived_1s_bars",
                symbols=derived,
                note="no 1s tape: 1s bars are DERIVED from 1m bars by a seeded path, not recorded",
            )
        log.info(
            "local_exchange_started",
            url=self.base_url,
            tape=str(self.tape_dir),
            speed=self.clock.speed,
            replay_start_ms=self.clock.now_ms(),
            tape_end_ms=self.clock.end_ms,
            symbols=sorted(self.markets),
        )

    async def stop(self) -> None:
        """Close every socket, end hanging calls and release the port."""
        self.faults.released.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self.pump.drop_all()
            await self._runner.cleanup()
            self._runner = None
        log.info("local_exchange_stopped")

    async def __aenter__(self) -> LocalExchange:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _schedule_drop(self) -> int:
        self._spawn(self.pump.drop_all())
        return len(self.pump.sockets)

    # -- addresses and clock -------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:P`."""
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def rest_url(self) -> str:
        """ccxt `urls['api']['public']` and `['private']`."""
        return self.base_url + "/api/v3"

    @property
    def ws_url(self) -> str:
        """ccxt `urls['api']['ws']['spot']` (keeps `/stream` in the path: recipe pitfall P1)."""
        return f"ws://{_url_host(self.host)}:{self.port}/stream/ws"

    def now_ms(self) -> int:
        """The replay instant (ms UTC)."""
        return self.clock.now_ms()

    def pause_clock(self) -> None:
        """Freeze the replay clock (streams send nothing new until resumed)."""
        self.clock.pause()
        self.pump.wake.set()

    def resume_clock(self) -> None:
        """Let the replay clock run again."""
        self.clock.resume()
        self.pump.wake.set()

    def set_speed(self, speed: float) -> None:
        """Change the replay speed (0 = as fast as possible)."""
        self.clock.set_speed(speed)
        self.pump.wake.set()

    def advance(self, ms: int) -> int:
        """Step the replay clock forward by `ms` (streams catch up at once); the new instant."""
        self.clock.advance_to(self.clock.now_ms() + int(ms))
        self.pump.wake.set()
        return self.clock.now_ms()

    async def wait_subscribed(self, count: int, timeout: float = 10.0) -> list[str]:
        """Wait until at least `count` streams are subscribed; their names."""
        async with asyncio.timeout(timeout):
            while len(self.pump.subscriptions()) < count:
                await asyncio.sleep(0.01)
        return self.pump.subscriptions()

    def status(self) -> dict[str, Any]:
        """Clock, streams, sockets and faults, for `GET /_control/status`."""
        return {
            "replay_ms": self.now_ms(),
            "speed": self.clock.speed,
            "paused": self.clock.paused,
            "ended": self.clock.ended,
            "tape_end_ms": self.clock.end_ms,
            "symbols": sorted(self.markets),
            "streams": self.pump.subscriptions(),
            "sockets": len(self.pump.sockets),
            "frames_sent": self.pump.frames_sent,
            "orders": len(self.account.orders),
            "rest_in_flight_max": self.rest_in_flight_max,
            "faults": self.faults.snapshot(),
        }


def _default_start(first: int, end: int) -> int:
    """First 1m bar + 1 day (history for warm-up); on a tape shorter than that, its middle minute."""
    if first + DAY_MS < end:
        return first + DAY_MS
    middle = first + (end - first) // 2
    log.warning("short_tape_start", note="tape shorter than a day: replay starts in its middle", start_ms=middle)
    return middle - middle % 60_000


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_start(text: str) -> int:
    """ISO 8601 UTC (e.g. 2025-08-10T12:00:00Z, or a date) → ms since the epoch."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def credentials(key_env: str, secret_env: str) -> tuple[str, str, str]:
    """(key, secret, where from): the named env vars when both are set, else the dev pair."""
    key, secret = os.environ.get(key_env, ""), os.environ.get(secret_env, "")
    if key and secret:
        return key, secret, f"env {key_env}/{secret_env}"
    if key or secret:
        raise ValueError(f"set both {key_env} and {secret_env}, or neither (then the dev credentials apply)")
    return DEV_API_KEY, DEV_API_SECRET, "built-in dev credentials (loopback only)"
