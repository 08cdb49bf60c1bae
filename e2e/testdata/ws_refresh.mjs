// Session refresh in longlink.js, for TestNodeWebSocketRefresh in
// e2e/browser_test.go. One JSON argument: {ws, good: [tokens], bad:
// [tokens], until}: each client gets its tokens in turn from its token
// function (the last one repeated). It prints one JSON object per line.
//   good: a short first token is refreshed on the same connection, which
//         is still up (same conn) after the old token's end, `until` (ms).
//   bad:  a refused refresh, then the "token expired" kick, then a login
//         again with a fresh token (the kick is not terminal).
import WebSocket from "ws";
import { LonglinkClient } from "../../web/static/longlink.js";

const cfg = JSON.parse(process.argv[2]);
const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const T = 15000;

function tokens(list) {
  let i = 0;
  return async () => list[Math.min(i++, list.length - 1)];
}

function once(c, type, pred = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${type}`)), T);
    const on = (ev) => {
      if (!pred(ev.detail)) return;
      clearTimeout(timer);
      c.removeEventListener(type, on);
      resolve(ev.detail);
    };
    c.addEventListener(type, on);
  });
}

try {
  const good = new LonglinkClient(cfg.ws, { token: tokens(cfg.good), WebSocket, heartbeat: 1 });
  const login = once(good, "login");
  good.connect();
  const first = await login;
  const r = await once(good, "refresh");
  emit({ event: "refreshed", ok: r.ok, exp: r.exp, reason: r.reason ?? null });
  await new Promise((res) => setTimeout(res, Math.max(0, cfg.until - Date.now())));
  emit({ event: "alive", state: good.state, sameConn: good.conn === first.conn });
  good.close();

  const bad = new LonglinkClient(cfg.ws, { token: tokens(cfg.bad), WebSocket, heartbeat: 1, backoff: { initial: 100, max: 500 } });
  const refused = once(bad, "refresh");
  const kick = once(bad, "kick");
  bad.connect();
  const f = await refused;
  emit({ event: "refused", ok: f.ok, reason: f.reason ?? null });
  const k = await kick;
  const again = once(bad, "login");
  emit({ event: "kicked", statusName: k.statusName, reason: k.reason });
  await again;
  emit({ event: "relogin", state: bad.state });
  bad.close();
  process.exit(0);
} catch (err) {
  emit({ event: "error", message: String(err?.stack ?? err) });
  process.exit(1);
}
