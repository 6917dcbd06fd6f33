/**
 * Reverse HTTP end to end: real Chromium loads the BUILT dist/wslis.js, serves HTTP with `serveHttp` over
 * its WebSocket, and the Node server fetches from the page with `dialer.fetch`.
 *
 * The page side is PAGE_DEVICE below, plain JavaScript evaluated in the page as is (no transpiler between
 * the test and the browser). It keeps what the Node side needs to see on `globalThis.httpTest`.
 * Every wait is bounded; the browser, pages and server are closed in `after` hooks.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright";
import type { Dialer } from "../server-node/index.js";
import { SessionClosedError } from "../src/errors.js";
import { assertBuilt, launchChromium, startE2EServer, type E2EServer } from "./harness.js";
import { sha256Hex, within } from "../test/helpers/assert.js";

const MB = 1_000_000;

/**
 * The device: dials `url` as `deviceId` and serves:
 *   /text          a fixed text
 *   /echo          the request body, streamed back
 *   /hash          SHA-256 (hex) of the request body, computed in the page
 *   /stream        "part1;" at once, "part2;" only after the test calls httpTest.release()
 *   /delay?ms=N    its own path after N ms
 *   /hang          never answers; records the request.signal abort in httpTest.aborts
 */
const PAGE_DEVICE = `(async ([url, deviceId]) => {
  const sdk = await import("/dist/wslis.js");
  const state = { aborts: [], errors: [], arrived: [], release: undefined };
  globalThis.httpTest = state;
  const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const listener = await sdk.dialAndListen(url, { params: { deviceId }, reconnect: false, handshakeTimeout: 5000 });
  void sdk.serveHttp(listener, async (request) => {
    const u = new URL(request.url);
    state.arrived.push(u.pathname);
    switch (u.pathname) {
      case "/text":
        return new Response("hello from " + navigator.userAgent.includes("Chrome") + " chromium", { headers: { "x-host": request.headers.get("host"), "x-clone-host": request.clone().headers.get("host"), "x-request": String(request instanceof Request) } });
      case "/echo":
        return new Response(request.body);
      case "/hash":
        return new Response(hex(await crypto.subtle.digest("SHA-256", await request.arrayBuffer())));
      case "/stream": {
        const released = new Promise((resolve) => (state.release = resolve));
        let step = 0;
        return new Response(new ReadableStream({
          async pull(controller) {
            step++;
            if (step === 1) controller.enqueue(new TextEncoder().encode("part1;"));
            else if (step === 2) { await released; controller.enqueue(new TextEncoder().encode("part2;")); }
            else controller.close();
          },
        }));
      }
      case "/delay":
        await new Promise((resolve) => setTimeout(resolve, Number(u.searchParams.get("ms"))));
        return new Response(u.search);
      case "/hang":
        request.signal.addEventListener("abort", () => {
          const reason = request.signal.reason;
          state.aborts.push({ name: reason && reason.name, code: reason && reason.code });
        });
        return new Promise(() => {});
      default:
        return new Response("not found", { status: 404 });
    }
  }, { onError: (error) => state.errors.push(String(error)) });
  return "serving";
})`;

let browser: Browser;
let server: E2EServer;
const dialers = new Map<string, Dialer>();
const waiting = new Map<string, (d: Dialer) => void>();

before(async () => {
  assertBuilt();
  server = await startE2EServer(
    (dialer) => {
      dialers.set(dialer.id, dialer);
      waiting.get(dialer.id)?.(dialer);
    },
    { drainTimeout: 100 },
  );
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Polls the page until `predicate` (a JS expression over httpTest) holds. */
async function pageWaits(page: Page, expression: string, ms = 5000): Promise<void> {
  await page.waitForFunction(expression, undefined, { timeout: ms, polling: 10 });
}

/** Opens a page that serves HTTP as `deviceId`; resolves with the page and the server's dialer for it. */
async function openDevice(deviceId: string): Promise<{ page: Page; dialer: Dialer; errors: Error[] }> {
  const page = await browser.newPage();
  const errors: Error[] = [];
  page.on("pageerror", (error) => errors.push(error));
  await page.goto(`${server.origin}/pages/blank.html`);
  const connected = new Promise<Dialer>((resolve) => waiting.set(deviceId, resolve));
  const started = page.evaluate(`${PAGE_DEVICE}(${JSON.stringify([server.wsUrl, deviceId])})`);
  assert.equal(await within(started, 15_000, `page ${deviceId} starts serving`), "serving");
  const dialer = await within(connected, 5000, `device ${deviceId} connects`);
  return { page, dialer, errors };
}

describe("the Node server fetches from a page in Chromium", () => {
  let page: Page;
  let dialer: Dialer;
  let pageErrors: Error[];
  before(async () => {
    ({ page, dialer, errors: pageErrors } = await openDevice("page-1"));
  });
  after(async () => {
    await page?.close();
  });

  test("GET text; the page's handler sees the Host header Chromium would hide", async () => {
    const res = await dialer.fetch("http://kiosk.example/text");
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "hello from true chromium");
    assert.equal(res.headers.get("x-host"), "kiosk.example");
    assert.equal(res.headers.get("x-clone-host"), "kiosk.example", "request.clone() keeps what the client sent");
    assert.equal(res.headers.get("x-request"), "true");
  });

  test("POST 5 MB: echoed back intact, and hashed in the page", async () => {
    const data = randomBytes(5 * MB);
    const echoed = await dialer.fetch("http://kiosk/echo", { method: "POST", body: data });
    assert.equal(sha256Hex(new Uint8Array(await echoed.arrayBuffer())), sha256Hex(data), "echo");
    const hashed = await dialer.fetch("http://kiosk/hash", { method: "POST", body: data });
    assert.equal(await hashed.text(), sha256Hex(data), "SHA-256 computed by the page");
  });

  test("a streamed response is read incrementally", async () => {
    const res = await dialer.fetch("http://kiosk/stream");
    const reader = res.body!.getReader();
    const first = await within(reader.read(), 5000, "first part");
    assert.equal(new TextDecoder().decode(first.value), "part1;", "part1 arrives while the page still holds part2");
    await page.evaluate("globalThis.httpTest.release()");
    const second = await within(reader.read(), 5000, "second part");
    assert.equal(new TextDecoder().decode(second.value), "part2;");
    assert.equal((await within(reader.read(), 5000, "end")).done, true);
  });

  test("50 concurrent fetches", async () => {
    const results = await within(
      Promise.all(Array.from({ length: 50 }, (_, i) => dialer.fetch(`http://kiosk/delay?ms=${(i * 7) % 50}&i=${i}`).then((r) => r.text()))),
      20_000,
      "50 fetches",
    );
    assert.deepEqual(results, Array.from({ length: 50 }, (_, i) => `?ms=${(i * 7) % 50}&i=${i}`));
  });

  test("an aborted fetch is seen as request.signal aborted in the page", async () => {
    const controller = new AbortController();
    const pending = dialer.fetch("http://kiosk/hang", { signal: controller.signal });
    await pageWaits(page, `globalThis.httpTest.arrived.includes("/hang")`);
    controller.abort();
    await assert.rejects(pending, { name: "AbortError" });
    await pageWaits(page, "globalThis.httpTest.aborts.length === 1");
    const [abort] = (await page.evaluate("globalThis.httpTest.aborts")) as { name: string; code: string }[];
    assert.deepEqual(abort, { name: "StreamResetError", code: "ERR_STREAM_RESET" });
  });

  test("nothing went wrong in the page", async () => {
    assert.deepEqual(await page.evaluate("globalThis.httpTest.errors"), []);
    assert.deepEqual(pageErrors, []);
  });
});

test("page closed mid-request: the server's fetch rejects within 1 s with the session's reason", async () => {
  const { page, dialer } = await openDevice("page-2");
  const pending = dialer.fetch("http://kiosk/hang", { timeout: 0 });
  pending.catch(() => {});
  await pageWaits(page, `globalThis.httpTest.arrived.includes("/hang")`);
  const closedAt = performance.now();
  await page.close();
  const error = await within(pending.then(() => undefined, (e: unknown) => e), 1000, "the fetch rejects after the page closed");
  const elapsed = performance.now() - closedAt;
  // The device is gone: the session's close reason, not a timeout or an HTTP error.
  assert.ok(error instanceof SessionClosedError, `rejected with ${String(error)}`);
  assert.equal(error, dialer.closeReason);
  // A page that closes sends 1001 ("going away"): the device left; the server is not shutting down.
  assert.equal((error as SessionClosedError).code, "ERR_CONNECTION_LOST");
  assert.match((error as Error).message, /device went away/);
  assert.ok(elapsed < 1000, `${elapsed} ms`);
});
