"""report.html: one static file with the chart library and data inlined, opened from disk in
a real Chromium without any network."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from daemon.domain import Fill, Side
from daemon.research import report_html
from daemon.research.report import BacktestResult, ModelRun, summarize

CHROMIUM = "/usr/bin/chromium"
T0, MIN = 1_754_000_000_000 - 1_754_000_000_000 % 60_000, 60_000


def _result(n: int) -> BacktestResult:
    rng = np.random.default_rng(1)
    close = 3000 + np.cumsum(rng.normal(0, 2, n))
    ts = T0 + np.arange(n) * MIN
    bars = np.column_stack([ts, close, close + 1, close - 1, close, np.ones(n)]).astype(np.float64)
    fills = [
        Fill("b-1", "ETH/USDT", "buy", float(close[10]), 0.1, 0.3, int(ts[10])),
        Fill("s-1", "ETH/USDT", "sell", float(close[40]), 0.1, 0.3, int(ts[40])),
    ]
    signals = [
        {
            "bar_ts": int(ts[9]),
            "strategy": "confidence",
            "side": int(Side.LONG),
            "confidence": 0.9,
            "price": float(close[9]),
            "reasons": [],
        },
        {
            "bar_ts": int(ts[39]),
            "strategy": "confidence",
            "side": int(Side.FLAT),
            "confidence": 0.8,
            "price": float(close[39]),
            "reasons": [],
        },
    ]
    probs = rng.dirichlet(np.ones(3), n)
    model = ModelRun("mtf_transformer", "v1", 0.5, ts.copy(), probs, probs.argmax(1), probs.max(1), rng.integers(0, 3, n))
    return BacktestResult("ETH/USDT", "1m", bars, fills, signals, [model], 10_000.0, 0.001, 0.0005)


def test_the_page_is_self_contained_and_coarsens_long_runs(tmp_path: Path, monkeypatch) -> None:
    result = _result(300)
    path = report_html.write_html(result, summarize(result), tmp_path)
    text = path.read_text()
    assert "TradingView Lightweight Charts" in text and "<script src" not in text and "<link" not in text
    # Data cannot close the script element it sits in.
    assert "<" not in report_html._script_json({"reason": "</script><b>x</b><!--"})
    data = report_html.report_data(result, summarize(result))
    assert len(data["candles"]) == 300 and data["candle_minutes"] == 1
    assert [m["kind"] for m in data["markers"]] == ["signal", "fill", "signal", "fill"]
    monkeypatch.setattr(report_html, "MAX_POINTS", 100)
    coarse = report_html.report_data(result, summarize(result))
    assert len(coarse["candles"]) == 100 and coarse["candle_minutes"] == 3
    assert all(m["time"] in {c[0] for c in coarse["candles"]} for m in coarse["markers"])  # on a candle


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
async def test_the_page_draws_from_disk_offline(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    result = _result(300)
    path = report_html.write_html(result, summarize(result), tmp_path)
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            asked: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("request", lambda req: asked.append(req.url))
            await page.goto(path.as_uri())
            await page.wait_for_selector("#price canvas", timeout=10_000)
            assert await page.locator("#equity canvas").count() > 0
            assert await page.locator("#models canvas").count() > 0
            assert await page.locator("#headline tr").count() == 8
            assert "ETH/USDT: trigger 1m" in (await page.text_content("#what") or "")
            assert errors == [] and asked == [path.as_uri()]  # nothing but the file itself
        finally:
            await browser.close()
