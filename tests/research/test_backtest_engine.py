"""The backtest drives the real engine with real (tiny) models: batched = bar by bar, no look-ahead,
degraded data runs that say so, and the command's report."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from daemon import config
from daemon.research import backtest, replay
from daemon.research.report import curves, iso
from daemon.service.cli import main
from tests.backtest_builders import T0, TEST_CONFIG, set_threshold, tiny_world

MIN = 60_000
FROM, TO = T0 + 300 * MIN, T0 + 600 * MIN  # 300 trigger bars


@pytest.fixture(scope="module")
def world() -> Path:
    return tiny_world()


@pytest.fixture
def cfg(write_config) -> config.Config:
    return config.load(write_config(TEST_CONFIG))


def _plan(cfg: config.Config, data: Path, start: int = FROM, end: int = TO) -> backtest.Plan:
    tape = replay.load_streams(data, backtest.live_order(cfg), ("ETH/USDT", "1m"))
    return backtest.make_plan(cfg, tape, iso(start), iso(end))


def _predictors(world: Path) -> dict:
    return backtest.load_predictors(backtest.artifact_dirs(config.Config(), str(world / "models")))


def _trading_models(world: Path, cfg: config.Config, out: Path) -> Path:
    """The world's tiny models with each threshold at the median of its own confidence, so that
    about half the bars call a side: a barely trained model answers nearly the same everywhere,
    and a comparison of runs needs decisions that change."""
    models = Path(shutil.copytree(world / "models", out))
    first = backtest.run_backtest(_plan(cfg, world / "data"), _predictors(out.parent), batch=True)
    for m in first.models:
        set_threshold(models / m.name, float(np.median(np.maximum(m.probs[:, 0], m.probs[:, 2]))))
    return models


def test_batched_inference_gives_the_bar_by_bar_run(world: Path, cfg: config.Config, tmp_path: Path) -> None:
    plan = _plan(cfg, world / "data")
    _trading_models(world, cfg, tmp_path / "models")
    fast = backtest.run_backtest(plan, _predictors(tmp_path), batch=True)
    slow = backtest.run_backtest(plan, _predictors(tmp_path), batch=False)
    assert len(fast.signals) > 3 and len(fast.fills) > 3  # the comparison has something to compare
    assert _decisions(fast.signals) == _decisions(slow.signals)
    assert [s["confidence"] for s in fast.signals] == pytest.approx([s["confidence"] for s in slow.signals], abs=1e-6)
    assert fast.fills == slow.fills
    for a, b in zip(fast.models, slow.models, strict=True):
        assert a.name == b.name and len(a.bar_ts) == 300
        assert np.array_equal(a.bar_ts, b.bar_ts) and np.array_equal(a.side, b.side)
        assert np.allclose(a.probs, b.probs, rtol=0, atol=1e-6)  # float32 rounding of a batched pass


def test_bars_after_t_change_nothing_up_to_t(world: Path, cfg: config.Config, tmp_path: Path) -> None:
    t = FROM + 150 * MIN
    changed = tmp_path / "data"
    shutil.copytree(world / "data", changed)
    rng = np.random.default_rng(5)
    for path in changed.iterdir():
        tf = path.name.split("-")[1].split(".")[0]
        rows = replay.load_tape(path, tf)
        after = rows[:, 0] >= t  # every bar that opens at or after t, in every stream
        rows[after, 1:5] *= rng.uniform(0.9, 1.1, (int(after.sum()), 1))  # OHLC kept consistent
        replay.write_tape(changed, *_stream_of(path), rows)
    a = backtest.run_backtest(_plan(cfg, world / "data"), _predictors(world))
    b = backtest.run_backtest(_plan(cfg, changed), _predictors(world))
    assert [s for s in a.signals if s["bar_ts"] < t] == [s for s in b.signals if s["bar_ts"] < t]
    assert [f for f in a.fills if f.ts < t] == [f for f in b.fills if f.ts < t]
    for ma, mb in zip(a.models, b.models):
        keep = ma.bar_ts < t
        assert np.array_equal(ma.probs[keep], mb.probs[mb.bar_ts < t])
    before = a.bars[:, 0] < t  # marked at closes up to t, which no changed bar reaches
    eq_a, eq_b = curves(a)["strategy"][0], curves(b)["strategy"][0]
    assert np.array_equal(eq_a[before], eq_b[before])
    assert not np.array_equal(a.bars, b.bars)  # the bars after t did change
    assert a.signals != b.signals or not np.array_equal(eq_a, eq_b)  # and the run noticed


def _decisions(signals: list[dict]) -> list[tuple]:
    """Signals without their confidence (a float32 batched pass moves it by ~1e-7)."""
    return [(s["bar_ts"], s["strategy"], s["side"], s["price"], s["reasons"]) for s in signals]


def _stream_of(path: Path) -> tuple[str, str]:
    pair, tf = path.name.split(".")[0].rsplit("-", 1)
    return pair.replace("_", "/"), tf


def test_missing_timeframe_is_a_documented_degraded_run(world: Path, cfg: config.Config, tmp_path: Path) -> None:
    data = shutil.copytree(world / "data", tmp_path / "data")
    (data / "ETH_USDT-1d.csv.gz").unlink()
    # no 1d file: the whole days of the 1m file are the 1d bars (as the local exchange serves them)
    derived = backtest.run_backtest(_plan(cfg, data), _predictors(world))
    assert derived.notes["missing_streams"] == [] and derived.notes["derived_from_1m"]["ETH/USDT 1d"]["derived"] >= 1
    # a 1m file shorter than a day gives no 1d bar at all: a degraded run that says so
    rows = replay.load_tape(data / "ETH_USDT-1m.csv.gz", "1m")
    day = 86_400_000
    start = int(rows[0, 0]) - int(rows[0, 0]) % day + day
    replay.write_tape(data, "ETH/USDT", "1m", rows[(rows[:, 0] >= start + 60 * MIN) & (rows[:, 0] < start + day + 30 * MIN)])
    plan = _plan(cfg, data, start + 400 * MIN, start + 700 * MIN)
    result = backtest.run_backtest(plan, _predictors(world))
    assert result.notes["missing_streams"] == ["ETH/USDT 1d"]
    mtf = next(m for m in result.models if m.name == "mtf_transformer")
    assert len(mtf.bar_ts) == 300  # the hybrid masks the missing timeframe and still answers


def test_gap_in_the_period_is_replayed_as_recorded_and_listed(world: Path, cfg: config.Config, tmp_path: Path) -> None:
    data = shutil.copytree(world / "data", tmp_path / "data")
    rows = replay.load_tape(data / "ETH_USDT-1m.csv.gz", "1m")
    hole = (rows[:, 0] >= FROM + 100 * MIN) & (rows[:, 0] < FROM + 105 * MIN)
    replay.write_tape(data, "ETH/USDT", "1m", rows[~hole])
    plan = _plan(cfg, data)
    fast = backtest.run_backtest(plan, _predictors(world), batch=True)
    slow = backtest.run_backtest(plan, _predictors(world), batch=False)
    assert fast.notes["gaps"]["ETH/USDT 1m"] == [{"from": iso(FROM + 100 * MIN), "next_bar": iso(FROM + 105 * MIN), "missing": 5}]
    assert len(fast.bars) == 295
    cnn = next(m for m in fast.models if m.name == "cnn_lstm_attn")
    assert len(cnn.bar_ts) < 295  # windows across the gap are refused, as live
    assert _decisions(fast.signals) == _decisions(slow.signals) and fast.fills == slow.fills


def test_command_writes_the_report(world: Path, write_config, tmp_path: Path, capsys) -> None:
    cfg_path = write_config(TEST_CONFIG)
    out = tmp_path / "report"
    rc = main(
        [
            "backtest",
            "-c",
            str(cfg_path),
            "--data",
            str(world / "data"),
            "--model-dir",
            str(world / "models"),
            "--from",
            iso(FROM),
            "--to",
            iso(TO),
            "--report",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "total return" in printed and "buy-and-hold" in printed and "mtf_transformer" in printed
    for name in (
        "summary.json",
        "trades.csv",
        "signals.csv",
        "report.md",
        "report.html",
        "equity.png",
        "price.png",
        "confidence.png",
        "confusion_mtf_transformer.png",
        "confusion_cnn_lstm_attn.png",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bars"] == 300 and summary["period"] == {"from": iso(FROM), "to": iso(TO)}
    for run in ("strategy", "buy_and_hold", "momentum"):
        assert {
            "total_return",
            "sharpe",
            "sortino",
            "max_drawdown",
            "win_rate",
            "profit_factor",
            "avg_trade",
            "turnover",
            "fees_paid",
            "exposure",
            "trades",
        } <= set(summary[run])
    m = summary["models"]["cnn_lstm_attn"]["argmax"]
    assert {"accuracy", "macro_f1", "confusion", "majority_baseline"} <= set(m)
    assert len((out / "signals.csv").read_text().splitlines()) == 1 + sum(summary["signals"].values())


def test_command_refuses_bad_input_clearly(world: Path, write_config, tmp_path: Path, capsys) -> None:
    cfg_path = write_config(TEST_CONFIG)
    base = ["backtest", "-c", str(cfg_path), "--model-dir", str(world / "models")]
    with pytest.raises(SystemExit) as usage:  # a usage error at parse time, before any data is read
        main(base + ["--data", str(world / "data"), "--from", "yesterday"])
    assert usage.value.code == 2
    assert "argument --from: 'yesterday' is not an ISO 8601 instant" in capsys.readouterr().err
    data = shutil.copytree(world / "data", tmp_path / "data")
    with gzip.open(data / "ETH_USDT-1h.csv.gz", "wt") as fh:
        fh.write("timestamp,open,high,low,close,volume\n3600000,2,3,1,2,oops\n")
    assert main(base + ["--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert "ETH_USDT-1h.csv.gz" in err and "line 2" in err  # names the file and the line
    with pytest.raises(SystemExit) as usage:  # a usage error at parse time, naming the flag
        main(base + ["--data", str(world / "data"), "--walk-forward", "7"])
    assert usage.value.code == 2 and "argument --walk-forward: '7': expected TRAIN_DAYS:TEST_DAYS" in capsys.readouterr().err


def test_forked_workers_give_the_one_process_table(world: Path, cfg: config.Config, tmp_path: Path) -> None:
    from daemon.research.batch import WindowIndex, precompute, precompute_parallel

    data = shutil.copytree(world / "data", tmp_path / "data")
    rows = replay.load_tape(data / "ETH_USDT-1m.csv.gz", "1m")  # a gap, so some bars cannot be predicted
    replay.write_tape(data, "ETH/USDT", "1m", rows[(rows[:, 0] < FROM + 50 * MIN) | (rows[:, 0] >= FROM + 52 * MIN)])
    plan = _plan(cfg, data)
    index = WindowIndex(plan.tape, plan.order, plan.trigger, plan.capacity)
    for name, p in _predictors(world).items():
        one = precompute(p, index, plan.trigger_ts())
        forked = precompute_parallel(p, index, plan.trigger_ts(), workers=2, chunk=64)
        assert list(one) == list(forked)
        failed = [t for t, v in one.items() if isinstance(v, Exception)]
        assert failed == [t for t, v in forked.items() if isinstance(v, Exception)]
        assert (name != "cnn_lstm_attn") or failed  # the cnn's window spans the gap after it
        for t, a in one.items():
            b = forked[t]
            if isinstance(a, Exception):
                assert str(a) == str(b)
            else:
                assert (a.side, a.threshold, a.version, a.hold_bars) == (b.side, b.threshold, b.version, b.hold_bars)
                assert a.hold_bars == p.hold_bars  # the holding period travels with every prediction
                assert a.probs == pytest.approx(b.probs, abs=1e-6)


def test_symbols_print_a_portfolio_total_and_the_gate(world: Path, write_config, tmp_path: Path, capsys) -> None:
    from tests.research.test_backtest_parity import three_symbol_data

    data = three_symbol_data(world, tmp_path)
    cfg_path = write_config(TEST_CONFIG)
    out = tmp_path / "report"
    rc = main(
        [
            "backtest",
            "-c",
            str(cfg_path),
            "--data",
            str(data),
            "--model-dir",
            str(world / "models"),
            "--symbols",
            "ETH/USDT,SOL/USDT",
            "--from",
            iso(FROM),
            "--to",
            iso(FROM + 120 * MIN),
            "--report",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "== portfolio ==" in printed and "portfolio of 2 symbols" in printed
    assert "baselines sized like the strategy: 10 % of equity" in printed
    # the tiny test models carry no validation block: the daemon would not trade them
    assert "NOTE: the daemon would not trade cnn_lstm_attn" in printed
    # said first, and again under the portfolio total (the figures a reader looks at)
    assert printed.lstrip().startswith("NOTE: the daemon would not trade")
    assert "NOTE: the daemon would not trade cnn_lstm_attn" in printed.split("== portfolio ==")[1]
    total = json.loads((out / "portfolio.json").read_text())
    assert set(total["gate"]) == {"cnn_lstm_attn", "mtf_transformer"}
    per = [json.loads((out / s / "summary.json").read_text()) for s in ("ETH_USDT", "SOL_USDT")]
    cash = per[0]["costs"]["starting_equity"]
    # one account: the symbols' P&L adds up
    pnl = sum(p["strategy"]["final_equity"] - cash for p in per)
    assert total["strategy"]["final_equity"] == pytest.approx(cash + pnl)
    assert {"strategy", "buy_and_hold", "momentum"} <= set(total)
