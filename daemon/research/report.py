"""The backtest report: summary.json, trades.csv, signals.csv, PNG plots, report.md and report.html.

`summarize()` turns one run (the strategy's fills and signals, each model's predictions and
the truth its target definition gives) into the numbers a trader reads, beside buy-and-hold
and the momentum baseline on the same bars and costs. `write_report()` puts them on disk;
`terminal_summary()` is the short version printed by `sigd backtest`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from daemon.domain import Side
from daemon.research import performance, plots
from daemon.research.replay import iso
from daemon.research.report_html import write_html
from daemon.research.result import CLASS_NAMES, BacktestResult, ModelRun, curves, end_mark


def summarize(result: BacktestResult) -> dict[str, Any]:
    """The content of summary.json."""
    ts = result.bars[:, 0].astype(np.int64)
    runs = {}
    for name, (equity, position, fills) in curves(result).items():
        trades = performance.round_trips(fills, result.bar_ms, mark=end_mark(result))
        runs[name] = performance.evaluate(equity, position, fills, trades, result.cash, result.bar_ms).as_dict()
    return {
        "symbol": result.symbol,
        "timeframe": result.timeframe,
        "period": {"from": iso(int(ts[0])) if len(ts) else None, "to": iso(int(ts[-1]) + result.bar_ms) if len(ts) else None},
        "bars": int(len(ts)),
        "costs": {"fee_per_side": result.fee, "slippage": result.slippage, "starting_equity": result.cash},
        "position_fraction": result.position_fraction,
        "gate": dict(result.gate),
        "strategy": runs["strategy"],
        "buy_and_hold": runs["buy_and_hold"],
        "momentum": runs["momentum"],
        "models": {m.name: _model_summary(m) for m in result.models},
        "signals": _signal_counts(result.signals),
        "data": result.notes,
        "folds": result.folds,
    }


def _model_summary(m: ModelRun) -> dict[str, Any]:
    known = m.truth >= 0
    argmax = m.probs.argmax(axis=1) if len(m.probs) else np.zeros(0, dtype=np.int64)
    return {
        "version": m.version,
        "threshold": m.threshold,
        "predictions": int(len(m.bar_ts)),
        "confident_share": float(np.mean(m.confidence >= m.threshold)) if len(m.confidence) else 0.0,
        "argmax": performance.classification(m.truth[known], argmax[known]),
        "thresholded": performance.classification(m.truth[known], np.asarray(m.side)[known]),
    }


def _signal_counts(signals: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts = {n: 0 for n in CLASS_NAMES}
    for s in signals:
        counts[Side(int(s["side"])).name] += 1
    return counts


def write_report(result: BacktestResult, out: Path) -> dict[str, Any]:
    """Write summary.json, trades.csv, signals.csv, the PNG plots, report.md and the static report.html
    (daemon/research/report_html.py); return the summary."""
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(result)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    trades = performance.round_trips(result.fills, result.bar_ms, mark=end_mark(result))
    _write_csv(out / "trades.csv", [_trade_row(t) for t in trades], list(performance.Trade.__slots__))
    _write_csv(out / "signals.csv", [_signal_row(s) for s in result.signals], list(SIGNAL_COLUMNS))
    images = plots.write_all(result, curves(result), trades, out)
    (out / "report.md").write_text(markdown(summary, images))
    write_html(result, summary, out)
    return summary


SIGNAL_COLUMNS = ("bar_ts", "time", "strategy", "side", "confidence", "price", "reasons")


def _signal_row(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "bar_ts": s["bar_ts"],
        "time": iso(int(s["bar_ts"])),
        "strategy": s.get("strategy", ""),
        "side": Side(int(s["side"])).name,
        "confidence": s["confidence"],
        "price": s["price"],
        "reasons": s.get("reasons", ""),
    }


def _trade_row(t: performance.Trade) -> dict[str, Any]:
    row = {k: getattr(t, k) for k in performance.Trade.__slots__}
    row["entry_ts"], row["exit_ts"] = iso(t.entry_ts), iso(t.exit_ts)
    return row


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def _fmt(v: Any, kind: str = "num") -> str:
    """kind: "ret" signed percent, "pct" percent, "dd" drawdown shown negative, "int", "num"."""
    if v is None or isinstance(v, str):
        return "–" if v is None else v
    return {
        "ret": f"{v * 100:+.2f} %",
        "pct": f"{v * 100:.1f} %",
        "dd": f"{-v * 100:.2f} %",
        "int": f"{int(v)}",
        "num": f"{v:.2f}",
    }[kind]


HEADLINE = (
    ("total return", "total_return", "ret"),
    ("Sharpe (ann.)", "sharpe", "num"),
    ("Sortino (ann.)", "sortino", "num"),
    ("max drawdown", "max_drawdown", "dd"),
    ("trades", "trades", "int"),
    ("win rate", "win_rate", "pct"),
    ("profit factor", "profit_factor", "num"),
    ("average trade", "avg_trade", "ret"),
    ("exposure", "exposure", "pct"),
    ("turnover", "turnover", "num"),
    ("fees paid", "fees_paid", "num"),
)


def headline_table(summary: dict[str, Any]) -> list[str]:
    """Markdown table rows: one metric per row, strategy beside the baselines."""
    rows = ["| | strategy | buy-and-hold | momentum |", "|---|---:|---:|---:|"]
    for label, key, kind in HEADLINE:
        cells = [_fmt(summary[run][key], kind) for run in ("strategy", "buy_and_hold", "momentum")]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def model_table(summary: dict[str, Any]) -> list[str]:
    """Markdown table rows: each model's classification quality beside the majority class."""
    rows = ["| model | samples | accuracy | macro-F1 | majority accuracy | majority macro-F1 |", "|---|---:|---:|---:|---:|---:|"]
    for name, m in summary["models"].items():
        a, b = m["argmax"], m["argmax"]["majority_baseline"]
        if not a["samples"]:  # no labelled bar (a period shorter than the target horizon): no score, not 0
            rows.append(f"| {name} | 0 | – | – | – | – |")
            continue
        rows.append(
            f"| {name} | {a['samples']} | {a['accuracy']:.3f} | {a['macro_f1']:.3f} | {b['accuracy']:.3f} | {b['macro_f1']:.3f} |"
        )
    return rows


def markdown(summary: dict[str, Any], images: dict[str, str]) -> str:
    """report.md: the numbers and the plots together."""
    p = summary["period"]
    c = summary["costs"]
    lines = [
        f"# Backtest {summary['symbol']} {summary['timeframe']}: {p['from']} → {p['to']}",
        "",
        (
            f"{summary['bars']} bars; fee {c['fee_per_side'] * 100:.3f} % per side, slippage "
            f"{c['slippage'] * 100:.3f} %; starting equity {c['starting_equity']:.2f}. The baselines hold the "
            f"strategy's position size ({summary.get('position_fraction', 1.0) * 100:g} % of equity)."
        ),
        "",
        *[line + "\n" for line in gate_lines(summary)],
        "## Performance",
        "",
        *headline_table(summary),
        "",
        *_no_trade_note(summary),
        f"![equity]({images['equity']})",
        "",
        f"![price]({images['price']})",
        "",
        "## Models",
        "",
        "Classification of each trigger bar (arg-max class) against the class the "
        "artifact's target definition gives, beside always answering the majority class.",
        "",
        *model_table(summary),
        "",
        f"![confidence]({images['confidence']})",
        "",
    ]
    lines += [
        f"![confusion matrix, {name.removeprefix('confusion_')}]({path})"
        for name, path in images.items()
        if name.startswith("confusion_")
    ]
    if summary["folds"]:
        lines += ["", "## Walk-forward folds", "", *fold_table(summary["folds"])]
    if summary["data"]:
        lines += ["", "## Data", "", "```", json.dumps(summary["data"], indent=2), "```"]
    return "\n".join(lines) + "\n"


def _no_trade_note(summary: dict[str, Any]) -> list[str]:
    """Why a strategy that never traded did not: how often each model was confident enough."""
    if summary["strategy"]["trades"]:
        return []
    parts = [
        f"{name} {m['confident_share'] * 100:.1f} % of bars at or above its threshold {m['threshold']:.2f}"
        for name, m in summary["models"].items()
    ]
    return ["**No trades.** " + "; ".join(parts) + ".", ""]


def fold_table(folds: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown rows: one walk-forward fold per row."""
    rows = [
        "| fold | train | test | bars | trades | return | Sharpe | max DD | buy-and-hold |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f in folds:
        s = f["strategy"]
        rows.append(
            f"| {f['fold']} | {f['train_from'][:16]} → {f['train_to'][:16]} | {f['test_from'][:16]} → "
            f"{f['test_to'][:16]} | {f['bars']} | {s['trades']} | {_fmt(s['total_return'], 'ret')} | "
            f"{_fmt(s['sharpe'])} | {_fmt(s['max_drawdown'], 'dd')} | "
            f"{_fmt(f['buy_and_hold']['total_return'], 'ret')} |"
        )
    return rows


def terminal_summary(summary: dict[str, Any]) -> str:
    """A few aligned lines for the terminal."""
    p = summary["period"]
    head = f"backtest {summary['symbol']} {summary['timeframe']} {p['from']} → {p['to']} ({summary['bars']} bars)"
    size = f"baselines sized like the strategy: {summary.get('position_fraction', 1.0) * 100:g} % of equity per position"
    return "\n".join([head, size, *gate_lines(summary), "", _align(headline_table(summary)), "", _align(model_table(summary))])


def gate_lines(summary: dict[str, Any]) -> list[str]:
    """One line per model that failed the gate (or was never validated): the daemon would not trade it."""
    return [
        f"NOTE: the daemon would not trade {name} (models.trade_only_validated, on by default): {why}; this backtest trades it anyway"
        for name, why in sorted((summary.get("gate") or {}).items())
    ]


PORTFOLIO_RUNS = ("strategy", "buy_and_hold", "momentum")


def portfolio_summary(results: Sequence[BacktestResult]) -> dict[str, Any]:
    """The portfolio total of a multi-symbol run, beside the portfolio buy-and-hold and
    momentum at the same per-symbol sizing: one account, so each symbol's P&L adds to the
    shared starting equity, marked at every trigger close of any symbol (a symbol's last
    equity is carried over its gaps)."""
    cash = results[0].cash
    grid = np.unique(np.concatenate([r.bars[:, 0].astype(np.int64) for r in results]))
    bar_ms = results[0].bar_ms
    out: dict[str, Any] = {"symbols": [r.symbol for r in results], "bars": len(grid)}
    per_symbol = [curves(r) for r in results]
    for run in PORTFOLIO_RUNS:
        pnl = np.zeros(len(grid))
        trades, fees = 0, 0.0
        for r, c in zip(results, per_symbol):
            equity, _, fills = c[run]
            ts = r.bars[:, 0].astype(np.int64)
            i = np.searchsorted(ts, grid, side="right") - 1  # the symbol's last close at or before each grid bar
            pnl += np.where(i >= 0, equity[np.clip(i, 0, None)] - cash, 0.0)
            trades += len(performance.round_trips(fills, bar_ms, mark=end_mark(r)))
            fees += float(sum(f.fee for f in fills))
        equity = cash + pnl
        rets = performance.bar_returns(equity, cash)
        out[run] = {
            "total_return": float(equity[-1] / cash - 1.0) if len(equity) else 0.0,
            "sharpe": performance.sharpe(rets, bar_ms),
            "sortino": performance.sortino(rets, bar_ms),
            "max_drawdown": performance.max_drawdown(equity, cash),
            "trades": trades,
            "fees_paid": fees,
            "final_equity": float(equity[-1]) if len(equity) else cash,
        }
    return out


def portfolio_table(total: dict[str, Any]) -> list[str]:
    """Markdown rows: the portfolio total beside its baselines."""
    rows = ["| portfolio | strategy | buy-and-hold | momentum |", "|---|---:|---:|---:|"]
    for label, key, kind in (
        ("total return", "total_return", "ret"),
        ("Sharpe (ann.)", "sharpe", "num"),
        ("Sortino (ann.)", "sortino", "num"),
        ("max drawdown", "max_drawdown", "dd"),
        ("trades", "trades", "int"),
        ("fees paid", "fees_paid", "num"),
    ):
        rows.append(f"| {label} | " + " | ".join(_fmt(total[run][key], kind) for run in PORTFOLIO_RUNS) + " |")
    return rows


def portfolio_terminal(total: dict[str, Any]) -> str:
    """The portfolio total as aligned terminal lines; with a book (the strategy beside the
    portfolio baselines at the same sizing), the engine's own figures and that table."""
    head = f"portfolio of {len(total['symbols'])} symbols ({', '.join(total['symbols'])}), one account"
    book = total.get("book")
    if not book:
        return "\n".join([head, "", _align(portfolio_table(total))])
    from daemon.research.portfolio_report import book_table

    s = total["strategy"]
    engine = (
        f"engine (paper fills): total return {_fmt(s['total_return'], 'ret')}, Sharpe {_fmt(s['sharpe'])}, "
        f"max drawdown {_fmt(s['max_drawdown'], 'dd')}, {s['trades']} trades, fees {_fmt(s['fees_paid'])}"
    )
    spec = book["spec"]
    sizing = (
        f"every run below sized by the same portfolio construction (max_weight {spec['max_weight']:g}, gross_cap "
        f"{spec['gross_cap']:g}, net_cap {spec['net_cap']:g}, top_k {spec['top_k'] or '-'}, vol_target "
        f"{spec['vol_target'] or '-'}, band {spec['no_trade_band']:g}) and charged {book['cost_rate_one_way']:.2%} per unit traded"
    )
    return "\n".join([head, engine, sizing, "", _align(book_table(book))])


def _align(md_rows: list[str]) -> str:
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in md_rows if not r.startswith("|---")]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells
    )


def fold_summaries(result: BacktestResult, folds: Sequence[Any]) -> list[dict[str, Any]]:
    """Per walk-forward fold: the strategy and buy-and-hold over its test window, cut from the
    one continuous run (a position open at a fold boundary carries over, as it would live)."""
    ts = result.bars[:, 0].astype(np.int64)
    all_curves = curves(result)
    mark = end_mark(result)
    rows = []
    for f in folds:
        m = (ts >= f.test_start) & (ts < f.test_end)
        if not m.any():
            continue
        first = int(np.argmax(m))
        row: dict[str, Any] = {
            "fold": f.index,
            "train_from": iso(f.train_start),
            "train_to": iso(f.train_end),
            "test_from": iso(f.test_start),
            "test_to": iso(f.test_end),
            "bars": int(m.sum()),
        }
        for name in ("strategy", "buy_and_hold"):
            equity, position, fills = all_curves[name]
            start = float(equity[first - 1]) if first else result.cash
            inside = [x for x in fills if f.test_start <= x.ts < f.test_end]
            # a position still open at the end is marked at the end instant: the last fold's
            trades = [
                t
                for t in performance.round_trips(fills, result.bar_ms, mark=mark)
                if f.test_start <= t.exit_ts < f.test_end or (mark and t.exit_ts == mark[0] == f.test_end)
            ]
            row[name] = performance.evaluate(equity[m], position[m], inside, trades, start, result.bar_ms).as_dict()
        rows.append(row)
    return rows
