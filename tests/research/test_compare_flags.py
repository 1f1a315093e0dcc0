"""`sigd compare` input checks as a user types them: a bad --fee or an unknown --families name is
a usage error (exit 2) naming the flag, at parse time, before any data is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models.registry import FAMILIES
from tests.conftest import REPO

TAPE = str(REPO / "daemon" / "localexchange" / "tape_2021")


def compare(*argv: str, data: str = TAPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "compare", *argv, "--data", data, "--out", "/tmp/unused"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--families", "gru", "--fee", "-1"], "argument --fee: must be a fraction per side in [0, 1)"),
        (["--families", "gru", "--fee", "1.5"], "argument --fee: must be a fraction per side in [0, 1)"),
        (["--families", "gru", "--fee", "nan"], "argument --fee: must be a fraction per side in [0, 1)"),
        (["--families", "gru", "--fee", "cheap"], "argument --fee: expected a number, got 'cheap'"),
        (["--families", "gru", "--folds", "0"], "argument --folds: must be >= 1, got 0"),
        (["--families", "gru", "nosuch"], "argument --families: unknown model family 'nosuch'; known: " + ", ".join(FAMILIES)),
    ],
)
def test_bad_compare_flag_is_a_usage_error_naming_it(argv: list[str], says: str) -> None:
    res = compare(*argv)
    assert res.returncode == 2 and says in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr


def test_unknown_family_is_refused_before_the_data_is_read(tmp_path: Path) -> None:
    # An empty tape directory: a check that read the data first would complain about the data.
    res = compare("--families", "nosuch", data=str(tmp_path))
    assert res.returncode == 2 and "unknown model family 'nosuch'" in res.stderr, res.stderr[-2000:]
    known = compare("--families", "gru", "--fee", "0", data=str(tmp_path))  # the same data, a known family
    # ... is refused for the data it lacks instead: the traded symbol's tape, named with its flag
    assert known.returncode == 2 and "argument --symbols: 'ETH/USDT' has no tape file" in known.stderr, known.stderr
    assert "nosuch" not in known.stderr and "Traceback" not in known.stderr
