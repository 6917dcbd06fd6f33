/**
 * The listener's time and platform are injected: its backoff runs on the platform's clock (no sleeping
 * here, the test advances a fake one), the `online` signal comes from the platform, and so does the
 * base URL a relative address is resolved against. Its state follows the diagram in src/client.ts.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { listen, type Platform } from "../src/client.js";
import { turns } from "./helpers/assert.js";
import { FakeClock } from "./helpers/clock.js";

/** A WebSocket whose handshake fails at once (as a server that is down): error, then close 1006. */
class RefusedWebSocket extends EventTarget {
  readyState = 0;
  binaryType = "arraybuffer";
  bufferedAmount = 0;
  protocol = "";
  constructor() {
    super();
    queueMicrotask(() => {
      this.dispatchEvent(new Event("error"));
      this.dispatchEvent(Object.assign(new Event("close"), { code: 1006, reason: "" }));
    });
  }
  send(): void {}
  close(): void {}
}

test("backoff on the injected clock, `online` from the platform, the base URL from the platform", async () => {
  const clock = new FakeClock();
  const urls: string[] = [];
  let online: (() => void) | undefined;
  const platform: Platform = {
    WebSocket: RefusedWebSocket as never,
    canSendHeaders: false,
    open: (Ctor, url) => (urls.push(url), new Ctor(url)),
    clock,
    onOnline: (wake) => ((online = wake), () => (online = undefined)),
    baseUrl: () => "https://kiosk.example.com/pages/lobby.html",
  };
  const retries: (number | undefined)[] = [];
  const listener = listen("/wslis", { random: () => 1, reconnect: { initialDelay: 1000, maxDelay: 8000 } }, platform);
  listener.addEventListener("disconnect", (e) => retries.push(e.detail.retryIn));
  listener.ready.catch(() => {});
  assert.equal(listener.state, "connecting");
  await turns();
  assert.deepEqual(urls, ["wss://kiosk.example.com/wslis"], "resolved against the platform's base URL");
  assert.deepEqual(retries, [1000]);
  assert.equal(listener.state, "backing-off");

  clock.advance(999);
  await turns();
  assert.equal(urls.length, 1, "no retry before the delay has passed on the clock");
  clock.advance(1);
  await turns();
  assert.equal(urls.length, 2, "retried when the clock reached the delay");
  assert.deepEqual(retries, [1000, 2000]);

  assert.ok(online, "waiting for the network through the platform");
  online();
  await turns();
  assert.equal(urls.length, 3, "the network came back: retried at once");
  assert.equal(online !== undefined, true, "watching again for the next wait");

  await listener.close();
  assert.equal(listener.state, "closed");
  assert.equal(online, undefined, "stopped watching the network");
  assert.equal(clock.pending, 0, "no timer left behind");
});
