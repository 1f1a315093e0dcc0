"""sd_notify over a real AF_UNIX datagram socket, path and abstract namespace."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from daemon.service.sdnotify import Notifier


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


def test_datagrams_reach_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with _receiver(path) as sock:
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        assert n.enabled and n.watchdog_s == 2.0
        assert n.ready("warmed up: 5 streams")
        assert sock.recv(4096) == b"READY=1\nSTATUS=warmed up: 5 streams"
        assert n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert n.stopping()
        assert sock.recv(4096).startswith(b"STOPPING=1\n")


def test_abstract_namespace_socket() -> None:
    name = f"sigd-test-{os.getpid()}"
    with _receiver(b"\0" + name.encode()) as sock:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.status("running")
        assert sock.recv(4096) == b"STATUS=running"


def test_no_socket_means_no_op_and_watchdog_pid_is_respected() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_s is None and not n.ready("x")
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent/sock", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None  # the watchdog belongs to another process
    assert not other.watchdog()  # a vanished socket is not a crash


async def test_watchdog_is_fed_only_while_bars_are_fresh(tmp_path: Path) -> None:
    import asyncio

    from daemon.domain import Bar
    from daemon.service.watchdog import Freshness, keepalive

    path = str(tmp_path / "wd.sock")
    now = [100.0]
    fresh = Freshness(stale_after_s=5.0, clock=lambda: now[0], started=100.0)
    stop = asyncio.Event()
    with _receiver(path) as sock:
        sock.setblocking(False)
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "40000"})  # keep-alive every 20 ms
        task = asyncio.create_task(keepalive(n, fresh, stop, lambda: "running", status_interval_s=60))

        def drain() -> list[bytes]:
            got = []
            while True:
                try:
                    got.append(sock.recv(4096))
                except BlockingIOError:
                    return got

        fresh.stamp(Bar("ETH/USDT", "1m", 0, 1, 1, 1, 1, 1))
        await asyncio.sleep(0.15)
        assert drain().count(b"WATCHDOG=1") >= 3
        now[0] += 6.0  # the feed goes silent: the newest bar is now 6 s old
        await asyncio.sleep(0.05)
        drain()
        await asyncio.sleep(0.15)
        starved = drain()
        assert b"WATCHDOG=1" not in starved
        fresh.stamp(Bar("ETH/USDT", "1m", 60_000, 1, 1, 1, 1, 1))
        await asyncio.sleep(0.1)
        assert b"WATCHDOG=1" in drain()
        stop.set()
        await asyncio.wait_for(task, 1)


async def test_keepalives_go_out_every_half_interval_not_every_status_tick(tmp_path: Path) -> None:
    # WatchdogSec=120 with [service] status_interval_s = 15 pinged every 15 s; the keep-alive
    # period is half the interval (60 s there), here scaled down: 400 ms interval, 50 ms ticks.
    import asyncio

    from daemon.domain import Bar
    from daemon.service.watchdog import Freshness, keepalive

    path = str(tmp_path / "half.sock")
    fresh = Freshness(stale_after_s=60.0)
    fresh.stamp(Bar("ETH/USDT", "1m", 0, 1, 1, 1, 1, 1))
    stop = asyncio.Event()
    with _receiver(path) as sock:
        sock.setblocking(False)
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        assert n.keepalive_s == 0.2
        task = asyncio.create_task(keepalive(n, fresh, stop, lambda: "running", status_interval_s=0.05))
        got: list[bytes] = []
        end = asyncio.get_running_loop().time() + 1.05
        while asyncio.get_running_loop().time() < end:  # drain as it goes: a full queue blocks the sender
            await asyncio.sleep(0.02)
            while True:
                try:
                    got.append(sock.recv(4096))
                except BlockingIOError:
                    break
        stop.set()
        await asyncio.wait_for(task, 1)
    pings = got.count(b"WATCHDOG=1")
    assert 4 <= pings <= 7, got  # about 1.05 / 0.2 + the first; every status tick would be ~21
    assert sum(1 for g in got if g.startswith(b"STATUS=")) >= 10  # STATUS= still every tick
