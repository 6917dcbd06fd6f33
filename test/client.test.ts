import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, describe, test } from "node:test";
import { dialAndListen as browserDialAndListen } from "../src/index.js";
import { dialAndListen, listen, type Listener } from "../server-node/device.js";
import type { Dialer } from "../server-node/index.js";
import { readAll } from "./helpers/memory.js";
import { startServer } from "./helpers/net.js";
import { hasCode, until, within } from "./helpers/assert.js";

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

/** A TCP server that accepts connections and never answers: a handshake that hangs. */
async function blackHole(): Promise<string> {
  const sockets = new Set<import("node:net").Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return `ws://127.0.0.1:${(server.address() as import("node:net").AddressInfo).port}/`;
}

describe("dialAndListen", () => {
  test("handshakeTimeout bounds a handshake that never completes", async () => {
    const url = await blackHole();
    const started = Date.now();
    await assert.rejects(dialAndListen(url, { handshakeTimeout: 300, reconnect: false }), hasCode("ERR_TIMEOUT"));
    assert.ok(Date.now() - started < 2000);
  });

  test("the signal aborts dialing and retrying", async () => {
    const url = await blackHole();
    const controller = new AbortController();
    const dialing = dialAndListen(url, { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await within(assert.rejects(dialing, { name: "AbortError" }), 1000);
  });

  test("an already-aborted signal rejects at once and the server never sees a device", async () => {
    let handled = 0;
    const upgrades: string[] = [];
    const { server, url } = await startServer(() => void handled++, { authorize: (req) => (upgrades.push(req.url!), true) });
    cleanup.push(() => server.close());
    const reason = new Error("gave up before starting");
    await within(assert.rejects(dialAndListen(url, { signal: AbortSignal.abort(reason) }), (e) => e === reason), 1000);
    const listener = listen(url, { signal: AbortSignal.abort() });
    await assert.rejects(listener.ready, { name: "AbortError" });
    assert.equal((await within(listener.closed, 1000)).name, "AbortError");
    // The server may be reached only by a dial that was started: give one a chance to land.
    const probe = await dialAndListen(url, { reconnect: false });
    await probe.close();
    assert.deepEqual(upgrades, ["/"], "only the probe reached the server");
    await until(() => handled === 1, 2000, "the probe's handler");
  });

  test("listen(): the Listener exists before the first connection; its events show every attempt", async () => {
    const { server, url } = await startServer(() => {}, { authorize: () => ({ status: 503 }) });
    cleanup.push(() => server.close());
    const listener = listen(url, { reconnect: { initialDelay: 20, maxDelay: 40, maxRetries: 2 } });
    const events: (number | undefined)[] = [];
    listener.addEventListener("disconnect", (e) => events.push((e as CustomEvent).detail.retryIn));
    await assert.rejects(listener.ready, (e: any) => e.status === 503);
    assert.equal(events.length, 3);
    assert.ok(events.slice(0, 2).every((ms) => typeof ms === "number" && ms >= 0 && ms <= 40));
    assert.equal(events[2], undefined, "the last failure announces no retry");
    assert.ok(hasCode("ERR_HANDSHAKE")(await within(listener.closed, 1000)));
  });

  test("maxRetries: gives up after that many retries with the last error", async () => {
    const { server, url } = await startServer(() => {}, { authorize: () => ({ status: 503, reason: "maintenance" }) });
    cleanup.push(() => server.close());
    let attempts = 0;
    await assert.rejects(
      dialAndListen(url, { params: () => (attempts++, {}), reconnect: { initialDelay: 5, maxRetries: 3 } }),
      (e: any) => hasCode("ERR_HANDSHAKE")(e) && e.status === 503,
    );
    assert.equal(attempts, 4);
  });

  test("bad options fail at once with a clear error", async () => {
    await assert.rejects(dialAndListen("ftp://x"), TypeError);
    await assert.rejects(dialAndListen("not a url"), TypeError);
    await assert.rejects(dialAndListen("ws://127.0.0.1:1", { handshakeTimeout: -1 }), RangeError);
    await assert.rejects(dialAndListen("ws://127.0.0.1:1", { reconnect: { multiplier: 0.5 } }), RangeError);
    await assert.rejects(dialAndListen("ws://127.0.0.1:1", { session: { streamWindow: 1 } }), /streamWindow/);
  });

  test("the browser build refuses `headers` with a TypeError that points to params", async () => {
    await assert.rejects(
      browserDialAndListen("ws://127.0.0.1:1", { headers: { Authorization: "x" }, WebSocket: class {} as never }),
      (e: unknown) => e instanceof TypeError && /params/.test(e.message) && /browsers cannot send/.test(e.message),
    );
  });

  test("params and protocols providers run on every (re)connect, so tokens refresh", async () => {
    const tokens: string[] = [];
    let issued = 0;
    const { server, url } = await startServer(() => {}, {
      authorize: (req) => {
        const token = new URL(req.url!, "http://x").searchParams.get("token")!;
        tokens.push(`${token}/${req.headers["sec-websocket-protocol"]}`);
        return true;
      },
    });
    cleanup.push(() => server.close());
    const listener = await dialAndListen(url, {
      params: async () => ({ deviceId: "t", token: `t${++issued}` }),
      protocols: () => [`p${issued}`],
      reconnect: { initialDelay: 5, maxDelay: 20 },
    });
    cleanup.push(() => listener.close());
    for (let i = 0; i < 3; i++) {
      await until(() => server.devices.has("t"), 2000, "device connected");
      server.devices.get("t")!.close();
      await until(() => tokens.length === i + 2, 3000, "reconnect");
    }
    assert.deepEqual(tokens, ["t1/p1", "t2/p2", "t3/p3", "t4/p4"]);
  });
});

describe("Listener across reconnects", () => {
  test("accept() keeps yielding streams of the new session; streams of the dead one fail", async () => {
    const { server, url } = await startServer(() => {});
    cleanup.push(() => server.close());
    const listener = await dialAndListen(url, { params: { deviceId: "l" }, reconnect: { initialDelay: 5, maxDelay: 20 } });
    cleanup.push(() => listener.close());
    const events: string[] = [];
    listener.addEventListener("connect", () => events.push("connect"));
    listener.addEventListener("disconnect", (e) => events.push(`disconnect:${(e as CustomEvent).detail.error.code}`));

    await until(() => server.devices.has("l"), 2000, "device");
    const first = server.devices.get("l")!;
    const accepting = listener.accept();
    await first.dial();
    const oldConn = await accepting;
    const pendingAccept = listener.accept(); // waits across the reconnect
    first.close();
    await assert.rejects(within(readAll(oldConn.readable), 1000), hasCode("ERR_CONNECTION_LOST"));
    await until(() => server.devices.get("l") !== undefined && server.devices.get("l") !== first, 3000, "new session");
    const second: Dialer = server.devices.get("l")!;
    const conn = await second.dial();
    const writer = conn.writable.getWriter();
    await writer.write(new TextEncoder().encode("after reconnect"));
    await writer.close();
    const accepted = await within(pendingAccept, 2000);
    assert.equal(new TextDecoder().decode(await readAll(accepted.readable)), "after reconnect");
    // The server's close starts with GoAway: the device redials as soon as it sees it.
    assert.deepEqual(events, ["disconnect:ERR_REMOTE_GOAWAY", "connect"]);
  });

  test("GoAway without a close: a waiting accept moves to the new session while the old one drains", async () => {
    const { server, url } = await startServer(() => {});
    cleanup.push(() => server.close());
    // A new id per connection, so the server does not close the first session as replaced by the second.
    let connects = 0;
    const listener = await dialAndListen(url, { params: () => ({ deviceId: `g${++connects}` }), reconnect: { initialDelay: 5, maxDelay: 20 } });
    cleanup.push(() => listener.close());
    await until(() => server.devices.has("g1"), 2000, "device");
    const first = server.devices.get("g1")!;
    const accepting = listener.accept();
    const old = await first.dial();
    const oldConn = await accepting;
    const pendingAccept = listener.accept(); // waits on the first session
    first.session.goAway(); // the server drains that session: no new streams on it, the connection stays
    await until(() => server.devices.has("g2"), 3000, "the device's new session");
    const second: Dialer = server.devices.get("g2")!;
    assert.equal(first.session.closeReason, undefined, "the first session is still open, draining");
    const conn = await second.dial();
    const writer = conn.writable.getWriter();
    await writer.write(new TextEncoder().encode("on the new session"));
    await writer.close();
    const accepted = await within(pendingAccept, 2000, "the waiting accept, on the new session");
    assert.equal(new TextDecoder().decode(await readAll(accepted.readable)), "on the new session");
    // The stream of the draining session still carries bytes both ways.
    const oldWriter = old.writable.getWriter();
    await oldWriter.write(new TextEncoder().encode("still here"));
    await oldWriter.close();
    assert.equal(new TextDecoder().decode(await within(readAll(oldConn.readable), 2000)), "still here");
  });

  test("close(): a pending accept rejects with ERR_LISTENER_CLOSED and for-await ends", async () => {
    const { server, url } = await startServer(() => {});
    cleanup.push(() => server.close());
    const listener: Listener = await dialAndListen(url, { reconnect: false });
    const pending = listener.accept();
    const iterated: unknown[] = [];
    const loop = (async () => {
      for await (const conn of listener) iterated.push(conn);
    })();
    assert.ok((await listener.ping()) >= 0);
    await listener.close();
    await assert.rejects(pending, hasCode("ERR_LISTENER_CLOSED"));
    await assert.rejects(listener.ping(), hasCode("ERR_LISTENER_CLOSED"));
    await within(loop, 1000);
    assert.equal(iterated.length, 0);
    await assert.rejects(listener.accept(), hasCode("ERR_LISTENER_CLOSED"));
    await until(() => server.devices.size === 0, 2000, "the server to see the device leave");
  });
});
