/**
 * One connection per kiosk across tabs, in real Chromium with the BUILT bundle: two pages of one browser
 * profile run the same kiosk (same URL, same deviceId) with default options. The second waits on the Web
 * Lock instead of replacing the first, and takes over when the first page closes.
 */

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright";
import type { Dialer } from "../server-node/index.js";
import { assertBuilt, launchChromium, startE2EServer, type E2EServer } from "./harness.js";
import { until } from "../test/helpers/assert.js";

let browser: Browser | undefined;
before(async () => {
  assertBuilt();
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

/** Opens a kiosk page that listens with default options and echoes every stream; returns the page. */
async function kiosk(context: BrowserContext, server: E2EServer): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${server.origin}/pages/blank.html`);
  await page.evaluate(async (wsUrl) => {
    const { listen } = await import("/dist/wslis.js" as string);
    const events: string[] = [];
    const listener = listen(wsUrl, { params: { deviceId: "kiosk-1" } });
    listener.addEventListener("connect", () => events.push("connect"));
    listener.addEventListener("disconnect", (e: CustomEvent) => events.push(`disconnect:${e.detail.error.code}`));
    Object.assign(globalThis, { kiosk: { listener, events } });
    void (async () => {
      for await (const conn of listener) void conn.readable.pipeTo(conn.writable).catch(() => {});
    })();
  }, server.wsUrl);
  return page;
}

const eventsOf = (page: Page) => page.evaluate(() => (globalThis as unknown as { kiosk: { events: string[] } }).kiosk.events);

async function echo(dialer: Dialer, text: string): Promise<string> {
  const conn = await dialer.dial();
  const writer = conn.writable.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  return new Response(conn.readable).text();
}

test("two tabs of one kiosk: the second waits on the Web Lock, then takes over when the first closes", { timeout: 60_000 }, async (t) => {
  const log: string[] = [];
  const server = await startE2EServer(() => {}, { drainTimeout: 100 });
  t.after(() => server.close());
  server.wslis.addEventListener("connect", (e) => log.push(`connect:${e.detail.dialer.id}`));
  server.wslis.addEventListener("replace", (e) => log.push(`replace:${e.detail.dialer.id}`));
  const context = await browser!.newContext(); // one profile: Web Locks are shared by its tabs
  t.after(() => context.close());

  const first = await kiosk(context, server);
  await until(() => server.wslis.devices.has("kiosk-1"), 15_000, "the first tab to connect", 20);
  const firstDialer = server.wslis.devices.get("kiosk-1")!;

  const second = await kiosk(context, server);
  // Without the lock the second tab would have replaced the first well within this (its first dial
  // is immediate); with it, it waits.
  await new Promise((r) => setTimeout(r, 2000));
  assert.deepEqual(log, ["connect:kiosk-1"], "one connection, nobody replaced");
  assert.equal(firstDialer.closeReason, undefined);
  assert.deepEqual(await eventsOf(second), [], "the second tab is waiting, not failing");
  assert.equal(await echo(firstDialer, "first tab"), "first tab");

  await first.close();
  await until(
    () => server.wslis.devices.get("kiosk-1") !== undefined && server.wslis.devices.get("kiosk-1") !== firstDialer,
    15_000,
    "the second tab to take over",
    20,
  );
  const secondDialer = server.wslis.devices.get("kiosk-1")!;
  assert.equal(await echo(secondDialer, "second tab"), "second tab");
  assert.deepEqual(await eventsOf(second), ["connect"]);
  assert.equal(log.filter((l) => l.startsWith("connect")).length, 2);
});

test("lock: false opts out: a second tab replaces the first (which stops with ERR_REPLACED)", { timeout: 60_000 }, async (t) => {
  const server = await startE2EServer(() => {}, { drainTimeout: 100 });
  t.after(() => server.close());
  const context = await browser!.newContext();
  t.after(() => context.close());
  const open = async () => {
    const page = await context.newPage();
    await page.goto(`${server.origin}/pages/blank.html`);
    await page.evaluate(async (wsUrl) => {
      const { listen } = await import("/dist/wslis.js" as string);
      const listener = listen(wsUrl, { params: { deviceId: "kiosk-2" }, lock: false });
      const state = { closed: "" };
      void listener.closed.then((e: { code?: string }) => (state.closed = e.code ?? "?"));
      Object.assign(globalThis, { state });
      await listener.ready;
    }, server.wsUrl);
    return page;
  };
  const first = await open();
  await open();
  await until(
    async () => (await first.evaluate(() => (globalThis as unknown as { state: { closed: string } }).state.closed)) === "ERR_REPLACED",
    15_000,
    "the first tab to be replaced",
    20,
  );
});
