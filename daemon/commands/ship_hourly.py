"""Train the shipped hourly artifacts (pipeline/hourly_ship.py) and print each candidate's metrics
and the choice made on validation.

    python -m daemon.commands.ship_hourly --data ../shared/data/hourly [--out models/artifacts/hourly]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from daemon.commands.train import format_metrics
from pipeline.hourly_ship import FAMILIES, ship


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, train, print."""
    p = argparse.ArgumentParser(prog="python -m daemon.commands.ship_hourly")
    p.add_argument("--data", required=True, help="folder of <BASE>_<QUOTE>-1h.csv.gz files (the hourly data set)")
    p.add_argument("--out", default="models/artifacts/hourly")
    p.add_argument("--work", default="runs/hourly_ship")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-batches", type=int, default=40)
    args = p.parse_args(argv)

    def trained(family: str, horizon: int, metrics: dict[str, Any]) -> None:
        print(format_metrics(f"{family} h={horizon}", metrics), flush=True)

    choice = ship(
        args.data,
        args.out,
        args.work,
        args.families,
        args.epochs,
        args.max_batches,
        log=lambda s: print(s, file=sys.stderr, flush=True),
        on_trained=trained,
    )
    print(json.dumps(choice, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
