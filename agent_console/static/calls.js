// Switchboard agent console — the desk around a task (docs/console-protocol.md "Calls, wrap-up and
// dispositions"): the caller in the offer's title, a live call timer from the answer the server
// reports (`answered_at`), the wrap-up countdown (`wrap_up_until`) with Done and Extend, the
// queue's disposition codes in the Disposition list, and the agent's chosen status next to the
// presence supervisors see. Loaded after console.js, whose `state`, `$`, `el`, `clear`, `send`,
// `toast`, `render`, `title`, `on` and `onRender` it uses. Text only (textContent), no innerHTML.
"use strict";

(() => {
  const EXTEND_S = 60;  // what one press of Extend asks for
  const STATUS_LABEL = { available: "Available", break: "On break", offline: "Offline",
    not_responding: "Not responding" };
  // The Disposition list as the page ships it: used for queues that list no codes.
  const DEFAULT_CODES = Array.from($("disposition").options, (o) => ({ code: o.value, label: o.textContent }));
  let skew = 0;  // server clock minus this browser's, in seconds (from the welcome)
  let shownCodes = "";

  const serverNow = () => Date.now() / 1000 + skew;
  const clock = (s) => {
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = String(s % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${r}` : `${m}:${r}`;
  };

  function chosen(p) {
    if (!p) return;
    const box = $("status-chosen");
    box.textContent = (STATUS_LABEL[p.status] || p.status) + (p.status === "break" && p.reason ? ` (${p.reason})` : "");
    box.dataset.status = p.status;
  }

  // The caller of a call task: its number, else the caller's name, else the SIP From, else the
  // customer's phone number.
  function caller(task, customer) {
    const a = task.attributes || {};
    const fromUser = typeof a.from === "string" ? (a.from.match(/^(?:sips?|tel):([^@;]+)/) || [])[1] : null;
    const phone = customer && (customer.identities || []).find((i) => i.kind === "phone");
    return a.caller || a.caller_name || fromUser || (phone && phone.value) || "unknown number";
  }

  function offerTitle(msg) {
    if (msg.task.channel !== "phone") return;
    $("offer-title").textContent = `Incoming call from ${caller(msg.task, msg.customer)} — ${msg.task.queue}`;
  }

  function keep(msg) {  // what a task_state or task_update frame says of a task the page holds
    const t = state.tasks.get(msg.task_id);
    if (!t) return;
    for (const k of ["answered_at", "wrap_up_until", "wrap_up_limit"]) if (k in msg) t.task[k] = msg[k];
    render();
  }

  function codes(task) {
    const list = task && task.dispositions && task.dispositions.length ? task.dispositions : DEFAULT_CODES;
    const key = JSON.stringify(list);
    if (key === shownCodes) return;
    const select = $("disposition"), was = select.value;
    clear(select);
    for (const d of list) {
      const o = el("option", "", d.label);
      o.value = d.code;
      select.appendChild(o);
    }
    if (list.some((d) => d.code === was)) select.value = was;
    shownCodes = key;
  }

  function bar(sel) {
    const task = sel && sel.task;
    const onCall = task && task.channel === "phone" && task.state === "assigned" && task.answered_at;
    const wrapping = task && task.state === "wrap_up" && task.wrap_up_until;
    $("call-bar").hidden = !(onCall || wrapping);
    $("call-timer").hidden = !onCall;
    $("wrap-left").hidden = $("wrap-done").hidden = !wrapping;
    if (onCall) $("call-timer").textContent = `On call ${clock(serverNow() - task.answered_at)}`;
    if (wrapping) {
      const left = task.wrap_up_until - serverNow();
      $("wrap-left").textContent = `Wrap-up: ${clock(left)} left`;
      $("wrap-left").classList.toggle("ending", left < 10);
      $("wrap-extend").hidden = !(task.wrap_up_limit - Math.max(task.wrap_up_until, serverNow()) >= 1);
    } else {
      $("wrap-extend").hidden = true;
    }
  }

  function extend() {
    const sel = state.selected && state.tasks.get(state.selected);
    if (!sel || sel.task.state !== "wrap_up") return;
    const room = sel.task.wrap_up_limit - Math.max(sel.task.wrap_up_until, serverNow());
    const seconds = Math.floor(Math.min(EXTEND_S, room));
    if (seconds >= 1) send("wrap_up_extend", { task_id: sel.task.id, seconds });
  }

  on("welcome", (msg) => { skew = (msg.server_time || Date.now() / 1000) - Date.now() / 1000; chosen(msg.presence); });
  on("presence", chosen);
  on("offer", offerTitle);
  on("task_state", keep);
  on("task_update", keep);
  onRender((sel) => {
    codes(sel && sel.task);
    bar(sel);
    if (sel && sel.task.channel === "phone") {  // a call's title names its caller
      $("detail-title").textContent = `Call from ${caller(sel.task, sel.customer)}`;
    }
  });
  $("wrap-done").onclick = () => $("complete").click();
  $("wrap-extend").onclick = extend;
  setInterval(() => bar(state.selected && state.tasks.get(state.selected)), 250);
})();
