"""systemd's notify protocol (sd_notify), with no dependency: one datagram per state change.

systemd gives a Type=notify service the socket path in $NOTIFY_SOCKET (a path, or an abstract
socket when it starts with '@') and, with WatchdogSec=, the interval in $WATCHDOG_USEC. The
daemon sends READY=1 once warmed up, STATUS=... lines for `systemctl status`, STOPPING=1 on
shutdown and WATCHDOG=1 keep-alives. Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends sd_notify datagrams to $NOTIFY_SOCKET (or nothing when it is unset)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID, when set, names the process the watchdog is meant for.
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None

    @property
    def keepalive_s(self) -> float | None:
        """Seconds between two WATCHDOG=1: half the interval, as sd_watchdog_enabled(3) advises
        (one late keep-alive still leaves the other half); None without a watchdog."""
        return self.watchdog_s / 2 if self.watchdog_s else None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send `KEY=value` lines in one datagram; False when there is nowhere to send them."""
        if self.address is None:
            return False
        body = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto(body, self.address)
            except OSError:
                # systemd gone or the socket vanished: nothing to tell, nothing to crash over.
                return False
        return True

    def ready(self, status: str) -> bool:
        """READY=1 with a STATUS line."""
        return self.send(ready=1, status=status)

    def status(self, status: str) -> bool:
        """A STATUS line for `systemctl status`."""
        return self.send(status=status)

    def watchdog(self) -> bool:
        """One WATCHDOG=1 keep-alive."""
        return self.send(watchdog=1)

    def stopping(self, status: str = "shutting down") -> bool:
        """STOPPING=1 with a STATUS line."""
        return self.send(stopping=1, status=status)


def _address(value: str) -> str | bytes | None:
    # '@name' is Linux's abstract namespace: a leading NUL byte instead of '@'.
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value
