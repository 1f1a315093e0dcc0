"""A decision cycle's batching gives what one symbol at a time gives: the vectorized feature
encoding of a cycle's windows bit for bit (clip counts included), and a CPU model's cycle cut
into parts run side by side the same predictions (1e-5) as one by one, every symbol in its
place. Shipped `small` artifacts and real bars from the bundled tape."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.localexchange.tape import bundled_tape_dir, load_tape
from daemon.trading import inference
from daemon.trading.inference import Inference, cpu_parts, predict_one_by_one
from models.features import ClipStats, encode_windows, encode_windows_batch
from tests.trading.test_batched_inference import ARTIFACTS, windows_at


@pytest.fixture(scope="module")
def predictors() -> dict:
    from pipeline.predictor import Predictor

    return {name: Predictor.load(path, "cpu") for name, path in ARTIFACTS.items()}


@pytest.fixture(scope="module")
def cycle(predictors: dict) -> list[dict[str, np.ndarray]]:
    """20 "symbols": the real ETH tape at 20 different recent states, two of them degraded."""
    tape = load_tape(bundled_tape_dir())
    eth = next(t for t in tape.values() if t.base == "ETH").bars
    btc = next(t for t in tape.values() if t.base == "BTC").bars["1m"]
    sizes = {k: max(int(p.required_windows.get(k, 0)) for p in predictors.values()) for k in ("1m", "1h", "1d", "btc_1m")}
    windows = [windows_at(eth, btc, len(eth["1m"]) - 1 - 23 * k, sizes) for k in range(20)]
    windows[3] = dict(windows[3], **{"1h": windows[3]["1h"][-10:]})  # a short 1h window: that key is masked
    gap = windows[7]["1d"].copy()
    gap[5:, 0] += 86_400_000  # a missing day: the 1d window is not used
    windows[7] = dict(windows[7], **{"1d": gap})
    return windows


def test_batch_encoding_is_bit_identical_to_one_window_at_a_time(predictors: dict, cycle: list) -> None:
    for predictor in predictors.values():
        spec = predictor.spec
        one, many = ClipStats(), ClipStats()
        alone = [encode_windows(w, spec, one) for w in cycle]
        together = encode_windows_batch(cycle, spec, many)
        for a, b in zip(alone, together):
            assert a.keys() == b.keys()
            for key in a:
                assert (a[key] is None) == (b[key] is None), key
                if a[key] is not None:
                    assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
        assert one.values == many.values
        assert {k: v.tolist() for k, v in one.clipped.items()} == {k: v.tolist() for k, v in many.clipped.items()}
    masked = encode_windows_batch(cycle, predictors["mtf_transformer"].spec)
    assert masked[3]["1h"] is None and masked[7]["1d"] is None and masked[3]["1m"] is not None


def test_parts_cover_the_cycle_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "cpu_threads", lambda: 2)
    monkeypatch.setattr(inference, "model_threads", lambda: 1)  # models.threads = 1
    assert cpu_parts(5) == [slice(0, 5)]  # too few symbols to be worth a second forward pass
    assert cpu_parts(400) == [slice(0, 200), slice(200, 400)]
    monkeypatch.setattr(inference, "cpu_threads", lambda: 3)
    parts = cpu_parts(25)
    assert [p.start for p in parts] == [0, 8, 17] and parts[-1].stop == 25
    monkeypatch.setattr(inference, "model_threads", lambda: 2)  # each forward pass takes two of the three cores
    assert cpu_parts(400) == [slice(0, 400)]


async def test_a_cycle_in_parts_predicts_what_one_by_one_does(
    predictors: dict, cycle: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inference, "cpu_threads", lambda: 2)  # two parts per model on any machine
    monkeypatch.setattr(inference, "model_threads", lambda: 1)
    assert len(cpu_parts(len(cycle))) == 2
    bar_ts = [int(w["1m"][-1, 0]) for w in cycle]
    engine_side = Inference()
    try:
        answers = await engine_side.predict(predictors, cycle, bar_ts, [f"S{i}/USDT" for i in range(len(cycle))])
    finally:
        engine_side.close()
    for name, predictor in predictors.items():
        for i, single in enumerate(predict_one_by_one(name, predictor, cycle, bar_ts)):
            assert single is not None
            got = next(p for p in answers[i] if p.model == name)
            assert (got.side, got.bar_ts) == (single.side, single.bar_ts)
            np.testing.assert_allclose(got.probs, single.probs, atol=1e-5, rtol=0)
