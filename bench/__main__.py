"""`python -m bench [NAME ...]`: run the named benchmarks (all by default) and print tables."""

from __future__ import annotations

import importlib
import sys

# name -> module with a `main(argv) -> int`
BENCHMARKS: dict[str, str] = {
    "service": "bench.service",
    "backtest": "bench.backtest",
    "alerts": "bench.alerts",
}


def main(argv: list[str]) -> int:
    # `python -m bench NAME --flag ...`: options after a single name go to that benchmark
    if len(argv) > 1 and argv[0] in BENCHMARKS and argv[1].startswith("-"):
        print(f"\n== {argv[0]} ==")
        return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:])
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    rc = 0
    for name in names:
        print(f"\n== {name} ==")
        rc |= importlib.import_module(BENCHMARKS[name]).main([])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
