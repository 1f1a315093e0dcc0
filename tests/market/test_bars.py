"""Ring buffers: O(1) append, contiguous windows, the window convention; bar storage."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.domain import Bar
from daemon.market.bars import Buffers, Ring
from daemon.store import Store


def make_bars(symbol: str, timeframe: str, start: int, n: int, step: int) -> list[Bar]:
    """n sound bars with distinct prices, `step` ms apart."""
    return [Bar(symbol, timeframe, start + i * step, 100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, float(i)) for i in range(n)]


def test_ring_window_is_the_newest_rows_in_order_across_wraparound() -> None:
    ring = Ring("ETH/USDT", "1m", capacity=5)
    bars = make_bars("ETH/USDT", "1m", 0, 13, 60_000)
    for i, bar in enumerate(bars, start=1):
        ring.append(bar)
        expected = np.array([b.as_row() for b in bars[max(0, i - 5) : i]])
        np.testing.assert_array_equal(ring.window(), expected)
        np.testing.assert_array_equal(ring.window(3), expected[-3:])
    assert len(ring) == 5 and ring.last_ts == bars[-1].ts


def test_window_is_contiguous_and_a_copy_while_view_is_read_only() -> None:
    ring = Ring("ETH/USDT", "1s", capacity=4)
    ring.extend(make_bars("ETH/USDT", "1s", 0, 6, 1000))
    w = ring.window(4)
    assert w.flags.c_contiguous and w.shape == (4, 6) and w.dtype == np.float64
    w[0, 0] = -1.0
    assert ring.window(4)[0, 0] == 2000.0
    v = ring.view(2)
    assert not v.flags.writeable and v.flags.c_contiguous
    with pytest.raises(ValueError):
        v[0, 0] = 1.0


def test_ring_rejects_a_bar_that_is_not_newer() -> None:
    ring = Ring("ETH/USDT", "1m", capacity=3)
    bars = make_bars("ETH/USDT", "1m", 0, 2, 60_000)
    ring.extend(bars)
    with pytest.raises(ValueError, match="not after"):
        ring.append(bars[0])


def test_buffers_windows_follow_the_convention() -> None:
    buffers = Buffers()
    for tf, step in (("1s", 1000), ("1m", 60_000), ("1h", 3_600_000), ("1d", 86_400_000)):
        buffers.add("ETH/USDT", tf, 10).extend(make_bars("ETH/USDT", tf, 0, 12, step))
    buffers.add("BTC/USDT", "1m", 10).extend(make_bars("BTC/USDT", "1m", 0, 3, 60_000))
    w = buffers.windows("ETH/USDT", ("1s", "1m", "1h", "1d"), "BTC/USDT", sizes={"1m": 4})
    assert sorted(w) == ["1d", "1h", "1m", "1s", "btc_1m"]
    assert w["1m"].shape == (4, 6) and w["1s"].shape == (10, 6) and w["btc_1m"].shape == (3, 6)
    assert w["1h"][-1, 0] == 11 * 3_600_000
    with pytest.raises(KeyError, match="no ring buffer for ETH/USDT 5m"):
        buffers.ring("ETH/USDT", "5m")


def test_store_keeps_bars_once_and_returns_the_newest(tmp_path) -> None:
    store = Store(tmp_path / "s.sqlite")
    bars = make_bars("ETH/USDT", "1m", 0, 10, 60_000)
    store.add_bars(bars[:6])
    store.add_bars(bars[4:])  # overlap: stored once
    assert store.count("bars") == 10
    assert store.latest_bars("ETH/USDT", "1m", 3) == bars[-3:]
    assert list(store.iter_bars("ETH/USDT", "1m", 120_000, 300_000)) == bars[2:5]
