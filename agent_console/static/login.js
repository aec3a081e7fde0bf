// Switchboard sign-in with an id and a password (POST /login, docs/console-protocol.md
// "Sign-in"), the token refreshed before it expires (POST /login/refresh: the socket is authenticated at its
// handshake, so a fresh token only matters for a reconnection), and "Sign off", which forgets
// the token. Loaded after the page's script (console.js, or wallboard.js), whose `state`, `$`,
// `connect()`, `link()` and `showSignIn(text)` (wallboard: `signedOut(text)`) it uses; the page
// names where it keeps its token in `#login[data-token-key]`. Never logs a password or a token.
"use strict";

const SIGN_IN = {
  tokenKey: "switchboard.token",  // the page's saved token (sessionStorage)
  key: "switchboard.token.login",  // when to refresh (local ms) while it came from /login
  marginS: 60,  // refresh this long before the token expires
  retryS: 15,  // after a refresh that could not reach the server
  timer: null,
};

function tokenClaims(token) {
  try { return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))); }
  catch (e) { return {}; }
}

// A token from /login or /login/refresh: used for the next connection, refreshed in time.
function keepToken(token) {
  const c = tokenClaims(token);
  const lifetimeS = Math.max(0, (c.exp || 0) - (c.iat || 0));
  const due = Date.now() + Math.max(5, lifetimeS - SIGN_IN.marginS) * 1000;
  state.token = token;
  sessionStorage.setItem(SIGN_IN.tokenKey, token);
  sessionStorage.setItem(SIGN_IN.key, String(due));
  refreshAt(due);
}

function refreshAt(due) {
  clearTimeout(SIGN_IN.timer);
  SIGN_IN.timer = setTimeout(refreshToken, Math.max(0, due - Date.now()));
}

function forgetToken() {
  clearTimeout(SIGN_IN.timer); SIGN_IN.timer = null;
  state.token = null;
  sessionStorage.removeItem(SIGN_IN.tokenKey);
  sessionStorage.removeItem(SIGN_IN.key);
}

async function refreshToken() {
  const token = state.token || sessionStorage.getItem(SIGN_IN.tokenKey);
  if (!token) return;
  let res, body;
  try {
    res = await fetch("/login/refresh", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
    body = await res.json().catch(() => ({}));
  } catch (e) {  // the server is out of reach for now: try again while the token lives
    SIGN_IN.timer = setTimeout(refreshToken, SIGN_IN.retryS * 1000);
    return;
  }
  if (res.ok && body.token) { keepToken(body.token); return; }
  signOff(body.error === "account_disabled" ? "Account disabled: ask your supervisor."
    : "Your sign-in has ended: sign in again.");
}

// A handshake that failed before the socket opened: the token refused, or nobody to ask (a
// restart, a takeover: a node passing sockets on answers 503 while no node routes). A browser
// cannot see the handshake's status, so ask the page's own server: one that answers, and not
// with a 5xx, refused the token; otherwise keep the token and connect again later.
async function serverAway() {
  try {
    const res = await fetch("/console/config.json", { cache: "no-store" });
    return res.status >= 500;
  } catch (e) { return true; }
}

// Connect again after a back-off (0.5 s doubling up to 10 s), saying so on the page.
function reconnectLater() {
  const wait = Math.min(10000, 500 * 2 ** state.retry++);
  link(false, `reconnecting in ${Math.round(wait / 1000)} s`);
  setTimeout(connect, wait);
}

// The socket closed before it opened: sign in again (`refused(text)`) only if the server
// answers; else try again later with the same token.
function handshakeFailed(refused, text) {
  serverAway().then((away) => {
    if (state.ws !== null || !state.token) return;  // connected again, or signed off, meanwhile
    if (away) reconnectLater(); else refused(text);
  });
}

function signInError(status, body, res) {
  if (status === 401) return "Wrong id or password.";
  if (status === 429) {
    const wait = body.retry_after || res.headers.get("Retry-After") || "a few";
    return `Too many attempts, try again in ${wait} s.`;
  }
  if (status === 403 && body.error === "account_disabled") return "Account disabled: ask your supervisor.";
  if (status === 403) return "This page may not sign in to this server (origin not allowed).";
  return `Sign-in failed (${status}${body.message ? ": " + body.message : ""}).`;
}

async function passwordSignIn(ev) {
  ev.preventDefault();
  const error = $("login-error"), button = $("password-form").querySelector("button");
  const id = $("login-id").value.trim(), password = $("login-password").value;
  error.textContent = "";
  if (!id || !password) { error.textContent = "Enter your id and your password."; return; }
  button.disabled = true;
  let res, body;
  try {
    res = await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id, password }) });
    body = await res.json().catch(() => ({}));
    if (res.ok && !state.cfg) state.cfg = await (await fetch("/console/config.json")).json();
  } catch (e) {
    error.textContent = "Cannot reach the server: check the connection and try again.";
    return;
  } finally {
    button.disabled = false;
  }
  if (!res.ok || !body.token) { error.textContent = signInError(res.status, body, res); return; }
  $("login-password").value = "";
  keepToken(body.token);
  connect();
}

// "Sign off" on the desk: the presence goes offline (console.js sends it first), then the
// socket closes and the token is forgotten.
function signOff(text) {
  forgetToken();
  const ws = state.ws;
  state.ws = null;  // console.js must not reconnect
  if (ws) ws.close(1000, "signed off");
  if (state.offer && typeof hideOffer === "function") hideOffer();
  link(false, "offline");
  (typeof showSignIn === "function" ? showSignIn : signedOut)(text);
  $("login-id").focus();
}

function resumeSignIn() {
  const due = Number(sessionStorage.getItem(SIGN_IN.key) || 0);
  if (!due) return;
  if (Date.now() > due + SIGN_IN.marginS * 1000) { forgetToken(); return; }  // expired meanwhile
  refreshAt(due);
}

function loginWire() {
  SIGN_IN.tokenKey = $("login").dataset.tokenKey || SIGN_IN.tokenKey;
  SIGN_IN.key = `${SIGN_IN.tokenKey}.login`;
  resumeSignIn();  // before console.js reads the saved token (it waits for its config first)
  $("password-form").addEventListener("submit", passwordSignIn);
  // A pasted token (integrators) is not refreshed.
  $("login-form").addEventListener("submit", () => {
    clearTimeout(SIGN_IN.timer);
    sessionStorage.removeItem(SIGN_IN.key);
  });
  // After console.js's own click handler (set later, run later) has sent the presence.
  const off = $("go-offline");
  if (off) off.addEventListener("click", () => setTimeout(() => signOff(""), 0));
  if (!$("login").hidden) $("login-id").focus();
}

document.addEventListener("DOMContentLoaded", loginWire);
