"""Train the shipped hourly artifacts (models/artifacts/hourly/<family>): the daemon's two
families at a 1h trigger on the hourly data set, 1d and BTC-1h context.

    python -m daemon.commands.ship_hourly --data ../shared/data/hourly [--out models/artifacts/hourly]

For each family a few label horizons are trained (CANDIDATES); the one with the best
VALIDATION Sharpe (the threshold search's own split, 70/15/15 chronological) is kept. The test
split (the newest 15 %: 2025-03 onward) is reported, never used to choose. Research
(`sigd research`, docs/guides/research.md) said why the horizon is long: hourly rebalancing on
1-bar signals loses to its own costs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from models.targets import TargetSpec
from pipeline.train import TrainSpec, train

SYMBOLS = ("ETH/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "LTC/USDT", "BTC/USDT")  # the bundled 2021 tape's coins
START = "2019-01-01T00:00:00Z"
# (horizon in 1h bars, |return| for LONG/SHORT, |return| below which FLAT)
CANDIDATES: tuple[tuple[int, float, float], ...] = ((12, 0.015, 0.005), (24, 0.02, 0.007))
FAMILIES: dict[str, dict[str, object]] = {
    # small sizes with a 24-bar window: minutes of CPU each on 2 shared cores
    "mtf_transformer": {"seq_len": 24},
    "cnn_lstm_attn": {"seq_len": 24},
}


def ship(
    data: str,
    out: str = "models/artifacts/hourly",
    work: str = "runs/hourly_ship",
    families: Sequence[str] = tuple(FAMILIES),
    epochs: int = 3,
    max_batches: int = 40,
    log: Callable[[str], None] | None = None,
    on_trained: Callable[[str, int, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Train every family's candidates, keep the best on VALIDATION, copy it to `out`; return the choice."""
    choice: dict[str, dict[str, Any]] = {}
    for family in families:
        results = []
        for horizon, threshold, zone in CANDIDATES:
            spec = TrainSpec(
                family,
                preset="small",
                config=FAMILIES[family],
                data_dirs=(data,),
                symbols=SYMBOLS,
                start=START,
                target=TargetSpec("classification", horizon, threshold, zone),
                epochs=epochs,
                batch_size=256,
                max_batches=max_batches,
                max_val=4000,
                device="cpu",
                trigger_timeframe="1h",
            )
            res = train(spec, Path(work) / f"{family}-h{horizon}", log=log)
            if on_trained is not None:
                on_trained(family, horizon, res.metrics)
            results.append((res.metrics["validation"]["sharpe"], horizon, res.artifact_dir))
        sharpe, horizon, best = max(results, key=lambda r: r[0])  # validation only
        choice[family] = {"horizon": horizon, "validation_sharpe": sharpe, "candidates": [(h, s) for s, h, _ in results]}
        dest = Path(out) / family
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(best, dest)
    return choice
