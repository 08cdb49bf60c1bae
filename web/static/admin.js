// The operator console: reads this gateway's /v1 API with the API key
// (kept in sessionStorage, or given as #key=… in the URL) and shows the
// deployment's nodes, live charts of this node, the businesses, and forms
// to look up and kick a device, look up a group and push. It talks to
// this origin only; everything it shows comes from /v1/nodes and
// /v1/stats, polled every 2 s, with 5 minutes of history kept in the page.

const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const HISTORY = 150; // samples: 5 minutes at POLL_MS
const COLORS = ["#2457d6", "#1d8a4a", "#c2333b", "#b26a00", "#7a3fc2", "#0f8a8a", "#6b7280"];

let key = "";
let timer = 0;
let last = null; // the previous /v1/stats, for rates
const series = {}; // chart id → {name → [values]}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${key}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) throw new Error(`${res.status} ${json?.error ?? text}`);
  return json;
}

function text(el, s) { el.textContent = s; }

function cell(tr, value, cls) {
  const td = document.createElement("td");
  td.textContent = value;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderNodes(nodes) {
  const tbody = $("nodes");
  tbody.replaceChildren();
  for (const n of nodes) {
    const tr = document.createElement("tr");
    tr.dataset.node = n.node;
    cell(tr, n.node + (n.self ? " (this node)" : ""));
    cell(tr, String(n.connections), "connections");
    cell(tr, String(n.logged_in), "logged-in");
    cell(tr, String(n.max_conns));
    cell(tr, (n.load * 100).toFixed(2) + " %");
    const state = n.draining ? "draining" : n.beating ? "up" : "silent";
    cell(tr, state, "state-" + state);
    cell(tr, n.endpoints.map((e) => `${e.proto} ${e.addr}`).join(", "));
    tbody.appendChild(tr);
    if (n.self) text($("self"), n.node);
  }
}

function renderBusinesses(bs) {
  const tbody = $("businesses");
  tbody.replaceChildren();
  for (const b of bs) {
    const tr = document.createElement("tr");
    tr.dataset.biz = String(b.id);
    cell(tr, String(b.id));
    cell(tr, b.target);
    cell(tr, b.target === "echo" ? "inline" : String(b.workers));
    cell(tr, b.target === "echo" ? "–" : `${b.queued} / ${b.queue_cap}`);
    cell(tr, String(b.in_flight));
    cell(tr, b.breaker, "breaker-" + b.breaker);
    cell(tr, String(b.requests));
    tbody.appendChild(tr);
  }
}

function push(chart, name, value) {
  const s = (series[chart] ??= {});
  const v = (s[name] ??= []);
  v.push(value);
  if (v.length > HISTORY) v.shift();
}

// A rate per second of a counter between two stats, 0 for the first.
function rate(now, before, get, secs) {
  if (!before) return 0;
  return Math.max(0, (get(now) - get(before)) / secs);
}

function sample(s) {
  const secs = POLL_MS / 1000;
  push("conns", "open", s.connections);
  push("conns", "logged in", s.logged_in);
  push("logins", "logins", rate(s, last, (x) => x.logins, secs));
  push("logins", "failures", rate(s, last, (x) => x.login_failures, secs));
  push("pushes", "push calls", rate(s, last, (x) => x.push.requests, secs));
  push("pushes", "deliveries", rate(s, last, (x) => x.push.deliveries, secs));
  for (const b of s.businesses) {
    const was = last?.businesses.find((x) => x.id === b.id);
    const errors = (x) => Object.entries(x.results).filter(([st]) => st !== "OK").reduce((a, [, n]) => a + n, 0);
    push("biz", `biz ${b.id} requests`, was ? Math.max(0, (b.requests - was.requests) / secs) : 0);
    push("biz", `biz ${b.id} errors`, was ? Math.max(0, (errors(b) - errors(was)) / secs) : 0);
  }
  for (const [status, n] of Object.entries(s.kicks)) {
    push("kicks", status, last ? Math.max(0, (n - (last.kicks[status] ?? 0)) / secs) : 0);
  }
  last = s;
}

function draw(chart) {
  const svg = $("chart-" + chart);
  const legend = $("legend-" + chart);
  const s = series[chart] ?? {};
  const names = Object.keys(s);
  const max = Math.max(1, ...names.flatMap((n) => s[n]));
  svg.replaceChildren();
  legend.replaceChildren();
  names.forEach((name, i) => {
    const v = s[name];
    const color = COLORS[i % COLORS.length];
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("stroke", color);
    line.setAttribute("points", v.map((y, x) => `${((HISTORY - v.length + x) * 300) / (HISTORY - 1)},${88 - (y / max) * 84}`).join(" ")); // the newest sample at the right
    line.dataset.series = name;
    svg.appendChild(line);
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = color;
    item.append(swatch, `${name} ${Number(v[v.length - 1]).toFixed(name.includes("open") || name.includes("logged") ? 0 : 1)}`);
    legend.appendChild(item);
  });
}

async function refresh() {
  try {
    const [nodes, stats] = await Promise.all([api("GET", "/v1/nodes"), api("GET", "/v1/stats")]);
    renderNodes(nodes.nodes);
    renderBusinesses(stats.businesses);
    sample(stats);
    for (const c of ["conns", "logins", "pushes", "biz", "kicks"]) draw(c);
    text($("updated"), new Date().toLocaleTimeString());
  } catch (err) {
    if (String(err.message).startsWith("401")) return logout("the key was refused");
    text($("updated"), "error: " + err.message);
  }
}

async function enter(k) {
  key = k.trim();
  if (!key) return;
  try {
    await api("GET", "/v1/nodes"); // proves the key before anything is shown
  } catch (err) {
    key = "";
    text($("login-error"), String(err.message).startsWith("401") ? "The gateway refused this key." : err.message);
    return;
  }
  sessionStorage.setItem("longlink-api-key", key);
  text($("login-error"), "");
  $("login").hidden = true;
  $("console").hidden = false;
  $("logout").hidden = false;
  await refresh();
  timer = setInterval(refresh, POLL_MS);
}

function logout(why) {
  clearInterval(timer);
  key = "";
  last = null;
  for (const k of Object.keys(series)) delete series[k];
  sessionStorage.removeItem("longlink-api-key");
  $("console").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  text($("login-error"), why ?? "");
}

async function lookup() {
  const d = $("device").value.trim();
  if (!d) return;
  try {
    const r = await api("GET", "/v1/devices/" + encodeURIComponent(d));
    text($("device-result"), r.online ? `online on node ${r.node}, connection ${r.conn}` : "offline");
  } catch (err) {
    text($("device-result"), "error: " + err.message);
  }
}

async function kick() {
  const d = $("device").value.trim();
  if (!d) return;
  try {
    const r = await api("DELETE", "/v1/devices/" + encodeURIComponent(d), { reason: "kicked from the console" });
    text($("device-result"), r.kicked ? "kicked" : "not connected: nothing to kick");
  } catch (err) {
    text($("device-result"), "error: " + err.message);
  }
}

async function groupLookup() {
  const g = $("group").value.trim();
  if (!g) return;
  try {
    const r = await api("GET", "/v1/groups/" + encodeURIComponent(g));
    text($("group-result"), `${r.members} members`);
  } catch (err) {
    text($("group-result"), "error: " + err.message);
  }
}

async function sendPush() {
  const to = $("push-to").value;
  const target = $("push-target").value.trim();
  const body = { biz: Number($("push-biz").value), data: $("push-data").value };
  try {
    let r;
    if (to === "device") r = await api("POST", "/v1/push", { ...body, devices: [target] });
    else if (to === "group") r = await api("POST", "/v1/groups/" + encodeURIComponent(target) + "/push", body);
    else r = await api("POST", "/v1/broadcast", body);
    const parts = [`delivered ${r.delivered}`];
    if (r.offline?.length) parts.push(`offline ${r.offline.join(", ")}`);
    if (r.unrouted?.length) parts.push(`unrouted ${r.unrouted.join(", ")}`);
    text($("push-result"), parts.join("; "));
  } catch (err) {
    text($("push-result"), "error: " + err.message);
  }
}

$("login").addEventListener("submit", (e) => { e.preventDefault(); enter($("key").value); });
$("logout").addEventListener("click", () => logout());
$("lookup").addEventListener("click", lookup);
$("kick").addEventListener("click", kick);
$("group-lookup").addEventListener("click", groupLookup);
$("push").addEventListener("click", sendPush);

const fromURL = new URLSearchParams(location.hash.slice(1)).get("key");
if (fromURL) history.replaceState(null, "", location.pathname); // the key leaves the address bar
const saved = fromURL ?? sessionStorage.getItem("longlink-api-key");
if (saved) enter(saved);
