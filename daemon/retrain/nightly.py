"""Overnight retraining: APScheduler cron → train on stored history → champion/challenger.

The job never runs in the event loop's thread and never blocks a decision: it exports the
stored bars to tape files, then runs two niced subprocesses (daemon/retrain/worker.py):
`train` calls `pipeline.train.train` — the code path of `sigd train` — on the history
*before* a holdout cut, and `score` scores the new and the current model on the holdout, the
most recent stored data that neither trained on. Only a new model that scores better is promoted: its artifact is copied
in atomically (rename), a `models` registry row marks it current (the old one becomes
previous, kept on disk for rollback) and the engine swaps predictors between decisions. A
failed, crashed or timed-out retrain leaves the current model serving and raises an alert.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

from daemon import log
from daemon.crashpoints import crash_point
from daemon.config import Config
from daemon.domain import EventSink, timeframe_ms
from daemon.metrics import REGISTRY
from daemon.store import Store

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


class Retrainer:
    """Runs the retrain job for every served model; at most one run at a time."""

    def __init__(self, cfg: Config, store: Store, sink: EventSink, swap: Swap,
                 current_dirs: Callable[[], dict[str, Path]], *, python: str = sys.executable) -> None:
        self.cfg, self.store, self.sink, self.swap = cfg, store, sink, swap
        self.current_dirs = current_dirs  # name -> artifact dir serving now
        self.python = python
        self.root = cfg.path(cfg.retrain.artifacts_dir)
        self._lock = asyncio.Lock()
        self._procs: set[asyncio.subprocess.Process] = set()
        self.last: list[Outcome] = []

    def schedule(self, scheduler: Any) -> None:
        """Add the cron job to an AsyncIOScheduler (UTC)."""
        scheduler.add_job(self.run_once, cron_trigger(self.cfg.retrain.cron), id="retrain", max_instances=1,
                          coalesce=True, misfire_grace_time=3600, replace_existing=True)

    @property
    def running(self) -> bool:
        """True while a retrain is in progress."""
        return self._lock.locked()

    async def run_once(self) -> list[Outcome]:
        """Retrain every served model once; never raises (failures become alerts)."""
        if self._lock.locked():
            _log.warning("retrain_skipped", reason="a retrain is already running")
            return []
        async with self._lock:
            outcomes = [await self._guarded(name, path) for name, path in sorted(self.current_dirs().items())]
        self.last = outcomes
        return outcomes

    async def cancel(self) -> None:
        """Kill running subprocesses (shutdown); the current models keep serving."""
        for proc in list(self._procs):
            _kill(proc)

    async def _guarded(self, name: str, current: Path) -> Outcome:
        started = time.monotonic()
        try:
            outcome = await self._retrain(name, current)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — any failure leaves the current model serving
            outcome = Outcome(name, "failed", log.redact(f"{type(exc).__name__}: {exc}"))
        _SECONDS.set(time.monotonic() - started, model=name)
        _OUTCOMES.inc(model=name, outcome=outcome.status)
        self._announce(outcome)
        return outcome

    async def _retrain(self, name: str, current: Path) -> Outcome:
        stage = self.root / ".staging" / f"{name}-{int(time.time() * 1000)}"
        stage.mkdir(parents=True, exist_ok=True)
        try:
            cutoff, newest = self._holdout(current)
            await asyncio.to_thread(export_tapes, self.store.path, self.cfg, stage / "train", end_ms=cutoff)
            await asyncio.to_thread(export_tapes, self.store.path, self.cfg, stage / "all", end_ms=newest + 1)
            await self._run("train", self._train_argv(name, stage), stage)
            await self._run("score", self._score_argv(name, current, stage, cutoff), stage)
            # the gate of `sigd compare` on the same holdout: its verdict travels in the artifact,
            # and shadow mode keeps a challenger that fails it from trading once promoted
            await self._run("validate", self._validate_argv(stage, cutoff), stage)
            scores = json.loads((stage / "scores.json").read_text())
            return await self._decide(name, stage / "new", scores)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _holdout(self, current: Path) -> tuple[int, int]:
        """(cutoff, newest): train on bars closed before cutoff, score on [cutoff, newest]."""
        symbol = self.cfg.exchange.symbol
        last = self.store.latest_bars(symbol, TRIGGER_TIMEFRAME, 1)
        if not last:
            raise RetrainFailed(f"no stored {symbol} {TRIGGER_TIMEFRAME} bars to retrain on")
        newest = last[0].ts
        cutoff = newest - int(self.cfg.retrain.holdout_hours * 3_600_000)
        trained_until = _trained_until(current)
        # The current model must not have seen the holdout either.
        cutoff = max(cutoff, trained_until)
        if newest - cutoff < 60 * timeframe_ms(TRIGGER_TIMEFRAME):
            raise RetrainFailed(f"less than an hour of stored data after the current model's training end "
                                f"({trained_until}): nothing unseen to compare on")
        return cutoff - cutoff % timeframe_ms(TRIGGER_TIMEFRAME), newest

    def _train_argv(self, name: str, stage: Path) -> list[str]:
        r = self.cfg.retrain
        return [self.python, "-m", "daemon.retrain.worker", "train", "--model", name, "--preset", r.preset,
                "--epochs", str(r.epochs), "--max-batches", str(r.max_batches), "--device", r.device,
                "--data", str(stage / "train"), "--symbol", self.cfg.exchange.symbol,
                "--fee", str(self.cfg.broker.fee), "--out", str(stage / "new")]

    def _score_argv(self, name: str, current: Path, stage: Path, cutoff: int) -> list[str]:
        return [self.python, "-m", "daemon.retrain.worker", "score", "--data", str(stage / "all"),
                "--from", str(cutoff), "--symbol", self.cfg.exchange.symbol, "--fee", str(self.cfg.broker.fee),
                "--current", str(current), "--new", str(stage / "new"), "--out", str(stage / "scores.json")]

    def _validate_argv(self, stage: Path, cutoff: int) -> list[str]:
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cutoff / 1000))
        return [self.python, "-m", "daemon", "compare", "--validate", str(stage / "new"), "--data", str(stage / "all"),
                "--from", start, "--symbols", self.cfg.exchange.symbol, "--fee", str(self.cfg.broker.fee),
                "--out", str(stage / "validation")]

    async def _run(self, step: str, argv: list[str], stage: Path) -> None:
        """One niced subprocess with a deadline; RetrainFailed with the tail of its output."""
        out = stage / f"{step}.log"
        with out.open("wb") as fh:
            proc = await asyncio.create_subprocess_exec(*argv, stdout=fh, stderr=asyncio.subprocess.STDOUT,
                                                        stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
                                                        env={**os.environ, "OMP_NUM_THREADS": "1"})
        _nice(proc.pid)
        self._procs.add(proc)
        _log.info("retrain_step", step=step, pid=proc.pid)
        try:
            rc = await asyncio.wait_for(proc.wait(), timeout=self.cfg.retrain.timeout_s)
        except asyncio.TimeoutError:
            _kill(proc)
            await proc.wait()
            raise RetrainFailed(f"{step} timed out after {self.cfg.retrain.timeout_s:g}s") from None
        finally:
            self._procs.discard(proc)
        if rc != 0:
            tail = out.read_bytes()[-600:].decode(errors="replace").strip().splitlines()[-3:]
            raise RetrainFailed(f"{step} exited with {rc}: {' | '.join(tail)}")

    async def _decide(self, name: str, new_dir: Path, scores: dict[str, Any]) -> Outcome:
        new, cur = scores["new"], scores["current"]
        metrics = json.dumps({"new": new, "current": cur, "holdout_from": scores.get("from")})
        better = new["score"] > cur["score"] + self.cfg.retrain.min_improvement
        version = str(new.get("version") or new_dir.name)
        now = int(time.time() * 1000)
        if not better:
            self.store.record_model(name, version, "", "rejected", metrics, now)
            return Outcome(name, "rejected", f"holdout score {new['score']:.4f} <= current {cur['score']:.4f}"
                           f" + {self.cfg.retrain.min_improvement:g}", version, new["score"], cur["score"])
        dest = await asyncio.to_thread(install_artifact, new_dir, self.root / name, version)
        self.store.record_model(name, version, str(dest), "current", metrics, now)
        await self.swap(name, dest)
        await asyncio.to_thread(prune_artifacts, self.store, self.root / name, name)
        return Outcome(name, "promoted", f"holdout score {new['score']:.4f} > current {cur['score']:.4f}",
                       version, new["score"], cur["score"], str(dest))

    def _announce(self, o: Outcome) -> None:
        payload = {k: v for k, v in asdict(o).items() if v not in (None, "")}
        if o.status == "failed":
            _log.error("retrain_failed", **payload)
            self.sink.publish("error", {"source": "retrain", "message": f"retrain of {o.model} failed: {o.reason}",
                                        **payload})
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
    streams = [(ex.symbol, tf) for tf in ex.timeframes if tf != "1s"] + [(ex.reference_symbol, ex.reference_timeframe)]
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


def prune_artifacts(store: Store, parent: Path, name: str) -> None:
    """Delete promoted artifact directories that are neither current nor previous."""
    keep = {Path(r["path"]).name for r in store.model_rows(name)
            if r["status"] in ("current", "previous") and r["path"]}
    for d in parent.iterdir():
        if d.is_dir() and not d.name.startswith(".") and d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)


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


def _nice(pid: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, 10)
    except OSError:
        pass


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
