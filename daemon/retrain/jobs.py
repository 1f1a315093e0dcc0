"""The job model: frozen specs of research and retraining work, and the one function that runs one.

`TrainJob` trains one family as its `TrainSpec` (pipeline/spec.py) says, on the tape directory at a data URI and writes the artifact to
an output URI; `ScoreJob` scores artifacts on the same bars of a window. Every runner
(daemon/retrain/runners.py: local in-process, local subprocess, Ray) calls `execute` and gets
an `ArtifactRef(uri, version, train_end_ms, metrics)` or a `Scores`; a failure inside a job is
a `JobFailed` result, never an exception across the runner. Jobs name data and artifacts by
storage URI (daemon/retrain/storage.py), never by a path of the submitting machine.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.retrain import storage
from daemon.retrain.scoring import score_artifacts
from pipeline.spec import TrainSpec


@dataclass(frozen=True)
class TrainJob:
    """Train as `spec` says on the tapes at `data` (a URI); write the artifact to `out` (a URI).

    The spec's own `data_dirs` are not read: the job's data URI is fetched where the job runs."""

    spec: TrainSpec
    data: str
    out: str
    fold: int = 0
    threads: int = 1  # torch CPU threads: one per job keeps results identical across runners

    @property
    def family(self) -> str:
        """The model family (registry name) trained."""
        return self.spec.model


@dataclass(frozen=True)
class ScoreJob:
    """Score artifacts (URIs) on the same 1m bars of [from_ms, to_ms) of the tapes at `data`."""

    artifacts: tuple[str, ...]
    data: str
    symbol: str
    from_ms: int
    to_ms: int | None = None
    fee: float = 0.001
    fold: int = 0
    threads: int = 1


@dataclass(frozen=True)
class ArtifactRef:
    """Where a trained artifact lives, and what it is."""

    uri: str
    version: str
    train_end_ms: int
    metrics: Mapping[str, Any]
    fold: int = 0
    family: str = ""


@dataclass(frozen=True)
class Scores:
    """Per artifact URI: its score (Sharpe net of fees), trades and total return on the window."""

    by_artifact: Mapping[str, Mapping[str, Any]]
    bars: int
    fold: int = 0


@dataclass(frozen=True)
class JobFailed:
    """A job that did not produce its result; `error` is one line for a person."""

    error: str
    fold: int = 0
    family: str = ""


Job = TrainJob | ScoreJob
Result = ArtifactRef | Scores | JobFailed


@contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(job: TrainJob, data: Path, out: Path) -> ArtifactRef:
    """Run the training of `job` on local tapes `data` into local directory `out`."""
    from pipeline.train import train as train_spec

    with _threads(job.threads):
        res = train_spec(job.spec.replace(data_dirs=(str(data),)), out)
    meta = json.loads((out / "artifact.json").read_text())
    return ArtifactRef(job.out, res.version, int(meta["data"]["last_close_ts"]), res.metrics, job.fold, job.family)


def score(job: ScoreJob, data: Path, artifacts: Mapping[str, Path]) -> Scores:
    """Score local artifact directories (keyed by URI) on local tapes `data`."""
    with _threads(job.threads):
        out = score_artifacts(data, job.from_ms, job.to_ms, job.symbol, artifacts, job.fee)
    return Scores(out["by_artifact"], out["bars"], job.fold)


def execute(job: Job) -> Result:
    """Run one job against storage URIs; a failure becomes JobFailed (one line)."""
    try:
        if isinstance(job, TrainJob):
            with storage.fetched(job.data) as data, tempfile.TemporaryDirectory(prefix="sigd-job-") as tmp:
                ref = train(job, data, Path(tmp) / "artifact")
                storage.put_dir(Path(tmp) / "artifact", job.out)
                return ref
        with storage.fetched(job.data) as data, _fetched_all(job.artifacts) as arts:
            return score(job, data, arts)
    except SystemExit as exc:  # the worker's own "cannot score this" (a message, not a crash)
        return failed(job, str(exc))
    except Exception as exc:
        return failed(job, exc)


def failed(job: Job, exc: BaseException | str) -> JobFailed:
    """JobFailed naming the job's fold and family."""
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return JobFailed(" ".join(str(text).split())[:500], job.fold, getattr(job, "family", ""))


def pooled(by_symbol: Mapping[str, Scores]) -> Scores:
    """One score per artifact over several symbols' holdouts: the mean Sharpe (each symbol counts
    once, however many bars it has), trades summed, mean return; per symbol kept under `symbols`."""
    runs = list(by_symbol.values())
    out: dict[str, dict[str, Any]] = {}
    for uri in runs[0].by_artifact:
        each = {sym: s.by_artifact[uri] for sym, s in by_symbol.items()}
        out[uri] = {
            "version": runs[0].by_artifact[uri].get("version", ""),
            "score": sum(float(e["score"]) for e in each.values()) / len(each),
            "trades": sum(int(e["trades"]) for e in each.values()),
            "total_return": sum(float(e["total_return"]) for e in each.values()) / len(each),
            "symbols": {sym: float(e["score"]) for sym, e in each.items()},
        }
    return Scores(out, sum(s.bars for s in runs), runs[0].fold)


@contextmanager
def _fetched_all(uris: tuple[str, ...]) -> Iterator[dict[str, Path]]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield {u: stack.enter_context(storage.fetched(u)) for u in uris}


# --- JSON form (the subprocess runner's files) ------------------------------------------------

_KINDS: dict[str, type] = {c.__name__: c for c in (TrainJob, ScoreJob, ArtifactRef, Scores, JobFailed)}


def to_json(obj: Job | Result) -> str:
    """A job or result as JSON, tagged with its kind."""
    doc = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, TrainJob):
        doc["spec"] = obj.spec.to_dict()
    return json.dumps({"kind": type(obj).__name__, **doc})


def from_json(text: str) -> Any:
    """The job or result `to_json` wrote."""
    data = json.loads(text)
    cls = _KINDS[data.pop("kind")]
    if cls is TrainJob:
        data["spec"] = TrainSpec.from_dict(data["spec"])
    if cls is ScoreJob:
        data["artifacts"] = tuple(data["artifacts"])
    return cls(**data)
