"""report.html: the backtest's charts as one static page that opens from disk, offline.

The chart library (the dashboard's vendored lightweight-charts) and the data are inlined, so
the file needs neither the daemon nor the network. Charts: candlesticks of the trigger bars
with signal and fill markers; equity of the strategy and both baselines; each model's
P(SHORT) and P(LONG) with its threshold; the summary's headline numbers. Long runs are
drawn on coarser candles (at most MAX_POINTS per series) so the file stays a few MB.
Everything shown is data rendered with textContent; the JSON is escaped for <script>.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from daemon.domain import Side
from daemon.research.result import BacktestResult, curves

# The dashboard's vendored copy (read as a file: research does not import the service layer).
CHART_LIBRARY = (
    Path(__file__).resolve().parent.parent / "service" / "dashboard" / "vendor" / "lightweight-charts.standalone.production.js"
)
MAX_POINTS = 20_000


def write_html(result: BacktestResult, summary: dict[str, Any], out: Path) -> Path:
    """Write out/report.html; returns its path."""
    data = report_data(result, summary)
    page = PAGE.format(
        title=html.escape(f"sigd backtest {result.symbol} {summary['period']['from']}"),
        library=CHART_LIBRARY.read_text(encoding="utf-8").replace("</script", "<\\/script"),
        data=_script_json(data),
        script=SCRIPT,
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def report_data(result: BacktestResult, summary: dict[str, Any]) -> dict[str, Any]:
    """What the page draws: coarse candles, markers, equity curves, model probabilities, headline."""
    step = max(1, math.ceil(len(result.bars) / MAX_POINTS))
    candle_ms = result.bar_ms * step
    bars = result.bars
    candles = []
    for i in range(0, len(bars), step):
        chunk = bars[i : i + step]
        candles.append(
            [
                int(chunk[0, 0]) // 1000,
                float(chunk[0, 1]),
                float(chunk[:, 2].max()),
                float(chunk[:, 3].min()),
                float(chunk[-1, 4]),
            ]
        )
    snap = lambda ts: (int(ts) - int(bars[0, 0])) // candle_ms * candle_ms // 1000 + int(bars[0, 0]) // 1000  # noqa: E731
    markers = [{"time": snap(s["bar_ts"]), "kind": "signal", "side": Side(int(s["side"])).name} for s in result.signals]
    markers += [{"time": snap(f.ts), "kind": "fill", "side": f.side, "price": f.price} for f in result.fills]
    ts = bars[:, 0].astype(np.int64) // 1000
    equity = {name: _series(ts, eq, step) for name, (eq, _, _) in curves(result).items()}
    models = {
        m.name: {
            "threshold": m.threshold,
            "short": _series(m.bar_ts.astype(np.int64) // 1000, m.probs[:, 0], step),
            "long": _series(m.bar_ts.astype(np.int64) // 1000, m.probs[:, 2], step),
        }
        for m in result.models
        if len(m.bar_ts)
    }
    return {
        "symbol": result.symbol,
        "timeframe": result.timeframe,
        "candle_minutes": candle_ms / 60_000,
        "candles": candles,
        "markers": sorted(markers, key=lambda m: m["time"]),
        "equity": equity,
        "models": models,
        "headline": _headline(summary),
    }


def _series(ts: np.ndarray, values: np.ndarray, step: int) -> list[list[float]]:
    """Every `step`-th point (and the last), as [time s, value]."""
    idx = list(range(0, len(ts), step))
    if len(ts) and idx[-1] != len(ts) - 1:
        idx.append(len(ts) - 1)
    return [[int(ts[i]), round(float(values[i]), 6)] for i in idx]


def _headline(summary: dict[str, Any]) -> list[list[str]]:
    rows = [["", "strategy", "buy_and_hold", "momentum"]]
    for key in ("total_return", "sharpe", "max_drawdown", "trades", "win_rate", "fees_paid", "final_equity"):
        rows.append([key] + [_fmt(summary.get(run, {}).get(key)) for run in ("strategy", "buy_and_hold", "momentum")])
    return rows


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else "-" if v is None else str(v)


def _script_json(data: Any) -> str:
    # Inside <script>, "</script>" or "<!--" in a string would end or bend the element.
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


SCRIPT = """
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const LC = window.LightweightCharts;
const opts = { autoSize: true, layout: { background: { color: "#161b24" }, textColor: "#c9d1e0" },
  grid: { vertLines: { color: "#202735" }, horzLines: { color: "#202735" } }, timeScale: { timeVisible: true } };
document.getElementById("what").textContent =
  `${D.symbol}: trigger ${D.timeframe}, candles of ${D.candle_minutes} min, ${D.candles.length} candles`;
const head = document.getElementById("headline");
for (const row of D.headline) {
  const tr = document.createElement("tr");
  for (const c of row) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
  head.append(tr);
}
const price = LC.createChart(document.getElementById("price"), opts);
const candles = price.addSeries(LC.CandlestickSeries, {});
candles.setData(D.candles.map(([time, open, high, low, close]) => ({ time, open, high, low, close })));
LC.createSeriesMarkers(candles, D.markers.map((m) => m.kind === "signal" ? {
  time: m.time, position: m.side === "SHORT" ? "aboveBar" : "belowBar",
  color: m.side === "LONG" ? "#26a69a" : m.side === "SHORT" ? "#ef5350" : "#b0b7c3",
  shape: m.side === "LONG" ? "arrowUp" : m.side === "SHORT" ? "arrowDown" : "circle", text: m.side[0] }
  : { time: m.time, position: "inBar", color: "#f0c14b", shape: "square", text: m.side }));
const uniq = (pts) => { const m = new Map(pts); return [...m].sort((a, b) => a[0] - b[0]).map(([time, value]) => ({ time, value })); };
const eq = LC.createChart(document.getElementById("equity"), opts);
const colours = { strategy: "#3a9ad9", buy_and_hold: "#8b98ad", momentum: "#d98e3a" };
for (const [name, pts] of Object.entries(D.equity)) {
  eq.addSeries(LC.LineSeries, { color: colours[name] || "#fff", title: name, lineWidth: 2 }).setData(uniq(pts));
}
const box = document.getElementById("models");
for (const [name, m] of Object.entries(D.models)) {
  const h = document.createElement("h3"); h.textContent = `${name}: P(SHORT) red, P(LONG) green, threshold ${m.threshold}`;
  const div = document.createElement("div"); div.className = "chart small";
  box.append(h, div);
  const c = LC.createChart(div, opts);
  const s = c.addSeries(LC.LineSeries, { color: "#ef5350", lineWidth: 1 }); s.setData(uniq(m.short));
  c.addSeries(LC.LineSeries, { color: "#26a69a", lineWidth: 1 }).setData(uniq(m.long));
  s.createPriceLine({ price: m.threshold, color: "#f0c14b", title: "threshold", lineStyle: 2 });
}
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ margin: 0; padding: 10px; font: 13px/1.4 system-ui, sans-serif; background: #10141b; color: #d8dee9; }}
.chart {{ height: 380px; margin: 6px 0 16px; }} .chart.small {{ height: 180px; }}
td {{ padding: 2px 8px; border-bottom: 1px solid #232a38; }} h2, h3 {{ margin: 8px 0 4px; }}
</style></head><body>
<h2>{title}</h2><p id="what"></p><table id="headline"></table>
<h3>Price, signals (arrows) and fills (squares)</h3><div id="price" class="chart"></div>
<h3>Equity: strategy (blue), buy and hold (grey), momentum (orange)</h3><div id="equity" class="chart"></div>
<div id="models"></div>
<script type="application/json" id="data">{data}</script>
<script>{library}</script>
<script>{script}</script>
</body></html>
"""
