"""Power calibration on a small grid of the real hourly data: a strong planted edge is found,
shuffled labels are rejected; the sizing is the portfolio module's; bad flags are one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.research import calibration
from daemon.research.backtest import parse_iso
from daemon.service.cli import main
from strategies.portfolio import PortfolioSpec, weights_path

HOURLY = Path(__file__).resolve().parents[3] / "shared" / "data" / "hourly"
if not HOURLY.is_dir():
    HOURLY = Path("/work/shared/data/hourly")
SYMBOLS = ["BTC/USDT", "ETH/USDT", "XRP/USDT", "LTC/USDT"]
needs_data = pytest.mark.skipif(not HOURLY.is_dir(), reason="the shared hourly data set is not here")


@pytest.fixture(scope="module")
def closes() -> tuple[np.ndarray, np.ndarray]:
    ts, close, _ = calibration.load_closes(HOURLY, SYMBOLS, parse_iso("2023-01-01", "--from"), parse_iso("2025-01-01", "--to"))
    return ts, close


@needs_data
def test_a_strong_planted_edge_passes_and_shuffled_labels_do_not(closes) -> None:
    ts, close = closes
    spec = calibration.CalibrationSpec(sharpes=(0.0, 6.0), seeds=3, n_groups=6, n_test_groups=2, n_trials=10)
    result = calibration.calibrate(ts, close, spec)
    none, strong = result.levels
    assert strong.passed == [True, True, True]
    assert np.mean(strong.oracle_sharpe) == pytest.approx(6.0, abs=1.2)  # the plant earns what was asked
    assert result.shuffled.ic == strong.ic and result.shuffled.passed == [False, False, False]
    assert none.passed == [False, False, False]
    assert max(result.shuffled.dsr) < 0.95 and min(strong.dsr) >= 0.95
    assert strong.oracle_passed == [True, True, True] and not any(none.oracle_passed)  # the ceiling row


@needs_data
def test_the_planted_feature_has_the_information_coefficient_asked(closes) -> None:
    _, close = closes
    y = calibration.forward_returns(close)
    x = calibration.plant(y, 0.1, np.random.default_rng(0))
    ok = np.isfinite(y)
    corr = [np.corrcoef(x[ok[:, j], j], y[ok[:, j], j])[0, 1] for j in range(y.shape[1])]
    assert np.allclose(corr, 0.1, atol=0.02)


def test_the_weights_are_the_portfolio_modules() -> None:
    rng = np.random.default_rng(3)
    score = rng.normal(size=(50, 6))
    score[rng.random(score.shape) < 0.2] = np.nan
    score[5] = np.abs(score[5])  # a row with longs only
    spec = PortfolioSpec(long_short=True, max_weight=1.0, gross_cap=1.0, net_cap=1.0)
    expected = weights_path(np.nan_to_num(score, nan=0.0), None, spec, 8760)
    assert np.allclose(calibration.long_short_weights(score), expected, atol=1e-12)


def test_the_book_is_dollar_neutral_and_blind_to_a_shift_of_every_score() -> None:
    rng = np.random.default_rng(5)
    score = rng.normal(size=(200, 8))
    score[rng.random(score.shape) < 0.1] = np.nan
    w = calibration.long_short_weights(calibration.dollar_neutral(score))
    # an intercept (or the market's drift) moves every score alike: no weight moves
    shifted = score + 3.0 + rng.normal(size=(200, 1))
    assert np.allclose(calibration.long_short_weights(calibration.dollar_neutral(shifted)), w)
    assert np.allclose(w.sum(axis=1), 0.0) and np.allclose(np.abs(w).sum(axis=1), 1.0)  # both sides, every bar
    # while the raw scores, all positive, would hold the whole book long
    assert np.allclose(calibration.long_short_weights(score + 10.0).sum(axis=1), 1.0)


@needs_data
def test_the_distractors_are_real_features_that_carry_no_edge(closes) -> None:
    _, close = closes
    y = calibration.forward_returns(close)
    d = calibration.distractors(close, 24)
    vol = calibration.realised_vol(close, 30 * 24)
    with np.errstate(invalid="ignore", divide="ignore"):
        unshifted = calibration.trailing_return(close, 24) / (vol * np.sqrt(24))
    assert np.array_equal(np.isfinite(d[..., 0]), np.isfinite(unshifted))  # gaps and listings stay put
    for j in range(close.shape[1]):  # the same values, moved in time
        ok = np.isfinite(unshifted[:, j])
        assert np.allclose(np.sort(d[ok, j, 0]), np.sort(unshifted[ok, j]))
    ok = np.isfinite(y) & np.isfinite(d[..., 0])
    assert abs(np.corrcoef(d[..., 0][ok], y[ok])[0, 1]) < 0.02


def test_costs_come_off_turnover() -> None:
    w = np.array([[0.5, -0.5], [0.5, -0.5], [-0.5, 0.5]])
    y = np.array([[0.01, 0.02], [0.0, 0.0], [np.nan, 0.01]])
    r = calibration.portfolio_returns(w, y, 0.001)
    assert r == pytest.approx([0.5 * 0.01 - 0.5 * 0.02 - 0.001, 0.0, 0.5 * 0.01 - 0.002])


@needs_data
@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--groups", "6", "--test-groups", "6"], "--test-groups 6"),
        (["--cost-bps", "-1"], "--cost-bps -1"),
        (["--symbols", "FOO/USDT"], "--symbols"),
        (["--sharpes", "1,x"], "--sharpes"),
        (["--seeds", "0"], "--seeds 0"),
        (["--symbols", "BTC/USDT,SOL/USDT", "--from", "2018-01-01", "--to", "2018-03-01"], "--symbols: SOL/USDT has no 1h bar"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(flags: list[str], needle: str, capsys) -> None:
    rc = main(["calibrate", "--data", str(HOURLY), *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
