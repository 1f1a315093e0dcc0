"""Hybrid serial-parallel multi-timeframe transformer (seeds/hybrid_multi_timeframe_transformer.md).

    bars[tf] [B, T, 5] for tf in 1s, 1m, 1h, 1d, btc_1m (any subset; absent = masked)
      ─ shared pattern encoder, the same MLP on every bar (5 → 256 → 512 → d)      SERIAL
      + timeframe embedding Embedding(5, d) + age embedding Embedding(seq_len, d)
      ─ cross-timeframe encoder layers over all bars of all timeframes [B, 5·T, d]  PARALLEL
      ─ fuse timeframes per age (masked mean) [B, T, d] (+ order-book projection)
      ─ main encoder stack over [summary token; T positions] (+ extras in the summary token)
      ─ heads on the summary token

Inputs (all normalized by the pipeline, float32, oldest bar first, newest bar last):
  bars: {"1s"|"1m"|"1h"|"1d"|"btc_1m": [B, T, 5]}; the legacy key "price_data" means "1m".
    Every timeframe given in one call has the same T ≤ seq_len. A bar's 5 features depend only
    on that bar and its predecessor (e.g. log(o/c₋₁), log(h/c₋₁), log(l/c₋₁), log(c/c₋₁),
    log1p(v) − log1p(v₋₁)), so `encode_bars` of an old bar never changes and can be cached.
    Scale each feature to O(1) (e.g. divide by its train-split standard deviation): raw
    log-ratios of ~1e-3 would vanish beside the encoder's biases.
  present: {tf: [B] bool}, False = that timeframe is missing for that sample (default True).
  padding: {tf: [B, T] bool}, True = no bar at that position (short history, left padding).
  order_book [B, T, 100] aligned with the age positions (age 0 = newest trigger bar);
  indicators [B, 40]; market [B, 30]; position [B, 5]. Every extra is optional: an absent one
  adds nothing. Position: which values is the pipeline's choice (zeros = no position).
  Degraded mode: any subset of timeframes may be absent or masked; a sample with no bar in any
  timeframe raises ValueError.

Positions: a learned *age* embedding, age = T-1-i for position i (0 = the newest bar of that
timeframe), so the newest bar always carries the same position whatever the window length.

Outputs (dict; B = batch). Targets are defined at the decision time t = close of the newest
trigger (1m) bar; H = the action horizon in trigger bars, the same labels as cnn_lstm_attn;
c_t = close of that bar; r_i = log(c_{t+i} / c_{t+i-1}):
  action_logits, action_probs [B, 3]: 0 SHORT, 1 FLAT, 2 LONG (the pipeline's action labels).
  confidence [B, 1] in (0, 1): estimate of P(argmax action == true action); its target is
    computed by `mtf_loss` itself from the action labels.
  next_bar {tf: [B, 5]} for all five timeframes ("btc_1m" is BTC's next 1m bar): the
    normalized features of the next bar of that timeframe (the one after the window's newest
    bar), with the very normalization of the inputs (relative to the newest input bar).
  price [B, 1]: forward log return log(c_{t+H} / c_t).
  volatility [B, 1] ≥ 0: realized volatility sqrt(mean_{i=1..H} r_i²).
  trend_strength [B, 1] in [-1, 1]: log(c_{t+H}/c_t) / Σ_{i=1..H} |r_i| (0 when the sum is 0).
  pivots [B, 5], ascending: floor pivots (S2, S1, P, R1, R2) of the next H trigger bars as log
    levels relative to c_t. With Hh = max high, Ll = min low over bars t+1..t+H and Cc = c_{t+H}:
    P = (Hh+Ll+Cc)/3, S1 = 2P−Hh, R1 = 2P−Ll, S2 = P−(Hh−Ll), R2 = P+(Hh−Ll); target = log(level/c_t).
  trend_logits, trend_probs [B, 5, 3] (timeframes in TIMEFRAMES order): direction of the next
    bar of each timeframe, ρ = log(close_next / close_newest): 0 down (ρ < −τ_tf), 2 up (ρ > τ_tf),
    1 flat otherwise, τ_tf = the train split's median |ρ| for that timeframe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from models.base import ModelConfig
from models.family import Family
from models.layers import Block

TIMEFRAMES = ("1s", "1m", "1h", "1d", "btc_1m")  # index = timeframe embedding id
LEGACY_KEY = "price_data"  # the seed's single-timeframe input: 1m
BAR_FEATURES = 5
N_ACTIONS = 3
Outputs = Mapping[str, torch.Tensor | dict[str, torch.Tensor]]  # what forward returns; also the targets


@dataclasses.dataclass(frozen=True)
class MTFConfig(ModelConfig):
    """Sizes of the hybrid transformer; `seed` is the seed's GPU size, `small` runs per bar on a CPU."""

    seq_len: int = 600  # bars per timeframe (the longest window accepted)
    encoder_hidden: tuple[int, ...] = (256, 512)  # shared pattern encoder: 5 → 256 → 512 → d_model
    d_model: int = 1024
    n_head: int = 16
    d_ff: int = 4096
    n_cross: int = 2  # cross-timeframe layers over [B, 5·T, d]
    n_layer: int = 12  # main stack over [B, 1+T, d] (the seed's "12 layers × (600 × 600)")
    dropout: float = 0.1
    attn_dropout: float = 0.1  # on the attention weights; 0 lets CPUs train on the fused (flash) kernel
    order_book_features: int = 100
    indicator_features: int = 40
    market_features: int = 30
    position_features: int = 5
    # The window keys the timeframe embedding knows, in slot order: the 1m layout by default;
    # a 1h/4h/1d-trigger model names its own inputs (e.g. 1h, 1d, btc_1h).
    timeframes: tuple[str, ...] = TIMEFRAMES

    PRESETS = {
        "tiny": dict(seq_len=12, encoder_hidden=(16, 16), d_model=16, n_head=2, d_ff=32, n_cross=1, n_layer=1, attn_dropout=0.0),
        # ~0.08 GFLOP per sample (bench/models.py): a few ms per bar on 2 CPU cores, and cheap
        # enough to train on a CPU. The encoder is ~10% of it, so caching per-bar encodings
        # (possible: `encode_bars` depends on one bar only) would save little; not done.
        # attn_dropout 0: CPU training runs ~3x faster (bench/models.py) on the fused kernel.
        "small": dict(
            seq_len=48, encoder_hidden=(64, 128), d_model=64, n_head=4, d_ff=128, n_cross=2, n_layer=2, attn_dropout=0.0
        ),
        "seed": dict(),
    }

    def check(self) -> None:
        """Validate sizes; d_model must split evenly over the heads."""
        self.require_positive("seq_len", "encoder_hidden", "d_model", "n_head", "d_ff", "n_cross", "n_layer")
        self.require(self.d_model % self.n_head == 0, "d_model", f"must be divisible by n_head={self.n_head}")
        self.require(
            len(self.timeframes) > 0 and len(set(self.timeframes)) == len(self.timeframes),
            "timeframes",
            "must be distinct, at least one",
        )
        for key in ("dropout", "attn_dropout"):
            self.require(0.0 <= getattr(self, key) < 1.0, key, "must be in [0, 1)")


class PatternEncoder(nn.Sequential):
    """The shared MLP applied to every bar: 5 → hidden… → d_model (LayerNorm, GELU, dropout between)."""

    def __init__(self, hidden: tuple[int, ...], d_model: int, dropout: float) -> None:
        layers: list[nn.Module] = []
        for i, o in zip((BAR_FEATURES, *hidden), hidden):
            layers += [nn.Linear(i, o), nn.LayerNorm(o), nn.GELU(), nn.Dropout(dropout)]
        super().__init__(*layers, nn.Linear(hidden[-1], d_model))


class MTFTransformer(nn.Module):
    """The hybrid multi-timeframe transformer: bars of up to five timeframes in, all heads out."""

    def __init__(self, config: MTFConfig) -> None:
        super().__init__()
        c = self.config = config
        self.encoder = PatternEncoder(c.encoder_hidden, c.d_model, c.dropout)
        self.tf_emb = nn.Embedding(len(c.timeframes), c.d_model)
        self.age_emb = nn.Embedding(c.seq_len, c.d_model)
        self.drop = nn.Dropout(c.dropout)

        def block() -> Block:
            return Block(c.d_model, c.n_head, c.d_ff, c.dropout, c.attn_dropout)

        self.cross = nn.ModuleList(block() for _ in range(c.n_cross))
        self.main = nn.ModuleList(block() for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.summary = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.order_book_proj = nn.Linear(c.order_book_features, c.d_model)
        self.extra_proj = nn.ModuleDict(
            {
                "indicators": nn.Linear(c.indicator_features, c.d_model),
                "market": nn.Linear(c.market_features, c.d_model),
                "position": nn.Linear(c.position_features, c.d_model),
            }
        )
        self.action_head = nn.Linear(c.d_model, N_ACTIONS + 1)  # 3 logits + confidence
        self.timeframe_head = nn.Linear(c.d_model, BAR_FEATURES + 3)  # per timeframe: next bar + trend
        self.market_head = nn.Linear(c.d_model, 3)  # price, volatility, trend strength
        self.pivot_head = nn.Linear(c.d_model, 5)
        nn.init.normal_(self.summary, std=0.02)

    def encode_bars(self, x: torch.Tensor) -> torch.Tensor:
        """Shared pattern encoding of bars [..., 5] → [..., d_model]; depends on each bar alone."""
        return self.encoder(x)

    def forward(
        self,
        bars: Mapping[str, torch.Tensor],
        *,
        present: Mapping[str, torch.Tensor] | None = None,
        padding: Mapping[str, torch.Tensor] | None = None,
        order_book: torch.Tensor | None = None,
        indicators: torch.Tensor | None = None,
        market: torch.Tensor | None = None,
        position: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Bars of any subset of TIMEFRAMES (see the module docstring) → every head's output."""
        h, keep = self.trunk(bars, present, padding, order_book, indicators, market, position)
        for block in self.main:
            h = block(h, keep)
        return self.heads(self.ln_f(h[:, 0]))  # (B, d) → heads

    def trunk(
        self,
        bars: Mapping[str, torch.Tensor],
        present: Mapping[str, torch.Tensor] | None,
        padding: Mapping[str, torch.Tensor] | None,
        order_book: torch.Tensor | None = None,
        indicators: torch.Tensor | None = None,
        market: torch.Tensor | None = None,
        position: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Everything before the main stack → its input [B, 1+T, d] and key mask [B, 1+T] (or None)."""
        names, x, valid = self.stack_inputs(bars, present or {}, padding or {})  # (B, K, T, 5), (B, K, T)
        B, K, T, _ = x.shape
        ids = torch.tensor([self.config.timeframes.index(n) for n in names], device=x.device)
        h = self.encode_bars(x)  # (B, K, T, d): SERIAL, one MLP for every bar
        h = h + self.tf_emb(ids)[None, :, None] + self.age_emb.weight[:T].flip(0)  # age 0 = newest bar
        h = self.drop(h).reshape(B, K * T, -1)  # (B, K·T, d)
        keep = _unless_all(valid.reshape(B, K * T))  # (B, K·T) or None when nothing is masked
        for block in self.cross:
            h = block(h, keep)  # PARALLEL: every bar attends to every bar of every timeframe
        h, pos_valid = fuse_timeframes(h.reshape(B, K, T, -1), valid)  # (B, T, d), (B, T)
        if order_book is not None:
            h = h + self.order_book_proj(_checked(order_book, (B, T, self.config.order_book_features), "order_book"))
        s = self.summary.expand(B, 1, -1) + self.extras(B, indicators=indicators, market=market, position=position)
        h = torch.cat([s, h], dim=1)  # (B, 1+T, d): the summary token reads the whole window
        return h, _unless_all(torch.cat([pos_valid.new_ones(B, 1), pos_valid], dim=1))  # (B, 1+T)

    def attention_weights(
        self, bars: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The summary token's attention over the window's ages in the last main layer [B, T]
        (oldest first; mean over heads): which bars the action head read."""
        h, keep = self.trunk(bars, present, None)
        for block in self.main[:-1]:
            h = block(h, keep)
        last = self.main[-1]
        B, L, d = h.shape
        q, k, _ = last.qkv(last.ln_1(h)).view(B, L, 3, last.n_head, d // last.n_head).permute(2, 0, 3, 1, 4)
        att = (q[:, :, :1] @ k.transpose(-2, -1)) / (d // last.n_head) ** 0.5  # (B, nh, 1, 1+T)
        if keep is not None:
            att = att.masked_fill(~keep[:, None, None, :], float("-inf"))
        return torch.softmax(att, dim=-1).mean(1)[:, 0, 1:]  # (B, T): drop the summary token itself

    def stack_inputs(
        self, bars: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor], padding: Mapping[str, torch.Tensor]
    ) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """Validate the inputs; → timeframe names, bars [B, K, T, 5], valid [B, K, T] (True = a real bar)."""
        bars = canonical_bars(bars, self.config.timeframes)
        for what, m in (("present", present), ("padding", padding)):
            if unknown := sorted(set(m) - set(bars)):
                raise ValueError(f"MTFTransformer: {what} mask for timeframe(s) {unknown} not given in bars")
        names = [tf for tf in self.config.timeframes if tf in bars]
        first = bars[names[0]]
        B, T = first.shape[0], first.shape[1]
        if T > self.config.seq_len:
            raise ValueError(f"MTFTransformer: {T} bars per timeframe exceed seq_len={self.config.seq_len}")
        x = torch.stack([_checked(bars[n], (B, T, BAR_FEATURES), f"bars[{n!r}]") for n in names], dim=1)
        valid = torch.ones(B, len(names), T, dtype=torch.bool, device=x.device)
        for k, n in enumerate(names):
            if n in padding:
                valid[:, k] &= ~_checked(padding[n], (B, T), f"padding[{n!r}]").bool()
            if n in present:
                valid[:, k] &= _checked(present[n], (B,), f"present[{n!r}]").bool()[:, None]
        if not bool(valid.flatten(1).any(1).all()):
            empty = (~valid.flatten(1).any(1)).nonzero().flatten().tolist()
            raise ValueError(f"MTFTransformer: sample(s) {empty} have no bar in any timeframe (all masked)")
        return names, x, valid

    def extras(self, B: int, **extras: torch.Tensor | None) -> torch.Tensor:
        """Sum of the projections of the extras given → [B, 1, d] (zeros when none is given)."""
        total = self.summary.new_zeros(B, 1, self.config.d_model)
        for name, value in extras.items():
            if value is not None:
                proj = self.extra_proj[name]
                total = total + proj(_checked(value, (B, proj.in_features), name))[:, None]
        return total

    def heads(self, h: torch.Tensor) -> dict[str, torch.Tensor | dict[str, torch.Tensor]]:
        """Summary vector [B, d] → every output (definitions in the module docstring)."""
        a = self.action_head(h)  # (B, 4)
        logits, confidence = a[:, :N_ACTIONS], torch.sigmoid(a[:, N_ACTIONS:])
        per_tf = self.timeframe_head(h[:, None] + self.tf_emb.weight)  # (B, 5, 8): one head, told the timeframe
        next_bar, trend_logits = per_tf.split([BAR_FEATURES, 3], dim=-1)
        price, vol, strength = self.market_head(h).split(1, dim=-1)  # 3 × (B, 1)
        return {
            "action_logits": logits,
            "action_probs": torch.softmax(logits, dim=-1),
            "confidence": confidence,
            "next_bar": {tf: next_bar[:, k] for k, tf in enumerate(self.config.timeframes)},
            "price": price,
            "volatility": F.softplus(vol),
            "trend_strength": torch.tanh(strength),
            "pivots": ascending_levels(self.pivot_head(h)),
            "trend_logits": trend_logits,
            "trend_probs": torch.softmax(trend_logits, dim=-1),
        }


def fuse_timeframes(h: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked mean over timeframes at each age: h [B, K, T, d], valid [B, K, T] → [B, T, d], [B, T]."""
    w = valid.unsqueeze(-1).to(h.dtype)  # (B, K, T, 1)
    fused = (h * w).sum(1) / w.sum(1).clamp(min=1.0)  # padded bars weigh exactly 0
    return fused, valid.any(1)


def ascending_levels(raw: torch.Tensor) -> torch.Tensor:
    """[B, 5] raw → [B, 5] levels S2 ≤ S1 ≤ P ≤ R1 ≤ R2: P plus cumulative positive gaps."""
    p, gaps = raw[:, 2:3], F.softplus(raw[:, [1, 0, 3, 4]])  # (B, 1), (B, 4)
    s1, s2 = p - gaps[:, 0:1], p - gaps[:, 0:1] - gaps[:, 1:2]
    r1, r2 = p + gaps[:, 2:3], p + gaps[:, 2:3] + gaps[:, 3:4]
    return torch.cat([s2, s1, p, r1, r2], dim=1)


def canonical_bars(bars: Mapping[str, torch.Tensor], timeframes: tuple[str, ...] = TIMEFRAMES) -> dict[str, torch.Tensor]:
    """Map the legacy "price_data" key to "1m"; refuse keys not in `timeframes` and an empty input."""
    out = dict(bars)
    if LEGACY_KEY in out:
        if "1m" in out:
            raise ValueError(f"MTFTransformer: give either {LEGACY_KEY!r} (legacy 1m) or '1m', not both")
        out["1m"] = out.pop(LEGACY_KEY)
    if unknown := sorted(set(out) - set(timeframes)):
        known = [*timeframes, LEGACY_KEY]
        raise ValueError(f"MTFTransformer: unknown timeframe key(s) {unknown}; known: {known}")
    if not out:
        raise ValueError(f"MTFTransformer: no timeframe given; pass at least one of {list(timeframes)}")
    return out


def _unless_all(keep: torch.Tensor) -> torch.Tensor | None:
    """None when every token is kept: attention then runs unmasked (the faster kernels)."""
    return None if bool(keep.all()) else keep


def _checked(t: torch.Tensor, shape: tuple[int, ...], what: str) -> torch.Tensor:
    if tuple(t.shape) != shape:
        raise ValueError(f"MTFTransformer: {what} must have shape {list(shape)}, got {list(t.shape)}")
    return t


ActionLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def mtf_loss(out: Outputs, targets: Outputs, *, aux_weight: float = 0.0, action_loss: ActionLoss | None = None) -> torch.Tensor:
    """Action loss + 0.1 × mean MSE over the next-bar targets present (+ aux_weight × aux heads).

    targets (definitions in the module docstring; every term but the action is optional):
      "action" [B] long; a label < 0 (ambiguous / unknown) is left out of every action term.
      "next_bar" {tf: [B, 5]} with optional "next_bar_mask" {tf: [B] bool} (False = no target).
      "price", "volatility", "trend_strength" [B, 1] and "pivots" [B, 5]: MSE, NaN rows left out.
      "trend" {tf: [B] long} with optional "trend_mask" {tf: [B] bool}: cross-entropy.
    The confidence head's target (is the action argmax right?) comes from the action labels.
    action_loss(logits [N, 3], labels [N]) defaults to cross-entropy; training passes focal loss.
    All terms are computed in float32, also under autocast.
    """
    logits, y = out["action_logits"].float(), targets["action"]
    labelled = y >= 0
    if bool(labelled.any()):
        loss = (action_loss or F.cross_entropy)(logits[labelled], y[labelled])
    else:
        loss = logits.sum() * 0.0  # nothing labelled in this batch: zero, but keep the graph
    bars = _present_terms(out["next_bar"], targets.get("next_bar", {}), targets.get("next_bar_mask", {}), F.mse_loss)
    if bars:
        loss = loss + 0.1 * torch.stack(bars).mean()
    if aux_weight > 0:
        aux = _aux_terms(out, targets, logits, labelled)
        if aux:
            loss = loss + aux_weight * torch.stack(aux).mean()
    return loss


def _present_terms(
    pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], mask: Mapping[str, torch.Tensor], fn: ActionLoss
) -> list[torch.Tensor]:
    """fn(pred[tf], target[tf]) over the samples whose mask is True, for every tf with one."""
    terms = []
    for tf, t in target.items():
        m = mask.get(tf)
        if m is None:
            terms.append(fn(pred[tf].float(), t))
        elif bool(m.any()):
            terms.append(fn(pred[tf][m].float(), t[m]))
    return terms


def _aux_terms(out: Outputs, targets: Outputs, logits: torch.Tensor, labelled: torch.Tensor) -> list[torch.Tensor]:
    terms = []
    if bool(labelled.any()):  # confidence: is the argmax of the action logits right?
        right = (logits.detach().argmax(-1) == targets["action"]).float()[labelled, None]
        terms.append(F.binary_cross_entropy(out["confidence"].float()[labelled], right))
    for key in ("price", "volatility", "trend_strength", "pivots"):
        if key in targets:
            ok = torch.isfinite(targets[key]).all(-1)  # (B,)
            if bool(ok.any()):
                terms.append(F.mse_loss(out[key].float()[ok], targets[key][ok]))
    trend_logits = {tf: out["trend_logits"][:, k] for k, tf in enumerate(out["next_bar"])}  # tf → [B, 3], slot order
    terms += _present_terms(trend_logits, targets.get("trend", {}), targets.get("trend_mask", {}), F.cross_entropy)
    return terms


# The IO lives beside the network (models/mtf_io.py: it imports mtf_loss from here).
FAMILY = Family("mtf_transformer", MTFTransformer, MTFConfig, "models.mtf_io:MTFIO")
