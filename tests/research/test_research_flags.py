"""`sigd walk-forward` / `sigd tune` as a user types them: a wrong flag is one line naming it, at once
(before a Ray start-up or a data load), never a traceback or Ray's own resource error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

TAPE = str(REPO / "daemon" / "localexchange" / "tape_2021")


@pytest.mark.parametrize(
    "argv, code, says",
    [
        (["tune", "--families", "nosuch", "--trials", "1"], 1, "unknown model 'nosuch'; known: "),
        (["tune", "--trials", "-2"], 2, "argument --trials: must be >= 1, got -2"),
        (["tune", "--trials", "many"], 2, "argument --trials: expected an integer, got 'many'"),
        (["tune", "--folds", "3:x"], 2, "argument --folds: '3:x': expected TRAIN_DAYS:TEST_DAYS"),
        (["walk-forward", "--folds", "0:1"], 2, "argument --folds: '0:1': both day counts must be >= 1"),
        (["tune", "--preset", "huge"], 2, "argument --preset: invalid choice: 'huge'"),
        (["tune", "--folds", "4000:7"], 1, "walk-forward 4000:7 days needs at least 4001 days of data"),
        (["tune", "--from", "yesterday"], 2, "argument --from: 'yesterday' is not an ISO 8601 instant"),
        (["backtest", "--walk-forward", "30"], 2, "argument --walk-forward: '30': expected TRAIN_DAYS:TEST_DAYS"),
        (
            ["compare", "--families", "gru", "--out", "/tmp/unused", "--train-days", "0"],
            2,
            "argument --train-days: must be > 0, got 0",
        ),
        (
            ["compare", "--families", "gru", "--out", "/tmp/unused", "--embargo-minutes", "-5"],
            2,
            "argument --embargo-minutes: must be >= 0, got -5",
        ),
        (
            ["compare", "--families", "gru", "--out", "/tmp/unused", "--max-batches", "-1"],
            2,
            "argument --max-batches: must be >= 0, got -1",
        ),
        (["train", "--model", "gru", "--horizon", "0"], 2, "argument --horizon: must be >= 1, got 0"),
        (["train", "--model", "gru", "--label-threshold", "-0.1"], 2, "argument --label-threshold: must be > 0"),
        (["train", "--model", "gru", "--scaling", "2"], 2, "argument --scaling: must be >= 0 and < 1, got 2"),
        (["walk-forward", "--runner", "ray", "--num-cpus", "-1"], 2, "argument --num-cpus: must be >= 0, got -1"),
        (
            [
                "compare",
                "--validate",
                str(REPO / "models" / "artifacts" / "cnn_lstm_attn"),
                "--from",
                "notadate",
                "--out",
                "/tmp/unused",
            ],
            2,
            "argument --from: 'notadate' is not an ISO 8601 instant",
        ),
    ],
)
def test_bad_research_flag_is_one_line_naming_it(argv: list[str], code: int, says: str) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "daemon", *argv, "--data", TAPE], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert res.returncode == code and says in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "ray_started" not in res.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--model", "gru"],
        ["backtest"],
        ["walk-forward"],
        ["tune"],
        ["compare", "--families", "gru", "--out", "/tmp/unused"],
    ],
)
def test_a_missing_data_directory_names_the_flag_and_the_path(argv: list[str], tmp_path) -> None:
    missing = tmp_path / "no-such-tapes"
    res = subprocess.run(
        [sys.executable, "-m", "daemon", *argv, "--data", str(missing)], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert res.returncode == 2, res.stderr[-2000:]
    assert res.stderr.splitlines() == [
        f"sigd {argv[0]}: error: argument --data: no such directory: {missing} (see: sigd {argv[0]} --help)"
    ]
