"""Runners: take a list of frozen jobs (daemon/retrain/jobs.py), return their results in order.

- `LocalRunner()` runs them one after another in this process (research commands);
  `LocalRunner(subprocess=True)` runs each in a niced child process with a deadline (the
  daemon's nightly retrain: a crash or a hang never reaches the daemon).
- `RayRunner(address=None, num_cpus=N)` submits every job as a Ray task at once: `ray.init()`
  starts a local single-node Ray with N CPUs, or joins a cluster at `address`
  (`ray://head:10001`). A worker that dies mid-job (OOM, kill -9, a lost node) is retried by
  Ray (`max_retries`); an error inside a job is its JobFailed result and is not retried.
  Data and artifacts on the submitting machine's disk travel as object references (tar bytes
  put once per directory), so workers on other nodes never see a local path.

Every runner honours a time budget: what has not finished by then is cancelled and reported
as JobFailed ("time budget ... spent"), and it reports progress (daemon/retrain/progress.py).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from daemon import log as logging
from daemon.retrain import storage
from daemon.retrain.jobs import ArtifactRef, Job, JobFailed, Result, Scores, TrainJob, execute, failed, from_json, to_json
from daemon.retrain.progress import Progress, fits_reporting
from models.fit import FIT_PROGRESS

_log = logging.get("sigd.runner")
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
R = TypeVar("R")


class Runner(Protocol):
    """Runs jobs; results in the order of the jobs."""

    name: str

    def run(self, jobs: Sequence[Job], *, timeout_s: float | None = None, progress: Progress | None = None) -> list[Result]:
        """Every job's result (JobFailed for those that failed or ran out of time)."""
        ...

    def map(self, fn: Callable[..., R], items: Sequence[T], *, progress: Progress | None = None, shared: Any = None) -> list[R]:
        """`fn` over picklable items (any module-level function), results in item order; the
        first exception an item raised is raised here (`sigd compare` runs its folds so).
        Model fits inside `fn` report their epochs to `progress`. With `shared` (data every
        item reads, e.g. a data set's arrays) the call is `fn(item, shared)`; on Ray it travels
        once, through the object store, to whichever node runs the item."""
        ...

    def cancel(self) -> None:
        """Stop what is running now (shutdown)."""
        ...


def result_score(result: Result) -> float | None:
    """The number a progress display calls 'best': validation Sharpe of an artifact, best score."""
    if isinstance(result, ArtifactRef):
        return result.metrics.get("validation", {}).get("sharpe")
    if isinstance(result, Scores):
        return max((s["score"] for s in result.by_artifact.values()), default=None)
    return None


def _budget(timeout_s: float | None) -> float:
    return time.monotonic() + timeout_s if timeout_s else float("inf")


def _out_of_time(job: Job, timeout_s: float | None) -> JobFailed:
    return failed(job, f"out of time: the time budget ({timeout_s:.1f} s) was spent before this job finished")


class LocalRunner:
    """One job after another: in this process, or each in a niced subprocess."""

    name = "local"

    def __init__(self, *, in_subprocess: bool = False, python: str = sys.executable, nice: int = 10) -> None:
        self.in_subprocess, self.python, self.nice = in_subprocess, python, nice
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._cancelled = False

    def run(self, jobs: Sequence[Job], *, timeout_s: float | None = None, progress: Progress | None = None) -> list[Result]:
        """Sequentially; jobs not started when the budget is spent are JobFailed."""
        deadline, out = _budget(timeout_s), []
        self._cancelled = False
        for job in jobs:
            left = deadline - time.monotonic()
            if left <= 0 or self._cancelled:
                out.append(_out_of_time(job, timeout_s) if left <= 0 else failed(job, "cancelled"))
                continue
            key = len(out)
            if progress:
                progress.start(key)
            if self.in_subprocess:
                result = self._child(job, left, timeout_s)
            else:
                with fits_reporting(progress, key):
                    result = execute(job)
            if progress:
                progress.finish(not isinstance(result, JobFailed), result_score(result), key)
            out.append(result)
        return out

    def map(self, fn: Callable[..., R], items: Sequence[T], *, progress: Progress | None = None, shared: Any = None) -> list[R]:
        """In this process, one item after another (`fn(item, shared)` when `shared` is given)."""
        out: list[R] = []
        for key, item in enumerate(items):
            if progress:
                progress.start(key)
            with fits_reporting(progress, key):
                try:
                    out.append(fn(item) if shared is None else fn(item, shared))
                except BaseException:
                    if progress:
                        progress.finish(False, None, key)
                    raise
            if progress:
                progress.finish(True, None, key)
        return out

    def cancel(self) -> None:
        """Kill running child processes; later jobs are not started."""
        self._cancelled = True
        for proc in list(self._procs):
            _kill(proc)

    def _child(self, job: Job, left: float, timeout_s: float | None) -> Result:
        with tempfile.TemporaryDirectory(prefix="sigd-job-") as tmp:
            spec, res, logf = Path(tmp) / "job.json", Path(tmp) / "result.json", Path(tmp) / "job.log"
            spec.write_text(to_json(job))
            argv = [self.python, "-m", "daemon.commands.worker", "job", "--spec", str(spec), "--out", str(res)]
            with logf.open("wb") as fh:
                proc = subprocess.Popen(
                    argv,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=REPO,
                    env={**os.environ, "OMP_NUM_THREADS": "1"},
                )
            _renice(proc.pid, self.nice)
            self._procs.add(proc)
            _log.info("job_started", runner="local", pid=proc.pid, fold=job.fold, family=getattr(job, "family", ""))
            try:
                rc = proc.wait(timeout=None if left == float("inf") else left)
            except subprocess.TimeoutExpired:
                _kill(proc)
                proc.wait()
                return _out_of_time(job, timeout_s)
            finally:
                self._procs.discard(proc)
            if res.exists():
                return from_json(res.read_text())
            tail = logf.read_bytes()[-600:].decode(errors="replace").strip().splitlines()[-3:]
            return failed(job, f"job process exited with {rc}: {' | '.join(tail)}")


class RayRunner:
    """Every job as a Ray task at once; worker deaths retried by Ray."""

    name = "ray"

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None, max_retries: int = 3) -> None:
        self.address, self.max_retries = address or None, max_retries
        init_ray(address, num_cpus)
        self._pending: list[Any] = []

    def run(self, jobs: Sequence[Job], *, timeout_s: float | None = None, progress: Progress | None = None) -> list[Result]:
        """Submit all, collect as they finish; JobFailed for crashes past retries and overtime."""
        import ray

        remote = ray.remote(_remote_job).options(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)
        blobs: dict[str, Any] = {}  # one object per local directory, shared by every job that reads it
        out: list[Result | None] = [None] * len(jobs)
        index: dict[Any, int] = {}
        sink = _progress_sink() if progress else None
        for i, job in enumerate(jobs):
            try:
                index[remote.remote(job, *self._ship(job, blobs), sink, i)] = i
            except OSError as exc:  # its data or artifact is not there: nothing to run
                out[i] = failed(job, exc)
        self._pending = list(index)
        if progress:
            for ref in self._pending:
                progress.start(index[ref])
        deadline = _budget(timeout_s)
        while self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, self._pending = ray.wait(self._pending, num_returns=1, timeout=min(left, 1.0))
            for ref in ready:
                i = index[ref]
                result = out[i] = self._collect(jobs[i], ref)
                if progress:
                    progress.finish(not isinstance(result, JobFailed), result_score(result), i)
            _poll_sink(sink, progress)
        self.cancel()
        return [r if r is not None else _out_of_time(j, timeout_s) for r, j in zip(out, jobs)]

    def map(self, fn: Callable[..., R], items: Sequence[T], *, progress: Progress | None = None, shared: Any = None) -> list[R]:
        """Every item as a Ray task at once (a dead worker is retried, an exception is not).
        `shared` is put in the object store once and every task gets it from there, on
        whichever node it runs: no path needs to be readable by the workers. Paths inside the
        items themselves must still be readable on every node (shared storage on a cluster)."""
        import ray

        remote = ray.remote(_mapped).options(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)
        sink = _progress_sink() if progress else None
        data = (ray.put(shared),) if shared is not None else ()  # one copy, however many tasks read it
        refs = [remote.remote(fn, item, sink, key, *data) for key, item in enumerate(items)]
        self._pending = list(refs)
        if progress:
            for key in range(len(refs)):
                progress.start(key)
        index = {ref: key for key, ref in enumerate(refs)}
        try:
            while self._pending:
                ready, self._pending = ray.wait(self._pending, num_returns=1, timeout=1.0)
                for ref in ready:
                    ray.get(ref)  # a task's exception is re-raised as its own type
                    if progress:
                        progress.finish(True, None, index[ref])
                _poll_sink(sink, progress)
            out = list(ray.get(refs))
        except BaseException:
            self.cancel()  # the first failure decides: the rest is not waited for
            raise
        self._pending = []
        return out

    def cancel(self) -> None:
        """Cancel (force-kill) the tasks still pending."""
        import ray

        for ref in self._pending:
            ray.cancel(ref, force=True)
        self._pending = []

    def _ship(self, job: Job, blobs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        import ray

        def put(uri: str) -> Any:
            path = storage.local_path(uri)
            if path is None:
                return None  # shared storage: the worker reads it itself
            if uri not in blobs:
                blobs[uri] = ray.put(storage.pack(path))
            return blobs[uri]

        arts = {} if isinstance(job, TrainJob) else {u: put(u) for u in job.artifacts}
        return put(job.data), {u: b for u, b in arts.items() if b is not None}

    def _collect(self, job: Job, ref: Any) -> Result:
        import ray

        try:
            result, blob = ray.get(ref)
        except (ray.exceptions.RayError, OSError) as exc:  # a crash past the retries, a lost node
            return failed(job, f"worker lost: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        if blob is not None and isinstance(result, ArtifactRef):
            with tempfile.TemporaryDirectory(prefix="sigd-art-") as tmp:
                storage.put_dir(storage.unpack(blob, Path(tmp) / "a"), result.uri)
        return result


def init_ray(address: str | None, num_cpus: int | None) -> None:
    """`ray.init` once per process: local single node (no dashboard, small object store) or a cluster."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("Ray is not installed: pip install -e '.[research]' (or use the local runner)") from None

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if address:  # cluster nodes run their own installed sigd; only the thread cap travels
        ray.init(address=address, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}}, log_to_driver=False)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": env},
            object_store_memory=256 * 1024 * 1024,
            configure_logging=False,
        )
    _log.info("ray_started", address=address or "local", cpus=ray.cluster_resources().get("CPU"))


class _ProgressSink:
    """A Ray actor the tasks tell how far their model fits have got; the driver polls it."""

    def __init__(self) -> None:
        self.fractions: dict[int, float] = {}

    def report(self, key: int, fraction: float) -> None:
        self.fractions[key] = fraction

    def snapshot(self) -> dict[int, float]:
        return dict(self.fractions)


def _progress_sink() -> Any:
    import ray

    return ray.remote(_ProgressSink).options(num_cpus=0).remote()


def _poll_sink(sink: Any, progress: Progress | None) -> None:
    """Copy the tasks' reported fractions into the progress display."""
    if sink is None or progress is None:
        return
    import ray

    try:
        fractions = ray.get(sink.snapshot.remote(), timeout=5.0)
    except ray.exceptions.RayError:  # progress is a display: never a reason to fail the run
        return
    for key, fraction in fractions.items():
        progress.advance(key, fraction)


@contextmanager
def _reporting_to(sink: Any, key: int, every_s: float = 1.0) -> Iterator[None]:
    """Inside a Ray task: model fits report to the driver's sink, at most every `every_s`."""
    if sink is None:
        yield
        return
    last = [0.0]

    def tell(fraction: float) -> None:
        now = time.monotonic()
        if fraction >= 1.0 or now - last[0] >= every_s:
            last[0] = now
            sink.report.remote(key, fraction)  # fire and forget

    token = FIT_PROGRESS.set(tell)
    try:
        yield
    finally:
        FIT_PROGRESS.reset(token)


def _mapped(fn: Callable[..., R], item: T, sink: Any, key: int, *shared: Any) -> R:
    """The Ray task of `RayRunner.map`: `fn(item)` (or `fn(item, shared)`: Ray resolved the
    object reference to its value here), its model fits reporting progress."""
    with _reporting_to(sink, key):
        return fn(item, *shared)


def _remote_job(
    job: Job, data_blob: bytes | None, art_blobs: dict[str, bytes], sink: Any = None, key: int = 0
) -> tuple[Result, bytes | None]:
    """The Ray task: unpack shipped directories, run the job, ship a local-storage artifact back."""
    with _reporting_to(sink, key):
        return _run_shipped(job, data_blob, art_blobs)


def _run_shipped(job: Job, data_blob: bytes | None, art_blobs: dict[str, bytes]) -> tuple[Result, bytes | None]:
    """Unpack shipped directories, run the job, ship a local-storage artifact back."""
    with tempfile.TemporaryDirectory(prefix="sigd-task-") as tmp:
        root = Path(tmp)
        if data_blob is not None:
            job = dataclasses.replace(job, data=storage.to_uri(storage.unpack(data_blob, root / "data")))
        if art_blobs:
            import ray

            art_blobs = dict(zip(art_blobs, ray.get(list(art_blobs.values()))))  # nested refs are not resolved
            local = {u: storage.to_uri(storage.unpack(b, root / f"a{i}")) for i, (u, b) in enumerate(art_blobs.items())}
            result = execute(dataclasses.replace(job, artifacts=tuple(local.get(u, u) for u in job.artifacts)))
            if isinstance(result, Scores):  # keyed by the caller's URIs again
                back = {v: k for k, v in local.items()}
                result = dataclasses.replace(result, by_artifact={back.get(k, k): v for k, v in result.by_artifact.items()})
            return result, None
        if isinstance(job, TrainJob) and storage.is_local(job.out):
            here = root / "out"
            result = execute(dataclasses.replace(job, out=storage.to_uri(here)))
            if isinstance(result, ArtifactRef):
                return dataclasses.replace(result, uri=job.out), storage.pack(here)
            return result, None
        return execute(job), None


def _renice(pid: int, nice: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError:
        pass


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def make_runner(
    kind: str, *, address: str | None = None, num_cpus: int | None = None, in_subprocess: bool = False, max_retries: int = 3
) -> Runner:
    """ "local" or "ray" (a clear error when Ray is not installed)."""
    if kind == "ray":
        return RayRunner(address=address, num_cpus=num_cpus, max_retries=max_retries)
    if kind == "local":
        return LocalRunner(in_subprocess=in_subprocess)
    raise ValueError(f"unknown runner {kind!r}; expected local or ray")


def runner_from_config(
    research: Any,
    *,
    kind: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    in_subprocess: bool = False,
) -> Runner:
    """The runner `[research]` asks for, command-line flags over it; an address alone means Ray."""
    address = address if address is not None else (research.ray_address or None)
    kind = kind or ("ray" if address else research.runner)
    cpus = num_cpus if num_cpus is not None else (research.num_cpus or None)
    return make_runner(kind, address=address, num_cpus=cpus, in_subprocess=in_subprocess, max_retries=research.max_retries)
