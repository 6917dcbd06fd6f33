/**
 * The public surface is the contract: typed events, and no plumbing a user could call to corrupt state.
 * The type-level half is checked by `npm run typecheck` (strict): each `@ts-expect-error` fails the
 * typecheck if the line below it ever compiles. The runtime half runs the same calls for real.
 */

import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { Listener as BrowserListener, SessionOptions as DeviceSessionOptions } from "../src/index.js";
import { dialAndListen, listen } from "../server-node/device.js";
import type { Dialer, DeviceRegistry, Server, SessionOptions } from "../server-node/index.js";
import { until, within } from "./helpers/memory.js";
import { startServer } from "./helpers/net.js";

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

/** Never called: only compiled. What a strict consumer writes must type-check, and plumbing must not. */
function typeLevel(server: Server, listener: BrowserListener, registry: DeviceRegistry): void {
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
  await within(2000, listener.closed);
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
