// Drives the demo page (/demo/) in headless Chromium with Playwright, for
// TestBrowserDemo in e2e/browser_test.go. One JSON argument:
//   {demo, ws, token, apiKey, device, push, request, screenshot, chromium}
// It prints one JSON object per line on stdout ({"event": ...}); the Go test
// sends the push through the API when it reads {"event":"connected"}.
import { emit, launch } from "./browser.mjs";

const cfg = JSON.parse(process.argv[2]);
const T = 15000; // ms for each wait

const { browser, page } = await launch(cfg.chromium, { width: 1280, height: 1000 });
page.on("console", (m) => { if (m.type() === "error") emit({ event: "console", text: m.text() }); });

const text = (sel) => page.locator(sel).first().textContent();
const logText = () => page.locator("#log").innerText();

try {
  await page.goto(cfg.demo, { timeout: T });
  await page.waitForSelector('#state[data-state="disconnected"]', { timeout: T });
  emit({ event: "loaded", title: await page.title(), wsUrl: await page.inputValue("#ws-url"),
    apiKey: await page.inputValue("#api-key") });

  // "Get a token": POST /v1/tokens with the key typed in; it also fills in
  // the WebSocket URL from the gateway's advertised ws endpoint.
  await page.fill("#device", cfg.device);
  await page.fill("#api-key", cfg.apiKey);
  await page.click("#get-token");
  await page.waitForFunction(() => document.getElementById("token").value.split(".").length === 3, null, { timeout: T });
  emit({ event: "minted", wsUrl: await page.inputValue("#ws-url") });

  // Then log in with the URL and the token the test gives.
  await page.fill("#ws-url", cfg.ws);
  await page.fill("#token", cfg.token);
  await page.click("#connect");
  await page.waitForSelector('#state[data-state="connected"]', { timeout: T });
  emit({ event: "connected", conn: await text("#conn"), node: await text("#node"), hb: await text("#hb") });

  // The test pushes now; wait for the body to appear in the table.
  await page.waitForFunction((body) =>
    [...document.querySelectorAll("#pushes td.body")].some((td) => td.textContent === body), cfg.push, { timeout: T });
  const cells = await page.locator("#pushes tr").first().locator("td").allTextContents();
  const [, seq, biz, id, group, body] = cells;
  emit({ event: "push", seq, biz, id, group, body, count: await text("#push-count") });

  // A request to the echo business through the form.
  await page.fill("#req-biz", "1");
  await page.fill("#req-body", cfg.request);
  await page.click("#send");
  await page.waitForFunction(() => /^OK|error/.test(document.getElementById("response-status").textContent), null, { timeout: T });
  emit({ event: "response", status: await text("#response-status"), body: await text("#response-body") });

  // Heartbeats: with -hb 1s a PONG is logged within a couple of seconds.
  await page.waitForSelector("#log li.kind-pong", { timeout: T });
  emit({ event: "pong" });

  await page.screenshot({ path: cfg.screenshot, fullPage: true });
  emit({ event: "screenshot", path: cfg.screenshot });

  await page.click("#disconnect");
  await page.waitForSelector('#state[data-state="disconnected"]', { timeout: T });
  emit({ event: "disconnected", state: await text("#state"), connectEnabled: await page.isEnabled("#connect") });
  emit({ event: "log", text: await logText() });
} catch (err) {
  emit({ event: "error", message: String(err?.message ?? err) });
  try {
    emit({ event: "log", text: await logText() });
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "-failure.png"), fullPage: true });
  } catch { /* the page is gone */ }
  process.exitCode = 1;
} finally {
  await browser.close();
}
