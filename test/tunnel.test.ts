/**
 * The node-to-node stream (server-node/cluster/tunnel.ts) against a hand-written peer on a real socket
 * pair: what a well-behaved node gets (data, credit, ping, FIN, a reset's error), and that a node which
 * breaks the framing or sends past its credit ends the stream with ERR_CLUSTER_UNAVAILABLE, whatever it
 * sends, with a bounded amount kept.
 */

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, connect, type Socket } from "node:net";
import { after, test } from "node:test";
import { TunnelFrame, WINDOW, tunnel } from "../server-node/cluster/tunnel.js";
import type { FleetConn } from "../server-node/cluster/fleet.js";
import { hasCode, until, within } from "./helpers/assert.js";

const cleanup: (() => unknown)[] = [];
after(async () => {
  for (const fn of cleanup.reverse()) await fn();
});

function frame(type: number, payload: Uint8Array = new Uint8Array(0), length = payload.length): Buffer {
  const header = Buffer.alloc(5);
  header[0] = type;
  header.writeUInt32BE(length, 1);
  return Buffer.concat([header, payload]);
}

/** Frames as the raw peer reads them, whatever the chunk boundaries. */
class FrameReader {
  readonly frames: { type: number; payload: Buffer }[] = [];
  #buffered = Buffer.alloc(0);

  constructor(socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.#buffered = Buffer.concat([this.#buffered, chunk]);
      while (this.#buffered.length >= 5) {
        const length = this.#buffered.readUInt32BE(1);
        if (this.#buffered.length < 5 + length) break;
        this.frames.push({ type: this.#buffered[0]!, payload: this.#buffered.subarray(5, 5 + length) });
        this.#buffered = this.#buffered.subarray(5 + length);
      }
    });
  }

  of(type: number) {
    return this.frames.filter((f) => f.type === type);
  }
}

/** A tunnel on one end of a loopback connection, and the raw socket at the other end. */
async function pair(): Promise<{ conn: FleetConn; raw: Socket; frames: FrameReader }> {
  const server = createServer({ allowHalfOpen: true });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanup.push(() => new Promise((resolve) => server.close(resolve)));
  const accepted = once(server, "connection") as Promise<[Socket]>;
  const raw = connect({ port: (server.address() as { port: number }).port, host: "127.0.0.1", allowHalfOpen: true });
  const [socket] = await accepted;
  cleanup.push(() => raw.destroy(), () => socket.destroy());
  const conn = tunnel(socket, { streamID: 7, id: "dev", peer: "node test", keepAliveInterval: 0, keepAliveTimeout: 1000 });
  conn.closed.catch(() => {});
  return { conn, raw, frames: new FrameReader(raw) };
}

test("a well-behaved node: data within credit arrives, credit goes back as it is read, ping is answered, FIN ends the readable", async () => {
  const { conn, raw, frames } = await pair();
  raw.write(frame(TunnelFrame.Ping));
  const chunk = new Uint8Array(64 * 1024).fill(7);
  for (let i = 0; i < 4; i++) raw.write(frame(TunnelFrame.Data, chunk)); // the whole window
  raw.write(frame(TunnelFrame.Fin));
  let got = 0;
  for await (const bytes of conn.readable) got += bytes.length;
  assert.equal(got, WINDOW);
  await until(() => frames.of(TunnelFrame.Pong).length === 1, 2000, "the pong");
  const credit = frames.of(TunnelFrame.Credit).reduce((sum, f) => sum + f.payload.readUInt32BE(0), 0);
  assert.ok(credit >= WINDOW - WINDOW / 4, `credit returned: ${credit}`);
});

test("a reset carries the other node's error, with its code", async () => {
  const { conn, raw } = await pair();
  raw.write(frame(TunnelFrame.Reset, Buffer.from(JSON.stringify({ code: "ERR_REPLACED", message: "replaced" }))));
  await assert.rejects(within(conn.closed, 2000, "the stream"), hasCode("ERR_REPLACED"));
});

for (const [what, bytes] of [
  ["data past the credit it was given", () => frame(TunnelFrame.Data, new Uint8Array(WINDOW + 1))],
  ["data past the credit, announced in a header alone", () => frame(TunnelFrame.Data, undefined, 0xffffffff)],
  ["a reset whose error is larger than 64 KiB", () => frame(TunnelFrame.Reset, undefined, 64 * 1024 + 1)],
  ["a credit frame of 8 bytes", () => frame(TunnelFrame.Credit, new Uint8Array(8))],
  ["a ping with a payload", () => frame(TunnelFrame.Ping, new Uint8Array(1))],
  ["an unknown frame type", () => frame(9)],
  ["data after its FIN", () => Buffer.concat([frame(TunnelFrame.Fin), frame(TunnelFrame.Data, new Uint8Array(1))])],
] as const) {
  test(`a broken node: ${what} ends the stream with ERR_CLUSTER_UNAVAILABLE, and the node is told`, async () => {
    const { conn, raw, frames } = await pair();
    raw.write(bytes());
    await assert.rejects(within(conn.closed, 2000, "the stream"), hasCode("ERR_CLUSTER_UNAVAILABLE"));
    await assert.rejects(conn.readable.getReader().read(), hasCode("ERR_CLUSTER_UNAVAILABLE"));
    await until(() => frames.of(TunnelFrame.Reset).length === 1, 2000, "a reset sent to the node");
    assert.equal(JSON.parse(frames.of(TunnelFrame.Reset)[0]!.payload.toString()).code, "ERR_CLUSTER_UNAVAILABLE");
  });
}

test("the node going away in the middle of the stream fails it with ERR_CLUSTER_UNAVAILABLE", async () => {
  const { conn, raw } = await pair();
  raw.write(frame(TunnelFrame.Data, new Uint8Array(10)));
  raw.destroy();
  await assert.rejects(within(conn.closed, 2000, "the stream"), hasCode("ERR_CLUSTER_UNAVAILABLE"));
});
