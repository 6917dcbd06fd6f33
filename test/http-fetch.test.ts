/**
 * Reverse HTTP end to end in Node, over real sockets on 127.0.0.1: the wslis server's `dialer.fetch` and
 * `dialer.agent` against a Node device running `serveHttp` (or answering raw bytes, to test bad answers).
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { dialAndListen } from "../server-node/device.js";
import { DeviceHttp, type Dialer, type Server } from "../server-node/index.js";
import { serveHttp, serveHttpConn, type HttpHandler } from "../src/http/server.js";
import type { Listener } from "../src/client.js";
import type { Conn } from "../src/yamux/stream.js";
import { startServer } from "./helpers/net.js";
import { hasCode, sha256Hex, within } from "./helpers/assert.js";


interface Rig {
  server: Server;
  dialer: Dialer;
  listener: Listener;
  /** Streams the device accepted (one per HTTP connection). */
  accepted: () => number;
  close(): Promise<void>;
}

/** A server and one Node device; the device serves `handler`, or hands raw streams to `raw`. */
async function rig(handler: HttpHandler | { raw: (conn: Conn) => void }, errors: unknown[] = []): Promise<Rig> {
  let resolveDialer!: (d: Dialer) => void;
  const connected = new Promise<Dialer>((resolve) => (resolveDialer = resolve));
  const { server, url } = await startServer((d) => resolveDialer(d));
  const listener = await dialAndListen(url, { params: { deviceId: "dev" }, reconnect: false });
  let accepted = 0;
  const counting = {
    accept: async (options?: { signal?: AbortSignal }) => {
      const conn = await listener.accept(options);
      accepted++;
      return conn;
    },
  };
  if (typeof handler === "function") {
    void serveHttp(counting, handler, { onError: (e) => errors.push(e) });
  } else {
    void (async () => {
      for (;;) handler.raw((await counting.accept().catch(() => null)) ?? (await new Promise<never>(() => {})));
    })();
  }
  const dialer = await within(connected, 5000, "device connect");
  return {
    server,
    dialer,
    listener,
    accepted: () => accepted,
    async close() {
      await listener.close();
      await server.close();
    },
  };
}

describe("dialer.fetch against a Node device running serveHttp", () => {
  let r: Rig;
  const errors: unknown[] = [];
  const seen: { aborted?: Promise<unknown> } = {};
  before(async () => {
    r = await rig(async (request) => {
      const url = new URL(request.url);
      switch (url.pathname) {
        case "/echo":
          return new Response(request.body, { headers: { "x-method": request.method } });
        case "/hash":
          return new Response(sha256Hex(new Uint8Array(await request.arrayBuffer())));
        case "/stream": {
          // Sends "tick" every 20 ms until the client has read 3 of them (it says so with ?n=3).
          let i = 0;
          return new Response(
            new ReadableStream({
              async pull(c) {
                await new Promise((res) => setTimeout(res, 20));
                if (i++ < 3) c.enqueue(new TextEncoder().encode(`tick${i};`));
                else c.close();
              },
            }),
          );
        }
        case "/hang":
          seen.aborted = new Promise((resolve) => request.signal.addEventListener("abort", () => resolve(request.signal.reason)));
          return new Promise<Response>(() => {});
        case "/headers":
          return new Response(JSON.stringify(Object.fromEntries(request.headers)), { headers: { "x-reply": "yes" } });
        default:
          return new Response(`hello ${url.pathname}`);
      }
    }, errors);
  });
  after(() => r.close());

  test("GET: status, headers, body; the URL's host is only the Host header", async () => {
    const res = await r.dialer.fetch("http://kiosk.local:1234/a?b=1", { headers: { "x-custom": "1" } });
    assert.equal(res.status, 200);
    assert.ok(res instanceof Response, "a global Response");
    assert.equal(await res.text(), "hello /a");
    const h = await (await r.dialer.fetch("http://kiosk.local:1234/headers", { headers: { "x-custom": "1" } })).json();
    assert.equal(h.host, "kiosk.local:1234");
    assert.equal(h["x-custom"], "1");
  });

  test("POST 1 MiB from a streaming body, echoed back streaming; a Request object works too", async () => {
    const data = randomBytes(1 << 20);
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < data.length; i += 100_000) c.enqueue(data.subarray(i, i + 100_000));
        c.close();
      },
    });
    const res = await r.dialer.fetch("http://d/echo", { method: "POST", body, duplex: "half" } as RequestInit);
    assert.equal(res.headers.get("x-method"), "POST");
    assert.equal(sha256Hex(new Uint8Array(await res.arrayBuffer())), sha256Hex(data));

    const req = new Request("http://d/hash", { method: "PUT", body: data });
    assert.equal(await (await r.dialer.fetch(req)).text(), sha256Hex(data));
  });

  test("a streamed response is read as it comes", async () => {
    const res = await r.dialer.fetch("http://d/stream");
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.equal(new TextDecoder().decode(first.value), "tick1;", "the first chunk arrives before the body ends");
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    assert.equal(rest, "tick2;tick3;");
  });

  test("connections are reused: sequential fetches share one stream", async () => {
    const before = r.accepted();
    for (let i = 0; i < 10; i++) await (await r.dialer.fetch(`http://d/${i}`)).text();
    assert.ok(r.accepted() - before <= 1, `${r.accepted() - before} streams for 10 sequential fetches`);
  });

  test("50 concurrent fetches", async () => {
    const texts = await Promise.all(Array.from({ length: 50 }, (_, i) => r.dialer.fetch(`http://d/c${i}`).then((res) => res.text())));
    assert.deepEqual(texts, Array.from({ length: 50 }, (_, i) => `hello /c${i}`));
  });

  test("init.signal aborts the fetch, resets the stream, and the device sees request.signal abort", async () => {
    const controller = new AbortController();
    const pending = r.dialer.fetch("http://d/hang", { signal: controller.signal });
    await within(
      (async () => {
        while (!seen.aborted) await new Promise((res) => setTimeout(res, 5));
      })(),
      2000,
      "request reaches the device",
    );
    controller.abort();
    await assert.rejects(pending, { name: "AbortError" });
    const reason = await within(seen.aborted!, 2000, "request.signal abort on the device");
    assert.ok(hasCode("ERR_STREAM_RESET")(reason), String(reason));
  });

  test("timeout: rejects with ERR_TIMEOUT", async () => {
    await assert.rejects(r.dialer.fetch("http://d/hang", { timeout: 100 }), hasCode("ERR_TIMEOUT"));
    await assert.rejects(new DeviceHttp(r.dialer, { timeout: 100 }).fetch("http://d/hang"), hasCode("ERR_TIMEOUT"));
    assert.throws(() => new DeviceHttp(r.dialer, { timeout: -1 }), RangeError);
  });

  test("dialer.agent serves node:http requests", async () => {
    const body = await new Promise<string>((resolve, reject) => {
      const req = http.request("http://device/echo", { method: "POST", agent: r.dialer.agent }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () => resolve(`${res.statusCode} ${text}`));
      });
      req.on("error", reject);
      req.end("via agent");
    });
    assert.equal(body, "200 via agent");
  });

  test("no handler error was reported", () => {
    assert.deepEqual(errors, []);
  });
});

describe("dialer.fetch when things go wrong", () => {
  test("device disconnect: every in-flight fetch rejects at once with the session's reason; later fetches too", async () => {
    let arrived = 0;
    const r = await rig(() => {
      arrived++;
      return new Promise<Response>(() => {});
    });
    try {
      const pending = Array.from({ length: 5 }, (_, i) => r.dialer.fetch(`http://d/${i}`, { timeout: 0 }));
      const settled = Promise.allSettled(pending);
      await within(
        (async () => {
          while (arrived < 5) await new Promise((res) => setTimeout(res, 5));
        })(),
        2000,
        "requests reach the device",
      );
      const t0 = performance.now();
      await r.listener.close();
      const results = await within(settled, 1000, "fetches reject after the device left");
      for (const result of results) {
        assert.equal(result.status, "rejected");
        assert.ok(hasCode("ERR_CONNECTION_LOST")((result as PromiseRejectedResult).reason), String((result as PromiseRejectedResult).reason));
      }
      assert.ok(performance.now() - t0 < 1000);
      await assert.rejects(r.dialer.fetch("http://d/"), hasCode("ERR_CONNECTION_LOST"));
    } finally {
      await r.close();
    }
  });

  test("a response body being read fails with the session's reason when the device leaves", async () => {
    const r = await rig(() => new Response(new ReadableStream({ start: (c) => c.enqueue(new Uint8Array(10)) })));
    try {
      const res = await r.dialer.fetch("http://d/");
      const reader = res.body!.getReader();
      await reader.read();
      await r.listener.close();
      await assert.rejects(within(reader.read(), 1000, "body read after disconnect"), hasCode("ERR_CONNECTION_LOST"));
    } finally {
      await r.close();
    }
  });

  test("a device answering garbage, or closing without an answer → HttpError (ERR_HTTP)", async () => {
    let mode = "garbage";
    const r = await rig({
      raw: (conn) => {
        void (async () => {
          const reader = conn.readable.getReader();
          await reader.read();
          reader.releaseLock();
          const writer = conn.writable.getWriter();
          if (mode === "garbage") await writer.write(new TextEncoder().encode("NOT HTTP AT ALL\r\n\r\n"));
          await writer.close();
        })().catch(() => {});
      },
    });
    try {
      await assert.rejects(r.dialer.fetch("http://d/"), (e: unknown) => hasCode("ERR_HTTP")(e) && (e as Error).cause !== undefined);
      mode = "silent";
      await assert.rejects(r.dialer.fetch("http://d/"), hasCode("ERR_HTTP"));
    } finally {
      await r.close();
    }
  });

  test("a body the device cuts short (FIN before Content-Length, or a reset) fails with ERR_HTTP", async () => {
    let mode = "fin";
    const r = await rig({
      raw: (conn) => {
        void (async () => {
          const reader = conn.readable.getReader();
          await reader.read();
          const writer = conn.writable.getWriter();
          await writer.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"));
          // The head is out first: wait until the client has read it, so the cut is in the body.
          await new Promise((res) => setTimeout(res, 20));
          if (mode === "fin") await writer.close();
          else conn.reset();
        })().catch(() => {});
      },
    });
    try {
      for (const m of ["fin", "reset"]) {
        mode = m;
        const res = await r.dialer.fetch("http://d/");
        await assert.rejects(within(res.text(), 2000, `body cut by ${m}`), (e: unknown) => hasCode("ERR_HTTP")(e) && (e as Error).cause !== undefined, m);
      }
    } finally {
      await r.close();
    }
  });

  test("a body that stalls fails after bodyTimeout with ERR_TIMEOUT and resets the stream", async () => {
    let deviceSaw: Promise<unknown> | undefined;
    const r = await rig({
      raw: (conn) => {
        deviceSaw = conn.closed.then(() => "closed", (e: unknown) => e);
        void (async () => {
          const reader = conn.readable.getReader();
          await reader.read();
          const writer = conn.writable.getWriter();
          await writer.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"));
        })().catch(() => {});
      },
    });
    try {
      const res = await r.dialer.fetch("http://d/", { bodyTimeout: 100 });
      const t0 = performance.now();
      await assert.rejects(within(res.text(), 3000, "stalled body"), hasCode("ERR_TIMEOUT"));
      assert.ok(performance.now() - t0 >= 90);
      const seen = await within(deviceSaw!, 2000, "the device sees the stream end");
      assert.ok(hasCode("ERR_STREAM_RESET")(seen), String(seen));
      assert.throws(() => new DeviceHttp(r.dialer, { bodyTimeout: -1 }), RangeError);
    } finally {
      await r.close();
    }
  });

  test("hostile answers: a head over maxHeadSize, an invalid status line, 1xx then a final answer", async () => {
    let answer = "";
    const r = await rig({
      raw: (conn) => {
        void (async () => {
          const reader = conn.readable.getReader();
          await reader.read();
          const writer = conn.writable.getWriter();
          await writer.write(new TextEncoder().encode(answer));
        })().catch(() => {});
      },
    });
    try {
      answer = `HTTP/1.1 200 OK\r\nx-big: ${"a".repeat(70_000)}\r\n\r\n`;
      await assert.rejects(within(r.dialer.fetch("http://d/"), 3000, "huge head"), (e: unknown) => hasCode("ERR_HTTP")(e) && /larger than 65536/.test(String(e)));
      answer = `HTTP/1.1 200 OK\r\nx-big: ${"a".repeat(2_000)}\r\n\r\n`;
      await assert.rejects(new DeviceHttp(r.dialer, { maxHeadSize: 1024 }).fetch("http://d/"), hasCode("ERR_HTTP"));
      for (const line of ["HTTP/1.1 99 Low", "HTTP/2 200 OK", "HTTP/1.1 200 OK\u0001", "HTTP/1.1 2000 OK"]) {
        answer = `${line}\r\ncontent-length: 0\r\n\r\n`;
        await assert.rejects(r.dialer.fetch("http://d/"), hasCode("ERR_HTTP"), line);
      }
      answer = "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
      const res = await r.dialer.fetch("http://d/");
      assert.equal(res.status, 201);
      assert.equal(await res.text(), "ok");
      answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n";
      await assert.rejects(r.dialer.fetch("http://d/"), hasCode("ERR_HTTP"));
    } finally {
      await r.close();
    }
  });

  test("an endless body: the caller cancels it and the device sees the stream reset", async () => {
    let deviceSaw: Promise<unknown> | undefined;
    const r = await rig({
      raw: (conn) => {
        deviceSaw = conn.closed.then(() => "closed", (e: unknown) => e);
        void (async () => {
          const reader = conn.readable.getReader();
          await reader.read();
          const writer = conn.writable.getWriter();
          await writer.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\n\r\n"));
          for (;;) await writer.write(new Uint8Array(16_384));
        })().catch(() => {});
      },
    });
    try {
      const res = await r.dialer.fetch("http://d/");
      const reader = res.body!.getReader();
      let n = 0;
      while (n < 1_000_000) n += (await reader.read()).value!.length;
      await reader.cancel();
      const seen = await within(deviceSaw!, 2000, "the device sees the reset");
      assert.ok(hasCode("ERR_STREAM_RESET")(seen), String(seen));
    } finally {
      await r.close();
    }
  });

  test("a reused connection the device closed meanwhile: the request goes again on a new stream", async () => {
    const r = await rig({
      raw: (conn) => {
        void (async () => {
          const reader = conn.readable.getReader();
          await reader.read();
          const writer = conn.writable.getWriter();
          // Answers keep-alive, then closes the connection anyway (as an idle timeout would).
          await writer.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
          await new Promise((res) => setTimeout(res, 20));
          await writer.close();
        })().catch(() => {});
      },
    });
    try {
      assert.equal(await (await r.dialer.fetch("http://d/")).text(), "ok");
      await new Promise((res) => setTimeout(res, 50));
      assert.equal(await (await r.dialer.fetch("http://d/", { method: "POST", body: "again" })).text(), "ok");
      assert.equal(r.accepted(), 2);
    } finally {
      await r.close();
    }
  });

  test("connections: at most that many streams, the other requests wait their turn", async () => {
    const r = await rig(async () => {
      await new Promise((res) => setTimeout(res, 10));
      return new Response("x");
    });
    try {
      const client = new DeviceHttp(r.dialer, { connections: 2 });
      const texts = await Promise.all(Array.from({ length: 10 }, () => client.fetch("http://d/").then((res) => res.text())));
      assert.deepEqual(texts, Array(10).fill("x"));
      assert.equal(r.accepted(), 2);
      assert.throws(() => new DeviceHttp(r.dialer, { maxHeadSize: 10 }), RangeError);
    } finally {
      await r.close();
    }
  });

  test("the device resets the stream mid-response → the body errors", async () => {
    const r = await rig({
      raw: (conn) => {
        void (async () => {
          const reader = conn.readable.getReader();
          await reader.read();
          const writer = conn.writable.getWriter();
          await writer.write(new TextEncoder().encode("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"));
          await new Promise((res) => setTimeout(res, 20));
          conn.reset();
        })().catch(() => {});
      },
    });
    try {
      const res = await r.dialer.fetch("http://d/");
      await assert.rejects(within(res.text(), 2000, "body after reset"));
    } finally {
      await r.close();
    }
  });
});

describe("serveHttp on a conn the application wrapped", () => {
  test("a device that read the first bytes itself hands on a wrapper: served through its web streams", async () => {
    const r = await rig({
      raw: (conn) => {
        void (async () => {
          // As a device sorting streams by their first bytes does (bench/http.ts): read, then put them back.
          const reader = conn.readable.getReader();
          const first = await reader.read();
          reader.releaseLock();
          const rest = conn.readable;
          const readable = new ReadableStream<Uint8Array>({
            start: (c) => c.enqueue(first.value!),
            pull: async (c) => {
              const more = rest.getReader();
              const { done, value } = await more.read();
              more.releaseLock();
              if (done) c.close();
              else c.enqueue(value);
            },
          });
          const wrapped = { readable, writable: conn.writable, closed: conn.closed, reset: () => conn.reset() };
          await serveHttpConn(wrapped, async (request) => new Response(`${request.method} ${new URL(request.url).pathname} ${await request.text()}`));
        })().catch(() => {});
      },
    });
    try {
      const res = await r.dialer.fetch("http://d/wrapped", { method: "POST", body: "hola" });
      assert.equal(await res.text(), "POST /wrapped hola");
      assert.equal(await (await r.dialer.fetch("http://d/again")).text(), "GET /again ");
    } finally {
      await r.close();
    }
  });
});
