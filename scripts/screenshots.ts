/**
 * Produces the README's pictures of the demo, with the real demo server and real Chromium:
 *
 *   docs/kiosk.png   a 1920×1080 kiosk on the metrics dashboard, captured by the kiosk itself through
 *                    the demo's own API (GET /api/devices/lobby/screenshot), i.e. what the product does
 *   docs/admin.png   the admin console at 1440×900 with three kiosks connected and one selected
 *
 * Run: node --import tsx scripts/screenshots.ts   (Chromium: /usr/bin/chromium or $WSLIS_CHROMIUM)
 */

import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startDemo } from "../demo/server.js";
import { launchChromium } from "../test-e2e/harness.js";

const DOCS = join(import.meta.dirname, "..", "docs");
/** Time for the live dashboards to draw a few frames, in ms. */
const SETTLE = 2500;

const demo = await startDemo({ port: 0, host: "127.0.0.1", log: () => {} });
const browser = await launchChromium();
try {
  const kiosks = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
  const screens: [id: string, display: object][] = [
    ["lobby", { dashboard: "metrics" }],
    ["meeting-room-2", { dashboard: "clock" }],
    ["reception", { dashboard: "chart" }],
  ];
  for (const [id, display] of screens) {
    const page = await kiosks.newPage();
    await page.goto(demo.kioskUrl(id), { timeout: 15_000 });
    await page.waitForSelector('#link[data-state="connected"]', { timeout: 15_000 });
    await call("PUT", `/api/devices/${id}/display`, JSON.stringify(display));
  }
  await new Promise((resolve) => setTimeout(resolve, SETTLE));
  // The RTTs measured while three 1080p pages were loading say more about this machine than about
  // wslis; measure again now that it is quiet.
  for (const [id] of screens) await call("POST", `/api/devices/${id}/ping`);

  const kioskPng = await call("GET", "/api/devices/lobby/screenshot");
  await mkdir(DOCS, { recursive: true });
  await writeFile(join(DOCS, "kiosk.png"), kioskPng);

  const console_ = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await console_.goto(`${demo.adminUrl}#device=lobby`, { timeout: 15_000 });
  await console_.waitForSelector('#devices [data-device-id="reception"]', { timeout: 10_000 });
  await console_.waitForFunction(() => (document.getElementById("screenshot-img") as HTMLImageElement | null)?.naturalWidth === 1920, undefined, {
    timeout: 15_000,
  });
  await console_.screenshot({ path: join(DOCS, "admin.png") });
  console.log(`wrote ${join(DOCS, "kiosk.png")} (${kioskPng.length} bytes) and ${join(DOCS, "admin.png")}`);
} finally {
  await browser.close();
  await demo.close();
}

/** Calls the demo's API; throws its JSON error on failure. */
async function call(method: string, path: string, body?: string): Promise<Buffer> {
  const response = await fetch(`${demo.url}${path}`, { method, body, signal: AbortSignal.timeout(20_000) });
  const bytes = Buffer.from(await response.arrayBuffer());
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${bytes.toString("utf8")}`);
  return bytes;
}
