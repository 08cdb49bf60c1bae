// What the Playwright scripts share: the event output the Go tests read,
// and headless Chromium started the way this sandbox needs.
import { chromium } from "playwright-core";

// emit prints one event as a JSON line on stdout.
export const emit = (o) => process.stdout.write(JSON.stringify(o) + "\n");

// launch starts headless Chromium from executablePath and opens a page
// whose errors are reported as "pageerror" events.
export async function launch(executablePath, viewport) {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    // Without these Chromium tries to reach Google's services and hangs on
    // network lookups in a sandbox that can only reach package mirrors.
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage({ viewport });
  page.on("pageerror", (err) => emit({ event: "pageerror", message: String(err) }));
  return { browser, page };
}
