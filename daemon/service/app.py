"""`sigd run`: the composition root and the lifecycle, startup → run → shutdown.

Startup builds every part in dependency order (config → logging → store → alerts → predictors
→ local exchange → ccxt client → buffers + feed → engine + broker → API → scheduler →
watchdog; see daemon/service/parts.py), warms up the feed and tells systemd READY=1. Run waits for the
shutdown event (SIGTERM/SIGINT only set it) or for a part to fail. Shutdown is bounded: it
stops the feed, lets a running decision finish, drains the outbox within the deadline and
closes ccxt, the servers and the store.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from daemon import log, ports
from daemon.config import Config, ConfigError
from daemon.domain import Bar
from daemon.health import FAILURES
from daemon.service.api import Api
from daemon.service.controls import DaemonControls
from daemon.service.httpserver import Settings
from daemon.service.parts import Parts, build_parts, close_parts
from daemon.service.sdnotify import Notifier
from daemon.service.watchdog import Freshness, keepalive

_log = log.get("sigd.app")


class StartupAborted(Exception):
    """SIGTERM/SIGINT arrived before the daemon was ready."""


class Daemon:
    """The running service: owns the parts, their tasks and the lifecycle."""

    def __init__(
        self, cfg: Config, *, environ: dict[str, str] | None = None, announce: Callable[[str], None] | None = None
    ) -> None:
        self.cfg = cfg
        self.announce = announce  # told the dashboard's URL once it listens (`sigd run` prints it)
        self.environ = dict(os.environ if environ is None else environ)
        self.notifier = Notifier(self.environ)
        self.freshness = Freshness(
            stale_after_s=cfg.service.stale_after_s, max_failures=cfg.service.max_consecutive_failures, failures=FAILURES
        )
        self.stop = asyncio.Event()
        self.parts: Parts | None = None
        self.controls: DaemonControls | None = None
        self.api: Api | None = None
        self._api_sock: socket.socket | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        # The log's renderer: JSON off a terminal (daemon/log.py decides the same way).
        self._bars_at_info = cfg.log.format == "json" or (cfg.log.format == "auto" and not sys.stderr.isatty())

    # --- lifecycle ----------------------------------------------------------------------------

    async def startup(self) -> None:
        """Build every part, warm up the feed, start the servers; then READY=1."""
        started = time.monotonic()
        if self.cfg.api.enabled and not self._api_loopback() and not self.environ.get(self.cfg.api.token_env):
            raise ConfigError(
                f"{self.cfg.source}: api.host = {self.cfg.api.host!r} is not loopback: set the token "
                f"in ${self.cfg.api.token_env} (api.token_env) or bind 127.0.0.1"
            )
        if self.cfg.api.enabled:  # a port in use: one line naming the key, before anything is built
            self._api_sock = ports.listen(
                self.cfg.api.host, self.cfg.api.port, "api.port", fallback=self.cfg.api.free_port_fallback
            )
        self.notifier.status("starting: building parts")
        self.parts = await build_parts(self.cfg, self.environ, on_bar=self._on_bar)
        self.controls = DaemonControls(self.cfg, self.parts, self.freshness)
        await self.parts.notifier.start(self.controls)  # channels up, Telegram commands wired
        self._spawn("alerts", self.parts.notifier.run())  # undelivered alerts of a previous run go first
        self._spawn("feed", self.parts.feed.run())
        self.notifier.status("starting: warming up the ring buffers")
        await self._wait_warm()
        if self.cfg.engine.prewarm_ms > 0:  # the first forward pass is the slowest: not on the first decision
            _log.info("engine_prewarmed", ms=round(await self.parts.engine.prewarm(), 1))
        await self._start_api()
        self.parts.start_scheduler()
        self._spawn(
            "watchdog",
            keepalive(self.notifier, self.freshness, self.stop, self.controls.status_line, self.cfg.service.status_interval_s),
        )
        self.freshness.started = self.freshness.clock()
        _log.info(
            "daemon_ready",
            warmup_s=round(time.monotonic() - started, 2),
            mode=self.parts.mode,
            models=[p.name for p in self.parts.predictors.values()],
            api=self.api.url if self.api else None,
        )
        self.notifier.ready(self.controls.status_line())

    async def run(self) -> None:
        """Wait for the shutdown event or the first part to fail."""
        waiter = asyncio.create_task(self.stop.wait(), name="stop")
        done, _ = await asyncio.wait([waiter, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and not task.cancelled() and task.exception() is not None:
                waiter.cancel()
                raise RuntimeError(f"{task.get_name()} failed: {task.exception()}") from task.exception()
            if task is not waiter:
                _log.warning("task_ended", task=task.get_name())
        waiter.cancel()

    async def shutdown(self) -> None:
        """Bounded shutdown: feed off, decision finished, outbox drained, everything closed.

        Every step has its own time limit, so one part that hangs cannot keep the process
        alive past systemd's TimeoutStopSec; what it left undone is logged.
        """
        deadline = self.cfg.service.shutdown_deadline_s
        started = time.monotonic()
        self.notifier.stopping("shutting down: draining alerts")
        self.stop.set()
        parts, drained = self.parts, True
        if parts is not None:
            await _step("scheduler", parts.stop_scheduler(), 2.0)
            await _step("feed", _cancel([t for t in self._tasks if t.get_name() == "feed"]), 3.0)
            # The running decision finishes (its signal and order are committed) before the drain.
            await _step("decision", parts.engine.close(), deadline / 2)
            left = max(0.5, deadline - (time.monotonic() - started))
            drained = bool(await _step("alerts", parts.notifier.stop(left), left + 1.0, default=False))
        await _step("tasks", _cancel(self._tasks), 3.0)
        if self.api is not None:
            await _step("api", self.api.stop(), 5.0)
        elif self._api_sock is not None:
            self._api_sock.close()
        if parts is not None:
            await _step("close", close_parts(parts), 12.0)
        _log.info("daemon_stopped", outbox_drained=drained, shutdown_s=round(time.monotonic() - started, 2))

    # --- pieces -------------------------------------------------------------------------------

    async def _on_bar(self, bar: Bar) -> None:
        """The feed's consumer: stamp freshness, log, then the engine (bar already buffered)."""
        self.freshness.stamp(bar)
        # A person's terminal gets one line per decision cycle (decision_cycle), no line per bar;
        # JSON logs (journald, tools) keep every closed bar but 1s ones at info.
        (_log.info if self._bars_at_info and bar.timeframe != "1s" else _log.debug)(
            "bar_closed", symbol=bar.symbol, timeframe=bar.timeframe, ts=bar.ts, close=bar.close
        )
        if self.parts is not None and self.parts.engine is not None:
            await self.parts.engine.on_bar(bar)

    async def _wait_warm(self) -> None:
        """Until every stream has its warm-up history (or the feed fails)."""
        assert self.parts is not None
        feed_task = self._tasks[-1]
        while not all(s.get("last_bar_ts") is not None for s in self.parts.feed.status().values()):
            if self.stop.is_set():
                raise StartupAborted("asked to stop during warm-up")
            if feed_task.done():
                feed_task.result()  # raises the feed's error
                raise RuntimeError("the feed ended during warm-up")
            await asyncio.sleep(0.05)

    async def _start_api(self) -> None:
        assert self.parts is not None and self.controls is not None
        if not self.cfg.api.enabled:
            return
        token = self.environ.get(self.cfg.api.token_env) or None
        if token:
            log.register_secret(token)
        api = self.cfg.api
        settings = Settings(
            allowed_hosts=api.allowed_hosts,
            max_connections=api.max_connections,
            handshake_timeout_s=api.handshake_timeout_s,
            idle_timeout_s=api.idle_timeout_s,
            ws_heartbeat_s=api.ws_heartbeat_s,
            send_timeout_s=api.send_timeout_s,
            snapshot_max_age_s=api.snapshot_max_age_s,
            log_level=self.cfg.log.level,
            log_format=self.cfg.log.format,
        )
        engine = self.parts.engine
        # Reads for the HTTP server wait for the running decision cycle: a client never delays one.
        quiet = engine.cycles.drain if hasattr(engine, "cycles") else None
        self.api = Api(
            self.controls, host=api.host, port=api.port, token=token, settings=settings, sock=self._api_sock, quiet=quiet
        )
        await self.api.start()
        self.parts.store.set_kv("api_url", self.api.url)
        if not self._api_loopback():
            _log.warning("api_exposed", url=self.api.url, note="reachable beyond this machine; actions need the token")
        if self.announce is not None:
            self.announce(f"{self.api.url}/")

    def _api_loopback(self) -> bool:
        return self.cfg.api.host in ("127.0.0.1", "localhost", "::1")

    def _spawn(self, name: str, coro: Awaitable[Any]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))
        self._tasks[-1].set_name(name)


async def _cancel(tasks: list[asyncio.Task[Any]], timeout: float = 2.0) -> None:
    """Cancel tasks and wait (bounded) for them to end."""
    for t in tasks:
        t.cancel()
    pending = [t for t in tasks if not t.done()]
    if pending:
        _, stuck = await asyncio.wait(pending, timeout=timeout)
        if stuck:
            _log.error("tasks_ignore_cancel", tasks=sorted(t.get_name() for t in stuck))


async def _step(name: str, aw: Awaitable[Any], timeout: float, default: Any = None) -> Any:
    """One shutdown step with a time limit; a failure or timeout is logged, never raised."""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait([task], timeout=timeout)
    if not done:
        task.cancel()
        _log.error("shutdown_step_timeout", step=name, timeout_s=timeout)
        return default
    if task.exception() is not None:
        _log.error("shutdown_step_failed", step=name, error=repr(task.exception()))
        return default
    return task.result()


async def serve(cfg: Config, environ: dict[str, str] | None = None, announce: Callable[[str], None] | None = None) -> int:
    """startup → run → shutdown; returns the exit code."""
    daemon = Daemon(cfg, environ=environ, announce=announce)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop.set)  # handlers only set the event
    code = 0
    try:
        await daemon.startup()
        await daemon.run()
    except ConfigError:
        raise  # the CLI prints it and exits 2 (after the shutdown below)
    except StartupAborted as exc:
        _log.info("startup_aborted", reason=str(exc))
    except Exception as exc:
        _log.exception("daemon_failed", error=str(exc))
        code = 1
    finally:
        await daemon.shutdown()
    return code


def run_bounded(main: Awaitable[int], grace_s: float = 3.0) -> int:
    """asyncio.run, except that tasks still alive after `main` get `grace_s` to end, not forever."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for t in left:
            t.cancel()
        if left:
            _, stuck = loop.run_until_complete(asyncio.wait(left, timeout=grace_s))
            if stuck:
                _log.error("tasks_left_running", tasks=sorted(t.get_name() for t in stuck))
        try:
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_default_executor(), grace_s))
        except TimeoutError:
            _log.error("executor_threads_left_running")
        loop.close()
