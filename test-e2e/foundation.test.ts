/**
 * End to end: real Chromium loads the BUILT device SDK (dist/wslis.js, and once dist/wslis.iife.js) and
 * talks to our Node server over a real WebSocket on 127.0.0.1. The page side of each scenario lives in
 * pages/foundation.js; the server side is the handler given to startE2EServer.
 *
 * Every wait is bounded (`within`, test timeouts); the browser, pages and servers are closed in `after`
 * hooks, so a failing test leaves nothing running.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test, type TestContext } from "node:test";
import type { Browser, Page } from "playwright";
import type { Dialer } from "../server-node/index.js";
import { assertBuilt, launchChromium, startE2EServer, type E2EServer } from "./harness.js";
import { sha256Hex, within } from "../test/helpers/assert.js";

type Build = "esm" | "iife";

const TEST_TIMEOUT = 60_000;
/** How long one side of a scenario may take, in ms; generous for a loaded 2-core CI machine. */
const SIDE_TIMEOUT = 30_000;
const MiB = 1024 * 1024;

let browser: Browser | undefined;

before(async () => {
  assertBuilt(); // a missing build fails the suite with how to fix it, before Chromium starts
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
});

interface Scenario<T> {
  server: E2EServer;
  /** The server side's outcome: what `serverSide` resolved with, or why it failed. */
  result: Promise<T>;
  /** Devices that connected. */
  connections: () => number;
}

/**
 * Starts a server whose handler runs `serverSide` for the first device that connects and exposes its
 * outcome (the server itself only logs a failing handler). The server is closed after the test.
 */
async function serve<T>(t: TestContext, serverSide: (dialer: Dialer) => Promise<T>): Promise<Scenario<T>> {
  let connections = 0;
  let settle!: { resolve: (value: T) => void; reject: (error: unknown) => void };
  const result = new Promise<T>((resolve, reject) => (settle = { resolve, reject }));
  result.catch(() => {}); // awaited by the test; never an unhandled rejection if the test fails first
  const server = await startE2EServer(
    async (dialer) => {
      if (++connections > 1) return;
      serverSide(dialer).then(settle.resolve, settle.reject);
    },
    { drainTimeout: 100 },
  );
  t.after(() => server.close());
  return { server, result, connections: () => connections };
}

/** Opens a page of the server's origin (the IIFE build gets the page that includes it), closed after the test. */
async function openPage(t: TestContext, server: E2EServer, build: Build): Promise<Page> {
  assert.ok(browser, "Chromium did not start");
  const page = await browser.newPage();
  t.after(() => page.close());
  const errors: Error[] = [];
  page.on("pageerror", (error) => errors.push(error));
  t.after(() => assert.deepEqual(errors, [], "uncaught errors in the page"));
  await page.goto(`${server.origin}/pages/${build === "iife" ? "iife.html" : "blank.html"}`);
  return page;
}

/** Runs scenario `name` of pages/foundation.js in the page, bounded in time. */
function runInPage<T>(page: Page, build: Build, name: string, ...args: unknown[]): Promise<T> {
  const run = page.evaluate(
    async ([module, build, name, args]) => {
      const scenarios = await import(module);
      return scenarios.run(build, name, ...args);
    },
    ["/pages/foundation.js", build, name, args] as const,
  );
  return within(run as Promise<T>, SIDE_TIMEOUT, `page scenario ${name} (${build})`);
}

/** Reads a stream to its end. */
async function readAll(readable: ReadableStream<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of readable) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Writes `body` in 64 KiB chunks, respecting backpressure, then FIN. */
async function writeAll(writable: WritableStream<Uint8Array>, body: Uint8Array): Promise<void> {
  const writer = writable.getWriter();
  for (let offset = 0; offset < body.length; offset += 64 * 1024) {
    await writer.ready;
    writer.write(body.subarray(offset, offset + 64 * 1024)).catch(() => {}); // close() reports failures
  }
  await writer.close();
}

/** The hola exchange: the server writes "hola" and FIN, the page echoes it. */
async function hola(t: TestContext, build: Build): Promise<void> {
  const { server, result } = await serve(t, async (dialer) => {
    const conn = await dialer.dial();
    await writeAll(conn.writable, new TextEncoder().encode("hola"));
    return { echo: (await readAll(conn.readable)).toString("utf8"), streamID: conn.streamID };
  });
  const page = await openPage(t, server, build);
  const seen = await runInPage<{ text: string; streamID: number }>(page, build, "hola", server.wsUrl);
  const served = await within(result, SIDE_TIMEOUT, "the server side");
  assert.equal(seen.text, "hola", "the page read what the server wrote");
  assert.equal(served.echo, "hola", "the server read the page's echo");
  assert.equal(seen.streamID, served.streamID);
  assert.equal(served.streamID % 2, 1, "the server (yamux client) opens odd stream IDs");
}

test("ESM build: the server opens a stream, writes hola, and the page echoes it", { timeout: TEST_TIMEOUT }, (t) =>
  hola(t, "esm"),
);

test("IIFE build (script tag, global wslis): the same hola exchange", { timeout: TEST_TIMEOUT }, (t) =>
  hola(t, "iife"),
);

/** Payload of stream `i`: distinct length and content per stream, so a crossed stream cannot pass. */
function payloadFor(i: number): Buffer {
  const size = 1000 + i * 997; // 1 000 to ~99 700 bytes, ~5 MB over 100 streams
  const bytes = Buffer.alloc(size);
  let x = (i + 1) * 2654435761;
  for (let j = 0; j < size; j++) {
    x = (x * 1103515245 + 12345) >>> 0; // LCG: cheap, deterministic per stream
    bytes[j] = x >>> 24;
  }
  bytes.writeUInt32BE(i, 0);
  return bytes;
}

test("100 concurrent streams, each with its own payload, all echoed intact", { timeout: TEST_TIMEOUT }, async (t) => {
  const count = 100;
  const { server, result } = await serve(t, (dialer) =>
    Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const conn = await dialer.dial();
        const payload = payloadFor(i);
        const [, echo] = await Promise.all([writeAll(conn.writable, payload), readAll(conn.readable)]);
        assert.ok(echo.equals(payload), `stream ${conn.streamID} (payload ${i}, ${payload.length} bytes) came back altered`);
        return conn.streamID;
      }),
    ),
  );
  const page = await openPage(t, server, "esm");
  const [pageIDs, serverIDs] = await Promise.all([
    runInPage<number[]>(page, "esm", "echoMany", server.wsUrl, count),
    within(result, SIDE_TIMEOUT, "the server side"),
  ]);
  assert.equal(new Set(serverIDs).size, count, "every dial got its own stream");
  assert.deepEqual([...pageIDs].sort((a, b) => a - b), [...serverIDs].sort((a, b) => a - b));
});

test("10 MiB each way at once on one stream, SHA-256 equal on both ends", { timeout: TEST_TIMEOUT }, async (t) => {
  const size = 10 * MiB;
  const { server, result } = await serve(t, async (dialer) => {
    const conn = await dialer.dial();
    const outgoing = randomBytes(size);
    const [, incoming] = await Promise.all([writeAll(conn.writable, outgoing), readAll(conn.readable)]);
    return {
      sentSha256: sha256Hex(outgoing),
      receivedSha256: sha256Hex(incoming),
      receivedBytes: incoming.length,
    };
  });
  const page = await openPage(t, server, "esm");
  const [browserSide, serverSide] = await Promise.all([
    runInPage<{ sentSha256: string; receivedSha256: string; receivedBytes: number }>(page, "esm", "bulk", server.wsUrl, size),
    within(result, SIDE_TIMEOUT, "the server side"),
  ]);
  assert.equal(browserSide.receivedBytes, size);
  assert.equal(serverSide.receivedBytes, size);
  assert.equal(browserSide.receivedSha256, serverSide.sentSha256, "server → page bytes altered");
  assert.equal(serverSide.receivedSha256, browserSide.sentSha256, "page → server bytes altered");
});

test("a server-side reset fails the page's pending read and write with ERR_STREAM_RESET", { timeout: TEST_TIMEOUT }, async (t) => {
  const { server, result } = await serve(t, async (dialer) => {
    const conn = await dialer.dial();
    // The page writes 1 MiB against a 256 KiB window; one chunk here proves its writer started, and
    // reading less than half a window grants no credit, so its write is still pending when we reset.
    const reader = conn.readable.getReader();
    const first = await within(reader.read(), SIDE_TIMEOUT, "the page's first bytes");
    assert.ok(first.value && first.value.length > 0, "the page's writer sent data");
    conn.reset();
    const closed = await conn.closed.then(
      () => undefined,
      (error: unknown) => error as { code?: string },
    );
    return { closedCode: closed?.code };
  });
  const page = await openPage(t, server, "esm");
  type Outcome = { status: string; ms: number; name?: string; code?: string; message?: string };
  const [seen, served] = await Promise.all([
    runInPage<{ read: Outcome; write: Outcome; closed: Outcome }>(page, "esm", "resetSeen", server.wsUrl),
    within(result, SIDE_TIMEOUT, "the server side"),
  ]);
  assert.equal(served.closedCode, "ERR_STREAM_RESET", "the resetting side's conn.closed rejects too");
  for (const what of ["read", "write", "closed"] as const) {
    const outcome = seen[what];
    assert.equal(outcome.status, "rejected", `the page's pending ${what} must fail, got ${JSON.stringify(outcome)}`);
    assert.equal(outcome.code, "ERR_STREAM_RESET", `the page's ${what}: ${outcome.message}`);
    assert.equal(outcome.name, "StreamResetError");
    assert.match(outcome.message ?? "", /reset by the peer/);
  }
  // Both pending operations are released by the same RST frame, not by some later timeout.
  t.diagnostic(`page saw the reset: read after ${seen.read.ms.toFixed(1)} ms, write after ${seen.write.ms.toFixed(1)} ms`);
});

test("the page aborts a write stuck on a server that does not read: the stream is reset at once, both sides", { timeout: TEST_TIMEOUT }, async (t) => {
  const { server, result } = await serve(t, async (dialer) => {
    const conn = await dialer.dial();
    // Reads nothing: the page's 4 MiB write waits for credit until its writer is aborted.
    const closed = await within(
      conn.closed.then(
        () => undefined,
        (error: unknown) => error as { code?: string },
      ),
      SIDE_TIMEOUT,
      "the server's conn.closed",
    );
    return { closedCode: closed?.code };
  });
  const page = await openPage(t, server, "esm");
  type Outcome = { status: string; ms: number; code?: string; message?: string };
  const [seen, served] = await Promise.all([
    runInPage<{ abort: Outcome; write: Outcome; state: string }>(page, "esm", "abortStuckWrite", server.wsUrl),
    within(result, SIDE_TIMEOUT, "the server side"),
  ]);
  assert.equal(seen.abort.status, "fulfilled", `the abort: ${JSON.stringify(seen.abort)}`);
  assert.equal(seen.write.status, "rejected", `the stuck write: ${JSON.stringify(seen.write)}`);
  assert.equal(seen.state, "reset");
  assert.equal(served.closedCode, "ERR_STREAM_RESET", "the server's side is reset by the page's RST");
  t.diagnostic(`abort settled after ${seen.abort.ms.toFixed(1)} ms, the write after ${seen.write.ms.toFixed(1)} ms`);
});

test("the headers option in the browser builds is a TypeError that points to params", { timeout: TEST_TIMEOUT }, async (t) => {
  const { server, connections } = await serve(t, async () => undefined);
  for (const build of ["esm", "iife"] as const) {
    const page = await openPage(t, server, build);
    const error = await runInPage<{ name: string; message: string; isTypeError: boolean } | null>(
      page,
      build,
      "headersOption",
      server.wsUrl,
    );
    assert.ok(error, `${build}: dialAndListen accepted the headers option`);
    assert.equal(error.isTypeError, true, `${build}: ${error.name}: ${error.message}`);
    assert.match(error.message, /params/, `${build}: the message must point to params`);
    assert.match(error.message, /browsers cannot send WebSocket headers/);
  }
  // The option is refused before any WebSocket is opened.
  assert.equal(connections(), 0);
  assert.equal(server.wslis.metrics().sessionsOpened, 0);
});
