"""Print the saturation report (pipeline/saturation.py) of each shipped artifact as JSON.

python -m daemon.commands.saturation [--artifact DIR ...] [--tape daemon/localexchange/tape_2021] [--bars 48]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.saturation import REPO, TAPE, report


def main(argv: list[str] | None = None) -> int:
    """One JSON report per artifact."""
    p = argparse.ArgumentParser(prog="python -m daemon.commands.saturation")
    default = sorted(str(d) for d in (REPO / "models" / "artifacts").glob("**/artifact.json"))
    p.add_argument("--artifact", nargs="+", default=[str(Path(d).parent) for d in default])
    p.add_argument("--tape", default=str(TAPE))
    p.add_argument("--bars", type=int, default=48)
    args = p.parse_args(argv)
    for art in args.artifact:
        print(json.dumps(report(art, Path(args.tape), args.bars), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
