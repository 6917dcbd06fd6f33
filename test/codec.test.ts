import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { ProtocolError } from "../src/errors.js";
import { concat } from "../src/http/reader.js";
import { Decoder } from "../src/yamux/decode.js";
import {
  Flag,
  FrameType,
  GoAwayCode,
  HEADER_SIZE,
  encodeHeader,
  hasFlag,
  readHeader,
  type Frame,
} from "../src/yamux/frame.js";
import { decodeEach, describeFrame } from "./helpers/frames.js";
import { randomBytes, seeded } from "./helpers/memory.js";

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");
const fromHex = (s: string) => new Uint8Array(Buffer.from(s.replace(/\s+/g, ""), "hex"));

/** Encodes a whole frame (header + body) as the wire carries it. */
function frameBytes(type: FrameType, flags: number, streamID: number, body: Uint8Array | number): Uint8Array {
  const length = typeof body === "number" ? body : body.length;
  const header = encodeHeader(type, flags, streamID, length);
  if (typeof body === "number") return header;
  const out = new Uint8Array(HEADER_SIZE + body.length);
  out.set(header);
  out.set(body, HEADER_SIZE);
  return out;
}

function decodeAll(decoder: Decoder, chunks: Uint8Array[]): Frame[] {
  const frames: Frame[] = [];
  for (const chunk of chunks) frames.push(...decodeEach(decoder, chunk));
  return frames;
}

/** `stream` cut at random (seeded): pieces of 1-20 bytes about a third of the time, else up to 30 KB. */
function rechunk(stream: Uint8Array, seed: number): Uint8Array[] {
  const r = seeded(seed);
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < stream.length; ) {
    const n = 1 + Math.floor(r() * (r() < 0.3 ? 20 : 30_000));
    chunks.push(stream.subarray(offset, offset + n));
    offset += n;
  }
  return chunks;
}

/** Frames compared by value, bodies as hex. */
function plain(frames: Frame[]) {
  return frames.map((f) => ({ ...f, body: hex(f.body) }));
}

describe("frame header codec", () => {
  // Fixtures written from spec.md's layout: version, type, flags (16), stream ID (32), length (32), big endian.
  const fixtures: [string, FrameType, number, number, number][] = [
    ["00 00 0000 00000001 00000005", FrameType.Data, 0, 1, 5],
    ["00 01 0001 00000003 00000000", FrameType.WindowUpdate, Flag.SYN, 3, 0],
    ["00 01 0002 00000002 00040000", FrameType.WindowUpdate, Flag.ACK, 2, 256 * 1024],
    ["00 00 0005 00000007 00000010", FrameType.Data, Flag.SYN | Flag.FIN, 7, 16],
    ["00 01 0008 fffffffe 00000000", FrameType.WindowUpdate, Flag.RST, 0xfffffffe, 0],
    ["00 02 0001 00000000 deadbeef", FrameType.Ping, Flag.SYN, 0, 0xdeadbeef],
    ["00 02 0002 00000000 deadbeef", FrameType.Ping, Flag.ACK, 0, 0xdeadbeef],
    ["00 03 0000 00000000 00000001", FrameType.GoAway, 0, 0, GoAwayCode.ProtocolError],
    ["00 01 000f 00000009 ffffffff", FrameType.WindowUpdate, 0xf, 9, 0xffffffff],
  ];

  for (const [wire, type, flags, streamID, length] of fixtures) {
    test(`encodes and decodes ${wire}`, () => {
      assert.equal(hex(encodeHeader(type, flags, streamID, length)), wire.replace(/\s+/g, ""));
      assert.deepEqual(readHeader(fromHex(wire), 0), { version: 0, type, flags, streamID, length });
    });
  }

  test("flags are bits: every combination survives and is tested bit by bit", () => {
    for (let flags = 0; flags < 16; flags++) {
      const header = readHeader(encodeHeader(FrameType.Data, flags, 1, 0), 0);
      assert.equal(header.flags, flags);
      assert.equal(hasFlag(header.flags, Flag.SYN), (flags & 1) !== 0);
      assert.equal(hasFlag(header.flags, Flag.ACK), (flags & 2) !== 0);
      assert.equal(hasFlag(header.flags, Flag.FIN), (flags & 4) !== 0);
      assert.equal(hasFlag(header.flags, Flag.RST), (flags & 8) !== 0);
    }
  });

  test("reads a header at an offset inside a larger buffer", () => {
    const buffer = concat(new Uint8Array([9, 9, 9]), encodeHeader(FrameType.Ping, Flag.ACK, 0, 42));
    assert.deepEqual(readHeader(buffer.subarray(1), 2), { version: 0, type: 2, flags: 2, streamID: 0, length: 42 });
  });

  test("describes frames for logs", () => {
    assert.equal(describeFrame(readHeader(encodeHeader(FrameType.Data, Flag.SYN | Flag.FIN, 3, 5), 0)), "Data[SYN|FIN] id=3 len=5");
  });

  test("round-trips any header (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(0, 1, 2, 3),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (type, flags, streamID, length) => {
          const header = readHeader(encodeHeader(type as FrameType, flags, streamID, length), 0);
          assert.deepEqual(header, { version: 0, type, flags, streamID, length });
        },
      ),
    );
  });
});

describe("incremental decoder", () => {
  const sequence = (): Uint8Array[] => [
    frameBytes(FrameType.WindowUpdate, Flag.SYN, 1, 0),
    frameBytes(FrameType.Data, 0, 1, new TextEncoder().encode("hola")),
    frameBytes(FrameType.Ping, Flag.SYN, 0, 7),
    frameBytes(FrameType.Data, Flag.FIN, 1, randomBytes(70_000, 3)),
    frameBytes(FrameType.Data, 0, 3, new Uint8Array(0)),
    frameBytes(FrameType.GoAway, 0, 0, GoAwayCode.Normal),
  ];

  test("many frames in one message", () => {
    const frames = decodeAll(new Decoder(), [concat(...sequence())]);
    assert.equal(frames.length, 6);
    assert.equal(new TextDecoder().decode(frames[1]!.body), "hola");
    assert.equal(frames[3]!.body.length, 70_000);
    assert.equal(frames[3]!.flags, Flag.FIN);
    assert.equal(frames[4]!.body.length, 0);
  });

  test("a header split over two messages, and header and body as two messages (as Go sends them)", () => {
    const whole = decodeAll(new Decoder(), [concat(...sequence())]);
    const data = frameBytes(FrameType.Data, 0, 1, new TextEncoder().encode("hola"));
    const goStyle = decodeAll(new Decoder(), [data.subarray(0, 5), data.subarray(5, 12), data.subarray(12)]);
    assert.deepEqual(plain(goStyle), plain([whole[1]!]));
  });

  test("a 1 MiB body over 40 messages", () => {
    const body = randomBytes(1024 * 1024, 9);
    const bytes = frameBytes(FrameType.Data, 0, 5, body);
    const size = Math.ceil(bytes.length / 40);
    const chunks = Array.from({ length: 40 }, (_, i) => bytes.subarray(i * size, (i + 1) * size));
    const frames = decodeAll(new Decoder({ maxDataLength: 2 * 1024 * 1024 }), chunks);
    assert.equal(frames.length, 1);
    assert.equal(Buffer.compare(frames[0]!.body, body), 0);
  });

  test("byte by byte yields the same frames", () => {
    const stream = concat(...sequence());
    const one = decodeAll(new Decoder(), Array.from(stream, (b) => new Uint8Array([b])));
    assert.deepEqual(plain(one), plain(decodeAll(new Decoder(), [stream])));
  });

  test("any random re-chunking of a long sequence yields the same frames (200 seeds)", () => {
    const parts: Uint8Array[] = [];
    const random = seeded(42);
    for (let i = 0; i < 300; i++) {
      const kind = Math.floor(random() * 4);
      if (kind === 0) parts.push(frameBytes(FrameType.Data, Math.floor(random() * 16), 1 + 2 * i, randomBytes(Math.floor(random() * 5000), i)));
      else if (kind === 1) parts.push(frameBytes(FrameType.WindowUpdate, Math.floor(random() * 16), 2 + 2 * i, Math.floor(random() * 2 ** 32)));
      else if (kind === 2) parts.push(frameBytes(FrameType.Ping, Flag.SYN, 0, i));
      else parts.push(frameBytes(FrameType.GoAway, 0, 0, 0));
    }
    const stream = concat(...parts);
    const expected = plain(decodeAll(new Decoder(), [stream]));
    assert.equal(expected.length, 300);
    for (let seed = 0; seed < 200; seed++) {
      const chunks = rechunk(stream, seed);
      const decoder = new Decoder();
      assert.deepEqual(plain(decodeAll(decoder, chunks)), expected, `seed ${seed}`);
      assert.ok(decoder.idle);
    }
  });

  test("a body within one chunk is a view of it (no copy)", () => {
    const bytes = frameBytes(FrameType.Data, 0, 1, randomBytes(1000));
    const [frame] = decodeAll(new Decoder(), [bytes]);
    assert.equal(frame!.body.buffer, bytes.buffer);
  });

  test("a body whose header came in the chunk before is a view of its own chunk; only a split body is copied", () => {
    const body = randomBytes(1000, 3);
    const header = encodeHeader(FrameType.Data, 0, 1, body.length);
    const bodyChunk = body.slice();
    const [alone] = decodeAll(new Decoder(), [header, bodyChunk]);
    assert.equal(alone!.body.buffer, bodyChunk.buffer, "header and body as two messages (Go): no copy");
    assert.equal(Buffer.compare(alone!.body, body), 0);

    const next = frameBytes(FrameType.Data, 0, 3, randomBytes(10, 4));
    const withNext = concat(body, next);
    const frames = decodeAll(new Decoder(), [header, withNext]);
    assert.deepEqual(plain(frames), plain([...decodeAll(new Decoder(), [header, body]), ...decodeAll(new Decoder(), [next])]));
    assert.equal(frames[0]!.body.buffer, withNext.buffer, "the next frame behind the body changes nothing");

    const split = decodeAll(new Decoder(), [concat(header, body.subarray(0, 400)), body.slice(400)]);
    assert.equal(Buffer.compare(split[0]!.body, body), 0, "a body split across chunks is assembled");
  });

  /** Decodes with `onPiece`: each frame with the body it had (its pieces joined when it came in pieces). */
  function decodePieces(decoder: Decoder, chunks: Uint8Array[], pieces: Uint8Array[] = []): Frame[] {
    const frames: Frame[] = [];
    let waiting: Uint8Array[] = [];
    for (const chunk of chunks) {
      decoder.feed(
        chunk,
        (frame) => {
          if (waiting.length > 0) {
            assert.equal(frame.body.length, 0, "a frame that came in pieces ends with an empty body");
            assert.equal(frame.flags, 0, "only plain Data frames come in pieces");
            frames.push({ ...frame, body: concat(...waiting) });
            waiting = [];
          } else frames.push({ ...frame, body: frame.body.slice() });
        },
        undefined,
        (header, piece) => {
          assert.equal(header.type, FrameType.Data);
          pieces.push(piece);
          waiting.push(piece.slice());
          return true;
        },
      );
    }
    return frames;
  }

  test("onPiece: a plain Data body split across chunks comes as views of each chunk, as it arrives; nothing is copied", () => {
    const body = randomBytes(100_000, 5);
    const bytes = frameBytes(FrameType.Data, 0, 7, body);
    const chunks = [bytes.slice(0, 20), bytes.slice(20, 50_000), bytes.slice(50_000, 50_012), bytes.slice(50_012)];
    const pieces: Uint8Array[] = [];
    const frames = decodePieces(new Decoder(), chunks, pieces);
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.length, 100_000);
    assert.equal(Buffer.compare(frames[0]!.body, body), 0);
    assert.deepEqual(pieces.map((p) => p.length), [8, 49_980, 12, 49_988 + 12]);
    pieces.forEach((piece, i) => assert.equal(piece.buffer, chunks[i]!.buffer, `piece ${i} is a view of its chunk`));
  });

  test("onPiece: a body whole in one chunk is one view, and a Data frame with flags is assembled as before", () => {
    const small = frameBytes(FrameType.Data, 0, 1, randomBytes(1000, 6));
    const fin = frameBytes(FrameType.Data, Flag.FIN, 1, randomBytes(5000, 7));
    const stream = concat(small, fin);
    const pieces: Uint8Array[] = [];
    const frames = decodePieces(new Decoder(), [stream.subarray(0, 2000), stream.subarray(2000)], pieces);
    assert.equal(pieces.length, 0, "no pieces: the first body is whole, the second has a flag");
    assert.deepEqual(plain(frames), plain(decodeAll(new Decoder(), [stream])));
  });

  test("onPiece returning false stops right after that piece; the rest of the chunk, fed later, goes on", () => {
    const body = randomBytes(3000, 8);
    const bytes = concat(frameBytes(FrameType.Data, 0, 3, body), frameBytes(FrameType.Ping, Flag.SYN, 0, 9));
    const decoder = new Decoder();
    const got: Uint8Array[] = [];
    const frames: Frame[] = [];
    const onFrame = (frame: Frame) => void frames.push(frame);
    const first = bytes.subarray(0, 1000);
    assert.equal(decoder.feed(first, onFrame, undefined, (_h, piece) => (got.push(piece), false)), 1000);
    const rest = bytes.subarray(1000);
    const done = decoder.feed(rest, onFrame, undefined, (_h, piece) => (got.push(piece), false));
    assert.equal(done, 2012, "stopped after the body's last piece, before the frame and the ping");
    assert.equal(frames.length, 0);
    assert.equal(decoder.feed(rest.subarray(done), onFrame, undefined, () => true), 12);
    assert.deepEqual(frames.map((f) => [f.type, f.length]), [[FrameType.Data, 3000], [FrameType.Ping, 9]]);
    assert.equal(Buffer.compare(concat(...got), body), 0);
  });

  test("onPiece: any random re-chunking yields the same frames and bodies as without it (100 seeds)", () => {
    const parts: Uint8Array[] = [];
    const random = seeded(7);
    for (let i = 0; i < 200; i++) {
      const flags = random() < 0.6 ? 0 : Math.floor(random() * 16);
      if (random() < 0.7) parts.push(frameBytes(FrameType.Data, flags, 1 + 2 * (i % 5), randomBytes(Math.floor(random() * 20_000), i)));
      else parts.push(frameBytes(FrameType.WindowUpdate, flags, 2 + 2 * i, Math.floor(random() * 2 ** 32)));
    }
    const stream = concat(...parts);
    const expected = plain(decodeAll(new Decoder(), [stream]));
    for (let seed = 0; seed < 100; seed++) {
      const chunks = rechunk(stream, seed);
      const decoder = new Decoder();
      assert.deepEqual(plain(decodePieces(decoder, chunks)), expected, `seed ${seed}`);
      assert.ok(decoder.idle);
    }
  });

  test("rejects a bad version, an unknown type and an oversized data frame before buffering it", () => {
    assert.throws(() => decodeAll(new Decoder(), [fromHex("01 00 0000 00000001 00000000")]), ProtocolError);
    assert.throws(() => decodeAll(new Decoder(), [fromHex("00 04 0000 00000001 00000000")]), /unknown frame type 4/);
    assert.throws(
      () => decodeAll(new Decoder({ maxDataLength: 1024 }), [fromHex("00 00 0000 00000001 00000401")]),
      (e: unknown) => e instanceof ProtocolError && e.code === "ERR_PROTOCOL" && /exceeds/.test(e.message),
    );
    // Length on a non-Data frame is not a body length: a huge window delta is fine.
    assert.equal(decodeAll(new Decoder({ maxDataLength: 1 }), [fromHex("00 01 0000 00000001 ffffffff")]).length, 1);
  });

  test("fuzz: random bytes either decode or throw ProtocolError, never anything else", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (chunks) => {
        const decoder = new Decoder({ maxDataLength: 4096 });
        try {
          for (const chunk of chunks) for (const frame of decodeEach(decoder, chunk)) assert.ok(frame.type <= 3);
        } catch (error) {
          assert.ok(error instanceof ProtocolError, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("fuzz: mutated valid streams either decode or throw ProtocolError", () => {
    const stream = concat(...sequence());
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(stream.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), (mutations) => {
        const copy = stream.slice();
        for (const [at, value] of mutations) copy[at] = value;
        const decoder = new Decoder({ maxDataLength: 256 * 1024 });
        try {
          decodeAll(decoder, [copy]);
        } catch (error) {
          assert.ok(error instanceof ProtocolError, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
