/**
 * Failure and recovery with real processes: a server killed mid-transfer and restarted, 200 devices
 * reconnecting with jitter, peers frozen with SIGSTOP (alive but silent) detected by keepalive.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { dialAndListen, type Listener } from "../server-node/device.js";
import { startFixture, type Child } from "./helpers/child.js";
import { seeded } from "./helpers/memory.js";
import { startServer } from "./helpers/net.js";
import { hasCode, until, within } from "./helpers/assert.js";

const children: Child[] = [];
const listeners: Listener[] = [];
after(async () => {
  await Promise.all(listeners.map((l) => l.close()));
  await Promise.all(children.map((c) => c.kill()));
});

async function serverChild(port = 0, keepAlive: [number, number] = [30_000, 10_000]): Promise<{ child: Child; port: number }> {
  const child = startFixture("server-child.ts", [String(port), String(keepAlive[0]), String(keepAlive[1])]);
  children.push(child);
  const [, actual] = await child.waitFor(/^listening (\d+)$/);
  return { child, port: Number(actual) };
}

function echoForever(listener: Listener): void {
  void (async () => {
    for await (const conn of listener) void conn.readable.pipeTo(conn.writable).catch(() => {});
  })();
}

describe("server killed and restarted", () => {
  test("kill mid-transfer: the device's pending read and write reject within 1 s, with why", async () => {
    const { child, port } = await serverChild();
    const listener = await dialAndListen(`ws://127.0.0.1:${port}`, {
      params: { deviceId: "stream-1" },
      reconnect: { initialDelay: 100, maxDelay: 500 },
    });
    listeners.push(listener);
    const conn = await within(listener.accept(), 5000, "the server's stream");
    await child.waitFor(/^streaming stream-1$/);
    const reader = conn.readable.getReader();
    await reader.read(); // the transfer is flowing
    const pendingRead = (async () => {
      for (;;) await reader.read();
    })().then(() => undefined, (e: unknown) => e);
    const writer = conn.writable.getWriter();
    const pendingWrite = writer.write(new Uint8Array(64 * 1024 * 1024)).then(() => undefined, (e: unknown) => e);
    const disconnected = new Promise<CustomEvent>((resolve) =>
      listener.addEventListener("disconnect", (e) => resolve(e as CustomEvent), { once: true }),
    );

    const killedAt = Date.now();
    await child.kill();
    const [readError, writeError, event] = await within(Promise.all([pendingRead, pendingWrite, disconnected]), 1000);
    const elapsed = Date.now() - killedAt;
    assert.ok(elapsed < 1000, `rejected after ${elapsed} ms`);
    assert.ok(hasCode("ERR_CONNECTION_LOST")(readError), String(readError));
    assert.ok(hasCode("ERR_CONNECTION_LOST")(writeError), String(writeError));
    assert.ok(hasCode("ERR_CONNECTION_LOST")(event.detail.error));
    assert.equal(typeof event.detail.retryIn, "number", "it will retry");
  });

  test("restart: 200 devices reconnect within the backoff cap, spread in time, and are served again", async (t) => {
    const devices = 200;
    const maxDelay = 3000;
    const { child, port } = await serverChild();
    const connectTimes = new Map<string, number>();
    const lost = new Set<string>();
    for (let i = 0; i < devices; i++) {
      const id = `d-${i}`;
      const listener = await dialAndListen(`ws://127.0.0.1:${port}`, {
        params: { deviceId: id },
        reconnect: { initialDelay: 500, maxDelay },
        // Jitter from a seeded source, one seed per device: the spread asserted below is the same every run.
        random: seeded(i + 1),
      });
      listeners.push(listener);
      listener.addEventListener("connect", () => connectTimes.set(id, Date.now()));
      listener.addEventListener("disconnect", () => lost.add(id));
      echoForever(listener);
    }
    await until(() => child.lines.filter((l) => l.startsWith("served ")).length === devices, 20_000, "all devices served");

    await child.kill();
    await until(() => lost.size === devices, 2000, "every device to notice");
    await new Promise((r) => setTimeout(r, 1500)); // down for a while: devices back off

    const restarted = await serverChild(port);
    const restartedAt = Date.now();
    await until(() => connectTimes.size === devices, maxDelay + 5000, "every device to reconnect");
    const delays = [...connectTimes.values()].map((t) => t - restartedAt).sort((a, b) => a - b);
    const p10 = delays[Math.floor(devices * 0.1)]!;
    const p90 = delays[Math.floor(devices * 0.9)]!;
    assert.ok(delays.at(-1)! <= maxDelay + 1500, `slowest reconnect ${delays.at(-1)} ms after the restart`);
    assert.ok(p90 - p10 >= 300, `reconnects not spread: p10 ${p10} ms, p90 ${p90} ms`);
    // No thundering herd: no 100 ms window holds more than a third of the devices.
    let worst = 0;
    for (let i = 0, j = 0; i < delays.length; i++) {
      while (delays[i]! - delays[j]! > 100) j++;
      worst = Math.max(worst, i - j + 1);
    }
    assert.ok(worst <= devices / 3, `${worst} devices reconnected within one 100 ms window`);
    t.diagnostic(`reconnect after restart: p10 ${p10} ms, p90 ${p90} ms, max ${delays.at(-1)} ms, busiest 100 ms: ${worst} devices`);
    await until(
      () => restarted.child.lines.filter((l) => l.startsWith("served ")).length === devices,
      20_000,
      "all devices served again",
    );
  });
});

describe("frozen peers (SIGSTOP: alive, silent) are dropped by keepalive", () => {
  const interval = 400;
  const timeout = 400;
  const slack = 1000;

  test("a frozen device is dropped by the server within interval + timeout", async () => {
    const { server, url } = await startServer(() => {}, { session: { keepAliveInterval: interval, keepAliveTimeout: timeout } });
    const child = startFixture("device-child.ts", [url, "frozen", "30000", "10000"]);
    children.push(child);
    await child.waitFor(/^connected$/);
    await until(() => server.devices.has("frozen"), 2000, "device registered");
    const dialer = server.devices.get("frozen")!;
    const conn = await dialer.dial();
    const pendingRead = conn.readable.getReader().read().then(() => undefined, (e: unknown) => e);
    child.process.kill("SIGSTOP");
    const frozenAt = Date.now();
    const reason = await within(dialer.closed, interval + timeout + slack, "the server to drop the device");
    assert.ok(hasCode("ERR_KEEPALIVE_TIMEOUT")(reason), String(reason));
    assert.ok(hasCode("ERR_KEEPALIVE_TIMEOUT")(await pendingRead));
    assert.ok(Date.now() - frozenAt <= interval + timeout + slack);
    assert.equal(server.devices.has("frozen"), false);
    await child.kill();
    await server.close();
  });

  test("a frozen server is dropped by the device within interval + timeout, and the device says why", async () => {
    const { child, port } = await serverChild();
    const listener = await dialAndListen(`ws://127.0.0.1:${port}`, {
      params: { deviceId: "stream-watcher" }, // the server streams to it endlessly: a read is always pending
      reconnect: { initialDelay: 5000, maxDelay: 5000 },
      session: { keepAliveInterval: interval, keepAliveTimeout: timeout },
    });
    listeners.push(listener);
    const conn = await within(listener.accept(), 5000);
    await child.waitFor(/^streaming stream-watcher$/);
    const pendingRead = (async () => {
      const reader = conn.readable.getReader();
      for (;;) if ((await reader.read()).done) return;
    })().then(() => undefined, (e: unknown) => e);
    const disconnected = new Promise<CustomEvent>((resolve) =>
      listener.addEventListener("disconnect", (e) => resolve(e as CustomEvent), { once: true }),
    );
    child.process.kill("SIGSTOP");
    const event = await within(disconnected, interval + timeout + slack, "the device to drop the server");
    assert.ok(hasCode("ERR_KEEPALIVE_TIMEOUT")(event.detail.error), String(event.detail.error));
    assert.ok(hasCode("ERR_KEEPALIVE_TIMEOUT")(await pendingRead));
    await child.kill();
  });
});
