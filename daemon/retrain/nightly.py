"""Overnight retraining: APScheduler cron → train on stored history → champion/challenger.

The job never runs in the event loop's thread and never blocks a decision. It gets the
history it declares (daemon/retrain/history.py: SQLite, then the exchange), exports it as tape
files, and hands jobs to a runner (daemon/retrain/runners.py): a `TrainJob` per served model
runs `pipeline.train.train` — the code path of `sigd train` — on the pooled history of every
traded symbol *before* a holdout cut, then a `ScoreJob` per model and symbol scores the new
and the current artifact on the holdout, the most recent stored data that neither trained on
(the model's score: the mean over symbols). Locally each job is a niced subprocess, one after
another; on Ray all of them at once. The whole run has a time
budget (`[retrain] timeout_s`). Only a new model that scores better is promoted, here in
the daemon: its artifact is copied in atomically (rename), a `models` registry row (its
file:// URI) marks it current (the old one becomes previous, kept on disk for rollback) and
the engine swaps predictors between decisions. A failed, crashed or timed-out job leaves
the current model serving and raises an alert.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from daemon import events, log
from daemon.config import Config
from daemon.crashpoints import crash_point
from daemon.domain import EventSink, timeframe_ms
from daemon.metrics import REGISTRY
from daemon.retrain.history import BarSource, HistoryShort, check_history, ensure_history, need_for, newest_closed
from daemon.retrain.jobs import JobFailed, ScoreJob, Scores, TrainJob, failed, pooled
from daemon.retrain.runners import LocalRunner, Runner, runner_from_config
from daemon.retrain.storage import fetched, local_path, to_uri
from daemon.store import Store
from pipeline.spec import TrainSpec

_log = log.get("sigd.retrain")
_OUTCOMES = REGISTRY.counter("sigd_retrain_outcomes_total", "retrain runs by model and outcome")
_SECONDS = REGISTRY.gauge("sigd_retrain_last_duration_seconds", "wall seconds of the last retrain per model")
TRIGGER_TIMEFRAME = "1m"  # the holdout is cut on the primary symbol's 1m bars

Swap = Callable[[str, Path], Awaitable[None]]


class RetrainFailed(RuntimeError):
    """A step of the retrain did not succeed; the message says which and why."""


@dataclass(frozen=True)
class Outcome:
    """What one model's retrain ended in."""

    model: str
    status: str  # "promoted" | "rejected" | "failed"
    reason: str
    version: str = ""
    new_score: float | None = None
    current_score: float | None = None
    path: str = ""


@dataclass
class _Run:
    """One served model's way through a retrain run."""

    name: str
    current: Path
    stage: Path
    cutoff: int = 0
    data: Path = Path()  # the exported tapes: train/ (before the cut) and all/
    new_uri: str = ""
    outcome: Outcome | None = None

    def fail(self, reason: str) -> None:
        self.outcome = self.outcome or Outcome(self.name, "failed", log.redact(reason))


class Retrainer:
    """Runs the retrain job for every served model; at most one run at a time.

    Training and scoring are jobs (daemon/retrain/jobs.py) given to a runner: by default one
    niced subprocess after another; with `[research] runner = "ray"` all models at once on Ray
    (local, or the cluster at `ray_address`). Promotion stays here, in the daemon."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        sink: EventSink,
        swap: Swap,
        current_dirs: Callable[[], dict[str, Path]],
        *,
        python: str = sys.executable,
        source: BarSource | None = None,
        runner: Runner | None = None,
    ) -> None:
        self.cfg, self.store, self.sink, self.swap = cfg, store, sink, swap
        self.source = source  # the exchange client: backfills the history SQLite lacks
        self.current_dirs = current_dirs  # name -> artifact dir serving now
        self.python = python
        self.root = cfg.path(cfg.retrain.artifacts_dir)
        self._runner = runner
        self._lock = asyncio.Lock()
        self.last: list[Outcome] = []
        migrate_registry(store)
        clean_leftovers(self.root)  # at start no retrain runs: anything half-done is a crash's

    def schedule(self, scheduler: Any) -> None:
        """Add the cron job to an AsyncIOScheduler (UTC)."""
        scheduler.add_job(
            self.run_once,
            cron_trigger(self.cfg.retrain.cron),
            id="retrain",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=3600,
            replace_existing=True,
        )

    @property
    def running(self) -> bool:
        """True while a retrain is in progress."""
        return self._lock.locked()

    @property
    def runner(self) -> Runner:
        """The configured runner, made on first use (Ray starts only when a retrain runs)."""
        if self._runner is None:
            r = self.cfg.research
            self._runner = (
                runner_from_config(r)
                if r.runner == "ray" or r.ray_address
                else LocalRunner(in_subprocess=True, python=self.python)
            )
        return self._runner

    async def run_once(self) -> list[Outcome]:
        """Retrain every served model once; never raises (failures become alerts)."""
        if self._lock.locked():
            _log.warning("retrain_skipped", reason="a retrain is already running")
            return []
        async with self._lock:
            started = time.monotonic()
            stage = self.root / ".staging" / f"run-{int(time.time() * 1000)}"
            runs = [_Run(name, path, stage / name) for name, path in sorted(self.current_dirs().items())]
            try:
                await self._steps(runs, started + self.cfg.retrain.timeout_s)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            outcomes = [r.outcome or Outcome(r.name, "failed", "no outcome") for r in runs]
            for o in outcomes:
                _SECONDS.set(time.monotonic() - started, model=o.model)
                _OUTCOMES.inc(model=o.model, outcome=o.status)
                self._announce(o)
        self.last = outcomes
        return outcomes

    async def cancel(self) -> None:
        """Stop running jobs (shutdown); the current models keep serving."""
        if self._runner is not None:
            await asyncio.to_thread(self._runner.cancel)

    async def _steps(self, runs: list[_Run], deadline: float) -> None:
        """History + export per model, all training jobs, all scoring jobs, then promotion one by one."""
        exported: set[Path] = set()
        for run in runs:
            await self._guard(run, self._prepare(run, exported))
        live = [r for r in runs if r.outcome is None]
        results = await self._jobs([self._train_job(r) for r in live], deadline)
        for run, res in zip(live, results):
            if isinstance(res, JobFailed):
                run.fail(f"train: {res.error}")
            else:
                run.new_uri = res.uri
        live = [r for r in live if r.outcome is None]
        symbols = self.cfg.exchange.symbols
        results = await self._jobs([self._score_job(r, s) for r in live for s in symbols], deadline)
        for i, run in enumerate(live):
            mine = dict(zip(symbols, results[i * len(symbols) : (i + 1) * len(symbols)]))
            bad = [f"{sym}: {res.error}" for sym, res in mine.items() if isinstance(res, JobFailed)]
            if bad:
                run.fail(f"score {bad[0]}")
            else:
                await self._guard(run, self._decide(run, pooled(mine)))

    async def _guard(self, run: _Run, step: Awaitable[Any]) -> None:
        try:
            await step
        except asyncio.CancelledError:
            raise
        except (RetrainFailed, HistoryShort) as exc:  # the message is the reason a user reads
            run.fail(str(exc))
        except Exception as exc:
            run.fail(f"{type(exc).__name__}: {exc}")

    async def _jobs(self, jobs: list[Any], deadline: float) -> list[Any]:
        if not jobs:
            return []
        left = deadline - time.monotonic()
        if left <= 0:
            return [failed(j, f"out of time: retrain.timeout_s = {self.cfg.retrain.timeout_s:g} s spent") for j in jobs]
        try:
            runner = self.runner
            _log.info("retrain_jobs", runner=runner.name, jobs=len(jobs), kind=type(jobs[0]).__name__)
            return await asyncio.to_thread(runner.run, jobs, timeout_s=left)
        except (RuntimeError, OSError, ValueError) as exc:  # no runner (Ray missing, cluster unreachable)
            return [failed(j, f"runner: {exc}") for j in jobs]

    async def _prepare(self, run: _Run, exported: set[Path]) -> None:
        run.cutoff, newest = await self._holdout(run.current)
        # Families with the same cut share one export of every symbol's tapes.
        run.data = run.stage.parent / f"data-{run.cutoff}-{newest}"
        if run.data not in exported:
            await asyncio.to_thread(export_tapes, self.store.path, self.cfg, run.data / "train", end_ms=run.cutoff)
            await asyncio.to_thread(export_tapes, self.store.path, self.cfg, run.data / "all", end_ms=newest + 1)
            exported.add(run.data)

    def _train_job(self, run: _Run) -> TrainJob:
        """One family trained on the pooled history of every traded symbol (windows never cross
        symbols: pipeline.train builds each symbol's samples apart; the first is the primary)."""
        r = self.cfg.retrain
        data = to_uri(run.data / "train")
        spec = TrainSpec(
            run.name,
            preset=r.preset,
            epochs=r.epochs,
            max_batches=r.max_batches,
            device=r.device,
            fee=self.cfg.broker.fee,
            symbols=self.cfg.exchange.symbols,
            data_dirs=(data,),
        )
        return TrainJob(spec, data, to_uri(run.stage / "new"))

    def _score_job(self, run: _Run, symbol: str) -> ScoreJob:
        return ScoreJob((to_uri(run.current), run.new_uri), to_uri(run.data / "all"), symbol, run.cutoff, fee=self.cfg.broker.fee)

    async def _holdout(self, current: Path) -> tuple[int, int]:
        """(cutoff, newest): train on bars closed before cutoff, score on [cutoff, newest].

        The history both need, of every traded symbol and the reference, is taken from SQLite,
        backfilled from the exchange when short; the primary symbol's clock sets the cut."""
        ex, r = self.cfg.exchange, self.cfg.retrain
        symbol = ex.symbols[0]
        newest = await newest_closed(self.store, self.source, symbol)
        if newest is None:
            raise RetrainFailed(f"no stored {symbol} {TRIGGER_TIMEFRAME} bars to retrain on and no exchange to ask")
        need = need_for(ex.symbols, ex.timeframes, (ex.reference_symbol, ex.reference_timeframe), r.train_days, r.holdout_hours)
        await ensure_history(self.store, self.source, need, newest)
        cutoff = newest - int(self.cfg.retrain.holdout_hours * 3_600_000)
        trained_until = _trained_until(current)
        # The current model must not have seen the holdout either.
        cutoff = max(cutoff, trained_until)
        if newest - cutoff < 60 * timeframe_ms(TRIGGER_TIMEFRAME):
            raise RetrainFailed(
                f"less than an hour of stored data after the current model's training end "
                f"({trained_until}): nothing unseen to compare on"
            )
        cutoff -= cutoff % timeframe_ms(TRIGGER_TIMEFRAME)
        for each in ex.symbols:  # the first symbol short of history is the one line a user reads
            check_history(self.store, each, need, cutoff)
        return cutoff, newest

    async def _decide(self, run: _Run, scores: Scores) -> None:
        """Promote the new artifact when it scores better; the registry keeps its URI."""
        name = run.name
        new, cur = scores.by_artifact[run.new_uri], scores.by_artifact[to_uri(run.current)]
        metrics = json.dumps({"new": new, "current": cur, "holdout_from": run.cutoff, "bars": scores.bars})
        better = new["score"] > cur["score"] + self.cfg.retrain.min_improvement
        version = str(new.get("version") or name)
        now = int(time.time() * 1000)
        if not better:
            self.store.record_model(name, version, "", "rejected", metrics, now)
            run.outcome = Outcome(
                name,
                "rejected",
                f"holdout score {new['score']:.4f} <= current {cur['score']:.4f} + {self.cfg.retrain.min_improvement:g}",
                version,
                new["score"],
                cur["score"],
            )
            return
        with fetched(run.new_uri) as new_dir:  # a copy from remote storage, or the staged directory
            await self._validate(new_dir, run)
            dest = await asyncio.to_thread(install_artifact, new_dir, self.root / name, version)
        self.store.record_model(name, version, to_uri(dest), "current", metrics, now)
        await self.swap(name, dest)
        await asyncio.to_thread(prune_artifacts, self.store, self.root / name, name)
        run.outcome = Outcome(
            name,
            "promoted",
            f"holdout score {new['score']:.4f} > current {cur['score']:.4f}",
            version,
            new["score"],
            cur["score"],
            str(dest),
        )

    async def _validate(self, art: Path, run: _Run) -> None:
        """The gate of `sigd compare --validate` on the holdout (a subprocess: retrain does not import
        research). Its verdict goes into the artifact's JSON; shadow mode reads it at the swap. A
        validation that cannot run is logged and the promotion goes on (no verdict: shadow mode)."""
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.cutoff / 1000))
        argv = [
            self.python,
            "-m",
            "daemon",
            "compare",
            "--validate",
            str(art),
            "--write-verdict",
            "--data",
            str(run.data / "all"),
            "--from",
            start,
            "--symbols",
            self.cfg.exchange.symbol,
            "--fee",
            str(self.cfg.broker.fee),
            "--out",
            str(run.stage / "validation"),
        ] + (["-c", self.cfg.source] if self.cfg.source else [])
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=self.cfg.retrain.timeout_s)
        if proc.returncode:  # no verdict written: the promoted model runs in shadow mode ("no validation block")
            _log.warning("retrain_validate_failed", model=run.name, rc=proc.returncode, error=err.decode(errors="replace")[-300:])

    def _announce(self, o: Outcome) -> None:
        events.publish(events.RetrainFinished(o.model, o.status, o.reason))
        payload = {k: v for k, v in asdict(o).items() if v not in (None, "")}
        if o.status == "failed":
            _log.error("retrain_failed", **payload)
            self.sink.publish("error", {"source": "retrain", "message": f"retrain of {o.model} failed: {o.reason}", **payload})
        else:
            _log.info("retrain_done", **payload)
            self.sink.publish("retrain", payload)


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def cron_trigger(expr: str) -> Any:
    """An APScheduler CronTrigger (UTC) from a crontab line, with crontab's weekday numbers.

    APScheduler 3 counts weekdays from Monday = 0, crontab from Sunday = 0 (and 7): "1-5" would
    silently mean Tuesday to Saturday, so numeric weekdays are turned into names first.
    """
    import re

    from apscheduler.triggers.cron import CronTrigger

    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 crontab fields, got {len(fields)} in {expr!r}")
    minute, hour, day, month, dow = fields
    dow = re.sub(r"(?<![/\d])([0-7])(?!\d)", lambda m: _WEEKDAYS[int(m.group(1))], dow)
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=dow, timezone="UTC")


def export_tapes(db: Path, cfg: Config, out: Path, *, end_ms: int) -> None:
    """Write stored bars that closed by `end_ms` as tape files `<BASE>_<QUOTE>-<tf>.csv`.

    Runs in a worker thread with its own connection (WAL: a reader beside the daemon's writer),
    so the event loop's connection is never shared across threads.
    """
    store = Store(db)
    try:
        _write_tapes(store, cfg, out, end_ms)
    finally:
        store.close()


def _write_tapes(store: Store, cfg: Config, out: Path, end_ms: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ex = cfg.exchange
    # 1s bars are left out: the shipped models train without them (live 1s stays masked).
    streams = [(s, tf) for s in ex.symbols for tf in ex.timeframes if tf != "1s"]
    streams.append((ex.reference_symbol, ex.reference_timeframe))
    for symbol, tf in streams:
        path = out / f"{symbol.replace('/', '_')}-{tf}.csv"
        n = 0
        with path.open("w") as fh:
            fh.write("timestamp,open,high,low,close,volume\n")
            for bar in store.iter_bars(symbol, tf, 0, end_ms - timeframe_ms(tf) + 1):
                fh.write(f"{bar.ts},{bar.open!r},{bar.high!r},{bar.low!r},{bar.close!r},{bar.volume!r}\n")
                n += 1
        if n == 0:
            path.unlink()


def install_artifact(src: Path, parent: Path, version: str) -> Path:
    """Copy an artifact directory in atomically: copy beside, fsync, rename into place."""
    parent.mkdir(parents=True, exist_ok=True)
    dest = parent / _safe(version)
    if dest.exists():
        dest = parent / f"{_safe(version)}-{int(time.time() * 1000)}"
    tmp = parent / f".{dest.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    for f in tmp.iterdir():
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    crash_point("mid_retrain_install")
    os.rename(tmp, dest)
    fd = os.open(parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return dest


def clean_leftovers(root: Path) -> list[Path]:
    """Remove what a crashed retrain left under `root` (retrain.artifacts_dir): its staging runs
    (`.staging/`) and the half-installed copies beside the model folders (install_artifact's
    `.<version>.tmp`, storage.put_dir's `.<name>.tmp-*` and `.<name>.old-*`). Only dot-named
    entries go: a served or registered artifact directory never has such a name. The paths removed."""
    if not root.is_dir():
        return []
    folders = [root, *(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))]
    doomed = [root / ".staging"] if (root / ".staging").exists() else []
    doomed += [
        p
        for d in folders
        for p in d.iterdir()
        if p.name.startswith(".") and (p.name.endswith(".tmp") or ".tmp-" in p.name or ".old-" in p.name)
    ]
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if doomed:
        _log.warning("retrain_leftovers_removed", paths=[str(p) for p in doomed])
    return doomed


def prune_artifacts(store: Store, parent: Path, name: str) -> None:
    """Delete promoted artifact directories that are neither current nor previous."""
    keep = {
        (local_path(r["path"]) or Path(r["path"])).name
        for r in store.model_rows(name)
        if r["status"] in ("current", "previous") and r["path"]
    }
    for d in parent.iterdir():
        if d.is_dir() and not d.name.startswith(".") and d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)


def migrate_registry(store: Store) -> int:
    """Registry rows written with a machine path get its file:// URI; the number of rows changed."""
    rows = [(r["id"], to_uri(r["path"])) for r in store.model_rows() if r["path"] and "://" not in r["path"]]
    if rows:
        store.set_model_paths(rows)
        _log.info("registry_migrated", rows=len(rows))
    return len(rows)


def _trained_until(artifact: Path) -> int:
    """The newest bar time the artifact trained on, from its JSON metadata (0 when unknown)."""
    for meta in sorted(artifact.glob("*.json")):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        found = _find_key(data, ("last_close_ts", "train_end_ms"))
        if isinstance(found, (int, float)):
            return int(found)
    return 0


def _find_key(data: Any, keys: Sequence[str]) -> Any:
    if isinstance(data, dict):
        for k in keys:
            if k in data:
                return data[k]
        for v in data.values():
            found = _find_key(v, keys)
            if found is not None:
                return found
    return None


def _safe(version: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in version)[:80] or "model"
