"""The backtest report's PNG plots (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon.research import performance
from daemon.research.result import CLASS_NAMES, BacktestResult

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

COLORS = {"strategy": "#1f77b4", "buy_and_hold": "#7f7f7f", "momentum": "#ff7f0e"}
LABELS = {"strategy": "strategy", "buy_and_hold": "buy-and-hold", "momentum": "momentum (1d, hourly)"}


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, imported at the first plot. Deferred for cold start, not
    for an import cycle: report.py imports this module, and `sigd backtest` / `walk-forward` without
    --report summarize through it without drawing (pyplot costs about a second to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def _dates(ts_ms: np.ndarray) -> np.ndarray:
    return (np.asarray(ts_ms, dtype=np.int64)).astype("datetime64[ms]")


def _date_axis(ax: plt.Axes) -> None:
    import matplotlib.dates as mdates  # loaded with pyplot by then

    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def write_all(result: BacktestResult, curves: dict, trades: Sequence[performance.Trade], out: Path) -> dict[str, str]:
    """Write every plot into `out`; return {name: file name} for report.md."""
    images = {
        "equity": equity_plot(result, curves, out / "equity.png"),
        "price": price_plot(result, trades, out / "price.png"),
        "confidence": confidence_plot(result, out / "confidence.png"),
    }
    for m in result.models:
        known = m.truth >= 0
        cm = performance.classification(m.truth[known], m.probs.argmax(axis=1)[known])["confusion"]
        images[f"confusion_{m.name}"] = confusion_plot(np.array(cm), m.name, out / f"confusion_{m.name}.png")
    return images


def equity_plot(result: BacktestResult, curves: dict, path: Path) -> str:
    """Equity of the strategy and the baselines (relative to the start), drawdown beneath."""
    plt = _pyplot()
    t = _dates(result.bars[:, 0] + result.bar_ms)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, height_ratios=(3, 1.3))
    for name, (equity, _pos, _fills) in curves.items():
        top.plot(
            t, (equity / result.cash - 1) * 100, color=COLORS[name], lw=1.2 if name == "strategy" else 0.9, label=LABELS[name]
        )
        if name != "momentum":
            bottom.fill_between(
                t,
                performance.drawdown_series(equity) * 100,
                0,
                color=COLORS[name],
                alpha=0.35 if name == "strategy" else 0.2,
                lw=0,
                label=LABELS[name],
            )
    top.axhline(0, color="black", lw=0.6)
    for fold in result.folds[1:]:  # walk-forward: where the next fold's models took over
        for ax in (top, bottom):
            ax.axvline(np.datetime64(fold["test_from"].rstrip("Z")), color="#9467bd", lw=0.8, ls="--")
    top.set_ylabel("return, %")
    top.set_title(f"{result.symbol} {result.timeframe}: equity net of fees and slippage")
    top.legend(loc="best", framealpha=0.85)
    top.grid(alpha=0.3)
    bottom.set_ylabel("drawdown, %")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower left", framealpha=0.85, fontsize=8)
    _date_axis(bottom)
    return _save(fig, path)


def price_plot(result: BacktestResult, trades: Sequence[performance.Trade], path: Path) -> str:
    """Close price with each trade's entry and exit marked (long green ▲, short red ▼, exit ×)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot(_dates(result.bars[:, 0] + result.bar_ms), result.bars[:, 4], color="#444444", lw=0.7, label="close")
    for direction, marker, color in (("long", "^", "#2ca02c"), ("short", "v", "#d62728")):
        sel = [t for t in trades if t.direction == direction]
        if sel:
            ax.scatter(
                _dates([t.entry_ts for t in sel]),
                [t.entry_price for t in sel],
                marker=marker,
                s=36,
                color=color,
                zorder=3,
                label=f"{direction} entry ({len(sel)})",
            )
    if trades:
        ax.scatter(
            _dates([t.exit_ts for t in trades]),
            [t.exit_price for t in trades],
            marker="x",
            s=28,
            color="black",
            zorder=3,
            label="exit",
        )
    ax.set_title(f"{result.symbol} {result.timeframe}: price with entries and exits")
    ax.set_ylabel(result.symbol.split("/")[-1])
    ax.grid(alpha=0.3)
    ax.legend(loc="best", framealpha=0.85, fontsize=8)
    _date_axis(ax)
    return _save(fig, path)


def confidence_plot(result: BacktestResult, path: Path) -> str:
    """Distribution of each model's confidence with its threshold as a vertical line."""
    plt = _pyplot()
    n = max(1, len(result.models))
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 3.8), squeeze=False)
    for ax, m in zip(axes[0], result.models):
        ax.hist(m.confidence, bins=40, range=(0.0, 1.0), color="#1f77b4", alpha=0.8)
        ax.axvline(m.threshold, color="#d62728", lw=1.5, label=f"threshold {m.threshold:.2f}")
        share = float(np.mean(m.confidence >= m.threshold)) if len(m.confidence) else 0.0
        ax.set_title(f"{m.name}: {share * 100:.1f} % of bars at or above")
        ax.set_xlabel("confidence")
        ax.set_ylabel("bars")
        ax.legend(frameon=False)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def confusion_plot(cm: np.ndarray, name: str, path: Path) -> str:
    """Confusion matrix, rows = truth, columns = predicted class, with counts and row shares."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                f"{cm[i, j]}\n{share[i, j] * 100:.0f} %",
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.6 else "black",
                fontsize=9,
            )
    ax.set_xticks(range(3), CLASS_NAMES)
    ax.set_yticks(range(3), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    ax.set_title(f"{name}: confusion (arg-max)")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> str:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name
