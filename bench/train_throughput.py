"""Training throughput (samples/s) of the small models through the real pipeline step.

`python -m bench train [--steps N] [--device cpu|cuda]`: builds samples from a synthetic random
walk (indicator or bar features, scaled, gathered per batch exactly as in training), then times
optimizer steps (forward, loss, backward, clip, AdamW) at the batch size the pipeline picks.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from models import registry
from models.datasets import TRAIN, assemble, build_symbol_samples
from models.fit import choose_batch_size, pick_device
from models.targets import TargetSpec

MODELS = tuple(registry.FAMILIES)


def _bars(n: int, step_ms: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    close = 3000.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[3000.0], close[:-1]])
    hi, lo = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    ts = 1_722_470_400_000 - (n - 1) * step_ms + step_ms * np.arange(n)
    return np.stack([ts, open_, hi, lo, close, rng.gamma(2.0, 50.0, n)], axis=1)


def _setup(name: str, preset: str, device: torch.device) -> tuple[Any, Any, torch.nn.Module, int]:
    family = registry.family(name)
    adapter = family.make_io()
    base = family.make_config(adapter.config_overrides_base(), preset)
    series = {
        "1m": _bars(6000, 60_000, 0),
        "1h": _bars(2000, 3_600_000, 1),
        "1d": _bars(700, 86_400_000, 2),
        "btc_1m": _bars(6000, 60_000, 3),
    }
    keys = tuple(k for k in adapter.window_keys if k in series)
    spec = adapter.feature_spec(base.seq_len, len(series["1m"]), keys, lambda s: None)
    samples = build_symbol_samples("ETH/USDT", series, spec, TargetSpec(), aux_targets=adapter.aux_targets)
    ss = assemble([(samples, series)], spec)
    adapter.prepare(ss)
    config = family.make_config({**base.to_dict(), **adapter.config_overrides(ss.spec)})
    model = family.model(config).to(device).train()
    floats = ss.spec.seq_len * len(ss.spec.feature_names) * len(ss.spec.inputs)
    bs = choose_batch_size(device, floats, cnn=bool(getattr(config, "use_cnn", False)))
    return adapter, ss, model, bs


def measure(name: str, preset: str, device: torch.device, steps: int) -> dict[str, float]:
    """Mean samples/s over `steps` optimizer steps after one warm-up step."""
    adapter, ss, model, bs = _setup(name, preset, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    idx = ss.indices(TRAIN)
    rng = np.random.default_rng(0)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        batch = adapter.batch(ss, rng.choice(idx, size=bs, replace=False), device)
        loss, _, _ = adapter.step(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return {"batch": bs, "ms_per_step": 1000 * float(np.mean(times)), "samples_per_s": bs / float(np.mean(times))}


def main(argv: list[str]) -> int:
    """Print the throughput table."""
    ap = argparse.ArgumentParser(prog="python -m bench train")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="small")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    print(f"training throughput, preset {args.preset}, device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'model':<18}{'batch':>7}{'ms/step':>10}{'samples/s':>11}")
    for name in MODELS:
        r = measure(name, args.preset, device, args.steps)
        print(f"{name:<18}{r['batch']:>7}{r['ms_per_step']:>10.1f}{r['samples_per_s']:>11.0f}")
    return 0
