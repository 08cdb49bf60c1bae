// The demo page's logic: wires the form to a LonglinkClient. Everything
// received is written with textContent, never as HTML.
import { LonglinkClient } from "./longlink.js";

const $ = (id) => document.getElementById(id);
const ui = {
  wsUrl: $("ws-url"), token: $("token"), device: $("device"), apiKey: $("api-key"),
  getToken: $("get-token"), connect: $("connect"), disconnect: $("disconnect"),
  state: $("state"), conn: $("conn"), node: $("node"), hb: $("hb"), lastSeq: $("last-seq"),
  form: $("request-form"), biz: $("req-biz"), body: $("req-body"), send: $("send"),
  resStatus: $("response-status"), resBody: $("response-body"), resTime: $("response-time"),
  pushes: $("pushes"), pushCount: $("push-count"), log: $("log"),
};

// The gateway's WebSocket listener defaults to port 7001 on the API's host.
const scheme = location.protocol === "https:" ? "wss" : "ws";
ui.wsUrl.value = `${scheme}://${location.hostname || "127.0.0.1"}:7001/`;
ui.device.value = `web-${Math.random().toString(36).slice(2, 8)}`;

/** @type {LonglinkClient|null} */
let client = null;
let resume = { token: "", seq: 0 }; // carried to the next client for the same token
let pushCount = 0;

const time = (d = new Date()) => d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");

function log(kind, text) {
  const li = document.createElement("li");
  li.className = `kind-${kind}`;
  const t = document.createElement("span");
  t.className = "t";
  t.textContent = time();
  li.append(t, `${kind}: ${text}`);
  ui.log.prepend(li);
  while (ui.log.children.length > 300) ui.log.lastChild.remove();
}

function showState(state, detail = {}) {
  ui.state.textContent = state;
  ui.state.dataset.state = state;
  ui.conn.textContent = client?.conn || "–";
  ui.node.textContent = client?.node || "–";
  ui.hb.textContent = client?.hb ? `${client.hb}s` : "–";
  const active = client !== null && (state !== "disconnected" || detail.retryIn !== undefined);
  ui.connect.disabled = active;
  ui.disconnect.disabled = !active;
  ui.send.disabled = state !== "connected";
}

function addPush(p) {
  if (pushCount === 0) ui.pushes.replaceChildren();
  pushCount++;
  ui.pushCount.textContent = String(pushCount);
  const tr = document.createElement("tr");
  tr.className = "fresh";
  for (const [cls, v] of [["time", time(p.receivedAt)], ["seq", p.seq], ["biz", p.biz],
    ["id", p.id || "–"], ["group", p.group || "–"], ["body", p.text()]]) {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = String(v);
    tr.append(td);
  }
  ui.pushes.prepend(tr);
  while (ui.pushes.children.length > 200) ui.pushes.lastChild.remove();
}

ui.getToken.addEventListener("click", async () => {
  ui.getToken.disabled = true;
  try {
    const res = await fetch(new URL("/v1/tokens", location.href), {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${ui.apiKey.value.trim()}` },
      body: JSON.stringify({ device: ui.device.value.trim(), ttl_seconds: 3600 }),
    });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(`${res.status}: ${data.error ?? res.statusText}`);
    ui.token.value = data.token;
    log("token", `token for device ${ui.device.value.trim()}, expires ${new Date(data.expires_at * 1000).toLocaleString()}`);
    // Use the gateway's advertised WebSocket endpoint when it has one.
    const ep = (data.endpoints ?? []).find((e) => e.proto === "ws");
    if (ep) {
      let { addr } = ep;
      if (/^(0\.0\.0\.0|\[::\]):/.test(addr)) addr = addr.replace(/^(0\.0\.0\.0|\[::\])/, location.hostname);
      ui.wsUrl.value = `${scheme}://${addr}/`;
      log("token", `WebSocket endpoint ${ui.wsUrl.value}`);
    }
  } catch (err) {
    log("error", `getting a token failed: ${err.message}`);
  } finally {
    ui.getToken.disabled = false;
  }
});

ui.connect.addEventListener("click", () => {
  const token = ui.token.value.trim();
  const url = ui.wsUrl.value.trim();
  if (!token) { log("error", "a token is needed: paste one or get one"); return; }
  if (client) client.close();
  const c = new LonglinkClient(url, { token, resume: resume.token === token ? resume.seq : 0 });
  client = c;
  c.addEventListener("state", (e) => {
    if (client !== c) return;
    const d = e.detail;
    let text = d.state;
    if (d.reason) text += `: ${d.reason}`;
    if (d.retryIn !== undefined) text += ` (retrying in ${d.retryIn} ms)`;
    if (d.state === "connecting") text += ` to ${d.url}`;
    log("state", text);
    showState(d.state, d);
  });
  c.addEventListener("login", (e) => {
    const d = e.detail;
    log("login", `conn ${d.conn} on node ${d.node}, heartbeat ${d.hb}s` +
      (d.resumed === null ? "" : d.resumed ? ", resumed without loss" : ", resumed with pushes lost"));
  });
  c.addEventListener("push", (e) => {
    const p = e.detail;
    resume = { token, seq: c.lastPushSeq };
    ui.lastSeq.textContent = String(c.lastPushSeq);
    addPush(p);
    log("push", `seq ${p.seq} biz ${p.biz}${p.id ? ` id ${p.id}` : ""}${p.ackRequired ? " (acknowledged)" : ""}`);
  });
  c.addEventListener("duplicate", (e) => log("push", `duplicate seq ${e.detail.seq} dropped`));
  c.addEventListener("kick", (e) => {
    const k = e.detail;
    log("kick", `${k.statusName}${k.reason ? ` (${k.reason})` : ""}${k.redirect ? `, redirect ${k.redirect}` : ""}`);
  });
  c.addEventListener("pong", (e) => log("pong", `seq ${e.detail.seq}, round trip ${e.detail.rtt} ms`));
  c.addEventListener("error", (e) => log("error", String(e.detail.error?.message ?? e.detail.error)));
  c.connect();
});

ui.disconnect.addEventListener("click", () => client?.close());

ui.form.addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!client) return;
  const biz = Number(ui.biz.value);
  const started = performance.now();
  ui.resStatus.className = "";
  ui.resStatus.textContent = "waiting…";
  ui.resBody.textContent = "–";
  ui.resTime.textContent = "–";
  try {
    const r = await client.request(biz, ui.body.value);
    ui.resStatus.textContent = `${r.statusName} (${r.status})`;
    ui.resStatus.className = r.ok ? "ok" : "bad";
    ui.resBody.textContent = r.text();
    log("response", `biz ${r.biz} seq ${r.seq}: ${r.statusName}, ${r.body.length} bytes`);
  } catch (err) {
    ui.resStatus.textContent = `error: ${err.message}`;
    ui.resStatus.className = "bad";
    log("error", `request failed: ${err.message}`);
  }
  ui.resTime.textContent = `${Math.round(performance.now() - started)} ms`;
});

showState("disconnected");
log("page", "ready: get or paste a token, then Connect");
