// sigd dashboard: a snapshot from the read model, then live events over /ws/events.
// Everything shown is set with textContent (never innerHTML): no data can become markup.
// The API token lives in this tab's sessionStorage and travels only in the Authorization header.
// Beyond loopback the data itself is private: the page opens a session with the token (an
// HttpOnly, same-site cookie, POST /session) before it connects; a websocket cannot send a header.
"use strict";

const LC = window.LightweightCharts;
const TF_MS = { "1m": 60000, "1h": 3600000, "1d": 86400000 };
const view = { tf: "1m", ws: null, retryMs: 500, symbols: new Map() };

// --- small DOM helpers ---------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "text") node.textContent = v;
    else if (k === "cls") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c);
  return node;
}

function table(container, headers, rows) {
  const t = el("table", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h }))));
  for (const r of rows) t.append(el("tr", {}, ...r.map((c) => el("td", { text: c == null ? "-" : String(c) }))));
  container.replaceChildren(t);
}

const fmt = (v, d = 4) => (typeof v === "number" ? v.toFixed(d) : v == null ? "-" : String(v));
const iso = (ms) => (typeof ms === "number" ? new Date(ms).toISOString().replace(".000", "") : "-");
const barTime = (ms) => Math.floor(ms / TF_MS[view.tf]) * TF_MS[view.tf] / 1000;

// --- one symbol: chart, markers, levels, decision, controls -------------------------------

function symbolView(symbol) {
  if (view.symbols.has(symbol)) return view.symbols.get(symbol);
  const chartBox = el("div", { cls: "chart" });
  const box = el("section", { cls: "panel symbol", "data-symbol": symbol },
    el("div", { cls: "row" }, el("h3", { text: symbol }), el("span", { cls: "badge flags" }),
      el("span", { cls: "last-bar" }),
      ...["pause", "resume", "flat"].map((a) => el("button", {
        type: "button", text: a, cls: a === "flat" ? "danger" : "", "data-action": a, "data-symbol": symbol }))),
    chartBox, el("p", { cls: "position" }), el("p", { cls: "why" }), el("div", { cls: "decision" }),
    el("div", { cls: "markers" }));
  document.getElementById("symbols").append(box);
  const chart = LC.createChart(chartBox, {
    autoSize: true, layout: { background: { color: "#161b24" }, textColor: "#c9d1e0" },
    grid: { vertLines: { color: "#202735" }, horzLines: { color: "#202735" } },
    timeScale: { timeVisible: true, secondsVisible: false },
  });
  const series = chart.addSeries(LC.CandlestickSeries, {});
  const v = { box, chart, series, markerApi: LC.createSeriesMarkers(series, []), markers: new Map(),
              lines: [], lastTime: 0, bars: 0 };
  view.symbols.set(symbol, v);
  return v;
}

function setChart(symbol, chart) {
  const v = symbolView(symbol);
  const bars = chart.bars.map((b) => ({ time: b.ts / 1000, open: b.open, high: b.high, low: b.low, close: b.close }));
  v.series.setData(bars);
  v.bars = bars.length;
  v.lastTime = bars.length ? bars[bars.length - 1].time : 0;
  v.markers = new Map(chart.markers.map((m) => [m.id, m]));  // a resync replaces, never appends
  drawMarkers(symbol);
  showLastBar(v);
}

function addBar(e) {
  const v = view.symbols.get(e.symbol);
  if (!v || e.timeframe !== view.tf) return;
  const time = e.ts / 1000;
  if (time < v.lastTime) return;  // older than the chart's newest: the next resync has it
  if (time > v.lastTime) v.bars += 1;
  v.series.update({ time, open: e.open, high: e.high, low: e.low, close: e.close });
  v.lastTime = time;
  showLastBar(v);
}

function showLastBar(v) {
  v.box.dataset.lastBar = String(v.lastTime * 1000);
  v.box.dataset.bars = String(v.bars);
  v.box.querySelector(".last-bar").textContent = `last ${view.tf} bar ${iso(v.lastTime * 1000)}`;
}

function addMarker(symbol, marker) {
  const v = view.symbols.get(symbol);
  if (!v) return;
  v.markers.set(marker.id, marker);  // the same id twice (event + resync) is one marker
  drawMarkers(symbol);
}

function drawMarkers(symbol) {
  const v = view.symbols.get(symbol);
  const list = [...v.markers.values()].sort((a, b) => a.ts - b.ts);
  v.markerApi.setMarkers(list.map((m) => m.kind === "signal" ? {
    time: barTime(m.ts), position: m.side === "SHORT" ? "aboveBar" : "belowBar",
    color: m.side === "LONG" ? "#26a69a" : m.side === "SHORT" ? "#ef5350" : "#b0b7c3",
    shape: m.side === "LONG" ? "arrowUp" : m.side === "SHORT" ? "arrowDown" : "circle", text: m.side[0],
  } : {
    time: barTime(m.ts), position: "inBar", color: "#f0c14b", shape: "square",
    text: `${m.side} ${fmt(m.price, 2)}`,
  }));
  v.box.dataset.markerIds = list.map((m) => m.id).join(" ");
  table(v.box.querySelector(".markers"), ["time", "what", "side", "price"],
    list.slice(-8).reverse().map((m) => [iso(m.ts), m.kind, m.side, fmt(m.price, 2)]));
  for (const [i, row] of [...v.box.querySelectorAll(".markers tr")].slice(1).entries()) {
    row.dataset.id = list[list.length - 1 - i].id;
  }
}

function setSymbolState(symbol, s) {
  const v = symbolView(symbol);
  const flags = v.box.querySelector(".flags");
  flags.textContent = s.halted ? "HALTED" : s.paused ? "PAUSED" : "trading";
  flags.className = `badge flags ${s.halted || s.paused ? "warn" : "ok"}`;
  v.box.dataset.paused = String(Boolean(s.paused));
  const p = s.position || {};
  v.box.querySelector(".position").textContent =
    `position ${fmt(p.amount, 6)} @ ${fmt(p.entry_price, 2)}  stop ${fmt(p.stop, 2)}  take ${fmt(p.take, 2)}` +
    `  net PnL ${fmt(p.net_pnl)} (fees ${fmt(p.fees)})`;
  for (const line of v.lines) v.series.removePriceLine(line);
  v.lines = [["stop", p.stop, "#ef5350"], ["take", p.take, "#26a69a"], ["entry", p.amount ? p.entry_price : null, "#8b98ad"]]
    .filter(([, price]) => typeof price === "number")
    .map(([title, price, color]) => v.series.createPriceLine({ price, color, title, lineStyle: 2 }));
  const d = s.decision;
  v.box.querySelector(".why").textContent = d ? `bar ${iso(d.bar_ts)}: ${d.why}` : "no decision yet";
  table(v.box.querySelector(".decision"), ["model", "P(short)", "P(flat)", "P(long)", "side", "confidence", "threshold"],
    Object.entries((d && d.models) || {}).map(([name, m]) =>
      [name, fmt(m.probs[0]), fmt(m.probs[1]), fmt(m.probs[2]), m.side, fmt(m.confidence), fmt(m.threshold)]));
}

// --- portfolio and health -----------------------------------------------------------------

let equity = null;

function setState(msg) {
  document.getElementById("mode").textContent = msg.mode;
  for (const [symbol, s] of Object.entries(msg.symbols)) setSymbolState(symbol, s);
  const pf = msg.portfolio;
  const halted = Object.entries(pf.halted).filter(([, h]) => h).map(([s]) => s);
  document.getElementById("portfolio-summary").textContent =
    `equity ${fmt(pf.equity, 2)}  net PnL ${fmt(pf.net_pnl)}  fees ${fmt(pf.pnl.fees)}  fills ${pf.pnl.fills}` +
    `  drawdown ${fmt(pf.drawdown * 100, 2)}%  halt ${halted.length ? halted.join(", ") : "none"}`;
  table(document.getElementById("positions"), ["symbol", "amount", "entry", "last", "unrealized", "realized", "fees"],
    pf.positions.map((p) => [p.symbol, fmt(p.amount, 6), fmt(p.entry_price, 2), fmt(p.last_price, 2),
      fmt(p.unrealized_pnl), fmt(p.realized_pnl), fmt(p.fees)]));
  drawEquity(pf);
  const h = msg.health;
  table(document.getElementById("streams"), ["stream", "last bar", "age s", "degraded", "reconnects", "backfilled", "dropped"],
    Object.entries(h.streams).map(([n, s]) => [n, iso(s.last_bar_ts), fmt(s.age_s, 1), s.degraded ? "DEGRADED" : "ok",
      s.reconnects, s.backfilled_bars, s.dropped_frames]));
  table(document.getElementById("outbox"), ["channel", "pending", "dead letters"],
    Object.entries(h.outbox).map(([c, d]) => [c, d.pending, d.dead]));
  table(document.getElementById("models"), ["model", "version", "state", "threshold", "live hit rate", "calls"],
    h.models.map((m) => [m.name, m.version, m.state, fmt(m.threshold), fmt(m.live.hit_rate, 3), m.live.calls]));
  table(document.getElementById("retrain"), ["retrain: model", "version", "status", "when", "scores"],
    h.retrain_history.map((r) => [r.name, r.version, r.status, iso(r.created_ms), JSON.stringify(r.metrics)]));
}

function drawEquity(pf) {
  if (!equity) {
    const chart = LC.createChart(document.getElementById("equity"), {
      autoSize: true, layout: { background: { color: "#161b24" }, textColor: "#c9d1e0" },
      grid: { vertLines: { visible: false }, horzLines: { color: "#202735" } }, timeScale: { timeVisible: true } });
    equity = chart.addSeries(LC.LineSeries, { color: "#3a9ad9", lineWidth: 2 });
  }
  const byTime = new Map();  // one point per second: the chart needs strictly rising times
  for (const p of pf.equity_curve) byTime.set(Math.floor(p.ts / 1000), p.equity);
  equity.setData([...byTime].sort((a, b) => a[0] - b[0]).map(([time, value]) => ({ time, value })));
}

// --- the live stream ----------------------------------------------------------------------

function onMessage(msg) {
  switch (msg.kind) {
    case "batch": for (const e of msg.events) onMessage(e); break;  // events that queued up meanwhile
    case "snapshot":
      for (const [symbol, s] of Object.entries(msg.symbols)) setChart(symbol, s.chart);
      setState(msg);
      break;
    case "state": setState(msg); break;
    case "bar_closed": addBar(msg); break;
    case "signal":
      addMarker(msg.symbol, { id: `signal-${msg.signal_id}`, kind: "signal", ts: msg.bar_ts, side: msg.side,
                              price: msg.price });
      break;
    case "fill":
      addMarker(msg.symbol, { id: `fill-${msg.client_order_id}`, kind: "fill", ts: msg.ts, side: msg.side,
                              price: msg.price });
      break;
    default: break;  // the `state` that follows shows the rest
  }
}

async function sessionNeeded() {
  // True when the data needs a session this page does not have yet (the API is beyond loopback).
  try {
    const r = await fetch("/session");
    const s = await r.json();
    return s.required && !s.active;
  } catch (err) {
    return false;  // the server is down: connect() retries
  }
}

async function openSession(token) {
  const r = await fetch("/session", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  return r.ok;
}

async function start() {
  const conn = document.getElementById("conn");
  const token = sessionStorage.getItem("sigd.token");
  if (await sessionNeeded() && !(token && await openSession(token))) {
    conn.textContent = "enter the API token to see the data"; conn.className = "badge bad";
    return;  // the token form calls start() again
  }
  if (!view.ws) connect();
}

function connect() {
  const conn = document.getElementById("conn");
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/events?tf=${view.tf}`);
  view.ws = ws;
  ws.onopen = () => { conn.textContent = "live"; conn.className = "badge ok"; view.retryMs = 500; };
  ws.onmessage = (ev) => { if (ws === view.ws) onMessage(JSON.parse(ev.data)); };
  ws.onclose = () => {
    if (ws !== view.ws) return;  // replaced on purpose (timeframe switch)
    conn.textContent = "reconnecting"; conn.className = "badge bad";
    view.ws = null;
    setTimeout(start, view.retryMs);  // the next snapshot resyncs everything (a new session if needed)
    view.retryMs = Math.min(view.retryMs * 2, 5000);
  };
}

// --- controls -----------------------------------------------------------------------------

function logAction(text) {
  const log = document.getElementById("action-log");
  log.prepend(el("li", { text: `${new Date().toISOString().slice(11, 19)} ${text}` }));
}

async function act(action, symbol) {
  const token = sessionStorage.getItem("sigd.token");
  const what = symbol || "all symbols";
  if (!token) { logAction(`${action} ${what}: enter the API token first`); return; }
  if (action === "flat" && !window.confirm(`Close the position of ${what} now, at the next price?`)) return;
  const url = `/${action}` + (symbol ? `?symbol=${encodeURIComponent(symbol)}` : "");
  try {
    const r = await fetch(url, { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    const body = await r.json();
    logAction(`${action} ${what}: ${r.ok ? "done" : `refused (${r.status}) ${body.error || ""}`}`);
  } catch (err) {
    logAction(`${action} ${what}: failed (${err})`);
  }
}

function showToken() {
  document.getElementById("token-state").textContent = sessionStorage.getItem("sigd.token") ? "token set" : "no token";
}

document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  if (b.dataset.action) act(b.dataset.action, b.dataset.symbol || null);
  if (b.dataset.tf && b.dataset.tf !== view.tf) {
    view.tf = b.dataset.tf;
    for (const x of document.querySelectorAll(".tf button")) x.classList.toggle("on", x === b);
    const old = view.ws;
    connect();  // the new socket's snapshot carries this timeframe's charts
    if (old) old.close();
  }
});
document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = document.getElementById("token");
  if (input.value) sessionStorage.setItem("sigd.token", input.value);
  input.value = "";
  showToken();
  if (!view.ws) start();
});
document.getElementById("forget").addEventListener("click", () => {
  sessionStorage.removeItem("sigd.token");
  fetch("/session", { method: "DELETE" });
  showToken();
});

showToken();
start();
