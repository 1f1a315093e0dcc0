"""Storage URIs, the job JSON form, progress display: the parts every runner shares."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from daemon.retrain import storage
from daemon.retrain.jobs import ArtifactRef, JobFailed, ScoreJob, TrainJob, from_json, to_json
from daemon.retrain.progress import Progress
from models.targets import TargetSpec
from pipeline.spec import TrainSpec


def _dir(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "artifact.json").write_text('{"version": "v1"}')
    (root / "sub" / "w.bin").write_bytes(b"\x00\x01" * 100)
    return root


def _same(a: Path, b: Path) -> bool:
    files = lambda d: {p.relative_to(d).as_posix(): p.read_bytes() for p in d.rglob("*") if p.is_file()}  # noqa: E731
    return files(a) == files(b)


def test_file_uris_round_trip_atomically(tmp_path: Path) -> None:
    src = _dir(tmp_path / "src")
    uri = storage.join(str(tmp_path / "store"), "m", "v1")
    assert uri == (tmp_path / "store" / "m" / "v1").as_uri() and storage.is_local(uri)
    assert storage.put_dir(src, uri) == uri
    (src / "artifact.json").write_text('{"version": "v2"}')
    storage.put_dir(src, uri)  # replaced whole, nothing left beside it
    assert [p.name for p in (tmp_path / "store" / "m").iterdir()] == ["v1"]
    with storage.fetched(uri) as got:
        assert got == tmp_path / "store" / "m" / "v1" and _same(got, src)
    assert storage.local_path("/legacy/path") == Path("/legacy/path")  # registry rows from before URIs
    with pytest.raises(FileNotFoundError, match="no such directory"), storage.fetched(uri + "-missing"):
        pass


def test_other_schemes_go_through_fsspec(tmp_path: Path) -> None:
    src = _dir(tmp_path / "src")
    uri = "memory://sigd-test/runs/fold0"
    assert not storage.is_local(uri) and storage.local_path(uri) is None
    storage.put_dir(src, uri)
    with storage.fetched(uri) as got:
        assert _same(got, src)
    assert _same(storage.unpack(storage.pack(src), tmp_path / "unpacked"), src)


def test_jobs_and_results_survive_their_json_form(tmp_path: Path) -> None:
    spec = TrainSpec(
        "cnn_lstm_attn",
        preset="tiny",
        symbols=("ETH/USDT", "BTC/USDT"),
        target=TargetSpec(horizon=5),
        data_dirs=("file:///d",),
        config={"d_model": 16},
    )
    job = TrainJob(spec, "file:///d", "file:///o", fold=3)
    assert from_json(to_json(job)) == job and job.family == "cnn_lstm_attn"
    sj = ScoreJob(("file:///a", "file:///b"), "file:///d", "ETH/USDT", 1, 2)
    assert from_json(to_json(sj)) == sj
    ref = ArtifactRef("file:///o", "v", 5, {"validation": {"sharpe": 1.0}}, 3, "cnn_lstm_attn")
    assert from_json(to_json(ref)) == ref
    assert json.loads(to_json(JobFailed("boom", 1)))["kind"] == "JobFailed"


def test_progress_redraws_a_line_on_a_terminal_and_logs_off_one(capsys: pytest.CaptureFixture[str]) -> None:
    now = [0.0]
    tty = io.StringIO()
    p = Progress(4, "walk-forward jobs", tty=True, stream=tty, clock=lambda: now[0])
    p.start(), p.start()
    now[0] = 10.0
    p.finish(True, 0.5)
    p.finish(False)
    p.close()
    last = tty.getvalue().split("\r\033[K")[-1]
    assert last == "walk-forward jobs: 2/4 done, 0 running, 1 failed, best 0.500, 10 s elapsed, ETA 10 s\n"

    off = Progress(3, "tune cnn", tty=False, every_s=30.0, clock=lambda: now[0])
    off.start()
    off.finish(True, 1.0)  # 0 s since the last line: nothing yet
    now[0] = 50.0
    off.finish(True, 2.0)  # 40 s later: a line
    off.close()  # nothing changed since: no repeat
    lines = [line for line in capsys.readouterr().out.splitlines() if "progress" in line]
    assert len(lines) == 1 and "done=2" in lines[-1] and "best=2.0" in lines[-1] and "total=3" in lines[-1]
    off.finish(False)
    off.close()  # the last state always gets its line at the end
    lines = [line for line in capsys.readouterr().out.splitlines() if "progress" in line]
    assert len(lines) == 1 and "done=3" in lines[0] and "failed=1" in lines[0]
