// Switchboard agent console — pull queues (docs/console-protocol.md "Pull queues"): the tasks
// the agent may pick, as the server pushes them (`pull_list`: the router's order, only what this agent
// could take), picked with one click (`pick`). A pick that comes second is refused by the server
// (`task_taken`) and a fresh list follows. Loaded after console.js, whose `state`, `$`, `el`,
// `clear`, `send`, `toast` and `on` it uses. Text only (textContent), no innerHTML.
"use strict";

(() => {
  let skew = 0;  // server clock minus this browser's, in seconds
  let list = null;  // the last pull_list frame
  const picks = new Map();  // request id -> task id of the picks waiting for their answer
  const TAKEN = new Set(["task_taken", "unknown_task"]);

  const serverNow = () => Date.now() / 1000 + skew;
  function age(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  function due(t) {
    const left = t - serverNow();
    return left < 0 ? `overdue by ${age(-left)}` : `due in ${age(left)}`;
  }

  function item(i) {
    const li = el("li", "pull-item " + i.channel);
    li.dataset.taskId = i.task_id;
    const b = el("button", "pull-pick");
    b.type = "button";
    b.title = "Pick this task";
    const head = el("div", "pull-head");
    head.appendChild(el("span", "chan " + i.channel, i.channel));
    if (i.request) head.appendChild(el("span", "pull-request", i.request));
    head.appendChild(el("span", "pull-title", i.channel === "phone" ? `Call from ${i.caller || "unknown number"}` : i.subject || "(no subject)"));
    b.appendChild(head);
    const meta = el("div", "meta");
    meta.appendChild(el("span", "pull-customer", i.customer || "unknown customer"));
    const waited = el("span", "pull-age", ` · waiting ${age(serverNow() - i.created_at)}`);
    waited.dataset.createdAt = String(i.created_at);
    meta.appendChild(waited);
    if (i.deadline) meta.appendChild(el("span", "pull-deadline", ` · ${due(i.deadline)}`));
    if (i.priority) meta.appendChild(el("span", "pull-priority", ` · priority ${i.priority}`));
    b.appendChild(meta);
    b.onclick = () => {
      const id = send("pick", { task_id: i.task_id });
      if (id) { picks.set(id, i.task_id); b.disabled = true; }
    };
    li.appendChild(b);
    return li;
  }

  function show(msg) {
    list = msg;
    const box = $("pull");
    box.hidden = !msg.pulls;
    if (!msg.pulls) return;
    const ol = $("pull-list");
    clear(ol);
    $("pull-count").textContent = msg.total > msg.items.length ? `${msg.items.length} of ${msg.total}` : String(msg.total);
    if (!msg.items.length) ol.appendChild(el("li", "empty", "Nothing to pick right now."));
    for (const i of msg.items) ol.appendChild(item(i));
  }

  function ages() {  // the list's ages move on between pushes
    for (const s of document.querySelectorAll("#pull-list .pull-age")) {
      s.textContent = ` · waiting ${age(serverNow() - Number(s.dataset.createdAt))}`;
    }
  }

  on("welcome", (msg) => { skew = (msg.server_time || Date.now() / 1000) - Date.now() / 1000; });
  on("pull_list", show);
  on("ok", (msg) => { picks.delete(msg.re); });
  on("error", (msg) => {
    if (!picks.has(msg.re)) return;
    picks.delete(msg.re);
    if (TAKEN.has(msg.code)) toast("Someone else took that task first. The list is up to date again.", true);
    if (list) show(list);  // the buttons back; the server sends the fresh list
  });
  setInterval(ages, 1000);
})();
