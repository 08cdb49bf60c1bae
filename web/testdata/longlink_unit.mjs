// Unit tests of static/longlink.js's LonglinkClient against a fake
// WebSocket and a virtual clock: no gateway, no npm package. Run by
// TestLonglinkJS (web_test.go) as `node testdata/longlink_unit.mjs`; it
// prints "ok <name>" per test and exits non-zero on the first failure.
import assert from "node:assert/strict";

// ---- a virtual clock, installed before the client runs ----
let now = 1_000_000;
const timers = new Map();
let nextTimer = 1;
globalThis.setTimeout = (fn, ms = 0) => {
  const id = nextTimer++;
  timers.set(id, { at: now + Math.max(0, ms), fn, every: 0 });
  return id;
};
globalThis.setInterval = (fn, ms) => {
  const id = nextTimer++;
  timers.set(id, { at: now + ms, fn, every: ms });
  return id;
};
globalThis.clearTimeout = globalThis.clearInterval = (id) => { timers.delete(id); };
Date.now = () => now;
/** Runs every timer due within ms, in order. */
function advance(ms) {
  const end = now + ms;
  for (;;) {
    let due = null;
    for (const [id, t] of timers) if (t.at <= end && (!due || t.at < due[1].at)) due = [id, t];
    if (!due) break;
    const [id, t] = due;
    now = t.at;
    if (t.every) t.at += t.every; else timers.delete(id);
    t.fn();
  }
  now = end;
}
const flush = () => new Promise((r) => setImmediate(r)); // settle promises

const { LonglinkClient, Op, Status, encodeFrame, decodeFrame, metaText, statusName, StatusNames } =
  await import("../static/longlink.js");

// ---- a fake WebSocket the test plays the gateway through ----
class FakeWS {
  static all = [];
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    this.closedByClient = false;
    FakeWS.all.push(this);
  }
  send(bytes) { this.sent.push(decodeFrame(bytes)); }
  close() { this.readyState = 3; this.closedByClient = true; }
  // gateway side
  open() { this.readyState = 1; this.onopen?.({}); }
  recv(f) { this.onmessage?.({ data: encodeFrame(f).buffer }); }
  recvRaw(bytes) { this.onmessage?.({ data: bytes.buffer }); }
  drop(code = 1006, reason = "") { this.readyState = 3; this.onclose?.({ code, reason }); }
  last(op) { return this.sent.filter((f) => f.op === op).at(-1); }
  count(op) { return this.sent.filter((f) => f.op === op).length; }
  /** Opens and accepts the LOGIN; returns the LOGIN frame. */
  accept(meta = {}) {
    this.open();
    const login = this.last(Op.LOGIN);
    this.recv({ op: Op.LOGIN_ACK, seq: login.seq, meta: { conn: "7", node: "n1", hb: "30", ...meta } });
    return login;
  }
}
const latest = () => FakeWS.all.at(-1);

function newClient(opts = {}) {
  FakeWS.all = [];
  const c = new LonglinkClient("ws://gw:7001/", { token: "tok", WebSocket: FakeWS, ...opts });
  c.events = [];
  for (const t of ["state", "login", "push", "duplicate", "kick", "pong", "error"]) {
    c.addEventListener(t, (e) => c.events.push({ type: t, ...(e.detail?.constructor === Object ? e.detail : { value: e.detail }) }));
  }
  c.states = () => c.events.filter((e) => e.type === "state").map((e) => e.state);
  return c;
}

const tests = [];
const test = (name, fn) => tests.push([name, fn]);
const realRandom = Math.random;

test("status names", () => {
  assert.equal(StatusNames.length, 15);
  assert.equal(statusName(Status.SLOW_CONSUMER), "SLOW_CONSUMER");
  assert.equal(statusName(42), "STATUS_42");
});

test("login: token, subprotocol, LOGIN_ACK fields, no resume at first", () => {
  const c = newClient();
  c.connect();
  const ws = latest();
  assert.equal(ws.url, "ws://gw:7001/");
  assert.deepEqual(ws.protocols, ["longlink.v1"]);
  assert.equal(ws.binaryType, "arraybuffer");
  assert.equal(c.state, "connecting");
  const login = ws.accept();
  assert.equal(metaText(login, "token"), "tok");
  assert.equal(login.meta.has("resume"), false);
  assert.equal(c.state, "connected");
  assert.deepEqual([c.conn, c.node, c.hb], ["7", "n1", 30]);
  const ev = c.events.find((e) => e.type === "login");
  assert.equal(ev.resumed, null);
  c.close();
  assert.equal(c.state, "disconnected");
  assert.equal(ws.closedByClient, true);
});

test("token function is called for each attempt", async () => {
  let calls = 0;
  const c = newClient({ token: async () => `t${++calls}` });
  c.connect();
  await flush();
  latest().open();
  assert.equal(metaText(latest().last(Op.LOGIN), "token"), "t1");
  latest().drop();
  advance(1000);
  await flush();
  latest().open();
  assert.equal(metaText(latest().last(Op.LOGIN), "token"), "t2");
  c.close();
});

test("heartbeat: PING every hb, PONG keeps it alive, dead after 2 missed", () => {
  const c = newClient();
  c.connect();
  const ws = latest();
  ws.accept({ hb: "10" });
  advance(10_000);
  assert.equal(ws.count(Op.PING), 1);
  advance(3);
  ws.recv({ op: Op.PONG, seq: ws.last(Op.PING).seq });
  assert.equal(c.events.find((e) => e.type === "pong").rtt, 3);
  advance(9_997 + 10_000); // two more PINGs, unanswered
  assert.equal(ws.count(Op.PING), 3);
  assert.equal(c.state, "connected");
  advance(10_000); // the third tick finds 2 outstanding
  assert.equal(c.state, "disconnected");
  assert.match(c.events.at(-1).reason, /heartbeat timeout/);
  assert.ok(c.events.at(-1).retryIn !== undefined);
  c.close();
});

test("requests: matched by seq in any order, timeout, not connected, too large", async () => {
  const c = newClient({ requestTimeout: 5000, maxFrame: 1024 });
  await assert.rejects(c.request(1, "x"), { code: "not_connected" });
  c.connect();
  const ws = latest();
  ws.accept();
  const a = c.request(1, "a", { meta: { k: "v" } });
  const b = c.request(2, "b");
  const [fa, fb] = ws.sent.filter((f) => f.op === Op.REQUEST);
  assert.notEqual(fa.seq, fb.seq);
  assert.equal(metaText(fa, "k"), "v");
  assert.equal(fb.biz, 2);
  ws.recv({ op: Op.RESPONSE, biz: 2, seq: fb.seq, status: Status.BIZ_ERROR, body: "nope" });
  ws.recv({ op: Op.RESPONSE, biz: 1, seq: fa.seq, body: "A", meta: { x: "y" } });
  const [ra, rb] = await Promise.all([a, b]);
  assert.equal(ra.ok, true);
  assert.equal(ra.text(), "A");
  assert.equal(metaText(ra, "x"), "y");
  assert.equal(rb.ok, false);
  assert.equal(rb.statusName, "BIZ_ERROR");
  assert.equal(rb.text(), "nope");
  const t = c.request(1, "slow");
  advance(5000);
  await assert.rejects(t, { code: "timeout" });
  await assert.rejects(c.request(1, "x".repeat(2000)), { code: "frame_too_large" });
  const lost = c.request(1, "lost");
  ws.drop();
  await assert.rejects(lost, { code: "disconnected" });
  c.close();
});

test("pushes: handlers per biz, one cumulative ack, dedup by seq and id", () => {
  const c = newClient();
  const got = { 5: [], all: [] };
  c.onPush(5, (p) => got[5].push(p.text()));
  const off = c.onPush("*", (p) => got.all.push(p.seq));
  c.connect();
  const ws = latest();
  ws.accept();
  ws.recv({ op: Op.PUSH, biz: 5, seq: 1, flags: 1, meta: { id: "a" }, body: "one" });
  ws.recv({ op: Op.PUSH, biz: 6, seq: 2, flags: 1, meta: { id: "b", group: "room" }, body: "two" });
  ws.recv({ op: Op.PUSH, biz: 5, seq: 2, flags: 1, body: "two again" }); // seq seen
  ws.recv({ op: Op.PUSH, biz: 5, seq: 3, flags: 1, meta: { id: "a" }, body: "a again" }); // id seen
  assert.deepEqual(got[5], ["one"]);
  assert.deepEqual(got.all, [1, 2]);
  assert.equal(c.events.filter((e) => e.type === "duplicate").length, 2);
  assert.equal(c.events.find((e) => e.type === "push" && e.value.seq === 2).value.group, "room");
  assert.equal(ws.count(Op.PUSH_ACK), 0);
  advance(20);
  assert.equal(ws.count(Op.PUSH_ACK), 1);
  assert.equal(ws.last(Op.PUSH_ACK).seq, 3);
  ws.recv({ op: Op.PUSH, biz: 5, seq: 4, body: "no ack needed" });
  advance(100);
  assert.equal(ws.count(Op.PUSH_ACK), 1);
  off();
  ws.recv({ op: Op.PUSH, biz: 5, seq: 5, body: "five" });
  assert.deepEqual(got.all, [1, 2, 4]);
  assert.equal(c.lastPushSeq, 5);
  c.close();
});

test("resume: LOGIN carries the last seq; resumed=0 lets the seq restart", () => {
  const c = newClient({ resume: 0 });
  c.connect();
  let ws = latest();
  ws.accept();
  ws.recv({ op: Op.PUSH, biz: 1, seq: 41, body: "x" });
  ws.drop();
  Math.random = () => 1;
  advance(500);
  ws = latest();
  const login = ws.accept({ resumed: "0" });
  assert.equal(metaText(login, "resume"), "41");
  assert.equal(c.events.filter((e) => e.type === "login").at(-1).resumed, false);
  ws.recv({ op: Op.PUSH, biz: 1, seq: 1, body: "after a restart" });
  assert.equal(c.events.at(-1).type, "push");
  assert.equal(c.lastPushSeq, 1);
  c.close();
  const d = newClient({ resume: 9 });
  d.connect();
  assert.equal(metaText(latest().accept({ resumed: "1" }), "resume"), "9");
  assert.equal(d.events.find((e) => e.type === "login").resumed, true);
  d.close();
});

test("backoff: exponential ceilings with full jitter, reset after a login", () => {
  Math.random = () => 1; // the ceiling itself
  const c = newClient({ backoff: { initial: 100, max: 1000, multiplier: 2 } });
  c.connect();
  const delays = [];
  for (let i = 0; i < 6; i++) {
    latest().drop(); // refused before it opened
    const ev = c.events.at(-1);
    delays.push(ev.retryIn);
    advance(ev.retryIn);
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
  latest().accept();
  latest().drop();
  assert.equal(c.events.at(-1).retryIn, 100);
  Math.random = () => 0.25;
  advance(100);
  latest().drop();
  assert.equal(c.events.at(-1).retryIn, 50); // jitter: random in [0, ceiling], ceiling 200
  c.close();
  const n = FakeWS.all.length;
  advance(60_000);
  assert.equal(FakeWS.all.length, n, "no attempt after close()");
  assert.equal(c.state, "disconnected");
});

test("KICK: no reconnect after UNAUTHORIZED or DUPLICATE_LOGIN", () => {
  for (const status of [Status.UNAUTHORIZED, Status.DUPLICATE_LOGIN]) {
    const c = newClient();
    c.connect();
    const ws = latest();
    ws.accept();
    ws.recv({ op: Op.KICK, status, meta: { reason: "go away" } });
    const kick = c.events.find((e) => e.type === "kick");
    assert.equal(kick.statusName, statusName(status));
    assert.equal(kick.reason, "go away");
    ws.drop(1000);
    const last = c.events.at(-1);
    assert.equal(last.state, "disconnected");
    assert.equal(last.status, status);
    assert.equal(last.retryIn, undefined);
    assert.match(last.reason, /go away/);
    advance(60_000);
    assert.equal(FakeWS.all.length, 1);
  }
});

test("KICK: SLOW_CONSUMER reconnects; SHUTTING_DOWN follows a ws:// redirect fast", () => {
  Math.random = () => 1;
  const c = newClient({ backoff: { initial: 300 } });
  c.connect();
  let ws = latest();
  ws.accept();
  ws.recv({ op: Op.KICK, status: Status.SLOW_CONSUMER });
  ws.drop(1000);
  advance(300);
  assert.equal(FakeWS.all.length, 2);
  assert.equal(latest().url, "ws://gw:7001/");
  ws = latest();
  ws.accept();
  ws.recv({ op: Op.KICK, status: Status.SHUTTING_DOWN, meta: { redirect: "ws://other:7001/" } });
  ws.drop(1000);
  assert.equal(c.events.at(-1).retryIn, 300); // the initial ceiling, not a grown one
  advance(300);
  assert.equal(latest().url, "ws://other:7001/");
  ws = latest();
  ws.accept();
  ws.recv({ op: Op.KICK, status: Status.SHUTTING_DOWN, meta: { redirect: "10.0.0.2:7000" } }); // a TCP address
  ws.drop(1000);
  advance(300);
  assert.equal(latest().url, "ws://gw:7001/");
  c.close();
});

test("LOGIN_ACK failure: UNAUTHORIZED stops, INTERNAL retries", () => {
  let c = newClient();
  c.connect();
  let ws = latest();
  ws.open();
  ws.recv({ op: Op.LOGIN_ACK, seq: ws.last(Op.LOGIN).seq, status: Status.UNAUTHORIZED, meta: { reason: "token expired" } });
  ws.drop(1000);
  assert.equal(c.state, "disconnected");
  assert.match(c.events.at(-1).reason, /UNAUTHORIZED \(token expired\)/);
  advance(60_000);
  assert.equal(FakeWS.all.length, 1);
  c = newClient();
  c.connect();
  ws = latest();
  ws.open();
  ws.recv({ op: Op.LOGIN_ACK, seq: ws.last(Op.LOGIN).seq, status: Status.INTERNAL });
  ws.drop(1000);
  assert.ok(c.events.at(-1).retryIn !== undefined);
  c.close();
});

test("login timeout and a bad frame from the server both reconnect", () => {
  const c = newClient({ loginTimeout: 2000 });
  c.connect();
  latest().open(); // never answers
  advance(2000);
  assert.match(c.events.at(-1).reason, /login timed out/);
  advance(c.events.at(-1).retryIn);
  const ws = latest();
  ws.accept();
  ws.recvRaw(new Uint8Array([0x4c, 0x4b, 1, 7, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 3])); // meta runs past
  assert.ok(c.events.some((e) => e.type === "error"));
  assert.equal(c.state, "disconnected");
  assert.match(c.events.at(-1).reason, /bad frame/);
  c.close();
});

test("encodeFrame rejects what the protocol cannot carry", () => {
  assert.throws(() => encodeFrame({ op: Op.REQUEST, meta: { "": "x" } }), RangeError);
  assert.throws(() => encodeFrame({ op: Op.REQUEST, meta: { ["k".repeat(256)]: "x" } }), RangeError);
  assert.throws(() => encodeFrame({ op: Op.REQUEST, body: 42 }), TypeError);
  const f = decodeFrame(encodeFrame({ op: Op.PUSH, flags: 1, biz: 65535, seq: 0xffffffff, meta: new Map([["a", new Uint8Array([0, 255])]]), body: new Uint8Array([1, 2]) }));
  assert.deepEqual([f.op, f.flags, f.biz, f.seq, [...f.meta.get("a")], [...f.body]], [Op.PUSH, 1, 65535, 0xffffffff, [0, 255], [1, 2]]);
});

for (const [name, fn] of tests) {
  Math.random = realRandom;
  timers.clear();
  try {
    await fn();
    console.log(`ok ${name}`);
  } catch (err) {
    console.log(`FAIL ${name}\n${err.stack}`);
    process.exit(1);
  }
}
console.log(`PASS ${tests.length} tests`);
