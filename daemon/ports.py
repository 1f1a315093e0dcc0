"""Listening sockets for the daemon's servers, and who holds a port that is in use.

`listen()` binds a TCP socket for a server. A port in use becomes one ConfigError line that
names the config key and, when /proc tells, the process holding the port (its pid and command
line); the CLI prints it and exits 2. With `fallback`, a port in use gives way to a free one
(the caller logs the URL it bound).
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from daemon import log
from daemon.typedtoml import ConfigError

_log = log.get("sigd.ports")
LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp


def listen(host: str, port: int, key: str, *, fallback: bool = False, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on host:port; ConfigError naming `key` (and the holder) when the
    port is in use, unless `fallback`, which binds a free port instead."""
    try:
        return _bind(host, port, backlog)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or port == 0:
            raise ConfigError(f"{key}: cannot listen on {host}:{port}: {exc.strerror}") from None
        who = holder(port)
        if not fallback:
            raise ConfigError(
                f"{key} = {port}: {host}:{port} is already in use"
                + (f" by {who}" if who else "")
                + f"; stop it or choose another {key}"
            ) from None
        sock = _bind(host, 0, backlog)
        _log.warning("port_in_use_fallback", key=key, port=port, held_by=who or "unknown", bound=sock.getsockname()[1])
        return sock


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart does not wait for TIME_WAIT
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)  # the HTTP server process serves it (daemon/service/api.py)
    return sock


def holder(port: int, proc: Path = Path("/proc")) -> str:
    """'pid 123 (python3 -m http.server)' for the process listening on `port`, '' when /proc
    does not tell (another user's process, or no /proc)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == LISTEN and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return ""
    for pid in (p for p in _pids(proc) if p != str(os.getpid())):  # not this process
        try:
            fds = os.listdir(proc / pid / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(proc / pid / "fd" / fd) in inodes:
                    return f"pid {pid} ({_cmdline(proc, pid)})"
            except OSError:
                continue
    return ""


def _pids(proc: Path) -> list[str]:
    try:
        return [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return []


def _cmdline(proc: Path, pid: str) -> str:
    try:
        raw = (proc / pid / "cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return text[:120] + ("…" if len(text) > 120 else "") or "?"
