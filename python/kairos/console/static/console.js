// The Kairos console page: renders the state the server pushes (server-sent events on /events).
// Every value is inserted as text (textContent), never as HTML.
"use strict";

const SOURCE_NAMES = { execution: "execution", reports: "execution report stream", inference: "inference", nats: "NATS" };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function num(v, digits) {
  if (v == null || Number.isNaN(v)) return "-";
  return Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function signed(v) {
  return el("span", { class: v > 0 ? "pos" : v < 0 ? "neg" : "" }, num(v, 2));
}

function time(us) {
  if (!us) return "-";
  return new Date(us / 1000).toISOString().replace("T", " ").slice(0, 19);
}

function us(v) {
  if (v == null || Number.isNaN(v)) return "-";
  return v >= 10000 ? `${num(v / 1000, 1)} ms` : `${num(v, 0)} µs`;
}

function table(headers, rows, numeric) {
  if (!rows.length) return el("p", { class: "empty" }, "none");
  const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
  const body = rows.map((r) => el("tr", {}, ...r.map((c, i) => el("td", numeric && numeric.includes(i) ? { class: "num" } : {}, c))));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function fill(id, node) {
  const body = document.querySelector(`#${id} .body`);
  body.replaceChildren(node);
}

function renderSources(s) {
  for (const panel of document.querySelectorAll("[data-source]")) {
    const src = s.sources[panel.dataset.source];
    const down = panel.querySelector(".down");
    down.textContent = src && !src.ok ? `${SOURCE_NAMES[panel.dataset.source]} unavailable: ${src.error}` : "";
    panel.classList.toggle("is-down", Boolean(src && !src.ok));
  }
}

function renderHealth(s) {
  const rows = Object.entries(s.health).map(([name, state]) => [name, el("span", { class: state }, state)]);
  const nats = s.sources.nats;
  rows.push(["nats", el("span", { class: nats.ok ? "SERVING" : "UNREACHABLE" }, nats.ok ? "CONNECTED" : "UNREACHABLE")]);
  rows.push(["console", el("span", { class: "SERVING" }, "SERVING")]);
  fill("panel-health", table(["service", "health"], rows));
  const down = Object.entries(s.health).filter(([, st]) => st !== "SERVING").map(([n, st]) => `${n} ${st}`);
  document.querySelector("#panel-health .down").textContent = down.length ? `down: ${down.join(", ")}` : "";
}

function renderState(s) {
  const badge = document.getElementById("trading-state");
  badge.textContent = s.trading_state;
  badge.className = `state ${s.trading_state}`;
  document.getElementById("trading-reason").textContent = s.trading_reason ? `trading state: ${s.trading_reason}` : "";
}

function renderPnl(s) {
  const figs = document.querySelector("#panel-pnl .figures");
  figs.replaceChildren(
    el("div", {}, "realized", el("b", { id: "pnl-realized" }, signed(s.pnl.realized))),
    el("div", {}, "unrealized", el("b", { id: "pnl-unrealized" }, signed(s.pnl.unrealized))),
    el("div", {}, "total", el("b", { id: "pnl-total" }, signed(s.pnl.total))),
    el("div", {}, "ticks seen", el("b", { id: "ticks" }, num(s.ticks, 0))),
  );
  const svg = document.getElementById("equity");
  const pts = s.equity;
  const NS = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  if (pts.length < 2) return;
  const t0 = pts[0][0], t1 = pts[pts.length - 1][0] || t0 + 1;
  let lo = Math.min(0, ...pts.map((p) => p[1])), hi = Math.max(0, ...pts.map((p) => p[1]));
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => ((t - t0) / Math.max(t1 - t0, 1e-9)) * 300;
  const y = (v) => 100 - ((v - lo) / (hi - lo)) * 100;
  const zero = document.createElementNS(NS, "line");
  zero.setAttribute("x1", "0"); zero.setAttribute("x2", "300");
  zero.setAttribute("y1", String(y(0))); zero.setAttribute("y2", String(y(0)));
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("points", pts.map((p) => `${x(p[0]).toFixed(2)},${y(p[1]).toFixed(2)}`).join(" "));
  svg.append(zero, line);
}

function renderPositions(s) {
  const rows = s.positions.map((p) => [p.symbol, num(p.net, 2), num(p.avg_price, 5), signed(p.realized), signed(p.unrealized), p.currency]);
  fill("panel-positions", table(["symbol", "net lots", "avg price", "realized", "unrealized", "ccy"], rows, [1, 2, 3, 4]));
}

function renderOrders(s) {
  const rows = s.orders.map((o) => [o.id, o.symbol, o.side, o.type, num(o.quantity, 2), num(o.filled, 2), o.price ? num(o.price, 5) : "market", o.status]);
  fill("panel-orders", table(["order", "symbol", "side", "type", "lots", "filled", "price", "status"], rows, [4, 5, 6]));
}

function renderFills(s) {
  const rows = s.fills.slice(0, 12).map((f) => [time(f.time_us), f.symbol, el("span", { class: f.side === "BUY" ? "pos" : "neg" }, f.side), num(f.quantity, 2), num(f.price, 5), f.model]);
  const counts = Object.entries(s.reports).map(([k, v]) => `${k} ${v}`).join(" · ");
  const wrap = el("div", {}, el("p", { class: "empty", id: "report-counts" }, counts || "no execution reports yet"), table(["time (UTC)", "symbol", "side", "lots", "price", "model"], rows, [3, 4]));
  fill("panel-fills", wrap);
}

function renderSignals(s) {
  const rows = s.signals.slice(0, 12).map((g) => [time(g.time_msc * 1000), g.symbol, el("span", { class: g.direction }, g.direction), num(g.strength, 3), g.model]);
  fill("panel-signals", table(["market time (UTC)", "symbol", "direction", "strength", "model"], rows, [3]));
}

function bp(v) {
  if (v == null || Number.isNaN(v)) return "-";
  return `${v > 0 ? "+" : ""}${num(v * 1e4, 1)} bp`;
}

// One served model as a card (readable on a phone): who it is and its gate verdict, the card's
// out-of-sample figures, the live paper figures since it was loaded, and drift against its card.
function modelCard(m) {
  const kv = (label, value, key) => [el("dt", {}, label), el("dd", key ? { "data-k": key } : {}, value)];
  const section = (title, body) => el("div", { class: "msec" }, el("h3", {}, title), body);
  const head = el("div", { class: "mhead" },
    el("span", { class: `role ${m.role}` }, m.role === "serving" ? "serving" : "challenger · shadow"),
    el("b", { class: "mname" }, m.name ? `${m.name} ${m.version}` : m.source),
    el("span", { class: m.state }, m.state),
    el("span", { class: `badge ${m.gate}`, "data-gate": m.gate }, m.gate),
    m.expired ? el("span", { class: "badge FAILED", "data-expired": "true" }, "EXPIRED") : "");
  const validation = el("dl", {},
    ...kv("net Sharpe [interval]", m.sharpe, "oos-sharpe"),
    ...kv("DSR / trials", m.deflated_sharpe == null ? "-" : `${num(m.deflated_sharpe, 3)} / ${m.n_trials}`),
    ...kv("net return", bp(m.net_return)));
  const sh = m.shadow;
  const paper = sh ? el("dl", {},
    ...kv("bars", num(sh.bars, 0), "bars"),
    ...kv("net return", el("span", { class: sh.net_return > 0 ? "pos" : sh.net_return < 0 ? "neg" : "" }, bp(sh.net_return)), "net"),
    ...kv("Sharpe", num(sh.sharpe, 2), "sharpe"),
    ...kv("turnover / bar", num(sh.turnover, 3), "turnover"),
    ...kv("trades", num(sh.trades, 0), "trades"))
    : el("p", { class: "empty", "data-k": "no-shadow" }, "shadow evaluation is off (kairos-inference --shadow-models)");
  const d = m.drift;
  const drift = d ? el("dl", {},
    ...kv("DI last / threshold", el("span", { class: d.di_last > d.di_threshold ? "neg" : "" }, `${num(d.di_last, 2)} / ${num(d.di_threshold, 2)}`), "di"),
    ...kv("out of distribution", num(d.ood, 0), "ood"),
    ...kv("abstained", num(d.abstained, 0), "abstained"),
    ...kv("max PSI", d.psi_max_feature ? el("span", { class: d.psi_max > 0.25 ? "neg" : "" }, `${num(d.psi_max, 2)} ${d.psi_max_feature}`) : "-", "psi"))
    : el("p", { class: "empty", "data-k": "no-drift" }, "no drift figures: the model card carries no training distribution");
  const sections = [section("validation (card, out of sample)", validation), section("live on paper", paper), section("drift", drift)];
  const p = m.promotion;
  if (p) {
    sections.push(section("promotion test", el("dl", {},
      ...kv("bars", num(p.bars, 0)), ...kv("mean diff / bar", bp(p.mean_difference)),
      ...kv("p-value", num(p.p_value, 3), "p-value"),
      ...kv("significant", el("span", { class: p.significant ? "PASSED" : "" }, p.significant ? "yes" : "no")))));
  }
  const foot = [`predictions ${num(m.predictions, 0)}`, m.loaded_us ? `loaded ${time(m.loaded_us)}` : "",
    m.created_us ? `registered ${time(m.created_us)}` : "", m.source].filter(Boolean).join(" · ");
  return el("article", { class: `model ${m.role}`, "data-role": m.role, "data-version": m.version },
    head, el("div", { class: "msecs" }, ...sections), el("p", { class: "mfoot" }, foot));
}

function renderModels(s) {
  if (!s.models.length) { fill("panel-models", el("p", { class: "empty" }, "no model is served")); return; }
  const notes = s.models.filter((m) => m.name && m.gate !== "PASSED").map((m) =>
    el("p", { class: `verdict ${m.gate}` }, `${m.name} ${m.version} is not a validated model: ${m.verdict || "its model card carries no gate verdict: nobody validated it"}`));
  const passed = s.models.filter((m) => m.gate === "PASSED").map((m) => el("p", { class: "verdict" }, `${m.name} ${m.version}: ${m.verdict}`));
  const errors = s.models.filter((m) => m.last_error).map((m) => el("p", { class: "error" }, `${m.name || m.source}: last load failed: ${m.last_error}`));
  fill("panel-models", el("div", {}, el("div", { class: "models" }, ...s.models.map(modelCard)), ...notes, ...passed, ...errors));
}

function renderLatency(s) {
  if (!s.latency.length) { fill("panel-latency", el("p", { class: "empty" }, "no hop stamps yet (orders from signals carry them)")); return; }
  const end = Math.max(...s.latency.map((h) => h.start_us + Math.max(h.p50_us, h.p99_us)), 1);
  const pct = (v) => `${Math.max(0, Math.min(100, (v / end) * 100)).toFixed(3)}%`;
  const grid = el("div", { class: "wf" });
  for (const h of s.latency) {
    const track = el("div", { class: "track" });
    const p99 = el("div", { class: "p99" }); p99.style.left = pct(h.start_us); p99.style.width = pct(h.p99_us);
    const p50 = el("div", { class: "p50" }); p50.style.left = pct(h.start_us); p50.style.width = pct(h.p50_us);
    track.append(p99, p50);
    grid.append(el("div", { class: "label", title: h.hop }, h.hop.replace("->", " → ")), track,
      el("div", { class: "nums" }, `p50 ${us(h.p50_us)} · p99 ${us(h.p99_us)} · n ${h.n}`));
  }
  const total = s.latency.reduce((a, h) => a + h.p50_us, 0);
  fill("panel-latency", el("div", {}, grid, el("p", { class: "empty" }, `sum of p50s, tick to venue ack: ${us(total)}`)));
}

function render(s) {
  renderState(s); renderSources(s); renderHealth(s); renderPnl(s); renderPositions(s); renderOrders(s);
  renderFills(s); renderSignals(s); renderModels(s); renderLatency(s);
  document.getElementById("updated").textContent = `updated ${new Date(s.time * 1000).toISOString().slice(11, 19)} UTC · version ${s.version}`;
  document.body.dataset.version = String(s.version);
}

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("/events");
  es.addEventListener("state", (ev) => {
    conn.textContent = "live"; conn.className = "conn";
    render(JSON.parse(ev.data));
  });
  es.onerror = async () => {
    conn.textContent = "console unreachable, reconnecting…"; conn.className = "conn bad";
    try {
      const r = await fetch("/api/state", { credentials: "same-origin" });
      if (r.status === 401) { es.close(); window.location.href = "/login"; }
    } catch (e) { /* the console itself is down; EventSource keeps retrying */ }
  };
}

function setupKill() {
  const dialog = document.getElementById("kill-dialog");
  const err = document.getElementById("kill-error");
  document.getElementById("kill").addEventListener("click", () => { err.textContent = ""; dialog.showModal(); });
  document.getElementById("kill-confirm").addEventListener("click", async () => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    try {
      const r = await fetch("/api/kill", {
        method: "POST", credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify({ confirm: "HALT", reason: "kill switch (console)" }),
      });
      const body = await r.json();
      if (!r.ok) { err.textContent = body.error || `HTTP ${r.status}`; return; }
      renderState({ trading_state: body.current, trading_reason: "kill switch (console)" });
      dialog.close();
    } catch (e) { err.textContent = `the console did not answer: ${e}`; }
  });
}

document.addEventListener("DOMContentLoaded", () => { setupKill(); connect(); });
