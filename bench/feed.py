"""`python -m bench feed`: the market-data path, measured through the real ccxt client.

- bar-close latency at 1x: the local exchange's closing update (its event time "E", on the
  replay clock, which at 1x runs at wall speed) to the bar being in its ring buffer;
- ingest throughput at maximum replay speed (bars/s through ccxt, validation, ring, SQLite);
- per-bar cost of ring append + 600-row window extraction beside a pandas DataFrame baseline;
- RSS after 5 minutes and after 1 hour (and 6 hours) of accelerated replay of every stream;
- with `--symbols 1,5,50`: per N symbols (x 4 timeframes, + the reference) on the bundled
  May 2021 tape, warm-up time, websocket connections and the close latency over every stream.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from daemon import log as logging
from daemon.config import ExchangeConfig
from daemon.domain import Bar
from daemon.localexchange.server import LocalExchange
from daemon.market.bars import Ring

KEY, SECRET = "bench-key", "bench-secret"
DAY_MS = 86_400_000
# A replay instant inside the bundled tape with 600 bars of every timeframe before it.
START_MS = 1_754_784_000_000 - 90_000  # 2025-08-10T00:00:00Z minus 90 s
START_2021_MS = 1_621_317_600_000 - 90_000  # 2021-05-18T06:00:00Z minus 90 s, on the May 2021 tape


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _replay_ms(lx: LocalExchange) -> float:
    """The replay clock with sub-millisecond resolution (lx.now_ms() is whole ms)."""
    c = lx.clock
    return c._anchor_replay + (time.monotonic() - c._anchor_wall) * 1000.0 * c.speed


def _time_closing_sends(lx: LocalExchange, lateness_ms: dict[tuple[str, str, int], float]) -> None:
    """Record how late (replay ms after the bar's close) the exchange sends each closing update."""
    send = lx.pump._send

    async def timed(stream: Any, event: dict, event_ms: int) -> None:
        k = event.get("k", {})
        if k.get("x"):
            symbol = stream.market.symbol.replace("USDT", "/USDT")
            lateness_ms[(symbol, k["i"], event_ms)] = _replay_ms(lx) - event_ms
        await send(stream, event, event_ms)

    lx.pump._send = timed


async def _run_feed(
    speed: float,
    start_ms: int,
    stop: Any,
    warmup_bars: int = 600,
    lateness_ms: dict[tuple[str, str, int], float] | None = None,
    symbols: tuple[str, ...] = ("ETH/USDT",),
    tape: Path | None = None,
    synthetic: int = 0,
) -> dict[str, Any]:
    """Run the real feed against a local exchange until stop(lx, feed, n_bars) is true."""
    from daemon.market.bars import Buffers
    from daemon.market.exchange import make_client
    from daemon.market.feed import Feed
    from daemon.store import Store

    lx = LocalExchange(tape, start_ms=start_ms, speed=speed, api_key=KEY, api_secret=SECRET, synthetic=synthetic)
    await lx.start()
    if lateness_ms is not None:
        _time_closing_sends(lx, lateness_ms)
    cfg = ExchangeConfig(symbols=symbols, warmup_bars=warmup_bars, enable_rate_limit=False, stall_floor_s=30.0)
    client = make_client(cfg, rest_url=lx.rest_url, ws_url=lx.ws_url, api_key=KEY, api_secret=SECRET)
    count = 0
    done = asyncio.Event()
    out: dict[str, Any] = {}

    async def on_bar(bar: Bar) -> None:
        nonlocal count
        count += 1
        if stop(lx, feed, count, out):
            done.set()

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.sqlite")
        await client.start()
        clock = (lambda: _replay_ms(lx)) if speed > 0 else lx.now_ms
        feed = Feed(client, store, Buffers(), cfg, on_bar, speed=speed, clock_ms=clock)
        t_warm = time.perf_counter()
        task = asyncio.create_task(feed.run())
        await feed_started(feed)
        t0, n0 = time.perf_counter(), count
        out.update(warmup_s=t0 - t_warm, streams=len(feed.streams))
        await done.wait()
        out.update(
            elapsed_s=time.perf_counter() - t0,
            bars=count - n0,
            status=feed.status(),
            connections=client.connections(),
            quote_updates=feed.quotes.updates,
            latencies={(st.symbol, st.timeframe, e): ms for st in feed.streams.values() for e, ms in st.latencies_ms},
        )
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        await lx.stop()
        store.close()
    return out


async def feed_started(feed: Any) -> None:
    """Wait until warm-up is done (every stream has a last bar)."""
    while any(st.last_ts is None for st in feed.streams.values()):
        await asyncio.sleep(0.01)


def bench_latency(seconds: float) -> dict[str, float]:
    """Bar-close latency at 1x over `seconds` of wall time, in ms.

    `send_*`: from the local exchange sending a bar's closing update to the bar in its ring
    (the benchmark's figure); `close_*`: from the bar's close instant (the update's event
    time E) instead, which adds how late the exchange's pump sent it.
    """
    t_end = time.monotonic() + seconds + 5
    lateness: dict[tuple[str, str, int], float] = {}
    res = asyncio.run(_run_feed(1.0, START_MS, lambda lx, f, n, o: time.monotonic() > t_end, lateness_ms=lateness))
    from_close = res["latencies"]
    from_send = [ms - lateness[k] for k, ms in from_close.items() if k in lateness]
    close = list(from_close.values())
    return {
        "n": len(from_send),
        "send_p50": _pct(from_send, 50),
        "send_p99": _pct(from_send, 99),
        "send_max": max(from_send),
        "close_p50": _pct(close, 50),
        "close_p99": _pct(close, 99),
    }


def bench_throughput(seconds: float) -> dict[str, float]:
    """Bars per second through ccxt at speed 0 (as fast as the exchange can replay)."""
    t_end = time.monotonic() + seconds
    res = asyncio.run(_run_feed(0.0, START_MS, lambda lx, f, n, o: time.monotonic() > t_end))
    return {"bars": res["bars"], "seconds": res["elapsed_s"], "bars_per_s": res["bars"] / res["elapsed_s"]}


def bench_rss(marks_min: tuple[int, ...]) -> dict[int, float]:
    """RSS (MiB) when the replay clock passes each mark (minutes after the live start)."""
    rss: dict[int, float] = {}
    pending = list(marks_min)

    def stop(lx: Any, feed: Any, n: int, out: dict) -> bool:
        start = out.setdefault("start", lx.now_ms())
        while pending and lx.now_ms() - start >= pending[0] * 60_000:
            rss[pending.pop(0)] = _rss_mib()
        return not pending

    asyncio.run(_run_feed(0.0, START_MS, stop))
    return rss


def bench_symbols(n: int, seconds: float) -> dict[str, float]:
    """N symbols x 4 timeframes + the reference on the bundled May 2021 tape at 1x (the five
    real ones first, then SYNTHETIC copies): warm-up time, connections, and the bar-close
    latency send -> ring over every stream for `seconds`."""
    from daemon.localexchange import bundled_tape_dir

    real = ("ETH/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "LTC/USDT")
    symbols = real[:n] + tuple(f"SYN{i:03d}/USDT" for i in range(1, n - len(real) + 1))
    t_end: list[float] = []
    lateness: dict[tuple[str, str, int], float] = {}

    def stop(lx: Any, feed: Any, count: int, out: dict) -> bool:
        if not t_end:
            t_end.append(time.monotonic() + seconds)
        return time.monotonic() > t_end[0]

    res = asyncio.run(
        _run_feed(
            1.0,
            START_2021_MS,
            stop,
            lateness_ms=lateness,
            symbols=symbols,
            tape=bundled_tape_dir("2021-05"),
            synthetic=max(0, n - len(real)),
        )
    )
    from_send = [ms - lateness[k] for k, ms in res["latencies"].items() if k in lateness]
    return {
        "n": n,
        "streams": res["streams"],
        "connections": res["connections"],
        "warmup_s": res["warmup_s"],
        "closes": len(from_send),
        "send_p50": _pct(from_send, 50),
        "send_p99": _pct(from_send, 99),
        "quotes_per_s": res["quote_updates"] / res["elapsed_s"],
        "rss_mib": _rss_mib(),
    }


def bench_ring(n_bars: int, window: int = 600) -> dict[str, float]:
    """Per-bar µs of append + window extraction: Ring vs appending to a pandas DataFrame."""
    rows = np.random.default_rng(0).random((n_bars, 6))
    ring = Ring("ETH/USDT", "1m", window)
    t0 = time.perf_counter()
    for row in rows:
        ring.append_row(row)
        ring.window(window)
    ring_us = (time.perf_counter() - t0) / n_bars * 1e6
    n_pd = max(1, n_bars // 10)  # the baseline is slow; fewer bars, same per-bar cost
    df = pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume"], dtype=np.float64)
    t0 = time.perf_counter()
    for row in rows[:n_pd]:
        df = pd.concat([df, pd.DataFrame([row], columns=df.columns)], ignore_index=True).iloc[-window:]
        df.to_numpy()
    pd_us = (time.perf_counter() - t0) / n_pd * 1e6
    return {"ring_us": ring_us, "pandas_us": pd_us, "ratio": pd_us / ring_us}


def main(argv: list[str]) -> int:
    """Print the feed benchmark table."""
    ap = argparse.ArgumentParser(prog="python -m bench feed")
    ap.add_argument("--latency-s", type=float, default=60.0, help="wall seconds at 1x")
    ap.add_argument("--throughput-s", type=float, default=10.0)
    ap.add_argument("--ring-bars", type=int, default=20_000)
    ap.add_argument(
        "--symbols",
        default=None,
        metavar="N,N,...",
        help="instead: N symbols x 4 timeframes each (e.g. 1,5,50) at 1x for --latency-s",
    )
    args = ap.parse_args(argv)
    logging.setup("warning", "console")  # the feed's per-bar debug lines would flood the table
    if args.symbols:
        print(
            f"{'symbols':>7} {'streams':>7} {'conns':>5} {'warm-up s':>9} {'closes':>6} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'quotes/s':>8} {'RSS MiB':>8}"
        )
        for n in (int(x) for x in args.symbols.split(",")):
            r = bench_symbols(n, args.latency_s)
            print(
                f"{n:>7} {r['streams']:>7} {r['connections']:>5} {r['warmup_s']:>9.2f} {r['closes']:>6} "
                f"{r['send_p50']:>7.2f} {r['send_p99']:>7.2f} {r['quotes_per_s']:>8.1f} {r['rss_mib']:>8.1f}"
            )
        return 0
    ring = bench_ring(args.ring_bars)
    thr = bench_throughput(args.throughput_s)
    rss = bench_rss((5, 60, 360))
    lat = bench_latency(args.latency_s)
    print(f"{'measure':<58} {'value':>14}")
    print(f"{'-' * 58} {'-' * 14}")
    n = lat["n"]
    print(f"{f'bar-close latency p50 at 1x, send -> ring (ms), n={n}':<58} {lat['send_p50']:>14.2f}")
    print(f"{'bar-close latency p99 at 1x, send -> ring (ms, target <= 5)':<58} {lat['send_p99']:>14.2f}")
    print(f"{'bar-close latency max at 1x, send -> ring (ms)':<58} {lat['send_max']:>14.2f}")
    print(f"{'  from the close instant instead, p50 / p99 (ms)':<58} {lat['close_p50']:>6.2f} / {lat['close_p99']:<5.2f}")
    print(f"{'ingest throughput at max replay speed (bars/s)':<58} {thr['bars_per_s']:>14.0f}")
    print(f"{'ring append + 600-row window (us/bar)':<58} {ring['ring_us']:>14.2f}")
    print(f"{'pandas DataFrame append + 600-row window (us/bar)':<58} {ring['pandas_us']:>14.2f}")
    print(f"{'ratio pandas / ring':<58} {ring['ratio']:>14.1f}")
    for mark, mib in rss.items():
        print(f"{f'RSS after {mark} min of replay, all streams (MiB)':<58} {mib:>14.1f}")
    return 0
