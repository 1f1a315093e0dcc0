"""`python -m bench models [--device cpu|cuda] [--preset small|seed] [--families NAME ...]`.

Every registered family (models/registry.py) in one table: parameters, forward FLOPs per sample
(torch's FLOP counter with attention on the math kernel, plus the LSTM/GRU layers it does not
count), inference p50 at batch 1 and at batch 64 and training samples/s (forward + loss +
backward + AdamW step, batch 64). Then the two served models' batch-1 latency each and together
(p50/p99; target both `small` ≤ 20 ms p99 on a CPU), the shipped artifacts through
pipeline.predictor, and the hybrid's analytic FLOPs. On CPU torch.set_num_threads is pinned to
each of --threads (default 2, then 1: on a busy 2-core machine one thread is steadier). With
--device cuda (preset `seed`) every family runs under bf16 autocast with attention on SDPA, and
the hybrid's time is compared with its FLOPs at the measured bf16 matmul rate.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from daemon.domain import TIMEFRAME_MS
from models import registry
from models.mtf_transformer import TIMEFRAMES, MTFConfig

MAIN_MODELS = ("mtf_transformer", "cnn_lstm_attn")


def mtf_flops(c: MTFConfig, steps: int | None = None, timeframes: int = len(TIMEFRAMES)) -> int:
    """Forward FLOPs (2 per multiply-add) of one sample: matmuls and attention, norms ignored."""
    T = steps or c.seq_len
    d, sizes = c.d_model, (5, *c.encoder_hidden, c.d_model)
    encoder = timeframes * T * sum(2 * i * o for i, o in zip(sizes, sizes[1:]))

    def layers(n_layers: int, tokens: int) -> int:  # QKV + out projections, feed-forward, QKᵀ and AV
        return n_layers * (tokens * (8 * d * d + 4 * d * c.d_ff) + 4 * tokens * tokens * d)

    return encoder + layers(c.n_cross, timeframes * T) + layers(c.n_layer, T + 1)


def counted_flops(c: MTFConfig) -> int:
    """torch's own FLOP count of one MTF forward pass (checks `mtf_flops`; run it on small sizes)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = registry.model_class("mtf_transformer")(c)
    bars = {tf: torch.randn(1, c.seq_len, 5) for tf in TIMEFRAMES}
    # the math backend: attention as plain matmuls, which the counter sees (the CPU flash kernel it skips)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(bars)
    return counter.get_total_flops()


def inputs(name: str, model: torch.nn.Module, batch: int, device: str) -> Callable[[], object]:
    """A closure running `model` on a random batch of the model's full window (its family's IO)."""
    io = registry.family(name).make_io()
    b = io.example(model.config, batch, torch.device(device), torch.Generator().manual_seed(0))
    return lambda: io.forward(model, b)


def build(name: str, preset: str, device: str, features: int, train: bool = False) -> torch.nn.Module:
    """A fresh model of family `name`; window families get `features` inputs per step."""
    fam = registry.family(name)
    extra = {"n_features": features} if "n_features" in fam.config.__dataclass_fields__ else {}
    model = fam.build(extra, preset=preset).to(device)
    return model.train() if train else model.eval()


def percentiles(fn: Callable[[], object], iters: int, device: str, warmup: int = 5) -> tuple[float, float]:
    """p50 and p99 wall time of fn() in ms, after warm-up; synchronizes a GPU around each call."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(max(warmup, iters // 10)):
        fn()
    times = []
    for _ in range(iters):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def amp(device: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on a GPU (how the seed sizes should serve and train); fp32 otherwise."""
    if device == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def latency_rows(preset: str, device: str, iters: int, features: int) -> list[tuple[str, float, float]]:
    """Batch-1 inference latency of each served model and of both in a row."""
    runs = {}
    for name in MAIN_MODELS:
        run = inputs(name, build(name, preset, device, features), 1, device)
        runs[name] = lambda run=run: _under(amp(device), run)
    rows = []
    with torch.inference_mode():
        for name, fn in runs.items():
            rows.append((f"{name} ({preset})", *percentiles(fn, iters, device)))
        both = lambda: [fn() for fn in runs.values()]  # noqa: E731 - the per-bar work of the daemon
        rows.append((f"both together ({preset})", *percentiles(both, iters, device)))
    return rows


def _under(ctx: contextlib.AbstractContextManager[object], fn: Callable[[], object]) -> object:
    with ctx:
        return fn()


def train_rate(name: str, preset: str, device: str, batch: int, features: int, steps: int) -> float:
    """Training samples/s of one forward + loss + backward + AdamW step (the family's own loss)."""
    model = build(name, preset, device, features, train=True)
    io = registry.family(name).make_io()
    b = io.example(model.config, batch, torch.device(device), torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with amp(device):
            loss, _, _ = io.step(model, b)
        loss.backward()
        opt.step()

    p50, _ = percentiles(step, steps, device, warmup=2)
    return batch / (p50 / 1e3)


def rnn_flops(model: torch.nn.Module, run: Callable[[], object]) -> int:
    """FLOPs of the nn.LSTM / nn.GRU layers in one run (torch's counter sees none of them)."""
    total = [0]

    def hook(mod: torch.nn.RNNBase, args: tuple, _out: object) -> None:
        x = args[0]
        steps = x.shape[0] * x.shape[1]  # batch_first: (B, T, F)
        gates = {"LSTM": 4, "GRU": 3}.get(mod.mode, 1)
        n_in = mod.input_size
        for _ in range(mod.num_layers):
            total[0] += 2 * steps * gates * mod.hidden_size * (n_in + mod.hidden_size)
            n_in = mod.hidden_size

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.RNNBase)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return total[0]


def forward_flops(name: str, model: torch.nn.Module) -> int:
    """Forward FLOPs of one sample: torch's count (attention on the math kernel) + recurrent layers."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    run = inputs(name, model, 1, str(next(model.parameters()).device))
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        run()
    with torch.inference_mode():
        return counter.get_total_flops() + rnn_flops(model, run)


def family_row(name: str, preset: str, device: str, iters: int, batch: int, features: int, steps: int) -> str:
    """One line of the family table (or the error that kept a family from running)."""
    try:
        model = build(name, preset, device, features)
        params = sum(p.numel() for p in model.parameters())
        flops = forward_flops(name, model)
        with torch.inference_mode():
            one = percentiles(lambda r=inputs(name, model, 1, device): _under(amp(device), r), iters, device)[0]
            many = percentiles(lambda r=inputs(name, model, batch, device): _under(amp(device), r), max(iters // 5, 5), device)[0]
        rate = train_rate(name, preset, device, batch, features, steps)
    except Exception as e:
        return f"{name:<20} {type(e).__name__}: {e}"
    return (
        f"{name:<20} {params / 1e3:>9.1f}k {flops / 1e6:>10.2f}M {one:>9.2f} {many:>10.2f} "
        f"{many / batch * 1e3:>9.1f} {rate:>10.0f}"
    )


def print_families(names: list[str], preset: str, device: str, iters: int, batch: int, features: int, steps: int) -> None:
    """The table of every family."""
    print(f"\nfamilies ({preset}, {device}, {torch.get_num_threads()} threads; window families: {features} features)")
    print(
        f"{'family':<20} {'params':>10} {'FLOPs/smp':>11} {'b1 p50 ms':>9} {f'b{batch} p50 ms':>10} "
        f"{'us/sample':>9} {'train s/s':>10}"
    )
    for name in names:
        print(family_row(name, preset, device, iters, batch, features, steps))


def matmul_tflops(device: str, dtype: torch.dtype, n: int = 8192, iters: int = 20) -> float:
    """Measured dense matmul rate in TFLOP/s."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    p50, _ = percentiles(lambda: a @ b, iters, device)
    return 2 * n**3 / (p50 / 1e3) / 1e12


def predictor_rows(device: str, iters: int) -> list[tuple[str, float, float]] | str:
    """Latency of Predictor.predict (features + network + threshold) on the shipped artifacts."""
    try:
        from pipeline.predictor import Predictor  # type: ignore[import-not-found]
    except ImportError:
        return "pipeline.predictor not on this branch yet: skipped"
    root = Path(__file__).resolve().parent.parent / "models" / "artifacts"
    rows = []
    for art in sorted(p for p in root.glob("*") if p.is_dir()):
        try:
            pred = Predictor.load(art, device=device)
            windows = random_walk_windows(pred.required_windows, BAR_TS)
            rows.append((f"predictor {art.name}", *percentiles(lambda: pred.predict(windows, BAR_TS), iters, device)))
        except Exception as e:
            return f"predictor {art.name}: {type(e).__name__}: {e}"
    return rows or "no shipped artifacts: skipped"


BAR_TS = 1_750_032_000_000  # a 1m bar open time (2025-06-16 00:00 UTC)


def random_walk_windows(required: Mapping[str, int], bar_ts: int) -> dict[str, np.ndarray]:
    """Gap-free windows in the daemon's convention (ts, o, h, l, c, v), all closed by bar_ts's close."""
    rng, out, close_ms = np.random.default_rng(0), {}, bar_ts + TIMEFRAME_MS["1m"]
    for key, n in required.items():
        step = TIMEFRAME_MS[key.removeprefix("btc_")]
        ts = (close_ms // step - 1 - np.arange(n)[::-1]) * step  # newest bar closes at or before close_ms
        close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
        open_ = np.concatenate([[close[0]], close[:-1]])
        high, low = np.maximum(open_, close) * 1.0005, np.minimum(open_, close) * 0.9995
        out[key] = np.stack([ts.astype(np.float64), open_, high, low, close, rng.uniform(1, 10, n)], axis=1)
    return out


def main(argv: list[str]) -> int:
    """Run the benchmark and print its tables."""
    ap = argparse.ArgumentParser(prog="python -m bench models")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--preset", default=None, help="default: small on cpu, seed on cuda")
    ap.add_argument("--threads", default="2,1", help="CPU thread counts to time, comma-separated")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--features", type=int, default=19, help="feature width of the window families")
    ap.add_argument("--batch", type=int, default=64, help="inference and training batch of the family table")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per family")
    ap.add_argument("--families", nargs="+", default=None, help="default: every registered family")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run without --device cuda")
        return 2
    torch.manual_seed(0)
    threads = [int(n) for n in args.threads.split(",")]
    preset = args.preset or ("seed" if args.device == "cuda" else "small")
    print(f"torch {torch.__version__}, device {args.device}, preset {preset}, load average {os.getloadavg()[0]:.1f}")
    torch.set_num_threads(threads[0])
    print_families(
        args.families or list(registry.FAMILIES), preset, args.device, args.iters, args.batch, args.features, args.steps
    )
    for n in threads if args.device == "cpu" else threads[:1]:
        torch.set_num_threads(n)
        mtf_p50 = print_latency(preset, args.device, args.iters, args.features)
    torch.set_num_threads(threads[0])
    print_flops()
    if args.device == "cuda":
        print_gpu_efficiency(preset, mtf_p50)
    return 0


def print_latency(preset: str, device: str, iters: int, features: int) -> float:
    """The latency table (networks, then predictors); returns the hybrid's p50 in ms."""
    print(f"\n{f'inference, batch 1, {torch.get_num_threads()} CPU threads':<40} {'p50 ms':>9} {'p99 ms':>9}")
    latency = latency_rows(preset, device, iters, features)
    extra = predictor_rows(device, iters)
    for row in latency + ([extra] if isinstance(extra, str) else extra):
        print(row if isinstance(row, str) else f"{row[0]:<40} {row[1]:>9.2f} {row[2]:>9.2f}")
    return latency[0][1]


def print_flops() -> None:
    """The hybrid's forward FLOPs per sample for `small` and `seed`, and parameter counts."""
    print(f"\n{'MTF forward FLOPs, 1 sample, 5 timeframes':<44} {'analytic':>10} {'counted':>10} {'params':>9}")
    for name in ("small", "seed"):
        c = MTFConfig.preset(name)
        counted = f"{counted_flops(c) / 1e9:.3f}G" if name == "small" else "-"  # seed: seconds on a CPU
        with torch.device("meta"):  # shapes only: no memory, no init time
            params = sum(p.numel() for p in registry.build("mtf_transformer", preset=name).parameters())
        label = f"{name} (T={c.seq_len}, d={c.d_model})"
        print(f"{label:<44} {mtf_flops(c) / 1e9:>9.3f}G {counted:>10} {params / 1e6:>8.2f}M")


def print_gpu_efficiency(preset: str, mtf_p50_ms: float) -> None:
    """Matmul rates, and the hybrid's batch-1 bf16 time against its FLOPs at the bf16 rate."""
    fp32, bf16 = matmul_tflops("cuda", torch.float32), matmul_tflops("cuda", torch.bfloat16)
    print(f"\nmatmul 8192²: fp32 {fp32:.0f} TFLOP/s, bf16 {bf16:.0f} TFLOP/s")
    ideal = mtf_flops(MTFConfig.preset(preset)) / (bf16 * 1e12) * 1e3
    print(
        f"MTF {preset} bf16 batch 1: p50 {mtf_p50_ms:.2f} ms vs FLOPs / bf16 rate {ideal:.2f} ms "
        f"({ideal / mtf_p50_ms:.0%} of the measured matmul rate)"
    )
