"""1h/4h/1d bars derived from the 1m tape: only where every minute is there (gaps stay gaps,
counted), recorded bars before the 1m span kept; and a 1h portfolio backtest on the bundled
2021 tape decides every traded symbol, not only the two whose recorded 1h files reach it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon import config
from daemon.research import backtest, replay
from daemon.research.report import iso
from tests.backtest_builders import T0, walk
from tests.engine_parts import MomentumPredictor
from tests.exchange_kit import DAY_2021, TAPE_2021

MIN, HOUR = 60_000, 3_600_000


def test_complete_hours_only_recorded_bars_before_the_span() -> None:
    m1 = walk("1m", 5 * 60, start=T0)  # five whole hours (T0 is on the hour)
    hole = T0 + 2 * HOUR + 17 * MIN
    m1 = m1[m1[:, 0] != hole]  # one minute of the third hour is missing
    recorded = walk("1h", 4, start=T0 - 3 * HOUR, seed=3)  # three hours before the 1m span, one inside it
    rows, counts = replay.from_minutes(m1, "1h", recorded)
    ts = rows[:, 0].astype(np.int64).tolist()
    assert counts == {"derived": 4, "incomplete": 1, "recorded": 3}
    # the hour with a missing minute is left out (a gap, not filled); the recorded hour inside
    # the span is replaced by the one built from its minutes
    assert ts == [T0 - 3 * HOUR, T0 - 2 * HOUR, T0 - HOUR, T0, T0 + HOUR, T0 + 3 * HOUR, T0 + 4 * HOUR]
    first = m1[(m1[:, 0] >= T0) & (m1[:, 0] < T0 + HOUR)]
    bar = rows[ts.index(T0)]
    assert bar[1] == first[0, 1] and bar[2] == first[:, 2].max() and bar[3] == first[:, 3].min() and bar[4] == first[-1, 4]
    assert bar[5] == pytest.approx(first[:, 5].sum(), rel=1e-12)
    assert replay.find_gaps(rows, "1h")[-1]["missing"] == 1  # the report lists it as a gap


def test_a_recorded_bar_fills_no_gap_it_was_not_recorded_for() -> None:
    m1 = walk("1m", 3 * 60, start=T0)
    m1 = m1[m1[:, 0] != T0 + HOUR + 5 * MIN]
    rows, counts = replay.from_minutes(m1, "1h", None)
    assert rows[:, 0].astype(np.int64).tolist() == [T0, T0 + 2 * HOUR] and counts["incomplete"] == 1
    four, counts4 = replay.from_minutes(walk("1m", 9 * 60, start=T0), "4h", None)  # T0 is on a 4h boundary
    assert len(four) == 2 and counts4 == {"derived": 2, "incomplete": 0, "recorded": 0}


SIX = ("ETH/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "LTC/USDT", "BTC/USDT")
PORTFOLIO_1H = f"""
[exchange]
symbols = [{", ".join(f'"{s}"' for s in SIX)}]
timeframes = ["1m", "1h", "1d"]
warmup_bars = 10

[engine]
strategies = ["portfolio"]

[portfolio]
decision_timeframe = "1h"
long_short = true
top_k = 2
max_weight = 0.3
gross_cap = 1.0
net_cap = 0.4
"""


def test_a_1h_portfolio_backtest_on_the_2021_tape_decides_every_symbol(write_config) -> None:
    cfg = config.load(write_config(PORTFOLIO_1H))
    tape = replay.load_streams(TAPE_2021, backtest.live_order(cfg), ("ETH/USDT", "1h"))
    derived = tape.notes()["derived_from_1m"]
    assert all(derived[f"{s} 1h"]["derived"] >= 90 for s in SIX)  # ~3.9 days of whole hours each
    start, end = DAY_2021 + 6 * HOUR, DAY_2021 + 30 * HOUR  # hours only the 1m tape covers for XRP..LTC
    plan = backtest.make_plan(cfg, tape, iso(start), iso(end))
    model = MomentumPredictor("momentum", key="1h", lookback=3, k=60.0)
    model.meta = {"target": {"mode": "classification", "horizon": 60, "threshold": 0.002, "neutral_zone": 0.001}}  # type: ignore[attr-defined]
    results = backtest.run_portfolio(plan, {"momentum": model}, batch=False)
    assert [r.symbol for r in results] == list(SIX)
    for r in results:
        # every hour of the period is a decision bar of every symbol, each decided by the model
        assert r.bars[:, 0].astype(np.int64).tolist() == list(range(start, end, HOUR)), r.symbol
        assert len(r.models) == 1 and len(r.models[0].probs) == 24, r.symbol
    traded = {r.symbol for r in results if r.fills}
    assert len(traded) >= 5, traded  # the book rotates across the universe, not just BTC/ETH
    decided = sorted({ts for r in results for ts in r.models[0].bar_ts.astype(np.int64).tolist()})
    assert decided == list(range(start, end, HOUR))


def test_without_the_1m_file_4h_comes_from_the_1h_file_and_a_missing_1h_is_still_an_error(tmp_path: Path) -> None:
    import shutil

    for f in TAPE_2021.glob("XRP_USDT-1[hd].csv.gz"):
        shutil.copy(f, tmp_path / f.name)
    tape = replay.load_streams(tmp_path, [("XRP/USDT", "1h"), ("XRP/USDT", "4h")], ("XRP/USDT", "4h"))
    hours, four = tape.streams[("XRP/USDT", "1h")], tape.streams[("XRP/USDT", "4h")]
    assert tape.missing == [] and tape.notes()["derived_from_1m"]["XRP/USDT 4h"]["derived"] == len(four) > 0
    first = int(np.searchsorted(hours[:, 0], four[0, 0]))  # the 4h bar is its four hours, summed exactly
    np.testing.assert_allclose(
        four[0, 1:5], [hours[first, 1], hours[first : first + 4, 2].max(), hours[first : first + 4, 3].min(), hours[first + 3, 4]]
    )
    assert four[0, 5] == pytest.approx(hours[first : first + 4, 5].sum(), rel=1e-12)
    (tmp_path / "XRP_USDT-1h.csv.gz").unlink()
    with pytest.raises(replay.TapeError, match="the trigger stream XRP/USDT 1h is required"):
        replay.load_streams(tmp_path, [("XRP/USDT", "1h")], ("XRP/USDT", "1h"))
