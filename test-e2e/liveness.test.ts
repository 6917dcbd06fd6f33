/**
 * Liveness in real Chromium, with the BUILT bundle: a page reconnects after the server restarts, and a
 * hidden page (background tab, timers throttled) stays connected.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import type { Browser } from "playwright";
import type { Dialer } from "../server-node/index.js";
import { launchCdp, type CdpBrowser } from "./cdp.js";
import { launchChromium, startE2EServer, type E2EServer } from "./harness.js";

const servers: E2EServer[] = [];
let browser: Browser | undefined;
let cdp: CdpBrowser | undefined;
after(async () => {
  await browser?.close();
  await cdp?.close();
  for (const server of servers) await server.close().catch(() => {});
});

/** Dials the device, sends `message`, returns what it echoed. */
async function echo(dialer: Dialer, message: string): Promise<string> {
  const conn = await dialer.dial({ timeout: 5000 });
  const writer = conn.writable.getWriter();
  await writer.write(new TextEncoder().encode(message));
  await writer.close();
  return new Response(conn.readable).text();
}

async function waitForDevice(server: E2EServer, id: string, ms: number): Promise<Dialer> {
  const deadline = Date.now() + ms;
  for (;;) {
    const dialer = server.wslis.devices.get(id);
    if (dialer) return dialer;
    if (Date.now() > deadline) throw new Error(`device ${id} did not connect within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Page script: connect, echo every stream, record listener events in window.events. */
const devicePage = (url: string, id: string, session: object = {}) => `
  (async () => {
    const { dialAndListen } = await import("/dist/wslis.js");
    window.events = [];
    const listener = await dialAndListen(${JSON.stringify(url)}, {
      params: { deviceId: ${JSON.stringify(id)} },
      reconnect: { initialDelay: 200, maxDelay: 1000 },
      session: ${JSON.stringify(session)},
    });
    listener.addEventListener("connect", () => window.events.push("connect"));
    listener.addEventListener("disconnect", (e) => window.events.push("disconnect:" + e.detail.error.code));
    (async () => { for await (const conn of listener) conn.readable.pipeTo(conn.writable).catch(() => {}); })();
    return "ready";
  })()`;

describe("liveness in Chromium", () => {
  test("the page reconnects after the server restarts, and is served again", async () => {
    const first = await startE2EServer(() => {}, { drainTimeout: 200 });
    servers.push(first);
    browser = await launchChromium();
    const page = await browser.newPage();
    await page.goto(`${first.origin}/pages/blank.html`);
    assert.equal(await page.evaluate(devicePage(first.wsUrl, "kiosk-r")), "ready");
    assert.equal(await echo(await waitForDevice(first, "kiosk-r", 5000), "before"), "before");

    const port = Number(new URL(first.origin).port);
    await first.close();
    await page.waitForFunction("window.events.some((e) => e.startsWith('disconnect:'))", undefined, { timeout: 5000 });

    const second = await startE2EServer(() => {}, { drainTimeout: 200 }, port);
    servers.push(second);
    const dialer = await waitForDevice(second, "kiosk-r", 10_000);
    assert.equal(await echo(dialer, "after the restart"), "after the restart");
    const events = (await page.evaluate("window.events")) as string[];
    assert.equal(events.at(-1), "connect");
    assert.ok(events.includes("disconnect:ERR_REMOTE_GOAWAY") || events.includes("disconnect:ERR_SERVER_SHUTDOWN"), String(events));
  });

  // 15 s by default: long enough for Chromium to throttle the hidden page's timers to once a second and
  // for seven keepalive rounds of 2 s + 1 s on both sides. WSLIS_HIDDEN_SECONDS=120 runs the long soak
  // (two minutes, past intensive throttling's grace period).
  const hiddenSeconds = Number(process.env.WSLIS_HIDDEN_SECONDS ?? 15);
  test(`a hidden page stays connected for ${hiddenSeconds} s under timer throttling`, { timeout: (hiddenSeconds + 60) * 1000 }, async (t) => {
    // Keepalive much tighter than the defaults (30 s + 10 s) on both sides, so throttled timers would
    // show up as false keepalive failures within the run if they could cause them.
    const keepAlive = { keepAliveInterval: 2000, keepAliveTimeout: 1000 };
    const server = await startE2EServer(() => {}, { session: keepAlive });
    servers.push(server);
    cdp = await launchCdp(["--enable-features=IntensiveWakeUpThrottling:grace_period_seconds/10"]);
    const device = await cdp.open(`${server.origin}/pages/blank.html`);
    assert.equal(await cdp.evaluate(device, devicePage(server.wsUrl, "hidden", keepAlive)), "ready");
    const dialer = await waitForDevice(server, "hidden", 5000);
    // A 100 ms timer chain in the page, to measure how hard its timers are throttled.
    await cdp.evaluate(device, "window.ticks = 0; (function tick() { window.ticks++; setTimeout(tick, 100); })(); 0");

    await cdp.open(`${server.origin}/pages/blank.html?front`); // a tab in front: the device's tab is hidden
    assert.equal(await cdp.evaluate(device, "document.visibilityState"), "hidden");

    let echoes = 0;
    const started = Date.now();
    const ticksBefore = await cdp.evaluate<number>(device, "window.ticks");
    while (Date.now() - started < hiddenSeconds * 1000) {
      assert.equal(dialer.closeReason, undefined, "the server kept the hidden device");
      assert.equal(await echo(dialer, `ping ${echoes}`), `ping ${echoes}`);
      echoes++;
      await new Promise((r) => setTimeout(r, 2500));
    }
    const ticks = (await cdp.evaluate<number>(device, "window.ticks")) - ticksBefore;
    const unthrottled = (hiddenSeconds * 1000) / 100;
    t.diagnostic(`hidden ${hiddenSeconds} s: ${ticks} of ${unthrottled} 100 ms timer ticks ran; ${echoes} echoes answered`);
    assert.ok(ticks < unthrottled / 5, `the page's timers were not throttled (${ticks} ticks)`);
    assert.equal(await cdp.evaluate(device, "document.visibilityState"), "hidden");
    assert.deepEqual(await cdp.evaluate(device, "window.events"), [], "no disconnect on the page");
    assert.equal(server.wslis.devices.get("hidden"), dialer, "still the same session");
  });
});
