"""`python -m bench [NAME ...]`: run the named benchmarks (all by default) and print tables."""

from __future__ import annotations

import importlib
import sys

# name -> module with a `main(argv) -> int`
BENCHMARKS: dict[str, str] = {
    "service": "bench.service",
    "backtest": "bench.backtest",
}


def main(argv: list[str]) -> int:
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
