import assert from "node:assert/strict";
import { test } from "node:test";
import { webSocketTransport, type WebSocketLike } from "../src/transport.js";
import { Decoder } from "../src/yamux/decode.js";
import { FrameType, Flag, encodeHeader } from "../src/yamux/frame.js";
import { randomBytes } from "./helpers/memory.js";

/**
 * A WebSocket stand-in that "writes" a message only when the test says so: its bytes are captured at
 * that moment (as a socket would read them), and only then does the send callback run.
 */
class SlowSocket implements WebSocketLike {
  binaryType = "nodebuffer";
  bufferedAmount = 0;
  readyState = 1;
  protocol = "";
  readonly queued: { data: Uint8Array; callback?: () => void }[] = [];
  readonly wire: Uint8Array[] = [];
  closedWith: number | undefined;
  send(data: Uint8Array, callback?: () => void): void {
    this.queued.push({ data, callback });
  }
  /** Writes out every queued message, in order. */
  flushAll(): void {
    for (const { data, callback } of this.queued.splice(0)) {
      this.wire.push(data.slice());
      callback?.();
    }
  }
  close(code?: number): void {
    this.closedWith = code;
  }
  addEventListener(): void {}
  removeEventListener(): void {}
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

test("coalescing: frames of one turn leave as one message, slabs are reused only once written, control frames at once", async () => {
  const ws = new SlowSocket();
  const transport = webSocketTransport(ws, {
    sendCallbacks: true,
    coalesce: { bytes: 64 * 1024, defer: setImmediate },
    highWaterMark: 1 << 30,
  });
  transport.start({ data() {}, drain() {}, close() {} });

  const expected: Uint8Array[] = [];
  const frame = (type: FrameType, flags: number, id: number, body?: Uint8Array) => {
    const header = encodeHeader(type, flags, id, body?.length ?? 0);
    expected.push(header);
    if (body) expected.push(body.slice());
    transport.write(header, body);
  };
  // Turn 1: three data frames, written while nothing has left yet; the caller reuses its buffer at once.
  const scratch = new Uint8Array(20_000);
  for (let i = 0; i < 3; i++) {
    scratch.set(randomBytes(scratch.length, i));
    frame(FrameType.Data, 0, 1, scratch);
  }
  assert.equal(ws.queued.length, 0, "data waits for the end of the turn");
  await turn();
  assert.equal(ws.queued.length, 1, "one message for the turn");
  // Turn 2: more data than a slab holds, while the first slab is still in flight (not written out).
  for (let i = 3; i < 8; i++) frame(FrameType.Data, 0, 1, randomBytes(20_000, i));
  // A control frame flushes at once, after the data before it.
  frame(FrameType.WindowUpdate, Flag.ACK, 2, undefined);
  assert.ok(ws.queued.length >= 3, "the control frame went out with what preceded it");
  const bigBody = randomBytes(100_000, 99); // larger than a slab: a message of its own
  frame(FrameType.Data, 0, 3, bigBody);
  await turn();
  ws.flushAll();
  // Turn 3: with everything written, slabs are reused; their old bytes must not leak into new messages.
  for (let i = 8; i < 12; i++) frame(FrameType.Data, 0, 5, randomBytes(30_000, i));
  transport.close(); // flushes what is pending before the close
  ws.flushAll();
  assert.equal(ws.closedWith, 1000);

  const wire = Buffer.concat(ws.wire);
  assert.equal(Buffer.compare(wire, Buffer.concat(expected)), 0, "the bytes on the wire are exactly the frames, in order");
  const frames = [...new Decoder({ maxDataLength: 1 << 20 }).decode(wire)];
  assert.equal(frames.length, 14);
});

test("coalescing: slabs are reused while busy and let go after a second idle", async () => {
  const ws = new SlowSocket();
  let allocations = 0;
  const transport = webSocketTransport(ws, {
    sendCallbacks: true,
    coalesce: { bytes: 64 * 1024, defer: setImmediate },
    allocate: (size) => (allocations++, new Uint8Array(size)),
  });
  transport.start({ data() {}, drain() {}, close() {} });
  const burst = async () => {
    transport.write(encodeHeader(FrameType.Data, 0, 1, 1000), randomBytes(1000));
    await turn();
    ws.flushAll(); // written out: the connection is idle again
  };
  await burst();
  assert.equal(allocations, 1);
  await burst();
  await burst();
  assert.equal(allocations, 1, "a busy connection reuses its slab");
  await new Promise((resolve) => setTimeout(resolve, 1100));
  await burst();
  assert.equal(allocations, 2, "after a second idle the slab was let go, so a new one was needed");
  transport.close();
});
