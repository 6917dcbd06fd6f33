/**
 * `server.fetch`, `server.dial`, `server.lookup`, `server.fleet()` and the fleet events on one node,
 * without a cluster: the same calls user code makes on many nodes.
 */

import assert from "node:assert/strict";
import { after, test } from "node:test";
import { dialAndListen, serveHttp, type Listener } from "../server-node/device.js";
import { DeviceNotFoundError } from "../server-node/index.js";
import { readAll } from "./helpers/memory.js";
import { startServer } from "./helpers/net.js";
import { hasCode, until, within } from "./helpers/assert.js";


const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

/** A device that answers reverse HTTP on its streams: echoes POST bodies, says hello to GETs. */
async function httpDevice(url: string, id: string): Promise<Listener> {
  const listener = await dialAndListen(url, { params: { deviceId: id }, reconnect: false });
  cleanup.push(() => listener.close());
  void serveHttp(listener, async (req) =>
    req.method === "POST" ? new Response(req.body) : new Response(`hello from ${id} at ${new URL(req.url).pathname}`),
  ).catch(() => {});
  return listener;
}

test("server.fetch and server.dial reach a device on this node by id", async () => {
  const { server, url } = await startServer(() => {});
  cleanup.push(() => server.close());
  await httpDevice(url, "lobby");
  await until(() => server.devices.has("lobby"));

  const res = await server.fetch("lobby", "http://device/status");
  assert.equal(res.status, 200);
  assert.equal(await res.text(), "hello from lobby at /status");
  const echoed = await server.fetch("lobby", "http://device/echo", { method: "POST", body: "ping" });
  assert.equal(await echoed.text(), "ping");

  // A raw stream: the device's serveHttp answers HTTP/1.1 on it.
  const conn = await server.dial("lobby");
  const writer = conn.writable.getWriter();
  await writer.write(new TextEncoder().encode("GET /raw HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"));
  await writer.close();
  const raw = new TextDecoder().decode(await readAll(conn.readable));
  assert.match(raw, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(raw, /hello from lobby at \/raw$/);
});

test("an unknown device fails at once with ERR_DEVICE_NOT_FOUND", async () => {
  const { server } = await startServer(() => {});
  cleanup.push(() => server.close());
  const started = performance.now();
  await assert.rejects(server.fetch("nobody", "http://device/"), (e: unknown) => e instanceof DeviceNotFoundError && hasCode("ERR_DEVICE_NOT_FOUND")(e));
  await assert.rejects(server.dial("nobody"), hasCode("ERR_DEVICE_NOT_FOUND"));
  assert.ok(performance.now() - started < 100, "not after a timeout");
  assert.equal(await server.lookup("nobody"), undefined);
});

test("lookup and fleet() describe this node's devices; fleet events follow connect, replace, disconnect", async () => {
  const { server, url } = await startServer(() => {});
  cleanup.push(() => server.close());
  const events: string[] = [];
  for (const type of ["connect", "replace", "disconnect"] as const) {
    server.fleetEvents.addEventListener(type, (e) => events.push(`${type} ${e.detail.id} ${e.detail.node} ${e.detail.reason ?? ""}`.trim()));
  }
  const before = Date.now();
  const a = await httpDevice(url, "a");
  await httpDevice(url, "b");
  await until(() => server.devices.size === 2);

  const record = await server.lookup("a");
  assert.ok(record);
  assert.equal(record.id, "a");
  assert.equal(record.node, server.nodeId);
  assert.ok(record.connectedAt >= before && record.connectedAt <= Date.now());
  assert.ok(record.lastSeen >= record.connectedAt);
  await server.devices.get("a")!.ping();
  assert.ok((await server.lookup("a"))!.lastSeen >= record.lastSeen, "an answered ping counts as seen");

  const all = [];
  for await (const r of server.fleet()) all.push(r.id);
  assert.deepEqual(all.sort(), ["a", "b"]);

  // "a" connects again: replace, and no disconnect for the replaced session.
  await httpDevice(url, "a");
  await within(a.closed, 2000);
  await a.close();
  await server.devices.get("b")!.close();
  await until(() => events.length === 4);
  assert.deepEqual(events, ["connect a local", "connect b local", "replace a local", "disconnect b local ERR_SESSION_CLOSED"]);
});
