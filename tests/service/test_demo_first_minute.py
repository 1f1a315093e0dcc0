"""What the first minute of `make run` shows: the shipped config.toml (only its ports, state file
and log format changed for the test), the real daemon process, the bundled 2021 tape. The
models fail the gate, so the log says at start that they place no real paper order; each
decision cycle is one line carrying every shadow ledger's equity, which moves within 60 s;
no paper order is placed; no per-bar line is printed at INFO."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.conftest import REPO
from tests.daemon_harness import DaemonProcess


def shipped_config(tmp: Path) -> Path:
    text = (REPO / "config.toml").read_text()
    text = re.sub(r'(?m)^path = "state/sigd.sqlite"', f'path = "{tmp / "demo.sqlite"}"', text)
    text = re.sub(r"(?m)^port = (8787|8765)\b", "port = 0", text)
    text = re.sub(r'(?m)^format = "auto"', 'format = "json"', text)
    for rel in ("daemon/localexchange/tape_2021", "models/artifacts/"):
        text = text.replace(f'"{rel}', f'"{REPO / rel}{"/" if rel.endswith("/") else ""}')
    out = tmp / "config.toml"
    out.write_text(text)
    return out


async def test_make_run_shows_shadow_ledgers_moving_within_a_minute(tmp_path: Path) -> None:
    daemon = DaemonProcess(shipped_config(tmp_path), tmp_path, {}).start()
    try:
        started = time.monotonic()

        def cycles() -> list[dict]:
            return [e for e in daemon.log_events() if e.get("event") == "decision_cycle"]

        await daemon.wait_for(lambda: len(cycles()) >= 3, 60.0, "three decision cycles")
        assert time.monotonic() - started < 60.0
        events = daemon.log_events()
        said = [e for e in events if e.get("event") == "shadow_models"]
        assert said and "place no real paper order" in said[0]["message"]
        first_cycle = next(i for i, e in enumerate(events) if e.get("event") == "decision_cycle")
        assert events.index(said[0]) < first_cycle  # on the first screen, before any decision
        got = cycles()
        assert all(c["symbols"] == 5 and c["orders"] == 0 and c["latency_ms"] >= 0 for c in got)
        equity = [{k: float(v.split()[0]) for k, v in c["shadow_equity"].items()} for c in got]
        assert {"mtf_transformer", "cnn_lstm_attn", "always_flat", "buy_and_hold"} <= set(equity[0])
        for model in ("mtf_transformer", "cnn_lstm_attn"):
            assert len({e[model] for e in equity}) > 1  # the curve moves
            assert int(got[-1]["shadow_equity"][model].split("(")[1].split()[0]) > 0  # shadow fills
        assert not any(e.get("event") in ("bar_closed", "signal") and e.get("level") == "info" for e in events)
        assert not any(e.get("event") == "order_filled" for e in events)  # no real paper order
    finally:
        daemon.close()
