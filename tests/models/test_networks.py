"""The networks alone: shapes, degraded mode, causality, padding, loss, overfitting, config round trips."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from models import registry
from models.base import SequenceModel
from models.mtf_transformer import TIMEFRAMES, MTFTransformer, mtf_loss
from tests.conftest import REPO

N_FEATURES = 6
# The window families (x [B, T, F] -> [B, 3 | 1]); every one gets the window-model tests below.
SEQUENCE_MODELS = tuple(n for n in registry.FAMILIES if issubclass(registry.model_class(n), SequenceModel))


def tiny(name: str, **overrides: object) -> torch.nn.Module:
    """A tiny model in eval mode (dropout off), seeded so every run builds the same weights."""
    torch.manual_seed(0)
    if name in SEQUENCE_MODELS:
        overrides = {"n_features": N_FEATURES, **overrides}
    return registry.build(name, overrides, preset="tiny").eval()


def windows(batch: int, steps: int, seed: int = 1) -> torch.Tensor:
    """Random normalized windows [batch, steps, N_FEATURES]."""
    return torch.randn(batch, steps, N_FEATURES, generator=torch.Generator().manual_seed(seed))


def mtf_bars(batch: int, steps: int, timeframes: tuple[str, ...] = TIMEFRAMES, seed: int = 1) -> dict:
    """Random normalized bars {tf: [batch, steps, 5]} (unit scale, as the pipeline's scaler leaves them)."""
    g = torch.Generator().manual_seed(seed)
    return {tf: torch.randn(batch, steps, 5, generator=g) for tf in timeframes}


def shapes(out: dict) -> dict:
    return {k: (shapes(v) if isinstance(v, dict) else tuple(v.shape)) for k, v in out.items()}


# ---------------------------------------------------------------- window models


SEQUENCE_VARIANTS = [
    ("cnn_lstm_attn", {"use_cnn": False}),  # LSTM-attention
    ("cnn_lstm_attn", {"use_cnn": False, "use_attention": False}),  # plain LSTM
    ("cnn_lstm_attn", {"use_attention": False}),  # CNN-LSTM
    *((name, {}) for name in SEQUENCE_MODELS),  # every window family as registered
]


@pytest.mark.parametrize("task,width", [("classification", 3), ("regression", 1)])
@pytest.mark.parametrize("name,overrides", SEQUENCE_VARIANTS)
def test_window_model_output_shapes(name: str, overrides: dict, task: str, width: int) -> None:
    model = tiny(name, task=task, **overrides)
    x = windows(4, model.config.seq_len)
    assert model(x).shape == (4, width)
    assert model.forward_steps(x).shape == (4, model.config.seq_len, width)
    assert model.predict(x).shape == (4,)
    if task == "classification":
        p = model.predict_proba(x)
        assert p.shape == (4, 3) and torch.allclose(p.sum(-1), torch.ones(4))
        assert set(model.predict(x).tolist()) <= {0, 1, 2}
    else:
        with pytest.raises(ValueError, match="classification"):
            model.predict_proba(x)


@pytest.mark.parametrize("name", ["cnn_lstm_attn", "attention_lstm"])
def test_attention_weights_are_a_distribution_over_the_window(name: str) -> None:
    model = tiny(name)
    w = model.attention_weights(windows(3, 10))
    assert w.shape == (3, 10)
    assert torch.allclose(w.sum(-1), torch.ones(3), atol=1e-5) and bool((w >= 0).all())


def test_attention_weights_need_attention() -> None:
    with pytest.raises(ValueError, match="use_attention"):
        tiny("cnn_lstm_attn", use_attention=False).attention_weights(windows(1, 8))


@pytest.mark.parametrize("name,overrides", SEQUENCE_VARIANTS)
def test_window_models_never_look_ahead(name: str, overrides: dict) -> None:
    """Replacing every step after t changes no output up to t; output t = the model on x[:, :t+1]."""
    model = tiny(name, **overrides)
    x = windows(2, model.config.seq_len)
    t = model.config.seq_len // 2
    changed = x.clone()
    changed[:, t + 1 :] = torch.randn_like(changed[:, t + 1 :]) * 10
    with torch.no_grad():
        before, after = model.forward_steps(x), model.forward_steps(changed)
        prefix = model(x[:, : t + 1])
    assert torch.allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-6)
    assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :], atol=1e-3)  # the test can fail
    assert torch.allclose(before[:, t], prefix, atol=1e-5)


def test_window_model_refuses_a_wrong_input() -> None:
    model = tiny("cnn_lstm_attn")
    with pytest.raises(ValueError, match=r"\[B, T, 6\]"):
        model(torch.randn(2, 8, N_FEATURES + 1))
    with pytest.raises(ValueError, match="seq_len"):
        tiny("seq_transformer")(windows(1, 100))


# ---------------------------------------------------------------- hybrid multi-timeframe transformer


def test_mtf_every_output_shape() -> None:
    model = tiny("mtf_transformer")
    c = model.config
    out = model(
        mtf_bars(3, c.seq_len),
        order_book=torch.randn(3, c.seq_len, 100),
        indicators=torch.randn(3, 40),
        market=torch.randn(3, 30),
        position=torch.randn(3, 5),
    )
    assert shapes(out) == {
        "action_logits": (3, 3),
        "action_probs": (3, 3),
        "confidence": (3, 1),
        "next_bar": {tf: (3, 5) for tf in TIMEFRAMES},
        "price": (3, 1),
        "volatility": (3, 1),
        "trend_strength": (3, 1),
        "pivots": (3, 5),
        "trend_logits": (3, 5, 3),
        "trend_probs": (3, 5, 3),
    }
    assert torch.allclose(out["action_probs"].sum(-1), torch.ones(3))
    assert bool((out["pivots"].diff(dim=-1) >= 0).all()), "pivot levels S2 ≤ S1 ≤ P ≤ R1 ≤ R2"
    assert bool((out["volatility"] >= 0).all()) and bool((out["trend_strength"].abs() <= 1).all())


@pytest.mark.parametrize("missing", TIMEFRAMES)
def test_mtf_degraded_mode_with_each_timeframe_missing(missing: str) -> None:
    """A missing timeframe key and a per-sample presence mask give the same answer."""
    model = tiny("mtf_transformer")
    bars = mtf_bars(2, model.config.seq_len)
    without = {tf: x for tf, x in bars.items() if tf != missing}
    with torch.no_grad():
        dropped = model(without)
        masked = model(bars, present={missing: torch.tensor([False, True])})
        full = model(bars)
    assert dropped["action_probs"].shape == (2, 3) and bool(torch.isfinite(dropped["action_logits"]).all())
    assert torch.allclose(masked["action_logits"][0], dropped["action_logits"][0], atol=1e-5)
    assert torch.allclose(masked["action_logits"][1], full["action_logits"][1], atol=1e-5)
    assert not torch.allclose(full["action_logits"][0], dropped["action_logits"][0], atol=1e-4)


def test_mtf_runs_on_a_single_timeframe_and_on_the_legacy_input() -> None:
    model = tiny("mtf_transformer")
    x = mtf_bars(2, 8, ("1m",))["1m"]
    with torch.no_grad():
        legacy, one = model({"price_data": x}), model({"1m": x})
    assert torch.equal(legacy["action_logits"], one["action_logits"])


def test_mtf_with_every_timeframe_missing_is_a_clear_error() -> None:
    model = tiny("mtf_transformer")
    with pytest.raises(ValueError, match="no timeframe"):
        model({})
    bars = mtf_bars(2, 8, ("1m", "1h"))
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\]"):
        model(bars, present={"1m": torch.tensor([True, False]), "1h": torch.tensor([True, False])})


def test_mtf_refuses_bad_inputs() -> None:
    model = tiny("mtf_transformer")
    with pytest.raises(ValueError, match="unknown timeframe"):
        model({"5m": torch.randn(1, 8, 5)})
    with pytest.raises(ValueError, match="bars\\['1h'\\]"):
        model({"1m": torch.randn(1, 8, 5), "1h": torch.randn(1, 7, 5)})
    with pytest.raises(ValueError, match="indicators"):
        model({"1m": torch.randn(1, 8, 5)}, indicators=torch.randn(1, 39))
    with pytest.raises(ValueError, match="seq_len"):
        model({"1m": torch.randn(1, model.config.seq_len + 1, 5)})


def test_mtf_padding_positions_do_not_influence_the_outputs() -> None:
    model = tiny("mtf_transformer")
    T = model.config.seq_len
    bars = mtf_bars(2, T)
    padding = {tf: torch.zeros(2, T, dtype=torch.bool) for tf in TIMEFRAMES}
    padding["1d"][:, :5] = True  # short daily history: the oldest five positions are left padding
    padding["1s"][0, : T - 2] = True  # sample 0 has only two 1s bars
    order_book = torch.randn(2, T, 100)
    noisy = {tf: x.clone() for tf, x in bars.items()}
    for tf, pad in padding.items():
        noisy[tf][pad] = torch.randn(int(pad.sum()), 5) * 100
    with torch.no_grad():
        a = model(bars, padding=padding, order_book=order_book)
        b = model(noisy, padding=padding, order_book=order_book)
        unpadded = model(noisy, order_book=order_book)
    for key in ("action_logits", "pivots", "trend_logits", "confidence"):
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    assert not torch.allclose(a["action_logits"], unpadded["action_logits"], atol=1e-4)  # the test can fail
    model.train()  # masked attention in training: finite gradients everywhere (no all-masked rows)
    present = {"1m": torch.tensor([False, True])}
    mtf_loss(model(noisy, padding=padding, present=present), {"action": torch.tensor([0, 2])}).backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)


def test_mtf_loss_is_finite_and_uses_only_the_targets_present() -> None:
    model = tiny("mtf_transformer")
    out = model(mtf_bars(4, 8))
    action = torch.tensor([0, 1, 2, 1])
    base = mtf_loss(out, {"action": action})
    assert torch.isfinite(base) and torch.allclose(base, F.cross_entropy(out["action_logits"], action))
    target_1m = torch.randn(4, 5)
    with_1m = mtf_loss(out, {"action": action, "next_bar": {"1m": target_1m}})
    assert torch.allclose(with_1m, base + 0.1 * F.mse_loss(out["next_bar"]["1m"], target_1m))
    only_first = {"1m": torch.tensor([True, False, False, False])}
    masked = mtf_loss(out, {"action": action, "next_bar": {"1m": target_1m}, "next_bar_mask": only_first})
    assert torch.allclose(masked, base + 0.1 * F.mse_loss(out["next_bar"]["1m"][:1], target_1m[:1]))
    nobody = {"1m": torch.zeros(4, dtype=torch.bool)}
    unmasked = mtf_loss(out, {"action": action, "next_bar": {"1m": target_1m}, "next_bar_mask": nobody})
    assert torch.allclose(unmasked, base)


def test_mtf_loss_leaves_out_unlabelled_samples_and_takes_a_custom_action_loss() -> None:
    model = tiny("mtf_transformer")
    out = model(mtf_bars(4, 8))
    action = torch.tensor([0, -1, 2, -1])  # -1: ambiguous, no label
    labelled_ce = F.cross_entropy(out["action_logits"][[0, 2]], action[[0, 2]])
    assert torch.allclose(mtf_loss(out, {"action": action}), labelled_ce)
    half = mtf_loss(out, {"action": action}, action_loss=lambda lg, y: 0.5 * F.cross_entropy(lg, y))
    assert torch.allclose(half, 0.5 * labelled_ce)
    assert mtf_loss(out, {"action": torch.full((4,), -1)}).item() == 0.0


def test_mtf_auxiliary_heads_learn_only_when_asked() -> None:
    model = tiny("mtf_transformer")
    out = model(mtf_bars(4, 8))
    price = torch.randn(4, 1)
    price[3] = float("nan")  # no target for sample 3
    aux = {
        "action": torch.tensor([0, 1, 2, 1]),
        "price": price,
        "pivots": torch.randn(4, 5),
        "trend": {"1h": torch.tensor([0, 2, 1, 1])},
        "trend_mask": {"1h": torch.tensor([True, True, False, True])},
    }
    assert torch.allclose(mtf_loss(out, aux), mtf_loss(out, {"action": aux["action"]}))
    total = mtf_loss(out, aux, aux_weight=0.1)
    assert torch.isfinite(total) and total > mtf_loss(out, aux)
    total.backward()
    assert model.pivot_head.weight.grad is not None and model.market_head.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- training signal and configs


def _fit(model: torch.nn.Module, loss_fn, steps: int = 60) -> tuple[float, float]:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], min(losses[-5:])


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_window_model_overfits_a_tiny_batch(name: str) -> None:
    model = tiny(name, dropout=0.0)
    x, y = windows(16, 12), torch.arange(16) % 3
    first, last = _fit(model, lambda: torch.nn.functional.cross_entropy(model(x), y))
    assert last < 0.5 * first


def test_mtf_overfits_a_tiny_batch() -> None:
    model = tiny("mtf_transformer", dropout=0.0)
    bars, y = mtf_bars(12, 8, ("1m", "1h", "btc_1m")), torch.arange(12) % 3
    next_1m = torch.randn(12, 5)
    first, last = _fit(model, lambda: mtf_loss(model(bars), {"action": y, "next_bar": {"1m": next_1m}}))
    assert last < 0.5 * first


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_config_round_trip_rebuilds_the_same_model(name: str) -> None:
    model = tiny(name)
    cfg = model.config
    again = type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    rebuilt = registry.build(name, again.to_dict())
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())  # strict: identical keys and shapes


@pytest.mark.parametrize("name", list(registry.MODELS))
def test_every_preset_builds_its_model(name: str) -> None:
    cls = registry.config_class(name)
    for preset in ("tiny", "small", "seed"):
        cfg = cls.preset(preset)
        with torch.device("meta"):  # shapes only: the seed sizes cost no memory here
            model = registry.build(name, cfg.to_dict())
        assert model.config == cfg and sum(p.numel() for p in model.parameters()) > 0


def test_configs_refuse_unknown_keys_wrong_types_and_impossible_values() -> None:
    cls = registry.config_class("mtf_transformer")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['d_modle'\]"):
        cls.from_dict({"d_modle": 64})
    with pytest.raises(ValueError, match="MTFConfig.n_head"):
        cls.from_dict({"n_head": "4"})
    with pytest.raises(ValueError, match="divisible"):
        cls.preset("tiny", n_head=3)
    with pytest.raises(ValueError, match="encoder_hidden: needs positive sizes"):
        cls.preset("tiny", encoder_hidden=())
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        cls.preset("huge")
    with pytest.raises(ValueError, match="task"):
        registry.make_config("stacked_lstm", {"task": "ranking"})
    with pytest.raises(ValueError, match="unknown model 'gpt'"):
        registry.build("gpt")


def test_the_registry_imports_no_torch_until_a_model_is_resolved() -> None:
    code = "import sys, models.registry as r; assert 'torch' not in sys.modules; r.config_class('stacked_lstm')"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_registry_resolves_every_name_to_its_classes() -> None:
    for name in registry.MODELS:
        model = tiny(name)
        assert isinstance(model, registry.model_class(name))
        assert isinstance(model, SequenceModel) == (name in SEQUENCE_MODELS)
    assert registry.model_class("mtf_transformer") is MTFTransformer


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_the_benchmarks_flop_formula_matches_torchs_count(preset: str) -> None:
    from bench.models import counted_flops, mtf_flops  # the figure `python -m bench models` reports for `seed`

    cfg = registry.config_class("mtf_transformer").preset(preset)
    assert mtf_flops(cfg) == pytest.approx(counted_flops(cfg), rel=0.01)
