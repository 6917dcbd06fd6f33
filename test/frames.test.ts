/**
 * Node's frame reader (server-node/frames.ts) in front of a real `ws` Receiver: binary messages come out
 * as views of the socket's chunks, whole and in order however the bytes are split; everything else is
 * `ws`'s, which answers it exactly as without the reader (the error codes `ws` closes with).
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { EventEmitter } from "node:events";
import * as wsModule from "ws";
import { readBinaryFrames } from "../server-node/frames.js";
import { concat } from "../src/http/reader.js";
import { randomBytes, seeded } from "./helpers/memory.js";

/** ws's frame parser: exported by `ws`, though not in its type declarations. */
interface Receiver extends EventEmitter {
  write(chunk: Buffer): boolean;
}
const Receiver = (wsModule as unknown as { Receiver: new (options: object) => Receiver }).Receiver;

const Op = { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9 } as const;

/** One WebSocket frame as a peer sends it: masked (a client's) when `mask` is given. */
function frame(opcode: number, payload: Uint8Array, options: { fin?: boolean; mask?: Uint8Array; rsv1?: boolean } = {}): Buffer {
  const { fin = true, mask, rsv1 = false } = options;
  const length = payload.length;
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const header = Buffer.alloc(2 + extended + (mask ? 4 : 0));
  header[0] = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode;
  header[1] = (mask ? 0x80 : 0) | (extended === 0 ? length : extended === 2 ? 126 : 127);
  if (extended === 2) header.writeUInt16BE(length, 2);
  if (extended === 8) header.writeBigUInt64BE(BigInt(length), 2);
  const body = Buffer.from(payload);
  if (mask) {
    mask.forEach((byte, i) => (header[2 + extended + i] = byte));
    for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  }
  return Buffer.concat([header, body]);
}

interface Harness {
  receiver: Receiver;
  /** Messages delivered by the reader, joined from their parts. */
  messages: Uint8Array[];
  /** Every part as delivered (views). */
  parts: Uint8Array[];
  /** What ws itself emitted. */
  events: Array<[string, unknown]>;
  errors: Array<{ code: string; status: number | undefined }>;
  write(bytes: Buffer): void;
}

function harness(isServer: boolean, maxPayload = 10 * 1024 * 1024): Harness {
  const receiver = new Receiver({ isServer, maxPayload, binaryType: "nodebuffer" });
  const h: Harness = { receiver, messages: [], parts: [], events: [], errors: [], write: (bytes) => void receiver.write(bytes) };
  let current: Uint8Array[] = [];
  const installed = readBinaryFrames({ _receiver: receiver }, (chunk, more) => {
    h.parts.push(chunk);
    current.push(Buffer.from(chunk));
    if (!more) {
      h.messages.push(concat(...current));
      current = [];
    }
  });
  assert.ok(installed, "the reader took the receiver");
  for (const name of ["message", "ping", "pong", "conclude"]) receiver.on(name, (...args: unknown[]) => h.events.push([name, args]));
  receiver.on("error", (error: Error & { code: string }) => {
    const status = Object.getOwnPropertySymbols(error).find((s) => s.description === "status-code");
    h.errors.push({ code: error.code, status: status ? ((error as unknown as Record<symbol, number>)[status]) : undefined });
  });
  return h;
}

/** `bytes` in random pieces (1 byte to 20 KB), fed one by one. */
function feedSplit(h: Harness, bytes: Buffer, seed: number): Buffer[] {
  const r = seeded(seed);
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < bytes.length; ) {
    const n = 1 + Math.floor(r() * (r() < 0.3 ? 16 : 20_000));
    // A copy: each chunk is a buffer of its own, as each socket read is.
    chunks.push(Buffer.from(bytes.subarray(offset, offset + n)));
    offset += n;
  }
  for (const chunk of chunks) h.write(chunk);
  return chunks;
}

const MASK = new Uint8Array([0x12, 0x34, 0x56, 0x78]);

describe("frame reader: binary messages", () => {
  for (const isServer of [true, false]) {
    const side = isServer ? "server (masked frames)" : "client (unmasked frames)";
    const mask = isServer ? MASK : undefined;

    test(`${side}: fragmented and whole messages, a ping between fragments, any split: the same messages, as views; the ping is ws's`, () => {
      const a = [randomBytes(3000, 1), randomBytes(70_000, 2), randomBytes(5, 3)];
      const b = randomBytes(100_000, 4);
      const ping = new Uint8Array([1, 2, 3]);
      const bytes = Buffer.concat([
        frame(Op.Binary, a[0]!, { fin: false, mask }),
        frame(Op.Ping, ping, { mask }),
        frame(Op.Continuation, a[1]!, { fin: false, mask }),
        frame(Op.Continuation, a[2]!, { mask }),
        frame(Op.Binary, b, { mask }),
        frame(Op.Binary, new Uint8Array(0), { mask }),
      ]);
      for (let seed = 0; seed < 30; seed++) {
        const h = harness(isServer);
        const chunks = feedSplit(h, bytes, seed);
        assert.equal(h.messages.length, 3, `seed ${seed}`);
        assert.equal(Buffer.compare(h.messages[0]!, concat(...a)), 0, `seed ${seed}: the fragmented message`);
        assert.equal(Buffer.compare(h.messages[1]!, b), 0, `seed ${seed}: the whole one`);
        assert.equal(h.messages[2]!.length, 0, `seed ${seed}: the empty one`);
        const buffers = new Set(chunks.map((chunk) => chunk.buffer));
        assert.ok(
          h.parts.filter((part) => part.length > 0).every((part) => buffers.has(part.buffer as ArrayBuffer)),
          "every part is a view of a chunk read",
        );
        assert.deepEqual(h.events.map(([name]) => name), ["ping"], "ws saw the ping, and no message");
        assert.equal(Buffer.compare((h.events[0]![1] as Buffer[])[0]!, ping), 0);
        assert.deepEqual(h.errors, []);
      }
    });
  }

  test("a close frame goes to ws, and nothing after it is read", () => {
    const h = harness(true);
    const close = Buffer.alloc(2);
    close.writeUInt16BE(1000);
    h.write(Buffer.concat([frame(Op.Close, close, { mask: MASK }), frame(Op.Binary, randomBytes(100, 5), { mask: MASK })]));
    assert.deepEqual(h.events.map(([name]) => name), ["conclude"]);
    assert.equal(h.messages.length, 0);
    assert.deepEqual(h.errors, []);
  });

  test("readBinaryFrames takes only a ws receiver between two frames", () => {
    assert.equal(readBinaryFrames({}, () => {}), false);
    assert.equal(readBinaryFrames(null, () => {}), false);
    const receiver = new Receiver({ isServer: true });
    receiver.write(frame(Op.Binary, randomBytes(10, 6), { mask: MASK }).subarray(0, 5));
    assert.equal(readBinaryFrames({ _receiver: receiver }, () => {}), false, "in the middle of a frame: left to ws");
  });
});

describe("frame reader: what ws refuses, it still refuses", () => {
  /** Feeds `bytes` to a server-side reader; resolves with what came out (ws reports errors a tick later). */
  const run = async (bytes: Buffer, maxPayload?: number, isServer = true) => {
    const h = harness(isServer, maxPayload);
    h.write(bytes);
    await new Promise((resolve) => setImmediate(resolve));
    return h;
  };

  test("a message over maxPayload: 1009 before any of it is delivered", async () => {
    const h = await run(frame(Op.Binary, randomBytes(2000, 7), { mask: MASK }), 1000);
    assert.deepEqual(h.errors, [{ code: "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH", status: 1009 }]);
    assert.equal(h.parts.length, 0);
  });

  test("fragments adding up to more than maxPayload: 1009 at the fragment that goes over", async () => {
    const bytes = Buffer.concat([
      frame(Op.Binary, randomBytes(600, 8), { fin: false, mask: MASK }),
      frame(Op.Continuation, randomBytes(600, 9), { mask: MASK }),
    ]);
    const h = await run(bytes, 1000);
    assert.deepEqual(h.errors, [{ code: "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH", status: 1009 }]);
    assert.equal(h.messages.length, 0, "the message never ended");
    assert.equal(h.parts.reduce((n, p) => n + p.length, 0), 600, "only the first fragment was delivered");
  });

  test("a binary frame in the middle of a fragmented message: 1002", async () => {
    const bytes = Buffer.concat([
      frame(Op.Binary, randomBytes(100, 10), { fin: false, mask: MASK }),
      frame(Op.Binary, randomBytes(100, 11), { mask: MASK }),
    ]);
    const h = await run(bytes);
    assert.equal(h.errors[0]?.status, 1002);
    assert.equal(h.messages.length, 0);
  });

  test("a continuation frame with no message under way: 1002", async () => {
    const h = await run(frame(Op.Continuation, randomBytes(100, 12), { mask: MASK }));
    assert.deepEqual(h.errors, [{ code: "WS_ERR_INVALID_OPCODE", status: 1002 }]);
    assert.equal(h.parts.length, 0);
  });

  test("an unmasked frame to a server, a masked one to a client: 1002", async () => {
    assert.deepEqual((await run(frame(Op.Binary, randomBytes(10, 13)))).errors, [{ code: "WS_ERR_EXPECTED_MASK", status: 1002 }]);
    assert.deepEqual((await run(frame(Op.Binary, randomBytes(10, 13), { mask: MASK }), undefined, false)).errors, [
      { code: "WS_ERR_UNEXPECTED_MASK", status: 1002 },
    ]);
  });

  test("RSV1 without an extension: 1002", async () => {
    assert.deepEqual((await run(frame(Op.Binary, randomBytes(10, 14), { mask: MASK, rsv1: true }))).errors, [
      { code: "WS_ERR_UNEXPECTED_RSV_1", status: 1002 },
    ]);
  });

  test("a ping of 126 bytes: 1002", async () => {
    const h = await run(frame(Op.Ping, randomBytes(126, 15), { mask: MASK }));
    assert.deepEqual(h.errors, [{ code: "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH", status: 1002 }]);
  });

  test("a text message is ws's (the transport refuses it), and so is everything after it", async () => {
    const h = await run(Buffer.concat([frame(Op.Text, Buffer.from("hello"), { mask: MASK }), frame(Op.Binary, randomBytes(10, 16), { mask: MASK })]));
    assert.deepEqual(
      h.events.map(([name, args]) => [name, (args as unknown[])[1]]),
      [
        ["message", false],
        ["message", true],
      ],
    );
    assert.equal(h.parts.length, 0);
  });

  test("a text frame in the middle of a binary message: 1002", async () => {
    const bytes = Buffer.concat([
      frame(Op.Binary, randomBytes(100, 17), { fin: false, mask: MASK }),
      frame(Op.Text, Buffer.from("hello"), { mask: MASK }),
    ]);
    const h = await run(bytes);
    assert.equal(h.errors[0]?.status, 1002);
  });
});

test("frame reader: random bytes and mutated frame streams never throw; what ws does not refuse comes out as it went in (300 seeds)", async () => {
  const valid = Buffer.concat([
    frame(Op.Binary, randomBytes(300, 20), { fin: false, mask: MASK }),
    frame(Op.Ping, new Uint8Array([7]), { mask: MASK }),
    frame(Op.Continuation, randomBytes(70_000, 21), { mask: MASK }),
    frame(Op.Binary, randomBytes(10, 22), { mask: MASK }),
  ]);
  for (let seed = 0; seed < 300; seed++) {
    const r = seeded(seed);
    const bytes = seed % 3 === 0 ? Buffer.from(randomBytes(1 + Math.floor(r() * 2000), seed)) : Buffer.from(valid);
    // Mutate a few bytes (headers included) of the valid stream.
    if (seed % 3 !== 0) for (let i = 0; i < 1 + Math.floor(r() * 4); i++) bytes[Math.floor(r() * Math.min(bytes.length, 400))] = Math.floor(r() * 256);
    const h = harness(true, 100_000);
    assert.doesNotThrow(() => feedSplit(h, bytes, seed), `seed ${seed}`);
    await new Promise((resolve) => setImmediate(resolve));
    const delivered = h.parts.reduce((n, p) => n + p.length, 0);
    assert.ok(delivered <= bytes.length, `seed ${seed}: ${delivered} bytes delivered from ${bytes.length}`);
    if (h.errors.length === 0 && seed % 3 !== 0 && Buffer.compare(bytes, valid) === 0) assert.equal(h.messages.length, 2);
  }
});
