"""`python -m bench [NAME ...] [--flag ...]`: run the named benchmarks (all by default) and print tables."""

from __future__ import annotations

import importlib
import sys

# name -> module with a `main(argv) -> int`
BENCHMARKS: dict[str, str] = {
    "service": "bench.service",
    "backtest": "bench.backtest",
    "alerts": "bench.alerts",
    "feed": "bench.feed",  # market data: bar-close latency, ingest throughput, ring cost, RSS
    "models": "bench.models",
    "train": "bench.train_throughput",
    "research": "bench.research",  # walk-forward jobs: local runner vs Ray local mode
    "symbols": "bench.symbols",
    "portfolio": "bench.portfolio",  # 1h portfolio cycle over N symbols: close -> every rebalancing order committed
    "dataset": "bench.dataset",  # research panel: 16 pairs x 8 years, cold (CSV) vs warm (Parquet cache) load
    "http": "bench.http",  # 1,000 idle websockets + 200 /status per s: close -> decision p99, quiet vs loaded
    "scoring": "bench.scoring",  # live scoring + shadow filter on the decision path  # N symbols in one engine: close -> all decided, CPU, RSS per symbol
}


def main(argv: list[str]) -> int:
    # `python -m bench NAME --flag ...`: flags after the names go to every named benchmark
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    names, flags = argv[:split] or list(BENCHMARKS), argv[split:]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    rc = 0
    for name in names:
        print(f"\n== {name} ==")
        rc |= importlib.import_module(BENCHMARKS[name]).main(flags)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
