"""`sigd backfill` against the local exchange: tape files, resumable without duplicates."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pandas as pd

from daemon.market.backfill import backfill, parse_instant
from daemon.service.cli import main
from tests.conftest import REPO
from tests.exchange_kit import DAY, expected_row, feed_config, local_exchange


async def test_backfill_writes_tapes_and_resumes_without_duplicates(tmp_path) -> None:
    cfg = feed_config(endpoint="local")
    out = tmp_path / "tape"
    async with local_exchange(DAY, speed=1.0) as lx:
        first = await backfill(
            cfg, out, ["ETH/USDT", "BTC/USDT"], ["1m", "1h"], DAY - 1500 * 60_000, DAY - 100 * 60_000, lx.rest_url
        )
        assert first == {
            "ETH_USDT-1m.csv.gz": 1400,
            "ETH_USDT-1h.csv.gz": 24,
            "BTC_USDT-1m.csv.gz": 1400,
            "BTC_USDT-1h.csv.gz": 24,
        }
        again = await backfill(cfg, out, ["ETH/USDT"], ["1m"], DAY - 1500 * 60_000, DAY, lx.rest_url)
        assert again == {"ETH_USDT-1m.csv.gz": 100}
    df = pd.read_csv(out / "ETH_USDT-1m.csv.gz")
    assert list(df.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert df["timestamp"].tolist() == list(range(DAY - 1500 * 60_000, DAY, 60_000))
    expected = np.array([expected_row("ETH/USDT", "1m", t) for t in df["timestamp"]])
    np.testing.assert_allclose(df.to_numpy(dtype=float), expected, rtol=1e-12)


def test_backfill_command_rejects_bad_arguments(tmp_path, capsys) -> None:
    assert main(["backfill", "--symbols", "ETH/USDT", "--timeframes", "1m", "--since", "yesterday", "--out", str(tmp_path)]) == 2
    assert "--since" in capsys.readouterr().err
    assert main(["backfill", "--symbols", "ETHUSDT", "--timeframes", "1m", "--since", "2025-01-01", "--out", str(tmp_path)]) == 2
    assert parse_instant("2025-08-10T00:00:00Z", "x") == DAY == parse_instant("2025-08-10", "x")


def test_backfill_command_against_a_running_local_exchange(tmp_path) -> None:
    # As README shows it: `sigd backfill ... --exchange-url` of a `sigd local-exchange`, on the shipped
    # config (five symbols: the endpoint swap must keep its exchange section valid).
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "local-exchange", "--port", "0", "--speed", "0", "--paused"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        url = proc.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:"), url
        assert (
            main(
                [
                    "backfill",
                    "--symbols",
                    "ETH/USDT",
                    "--timeframes",
                    "1m",
                    "--since",
                    "2025-08-04T00:00Z",
                    "--until",
                    "2025-08-04T02:00Z",
                    "--out",
                    str(tmp_path),
                    "--exchange-url",
                    url,
                ]
            )
            == 0
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    df = pd.read_csv(tmp_path / "ETH_USDT-1m.csv.gz")
    SINCE = parse_instant("2025-08-04T00:00Z", "x")
    assert df["timestamp"].tolist() == list(range(SINCE, SINCE + 120 * 60_000, 60_000))
