"""`sigd check`: validate the config and everything it points to, one line per problem."""

from __future__ import annotations

import argparse
import sys

from daemon import config as config_mod
from daemon.config import Config
from daemon.service.check import run_checks, symbol_problems
from daemon.typedtoml import MESSAGE_CHARS, clip

REPORTED = 20  # problems printed in full; a 20,000-symbol list gets these and a count, not 20,000 lines


def report(cfg: Config, problems: list[str], command: str = "check") -> None:
    """One line per problem on stderr, naming the file (`sigd run` refuses with the same lines);
    the first REPORTED problems, then how many more there are."""
    for p in problems[:REPORTED]:
        print(f"sigd {command}: {cfg.source}: {clip(p, MESSAGE_CHARS)}", file=sys.stderr)  # a 1 MB symbol: not 1 MB
    if len(problems) > REPORTED:
        print(
            f"sigd {command}: {cfg.source}: ... and {len(problems) - REPORTED} more problems "
            f"({len(problems)} in all; the first {REPORTED} are above)",
            file=sys.stderr,
        )


def check_command(args: argparse.Namespace) -> int:
    """Exit 0 when the config and what it points to are sound, else 2 with reasons: the code
    `sigd run` refuses the same problems with (and every other config error of `sigd`)."""
    cfg = config_mod.load(args.config)
    # also the other checks with unknown symbols: a user fixes every problem in one go
    problems = symbol_problems(cfg) + run_checks(cfg)
    report(cfg, problems)
    if problems:
        return 2
    print(f"sigd check: {cfg.source}: ok")
    return 0
