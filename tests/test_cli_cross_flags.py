"""Flags that cannot work together, and dates that are not dates: one line naming the flag,
exit 2, before any data is read or Ray starts (the real `sigd` entry point)."""

from __future__ import annotations

import pytest

from daemon.service.cli import main
from tests.conftest import REPO

TAPE = str(REPO / "daemon" / "localexchange" / "tape")


@pytest.mark.parametrize(
    ("argv", "flag", "says"),
    [
        (
            ["train", "--model", "gru", "--neutral-zone", "0.01", "--label-threshold", "0.002"],
            "--neutral-zone",
            "is above --label-threshold",
        ),
        (["train", "--model", "gru", "--from", "2025-02-01", "--to", "2025-01-01"], "--to", "is not after --from"),
        (
            ["compare", "--families", "gru", "--data", TAPE, "--symbols", "FOO/USDT", "--out", "x"],
            "--symbols",
            "'FOO/USDT' has no tape file",
        ),
        (["tune", "--data", TAPE, "--from", "nope"], "--from", "'nope' is not an ISO 8601 instant"),
        (
            ["compare", "--validate", TAPE, "--data", TAPE, "--from", "2025-13-01", "--out", "x"],
            "--from",
            "is not an ISO 8601 instant",
        ),
        (["research", "--data", TAPE, "--to", "yesterday"], "--to", "is not an ISO 8601 instant"),
        (["train", "--model", "nope"], "--model", "unknown model family 'nope'"),
    ],
)
def test_one_line_naming_the_flag(argv: list[str], flag: str, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        rc = int(exc.code or 0)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and f"argument {flag}: " in err and says in err, err
