"""The retrain's subprocess side (never run in the daemon's process).

`python -m daemon.commands.worker job --spec JOB.json --out RESULT.json` runs one job of
daemon/retrain/jobs.py (what the local runner's subprocess mode and the nightly retrain run).
The older single steps stay for running by hand:

`python -m daemon.commands.worker train ...` calls `pipeline.train.train`, the very code
path of `sigd train` (fit, threshold optimized on validation, atomic artifact).

`python -m daemon.commands.worker score --data TAPE --from MS --symbol ETH/USDT --current DIR
--new DIR --out scores.json` scores both artifacts on the same unseen bars
(daemon/retrain/scoring.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from daemon.retrain.jobs import JobFailed, execute, from_json, to_json
from daemon.retrain.scoring import score_pair
from pipeline.spec import TrainSpec


def train(a: argparse.Namespace) -> int:
    """Fit one model on the exported history: the code path of `sigd train`."""
    from daemon.commands.train import format_metrics  # both import torch: only for this step
    from pipeline.train import train

    spec = TrainSpec(
        a.model,
        preset=a.preset,
        data_dirs=(str(a.data),),
        symbols=(a.symbol,),
        epochs=a.epochs or 0,
        seed=a.seed,
        device=a.device,
        fee=a.fee,
        max_batches=a.max_batches,
    )
    res = train(spec, a.out, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_metrics(a.model, res.metrics))
    print(f"artifact {res.artifact_dir} (version {res.version})")
    return 0


def score(a: argparse.Namespace) -> int:
    """Score the current and the new artifact on the holdout; write the JSON atomically."""
    result = score_pair(a.data, a.from_ms, a.symbol, a.current, a.new, a.fee)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.rename(a.out)
    print(json.dumps(result))
    return 0


def job(a: argparse.Namespace) -> int:
    """Run one job of daemon/retrain/jobs.py from its JSON file; write the result's JSON atomically."""
    result = execute(from_json(a.spec.read_text()))
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(to_json(result))
    tmp.rename(a.out)
    if isinstance(result, JobFailed):
        print(result.error, file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the retrain subprocesses."""
    p = argparse.ArgumentParser(prog="python -m daemon.retrain.worker")
    sub = p.add_subparsers(dest="step", required=True)
    t = sub.add_parser("train")
    t.add_argument("--model", required=True)
    t.add_argument("--preset", default="small")
    t.add_argument("--epochs", type=int, default=0)
    t.add_argument("--max-batches", type=int, default=0)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--out", required=True, type=Path)
    s = sub.add_parser("score")
    s.add_argument("--from", dest="from_ms", required=True, type=int)
    s.add_argument("--current", required=True, type=Path)
    s.add_argument("--new", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path)
    for q in (t, s):
        q.add_argument("--data", required=True, type=Path)
        q.add_argument("--symbol", required=True)
        q.add_argument("--fee", type=float, default=0.001)
    j = sub.add_parser("job")
    j.add_argument("--spec", required=True, type=Path)
    j.add_argument("--out", required=True, type=Path)
    a = p.parse_args(argv)
    return {"train": train, "score": score, "job": job}[a.step](a)


if __name__ == "__main__":
    sys.exit(main())
