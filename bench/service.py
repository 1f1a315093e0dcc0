"""`python -m bench service`: the whole daemon in one process against its local exchange.

Latency: bar close (the local exchange sends the closing update at the bar's close on its
replay clock) → signal committed in SQLite and queued in the outbox, at 1× speed with the
configured (`small`) models; p50/p99 over the signals of the run, beside the bar-close →
decision-finished latency of every trigger bar, and bar close → paper fill committed (fill,
position, order status and "fill" event in one SQLite commit) for every fill of the run, over all
the configured symbols. The benchmark's own config copy sets `[models] trade_only_validated =
false` (the shipped artifacts fail the validation gate and would otherwise only shadow, never
trade) and lowers the artifacts' thresholds (`--threshold`) so that signals and fills happen.
Memory: RSS of a real `sigd run` process (what
systemd's MemoryMax= counts) at ready, after a few wall minutes and at its peak; and RSS after
an accelerated in-process replay of 1 hour and of 24 hours of market time (all streams, both
models on every 1m bar it can).

Run it on an otherwise idle machine; pin it to two cores as the target says:
`taskset -c 0,1 python -m bench service [--minutes 10] [--speed 1] [--hours 24]`. At 1x a 1m
bar closes once a minute: the run's length sets the sample count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon import config as config_mod
from daemon import log
from daemon.service.app import Daemon

HOUR_MS = 3_600_000


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _trading_copies(tmp: Path, shipped: config_mod.Config, threshold: float) -> dict[str, Path]:
    """Copies of the served artifacts with a low threshold, so that signals happen (a model whose
    optimized threshold never trades would leave the signal path unmeasured); same compute."""
    out = {}
    for name, value in shipped.models.paths.items():
        src = shipped.path(value)
        if threshold <= 0:
            out[name] = src
            continue
        dst = Path(shutil.copytree(src, tmp / "artifacts" / name))
        meta = json.loads((dst / "artifact.json").read_text())
        meta["threshold"]["value"] = threshold
        (dst / "artifact.json").write_text(json.dumps(meta))
        out[name] = dst
    return out


def _config(tmp: Path, speed: float, base: Path, threshold: float) -> config_mod.Config:
    """The given config with a temporary store, no API/websocket ports, no retrain."""
    text = base.read_text()
    shipped = config_mod.load(base)
    dirs = _trading_copies(tmp, shipped, threshold)
    paths = ", ".join(f'{n} = "{d}"' for n, d in dirs.items())
    cfg_path = tmp / "bench.toml"
    cfg_path.write_text(
        _override(
            text,
            {
                # The copy lives elsewhere: a tape path relative to the given config must stay pointing there.
                "local_exchange": {
                    "speed": speed,
                    **({"tape": f'"{shipped.path(shipped.local_exchange.tape)}"'} if shipped.local_exchange.tape else {}),
                },
                "store": {"path": f'"{tmp / "bench.sqlite"}"'},
                "api": {"enabled": "false"},
                "alerts.signal_ws": {"enabled": "false"},
                "retrain": {"enabled": "false"},
                # Shadow mode off: the shipped artifacts fail the gate and would never trade (nor fill).
                "models": {"paths": "{ " + paths + " }", "device": '"cpu"', "trade_only_validated": "false"},
                # Frequent signals: either model may open, tight exits, no cooldown.
                "strategy": {"combine": '"either"', "cooldown_bars": 0, "stop_loss": 0.0005, "take_profit": 0.0005},
            },
        )
    )
    return config_mod.load(cfg_path)


def _override(text: str, sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Replace `key = value` lines inside the named [sections] of a TOML text."""
    out, section = [], ""
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("[") and not stripped.startswith("[["):
            section = stripped.strip("[]")
        key = stripped.split("=", 1)[0].strip() if "=" in stripped else ""
        if section in sections and key in sections[section]:
            line = f"{key} = {sections[section][key]}"
        out.append(line)
    return "\n".join(out) + "\n"


class CloseClock:
    """Wraps the engine's sink (signals) or store (predictions): when a row is committed, how
    long after its bar closed on the exchange's replay clock, in wall ms."""

    def __init__(self, inner: Any, lx: Any, speed: float) -> None:
        self.inner, self.lx, self.speed = inner, lx, speed
        self.signals_ms: list[float] = []
        self.decisions_ms: list[float] = []

    def _lag(self, bar_ts: int) -> float:
        return (self.lx.now_ms() - (int(bar_ts) + 60_000)) / self.speed

    def publish(self, type: str, payload: Mapping[str, Any], event_id: str | None = None) -> str:
        """EventSink.publish, timed for signals."""
        out = self.inner.publish(type, payload, event_id)  # committed and queued when this returns
        if type == "signal" and payload.get("strategy") != "manual":
            self.signals_ms.append(self._lag(payload["bar_ts"]))
        return out

    def add_predictions(self, symbol: str, predictions: Any, now_ms: int) -> Any:
        """Store.add_predictions, timed."""
        out = self.inner.add_predictions(symbol, predictions, now_ms)
        if predictions:
            self.decisions_ms.append(self._lag(predictions[0].bar_ts))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FillClock:
    """Wraps the paper broker's ledger: when a fill is committed, how long after its order's
    trigger bar closed on the exchange's replay clock (the same reference as CloseClock), in wall
    ms. A fill inside a caller's transaction counts at that transaction's COMMIT."""

    def __init__(self, inner: Any, clock: CloseClock) -> None:
        self.inner, self.clock = inner, clock
        self.fills_ms: list[float] = []

    def record_fill(self, order: Any, fill: Any, *args: Any, **kwargs: Any) -> Any:
        """Ledger.record_fill, timed at its commit."""
        out = self.inner.record_fill(order, fill, *args, **kwargs)
        self.inner.store.after_commit(lambda: self.fills_ms.append(self.clock._lag(order.bar_ts)))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def _latency(base: Path, minutes: float, speed: float, threshold: float) -> tuple[CloseClock, FillClock]:
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(_config(Path(tmp), speed, base, threshold), environ={})
        await daemon.startup()
        parts = daemon.parts
        assert parts is not None and parts.local_exchange is not None
        engine = parts.engine
        sink = CloseClock(engine.sink, parts.local_exchange, speed)
        store = CloseClock(engine.store, parts.local_exchange, speed)
        engine.sink, engine.store = sink, store
        ledger = getattr(engine.broker, "ledger", None)
        if ledger is None:
            raise SystemExit(f"bench service: broker mode {engine.broker.mode!r} has no fills to time; use paper")
        fills = FillClock(ledger, store)
        engine.broker.ledger = fills  # type: ignore[attr-defined]
        try:
            await asyncio.sleep(minutes * 60)
        finally:
            await daemon.shutdown()
        store.signals_ms = sink.signals_ms
        return store, fills


async def _memory(base: Path, hours: float, threshold: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(Path(tmp), 0.0, base, threshold)
        daemon = Daemon(cfg, environ={})
        await daemon.startup()
        parts = daemon.parts
        assert parts is not None and parts.local_exchange is not None
        start = parts.local_exchange.now_ms()
        marks: dict[float, tuple[float, float]] = {}
        t0 = time.monotonic()
        try:
            for h in sorted({1.0, hours / 4, hours / 2, hours}):
                while parts.local_exchange.now_ms() - start < h * HOUR_MS:
                    await asyncio.sleep(0.5)
                marks[h] = (_rss_mb(), time.monotonic() - t0)
        finally:
            decisions, skipped = parts.engine.decisions, parts.engine.skipped
            await daemon.shutdown()
        return {"marks": marks, "decisions": decisions, "skipped": skipped}


def _status_kb(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return float("nan")


def _process(base: Path, seconds: float, speed: float, threshold: float) -> dict[str, float]:
    """RSS of a real `sigd run` process (what systemd's MemoryMax= counts), sampled every 0.5 s."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(Path(tmp), speed, base, threshold)
        err = open(Path(tmp) / "stderr", "w+")
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "-c", str(cfg.source)], stdout=subprocess.DEVNULL, stderr=err
        )
        out: dict[str, float] = {}
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < seconds + 120 and proc.poll() is None:
                time.sleep(0.5)
                if "ready_mb" not in out and "daemon_ready" in (Path(tmp) / "stderr").read_text():
                    out["ready_mb"], out["ready_s"], t_ready = (
                        _status_kb(proc.pid, "VmRSS") / 1024,
                        time.monotonic() - t0,
                        time.monotonic(),
                    )
                if "ready_mb" in out and time.monotonic() - t_ready >= seconds:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"sigd run exited with {proc.returncode}: {(Path(tmp) / 'stderr').read_text()[-3000:]}")
            out["end_mb"] = _status_kb(proc.pid, "VmRSS") / 1024
            out["peak_mb"] = _status_kb(proc.pid, "VmHWM") / 1024
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        if "ready_mb" not in out:
            raise RuntimeError(f"sigd run never got ready: {(Path(tmp) / 'stderr').read_text()[-2000:]}")
        return out


def _row(label: str, values: list[float]) -> str:
    top = max(values) if values else float("nan")
    return f"{label:<50} {len(values):>6} {_pct(values, 0.5):>9.2f} {_pct(values, 0.99):>9.2f} {top:>9.2f}"


def main(argv: list[str]) -> int:
    """Print the service benchmark table."""
    p = argparse.ArgumentParser(prog="python -m bench service")
    p.add_argument("--config", type=Path, default=config_mod.DEFAULT_CONFIG)
    p.add_argument("--minutes", type=float, default=10.0, help="wall minutes of the latency run (0 = none)")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed of the latency run (target: 1)")
    p.add_argument("--hours", type=float, default=24.0, help="market hours replayed for memory (0 = none)")
    p.add_argument(
        "--process-minutes",
        type=float,
        default=5.0,
        help="wall minutes of a real `sigd run` process at --process-speed, for its RSS (0 = none)",
    )
    p.add_argument("--process-speed", type=float, default=60.0, help="replay speed of that process")
    p.add_argument(
        "--threshold", type=float, default=0.34, help="threshold of the benchmarked artifact copies (0 = keep the artifacts' own)"
    )
    a = p.parse_args(argv)
    log.setup("warning", "json")
    print(
        f"service benchmark: {len(os.sched_getaffinity(0))} CPU core(s), models of {a.config}, "
        f"thresholds {a.threshold or 'as trained'}, trade_only_validated off (shadow mode would never fill)"
    )
    if a.minutes > 0:
        lat, fills = asyncio.run(_latency(a.config, a.minutes, a.speed, a.threshold))
        print(
            f"{f'wall ms from bar close ({a.minutes:g} min at {a.speed:g}x) to ...':<50} {'n':>6} {'p50':>9}"
            f" {'p99':>9} {'max':>9}"
        )
        print(_row("  predictions of both models committed", lat.decisions_ms))
        print(_row("  signal committed in SQLite + queued in outbox", lat.signals_ms))
        print(_row("  paper fill committed (all symbols)", fills.fills_ms))
    if a.process_minutes > 0:
        pm = _process(a.config, a.process_minutes * 60, a.process_speed, a.threshold)
        label = f"sigd run process RSS (MB), {a.process_minutes:g} min at {a.process_speed:g}x"
        print(
            f"{label:<50} ready {pm['ready_mb']:.1f} (after {pm['ready_s']:.0f} s), end {pm['end_mb']:.1f},"
            f" peak (VmHWM) {pm['peak_mb']:.1f}"
        )
    if a.hours > 0:
        mem = asyncio.run(_memory(a.config, a.hours, a.threshold))
        for h, (rss, wall) in sorted(mem["marks"].items()):
            print(f"{f'RSS after {h:g} h of market time at max speed (MB)':<50} {rss:>26.1f}   ({wall:.0f} s wall)")
        first, last = min(mem["marks"]), max(mem["marks"])
        print(
            f"{'RSS growth (MB)':<50} {mem['marks'][last][0] - mem['marks'][first][0]:>26.1f}"
            f"   decisions {mem['decisions']}, skipped while busy {mem['skipped']}"
        )
    return 0
