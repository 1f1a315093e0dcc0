"""`sigd compare` end to end on the bundled tape: tiny models, 2 families, 2 purged folds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daemon.research import baselines, leaderboard
from daemon.research.selection import DAY_MS, parse_setups, plan_folds, run_jobs
from daemon.service.cli import build_parser, main
from daemon.trading import scoring
from tests.conftest import REPO

TAPE = REPO / "daemon" / "localexchange" / "tape"


def test_folds_are_purged_embargoed_and_tile_the_end() -> None:
    folds = plan_folds(0, 10 * DAY_MS, folds=3, train_days=4, test_days=1, purge_ms=240 * 60_000, embargo_ms=60 * 60_000)
    assert [f.test_end for f in folds] == [8 * DAY_MS, 9 * DAY_MS, 10 * DAY_MS]
    for f in folds:
        assert f.test_start - f.train_end == 300 * 60_000  # one horizon + the embargo
        assert f.train_end - f.train_start == 4 * DAY_MS and f.train_start >= 0
    with pytest.raises(ValueError, match="need 11.21 days"):
        plan_folds(0, 10 * DAY_MS, folds=3, train_days=8, test_days=1, purge_ms=300 * 60_000)


def test_setups_and_bad_setups() -> None:
    s = parse_setups(["1m:15", "1h:240", "1h:1440"])
    assert [x.name for x in s] == ["1m/15m", "1h/4h", "1h/1d"] and s[1].hold == 4 and s[0].hold == 15
    assert s[2].label_thresholds() == pytest.approx((0.002 * 96**0.5, 0.001 * 96**0.5), rel=1e-4)
    with pytest.raises(ValueError, match="'1h:30'"):
        parse_setups(["1h:30"])


def test_baselines_decide_as_documented() -> None:
    trailing = np.array([0.004, -0.0005, -0.003, np.nan])
    assert baselines.persistence_sides(trailing, 0.001).tolist() == [2, 1, 0, 1]
    hour = 3_600_000
    ts = np.array([hour - 60_000, hour, hour + 60_000, 2 * hour])
    assert baselines.momentum_sides(ts, np.array([0.1, -0.2, 0.3, 0.05])).tolist() == [1, 0, 0, 2]
    r = baselines.random_sides(30_000, np.array([1.0, 2.0, 1.0]), seed=1)
    assert np.bincount(r, minlength=3) / len(r) == pytest.approx([0.25, 0.5, 0.25], abs=0.02)


def test_every_rule_is_traded_at_the_same_unit_size() -> None:
    ret = np.array([0.01, -0.02, 0.03, 0.0])
    long_all, _ = scoring.trading_scores(np.full(4, 2), ret, 1, 0.001, 365.0)
    assert long_all["trades"] == 1 and long_all["turnover"] == 1.0
    assert long_all["gross_pnl"] == pytest.approx(0.02) and long_all["fees"] == pytest.approx(0.001)
    assert long_all["fee_share"] == pytest.approx(0.05)
    assert long_all["total_return"] == pytest.approx((1.01 - 0.001) * 0.98 * 1.03 - 1)
    # a flip is an entry and costs two sides
    flip, _ = scoring.trading_scores(np.array([2, 0, 0, 0]), ret, 1, 0.001, 365.0)
    assert flip["trades"] == 2 and flip["turnover"] == 3.0 and flip["fee_share"] is None


def test_compare_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "board"
    args = build_parser().parse_args(
        [
            "compare",
            "--families",
            "cnn_lstm_attn",
            "stacked_lstm",
            "--data",
            str(TAPE),
            "--out",
            str(out),
            "--preset",
            "tiny",
            "--folds",
            "2",
            "--train-days",
            "2",
            "--test-days",
            "0.25",
            "--setups",
            "1m:15",
            "1h:60",
            "--epochs",
            "1",
            "--max-batches",
            "2",
        ]
    )
    jobs = leaderboard.plan_jobs(args)
    assert len(jobs) == 2 * 2 * 2
    results = run_jobs(jobs)
    for r in results:
        fold = r.job.fold
        # the threshold came from the inner slice, inside the training window; the test is after the purge
        assert r.inner.close_ts.max() <= fold.train_end
        assert fold.test_start - fold.train_end >= r.job.setup.horizon * 60_000
        assert r.test.close_ts.min() > fold.test_start and r.test.close_ts.max() <= fold.test_end
        assert np.all(r.test.close_ts % (60_000 if r.job.setup.trigger == "1m" else 3_600_000) == 0)
        assert 0.34 <= r.threshold <= 0.95 and r.test.probs.shape == (len(r.test.close_ts), 3)
    board = leaderboard.leaderboard(results, 0.001)
    paths = leaderboard.write(board, out)
    assert all(p.stat().st_size > 0 for p in paths.values())
    doc = json.loads(paths["json"].read_text())
    assert doc["n_trials"] == 4
    for setup in ("1m/15m", "1h/1h"):
        names = {r["name"] for r in doc["rows"] if r["setup"] == setup}
        assert names == {"cnn_lstm_attn", "stacked_lstm", *leaderboard.BASELINES}
        decisions = {r["decisions"] for r in doc["rows"] if r["setup"] == setup}
        assert len(decisions) == 1  # every rule on the very same decisions
    row = next(r for r in doc["rows"] if r["name"] == "buy_and_hold" and r["setup"] == "1m/15m")
    assert row["long"] == 1.0 and row["trades"] == 1 and row["passed"] is False and "1 trades < 30" in row["why"]
    mom = next(r for r in doc["rows"] if r["name"] == "momentum" and r["setup"] == "1m/15m")
    # a day of history before every test window: FLAT only until the first full hour
    assert mom["long"] + mom["short"] > 0.8 and mom["trades"] >= 1
    for col in ("accuracy", "macro_f1", "log_loss", "brier", "sharpe", "psr", "dsr", "turnover", "fee_share"):
        assert col in row
    md = paths["md"].read_text()
    assert "### 1h/1h" in md and "| *persistence* |" in md and "after 4 configurations" in md


def test_compare_command_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["compare", "--families", "stacked_lstm", "--data", str(TAPE), "--out", str(tmp_path), "--setups", "1h:30"])
    assert rc == 1 and "--setups '1h:30'" in capsys.readouterr().err
    rc = main(["compare", "--families", "stacked_lstm", "--data", str(TAPE), "--out", str(tmp_path), "--train-days", "30"])
    assert rc == 1 and "days of data" in capsys.readouterr().err


def test_validate_writes_the_gate_into_the_artifact_only_when_asked(
    tmp_path: Path, tiny_artifacts: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from daemon.trading.scoring import validation_verdict
    from models.artifacts import load_artifact, read_meta

    art = Path(shutil.copytree(tiny_artifacts["cnn_lstm_attn"], tmp_path / "art"))
    version = read_meta(art)["version"]
    trained = read_meta(art)["data"]["last_close_ts"]
    late = leaderboard.DAY_MS + trained  # a day after its training data
    iso = lambda ms: np.datetime_as_string(np.datetime64(ms, "ms"), unit="m") + "Z"  # noqa: E731
    # inside the training data: refused, nothing written
    rc = main(
        [
            "compare",
            "--validate",
            str(art),
            "--data",
            str(TAPE),
            "--out",
            str(tmp_path / "v"),
            "--from",
            iso(trained - leaderboard.DAY_MS),
        ]
    )
    assert rc == 1 and "inside what it was trained on" in capsys.readouterr().err
    assert "validation" not in read_meta(art)
    window = ["--from", iso(late), "--to", iso(late + leaderboard.DAY_MS // 2), "--prior-trials", "9"]
    before = (art / "artifact.json").read_bytes()
    rc = main(["compare", "--validate", str(art), "--data", str(TAPE), "--out", str(tmp_path / "look"), *window])
    out = capsys.readouterr().out
    assert rc == 0 and ("FAIL" in out or "PASS" in out) and "artifacts untouched" in out
    assert (art / "artifact.json").read_bytes() == before  # a look at an artifact does not rewrite it
    looked = json.loads((tmp_path / "look" / "validation.json").read_text())[0]
    rc = main(["compare", "--validate", str(art), "--data", str(TAPE), "--out", str(tmp_path / "v"), *window, "--write-verdict"])
    assert rc == 0 and "into each artifact.json" in capsys.readouterr().out
    meta = read_meta(art)
    block = meta["validation"]
    # the baselines on the same decisions and unit size, printed beside the verdict
    assert set(block["baselines"]) == {"always_flat", "buy_and_hold", "momentum", "persistence"}
    assert block["baselines"]["always_flat"] == {"sharpe": 0.0, "total_return": 0.0, "trades": 0}
    assert "baseline buy_and_hold: Sharpe" in out and "baseline momentum: Sharpe" in out
    assert block["n_trials"] == 10 and block["decisions"] > 600 and block["window"][0] == iso(late)[:-1] + ":00Z"
    assert validation_verdict(meta)[0] is block["passed"]
    assert meta["version"] == version and load_artifact(art)[1]["version"] == version  # weights untouched
    assert json.loads((tmp_path / "v" / "validation.json").read_text())[0]["why"] == block["why"] == looked["why"]


def test_validate_decides_at_the_artifacts_decision_timeframe(tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    # An artifact trained for 1h decisions (sigd compare's 1h setups record it in its TrainSpec)
    # is validated on the hour's closes, with its holding period in those decisions.
    import shutil

    from daemon.research.selection import validate_artifact
    from models.artifacts import read_meta

    art = Path(shutil.copytree(tiny_artifacts["cnn_lstm_attn"], tmp_path / "art"))
    late = read_meta(art)["data"]["last_close_ts"] + leaderboard.DAY_MS
    window = (late, late + leaderboard.DAY_MS)
    minute = validate_artifact(art, [str(TAPE)], "ETH/USDT", *window)
    assert minute["decision_timeframe"] == "1m" and minute["decisions"] > 600
    doc = json.loads((art / "artifact.json").read_text())
    doc["train_spec"]["decision_timeframe"] = "1h"
    doc["target"]["horizon"] = doc["train_spec"]["target"]["horizon"] = 60
    doc["threshold"]["hold_bars"] = 60
    (art / "artifact.json").write_text(json.dumps(doc))
    hourly = validate_artifact(art, [str(TAPE)], "ETH/USDT", *window)
    assert hourly["decision_timeframe"] == "1h" and hourly["hold_decisions"] == 1
    assert 20 <= hourly["decisions"] <= 24  # one a closed hour, not one a minute
