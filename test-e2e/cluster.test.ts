/**
 * A browser device reached from another node: real Chromium loads the BUILT dist/wslis.js on node B and
 * serves reverse HTTP; node A, which the browser never connected to, reaches it through B with
 * `server.fetch` and `server.dial`, over a real redis-server.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, test } from "node:test";
import { freePort, startRedis } from "../test/helpers/redis.js";
import { launchChromium, startE2EServer, type E2EServer } from "./harness.js";
import { sha256Hex } from "../test/helpers/assert.js";

const SECRET = "a-cluster-secret-for-e2e-tests";

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

async function node(redis: string, nodeId: string): Promise<E2EServer> {
  const port = await freePort();
  const server = await startE2EServer(
    () => {},
    { cluster: { redis, nodeId, secret: SECRET, ttl: 4000, advertise: `http://127.0.0.1:${port}` }, drainTimeout: 200 },
    port,
  );
  cleanup.push(() => server.close());
  return server;
}

test("a Chromium device on node B, reached from node A: fetch with a 1 MB body and a raw stream", async () => {
  const redis = await startRedis();
  cleanup.push(() => redis.stop());
  const a = await node(redis.url, "a");
  const b = await node(redis.url, "b");
  const browser = await launchChromium();
  cleanup.push(() => browser.close());
  const page = await browser.newPage();
  await page.goto(`${b.origin}/pages/blank.html`);
  await page.evaluate(
    `(async (url) => {
      const sdk = await import("/dist/wslis.js");
      const hex = (buffer) => [...new Uint8Array(buffer)].map((x) => x.toString(16).padStart(2, "0")).join("");
      const web = await sdk.dialAndListen(url, { params: { deviceId: "screen" }, reconnect: false });
      void sdk.serveHttp(web, async (request) =>
        new URL(request.url).pathname === "/hash"
          ? new Response(hex(await crypto.subtle.digest("SHA-256", await request.arrayBuffer())))
          : new Response("hello from " + navigator.userAgent.includes("Chrome")));
      const raw = await sdk.dialAndListen(url, { params: { deviceId: "screen-raw" }, reconnect: false });
      void (async () => { for await (const conn of raw) conn.readable.pipeTo(conn.writable).catch(() => {}); })();
    })(${JSON.stringify(b.wsUrl)})`,
  );
  const deadline = Date.now() + 10_000;
  while (!(await a.wslis.lookup("screen-raw"))) {
    assert.ok(Date.now() < deadline, "the browser device never showed up in node A's directory");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(a.wslis.devices.size, 0, "nothing is connected to node A itself");
  assert.equal((await a.wslis.lookup("screen"))?.node, "b");

  const res = await a.wslis.fetch("screen", "http://device/text");
  assert.equal(await res.text(), "hello from true");
  const body = randomBytes(1_000_000);
  const hashed = await a.wslis.fetch("screen", "http://device/hash", { method: "POST", body });
  assert.equal(await hashed.text(), sha256Hex(body));

  const conn = await a.wslis.dial("screen-raw");
  const reading = new Response(conn.readable).arrayBuffer();
  const writer = conn.writable.getWriter();
  const sent = randomBytes(300_000);
  await writer.write(sent);
  await writer.close();
  assert.equal(sha256Hex(new Uint8Array(await reading)), sha256Hex(sent));
});
