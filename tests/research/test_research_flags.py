"""`sigd walk-forward` / `sigd tune` as a user types them: a wrong flag is one line naming it, at once
(before a Ray start-up or a data load), never a traceback or Ray's own resource error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

TAPE = str(REPO / "daemon" / "localexchange" / "tape_2021")


@pytest.mark.parametrize("argv, code, says", [
    (["tune", "--families", "nosuch", "--trials", "1"], 1, "unknown model 'nosuch'; known: "),
    (["tune", "--trials", "-2"], 2, "argument --trials: must be >= 1, got -2"),
    (["tune", "--trials", "many"], 2, "argument --trials: expected an integer, got 'many'"),
    (["tune", "--folds", "3:x"], 1, "--folds '3:x': expected TRAIN_DAYS:TEST_DAYS"),
    (["walk-forward", "--folds", "0:1"], 1, "--folds '0:1': both day counts must be >= 1"),
    (["walk-forward", "--runner", "ray", "--num-cpus", "-1"], 2, "argument --num-cpus: must be >= 0, got -1"),
    (["compare", "--validate", str(REPO / "models" / "artifacts" / "cnn_lstm_attn"), "--from", "notadate", "--out",
      "/tmp/unused"], 1, "--from 'notadate': not an ISO 8601 instant"),
])
def test_bad_research_flag_is_one_line_naming_it(argv: list[str], code: int, says: str) -> None:
    res = subprocess.run([sys.executable, "-m", "daemon", *argv, "--data", TAPE], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert res.returncode == code and says in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "ray_started" not in res.stderr
