"""A retrain that crashed leaves its staging run and half-installed copies behind; the next start
removes them and leaves the served and registered models as they were."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from daemon.crashpoints import CRASH_EXIT_CODE
from daemon.retrain.nightly import Retrainer, install_artifact
from daemon.retrain.storage import put_dir
from daemon.store import Store
from tests.conftest import REPO
from tests.retrain.test_retrain import RecordingSink, cfg  # noqa: F401 - the fixture


def _artifact(path: Path, version: str) -> Path:
    path.mkdir(parents=True)
    (path / "artifact.json").write_text(json.dumps({"version": version}))
    (path / "weights.safetensors").write_bytes(os.urandom(256))
    return path


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


async def test_start_removes_a_crashed_retrains_leftovers_and_keeps_the_live_model(cfg, tmp_path: Path) -> None:
    c = cfg()
    root = c.path(c.retrain.artifacts_dir)
    store = Store(c.path(c.store.path))
    live = install_artifact(_artifact(tmp_path / "src-v1", "v1"), root / "m", "v1")
    store.record_model("m", "v1", str(live), "current", "{}", 0)
    before = _snapshot(live)
    # A real crash mid-install: the copy beside its place, never renamed in.
    _artifact(tmp_path / "src-v2", "v2")
    crashed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from daemon.retrain.nightly import install_artifact; "
            "install_artifact(Path(sys.argv[1]), Path(sys.argv[2]), 'v2')",
            str(tmp_path / "src-v2"),
            str(root / "m"),
        ],
        cwd=REPO,
        env={**os.environ, "SIGD_CRASH_AT": "mid_retrain_install"},
        capture_output=True,
        timeout=60,
    )
    assert crashed.returncode == CRASH_EXIT_CODE, crashed.stderr
    # A run's staging folder with a trained candidate, and put_dir's copies of an interrupted replace.
    stage = root / ".staging" / "run-1754265600000"
    put_dir(_artifact(tmp_path / "src-v3", "v3"), str(stage / "m"))
    _artifact(stage / ".m.tmp-k2j4", "v3")
    _artifact(root / "m" / ".v1.old-4242", "v1")
    leftovers = [root / "m" / ".v2.tmp", root / ".staging", root / "m" / ".v1.old-4242"]
    assert all(p.exists() for p in leftovers)

    async def swap(name: str, path: Path) -> None:
        raise AssertionError("no swap at start")

    Retrainer(c, store, RecordingSink(), swap, lambda: {"m": live})
    assert not any(p.exists() for p in leftovers)
    assert sorted(p.name for p in (root / "m").iterdir()) == ["v1"] and _snapshot(live) == before
    assert [(r["version"], r["status"]) for r in store.model_rows("m")] == [("v1", "current")]
