"""Every command example of docs/getting-started.md, run against the shipped config.

What is run, honestly:

- `make run` is run as what its recipe runs after the setup, `sigd run -c config.toml`
  (as `python -m daemon run`), against the shipped `config.toml` copied byte for byte except
  two ports: the API gets a free port and the signal websocket an ephemeral one (0), so that
  the test never collides with another daemon. The copy sits in a temporary directory beside
  links to the checkout's `daemon/` and `models/`, so its relative paths (the tape, the
  artifacts) resolve as they do in the checkout, and its `state/` is fresh.
- every `sigd ...` line is run as `python -m daemon ...` with `-c config.toml` pointing at that
  copy, while the daemon runs; it must exit 0;
- `curl -s 127.0.0.1:8787/PATH` is done with urllib against the copy's API port;
- `make test` is not run (it is this suite); the test checks the Makefile's recipe instead.

A line of a `sh` block that none of these covers fails the test: a new example in the page
needs a runner here. The daemon is then stopped with SIGINT and must exit 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
PAGE = REPO / "docs" / "getting-started.md"
READY_S = 180.0  # start-up: imports, warm-up over REST (the machine may be busy)
FIRST_CYCLE_S = 120.0
SYMBOLS = (
    "ETH/USDT",
    "XRP/USDT",
    "ADA/USDT",
    "DOGE/USDT",
    "LTC/USDT",
)  # the shipped config's  # the first trigger bars close 15 s into the replay


def examples() -> list[str]:
    """Every command line of the page's ```sh blocks (comments and blank lines dropped)."""
    text = PAGE.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = re.split(r"\s+#", line, maxsplit=1)[0].strip()
            if command:
                lines.append(command)
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _shipped_config_copy(tmp: Path, api_port: int) -> Path:
    text = (REPO / "config.toml").read_text(encoding="utf-8")
    for old, new in ((r"^port = 8787\b", f"port = {api_port}"), (r"^port = 8765\b", "port = 0")):
        text, n = re.subn(old, new, text, flags=re.M)
        assert n == 1, f"config.toml no longer has one line matching {old!r}: update this test"
    (tmp / "daemon").symlink_to(REPO / "daemon")
    (tmp / "models").symlink_to(REPO / "models")
    cfg = tmp / "config.toml"
    cfg.write_text(text, encoding="utf-8")
    return cfg


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("SIGD_API_TOKEN", None)
    return env


def _sigd(args: list[str], cfg: Path) -> subprocess.CompletedProcess[str]:
    args = [str(cfg) if a == "config.toml" else a for a in args]
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120
    )


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _wait_for(what: str, deadline_s: float, proc: subprocess.Popen[str], log: Path, pred: Callable[[], bool]) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"sigd run exited {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        if pred():
            return
        time.sleep(0.5)
    pytest.fail(f"no {what} within {deadline_s} s:\n{log.read_text()[-3000:]}")


def test_the_page_has_the_examples_this_test_runs() -> None:
    lines = examples()
    assert "make run" in lines and "make test" in lines
    assert any(line.startswith("sigd status") for line in lines)


def test_make_test_runs_pytest_and_make_run_runs_sigd_run_on_the_shipped_config() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run: setup\n\t\$\(VENV\)/bin/sigd run -c config\.toml$", makefile, re.M)
    assert re.search(r"^test: setup\n\t\$\(PY\) -m pytest ", makefile, re.M)


def test_every_getting_started_command_runs_against_the_shipped_config(tmp_path: Path) -> None:
    port = _free_port()
    cfg = _shipped_config_copy(tmp_path, port)
    log = tmp_path / "sigd.log"
    lines = examples()
    unknown = [
        line
        for line in lines
        if not (
            line in ("make run", "make test") or line.startswith("sigd ") or re.fullmatch(r"curl -s 127\.0\.0\.1:8787/\w+", line)
        )
    ]
    assert not unknown, f"getting-started.md has commands this test does not run: {unknown}"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "-c", str(cfg)],
            cwd=tmp_path,
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        _wait_for("daemon_ready", READY_S, proc, log, lambda: '"daemon_ready"' in log.read_text())
        assert f"sigd dashboard: http://127.0.0.1:{port}/" in log.read_text()
        ran = 0
        for line in lines:
            if line.startswith("sigd "):
                done = _sigd(line.split()[1:], cfg)
                assert done.returncode == 0, f"{line}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
                ran += 1
                if "--json" in line:
                    status = json.loads(done.stdout)
                    assert set(status["symbols"]) == set(SYMBOLS)
                elif line.startswith("sigd status"):
                    assert "models:" in done.stdout and "ETH/USDT" in done.stdout
                elif line.startswith("sigd check"):
                    assert done.stdout.strip().endswith(": ok")
            elif line.startswith("curl "):
                code, body = _get(port, line.split("8787", 1)[1])
                assert code == 200 and json.loads(body)["healthy"] is True, body
                ran += 1
        assert ran >= 4

        # The page's first minute: one cycle decides the five traded symbols about 15 s in.
        def decided() -> bool:
            metrics = _get(port, "/metrics")[1]
            return all(re.search(rf'^sigd_decisions_total{{symbol="{re.escape(s)}"}} [1-9]', metrics, re.M) for s in SYMBOLS)

        _wait_for("first decision cycle", FIRST_CYCLE_S, proc, log, decided)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        assert '"daemon_stopped"' in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
