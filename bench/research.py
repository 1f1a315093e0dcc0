"""`python -m bench research`: the same walk-forward jobs on the local runner and on Ray (local mode).

`python -m bench research --grid cpcv`: the CPCV x configurations grid of `sigd calibrate`
(ridge on a planted feature and distractors, every CPCV split per trial, the gate on the median
path) on `--data` (default: the 16 hourly pairs, 2017-2026, 1h decisions). Trials: `--trials`
configurations; figures: time per trial and for the whole grid on the local runner and on
Ray with `--cpus` CPUs (the data put once in the object store), the speed-up, and whether both
runners gave the same predictions split by split.

Jobs: `--folds` walk-forward folds (`--train-days` of training each, sliding one day) x the two
served families (cnn_lstm_attn, mtf_transformer), `--preset` models, `--epochs` and
`--max-batches` fixed, on the bundled tape (14 days of ETH/USDT and BTC/USDT). Each job is
exactly what `sigd walk-forward` submits (daemon/research/walkforward.py:fold_jobs).

Figures: wall time of all jobs on LocalRunner (one after another, in this process) and on
RayRunner with `--cpus` CPUs (Ray start-up timed apart), the speed-up, the peak RSS of the
whole process tree (driver + Ray's processes, sampled every 0.2 s), and Ray's overhead per job:
one job alone on a warm Ray worker minus the same job run locally. Both runners must produce
the same artifact versions (checked).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.research import replay, walkforward
from daemon.retrain.jobs import ArtifactRef, TrainJob
from daemon.retrain.runners import LocalRunner, RayRunner
from pipeline.spec import DEFAULT_DATA, REPO

FAMILIES = {
    "cnn_lstm_attn": REPO / "models" / "artifacts" / "cnn_lstm_attn",
    "mtf_transformer": REPO / "models" / "artifacts" / "mtf_transformer",
}
TRIGGER = ("ETH/USDT", "1m")


def jobs_for(work: Path, folds: int, train_days: int, kw: dict[str, Any]) -> list[TrainJob]:
    """Walk-forward training jobs of `folds` folds x both families on the bundled tape."""
    data = Path(DEFAULT_DATA[0])
    tape = replay.load_streams(data, replay.discover(data), TRIGGER)
    ts = tape.streams[TRIGGER][:, 0]
    plan = walkforward.plan_folds(int(ts[0]), int(ts[-1]) + 60_000, train_days, 1)[:folds]
    return [j for f in plan for j in walkforward.fold_jobs(f, tape, TRIGGER, FAMILIES, work, kw)]


class PeakRSS:
    """Peak resident memory of this process and all its descendants, sampled in a thread."""

    def __init__(self, every_s: float = 0.2) -> None:
        self.every_s, self.peak, self._stop = every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(os.getpid()))
            time.sleep(self.every_s)


def tree_rss(root: int) -> int:
    """Bytes resident in `root` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            statm = Path(f"/proc/{name}/statm").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(name)] = int(fields[1])
        rss[int(name)] = int(statm.split()[1]) * page
    keep, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in keep:
                keep.add(child)
                frontier.append(child)
    return sum(rss.get(p, 0) for p in keep)


def timed(run: Callable[[], list]) -> tuple[float, list, int]:
    """(wall s, results, peak tree RSS bytes)."""
    with PeakRSS() as rss:
        t0 = time.perf_counter()
        out = run()
        wall = time.perf_counter() - t0
    return wall, out, rss.peak


def cpcv_grid(a: argparse.Namespace) -> int:
    """The calibration's CPCV grid: local runner vs Ray, per trial and whole grid."""
    import numpy as np

    from daemon.research import calibration

    t0 = time.perf_counter()
    ts, close, names = calibration.load_closes(Path(a.data), [], None, None)
    load_s = time.perf_counter() - t0
    spec = calibration.CalibrationSpec(sharpes=(1.5,), seeds=a.trials, n_groups=a.groups, n_test_groups=a.test_groups)
    trials = [calibration.Trial(seed, 0, 0.02, False, spec) for seed in range(a.trials)]
    data = {"ts": ts, "close": close}
    print(
        f"{len(trials)} trials x {len(calibration.cpcv.cpcv_splits(ts, a.groups, a.test_groups, ts, 0))} CPCV splits; "
        f"{len(names)} pairs x {len(ts)} hourly bars ({len(ts) / 8760:.1f} years), 1h decisions; "
        f"load {load_s:.1f} s; load average before: {os.getloadavg()[0]:.1f}"
    )
    local_s, local, local_rss = timed(lambda: LocalRunner().map(calibration.run_trial, trials, shared=data))
    t0 = time.perf_counter()
    ray_runner = RayRunner(num_cpus=a.cpus)
    start_s = time.perf_counter() - t0
    ray_s, on_ray, ray_rss = timed(lambda: ray_runner.map(calibration.run_trial, trials, shared=data))
    # compared to float rounding (BLAS may sum in another order with another thread count),
    # relative to the predictions' scale; NaN (no inputs) where the other runner has NaN
    gap = max(
        float(np.nanmax(np.abs(p - q)) / np.nanmax(np.abs(p)))
        for x, y in zip(local, on_ray)
        for p, q in zip(x.split_predictions, y.split_predictions)
    )
    same = (
        gap < 1e-9
        and all(x.passed == y.passed and abs(x.dsr - y.dsr) < 1e-9 for x, y in zip(local, on_ray))
        and all(
            np.array_equal(np.isnan(p), np.isnan(q))  # the same decisions without a prediction
            for x, y in zip(local, on_ray)
            for p, q in zip(x.split_predictions, y.split_predictions)
        )
    )
    rows = [
        ("trials (configurations), each every CPCV split", f"{len(trials)}"),
        ("local runner: per trial / whole grid", f"{local_s / len(trials):.2f} s / {local_s:.1f} s"),
        (f"Ray ({a.cpus} CPUs): per trial (wall / trials) / whole grid", f"{ray_s / len(trials):.2f} s / {ray_s:.1f} s"),
        ("Ray start-up (ray.init, once per process)", f"{start_s:.1f} s"),
        ("speed-up, grid only / including start-up", f"{local_s / ray_s:.2f}x / {local_s / (ray_s + start_s):.2f}x"),
        ("peak RSS, process tree: local / Ray", f"{local_rss / 2**20:.0f} / {ray_rss / 2**20:.0f} MiB"),
        (
            "same predictions split by split and same verdicts on both runners",
            f"{'yes' if same else 'NO'} (largest gap {gap:.1e} of the predictions' scale)",
        ),
        ("load average after", f"{os.getloadavg()[0]:.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0 if same else 1


def main(argv: list[str]) -> int:
    """Run the comparison and print the table."""
    ap = argparse.ArgumentParser(prog="python -m bench research")
    ap.add_argument(
        "--grid",
        choices=("walk-forward", "cpcv"),
        default="walk-forward",
        help="cpcv: the CPCV x configurations grid of sigd calibrate on --data",
    )
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "hourly"), help="--grid cpcv: hourly tape folder")
    ap.add_argument("--trials", type=int, default=4, help="--grid cpcv: configurations")
    ap.add_argument("--groups", type=int, default=6, help="--grid cpcv: CPCV groups")
    ap.add_argument("--test-groups", type=int, default=2, help="--grid cpcv: CPCV groups tested per split")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--train-days", type=int, default=3)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-batches", type=int, default=20)
    ap.add_argument("--cpus", type=int, default=2)
    a = ap.parse_args(argv)
    if a.grid == "cpcv":
        return cpcv_grid(a)
    kw = {
        "preset": a.preset,
        "epochs": a.epochs,
        "max_batches": a.max_batches,
        "device": "cpu",
        "seed": 1,
        "symbols": ["ETH/USDT"],
    }
    with tempfile.TemporaryDirectory(prefix="bench-research-") as tmp:
        root = Path(tmp)
        jobs = jobs_for(root / "local", a.folds, a.train_days, kw)
        print(
            f"{len(jobs)} jobs: {a.folds} folds x {len(FAMILIES)} families, preset {a.preset}, "
            f"{a.epochs} epoch(s) of <= {a.max_batches} batches, {a.train_days} training days per fold"
        )
        local_s, local, local_rss = timed(lambda: LocalRunner().run(jobs))
        t0 = time.perf_counter()
        ray_runner = RayRunner(num_cpus=a.cpus)
        start_s = time.perf_counter() - t0
        ray_jobs = jobs_for(root / "ray", a.folds, a.train_days, kw)
        ray_s, on_ray, ray_rss = timed(lambda: ray_runner.run(ray_jobs))
        one = ray_jobs[:1]
        one_local_s, _, _ = timed(lambda: LocalRunner().run(one))
        one_ray_s, _, _ = timed(lambda: ray_runner.run(one))  # a warm worker: torch already imported
    same = all(
        isinstance(x, ArtifactRef) and isinstance(y, ArtifactRef) and x.version == y.version for x, y in zip(local, on_ray)
    )
    rows = [
        ("jobs", f"{len(jobs)}"),
        ("local runner wall (sequential, in-process)", f"{local_s:.1f} s"),
        (f"Ray local mode wall ({a.cpus} CPUs, jobs only)", f"{ray_s:.1f} s"),
        ("Ray start-up (ray.init, once per process)", f"{start_s:.1f} s"),
        ("speed-up, jobs only / including start-up", f"{local_s / ray_s:.2f}x / {local_s / (ray_s + start_s):.2f}x"),
        ("peak RSS, process tree: local / Ray", f"{local_rss / 2**20:.0f} / {ray_rss / 2**20:.0f} MiB"),
        ("Ray overhead per job (one job, warm worker, minus local)", f"{one_ray_s - one_local_s:+.2f} s"),
        ("same artifact versions on both runners", "yes" if same else "NO"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0 if same else 1
