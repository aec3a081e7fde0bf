// Switchboard wallboard: the supervisors' live state and balancing actions over the console's
// WebSocket (protocol v1, docs/protocol.md "Supervision"). Plain DOM and SVG drawn here, no
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
function short(id) { id = String(id); return id.length > 10 ? id.slice(0, 8) + "…" : id; }

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
    if (!opened) { signedOut("The token was refused (expired or invalid)."); return; }
    if (ev.code >= 4000 && ev.code < 4100) { signedOut(ev.reason || "Disconnected."); return; }
    const wait = Math.min(10000, 500 * 2 ** state.retry++);
    link(false, `reconnecting in ${Math.round(wait / 1000)} s`);
    setTimeout(connect, wait);
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
  $("who").textContent = `${msg.sub} · supervisor`;
  link(true, "live");
  send("watch");
}

// ------------------------------------------------------------------ rendering

function render(live) {
  state.live = live;
  state.skew = live.at - Date.now() / 1000;
  renderTiles(live);
  renderCharts(live.series);
  renderAgents(live);
  renderWaiting(live);
  fillSelects(live);
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

function renderTiles(live) {
  const tiles = $("tiles");
  clear(tiles);
  const rows = shownQueues(live);
  if (!rows.length) tiles.appendChild(el("p", "hint", "No queue has members or work yet."));
  for (const q of rows) {
    const tile = el("article", "tile card");
    tile.id = `tile-${slug(q.queue)}-${q.channel}`;
    tile.dataset.queue = q.queue;
    tile.dataset.channel = q.channel;
    const head = el("header", "tile-head");
    head.appendChild(el("h2", "", q.queue));
    head.appendChild(el("span", `channel ${q.channel}`, CHANNEL_LABEL[q.channel] || q.channel));
    tile.appendChild(head);
    const figs = el("div", "figures");
    figs.appendChild(big("waiting", "n-waiting", q.waiting, q.offered ? `${q.offered} offered` : ""));
    const wait = big("longest wait", "n-wait", "–");
    wait.dataset.since = q.oldest_arrival == null ? "" : q.oldest_arrival;
    figs.appendChild(wait);
    const risk = big("at risk", "n-risk" + (q.at_risk || q.overdue ? " warn" : ""), q.at_risk,
      q.overdue ? `${q.overdue} overdue` : "");
    if (q.overdue) risk.classList.add("bad");
    figs.appendChild(risk);
    const sl = big("service level today", "n-sl", pct(q.service_level),
      `target ${Math.round(q.sl_share * 100)}% ${q.channel === "phone" ? "in " + age(q.sl_target) : "by deadline"}` +
      (q.sl_total ? ` · ${q.sl_met}/${q.sl_total}` : ""));
    sl.classList.add(q.service_level == null ? "none" : (q.service_level < q.sl_share ? "bad" : "good"));
    figs.appendChild(sl);
    tile.appendChild(figs);
    const agents = el("div", "agent-counts");
    const parts = [["available", q.available], ["busy", q.busy], ["wrap-up", q.wrap_up],
      ["break", q.on_break], ["not responding", q.not_responding], ["offline", q.offline]];
    for (const [name, n] of parts) {
      const c = el("span", "count c-" + name.replace(" ", "_"));
      c.appendChild(el("b", "", n)); c.appendChild(document.createTextNode(" " + name));
      agents.appendChild(c);
    }
    tile.appendChild(agents);
    const reasons = Object.entries(q.breaks || {});
    if (reasons.length) tile.appendChild(el("div", "breaks", "breaks: " + reasons.map(([r, n]) => `${r || "—"} ${n}`).join(", ")));
    tile.appendChild(el("div", "eligible", `${q.eligible} eligible` + (q.oldest_deadline ? ` · oldest deadline ${new Date(q.oldest_deadline * 1000).toLocaleString()}` : "")));
    tile.addEventListener("dragover", (ev) => { ev.preventDefault(); tile.classList.add("drop"); });
    tile.addEventListener("dragleave", () => tile.classList.remove("drop"));
    tile.addEventListener("drop", (ev) => {
      ev.preventDefault(); tile.classList.remove("drop");
      const agentId = ev.dataTransfer.getData("text/plain");
      if (agentId) moveAgent(agentId, q.queue, false);
    });
    tiles.appendChild(tile);
  }
}

function renderAgents(live) {
  const body = $("agents");
  clear(body);
  for (const a of live.agents) {
    const tr = el("tr", "agent p-" + a.presence);
    tr.id = `agent-${slug(a.id)}`;
    tr.dataset.agent = a.id;
    tr.draggable = true;
    tr.addEventListener("dragstart", (ev) => ev.dataTransfer.setData("text/plain", a.id));
    tr.addEventListener("click", () => { $("act-agent").value = a.id; agentChosen(); });
    const name = el("td", "name", a.name || a.id);
    if (a.name) name.appendChild(el("span", "muted", ` ${a.id}`));
    tr.appendChild(name);
    const pres = el("td", "presence");
    pres.appendChild(el("span", "pill " + a.presence, (PRESENCE_LABEL[a.presence] || a.presence) + (a.reason ? ` (${a.reason})` : "")));
    tr.appendChild(pres);
    const since = el("td", "since", "–");
    since.dataset.since = a.since == null ? "" : a.since;
    tr.appendChild(since);
    tr.appendChild(el("td", "queues", a.queues.join(", ") || "—"));
    const work = el("td", "work");
    for (const t of a.tasks) work.appendChild(el("span", "task " + t.channel, `${short(t.id)} ${t.state}`));
    if (a.offer) work.appendChild(el("span", "task offer " + a.offer.channel, `${short(a.offer.id)} offered`));
    tr.appendChild(work);
    body.appendChild(tr);
  }
}

function renderWaiting(live) {
  const body = $("waiting");
  clear(body);
  if (!live.waiting.length) {
    const tr = el("tr", "empty"); const td = el("td", "", "Nothing waits."); td.colSpan = 5;
    tr.appendChild(td); body.appendChild(tr); return;
  }
  for (const t of live.waiting) {
    const tr = el("tr", "task-row" + (t.overdue ? " overdue" : t.at_risk ? " at-risk" : ""));
    tr.dataset.task = t.id;
    tr.addEventListener("click", () => { $("act-task").value = t.id; taskChosen(); });
    const what = el("td", "", `${short(t.id)} `);
    what.title = t.id;
    what.appendChild(el("span", "muted", t.label));
    tr.appendChild(what);
    tr.appendChild(el("td", "", `${t.queue} · ${CHANNEL_LABEL[t.channel] || t.channel}` + (t.state === "offered" ? ` → ${t.agent_id}` : "")));
    const waits = el("td", "since", "–"); waits.dataset.since = t.created_at; tr.appendChild(waits);
    const due = el("td", "due", "–"); due.dataset.due = t.due; tr.appendChild(due);
    tr.appendChild(el("td", "", t.priority));
    body.appendChild(tr);
  }
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
  for (const t of live.waiting) tasks.push([t.id, `${short(t.id)} · ${t.queue} · ${t.state} · ${t.label}`]);
  for (const a of live.agents) for (const t of a.tasks) tasks.push([t.id, `${short(t.id)} · ${t.queue} · ${t.state} (${a.id}) · ${t.label}`]);
  setOptions($("act-task"), tasks);
  if (!$("act-skills").dataset.agent) agentChosen();
}

function agentChosen() {
  const a = state.live && state.live.agents.find((x) => x.id === $("act-agent").value);
  if (!a) return;
  $("act-skills").value = Object.entries(a.skills).map(([k, v]) => `${k}:${v}`).join(", ");
  $("act-skills").dataset.agent = a.id;
}

function taskChosen() {
  const id = $("act-task").value;
  const live = state.live; if (!live) return;
  let t = live.waiting.find((x) => x.id === id);
  for (const a of live.agents) t = t || a.tasks.find((x) => x.id === id);
  if (t) $("act-priority").value = t.priority;
}

// ------------------------------------------------------------------ charts (SVG, drawn here)

const W = 480, H = 180, PAD = { l: 38, r: 8, t: 10, b: 22 };

function frame(node, labels, yMax, fmt) {
  clear(node);
  const iw = W - PAD.l - PAD.r, ih = H - PAD.t - PAD.b;
  for (let i = 0; i <= 4; i++) {
    const y = PAD.t + ih - (ih * i) / 4;
    node.appendChild(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: "grid" }));
    const t = svg("text", { x: PAD.l - 4, y: y + 4, class: "axis", "text-anchor": "end" });
    t.textContent = fmt((yMax * i) / 4); node.appendChild(t);
  }
  const step = Math.max(1, Math.ceil(labels.length / 8));
  labels.forEach((label, i) => {
    if (i % step) return;
    const t = svg("text", { x: PAD.l + (iw * (i + 0.5)) / labels.length, y: H - 6, class: "axis", "text-anchor": "middle" });
    t.textContent = label; node.appendChild(t);
  });
  return { iw, ih };
}

function lineChart(node, labels, series, target) {
  const { iw, ih } = frame(node, labels, 1, (v) => `${Math.round(v * 100)}%`);
  const x = (i) => PAD.l + (iw * (i + 0.5)) / labels.length;
  const y = (v) => PAD.t + ih - ih * v;
  if (target != null) node.appendChild(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y(target), y2: y(target), class: "target" }));
  for (const [cls, values] of series) {
    let d = "";
    values.forEach((v, i) => {
      if (v == null) return;
      d += `${d && values[i - 1] != null ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      node.appendChild(svg("circle", { cx: x(i), cy: y(v), r: 3, class: "dot " + cls }));
    });
    if (d) node.appendChild(svg("path", { d, class: "line " + cls }));
  }
}

function barChart(node, labels, series) {
  const top = Math.max(4, ...series.flatMap(([, v]) => v));  // whole-number ticks
  const yMax = niceTop(top);
  const { iw, ih } = frame(node, labels, yMax, (v) => String(Math.round(v)));
  const slot = iw / Math.max(1, labels.length), bw = (slot * 0.8) / series.length;
  series.forEach(([cls, values], s) => {
    values.forEach((v, i) => {
      const h = (ih * v) / yMax;
      node.appendChild(svg("rect", { x: PAD.l + slot * i + slot * 0.1 + bw * s, y: PAD.t + ih - h, width: Math.max(1, bw - 1), height: h, class: "bar " + cls }));
    });
  });
}

function niceTop(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function renderCharts(series) {
  const labels = (series.starts || []).map(hour);
  const live = state.live;
  const shares = live ? live.queues.filter((q) => q.sl_total).map((q) => q.sl_share) : [];
  lineChart($("chart-sl"), labels, [["all", series.service_level || []],
    ["email", series.service_level_email || []], ["phone", series.service_level_phone || []]],
    shares.length ? Math.max(...shares) : null);
  barChart($("chart-flow"), labels, [["arrived", series.arrived || []], ["handled", series.handled || []]]);
  barChart($("chart-depth"), labels, [["depth", series.depth || []]]);
  barChart($("chart-waits"), edgeLabels(series.wait_edges || []), [["waits", series.wait_bins || []]]);
  barChart($("chart-responses"), edgeLabels(series.response_edges || []), [["responses", series.response_bins || []]]);
}

function edgeLabels(edges) {
  // A value falls in the first bin whose edge is >= it; the last bin is beyond the last edge.
  const short = (s) => (s >= 3600 ? `${s / 3600}h` : s >= 60 ? `${s / 60}m` : `${s}s`);
  return [...edges.map((e) => `≤${short(e)}`), edges.length ? `>${short(edges[edges.length - 1])}` : ""];
}

// ------------------------------------------------------------------ the clock

function tick() {
  const now = serverNow();
  $("clock").textContent = new Date(now * 1000).toLocaleTimeString();
  for (const node of document.querySelectorAll("[data-since]")) {
    const since = node.dataset.since;
    const target = node.classList.contains("figure") ? node.querySelector(".value") : node;
    target.textContent = since === "" ? "–" : age(now - Number(since));
  }
  for (const node of document.querySelectorAll("[data-due]")) {
    const left = Number(node.dataset.due) - now;
    node.textContent = left >= 0 ? `in ${age(left)}` : `${age(-left)} late`;
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
