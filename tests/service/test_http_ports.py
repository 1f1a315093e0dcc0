"""A port in use: `sigd run` says so in one line naming the key and the process holding the port,
exits 2, no traceback; with `[api] free_port_fallback` it binds a free port instead."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import ports
from daemon.config import ConfigError
from tests.conftest import REPO


@pytest.fixture
def holder_process() -> Iterator[tuple[int, int]]:
    """Another process listening on a loopback port: (port, pid)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen();"
            "print(s.getsockname()[1], flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    yield port, proc.pid
    proc.kill()
    proc.wait()


def test_the_holder_of_a_port_is_named(holder_process: tuple[int, int]) -> None:
    port, pid = holder_process
    who = ports.holder(port)
    assert who.startswith(f"pid {pid} (") and "socket" in who
    with pytest.raises(ConfigError) as refused:
        ports.listen("127.0.0.1", port, "api.port")
    assert str(refused.value) == (
        f"api.port = {port}: 127.0.0.1:{port} is already in use by {who}; stop it or choose another api.port"
    )


def test_the_fallback_binds_a_free_port(holder_process: tuple[int, int]) -> None:
    port, _ = holder_process
    sock = ports.listen("127.0.0.1", port, "api.port", fallback=True)
    try:
        assert sock.getsockname()[1] not in (0, port)
    finally:
        sock.close()


def test_sigd_run_on_a_port_in_use_is_one_line_and_exit_2(holder_process: tuple[int, int], write_config, tmp_path: Path) -> None:
    port, pid = holder_process
    cfg = write_config(
        f'[api]\nport = {port}\n[store]\npath = "{tmp_path / "state.sqlite"}"\n[alerts.signal_ws]\nenabled = false\n'
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "-c", str(cfg)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"api.port = {port}: 127.0.0.1:{port} is already in use by pid {pid} (" in done.stderr
    assert time.monotonic() - started < 60  # before the models load and the feed warms up


def test_the_demo_config_falls_back_to_a_free_port() -> None:
    from daemon import config

    cfg = config.load(REPO / "config.toml")
    assert cfg.api.free_port_fallback is True  # the shipped demo: `make run` next to another server works


def test_a_bad_allowed_host_names_the_key(write_config) -> None:
    from daemon import config

    with pytest.raises(ConfigError, match=r"api.allowed_hosts\[0\]: expected a host name"):
        config.load(write_config('[api]\nallowed_hosts = ["https://sigd.lan/"]\n'))
    with pytest.raises(ConfigError, match=r"api.max_connections: must be within 1..100000"):
        config.load(write_config("[api]\nmax_connections = 0\n"))
