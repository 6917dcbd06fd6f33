import assert from "node:assert/strict";
import http from "node:http";
import { connect } from "node:net";
import { after, describe, test } from "node:test";
import { dialAndListen, serveHttp, type Listener } from "../server-node/device.js";
import { Server, WslisError, type Dialer } from "../server-node/index.js";
import { readAll } from "./helpers/memory.js";
import * as hostile from "./helpers/hostile.js";
import { quiet, rawUpgrade, startServer } from "./helpers/net.js";
import { hasCode, turns, until, within } from "./helpers/assert.js";
import { FakeClock } from "./helpers/clock.js";
import { FRAMES_PER_TURN } from "../src/yamux/session.js";

const text = (s: string) => new TextEncoder().encode(s);

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

/** A device that echoes every stream; closed after the test file. */
async function echoDevice(url: string, options: Parameters<typeof dialAndListen>[1] = {}): Promise<Listener> {
  const listener = await dialAndListen(url, { reconnect: false, ...options });
  cleanup.push(() => listener.close());
  void (async () => {
    for await (const conn of listener) void conn.readable.pipeTo(conn.writable).catch(() => {});
  })();
  return listener;
}

async function roundTrip(dialer: Dialer, message: string): Promise<string> {
  const conn = await dialer.dial();
  const writer = conn.writable.getWriter();
  await writer.write(text(message));
  await writer.close();
  return new TextDecoder().decode(await readAll(conn.readable));
}

describe("authorization before the upgrade", () => {
  test("a refusal is plain HTTP 401/403: no 101, the handler never runs", async () => {
    let handled = 0;
    const { server, port, url } = await startServer(() => void handled++, {
      authorize: (req) => {
        const token = new URL(req.url!, "http://x").searchParams.get("token");
        if (token === "good") return true;
        if (token === "banned") return { status: 403, reason: "device banned" };
        return false;
      },
    });
    cleanup.push(() => server.close());
    const none = await rawUpgrade(port);
    assert.equal(none.status, 401);
    assert.doesNotMatch(none.head, /101/);
    const banned = await rawUpgrade(port, {}, "/?token=banned");
    assert.equal(banned.status, 403);
    assert.equal((await rawUpgrade(port, {}, "/?token=good")).status, 101);

    // The Node device surfaces the status and does not retry.
    let attempts = 0;
    await assert.rejects(
      dialAndListen(url, { params: () => (attempts++, { token: "bad" }), reconnect: { initialDelay: 10 } }),
      (e: any) => hasCode("ERR_UNAUTHORIZED")(e) && e.status === 401,
    );
    assert.equal(attempts, 1);
    await echoDevice(url, { params: { token: "good" } });
    await until(() => handled === 2, 2000, "handler for the good device");
    assert.deepEqual(server.metrics().refused, { unauthorized: 3 });
  });

  test("a throwing authorize answers 500 and the server lives on", async () => {
    const { server, port } = await startServer(() => {}, {
      authorize: () => {
        throw new Error("database down");
      },
    });
    cleanup.push(() => server.close());
    assert.equal((await rawUpgrade(port)).status, 500);
    assert.equal((await rawUpgrade(port)).status, 500);
  });

  test("refuseBrowsersWithCloseCode: a browser-like device is told 4401 and stops with ERR_UNAUTHORIZED", async () => {
    const { server, url } = await startServer(() => {}, {
      authorize: () => false,
      refuseBrowsersWithCloseCode: true,
      allowedOrigins: ["http://kiosk.test"],
    });
    cleanup.push(() => server.close());
    // The handshake itself succeeds (that is how the close code reaches a browser); the listener then
    // closes with the reason and makes no second attempt.
    let attempts = 0;
    const clock = new FakeClock();
    const listener = await dialAndListen(url, {
      headers: { Origin: "http://kiosk.test" },
      params: () => (attempts++, {}),
      reconnect: { initialDelay: 10 },
      session: { timers: clock },
    });
    const reason = await within(listener.closed, 2000);
    assert.ok(hasCode("ERR_UNAUTHORIZED")(reason), String(reason));
    clock.advance(60_000); // past every backoff delay
    await turns(10);
    assert.equal(attempts, 1);
  });

  test("origins: same-origin by default, allow-list or predicate when given", async () => {
    const { server, port } = await startServer(() => {});
    cleanup.push(() => server.close());
    assert.equal((await rawUpgrade(port, { Origin: "http://evil.test" })).status, 403);
    assert.equal((await rawUpgrade(port, { Origin: `http://127.0.0.1:${port}` })).status, 101);
    assert.equal((await rawUpgrade(port)).status, 101, "non-browser clients send no Origin");

    const listed = await startServer(() => {}, { allowedOrigins: ["https://kiosk.example.com"] });
    cleanup.push(() => listed.server.close());
    assert.equal((await rawUpgrade(listed.port, { Origin: "https://kiosk.example.com" })).status, 101);
    assert.equal((await rawUpgrade(listed.port, { Origin: "https://other.example.com" })).status, 403);

    const predicate = await startServer(() => {}, { allowedOrigins: (origin) => origin.endsWith(".corp.test") });
    cleanup.push(() => predicate.server.close());
    assert.equal((await rawUpgrade(predicate.port, { Origin: "https://a.corp.test" })).status, 101);
    assert.equal((await rawUpgrade(predicate.port, { Origin: "https://a.corp.test.evil" })).status, 403);
    assert.equal(predicate.server.metrics().refused.origin, 1);
  });

  test("origins are compared by scheme, host and port", async () => {
    const { server, port } = await startServer(() => {});
    cleanup.push(() => server.close());
    assert.equal((await rawUpgrade(port, { Origin: `https://127.0.0.1:${port}` })).status, 403, "other scheme");
    assert.equal((await rawUpgrade(port, { Origin: `http://127.0.0.1:${port + 1}` })).status, 403, "other port");
    assert.equal((await rawUpgrade(port, { Origin: `HTTP://127.0.0.1:${port}` })).status, 101, "case of the scheme");

    const listed = await startServer(() => {}, { allowedOrigins: ["https://kiosk.example.com"] });
    cleanup.push(() => listed.server.close());
    assert.equal((await rawUpgrade(listed.port, { Origin: "https://kiosk.example.com:443" })).status, 101, "default port");
    assert.equal((await rawUpgrade(listed.port, { Origin: "http://kiosk.example.com" })).status, 403, "other scheme");
    assert.equal((await rawUpgrade(listed.port, { Origin: "https://kiosk.example.com:8443" })).status, 403, "other port");
  });

  test("origin option: the server's own origin, not the Host header, decides same-origin (forged Host, proxy rewrite)", async () => {
    const { server, port } = await startServer(() => {}, { origin: "https://kiosk.example.com" });
    cleanup.push(() => server.close());
    // A page on evil.test forging Host to match its own Origin.
    assert.equal((await rawUpgrade(port, { Host: "evil.test", Origin: "http://evil.test" })).status, 403);
    // Behind a TLS proxy that rewrites Host to the upstream (nginx's default): the real origin passes.
    assert.equal((await rawUpgrade(port, { Host: `127.0.0.1:${port}`, Origin: "https://kiosk.example.com" })).status, 101);
    assert.equal((await rawUpgrade(port, { Origin: `http://127.0.0.1:${port}` })).status, 403);
    assert.throws(() => new Server(() => {}, { origin: "kiosk.example.com" }), /origin: not an origin/);
  });

  test("token via protocols: the server echoes the chosen subprotocol", async () => {
    let seen: string | undefined;
    const { server, url } = await startServer((d) => void (seen = d.protocol), {
      selectProtocol: (protocols) => [...protocols].find((p) => p.startsWith("token.")) ?? false,
      authorize: (req) => String(req.headers["sec-websocket-protocol"]).includes("token.s3cret"),
    });
    cleanup.push(() => server.close());
    const listener = await echoDevice(url, { protocols: ["wslis", "token.s3cret"] });
    await until(() => seen !== undefined, 2000, "handler");
    assert.equal(seen, "token.s3cret");
    assert.ok(listener.session);
  });

  test("identify: deviceId param, then DeviceId header, then a custom function", async () => {
    const ids: string[] = [];
    const { server, url } = await startServer((d) => void ids.push(d.id));
    cleanup.push(() => server.close());
    await echoDevice(url, { params: { deviceId: "from-param" } });
    await echoDevice(url, { headers: { DeviceId: "from-header" } });
    await until(() => ids.length === 2, 2000, "two handlers");
    assert.deepEqual(ids.sort(), ["from-header", "from-param"]);
    assert.deepEqual([...server.devices.keys()].sort(), ["from-header", "from-param"]);

    const custom = await startServer(() => {}, { identify: (req) => String(req.headers["x-serial"]) });
    cleanup.push(() => custom.server.close());
    await echoDevice(custom.url, { headers: { "X-Serial": "SN-1" } });
    await until(() => custom.server.devices.has("SN-1"), 2000, "SN-1 registered");
  });
});

describe("registry", () => {
  test("one session per id: the newest wins; the replaced device (default reconnect) stops with ERR_REPLACED, no fight", async () => {
    const events: string[] = [];
    const { server, url } = await startServer(() => {});
    cleanup.push(() => server.close());
    for (const type of ["connect", "disconnect", "replace"] as const) {
      server.addEventListener(type, (e) => {
        const d = (e as CustomEvent).detail;
        events.push(`${type}:${d.dialer.id}${d.reason ? `:${d.reason.code}` : ""}`);
      });
    }
    // Both devices as a user runs them: default options, default reconnect (the first on a clock the test
    // moves, counting its dials).
    const clock = new FakeClock();
    let firstDials = 0;
    const device = async (first = false) => {
      const listener = await dialAndListen(
        url,
        first ? { params: () => (firstDials++, { deviceId: "kiosk-1" }), session: { timers: clock } } : { params: { deviceId: "kiosk-1" } },
      );
      cleanup.push(() => listener.close());
      void (async () => {
        for await (const conn of listener) void conn.readable.pipeTo(conn.writable).catch(() => {});
      })();
      return listener;
    };
    const first = await device(true);
    await until(() => server.devices.size === 1, 2000, "first device");
    const oldDialer = server.devices.get("kiosk-1")!;
    // A read in flight on the old session (the echo never ends: no FIN sent); its outcome is kept at once.
    const pendingOnOld = oldDialer.dial().then((c) => readAll(c.readable)).then(() => undefined, (e: unknown) => e);

    const second = await device();
    await until(() => server.devices.get("kiosk-1") !== oldDialer, 2000, "replacement");
    const newDialer = server.devices.get("kiosk-1")!;
    assert.ok(hasCode("ERR_REPLACED")(await within(pendingOnOld, 1000)));
    assert.equal((await within(oldDialer.closed, 1000) as WslisError).code, "ERR_REPLACED");

    // The replaced device learns why and does not fight back by redialing.
    const reason = await within(first.closed, 2000);
    assert.equal((reason as WslisError).code, "ERR_REPLACED");
    // Past every delay of the default backoff (at most 30 s): a redial would have started by now.
    clock.advance(60_000);
    await turns(10);
    assert.equal(firstDials, 1, "the replaced device did not redial");
    assert.deepEqual(events, ["connect:kiosk-1", "replace:kiosk-1", "disconnect:kiosk-1:ERR_REPLACED", "connect:kiosk-1"]);
    assert.equal(server.devices.get("kiosk-1"), newDialer);
    assert.equal(await roundTrip(newDialer, "still served"), "still served");
    assert.ok(second.session);
  });

  test("anonymous devices get unguessable ids", async () => {
    const { server, url } = await startServer(() => {});
    cleanup.push(() => server.close());
    await echoDevice(url);
    await echoDevice(url);
    await until(() => server.devices.size === 2, 2000, "two anonymous devices");
    const ids = [...server.devices.keys()];
    for (const id of ids) assert.match(id, /^anonymous-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.notEqual(ids[0], ids[1]);
  });
});

describe("identity from the credential", () => {
  test("authorize resolving to { id, data }: the id comes from the credential, identify is not consulted, data is dialer.auth", async () => {
    const credentials: Record<string, { device: string; site: string }> = { "tok-mallory": { device: "mallory", site: "lab" } };
    let identified = 0;
    const seen: { id: string; auth: unknown }[] = [];
    const { server, url } = await startServer((d) => void seen.push({ id: d.id, auth: d.auth }), {
      authorize: (req) => {
        const credential = credentials[String(req.headers.authorization)];
        return credential ? { id: credential.device, data: { site: credential.site } } : false;
      },
      identify: () => (identified++, "from-identify"),
    });
    cleanup.push(() => server.close());
    // Valid credentials for "mallory", claiming to be "victim" both ways the default identify reads.
    await echoDevice(url, { headers: { Authorization: "tok-mallory", DeviceId: "victim" }, params: { deviceId: "victim" } });
    await until(() => seen.length === 1, 2000, "handler");
    assert.deepEqual(seen, [{ id: "mallory", auth: { site: "lab" } }]);
    assert.deepEqual([...server.devices.keys()], ["mallory"]);
    assert.equal(identified, 0);
  });

  test("authorize resolving to { id } without a usable id answers 500 and the server lives on", async () => {
    const { server, port } = await startServer(() => {}, { authorize: () => ({ id: "" }) });
    cleanup.push(() => server.close());
    assert.equal((await rawUpgrade(port)).status, 500);
    assert.equal(server.devices.size, 0);
  });

  test("a server without authorize warns once at start that any client can claim any id; with it, no warning", async () => {
    const warnings: string[] = [];
    const logger = { warn: (m: string) => void warnings.push(m), error() {} };
    const open = new Server(() => {}, { logger });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /any client can connect and claim any device id/);
    await open.close();
    new Server(() => {}, { logger, authorize: () => true });
    assert.equal(warnings.length, 1);
  });
});

describe("limits", () => {
  test("maxDevices: the next upgrade gets 503 before any WebSocket", async () => {
    const { server, url, port } = await startServer(() => {}, { maxDevices: 2 });
    cleanup.push(() => server.close());
    await echoDevice(url, { params: { deviceId: "a" } });
    await echoDevice(url, { params: { deviceId: "b" } });
    assert.equal((await rawUpgrade(port)).status, 503);
    assert.equal(server.metrics().refused.capacity, 1);
  });

  test("an oversized upgrade head gets 431; a client that never upgrades is dropped after handshakeTimeout", async () => {
    const { server, port } = await startServer(() => {}, { maxHeaderSize: 2048, handshakeTimeout: 300 });
    cleanup.push(() => server.close());
    assert.equal((await rawUpgrade(port, { "X-Big": "x".repeat(4096) })).status, 431);
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    await within(
      new Promise<void>((resolve) => {
        socket.on("data", (chunk) => (answer += chunk.toString()));
        socket.on("close", () => resolve());
        socket.on("error", () => {});
        socket.write("GET / HTTP/1.1\r\nHost: x\r\n"); // and never finish the head
      }),
      3000,
      "the idle socket to be dropped",
    );
    assert.match(answer, /^HTTP\/1\.1 408 /);
  });

  test("a failing handler is logged and closes only that device", async () => {
    const logged: unknown[] = [];
    let calls = 0;
    const { server, url } = await startServer(
      (d) => {
        calls++;
        if (d.id === "bad") throw new Error("handler bug");
      },
      { logger: { warn() {}, error: (...args: unknown[]) => void logged.push(args) } },
    );
    cleanup.push(() => server.close());
    const bad = await echoDevice(url, { params: { deviceId: "bad" } });
    await echoDevice(url, { params: { deviceId: "good" } });
    await within(bad.closed, 2000);
    await until(() => calls === 2 && server.devices.size === 1, 2000, "one device left");
    assert.equal(logged.length, 1);
    assert.equal(await roundTrip(server.devices.get("good")!, "alive"), "alive");
  });

  test("the http option sets every dialer.fetch's defaults (here: a 200 ms timeout)", async () => {
    const { server, url } = await startServer(() => {}, { http: { timeout: 200 } });
    cleanup.push(() => server.close());
    const listener = await dialAndListen(url, { params: { deviceId: "slow" }, reconnect: false });
    cleanup.push(() => listener.close());
    void serveHttp(listener, () => new Promise<Response>(() => {}), { onError() {} }); // never answers
    await until(() => server.devices.has("slow"), 2000, "device");
    const started = Date.now();
    await assert.rejects(server.devices.get("slow")!.fetch("http://device/"), hasCode("ERR_TIMEOUT"));
    assert.ok(Date.now() - started < 1500);
  });

  test("a throwing identify closes that device with 1011 and the server lives on", async () => {
    const { server, url } = await startServer(() => {}, {
      identify: (req) => {
        if (req.url?.includes("bad")) throw new Error("identify bug");
        return "fine";
      },
    });
    cleanup.push(() => server.close());
    const listener = await dialAndListen(`${url}?bad=1`, { reconnect: false });
    const reason = await within(listener.closed, 2000);
    assert.match(reason.message, /1011/);
    await echoDevice(url);
    await until(() => server.devices.has("fine"), 2000, "the next device is served");
  });

  test("options are validated eagerly", () => {
    assert.throws(() => new Server(() => {}, { maxDevices: 0 }), RangeError);
    assert.throws(() => new Server(() => {}, { session: { keepAliveTimeout: 0 } }), /keepAliveTimeout/);
    assert.throws(() => new Server("nope" as never), TypeError);
  });
});

describe("drain and metrics", () => {
  test("close(): GoAway, in-flight streams finish, then devices see ERR_SERVER_SHUTDOWN", async () => {
    const { server, url, port } = await startServer(() => {}, { drainTimeout: 3000, logger: quiet });
    const listener = await dialAndListen(url, { params: { deviceId: "d" }, reconnect: false });
    cleanup.push(() => listener.close());
    await until(() => server.devices.size === 1, 2000, "device");
    const dialer = server.devices.get("d")!;
    const conn = await dialer.dial();
    const deviceConn = await listener.accept();
    const closing = server.close();
    await until(() => listener.session?.remoteGoAway === true, 1000, "GoAway at the device");
    await assert.rejects(rawUpgrade(port), /ECONNREFUSED/, "no new devices while draining");
    // The in-flight stream still works during the drain.
    const writer = conn.writable.getWriter();
    await writer.write(text("last words"));
    await writer.close();
    assert.equal(new TextDecoder().decode(await readAll(deviceConn.readable)), "last words");
    await deviceConn.close();
    await readAll(conn.readable);
    await within(closing, 2000);
    const reason = await within(listener.closed, 2000);
    assert.equal((reason as WslisError).code, "ERR_SERVER_SHUTDOWN");
    await assert.rejects(rawUpgrade(port), /ECONNREFUSED/, "the port is closed");
  });

  test("close() is bounded by drainTimeout while a device holds a stream open and keeps writing to it", async () => {
    const { server, url } = await startServer(() => {}, { drainTimeout: 300, logger: quiet });
    const listener = await dialAndListen(url, { params: { deviceId: "stuck" }, reconnect: false });
    cleanup.push(() => listener.close());
    await until(() => server.devices.size === 1, 2000, "device");
    const conn = await server.devices.get("stuck")!.dial();
    const deviceConn = await listener.accept();
    // The device writes more than the window; the server never reads: the stream can never end by itself.
    void deviceConn.writable.getWriter().write(new Uint8Array(4 * 1024 * 1024)).catch(() => {});
    await within(server.close(), 3000, "server.close() past its 300 ms drain");
    await assert.rejects(within(conn.closed, 1000, "the held stream"), hasCode("ERR_SERVER_SHUTDOWN"));
    assert.equal(((await within(listener.closed, 2000, "the device's session")) as WslisError).code, "ERR_SERVER_SHUTDOWN");
  });

  test("close() closes the reverse-HTTP connections kept for reuse (fetch and agent) and waits only for the calls in flight", async () => {
    const { server, url } = await startServer(() => {}, { drainTimeout: 5000, logger: quiet });
    const listener = await dialAndListen(url, { params: { deviceId: "web" }, reconnect: false });
    cleanup.push(() => listener.close());
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let slowStarted = false;
    void serveHttp(listener, async (request) => {
      if (new URL(request.url).pathname === "/slow") {
        slowStarted = true;
        await released;
      }
      return new Response("done");
    });
    await until(() => server.devices.size === 1, 2000, "device");
    const dialer = server.devices.get("web")!;
    // Connections now idle in both clients' pools: each holds a stream open at the device.
    assert.equal(await (await dialer.fetch("http://device/")).text(), "done");
    const viaAgent = await new Promise<string>((resolve, reject) => {
      http.get("http://device/", { agent: dialer.agent }, (res) => {
        res.setEncoding("utf8");
        let body = "";
        res.on("data", (chunk: string) => (body += chunk)).on("end", () => resolve(body)).on("error", reject);
      }).on("error", reject);
    });
    assert.equal(viaAgent, "done");
    const slow = dialer.fetch("http://device/slow").then((res) => res.text());
    await until(() => slowStarted, 2000, "the slow call at the device");
    const started = performance.now();
    const closing = server.close();
    await until(() => listener.session?.remoteGoAway === true, 1000, "GoAway at the device");
    await assert.rejects(dialer.fetch("http://device/"), hasCode("ERR_SERVER_SHUTDOWN"), "a new call during the drain");
    await new Promise((resolve) => setTimeout(resolve, 300));
    release();
    assert.equal(await slow, "done", "the call in flight finished during the drain");
    await within(closing, 2000, "close() once the call in flight is done");
    // Before, the idle connections kept the session busy until drainTimeout (5 s).
    assert.ok(performance.now() - started < 2000, `close() took ${Math.round(performance.now() - started)} ms`);
  });

  test("metrics: devices, sessions by reason, streams, bytes and RTT histogram; Prometheus text", async () => {
    const { server, url } = await startServer(() => {});
    cleanup.push(() => server.close());
    const a = await echoDevice(url, { params: { deviceId: "m1" } });
    await echoDevice(url, { params: { deviceId: "m2" } });
    await until(() => server.devices.size === 2, 2000, "devices");
    await roundTrip(server.devices.get("m2")!, "x".repeat(1000));
    await until(() => server.metrics().rtt.count === 2, 2000, "each session's first ping");
    await server.devices.get("m2")!.ping();
    await a.close();
    await until(() => server.devices.size === 1, 2000, "m1 gone");
    const m = server.metrics();
    assert.equal(m.devices, 1);
    assert.equal(m.sessionsOpened, 2);
    assert.deepEqual(m.sessionsClosed, { ERR_CONNECTION_LOST: 1 });
    assert.ok(m.bytesIn > 1000 && m.bytesOut > 1000);
    assert.equal(m.rtt.count, 3, "two sessions' first pings and ours");
    assert.equal(m.rtt.buckets["+Inf"], 3);
    const text = server.prometheus();
    assert.match(text, /^wslis_devices 1$/m);
    assert.match(text, /^wslis_sessions_closed_total\{reason="ERR_CONNECTION_LOST"\} 1$/m);
    assert.match(text, /^wslis_ping_rtt_milliseconds_count 3$/m);
  });
});

describe("hostile devices (hand-written frames over a raw WebSocket)", () => {
  const { F, GoAway, T, frame, headers, hostileDevice } = hostile;

  test("streams a device opens toward the server are refused at once with RST, and none of their data is kept", async () => {
    const { server, url } = await startServer(() => {});
    cleanup.push(() => server.close());
    const peer = await hostileDevice(url);
    cleanup.push(() => peer.destroy());
    // 256 streams (the old backlog), each opened by a Data frame carrying 64 KiB with its header: 16 MiB
    // offered, in messages of 1 MiB (maxPayload refuses larger ones).
    const body = new Uint8Array(64 * 1024 - 12);
    for (let message = 0; message < 16; message++) {
      const frames = [];
      for (let i = 0; i < 16; i++) frames.push(frame(T.Data, F.SYN, 2 * (message * 16 + i + 1), body.length, body));
      await peer.send(Buffer.concat(frames));
    }
    await until(() => peer.reader.counts.rst === 256, 5000, "an RST for every device-opened stream");
    assert.equal(peer.reader.frames.filter((f) => f.streamID % 2 === 0 && f.flags & F.ACK).length, 0, "no device-opened stream is accepted");
    assert.equal(server.metrics().streams, 0);
    assert.equal(peer.isClosed, false, "refusing streams is not a reason to drop the device");
    assert.doesNotThrow(() => new Server(() => {}, { session: { acceptBacklog: 0 } }), "acceptBacklog: 0 is valid");
  });

  test("a Data header announcing more than the stream's window is refused from its header, before the body", async () => {
    const { server, url } = await startServer((dialer) => void dialer.dial().catch(() => {}));
    cleanup.push(() => server.close());
    const reason = new Promise<Error>((resolve) =>
      server.addEventListener("disconnect", (e) => resolve((e as CustomEvent<{ reason: Error }>).detail.reason)),
    );
    const peer = await hostileDevice(url);
    cleanup.push(() => peer.destroy());
    await within(peer.reader.next((f) => f.streamID === 1 && (f.flags & F.SYN) !== 0), 5000, "the server opening stream 1");
    await peer.send(frame(T.WindowUpdate, F.ACK, 1, 0));
    // One byte beyond the 256 KiB window, and only 25 bytes of that body ever come.
    await peer.send(frame(T.Data, 0, 1, 256 * 1024 + 1, new Uint8Array(25)));
    await within(peer.reader.next((f) => f.type === T.GoAway), 2000, "GoAway after the oversized header");
    assert.deepEqual(peer.reader.goAwayCodes, [GoAway.ProtocolError]);
    assert.ok(hasCode("ERR_PROTOCOL")(await within(reason, 2000, "the device's session ending")));
  });

  test("a message of 87,000 pings closes that device as abusive (GoAway protocol error); another device is served", async () => {
    let echo: Dialer | undefined;
    const { server, url } = await startServer((dialer) => {
      if (dialer.id === "good") echo = dialer;
    });
    cleanup.push(() => server.close());
    await echoDevice(url, { params: { deviceId: "good" } });
    await until(() => echo !== undefined, 2000, "the good device");
    const reason = new Promise<Error>((resolve) =>
      server.addEventListener("disconnect", (e) => {
        const { dialer, reason } = (e as CustomEvent<{ dialer: Dialer; reason: Error }>).detail;
        if (dialer.id === "flooder") resolve(reason);
      }),
    );
    const peer = await hostileDevice(url, "flooder");
    cleanup.push(() => peer.destroy());
    await peer.send(headers(87_000, (i) => [T.Ping, F.SYN, 0, i]));
    const ended = await within(reason, 5000, "the flooding device's session ending");
    assert.ok(hasCode("ERR_ABUSIVE_PEER")(ended), `ended with ${String(ended)}`);
    await within(peer.closed, 5000, "the flooder's WebSocket closing");
    assert.deepEqual(peer.reader.goAwayCodes, [GoAway.ProtocolError]);
    // The message is handled FRAMES_PER_TURN frames per turn until its frame past the budget: one pong per turn.
    assert.ok(peer.reader.counts.pong <= 4096 / FRAMES_PER_TURN, `${peer.reader.counts.pong} pongs answered the flood`);
    assert.equal(await within(roundTrip(echo!, "still here"), 5000, "the good device's round trip"), "still here");
    assert.equal(server.metrics().sessionsClosed["ERR_ABUSIVE_PEER"], 1);
  });

  test("a device that floods pings and stops reading: its pongs do not pile up (one per burst at most)", async () => {
    const { server, url } = await startServer(() => {});
    cleanup.push(() => server.close());
    const peer = await hostileDevice(url);
    cleanup.push(() => peer.destroy());
    peer.stopReading();
    for (let message = 0; message < 200; message++) await peer.send(headers(1000, (i) => [T.Ping, F.SYN, 0, message * 1000 + i]));
    peer.resumeReading();
    await peer.send(frame(T.Ping, F.SYN, 0, 0xfeedf00d));
    await within(Promise.race([peer.closed, peer.reader.next((f) => f.type === T.Ping && f.length === 0xfeedf00d)]), 10_000, "the last ping's answer");
    assert.ok(peer.reader.counts.pong <= 201, `${peer.reader.counts.pong} pongs for 200 bursts of 1,000 pings`);
    assert.ok(!peer.reader.goAwayCodes.includes(GoAway.InternalError));
  });

  test("a device that never acknowledges streams: dials past maxUnackedOpens wait, and time out or abort; opening at once sets no timer", async () => {
    const clock = new FakeClock();
    // The dial deadlines among the session's timers: the only ones of 5000 ms, and when they are cleared.
    const deadlines = new Set<unknown>();
    const setTimer = clock.setTimeout.bind(clock);
    const clearTimer = clock.clearTimeout.bind(clock);
    clock.setTimeout = (fn: () => void, ms: number) => {
      const handle = setTimer(() => (deadlines.delete(handle), fn()), ms);
      if (ms === 5000) deadlines.add(handle);
      return handle;
    };
    clock.clearTimeout = (handle: unknown) => (deadlines.delete(handle), clearTimer(handle));
    const dialers: Dialer[] = [];
    const { server, url } = await startServer((dialer) => void dialers.push(dialer), {
      dialTimeout: 5000,
      session: { timers: clock, maxUnackedOpens: 2 },
    });
    cleanup.push(() => server.close());
    const peer = await hostileDevice(url);
    cleanup.push(() => peer.destroy());
    await until(() => dialers.length === 1, 2000, "the device");
    const dialer = dialers[0]!;
    const opened = [await dialer.dial(), await dialer.dial()];
    assert.equal(deadlines.size, 0, "a dial that opens at once sets no timer");
    const waiting = dialer.dial();
    waiting.catch(() => {});
    await turns(5);
    assert.equal(deadlines.size, 1, "a dial waiting for a slot has its deadline");
    clock.advance(5000);
    const timedOut = await within(waiting.then(() => undefined, (e: unknown) => e), 1000, "the timed-out dial");
    assert.ok(hasCode("ERR_TIMEOUT")(timedOut));
    assert.match((timedOut as Error).message, /dial timed out after 5000 ms/);
    assert.equal(deadlines.size, 0);
    const controller = new AbortController();
    const aborted = dialer.dial({ signal: controller.signal });
    aborted.catch(() => {});
    await turns(5);
    assert.equal(deadlines.size, 1);
    controller.abort(new Error("no longer needed"));
    assert.equal(((await within(aborted.then(() => undefined, (e: unknown) => e), 1000, "the aborted dial")) as Error).message, "no longer needed");
    assert.equal(deadlines.size, 0, "the aborted dial's deadline is cleared");
    // An ACK frees a slot: the next waiting dial opens, and its deadline is cleared.
    const next = dialer.dial();
    await turns(5);
    await peer.send(frame(T.WindowUpdate, F.ACK, opened[0]!.streamID, 0));
    assert.equal((await within(next, 1000, "the dial after an ACK")).streamID, opened[1]!.streamID + 2);
    assert.equal(deadlines.size, 0);
  });

  test("a device that grants credit, stops reading, then breaks the protocol: the writes waiting on it fail, nothing crashes", async () => {
    // The server's writes wait for its socket to drain, not for credit. The session ending while they
    // wait (here: a frame of another protocol version; as well a keepalive timeout or a close) used to
    // leave a rejected promise nobody handled behind each of them, which ends a Node process by default.
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    cleanup.push(() => void process.off("unhandledRejection", onUnhandled));
    const dialers: Dialer[] = [];
    const { server, url } = await startServer((dialer) => void dialers.push(dialer));
    cleanup.push(() => server.close());
    const peer = await hostileDevice(url);
    cleanup.push(() => peer.destroy());
    await until(() => dialers.length === 1, 2000, "the device");
    const conns = await Promise.all(Array.from({ length: 4 }, () => dialers[0]!.dial()));
    for (const conn of conns) await peer.send(frame(T.WindowUpdate, F.ACK, conn.streamID, 64 * 1024 * 1024));
    peer.stopReading();
    const chunk = new Uint8Array(1024 * 1024);
    const writers = conns.map((conn) => conn.writable.getWriter());
    const waiting: Promise<void>[] = [];
    for (const writer of writers) {
      // Write until a write waits: the socket's buffers, the kernel's and the transport's are full.
      for (let i = 0; i < 64; i++) {
        const write = writer.write(chunk);
        write.catch(() => {});
        const settled = await Promise.race([write.then(() => true, () => true), new Promise((resolve) => setTimeout(resolve, 100, false))]);
        if (!settled) {
          waiting.push(write);
          break;
        }
      }
    }
    assert.equal(waiting.length, writers.length, "every stream has a write waiting for the socket to drain");
    const bad = frame(T.Ping, F.SYN, 0, 1);
    bad[0] = 1; // version 1: not yamux as this side speaks it
    await peer.send(bad);
    const results = await within(Promise.allSettled(waiting), 5000, "the waiting writes");
    for (const result of results) {
      assert.equal(result.status, "rejected", "a write waiting when the session ended fails");
      assert.ok((result as PromiseRejectedResult).reason instanceof WslisError);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(unhandled, []);
    // And the server goes on: another device connects and is reached.
    const echo = await echoDevice(url, { params: { deviceId: "after" } });
    cleanup.push(() => echo.close());
    await until(() => server.devices.has("after"), 2000, "the next device");
    assert.equal(await within(roundTrip(server.devices.get("after")!, "still up"), 5000, "a round trip"), "still up");
  });
});
