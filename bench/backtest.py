"""`python -m bench backtest`: backtest throughput and the bar-by-bar vs batched speed ratio.

Throughput: the whole 1m period of a data dir (default shared/data: 91 days of ETH/USDT and
BTC/USDT 1m, with 1h and 1d) through `sigd backtest`'s path with the configured (`small`)
models, torch on 2 threads: trigger bars per second, all bars per second, and where the time
goes (batched inference vs the engine replay). Ratio: the same slice of trigger bars replayed
with batched inference and bar by bar (the engine asking the model on every bar).

Pin it to two cores as the target says: `taskset -c 0,1 python -m bench backtest`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import torch

from daemon import config
from daemon import log as logging
from daemon.research import backtest, replay
from daemon.research.report import iso
from daemon.store import Store

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _timed(plan: backtest.Plan, predictors: dict, batch: bool, report: str | None = None) -> tuple[float, float, int]:
    """(inference s, replay s, signals) of one run; inference is 0 when bar by bar.
    With `report`, the run's report is written there too (not timed)."""
    t0 = time.perf_counter()
    serving = backtest.batched(plan, predictors, plan.trigger_ts()) if batch else predictors
    t1 = time.perf_counter()
    store = Store(":memory:")
    counts = asyncio.run(backtest.replay(plan, serving, store))
    t2 = time.perf_counter()
    signals = len(store.signals(limit=2**31))
    if report:
        from daemon.research.report import terminal_summary, write_report

        result = backtest.collect(plan, store, backtest.truth_function(plan, predictors), counts)
        print(terminal_summary(write_report(result, Path(report))) + "\n")
    store.close()
    return t1 - t0, t2 - t1, signals


def _ratio(plan: backtest.Plan, predictors: dict, n: int) -> None:
    """Print the bar-by-bar vs batched speed ratio on the first `n` trigger bars."""
    plan.end_ms = plan.start_ms + n * 60_000
    batched = min(sum(_timed(plan, predictors, batch=True)[:2]) for _ in range(2))
    by_bar = min(sum(_timed(plan, predictors, batch=False)[:2]) for _ in range(2))
    print(
        f"\n{n} trigger bars (best of 2): batched {batched:.2f} s ({n / batched:.0f} bars/s), "
        f"bar by bar {by_bar:.2f} s ({n / by_bar:.0f} bars/s): bar-by-bar / batched = {by_bar / batched:.1f}x"
    )


def main(argv: list[str]) -> int:
    """Print the throughput table and the speed ratio."""
    ap = argparse.ArgumentParser(prog="python -m bench backtest")
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("-c", "--config", default=None)
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ratio-bars", type=int, default=2000, help="trigger bars for the bar-by-bar comparison")
    ap.add_argument("--days", type=float, default=0, help="only the first N days (0 = the whole period)")
    ap.add_argument("--report", default=None, help="also write the whole run's report here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.setup("error")
    cfg = config.load(args.config)
    t0 = time.perf_counter()
    tape = replay.load_streams(Path(args.data), backtest.live_order(cfg), (cfg.exchange.symbol, "1m"))
    plan = backtest.make_plan(cfg, tape, None, None)
    if args.days:
        plan.end_ms = min(plan.end_ms, plan.start_ms + int(args.days * 86_400_000))
    predictors = backtest.load_predictors(backtest.artifact_dirs(cfg, args.model_dir), device="cpu")
    load_s = time.perf_counter() - t0
    triggers = len(plan.trigger_ts())
    total = len(replay.replay_order(plan.tape, plan.order, plan.start_ms, plan.end_ms)[0])
    infer_s, replay_s, signals = _timed(plan, predictors, batch=True, report=args.report)
    whole = load_s + infer_s + replay_s
    print(
        f"data {args.data}: {iso(plan.start_ms)} → {iso(plan.end_ms)}, models "
        f"{', '.join(f'{n} {p.version}' for n, p in predictors.items())}, torch threads {args.threads}"
    )
    print(f"{'':34}{'seconds':>10}{'bars/s':>12}")
    print(f"{'load tape + models':34}{load_s:>10.1f}")
    print(f"{'batched inference (' + str(triggers) + ' trigger bars)':34}{infer_s:>10.1f}{triggers / infer_s:>12.0f}")
    print(f"{'engine replay (' + str(total) + ' bars)':34}{replay_s:>10.1f}{total / replay_s:>12.0f}")
    print(f"{'whole backtest, trigger bars':34}{whole:>10.1f}{triggers / whole:>12.0f}   ({signals} signals)")
    print(f"{'whole backtest, all bars':34}{whole:>10.1f}{total / whole:>12.0f}")
    _ratio(plan, predictors, args.ratio_bars)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
