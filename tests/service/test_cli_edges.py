"""Small rough edges of the command line, each as a user meets it: a pipe closed early, a
backtest period outside the tape, the local exchange logging into a file, a malformed HTTP
request in the logs, and the training report's baseline."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture
def big_status_server() -> Iterator[int]:
    """A real HTTP server answering /status with a document larger than any pipe buffer."""
    body = json.dumps({"healthy": True, "streams": {f"S{i}/USDT 1m": {"last_bar_ts": i} for i in range(20_000)}})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_status_json_into_a_closed_pipe_ends_quietly(write_config, big_status_server: int) -> None:
    cfg = write_config(f"[api]\nport = {big_status_server}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "status", "--json", "-c", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10).startswith(b"{")  # `| head -c 10`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 141
    assert err == "", err


def test_backtest_period_errors_speak_iso(write_config) -> None:
    art = REPO / "models" / "artifacts"
    cfg = write_config(f"""
        [exchange]
        symbols = ["ETH/USDT"]
        [models]
        paths = {{ mtf_transformer = "{art / "mtf_transformer"}", cnn_lstm_attn = "{art / "cnn_lstm_attn"}" }}
    """)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "backtest",
            "-c",
            str(cfg),
            "--data",
            "daemon/localexchange/tape",
            "--from",
            "2020-01-01T00:00Z",
            "--to",
            "2020-01-02T00:00Z",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0
    assert "2020-01-01T00:00:00Z..2020-01-02T00:00:00Z" in res.stderr and "the tape covers 2025-08-" in res.stderr
    assert not re.search(r"\d{13}", res.stderr), res.stderr  # no epoch milliseconds


def test_local_exchange_logs_json_lines_off_a_tty(tmp_path: Path) -> None:
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("w") as fo, err.open("w") as fe:
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "local-exchange", "--port", "0", "--speed", "0", "--paused"],
            cwd=REPO,
            stdout=fo,
            stderr=fe,
        )
        try:
            deadline = time.monotonic() + 60
            while "listening on" not in out.read_text() and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            assert "listening on" in out.read_text(), err.read_text()
        finally:
            proc.terminate()
            proc.wait(30)
    lines = [line for line in err.read_text().splitlines() if line.strip()]
    assert lines, "the local exchange logged nothing (it warns about derived 1s bars)"
    events = [json.loads(line) for line in lines]  # every line is a JSON object
    assert any(e.get("event") == "derived_1s_bars" and e.get("level") == "warning" for e in events), events


async def test_malformed_request_log_names_the_error() -> None:
    from aiohttp import web

    from daemon import log

    buf = io.StringIO()
    log.setup("info", "json", stream=buf)
    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(100), 10)).startswith(b"HTTP/1.0 400")
        writer.close()
    finally:
        await runner.cleanup()
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if "Error handling request" in line]
    assert lines and lines[0]["error"].startswith("BadHttpMessage: 400") and "Content-Length" in lines[0]["error"]


def test_training_report_names_its_baseline() -> None:
    from daemon.commands.train import format_metrics

    test = {
        "bars": 100,
        "accuracy": 0.5,
        "macro_f1": 0.4,
        "baseline_class": 1,
        "baseline_accuracy": 0.6,
        "baseline_macro_f1": 0.25,
        "sharpe": 0.1,
        "trades": 3,
        "buy_and_hold_sharpe": 0.2,
        "total_return": 0.01,
        "buy_and_hold_return": 0.02,
    }
    text = format_metrics("m", {"test": test, "validation": {"threshold": 0.5, "sharpe": 0.3}})
    assert "always-FLAT baseline" in text and "majority" not in text


# The command table lives in docs/getting-started.md; every flag of every command is in the
# generated reference (docs/gen_reference.py), checked by tests/test_docs_reference.py.
COMMAND_TABLE = REPO / "docs" / "getting-started.md"


def test_getting_started_command_table_matches_the_cli() -> None:
    import argparse

    from daemon.service.cli import build_parser

    table = COMMAND_TABLE.read_text().split("| command | what it does |", 1)[1].split("\n\n", 1)[0]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name in sub.choices:
        assert f"`sigd {name}" in table, f"getting-started.md's command table lacks sigd {name}"


def test_getting_started_command_table_flags_exist() -> None:
    import argparse

    from daemon.service.cli import build_parser

    table = COMMAND_TABLE.read_text().split("| command | what it does |", 1)[1].split("\n\n", 1)[0]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for row in table.splitlines()[2:]:
        usage = row.split("|")[1]  # the command cell; the description may name other commands
        name = re.match(r"\s*`sigd ([a-z-]+)", usage).group(1)
        known = {o for a in sub.choices[name]._actions for o in a.option_strings}
        for flag in re.findall(r"(?<![\w-])--?[a-z][a-z-]*", usage):
            assert flag in known, f"getting-started.md's row for sigd {name} documents {flag}, which the CLI lacks"


def test_check_reports_an_unknown_symbol_and_every_other_problem(write_config, tmp_path: Path) -> None:
    tape = REPO / "daemon" / "localexchange" / "tape_2021"
    path = write_config(f"""
        [exchange]
        symbols = ["ETH/USDT", "SOL/USDT"]
        [local_exchange]
        tape = "{tape}"
        [models]
        paths = {{ gru = "{tmp_path / "none"}" }}
        """)
    res = subprocess.run(
        [sys.executable, "-m", "daemon", "check", "-c", str(path)], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert res.returncode == 2, res.stderr
    assert "exchange.symbols[1]: 'SOL/USDT' is not a market" in res.stderr and "models.paths.gru" in res.stderr


@pytest.mark.parametrize("command", ["backtest", "walk-forward"])
def test_unusable_report_dir_fails_at_once_in_one_line(command: str, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the report's parent directory should be
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            command,
            "--data",
            str(REPO / "daemon" / "localexchange" / "tape_2021"),
            "--report",
            str(blocker / "r"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert f"--report {blocker / 'r'}: Not a directory" in res.stderr


def test_check_on_20000_unknown_symbols_prints_20_problems_and_the_count(write_config) -> None:
    symbols = ", ".join(f'"S{i:05d}/USDT"' for i in range(20_000))
    path = write_config(f"""
        [exchange]
        symbols = ["ETH/USDT", {symbols}]
        """)
    res = subprocess.run(
        [sys.executable, "-m", "daemon", "check", "-c", str(path)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and len(lines) == 21, (res.returncode, len(lines), res.stderr[-500:])
    assert "exchange.symbols[1]: 'S00000/USDT' is not a market" in lines[0]
    assert lines[-1].endswith("... and 19980 more problems (20000 in all; the first 20 are above)")
