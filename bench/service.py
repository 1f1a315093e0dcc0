"""`python -m bench service`: the whole daemon in one process against its local exchange.

Latency: bar close (the local exchange sends the closing update at the bar's close on its
replay clock) → signal committed in SQLite and queued in the outbox, at 1× speed with the
configured (`small`) models; p50/p99 over the signals of the run, beside the bar-close →
decision-finished latency of every trigger bar. Memory: RSS after an accelerated replay of
1 hour and of 24 hours of market time (all streams, both models on every 1m bar it can).

Run it on an otherwise idle machine; pin it to two cores as the target says:
`taskset -c 0,1 python -m bench service [--minutes 5] [--hours 24]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from daemon import config as config_mod
from daemon import log
from daemon.app import Daemon

HOUR_MS = 3_600_000


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _config(tmp: Path, speed: float, base: Path) -> config_mod.Config:
    """The shipped config with a temporary store, no API/websocket ports, no retrain."""
    text = base.read_text()
    shipped = config_mod.load(base)
    paths = ", ".join(f'{n} = "{shipped.path(p)}"' for n, p in shipped.models.paths.items())
    cfg_path = tmp / "bench.toml"
    cfg_path.write_text(_override(text, {
        "local_exchange": {"speed": speed},
        "store": {"path": f'"{tmp / "bench.sqlite"}"'},
        "api": {"enabled": "false"},
        "retrain": {"enabled": "false"},
        "models": {"paths": "{ " + paths + " }", "device": '"cpu"'},
        "strategy": {"combine": '"either"', "cooldown_bars": 0},
    }))
    return config_mod.load(cfg_path)


def _override(text: str, sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Replace `key = value` lines inside the named [sections] of a TOML text."""
    out, section = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            section = stripped.strip("[]")
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith("#") else ""
        if section in sections and key in sections[section]:
            line = f"{key} = {sections[section][key]}"
        out.append(line)
    return "\n".join(out) + "\n"


class SignalClock:
    """Wraps the outbox: when a signal event is queued, how long after its bar closed (wall)."""

    def __init__(self, inner: Any, lx: Any, speed: float) -> None:
        self.inner, self.lx, self.speed = inner, lx, speed
        self.latencies_ms: list[float] = []

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        out = self.inner.publish(type, payload, event_id)
        if type == "signal" and payload.get("strategy") != "manual":
            close_ms = int(payload["bar_ts"]) + 60_000
            self.latencies_ms.append((self.lx.now_ms() - close_ms) / self.speed)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def _latency(base: Path, minutes: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(Path(tmp), 1.0, base)
        daemon = Daemon(cfg, environ={})
        await daemon.startup()
        parts = daemon.parts
        assert parts is not None and parts.local_exchange is not None
        clock = SignalClock(parts.engine.sink, parts.local_exchange, 1.0)
        parts.engine.sink = clock
        from daemon.engine import DECISION_MS
        from daemon.feed import LATENCY

        d0 = parts.engine.decisions
        try:
            await asyncio.sleep(minutes * 60)
        finally:
            await daemon.shutdown()
        ring = LATENCY.counts.get((("stream", f"{cfg.exchange.symbol} 1m"),), [])
        return {"signals": clock.latencies_ms, "decisions": parts.engine.decisions - d0,
                "decision_ms_mean": DECISION_MS.sums.get((), 0.0) / max(DECISION_MS.count(), 1),
                "ring_count": sum(ring)}


async def _memory(base: Path, hours: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(Path(tmp), 0.0, base)
        daemon = Daemon(cfg, environ={})
        await daemon.startup()
        parts = daemon.parts
        assert parts is not None and parts.local_exchange is not None
        start = parts.local_exchange.now_ms()
        marks: dict[float, tuple[float, float]] = {}
        t0 = time.monotonic()
        try:
            for h in (1.0, hours):
                while parts.local_exchange.now_ms() - start < h * HOUR_MS:
                    await asyncio.sleep(0.5)
                marks[h] = (_rss_mb(), time.monotonic() - t0)
        finally:
            decisions, skipped = parts.engine.decisions, parts.engine.skipped
            await daemon.shutdown()
        return {"marks": marks, "decisions": decisions, "skipped": skipped}


def main(argv: list[str]) -> int:
    """Print the service benchmark table."""
    p = argparse.ArgumentParser(prog="python -m bench service")
    p.add_argument("--config", type=Path, default=config_mod.DEFAULT_CONFIG)
    p.add_argument("--minutes", type=float, default=5.0, help="wall minutes at 1x for the latency figures")
    p.add_argument("--hours", type=float, default=24.0, help="market hours replayed for the memory figures")
    a = p.parse_args(argv)
    log.setup("warning", "json")
    lat = asyncio.run(_latency(a.config, a.minutes))
    mem = asyncio.run(_memory(a.config, a.hours))
    sig = lat["signals"]
    cores = len(os.sched_getaffinity(0))
    print(f"service benchmark — {cores} CPU core(s) available, models from {a.config}")
    print(f"{'measure':<52} {'n':>6} {'p50':>9} {'p99':>9} {'max':>9}")
    print(f"{'bar close -> signal committed + queued (ms, 1x)':<52} {len(sig):>6} {_pct(sig, .5):>9.2f}"
          f" {_pct(sig, .99):>9.2f} {max(sig) if sig else float('nan'):>9.2f}")
    print(f"{'trigger bars decided during the latency run':<52} {lat['decisions']:>6}"
          f"   mean decision {lat['decision_ms_mean']:.2f} ms")
    (rss1, w1), (rss24, w24) = mem["marks"][1.0], mem["marks"][a.hours]
    print(f"{'RSS after 1 h of market time (MB)':<52} {'':>6} {rss1:>9.1f}   wall {w1:.0f} s")
    print(f"{f'RSS after {a.hours:g} h of market time (MB)':<52} {'':>6} {rss24:>9.1f}   wall {w24:.0f} s")
    print(f"{'RSS growth 1 h -> 24 h (MB)':<52} {'':>6} {rss24 - rss1:>9.1f}"
          f"   decisions {mem['decisions']}, skipped while busy {mem['skipped']}")
    print(f"median signal latency {statistics.median(sig):.2f} ms" if sig else "no signal in the latency run")
    return 0
