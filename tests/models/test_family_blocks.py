"""The new families' defining blocks do what their papers say (beside the shared window tests)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models import registry
from models.informer import Distill, ProbSparseAttention
from models.tcn import TCNConfig


def _tiny(name: str, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return registry.build(name, {"n_features": 5, "dropout": 0.0, **overrides}, preset="tiny").eval()


def test_probsparse_lazy_queries_take_the_mean_of_the_values_they_may_see() -> None:
    torch.manual_seed(0)
    attn = ProbSparseAttention(8, 1, factor=1, dropout=0.0).eval()
    x = torch.randn(1, 12, 8)
    with torch.no_grad():
        q, k, v = attn.qkv(x).view(1, 12, 3, 1, 8).permute(2, 0, 3, 1, 4)
        future = torch.ones(12, 12, dtype=torch.bool).triu(1)
        full = torch.softmax((q @ k.transpose(-2, -1) / 8**0.5).masked_fill(future, float("-inf")), -1) @ v
        lazy = v.cumsum(-2) / torch.arange(1, 13)[:, None]
        y = attn(x)
    rows = [bool(torch.allclose(attn.proj(full[0, 0, i]), y[0, i], atol=1e-5)) for i in range(12)]
    means = [bool(torch.allclose(attn.proj(lazy[0, 0, i]), y[0, i], atol=1e-5)) for i in range(12)]
    u = 1 * 3  # factor x ceil(ln 13)
    assert sum(rows) >= u and sum(means) >= 12 - u  # u queries attend, the rest are lazy
    assert all(a or b for a, b in zip(rows, means))


def test_informer_distilling_halves_the_length_keeping_the_newest_step() -> None:
    torch.manual_seed(0)
    d = Distill(4).eval()
    for length in (7, 8):
        x = torch.randn(2, length, 4)
        with torch.no_grad():
            y = d(x)
            changed = x.clone()
            changed[:, :-5] = 50.0  # conv over 3 then max over 3: the newest five steps feed the newest output
            newest = d(changed)[:, -1]
        assert y.shape == (2, (length + 1) // 2, 4) and torch.allclose(y[:, -1], newest, atol=1e-5)


def test_tcn_sees_exactly_its_receptive_field() -> None:
    model = _tiny("tcn")
    rf = model.config.receptive_field
    assert rf == TCNConfig.preset("tiny").receptive_field == 1 + 2 * 1 * (1 + 2)
    x = torch.randn(1, 16, 5)
    old = x.clone()
    old[:, : 16 - rf] = 100.0  # older than the receptive field of the newest step
    older = x.clone()
    older[:, 16 - rf] = 100.0  # the oldest step it does see
    with torch.no_grad():
        assert torch.allclose(model(x), model(old), atol=1e-6)
        assert not torch.allclose(model(x), model(older), atol=1e-4)


def test_tft_variable_selection_is_a_distribution_and_attention_averages_heads() -> None:
    model = _tiny("tft")
    x = torch.randn(3, 10, 5)
    with torch.no_grad():
        w = model.variable_weights(x)
        a = model.attention_weights(x)
    assert w.shape == (3, 5) and torch.allclose(w.sum(-1), torch.ones(3), atol=1e-5)
    assert a.shape == (3, 10) and torch.allclose(a.sum(-1), torch.ones(3), atol=1e-5)


def test_seq2seq_decoder_reattends_with_each_step() -> None:
    one, three = _tiny("seq2seq_attention", decode_steps=1), _tiny("seq2seq_attention", decode_steps=3)
    three.load_state_dict(one.state_dict())  # same weights: only the number of decoder steps differs
    x = torch.randn(2, 12, 5)
    with torch.no_grad():
        assert not torch.allclose(one(x), three(x), atol=1e-4)
        assert torch.allclose(three.attention_weights(x).sum(-1), torch.ones(2), atol=1e-5)


def test_cnn_lstm_pool_is_causal_max() -> None:
    x = torch.tensor([[[1.0, 5.0, 2.0, 0.0]]])
    pooled = F.max_pool1d(F.pad(x, (1, 0), value=float("-inf")), 2, stride=1)
    assert pooled.tolist() == [[[1.0, 5.0, 5.0, 2.0]]]  # the rule cnn_lstm.py applies: max of t-1..t
