/**
 * Conformance against Go wslis: hashicorp/yamux (Debian's) over gorilla/websocket, in both roles.
 * The Go side is test/go/peer/main.go, built on the fly (see test/helpers/peers.ts); without Go this
 * suite fails with a how-to, it never skips.
 *
 * - A Go wslis server (yamux client) opens streams to our Node device (`dialAndListen`, on `ws`).
 * - Our Node server (`listenAndServe`) opens streams to a Go wslis device (yamux server).
 *
 * Every echo is checked by SHA-256 on both ends: the sender hashes what it sent and what came back, the
 * echoing side hashes what it passed through; all three must agree, byte counts too.
 */

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test, type TestContext } from "node:test";
import { dialAndListen, type Listener } from "../server-node/device.js";
import { listenAndServe, type Dialer, type Server } from "../server-node/index.js";
import { WslisError } from "../src/errors.js";
import { Flag, FrameType } from "../src/yamux/frame.js";
import { GoPeer, goPeerBinary, hashingEcho, sendAndDigest, type Digest, type GoEchoStream } from "./helpers/peers.js";
import { sha256Hex, within } from "./helpers/assert.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const ECHO_SIZES: [string, number][] = [
  ["1 KB", KiB],
  ["1 MB", MiB],
  ["50 MB", 50 * MiB],
];
const CONCURRENT_STREAMS = 100;
const CONCURRENT_SIZE = 64 * KiB;
/** Bound on one echo command, in ms: 50 MB takes well under a second here; this only stops a hang. */
const ECHO_TIMEOUT = 30_000;
/** Bound on a session noticing that the peer went away, in ms: far below any keepalive (30 s). */
const PROMPTLY = 3_000;

const quietLogger = { warn() {}, error() {} };

/** The error code of a wslis error, or a description of whatever else was thrown. */
function codeOf(error: unknown): string {
  return error instanceof WslisError ? error.code : `not a WslisError: ${String(error)}`;
}

function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => assert.fail("expected a rejection"),
    (error: unknown) => error,
  );
}

/** Throughput of an echo in MiB/s each way: `bytes` went out while the same bytes came back. */
function megabytesPerSecond(bytes: number, ms: number): string {
  return (bytes / MiB / (ms / 1000)).toFixed(1);
}

before(async () => {
  // Build first, so a missing Go fails here with the setup how-to rather than in a random test.
  await goPeerBinary();
});

/** Our Node device, connected to a Go wslis server, echoing every stream and keeping each echo's digest. */
interface DeviceOnGoServer {
  go: GoPeer;
  listener: Listener;
  /** By stream ID: the digest of what the device echoed (rejects if the stream died). */
  echoes: Map<number, Promise<Digest>>;
  stop(): Promise<void>;
}

async function deviceOnGoServer(): Promise<DeviceOnGoServer> {
  const go = await GoPeer.start(["-mode", "server"]);
  try {
    const { port } = await go.event("listening");
    const listener = await within(
      dialAndListen(`ws://127.0.0.1:${String(port)}/wslis`, { params: { deviceId: "node" }, reconnect: false }),
      10_000,
      "dialing the Go server",
    );
    const connected = await go.event("connected");
    assert.equal(connected.deviceId, "node");
    const echoes = new Map<number, Promise<Digest>>();
    void (async () => {
      for await (const conn of listener) {
        const echo = hashingEcho(conn);
        echo.catch(() => {}); // a test that cares awaits it
        echoes.set(conn.streamID, echo);
      }
    })().catch(() => {});
    return {
      go,
      listener,
      echoes,
      async stop() {
        await within(listener.close(), 5_000, "closing the listener").finally(() => go.stop());
      },
    };
  } catch (error) {
    await go.stop();
    throw error;
  }
}

/** Runs `echo SIZE COUNT` on the Go server and checks every stream against the device's digests. */
async function goEcho(t: TestContext, peer: DeviceOnGoServer, size: number, count: number): Promise<void> {
  const reply = await peer.go.command(`echo ${size} ${count}`, ECHO_TIMEOUT);
  assert.equal(reply.error, undefined, `the Go server's echo failed: ${reply.error}\n${peer.go.stderr}`);
  const streams = reply.streams as GoEchoStream[];
  assert.equal(streams.length, count);
  const ids = new Set<number>();
  for (const s of streams) {
    assert.equal(s.stream % 2, 1, "the Go server (yamux client) opens odd stream IDs");
    ids.add(s.stream);
    assert.equal(s.bytes, size, `stream ${s.stream}: bytes echoed back to Go`);
    assert.equal(s.received, s.sent, `stream ${s.stream}: what Go got back differs from what it sent`);
    const echoed = await within(peer.echoes.get(s.stream) ?? Promise.reject(new Error("never accepted")), 5_000, `device echo of stream ${s.stream}`);
    assert.deepEqual(echoed, { bytes: size, sha256: s.sent }, `stream ${s.stream}: what our device echoed`);
  }
  assert.equal(ids.size, count, "every stream has its own ID");
  const ms = Number(reply.micros) / 1000;
  t.diagnostic(`Go server -> Node device: ${count} x ${size} B in ${ms.toFixed(0)} ms, ${megabytesPerSecond(size * count, ms)} MiB/s each way`);
}

describe("a Go wslis server (hashicorp/yamux client) drives our Node device", () => {
  let peer: DeviceOnGoServer;
  before(async () => {
    peer = await deviceOnGoServer();
  });
  after(() => peer?.stop());

  for (const [label, size] of ECHO_SIZES) {
    test(`echo ${label}`, { timeout: ECHO_TIMEOUT + 5_000 }, (t) => goEcho(t, peer, size, 1));
  }

  test(`${CONCURRENT_STREAMS} concurrent streams of 64 KB`, { timeout: ECHO_TIMEOUT + 5_000 }, (t) =>
    goEcho(t, peer, CONCURRENT_SIZE, CONCURRENT_STREAMS),
  );

  test("a stream Go opens is ACKed at once, with a WindowUpdate, before any data", async () => {
    const reply = await peer.go.command("ack");
    assert.equal(reply.error, undefined, reply.error);
    assert.equal(reply.type, FrameType.WindowUpdate, "the first frame on the stream is a WindowUpdate");
    assert.equal(Number(reply.flags) & Flag.ACK, Flag.ACK, "and it carries ACK");
    assert.equal(reply.ack, true);
  });

  test("Go pings our device, and our device pings Go", async () => {
    const reply = await peer.go.command("ping");
    assert.equal(reply.error, undefined, reply.error);
    assert.equal(typeof reply.rttMicros, "number");
    const session = peer.listener.session;
    assert.ok(session, "the device is connected");
    const rtt = await session.ping({ timeout: 5_000 });
    assert.ok(rtt >= 0 && Number.isFinite(rtt), `RTT ${rtt} ms`);
  });
});

describe("a Go wslis server going away", () => {
  test("Go session.Close() fails our device's pending read promptly with ERR_CONNECTION_LOST", async () => {
    const peer = await deviceOnGoServer();
    try {
      const session = peer.listener.session;
      assert.ok(session);
      const reply = await peer.go.command("hold");
      assert.equal(reply.error, undefined, reply.error);
      const stream = Number(reply.stream);
      // The device echoed "hold\n" and now waits for more: a pending read.
      // Wrapped in an object: an async function returning the (pending) echo would adopt it.
      const { echo } = await within(
        (async () => {
          while (!peer.echoes.has(stream)) await new Promise((r) => setTimeout(r, 5));
          return { echo: peer.echoes.get(stream)! };
        })(),
        5_000,
        "the device accepting the held stream",
      );
      assert.equal((await peer.go.command("close")).error, undefined);
      const error = await within(rejection(echo), PROMPTLY, "the pending read to fail");
      assert.equal(codeOf(error), "ERR_CONNECTION_LOST");
      assert.equal(codeOf(await within(session.closed, PROMPTLY, "the session to close")), "ERR_CONNECTION_LOST");
      await within(peer.listener.closed, PROMPTLY, "the listener (reconnect off) to close");
    } finally {
      await peer.stop();
    }
  });
});

/** Our Node server with a Go wslis device connected to it. */
interface GoDeviceOnServer {
  go: GoPeer;
  server: Server;
  dialer: Dialer;
  stop(): Promise<void>;
}

async function goDeviceOnServer(): Promise<GoDeviceOnServer> {
  let onDevice!: (dialer: Dialer) => void;
  const connected = new Promise<Dialer>((resolve) => (onDevice = resolve));
  const server = await listenAndServe("127.0.0.1:0", (dialer) => onDevice(dialer), {
    logger: quietLogger,
    drainTimeout: 2_000,
  });
  let go: GoPeer | undefined;
  try {
    go = await GoPeer.start(["-mode", "device", "-url", `ws://127.0.0.1:${server.address().port}/wslis?deviceId=go`]);
    const dialer = await within(connected, 10_000, "the Go device connecting");
    await go.event("connected");
    assert.equal(dialer.id, "go");
    const peer = go;
    return {
      go: peer,
      server,
      dialer,
      async stop() {
        await within(server.close(), 10_000, "closing the server").finally(() => peer.stop());
      },
    };
  } catch (error) {
    await go?.stop();
    await server.close();
    throw error;
  }
}

/** Our server opens `count` streams at once, sends `size` random bytes on each; the Go device echoes. */
async function nodeEcho(t: TestContext, peer: GoDeviceOnServer, size: number, count: number): Promise<void> {
  const started = performance.now();
  const results = await within(
    Promise.all(
      Array.from({ length: count }, async () => {
        const data = randomBytes(size);
        const sent = sha256Hex(data); // before sending: what the application meant to send
        const conn = await peer.dialer.dial();
        const received = await sendAndDigest(conn, data);
        return { stream: conn.streamID, sent, received };
      }),
    ),
    ECHO_TIMEOUT,
    `echoing ${count} x ${size} bytes through the Go device`,
  );
  const ms = performance.now() - started;
  for (const { stream, sent, received } of results) {
    assert.equal(stream % 2, 1, "our server (yamux client) opens odd stream IDs");
    assert.deepEqual(received, { bytes: size, sha256: sent }, `stream ${stream}: what came back`);
    const echoed = await peer.go.next((e) => e.event === "echoed" && e.stream === stream, `the echo report of stream ${stream}`);
    assert.equal(echoed.error, undefined, `stream ${stream}: the Go device's echo failed: ${echoed.error}`);
    assert.equal(echoed.bytes, size, `stream ${stream}: bytes the Go device echoed`);
    assert.equal(echoed.sha256, sent, `stream ${stream}: what the Go device echoed`);
  }
  t.diagnostic(`Node server -> Go device: ${count} x ${size} B in ${ms.toFixed(0)} ms, ${megabytesPerSecond(size * count, ms)} MiB/s each way`);
}

describe("our Node server drives a Go wslis device (hashicorp/yamux server)", () => {
  let peer: GoDeviceOnServer;
  before(async () => {
    peer = await goDeviceOnServer();
  });
  after(() => peer?.stop());

  for (const [label, size] of ECHO_SIZES) {
    test(`echo ${label}`, { timeout: ECHO_TIMEOUT + 5_000 }, (t) => nodeEcho(t, peer, size, 1));
  }

  test(`${CONCURRENT_STREAMS} concurrent streams of 64 KB`, { timeout: ECHO_TIMEOUT + 5_000 }, (t) =>
    nodeEcho(t, peer, CONCURRENT_SIZE, CONCURRENT_STREAMS),
  );

  test("our server pings the Go device, and the Go device pings us", async () => {
    const rtt = await peer.dialer.ping({ timeout: 5_000 });
    assert.ok(rtt >= 0 && Number.isFinite(rtt), `RTT ${rtt} ms`);
    const reply = await peer.go.command("ping");
    assert.equal(reply.error, undefined, reply.error);
    assert.equal(typeof reply.rttMicros, "number");
  });
});

describe("GoAway between our Node server and a Go device", () => {
  test("our server.close() sends GoAway; the Go device sees it and its session closes", async () => {
    const peer = await goDeviceOnServer();
    try {
      await within(peer.server.close(), 5_000, "server.close()");
      const goaway = await peer.go.event("goaway", PROMPTLY);
      assert.equal(goaway.code, 0, "GoAway carries the normal-termination code");
      await peer.go.event("closed", PROMPTLY);
      assert.equal(codeOf(peer.dialer.closeReason), "ERR_SERVER_SHUTDOWN");
    } finally {
      await peer.stop();
    }
  });

  test("Go session.GoAway(): our dial() rejects with ERR_REMOTE_GOAWAY, open streams go on", async () => {
    const peer = await goDeviceOnServer();
    try {
      const open = await peer.dialer.dial(); // opened before the GoAway: must keep working
      // One echo first, so Go has surely accepted the stream: a SYN that reached Go after its GoAway would
      // rightly be refused (RST), and which of the two arrives first is a race in the test, not a property.
      const hello = new TextEncoder().encode("hello\n");
      const early = open.writable.getWriter();
      await early.write(hello);
      early.releaseLock();
      const echo = open.readable.getReader();
      for (let got = 0; got < hello.length; ) got += (await within(echo.read(), 5_000, "the first echo")).value!.length;
      echo.releaseLock();
      const goaway = new Promise((resolve) => peer.dialer.session.addEventListener("goaway", resolve, { once: true }));
      assert.equal((await peer.go.command("goaway")).error, undefined);
      await within(goaway, PROMPTLY, "our session noticing the GoAway");
      assert.equal(codeOf(await rejection(peer.dialer.dial())), "ERR_REMOTE_GOAWAY");
      const data = randomBytes(4 * KiB);
      const expected = { bytes: data.length, sha256: sha256Hex(data) };
      assert.deepEqual(await within(sendAndDigest(open, data), 5_000, "echo after GoAway"), expected);
    } finally {
      await peer.stop();
    }
  });

  test("Go session.Close() fails our pending read promptly with ERR_CONNECTION_LOST", async () => {
    const peer = await goDeviceOnServer();
    try {
      const conn = await peer.dialer.dial();
      const writer = conn.writable.getWriter();
      await writer.write(new TextEncoder().encode("hold\n"));
      const reader = conn.readable.getReader();
      const first = await within(reader.read(), 5_000, "the echo of the first bytes");
      assert.equal(new TextDecoder().decode(first.value), "hold\n");
      // No more will come: Go holds the stream open. Observed at once, so the rejection is never unhandled.
      const pending = rejection(reader.read());
      assert.equal((await peer.go.command("close")).error, undefined);
      assert.equal(codeOf(await within(pending, PROMPTLY, "the pending read to fail")), "ERR_CONNECTION_LOST");
      assert.equal(codeOf(await within(peer.dialer.closed, PROMPTLY, "the device session to close")), "ERR_CONNECTION_LOST");
      assert.equal(codeOf(await rejection(peer.dialer.dial())), "ERR_CONNECTION_LOST");
    } finally {
      await peer.stop();
    }
  });
});
