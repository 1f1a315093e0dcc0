"""One daemon per state directory: an exclusive flock on a lock file beside the SQLite store.

Taken by `sigd run` before any part is built, so a second daemon on the same state never
opens the store, starts an engine or sends an order; it exits 2 naming the first one's pid.
The kernel drops the lock when the process ends, however it ends (kill -9 included), so a
stale lock file never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "sigd.lock"


class StateLocked(Exception):
    """Another process holds the state directory's lock (the message names it)."""


class StateLock:
    """An exclusive lock on `directory`, held until `release()` or the process's end."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> StateLock:
        """Take the lock without waiting; StateLocked names the holder's pid when it is taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Not O_TRUNC: the holder's pid must stay readable until we own the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StateLocked(
                f"state directory {self.path.parent} is in use by another sigd (pid {holder or 'unknown'}; lock file {self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlock (the file stays: removing it would race a newcomer that opened it)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_for_store(store_path: Path) -> StateLock:
    """The lock guarding the directory of the SQLite file `store_path`."""
    return StateLock(store_path.parent)


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
