import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
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

/** The frames on the wire as [type, flags, streamID, length], and the Data bytes each stream carried. */
function readWire(wire: Uint8Array[]): { frames: number[][]; bytes: Map<number, Buffer> } {
  const frames: number[][] = [];
  const parts = new Map<number, Buffer[]>();
  for (const frame of new Decoder({ maxDataLength: 1 << 20 }).decode(Buffer.concat(wire))) {
    frames.push([frame.type, frame.flags, frame.streamID, frame.length]);
    if (frame.type === FrameType.Data) parts.set(frame.streamID, [...(parts.get(frame.streamID) ?? []), Buffer.from(frame.body)]);
  }
  return { frames, bytes: new Map([...parts].map(([id, list]) => [id, Buffer.concat(list)])) };
}

test("coalescing: frames of one turn leave as one message, slabs are reused only once written, control frames at once", async () => {
  const ws = new SlowSocket();
  const transport = webSocketTransport(ws, {
    sendCallbacks: true,
    coalesce: { bytes: 64 * 1024, defer: setImmediate },
    highWaterMark: 1 << 30,
  });
  transport.start({ data() {}, drain() {}, close() {} });

  const sent = new Map<number, Uint8Array[]>();
  const frame = (type: FrameType, flags: number, id: number, body?: Uint8Array) => {
    if (body) sent.set(id, [...(sent.get(id) ?? []), body.slice()]);
    transport.write(encodeHeader(type, flags, id, body?.length ?? 0), body);
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

  const { frames, bytes } = readWire(ws.wire);
  // A stream's consecutive Data frames in one message became one frame; a full slab, a control frame
  // and the end of the turn each end the frame.
  const D = FrameType.Data;
  assert.deepEqual(frames, [
    [D, 0, 1, 60_000],
    [D, 0, 1, 60_000],
    [D, 0, 1, 40_000],
    [FrameType.WindowUpdate, Flag.ACK, 2, 0],
    [D, 0, 3, 100_000],
    [D, 0, 5, 60_000],
    [D, 0, 5, 60_000],
  ]);
  for (const [id, bodies] of sent) {
    assert.equal(Buffer.compare(bytes.get(id)!, Buffer.concat(bodies)), 0, `stream ${id} carried exactly its bytes, in order`);
  }
  assert.equal(Buffer.concat(ws.wire).length, 12 * 7 + 380_000, "nothing else is on the wire");
});

test("coalescing joins only plain Data frames of one stream that follow each other", async () => {
  const ws = new SlowSocket();
  const transport = webSocketTransport(ws, { sendCallbacks: true, coalesce: { bytes: 1 << 20, defer: setImmediate } });
  transport.start({ data() {}, drain() {}, close() {} });
  const data = (flags: number, id: number, size: number, seed: number) =>
    transport.write(encodeHeader(FrameType.Data, flags, id, size), randomBytes(size, seed));
  data(0, 1, 1000, 1);
  data(0, 3, 1000, 2); // another stream: a frame of its own
  data(0, 1, 1000, 3); // stream 1 again, but not right after its previous frame
  data(0, 1, 1000, 4); // joins the previous one
  data(Flag.FIN, 1, 1000, 5); // a flag: a frame of its own (it must stay on its bytes)
  data(0, 1, 1000, 6); // after a frame with flags: a frame of its own
  await turn();
  data(0, 1, 1000, 7); // a new turn, a new message: a new frame
  await turn();
  ws.flushAll();
  transport.close();

  assert.equal(ws.wire.length, 2, "one message per turn");
  const { frames, bytes } = readWire(ws.wire);
  const D = FrameType.Data;
  assert.deepEqual(frames, [
    [D, 0, 1, 1000],
    [D, 0, 3, 1000],
    [D, 0, 1, 2000],
    [D, Flag.FIN, 1, 1000],
    [D, 0, 1, 1000],
    [D, 0, 1, 1000],
  ]);
  const expected = Buffer.concat([1, 3, 4, 5, 6, 7].map((seed) => randomBytes(1000, seed)));
  assert.equal(Buffer.compare(bytes.get(1)!, expected), 0);
});

test("coalescing (property): any frames and turns carry the same bytes per stream, flags and control frames where they were, no frame added", async () => {
  type Op = { kind: "data"; id: number; size: number; flags: number } | { kind: "control"; id: number } | { kind: "turn" };
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({
        kind: fc.constant("data" as const),
        id: fc.constantFrom(1, 3, 5),
        size: fc.integer({ min: 1, max: 70_000 }),
        flags: fc.constantFrom(0, 0, 0, Flag.SYN, Flag.FIN),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("control" as const), id: fc.constantFrom(1, 3, 5) }) },
    { weight: 1, arbitrary: fc.constant({ kind: "turn" as const }) },
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), fc.constantFrom(64 * 1024, 256 * 1024), async (ops, slab) => {
      const ws = new SlowSocket();
      const transport = webSocketTransport(ws, { sendCallbacks: true, coalesce: { bytes: slab, defer: setImmediate }, highWaterMark: 1 << 30 });
      transport.start({ data() {}, drain() {}, close() {} });
      const expected = new Map<number, Buffer[]>();
      /** Each control frame as "stream@Data bytes written before it". */
      const expectedControls: string[] = [];
      /** Each Data frame with flags as "stream:flags@offset+length", offset within its stream. */
      const expectedFlagged: string[] = [];
      const streamBytes = new Map<number, number>();
      let dataBytes = 0;
      let dataWrites = 0;
      for (const [seed, o] of ops.entries()) {
        if (o.kind === "turn") {
          await turn();
          ws.flushAll();
        } else if (o.kind === "data") {
          const body = randomBytes(o.size, seed);
          expected.set(o.id, [...(expected.get(o.id) ?? []), Buffer.from(body)]);
          transport.write(encodeHeader(FrameType.Data, o.flags, o.id, o.size), body);
          body.fill(0); // the caller may reuse its buffer at once
          const at = streamBytes.get(o.id) ?? 0;
          if (o.flags !== 0) expectedFlagged.push(`${o.id}:${o.flags}@${at}+${o.size}`);
          streamBytes.set(o.id, at + o.size);
          dataBytes += o.size;
          dataWrites++;
        } else {
          expectedControls.push(`${o.id}@${dataBytes}`);
          transport.write(encodeHeader(FrameType.WindowUpdate, Flag.ACK, o.id, 7), undefined);
        }
      }
      transport.close();
      ws.flushAll();

      const got = new Map<number, Buffer[]>();
      const controls: string[] = [];
      const flagged: string[] = [];
      let seen = 0;
      let dataFrames = 0;
      for (const frame of new Decoder({ maxDataLength: 1 << 20 }).decode(Buffer.concat(ws.wire))) {
        if (frame.type === FrameType.Data) {
          const at = (got.get(frame.streamID) ?? []).reduce((n, body) => n + body.length, 0);
          if (frame.flags !== 0) flagged.push(`${frame.streamID}:${frame.flags}@${at}+${frame.body.length}`);
          got.set(frame.streamID, [...(got.get(frame.streamID) ?? []), Buffer.from(frame.body)]);
          seen += frame.body.length;
          dataFrames++;
        } else {
          controls.push(`${frame.streamID}@${seen}`);
        }
      }
      for (const [id, bodies] of expected) {
        assert.equal(Buffer.compare(Buffer.concat(got.get(id) ?? []), Buffer.concat(bodies)), 0, `stream ${id} carried its bytes in order`);
      }
      assert.deepEqual(controls, expectedControls);
      assert.deepEqual(flagged, expectedFlagged, "a frame with flags keeps them on its own bytes");
      assert.ok(dataFrames <= dataWrites, "merging never adds a frame");
    }),
    { numRuns: 150 },
  );
});

test("coalescing: slabs are reused while busy and let go after a whole second idle", async () => {
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
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  await burst();
  assert.equal(allocations, 1);
  await burst();
  await burst();
  assert.equal(allocations, 1, "a busy connection reuses its slab");
  for (let i = 0; i < 5; i++) {
    await sleep(300);
    await burst();
  }
  assert.equal(allocations, 1, "pauses shorter than a second, 1.5 s in all: the slab is kept");
  await sleep(2100);
  await burst();
  assert.equal(allocations, 2, "after a whole second idle the slab was let go, so a new one was needed");
  transport.close();
});
