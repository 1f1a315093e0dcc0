"""`python -m bench symbols`: one engine deciding N symbols per cycle.

For each N (a fresh child process each, so that its RSS is its own) the engine is driven the
way the feed drives it: at each 1m close, every symbol's closed bar goes into its ring and then
to `Engine.on_bar`; the cycle closes when all N are in, both models run batched forward
passes over the N symbols on the inference threads (one per model, cut into a part per core
for a large cycle), and every symbol's decision (predictions,
signal, outbox rows, paper order) commits in SQLite. Measured per cycle: the first bar handed
to the engine → the cycle's commit (every symbol decided), CPU seconds of the process, and
the RSS; warm-up is the time to fill the N × (1m, 1h, 1d) rings plus the reference stream.

Bars: symbol 0 is the real ETH/USDT slice bundled with the local exchange; symbols 1.. are
SYNTHETIC `SYNnnn/USDT`: copies of that real tape shifted in time by a few hours each and
rescaled in price, so that every symbol sees a different real-looking state. They are load
for the benchmark only; nothing trains on them. Model thresholds are lowered (`--threshold`)
so that signals and paper orders happen and their commits are measured.

`--idle-s S` sleeps S seconds between cycles (the idle effect of a 1m cadence: memory that
sat idle is slow to touch again) and `--prewarm-ms` turns the engine's pre-warm on with that
lead; with `--ab` only every other cycle is pre-warmed, so that off and on are compared
under the same load. `--device cuda --preset seed` runs the seed-sized models (random weights: the compute
of the seed preset, not its accuracy) on a GPU.
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
    confidence_engine,
    engine_store,
    figures,
    load_models,
    machine_line,
    pct,
    rss_mb,
    symbol_tapes,
    timed_cycle,
    warm,
)


async def run_one(
    n: int,
    cycles: int,
    idle_s: float,
    prewarm_ms: int,
    preset: str,
    device: str,
    threshold: float,
    threads: int = 1,
    ab: bool = False,
) -> dict[str, Any]:
    """One child's run: N symbols, `cycles` decision cycles; the figures as a dict."""
    from daemon.domain import Bar
    from daemon.trading.inference import PREWARM_MS

    with tempfile.TemporaryDirectory() as tmp:
        predictors = load_models(preset, device, threshold, Path(tmp), threads)
        rss_models = rss_mb()
        t0 = time.perf_counter()
        tapes, btc = symbol_tapes(n)
        start = len(btc) - cycles - 1
        buffers = warm(tapes, btc, start, capacity(predictors))
        with engine_store(Path(tmp)) as (store, sink):
            engine = confidence_engine(
                store,
                sink,
                buffers,
                predictors,
                list(tapes),
                prewarm_ms=prewarm_ms,
                speed=60.0 / idle_s if idle_s > 0 else 1.0,
            )
            await engine.start()
            warmup_s = time.perf_counter() - t0
            rss_warm = rss_mb()
            latencies, cpu, model_ms = [], [], []
            for k in range(cycles):
                if ab:  # set before cycle k, whose end schedules the pre-warm of cycle k + 1: odd cycles get one
                    engine.prewarm_s = prewarm_ms / 1000.0 if k % 2 == 0 else 0.0
                before = model_totals(predictors)
                if idle_s > 0 and k:
                    await asyncio.sleep(idle_s)
                row = start + k
                buffers.append(Bar("BTC/USDT", "1m", int(btc[row, 0]), *map(float, btc[row, 1:])))
                ms, cpu_s = await timed_cycle(engine, buffers, bars_at(tapes, "1m", [t["1m"][row] for t in tapes.values()]))
                latencies.append(ms)
                cpu.append(cpu_s)
                model_ms.append(max(b - a for a, b in zip(before, model_totals(predictors))) / n)
            status = engine.status()
            await engine.close()
            signals = store.count("signals")
    return {
        "n": n,
        "cycles": cycles,
        "idle_s": idle_s,
        "prewarm_ms": prewarm_ms,
        "preset": preset,
        "device": device,
        **figures(latencies, cpu),
        "rss_models_mb": rss_models,
        "rss_mb": rss_warm,
        "rss_end_mb": rss_mb(),
        "warmup_s": warmup_s,
        "decisions": status["decisions"],
        "late": status["late"],
        "signals": signals,
        "prewarms": PREWARM_MS.count(),
        "model_p50_ms": pct(model_ms[1:] or model_ms, 0.5),
        **(alternate(latencies, model_ms) if ab else {}),
    }


def alternate(latencies: list[float], model_ms: list[float]) -> dict[str, float]:
    """--ab: the figures of the pre-warmed (odd) cycles and of the others, the cold first apart;
    both halves ran under the same load, one cycle after the other."""
    out = {}
    for name, first in (("on", 1), ("off", 2)):
        ms, model = latencies[first::2], model_ms[first::2]
        out |= {f"{name}_p50_ms": pct(ms, 0.5), f"{name}_p99_ms": pct(ms, 0.99), f"{name}_model_ms": pct(model, 0.5)}
    return out


def model_totals(predictors: dict[str, Any]) -> list[float]:
    """Per model, the inference ms observed so far (sigd_inference_ms): a cycle's difference,
    the slower model's over N, is the forward pass and its features per symbol; the rest of the
    latency is the engine (assembly, threads, decisions, SQLite)."""
    from daemon.trading.inference import INFERENCE_MS

    return [INFERENCE_MS.total(model=name) for name in predictors]


def flags(args: argparse.Namespace) -> list[str]:
    """The child's flags: this run's settings."""
    return [
        *("--cycles", str(args.cycles), "--idle-s", str(args.idle_s), "--prewarm-ms", str(args.prewarm_ms)),
        *("--preset", args.preset, "--device", args.device, "--threshold", str(args.threshold), "--threads", str(args.threads)),
        *(["--ab"] if args.ab else []),
    ]


def table(rows: list[dict[str, Any]]) -> str:
    base = next((r for r in rows if r["n"] == 1), None)
    head = (
        f"{'N':>5} {'first':>8} {'p50':>8} {'p99':>8} {'max':>8} {'cpu s':>7} {'RSS MB':>8} "
        f"{'MB/sym':>7} {'warm s':>7} {'signals':>8} {'model ms':>9}"
    )
    lines = ["bar close -> every symbol decided and committed, ms (first = the cold first cycle)", head]
    for r in rows:
        per = (r["rss_end_mb"] - base["rss_end_mb"]) / (r["n"] - 1) if base and r["n"] > 1 else float("nan")
        lines.append(
            f"{r['n']:>5} {r['first_ms']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
            f"{r['cpu_s']:>7.3f} {r['rss_end_mb']:>8.1f} {per:>7.2f} {r['warmup_s']:>7.2f} {r['signals']:>8} "
            f"{r['model_p50_ms']:>9.1f}"
        )
        if "on_p50_ms" in r:
            lines.append(
                f"{'':>5} pre-warm off / on (alternate cycles): p50 {r['off_p50_ms']:.1f} / {r['on_p50_ms']:.1f} ms, "
                f"p99 {r['off_p99_ms']:.1f} / {r['on_p99_ms']:.1f} ms, model ms {r['off_model_ms']:.1f} / {r['on_model_ms']:.1f}; "
                f"{r['prewarms']} pre-warm passes"
            )
    return "\n".join(lines)


def floor(rows: list[dict[str, Any]], preset: str, device: str) -> str:
    """Symbols served within 1 s of the close, beside the FLOP floor of the largest batch."""
    from bench.models import matmul_tflops, mtf_flops
    from models import registry

    within = max((r["n"] for r in rows if r["p99_ms"] <= 1000.0), default=0)
    flops = mtf_flops(registry.make_config("mtf_transformer", preset=preset))
    n = max(r["n"] for r in rows)
    line = (
        f"symbols decided within 1 s of the close (p99): {within} of those tried; mtf_transformer forward "
        f"{flops / 1e9:.2f} GFLOP per symbol, {n * flops / 1e9:.1f} GFLOP for N={n}"
    )
    if device.startswith("cuda"):
        import torch

        rate = matmul_tflops(device, torch.float32)
        line += f"; floor at the measured fp32 matmul rate {rate:.0f} TFLOP/s: {n * flops / (rate * 1e12) * 1e3:.2f} ms"
    return line


def main(argv: list[str]) -> int:
    """Print the symbols benchmark table."""
    p = argparse.ArgumentParser(prog="python -m bench symbols")
    p.add_argument("--n", default="1,10,50,200", help="symbol counts, comma-separated")
    p.add_argument("--cycles", type=int, default=12, help="decision cycles per N (the first is reported apart)")
    p.add_argument("--idle-s", type=float, default=0.0, help="seconds between cycles (0 = tight loop)")
    p.add_argument("--prewarm-ms", type=int, default=0, help="engine pre-warm lead (needs --idle-s > lead)")
    p.add_argument("--ab", action="store_true", help="pre-warm every other cycle only: off and on side by side")
    p.add_argument("--preset", choices=("small", "seed"), default="small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threshold", type=float, default=0.34, help="model threshold (0 = the artifacts' own)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the daemon's models.threads)")
    p.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the result rows as JSON too")
    a = p.parse_args(argv)
    if a.ab and not 0 < a.prewarm_ms < a.idle_s * 1000:
        p.error("--ab needs --prewarm-ms > 0 and --idle-s longer than the pre-warm lead")
    from daemon import log

    log.setup("warning", "json")
    if a.one:
        print(
            json.dumps(
                asyncio.run(run_one(a.one, a.cycles, a.idle_s, a.prewarm_ms, a.preset, a.device, a.threshold, a.threads, a.ab))
            )
        )
        return 0
    print(
        f"symbols benchmark: {machine_line()}, "
        f"preset {a.preset} on {a.device} ({a.threads} thread(s)), "
        f"{a.cycles} cycles, idle {a.idle_s:g} s between cycles, prewarm {a.prewarm_ms} ms{' on every other cycle' if a.ab else ''}; "
        f"symbols past ETH/USDT are SYNTHETIC time-shifted copies of the real bundled tape"
    )
    rows = [child("bench.symbols", int(n), flags(a)) for n in a.n.split(",")]
    print(table(rows))
    print(floor(rows, a.preset, a.device))
    if a.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
