"""The training loop shared by every model: AMP, clipping, schedules, early stopping, progress.

Per the seed: AdamW (lr 1e-3, weight decay 0.01, eps 1e-8), CosineAnnealingWarmRestarts
(T_0 10, T_mult 2, eta_min 1e-6) stepped once per epoch, or OneCycleLR (peak = lr, 30 % warm-up,
cosine annealing) stepped after every optimizer step over epochs x batches, or
ReduceLROnPlateau on the validation loss as an option; gradients clipped to norm 1.0 after backward and BEFORE the
optimizer step (unscaled first under fp16 AMP); early stopping on the validation loss with
patience 10, restoring the best weights. AMP only on CUDA: bf16 where the GPU supports it,
else fp16 with a GradScaler on compute capability >= 7. On CPU everything is float32 and,
with the same seed, bit-for-bit reproducible.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

Batch = dict[str, torch.Tensor]
# Who wants to hear how far the running fit has got: a callable taking the fraction (0..1) of
# its epochs done, set by whatever runs the fit (a research runner's live progress line),
# never by model code. A ContextVar, so two fits in two threads report to their own listener.
FIT_PROGRESS: ContextVar[Callable[[float], None] | None] = ContextVar("sigd_fit_progress", default=None)

# (model, batch) -> (loss, number of correct argmax predictions or -1 when not classifying, labelled count)
StepFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, int, int]]


@dataclass(frozen=True)
class FitConfig:
    """Knobs of the loop (defaults are the seed's)."""

    epochs: int = 30
    batch_size: int = 0  # 0 = choose from available memory
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 10
    scheduler: str = "cosine"  # "cosine" | "onecycle" | "plateau"
    clip_norm: float = 1.0
    max_train_batches: int = 0  # 0 = the whole training split every epoch
    progress: bool = True
    augment: Callable[[Batch], Batch] | None = None  # applied to training batches only


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> the first CUDA GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:  # torch's own message lists two dozen backends: name ours
        raise ValueError(f"device {device!r}: not a torch device (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():  # else an AssertionError deep in .to()
        raise ValueError(f"device {device!r}: no CUDA GPU is available to torch here (use auto or cpu)")
    return dev


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs that support it, fp16 on other GPUs of capability >= 7, None (fp32) otherwise."""
    if device.type != "cuda":
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16 if torch.cuda.get_device_capability(device)[0] >= 7 else None


def available_bytes(device: torch.device) -> int:
    """Free memory on the device (GPU: free VRAM; CPU: available RAM)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def memory_estimate(model: nn.Module, sample_floats: int, batch_size: int) -> dict[str, float]:
    """MB for weights, training state (grads + 2 AdamW moments) and one batch's inputs."""
    params = sum(p.numel() for p in model.parameters())
    mb = 1024 * 1024
    return {
        "params": float(params),
        "weights_mb": params * 4 / mb,
        "training_state_mb": params * 12 / mb,
        "batch_inputs_mb": batch_size * sample_floats * 4 / mb,
        "activations_mb_guess": batch_size * sample_floats * 4 * 16 / mb,
    }


def choose_batch_size(device: torch.device, sample_floats: int, cnn: bool) -> int:
    """Largest power of two whose inputs (x16 for activations) fit in 1/8 of free memory;
    clamped to [32, 1024] (CPU: 512), then divided by 8 for CNN models as the seed does."""
    budget = available_bytes(device) / 8
    size = 2 ** int(math.log2(max(1.0, budget / (sample_floats * 4 * 16))))
    size = int(min(max(size, 32), 1024 if device.type == "cuda" else 512))
    return max(16, size // 8) if cnn else size


def _scheduler(opt: torch.optim.Optimizer, kind: str, total_steps: int = 1) -> Any:
    if kind == "onecycle":  # stepped per batch: total_steps = epochs x batches per epoch
        lr = opt.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total_steps, 1), pct_start=0.3)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=10, T_mult=2, eta_min=1e-6)
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=3, min_lr=1e-6)
    raise ValueError(f"unknown scheduler {kind!r}; expected 'cosine', 'onecycle' or 'plateau'")


def _epoch(
    model: nn.Module,
    step: StepFn,
    batches: Iterator[Batch],
    n_batches: int,
    *,
    opt: Any = None,
    amp: torch.dtype | None = None,
    scaler: Any = None,
    clip: float = 1.0,
    desc: str = "",
    progress: bool = False,
    per_step: Any = None,
    augment: Callable[[Batch], Batch] | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[float, float]:
    """One pass; trains when opt is given. Returns (mean loss, accuracy or NaN)."""
    model.train(opt is not None)
    tot_loss, n_seen, correct, labelled = 0.0, 0, 0, 0
    bar = tqdm(batches, total=n_batches, desc=desc, leave=False, disable=not progress, file=sys.stderr)
    for i, batch in enumerate(bar):
        if augment is not None:
            batch = augment(batch)
        ctx = torch.autocast(batch["y"].device.type, dtype=amp) if amp else nullcontext()
        with ctx, nullcontext() if opt is not None else torch.no_grad():
            loss, ok, lab = step(model, batch)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(model.parameters(), clip)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), clip)  # before the step
                opt.step()
            if per_step is not None:
                per_step.step()
        b = len(batch["y"])
        tot_loss, n_seen = tot_loss + float(loss.detach()) * b, n_seen + b
        correct, labelled = correct + max(ok, 0), labelled + lab
        acc = correct / labelled if labelled and ok >= 0 else float("nan")
        bar.set_postfix(loss=f"{tot_loss / n_seen:.4f}", acc=f"{acc:.3f}", lr=f"{opt.param_groups[0]['lr']:.2e}" if opt else "-")
        if on_batch is not None:
            on_batch(i + 1, n_batches)
    return tot_loss / max(n_seen, 1), (correct / labelled if labelled and ok >= 0 else float("nan"))


def _epoch_share(listener: Callable[[float], None] | None, epoch: int, epochs: int) -> Callable[[int, int], None] | None:
    """Batch i of n in this epoch -> the fraction of the whole fit done, for the listener."""
    if listener is None:
        return None
    return lambda i, n: listener((epoch + i / max(n, 1)) / max(epochs, 1))


def fit(
    model: nn.Module,
    step: StepFn,
    train_batches: Callable[[int], tuple[Iterator[Batch], int]],
    val_batches: Callable[[], tuple[Iterator[Batch], int]],
    cfg: FitConfig,
    device: torch.device,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, list[float]]:
    """Train with early stopping; the model ends with its best-validation weights. Returns history."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, eps=1e-8)
    sched = None if cfg.scheduler == "onecycle" else _scheduler(opt, cfg.scheduler)
    per_step = None
    amp = amp_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    hist: dict[str, list[float]] = {k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")}
    best, best_state, waited = math.inf, None, 0
    listener = FIT_PROGRESS.get()
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        it, n = train_batches(epoch)
        if cfg.scheduler == "onecycle" and per_step is None:  # its length needs the batches per epoch
            per_step = _scheduler(opt, "onecycle", cfg.epochs * n)
            lr = opt.param_groups[0]["lr"]
        tl, ta = _epoch(
            model,
            step,
            it,
            n,
            opt=opt,
            amp=amp,
            scaler=scaler,
            clip=cfg.clip_norm,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            progress=cfg.progress,
            per_step=per_step,
            augment=cfg.augment,
            on_batch=_epoch_share(listener, epoch, cfg.epochs),
        )
        it, n = val_batches()
        vl, va = _epoch(model, step, it, n, amp=amp, desc="validate", progress=cfg.progress)
        if sched is not None:
            sched.step(vl) if cfg.scheduler == "plateau" else sched.step()
        for k, v in zip(hist, (tl, ta, vl, va, lr, time.perf_counter() - t0)):
            hist[k].append(float(v))
        log(f"epoch {epoch + 1:3d}  loss {tl:.4f}  acc {ta:.3f}  val_loss {vl:.4f}  val_acc {va:.3f}  lr {lr:.2e}")
        if vl < best - 1e-9:
            best, waited = vl, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= cfg.patience:
                log(f"early stop after epoch {epoch + 1}: no val_loss improvement for {cfg.patience} epochs")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    if listener is not None:  # early stopping ends the fit before its last epoch
        listener(1.0)
    hist["best_epoch"] = [float(int(np.argmin(hist["val_loss"])) + 1)] if hist["val_loss"] else []
    return hist
