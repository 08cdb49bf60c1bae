// longlink.js: a browser client for the Longlink wire protocol, version 1.
//
// An ES module with no dependencies and no build step. It speaks the binary
// frame format of docs/protocol.md over a WebSocket (one frame per binary
// message): login with a token (and resume), heartbeats, requests matched by
// seq, pushes with deduplication and automatic cumulative PUSH_ACK, KICK
// handling and reconnection with exponential backoff and full jitter.
//
//   import { LonglinkClient } from "/demo/longlink.js";
//   const c = new LonglinkClient("ws://127.0.0.1:7001/", { token });
//   c.addEventListener("state", (e) => console.log(e.detail.state, e.detail.reason));
//   c.onPush(7, (p) => console.log("push", p.seq, p.text()));
//   c.connect();
//   const r = await c.request(1, "hello"); // r.status, r.text()
//
// It also runs in Node with the `ws` package: pass { WebSocket } in options.

/** Operation codes (frame byte 3). */
export const Op = Object.freeze({
  LOGIN: 0x01, LOGIN_ACK: 0x02, PING: 0x03, PONG: 0x04, REQUEST: 0x05,
  RESPONSE: 0x06, PUSH: 0x07, PUSH_ACK: 0x08, KICK: 0x09,
  REFRESH: 0x0A, REFRESH_ACK: 0x0B,
});

/** The KICK reason that ends a session at its token's exp: not terminal. */
export const TOKEN_EXPIRED = "token expired";

/**
 * A JWT's exp claim in ms since the epoch, read without verifying it
 * (the client cannot, and needs only the time); 0 when there is none.
 * @param {string} token
 * @returns {number}
 */
export function tokenExpiry(token) {
  const part = String(token).split(".")[1];
  if (!part) return 0;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const exp = Number(JSON.parse(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4))).exp);
    return exp > 0 ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

/** Status codes, by name. */
export const Status = Object.freeze({
  OK: 0, BAD_FRAME: 1, UNAUTHORIZED: 2, NOT_LOGGED_IN: 3, UNKNOWN_BIZ: 4,
  BIZ_UNAVAILABLE: 5, TIMEOUT: 6, OVERLOADED: 7, FRAME_TOO_LARGE: 8,
  DUPLICATE_LOGIN: 9, SHUTTING_DOWN: 10, IDLE_TIMEOUT: 11, BIZ_ERROR: 12,
  INTERNAL: 13, SLOW_CONSUMER: 14,
});

/** Status names, indexed by code. */
export const StatusNames = Object.freeze(Object.keys(Status));

/**
 * The name of a status code; an unknown code reads "STATUS_<n>" (and
 * should be treated like INTERNAL).
 * @param {number} code
 * @returns {string}
 */
export function statusName(code) {
  return StatusNames[code] ?? `STATUS_${code}`;
}

/** PUSH flag bit 0: the client must acknowledge with PUSH_ACK. */
export const FLAG_ACK_REQUIRED = 0x01;
/** Size of the fixed frame header, in bytes. */
export const HEADER_SIZE = 20;
/** The gateway's default maximum frame size (-max-frame), header included. */
export const DEFAULT_MAX_FRAME = 65536;
/** The WebSocket subprotocol the gateway echoes. */
export const SUBPROTOCOL = "longlink.v1";

const MAGIC = 0x4c4b; // "LK"
const VERSION = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder(); // replaces invalid UTF-8 with U+FFFD

/** @param {string|Uint8Array|ArrayBuffer|ArrayBufferView|null|undefined} v */
function toBytes(v) {
  if (v == null) return new Uint8Array(0);
  if (typeof v === "string") return encoder.encode(v);
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  throw new TypeError("expected a string, Uint8Array or ArrayBuffer");
}

/**
 * A decoded frame. Meta values are kept as bytes; `metaText` and `text`
 * decode them as UTF-8.
 * @typedef {object} Frame
 * @property {number} op
 * @property {number} flags
 * @property {number} biz
 * @property {number} status
 * @property {number} seq
 * @property {Map<string, Uint8Array>} meta  the last entry wins for a repeated key
 * @property {Uint8Array} body
 */

// networkKind maps the Network Information API's connection type to the
// protocol's net values; undefined when the browser does not say.
function networkKind(type) {
  return { wifi: "wifi", cellular: "cell", ethernet: "eth", bluetooth: "other", wimax: "other", other: "other" }[type];
}

/**
 * Encodes one frame.
 * @param {{op: number, flags?: number, biz?: number, status?: number, seq?: number,
 *   meta?: Record<string, string|Uint8Array>|Map<string, string|Uint8Array>,
 *   body?: string|Uint8Array|ArrayBuffer}} f
 * @returns {Uint8Array}
 */
export function encodeFrame(f) {
  const entries = [];
  let metaLen = 0;
  const meta = f.meta instanceof Map ? f.meta : Object.entries(f.meta ?? {});
  for (const [k, v] of meta) {
    const key = encoder.encode(k);
    const value = toBytes(v);
    if (key.length < 1 || key.length > 255) throw new RangeError(`meta key ${JSON.stringify(k)}: 1..255 bytes`);
    if (value.length > 0xffff) throw new RangeError(`meta ${k}: value over 65535 bytes`);
    entries.push([key, value]);
    metaLen += 1 + key.length + 2 + value.length;
  }
  if (metaLen > 0xffff) throw new RangeError("meta section over 65535 bytes");
  const body = toBytes(f.body);
  const out = new Uint8Array(HEADER_SIZE + metaLen + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, MAGIC);
  dv.setUint8(2, VERSION);
  dv.setUint8(3, f.op);
  dv.setUint8(4, f.flags ?? 0);
  dv.setUint8(5, 0);
  dv.setUint16(6, f.biz ?? 0);
  dv.setUint16(8, f.status ?? 0);
  dv.setUint16(10, metaLen);
  dv.setUint32(12, (f.seq ?? 0) >>> 0);
  dv.setUint32(16, body.length);
  let off = HEADER_SIZE;
  for (const [key, value] of entries) {
    dv.setUint8(off, key.length);
    out.set(key, off + 1);
    off += 1 + key.length;
    dv.setUint16(off, value.length);
    out.set(value, off + 2);
    off += 2 + value.length;
  }
  out.set(body, off);
  return out;
}

/**
 * Decodes exactly one frame (a whole WebSocket message). Throws a
 * LonglinkError with code "bad_frame" when the bytes are not one valid frame.
 * @param {ArrayBuffer|Uint8Array} data
 * @returns {Frame}
 */
export function decodeFrame(data) {
  const b = toBytes(data);
  const bad = (why) => new LonglinkError("bad_frame", `bad frame from server: ${why}`);
  if (b.length < HEADER_SIZE) throw bad("shorter than the header");
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dv.getUint16(0) !== MAGIC) throw bad("bad magic");
  if (dv.getUint8(2) !== VERSION) throw bad("unknown version");
  const metaLen = dv.getUint16(10);
  const bodyLen = dv.getUint32(16);
  if (HEADER_SIZE + metaLen + bodyLen !== b.length) throw bad("length does not match the message");
  const meta = new Map();
  let off = HEADER_SIZE;
  const end = HEADER_SIZE + metaLen;
  while (off < end) {
    const klen = dv.getUint8(off);
    if (klen === 0) throw bad("meta key of length 0");
    if (off + 1 + klen + 2 > end) throw bad("meta entry runs past metaLen");
    const key = decoder.decode(b.subarray(off + 1, off + 1 + klen));
    const vlen = dv.getUint16(off + 1 + klen);
    const vstart = off + 3 + klen;
    if (vstart + vlen > end) throw bad("meta entry runs past metaLen");
    meta.set(key, b.slice(vstart, vstart + vlen));
    off = vstart + vlen;
  }
  return {
    op: dv.getUint8(3), flags: dv.getUint8(4), biz: dv.getUint16(6),
    status: dv.getUint16(8), seq: dv.getUint32(12), meta, body: b.slice(end),
  };
}

/**
 * A meta value as text ("" when absent).
 * @param {Frame} f
 * @param {string} key
 */
export function metaText(f, key) {
  const v = f.meta.get(key);
  return v ? decoder.decode(v) : "";
}

/** An error of the client itself (not a status from the gateway). */
export class LonglinkError extends Error {
  /**
   * @param {string} code  "timeout", "disconnected", "not_connected", "frame_too_large" or "bad_frame"
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "LonglinkError";
    this.code = code;
  }
}

/**
 * An answer to a request. Like fetch(), a request resolves for any status
 * the gateway answers; check `ok` or `status`.
 */
export class LonglinkResponse {
  /** @param {Frame} f */
  constructor(f) {
    this.biz = f.biz;
    this.seq = f.seq;
    this.status = f.status;
    this.statusName = statusName(f.status);
    this.ok = f.status === Status.OK;
    this.meta = f.meta;
    this.body = f.body;
  }
  /** The body decoded as UTF-8. */
  text() { return decoder.decode(this.body); }
}

/** A message pushed to this device. */
export class Push {
  /** @param {Frame} f */
  constructor(f) {
    this.biz = f.biz;
    this.seq = f.seq;
    this.id = metaText(f, "id");       // the business's message id, "" if none
    this.group = metaText(f, "group"); // the group it was sent to, "" if unicast
    this.ackRequired = (f.flags & FLAG_ACK_REQUIRED) !== 0;
    this.meta = f.meta;
    this.body = f.body;
    this.receivedAt = new Date();
  }
  /** The body decoded as UTF-8. */
  text() { return decoder.decode(this.body); }
}

/**
 * Options of LonglinkClient; every field is optional except a token.
 * @typedef {object} ClientOptions
 * @property {string|(() => string|Promise<string>)} token  a login JWT, or a function called before each connection attempt
 * @property {number} [resume]  the seq of the last push received before (e.g. kept in localStorage); 0 = none
 * @property {boolean} [reconnect=true]  reconnect after a lost connection
 * @property {{initial?: number, max?: number, multiplier?: number}} [backoff]  ms; defaults 500, 30000, 2
 * @property {number} [requestTimeout=10000]  ms a request waits for its RESPONSE
 * @property {number} [loginTimeout=10000]  ms from opening the socket to LOGIN_ACK
 * @property {number} [heartbeat=30]  seconds between PINGs until LOGIN_ACK gives `hb`
 * @property {number} [missedPongs=2]  unanswered PINGs after which the connection is dead
 * @property {string} [network]  the network kind reported with each PING ("wifi", "cell", "eth", "other"); default from navigator.connection.type where the browser has it
 * @property {number} [ackDelay=20]  ms a PUSH_ACK waits to cover later pushes too
 * @property {number} [dedupWindow=1024]  push ids remembered for deduplication; 0 disables
 * @property {number} [maxFrame=65536]  largest frame sent, header included (the gateway's -max-frame)
 * @property {(redirect: string) => string|null} [redirectUrl]  maps a KICK's redirect to a URL; default accepts ws:// and wss:// only
 * @property {typeof WebSocket} [WebSocket]  the WebSocket class (default globalThis.WebSocket; in Node, the `ws` package)
 */

/**
 * A Longlink connection that keeps itself alive. Events (an EventTarget;
 * each event's `detail` holds the data):
 * - `state`: {state: "connecting"|"connected"|"disconnected", reason?, status?, retryIn?}
 * - `login`: {conn, node, hb, resumed} after a successful LOGIN_ACK (resumed: true/false, or null without resume)
 * - `push`: a Push (after deduplication), for every biz
 * - `duplicate`: a Push dropped as a duplicate
 * - `kick`: {status, statusName, reason, redirect}
 * - `pong`: {seq, rtt} (rtt in ms)
 * - `refresh`: {ok: true, exp} (exp in ms) or {ok: false, status?, reason}, for each
 *   REFRESH: a token given as a function is renewed on the connection when four
 *   fifths of its life have passed (retried every 5 s after a failure)
 * - `error`: {error} (a handler threw, or a frame could not be decoded)
 */
export class LonglinkClient extends EventTarget {
  /**
   * @param {string} url  the gateway's WebSocket URL, e.g. ws://127.0.0.1:7001/
   * @param {ClientOptions} options
   */
  constructor(url, options) {
    super();
    const o = options ?? {};
    if (!o.token) throw new TypeError("LonglinkClient: options.token is required");
    this.url = url;
    this.opts = {
      reconnect: true, requestTimeout: 10000, loginTimeout: 10000, heartbeat: 30,
      missedPongs: 2, ackDelay: 20, dedupWindow: 1024, maxFrame: DEFAULT_MAX_FRAME, ...o,
      backoff: { initial: 500, max: 30000, multiplier: 2, ...o.backoff },
    };
    this.WebSocket = o.WebSocket ?? globalThis.WebSocket;
    /** @type {"disconnected"|"connecting"|"connected"} */
    this.state = "disconnected";
    this.conn = "";  // connection id from LOGIN_ACK
    this.node = "";  // node id from LOGIN_ACK
    this.hb = 0;     // heartbeat interval in seconds from LOGIN_ACK
    this.lastPushSeq = o.resume ?? 0; // sent as resume on the next login
    this._ws = null;
    this._seq = 0;
    this._pending = new Map(); // seq -> {resolve, reject, timer}
    this._handlers = new Map(); // biz -> Set<handler>
    this._ids = new Set();      // recent push ids, oldest first
    this._restartOK = false;    // after resumed=0 the gateway's seq may restart
    this._attempt = 0;
    this._stopped = true;
    this._timers = {};
  }

  /** Starts connecting (and keeps reconnecting) until close(). */
  connect() {
    if (!this._stopped) return;
    this._stopped = false;
    this._attempt = 0;
    this._open(this.url);
  }

  /** Closes the connection and stops reconnecting. */
  close() {
    const waiting = Boolean(this._timers.retry);
    this._stopped = true;
    this._clear("retry");
    if (this.state !== "disconnected") this._drop("closed by the client", { reconnect: false });
    else if (waiting) this._setState("disconnected", { reason: "closed by the client" });
  }

  /**
   * Registers a handler for pushes of business `biz` ("*" for all).
   * Returns a function that removes it.
   * @param {number|"*"} biz
   * @param {(p: Push) => void} handler
   * @returns {() => void}
   */
  onPush(biz, handler) {
    if (!this._handlers.has(biz)) this._handlers.set(biz, new Set());
    this._handlers.get(biz).add(handler);
    return () => this._handlers.get(biz)?.delete(handler);
  }

  /**
   * Sends a REQUEST to business `biz` and resolves with its LonglinkResponse, for
   * any status. Rejects with a LonglinkError when not connected, on
   * timeout, or when the connection is lost first (the business may or may
   * not have seen the request).
   * @param {number} biz  1..65535
   * @param {string|Uint8Array|ArrayBuffer} [body]
   * @param {{meta?: Record<string,string>, timeout?: number}} [options]
   * @returns {Promise<LonglinkResponse>}
   */
  request(biz, body, options = {}) {
    return new Promise((resolve, reject) => {
      if (this.state !== "connected") {
        reject(new LonglinkError("not_connected", "not connected"));
        return;
      }
      const seq = this._nextSeq();
      let frame;
      try {
        frame = encodeFrame({ op: Op.REQUEST, biz, seq, meta: options.meta, body });
      } catch (err) {
        reject(err);
        return;
      }
      if (frame.length > this.opts.maxFrame) {
        reject(new LonglinkError("frame_too_large", `request of ${frame.length} bytes is over the maximum frame (${this.opts.maxFrame})`));
        return;
      }
      const ms = options.timeout ?? this.opts.requestTimeout;
      const timer = setTimeout(() => {
        this._pending.delete(seq);
        reject(new LonglinkError("timeout", `no response within ${ms} ms`));
      }, ms);
      this._pending.set(seq, { resolve, reject, timer });
      this._send(frame);
    });
  }

  // ---- connection life cycle ----

  async _open(url) {
    this._setState("connecting", { url });
    const gen = (this._gen = (this._gen ?? 0) + 1);
    this._kick = null;
    this._loginFail = null;
    this._timers.login = setTimeout(() => this._drop("login timed out"), this.opts.loginTimeout);
    let token;
    try {
      token = typeof this.opts.token === "function" ? await this.opts.token() : this.opts.token;
    } catch (err) {
      if (gen === this._gen) this._drop(`getting a token failed: ${err?.message ?? err}`);
      return;
    }
    if (gen !== this._gen || this._stopped) return;
    let ws;
    try {
      ws = new this.WebSocket(url, [SUBPROTOCOL]);
    } catch (err) {
      this._drop(`cannot open ${url}: ${err?.message ?? err}`);
      return;
    }
    ws.binaryType = "arraybuffer";
    this._ws = ws;
    this._tokenExp = tokenExpiry(token);
    ws.onopen = () => {
      const meta = { token };
      if (this.lastPushSeq > 0) meta.resume = String(this.lastPushSeq);
      this._resumeSent = this.lastPushSeq > 0;
      this._send(encodeFrame({ op: Op.LOGIN, seq: this._nextSeq(), meta }));
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") return; // the gateway only sends binary
      let f;
      try {
        f = decodeFrame(ev.data);
      } catch (err) {
        this._emit("error", { error: err });
        this._drop(err.message);
        return;
      }
      this._onFrame(f);
    };
    ws.onerror = () => {}; // a close event follows with the details
    ws.onclose = (ev) => {
      const k = this._kick;
      const lf = this._loginFail;
      if (k) {
        // A session that outlived its token reconnects with a fresh one.
        const expired = k.status === Status.UNAUTHORIZED && k.reason === TOKEN_EXPIRED;
        const noRetry = (k.status === Status.UNAUTHORIZED && !expired) || k.status === Status.DUPLICATE_LOGIN;
        this._drop(`kicked: ${k.statusName}${k.reason ? ` (${k.reason})` : ""}`,
          { status: k.status, reconnect: !noRetry, redirect: k.redirect, fast: k.status === Status.SHUTTING_DOWN });
      } else if (lf) {
        this._drop(`login refused: ${statusName(lf.status)}${lf.reason ? ` (${lf.reason})` : ""}`,
          { status: lf.status, reconnect: lf.status !== Status.UNAUTHORIZED });
      } else {
        this._drop(`connection closed (code ${ev.code}${ev.reason ? `, ${ev.reason}` : ""})`);
      }
    };
  }

  /**
   * Tears the current connection down and, unless told otherwise or
   * stopped, schedules the next attempt.
   * @param {string} reason
   * @param {{status?: number, reconnect?: boolean, redirect?: string, fast?: boolean}} [how]
   */
  _drop(reason, how = {}) {
    this._gen = (this._gen ?? 0) + 1; // ignore anything the old socket still says
    for (const name of ["login", "hb", "ack", "refresh"]) this._clear(name);
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch { /* already closed */ }
    }
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new LonglinkError("disconnected", `connection lost before the response: ${reason}`));
    }
    this._pending.clear();
    this.conn = this.node = "";
    const detail = { reason };
    if (how.status !== undefined) detail.status = how.status;
    const retry = !this._stopped && this.opts.reconnect && how.reconnect !== false;
    let next = this.url;
    if (retry) {
      const r = how.redirect ? this._redirectUrl(how.redirect) : null;
      if (r) next = r;
      const ceiling = how.fast ? this.opts.backoff.initial : this._ceiling(this._attempt++);
      detail.retryIn = Math.round(Math.random() * ceiling); // full jitter
      this._timers.retry = setTimeout(() => {
        this._timers.retry = null;
        this._open(next);
      }, detail.retryIn);
    } else {
      this._stopped = true;
    }
    this._setState("disconnected", detail);
  }

  _ceiling(attempt) {
    const { initial, max, multiplier } = this.opts.backoff;
    return Math.min(max, initial * Math.pow(multiplier, attempt));
  }

  _redirectUrl(redirect) {
    if (this.opts.redirectUrl) return this.opts.redirectUrl(redirect);
    return /^wss?:\/\//i.test(redirect) ? redirect : null; // a bare host:port is a TCP endpoint
  }

  // ---- frames from the gateway ----

  /** @param {Frame} f */
  _onFrame(f) {
    switch (f.op) {
      case Op.LOGIN_ACK: return this._onLoginAck(f);
      case Op.PONG: {
        this._outstanding = 0;
        const sent = this._pingSent?.get(f.seq);
        this._pingSent?.delete(f.seq);
        if (sent !== undefined) this._rtt = Math.max(1, Date.now() - sent); // reported with the next PING
        this._emit("pong", { seq: f.seq, rtt: sent === undefined ? null : Date.now() - sent });
        return;
      }
      case Op.RESPONSE: {
        const p = this._pending.get(f.seq);
        if (!p) return; // timed out already
        this._pending.delete(f.seq);
        clearTimeout(p.timer);
        p.resolve(new LonglinkResponse(f));
        return;
      }
      case Op.PUSH: return this._onPush(f);
      case Op.REFRESH_ACK: return this._onRefreshAck(f);
      case Op.KICK: {
        this._kick = { status: f.status, statusName: statusName(f.status),
          reason: metaText(f, "reason"), redirect: metaText(f, "redirect") };
        this._emit("kick", this._kick);
        return; // the gateway closes the socket next
      }
      default: return; // nothing else is sent to clients
    }
  }

  /** @param {Frame} f */
  _onLoginAck(f) {
    this._clear("login");
    if (f.status !== Status.OK) {
      this._loginFail = { status: f.status, reason: metaText(f, "reason") };
      return; // the gateway closes the socket next
    }
    this.conn = metaText(f, "conn");
    this.node = metaText(f, "node");
    this.hb = Number(metaText(f, "hb")) || this.opts.heartbeat;
    const r = metaText(f, "resumed");
    const resumed = this._resumeSent ? r === "1" : null;
    if (resumed === false) this._restartOK = true; // pushes were lost; the seq may restart at 1
    this._attempt = 0;
    this._outstanding = 0;
    this._pingSent = new Map();
    this._timers.hb = setInterval(() => this._heartbeat(), this.hb * 1000);
    this._setState("connected", { conn: this.conn, node: this.node, hb: this.hb, resumed });
    this._emit("login", { conn: this.conn, node: this.node, hb: this.hb, resumed });
    this._scheduleRefresh(this._tokenExp);
  }

  // ---- session refresh (docs/protocol.md, "Session expiry and REFRESH") ----

  /** Arms the refresh of a token ending at exp (ms): at four fifths of its life left. */
  _scheduleRefresh(exp, delay) {
    this._clear("refresh");
    if (typeof this.opts.token !== "function" || (!exp && delay === undefined)) return; // a fixed token cannot be renewed
    const wait = delay ?? Math.max(0, ((exp - Date.now()) * 4) / 5);
    this._timers.refresh = setTimeout(() => this._refresh(), Math.min(wait, 2 ** 31 - 1));
  }

  async _refresh() {
    this._timers.refresh = null;
    const gen = this._gen;
    let token;
    try {
      token = await this.opts.token();
    } catch (err) {
      if (gen !== this._gen) return;
      this._emit("refresh", { ok: false, reason: `getting a token failed: ${err?.message ?? err}` });
      this._scheduleRefresh(0, 5000);
      return;
    }
    if (gen !== this._gen || !this._ws) return;
    this._refreshSeq = this._nextSeq();
    this._send(encodeFrame({ op: Op.REFRESH, seq: this._refreshSeq, meta: { token } }));
    this._timers.refresh = setTimeout(() => { // no answer: try again
      this._emit("refresh", { ok: false, reason: "no REFRESH_ACK" });
      this._refresh();
    }, this.opts.loginTimeout);
  }

  /** @param {Frame} f */
  _onRefreshAck(f) {
    if (f.seq !== this._refreshSeq) return; // a late answer to an earlier one
    this._clear("refresh");
    if (f.status !== Status.OK) {
      this._emit("refresh", { ok: false, status: f.status, reason: metaText(f, "reason") });
      this._scheduleRefresh(0, 5000);
      return;
    }
    const exp = Number(metaText(f, "exp")) * 1000;
    this._emit("refresh", { ok: true, exp });
    this._scheduleRefresh(exp);
  }

  _heartbeat() {
    if (this._outstanding >= this.opts.missedPongs) {
      this._drop(`heartbeat timeout: ${this._outstanding} PINGs unanswered`);
      return;
    }
    const seq = this._nextSeq();
    this._outstanding++;
    this._pingSent.set(seq, Date.now());
    if (this._pingSent.size > 16) this._pingSent.delete(this._pingSent.keys().next().value);
    this._send(encodeFrame({ op: Op.PING, seq, meta: this._quality() }));
  }

  // The network quality report of a PING: the last round trip and the
  // network kind (docs/protocol.md, PING); none before the first PONG.
  _quality() {
    if (!this._rtt) return undefined;
    const meta = { rtt: String(this._rtt) };
    const net = this.opts.network ?? networkKind(globalThis.navigator?.connection?.type);
    if (net) meta.net = net;
    return meta;
  }

  /** @param {Frame} f */
  _onPush(f) {
    const p = new Push(f);
    if (p.ackRequired) this._scheduleAck(); // duplicates are acknowledged too
    if (this._restartOK) {
      this._restartOK = false;
      if (p.seq <= this.lastPushSeq) this.lastPushSeq = p.seq - 1; // the counter restarted
    }
    let dup = p.seq <= this.lastPushSeq;
    if (!dup) {
      this.lastPushSeq = p.seq;
      dup = p.id !== "" && !this._rememberId(p.id);
    }
    if (dup) {
      this._emit("duplicate", p);
      return;
    }
    for (const key of [p.biz, "*"]) {
      for (const h of this._handlers.get(key) ?? []) {
        try { h(p); } catch (error) { this._emit("error", { error }); }
      }
    }
    this._emit("push", p);
  }

  /** Records id; false if it was among the recent ones. */
  _rememberId(id) {
    const max = this.opts.dedupWindow;
    if (max <= 0) return true;
    if (this._ids.has(id)) return false;
    this._ids.add(id);
    if (this._ids.size > max) this._ids.delete(this._ids.values().next().value);
    return true;
  }

  /** Acks are cumulative: one PUSH_ACK with the last seq covers every push so far. */
  _scheduleAck() {
    if (this._timers.ack) return;
    this._timers.ack = setTimeout(() => {
      this._timers.ack = null;
      if (this.state === "connected" && this.lastPushSeq > 0) {
        this._send(encodeFrame({ op: Op.PUSH_ACK, seq: this.lastPushSeq }));
      }
    }, this.opts.ackDelay);
  }

  // ---- helpers ----

  _nextSeq() {
    do {
      this._seq = (this._seq + 1) >>> 0;
    } while (this._seq === 0 || this._pending.has(this._seq));
    return this._seq;
  }

  _send(bytes) {
    const ws = this._ws;
    if (ws && ws.readyState === 1 /* OPEN */) ws.send(bytes);
  }

  _clear(name) {
    const t = this._timers[name];
    if (t) {
      clearTimeout(t); // timeouts and intervals share one list (HTML spec; Node alike)
      this._timers[name] = null;
    }
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
