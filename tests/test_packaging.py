"""What a new user meets before sigd runs: `make setup` says what it is doing, and building the
package metadata raises no setuptools deprecation (the licence table would stop building in 2027)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_metadata_builds_without_a_deprecation_and_declares_mit(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    (src / "daemon").mkdir()
    (src / "daemon" / "__init__.py").write_text("")
    (tmp_path / "meta").mkdir()
    res = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::DeprecationWarning",
            "-c",
            "import sys; from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))",
            str(tmp_path / "meta"),
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Deprecat" not in res.stderr, res.stderr[-2000:]
    metadata = (tmp_path / "meta" / res.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata


def test_make_setup_prints_one_progress_line_per_step(tmp_path: Path) -> None:
    # make -n lists the recipe; every command that takes time follows its own "setup i/4" line
    res = subprocess.run(
        ["make", "-n", "setup", f"VENV={tmp_path / 'venv'}"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    slow = [i for i, line in enumerate(lines) if " -m venv " in line or " -m pip install" in line]
    assert len(slow) == 4, lines
    for step, i in enumerate(slow, start=1):
        assert lines[i - 1].startswith(f'echo "setup {step}/4: '), (step, lines[i - 1])
