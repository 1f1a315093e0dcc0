"""`bench symbols` and `bench portfolio` on their shared start-up (bench/engineload.py), at a
few symbols and cycles: every cycle decides every symbol once, its commit is timed, and the
figures come out (the speed itself is the benchmarks' to report, never a test's)."""

from __future__ import annotations

import math

from bench import portfolio, symbols
from bench.engineload import figures, pct


def test_figures_keep_the_cold_first_cycle_apart() -> None:
    out = figures([50.0, 3.0, 5.0, 4.0], [0.5, 0.01, 0.03, 0.02])
    assert out["first_ms"] == 50.0 and out["p50_ms"] == 4.0 and out["max_ms"] == 5.0 and out["cpu_s"] == 0.02
    assert pct([], 0.5) != pct([], 0.5)  # NaN when nothing was measured
    assert pct([1.0, 2.0, 3.0], 0.99) == 3.0


async def test_symbols_bench_decides_every_symbol_every_cycle() -> None:
    row = await symbols.run_one(3, 3, 0.0, 0, "small", "cpu", 0.34, 1)
    assert row["decisions"] == 3 * 3 and row["late"] == 0
    assert 0 < row["p50_ms"] <= row["max_ms"] and math.isfinite(row["first_ms"])


async def test_portfolio_bench_commits_every_cycle_with_its_orders() -> None:
    row = await portfolio.run_one(4, 2, 0.0, 1)
    assert row["cycles"] == 2 and row["decisions"] == 4 * 2 and row["late"] == 0
    assert row["orders_per_cycle"] > 0  # rebalancing orders were committed and counted
    assert 0 < row["p50_ms"] and row["cpu_s"] > 0
