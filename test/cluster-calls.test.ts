/**
 * The same call, the same outcome, whether the device is on this node or another: `server.fetch` and
 * `server.dial` from node A to a device on A and to its twin on node B (same behaviour), over a real
 * redis-server, and the errors compared by class and code: bodies failing part way, timeouts, aborts,
 * half-closes, resets, a device's session ending mid-stream. Also what a node does before its first
 * Redis connection.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { dialAndListen, serveHttp, type Listener } from "../server-node/device.js";
import { ClusterUnavailableError, listenAndServe, StreamResetError, WslisError, type Server } from "../server-node/index.js";
import { until, within } from "./helpers/assert.js";
import { readAll } from "./helpers/memory.js";
import { freePort, startRedis, type RedisProcess } from "./helpers/redis.js";

const SECRET = "a-cluster-secret-for-tests";
const quiet = { warn() {}, error() {} };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

async function startNode(redis: string, nodeId: string, options: { port?: number } = {}): Promise<{ server: Server; url: string }> {
  const port = options.port ?? (await freePort());
  const server = await listenAndServe(`127.0.0.1:${port}`, () => {}, {
    logger: quiet,
    drainTimeout: 200,
    cluster: { redis, nodeId, secret: SECRET, ttl: 4000, advertise: `http://127.0.0.1:${port}` },
  });
  cleanup.push(() => server.close());
  return { server, url: `ws://127.0.0.1:${port}/` };
}

/** What a call came to, comparable across nodes: its value, or its error's class, code and side. */
async function outcome(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return { value: await call() };
  } catch (error) {
    const e = error as Error & { code?: string; remote?: boolean };
    return { error: e.name, code: e.code, ...(e instanceof StreamResetError ? { remote: e.remote } : {}) };
  }
}

describe("the same calls through a node and locally", () => {
  let redis: RedisProcess;
  let a: { server: Server; url: string };
  let b: { server: Server; url: string };
  let n = 0;

  before(async () => {
    redis = await startRedis();
    cleanup.push(() => redis.stop());
    a = await startNode(redis.url, "a");
    b = await startNode(redis.url, "b");
  });

  /**
   * A device on node A and its twin on node B, each set up by `serve`; resolves with their ids once
   * node A can reach both.
   */
  async function twins(serve: (listener: Listener) => void): Promise<{ local: string; remote: string; listeners: Listener[] }> {
    n++;
    const ids = { local: `local-${n}`, remote: `remote-${n}` };
    const listeners: Listener[] = [];
    for (const [node, id] of [[a, ids.local], [b, ids.remote]] as const) {
      const listener = await dialAndListen(node.url, { params: { deviceId: id }, reconnect: false });
      cleanup.push(() => listener.close());
      listeners.push(listener);
      serve(listener);
    }
    const deadline = Date.now() + 5000;
    while (!(await a.server.lookup(ids.remote)) || !a.server.devices.has(ids.local)) {
      assert.ok(Date.now() < deadline, "the twins never showed up");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return { ...ids, listeners };
  }

  /** Runs `call` against both twins; asserts the outcomes are equal and returns the local one. */
  async function same(ids: { local: string; remote: string }, call: (id: string) => Promise<unknown>): Promise<unknown> {
    const [local, remote] = [await outcome(() => call(ids.local)), await outcome(() => call(ids.remote))];
    assert.deepEqual(remote, local, "through a node as locally");
    return local;
  }

  /** A body that sends `first` and then neither more nor its end. */
  const stalled = (first: string) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode(first));
      },
    });

  test("fetch: a response body whose device goes away part way fails with the session's error", async () => {
    const ids = await twins((listener) => {
      void serveHttp(listener, () => {
        setTimeout(() => void listener.close(), 100);
        return new Response(stalled("part one;"));
      }).catch(() => {});
    });
    const result = await same(ids, async (id) => {
      const res = await a.server.fetch(id, "http://device/");
      return res.text();
    });
    assert.ok((result as { error?: string }).error, JSON.stringify(result));
  });

  test("fetch: a response body the device breaks off part way fails as ERR_HTTP", async () => {
    const ids = await twins((listener) => {
      void serveHttp(listener, () => {
        let sent = false;
        return new Response(
          new ReadableStream<Uint8Array>({
            async pull(controller) {
              if (sent) {
                await new Promise((resolve) => setTimeout(resolve, 50));
                controller.error(new Error("the device's body broke"));
                return;
              }
              sent = true;
              controller.enqueue(encoder.encode("part one;"));
            },
          }),
        );
      }).catch(() => {});
    });
    const result = await same(ids, async (id) => (await a.server.fetch(id, "http://device/")).text());
    assert.equal((result as { code?: string }).code, "ERR_HTTP", JSON.stringify(result));
  });

  test("fetch: calls one after another reuse one stream to the device, through a node as locally", async () => {
    const accepted = new Map<Listener, number>();
    const ids = await twins((listener) => {
      accepted.set(listener, 0);
      const counting = {
        accept: async (options?: { signal?: AbortSignal }) => {
          const conn = await listener.accept(options);
          accepted.set(listener, accepted.get(listener)! + 1);
          return conn;
        },
      };
      void serveHttp(counting, () => new Response("x".repeat(1000))).catch(() => {});
    });
    const result = await same(ids, async (id) => {
      let bytes = 0;
      for (let i = 0; i < 20; i++) bytes += (await (await a.server.fetch(id, "http://device/")).arrayBuffer()).byteLength;
      return bytes;
    });
    assert.deepEqual(result, { value: 20_000 });
    // Node B relays one tunnel for all 20, its stream kept open between calls as a local fetch keeps its own.
    assert.deepEqual([...accepted.values()], [1, 1]);
  });

  test("fetch: bodyTimeout and timeout fail with ERR_TIMEOUT, on time", async () => {
    const ids = await twins((listener) => {
      void serveHttp(listener, async (request) => {
        if (new URL(request.url).pathname === "/never") await new Promise(() => {});
        return new Response(stalled("part one;"));
      }).catch(() => {});
    });
    for (const [path, init] of [
      ["/stall", { bodyTimeout: 300 }],
      ["/never", { timeout: 300 }],
    ] as const) {
      for (const id of [ids.local, ids.remote]) {
        const started = performance.now();
        const result = await outcome(async () => (await a.server.fetch(id, `http://device${path}`, init)).text());
        const ms = performance.now() - started;
        assert.deepEqual(result, { error: "TimeoutError", code: "ERR_TIMEOUT" }, `${path} on ${id}`);
        assert.ok(ms >= 250 && ms < 1500, `${path} on ${id} failed after ${ms} ms`);
      }
    }
  });

  test("fetch: the caller's signal aborts the head and the body with its reason", async () => {
    const ids = await twins((listener) => {
      void serveHttp(listener, async (request) => {
        if (new URL(request.url).pathname === "/never") await new Promise(() => {});
        return new Response(stalled("part one;"));
      }).catch(() => {});
    });
    class Stop extends Error {
      override name = "Stop";
    }
    const body = await same(ids, async (id) => {
      const controller = new AbortController();
      const res = await a.server.fetch(id, "http://device/", { signal: controller.signal });
      setTimeout(() => controller.abort(new Stop("enough")), 100);
      return res.text();
    });
    assert.deepEqual(body, { error: "Stop", code: undefined });
    const head = await same(ids, async (id) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Stop("enough")), 100);
      return a.server.fetch(id, "http://device/never", { signal: controller.signal });
    });
    assert.deepEqual(head, { error: "Stop", code: undefined });
  });

  test("fetch: an aborted call reaches the device: its request's signal aborts, through a node as locally", async () => {
    const aborted = new Map<Listener, number>();
    const ids = await twins((listener) => {
      void serveHttp(listener, (request) => {
        request.signal.addEventListener("abort", () => aborted.set(listener, performance.now()));
        return new Promise<Response>(() => {}); // never answers
      }).catch(() => {});
    });
    const result = await same(ids, async (id) => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(new DOMException("enough", "AbortError")), 100);
      return a.server.fetch(id, "http://device/", { signal: controller.signal });
    });
    assert.deepEqual(result, { error: "AbortError", code: 20 }); // DOMException.ABORT_ERR
    // The stream is reset at once: the device's handler learns it, wherever the call came from.
    await until(() => aborted.size === 2, 2000, "both devices saw their request aborted", 10);
  });

  test("fetch: a request body that fails part way fails the call as ERR_HTTP", async () => {
    const ids = await twins((listener) => {
      void serveHttp(listener, async (request) => new Response(await request.text())).catch(() => {});
    });
    const result = await same(ids, (id) => {
      let sent = false;
      const body = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (sent) {
            await new Promise((resolve) => setTimeout(resolve, 50));
            return controller.error(new Error("the caller's body broke"));
          }
          sent = true;
          controller.enqueue(encoder.encode("part one;"));
        },
      });
      return a.server.fetch(id, "http://device/", { method: "POST", body, duplex: "half" } as RequestInit).then((res) => res.text());
    });
    assert.equal((result as { code?: string }).code, "ERR_HTTP", JSON.stringify(result));
  });

  test("fetch: a string body arrives with its Content-Length and Content-Type, as locally", async () => {
    const ids = await twins((listener) => {
      void serveHttp(listener, async (request) =>
        Response.json({ length: request.headers.get("content-length"), type: request.headers.get("content-type"), body: await request.text() }),
      ).catch(() => {});
    });
    const result = await same(ids, async (id) => (await a.server.fetch(id, "http://device/", { method: "POST", body: "hola" })).json());
    assert.deepEqual(result, { value: { length: "4", type: "text/plain;charset=UTF-8", body: "hola" } });
  });

  test("fetch: small answers (sent on whole) and large ones (streamed) arrive as locally: status, headers, bytes", async () => {
    const big = new Uint8Array(300_000).map((_, i) => i % 251);
    const ids = await twins((listener) => {
      void serveHttp(listener, (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/empty") return new Response(null, { status: 200, headers: { "x-kind": "empty" } });
        if (path === "/none") return new Response(null, { status: 204, statusText: "Nothing" });
        if (path === "/big") return new Response(big, { headers: { "content-type": "application/octet-stream" } });
        return new Response("x".repeat(1000), { status: 201, statusText: "Made", headers: { "set-cookie": "a=1", "x-two": "2" } });
      }).catch(() => {});
    });
    const seen = (res: Response, bytes: Uint8Array) => ({
      status: res.status,
      statusText: res.statusText,
      headers: [...res.headers].filter(([name]) => name !== "date"), // the two calls may fall in different seconds
      length: bytes.length,
      sum: bytes.reduce((x, y) => (x * 31 + y) % 1_000_003, 0),
    });
    for (const [path, method] of [["/kb", "GET"], ["/kb", "HEAD"], ["/empty", "GET"], ["/none", "GET"], ["/big", "GET"]] as const) {
      const result = await same(ids, async (id) => {
        const res = await a.server.fetch(id, `http://device${path}`, { method });
        return seen(res, new Uint8Array(await res.arrayBuffer()));
      });
      assert.ok("value" in (result as object), `${method} ${path}: ${JSON.stringify(result)}`);
    }
  });

  test("fetch: an answer a Response refuses (status 600) fails as ERR_HTTP, as locally", async () => {
    const ids = await twins((listener) => {
      void (async () => {
        for await (const conn of listener) {
          void (async () => {
            const reader = conn.readable.getReader();
            await reader.read(); // the request head (a GET: nothing follows)
            const writer = conn.writable.getWriter();
            await writer.write(encoder.encode("HTTP/1.1 600 Odd\r\ncontent-length: 2\r\n\r\nhi"));
          })().catch(() => {});
        }
      })();
    });
    const result = await same(ids, async (id) => (await a.server.fetch(id, "http://device/")).text());
    assert.equal((result as { code?: string }).code, "ERR_HTTP", JSON.stringify(result));
  });

  /** Raw stream devices: each stream's first bytes say what to do. */
  function streamDevice(listener: Listener): void {
    void (async () => {
      for await (const conn of listener) {
        void (async () => {
          const reader = conn.readable.getReader();
          const { value } = await reader.read();
          const command = decoder.decode(value);
          const writer = conn.writable.getWriter();
          if (command === "bye-first") {
            // Half-close first, then read what the caller still sends.
            await writer.write(encoder.encode("bye"));
            await writer.close();
            let got = "";
            for (;;) {
              const next = await reader.read();
              if (next.done) break;
              got += decoder.decode(next.value);
            }
            // Tell the test what arrived after our FIN, out of band.
            seen.set(listener, got);
          } else if (command === "reset-me") {
            await writer.write(encoder.encode("resetting"));
            await new Promise((resolve) => setTimeout(resolve, 50));
            conn.reset();
          } else if (command === "leave") {
            await writer.write(encoder.encode("leaving"));
            await new Promise((resolve) => setTimeout(resolve, 50));
            await listener.close();
          } else if (command === "watch") {
            // Reports how this stream ended.
            await writer.write(encoder.encode("watching"));
            seen.set(listener, await outcome(() => conn.closed));
          }
        })().catch(() => {});
      }
    })();
  }
  const seen = new Map<Listener, unknown>();

  test("dial: the device half-closes first; the caller reads to the end, then writes and half-closes", async () => {
    const ids = await twins(streamDevice);
    await same(ids, async (id) => {
      const conn = await a.server.dial(id);
      const writer = conn.writable.getWriter();
      await writer.write(encoder.encode("bye-first"));
      const got = decoder.decode(await readAll(conn.readable));
      await writer.write(encoder.encode("late words"));
      await writer.close();
      await within(conn.closed, 2000, "closed");
      return got;
    });
    await until(() => seen.size === 2, 2000, "both devices saw the end");
    assert.deepEqual([...seen.values()], ["late words", "late words"]);
    seen.clear();
  });

  test("dial: a reset by the device fails the caller's reads and closed as a remote ERR_STREAM_RESET", async () => {
    const ids = await twins(streamDevice);
    const result = await same(ids, async (id) => {
      const conn = await a.server.dial(id);
      const writer = conn.writable.getWriter();
      await writer.write(encoder.encode("reset-me"));
      const reads = outcome(() => readAll(conn.readable));
      const closed = outcome(() => conn.closed);
      return { reads: await reads, closed: await closed };
    });
    const expected = { error: "StreamResetError", code: "ERR_STREAM_RESET", remote: true };
    assert.deepEqual(result, { value: { reads: expected, closed: expected } });
  });

  test("dial: a reset by the caller fails its side as a local reset and the device's as a remote one", async () => {
    const ids = await twins(streamDevice);
    const result = await same(ids, async (id) => {
      const conn = await a.server.dial(id);
      const writer = conn.writable.getWriter();
      await writer.write(encoder.encode("watch"));
      const reader = conn.readable.getReader();
      await reader.read();
      conn.reset();
      return { closed: await outcome(() => conn.closed), read: await outcome(() => reader.read()) };
    });
    const local = { error: "StreamResetError", code: "ERR_STREAM_RESET", remote: false };
    assert.deepEqual(result, { value: { closed: local, read: local } });
    await until(() => seen.size === 2, 2000, "both devices saw the end");
    assert.deepEqual([...seen.values()], Array(2).fill({ error: "StreamResetError", code: "ERR_STREAM_RESET", remote: true }));
    seen.clear();
  });

  test("dial: a device whose session ends mid-stream fails the caller's stream with the session's error", async () => {
    const ids = await twins(streamDevice);
    const result = await same(ids, async (id) => {
      const conn = await a.server.dial(id);
      const writer = conn.writable.getWriter();
      await writer.write(encoder.encode("leave"));
      return { reads: await outcome(() => readAll(conn.readable)), closed: await outcome(() => conn.closed) };
    });
    const { reads } = (result as { value: { reads: { error?: string; code?: string } } }).value;
    assert.equal(reads.error, "SessionClosedError", JSON.stringify(result));
  });

  test("dial: cancelling the readable drops what comes; writing and the device's FIN go on", async () => {
    const ids = await twins((listener) => {
      void (async () => {
        for await (const conn of listener) {
          void (async () => {
            const writer = conn.writable.getWriter();
            await writer.write(encoder.encode("x".repeat(300_000)));
            const got = decoder.decode(await readAll(conn.readable));
            await writer.write(encoder.encode(`got ${got}`));
            await writer.close();
          })().catch(() => {});
        }
      })();
    });
    await same(ids, async (id) => {
      const conn = await a.server.dial(id);
      await conn.readable.cancel();
      const writer = conn.writable.getWriter();
      await writer.write(encoder.encode("after cancel"));
      await writer.close();
      await within(conn.closed, 2000, "closed");
      return "closed";
    });
  });
});

describe("the calling node shuts down", () => {
  test("close(): calls through a node in flight past the drain fail with ERR_SERVER_SHUTDOWN at both ends; close() does not wait for them", async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const a = await startNode(redis.url, "a");
    const b = await startNode(redis.url, "b");
    const listener = await dialAndListen(b.url, { params: { deviceId: "far" }, reconnect: false });
    cleanup.push(() => listener.close());
    let aborted = false;
    void serveHttp(listener, (request) => {
      if (new URL(request.url).pathname !== "/never") return new Response("x");
      request.signal.addEventListener("abort", () => (aborted = true));
      return new Promise<Response>(() => {});
    }).catch(() => {});
    await until(async () => (await a.server.lookup("far")) !== undefined, 5000, "the device in the directory", 20);
    assert.equal(await (await a.server.fetch("far", "http://device/")).text(), "x"); // a stream kept for reuse
    const never = outcome(() => a.server.fetch("far", "http://device/never"));
    const conn = await a.server.dial("far");
    await until(() => b.server.devices.get("far")!.session.numStreams === 2, 2000, "both streams at the device");
    await within(a.server.close(), 3000, "node a's close(), past its 200 ms drain");
    assert.deepEqual(await within(never, 2000, "the call in flight"), { error: "SessionClosedError", code: "ERR_SERVER_SHUTDOWN" });
    await assert.rejects(within(conn.closed, 1000, "the forwarded stream"), (error: WslisError) => error.code === "ERR_SERVER_SHUTDOWN");
    await until(() => aborted, 2000, "the device's request aborted");
    await until(() => b.server.devices.get("far")!.session.numStreams === 0, 2000, "no stream left at the device");
    assert.deepEqual(await outcome(() => a.server.fetch("far", "http://device/")), { error: "SessionClosedError", code: "ERR_SERVER_SHUTDOWN" });
  });
});

describe("before a node's first Redis connection", () => {
  test("a call waits for it, and works", async () => {
    const redis = await startRedis();
    cleanup.push(() => redis.stop());
    const b = await startNode(redis.url, "b");
    const listener = await dialAndListen(b.url, { params: { deviceId: "early" }, reconnect: false });
    cleanup.push(() => listener.close());
    void serveHttp(listener, () => new Response("here")).catch(() => {});
    // Until B's claim is in Redis (B's own lookup answers from its registry before that).
    const listed = async () => {
      for await (const record of b.server.fleet()) if (record.id === "early") return true;
      return false;
    };
    await until(listed, 5000, "node B's claim of the device in Redis");
    // Node A's first call, as soon as it exists: its Redis connection is not up yet.
    const a = await startNode(redis.url, "a");
    assert.equal(await (await a.server.fetch("early", "http://device/")).text(), "here");
  });

  test("without Redis, a call fails with ERR_CLUSTER_UNAVAILABLE after a short bound, not at its timeout", async () => {
    const nobody = `redis://127.0.0.1:${await freePort()}`;
    const a = await startNode(nobody, "a");
    const started = performance.now();
    await assert.rejects(a.server.fetch("anyone", "http://device/", { timeout: 20_000 }), (error: unknown) => error instanceof ClusterUnavailableError);
    const ms = performance.now() - started;
    assert.ok(ms < 3000, `failed after ${ms} ms`);
    // From then on, at once.
    const again = performance.now();
    await assert.rejects(a.server.fetch("anyone", "http://device/"), (error: unknown) => error instanceof WslisError && error.code === "ERR_CLUSTER_UNAVAILABLE");
    assert.ok(performance.now() - again < 100);
  });
});
