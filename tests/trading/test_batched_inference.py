"""Batched inference: the cycle's one forward pass per model gives what one-by-one gives (1e-5),
on the shipped `small` artifacts and real bars from the bundled tape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.localexchange.tape import bundled_tape_dir, load_tape
from daemon.trading.inference import Inference, predict_one_by_one

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = {name: REPO / "models" / "artifacts" / name for name in ("mtf_transformer", "cnn_lstm_attn")}


def windows_at(bars: dict[str, np.ndarray], btc: np.ndarray, end: int, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """The windows a daemon would hold right after the 1m bar at row `end` closed."""
    one_m = bars["1m"][: end + 1]
    close_ms = int(one_m[-1, 0]) + 60_000
    out = {"1m": one_m[-sizes.get("1m", 1) :], "btc_1m": btc[btc[:, 0] <= one_m[-1, 0]][-sizes.get("btc_1m", 1) :]}
    for tf, step in (("1h", 3_600_000), ("1d", 86_400_000)):
        closed = bars[tf][bars[tf][:, 0] + step <= close_ms]
        out[tf] = closed[-sizes.get(tf, 1) :]
    return out


async def test_batched_and_one_by_one_inference_agree_to_1e5() -> None:
    from pipeline.predictor import Predictor

    predictors = {name: Predictor.load(path, "cpu") for name, path in ARTIFACTS.items()}
    tape = load_tape(bundled_tape_dir())
    eth = next(t for t in tape.values() if t.base == "ETH").bars
    btc = next(t for t in tape.values() if t.base == "BTC").bars["1m"]
    sizes = {k: max(int(p.required_windows.get(k, 0)) for p in predictors.values()) for k in ("1m", "1h", "1d", "btc_1m")}
    ends = [len(eth["1m"]) - 1 - 37 * k for k in range(6)]  # six "symbols": six different recent states
    windows = [windows_at(eth, btc, e, sizes) for e in ends]
    bar_ts = [int(w["1m"][-1, 0]) for w in windows]
    inference = Inference()
    try:
        batched = await inference.predict(predictors, windows, bar_ts)
    finally:
        inference.close()
    assert all(len(per_symbol) == 2 for per_symbol in batched)  # both models answered every symbol
    for name, predictor in predictors.items():
        single = predict_one_by_one(name, predictor, windows, bar_ts)
        for i, one in enumerate(single):
            assert one is not None
            together = next(p for p in batched[i] if p.model == name)
            np.testing.assert_allclose(together.probs, one.probs, atol=1e-5, rtol=0)
            assert (together.side, together.bar_ts) == (one.side, one.bar_ts)
            assert together.confidence == pytest.approx(one.confidence, abs=1e-5)


async def test_a_symbol_the_batch_cannot_take_is_left_out_alone() -> None:
    from pipeline.predictor import Predictor

    predictor = Predictor.load(ARTIFACTS["cnn_lstm_attn"], "cpu")
    tape = load_tape(bundled_tape_dir())
    eth = next(t for t in tape.values() if t.base == "ETH").bars
    btc = next(t for t in tape.values() if t.base == "BTC").bars["1m"]
    sizes = {"1m": 198, "1h": 1, "1d": 1, "btc_1m": 1}
    good = [windows_at(eth, btc, len(eth["1m"]) - 1 - k, sizes) for k in range(2)]
    short = dict(good[0], **{"1m": good[0]["1m"][-20:]})  # a symbol that has just been listed
    windows = [good[0], short, good[1]]
    inference = Inference()
    try:
        answers = await inference.predict({"cnn": predictor}, windows, [int(w["1m"][-1, 0]) for w in windows])
    finally:
        inference.close()
    assert [len(a) for a in answers] == [1, 0, 1]
