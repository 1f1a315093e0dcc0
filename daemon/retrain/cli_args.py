"""Flags of the research commands that run jobs (`sigd walk-forward`, `sigd tune`): argparse only,
so building the `sigd` parser imports nothing heavy."""

from __future__ import annotations

import argparse
from typing import Callable


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low, else a usage error naming the flag (before any Ray start-up)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    return parse


def runner(p: argparse.ArgumentParser) -> None:
    """--runner / --address / --num-cpus: flags over `[research]`."""
    p.add_argument("--runner", choices=["local", "ray"], default=None, help="default: [research] runner")
    p.add_argument("--address", default=None, help="a Ray cluster, e.g. ray://head:10001 (implies --runner ray)")
    p.add_argument("--num-cpus", type=at_least(0), default=None, help="CPUs of a local Ray (default: [research] num_cpus)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default=None, help="config file (default: the repo's config.toml)")
    p.add_argument("--data", required=True, help="tape directory")
    p.add_argument("--folds", default="30:7", metavar="TRAIN_DAYS:TEST_DAYS")
    p.add_argument("--from", dest="start", default=None, help="ISO 8601 UTC")
    p.add_argument("--to", dest="end", default=None, help="ISO 8601 UTC")
    runner(p)


def walk_forward(p: argparse.ArgumentParser) -> None:
    """`sigd walk-forward` flags."""
    _common(p)
    p.add_argument("--model-dir", default=None, help="served artifacts (default: [models] paths)")
    p.add_argument("--report", default=None, help="report directory")


def tune(p: argparse.ArgumentParser) -> None:
    """`sigd tune` flags."""
    _common(p)
    p.add_argument("--families", nargs="+", default=None, help="default: the served models of [models]")
    p.add_argument("--trials", type=at_least(1), default=20, help="trials per family")
    p.add_argument("--preset", default=None, help="fixed model size unless searched (default: [retrain] preset)")
    p.add_argument("--epochs", type=at_least(0), default=None, help="fixed epochs unless searched (default: [retrain] epochs)")
    p.add_argument("--max-batches", type=at_least(0), default=None, help="training batches per epoch")
    p.add_argument("--out", default="runs/tune", help="study directory: Tune's experiment state + leaderboard")
    p.add_argument("--name", default="study", help="study name; rerunning it resumes an interrupted study")
    p.add_argument("--seed", type=int, default=0)
