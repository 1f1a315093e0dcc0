"""Live scoring's cost on the decision path: `Shadow.tradable()` with a LiveScorer over a real
temporary SQLite store holding random-walk 1m bars and two models' stored predictions.

    python -m bench scoring [--window 1440] [--decisions 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from daemon.domain import Bar, Prediction, Side, class_scores
from daemon.store import Store
from daemon.trading.scoring import LiveScorer, ModelTarget, Shadow

T0 = 1_754_000_000_000 - 1_754_000_000_000 % 60_000
MODELS = ("a", "b")


def _predictions(ts: int, rng: np.random.Generator) -> list[Prediction]:
    out = []
    for m in MODELS:
        p = rng.dirichlet([1.0, 1.0, 1.0])
        out.append(Prediction(m, "v1", ts, class_scores(p), Side(int(np.argmax(p))), float(p.max()), 0.5))
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench scoring")
    ap.add_argument("--window", type=int, default=1440)
    ap.add_argument("--decisions", type=int, default=200)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    horizon = 120
    n = a.window + 2 * horizon + a.decisions + 10  # every decision in the loop finds a prediction to score
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    bars = [Bar("ETH/USDT", "1m", T0 + i * 60_000, c, c, c, c, 1.0) for i, c in enumerate(close.tolist())]
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "s.sqlite")
        store.add_bars(bars)
        warm = a.window + horizon
        for b in bars[:warm]:
            store.add_predictions("ETH/USDT", _predictions(b.ts, rng), 0)
        shadow = Shadow(only_validated=True)
        target = ModelTarget(horizon, 0.008, 0.003)
        shadow.scorer = LiveScorer(store, "ETH/USDT", {m: target for m in MODELS}, window=a.window)
        t = time.perf_counter()
        shadow.tradable([])
        first = (time.perf_counter() - t) * 1000
        times = []
        for b in bars[warm : warm + a.decisions]:
            store.add_predictions("ETH/USDT", _predictions(b.ts, rng), 0)  # as the engine does, then asks
            t = time.perf_counter()
            shadow.tradable([])
            times.append((time.perf_counter() - t) * 1000)
        scored = shadow.scorer.status()["a"]["scored"]
        store.close()
    print("| models | window | first call | per decision p50 / p99 | scored |")
    print("|---|---|---|---|---|")
    print(
        f"| {len(MODELS)} | {a.window} | {first:.1f} ms | {np.median(times):.2f} / {np.percentile(times, 99):.2f} ms | {scored} |"
    )
    return 0
