/**
 * Produces the README's pictures of the demo, with the real demo server and real Chromium:
 *
 *   docs/kiosk.png    a 1920×1080 kiosk on the metrics dashboard, captured by the kiosk itself through
 *                     the demo's own API (GET /api/devices/lobby/screenshot), i.e. what the product does
 *   docs/admin.png    the admin console at 1440×900 with three kiosks connected and one selected
 *   docs/cluster.png  two demo nodes on one Redis, started as a user starts them (`REDIS_URL=… npm start`
 *                     and `… -- --port 8081`, here as `node demo/server.ts`, on 8080/8081 when free): the
 *                     console of node 1 lists the kiosks of both nodes, each with its node, and shows a
 *                     kiosk of node 2 it reached through node 2 (display set, screenshot taken)
 *
 * Run: node --import tsx scripts/screenshots.ts [single|cluster]   (default both; Chromium: /usr/bin/chromium
 * or $WSLIS_CHROMIUM; the cluster picture needs redis-server: it starts its own on a free port)
 */

import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Browser } from "playwright";
import { startDemo } from "../demo/server.js";
import { launchChromium } from "../test-e2e/harness.js";
import { freePort, startRedis } from "../test/helpers/redis.js";

const ROOT = join(import.meta.dirname, "..");
const DOCS = join(ROOT, "docs");
/** Time for the live dashboards to draw a few frames, in ms. */
const SETTLE = 2500;

const which = process.argv[2] ?? "all";
if (!["all", "single", "cluster"].includes(which)) throw new Error(`usage: screenshots.ts [single|cluster], not ${which}`);
await mkdir(DOCS, { recursive: true });
const browser = await launchChromium();
try {
  if (which !== "cluster") await single(browser);
  if (which !== "single") await cluster(browser);
} finally {
  await browser.close();
}

/** kiosk.png and admin.png: one node. */
async function single(browser: Browser): Promise<void> {
  const demo = await startDemo({ port: 0, host: "127.0.0.1", log: () => {} });
  const call = api(demo.url);
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
    await writeFile(join(DOCS, "kiosk.png"), kioskPng);

    const console_ = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    await console_.goto(`${demo.adminUrl}#device=lobby`, { timeout: 15_000 });
    await console_.waitForSelector('#devices [data-device-id="reception"]', { timeout: 10_000 });
    await waitForScreenshot(console_);
    await console_.screenshot({ path: join(DOCS, "admin.png") });
    await kiosks.close();
    await console_.close();
    console.log(`wrote ${join(DOCS, "kiosk.png")} (${kioskPng.length} bytes) and ${join(DOCS, "admin.png")}`);
  } finally {
    await demo.close();
  }
}

/** cluster.png: two nodes, as `REDIS_URL=… npm start` twice. */
async function cluster(browser: Browser): Promise<void> {
  const redis = await startRedis();
  const nodes: DemoProcess[] = [];
  try {
    const [first, second] = (await isFree(8080)) && (await isFree(8081)) ? [8080, 8081] : [await freePort(), await freePort()];
    // One after the other: the first builds the pages if they are out of date.
    for (const port of [first, second]) nodes.push(await startDemoProcess(port, redis.url));
    const [one, two] = nodes as [DemoProcess, DemoProcess];
    const call = api(one.url);

    const kiosks = await browser.newContext({ viewport: { width: 1920, height: 1080 } });
    const screens: [node: DemoProcess, id: string, display: object][] = [
      [one, "lobby", { dashboard: "metrics" }],
      [one, "reception", { dashboard: "welcome" }],
      [two, "meeting-room-2", { dashboard: "chart" }],
      [two, "cafeteria", { dashboard: "clock" }],
    ];
    for (const [node, id] of screens) {
      const page = await kiosks.newPage();
      await page.goto(`${node.url}/?deviceId=${encodeURIComponent(id)}`, { timeout: 15_000 });
      await page.waitForSelector('#link[data-state="connected"]', { timeout: 15_000 });
    }
    // Everything through node 1, the kiosks of node 2 included.
    for (const [, id, display] of screens) await call("PUT", `/api/devices/${id}/display`, JSON.stringify(display));
    await new Promise((resolve) => setTimeout(resolve, SETTLE));
    for (const [node, id] of screens) if (node === one) await call("POST", `/api/devices/${id}/ping`);

    const console_ = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    await console_.goto(`${one.url}/admin#device=meeting-room-2`, { timeout: 15_000 });
    for (const [, id] of screens) await console_.waitForSelector(`#devices [data-device-id="${id}"]`, { timeout: 10_000 });
    const listed = await console_.$$eval("#devices [data-device-id]", (items) => items.map((item) => item.textContent ?? ""));
    for (const node of [one, two]) {
      if (!listed.some((text) => text.includes(`node ${node.nodeId}`))) throw new Error(`the console lists no kiosk on ${node.nodeId}: ${listed.join(" | ")}`);
    }
    await waitForScreenshot(console_);
    await console_.screenshot({ path: join(DOCS, "cluster.png") });
    await kiosks.close();
    await console_.close();
    console.log(`wrote ${join(DOCS, "cluster.png")} (console of ${one.nodeId}; kiosks on ${one.nodeId} and ${two.nodeId})`);
  } finally {
    for (const node of nodes) await node.stop();
    await redis.stop();
  }
}

interface DemoProcess {
  url: string;
  nodeId: string;
  stop(): Promise<void>;
}

/** `REDIS_URL=… node demo/server.ts --port N`, as `npm start` runs it; resolves when it serves. */
async function startDemoProcess(port: number, redisUrl: string): Promise<DemoProcess> {
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", join(ROOT, "demo/server.ts"), "--port", String(port), "--host", "127.0.0.1"], {
    cwd: ROOT,
    env: { ...process.env, REDIS_URL: redisUrl, WSLIS_CLUSTER_SECRET: "a-secret-for-the-screenshots" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const nodeId = await new Promise<string>((resolve, reject) => {
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on("line", (line) => {
      lines.push(line);
      const match = /Cluster node:\s+(\S+)/.exec(line);
      if (match) resolve(match[1]!);
    });
    child.once("exit", (code) => reject(new Error(`the demo on port ${port} exited (${code}):\n${lines.join("\n")}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    nodeId,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

/** The console's screenshot panel holds the selected kiosk's 1920×1080 picture. */
async function waitForScreenshot(page: import("playwright").Page): Promise<void> {
  await page.waitForFunction(() => (document.getElementById("screenshot-img") as HTMLImageElement | null)?.naturalWidth === 1920, undefined, {
    timeout: 15_000,
  });
}

/** Calls a demo's API; throws its JSON error on failure. */
function api(base: string): (method: string, path: string, body?: string) => Promise<Buffer> {
  return async (method, path, body) => {
    const response = await fetch(`${base}${path}`, { method, body, signal: AbortSignal.timeout(20_000) });
    const bytes = Buffer.from(await response.arrayBuffer());
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${bytes.toString("utf8")}`);
    return bytes;
  };
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}
