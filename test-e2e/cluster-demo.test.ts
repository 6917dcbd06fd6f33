/**
 * The demo as two nodes on Redis: a real kiosk page (Chromium) on node 2; the admin console and the API
 * of node 1 list it with its node and drive it (display, screenshot), and see it leave.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright";
import { startDemo, type Demo } from "../demo/server.js";
import { startRedis, type RedisProcess } from "../test/helpers/redis.js";
import { launchChromium } from "./harness.js";

let redis: RedisProcess;
let one: Demo;
let two: Demo;
let browser: Browser;

before(async () => {
  redis = await startRedis();
  one = await startDemo({ port: 0, host: "127.0.0.1", log: () => {}, redis: redis.url, clusterSecret: "a-demo-cluster-secret-for-tests" });
  two = await startDemo({ port: 0, host: "127.0.0.1", log: () => {}, redis: redis.url, clusterSecret: "a-demo-cluster-secret-for-tests" });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await one?.close();
  await two?.close();
  await redis?.stop();
});

async function api(demo: Demo, method: string, path: string, body?: string): Promise<Response> {
  return fetch(`${demo.url}${path}`, { method, body, signal: AbortSignal.timeout(15_000) });
}

test("node 1's console lists a kiosk connected to node 2, with its node, and drives it", async () => {
  const kiosk: Page = await browser.newPage({ viewport: { width: 640, height: 480 } });
  await kiosk.goto(two.kioskUrl("far-away"), { timeout: 10_000 });
  await kiosk.waitForSelector('#link[data-state="connected"]', { timeout: 10_000 });

  const admin = await browser.newPage();
  await admin.goto(one.adminUrl, { timeout: 10_000 });
  await admin.waitForSelector('#devices [data-device-id="far-away"]', { timeout: 5000 });
  assert.match((await admin.textContent('#devices [data-device-id="far-away"]')) ?? "", new RegExp(`node ${two.wslis.nodeId}`));

  const { devices } = (await (await api(one, "GET", "/api/devices")).json()) as { devices: { id: string; node?: string }[] };
  assert.deepEqual(
    devices.map((d) => [d.id, d.node]),
    [["far-away", two.wslis.nodeId]],
  );

  const put = await api(one, "PUT", "/api/devices/far-away/display", JSON.stringify({ dashboard: "clock" }));
  assert.equal(put.status, 200, await put.clone().text());
  await kiosk.waitForFunction(() => document.body.textContent?.includes(":"), undefined, { timeout: 5000 });
  const shot = await api(one, "GET", "/api/devices/far-away/screenshot");
  assert.equal(shot.status, 200);
  assert.equal(shot.headers.get("content-type"), "image/png");
  assert.ok((await shot.arrayBuffer()).byteLength > 1000);

  // Disconnecting is done by the kiosk's own node; node 1 says so.
  assert.equal((await api(one, "POST", "/api/devices/far-away/disconnect")).status, 409);

  await kiosk.close();
  await admin.waitForSelector('#devices [data-device-id="far-away"]', { state: "detached", timeout: 5000 });
  assert.equal((await api(one, "GET", "/api/devices/far-away")).status, 404);
});
