"""What `bench symbols` and `bench portfolio` share: the models, N symbols' tapes, their warm
rings, an engine's store and outbox, the timed cycle, one child process per N, and the figures.

Bars: symbol 0 is the real ETH/USDT slice bundled with the local exchange; symbols 1.. are
SYNTHETIC `SYNnnnn/USDT`: copies of that real tape shifted in time by a few hours each and
rescaled in price, so that every symbol sees a different real-looking state. They are load
for the benchmarks only; nothing trains on them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHIFT_ROWS = 97  # 1m rows between two synthetic copies (~1.6 h)
STEP_MS = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}


def rss_mb() -> float:
    """This process's resident memory, MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    """The q-quantile of values (nearest rank); NaN when empty."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def seed_artifacts(out: Path) -> dict[str, Path]:
    """The seed preset of both models with random weights, features as the shipped artifacts."""
    from models import registry
    from models.artifacts import read_meta, save_artifact

    dirs = {}
    for name in ("mtf_transformer", "cnn_lstm_attn"):
        meta = read_meta(REPO / "models" / "artifacts" / name)
        small = meta["model"]["config"]
        config = registry.make_config(name, preset="seed").to_dict()
        config.update({k: v for k, v in small.items() if "features" in k})  # the inputs the features give
        keep = {k: v for k, v in meta.items() if k not in ("model", "classes", "version", "weights", "format", "format_version")}
        keep["features"] = dict(meta["features"], seq_len=config["seq_len"])
        dirs[name] = save_artifact(out / name, registry.build(name, config), name, config, keep)
    return dirs


def load_models(preset: str, device: str, threshold: float, tmp: Path, threads: int) -> dict[str, Any]:
    """Both served models (the shipped `small` artifacts, or the seed preset with random weights)."""
    from pipeline.predictor import Predictor, set_inference_threads

    set_inference_threads(threads)
    dirs = (
        {n: REPO / "models" / "artifacts" / n for n in ("mtf_transformer", "cnn_lstm_attn")}
        if preset == "small"
        else seed_artifacts(tmp)
    )
    out = {}
    for name, d in dirs.items():
        p = Predictor.load(d, device)
        if threshold > 0:
            p.threshold = threshold  # signals happen, so their commits are measured
        out[name] = p
    return out


def capacity(predictors: dict[str, Any]) -> int:
    """Ring rows: the longest window a model asks for, and a few more."""
    return max(max(int(k) for k in p.required_windows.values()) for p in predictors.values()) + 8


def synthetic(rows: np.ndarray, i: int, shift: int) -> np.ndarray:
    """Copy i of a real tape: values shifted back `shift` rows (time stamps kept), prices scaled."""
    if i == 0:
        return rows
    out = rows.copy()
    out[:, 1:] = np.roll(rows[:, 1:], shift, axis=0)
    out[:, 1:5] *= 1.0 + 0.013 * i
    return out


def symbol_tapes(n: int) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """{symbol: {timeframe: rows}} for N symbols, and the reference (BTC/USDT 1m)."""
    from daemon.localexchange.tape import bundled_tape_dir, load_tape

    tape = load_tape(bundled_tape_dir())
    eth = next(t for t in tape.values() if t.base == "ETH").bars
    btc = next(t for t in tape.values() if t.base == "BTC").bars["1m"]
    out = {}
    for i in range(n):
        symbol = "ETH/USDT" if i == 0 else f"SYN{i:04d}/USDT"
        shift = i * SHIFT_ROWS
        out[symbol] = {
            "1m": synthetic(eth["1m"], i, shift),
            "1h": synthetic(eth["1h"], i, shift // 60 + i),
            "1d": synthetic(eth["1d"], i, shift // 1440 + i),
        }
    return out, btc


def warm(tapes: dict[str, dict[str, np.ndarray]], btc: np.ndarray, start: int, capacity: int) -> Any:
    """Rings for every stream holding the bars closed before the 1m row `start`."""
    from daemon.market.bars import Buffers

    buffers = Buffers()
    close_ms = int(btc[start, 0])  # the first decided bar opens here; older ones are closed
    for symbol, tfs in tapes.items():
        for tf, rows in tfs.items():
            ring = buffers.add(symbol, tf, capacity)
            for row in rows[rows[:, 0] + STEP_MS[tf] <= close_ms][-capacity:]:
                ring.append_row(row)
    ring = buffers.add("BTC/USDT", "1m", capacity)
    for row in btc[btc[:, 0] + 60_000 <= close_ms][-capacity:]:
        ring.append_row(row)
    return buffers


@contextmanager
def engine_store(tmp: Path) -> Iterator[tuple[Any, Any]]:
    """A SQLite state file and the real outbox over it (rows are written as live; no sender runs)."""
    from daemon.alerts.notify import LogChannel
    from daemon.alerts.outbox import Outbox
    from daemon.store import Store

    store = Store(tmp / "sigd.sqlite")
    try:
        yield store, Outbox(store, [LogChannel()])
    finally:
        store.close()


def confidence_engine(
    store: Any, sink: Any, buffers: Any, predictors: dict[str, Any], symbols: Sequence[str], **options: Any
) -> Any:
    """The per-symbol (confidence) engine `bench symbols` and `bench http` time: half the equity
    spread over the symbols, the real paper broker; `options` go to Engine as they are."""
    from daemon.trading.engine import Engine
    from daemon.trading.paper import PaperBroker
    from strategies.confidence import ConfidenceStrategy
    from strategies.risk import PortfolioLimits, RiskParams

    return Engine(
        store=store,
        buffers=buffers,
        predictors=predictors,
        sink=sink,
        symbols=list(symbols),
        broker=PaperBroker(store, sink, fee=0.001, slippage=0.0005),
        strategies=[ConfidenceStrategy(combine="either")],
        risk_params=RiskParams(position_fraction=0.5 / len(symbols), max_position=1e9),
        portfolio=PortfolioLimits(max_gross_exposure=1.0),
        timeframes=("1m", "1h", "1d"),
        **options,
    )


def bars_at(symbols: Iterable[str], timeframe: str, rows: Sequence[np.ndarray]) -> list[Any]:
    """One Bar per symbol from its (ts, o, h, l, c, v) row of `timeframe`, in the same order."""
    from daemon.domain import Bar

    return [Bar(s, timeframe, int(r[0]), *map(float, r[1:])) for s, r in zip(symbols, rows)]


async def timed_cycle(engine: Any, buffers: Any, bars: Sequence[Any]) -> tuple[float, float]:
    """Hand a cycle's trigger bars to the engine as the feed does (ring, then on_bar) and wait
    until it is decided: (the first bar handed over → the cycle's commit, ms; CPU seconds)."""
    c0, w0 = time.process_time(), time.perf_counter()
    for bar in bars:
        buffers.append(bar)
        await engine.on_bar(bar)
    await engine.cycles.drain()
    return (engine.last_commit - w0) * 1000.0, time.process_time() - c0


def figures(latencies: list[float], cpu: list[float]) -> dict[str, float]:
    """The first (cold) cycle apart; p50, p99, max and the median CPU seconds of the others."""
    steady = latencies[1:] or latencies
    return {
        "first_ms": latencies[0],
        "p50_ms": pct(steady, 0.5),
        "p99_ms": pct(steady, 0.99),
        "max_ms": max(steady),
        "cpu_s": pct(cpu[1:] or cpu, 0.5),
    }


def child(module: str, n: int, flags: list[str]) -> dict[str, Any]:
    """Run `python -m module --one N flags` in a fresh process (its RSS is its own); its result."""
    cmd = [sys.executable, "-m", module, "--one", str(n), *flags]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise RuntimeError(f"N={n} failed:\n{done.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return row


def machine_line() -> str:
    """Cores and load average at the start: figures from a loaded machine say so."""
    return f"{len(os.sched_getaffinity(0))} CPU core(s), load average {os.getloadavg()[0]:.1f}"
