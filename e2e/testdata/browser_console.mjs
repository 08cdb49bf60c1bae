// Drives the operator console (/admin/) in headless Chromium with
// Playwright, for TestBrowserConsole in e2e/browser_test.go. One JSON
// argument: {admin, apiKey, node, device, push, screenshot, chromium}.
// It prints one JSON object per line ({"event": ...}); the Go test logs a
// device in when it reads "nodes", and checks the device got the push
// and the kick when it reads "pushed" and "kicked".
import { emit, launch } from "./browser.mjs";

const cfg = JSON.parse(process.argv[2]);
const T = 15000; // ms for each wait

const { browser, page } = await launch(cfg.chromium, { width: 1280, height: 1100 });
const requests = [];
page.on("request", (r) => requests.push(r.url()));

const text = (sel) => page.locator(sel).first().textContent();
const conns = () => page.locator(`#nodes tr[data-node="${cfg.node}"] td.connections`).textContent();

try {
  // Without a key: the form only.
  await page.goto(cfg.admin, { timeout: T });
  await page.waitForSelector("#login", { state: "visible", timeout: T });
  emit({ event: "form", consoleVisible: await page.isVisible("#console"), title: await page.title() });

  // A wrong key is refused and shows nothing more.
  await page.fill("#key", "not-the-key");
  await page.click("#enter");
  await page.waitForFunction(() => document.getElementById("login-error").textContent !== "", null, { timeout: T });
  emit({ event: "refused", error: await text("#login-error"), consoleVisible: await page.isVisible("#console") });

  await page.fill("#key", cfg.apiKey);
  await page.click("#enter");
  await page.waitForSelector(`#nodes tr[data-node="${cfg.node}"]`, { timeout: T });
  const before = Number(await conns());
  emit({ event: "nodes", connections: before, stored: await page.evaluate(() => sessionStorage.getItem("longlink-api-key")) });

  // The test logs a device in: the node's count rises.
  await page.waitForFunction(([node, n]) => {
    const td = document.querySelector(`#nodes tr[data-node="${node}"] td.connections`);
    return td && Number(td.textContent) > n;
  }, [cfg.node, before], { timeout: T });
  emit({ event: "connections", connections: Number(await conns()) });

  await page.fill("#device", cfg.device);
  await page.click("#lookup");
  await page.waitForFunction(() => /online|offline|error/.test(document.getElementById("device-result").textContent), null, { timeout: T });
  emit({ event: "lookup", result: await text("#device-result") });

  await page.selectOption("#push-to", "device");
  await page.fill("#push-target", cfg.device);
  await page.fill("#push-data", cfg.push);
  await page.click("#push");
  await page.waitForFunction(() => document.getElementById("push-result").textContent !== "", null, { timeout: T });
  emit({ event: "pushed", result: await text("#push-result") });

  // The charts have drawn their lines by now (a sample every 2 s).
  await page.waitForFunction(() => document.querySelectorAll("#chart-conns polyline").length >= 2, null, { timeout: T });
  emit({ event: "charts", lines: await page.locator(".charts polyline").count(), businesses: await page.locator("#businesses tr").count() });
  await page.screenshot({ path: cfg.screenshot, fullPage: true });
  emit({ event: "screenshot", path: cfg.screenshot });

  await page.click("#kick");
  await page.waitForFunction(() => /kicked|nothing|error/.test(document.getElementById("device-result").textContent), null, { timeout: T });
  emit({ event: "kicked", result: await text("#device-result") });
  await page.click("#lookup");
  await page.waitForFunction(() => document.getElementById("device-result").textContent === "offline", null, { timeout: T });
  emit({ event: "gone", result: await text("#device-result") });

  const origin = new URL(cfg.admin).origin;
  emit({ event: "requests", foreign: requests.filter((u) => !u.startsWith(origin)) });
} catch (err) {
  emit({ event: "error", message: String(err?.message ?? err) });
  try {
    await page.screenshot({ path: cfg.screenshot.replace(/\.png$/, "-failure.png"), fullPage: true });
  } catch { /* the page is gone */ }
  process.exitCode = 1;
} finally {
  await browser.close();
}
