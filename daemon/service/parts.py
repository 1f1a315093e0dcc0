"""The parts of the running daemon and how they are built from the config, in order.

`build_parts` is the wiring diagram: store → notifier (outbox + channels; their secrets) →
predictors → local exchange (endpoint "local") → ccxt client → buffers + feed → engine (+ broker)
→ retrainer.
Every other module gets what it needs passed in; nothing here decides or trades.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from daemon import events, log
from daemon.alerts.notify import Notifier
from daemon.config import Config, ConfigError, secret
from daemon.domain import Bar, PredictorLike, timeframe_ms
from daemon.market.bars import Buffers
from daemon.market.exchange import ExchangeClient, make_client
from daemon.market.feed import Feed
from daemon.retrain.nightly import Retrainer
from daemon.retrain.storage import local_path
from daemon.store import Store
from daemon.trading.scoring import shadow_from_config

_log = log.get("sigd.parts")
OnBar = Callable[[Bar], Awaitable[None]]


@dataclass
class Parts:
    """Everything startup built; `close_parts` undoes it in reverse."""

    cfg: Config
    store: Store
    client: ExchangeClient
    buffers: Buffers
    feed: Feed
    predictors: dict[str, PredictorLike]
    model_dirs: dict[str, Path]
    notifier: Any  # daemon.alerts.notify.Notifier: the EventSink over the outbox, and the channels
    broker: Any
    engine: Any
    mode: str
    local_exchange: Any = None
    exchange_clock: Any = None  # daemon.service.exchangeclock.ExchangeClock of a running `sigd local-exchange`
    scheduler: Any = None
    retrainer: Retrainer | None = None
    _retrain_task: asyncio.Task[Any] | None = None

    def last_close(self, symbol: str) -> float | None:
        """The newest buffered 1m close of a symbol (for unrealized PnL)."""
        with contextlib.suppress(KeyError):
            ring = self.buffers.ring(symbol, "1m")
            if len(ring):
                return float(ring.window(1)[-1, 4])
        return None

    def start_scheduler(self) -> None:
        """APScheduler on the running loop, with the retrain cron job."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.scheduler = AsyncIOScheduler(timezone=UTC)
        if self.retrainer is not None:
            self.retrainer.schedule(self.scheduler)
        self.scheduler.start()

    async def stop_scheduler(self) -> None:
        """No new jobs; a running retrain is killed (the current models keep serving)."""
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.retrainer is not None:
            await self.retrainer.cancel()
        if self._retrain_task is not None:
            self._retrain_task.cancel()

    def spawn_retrain(self) -> None:
        """Run the retrain job now, in the background."""
        assert self.retrainer is not None
        self._retrain_task = asyncio.ensure_future(self.retrainer.run_once())

    async def swap(self, name: str, path: Path) -> None:
        """Load a promoted artifact off the loop, then swap it in between decisions."""
        from pipeline.predictor import Predictor

        predictor = await asyncio.to_thread(Predictor.load, path, self.cfg.models.device)
        self.engine.swap_predictor(name, predictor)
        self.predictors[name] = predictor
        self.model_dirs[name] = path
        _log.info("model_swapped", model=name, version=predictor.version, path=str(path))
        events.publish(events.ModelSwapped(name, predictor.version, "trading"))


def newest_close_ms(store: Store) -> int | None:
    """The close instant of the newest stored bar of any stream (None: an empty state file)."""
    return max((ts + timeframe_ms(tf) for tf, ts in store.newest_bar_ts().items()), default=None)


def replay_start_ms(cfg: Config, store: Store | None) -> int | None:
    """Where the embedded replay starts: the configured `start`, or after the newest stored bar
    when that is later, because a market does not rewind (a restart never re-decides a bar it
    already saw). None: the local exchange's default start."""
    from daemon.localexchange.server import parse_start

    configured = parse_start(cfg.local_exchange.start) if cfg.local_exchange.start else None
    resume = newest_close_ms(store) if store is not None else None
    if resume is None or (configured is not None and configured >= resume):
        return configured
    _log.info(
        "replay_resumes",
        after_ms=resume,
        configured_start_ms=configured,
        note="the replay goes on after the newest stored bar; delete the state file to start over",
    )
    return resume


async def _exchange(
    cfg: Config, environ: dict[str, str], opened: list[Callable[[], Awaitable[Any]]], store: Store | None = None
) -> tuple[Any, ExchangeClient]:
    """The local exchange (endpoint "local") and the real ccxt client pointed at it; each one's
    close goes into `opened` as soon as it runs. With `store`, an embedded replay resumes after
    the newest stored bar."""
    key_env, secret_env = cfg.exchange.api_key_env, cfg.exchange.api_secret_env
    local = None
    rest_url = ws_url = None
    if cfg.exchange.endpoint == "local":
        from daemon.localexchange.server import DEV_API_KEY, DEV_API_SECRET, LocalExchange
        from daemon.localexchange.tape import TapeError

        # The in-process exchange accepts the keys the environment holds, else its loopback dev pair.
        api_key, api_secret = environ.get(key_env, ""), environ.get(secret_env, "")
        if not (api_key and api_secret):
            api_key, api_secret = DEV_API_KEY, DEV_API_SECRET
        lx = cfg.local_exchange
        if lx.url:  # a `sigd local-exchange` running on its own
            base = lx.url.rstrip("/")
            rest_url, ws_url = base + "/api/v3", "ws" + base.removeprefix("http") + "/stream/ws"
        else:
            start_ms = replay_start_ms(cfg, store)
            try:
                local = LocalExchange(
                    cfg.path(lx.tape) if lx.tape else None,
                    start_ms=start_ms,
                    speed=lx.speed,
                    host=lx.host,
                    port=lx.port,
                    seed=lx.seed,
                    api_key=api_key,
                    api_secret=api_secret,
                    spread_bps=lx.spread_bps,
                )
            except TapeError as exc:
                if start_ms is None or start_ms == replay_start_ms(cfg, None):
                    raise
                raise TapeError(
                    f"{exc}; the replay resumes after the newest bar stored in {cfg.store.path} and the "
                    f"tape has nothing after it: delete that file to replay from the start"
                ) from None
            await local.start()
            opened.append(local.stop)
            rest_url, ws_url = local.rest_url, local.ws_url
    else:
        api_key, api_secret = secret(key_env, "exchange.api_key_env"), secret(secret_env, "exchange.api_secret_env")
    client = make_client(cfg.exchange, rest_url=rest_url, ws_url=ws_url, api_key=api_key, api_secret=api_secret)
    opened.append(client.close)
    try:
        await client.start()  # ConfigError: a configured symbol the exchange does not list
    except ConfigError as exc:
        raise ConfigError(f"{cfg.source}: {exc}") from None
    return local, client


def model_dirs(cfg: Config, store: Store) -> dict[str, Path]:
    """Artifact directory per served model: the registry's current one, else the configured one."""
    out = {}
    for name, path in cfg.models.paths.items():
        row = store.current_model(name)
        promoted = local_path(row["path"]) if row and row["path"] else None  # the registry keeps URIs
        out[name] = promoted if promoted is not None and promoted.is_dir() else cfg.path(path)
    return out


async def load_predictors(cfg: Config, dirs: dict[str, Path]) -> dict[str, PredictorLike]:
    """Load every artifact off the event loop (torch import and weights take a while)."""
    from pipeline.predictor import Predictor, set_inference_threads

    set_inference_threads(cfg.models.threads)
    loaded = await asyncio.gather(*(asyncio.to_thread(Predictor.load, d, cfg.models.device) for d in dirs.values()))
    for name, p in zip(dirs, loaded):
        _log.info("model_loaded", model=name, version=p.version, threshold=p.threshold, path=str(dirs[name]))
    return dict(zip(dirs, loaded))


async def build_parts(cfg: Config, environ: dict[str, str], on_bar: OnBar) -> Parts:
    """Build every part in dependency order (see the module docstring); on failure, close
    what was already opened and re-raise."""
    store = Store(cfg.path(cfg.store.path))
    opened: list[Callable[[], Awaitable[Any]]] = []
    try:
        notifier = Notifier(cfg.alerts, store)  # reads the channels' secrets first: ConfigError when missing
        dirs = model_dirs(cfg, store)
        predictors = await load_predictors(cfg, dirs)
        local, client = await _exchange(cfg, environ, opened, store)
        clock = await exchange_clock(cfg, local, opened)
        return await _assemble(cfg, store, notifier, dirs, predictors, local, client, on_bar, clock)
    except BaseException:
        for close in reversed(opened):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close(), timeout=5)
        store.close()
        raise


async def exchange_clock(cfg: Config, local: Any, opened: list[Callable[[], Awaitable[Any]]]) -> Any:
    """The clock closing updates' event times are measured against (bar-close latency): the
    embedded replay's own, a running `sigd local-exchange`'s (asked over HTTP), else None (the
    wall clock, which is a real exchange's)."""
    if local is not None:
        return local
    if cfg.exchange.endpoint != "local" or not cfg.local_exchange.url:
        return None
    from daemon.service.exchangeclock import ExchangeClock

    clock = ExchangeClock(cfg.local_exchange.url, cfg.local_exchange.speed)
    opened.append(clock.close)
    await clock.sync()
    return clock


async def _assemble(
    cfg: Config,
    store: Store,
    notifier: Notifier,
    dirs: dict[str, Path],
    predictors: dict[str, PredictorLike],
    local: Any,
    client: ExchangeClient,
    on_bar: OnBar,
    clock: Any = None,
) -> Parts:
    """Buffers, feed, engine (+ broker) and retrainer over the parts already open."""
    from daemon.trading.engine import Engine

    buffers = Buffers()
    feed = Feed(
        client,
        store,
        buffers,
        cfg.exchange,
        on_bar,
        speed=cfg.local_exchange.speed if cfg.exchange.endpoint == "local" else 1.0,
        clock_ms=(lambda: float(clock.now_ms())) if clock is not None else None,
        quotes=cfg.broker.mode == "paper",
    )  # only the paper broker fills at the quotes
    engine = Engine.from_config(
        cfg,
        store=store,
        buffers=buffers,
        predictors=predictors,
        sink=notifier,
        exchange=client,  # testnet sends through it; paper sizes orders to its limits
        quotes=feed.quotes,
    )  # the feed runs it: paper fills at the live bid/ask
    engine.shadow = shadow_from_config(cfg, predictors, notifier, store, engine.ledgers)
    await engine.start()  # restores pause and risk state, reconciles the broker
    parts = Parts(
        cfg=cfg,
        store=store,
        client=client,
        buffers=buffers,
        feed=feed,
        predictors=predictors,
        model_dirs=dirs,
        notifier=notifier,
        broker=engine.broker,
        engine=engine,
        mode=engine.broker.mode,
        local_exchange=local,
        exchange_clock=clock if clock is not local else None,
    )
    if cfg.retrain.enabled:
        parts.retrainer = Retrainer(cfg, store, notifier, parts.swap, lambda: dict(parts.model_dirs), source=parts.client)
    return parts


async def close_parts(parts: Parts) -> None:
    """Close what build_parts opened, newest first; one failure does not stop the rest."""
    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [("exchange_client", parts.client.close)]
    if parts.local_exchange is not None:
        steps.append(("local_exchange", parts.local_exchange.stop))
    if parts.exchange_clock is not None:
        steps.append(("exchange_clock", parts.exchange_clock.close))
    for name, step in steps:
        try:
            await asyncio.wait_for(step(), timeout=5)
        except Exception as exc:
            _log.warning("close_failed", part=name, error=str(exc))
    parts.store.close()
