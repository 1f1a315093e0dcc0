"""The HTTP server process lives and dies with the daemon: a kill -9 of the daemon never leaves
it running (nor holding the port), it gives up its claim on the CPU once it serves, and one
started for a daemon that is already gone ends at once. Events published while a decision
cycle runs reach it only after the cycle, in one frame. Real processes, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from daemon import events
from daemon.service.api import Api
from tests.conftest import REPO
from tests.service.test_dashboard_ws import TOKEN, DashboardService, _bar

# A daemon stand-in: the real Api (daemon side) over the fixed read model, in its own process.
DAEMON = """
import asyncio, json, sys
from daemon.service.api import Api
from daemon.service.httpserver import Settings
from tests.service.test_dashboard_ws import TOKEN, DashboardService

async def main():
    api = Api(DashboardService(), port=0, token=TOKEN, settings=Settings(cpu_priority=sys.argv[1]))
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
def daemon(request: pytest.FixtureRequest) -> object:
    proc = subprocess.Popen(
        [sys.executable, "-c", DAEMON, getattr(request, "param", "nice")],
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


@pytest.mark.parametrize("daemon", ["nice", "idle"], indirect=True)
def test_once_serving_it_gives_up_its_claim_on_the_cpu(daemon, request: pytest.FixtureRequest) -> None:
    _, info = daemon
    server, url = info["server"], info["url"]
    assert _get(f"{url}/status") == 200
    # Lowered right after it reported ready: by the time a request is answered it is done.
    if request.node.callspec.params["daemon"] == "idle":
        assert os.sched_getscheduler(server) == os.SCHED_IDLE
    else:
        assert os.sched_getscheduler(server) == os.SCHED_OTHER and os.getpriority(os.PRIO_PROCESS, server) == 19
    daemon_pid = daemon[0].pid  # the daemon's own priority is untouched
    assert os.sched_getscheduler(daemon_pid) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, daemon_pid) == os.getpriority(os.PRIO_PROCESS, 0)


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


async def test_events_of_a_running_decision_reach_the_pages_after_it_in_one_frame() -> None:
    deciding = asyncio.Event()  # set: no decision cycle runs (what the engine's drain waits for)
    deciding.set()
    api = Api(DashboardService(), port=0, token=TOKEN, quiet=deciding.wait)
    await api.start()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{api.url}/ws/events") as ws:
            assert (await ws.receive_json(timeout=10))["kind"] == "snapshot"
            deciding.clear()  # a cycle starts; its bars are published as the feed does
            for ts in (1, 2, 3):
                events.publish(_bar(ts))
            with pytest.raises(TimeoutError):  # nothing while it runs
                await ws.receive_json(timeout=1.0)
            deciding.set()  # committed
            frame = await ws.receive_json(timeout=10)
            assert frame["kind"] == "batch" and [e["ts"] for e in frame["events"]] == [60_000, 120_000, 180_000]
    finally:
        await api.stop()
