"""Real parts for end-to-end tests of `sigd run`: the daemon as a subprocess with a systemd
notify socket, tiny artifacts trained by the real pipeline, configs, free loopback ports.
(The webhook receiver and the fake Telegram Bot API are tests/alert_fakes.py's.)"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import REPO

TAPE = REPO / "daemon" / "localexchange" / "tape"
# The tiny artifacts train on the tape before this instant, so later bars are unseen by them.
TRAIN_END = "2025-08-10T00:00:00Z"


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def build_tiny_artifacts(out: Path) -> dict[str, Path]:
    """Both served models, tiny preset, one short epoch, by the real training code, plus two
    shaped copies whose behaviour the end-to-end tests can count on (a tiny model's own
    answers are near-constant and its optimized threshold rarely trades):
    "mtf_transformer-flat" never trades (threshold above 1) and "cnn_lstm_attn-long" always
    says LONG with certainty, so with `combine = "either"` and tight stop/take-profit rules
    the daemon enters, exits and re-enters all the time.
    """
    import shutil

    from daemon.domain import Side
    from pipeline.spec import TrainSpec
    from pipeline.train import train

    dirs: dict[str, Path] = {}
    for name in ("mtf_transformer", "cnn_lstm_attn"):
        spec = TrainSpec(name, preset="tiny", data_dirs=(str(TAPE),), symbols=("ETH/USDT",), end=TRAIN_END, epochs=1,
                         max_batches=3, seed=1, device="cpu")
        res = train(spec, out / name)
        dirs[name] = res.artifact_dir
    dirs["mtf_transformer-flat"] = Path(shutil.copytree(dirs["mtf_transformer"], out / "mtf_transformer-flat"))
    set_threshold(dirs["mtf_transformer-flat"], 1.01)
    dirs["cnn_lstm_attn-long"] = Path(shutil.copytree(dirs["cnn_lstm_attn"], out / "cnn_lstm_attn-long"))
    make_constant(dirs["cnn_lstm_attn-long"], Side.LONG)
    return dirs


def set_threshold(artifact: Path, value: float) -> None:
    """Rewrite an artifact's threshold (above 1: it never trades; 0.34: it trades whenever not FLAT)."""
    meta = json.loads((artifact / "artifact.json").read_text())
    meta["threshold"]["value"] = value
    (artifact / "artifact.json").write_text(json.dumps(meta))


def toml_value(v: Any) -> str:
    """A Python value as TOML (strings, numbers, bools, lists, inline tables)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (str, Path)):
        return json.dumps(str(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {v!r}")


def write_toml(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """Write a config file from {"section": {key: value}} (dotted sections allowed)."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def make_constant(artifact: Path, side: int) -> None:
    """Rewrite an artifact so that it answers `side` with certainty on every bar."""
    import torch

    from models.artifacts import load_artifact, save_artifact

    model, doc, _ = load_artifact(artifact)
    # The action head: the last Linear layer with 3 outputs (SHORT, FLAT, LONG logits).
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 3][-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([20.0 if i == side else 0.0 for i in range(3)]))
    meta = {k: v for k, v in doc.items() if k not in ("format", "format_version", "model", "classes", "version",
                                                       "weights")}
    meta["threshold"] = {**doc["threshold"], "value": 0.34}
    save_artifact(artifact, model, doc["model"]["name"], doc["model"]["config"], meta)
