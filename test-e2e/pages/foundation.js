/**
 * Page side of test-e2e/foundation.test.ts: each export is one scenario, run in Chromium against the
 * BUILT device SDK. Plain JavaScript on purpose: it is served as is (no transpiler between the test and
 * the browser), and the test passes the SDK in, so the same scenario runs on the ESM build and the IIFE.
 *
 * Scenarios resolve with plain data (strings, numbers, hashes, error name/code) for the Node side to
 * assert on; errors are reported as `{ name, code, message }` because Error objects do not survive the
 * trip out of `page.evaluate`.
 */

/** Loads the SDK: the ESM bundle by dynamic import, or the IIFE's global `wslis` (the page must include it). */
export async function loadSdk(build) {
  if (build === "esm") return import("/dist/wslis.js");
  if (build === "iife") {
    if (typeof globalThis.wslis !== "object") throw new Error("the IIFE did not define the global `wslis`");
    return globalThis.wslis;
  }
  throw new Error(`unknown build ${build}`);
}

/** Runs scenario `name` with the chosen build of the SDK. */
export async function run(build, name, ...args) {
  const sdk = await loadSdk(build);
  const scenario = scenarios[name];
  if (!scenario) throw new Error(`unknown scenario ${name}`);
  return scenario(sdk, ...args);
}

const CHUNK = 64 * 1024;

/** Dials the server without reconnecting: a dropped link must fail the test, not be papered over. */
function dial(sdk, url, deviceId) {
  return sdk.dialAndListen(url, { params: { deviceId }, reconnect: false, handshakeTimeout: 5000 });
}

function describeError(error) {
  return { name: error?.name, code: error?.code, message: String(error?.message ?? error) };
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sha256(bytes) {
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

/** Reads a stream to its end into one buffer of `expected` bytes (more than that is an error). */
async function readAll(readable, expected) {
  const all = new Uint8Array(expected);
  let filled = 0;
  for await (const chunk of readable) {
    if (filled + chunk.length > expected) throw new Error(`received more than the ${expected} bytes expected`);
    all.set(chunk, filled);
    filled += chunk.length;
  }
  return all.subarray(0, filled);
}

/** Rejects after `ms` with a message naming what did not happen: every wait in a page is bounded. */
function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no outcome within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const scenarios = {
  /**
   * The seed's exchange: the server opens a stream and writes "hola" then FIN; the page reads it to the
   * end and echoes it back, then FIN. Resolves with the text the page read and the stream ID.
   */
  async hola(sdk, url) {
    const lis = await dial(sdk, url, "hola");
    const conn = await lis.accept();
    const text = await new Response(conn.readable).text();
    const writer = conn.writable.getWriter();
    await writer.write(new TextEncoder().encode(text));
    await writer.close();
    return { text, streamID: conn.streamID };
  },

  /** Accepts `count` streams and echoes each one; resolves with the stream IDs once every echo ended. */
  async echoMany(sdk, url, count) {
    const lis = await dial(sdk, url, "many");
    const echoes = [];
    const ids = [];
    for (let i = 0; i < count; i++) {
      const conn = await lis.accept();
      ids.push(conn.streamID);
      echoes.push(conn.readable.pipeTo(conn.writable));
    }
    await Promise.all(echoes);
    return ids;
  },

  /**
   * Sends `size` random bytes and receives `size` bytes on one stream at the same time; resolves with
   * the SHA-256 of both sides as computed here.
   */
  async bulk(sdk, url, size) {
    const lis = await dial(sdk, url, "bulk");
    const conn = await lis.accept();
    const outgoing = new Uint8Array(size);
    // getRandomValues fills at most 64 KiB per call.
    for (let offset = 0; offset < size; offset += CHUNK) {
      crypto.getRandomValues(outgoing.subarray(offset, Math.min(size, offset + CHUNK)));
    }
    const send = (async () => {
      const writer = conn.writable.getWriter();
      for (let offset = 0; offset < size; offset += CHUNK) {
        await writer.ready;
        void writer.write(outgoing.subarray(offset, Math.min(size, offset + CHUNK))).catch(() => {});
      }
      await writer.close();
    })();
    const [received] = await Promise.all([readAll(conn.readable, size), send]);
    return {
      sentSha256: await sha256(outgoing),
      receivedSha256: await sha256(received),
      receivedBytes: received.length,
    };
  },

  /**
   * Waits on a read and on a write that cannot finish (1 MiB against a 256 KiB window the server does not
   * reopen), and reports how each ends once the server resets the stream. Every wait is bounded.
   */
  async resetSeen(sdk, url) {
    const lis = await dial(sdk, url, "reset");
    const conn = await lis.accept();
    const reader = conn.readable.getReader();
    const writer = conn.writable.getWriter();
    const started = performance.now();
    const settle = (promise) =>
      within(promise, 5000, "the stream operation").then(
        () => ({ status: "fulfilled", ms: performance.now() - started }),
        (error) => ({ status: "rejected", ms: performance.now() - started, ...describeError(error) }),
      );
    const [read, write, closed] = await Promise.all([
      settle(reader.read()),
      settle(writer.write(new Uint8Array(1024 * 1024))),
      settle(conn.closed),
    ]);
    return { read, write, closed, streamID: conn.streamID };
  },

  /**
   * Writes 4 MiB against a window the server never reopens, aborts the writer once the write is stuck,
   * and reports how the write and the abort end. Every wait is bounded.
   */
  async abortStuckWrite(sdk, url) {
    const lis = await dial(sdk, url, "abort");
    const conn = await lis.accept();
    const writer = conn.writable.getWriter();
    const writing = writer.write(new Uint8Array(4 * 1024 * 1024));
    writing.catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    const settle = (promise) =>
      within(promise, 5000, "the stream operation").then(
        () => ({ status: "fulfilled", ms: performance.now() - started }),
        (error) => ({ status: "rejected", ms: performance.now() - started, ...describeError(error) }),
      );
    const [abort, write] = await Promise.all([settle(writer.abort(new Error("gave up"))), settle(writing)]);
    return { abort, write, state: conn.state };
  },

  /** Passes the Node-only `headers` option; resolves with the error, or with null if none was thrown. */
  async headersOption(sdk, url) {
    try {
      const lis = await sdk.dialAndListen(url, { headers: { Authorization: "Bearer x" }, reconnect: false });
      await lis.close();
      return null;
    } catch (error) {
      return { ...describeError(error), isTypeError: error instanceof TypeError };
    }
  },
};
