"""`python -m bench research`: the same walk-forward jobs on the local runner and on Ray (local mode).

`python -m bench research --grid cpcv`: the CPCV x configurations grid of `sigd calibrate`
(ridge on a planted feature and distractors, every CPCV split per trial, the gate on the median
path) on `--data` (default: the 16 hourly pairs, 2017-2026, 1h decisions). Trials: `--trials`
configurations; figures: time per trial and for the whole grid on the local runner and on
Ray with `--cpus` CPUs (the data put once in the object store), the speed-up, and whether both
runners gave the same predictions split by split.

`python -m bench research --grid models`: the deep configurations of `sigd research` (a window
family at the `tiny` and `small` presets on the cross-sectional features, one fit per CPCV
split, every test decision scored) on `--data` at 1h decisions (default: the 16 hourly pairs
over 8 years). Per preset: the time per trial (one configuration through every CPCV split)
and for the whole grid on the local runner, on Ray with 2 CPUs (the speed-up), and on Ray
with N CPUs for each N in `--cpus-list` up to this machine's count (one column each); whether
every runner gave the local predictions fold by fold; and `--device cuda` where a GPU exists.

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


def _fold(item: tuple[Any, int], data: dict[str, Any]) -> Any:
    """One CPCV split of one configuration: fit on its training rows, score its test rows."""
    from daemon.research.panelmodels import fit_predict

    spec, i = item
    split = data["splits"][i]
    return fit_predict(data["X"], data["y"][spec.label.kind], data["close"], spec, split.train_idx, split.test_idx)


def cpu_columns(spec: str, have: int) -> list[int]:
    """The CPU counts to time: `spec` ("1,2,4" or "" = 1, 2, 4, ... up to `have`), capped at `have`."""
    wanted = [int(x) for x in spec.split(",") if x.strip()] if spec else [2**k for k in range(8) if 2**k <= have]
    return sorted({n for n in wanted if 1 <= n <= have} | ({have} if not spec else set()))


def gpu_note(device: str) -> str | None:
    """Why the `--device` row has no figure, or None when it can run."""
    if device != "cuda":
        return None
    import torch

    if not torch.cuda.is_available():
        return "no GPU on this machine"
    return "not run: daemon/research/panelmodels.py trains on the CPU only (no device option yet)"


def models_grid(a: argparse.Namespace) -> int:
    """Deep presets on the research grid: local runner vs Ray, and the grid on N CPUs."""
    import numpy as np
    import ray

    from daemon.domain import timeframe_ms
    from daemon.research.backtest import parse_iso
    from daemon.research.cpcv import cpcv_splits
    from daemon.research.dataset import load_panel
    from daemon.research.hourly import LABELS
    from daemon.research.panelmodels import PanelModelSpec
    from models.labels import LabelSpec, label_end, make_labels
    from models.xsfeatures import xs_features

    t0 = time.perf_counter()
    start = parse_iso(a.start, "--from") if a.start else None
    end = parse_iso(a.end, "--to") if a.end else None
    panel = load_panel(Path(a.data), "1h", None, start, end)
    _, X = xs_features(panel)
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    labels = {t: LabelSpec(t, cost=2 * a.cost_bps / 1e4, **LABELS["1h"]) for t in targets}  # type: ignore[arg-type]
    horizon = LABELS["1h"]["horizon"]
    step = timeframe_ms("1h")
    first = next(iter(labels.values()))
    splits = cpcv_splits(panel.ts, a.groups, a.test_groups, label_end(panel.ts, first, step), horizon * step)
    data = {"X": X, "y": {t: make_labels(panel.close, lb) for t, lb in labels.items()}, "close": panel.close, "splits": splits}
    load_s = time.perf_counter() - t0
    cpus = cpu_columns(a.cpus_list, os.cpu_count() or 1)
    print(
        f"grid per preset: {a.family} x {len(targets)} target(s) ({', '.join(targets)}) = {len(targets)} trial(s), "
        f"each {len(splits)} CPCV splits ({a.groups} groups / {a.test_groups} tested); {a.epochs} epoch(s) over "
        f"{a.max_train} sampled training rows per fit, every test decision scored; {len(panel.symbols)} pairs x "
        f"{len(panel.ts)} hourly bars ({len(panel.ts) / 8760:.1f} years), 1h decisions, {X.shape[-1]} features; "
        f"load + features {load_s:.1f} s; load average before: {os.getloadavg()[0]:.1f}"
    )
    header = ["preset", "per trial, local", "grid, local", "speed-up, Ray 2 CPUs vs local"]
    header += [f"grid, Ray {n} CPU{'s' if n > 1 else ''}" for n in cpus] + ["same predictions", "peak RSS local / Ray"]
    rows, ok = [], True
    for preset in [p.strip() for p in a.presets.split(",") if p.strip()]:
        specs = [
            PanelModelSpec(a.family, lb, preset=preset, max_train=a.max_train, epochs=a.epochs, seed=0) for lb in labels.values()
        ]
        items = [(spec, i) for spec in specs for i in range(len(splits))]
        local_s, local, local_rss = timed(lambda items=items: LocalRunner().map(_fold, items, shared=data))
        walls: dict[int, float] = {}
        gap, ray_rss = 0.0, 0
        for n in sorted(set(cpus) | ({2} if (os.cpu_count() or 1) >= 2 else set())):
            ray.shutdown()  # this process's own local Ray, started just below
            runner = RayRunner(num_cpus=n)
            walls[n], on_ray, rss = timed(lambda items=items, runner=runner: runner.map(_fold, items, shared=data))
            ray_rss = max(ray_rss, rss)
            for p, q in zip(local, on_ray):
                same_nan = np.array_equal(np.isnan(p), np.isnan(q))
                scale = float(np.nanmax(np.abs(p))) or 1.0
                gap = max(gap, float(np.nanmax(np.abs(p - q))) / scale if same_nan else float("inf"))
            print(f"  {preset}: Ray {n} CPU(s) {walls[n]:.1f} s (local {local_s:.1f} s)", flush=True)
        ray.shutdown()
        same = gap < 1e-4  # torch on one thread per fit everywhere; float32 sums may differ in order
        ok &= same
        two = walls.get(2)
        rows.append(
            [
                preset,
                f"{local_s / len(specs):.1f} s",
                f"{local_s:.1f} s",
                f"{local_s / two:.2f}x" if two else "n/a (1 CPU)",
                *[f"{walls[n]:.1f} s" for n in cpus],
                f"{'yes' if same else 'NO'} (gap {gap:.1e})",
                f"{local_rss / 2**20:.0f} / {ray_rss / 2**20:.0f} MiB",
            ]
        )
    note = gpu_note(a.device)
    if a.device == "cuda" and note:
        rows.append([f"--device cuda: {note}", *["" for _ in header[1:]]])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    """Run the comparison and print the table."""
    ap = argparse.ArgumentParser(prog="python -m bench research")
    ap.add_argument(
        "--grid",
        choices=("walk-forward", "cpcv", "models"),
        default="walk-forward",
        help="cpcv: the CPCV x configurations grid of sigd calibrate on --data; models: the deep presets of sigd research",
    )
    ap.add_argument("--presets", default="tiny,small", help="--grid models: size presets")
    ap.add_argument("--family", default="gru", help="--grid models: window family")
    ap.add_argument("--targets", default="forward_return", help="--grid models: targets (one trial each)")
    ap.add_argument("--max-train", type=int, default=20_000, help="--grid models: training rows sampled per fit")
    ap.add_argument("--cost-bps", type=float, default=10.0, help="--grid models: one-way cost in the labels")
    ap.add_argument("--cpus-list", default="", help="--grid models: CPU counts to time (default 1, 2, 4, ... up to all)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="--grid models: cuda adds the GPU row")
    ap.add_argument("--from", dest="start", default=None, help="--grid models: first bar (default: the data's first)")
    ap.add_argument("--to", dest="end", default=None, help="--grid models: end, exclusive (default: the data's end)")
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
    if a.grid == "models":
        return models_grid(a)
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
