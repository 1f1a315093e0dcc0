"""`python -m bench dataset`: load the research panel (every pair of a folder) cold and warm.

Cold = an empty Parquet cache (every gzip CSV parsed, the cache written); warm = the same
load again, served from the cache. Each load runs in a fresh process so that the OS file cache
of the CSVs is the only thing shared. Target (issue 15): warm ≤ 5 s for 16 pairs × 8 years.
Timeframes 1h, 4h and 1d (the last two derived from the 1h files).

    python -m bench dataset [--data ../shared/data/hourly] [--timeframes 1h,4h,1d]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hourly"

CHILD = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from daemon.research.dataset import load_panel
p = load_panel(Path(sys.argv[1]), sys.argv[2], cache_dir=Path(sys.argv[3]))
print(json.dumps({"s": time.perf_counter() - t0, "T": len(p.ts), "S": len(p.symbols),
                  "pair_bars": int(p.present.sum()), "gaps": sum(p.gaps.values())}))
"""


def load_once(data: Path, timeframe: str, cache: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), timeframe, str(cache)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench dataset")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of <BASE>_<QUOTE>-1h.csv.gz files")
    ap.add_argument("--timeframes", default="1h,4h,1d")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"--data: {args.data} is not a folder", file=sys.stderr)
        return 2
    print(f"data: {args.data}  (each load in a fresh process, imports included)")
    print(f"{'timeframe':>9} {'pairs':>5} {'rows':>7} {'pair-bars':>10} {'gaps':>6} {'cold s':>7} {'warm s':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for tf in args.timeframes.split(","):
            cache = Path(tmp) / tf  # a fresh cache per timeframe: cold means cold
            cold = load_once(args.data, tf, cache)
            warm = min((load_once(args.data, tf, cache) for _ in range(3)), key=lambda r: r["s"])
            print(
                f"{tf:>9} {warm['S']:>5} {warm['T']:>7} {warm['pair_bars']:>10} {warm['gaps']:>6} "
                f"{cold['s']:>7.2f} {warm['s']:>7.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
