"""`python -m bench http`: does HTTP load move decision latency? Quiet vs loaded, one table.

One engine decides N symbols (50 by default) per 1m cycle, driven as the feed drives it
(bench/symbols.py: each symbol's closed 1m bar goes into its ring, is published on the event
bus as the feed does, then reaches `Engine.on_bar`; the cycle's batched forward pass and
every symbol's commit follow). The real HTTP server (daemon/service/api.py, its own process)
serves the real read model (daemon/service/readmodel.py) over those parts, so /status and the
dashboard's snapshots and state are the daemon's own queries.

Phases alternate, quiet then loaded, `--rounds` times: quiet = no HTTP client; loaded = a
separate load process holding `--clients` idle websocket clients on /ws/events (each gets the
snapshot, then every event: they read, slowly, as idle pages do) and sending `--rate`
requests per second to /status. The load process runs at niceness `--load-nice` (10): its
CPU stands in for clients that, deployed, run on other machines; 0 counts it fully. Measured per cycle: the first closing bar handed to the
engine → the cycle's commit (every symbol decided). The simulated 1m cadence is compressed
to one cycle every `--every-s` wall seconds. Symbols past ETH/USDT are SYNTHETIC time-shifted
copies of the real bundled tape (see bench/symbols.py); thresholds are lowered so that
signals, orders and fills happen and their commits (and events) are part of the cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.symbols import REPO, load_models, pct, symbol_tapes, warm


async def load(url: str, clients: int, rate: float) -> None:
    """The load process: `clients` idle pages on /ws/events and `rate` GET /status per second,
    until stdin closes. Prints 'ready' once every page has its snapshot."""
    import aiohttp

    loop = asyncio.get_running_loop()
    stats = {"status_ok": 0, "status_failed": 0, "frames": 0, "pages": 0}
    # Pages: one connection each. /status: a monitoring client's pool of kept-alive connections.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as poll,
    ):
        ready = asyncio.Event()

        async def page() -> None:
            async with http.ws_connect(f"{url}/ws/events", heartbeat=None) as ws:
                await ws.receive()  # the snapshot
                stats["pages"] += 1
                if stats["pages"] == clients:
                    ready.set()
                async for _ in ws:
                    stats["frames"] += 1

        pages = []
        for i in range(clients):
            pages.append(asyncio.create_task(page()))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # pages open over a few seconds, not in one burst
        await asyncio.wait_for(ready.wait(), 300)
        print("ready", flush=True)

        async def one() -> None:
            try:
                async with poll.get(f"{url}/status") as r:
                    await r.read()
                    stats["status_ok" if r.status == 200 else "status_failed"] += 1
            except aiohttp.ClientError:
                stats["status_failed"] += 1

        stop: asyncio.Future[None] = loop.create_future()

        def stdin_closed() -> None:
            if not stop.done():
                stop.set_result(None)

        loop.add_reader(sys.stdin.fileno(), stdin_closed)
        started, sent = loop.time(), 0
        while not stop.done():
            due = int((loop.time() - started) * rate)
            for _ in range(due - sent):
                asyncio.create_task(one())
            sent = max(sent, due)
            await asyncio.sleep(0.005)
        elapsed = loop.time() - started
        for t in pages:
            t.cancel()
        print(json.dumps({**stats, "status_per_s": stats["status_ok"] / elapsed if elapsed else 0.0}), flush=True)


def parts_of(cfg: Any, engine: Any, store: Any, buffers: Any, predictors: dict[str, Any], sink: Any) -> Any:
    """The daemon's Parts surface the read model reads, over the benchmark's engine."""
    from daemon.service.parts import Parts

    feed = SimpleNamespace(status=dict)
    return Parts(
        cfg=cfg,
        store=store,
        client=None,
        buffers=buffers,
        feed=feed,
        predictors=predictors,  # type: ignore[arg-type]
        model_dirs={},
        notifier=SimpleNamespace(outbox=sink),
        broker=engine.broker,
        engine=engine,
        mode="paper",
    )


async def run(a: argparse.Namespace) -> dict[str, Any]:
    from daemon import config as config_mod
    from daemon import events
    from daemon.alerts.notify import LogChannel
    from daemon.alerts.outbox import Outbox
    from daemon.domain import Bar
    from daemon.service.api import Api
    from daemon.service.controls import DaemonControls
    from daemon.service.httpserver import Settings
    from daemon.service.watchdog import Freshness
    from daemon.store import Store
    from daemon.trading.engine import Engine
    from daemon.trading.paper import PaperBroker
    from strategies.confidence import ConfidenceStrategy
    from strategies.risk import PortfolioLimits, RiskParams

    with tempfile.TemporaryDirectory() as tmp:
        predictors = load_models("small", "cpu", a.threshold, Path(tmp), 1)
        tapes, btc = symbol_tapes(a.n)
        capacity = max(max(int(k) for k in p.required_windows.values()) for p in predictors.values()) + 8
        cycles = a.rounds * 2 * (a.cycles + 1)
        start = len(btc) - cycles - 1
        buffers = warm(tapes, btc, start, capacity)
        store = Store(Path(tmp) / "sigd.sqlite")
        sink = Outbox(store, [LogChannel()])
        engine = Engine(
            store=store,
            buffers=buffers,
            predictors=predictors,
            sink=sink,
            symbols=list(tapes),
            broker=PaperBroker(store, sink, fee=0.001, slippage=0.0005),
            strategies=[ConfidenceStrategy(combine="either")],
            risk_params=RiskParams(position_fraction=0.5 / a.n, max_position=1e9),
            portfolio=PortfolioLimits(max_gross_exposure=1.0),
            timeframes=("1m", "1h", "1d"),
        )
        await engine.start()
        toml = Path(tmp) / "config.toml"
        toml.write_text(f'[exchange]\nsymbols = {json.dumps(list(tapes))}\n[store]\npath = "{tmp}/sigd.sqlite"\n')
        cfg = config_mod.load(toml)
        controls = DaemonControls(cfg, parts_of(cfg, engine, store, buffers, predictors, sink), Freshness(stale_after_s=3600.0))
        api = Api(
            controls,
            port=0,
            settings=Settings(max_connections=a.clients + 500, log_level="warning", log_format="json"),
            quiet=engine.cycles.drain,
        )
        await api.start()
        row = start
        out: dict[str, list[float]] = {"quiet": [], "loaded": []}
        load_stats: list[dict[str, Any]] = []

        async def cycle() -> float:
            nonlocal row
            buffers.append(Bar("BTC/USDT", "1m", *map(float, btc[row])))  # type: ignore[arg-type]
            bars = [Bar(s, "1m", int(t["1m"][row, 0]), *map(float, t["1m"][row, 1:])) for s, t in tapes.items()]
            row += 1
            w0 = time.perf_counter()  # the first closing bar reaches the engine
            for bar in bars:
                buffers.append(bar)
                events.publish(events.BarClosed.of(bar))  # as the feed does, after its commit
                await engine.on_bar(bar)
            await engine.cycles.drain()
            return (engine.last_commit - w0) * 1000.0

        async def phase(name: str) -> None:
            await cycle()  # the first after a change of phase is not counted
            for _ in range(a.cycles):
                await asyncio.sleep(a.every_s)
                out[name].append(await cycle())

        try:
            for _ in range(a.rounds):
                await phase("quiet")
                loader = await asyncio.create_subprocess_exec(
                    "nice",
                    "-n",
                    str(a.load_nice),
                    sys.executable,
                    "-m",
                    "bench.http",
                    "--load",
                    api.url,
                    "--clients",
                    str(a.clients),
                    "--rate",
                    str(a.rate),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=REPO,
                    env={**os.environ, "PYTHONPATH": str(REPO)},
                )
                assert loader.stdout is not None and loader.stdin is not None
                line = await asyncio.wait_for(loader.stdout.readline(), 600)
                if line.strip() != b"ready":
                    raise RuntimeError(f"the load process did not start: {line!r}")
                await asyncio.sleep(a.every_s)
                await phase("loaded")
                loader.stdin.close()
                load_stats.append(json.loads((await loader.stdout.readline()) or b"{}"))
                await loader.wait()
                await asyncio.sleep(2.0)  # the pages' connections close
        finally:
            await api.stop()
            await engine.close()
            store.close()
    from daemon.metrics import REGISTRY

    reads = REGISTRY.histogram("sigd_http_read_ms", "")
    costs = {
        call: (reads.count(call=call), reads._sample("_sum", {"call": call}))
        for call in ("status", "state", "snapshot_event", "metrics")
    }
    return {
        "n": a.n,
        "clients": a.clients,
        "rate": a.rate,
        "quiet": out["quiet"],
        "loaded": out["loaded"],
        "load": load_stats,
        "reads": {c: {"n": n, "mean_ms": total / n} for c, (n, total) in costs.items() if n},
    }


def table(r: dict[str, Any], load_before: float, load_after: float) -> str:
    q50, q99 = pct(r["quiet"], 0.5), pct(r["quiet"], 0.99)
    l50, l99 = pct(r["loaded"], 0.5), pct(r["loaded"], 0.99)
    rate = sum(s.get("status_per_s", 0.0) for s in r["load"]) / max(1, len(r["load"]))
    failed = sum(s.get("status_failed", 0) for s in r["load"])
    loaded_label = f"loaded ({r['clients']} ws + {rate:.0f} /status per s)"
    lines = [
        f"close -> every symbol decided and committed, ms ({r['n']} symbols, {len(r['quiet'])} cycles per phase)",
        f"{'phase':<44} {'p50':>8} {'p99':>8} {'max':>8}",
        f"{'quiet (no HTTP client)':<44} {q50:>8.1f} {q99:>8.1f} {max(r['quiet']):>8.1f}",
        f"{loaded_label:<44} {l50:>8.1f} {l99:>8.1f} {max(r['loaded']):>8.1f}",
        f"loaded / quiet p99: {l99 / q99:.3f} (target <= 1.10); p50 {l50 / q50:.3f}; "
        f"/status failed: {failed}; load average {load_before:.2f} -> {load_after:.2f}",
        "engine-loop time of the server's reads (between cycles): "
        + (", ".join(f"{c} {v['n']} x {v['mean_ms']:.1f} ms" for c, v in r["reads"].items()) or "none"),
        f"frames the pages received: {sum(s.get('frames', 0) for s in r['load'])}",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Print the HTTP load benchmark table."""
    p = argparse.ArgumentParser(prog="python -m bench http")
    p.add_argument("--n", type=int, default=50, help="symbols decided per cycle")
    p.add_argument("--clients", type=int, default=1000, help="idle websocket clients in the loaded phase")
    p.add_argument("--rate", type=float, default=200.0, help="GET /status per second in the loaded phase")
    p.add_argument("--cycles", type=int, default=20, help="cycles measured per phase")
    p.add_argument("--rounds", type=int, default=2, help="quiet/loaded pairs")
    p.add_argument("--every-s", type=float, default=1.0, help="wall seconds between cycles (a compressed 1m)")
    p.add_argument("--threshold", type=float, default=0.34, help="model threshold (0 = the artifacts' own)")
    p.add_argument(
        "--load-nice", type=int, default=10, help="niceness of the load process (its CPU stands in for clients on other machines)"
    )
    p.add_argument("--load", default="", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the latencies as JSON too")
    a = p.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a thousand sockets on each side
    if a.load:
        asyncio.run(load(a.load, a.clients, a.rate))
        return 0
    from daemon import log

    log.setup("warning", "json")
    before = os.getloadavg()[0]
    print(
        f"http benchmark: {len(os.sched_getaffinity(0))} CPU core(s), load average {before:.2f}, {a.n} symbols, "
        f"a cycle every {a.every_s:g} s, {a.rounds} x (quiet, loaded) x {a.cycles} cycles; loaded = {a.clients} "
        f"idle websocket clients + {a.rate:g} GET /status per s from another process (nice {a.load_nice})"
    )
    r = asyncio.run(run(a))
    print(table(r, before, os.getloadavg()[0]))
    if a.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
