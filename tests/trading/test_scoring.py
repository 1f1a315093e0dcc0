"""Live scoring against stored bars, and shadow mode in the engine (real Store, real Engine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon import config
from daemon.domain import Prediction, Side, class_scores
from daemon.store import Store
from daemon.trading.engine import Engine
from daemon.trading.scoring import LiveScorer, ModelTarget, Shadow, shadow_from_config, validation_verdict
from strategies.confidence import ConfidenceStrategy
from tests.conftest import REPO
from tests.engine_parts import T0, FixedPredictor, ListSink, buffers, series

TARGET = ModelTarget(horizon=2, threshold=0.01, neutral_zone=0.002)
PASSED = {"validation": {"passed": True, "why": "40 trades, PSR 0.990, DSR 0.970 after 3 configurations"}}


def store_with(tmp_path: Path, closes: list[float], probs: dict[str, tuple[float, float, float]]) -> Store:
    store = Store(tmp_path / "s.sqlite")
    bars = series(closes)
    store.add_bars(bars)
    for b in bars:
        store.add_predictions(
            "ETH/USDT",
            [Prediction(m, "v1", b.ts, class_scores(p), Side(int(np.argmax(p))), max(p), 0.5) for m, p in probs.items()],
            0,
        )
    return store


def test_live_scores_by_hand(tmp_path: Path) -> None:
    closes = [100, 101, 102, 103, 102, 101, 100, 100, 100, 100]
    store = store_with(tmp_path, closes, {"up": (0.1, 0.1, 0.8)})
    scorer = LiveScorer(store, "ETH/USDT", {"up": TARGET}, window=100, fee=0.001)
    assert scorer.update() == {}
    st = scorer.status()["up"]
    # bars 0..7 have their bar t+2 stored; labels L L F S S (ambiguous) F F
    assert st["scored"] == 8 and st["labelled"] == 7 and st["last_bar_ts"] == T0 + 7 * 60_000
    assert st["accuracy"] == pytest.approx(2 / 7)
    assert st["macro_f1"] == pytest.approx((4 / 9) / 3)  # LONG: 2 tp, 5 fp; the others 0
    assert st["brier"] == pytest.approx((2 * 0.06 + 5 * 1.46) / 7)
    fwd = np.array([2 / 100, 2 / 101, 0, -2 / 103, -2 / 102, -1 / 101, 0, 0])
    net = fwd - 0.002
    assert st["calls"] == 8 and st["gated_sharpe"] == pytest.approx(net.mean() / net.std())
    # persistence (trailing 2-bar move): F F L L F S S S against the labels: never right
    assert st["persistence_accuracy"] == 0.0
    # always-FLAT is right on the 3 FLAT labels of 7; the 8 LONG calls rose twice over 2 bars,
    # and so did 2 of the 8 scored bars: a hit rate no better than its base rate
    assert st["flat_accuracy"] == pytest.approx(3 / 7)
    assert st["horizon_bars"] == 2 and st["hit_rate"] == pytest.approx(2 / 8) and st["hit_base_rate"] == pytest.approx(2 / 8)
    # nothing is scored twice; new bars score the rest
    store.add_bars(series([100, 100], start=T0 + 10 * 60_000))
    scorer.update()
    assert scorer.status()["up"]["scored"] == 10


def test_every_traded_symbol_is_scored_with_its_own_bars(tmp_path: Path, write_config) -> None:
    eth = [100, 101, 102, 103, 102, 101, 100, 100, 100, 100]
    sol = [100 * 1.01**i for i in range(10)]  # a steady rise: every 2-bar label is LONG
    store = store_with(tmp_path, eth, {"up": (0.1, 0.1, 0.8)})
    store.add_bars(series(sol, symbol="SOL/USDT"))
    for b in series(sol, symbol="SOL/USDT"):
        store.add_predictions("SOL/USDT", [Prediction("up", "v1", b.ts, class_scores((0.1, 0.1, 0.8)), Side.LONG, 0.8, 0.5)], 0)
    scorer = LiveScorer(store, ("ETH/USDT", "SOL/USDT"), {"up": TARGET}, window=100, fee=0.001)
    scorer.update()
    st = scorer.status()["up"]
    # over both symbols: ETH 2 of 7 labelled right (test above), BTC 8 of 8
    assert st["scored"] == 16 and st["labelled"] == 15 and st["accuracy"] == pytest.approx(10 / 15)
    alone = LiveScorer(store, "ETH/USDT", {"up": TARGET}, window=100, fee=0.001)
    alone.update()
    assert st["by_symbol"]["ETH/USDT"] == alone.status()["up"]  # labelled from ETH's bars only
    by_sol = st["by_symbol"]["SOL/USDT"]
    assert by_sol["scored"] == 8 and by_sol["accuracy"] == 1.0 and by_sol["persistence_accuracy"] == pytest.approx(6 / 8)
    # new bars of one symbol score only that symbol's rest; nothing twice
    store.add_bars(series([sol[-1] * 1.01, sol[-1] * 1.02], start=T0 + 10 * 60_000, symbol="SOL/USDT"))
    scorer.update()
    st = scorer.status()["up"]
    assert st["scored"] == 18 and st["by_symbol"]["SOL/USDT"]["scored"] == 10 and st["by_symbol"]["ETH/USDT"]["scored"] == 8
    # the rolling window spans all symbols
    small = LiveScorer(store, ("ETH/USDT", "SOL/USDT"), {"up": TARGET}, window=12)
    small.update()
    assert small.status()["up"]["scored"] == 12
    # the daemon scores exchange.symbols
    cfg = config.load(write_config('[exchange]\nsymbols = ["ETH/USDT", "SOL/USDT"]\n'))
    meta = {"version": "v1", "target": {"mode": "classification", "horizon": 2, "threshold": 0.01, "neutral_zone": 0.002}}
    shadow = shadow_from_config(cfg, {"up": type("P", (), {"version": "v1", "meta": meta})()}, ListSink(), store)
    assert shadow.scorer.symbols == ("ETH/USDT", "SOL/USDT")


def test_a_model_below_persistence_is_shadowed_with_an_alert(tmp_path: Path) -> None:
    closes = [100 * 1.01**i for i in range(10)]  # a steady trend: persistence is right
    store = store_with(tmp_path, closes, {"down": (0.8, 0.1, 0.1), "up": (0.1, 0.1, 0.8)})
    sink = ListSink()
    shadow = Shadow(only_validated=False, sink=sink)
    shadow.scorer = LiveScorer(store, "ETH/USDT", {"down": TARGET, "up": TARGET}, window=8)
    for name in ("down", "up"):
        assert shadow.review(name, "v1", None)  # trade_only_validated off: both may trade
    preds = [Prediction(m, "v1", T0, class_scores((0.1, 0.1, 0.8)), Side.LONG, 0.8, 0.5) for m in ("down", "up")]
    assert [p.model for p in shadow.tradable(preds)] == ["up"]
    why = shadow.status()["shadow"]["down"]
    assert why.startswith("live macro-F1 0.000 below the persistence baseline's 0.286 over the last 8")
    assert shadow.status()["live_scores"]["up"]["accuracy"] == 1.0
    alert = sink.of("error")
    assert len(alert) == 1 and alert[0]["kind"] == "model_demoted" and alert[0]["model"] == "down"
    # the daily summary's line per model
    summary = shadow.summary()
    assert summary["up"] == (
        "accuracy 1.000 (always-FLAT 0.000, persistence 0.750), macro-F1 0.333 (persistence "
        "0.286), hit rate 1.000 at 2 bars (base rate 1.000), Brier 0.060, gated Sharpe +0.000 "
        "over 8 scored; trades"
    )
    assert (
        summary["down"].startswith("accuracy 0.000 (always-FLAT 0.000, persistence 0.750), macro-F1 0.000")
        and "; SHADOW: live macro-F1" in summary["down"]
    )


def test_calls_that_lose_to_always_flat_are_shadowed(tmp_path: Path) -> None:
    # A market that goes nowhere over 2 bars: every label FLAT, persistence says FLAT too. The
    # model's arg-max is FLAT (as good as persistence on every forecast score), but its threshold
    # rule calls LONG: each call pays the fee for nothing, which always-FLAT does not.
    closes = [100.0 if i % 2 == 0 else 100.1 for i in range(40)]
    store = Store(tmp_path / "s.sqlite")
    bars = series(closes)
    store.add_bars(bars)
    for b in bars:
        store.add_predictions(
            "ETH/USDT", [Prediction("churn", "v1", b.ts, class_scores((0.2, 0.5, 0.3)), Side.LONG, 0.3, 0.25)], 0
        )
    shadow = Shadow(only_validated=False)
    shadow.scorer = LiveScorer(store, "ETH/USDT", {"churn": TARGET}, window=30, fee=0.001)
    assert shadow.review("churn", "v1", None)
    shadow.score()
    st = shadow.status()["live_scores"]["churn"]
    assert st["accuracy"] == st["persistence_accuracy"] == st["flat_accuracy"] == 1.0
    assert st["mean_net_per_call"] == pytest.approx(-0.002)
    why = shadow.status()["shadow"]["churn"]
    assert why == (
        "live calls lose 0.2000% each after fees over the last 30 calls (horizon 2 bars): worse than always-FLAT, which earns 0"
    )


def test_validation_verdicts() -> None:
    assert validation_verdict(PASSED)[0] is True
    ok, why = validation_verdict({"validation": {"passed": False, "why": "7 trades < 30"}})
    assert not ok and why == "failed the gate: 7 trades < 30"
    ok, why = validation_verdict({})
    assert not ok and "sigd compare --validate" in why


def make_engine(tmp_path: Path, predictors: dict, shadow: Shadow) -> Engine:
    engine = Engine(
        store=Store(tmp_path / "e.sqlite"),
        buffers=buffers(),
        predictors=predictors,
        sink=shadow.sink,
        strategies=[ConfidenceStrategy(combine="either")],
        wait_for_decision=True,
    )
    engine.shadow = shadow
    for name, p in predictors.items():
        shadow.review(name, p.version, getattr(p, "meta", None))
    return engine


async def run_bars(engine: Engine, n: int) -> None:
    await engine.start()
    for b in series([100.0 + i for i in range(n)]):
        engine.buffers.append(b)
        await engine.on_bar(b)


async def test_a_shadowed_model_is_stored_but_does_not_trade(tmp_path: Path) -> None:
    sink = ListSink()
    engine = make_engine(tmp_path, {"long": FixedPredictor("long", "v1")}, Shadow(only_validated=True, sink=sink))
    await run_bars(engine, 5)
    assert engine.store.count("predictions") == 5 and engine.store.count("signals") == 0
    status = engine.status()
    assert status["trade_only_validated"] is True and "no validation block" in status["shadow"]["long"]
    assert [e["kind"] for e in sink.of("error")] == ["model_not_validated"]
    await engine.close()


async def test_a_validated_model_trades(tmp_path: Path) -> None:
    model = FixedPredictor("long", "v1")
    model.meta = PASSED  # type: ignore[attr-defined]
    engine = make_engine(tmp_path, {"long": model}, Shadow(only_validated=True, sink=ListSink()))
    await run_bars(engine, 3)
    assert engine.store.count("signals") >= 1 and engine.status()["shadow"] == {}
    # a swapped-in model without validation goes to shadow from the next decision
    engine.swap_predictor("long", FixedPredictor("long", "v2"))
    assert "long" in engine.status()["shadow"]
    await engine.close()


def test_shipped_config_does_not_trade_the_shipped_models(tmp_path: Path) -> None:
    from models.artifacts import read_meta

    cfg = config.load(REPO / "config.toml")
    assert cfg.models.trade_only_validated is True
    predictors = {}
    for name, path in cfg.models.paths.items():
        meta = read_meta(path)
        passed, why = validation_verdict(meta)  # measured out of sample by `sigd compare --validate` (README)
        assert passed is False and why.startswith("failed the gate: ") and "PSR" in why
        predictors[name] = type("P", (), {"version": meta["version"], "meta": meta})()
    shadow = shadow_from_config(cfg, predictors, ListSink(), Store(tmp_path / "s.sqlite"))
    assert set(shadow.status()["shadow"]) == set(cfg.models.paths)
    assert set(shadow.scorer.targets) == set(cfg.models.paths)


def test_score_window_is_checked(write_config) -> None:
    with pytest.raises(config.ConfigError, match="models.score_window"):
        config.load(write_config("[models]\nscore_window = 3\n"))


def test_sigd_status_says_which_models_do_not_trade() -> None:
    from daemon.commands.status import render_status

    text = render_status(
        {
            "models": [
                {
                    "name": "cnn",
                    "version": "c1",
                    "threshold": 0.44,
                    "trades": False,
                    "shadow": "failed the gate: PSR 0.045 < 0.95",
                },
                {"name": "mtf", "version": "m1", "threshold": 0.41, "trades": True, "shadow": ""},
            ]
        }
    )
    assert "cnn              c1  threshold 0.44  SHADOW (not trading): failed the gate: PSR 0.045 < 0.95" in text
    assert "mtf              m1  threshold 0.41\n" in text + "\n" and text.count("SHADOW") == 1
