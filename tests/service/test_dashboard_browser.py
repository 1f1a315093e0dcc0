"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against `sigd run`
on its local exchange at 30x: the page loads, new bars and signal markers arrive live, the
controls need the token, /flat asks first, and after the daemon restarts the page resyncs
without duplicate markers. A screenshot is saved as a test artifact and must not be blank.

Skips with the reason when Chromium or Playwright is missing (.ci/run installs both).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from tests.alert_fakes import WebhookReceiver
from tests.daemon_harness import DaemonProcess, free_port
from tests.service.test_demo_first_minute import shipped_config
from tests.service.test_service_e2e import API_TOKEN, ENV, SECRET, query, service_config

CHROMIUM = os.environ.get("SIGD_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SIGD_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
SPEED = 30.0  # one 1m bar every 2 wall seconds
BAR_WALL_S = 60.0 / SPEED
SYMBOL = "ETH/USDT"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"  # SIGD_RETAKE_DOCS_SCREENSHOT=1
TAPE_2021 = Path(__file__).resolve().parents[2] / "daemon" / "localexchange" / "tape_2021"

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install playwright; .ci/run does it)"
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run does it)"
    ),
]


def _config(
    tmp: Path,
    artifacts: dict[str, Path],
    hook_url: str,
    api_port: int | None = None,
    start: str = "",
    symbols: tuple[str, ...] = (),
    speed: float = SPEED,
    extra: str = "",
) -> tuple[Path, int]:
    """The end-to-end service config at SPEED; `api_port` pins the API (a restart keeps the
    page's URL); `symbols` trades several on the bundled May 2021 tape."""
    cfg, _, port = service_config(tmp, artifacts, hook_url, start=start, stale_after_s=10.0)
    text = cfg.read_text().replace("speed = 60.0", f"speed = {speed}")
    if api_port is not None:
        text = text.replace(f"port = {port}\n", f"port = {api_port}\n")
    if symbols:
        text = text.replace(f'start = "{start}"', f'start = "{start}"\ntape = "{TAPE_2021}"')
        text += f"\n[exchange]\nsymbols = {json.dumps(list(symbols))}\n"
    cfg.write_text(text + extra)
    return cfg, api_port or port


def _demo_config(tmp: Path) -> tuple[Path, int]:
    """The shipped config.toml as test_demo_first_minute runs it, the API on a port of its own."""
    cfg, port = shipped_config(tmp), free_port()
    cfg.write_text(re.sub(r"(?ms)^(\[api\]\n.*?)^port = 0\b", rf"\g<1>port = {port}", cfg.read_text(), count=1))
    return cfg, port


async def _section(page: Any, attr: str) -> str | None:
    return await page.get_attribute(f'section[data-symbol="{SYMBOL}"]', attr)


async def _until(page: Any, attr: str, ok: Any, timeout_s: float) -> str:
    """Poll an attribute of the symbol's section until `ok(value)`."""
    return await _until_attr(page, f'section[data-symbol="{SYMBOL}"]', attr, ok, timeout_s)


def _newest_bar(db: Path) -> int:
    return int(query(db, "SELECT COALESCE(MAX(ts), 0) FROM bars WHERE symbol=? AND timeframe='1m'", (SYMBOL,))[0][0])


@contextlib.asynccontextmanager
async def _session(
    tmp_path: Path, artifacts: dict[str, Path], *, demo: bool = False, **config: Any
) -> AsyncIterator[SimpleNamespace]:
    """A running daemon (ready) and a Chromium page; `run.daemon` may be replaced (restart).
    `demo`: the shipped config.toml (its models, 5 symbols at 6x) instead of the test config."""
    receiver = WebhookReceiver(SECRET)
    await receiver.start()
    cfg, port = _demo_config(tmp_path) if demo else _config(tmp_path, artifacts, receiver.url, **config)
    run = SimpleNamespace(
        daemon=DaemonProcess(cfg, tmp_path, ENV).start(),
        port=port,
        receiver=receiver,
        url=f"http://127.0.0.1:{port}",
        errors=[],
        console=[],
    )
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        run.page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        run.page.on("pageerror", lambda exc: run.errors.append(str(exc)))
        # Every console error counts (a CSP violation is one): the page must load and run clean
        # (_clean() asserts it, up to where a test provokes errors on purpose).
        run.page.on("console", lambda msg: run.console.append(msg.text) if msg.type == "error" else None)
        try:
            await run.daemon.wait_ready()
            yield run
            assert run.errors == [], run.errors
        finally:
            await browser.close()
            run.daemon.close()
            await receiver.stop()


async def test_dashboard_live_in_chromium(tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    db = tmp_path / "state.sqlite"
    async with _session(tmp_path, tiny_artifacts) as run:
        page, url = run.page, run.url
        assert f"sigd dashboard: {url}/" in run.daemon.log_path.read_text()  # what `make run` shows
        await page.goto(url + "/")
        await page.wait_for_selector("#conn:text-is('live')", timeout=15_000)
        await page.wait_for_selector(f'section[data-symbol="{SYMBOL}"][data-bars]', timeout=15_000)
        assert int(await _section(page, "data-bars") or 0) > 100

        await _new_bar_within_one_bar(page, db)
        await _signal_marker_after_decision(page, db, run.daemon)
        _clean(run)  # what follows provokes errors: a refused action (401), a restart (refused connections)
        await _controls(page, url, run.daemon)
        await _screenshot(page)

        # Restart the daemon (the replay resumes after the newest stored bar): the page
        # reconnects by itself and resyncs; every marker once, all of them real rows.
        run.daemon.signal(signal.SIGTERM)
        assert await run.daemon.wait_exit(20) == 0
        await page.wait_for_selector("#conn:text-is('reconnecting')", timeout=10_000)
        newest = _newest_bar(db)
        cfg, _ = _config(tmp_path, tiny_artifacts, run.receiver.url, api_port=run.port, start=_iso(newest + 2 * 60_000 + 30_000))
        run.daemon.close()
        run.daemon = DaemonProcess(cfg, tmp_path, ENV).start()
        await run.daemon.wait_ready()
        await page.wait_for_selector("#conn:text-is('live')", timeout=20_000)
        await _until(page, "data-last-bar", lambda v: int(v) > newest, 20.0)
        await _no_duplicate_markers(page, db)


def _clean(run: SimpleNamespace) -> None:
    """Zero console errors so far (CSP violations, failed loads, script errors)."""
    assert run.console == [], "\n".join(run.console)


async def _new_bar_within_one_bar(page: Any, db: Path) -> None:
    """A bar committed to SQLite shows on the chart within one bar's (wall) time."""
    before = _newest_bar(db)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10 * BAR_WALL_S
    while _newest_bar(db) == before and loop.time() < deadline:
        await asyncio.sleep(0.02)
    stored = _newest_bar(db)
    assert stored > before, "no new bar was stored"
    await _until(page, "data-last-bar", lambda v: int(v) >= stored, BAR_WALL_S)


async def _signal_marker_after_decision(page: Any, db: Path, daemon: DaemonProcess) -> None:
    """The next committed signal appears as a marker on the chart."""
    [[last]] = query(db, "SELECT COALESCE(MAX(id), 0) FROM signals")
    rows = await daemon.wait_for(
        lambda: query(db, "SELECT id FROM signals WHERE id > ? AND symbol=?", (last, SYMBOL)), 60, "a new signal"
    )
    marker = f"signal-{rows[0][0]}"
    await page.wait_for_selector(f'section[data-symbol="{SYMBOL}"][data-marker-ids~="{marker}"]', timeout=5_000)
    why = await page.text_content(f'section[data-symbol="{SYMBOL}"] .why')
    assert why and "bar " in why
    assert await page.locator(f'section[data-symbol="{SYMBOL}"] .decision tr').count() == 3  # header + 2 models


async def _controls(page: Any, url: str, daemon: DaemonProcess) -> None:
    """Pause without the token is refused; with it, it pauses; /flat asks first; cross-origin is refused."""
    pause = page.locator(f'section[data-symbol="{SYMBOL}"] button[data-action="pause"]')
    await pause.click()
    await page.wait_for_selector("#action-log li:has-text('enter the API token first')", timeout=5_000)
    await page.fill("#token", "not-the-token")
    await page.click("#token-form button[type=submit]")
    await pause.click()
    await page.wait_for_selector("#action-log li:has-text('refused (401)')", timeout=5_000)
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/status") as r:
            assert (await r.json())["paused"] is False
        async with http.post(
            url + "/pause", headers={"Authorization": f"Bearer {API_TOKEN}", "Origin": "http://evil.example"}
        ) as r:
            assert r.status == 403
        for path in ("/", "/ui/app.js", "/api/snapshot", "/status"):  # no secret ever reaches the page
            async with http.get(url + path) as r:
                body = await r.text()
                assert r.status == 200 and API_TOKEN not in body and SECRET not in body, path
    await page.fill("#token", API_TOKEN)
    await page.click("#token-form button[type=submit]")
    assert await page.input_value("#token") == ""  # the field does not keep it
    assert API_TOKEN not in page.url
    await pause.click()
    await page.wait_for_selector("#action-log li:has-text('pause ETH/USDT: done')", timeout=5_000)
    await page.wait_for_selector(f'section[data-symbol="{SYMBOL}"][data-paused="true"]', timeout=10 * BAR_WALL_S * 1000)
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/status") as r:
            assert (await r.json())["paused"] is True
    # /flat asks first: dismissed, nothing is sent.
    flat = page.locator(f'section[data-symbol="{SYMBOL}"] button[data-action="flat"]')
    page.once("dialog", lambda d: asyncio.ensure_future(d.dismiss()))
    await flat.click()
    await asyncio.sleep(0.5)
    assert not await page.locator("#action-log li:has-text('flat ETH/USDT')").count()
    page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await flat.click()
    await page.wait_for_selector("#action-log li:has-text('flat ETH/USDT: done')", timeout=5_000)
    await page.locator(f'section[data-symbol="{SYMBOL}"] button[data-action="resume"]').click()
    await page.wait_for_selector(f'section[data-symbol="{SYMBOL}"][data-paused="false"]', timeout=10 * BAR_WALL_S * 1000)


async def _screenshot(page: Any, path: Path | None = None) -> None:
    """Saved for people (CI artifact, or `path`); not blank: many colours, not one flat fill."""
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = await page.screenshot(path=str(path or ARTIFACTS / "dashboard.png"), full_page=True)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50, f"screenshot looks blank: {len(colours)} colours"
    assert max(n for n, _ in colours) < 0.95 * image.width * image.height


async def _no_duplicate_markers(page: Any, db: Path) -> None:
    ids = (await _section(page, "data-marker-ids") or "").split()
    assert ids and len(ids) == len(set(ids))
    rows = await page.eval_on_selector_all(
        f'section[data-symbol="{SYMBOL}"] .markers tr[data-id]', "rows => rows.map(r => r.dataset.id)"
    )
    assert len(rows) == len(set(rows))
    signals = {f"signal-{r[0]}" for r in query(db, "SELECT id FROM signals WHERE symbol=?", (SYMBOL,))}
    fills = {f"fill-{r[0]}" for r in query(db, "SELECT client_order_id FROM fills WHERE symbol=?", (SYMBOL,))}
    assert set(ids) <= signals | fills
    assert len(ids) >= 2 and {i.split("-")[0] for i in ids} == {"signal", "fill"}


def _iso(ts_ms: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_every_symbol_has_its_chart_and_the_timeframe_switches(tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    async with _session(tmp_path, tiny_artifacts, start="2021-05-19T12:00:00Z", symbols=("ETH/USDT", "LTC/USDT")) as run:
        page = run.page
        await page.goto(run.url + "/")
        for symbol in ("ETH/USDT", "LTC/USDT"):
            await page.wait_for_selector(f'section[data-symbol="{symbol}"][data-bars]', timeout=15_000)
        ltc = 'section[data-symbol="LTC/USDT"]'
        minute = int(await page.get_attribute(ltc, "data-last-bar") or 0)
        assert minute > 0
        await page.click(".tf button[data-tf='1h']")
        await page.wait_for_selector(".tf button.on[data-tf='1h']")
        loop = asyncio.get_running_loop()
        deadline, last = loop.time() + 10, minute
        # Read the hour chart's bar only once the section says it shows 1h bars: until it has
        # redrawn, data-last-bar is still the minute chart's, and the 12:00 minute bar is on the hour.
        while loop.time() < deadline and not (
            last != minute and last % 3_600_000 == 0 and "1h bar" in (await page.text_content(f"{ltc} .last-bar") or "")
        ):
            last = int(await page.get_attribute(ltc, "data-last-bar") or 0)
            await asyncio.sleep(0.1)
        assert last % 3_600_000 == 0 and last <= minute, (last, minute)  # the newest hour bar
        assert "1h bar" in (await page.text_content(f"{ltc} .last-bar") or "")
        assert await page.locator("#streams tr").count() >= 1 + 2 * 4  # both symbols' four streams
        _clean(run)


async def test_a_control_shows_on_the_page_at_once(tmp_path: Path, tiny_artifacts: dict[str, Path]) -> None:
    """Real time (1x), started 58 s before the next 1m close: no bar and no decision can
    refresh the page meanwhile, so the PAUSED badge comes from the control's own event."""
    async with _session(tmp_path, tiny_artifacts, start="2021-05-19T12:00:02Z", speed=1.0, symbols=(SYMBOL,)) as run:
        page = run.page
        await page.goto(run.url + "/")
        await page.wait_for_selector(f'section[data-symbol="{SYMBOL}"][data-paused="false"]', timeout=15_000)
        last_bar = await _section(page, "data-last-bar")
        await page.fill("#token", API_TOKEN)
        await page.click("#token-form button[type=submit]")
        await page.locator(f'section[data-symbol="{SYMBOL}"] button[data-action="pause"]').click()
        await page.wait_for_selector("#action-log li:has-text('pause ETH/USDT: done')", timeout=5_000)
        await page.wait_for_selector(f'section[data-symbol="{SYMBOL}"][data-paused="true"]', timeout=2_000)
        assert await page.text_content(f'section[data-symbol="{SYMBOL}"] .flags') == "PAUSED"
        await page.locator(f'section[data-symbol="{SYMBOL}"] button[data-action="resume"]').click()
        await page.wait_for_selector(f'section[data-symbol="{SYMBOL}"][data-paused="false"]', timeout=2_000)
        assert await _section(page, "data-last-bar") == last_bar  # no bar came: the controls did it
        _clean(run)


async def _attr(page: Any, selector: str, attr: str) -> str:
    return await page.get_attribute(selector, attr) or ""


async def _until_attr(page: Any, selector: str, attr: str, ok: Any, timeout_s: float) -> str:
    """Poll an attribute until `ok(value)` (the page's CSP forbids Playwright's string-eval
    waits, and that is how it ships)."""
    loop = asyncio.get_running_loop()
    deadline, value = loop.time() + timeout_s, ""
    while loop.time() < deadline:
        value = await _attr(page, selector, attr)
        if value and ok(value):
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{selector} {attr} = {value!r} after {timeout_s}s")


async def _ledger_equity(page: Any, book: str) -> str:
    return await page.text_content(f"#ledgers tr:has(td:text-is('{book}')) td:nth-child(2)") or ""


async def test_the_demo_shows_the_shadow_ledgers_and_a_moving_equity_chart(
    tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    """`make run`'s config: the models fail the gate and place no order, yet within 60 s of the
    start the page shows every shadow ledger beside always-flat and buy-and-hold, their equity
    moving, and an equity chart that is not empty and extends with the bars."""
    async with _session(tmp_path, tiny_artifacts, demo=True) as run:
        page = run.page
        loop = asyncio.get_running_loop()
        started = loop.time()
        await page.goto(run.url + "/")
        await page.wait_for_selector("#conn:text-is('live')", timeout=30_000)
        books = ("mtf_transformer", "cnn_lstm_attn", "always_flat", "buy_and_hold")
        await _until_attr(page, "#ledgers", "data-books", lambda v: set(books) <= set(v.split()), 60.0)
        first = await _ledger_equity(page, "buy_and_hold")
        points = int(await _until_attr(page, "#equity", "data-points", lambda v: int(v) >= 1, 10.0))
        await _until_attr(page, "#equity", "data-points", lambda v: int(v) > points, 30.0)  # the line extends
        await _until_attr(page, "#ledger-chart", "data-points", lambda v: int(v) >= 3, 30.0)
        deadline = loop.time() + 30.0
        while await _ledger_equity(page, "buy_and_hold") == first and loop.time() < deadline:
            await asyncio.sleep(0.2)
        assert await _ledger_equity(page, "buy_and_hold") != first, "the buy-and-hold ledger did not move"
        assert loop.time() - started < 90.0  # page load included; the daemon's first cycles come within 60 s
        assert float(await _attr(page, "#equity", "data-last")) == pytest.approx(10_000.0, abs=1e-6)  # no order
        assert await page.locator("#ledgers tr").count() == 1 + len(books)
        assert "per-symbol strategies" in (await page.text_content("#rebalance-summary") or "")
        assert await page.locator("#weights tr").count() == 1 + 5
        header = await page.text_content("#models tr")
        assert header and "hit rate @ horizon" in header and "base rate" in header and "always-FLAT" in header
        _clean(run)
        await _screenshot(page, DOCS_SCREENSHOT if os.environ.get("SIGD_RETAKE_DOCS_SCREENSHOT") else None)


PORTFOLIO_1M = """
[engine]
strategies = ["portfolio"]

[portfolio]
decision_timeframe = "1m"
top_k = 2
max_weight = 0.45
gross_cap = 0.9
net_cap = 0.9
"""


async def test_a_portfolio_shows_target_vs_actual_weights_and_its_orders_reasons(
    tmp_path: Path, tiny_artifacts: dict[str, Path]
) -> None:
    """The portfolio strategy deciding every 1m bar (the always-LONG test model trades): the
    Book panel shows each symbol's target beside its actual weight, and the rebalancing orders
    with the target weight their signal gave as the reason."""
    async with _session(
        tmp_path, tiny_artifacts, start="2021-05-19T12:00:00Z", symbols=("ETH/USDT", "LTC/USDT"), extra=PORTFOLIO_1M
    ) as run:
        page = run.page
        await page.goto(run.url + "/")
        await page.wait_for_selector("#conn:text-is('live')", timeout=15_000)
        await _until_attr(page, "#weights", "data-targets", lambda v: int(v) == 2, 60.0)
        await _until_attr(page, "#orders", "data-count", lambda v: int(v) >= 2, 60.0)
        assert "portfolio strategy, decides every 1m" in (await page.text_content("#rebalance-summary") or "")
        for symbol in ("ETH/USDT", "LTC/USDT"):
            cells = await page.locator(f"#weights tr:has(td:text-is('{symbol}')) td").all_text_contents()
            assert float(cells[1]) == pytest.approx(0.45, abs=1e-6), cells  # target: the capped weight
        # Once filled, the actual weights sit near the targets (the marks move them a little).
        loop = asyncio.get_running_loop()
        deadline, actual = loop.time() + 30.0, [0.0]
        while loop.time() < deadline:
            actual = [
                float((await page.locator(f"#weights tr:has(td:text-is('{s}')) td").all_text_contents())[2])
                for s in ("ETH/USDT", "LTC/USDT")
            ]
            if all(abs(a - 0.45) < 0.05 for a in actual):
                break
            await asyncio.sleep(0.2)
        assert all(abs(a - 0.45) < 0.05 for a in actual), actual
        reasons = await page.locator("#orders td.reason").all_text_contents()
        assert any("target weight +0.4500" in r for r in reasons), reasons
        assert "portfolio" in (await page.locator("#orders tr:nth-child(2) td:nth-child(8)").text_content() or "")
        _clean(run)
