// Switchboard agent console: one WebSocket (protocol v1, docs/console-protocol.md), plain DOM.
// Customer content is only ever set with textContent: no innerHTML anywhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { ws: null, cfg: null, token: null, agent: null, tasks: new Map(), offer: null,
  selected: null, nextId: 1, timer: null, retry: 0, displaced: false, channels: {} };
const PRESENCE_LABEL = { available: "Available", busy: "Busy", wrap_up: "Wrap-up",
  break: "On break", offline: "Offline", not_responding: "Not responding — press Available" };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function when(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }
function dur(s) { if (s == null) return ""; s = Math.round(s); return `${Math.floor(s / 60)} min ${s % 60} s`; }
function toast(text, bad) {
  const t = $("toast"); t.textContent = text; t.className = bad ? "toast bad" : "toast"; t.hidden = false;
  clearTimeout(toast.h); toast.h = setTimeout(() => { t.hidden = true; }, 4000);
}
function send(type, fields) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) { toast("Not connected", true); return; }
  const id = state.nextId++;
  state.ws.send(JSON.stringify(Object.assign({ type, id }, fields || {})));
  return id;
}
// Extension points for the page's other scripts (conversation.js, calls.js, pull.js, login.js):
// `on(type, fn)` adds a handler for a server message type; `onRender(fn)` runs fn(selected)
// at the end of every render (selected: {task, customer, ...} of the selected task, or null).
const HANDLERS = {};
const RENDERERS = [];
function on(type, fn) { (HANDLERS[type] = HANDLERS[type] || []).push(fn); }
function onRender(fn) { RENDERERS.push(fn); }
function link(on, text) { const l = $("link"); l.className = on ? "link on" : "link off"; l.textContent = text; }
// Back to the sign-in form (login.js): nothing of the desk stays visible, `text` says why.
function showSignIn(text) {
  $("login-error").textContent = text || "";
  $("login").hidden = false; $("desk").hidden = true; $("who").hidden = true;
}

async function boot() {
  state.cfg = await (await fetch("/console/config.json")).json();
  const saved = sessionStorage.getItem("switchboard.token");
  if (saved) { state.token = saved; connect(); }
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    $("login-error").textContent = "";
    connect();
  });
  $("go-available").onclick = () => send("presence", { status: "available" });
  $("go-offline").onclick = () => send("presence", { status: "offline" });
  $("go-break").onclick = () => { $("break-box").hidden = !$("break-box").hidden; };
  $("break-go").onclick = () => { send("presence", { status: "break", reason: $("break-reason").value }); $("break-box").hidden = true; };
  for (const b of [$("ch-email"), $("ch-phone")]) {
    b.onclick = () => {
      const ch = b.dataset.channel, on = b.getAttribute("aria-pressed") !== "true";
      send("presence", { channels: { [ch]: on } });
    };
  }
  $("accept").onclick = accept;
  $("reject").onclick = reject;
  $("complete").onclick = complete;
  $("reply-send").onclick = reply;
  collabWire();
  answersWire();
  document.addEventListener("keydown", keys);
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
    if (!opened) {  // refused at the handshake (bad or expired token, wrong origin), or no server
      handshakeFailed((text) => { sessionStorage.removeItem("switchboard.token"); showSignIn(text); },
        "The sign-in was refused or has expired: sign in again.");
      return;
    }
    if (ev.code === 4001) { toast("Signed in somewhere else: this window is disconnected.", true); link(false, "displaced"); return; }
    if (ev.code >= 4002 && ev.code < 4100) { sessionStorage.removeItem("switchboard.token"); showSignIn(ev.reason); return; }
    reconnectLater();
  };
}

function handle(msg) {
  builtin(msg);
  for (const fn of HANDLERS[msg.type] || []) fn(msg);
}

function builtin(msg) {
  switch (msg.type) {
    case "welcome": return welcome(msg);
    case "presence": return presence(msg);
    case "offer": return showOffer(msg);
    case "offer_cancelled": return offerGone(msg);
    case "assigned": return assigned(msg);
    case "task_state": { const t = state.tasks.get(msg.task_id); if (t) { t.task.state = msg.state; render(); } return; }
    case "task_closed": return closed(msg);
    case "error": return toast(`${known(msg.message)} (${msg.code})`, true);
    case "ok": return answersOk(msg);
    case "review_held": return;
    case "review_decided": return reviewDecided(msg.item);
    default: return;
  }
}

function welcome(msg) {
  sessionStorage.setItem("switchboard.token", state.token);
  $("login").hidden = true; $("desk").hidden = false; $("who").hidden = false;
  link(true, "connected");
  state.agent = msg.agent;
  state.features = msg.features || {};
  $("who").textContent = msg.agent ? `${msg.agent.name || msg.agent.id} · ${msg.role}` : `${msg.sub} · ${msg.role}`;
  state.tasks.clear();
  for (const t of msg.tasks) state.tasks.set(t.id, { task: t, customer: t.customer });
  if (msg.presence) presence(msg.presence);
  if (!state.selected || !state.tasks.has(state.selected)) state.selected = msg.tasks.length ? msg.tasks[0].id : null;
  render();
}

function presence(p) {
  const box = $("presence");
  box.textContent = PRESENCE_LABEL[p.presence] || p.presence;
  if (p.status === "break" && p.reason) box.textContent += ` (${p.reason})`;
  box.className = "presence " + p.presence;
  box.dataset.presence = p.presence;
  state.channels = p.channels || {};
  for (const b of [$("ch-email"), $("ch-phone")]) {
    const ch = b.dataset.channel;
    b.hidden = !(ch in state.channels);
    b.setAttribute("aria-pressed", state.channels[ch] ? "true" : "false");
  }
}

// Internal task ids in a server's message, named as the agent knows them (request number,
// subject or caller).
function known(text) {
  let out = String(text || "");
  for (const [id, { task }] of state.tasks) out = out.split(id).join(label(task));
  if (state.offer) out = out.split(state.offer.task.id).join(label(state.offer.task));
  return out;
}
function label(task) {
  const a = task.attributes || {};
  return a.request || title(task);
}

function title(task) {
  const a = task.attributes || {};
  if (task.channel === "phone") return `Call from ${a.caller || a.from || "unknown number"}`;
  return (a.request ? `${a.request} · ` : "") + (a.subject || "(no subject)");
}

function showOffer(msg) {
  state.offer = Object.assign({ receivedAt: performance.now() }, msg);
  $("offer").hidden = false;
  $("offer-title").textContent = (msg.task.channel === "phone" ? "Incoming call" : "New e-mail") + ` — ${msg.task.queue}`;
  const s = $("offer-summary"); clear(s);
  s.appendChild(el("span", "chan " + msg.task.channel, msg.task.channel));
  s.appendChild(el("span", "", title(msg.task)));
  if (msg.customer) s.appendChild(el("div", "meta", `from ${msg.customer.name || "unknown customer"}`));
  answersOffer(msg, s);
  ringing(msg.task);
  clearInterval(state.timer);
  const total = Math.max(1, msg.expires_in);
  const tick = () => {
    if (!state.offer) return;
    const left = Math.max(0, total - (performance.now() - state.offer.receivedAt) / 1000);
    $("offer-left").textContent = Math.ceil(left);
    $("offer-meter").style.width = `${(100 * left) / total}%`;
  };
  tick(); state.timer = setInterval(tick, 250);
  render();
  ($("accept").hidden ? $("reject") : $("accept")).focus();
}

// A call rings: a SIP call rings the agent's own phone (its answer is the accept); a call of a
// PBX (CTI) is accepted here, and the PBX then connects it to the agent's extension.
function onPhone(task) { return task.channel === "phone" && (task.attributes || {}).source === "sip"; }
function ringing(task) {
  const call = task.channel === "phone", sip = onPhone(task), hint = $("offer-hint");
  $("offer-ringing").hidden = !call;
  $("accept").hidden = sip;
  hint.hidden = !call;
  hint.textContent = sip ? "Your phone is ringing: answer it to take the call."
    : call && (task.attributes || {}).source === "cti" ? "Accept to have the call put through to your phone."
    : "";
}

function offerGone(msg) {
  if (!state.offer || state.offer.offer_id !== msg.offer_id) return;
  hideOffer();
  const why = { expired: "The offer expired.", taken_back: "The offer was taken back.",
    caller_hung_up: "The caller hung up." }[msg.reason] || "The offer ended.";
  toast(why, msg.reason === "expired");
}
function hideOffer() { state.offer = null; clearInterval(state.timer); $("offer").hidden = true; render(); }

function assigned(msg) {
  if (state.offer && state.offer.task.id === msg.task.id) hideOffer();
  state.tasks.set(msg.task.id, { task: msg.task, customer: msg.customer, answers: msg.answers });
  state.selected = msg.task.id;
  render();
}

function closed(msg) {
  state.tasks.delete(msg.task_id);
  if (state.selected === msg.task_id) state.selected = state.tasks.size ? state.tasks.keys().next().value : null;
  if (msg.state !== "completed" || msg.by !== `agent:${state.agent && state.agent.id}`) toast(`Task ${msg.state}: ${msg.reason || ""}`);
  render();
}

function accept() { if (state.offer && !onPhone(state.offer.task)) send("accept", { offer_id: state.offer.offer_id }); }
function reject() { if (state.offer) { send("reject", { offer_id: state.offer.offer_id, reason: "declined" }); hideOffer(); } }
function complete() {
  if (!state.selected) return;
  send("complete", { task_id: state.selected, disposition: $("disposition").value, notes: $("notes").value });
  $("notes").value = "";
}
function reply() {
  const text = $("reply-text").value.trim();
  if (!state.selected || !text) return;
  // conversation.js adds reply-all, the quote and the uploaded files, and tells the status.
  const fields = Object.assign({ task_id: state.selected, text }, answersUsed(state.selected),
    replyOptions(state.selected));
  const id = send("reply", fields);
  if (!id) return;
  state.pendingReply = id; $("reply-text").value = ""; toast("Reply queued…");
}

function keys(ev) {
  const t = ev.target.tagName;
  if (t === "TEXTAREA" || t === "INPUT" || t === "SELECT" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key.toLowerCase();
  if (k === "a" && state.offer) { ev.preventDefault(); accept(); }
  else if (k === "r" && state.offer) { ev.preventDefault(); reject(); }
  else if (k === "c" && state.selected && !state.offer) { ev.preventDefault(); complete(); }
}

function render() {
  const list = $("tasks"); clear(list);
  if (!state.tasks.size) list.appendChild(el("li", "empty", "No task yet."));
  for (const [id, { task }] of state.tasks) {
    const li = el("li", id === state.selected ? "selected" : "");
    li.appendChild(el("span", "chan " + task.channel, task.channel));
    li.appendChild(el("span", "", title(task)));
    li.appendChild(el("div", "meta", task.state.replace("_", "-")));
    li.onclick = () => { state.selected = id; render(); };
    list.appendChild(li);
  }
  const sel = state.selected && state.tasks.get(state.selected);
  $("detail").hidden = !sel;
  if (sel) {
    const task = sel.task, a = task.attributes || {};
    $("detail-title").textContent = title(task);
    $("detail-state").textContent = task.state.replace("_", "-");
    const meta = $("detail-meta"); clear(meta);
    meta.appendChild(el("span", "chan " + task.channel, task.channel));
    meta.appendChild(el("span", "", `${task.queue} · arrived ${when(task.created_at)}` + (task.deadline ? ` · due ${when(task.deadline)}` : "")));
    const isMail = task.channel === "email";
    $("reply-box").hidden = !isMail;  // the thread itself: conversation.js
    answersRender(isMail ? sel : null);
    $("collab-box").hidden = !isMail;
  }
  // The customer of the task being worked on; an offer's customer only while nothing is.
  const shown = sel ? { customer: sel.customer, current: sel.task.id } :
    state.offer ? { customer: state.offer.customer, current: state.offer.task.id } : null;
  customer(shown);
  $("idle").hidden = !!(state.offer || sel);
  for (const fn of RENDERERS) fn(sel || null);
}

function customer(shown) {
  const box = $("customer");
  box.hidden = !(shown && shown.customer);
  if (box.hidden) return;
  const c = shown.customer, card = $("customer-card"); clear(card);
  card.appendChild(el("div", "name", c.name || "Unknown customer"));
  card.appendChild(el("div", "ids", c.identities.map((i) => i.value).join(" · ")));
  card.appendChild(el("div", "meta", `Customer since ${when(c.since)} · ${c.open_tasks.length} open task(s)`));
  const tl = $("timeline"); clear(tl);
  if (!c.timeline.length) tl.appendChild(el("li", "", "No earlier contact."));
  for (const e of c.timeline) {
    const li = el("li", e.channel + (e.task_id === shown.current ? " current" : ""));
    const head = el("div", "when", `${when(e.at)} · ${e.channel} · ${e.state.replace("_", "-")}` + (e.task_id === shown.current ? " · this task" : ""));
    li.appendChild(head);
    if (e.channel === "email") {
      li.appendChild(el("div", "subject", e.subject || "(no subject)"));
      if (e.preview) li.appendChild(el("div", "preview", e.preview));
    } else {
      const bits = [];
      if (e.agent_id) bits.push(`agent ${e.agent_id}`);
      if (e.duration != null) bits.push(dur(e.duration));
      if (!e.answered_at && e.state !== "queued" && e.state !== "offered") bits.push("not answered");
      li.appendChild(el("div", "subject", bits.join(" · ") || "call"));
    }
    if (e.disposition) li.appendChild(el("div", "preview", `disposition: ${e.disposition}`));
    tl.appendChild(li);
  }
}

document.addEventListener("DOMContentLoaded", boot);

// Collaboration and categories (docs/console-protocol.md): notes, category, consult, reminder,
// redirect.
function collabWire() {
  const task = () => state.selected;
  const value = (id) => $(id).value.trim();
  const done = (what) => { toast(what); conversationRefresh(); };
  for (const b of document.querySelectorAll("#collab-box .action")) {
    b.onclick = () => {
      const open = b.getAttribute("aria-expanded") !== "true";
      for (const o of document.querySelectorAll("#collab-box .action")) {
        o.setAttribute("aria-expanded", "false"); $(o.dataset.panel).hidden = true;
      }
      b.setAttribute("aria-expanded", open ? "true" : "false"); $(b.dataset.panel).hidden = !open;
      if (open) { const f = $(b.dataset.panel).querySelector("input, textarea"); if (f) f.focus(); }
    };
  }
  $("collab-note-add").onclick = () => {
    if (task() && value("collab-note")) { send("note", { task_id: task(), text: value("collab-note") }); $("collab-note").value = ""; done("Note added."); }
  };
  $("collab-categorise").onclick = () => {
    if (task() && value("collab-category")) { send("categorise", { task_id: task(), category: value("collab-category") }); done("Category sent."); }
  };
  $("collab-consult").onclick = () => {
    if (task() && value("collab-expert") && value("collab-question")) {
      send("consult", { task_id: task(), expert: value("collab-expert"), question: value("collab-question") });
      $("collab-question").value = ""; done("Question sent to the expert.");
    }
  };
  $("collab-remind").onclick = () => {
    const hours = parseFloat($("collab-hours").value);
    if (task() && hours > 0) send("remind", { task_id: task(), in_seconds: Math.round(hours * 3600) });
  };
  $("collab-redirect-go").onclick = () => {
    if (task() && value("collab-redirect")) send("redirect", { task_id: task(), to: value("collab-redirect") });
  };
}

// Answers (docs/console-protocol.md "Answers"): the mode of the task's queue and category, the top
// three suggestions with their score (suggested mode), the library search (assisted), and the
// answer id and mode sent with the reply. Library texts are inserted as plain text.
const answersState = { used: new Map(), searches: new Map() };
function answersWire() {
  $("answers-search").onclick = () => {
    const q = $("answers-query").value.trim();
    if (!q || !state.selected) return;
    const id = send("answers_search", { query: q, task_id: state.selected });
    if (id) answersState.searches.set(id, state.selected);
  };
}
function answersList(list, items, mode) {
  clear(list);
  for (const a of items) {
    const li = el("li");
    const b = el("button", "answer-pick", `${a.title} (${Math.round(a.score * 100)}%)`);
    b.onclick = () => {
      $("reply-text").value = a.text;
      answersState.used.set(state.selected, { answer_id: a.answer_id, mode, text: a.text });
      if (a.missing && a.missing.length) toast(`Fill in: ${a.missing.join(", ")}`, true);
    };
    li.appendChild(b);
    list.appendChild(li);
  }
}
function answersRender(sel) {
  const box = $("answers-box"), info = (sel && sel.answers) || {};
  box.hidden = !(sel && state.features && state.features.answers);
  if (box.hidden) return;
  $("answers-mode").textContent = info.mode ? `Response mode: ${info.mode}` : "";
  answersList($("answers-suggested"), info.suggestions || [], "suggested");
}
function answersOffer(msg, s) {
  const sug = (msg.answers && msg.answers.suggestions) || [];
  if (sug.length) s.appendChild(el("div", "meta", "Suggested: " + sug.map((a) => `${a.title} (${Math.round(a.score * 100)}%)`).join(" · ")));
}
function answersUsed(taskId) {
  const used = answersState.used.get(taskId);
  if (!used) return {};
  answersState.used.delete(taskId);
  return { answer_id: used.answer_id, mode: used.mode };
}
// A supervisor decided on one of your held answers (docs/console-protocol.md "Answers").
function reviewDecided(item) {
  const what = { approved: "approved and sent", edited: "edited and sent", rejected: "rejected: it was not sent" }[item.state] || item.state;
  const note = item.note ? ` — “${item.note}”` : "";
  toast(`Your answer was ${what} by ${item.reviewer} (${item.score}/${item.max_score})${note}`, item.state === "rejected");
}

function answersOk(msg) {
  if (answersState.searches.has(msg.re)) {
    answersState.searches.delete(msg.re);
    answersList($("answers-found"), msg.answers || [], "assisted");
  } else if (msg.re === state.pendingReply && msg.held) {
    toast("Reply held for a supervisor's review before it leaves.");
  }
}
