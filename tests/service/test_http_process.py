"""The HTTP server process lives and dies with the daemon: a kill -9 of the daemon never leaves
it running (nor holding the port), it gives up its claim on the CPU once it serves, and one
started for a daemon that is already gone ends at once. Real processes, real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

# A daemon stand-in: the real Api (daemon side) over the fixed read model, in its own process.
DAEMON = """
import asyncio, json, sys
from daemon.service.api import Api
from tests.service.test_dashboard_ws import TOKEN, DashboardService

async def main():
    api = Api(DashboardService(), port=0, token=TOKEN)
    await api.start()
    print("serving", json.dumps({"url": api.url, "server": api._proc.pid}), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return int(resp.status)


@pytest.fixture
def daemon() -> object:
    proc = subprocess.Popen(
        [sys.executable, "-c", DAEMON],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = b""
        for line in proc.stdout:  # past the log lines
            if line.startswith(b"serving "):
                break
        info = json.loads(line.removeprefix(b"serving ") or b"{}")
        yield proc, info
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("server_state", ["running", "stopped"])
def test_a_kill_9_of_the_daemon_ends_its_http_server_and_frees_the_port(daemon, server_state: str) -> None:
    proc, info = daemon
    server, url = info["server"], info["url"]
    assert _get(f"{url}/status") == 200  # it serves
    if server_state == "stopped":  # it cannot even read its link's end: only the kernel can end it
        os.kill(server, signal.SIGSTOP)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert _wait_gone(server, 10.0), "the HTTP server process outlived its daemon"
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as s:  # nothing holds the port: a restarted daemon can bind it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))


def test_once_serving_it_runs_only_on_cpu_time_nothing_else_wants(daemon) -> None:
    _, info = daemon
    server, url = info["server"], info["url"]
    assert _get(f"{url}/status") == 200
    # Lowered right after it reported ready: by the time a request is answered it is done.
    assert os.sched_getscheduler(server) == os.SCHED_IDLE
    assert os.sched_getscheduler(0) != os.SCHED_IDLE  # (the daemon's side is untouched)


def test_a_server_started_for_a_daemon_already_gone_ends_at_once() -> None:
    listen, (ours, theirs) = socket.socket(), socket.socketpair()
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daemon.service.httpserver",
                "--listen-fd",
                str(listen.fileno()),
                "--link-fd",
                str(theirs.fileno()),
                "--parent",
                "1",  # not its parent: the daemon that started it has died already
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            pass_fds=(listen.fileno(), theirs.fileno()),
        )
        assert proc.wait(60) == 0
    finally:
        for s in (listen, ours, theirs):
            s.close()
