// Switchboard supervisor page: the answer library (versions, import, export), the review queue,
// the mails parked as spam and customers (search, card and timeline, corrections, merges), over
// the console's WebSocket (protocol v1, docs/console-protocol.md "Answers", "Collaboration and
// categories", "Customers"). The server decides who may do what; this page only shows it.
// Plain DOM, no library; text only ever set with textContent or value.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "switchboard.wallboard.token";  // the wallboard's: one sign-in for both pages
const IMPORT_PART_CHARS = 40000;  // one answer_import stays well under the 64 KiB frame limit
const SECTIONS = ["answers", "review", "spam", "customers"];
const state = { ws: null, cfg: null, token: null, nextId: 1, retry: 0, pending: new Map(),
  sub: null, answers: [], answer: null, checklist: {}, review: new Map(), spam: [],
  queues: [], customer: null, results: [], mergeFrom: null };

// ------------------------------------------------------------------ helpers

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function cell(row, text, cls) { const td = el("td", cls, text); row.appendChild(td); return td; }
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function when(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }
function toast(text, bad) {
  const t = $("toast"); t.textContent = text; t.className = bad ? "toast bad" : "toast"; t.hidden = false;
  clearTimeout(toast.h); toast.h = setTimeout(() => { t.hidden = true; }, 5000);
}
function link(on, text) { const l = $("link"); l.className = on ? "link on" : "link off"; l.textContent = text; }
function list(text) { return String(text || "").split(",").map((s) => s.trim()).filter(Boolean); }
function count(n, one, many) { return `${n} ${n === 1 ? one : many}`; }
function button(text, cls, onClick) {
  const b = el("button", cls, text); b.type = "button"; b.addEventListener("click", onClick); return b;
}

// A request: resolves with the server's answer, rejects (after a toast) with its error.
function request(type, fields) {
  return new Promise((resolve, reject) => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      toast("Not connected", true); reject(new Error("not connected")); return;
    }
    const id = state.nextId++;
    state.pending.set(id, { resolve, reject });
    state.ws.send(JSON.stringify(Object.assign({ type, id }, fields || {})));
  });
}

// ------------------------------------------------------------------ connection

async function boot() {
  state.cfg = await (await fetch("/console/config.json")).json();
  wire();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) { state.token = saved; connect(); }
}

function signedOut(text) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("login").hidden = false; $("office").hidden = true;
  $("login-error").textContent = text || "";
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
    for (const p of state.pending.values()) p.reject(new Error("disconnected"));
    state.pending.clear();
    if (state.ws !== ws) return;
    state.ws = null;
    if (!opened) { handshakeFailed(signedOut, "The sign-in was refused (expired or invalid): sign in again."); return; }
    if (ev.code >= 4000 && ev.code < 4100) { signedOut(ev.reason || "Disconnected."); return; }
    reconnectLater();
  };
}

function handle(msg) {
  const waiting = msg.re !== undefined && msg.re !== null ? state.pending.get(msg.re) : null;
  if (waiting) {
    state.pending.delete(msg.re);
    if (msg.type === "error") { toast(`${msg.message} (${msg.code})`, true); waiting.reject(msg); }
    else waiting.resolve(msg);
    return;
  }
  switch (msg.type) {
    case "welcome": return welcome(msg);
    case "error": return toast(`${msg.message} (${msg.code})`, true);
    case "review_held": state.review.set(msg.item.id, msg.item); return renderReview();
    case "review_decided": state.review.delete(msg.item.id); return renderReview();
    case "queues": return queuesSeen(msg.queues || []);
    default: return;
  }
}

function welcome(msg) {
  if (msg.role !== "supervisor") {
    const ws = state.ws; state.ws = null;
    signedOut("This page is for supervisors: sign in with a supervisor's account.");
    if (ws) ws.close();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  state.sub = msg.sub;
  $("login").hidden = true; $("office").hidden = false;
  $("who").textContent = `${msg.sub} · supervisor`;
  link(true, "connected");
  show(SECTIONS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "answers");
  loadAnswers(); loadReview(); loadSpam();
}

function show(section) {
  for (const name of SECTIONS) {
    $(name).hidden = name !== section;
    $(`tab-${name}`).setAttribute("aria-selected", String(name === section));
  }
  if (location.hash.slice(1) !== section) history.replaceState(null, "", `#${section}`);
}

function queuesSeen(queues) {
  const names = [...new Set(queues.map((q) => q.queue))].sort();
  if (names.join() === state.queues.join()) return;
  state.queues = names;
  renderSpam();
}

// ------------------------------------------------------------------ the answer library

async function loadAnswers() {
  const got = await request("answer_list", { include_retired: $("answer-retired").checked }).catch(() => null);
  if (!got) return;
  state.answers = got.answers;
  renderAnswers();
}

function renderAnswers() {
  const body = $("answer-list"); clear(body);
  const words = $("answer-filter").value.trim().toLowerCase();
  const shown = state.answers.filter((a) => !words
    || `${a.id}\n${a.title}\n${a.text}`.toLowerCase().includes(words));
  for (const a of shown) {
    const row = el("tr", a.retired ? "retired" : "");
    row.id = `answer-${a.id}`; row.tabIndex = 0;
    if (state.answer && state.answer.id === a.id) row.classList.add("selected");
    cell(row, a.id, "mono");
    const title = cell(row, a.title);
    if (a.retired) title.appendChild(el("span", "tag", "retired"));
    cell(row, a.language);
    cell(row, [...a.queues, ...a.categories].join(", ") || "all");
    cell(row, `v${a.version}`, "version");
    cell(row, when(a.updated_at), "muted");
    row.addEventListener("click", () => openAnswer(a));
    row.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openAnswer(a); });
    body.appendChild(row);
  }
  $("answer-empty").hidden = state.answers.length > 0;
}

function openAnswer(a) {
  state.answer = a;
  $("answer-form-title").textContent = a ? `Edit “${a.title}”` : "New answer";
  $("answer-id").value = a ? a.id : ""; $("answer-id").readOnly = Boolean(a);
  $("answer-title").value = a ? a.title : "";
  $("answer-text").value = a ? a.text : "";
  $("answer-html").value = a ? a.html : "";
  $("answer-language").value = a ? a.language : "en";
  $("answer-queues").value = a ? a.queues.join(", ") : "";
  $("answer-categories").value = a ? a.categories.join(", ") : "";
  $("answer-retire").hidden = !a || a.retired;
  clear($("answer-versions"));
  renderAnswers();
  if (a) loadVersions(a.id); else $("answer-id").focus();
}

async function loadVersions(answerId) {
  const got = await request("answer_history", { answer_id: answerId }).catch(() => null);
  if (!got || !state.answer || state.answer.id !== answerId) return;
  const ol = $("answer-versions"); clear(ol);
  for (const v of [...got.versions].reverse()) {
    const li = el("li", "version-item");
    li.dataset.version = v.version;
    const head = el("div", "version-head");
    head.appendChild(el("b", null, `v${v.version}`));
    head.appendChild(el("span", "muted", ` ${when(v.at)} · by ${v.author}${v.retired ? " · retired" : ""}`));
    li.appendChild(head);
    const more = el("details");
    more.appendChild(el("summary", null, v.title));
    more.appendChild(el("pre", "text", v.text));
    li.appendChild(more);
    ol.appendChild(li);
  }
}

async function saveAnswer(ev) {
  ev.preventDefault();
  const answer = { id: $("answer-id").value.trim(), title: $("answer-title").value,
    text: $("answer-text").value, html: $("answer-html").value,
    language: $("answer-language").value.trim() || "en",
    queues: list($("answer-queues").value), categories: list($("answer-categories").value) };
  const before = state.answer ? state.answer.version : 0;
  const got = await request("answer_save", { answer }).catch(() => null);
  if (!got) return;
  const saved = got.answer;
  toast(saved.version === before ? "Nothing changed: no new version." : `Saved: version ${saved.version}.`);
  await loadAnswers();
  openAnswer(state.answers.find((a) => a.id === saved.id) || saved);
}

async function retireAnswer() {
  const a = state.answer;
  if (!a) return;
  const got = await request("answer_retire", { answer_id: a.id }).catch(() => null);
  if (!got) return;
  toast(`Retired: ${a.id} (version ${got.answer.version}).`);
  await loadAnswers();
  openAnswer(got.answer);
}

// Import: the whole file checked part by part first (nothing saved), then saved part by part.
async function importFile(file) {
  const note = $("import-result");
  note.hidden = false; note.className = "note"; note.textContent = `Reading ${file.name}…`;
  const lines = (await file.text()).split(/\r?\n/);
  const ids = new Map();
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].length > IMPORT_PART_CHARS) return importFailed(`line ${i + 1} is too long for the page: import this file with the command line`);
    let obj = null;
    try { obj = lines[i].trim() ? JSON.parse(lines[i]) : null; } catch (e) { obj = null; }
    if (obj && typeof obj.id === "string") {
      if (ids.has(obj.id)) return importFailed(`line ${i + 1}: answer ${obj.id} appears twice (line ${ids.get(obj.id)})`);
      ids.set(obj.id, i + 1);
    }
  }
  const parts = [];
  let part = [], first = 1, size = 0;
  lines.forEach((line, i) => {
    if (part.length && size + line.length > IMPORT_PART_CHARS) { parts.push({ lines: part, first_line: first }); part = []; size = 0; first = i + 1; }
    part.push(line); size += line.length + 8;
  });
  if (part.length) parts.push({ lines: part, first_line: first });
  for (const check of [true, false]) {
    const total = { created: 0, updated: 0, unchanged: 0 };
    for (const p of parts) {
      let got;
      try { got = await request("answer_import", { lines: p.lines, first_line: p.first_line, check }); }
      catch (e) { return importFailed(e.message || "refused"); }
      total.created += got.created; total.updated += got.updated; total.unchanged += got.unchanged;
    }
    if (!check) {
      note.textContent = `Imported ${file.name}: ${total.created} new, ${total.updated} updated, ${total.unchanged} unchanged.`;
      toast(note.textContent);
    }
  }
  await loadAnswers();
  if (state.answer) openAnswer(state.answers.find((a) => a.id === state.answer.id) || null);
}

function importFailed(why) {
  const note = $("import-result");
  note.hidden = false; note.className = "note bad";
  note.textContent = `Nothing was imported: ${why}`;
}

async function exportAnswers() {
  const got = await request("answer_export", { include_retired: true }).catch(() => null);
  if (!got) return;
  const blob = new Blob([got.lines.map((l) => l + "\n").join("")], { type: "application/x-ndjson" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `answers-${new Date().toISOString().slice(0, 10)}.jsonl`;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  toast(`Exported ${got.lines.length} answers.`);
}

// ------------------------------------------------------------------ the review queue

async function loadReview() {
  const got = await request("review_list").catch(() => null);
  if (!got) return;
  state.checklist = got.checklist || {};
  state.review = new Map(got.items.map((i) => [i.id, i]));
  renderReview();
}

function renderReview() {
  const box = $("review-list");
  const seen = new Set();
  for (const item of state.review.values()) {
    seen.add(`review-${item.id}`);
    if (!$(`review-${item.id}`)) box.appendChild(reviewCard(item));
  }
  for (const card of [...box.children]) if (!seen.has(card.id)) card.remove();
  $("review-empty").hidden = state.review.size > 0;
  $("review-count").textContent = String(state.review.size);
}

function reviewCard(item) {
  const card = el("article", "card review-item"); card.id = `review-${item.id}`;
  const asked = item.asked || {};
  const head = el("div", "review-head");
  head.appendChild(el("b", null, asked.request || item.task_id));
  head.appendChild(el("span", "muted", ` · ${item.queue} · ${item.agent_id ? "by " + item.agent_id : "automatic"} · ${item.mode}` +
    `${item.answer_id ? " · from " + item.answer_id : ""} · held ${when(item.created_at)}`));
  card.appendChild(head);
  const cols = el("div", "review-cols");
  const wrote = el("section", "asked");
  wrote.appendChild(el("h3", null, "The customer wrote"));
  wrote.appendChild(el("div", "muted", `${asked.sender || ""}${asked.at ? " · " + when(asked.at) : ""}`));
  wrote.appendChild(el("div", "subject", asked.subject || ""));
  wrote.appendChild(el("pre", "text", asked.text || ""));
  cols.appendChild(wrote);
  const answer = el("section", "proposed");
  answer.appendChild(el("h3", null, "Proposed answer"));
  const text = el("textarea", "review-text"); text.rows = 10; text.value = item.text;
  text.setAttribute("aria-label", "Proposed answer");
  answer.appendChild(text);
  const marks = el("fieldset", "checklist");
  marks.appendChild(el("legend", null, "Checklist"));
  for (const [name, points] of Object.entries(state.checklist)) {
    const label = el("label", "check");
    const box = el("input"); box.type = "checkbox"; box.name = name;
    label.appendChild(box); label.appendChild(document.createTextNode(` ${name} (${points})`));
    marks.appendChild(label);
  }
  answer.appendChild(marks);
  const note = el("input", "review-note"); note.placeholder = "note for the agent (optional)"; note.maxLength = 2000;
  note.setAttribute("aria-label", "Note");
  answer.appendChild(note);
  const approve = button("Approve", "good approve", () => decide(item, "approved", card));
  const edited = button("Send edited", "primary send-edited", () => decide(item, "edited", card));
  const reject = button("Reject", "danger reject", () => decide(item, "rejected", card));
  edited.disabled = true;
  text.addEventListener("input", () => {
    const changed = text.value !== item.text;
    edited.disabled = !changed; approve.disabled = changed;
  });
  const buttons = el("div", "buttons");
  buttons.append(approve, edited, reject);
  answer.appendChild(buttons);
  cols.appendChild(answer);
  card.appendChild(cols);
  return card;
}

async function decide(item, decision, card) {
  const checklist = {};
  for (const box of card.querySelectorAll(".checklist input")) checklist[box.name] = box.checked;
  const fields = { item_id: item.id, decision, checklist, note: card.querySelector(".review-note").value };
  if (decision === "edited") fields.text = card.querySelector(".review-text").value;
  for (const b of card.querySelectorAll("button")) b.disabled = true;
  const got = await request("review_decide", fields).catch(() => null);
  if (!got) { for (const b of card.querySelectorAll("button")) b.disabled = false; return; }
  const i = got.item;
  toast(`${decision === "rejected" ? "Rejected: nothing leaves" : "Sent"} (score ${i.score}/${i.max_score}); ${i.agent_id || "the system"} is told.`);
  state.review.delete(item.id);
  renderReview();
}

// ------------------------------------------------------------------ spam

async function loadSpam() {
  const got = await request("spam_list").catch(() => null);
  if (!got) return;
  state.spam = got.tasks;
  state.spamTotal = got.total;
  renderSpam();
}

function renderSpam() {
  const body = $("spam-list"); clear(body);
  for (const t of state.spam) {
    const row = el("tr"); row.id = `spam-${t.task_id}`;
    cell(row, when(t.created_at), "muted");
    cell(row, t.sender);
    const subject = cell(row, t.subject || "(no subject)");
    subject.title = t.preview;
    cell(row, t.score === null ? "–" : `${t.score.toFixed(1)} / ${t.threshold === null ? "?" : t.threshold.toFixed(1)}`, "mono");
    cell(row, t.rules.slice(0, 4).join(", ") + (t.rules.length > 4 ? " …" : ""), "muted small");
    const pick = el("select", "release-to"); pick.setAttribute("aria-label", "Release to");
    const names = [...new Set([...(t.queue ? [t.queue] : []), ...state.queues])].filter((q) => q !== "spam");
    for (const q of names) {
      const o = el("option", null, q === t.queue ? `${q} (its queue)` : q); o.value = q;
      pick.appendChild(o);
    }
    const td = cell(row, ""); td.appendChild(pick);
    const go = cell(row, "");
    go.appendChild(button("Release", "primary", () => releaseSpam(t, pick.value)));
    body.appendChild(row);
  }
  $("spam-empty").hidden = state.spam.length > 0;
  const more = (state.spamTotal || 0) - state.spam.length;
  $("spam-more").hidden = more <= 0;
  $("spam-more").textContent = more > 0 ? `and ${more} older` : "";
  $("spam-count").textContent = String(state.spamTotal || 0);
}

async function releaseSpam(t, queue) {
  const got = await request("spam_release", { task_id: t.task_id, to_queue: queue || undefined }).catch(() => null);
  if (!got) return;
  toast(`Released to ${queue || t.queue}: ${t.subject || t.task_id}`);
  loadSpam();
}

// ------------------------------------------------------------------ customers

async function searchCustomers(ev) {
  ev.preventDefault();
  const query = $("customer-query").value.trim();
  const got = await request("customer_search", { query }).catch(() => null);
  if (!got) return;
  state.results = got.customers;
  renderResults();
}

function renderResults() {
  const body = $("customer-results"); clear(body);
  for (const c of state.results) {
    const row = el("tr"); row.id = `customer-${c.id}`;
    if (state.customer && state.customer.id === c.id) row.classList.add("selected");
    cell(row, c.name || "(no name)");
    cell(row, c.identities.map((i) => i.value).join(", ") || "–", "small");
    cell(row, when(c.since), "muted");
    const acts = cell(row, "", "actions");
    acts.appendChild(button("Open", "open", () => openCustomer(c.id)));
    const merge = button("Merge into open", "merge-into", () => askMerge(c));
    merge.disabled = !state.customer || state.customer.id === c.id;
    merge.title = state.customer ? `Merge into ${state.customer.name || state.customer.id}` : "Open the customer to keep first";
    acts.appendChild(merge);
    body.appendChild(row);
  }
  $("customer-none").hidden = state.results.length > 0;
}

async function openCustomer(customerId) {
  const got = await request("history", { customer_id: customerId }).catch(() => null);
  if (!got) return;
  const c = got.customer;
  state.customer = c;
  state.results = state.results.map((r) => (r.id === c.id ? Object.assign({}, r, { name: c.name, identities: c.identities }) : r));
  $("customer-card").hidden = false;
  $("merge-panel").hidden = true;
  $("customer-id").textContent = `${c.id} · since ${when(c.since)}`;
  $("customer-name").value = c.name;
  const ul = $("customer-identities"); clear(ul);
  for (const i of c.identities) addIdentity(i.kind, i.value);
  const body = $("customer-timeline"); clear(body);
  for (const e of c.timeline) {
    const row = el("tr");
    cell(row, when(e.at), "muted");
    cell(row, e.channel);
    cell(row, e.queue);
    cell(row, e.state + (e.disposition ? ` (${e.disposition})` : ""));
    const what = cell(row, e.channel === "email" ? (e.subject || "(no subject)")
      : (e.duration != null ? `call, ${Math.round(e.duration)} s` : "call"));
    if (e.preview) what.title = e.preview;
    cell(row, e.agent_id || "");
    body.appendChild(row);
  }
  $("timeline-empty").hidden = c.timeline.length > 0;
  renderResults();
}

function addIdentity(kind, value) {
  const li = el("li", "identity");
  const pick = el("select", "identity-kind"); pick.setAttribute("aria-label", "Kind");
  for (const k of ["email", "phone"]) { const o = el("option", null, k === "email" ? "e-mail" : "phone"); o.value = k; pick.appendChild(o); }
  pick.value = kind;
  const input = el("input", "identity-value"); input.value = value || "";
  input.setAttribute("aria-label", kind === "email" ? "E-mail address" : "Phone number");
  input.type = kind === "email" ? "email" : "tel";
  li.append(pick, input, button("Remove", "remove", () => li.remove()));
  $("customer-identities").appendChild(li);
  return input;
}

async function saveCustomer(ev) {
  ev.preventDefault();
  const c = state.customer;
  if (!c) return;
  const identities = [...$("customer-identities").children].map((li) => ({
    kind: li.querySelector(".identity-kind").value,
    value: li.querySelector(".identity-value").value.trim() })).filter((i) => i.value);
  const got = await request("customer_edit", { customer_id: c.id, name: $("customer-name").value, identities }).catch(() => null);
  if (!got) return;
  toast(`Saved: ${got.customer.name || c.id}`);
  state.results = state.results.map((r) => (r.id === got.customer.id ? got.customer : r));
  await openCustomer(c.id);
}

function askMerge(other) {
  const keep = state.customer;
  if (!keep || keep.id === other.id) return;
  state.mergeFrom = other;
  $("merge-text").textContent = `Merge “${other.name || other.id}” (${other.identities.map((i) => i.value).join(", ") || "no identity"}) into “${keep.name || keep.id}”: ` +
    "its e-mail addresses, phone numbers and tasks move to the customer open here. This cannot be undone.";
  $("merge-panel").hidden = false;
  $("merge-confirm").focus();
}

async function merge() {
  const keep = state.customer, other = state.mergeFrom;
  if (!keep || !other) return;
  const got = await request("merge", { survivor_id: keep.id, merged_id: other.id }).catch(() => null);
  if (!got) return;
  toast(`Merged: ${count(got.identities.length, "identity", "identities")} and ${count(got.task_ids.length, "task", "tasks")} moved to ${keep.name || keep.id}.`);
  state.mergeFrom = null;
  state.results = state.results.filter((r) => r.id !== other.id);
  await openCustomer(keep.id);
}

// ------------------------------------------------------------------ wiring

function wire() {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    $("login-error").textContent = "";
    connect();
  });
  for (const name of SECTIONS) $(`tab-${name}`).addEventListener("click", () => show(name));
  $("answer-filter").addEventListener("input", renderAnswers);
  $("answer-retired").addEventListener("change", loadAnswers);
  $("answer-new").addEventListener("click", () => openAnswer(null));
  $("answer-cancel").addEventListener("click", () => openAnswer(null));
  $("answer-form").addEventListener("submit", saveAnswer);
  $("answer-retire").addEventListener("click", retireAnswer);
  $("answer-import").addEventListener("click", () => $("answer-file").click());
  $("answer-file").addEventListener("change", () => {
    const file = $("answer-file").files[0];
    $("answer-file").value = "";
    if (file) importFile(file);
  });
  $("answer-export").addEventListener("click", exportAnswers);
  $("review-refresh").addEventListener("click", loadReview);
  $("spam-refresh").addEventListener("click", loadSpam);
  $("customer-search").addEventListener("submit", searchCustomers);
  $("customer-form").addEventListener("submit", saveCustomer);
  $("add-email").addEventListener("click", () => addIdentity("email", "").focus());
  $("add-phone").addEventListener("click", () => addIdentity("phone", "").focus());
  $("merge-confirm").addEventListener("click", merge);
  $("merge-cancel").addEventListener("click", () => { state.mergeFrom = null; $("merge-panel").hidden = true; });
}

document.addEventListener("DOMContentLoaded", boot);
