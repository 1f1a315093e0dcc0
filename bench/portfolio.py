"""`python -m bench portfolio`: one 1h portfolio decision over N symbols, close → every
rebalancing order committed.

For each N (a fresh child process each, so that its RSS is its own) the engine runs the
portfolio strategy ([engine].strategies = ["portfolio"], decision timeframe 1h) the way the
feed drives it: during each hour every symbol's 1m bars go into their rings and to
`Engine.on_bar` (not timed; the paper broker fills the previous cycle's orders at the first of
them, as it does live without a quote stream), then at the hour's close every symbol's 1h bar
goes into its ring and to `Engine.on_bar`; the cycle closes when all N are in, both shipped `small` models score the N symbols in batched passes
(daemon/trading/inference.py: one per model, cut into a part per core for a large cycle),
strategies/portfolio.py turns the scores into target weights, and the cycle's decision rows,
predictions, signals with their outbox rows and every rebalancing order (paper broker, sized to
Binance-style limits: 10^-6 lot step, 5 USDT minimum notional) commit in one SQLite
transaction. Measured per cycle: the first 1h bar handed to the engine → that commit, and
the CPU seconds of the process; RSS per symbol is (RSS(N) - RSS(smallest N)) / (N - smallest N).
The shadow ledgers (one paper book per model plus the two baselines) run after the commit, as
live.

Bars: symbol 0 is the real ETH/USDT slice bundled with the local exchange; the others are
SYNTHETIC time-shifted, rescaled copies of it (`SYNnnnn/USDT`, the load of `bench symbols`, the
same kind of copies `sigd local-exchange --synthetic N` serves). Load for the benchmark only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.engineload import (
    bars_at,
    capacity,
    child,
    engine_store,
    figures,
    load_models,
    machine_line,
    rss_mb,
    symbol_tapes,
    timed_cycle,
    warm,
)

HOUR, MINUTE = 3_600_000, 60_000


def spec_for(n: int) -> Any:
    """Long/short, the top quarter and bottom quarter of the symbols, weights up to 1 / top_k."""
    from strategies.portfolio import PortfolioSpec

    top = max(2, n // 4)
    return PortfolioSpec(
        long_short=True, top_k=top, max_weight=min(0.25, 1.0 / top), gross_cap=1.0, net_cap=0.2, no_trade_band=0.001
    )


async def run_one(n: int, cycles: int, threshold: float, threads: int) -> dict[str, Any]:
    """One child's run: N symbols, `cycles` hourly decision cycles; the figures as a dict."""
    import numpy as np

    from daemon.market.orders import MarketLimits
    from daemon.trading.engine import Engine
    from daemon.trading.ledgers import ShadowLedgers
    from daemon.trading.paper import PaperBroker
    from daemon.trading.rebalance import YEAR_MS, Rebalancer

    with tempfile.TemporaryDirectory() as tmp:
        predictors = load_models("small", "cpu", threshold, Path(tmp), threads)
        rss_models = rss_mb()
        t0 = time.perf_counter()
        tapes, btc = symbol_tapes(n)
        eth_1h = tapes["ETH/USDT"]["1h"]
        # The last `cycles` hours whose 1m bars are all in the tape, after a day of 1m warm-up.
        m1_ts = btc[:, 0].astype(np.int64)
        hours = [int(h) for h in eth_1h[:, 0] if h >= m1_ts[0] + 24 * HOUR and h + HOUR <= m1_ts[-1] + MINUTE]
        hours = hours[-cycles:]
        start = int(np.searchsorted(m1_ts, hours[0]))
        buffers = warm(tapes, btc, start, capacity(predictors))
        limits = MarketLimits(amount_step=1e-6, price_step=0.01, min_amount=1e-6, min_notional=5.0)
        spec = spec_for(n)
        symbols = list(tapes)
        with engine_store(Path(tmp)) as (store, sink):
            engine = Engine(
                store=store,
                buffers=buffers,
                predictors=predictors,
                sink=sink,
                symbols=symbols,
                broker=PaperBroker(store, sink, fee=0.001, slippage=0.0005, limits=lambda s: limits),
                timeframes=("1m", "1h", "1d"),
                trigger_timeframe="1h",
                rebalancer=Rebalancer(spec, timeframe="1h", cost_rate=0.0015),
                ledgers=ShadowLedgers(
                    symbols, spec, periods_per_year=YEAR_MS / HOUR, cost_rate=0.0015, starting_balance=10_000.0
                ),
            )
            await engine.start()
            warmup_s = time.perf_counter() - t0
            latencies, cpu, orders = [], [], []
            for hour in hours:
                # The hour's 1m bars, as the feed hands them over (not timed): into the rings and to
                # the engine, whose paper broker fills the previous cycle's orders at the first of them.
                for row in btc[(m1_ts >= hour) & (m1_ts < hour + HOUR)]:
                    buffers.append(bars_at(["BTC/USDT"], "1m", [row])[0])
                minutes = {s: t["1m"][(t["1m"][:, 0] >= hour) & (t["1m"][:, 0] < hour + HOUR)] for s, t in tapes.items()}
                for k in range(min(len(m) for m in minutes.values())):
                    for bar in bars_at(tapes, "1m", [m[k] for m in minutes.values()]):
                        buffers.append(bar)
                        await engine.on_bar(bar)
                before = len(store.orders())
                ms, cpu_s = await timed_cycle(
                    engine, buffers, bars_at(tapes, "1h", [t["1h"][t["1h"][:, 0] == hour][0] for t in tapes.values()])
                )
                latencies.append(ms)
                cpu.append(cpu_s)
                orders.append(len(store.orders()) - before)
            status = engine.status()
            await engine.close()
    return {
        "n": n,
        "cycles": len(hours),
        **figures(latencies, cpu),
        "rss_models_mb": rss_models,
        "rss_end_mb": rss_mb(),
        "warmup_s": warmup_s,
        "orders_per_cycle": float(np.mean(orders)),
        "decisions": status["decisions"],
        "late": status["late"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    base = min(rows, key=lambda r: r["n"])
    head = (
        f"{'N':>5} {'first':>8} {'p50':>8} {'p99':>8} {'max':>8} {'cpu s':>7} {'RSS MB':>8} {'MB/sym':>7} "
        f"{'orders':>7} {'warm s':>7}"
    )
    lines = ["1h close -> every rebalancing order committed, ms (first = the cold first cycle)", head]
    for r in rows:
        per = (r["rss_end_mb"] - base["rss_end_mb"]) / (r["n"] - base["n"]) if r["n"] > base["n"] else float("nan")
        lines.append(
            f"{r['n']:>5} {r['first_ms']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
            f"{r['cpu_s']:>7.3f} {r['rss_end_mb']:>8.1f} {per:>7.2f} {r['orders_per_cycle']:>7.1f} "
            f"{r['warmup_s']:>7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Print the portfolio benchmark table."""
    p = argparse.ArgumentParser(prog="python -m bench portfolio")
    p.add_argument("--n", default="16,100,400", help="symbol counts, comma-separated")
    p.add_argument("--cycles", type=int, default=8, help="hourly decision cycles per N (the first is reported apart)")
    p.add_argument("--threshold", type=float, default=0.0, help="model threshold (0 = the artifacts' own)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the daemon's models.threads)")
    p.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the result rows as JSON too")
    a = p.parse_args(argv)
    from daemon import log

    log.setup("warning", "json")
    if a.one:
        print(json.dumps(asyncio.run(run_one(a.one, a.cycles, a.threshold, a.threads))))
        return 0
    print(
        f"portfolio benchmark: {machine_line()}, "
        f"preset small on cpu ({a.threads} thread(s) per model), {a.cycles} hourly cycles; symbols past ETH/USDT "
        "are SYNTHETIC time-shifted copies of the real bundled tape"
    )
    flags = ["--cycles", str(a.cycles), "--threshold", str(a.threshold), "--threads", str(a.threads)]
    rows = [child("bench.portfolio", int(n), flags) for n in a.n.split(",")]
    print(table(rows))
    within = max((r["n"] for r in rows if r["p99_ms"] <= 1000.0), default=0)
    print(f"largest N with p99 <= 1 s: {within} (target: 400 on 2 cores)")
    if a.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
