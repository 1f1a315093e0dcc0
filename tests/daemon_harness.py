"""Real parts for end-to-end tests of `sigd run`: the daemon as a subprocess with a systemd
notify socket, tiny artifacts trained by the real pipeline, configs, free loopback ports.
(The webhook receiver and the fake Telegram Bot API are tests/alert_fakes.py's.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
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
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "NOTIFY_SOCKET": self.sock_path, **env}
        if watchdog_usec:
            self.env["WATCHDOG_USEC"] = str(watchdog_usec)
        self.log_path = workdir / f"daemon-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.datagrams: list[tuple[float, bytes]] = []

    def start(self, piped: bool = False) -> DaemonProcess:
        """Start the daemon; `piped` sends its output through a pipe (a thread here writes the
        log file), so that a file-size limit put on the daemon limits only its own files."""
        argv = [sys.executable, "-m", "daemon", "run", "-c", str(self.config)]
        if not piped:
            with self.log_path.open("wb") as fh:
                self.proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=fh, stderr=subprocess.STDOUT)
            return self
        self.proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=_copy_lines, args=(self.proc.stdout, self.log_path), daemon=True).start()
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


def _copy_lines(pipe: Any, path: Path) -> None:
    with path.open("ab") as fh:
        for line in pipe:
            fh.write(line)
            fh.flush()


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
        spec = TrainSpec(
            name,
            preset="tiny",
            data_dirs=(str(TAPE),),
            symbols=("ETH/USDT",),
            end=TRAIN_END,
            epochs=1,
            max_batches=3,
            seed=1,
            device="cpu",
        )
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
    meta = {k: v for k, v in doc.items() if k not in ("format", "format_version", "model", "classes", "version", "weights")}
    meta["threshold"] = {**doc["threshold"], "value": 0.34}
    save_artifact(artifact, model, doc["model"]["name"], doc["model"]["config"], meta)


# --- crash and restart tests ---------------------------------------------------------------

WEBHOOK_SECRET = "whsec-crash-0123456789"
API_TOKEN = "api-crash-token-9876"
CRASH_ENV = {"CRASH_WEBHOOK_SECRET": WEBHOOK_SECRET, "SIGD_API_TOKEN": API_TOKEN}


def trading_sections(
    tmp: Path,
    artifacts: dict[str, Path],
    hook_url: str,
    *,
    mode: str = "paper",
    lx_url: str = "",
    start: str = "",
    speed: float = 60.0,
) -> dict[str, dict[str, Any]]:
    """Config sections for a daemon that trades all the time (shaped tiny models, +-5 bp exits)
    and whose only alert channel is one webhook, so every alert is visible to the receiver.
    `lx_url` points at a local exchange the test runs (it outlives the daemon); else one is embedded."""
    return {
        "local_exchange": {"url": lx_url, "speed": speed, "start": start}
        if lx_url
        else {"port": free_port(), "speed": speed, "start": start},
        "store": {"path": tmp / "state.sqlite"},
        "log": {"format": "json"},
        "models": {
            "device": "cpu",
            "paths": {"mtf_transformer": artifacts["mtf_transformer-flat"], "cnn_lstm_attn": artifacts["cnn_lstm_attn-long"]},
            "trade_only_validated": False,
        },  # the shaped test models have no validation block
        "api": {"port": free_port()},
        "service": {"stale_after_s": 5.0, "shutdown_deadline_s": 5.0, "status_interval_s": 1.0},
        "retrain": {"enabled": False},
        "broker": {"mode": mode, "unknown_grace_s": 1.0},
        "strategy": {"combine": "either", "cooldown_bars": 0, "stop_loss": 0.0005, "take_profit": 0.0005},
        "alerts": {
            "log": False,
            "backoff_base_s": 0.2,
            "backoff_max_s": 1.0,
            "delivery_timeout_s": 2.0,
            "daily_summary_utc": "",
            "webhooks": [{"name": "hook", "url": hook_url, "secret_env": "CRASH_WEBHOOK_SECRET"}],
        },
        "alerts.signal_ws": {"enabled": False},
    }


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A read-only query against the daemon's SQLite file (WAL: safe while it runs)."""
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


async def wait_crash(daemon: DaemonProcess, timeout: float) -> int:
    """Until the daemon exits on its own (a crash point); its exit code."""
    assert daemon.proc is not None
    deadline = time.monotonic() + timeout
    while daemon.proc.poll() is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no crash within {timeout}s:\n{daemon.tail()}")
        await asyncio.sleep(0.05)
    return int(daemon.proc.returncode)


def assert_invariants(
    db: Path, received: list[dict[str, Any]], account: Any = None, start_balance: float = 0.0, symbol: str = "ETH/USDT"
) -> None:
    """The written invariants (README, "Operations: crash recovery"), checked after a restart.

    `received` is what the webhook receiver got; `account` the local exchange's account
    (testnet mode; `start_balance` its base balance before sigd traded).
    """
    ids = {e["id"] for e in received}
    # I1. No lost alert: every signal and every fill has its event, and the receiver has it.
    for table, prefix in (("signals", "signal-"), ("fills", "fill-")):
        rows = query(db, f"SELECT event_id FROM {table}")
        assert all(r[0] for r in rows), f"I1: a {table} row was never published: {rows}"
        assert {r[0] for r in rows} <= ids, f"I1: {table} events never delivered"
        assert all(r[0].startswith(prefix) for r in rows)
    undelivered = query(db, "SELECT event_id, status FROM outbox WHERE status != 'sent'")
    assert undelivered == [], f"I1: outbox rows not delivered: {undelivered}"
    # I2. An event id always carries the same body: receivers may drop repeats by id.
    bodies: dict[str, str] = {}
    for e in received:
        body = json.dumps(e, sort_keys=True)
        assert bodies.setdefault(e["id"], body) == body, f"I2: event {e['id']} arrived with two bodies"
    # I7. The same event types in every mode: each fill event comes after its order's "open" event.
    first = {}
    for i, e in enumerate(received):
        first.setdefault(e["id"], i)
    for e in received:
        if e["type"] == "fill":
            opened = f"order-{e['client_order_id']}-open"
            assert first.get(opened, len(received)) < first[e["id"]], f"I7: {e['id']} without {opened} before it"
    # I3. No duplicate order: one order per decision (symbol, bar, strategy), one fill per order.
    per_decision = query(
        db, "SELECT symbol, bar_ts, side, COUNT(*) FROM orders GROUP BY symbol, bar_ts, side HAVING COUNT(*) > 1"
    )
    per_order = query(db, "SELECT client_order_id, COUNT(*) FROM fills GROUP BY 1 HAVING COUNT(*) > 1")
    assert per_decision == [] and per_order == [], f"I3: {per_decision} {per_order}"
    # I4. Whatever a crash left unresolved is settled after the restart: only the newest order of
    # a symbol may still wait (a paper order decided on the last bar fills at the next price).
    newest = query(db, "SELECT symbol, MAX(bar_ts) FROM orders GROUP BY symbol")
    unresolved = query(db, "SELECT symbol, bar_ts, status FROM orders WHERE status IN ('pending', 'open', 'unknown')")
    assert all((sym, ts) in newest for sym, ts, _ in unresolved), f"I4: unresolved orders left: {unresolved}"
    # I5. The position is the sum of its fills (the ledger agrees with itself).
    fills = query(db, "SELECT side, amount FROM fills WHERE symbol=?", (symbol,))
    implied = sum(a if s == "buy" else -a for s, a in fills)
    stored = query(db, "SELECT amount FROM positions WHERE symbol=?", (symbol,))
    assert abs((stored[0][0] if stored else 0.0) - implied) < 1e-9, f"I5: position {stored} != fills {implied}"
    if account is not None:
        _assert_exchange_agrees(db, account, start_balance, implied, symbol)


def _assert_exchange_agrees(db: Path, account: Any, start_balance: float, position: float, symbol: str) -> None:
    """I3 and I6 on the exchange's own books (testnet)."""
    ours = {r[0]: r[1] for r in query(db, "SELECT client_order_id, status FROM orders")}
    at_exchange = [o.client_id for o in account.orders.values() if o.symbol == symbol.replace("/", "")]
    # I3 at the exchange: every order sigd placed is one sigd stored first, and none twice.
    assert len(at_exchange) == len(set(at_exchange)), f"I3: duplicate client ids at the exchange {at_exchange}"
    assert set(at_exchange) <= set(ours), "I3: orders at the exchange that sigd never stored"
    assert all(ours[c] == "filled" for c in at_exchange), f"I3: exchange orders not recorded as filled: {ours}"
    # I6. Position equals the exchange's: base balance = start balance + our position.
    base = symbol.split("/")[0]
    held = account.free.get(base, 0.0) + account.locked.get(base, 0.0)
    assert abs(held - (start_balance + position)) < 1e-6, f"I6: exchange holds {held}, ledger implies {start_balance + position}"


class Market:
    """What a trading test runs beside the daemon: a local exchange that outlives it, a webhook
    receiver, and the daemon's config (`sections` as written to `config`)."""

    def __init__(self, lx: Any, receiver: Any, sections: dict[str, dict[str, Any]], config: Path) -> None:
        self.lx, self.receiver, self.sections, self.config = lx, receiver, sections, config
        self.db = Path(sections["store"]["path"])
        self.api = f"http://127.0.0.1:{sections['api']['port']}"


@contextlib.asynccontextmanager
async def market(
    tmp: Path, artifacts: dict[str, Path], mode: str = "paper", start: str = "", speed: float = 60.0
) -> AsyncIterator[Market]:
    """A local exchange at `speed` (60x) in this process (from `start`, ISO), a webhook receiver, and a config for `mode`."""
    from daemon.localexchange import LocalExchange
    from daemon.localexchange.server import parse_start
    from tests.alert_fakes import WebhookReceiver

    receiver = WebhookReceiver(WEBHOOK_SECRET)
    await receiver.start()
    try:
        async with LocalExchange(speed=speed, start_ms=parse_start(start) if start else None) as lx:
            sections = trading_sections(tmp, artifacts, receiver.url, mode=mode, lx_url=lx.base_url, speed=speed)
            yield Market(lx, receiver, sections, write_toml(tmp / "config.toml", sections))
    finally:
        await receiver.stop()
