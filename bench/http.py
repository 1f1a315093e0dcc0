"""`python -m bench http`: does HTTP load move decision latency? Quiet vs loaded, one table.

One engine decides N symbols (50 by default) per 1m cycle, driven as the feed drives it
(bench/symbols.py: each symbol's closed 1m bar goes into its ring, is published on the event
bus as the feed does, then reaches `Engine.on_bar`; the cycle's batched forward pass and
every symbol's commit follow). The real HTTP server (daemon/service/api.py, its own process)
serves the real read model (daemon/service/readmodel.py) over those parts, so /status and the
dashboard's snapshots and state are the daemon's own queries.

Phases alternate `--rounds` times, which goes first alternating too (quiet, loaded, loaded,
quiet, ...): quiet = no HTTP client; loaded = a separate load process holds `--clients` idle
websocket clients on /ws/events (each gets the snapshot, then every event) and sends `--rate`
requests per second to /status. One load process serves every loaded phase (told `on` and
`off` on its stdin). Its clients stand in for clients that, deployed, run on other machines:
it runs at `--load-priority` (niceness 19 by default, as the HTTP server process does;
`normal` counts its CPU fully).

Measured per cycle: the time its bars close (each cycle is due `--every-s` wall seconds after
the last: a compressed 1m cadence) → the cycle's commit (every symbol decided). Any time the
engine's loop was busy when the bars closed counts. Also per phase: the CPU time of the
engine's process, the HTTP server process and the load process. Symbols past ETH/USDT are
SYNTHETIC time-shifted copies of the real bundled tape (see bench/symbols.py); thresholds are
lowered so that signals, orders and fills happen and their commits (and events) are part of
the cycle. Nothing is dropped or trimmed: p50 and p99 are over every measured cycle, and a
bootstrap interval says how far the ratio could move on a rerun.
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

from bench.engineload import REPO, capacity, confidence_engine, load_models, pct, symbol_tapes, warm

PRIORITIES = ("idle", "nice", "normal")


def set_priority(priority: str) -> str:
    """This process's CPU priority: "idle" (SCHED_IDLE: only CPU time nothing else wants),
    "nice" (niceness 19) or "normal" (the engine's own); what it got."""
    if priority == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except (OSError, AttributeError):
            priority = "nice"  # not Linux, or refused: the lowest niceness instead
    if priority == "nice":
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    return f"nice {os.getpriority(os.PRIO_PROCESS, 0)}"


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, all its threads."""
    if pid == os.getpid():
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, clients: int, rate: float, priority: str) -> None:
    """The load process, driven by lines on stdin: `on` opens `clients` idle pages on /ws/events
    and starts `rate` GET /status per second (it answers `ready` once every page has its
    snapshot); `off` stops both (it answers `off` and the phase's counts as JSON); EOF ends it."""
    import aiohttp

    from daemon.service.httpserver import end_with_parent

    end_with_parent(os.getppid())  # a benchmark stopped by kill -9 leaves no client behind
    set_priority(priority)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def stdin_line() -> None:
        line = sys.stdin.readline()
        if not line:
            loop.remove_reader(sys.stdin.fileno())
        lines.put_nowait(line.strip())

    loop.add_reader(sys.stdin.fileno(), stdin_line)
    # Pages: one connection each. /status: a monitoring client's pool of kept-alive connections.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as poll,
    ):
        while await lines.get() == "on":
            stats, more = await load_phase(http, poll, url, clients, rate, lines)
            print("off " + json.dumps(stats), flush=True)
            if not more:
                break


async def load_phase(
    http: Any, poll: Any, url: str, clients: int, rate: float, lines: asyncio.Queue[str]
) -> tuple[dict[str, Any], bool]:
    """One loaded phase (see `load`): its counts, and whether stdin is still open."""
    import aiohttp

    loop = asyncio.get_running_loop()
    stats: dict[str, Any] = {"status_ok": 0, "status_failed": 0, "frames": 0, "pages": 0, "pages_closed": 0}
    ready = asyncio.Event()

    async def page() -> None:
        try:
            async with http.ws_connect(f"{url}/ws/events", heartbeat=None) as ws:
                await ws.receive()  # the snapshot
                stats["pages"] += 1
                if stats["pages"] == clients:
                    ready.set()
                async for _ in ws:
                    stats["frames"] += 1
        except aiohttp.ClientError:
            pass
        stats["pages_closed"] += 1  # by the server (or refused): counted, never hidden

    pages = []
    for i in range(clients):
        pages.append(asyncio.create_task(page()))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # pages open over a few seconds, not in one burst
    await asyncio.wait_for(ready.wait(), 600)
    print("ready", flush=True)

    async def one() -> None:
        try:
            async with poll.get(f"{url}/status") as r:
                await r.read()
                stats["status_ok" if r.status == 200 else "status_failed"] += 1
        except aiohttp.ClientError:
            stats["status_failed"] += 1

    command = asyncio.ensure_future(lines.get())
    started, sent, polls = loop.time(), 0, []
    while not command.done():
        due = int((loop.time() - started) * rate)
        polls += [asyncio.create_task(one()) for _ in range(due - sent)]
        sent = max(sent, due)
        await asyncio.sleep(0.005)
    elapsed = loop.time() - started
    stats["pages_open"] = clients - stats["pages_closed"]
    stats["status_per_s"] = stats["status_ok"] / elapsed if elapsed else 0.0
    for t in pages + polls:
        t.cancel()
    await asyncio.gather(*pages, *polls, return_exceptions=True)
    return stats, bool(command.result())


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

    with tempfile.TemporaryDirectory() as tmp:
        predictors = load_models("small", "cpu", a.threshold, Path(tmp), 1)
        tapes, btc = symbol_tapes(a.n)
        cycles = a.rounds * 2 * (a.cycles + 1)
        start = len(btc) - cycles - 1
        rows = capacity(predictors)
        if start < rows:
            raise SystemExit(f"--rounds x --cycles: {cycles} cycles need more 1m rows than the bundled tape holds")
        buffers = warm(tapes, btc, start, rows)
        store = Store(Path(tmp) / "sigd.sqlite")
        sink = Outbox(store, [LogChannel()])
        engine = confidence_engine(store, sink, buffers, predictors, list(tapes))
        await engine.start()
        toml = Path(tmp) / "config.toml"
        toml.write_text(f'[exchange]\nsymbols = {json.dumps(list(tapes))}\n[store]\npath = "{tmp}/sigd.sqlite"\n')
        cfg = config_mod.load(toml)
        controls = DaemonControls(cfg, parts_of(cfg, engine, store, buffers, predictors, sink), Freshness(stale_after_s=3600.0))
        api = Api(
            controls,
            port=0,
            settings=Settings(
                max_connections=a.clients + 500, log_level="warning", log_format="json", cpu_priority=a.server_priority
            ),
            quiet=engine.cycles.drain,
        )
        await api.start()
        assert api._proc is not None
        server_pid = api._proc.pid
        loader = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.http",
            "--load",
            api.url,
            "--clients",
            str(a.clients),
            "--rate",
            str(a.rate),
            "--load-priority",
            a.load_priority,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert loader.stdout is not None and loader.stdin is not None
        row = start
        out: dict[str, list[float]] = {"quiet": [], "loaded": []}
        cpu: dict[str, dict[str, float]] = {ph: {"engine": 0.0, "server": 0.0, "load": 0.0} for ph in out}
        load_stats: list[dict[str, Any]] = []
        pids = {"engine": os.getpid(), "server": server_pid, "load": loader.pid}

        async def cycle(due: float) -> float:
            """One cycle whose bars close at `due` (perf clock): the latency from then, so that
            any time the loop was busy when they closed counts."""
            nonlocal row
            buffers.append(Bar("BTC/USDT", "1m", *map(float, btc[row])))  # type: ignore[arg-type]
            bars = [Bar(s, "1m", int(t["1m"][row, 0]), *map(float, t["1m"][row, 1:])) for s, t in tapes.items()]
            row += 1
            for bar in bars:
                buffers.append(bar)
                events.publish(events.BarClosed.of(bar))  # as the feed does, after its commit
                await engine.on_bar(bar)
            await engine.cycles.drain()
            return (engine.last_commit - due) * 1000.0

        async def phase(name: str) -> None:
            due = time.perf_counter() + a.every_s
            await asyncio.sleep(a.every_s)
            await cycle(time.perf_counter())  # the first after a change of phase is not counted
            before = {k: cpu_s(pid) for k, pid in pids.items()}
            for _ in range(a.cycles):
                due = max(due + a.every_s, time.perf_counter())
                await asyncio.sleep(due - time.perf_counter())
                out[name].append(await cycle(due))
            for k, pid in pids.items():
                cpu[name][k] += cpu_s(pid) - before[k]

        async def command(line: str) -> bytes:
            loader.stdin.write(line.encode() + b"\n")  # type: ignore[union-attr]
            answer = await asyncio.wait_for(loader.stdout.readline(), 600)  # type: ignore[union-attr]
            if not answer.startswith(b"ready" if line == "on" else b"off"):
                raise RuntimeError(f"the load process did not answer {line!r}: {answer!r}")
            return answer

        async def loaded() -> None:
            await command("on")
            await phase("loaded")
            load_stats.append(json.loads((await command("off")).removeprefix(b"off ")))
            await asyncio.sleep(2.0)  # the pages' connections close

        try:
            for r in range(a.rounds):  # quiet, loaded, loaded, quiet, ...: neither phase always goes first
                if r % 2 == 0:
                    await phase("quiet")
                    await loaded()
                else:
                    await loaded()
                    await phase("quiet")
        finally:
            if loader.returncode is None:
                loader.stdin.close()
                try:
                    await asyncio.wait_for(loader.wait(), 30)
                except TimeoutError:
                    loader.kill()
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
        "cpu_s": cpu,
        "load": load_stats,
        "reads": {c: {"n": n, "mean_ms": total / n} for c, (n, total) in costs.items() if n},
    }


def ratio_interval(quiet: list[float], loaded: list[float], q: float, draws: int = 2000) -> tuple[float, float]:
    """A 95 % bootstrap interval of the loaded/quiet ratio of the q-quantile (both phases
    resampled with replacement): how far the figure could move on a rerun."""
    import numpy as np

    rng = np.random.default_rng(0)
    qa, la = np.asarray(quiet), np.asarray(loaded)
    ratios = [pct(list(rng.choice(la, la.size)), q) / pct(list(rng.choice(qa, qa.size)), q) for _ in range(draws)]
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def table(r: dict[str, Any], load_before: float, load_after: float) -> str:
    q50, q99 = pct(r["quiet"], 0.5), pct(r["quiet"], 0.99)
    l50, l99 = pct(r["loaded"], 0.5), pct(r["loaded"], 0.99)
    lo99, hi99 = ratio_interval(r["quiet"], r["loaded"], 0.99)
    lo50, hi50 = ratio_interval(r["quiet"], r["loaded"], 0.5)
    phases = max(1, len(r["load"]))
    rate = sum(s.get("status_per_s", 0.0) for s in r["load"]) / phases
    failed = sum(s.get("status_failed", 0) for s in r["load"])
    closed = sum(s.get("pages_closed", 0) for s in r["load"])
    frames = sum(s.get("frames", 0) for s in r["load"]) / phases / max(1, r["clients"])
    loaded_label = f"loaded ({r['clients']} ws + {rate:.0f} /status per s)"
    n_q, n_l = len(r["quiet"]), len(r["loaded"])

    def per_cycle(phase: str, who: str) -> str:
        return f"{1000.0 * r['cpu_s'][phase][who] / max(1, len(r[phase])):.0f}"

    lines = [
        f"close -> every symbol decided and committed, ms ({r['n']} symbols; samples: quiet {n_q}, loaded {n_l})",
        f"{'phase':<44} {'p50':>8} {'p99':>8} {'max':>8}   CPU ms per cycle: engine / server / load",
        f"{'quiet (no HTTP client)':<44} {q50:>8.1f} {q99:>8.1f} {max(r['quiet']):>8.1f}   "
        f"{per_cycle('quiet', 'engine')} / {per_cycle('quiet', 'server')} / {per_cycle('quiet', 'load')}",
        f"{loaded_label:<44} {l50:>8.1f} {l99:>8.1f} {max(r['loaded']):>8.1f}   "
        f"{per_cycle('loaded', 'engine')} / {per_cycle('loaded', 'server')} / {per_cycle('loaded', 'load')}",
        f"loaded / quiet p99: {l99 / q99:.3f} (95 % bootstrap {lo99:.2f}-{hi99:.2f}; target <= 1.10); "
        f"p50: {l50 / q50:.3f} ({lo50:.2f}-{hi50:.2f})",
        f"/status failed: {failed}; pages closed by the server: {closed}; frames per page per loaded phase: {frames:.0f}; "
        f"load average {load_before:.2f} -> {load_after:.2f}",
        "engine-loop time of the server's reads (between cycles): "
        + (", ".join(f"{c} {v['n']} x {v['mean_ms']:.1f} ms" for c, v in r["reads"].items()) or "none"),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Print the HTTP load benchmark table."""
    p = argparse.ArgumentParser(prog="python -m bench http")
    p.add_argument("--n", type=int, default=50, help="symbols decided per cycle")
    p.add_argument("--clients", type=int, default=1000, help="idle websocket clients in the loaded phase")
    p.add_argument("--rate", type=float, default=200.0, help="GET /status per second in the loaded phase")
    p.add_argument("--cycles", type=int, default=25, help="cycles measured per phase")
    p.add_argument("--rounds", type=int, default=8, help="quiet/loaded pairs, alternating which goes first")
    p.add_argument("--every-s", type=float, default=1.0, help="wall seconds between cycles (a compressed 1m)")
    p.add_argument("--threshold", type=float, default=0.34, help="model threshold (0 = the artifacts' own)")
    p.add_argument(
        "--load-priority",
        choices=PRIORITIES,
        default="nice",
        help="CPU priority of the load process: its clients stand in for clients on other machines "
        "(nice: niceness 19; idle: SCHED_IDLE; normal: the engine's own, counting its CPU fully)",
    )
    p.add_argument(
        "--server-priority",
        choices=("nice", "idle"),
        default="nice",
        help="the HTTP server process's priority once it serves (nice: niceness 19, the daemon's default; idle: SCHED_IDLE)",
    )
    p.add_argument("--load", default="", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the latencies as JSON too")
    a = p.parse_args(argv)
    for flag, value in (("--n", a.n), ("--clients", a.clients), ("--cycles", a.cycles), ("--rounds", a.rounds)):
        if value < 1:
            p.error(f"{flag} must be at least 1, got {value}")
    if a.rate <= 0 or a.every_s <= 0:
        p.error("--rate and --every-s must be positive")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a thousand sockets on each side
    if a.load:
        asyncio.run(load(a.load, a.clients, a.rate, a.load_priority))
        return 0
    from daemon import log

    log.setup("warning", "json")
    before = os.getloadavg()[0]
    print(
        f"http benchmark: {len(os.sched_getaffinity(0))} CPU core(s), load average {before:.2f}, {a.n} symbols, "
        f"a cycle every {a.every_s:g} s, {a.rounds} rounds of (quiet, loaded) x {a.cycles} cycles, alternating; "
        f"loaded = {a.clients} idle websocket clients + {a.rate:g} GET /status per s from another process "
        f"(load process: {a.load_priority}; HTTP server process: {a.server_priority})"
    )
    r = asyncio.run(run(a))
    print(table(r, before, os.getloadavg()[0]))
    if a.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
