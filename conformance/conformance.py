#!/usr/bin/env python3
"""Longlink wire-protocol conformance suite.

Written from the public contract only (PROTOCOL.md, the HTTP API section of
DESIGN.md, and docs/protocol.md), with the Python standard library only, so
that it shares no code and no assumptions with the Go gateway or the Go SDK.

It drives a running gateway that was started with the built-in echo business
as business 1 (`-biz 1=echo`) and the default maximum frame size, over TCP and
the HTTP API, and prints one line per check, then exactly one line
`N passed, N failed`. The exit status is 0 only if nothing failed.

    python3 conformance.py --tcp 127.0.0.1:7000 --api http://127.0.0.1:7080 \\
        --api-key KEY --jwt-secret SECRET --node NODEID

See README.md in this directory.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request

# --------------------------------------------------------------------------
# Wire format (PROTOCOL.md "Frame" and "Meta")

MAGIC = b"LK"
VERSION = 1
HEADER = struct.Struct(">2sBBBBHHHII")  # magic ver op flags reserved biz status metaLen seq bodyLen
HEADER_SIZE = 20
assert HEADER.size == HEADER_SIZE

LOGIN, LOGIN_ACK, PING, PONG, REQUEST, RESPONSE, PUSH, PUSH_ACK, KICK, REFRESH, REFRESH_ACK = range(1, 12)
OP_NAMES = {1: "LOGIN", 2: "LOGIN_ACK", 3: "PING", 4: "PONG", 5: "REQUEST",
            6: "RESPONSE", 7: "PUSH", 8: "PUSH_ACK", 9: "KICK", 10: "REFRESH", 11: "REFRESH_ACK"}
SERVER_OPS = {LOGIN_ACK, PONG, RESPONSE, PUSH, KICK, REFRESH_ACK}
ACK_REQUIRED = 0x01

STATUS_NAMES = ["OK", "BAD_FRAME", "UNAUTHORIZED", "NOT_LOGGED_IN", "UNKNOWN_BIZ",
                "BIZ_UNAVAILABLE", "TIMEOUT", "OVERLOADED", "FRAME_TOO_LARGE",
                "DUPLICATE_LOGIN", "SHUTTING_DOWN", "IDLE_TIMEOUT", "BIZ_ERROR",
                "INTERNAL", "SLOW_CONSUMER"]
(OK, BAD_FRAME, UNAUTHORIZED, NOT_LOGGED_IN, UNKNOWN_BIZ, BIZ_UNAVAILABLE, TIMEOUT,
 OVERLOADED, FRAME_TOO_LARGE, DUPLICATE_LOGIN, SHUTTING_DOWN, IDLE_TIMEOUT,
 BIZ_ERROR, INTERNAL, SLOW_CONSUMER) = range(15)


def status_name(s):
    return "%d %s" % (s, STATUS_NAMES[s] if s < len(STATUS_NAMES) else "?")


def op_name(op):
    return OP_NAMES.get(op, "OP(0x%02x)" % op)


def encode_meta(entries):
    """entries: iterable of (key, value), str or bytes."""
    out = bytearray()
    for k, v in entries:
        k = k.encode() if isinstance(k, str) else k
        v = v.encode() if isinstance(v, str) else v
        assert 1 <= len(k) <= 255 and len(v) <= 0xFFFF
        out += bytes([len(k)]) + k + struct.pack(">H", len(v)) + v
    return bytes(out)


def encode_frame(op, seq=0, biz=0, status=0, flags=0, meta=(), body=b"", reserved=0,
                 magic=MAGIC, version=VERSION, raw_meta=None, meta_len=None, body_len=None):
    """Encodes a frame. raw_meta/meta_len/body_len let a test forge bad frames."""
    m = raw_meta if raw_meta is not None else encode_meta(meta)
    ml = len(m) if meta_len is None else meta_len
    bl = len(body) if body_len is None else body_len
    return HEADER.pack(magic, version, op, flags, reserved, biz, status, ml, seq, bl) + m + body


def decode_meta(m):
    """Returns the list of (key bytes, value bytes) pairs; raises ValueError."""
    entries, i = [], 0
    while i < len(m):
        klen = m[i]
        if klen == 0:
            raise ValueError("meta entry with klen 0 at offset %d" % i)
        if i + 1 + klen + 2 > len(m):
            raise ValueError("meta entry at offset %d runs past metaLen" % i)
        key = m[i + 1:i + 1 + klen]
        i += 1 + klen
        vlen = struct.unpack_from(">H", m, i)[0]
        i += 2
        if i + vlen > len(m):
            raise ValueError("meta value of %r runs past metaLen" % key)
        entries.append((key, m[i:i + vlen]))
        i += vlen
    return entries


class Frame:
    def __init__(self, op, flags, reserved, biz, status, seq, meta_entries, body):
        self.op, self.flags, self.reserved = op, flags, reserved
        self.biz, self.status, self.seq = biz, status, seq
        self.entries = meta_entries
        self.meta = {}
        for k, v in meta_entries:  # the last one wins
            self.meta[k.decode("latin-1")] = v.decode("latin-1")
        self.body = body

    def __repr__(self):
        s = "%s(seq=%d biz=%d status=%s flags=0x%02x" % (
            op_name(self.op), self.seq, self.biz, status_name(self.status), self.flags)
        if self.meta:
            s += " meta=%r" % self.meta
        if self.body:
            b = self.body if len(self.body) <= 40 else self.body[:40] + b"..."
            s += " body=%r" % b
        return s + ")"


class CheckFailed(Exception):
    pass


class Closed(Exception):
    pass


# --------------------------------------------------------------------------
# A TCP client connection


class Conn:
    def __init__(self, addr, timeout):
        self.timeout = timeout
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.login_ack = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, op, **kw):
        self.send(encode_frame(op, **kw))

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            if self.eof:
                raise Closed("connection closed by the server")
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                self.eof = True
                raise Closed("connection reset by the server")
            if not chunk:
                self.eof = True
                if len(self.buf) == 0:
                    raise Closed("connection closed by the server")
                raise CheckFailed("connection closed in the middle of a frame (%d bytes buffered, %d needed)"
                                  % (len(self.buf), n))
            self.buf += chunk

    def read_frame(self, timeout=None):
        """Reads one frame; raises socket.timeout, Closed or CheckFailed."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._fill(HEADER_SIZE, deadline)
        magic, ver, op, flags, reserved, biz, status, ml, seq, bl = HEADER.unpack_from(self.buf, 0)
        if magic != MAGIC:
            raise CheckFailed("server frame: bad magic %r" % bytes(magic))
        if ver != VERSION:
            raise CheckFailed("server frame: version %d, expected 1" % ver)
        if op not in SERVER_OPS:
            raise CheckFailed("server frame: op %s is not a server-to-client op" % op_name(op))
        if reserved != 0:
            raise CheckFailed("server %s: reserved byte 0x%02x, expected 0" % (op_name(op), reserved))
        allowed = ACK_REQUIRED if op == PUSH else 0
        if flags & ~allowed:
            raise CheckFailed("server %s: flags 0x%02x, only 0x%02x allowed" % (op_name(op), flags, allowed))
        self._fill(HEADER_SIZE + ml + bl, deadline)
        m = bytes(self.buf[HEADER_SIZE:HEADER_SIZE + ml])
        body = bytes(self.buf[HEADER_SIZE + ml:HEADER_SIZE + ml + bl])
        del self.buf[:HEADER_SIZE + ml + bl]
        try:
            entries = decode_meta(m)
        except ValueError as e:
            raise CheckFailed("server %s: malformed meta: %s" % (op_name(op), e))
        return Frame(op, flags, reserved, biz, status, seq, entries, body)

    def expect(self, op, timeout=None, skip=()):
        """Reads the next frame (skipping ops in skip) and requires it to be op."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                f = self.read_frame(max(0.0, deadline - time.monotonic()))
            except socket.timeout:
                raise CheckFailed("expected %s, got nothing within %.1fs" % (op_name(op), self.timeout if timeout is None else timeout))
            except Closed as e:
                raise CheckFailed("expected %s, got: %s" % (op_name(op), e))
            if f.op in skip:
                continue
            if f.op != op:
                raise CheckFailed("expected %s, got %r" % (op_name(op), f))
            return f

    def expect_nothing(self, wait, skip=()):
        """Requires that no frame (other than ops in skip) arrives within wait seconds."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                f = self.read_frame(left)
            except socket.timeout:
                return
            except Closed as e:
                raise CheckFailed("expected the connection to stay open and quiet, got: %s" % e)
            if f.op not in skip:
                raise CheckFailed("expected no frame, got %r" % f)

    def expect_closed(self, timeout=None, what="after that"):
        """Requires the server to close the connection, with no frame before it."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            f = self.read_frame(max(0.0, deadline - time.monotonic()))
        except Closed:
            return
        except socket.timeout:
            raise CheckFailed("expected the server to close the connection %s, still open after %.1fs"
                              % (what, self.timeout if timeout is None else timeout))
        raise CheckFailed("expected the server to close the connection %s, got %r" % (what, f))

    def expect_kick_and_close(self, status, timeout=None):
        f = self.expect(KICK, timeout)
        if f.status != status:
            raise CheckFailed("KICK status: expected %s, got %s (reason %r)"
                              % (status_name(status), status_name(f.status), f.meta.get("reason")))
        self.expect_closed(what="after KICK")
        return f


# --------------------------------------------------------------------------
# JWT (HS256), minted here with hmac


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint_jwt(secret, claims, alg="HS256"):
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = (header + "." + payload).encode()
    if alg == "none":
        return header + "." + payload + "."
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return header + "." + payload + "." + b64url(sig)


# --------------------------------------------------------------------------
# The suite


class Suite:
    def __init__(self, args):
        self.args = args
        host, _, port = args.tcp.rpartition(":")
        self.addr = (host.strip("[]"), int(port))
        self.api_base = args.api.rstrip("/")
        self.timeout = args.timeout
        self.run_id = "%d-%d" % (os.getpid(), int(time.time() * 1000) % 10**9)
        self.n = 0
        self.sentinel = None
        self.keepalive_stop = threading.Event()
        self.keepalive_thread = None
        self.hb = None

    # ---- helpers

    def uid(self, name):
        self.n += 1
        return "conf-%s-%s-%d" % (self.run_id, name, self.n)

    def token(self, device, exp_in=3600, secret=None, **claims):
        c = {"sub": device, "exp": int(time.time()) + exp_in}
        c.update(claims)
        return mint_jwt(self.args.jwt_secret if secret is None else secret, c)

    def connect(self):
        return Conn(self.addr, self.timeout)

    def login(self, device=None, seq=1, token=None, extra_meta=(), **claims):
        """Opens a connection and logs device in; requires LOGIN_ACK OK."""
        if device is None:
            device = self.uid("dev")
        c = self.connect()
        try:
            tok = token if token is not None else self.token(device, **claims)
            c.send_frame(LOGIN, seq=seq, meta=[("token", tok)] + list(extra_meta))
            ack = c.expect(LOGIN_ACK)
            if ack.status != OK:
                raise CheckFailed("LOGIN_ACK for %s: expected status %s, got %s (reason %r)"
                                  % (device, status_name(OK), status_name(ack.status), ack.meta.get("reason")))
        except Exception:
            c.close()
            raise
        c.device = device
        c.login_ack = ack
        return c

    def api(self, method, path, body=None, key=True, raw=None):
        """Calls the HTTP API; returns (status code, parsed JSON or None, raw bytes)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.api_base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if key is True:
            req.add_header("Authorization", "Bearer " + self.args.api_key)
        elif key:
            req.add_header("Authorization", key)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                code, payload = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            code, payload = e.code, e.read()
        except (socket.timeout, TimeoutError):
            raise CheckFailed("%s %s: no HTTP answer within %.1fs" % (method, path, self.timeout))
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise CheckFailed("%s %s: no HTTP answer within %.1fs" % (method, path, self.timeout))
            raise CheckFailed("%s %s: %s" % (method, path, e.reason))
        except (ConnectionError, OSError) as e:
            raise CheckFailed("%s %s: %s" % (method, path, e))
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = None
        return code, parsed, payload

    def api_ok(self, method, path, body=None):
        code, parsed, payload = self.api(method, path, body)
        if not 200 <= code < 300:
            raise CheckFailed("%s %s: expected 2xx, got %d %r" % (method, path, code, payload[:200]))
        return parsed

    # ---- keepalive of the sentinel connection

    def _keepalive(self):
        seq = 1000000
        period = max(0.5, min(5.0, (self.hb or 30) / 2.0))
        while not self.keepalive_stop.wait(period):
            seq += 1
            try:
                self.sentinel.send_frame(PING, seq=seq)
            except OSError:
                return


def eq(got, want, what):
    if got != want:
        raise CheckFailed("%s: expected %r, got %r" % (what, want, got))


def truthy(cond, msg):
    if not cond:
        raise CheckFailed(msg)


CHECKS = []


def check(name, slow=False):
    def deco(fn):
        CHECKS.append((name, fn, slow))
        return fn
    return deco


# ---- login

@check("login: LOGIN_ACK OK with seq copied and meta conn/node/hb")
def c_login(s):
    device = s.uid("sentinel")
    c = s.login(device, seq=4242)
    ack = c.login_ack
    # This connection stays logged in for the whole run (see the last check).
    hb = ack.meta.get("hb")
    s.sentinel, s.hb = c, int(hb) if hb and hb.isdigit() else None
    s.keepalive_thread = threading.Thread(target=s._keepalive, daemon=True)
    s.keepalive_thread.start()
    eq(ack.seq, 4242, "LOGIN_ACK seq")
    conn = ack.meta.get("conn")
    truthy(conn is not None and conn.isdigit(), "LOGIN_ACK meta conn: expected a decimal id, got %r" % conn)
    eq(ack.meta.get("node"), s.args.node, "LOGIN_ACK meta node")
    truthy(hb is not None and hb.isdigit() and int(hb) > 0,
           "LOGIN_ACK meta hb: expected a positive decimal integer, got %r" % hb)
    truthy("resumed" not in ack.meta, "LOGIN_ACK without resume must not carry meta resumed, got %r" % ack.meta)


@check("login: app claim and groups claim accepted")
def c_login_claims(s):
    with s.login(app="conformance", groups=[s.uid("g")]) as c:
        c.send_frame(PING, seq=3)
        eq(c.expect(PONG).seq, 3, "PONG seq")


@check("login: meta hb is granted clamped to LOGIN_ACK hb_min..hb_max")
def c_login_hb(s):
    with s.login() as c:
        lo, hi = c.login_ack.meta.get("hb_min"), c.login_ack.meta.get("hb_max")
        truthy(lo is not None and lo.isdigit() and hi is not None and hi.isdigit() and 0 < int(lo) <= int(hi),
               "LOGIN_ACK meta hb_min/hb_max: expected decimal seconds, min <= max, got %r/%r" % (lo, hi))
        hb = c.login_ack.meta.get("hb")
        truthy(int(lo) <= int(hb) <= int(hi), "LOGIN_ACK hb %s outside [%s, %s]" % (hb, lo, hi))
    lo, hi = int(lo), int(hi)
    for ask, want in ((1, max(1, lo)), (10**9, hi), ((lo + hi) // 2, (lo + hi) // 2)):
        with s.login(extra_meta=[("hb", str(ask))]) as c:
            eq(c.login_ack.meta.get("hb"), str(want), "LOGIN_ACK hb for LOGIN hb=%d" % ask)
    c = s.connect()
    try:
        c.send_frame(LOGIN, seq=1, meta=[("token", s.token(s.uid("hb"))), ("hb", "ten")])
        ack = c.expect(LOGIN_ACK)
        eq(ack.status, BAD_FRAME, "LOGIN_ACK status for hb=ten")
    finally:
        c.close()


# ---- refresh

def refresh(c, seq, token):
    meta = [("token", token)] if token is not None else []
    c.send_frame(REFRESH, seq=seq, meta=meta)
    a = c.expect(REFRESH_ACK)
    eq(a.seq, seq, "REFRESH_ACK seq")
    return a


@check("refresh: a token for the same sub -> REFRESH_ACK OK, seq copied, meta exp")
def c_refresh(s):
    with s.login() as c:
        exp = int(time.time()) + 7200
        a = refresh(c, 77, s.token(c.device, exp_in=7200))
        eq(a.status, OK, "REFRESH_ACK status")
        got = a.meta.get("exp")
        truthy(got is not None and got.isdigit() and abs(int(got) - exp) <= 2,
               "REFRESH_ACK meta exp: expected about %d, got %r" % (exp, got))
        c.send_frame(PING, seq=78)
        eq(c.expect(PONG).seq, 78, "PONG seq after REFRESH")


@check("refresh: another sub, a bad token, no token -> REFRESH_ACK UNAUTHORIZED with reason; the session goes on")
def c_refresh_refused(s):
    with s.login() as c:
        for i, tok in enumerate((s.token(s.uid("other")), "not-a-jwt", None,
                                 s.token(c.device, secret=s.args.jwt_secret + "-wrong"))):
            a = refresh(c, 90 + i, tok)
            eq(a.status, UNAUTHORIZED, "REFRESH_ACK status for refusal %d" % i)
            truthy(a.meta.get("reason"), "REFRESH_ACK refusal %d: expected meta reason" % i)
        c.send_frame(PING, seq=99)
        eq(c.expect(PONG).seq, 99, "PONG seq after refused REFRESHes")


@check("before login: REFRESH -> KICK NOT_LOGGED_IN, close")
def c_refresh_before_login(s):
    c = s.connect()
    try:
        c.send_frame(REFRESH, seq=1, meta=[("token", s.token(s.uid("pre")))])
        c.expect_kick_and_close(NOT_LOGGED_IN)
    finally:
        c.close()


# ---- ping

@check("ping: PONG copies seq (1, 0, 0xFFFFFFFF)")
def c_ping(s):
    with s.login() as c:
        for seq in (1, 0, 0xFFFFFFFF, 123456789):
            c.send_frame(PING, seq=seq)
            p = c.expect(PONG)
            eq(p.seq, seq, "PONG seq")
            eq(p.status, OK, "PONG status")


@check("ping: pipelined PINGs answered in order")
def c_ping_pipelined(s):
    with s.login() as c:
        c.send(b"".join(encode_frame(PING, seq=i) for i in range(100, 120)))
        got = [c.expect(PONG).seq for _ in range(20)]
        eq(got, list(range(100, 120)), "PONG seqs")


def rtt_count(s, net):
    """longlink_client_rtt_seconds_count{net=...} from /metrics (0 when absent)."""
    code, _, payload = s.api("GET", "/metrics")
    eq(code, 200, "GET /metrics status")
    prefix = 'longlink_client_rtt_seconds_count{net="%s"} ' % net
    for line in payload.decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


@check("ping: a network quality report (meta rtt, net) is answered and counted; a malformed one is answered")
def c_ping_quality(s):
    before = rtt_count(s, "wifi")
    with s.login() as c:
        c.send_frame(PING, seq=21, meta=[("rtt", "87"), ("net", "wifi")])
        p = c.expect(PONG)
        eq((p.seq, p.status), (21, OK), "PONG to a PING with rtt")
        c.send_frame(PING, seq=22, meta=[("rtt", "fast"), ("net", "wifi")])
        p = c.expect(PONG)
        eq((p.seq, p.status), (22, OK), "PONG to a PING with a malformed rtt")
    eq(rtt_count(s, "wifi"), before + 1, "longlink_client_rtt_seconds_count{net=\"wifi\"} after one report")


# ---- requests

@check("request: echo answers with seq/biz/body/meta copied")
def c_request(s):
    with s.login() as c:
        c.send_frame(REQUEST, biz=1, seq=42, meta=[("trace", "abc")], body=b"hi")
        r = c.expect(RESPONSE)
        eq((r.seq, r.biz, r.status), (42, 1, OK), "RESPONSE (seq, biz, status)")
        eq(r.body, b"hi", "RESPONSE body")
        eq(r.meta.get("trace"), "abc", "RESPONSE meta trace")


@check("request: 50 pipelined REQUESTs each answered once, matched by seq")
def c_request_pipelined(s):
    n = 50
    with s.login() as c:
        want = {}
        out = bytearray()
        for i in range(n):
            seq = 7000 + i * 3
            body = b"req-%d-" % i + bytes([i, 0, 255, 10, 13]) + os.urandom(i)
            meta = [("n", str(i)), ("kind", "pipe")]
            want[seq] = (body, dict(meta))
            out += encode_frame(REQUEST, biz=1, seq=seq, meta=meta, body=body)
        c.send(bytes(out))  # all 50 before reading anything
        seen = {}
        for _ in range(n):
            r = c.expect(RESPONSE)
            truthy(r.seq in want, "RESPONSE with seq %d that was never sent: %r" % (r.seq, r))
            truthy(r.seq not in seen, "second RESPONSE for seq %d: %r" % (r.seq, r))
            seen[r.seq] = r
            eq(r.status, OK, "RESPONSE status for seq %d" % r.seq)
            eq(r.biz, 1, "RESPONSE biz for seq %d" % r.seq)
            body, meta = want[r.seq]
            eq(r.body, body, "RESPONSE body for seq %d" % r.seq)
            for k, v in meta.items():
                eq(r.meta.get(k), v, "RESPONSE meta %r for seq %d" % (k, r.seq))
        c.expect_nothing(0.3)


@check("request: unknown business -> RESPONSE UNKNOWN_BIZ, biz and seq copied")
def c_unknown_biz(s):
    with s.login() as c:
        c.send_frame(REQUEST, biz=65000, seq=9, body=b"x")
        r = c.expect(RESPONSE)
        eq(status_name(r.status), status_name(UNKNOWN_BIZ), "RESPONSE status")
        eq((r.biz, r.seq), (65000, 9), "RESPONSE (biz, seq)")
        c.send_frame(PING, seq=10)
        eq(c.expect(PONG).seq, 10, "PONG seq after UNKNOWN_BIZ (connection must stay usable)")


@check("request: frame of exactly -max-frame bytes is accepted")
def c_request_max(s):
    with s.login() as c:
        body = os.urandom(s.args.max_frame - HEADER_SIZE)
        c.send_frame(REQUEST, biz=1, seq=77, body=body)
        r = c.expect(RESPONSE)
        eq((r.seq, r.status), (77, OK), "RESPONSE (seq, status)")
        eq(r.body == body, True, "RESPONSE body equals the %d-byte request body" % len(body))


# ---- pushes

@check("push: unicast PUSH seq 1 then 2, meta id, binary body, ACK_REQUIRED, delivered/offline")
def c_push(s):
    with s.login() as c:
        ghost = s.uid("ghost")
        res = s.api_ok("POST", "/v1/push", {"devices": [c.device, ghost], "biz": 1,
                                            "data": "first", "id": "msg-1"})
        eq(res.get("delivered"), 1, "push response delivered")
        offline = res.get("offline")
        truthy(isinstance(offline, list) and ghost in offline,
               "push response offline: expected a list containing %r, got %r" % (ghost, offline))
        truthy(c.device not in offline, "push response offline lists the online device: %r" % offline)
        p = c.expect(PUSH)
        eq((p.seq, p.biz, p.body), (1, 1, b"first"), "first PUSH (seq, biz, body)")
        eq(p.meta.get("id"), "msg-1", "first PUSH meta id")
        eq(p.flags & ACK_REQUIRED, 0, "first PUSH ACK_REQUIRED flag (ack not requested)")

        blob = bytes(range(256)) + b"\x00\x00\xff"
        res = s.api_ok("POST", "/v1/push", {"devices": [c.device], "biz": 1, "ack": True, "id": "msg-2",
                                            "data_base64": base64.b64encode(blob).decode()})
        eq(res.get("delivered"), 1, "second push response delivered")
        p = c.expect(PUSH)
        eq(p.seq, 2, "second PUSH seq")
        eq(p.body, blob, "second PUSH body (data_base64, byte-exact)")
        eq(p.meta.get("id"), "msg-2", "second PUSH meta id")
        eq(p.flags & ACK_REQUIRED, ACK_REQUIRED, "second PUSH ACK_REQUIRED flag")
        c.send_frame(PUSH_ACK, seq=2)
        c.send_frame(PING, seq=5)
        eq(c.expect(PONG).seq, 5, "PONG after PUSH_ACK")


@check("push: batch unicast reaches each listed device once")
def c_push_batch(s):
    conns = [s.login() for _ in range(3)]
    try:
        res = s.api_ok("POST", "/v1/push", {"devices": [c.device for c in conns], "biz": 1, "data": "batch"})
        eq(res.get("delivered"), 3, "push response delivered")
        eq(res.get("offline") or [], [], "push response offline")
        for c in conns:
            p = c.expect(PUSH)
            eq((p.seq, p.body), (1, b"batch"), "PUSH (seq, body) for %s" % c.device)
            c.expect_nothing(0.2)
    finally:
        for c in conns:
            c.close()


@check("groups: PUT members, group push reaches members only, DELETE members")
def c_groups_api(s):
    g = s.uid("room")
    a, b, o = s.login(), s.login(), s.login()
    try:
        s.api_ok("PUT", "/v1/groups/%s/members" % g, {"devices": [a.device, b.device]})
        res = s.api_ok("POST", "/v1/groups/%s/push" % g, {"biz": 1, "data": "to-room", "id": "g-1"})
        eq(res.get("delivered"), 2, "group push delivered")
        for c in (a, b):
            p = c.expect(PUSH)
            eq((p.biz, p.body), (1, b"to-room"), "group PUSH (biz, body) for %s" % c.device)
            eq(p.meta.get("id"), "g-1", "group PUSH meta id")
        o.expect_nothing(0.5)
        s.api_ok("DELETE", "/v1/groups/%s/members" % g, {"devices": [b.device]})
        res = s.api_ok("POST", "/v1/groups/%s/push" % g, {"biz": 1, "data": "after-leave"})
        eq(res.get("delivered"), 1, "group push delivered after DELETE members")
        eq(a.expect(PUSH).body, b"after-leave", "PUSH body for the remaining member")
        b.expect_nothing(0.5)
        o.expect_nothing(0.1)
    finally:
        for c in (a, b, o):
            c.close()


@check("groups: group PUSH carries meta group")
def c_group_meta(s):
    g = s.uid("room")
    with s.login() as a:
        s.api_ok("PUT", "/v1/groups/%s/members" % g, {"devices": [a.device]})
        s.api_ok("POST", "/v1/groups/%s/push" % g, {"biz": 1, "data": "x"})
        p = a.expect(PUSH)
        eq(p.meta.get("group"), g, "group PUSH meta group")


@check("groups: token groups claim joins the group at login")
def c_groups_claim(s):
    g1, g2 = s.uid("claim"), s.uid("claim")
    with s.login(groups=[g1, g2]) as a, s.login() as o:
        res = s.api_ok("POST", "/v1/groups/%s/push" % g2, {"biz": 1, "data": "claimed"})
        eq(res.get("delivered"), 1, "group push delivered")
        eq(a.expect(PUSH).body, b"claimed", "PUSH body")
        o.expect_nothing(0.5)
        res = s.api_ok("GET", "/v1/groups/%s" % g1)
        eq(res.get("members"), 1, "GET /v1/groups/%s members" % g1)


@check("groups: GET /v1/groups/{g} returns group and member count")
def c_group_count(s):
    g = s.uid("count")
    conns = [s.login() for _ in range(3)]
    try:
        code, res, raw = s.api("GET", "/v1/groups/%s" % g)
        truthy(code == 404 or (code == 200 and isinstance(res, dict) and res.get("members") == 0),
               "GET an unused group: expected 200 with members 0 (or 404), got %d %r" % (code, raw[:200]))
        s.api_ok("PUT", "/v1/groups/%s/members" % g, {"devices": [c.device for c in conns]})
        res = s.api_ok("GET", "/v1/groups/%s" % g)
        eq(res.get("group"), g, "GET group")
        eq(res.get("members"), 3, "GET members after PUT of 3")
        s.api_ok("DELETE", "/v1/groups/%s/members" % g, {"devices": [conns[0].device]})
        eq(s.api_ok("GET", "/v1/groups/%s" % g).get("members"), 2, "GET members after DELETE of 1")
    finally:
        for c in conns:
            c.close()


@check("broadcast: reaches every logged-in test connection")
def c_broadcast(s):
    conns = [s.login() for _ in range(3)]
    try:
        data = "bcast-" + s.run_id
        res = s.api_ok("POST", "/v1/broadcast", {"biz": 1, "data": data})
        d = res.get("delivered")
        truthy(isinstance(d, int) and d >= len(conns),
               "broadcast delivered: expected >= %d, got %r" % (len(conns), d))
        for c in conns:
            p = c.expect(PUSH)
            eq((p.biz, p.body, p.seq), (1, data.encode(), 1), "broadcast PUSH (biz, body, seq) for %s" % c.device)
    finally:
        for c in conns:
            c.close()


# ---- devices

@check("devices: GET /v1/devices/{d} online/node/conn match the LOGIN_ACK")
def c_device_info(s):
    with s.login() as c:
        res = s.api_ok("GET", "/v1/devices/%s" % c.device)
        eq(res.get("online"), True, "online")
        eq(res.get("node"), c.login_ack.meta.get("node"), "node (vs LOGIN_ACK)")
        eq(res.get("node"), s.args.node, "node (vs --node)")
        eq(str(res.get("conn")), c.login_ack.meta.get("conn"), "conn (vs LOGIN_ACK)")
    ghost = s.uid("ghost")
    res = s.api_ok("GET", "/v1/devices/%s" % ghost)
    eq(res.get("online"), False, "online for a device that never logged in")


@check("devices: DELETE /v1/devices/{d} -> KICK, close, then offline")
def c_device_kick(s):
    with s.login() as c:
        s.api_ok("DELETE", "/v1/devices/%s" % c.device)
        c.expect(KICK)
        c.expect_closed(what="after KICK")
    deadline = time.monotonic() + s.timeout
    while True:
        res = s.api_ok("GET", "/v1/devices/%s" % c.device)
        if res.get("online") is False:
            break
        if time.monotonic() > deadline:
            raise CheckFailed("GET device after kick: expected online false, got %r" % res)
        time.sleep(0.05)


@check("login: duplicate login kicks the older connection with DUPLICATE_LOGIN")
def c_duplicate(s):
    device = s.uid("dup")
    old = s.login(device)
    try:
        with s.login(device, seq=2) as new:
            old.expect_kick_and_close(DUPLICATE_LOGIN)
            new.send_frame(PING, seq=11)
            eq(new.expect(PONG).seq, 11, "PONG on the newer connection")
            new.send_frame(REQUEST, biz=1, seq=12, body=b"still here")
            r = new.expect(RESPONSE)
            eq((r.seq, r.status, r.body), (12, OK, b"still here"), "RESPONSE on the newer connection")
            res = s.api_ok("GET", "/v1/devices/%s" % device)
            eq(str(res.get("conn")), new.login_ack.meta.get("conn"), "device conn after duplicate login")
    finally:
        old.close()


# ---- recovery

@check("recovery: pushes while offline are redelivered on LOGIN resume, seq carries on")
def c_resume(s):
    device = s.uid("resume")
    with s.login(device) as c:
        s.api_ok("POST", "/v1/push", {"devices": [device], "biz": 1, "data": "r1"})
        eq(c.expect(PUSH).seq, 1, "first PUSH seq")
    deadline = time.monotonic() + s.timeout
    while s.api_ok("GET", "/v1/devices/%s" % device).get("online") is not False:
        if time.monotonic() > deadline:
            raise CheckFailed("device still online %.0fs after its connection closed" % s.timeout)
        time.sleep(0.05)
    res = s.api_ok("POST", "/v1/push", {"devices": [device], "biz": 1, "data": "r2"})
    eq(res.get("delivered"), 0, "delivered while offline")
    truthy(device in (res.get("offline") or []), "offline while offline: expected %r in %r" % (device, res.get("offline")))
    c = s.connect()
    try:
        c.send_frame(LOGIN, seq=1, meta=[("token", s.token(device)), ("resume", "1")])
        ack, pushes = None, []
        while ack is None or not pushes:
            f = c.read_frame()
            if f.op == LOGIN_ACK:
                ack = f
            elif f.op == PUSH:
                pushes.append(f)
            else:
                raise CheckFailed("expected LOGIN_ACK and PUSH, got %r" % f)
        eq(ack.status, OK, "LOGIN_ACK status")
        eq(ack.meta.get("resumed"), "1", "LOGIN_ACK meta resumed")
        eq((pushes[0].seq, pushes[0].body), (2, b"r2"), "redelivered PUSH (seq, body)")
        s.api_ok("POST", "/v1/push", {"devices": [device], "biz": 1, "data": "r3"})
        p = c.expect(PUSH)
        eq((p.seq, p.body), (3, b"r3"), "new PUSH after resume (seq, body)")
    finally:
        c.close()


# ---- login failures

def login_refused(s, token, what):
    with s.connect() as c:
        meta = [("token", token)] if token is not None else []
        c.send_frame(LOGIN, seq=31, meta=meta)
        ack = c.expect(LOGIN_ACK)
        eq(status_name(ack.status), status_name(UNAUTHORIZED), "LOGIN_ACK status for %s" % what)
        eq(ack.seq, 31, "LOGIN_ACK seq")
        c.expect_closed(what="after LOGIN_ACK UNAUTHORIZED")


@check("login: token with a bad signature -> LOGIN_ACK UNAUTHORIZED, close")
def c_bad_sig(s):
    login_refused(s, s.token(s.uid("badsig"), secret=s.args.jwt_secret + "-wrong"), "a bad signature")


@check("login: expired token -> LOGIN_ACK UNAUTHORIZED, close")
def c_expired(s):
    login_refused(s, s.token(s.uid("expired"), exp_in=-3600), "an expired token")


@check("login: LOGIN without token -> LOGIN_ACK UNAUTHORIZED, close")
def c_no_token(s):
    login_refused(s, None, "no token")


@check("login: token without sub -> LOGIN_ACK UNAUTHORIZED, close")
def c_no_sub(s):
    tok = mint_jwt(s.args.jwt_secret, {"exp": int(time.time()) + 3600})
    login_refused(s, tok, "a token without sub")


@check("login: token with alg none -> LOGIN_ACK UNAUTHORIZED, close")
def c_alg_none(s):
    tok = mint_jwt(s.args.jwt_secret, {"sub": s.uid("none"), "exp": int(time.time()) + 3600}, alg="none")
    login_refused(s, tok, "an unsigned token (alg none)")


@check("login: token that is not a JWT -> LOGIN_ACK UNAUTHORIZED, close")
def c_garbage_token(s):
    login_refused(s, "not-a-jwt", "a garbage token")


# ---- before login

@check("before login: REQUEST -> KICK NOT_LOGGED_IN, close")
def c_request_first(s):
    with s.connect() as c:
        c.send_frame(REQUEST, biz=1, seq=1, body=b"hi")
        c.expect_kick_and_close(NOT_LOGGED_IN)


@check("before login: PING -> KICK NOT_LOGGED_IN, close")
def c_ping_first(s):
    with s.connect() as c:
        c.send_frame(PING, seq=1)
        c.expect_kick_and_close(NOT_LOGGED_IN)


@check("before login: PUSH_ACK -> KICK NOT_LOGGED_IN, close")
def c_ack_first(s):
    with s.connect() as c:
        c.send_frame(PUSH_ACK, seq=1)
        c.expect_kick_and_close(NOT_LOGGED_IN)


# ---- hostile frames

@check("hostile: garbage bytes -> KICK BAD_FRAME, close")
def c_garbage(s):
    with s.connect() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: longlink\r\n\r\n")
        c.expect_kick_and_close(BAD_FRAME)


def hostile_after_login(s, data, status):
    with s.login() as c:
        c.send(data)
        return c.expect_kick_and_close(status)


@check("hostile: bad magic after login -> KICK BAD_FRAME, close")
def c_bad_magic(s):
    hostile_after_login(s, encode_frame(PING, seq=1, magic=b"KL"), BAD_FRAME)


@check("hostile: unknown version -> KICK BAD_FRAME, close")
def c_bad_version(s):
    hostile_after_login(s, encode_frame(PING, seq=1, version=2), BAD_FRAME)


@check("hostile: unknown op 0x00 -> KICK BAD_FRAME, close")
def c_bad_op0(s):
    hostile_after_login(s, encode_frame(0x00, seq=1), BAD_FRAME)


@check("hostile: unknown op 0x0C -> KICK BAD_FRAME, close")
def c_bad_op12(s):
    hostile_after_login(s, encode_frame(0x0C, seq=1), BAD_FRAME)


@check("hostile: REFRESH_ACK from a client -> KICK BAD_FRAME, close")
def c_client_refresh_ack(s):
    hostile_after_login(s, encode_frame(REFRESH_ACK, seq=1), BAD_FRAME)


@check("hostile: header declaring a body over -max-frame -> KICK FRAME_TOO_LARGE before the body")
def c_too_large(s):
    # Only the header is sent: the server must answer from the header alone.
    hostile_after_login(s, encode_frame(REQUEST, biz=1, seq=1, body_len=s.args.max_frame + 1), FRAME_TOO_LARGE)


@check("hostile: total size max-frame+1 (header counted) -> KICK FRAME_TOO_LARGE before the body")
def c_too_large_by_one(s):
    hostile_after_login(s, encode_frame(REQUEST, biz=1, seq=1, meta_len=0,
                                        body_len=s.args.max_frame - HEADER_SIZE + 1), FRAME_TOO_LARGE)


@check("hostile: bodyLen 0xFFFFFFFF -> KICK FRAME_TOO_LARGE before the body")
def c_too_large_max(s):
    hostile_after_login(s, encode_frame(REQUEST, biz=1, seq=1, body_len=0xFFFFFFFF), FRAME_TOO_LARGE)


@check("hostile: oversize header before login -> KICK FRAME_TOO_LARGE before the body")
def c_too_large_first(s):
    with s.connect() as c:
        c.send(encode_frame(LOGIN, seq=1, body_len=s.args.max_frame * 16))
        c.expect_kick_and_close(FRAME_TOO_LARGE)


META_CASES = [
    ("klen 0", b"\x00\x00\x00"),
    ("entry past metaLen (no vlen)", b"\x03abc"),
    ("key past metaLen", b"\x09abc"),
    ("value past metaLen", b"\x03abc\x00\x09xy"),
    ("second entry past metaLen", b"\x01a\x00\x01b\x05ab"),
]

for _label, _raw in META_CASES:
    def _mk(raw):
        def fn(s):
            hostile_after_login(s, encode_frame(REQUEST, biz=1, seq=1, raw_meta=raw, body=b"x"), BAD_FRAME)
        return fn
    check("hostile: malformed meta (%s) -> KICK BAD_FRAME, close" % _label)(_mk(_raw))


@check("hostile: malformed meta in LOGIN -> KICK BAD_FRAME, close")
def c_bad_meta_login(s):
    with s.connect() as c:
        c.send(encode_frame(LOGIN, seq=1, raw_meta=b"\x05token\x00\x10abc"))
        c.expect_kick_and_close(BAD_FRAME)


@check("hostile: a frame split into 1-byte writes is still one frame")
def c_split(s):
    with s.login() as c:
        data = encode_frame(REQUEST, biz=1, seq=99, meta=[("k", "v")], body=b"split")
        for i in range(len(data)):
            c.send(data[i:i + 1])
            time.sleep(0.002)
        r = c.expect(RESPONSE)
        eq((r.seq, r.status, r.body), (99, OK, b"split"), "RESPONSE (seq, status, body)")


@check("hostile: repeated meta key, last one wins")
def c_repeat_key(s):
    with s.connect() as c:
        device = s.uid("rep")
        c.send_frame(LOGIN, seq=1, meta=[("token", "garbage"), ("token", s.token(device))])
        ack = c.expect(LOGIN_ACK)
        eq(status_name(ack.status), status_name(OK), "LOGIN_ACK status (second token valid)")


@check("hostile: unknown meta keys are ignored")
def c_unknown_meta(s):
    with s.connect() as c:
        c.send_frame(LOGIN, seq=1, meta=[("x-unknown", "1"), ("token", s.token(s.uid("unk"))), ("zz", "")])
        eq(status_name(c.expect(LOGIN_ACK).status), status_name(OK), "LOGIN_ACK status")


# ---- HTTP API

@check("api: no Authorization -> 401 with a JSON body")
def c_api_nokey(s):
    for method, path, body in (("POST", "/v1/push", {"devices": ["x"], "biz": 1, "data": "x"}),
                               ("GET", "/v1/devices/x", None),
                               ("POST", "/v1/broadcast", {"biz": 1, "data": "should-not-arrive"})):
        code, parsed, raw = s.api(method, path, body, key=False)
        eq(code, 401, "%s %s without key: status" % (method, path))
        truthy(isinstance(parsed, dict), "%s %s without key: expected a JSON object body, got %r" % (method, path, raw[:200]))


@check("api: wrong key -> 401 with a JSON body")
def c_api_badkey(s):
    code, parsed, raw = s.api("GET", "/v1/devices/x", key="Bearer " + s.args.api_key + "x")
    eq(code, 401, "status")
    truthy(isinstance(parsed, dict), "expected a JSON object body, got %r" % raw[:200])


@check("api: malformed JSON -> 400 with a JSON error field")
def c_api_badjson(s):
    for path in ("/v1/push", "/v1/broadcast", "/v1/groups/%s/push" % s.uid("g")):
        code, parsed, raw = s.api("POST", path, raw=b'{"devices": [ "oops", ')
        eq(code, 400, "POST %s with bad JSON: status" % path)
        truthy(isinstance(parsed, dict) and parsed.get("error"),
               "POST %s with bad JSON: expected JSON with a non-empty \"error\", got %r" % (path, raw[:200]))


# ---- slow checks (--slow)

@check("slow: no LOGIN within the login timeout -> closed, not before the timeout", slow=True)
def c_login_timeout(s):
    lt = s.args.login_timeout
    with s.connect() as c:
        t0 = time.monotonic()
        try:
            f = c.read_frame(lt + 5)
        except Closed:
            f = None
        except socket.timeout:
            raise CheckFailed("still open %.1fs after connecting without LOGIN (login timeout %.1fs)" % (lt + 5, lt))
        elapsed = time.monotonic() - t0
        if f is not None:
            if f.op != KICK:
                raise CheckFailed("expected close (or a KICK), got %r" % f)
            c.expect_closed(what="after KICK")
        truthy(elapsed >= lt - 0.1,
               "closed %.2fs after connecting: expected no earlier than the login timeout %.1fs" % (elapsed, lt))


@check("slow: idle for the idle timeout -> KICK IDLE_TIMEOUT, close, not before the timeout", slow=True)
def c_idle(s):
    with s.login() as c:
        t0 = time.monotonic()  # the LOGIN was the last frame sent
        hb = int(c.login_ack.meta.get("hb", "30"))
        idle = max(s.args.idle_timeout, 3 * hb)  # the larger of -idle-timeout and 3 x the grant
        c.expect_kick_and_close(IDLE_TIMEOUT, timeout=idle + 5)
        elapsed = time.monotonic() - t0
        truthy(elapsed >= idle - 0.1,
               "KICK IDLE_TIMEOUT %.2fs after the last frame: expected no earlier than the idle timeout %.1fs"
               % (elapsed, idle))


# ---- last

@check("node keeps serving: the connection from the start still answers PING")
def c_sentinel(s):
    truthy(s.sentinel is not None, "no sentinel connection (the first login check failed)")
    s.keepalive_stop.set()
    if s.keepalive_thread:
        s.keepalive_thread.join()
    s.sentinel.send_frame(PING, seq=0xC0FFEE)
    deadline = time.monotonic() + s.timeout
    while True:
        f = s.sentinel.expect(PONG, timeout=max(0.1, deadline - time.monotonic()), skip=(PUSH,))
        if f.seq == 0xC0FFEE:
            break
    s.sentinel.send_frame(REQUEST, biz=1, seq=5, body=b"bye")
    r = s.sentinel.expect(RESPONSE, skip=(PUSH, PONG))
    eq((r.seq, r.status, r.body), (5, OK, b"bye"), "RESPONSE on the sentinel")


# --------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tcp", required=True, help="gateway TCP address, host:port")
    ap.add_argument("--api", required=True, help="gateway HTTP API base URL, e.g. http://127.0.0.1:7080")
    ap.add_argument("--api-key", required=True, help="the gateway's API key")
    ap.add_argument("--jwt-secret", required=True, help="the gateway's JWT secret (HS256)")
    ap.add_argument("--node", required=True, help="the gateway's node id")
    ap.add_argument("--max-frame", type=int, default=65536, help="the gateway's -max-frame (default 65536)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for any answer (default 5)")
    ap.add_argument("--slow", action="store_true", help="also run the login-timeout and idle-timeout checks")
    ap.add_argument("--login-timeout", type=float, default=10.0, help="the gateway's -login-timeout, seconds")
    ap.add_argument("--idle-timeout", type=float, default=0, help="the gateway's -idle-timeout, seconds (default 3 x hb)")
    ap.add_argument("--run", default="", help="only run checks whose name contains this text")
    ap.add_argument("-v", "--verbose", action="store_true", help="print a traceback for unexpected errors")
    args = ap.parse_args(argv)

    s = Suite(args)
    passed = failed = 0
    for name, fn, slow in CHECKS:
        if slow and not args.slow:
            continue
        if args.run and args.run not in name and fn is not c_login and fn is not c_sentinel:
            continue
        t0 = time.monotonic()
        try:
            fn(s)
        except CheckFailed as e:
            failed += 1
            print("FAIL  %s: %s" % (name, e))
        except Exception as e:  # a bug in the suite or an unexpected socket error
            failed += 1
            print("FAIL  %s: unexpected %s: %s" % (name, type(e).__name__, e))
            if args.verbose:
                traceback.print_exc()
        else:
            passed += 1
            print("ok    %s (%.2fs)" % (name, time.monotonic() - t0))
        sys.stdout.flush()
    if s.sentinel:
        s.keepalive_stop.set()
        s.sentinel.close()
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
