"""Training plots (PNG, matplotlib's Agg backend): curves, attention, predictions vs truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt
import numpy as np

DPI = 72


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def curves(history: Mapping[str, Sequence[float]], out_dir: Path) -> list[Path]:
    """loss.png (train/val loss + lr) and, when classifying, accuracy.png."""
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, history["train_loss"], label="train")
    ax.plot(epochs, history["val_loss"], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(loc="upper left")
    lr_ax = ax.twinx()
    lr_ax.plot(epochs, history["lr"], color="grey", linestyle=":", label="lr")
    lr_ax.set_ylabel("learning rate")
    paths = [_save(fig, out_dir / "loss.png")]
    if np.isfinite(history["train_acc"]).any():
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(epochs, history["train_acc"], label="train")
        ax.plot(epochs, history["val_acc"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.legend()
        paths.append(_save(fig, out_dir / "accuracy.png"))
    return paths


def attention(weights: np.ndarray, out_dir: Path, title: str) -> Path:
    """attention.png: the last step's attention over a sample window, oldest bar left. weights [T]."""
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.bar(np.arange(-len(weights) + 1, 1), weights)
    ax.set_xlabel("bar (0 = newest)")
    ax.set_ylabel("attention weight")
    ax.set_title(title)
    return _save(fig, out_dir / "attention.png")


def predictions_vs_truth(pred: np.ndarray, truth: np.ndarray, out_dir: Path) -> Path:
    """predictions.png: predicted vs realized next return on the test split."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(truth, pred, s=2, alpha=0.4)
    ax.set_xlabel("realized return")
    ax.set_ylabel("predicted return")
    return _save(fig, out_dir / "predictions.png")


def class_probabilities(probs: np.ndarray, out_dir: Path) -> Path:
    """probabilities.png: histogram of the top class probability on the test split."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(probs.max(axis=1), bins=40)
    ax.set_xlabel("top class probability")
    ax.set_ylabel("bars")
    return _save(fig, out_dir / "probabilities.png")


def classes_vs_truth(probs: np.ndarray, labels: np.ndarray, out_dir: Path, last: int = 500) -> Path:
    """predictions.png: P(LONG) - P(SHORT) beside the true class (-1 SHORT, 0 FLAT, +1 LONG;
    ambiguous labels left out) over the newest `last` test samples, oldest left."""
    p, y = probs[-last:], labels[-last:].astype(np.float64)
    truth = np.where(y >= 0, y - 1.0, np.nan)  # class 0/1/2 -> -1/0/+1; IGNORE -> gap
    fig, ax = plt.subplots(figsize=(7, 3))
    x = np.arange(len(p))
    ax.plot(x, truth, drawstyle="steps-mid", color="grey", label="true class")
    ax.plot(x, p[:, 2] - p[:, 0], label="P(LONG) - P(SHORT)")
    ax.set_ylim(-1.1, 1.1)
    ax.set_xlabel("test sample")
    ax.legend(loc="lower left")
    return _save(fig, out_dir / "predictions.png")
