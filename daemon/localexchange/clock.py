"""The one replay clock every stream, klines answer and order fill reads.

speed > 0: replay time runs at `speed` × wall time from the start instant (1 = real time).
speed = 0 ("as fast as possible"): replay time only moves when the stream pump advances it,
one step at a time, to the next bar close of the finest subscribed stream, right after every
frame of the previous step has been written (see `streams.Pump`). With nothing subscribed it
stands still, so a client can warm up over REST first.
Either way the clock can be paused, never runs backwards and stops at the tape's end.
"""

from __future__ import annotations

import time


class ReplayClock:
    """Replay time in integer ms UTC."""

    def __init__(self, start_ms: int, end_ms: int, speed: float = 1.0, paused: bool = False) -> None:
        if not 0 <= speed < float("inf"):  # NaN fails this too (was: a traceback deep in the clock)
            raise ValueError(f"speed must be a finite number >= 0 (0 = as fast as possible), got {speed}")
        if not start_ms < end_ms:
            raise ValueError(f"replay start {start_ms} must be before the tape end {end_ms}")
        self.speed = speed
        self.end_ms = end_ms
        self.paused = paused
        self._anchor_replay = float(start_ms)
        self._anchor_wall = time.monotonic()

    def now_ms(self) -> int:
        """The replay instant."""
        if self.paused or self.speed == 0:
            t = self._anchor_replay
        else:
            t = self._anchor_replay + (time.monotonic() - self._anchor_wall) * 1000.0 * self.speed
        return int(min(t, self.end_ms))

    @property
    def ended(self) -> bool:
        """True once the replay has reached the end of the tape."""
        return self.now_ms() >= self.end_ms

    def _reanchor(self) -> None:
        self._anchor_replay = float(self.now_ms())
        self._anchor_wall = time.monotonic()

    def pause(self) -> None:
        """Freeze replay time."""
        self._reanchor()
        self.paused = True

    def resume(self) -> None:
        """Let replay time run again from where it stood."""
        self._anchor_wall = time.monotonic()
        self.paused = False

    def set_speed(self, speed: float) -> None:
        """Change the speed from now on (0 = as fast as possible)."""
        if not 0 <= speed < float("inf"):
            raise ValueError(f"speed must be a finite number >= 0, got {speed}")
        self._reanchor()
        self.speed = speed

    def advance_to(self, t_ms: int) -> None:
        """Step replay time forward (max-speed mode; never backwards, never past the end)."""
        self._anchor_replay = float(min(max(t_ms, self._anchor_replay), self.end_ms))
        self._anchor_wall = time.monotonic()

    def wall_delay(self, t_ms: int) -> float:
        """Wall seconds until replay time reaches `t_ms` (inf when paused or at max speed)."""
        if self.paused or self.speed == 0:
            return float("inf")
        return max(0.0, (t_ms - self.now_ms()) / 1000.0 / self.speed)
