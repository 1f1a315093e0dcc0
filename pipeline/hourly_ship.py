"""Train the shipped hourly artifacts (models/artifacts/hourly/<family>): the daemon's two
families at a 1h trigger on the hourly data set, 1d and BTC-1h context.

    python -m pipeline.hourly_ship --data ../shared/data/hourly [--out models/artifacts/hourly]

For each family a few label horizons are trained (CANDIDATES); the one with the best
VALIDATION Sharpe (the threshold search's own split, 70/15/15 chronological) is kept. The test
split (the newest 15 %: 2025-03 onward) is reported, never used to choose. Research
(`sigd research`, docs/guides/research.md) said why the horizon is long: hourly rebalancing on
1-bar signals loses to its own costs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from models.targets import TargetSpec
from pipeline.train import TrainSpec, format_metrics, train

SYMBOLS = ("ETH/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "LTC/USDT", "BTC/USDT")  # the bundled 2021 tape's coins
START = "2019-01-01T00:00:00Z"
# (horizon in 1h bars, |return| for LONG/SHORT, |return| below which FLAT)
CANDIDATES: tuple[tuple[int, float, float], ...] = ((12, 0.015, 0.005), (24, 0.02, 0.007))
FAMILIES: dict[str, dict[str, object]] = {
    # small sizes with a 24-bar window: minutes of CPU each on 2 shared cores
    "mtf_transformer": {"seq_len": 24},
    "cnn_lstm_attn": {"seq_len": 24},
}


def main(argv: list[str] | None = None) -> int:
    """Train every family's candidates, keep the best on validation, copy it to --out."""
    p = argparse.ArgumentParser(prog="python -m pipeline.hourly_ship")
    p.add_argument("--data", required=True, help="folder of <BASE>_<QUOTE>-1h.csv.gz files (the hourly data set)")
    p.add_argument("--out", default="models/artifacts/hourly")
    p.add_argument("--work", default="runs/hourly_ship")
    p.add_argument("--families", nargs="+", default=list(FAMILIES))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-batches", type=int, default=40)
    args = p.parse_args(argv)
    choice = {}
    for family in args.families:
        results = []
        for horizon, threshold, zone in CANDIDATES:
            spec = TrainSpec(
                family,
                preset="small",
                config=FAMILIES[family],
                data_dirs=(args.data,),
                symbols=SYMBOLS,
                start=START,
                target=TargetSpec("classification", horizon, threshold, zone),
                epochs=args.epochs,
                batch_size=256,
                max_batches=args.max_batches,
                max_val=4000,
                device="cpu",
                trigger_timeframe="1h",
            )
            res = train(spec, Path(args.work) / f"{family}-h{horizon}", log=lambda s: print(s, file=sys.stderr, flush=True))
            print(format_metrics(f"{family} h={horizon}", res.metrics), flush=True)
            results.append((res.metrics["validation"]["sharpe"], horizon, res.artifact_dir))
        sharpe, horizon, best = max(results, key=lambda r: r[0])  # validation only
        choice[family] = {"horizon": horizon, "validation_sharpe": sharpe, "candidates": [(h, s) for s, h, _ in results]}
        dest = Path(args.out) / family
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(best, dest)
    print(json.dumps(choice, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
