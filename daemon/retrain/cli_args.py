"""Flags of the research commands that run jobs (`sigd walk-forward`, `sigd tune`): argparse only,
so building the `sigd` parser imports nothing heavy."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from models.registry import FAMILIES  # a dict of names: no torch

PRESETS = ("tiny", "small", "seed")  # every family's size presets (models/*.py PRESETS)


def family_name(text: str) -> str:
    """An argparse type: a registered model family, else a usage error naming it and the known ones
    (at parse time, before any data is read)."""
    if text not in FAMILIES:
        raise argparse.ArgumentTypeError(f"unknown model family {text!r}; known: {', '.join(FAMILIES)}")
    return text


def iso_instant(text: str) -> str:
    """An argparse type: an ISO 8601 instant (a date, or a date and time; UTC unless it says),
    kept as text for the command; a usage error at parse time otherwise."""
    from datetime import datetime

    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 instant (e.g. 2025-06-01T00:00:00Z)") from None
    return text


def existing_dir(text: str) -> str:
    """An argparse type: a directory that exists ("argument --data: no such directory: PATH")."""
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such directory: {text}")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"not a directory: {text}")
    return text


def number(low: float, *, above: bool, below: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number > low (`above`) or >= low, and < `below` when given;
    else a usage error naming the flag."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low or (above and value == low) or (below is not None and value >= below):
            bounds = f"{'>' if above else '>='} {low:g}" + (f" and < {below:g}" if below is not None else "")
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text}")
        return value

    return parse


def parse_days(spec: str, flag: str) -> tuple[int, int]:
    """ "TRAIN_DAYS:TEST_DAYS" -> (train_days, test_days); ValueError naming `flag` otherwise."""
    try:
        train, test = (int(p) for p in spec.split(":"))
    except ValueError:
        raise ValueError(f"{flag} {spec!r}: expected TRAIN_DAYS:TEST_DAYS, e.g. 30:7") from None
    if train < 1 or test < 1:
        raise ValueError(f"{flag} {spec!r}: both day counts must be >= 1")
    return train, test


def days_spec(text: str) -> str:
    """An argparse type for TRAIN_DAYS:TEST_DAYS (kept as the text the commands parse)."""
    try:
        parse_days(text, "")
    except ValueError as exc:  # "argument --folds: '3:x': expected ..." (argparse names the flag)
        raise argparse.ArgumentTypeError(str(exc).lstrip()) from None
    return text


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
    p.add_argument("--data", required=True, type=existing_dir, help="tape directory")
    p.add_argument("--folds", default="30:7", type=days_spec, metavar="TRAIN_DAYS:TEST_DAYS")
    p.add_argument("--from", dest="start", default=None, type=iso_instant, help="ISO 8601 UTC")
    p.add_argument("--to", dest="end", default=None, type=iso_instant, help="ISO 8601 UTC")
    runner(p)


def walk_forward(p: argparse.ArgumentParser) -> None:
    """`sigd walk-forward` flags."""
    _common(p)
    p.add_argument("--model-dir", default=None, help="served artifacts (default: [models] paths)")
    p.add_argument("--report", default=None, help="report directory")
    p.add_argument(
        "--timeframe",
        default=None,
        choices=["1m", "1h", "4h", "1d"],
        help="decide and train the folds at this trigger (as `sigd train --timeframe`; 1h/4h/1d need only 1h files; "
        "default: the config's decision timeframe)",
    )


def tune(p: argparse.ArgumentParser) -> None:
    """`sigd tune` flags."""
    _common(p)
    p.add_argument("--families", nargs="+", default=None, help="default: the served models of [models]")
    p.add_argument("--trials", type=at_least(1), default=20, help="trials per family")
    p.add_argument("--preset", default=None, choices=PRESETS, help="fixed model size unless searched (default: [retrain] preset)")
    p.add_argument("--epochs", type=at_least(0), default=None, help="fixed epochs unless searched (default: [retrain] epochs)")
    p.add_argument("--max-batches", type=at_least(0), default=None, help="training batches per epoch")
    p.add_argument("--out", default="runs/tune", help="study directory: Tune's experiment state + leaderboard")
    p.add_argument("--name", default="study", help="study name; rerunning it resumes an interrupted study")
    p.add_argument("--seed", type=int, default=0)
