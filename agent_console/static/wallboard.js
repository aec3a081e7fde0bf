// Switchboard wallboard: the supervisors' live state and balancing actions over the console's
// WebSocket (protocol v1, docs/console-protocol.md "Supervision"). Plain DOM and SVG drawn here, no
// library; text only ever set with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "switchboard.wallboard.token";
const TICK_MS = 1000;
const state = { ws: null, cfg: null, token: null, nextId: 1, retry: 0, live: null,
  skew: 0, pending: new Map(), sub: null };
const PRESENCE_LABEL = { available: "Available", busy: "Busy", wrap_up: "Wrap-up",
  break: "On break", offline: "Offline", not_responding: "Not responding" };
const CHANNEL_LABEL = { email: "E-mail", phone: "Phone" };

// ------------------------------------------------------------------ helpers

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function serverNow() { return Date.now() / 1000 + state.skew; }
function age(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  let s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(s / 3600); s -= h * 3600;
  if (h < 48) return `${h}h ${String(Math.floor(s / 60)).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}
function ageShort(seconds) {
  // For the big figures: at most 5 characters (45s, 12:03, 3h12, 2d 3h).
  if (seconds == null || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  const h = Math.floor(s / 3600);
  if (h < 48) return `${h}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}`;
  return `${Math.floor(h / 24)}d`;
}
function pct(x) { return x == null ? "–" : `${Math.round(x * 100)}%`; }
function hour(t) { const d = new Date(t * 1000); return `${String(d.getHours()).padStart(2, "0")}h`; }
function toast(text, bad) {
  const t = $("toast"); t.textContent = text; t.className = bad ? "toast bad" : "toast"; t.hidden = false;
  clearTimeout(toast.h); toast.h = setTimeout(() => { t.hidden = true; }, 4000);
}
function link(on, text) { const l = $("link"); l.className = on ? "link on" : "link off"; l.textContent = text; }
function send(type, fields, done) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) { toast("Not connected", true); return; }
  const id = state.nextId++;
  if (done) state.pending.set(id, done);
  state.ws.send(JSON.stringify(Object.assign({ type, id }, fields || {})));
}
function slug(s) { return String(s).replace(/[^A-Za-z0-9_-]/g, "_"); }

// ------------------------------------------------------------------ connection

async function boot() {
  state.cfg = await (await fetch("/console/config.json")).json();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) { state.token = saved; connect(); }
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    $("login-error").textContent = "";
    connect();
  });
  wireActions();
  setInterval(tick, TICK_MS);
  tick();
}

function signedOut(text) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("login").hidden = false; $("board").hidden = true;
  document.body.classList.remove("on-board");
  $("report-link").hidden = true; $("balancing-toggle").hidden = true;
  toggleBalancing(false); closeReport();
  $("login-error").textContent = text;
}

function connect() {
  const url = `ws://${location.hostname}:${state.cfg.ws_port}/`;
  let ws;
  try { ws = new WebSocket(url, [state.cfg.subprotocol, state.cfg.token_prefix + state.token]); }
  catch (e) { $("login-error").textContent = "Cannot connect: " + e.message; return; }
  state.ws = ws; let opened = false;
  link(false, "connecting…");
  ws.onopen = () => { opened = true; state.retry = 0; ws.send(JSON.stringify({ type: "hello", v: state.cfg.version })); };
  ws.onmessage = (ev) => { let msg; try { msg = JSON.parse(ev.data); } catch (e) { return; } handle(msg); };
  ws.onclose = (ev) => {
    link(false, "offline");
    if (state.ws !== ws) return;
    state.ws = null;
    if (!opened) { handshakeFailed(signedOut, "The token was refused (expired or invalid)."); return; }
    if (ev.code >= 4000 && ev.code < 4100) { signedOut(ev.reason || "Disconnected."); return; }
    reconnectLater();
  };
}

function handle(msg) {
  switch (msg.type) {
    case "welcome": return welcome(msg);
    case "live": return render(msg);
    case "ok": case "error": {
      const done = state.pending.get(msg.re);
      state.pending.delete(msg.re);
      if (msg.type === "error") toast(`${msg.message} (${msg.code})`, true);
      else if (done) done(msg);
      return;
    }
    default: return;
  }
}

function welcome(msg) {
  if (msg.role !== "supervisor") {
    const ws = state.ws; state.ws = null;
    signedOut("This page needs a supervisor's token.");
    if (ws) ws.close();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  state.sub = msg.sub;
  $("login").hidden = true; $("board").hidden = false;
  document.body.classList.add("on-board");
  $("report-link").hidden = false; $("balancing-toggle").hidden = false;
  $("who").textContent = `${msg.sub} · supervisor`;
  link(true, "live");
  send("watch");
}

// ------------------------------------------------------------------ rendering

const OLDEST_SHOWN = 5;  // per queue tile at most (the service sends as many)
const DAY_S = 86400, HOUR_S = 3600;

function render(live) {
  state.live = live;
  state.skew = live.at - Date.now() / 1000;
  renderTiles(live);
  renderWaiting(live);
  renderAgents(live);
  renderCharts(live.series);
  fillSelects(live);
  showDecision();
  tick();
}

function shownQueues(live) {
  // Every queue and channel with members, work or figures today.
  return live.queues.filter((q) => q.eligible || q.waiting || q.sl_total);
}

function big(label, cls, value, sub) {
  const box = el("div", "figure " + cls);
  box.appendChild(el("div", "value", value));
  box.appendChild(el("div", "label", label));
  if (sub !== undefined) box.appendChild(el("div", "sub", sub));
  return box;
}

// What names a task on the wall: its request number and subject, or the caller's number;
// never the internal id (kept in the title for support).
function ref(t) { return t.request || (t.channel === "phone" ? (t.label || "unknown caller") : "") || "e-mail"; }
function what(t) {
  const box = el("span", "clip");
  box.title = t.id;
  box.appendChild(el("span", "ref", t.channel === "phone" ? `☎ ${ref(t)}` : ref(t)));
  if (t.channel !== "phone" && t.label) box.appendChild(document.createTextNode(" " + t.label));
  return box;
}

// Fill `list` with rows for `items` while `box` does not overflow; then "and K more", where K
// counts every item not shown (`total` may be larger than `items`: the server sends a bounded
// list). Rows are measured as they are added, so the board fits whatever the screen.
function fitRows(box, list, items, total, make, more) {
  clear(list);
  const fits = () => box.scrollHeight <= box.clientHeight + 1 && box.scrollWidth <= box.clientWidth + 1;
  let shown = 0;
  for (const item of items) {
    const row = make(item);
    list.appendChild(row);
    if (!fits()) { list.removeChild(row); break; }
    shown++;
  }
  if (shown >= total) return shown;
  let tail = more(total - shown);
  list.appendChild(tail);
  while (!fits() && shown > 0) {
    list.removeChild(tail.previousSibling);
    shown--;
    list.removeChild(tail);
    tail = more(total - shown);
    list.appendChild(tail);
  }
  return shown;
}

function tileGrid(n) {
  // Columns and rows of the tile area for n tiles (at most 12 on the wall, then "+K more").
  if (n <= 3) return [Math.max(1, n), 1];
  if (n <= 4) return [2, 2];
  if (n <= 6) return [3, 2];
  if (n <= 8) return [4, 2];
  return [4, 3];
}

function renderTiles(live) {
  const tiles = $("tiles");
  clear(tiles);
  const rows = shownQueues(live);
  if (!rows.length) {
    tiles.style.setProperty("--cols", 1); tiles.style.setProperty("--rows", 1);
    tiles.appendChild(el("p", "hint", "No queue has members or work yet."));
    return;
  }
  const [cols, lines] = tileGrid(rows.length);
  tiles.style.setProperty("--cols", cols);
  tiles.style.setProperty("--rows", lines);
  const room = cols * lines;
  const shown = rows.length > room ? rows.slice(0, room - 1) : rows;
  for (const q of shown) tiles.appendChild(tile(q));
  if (shown.length < rows.length) {
    const rest = rows.slice(shown.length);
    const box = el("article", "tile card more", `+${rest.length} more queues`);
    box.title = rest.map((q) => `${q.queue} ${q.channel}: ${q.waiting} waiting`).join("\n");
    tiles.appendChild(box);
  }
  for (const node of tiles.querySelectorAll(".tile[data-queue]")) fillOldest(node);
}

function tile(q) {
  const box = el("article", "tile card");
  box.id = `tile-${slug(q.queue)}-${q.channel}`;
  box.dataset.queue = q.queue;
  box.dataset.channel = q.channel;
  const head = el("header", "tile-head");
  head.appendChild(el("h2", "", q.queue));
  head.appendChild(el("span", `channel ${q.channel}`, CHANNEL_LABEL[q.channel] || q.channel));
  box.appendChild(head);
  const figs = el("div", "figures");
  figs.appendChild(big("waiting", "n-waiting", q.waiting, q.offered ? `${q.offered} offered` : ""));
  const wait = big("longest", "n-wait", "–", "");
  wait.dataset.since = q.oldest_arrival == null ? "" : q.oldest_arrival;
  figs.appendChild(wait);
  const risk = big("at risk", "n-risk" + (q.at_risk || q.overdue ? " warn" : ""), q.at_risk,
    q.overdue ? `${q.overdue} overdue` : "");
  if (q.overdue) risk.classList.add("bad");
  figs.appendChild(risk);
  const sl = big("SL today", "n-sl", pct(q.service_level),
    (q.sl_total ? `${q.sl_met}/${q.sl_total} · ` : "") + `goal ${Math.round(q.sl_share * 100)}%`);
  sl.title = `goal: ${Math.round(q.sl_share * 100)}% ${q.channel === "phone" ? "answered within " + age(q.sl_target) : "answered in time"}`;
  sl.classList.add(q.service_level == null ? "none" : (q.service_level < q.sl_share ? "bad" : "good"));
  figs.appendChild(sl);
  box.appendChild(figs);
  if (q.why) {
    const why = el("div", `why w-${q.why}`, q.hint);
    why.dataset.why = q.why;
    box.appendChild(why);
  }
  const agents = el("div", "agent-counts");
  const parts = [["available", q.available], ["busy", q.busy], ["wrap-up", q.wrap_up],
    ["break", q.on_break], ["not responding", q.not_responding], ["offline", q.offline]];
  for (const [name, n] of parts) {
    if (!n && name !== "available" && name !== "busy") continue;  // the line stays short
    const c = el("span", "count c-" + name.replace(" ", "_"));
    c.appendChild(el("b", "", n)); c.appendChild(document.createTextNode(" " + name));
    agents.appendChild(c);
  }
  box.appendChild(agents);
  const reasons = Object.entries(q.breaks || {});
  if (reasons.length) box.appendChild(el("div", "breaks", "breaks: " + reasons.map(([r, n]) => `${r || "—"} ${n}`).join(", ")));
  const oldest = el("div", "oldest");
  oldest.appendChild(el("ol", ""));
  box.appendChild(oldest);
  box._q = q;
  box.addEventListener("dragover", (ev) => { ev.preventDefault(); box.classList.add("drop"); });
  box.addEventListener("dragleave", () => box.classList.remove("drop"));
  box.addEventListener("drop", (ev) => {
    ev.preventDefault(); box.classList.remove("drop");
    const agentId = ev.dataTransfer.getData("text/plain");
    if (agentId) moveAgent(agentId, q.queue, false);
  });
  return box;
}

function fillOldest(box) {
  // The queue's oldest waiting tasks, as many as fit, then "and K more".
  const q = box._q, area = box.querySelector(".oldest"), list = area.querySelector("ol");
  if (!q.waiting) { area.hidden = true; return; }
  fitRows(area, list, (q.oldest || []).slice(0, OLDEST_SHOWN), q.waiting, (t) => {
    const li = el("li", t.overdue ? "overdue" : t.at_risk ? "at-risk" : "");
    li.dataset.task = t.id;
    li.appendChild(what(t));
    const since = el("span", "since", "–"); since.dataset.since = t.created_at;
    li.appendChild(since);
    return li;
  }, (k) => el("li", "more", `and ${k} more waiting`));
}

function presenceRank(a) {
  return { not_responding: 0, busy: 1, wrap_up: 2, available: 3, break: 4, offline: 5 }[a.presence] ?? 6;
}

function renderAgents(live) {
  const agents = [...live.agents].sort((a, b) => presenceRank(a) - presenceRank(b) || (a.id < b.id ? -1 : 1));
  fitRows($("agents-card"), $("agents"), agents, agents.length, agentRow, (k) => {
    const tr = el("tr", "more"); const td = el("td", "", `and ${k} more agents (all are in Balancing)`);
    td.colSpan = 5; tr.appendChild(td); return tr;
  });
}

function agentRow(a) {
  const tr = el("tr", "agent p-" + a.presence);
  tr.id = `agent-${slug(a.id)}`;
  tr.dataset.agent = a.id;
  tr.draggable = true;
  tr.addEventListener("dragstart", (ev) => ev.dataTransfer.setData("text/plain", a.id));
  tr.addEventListener("click", () => { $("act-agent").value = a.id; agentChosen(); });
  const name = el("td", "name");
  const label = el("span", "clip", a.name || a.id);
  if (a.name) label.appendChild(el("span", "muted", ` ${a.id}`));
  name.appendChild(label);
  tr.appendChild(name);
  const pres = el("td", "presence");
  pres.appendChild(el("span", "pill " + a.presence, (PRESENCE_LABEL[a.presence] || a.presence) + (a.reason ? ` (${a.reason})` : "")));
  tr.appendChild(pres);
  const since = el("td", "since", "–");
  since.dataset.since = a.since == null ? "" : a.since;
  tr.appendChild(since);
  const queues = el("td", "queues");
  queues.appendChild(el("span", "clip", a.queues.join(", ") || "—"));
  tr.appendChild(queues);
  const work = el("td", "work");
  for (const t of a.tasks) work.appendChild(el("span", "task " + t.channel, `${ref(t)} ${t.state.replace("_", "-")}`));
  if (a.offer) {
    const offer = el("span", "task offer " + a.offer.channel, `${ref(a.offer)} offered`);
    if (a.offer.decision) offer.title = a.offer.decision;
    work.appendChild(offer);
  }
  tr.appendChild(work);
  return tr;
}

function renderWaiting(live) {
  const body = $("waiting");
  const total = live.waiting_total ?? live.waiting.length;
  $("waiting-total").textContent = total ? `${total} in all · most urgent first` : "most urgent first";
  if (!live.waiting.length) {
    clear(body);
    const tr = el("tr", "empty"); const td = el("td", "", "Nothing waits."); td.colSpan = 5;
    tr.appendChild(td); body.appendChild(tr); return;
  }
  fitRows($("waiting-card"), body, live.waiting, total, (t) => {
    const tr = el("tr", "task-row" + (t.overdue ? " overdue" : t.at_risk ? " at-risk" : ""));
    tr.dataset.task = t.id;
    if (t.decision) tr.title = t.decision;
    tr.addEventListener("click", () => { $("act-task").value = t.id; taskChosen(); });
    const cell = el("td", "what"); cell.appendChild(what(t)); tr.appendChild(cell);
    const queue = el("td", "queue");
    queue.appendChild(el("span", "clip", `${t.queue} · ${CHANNEL_LABEL[t.channel] || t.channel}` + (t.state === "offered" ? ` → ${t.agent_id}` : "")));
    tr.appendChild(queue);
    const waits = el("td", "since", "–"); waits.dataset.since = t.created_at; tr.appendChild(waits);
    const due = el("td", "due", "–"); due.dataset.due = t.due; tr.appendChild(due);
    tr.appendChild(el("td", "", t.priority));
    return tr;
  }, (k) => { const tr = el("tr", "more"); const td = el("td", "", `and ${k} more waiting`); td.colSpan = 5; tr.appendChild(td); return tr; });
}

function setOptions(select, items) {
  // Rebuild only when the choices changed, keeping the current choice.
  const key = JSON.stringify(items);
  if (select.dataset.key === key) return;
  const keep = select.value;
  clear(select);
  for (const [value, text] of items) { const o = el("option", "", text); o.value = value; select.appendChild(o); }
  if (items.some(([v]) => v === keep)) select.value = keep;
  select.dataset.key = key;
}

function fillSelects(live) {
  const queues = [...new Set(live.queues.map((q) => q.queue))];
  setOptions($("act-queue"), queues.map((q) => [q, q]));
  setOptions($("act-agent"), live.agents.map((a) => [a.id, a.name ? `${a.name} (${a.id})` : a.id]));
  const tasks = [];
  const name = (t) => `${ref(t)}${t.channel !== "phone" && t.label ? " " + t.label : ""}`;
  for (const t of live.waiting) tasks.push([t.id, `${name(t)} · ${t.queue} · ${t.state}`]);
  for (const a of live.agents) for (const t of a.tasks) tasks.push([t.id, `${name(t)} · ${t.queue} · ${t.state} (${a.id})`]);
  setOptions($("act-task"), tasks);
  if (!$("act-skills").dataset.agent) agentChosen();
}

function agentChosen() {
  const a = state.live && state.live.agents.find((x) => x.id === $("act-agent").value);
  if (!a) return;
  $("act-skills").value = Object.entries(a.skills).map(([k, v]) => `${k}:${v}`).join(", ");
  $("act-skills").dataset.agent = a.id;
}

function findTask(live, id) {
  let t = live.waiting.find((x) => x.id === id);
  for (const a of live.agents) t = t || a.tasks.find((x) => x.id === id);
  return t;
}

function taskChosen() {
  const live = state.live; if (!live) return;
  const t = findTask(live, $("act-task").value);
  if (t) $("act-priority").value = t.priority;
  showDecision();
}

// The chosen task's latest routing decision in words (who it went to, who was passed over).
function showDecision() {
  const live = state.live; if (!live) return;
  const t = findTask(live, $("act-task").value);
  $("act-decision").textContent = !t ? "" : t.decision || "No routing decision seen yet.";
}

// ------------------------------------------------------------------ charts (SVG, drawn here)

// Each chart is drawn in the pixels it occupies (viewBox = its size), so text keeps the same
// size whatever the screen: axis labels 15 px, the empty state 19 px.
const PAD = { l: 50, r: 12, t: 10, b: 24 };

function niceScale(max) {
  // A top and a step for 2-5 whole-number ticks: steps of 1, 2 or 5 times a power of ten.
  if (!(max > 0)) return { top: 4, step: 1 };
  const raw = max / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * p).find((x) => x >= raw));
  return { top: Math.ceil(max / step) * step, step };
}

function canvas(node) {
  clear(node);
  const w = Math.max(120, Math.round(node.clientWidth || 300));
  const h = Math.max(80, Math.round(node.clientHeight || 150));
  node.setAttribute("viewBox", `0 0 ${w} ${h}`);
  return { w, h, iw: w - PAD.l - PAD.r, ih: h - PAD.t - PAD.b };
}

function text(node, x, y, value, cls, anchor) {
  const t = svg("text", { x, y, class: cls, "text-anchor": anchor || "middle" });
  t.textContent = value; node.appendChild(t); return t;
}

function yAxis(node, c, top, step, fmt) {
  for (let v = 0; v <= top + 1e-9; v += step) {
    const y = PAD.t + c.ih - (c.ih * v) / top;
    node.appendChild(svg("line", { x1: PAD.l, x2: c.w - PAD.r, y1: y, y2: y, class: "grid" }));
    text(node, PAD.l - 5, y + 5, fmt(v), "axis", "end");
  }
}

function empty(node, c, message) {
  // Nothing to draw: the baseline and one sentence, no ticks to collide with it.
  node.appendChild(svg("line", { x1: PAD.l, x2: c.w - PAD.r, y1: PAD.t + c.ih, y2: PAD.t + c.ih, class: "grid" }));
  const t = text(node, c.w / 2, PAD.t + c.ih / 2, message, "empty");
  t.classList.add("empty-state");
}

function dayAxis(node, c, dayStart) {
  // The whole day: 24 hourly slots, labelled every 3 hours; a dashed line at now.
  for (let i = 0; i < 24; i += 3) {
    text(node, PAD.l + (c.iw * i) / 24, c.h - 6, hour(dayStart + i * HOUR_S), "axis", "start");
  }
  const now = (serverNow() - dayStart) / DAY_S;
  if (now > 0 && now < 1) {
    const x = PAD.l + c.iw * now;
    node.appendChild(svg("line", { x1: x, x2: x, y1: PAD.t, y2: PAD.t + c.ih, class: "now" }));
  }
}

function slotOf(start, dayStart) { return Math.round((start - dayStart) / HOUR_S); }

function lineChart(node, series, dayStart, target, message) {
  const c = canvas(node);
  dayAxis(node, c, dayStart);
  if (!series.some(([, , values]) => values.some((v) => v != null))) { empty(node, c, message); return; }
  yAxis(node, c, 1, 0.5, (v) => `${Math.round(v * 100)}%`);
  const x = (slot) => PAD.l + (c.iw * (slot + 0.5)) / 24;
  const y = (v) => PAD.t + c.ih - c.ih * v;
  if (target != null) node.appendChild(svg("line", { x1: PAD.l, x2: c.w - PAD.r, y1: y(target), y2: y(target), class: "target" }));
  for (const [cls, starts, values] of series) {
    let d = "", last = null;
    values.forEach((v, i) => {
      const slot = slotOf(starts[i], dayStart);
      if (v == null || slot < 0 || slot > 23) { last = null; return; }
      d += `${last != null && last === slot - 1 ? "L" : "M"}${x(slot).toFixed(1)},${y(v).toFixed(1)}`;
      last = slot;
      node.appendChild(svg("circle", { cx: x(slot), cy: y(v), r: 4, class: "dot " + cls }));
    });
    if (d) node.appendChild(svg("path", { d, class: "line " + cls }));
  }
}

function hourBars(node, series, starts, dayStart, message) {
  const c = canvas(node);
  const max = Math.max(0, ...series.flatMap(([, v]) => v));
  dayAxis(node, c, dayStart);
  if (!(max > 0)) { empty(node, c, message); return; }
  const { top, step } = niceScale(max);
  yAxis(node, c, top, step, (v) => String(v));
  const slot = c.iw / 24, bw = (slot * 0.8) / series.length;
  series.forEach(([cls, values], s) => {
    values.forEach((v, i) => {
      const k = slotOf(starts[i], dayStart);
      if (!v || k < 0 || k > 23) return;
      const h = (c.ih * v) / top;
      node.appendChild(svg("rect", { x: PAD.l + slot * k + slot * 0.1 + bw * s, y: PAD.t + c.ih - h, width: Math.max(1, bw - 1), height: h, class: "bar " + cls }));
    });
  });
}

function binBars(node, labels, values, cls, message) {
  const c = canvas(node);
  const max = Math.max(0, ...values);
  const slot = c.iw / Math.max(1, labels.length);
  labels.forEach((label, i) => text(node, PAD.l + slot * (i + 0.5), c.h - 6, label, "axis"));
  if (!(max > 0)) { empty(node, c, message); return; }
  const { top, step } = niceScale(max);
  yAxis(node, c, top, step, (v) => String(v));
  values.forEach((v, i) => {
    if (!v) return;
    const h = (c.ih * v) / top;
    node.appendChild(svg("rect", { x: PAD.l + slot * i + slot * 0.15, y: PAD.t + c.ih - h, width: slot * 0.7, height: h, class: "bar " + cls }));
  });
}

function dayStartOf(live) {
  if (live && live.day_start != null) return live.day_start;
  const d = new Date(serverNow() * 1000); d.setHours(0, 0, 0, 0); return d.getTime() / 1000;
}

function renderCharts(series) {
  const live = state.live;
  const day = dayStartOf(live);
  const starts = series.starts || [];
  const shares = live ? live.queues.filter((q) => q.sl_total).map((q) => q.sl_share) : [];
  lineChart($("chart-sl"), [["all", starts, series.service_level || []],
    ["email", starts, series.service_level_email || []], ["phone", starts, series.service_level_phone || []]],
    day, shares.length ? Math.max(...shares) : null, "No request settled yet today");
  hourBars($("chart-flow"), [["arrived", series.arrived || []], ["handled", series.handled || []]], starts, day, "Nothing arrived yet today");
  hourBars($("chart-depth"), [["depth", series.depth || []]], starts, day, "Nothing waited yet today");
  binBars($("chart-waits"), edgeLabels(series.wait_edges || []), series.wait_bins || [], "waits", "No calls answered yet today");
  binBars($("chart-responses"), edgeLabels(series.response_edges || []), series.response_bins || [], "responses", "No e-mails answered yet today");
}

function edgeLabels(edges) {
  // A value falls in the first bin whose edge is >= it ("answered within"); the last bin is
  // beyond the last edge.
  const short = (s) => (s >= 3600 ? `${s / 3600}h` : s >= 60 ? `${s / 60}m` : `${s}s`);
  return [...edges.map(short), edges.length ? `>${short(edges[edges.length - 1])}` : ""];
}

// ------------------------------------------------------------------ the day's report

// `/report` wants the supervisor's token in an Authorization header (never in a URL): the page
// fetches today's report with it and shows it here; the server checks the role.
async function openReport(ev) {
  if (ev) ev.preventDefault();
  const view = $("report-view"), body = $("report-body");
  const from = dayStartOf(state.live), to = from + DAY_S;
  view.hidden = false;
  clear(body); body.appendChild(el("p", "", "Reading today's figures…"));
  let res, html;
  try {
    res = await fetch(`/report?from=${from}&to=${to}&interval=1h&format=html`,
      { headers: { Authorization: `Bearer ${state.token}` }, cache: "no-store" });
    html = await res.text();
  } catch (e) {
    clear(body); body.appendChild(el("p", "error", "The report could not be read: the server is out of reach."));
    return;
  }
  clear(body);
  if (!res.ok) {
    body.appendChild(el("p", "error", `The report could not be read (${res.status}): ${html.trim()}`));
    return;
  }
  const doc = new DOMParser().parseFromString(html, "text/html");
  for (const node of [...doc.body.childNodes]) body.appendChild(document.importNode(node, true));
  const save = $("report-save");
  if (save.dataset.url) URL.revokeObjectURL(save.dataset.url);
  save.dataset.url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
  save.href = save.dataset.url;
  save.download = `switchboard-report-${new Date(from * 1000).toISOString().slice(0, 10)}.html`;
  $("report-close").focus();
}

function closeReport() { $("report-view").hidden = true; }

function toggleBalancing(open) {
  const drawer = $("actions");
  drawer.hidden = open === undefined ? !drawer.hidden : !open;
  $("balancing-toggle").setAttribute("aria-expanded", String(!drawer.hidden));
}

// ------------------------------------------------------------------ the clock

function tick() {
  const now = serverNow();
  $("clock").textContent = new Date(now * 1000).toLocaleTimeString();
  for (const node of document.querySelectorAll("[data-since]")) {
    const since = node.dataset.since;
    const figure = node.classList.contains("figure");
    const target = figure ? node.querySelector(".value") : node;
    target.textContent = since === "" ? "–" : (figure ? ageShort : age)(now - Number(since));
  }
  for (const node of document.querySelectorAll("[data-due]")) {
    const left = Number(node.dataset.due) - now;
    node.textContent = left >= 0 ? `in ${ageShort(left)}` : `${ageShort(-left)} late`;
  }
}

// ------------------------------------------------------------------ balancing actions

function chosenAgent() { return $("act-agent").value; }
function chosenTask() { return $("act-task").value; }

function moveAgent(agentId, queue, keep) {
  const a = state.live && state.live.agents.find((x) => x.id === agentId);
  if (!a || !queue) return;
  const queues = keep ? [...new Set([...a.queues, queue])] : [queue];
  send("agent_update", { agent_id: agentId, queues }, () => toast(`${a.name || agentId} now serves ${queues.join(", ")}`));
}

function parseSkills(text) {
  const out = {};
  for (const part of text.split(",")) {
    const p = part.trim(); if (!p) continue;
    const m = p.match(/^([^:\s]+)\s*:\s*(\d+)$/);
    if (!m) throw new Error(`"${p}" is not skill:level`);
    out[m[1]] = Number(m[2]);
  }
  return out;
}

function wireActions() {
  $("report-link").addEventListener("click", openReport);
  $("report-close").addEventListener("click", closeReport);
  $("balancing-toggle").addEventListener("click", () => toggleBalancing());
  $("balancing-close").addEventListener("click", () => toggleBalancing(false));
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") { closeReport(); toggleBalancing(false); } });
  let resized = null;  // lists and charts are fitted to the screen: fit them again
  window.addEventListener("resize", () => {
    clearTimeout(resized);
    resized = setTimeout(() => { if (state.live) render(state.live); }, 200);
  });
  $("act-agent").addEventListener("change", agentChosen);
  $("act-task").addEventListener("change", taskChosen);
  $("move-agent").onclick = () => moveAgent(chosenAgent(), $("act-queue").value, false);
  $("add-queue").onclick = () => moveAgent(chosenAgent(), $("act-queue").value, true);
  $("set-skills").onclick = () => {
    let skills;
    try { skills = parseSkills($("act-skills").value); } catch (e) { toast(e.message, true); return; }
    send("agent_update", { agent_id: chosenAgent(), skills }, () => toast("Skills changed"));
  };
  $("agent-available").onclick = () => send("agent_presence", { agent_id: chosenAgent(), status: "available" }, () => toast("Available"));
  $("agent-break").onclick = () => send("agent_presence", { agent_id: chosenAgent(), status: "break", reason: $("act-reason").value }, () => toast("On a break"));
  $("agent-offline").onclick = () => {
    const id = chosenAgent();
    if (id) send("agent_presence", { agent_id: id, status: "offline" }, () => toast(`${id} signed off`));
  };
  $("set-priority").onclick = () => send("task_priority", { task_id: chosenTask(), priority: Number($("act-priority").value) }, () => toast("Priority changed"));
  $("move-task").onclick = () => send("task_move", { task_id: chosenTask(), to_queue: $("act-queue").value }, () => toast("Task moved"));
  $("assign-task").onclick = () => send("task_assign", { task_id: chosenTask(), to_agent: chosenAgent() }, () => toast("Task offered"));
  $("take-back").onclick = () => send("task_take_back", { task_id: chosenTask() }, () => toast("Task taken back"));
}

boot();
