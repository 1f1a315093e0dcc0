"""Real parts for end-to-end tests of `sigd run`: the daemon as a subprocess with a systemd
notify socket, a webhook receiver that checks every signature, free loopback ports."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.conftest import REPO


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class WebhookReceiver:
    """A loopback HTTP server that records webhook deliveries; `down` answers 503."""

    secret: str
    down: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    bad_signatures: int = 0
    refused: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        if self.down:
            self.refused += 1
            return web.Response(status=503)
        body = await request.read()
        # Checked independently of daemon/webhook.py: HMAC-SHA256 of the exact body bytes.
        want = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Sigd-Signature", ""), want):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.events.append(json.loads(body))
        return web.Response(status=200)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type_]


class DaemonProcess:
    """`python -m daemon run -c CONFIG` with $NOTIFY_SOCKET on a real datagram socket."""

    def __init__(self, config: Path, workdir: Path, env: dict[str, str], watchdog_usec: int = 0) -> None:
        self.config, self.workdir = config, workdir
        self.sock_path = str(workdir / f"notify-{time.monotonic_ns()}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)
        self.sock.setblocking(False)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "NOTIFY_SOCKET": self.sock_path,
                    **env}
        if watchdog_usec:
            self.env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.log_path = workdir / f"daemon-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.datagrams: list[tuple[float, bytes]] = []

    def start(self) -> "DaemonProcess":
        with self.log_path.open("wb") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "daemon", "run", "-c", str(self.config)],
                                         cwd=REPO, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
        return self

    def poll_notify(self) -> list[bytes]:
        """Datagrams received since the last call (also appended to `datagrams`)."""
        got = []
        while True:
            try:
                got.append(self.sock.recv(4096))
            except BlockingIOError:
                break
        now = time.monotonic()
        self.datagrams.extend((now, g) for g in got)
        return got

    async def wait_for(self, predicate: Any, timeout: float, what: str) -> Any:
        """Poll `predicate()` until truthy; fail with the daemon's log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll_notify()
            value = predicate()
            if value:
                return value
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode} waiting for {what}:\n{self.tail()}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.tail()}")

    async def wait_ready(self, timeout: float = 90.0) -> None:
        await self.wait_for(lambda: any(b"READY=1" in d for _, d in self.datagrams), timeout, "READY=1")

    def log_events(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines so far."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            raise AssertionError(f"daemon still running after {timeout}s:\n{self.tail()}")
        return int(self.proc.returncode)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.sock.close()
