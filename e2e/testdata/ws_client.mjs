// A WebSocket client from another ecosystem, for TestNodeWebSocketClient
// in e2e/browser_test.go: Node's `ws` package, first raw (frames built by
// hand with longlink.js's codec), then through LonglinkClient itself. One
// JSON argument: {ws, rawToken, token}. It prints one JSON object per line
// ({"event": ...}) and reads commands from stdin, one per line:
//   reconnect  connect the closed client again (it resumes)
import WebSocket from "ws";
import readline from "node:readline";
import {
  LonglinkClient, Op, Status, encodeFrame, decodeFrame, metaText, statusName,
} from "../../web/static/longlink.js";

const cfg = JSON.parse(process.argv[2]);
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const hex = (u) => Buffer.from(u).toString("hex");
const T = 10000;

const commands = [];
let commandWaiter = null;
readline.createInterface({ input: process.stdin }).on("line", (l) => {
  commands.push(l.trim());
  commandWaiter?.();
});
async function command() {
  while (commands.length === 0) await new Promise((r) => { commandWaiter = r; });
  return commands.shift();
}

function withTimeout(p, what) {
  let timer;
  return Promise.race([p, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), T);
  })]).finally(() => clearTimeout(timer));
}

// ---- 1. The codec against the byte examples of docs/protocol.md ----
function codec() {
  const checks = {
    ping: hex(encodeFrame({ op: Op.PING, seq: 7 })) === "4c4b010300000000000000000000000700000000",
    request: hex(encodeFrame({ op: Op.REQUEST, biz: 1, seq: 42, meta: { trace: "abc" }, body: "hi" })) ===
      "4c4b0105000000010000000b0000002a0000000205747261636500036162636869",
    pushAck: hex(encodeFrame({ op: Op.PUSH_ACK, seq: 1 })) === "4c4b010800000000000000000000000100000000",
  };
  const ack = decodeFrame(Buffer.from("4c4b01020000000000000019000000010000000004636f6e6e00023137046e6f646500026e3102686200023330", "hex"));
  checks.loginAck = ack.op === Op.LOGIN_ACK && metaText(ack, "conn") === "17" && metaText(ack, "node") === "n1" && metaText(ack, "hb") === "30";
  const push = decodeFrame(Buffer.from("4c4b01070100000100000007000000010000000502696400026d3168656c6c6f", "hex"));
  checks.push = push.op === Op.PUSH && push.flags === 1 && push.biz === 1 && metaText(push, "id") === "m1" &&
    Buffer.from(push.body).toString() === "hello";
  let bad = "";
  try { decodeFrame(Buffer.from("4c4b0107010000010000000700000001000000050069", "hex")); } catch (e) { bad = e.code; }
  checks.badFrame = bad === "bad_frame";
  emit({ event: "codec", checks, ok: Object.values(checks).every(Boolean) });
}

// ---- 2. Raw frames over ws ----
async function raw() {
  const ws = new WebSocket(cfg.ws, ["longlink.v1"]);
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let wake = null;
  let closed = null;
  ws.on("message", (data, isBinary) => { inbox.push(isBinary ? decodeFrame(data) : { text: String(data) }); wake?.(); });
  ws.on("close", (code, reason) => { closed = { code, reason: String(reason) }; wake?.(); });
  const next = () => withTimeout((async () => {
    while (inbox.length === 0) {
      if (closed) throw new Error(`closed ${closed.code} ${closed.reason}`);
      await new Promise((r) => { wake = r; });
    }
    return inbox.shift();
  })(), "a frame");
  await withTimeout(new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); }), "open");
  emit({ event: "raw-open", protocol: ws.protocol, extensions: ws.extensions });

  ws.send(encodeFrame({ op: Op.LOGIN, seq: 1, meta: { token: cfg.rawToken } }));
  let f = await next();
  emit({ event: "raw-login", op: f.op, seq: f.seq, status: statusName(f.status), conn: metaText(f, "conn"), node: metaText(f, "node"), hb: metaText(f, "hb") });

  ws.send(encodeFrame({ op: Op.PING, seq: 7 }));
  f = await next();
  emit({ event: "raw-pong", op: f.op, seq: f.seq });

  ws.send(encodeFrame({ op: Op.REQUEST, biz: 1, seq: 8, meta: { trace: "node" }, body: "hello from node ws" }));
  f = await next();
  emit({ event: "raw-response", op: f.op, seq: f.seq, status: statusName(f.status), body: Buffer.from(f.body).toString(), trace: metaText(f, "trace") });

  // A 40000-byte body (a 16-bit WebSocket length), then a request split
  // into three WebSocket fragments.
  ws.send(encodeFrame({ op: Op.REQUEST, biz: 1, seq: 9, body: "x".repeat(40000) }));
  f = await next();
  emit({ event: "raw-large", seq: f.seq, status: statusName(f.status), bodyLen: f.body.length });
  const frame = encodeFrame({ op: Op.REQUEST, biz: 1, seq: 10, body: "in three fragments" });
  ws.send(frame.subarray(0, 5), { binary: true, fin: false });
  ws.send(frame.subarray(5, 23), { binary: true, fin: false });
  ws.send(frame.subarray(23), { binary: true, fin: true });
  f = await next();
  emit({ event: "raw-fragmented", seq: f.seq, status: statusName(f.status), body: Buffer.from(f.body).toString() });

  // A text message is a protocol error: KICK(BAD_FRAME), then close 1002.
  ws.send("not a frame");
  f = await next();
  emit({ event: "raw-text", op: f.op, status: statusName(f.status), reason: metaText(f, "reason") });
  await withTimeout(new Promise((r) => (closed ? r() : ws.once("close", r))), "the close");
  emit({ event: "raw-closed", code: closed.code });
}

// ---- 3. LonglinkClient over ws ----
async function client() {
  const c = new LonglinkClient(cfg.ws, { token: cfg.token, WebSocket, backoff: { initial: 200, max: 1000 } });
  let connects = 0;
  const waiters = [];
  const on = (type, fn) => c.addEventListener(type, (e) => fn(e.detail));
  const waitFor = (type, pred = () => true) => withTimeout(new Promise((resolve) => {
    waiters.push({ type, pred, resolve });
  }), type);
  for (const type of ["state", "login", "push", "duplicate", "kick", "pong", "error"]) {
    on(type, (d) => {
      for (let i = 0; i < waiters.length; i++) {
        const w = waiters[i];
        if (w.type === type && w.pred(d)) { waiters.splice(i--, 1); w.resolve(d); }
      }
    });
  }
  on("state", (d) => { if (d.state === "connecting") connects++; emit({ event: "state", ...d }); });
  on("login", (d) => emit({ event: "login", ...d }));
  on("push", (p) => emit({ event: "push", seq: p.seq, biz: p.biz, id: p.id, body: p.text(), ack: p.ackRequired }));
  on("duplicate", (p) => emit({ event: "duplicate", seq: p.seq, id: p.id }));
  on("kick", (k) => emit({ event: "kick", ...k }));
  on("error", (d) => emit({ event: "client-error", message: String(d.error?.message ?? d.error) }));

  let login = waitFor("login");
  c.connect();
  await login;
  let r = await c.request(1, "via LonglinkClient", { meta: { k: "v" } });
  emit({ event: "response", status: r.statusName, ok: r.ok, body: r.text(), meta: metaText(r, "k") });
  r = await c.request(999, "nobody");
  emit({ event: "response-unknown", status: r.statusName, ok: r.ok });
  let notConnected = "";

  // Three pushes from the test: ids p1, p2 and p2 again (a duplicate).
  emit({ event: "ready-push" });
  const pushes = [waitFor("push", (p) => p.id === "p1"), waitFor("push", (p) => p.id === "p2"), waitFor("duplicate")];
  await Promise.all(pushes);
  await waitFor("pong"); // heartbeats run (-hb 1s)
  await waitFor("pong"); // the PING after the first PONG reported its round trip
  emit({ event: "pong" });

  // Close; the test pushes p4 and p5 while the device is offline, then
  // asks us to reconnect: LOGIN carries resume=3 and gets both back.
  c.close();
  try { await c.request(1, "closed"); } catch (e) { notConnected = e.code; }
  emit({ event: "closed", lastPushSeq: c.lastPushSeq, state: c.state, requestError: notConnected });
  if ((await command()) !== "reconnect") throw new Error("expected reconnect");
  login = waitFor("login");
  const recovered = [waitFor("push", (p) => p.id === "p4"), waitFor("push", (p) => p.id === "p5")];
  c.connect();
  const l = await login;
  const got = await Promise.all(recovered);
  emit({ event: "resumed", resumed: l.resumed, lastPushSeq: c.lastPushSeq, recovered: got.map((p) => `${p.seq}:${p.id}`) });

  // A network drop (not a KICK): the client reconnects by itself.
  login = waitFor("login");
  const down = waitFor("state", (d) => d.state === "disconnected");
  c._ws.terminate(); // ws only: drop the TCP connection without a close handshake
  const d = await down;
  const l2 = await login;
  emit({ event: "reconnected", retryIn: d.retryIn, resumed: l2.resumed, reason: d.reason });

  // A kick through the API (UNAUTHORIZED): no reconnect.
  emit({ event: "ready-kick" });
  const kicked = await waitFor("state", (s) => s.state === "disconnected");
  const before = connects;
  await new Promise((r) => setTimeout(r, 1500));
  emit({ event: "kicked", reason: kicked.reason, status: kicked.status, retryIn: kicked.retryIn ?? null,
    reconnectsAfter: connects - before, state: c.state });
}

try {
  codec();
  await raw();
  await client();
  emit({ event: "done" });
  process.exit(0);
} catch (err) {
  emit({ event: "error", message: String(err?.stack ?? err) });
  process.exit(1);
}
