"""What the first minute of `make run` shows on a terminal: the shipped config.toml (only its
ports and state file changed for the test, and the log forced to the console renderer a
terminal gets), the real daemon process, the bundled 2021 tape. The models fail the gate, so
the log says at start that they place no real paper order; each decision cycle is one line
carrying every shadow ledger's equity and fills, which move within 60 s; no paper order is
placed; no line per bar."""

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
    text = re.sub(r'(?m)^format = "auto"', 'format = "console"', text)
    for rel in ("daemon/localexchange/tape_2021", "models/artifacts/"):
        text = text.replace(f'"{rel}', f'"{REPO / rel}{"/" if rel.endswith("/") else ""}')
    out = tmp / "config.toml"
    out.write_text(text)
    return out


async def test_make_run_shows_shadow_ledgers_moving_within_a_minute(tmp_path: Path) -> None:
    daemon = DaemonProcess(shipped_config(tmp_path), tmp_path, {}).start()
    try:
        started = time.monotonic()

        def lines() -> list[str]:
            return daemon.log_path.read_text(errors="replace").splitlines()

        def cycles() -> list[str]:
            return [line for line in lines() if " decision_cycle " in line]

        await daemon.wait_for(lambda: len(cycles()) >= 3, 60.0, "three decision cycles")
        assert time.monotonic() - started < 60.0
        text = lines()
        said = [i for i, line in enumerate(text) if " shadow_models " in line]
        assert said and "place no real paper order" in text[said[0]]
        assert said[0] < next(i for i, line in enumerate(text) if " decision_cycle " in line)  # the first screen
        got = cycles()
        assert all("symbols=5" in c and "orders=0" in c and "latency_ms=" in c for c in got)
        for model in ("mtf_transformer", "cnn_lstm_attn", "always_flat", "buy_and_hold"):
            assert all(f"'{model}': '" in c for c in got)
        for model in ("mtf_transformer", "cnn_lstm_attn"):
            books = [re.search(rf"'{model}': '([0-9.]+) \((\d+) fills\)'", c) for c in got]
            assert all(books)
            assert len({b.group(1) for b in books}) > 1  # the equity curve moves
            assert int(books[-1].group(2)) > 0  # shadow fills
        assert not [line for line in text if " bar_closed " in line or " signal " in line]  # no line per bar
        assert not [line for line in text if "order_filled" in line]  # no real paper order
    finally:
        daemon.close()
