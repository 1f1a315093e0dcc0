"""Augmentation of training batches (the seed's jitter and scaling); off unless asked for.

Applied by the training loop to training batches only (never validation, test or live), on
the scaled inputs a family's IO lists as float inputs, with its own seeded generator so that a
run is reproducible and the model's weight initialisation draws are not shifted.
"""

from __future__ import annotations

from typing import Any

import torch


def augment(b: dict[str, Any], io: Any, jitter: float, scaling: float, gen: torch.Generator) -> dict[str, Any]:
    """In place: x + N(0, jitter) per value, then x * N(1, scaling) per sample; returns b."""
    if jitter <= 0 and scaling <= 0:
        return b
    for box, key in io.float_inputs(b):
        x = box[key]
        if jitter > 0:
            x = x + jitter * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
        if scaling > 0:
            shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # one factor per sample: the shape survives
            x = x * (1.0 + scaling * torch.randn(shape, generator=gen)).to(x.device, x.dtype)
        box[key] = x
    return b
