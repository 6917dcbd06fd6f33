/**
 * The public surface is the contract: typed events, and no plumbing a user could call to corrupt state.
 * The type-level half is checked by `npm run typecheck` (strict): each `@ts-expect-error` fails the
 * typecheck if the line below it ever compiles. The runtime half runs the same calls for real.
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { after, test } from "node:test";
import type { Conn as BrowserConn, Listener as BrowserListener, SessionOptions as DeviceSessionOptions } from "../src/index.js";
import * as browserEntry from "../src/index.js";
import { dialAndListen, listen } from "../server-node/device.js";
import type { Conn, Dialer, DeviceRegistry, Server, SessionOptions } from "../server-node/index.js";
import { startServer } from "./helpers/net.js";
import { until, within } from "./helpers/assert.js";

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

/** Never called: only compiled. What a strict consumer writes must type-check, and plumbing must not. */
function typeLevel(server: Server, listener: BrowserListener, registry: DeviceRegistry, conn: Conn, deviceConn: BrowserConn): void {
  server.addEventListener("connect", (e) => e.detail.dialer.id.toUpperCase());
  server.addEventListener("disconnect", (e) => [e.detail.dialer.id, e.detail.reason.message]);
  server.addEventListener("replace", (e) => e.detail.previous.close());
  server.removeEventListener("connect", () => {});
  listener.addEventListener("disconnect", (e) => [e.detail.error.message, e.detail.retryIn]);
  listener.addEventListener("connect", (e) => e.detail.attempt.toFixed());
  // @ts-expect-error a connect event has no error
  listener.addEventListener("connect", (e) => e.detail.error);
  // @ts-expect-error the listener starts itself: no public start()
  listener.start();
  // @ts-expect-error only the server registers devices
  registry.set({} as Dialer);
  // @ts-expect-error only the server removes devices
  registry.delete({} as Dialer);
  // A Conn is the stream's contract only: how the session drives it is not callable.
  // @ts-expect-error the session hands frames to its streams, nobody else
  conn.handleFrame({ type: 0, flags: 0, streamID: 1, length: 0, body: new Uint8Array(0) });
  // @ts-expect-error the session checks Data headers against the window, nobody else
  conn.admitData(1);
  // @ts-expect-error only the session fails a stream (reset() is the public way)
  conn.fail(new Error("x"));
  // @ts-expect-error the device's Conn is the same contract
  deviceConn.handleFrame;
  // @ts-expect-error the Stream class is not exported: Conn is an interface
  void browserEntry.Stream;
  void [conn.readable, conn.writable, conn.streamID, conn.closed, conn.state, conn.close(), conn.reset()];
  const sessionOptions: SessionOptions = { keepAliveInterval: 1000 }; // no role required
  const deviceOptions: DeviceSessionOptions = { streamWindow: 256 * 1024 };
  void [sessionOptions, deviceOptions];
}
void typeLevel;

test("typed events fire as typed: the server's connect carries the dialer, the listener's disconnect its error", async () => {
  const { server, url } = await startServer(() => {});
  cleanup.push(() => server.close());
  const connected: string[] = [];
  server.addEventListener("connect", (e) => connected.push(e.detail.dialer.id));
  const listener = await dialAndListen(url, { params: { deviceId: "typed" }, reconnect: false });
  const errors: string[] = [];
  listener.addEventListener("disconnect", (e) => errors.push((e.detail.error as { code?: string }).code ?? "?"));
  await until(() => connected.length === 1, 2000, "connect event");
  assert.deepEqual(connected, ["typed"]);
  server.devices.get("typed")!.close();
  await within(listener.closed, 2000);
  assert.deepEqual(errors, ["ERR_CONNECTION_LOST"]);
});

test("no plumbing at runtime either: the registry cannot be written, the listener has no start()", async () => {
  const { server, url } = await startServer(() => {});
  cleanup.push(() => server.close());
  const listener = listen(url, { reconnect: false });
  cleanup.push(() => listener.close());
  await listener.ready;
  assert.equal("start" in listener, false);
  await until(() => server.devices.size === 1, 2000, "device");
  assert.equal("set" in server.devices, false);
  assert.equal("delete" in server.devices, false);
  assert.equal([...server.devices.keys()].length, 1);
});

/** Everything a Conn has, own or inherited; anything else is plumbing that came back. */
const CONN_MEMBERS = ["close", "closed", "readable", "reset", "state", "streamID", "writable"];

test("a Conn has its contract's members and nothing else, on both sides", async () => {
  let dialedConn!: (conn: Conn) => void;
  const dialed = new Promise<Conn>((resolve) => (dialedConn = resolve));
  const { server, url } = await startServer(async (d) => dialedConn(await d.dial()));
  cleanup.push(() => server.close());
  const listener = await dialAndListen(url, { reconnect: false });
  cleanup.push(() => listener.close());
  const serverConn = await within(dialed, 2000);
  const deviceConn = await within(listener.accept(), 2000);
  for (const conn of [serverConn, deviceConn]) {
    const names = new Set<string>();
    for (let o: object | null = conn; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
      for (const name of Object.getOwnPropertyNames(o)) if (name !== "constructor") names.add(name);
    }
    assert.deepEqual([...names].sort(), CONN_MEMBERS);
    assert.deepEqual(Object.getOwnPropertySymbols(conn), []);
  }
  assert.equal("Stream" in browserEntry, false, "the Stream class is not exported");
  serverConn.reset();
  await assert.rejects(deviceConn.closed, { code: "ERR_STREAM_RESET" });
});

test("the published declarations of a stream show no plumbing (built by npm test's build)", (t) => {
  const path = new URL("../dist/node/src/yamux/stream.d.ts", import.meta.url);
  if (!existsSync(path)) return t.skip("dist/node is not built");
  const declarations = readFileSync(path, "utf8");
  for (const plumbing of ["handleFrame", "admitData", "fail(", "streamControl", "StreamControl"]) {
    assert.equal(declarations.includes(plumbing), false, `stream.d.ts declares ${plumbing}`);
  }
});
