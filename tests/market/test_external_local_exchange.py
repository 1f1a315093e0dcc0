"""`[local_exchange] url`: the daemon's ccxt client talks to a `sigd local-exchange` running on its own."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Any

import pytest

from daemon import config
from daemon.localexchange import LocalExchange, bundled_tape_dir
from daemon.service.parts import _exchange
from tests.conftest import REPO


async def test_the_client_uses_a_running_local_exchange_instead_of_starting_one() -> None:
    async with LocalExchange(bundled_tape_dir("2021-05"), speed=1.0) as lx:  # the shipped config's symbols
        cfg = config.load(REPO / "config.toml")
        cfg = dataclasses.replace(cfg, local_exchange=dataclasses.replace(cfg.local_exchange, url=lx.base_url))
        opened: list[Any] = []
        local, client = await _exchange(cfg, {}, opened)
        try:
            assert local is None  # nothing started in-process
            now = lx.now_ms()
            bars = await client.fetch_bars("ETH/USDT", "1m", now - 10 * 60_000)
            assert bars and bars[-1].close_ts <= now  # closed bars from the running exchange
        finally:
            for close in reversed(opened):
                await close()


async def test_a_symbol_the_running_exchange_does_not_list_stops_startup_naming_file_and_key() -> None:
    async with LocalExchange(bundled_tape_dir("2021-05"), speed=1.0) as lx:
        cfg = config.load(REPO / "config.toml")
        cfg = dataclasses.replace(
            cfg,
            local_exchange=dataclasses.replace(cfg.local_exchange, url=lx.base_url),
            exchange=dataclasses.replace(cfg.exchange, symbols=("ETH/USDT", "SOL/USDT"), symbol=""),
        )
        opened: list[Any] = []
        try:
            with pytest.raises(config.ConfigError, match=rf"^{cfg.source}: exchange\.symbols\[1\]: 'SOL/USDT'"):
                await _exchange(cfg, {}, opened)
        finally:
            for close in reversed(opened):
                await close()


def test_the_url_must_be_loopback(write_config) -> None:
    path = write_config("[local_exchange]\nurl = 'http://10.0.0.5:9000'\n")
    with pytest.raises(config.ConfigError, match="local_exchange.url"):
        config.load(path)


@pytest.mark.slow
def test_sigd_run_with_a_symbol_the_exchange_does_not_list_exits_2_naming_file_and_key(write_config, tmp_path) -> None:
    tape = bundled_tape_dir("2021-05")
    art = REPO / "models" / "artifacts"
    path = write_config(f"""
        [exchange]
        symbols = ["ETH/USDT", "SOL/USDT"]
        [local_exchange]
        tape = "{tape}"
        [store]
        path = "{tmp_path / "state.sqlite"}"
        [models]
        device = "cpu"
        paths = {{ mtf_transformer = "{art / "mtf_transformer"}", cnn_lstm_attn = "{art / "cnn_lstm_attn"}" }}
        [api]
        enabled = false
        [alerts.signal_ws]
        enabled = false
        [retrain]
        enabled = false
        """)
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "-c", str(path)], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{path}: exchange.symbols[1]: 'SOL/USDT' is not a market on the exchange" in done.stderr
