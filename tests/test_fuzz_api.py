"""Property-based fuzzing (hypothesis) of the HTTP API of a real `sigd run` (tiny models, its
local exchange): raw requests of every shape — methods, paths, headers, tokens, bodies, plain
garbage — must never crash the process (nor the HTTP server process), answer 500, act without the token, or leave the
daemon unhealthy."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_harness import DaemonProcess, free_port, write_toml

pytestmark = pytest.mark.slow
TOKEN = "fuzz-api-token-0123456789"
PATHS = [
    "/healthz",
    "/status",
    "/metrics",
    "/pause",
    "/resume",
    "/flat",
    "/retrain",
    "/",
    "/status/../pause",
    "/%70ause",
    "/pause?x=1",
    "//pause",
    "/flat%00",
    "/" + "a" * 5000,
]
TEXT = st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=60)


@st.composite
def request(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))  # not HTTP at all
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "G\x00T", "POST "]))
    path = draw(st.sampled_from(PATHS) | TEXT.map(lambda t: "/" + t.replace(" ", "%20")))
    headers = [b"Host: 127.0.0.1"]
    auth = draw(
        st.sampled_from(["", "Bearer ", "Bearer x", f"Bearer {TOKEN[:-1]}", f"bearer {TOKEN}x", "Basic Zm9v"])
        | TEXT.map(lambda t: "Bearer " + t)
    )
    if auth:
        headers.append(b"Authorization: " + auth.encode("latin-1"))
    body = draw(st.binary(max_size=200))
    length = draw(st.sampled_from([str(len(body)), "0", "-1", "abc", "99999999999999999999", ""]))
    if length:
        headers.append(b"Content-Length: " + length.encode())
    for name, value in draw(st.lists(st.tuples(TEXT, TEXT), max_size=3)):
        headers.append(f"{name}: {value}".encode("latin-1"))
    return f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + b"\r\n".join(headers) + b"\r\nConnection: close\r\n\r\n" + body


def _send(port: int, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send `raw`, read until the server closes or `timeout` passes (a request that promised
    more body than it sent is left waiting). No half-close: aiohttp drops the answer then."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(raw)
        except OSError:
            pass  # the server may close first on garbage: fine
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def test_api_survives_fuzzed_requests(tiny_artifacts: dict[str, Path], tmp_path: Path) -> None:
    api_port = free_port()
    cfg = write_toml(
        tmp_path / "config.toml",
        {
            "local_exchange": {"speed": 1.0},
            "store": {"path": tmp_path / "state.sqlite"},
            "log": {"format": "json"},
            "models": {"device": "cpu", "paths": {n: tiny_artifacts[n] for n in ("mtf_transformer", "cnn_lstm_attn")}},
            "api": {"port": api_port},
            "service": {"stale_after_s": 120.0},
            "retrain": {"enabled": False},
            "alerts.signal_ws": {"enabled": False},
        },
    )
    daemon = DaemonProcess(cfg, tmp_path, {"SIGD_API_TOKEN": TOKEN}).start()
    try:
        asyncio.run(daemon.wait_ready(120))

        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(request())
        def fuzz(raw: bytes) -> None:
            answer = _send(api_port, raw, timeout=0.5)
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.tail()
            status = answer.split(b"\r\n", 1)[0]
            assert not status.startswith((b"HTTP/1.1 5", b"HTTP/1.0 5")) or status.startswith(b"HTTP/1.1 503"), (
                raw[:300],
                answer[:300],
            )
            assert not status.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")) or not raw.startswith(b"POST"), raw[:300]

        fuzz()
        health = _send(api_port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert health.startswith(b"HTTP/1.1 200"), health[:300]
        status = json.loads(
            _send(api_port, b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").split(b"\r\n\r\n", 1)[1]
        )
        assert status["healthy"] is True and status["paused"] is False  # no fuzzed POST acted
        crashes = [
            e
            for e in daemon.log_events()
            if e.get("event") == "daemon_failed"
            or "Traceback" in str(e.get("exception", ""))
            and "web_protocol" not in str(e.get("exception", ""))
        ]
        assert not crashes, crashes[:3]
        # The HTTP server process never died either (the daemon would have restarted it).
        assert not [e for e in daemon.log_events() if e.get("event") == "http_server_exited"]
    finally:
        daemon.close()
