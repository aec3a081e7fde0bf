// The conversation of the selected e-mail task (docs/console-protocol.md "Conversation"): every
// message of the thread, inbound and outbound, with the internal notes, consults and transfer notes in
// one timeline; HTML bodies in a sandboxed frame (remote images only when asked); attachments
// as downloads; reply to all, the quote and the agent's files on the reply. Customer content is
// only ever set with textContent.
"use strict";

const conv = { taskId: null, entries: [], more: false, before: null, pending: new Map(),
  uploads: new Map(), loading: false };
const STATUS_LABEL = { queued: "queued", sent: "sent", retrying: "retrying", dead: "failed",
  bounced: "bounced", received: "" };
const KIND_LABEL = { customer: "Customer", reply: "Reply", ack: "Acknowledgement",
  auto_reply: "Automatic reply", dsn: "Delivery report", consult: "Expert consult",
  redirect: "Redirected", note: "Internal note" };

function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function conversationAsk(taskId, before) {
  if (!state.features || !state.features.conversation) return;
  const id = send("conversation", Object.assign({ task_id: taskId }, before ? { before } : {}));
  if (!id) return;
  conv.pending.set(id, { taskId, before: before || null });
  conv.askedOn = state.ws;
  performance.mark("conversation-asked");
}
function conversationRefresh() { if (conv.taskId) conversationAsk(conv.taskId); }

on("conversation", (msg) => {
  const asked = conv.pending.get(msg.re);
  conv.pending.delete(msg.re);
  if (!asked || msg.task_id !== conv.taskId) return;
  conv.entries = asked.before ? msg.entries.concat(conv.entries) : msg.entries;
  conv.more = msg.more; conv.before = msg.before;
  conversationDraw(!asked.before);
});
on("conversation_changed", (msg) => {
  if (msg.task_id === conv.taskId) conversationAsk(conv.taskId);
  else if (state.tasks.has(msg.task_id)) toast(`New message on ${known(msg.task_id)}`);
});
on("message_status", (msg) => {
  const e = conv.entries.find((x) => x.id === msg.message_id);
  if (e) { e.status = msg.status; e.error = msg.error; conversationDraw(false); }
  if (msg.status === "bounced" || msg.status === "dead") {
    toast(`A message on ${known(msg.task_id)} could not be delivered: ${msg.error || msg.status}`, true);
  }
});
on("ok", (msg) => {
  if (msg.re !== state.pendingReply || msg.held) return;
  toast(msg.relay === false ? "Reply queued — no relay is configured, it will not leave." :
    "Reply queued; its delivery status shows on the message.");
  conv.uploads.delete(state.selected); drawUploads();
  conversationRefresh();
});
on("error", (msg) => { conv.pending.delete(msg.re); });
// After a reconnection the thread may have moved on: ask again on the new socket (the first
// welcome's render has already asked on it).
on("welcome", () => { if (conv.taskId && conv.askedOn !== state.ws) conversationAsk(conv.taskId); });

onRender((sel) => {
  const box = $("conversation");
  const mail = sel && sel.task.channel === "email" && state.features && state.features.conversation;
  box.hidden = !mail;
  $("relay-warning").hidden = !(sel && state.features && state.features.relay === false);
  if (!mail) { conv.taskId = null; return; }
  if (conv.taskId !== sel.task.id) {
    conv.taskId = sel.task.id; conv.entries = []; conv.more = false;
    clear($("conv-list")); $("conv-list").appendChild(el("li", "empty", "Loading the conversation…"));
    conversationAsk(sel.task.id);
    drawUploads();
  }
});

function conversationDraw(scroll) {
  const list = $("conv-list"); clear(list);
  $("conv-earlier").hidden = !conv.more;
  if (!conv.entries.length) list.appendChild(el("li", "empty", "No message yet."));
  const lastIn = [...conv.entries].reverse().find((e) => e.direction === "in" && e.kind === "customer");
  for (const e of conv.entries) list.appendChild(entryItem(e, lastIn && e.id === lastIn.id));
  if (scroll && list.lastElementChild) list.lastElementChild.scrollIntoView({ block: "nearest" });
  // for real-user timing (bench/conversation.py): the frame after the entries are drawn
  requestAnimationFrame(() => setTimeout(() => performance.mark("conversation-painted"), 0));
}

function entryItem(e, newest) {
  const internal = e.internal || e.kind === "note";
  const li = el("li", "entry " + (internal ? "internal" : e.direction === "out" ? "out" : "in"));
  li.dataset.kind = e.kind;
  const head = el("div", "entry-head");
  head.appendChild(el("span", "kind", (internal ? "Internal · " : "") + (KIND_LABEL[e.kind] || e.kind)));
  const who = e.kind === "note" ? (e.author || "").replace(/^agent:/, "") : (e.author || "");
  head.appendChild(el("span", "who", who));
  head.appendChild(el("span", "when", when(e.at)));
  if (e.status && STATUS_LABEL[e.status]) {
    head.appendChild(el("span", `status ${e.status}`, STATUS_LABEL[e.status]));
  }
  li.appendChild(head);
  if (e.kind !== "note") {
    const addr = el("div", "addresses");
    if (e.to && e.to.length) addr.appendChild(el("span", "", `To: ${e.to.join(", ")}`));
    if (e.cc && e.cc.length) addr.appendChild(el("span", "", `Cc: ${e.cc.join(", ")}`));
    li.appendChild(addr);
    if (e.subject) li.appendChild(el("div", "subject", e.subject));
    if (e.error && (e.status === "bounced" || e.status === "dead" || e.status === "retrying")) {
      li.appendChild(el("div", "error", e.error));
    }
  } else if (e.transfer) {
    li.appendChild(el("div", "meta", `Transfer to ${e.transfer}`));
  }
  const body = el("pre", "body", e.text || (e.html_url ? "" : "(no text)"));
  li.appendChild(body);
  if (e.html_url) li.appendChild(htmlView(e, body, newest));
  if (e.attachments && e.attachments.length) {
    const files = el("ul", "files");
    for (const a of e.attachments) {
      const f = el("li");
      const link = el("a", "", a.name);
      link.href = a.url; link.setAttribute("download", a.name); link.rel = "noopener";
      f.appendChild(link);
      f.appendChild(el("span", "meta", ` ${a.type} · ${size(a.size)}${a.inline ? " · inline" : ""}`));
      files.appendChild(f);
    }
    li.appendChild(files);
  }
  return li;
}

function htmlView(e, body, open) {
  const box = el("div", "html-view");
  const bar = el("div", "buttons");
  const show = el("button", "", "Formatted view");
  const images = el("button", "", "Load remote images");
  images.hidden = true;
  const frame = () => {
    let f = box.querySelector("iframe");
    if (!f) {
      f = document.createElement("iframe");
      f.setAttribute("sandbox", "allow-popups allow-popups-to-escape-sandbox");
      f.setAttribute("referrerpolicy", "no-referrer");
      f.title = "Formatted message";
      f.className = "html-frame";
      box.appendChild(f);
    }
    return f;
  };
  show.onclick = () => {
    const on = show.textContent === "Formatted view";
    show.textContent = on ? "Plain text" : "Formatted view";
    body.hidden = on && !!e.text;
    images.hidden = !on;
    if (on) frame().src = e.html_url; else { const f = box.querySelector("iframe"); if (f) f.remove(); }
  };
  images.onclick = () => { frame().src = e.html_images_url; images.disabled = true; };
  bar.appendChild(show); bar.appendChild(images);
  box.insertBefore(bar, box.firstChild);
  if (open || !e.text) setTimeout(() => show.click(), 0);
  return box;
}

// --- the reply's options and files -----------------------------------------------------------

function replyOptions(taskId) {
  const files = conv.uploads.get(taskId) || [];
  return { reply_all: $("reply-all").checked, quote: $("reply-quote").checked,
    attachments: files.filter((f) => f.id).map((f) => f.id) };
}

function drawUploads() {
  const list = $("reply-attachments"); clear(list);
  for (const f of conv.uploads.get(state.selected) || []) {
    const li = el("li", "chip", `${f.name} · ${f.id ? size(f.size) : "uploading…"}`);
    const x = el("button", "chip-x", "×");
    x.title = `Remove ${f.name}`;
    x.onclick = () => {
      conv.uploads.set(state.selected, (conv.uploads.get(state.selected) || []).filter((g) => g !== f));
      drawUploads();
    };
    li.appendChild(x);
    list.appendChild(li);
  }
}

async function uploadOne(taskId, file) {
  const entry = { name: file.name, size: file.size, id: null };
  conv.uploads.set(taskId, (conv.uploads.get(taskId) || []).concat([entry]));
  drawUploads();
  try {
    const r = await fetch(`/console/upload?name=${encodeURIComponent(file.name)}`, {
      method: "POST", body: file,
      headers: { "Authorization": `Bearer ${state.token}`,
        "Content-Type": file.type || "application/octet-stream" } });
    if (!r.ok) throw new Error((await r.text()).trim() || r.statusText);
    entry.id = (await r.json()).upload_id;
  } catch (err) {
    conv.uploads.set(taskId, (conv.uploads.get(taskId) || []).filter((g) => g !== entry));
    toast(`Could not attach ${file.name}: ${err.message}`, true);
  }
  drawUploads();
}

document.addEventListener("DOMContentLoaded", () => {
  $("conv-earlier").onclick = () => { if (conv.taskId && conv.before) conversationAsk(conv.taskId, conv.before); };
  $("reply-files").onchange = (ev) => {
    const taskId = state.selected;
    for (const file of ev.target.files) uploadOne(taskId, file);
    ev.target.value = "";
  };
});
