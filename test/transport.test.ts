import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { CloseCode, closeCodeFor } from "../src/close-codes.js";
import { ProtocolError } from "../src/errors.js";
import { webSocketTransport, type WebSocketLike } from "../src/transport.js";
import { Decoder } from "../src/yamux/decode.js";
import { Flag, FrameType, encodeHeader } from "../src/yamux/frame.js";
import { CUT_AFTER_DATA_FRAMES, MAX_MESSAGE_FRAMES, Outbox, type MessageSink } from "../src/yamux/outbox.js";
import { BufferPool } from "../src/yamux/pool.js";
import { Session } from "../src/yamux/session.js";
import { messageChannelDefer } from "../src/yamux/clock.js";
import { FakeClock } from "./helpers/clock.js";
import { decodeFrames } from "./helpers/frames.js";
import { randomBytes, readAll } from "./helpers/memory.js";
import { startServer } from "./helpers/net.js";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import WebSocket from "ws";
import { dialAndListen } from "../server-node/device.js";
import { Server } from "../server-node/index.js";
import { READ_BYTES_PER_TURN } from "../server-node/node-transport.js";
import { turns, until, within } from "./helpers/assert.js";

/**
 * A transport stand-in that "writes" a message only when the test says so: its bytes are captured at
 * that moment (as a socket would read them), and only then does the sent callback run.
 */
class SlowSink implements MessageSink {
  readonly queued: { data: Uint8Array; onSent: () => void }[] = [];
  readonly wire: Uint8Array[] = [];
  /** What send() returns: false makes the outbox hold its messages until drain(). */
  accept = true;
  send(data: Uint8Array, onSent: () => void): boolean {
    this.queued.push({ data, onSent });
    return this.accept;
  }
  /** Writes out every queued message, in order. */
  flushAll(): void {
    for (const { data, onSent } of this.queued.splice(0)) {
      this.wire.push(data.slice());
      onSent();
    }
  }
}


function outbox(options: { slab?: number; keep?: number; maxPendingReplies?: number; clock?: FakeClock; allocate?: (n: number) => Uint8Array } = {}) {
  const sink = new SlowSink();
  const clock = options.clock ?? new FakeClock();
  const pool = new BufferPool({ size: options.slab ?? 64 * 1024, keep: options.keep ?? 8, clock, allocate: options.allocate });
  let drains = 0;
  const box = new Outbox({
    sink,
    pool,
    defer: (fn) => void setImmediate(fn),
    maxPendingReplies: options.maxPendingReplies ?? 1024,
    maxFrameSize: (options.slab ?? 64 * 1024) - 12,
    onDrain: () => drains++,
  });
  return { sink, pool, box, clock, drains: () => drains };
}

/** The frames on the wire as [type, flags, streamID, length], and the Data bytes each stream carried. */
function readWire(wire: Uint8Array[]): { frames: number[][]; bytes: Map<number, Buffer> } {
  const frames: number[][] = [];
  const parts = new Map<number, Buffer[]>();
  for (const frame of decodeFrames(new Decoder({ maxDataLength: 1 << 20 }), Buffer.concat(wire))) {
    frames.push([frame.type, frame.flags, frame.streamID, frame.length]);
    if (frame.type === FrameType.Data) parts.set(frame.streamID, [...(parts.get(frame.streamID) ?? []), Buffer.from(frame.body)]);
  }
  return { frames, bytes: new Map([...parts].map(([id, list]) => [id, Buffer.concat(list)])) };
}

test("outbox: frames of one turn leave as one message, control frames ride along, buffers are reused only once written", async () => {
  const { sink, pool, box } = outbox();
  const sent = new Map<number, Uint8Array[]>();
  const data = (id: number, body: Uint8Array) => {
    sent.set(id, [...(sent.get(id) ?? []), body.slice()]);
    box.data(id, body);
  };
  // Turn 1: three data frames, written while nothing has left yet; the caller reuses its buffer at once.
  const scratch = new Uint8Array(20_000);
  for (let i = 0; i < 3; i++) {
    scratch.set(randomBytes(scratch.length, i));
    data(1, scratch);
  }
  assert.equal(sink.queued.length, 0, "data waits for the end of the turn");
  await turns();
  assert.equal(sink.queued.length, 1, "one message for the turn");
  // Turn 2: more data than a buffer holds, while the first buffer is still in flight (not written out).
  for (let i = 3; i < 8; i++) data(1, randomBytes(20_000, i));
  // A control frame rides in the same message, after the data before it.
  box.control(FrameType.WindowUpdate, Flag.ACK, 2, 0);
  assert.equal(sink.queued.length, 2, "a full buffer left at once; the control frame waits for the turn's end");
  data(3, randomBytes(50_000, 99)); // does not fit behind: the message is cut and it starts the next one
  await turns();
  const allocated = pool.allocations;
  sink.flushAll();
  // Turn 3: with everything written, buffers are reused; their old bytes must not leak into new messages.
  for (let i = 8; i < 12; i++) data(5, randomBytes(30_000, i));
  box.close(); // sends what is pending
  sink.flushAll();
  assert.equal(pool.allocations, allocated, "buffers written out are reused");

  const { frames, bytes } = readWire(sink.wire);
  // A stream's consecutive Data frames in one message became one frame; a full buffer and the end of
  // the turn each end the frame, a control frame ends the joining.
  const D = FrameType.Data;
  assert.deepEqual(frames, [
    [D, 0, 1, 60_000],
    [D, 0, 1, 60_000],
    [D, 0, 1, 40_000],
    [FrameType.WindowUpdate, Flag.ACK, 2, 0],
    [D, 0, 3, 50_000],
    [D, 0, 5, 60_000],
    [D, 0, 5, 60_000],
  ]);
  assert.equal(sink.wire.length, 6, "messages: turn 1, two cut full, the rest of turn 2, two in turn 3");
  for (const [id, bodies] of sent) {
    assert.equal(Buffer.compare(bytes.get(id)!, Buffer.concat(bodies)), 0, `stream ${id} carried exactly its bytes, in order`);
  }
  assert.equal(Buffer.concat(sink.wire).length, 12 * 7 + 330_000, "nothing else is on the wire");
});

test("outbox: joins only Data frames of one stream that follow each other; a stream's credits in one message become one WindowUpdate", async () => {
  const { sink, box } = outbox({ slab: 1 << 20 });
  const data = (id: number, size: number, seed: number) => box.data(id, randomBytes(size, seed));
  data(1, 1000, 1);
  box.control(FrameType.WindowUpdate, 0, 1, 100);
  data(3, 1000, 2); // another stream: a frame of its own
  data(1, 1000, 3); // stream 1 again, but not right after its previous frame
  data(1, 1000, 4); // joins the previous one
  box.control(FrameType.WindowUpdate, 0, 1, 50); // added to stream 1's credit above
  box.control(FrameType.WindowUpdate, Flag.FIN, 1, 0); // a flag: a frame of its own
  data(1, 1000, 5); // after a control frame: a frame of its own
  await turns();
  data(1, 1000, 6); // a new turn, a new message: a new frame
  box.control(FrameType.WindowUpdate, 0, 1, 7); // a new message: a new WindowUpdate
  await turns();
  sink.flushAll();
  box.close();

  assert.equal(sink.wire.length, 2, "one message per turn");
  const { frames, bytes } = readWire(sink.wire);
  const D = FrameType.Data;
  const W = FrameType.WindowUpdate;
  assert.deepEqual(frames, [
    [D, 0, 1, 1000],
    [W, 0, 1, 150],
    [D, 0, 3, 1000],
    [D, 0, 1, 2000],
    [W, Flag.FIN, 1, 0],
    [D, 0, 1, 1000],
    [D, 0, 1, 1000],
    [W, 0, 1, 7],
  ]);
  const expected = Buffer.concat([1, 3, 4, 5, 6].map((seed) => randomBytes(1000, seed)));
  assert.equal(Buffer.compare(bytes.get(1)!, expected), 0);
});

test("outbox (property): any frames and turns carry the same bytes and credit per stream, control frames where they were, no frame added", async () => {
  type Op =
    | { kind: "data"; id: number; size: number }
    | { kind: "control"; id: number }
    | { kind: "credit"; id: number; delta: number }
    | { kind: "turn" };
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({ kind: fc.constant("data" as const), id: fc.constantFrom(1, 3, 5), size: fc.integer({ min: 1, max: 60_000 }) }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("control" as const), id: fc.constantFrom(1, 3, 5) }) },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant("credit" as const), id: fc.constantFrom(1, 3, 5), delta: fc.integer({ min: 1, max: 1 << 20 }) }),
    },
    { weight: 1, arbitrary: fc.constant({ kind: "turn" as const }) },
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), fc.constantFrom(64 * 1024, 256 * 1024), async (ops, slab) => {
      const { sink, box } = outbox({ slab });
      const expected = new Map<number, Buffer[]>();
      const expectedCredit = new Map<number, number>();
      /** Each control frame as "stream@Data bytes written before it". */
      const expectedControls: string[] = [];
      let dataBytes = 0;
      let writes = 0;
      for (const [seed, o] of ops.entries()) {
        if (o.kind === "turn") {
          await turns();
          sink.flushAll();
        } else if (o.kind === "data") {
          const body = randomBytes(o.size, seed);
          expected.set(o.id, [...(expected.get(o.id) ?? []), Buffer.from(body)]);
          box.data(o.id, body);
          body.fill(0); // the caller may reuse its buffer at once
          dataBytes += o.size;
          writes++;
        } else if (o.kind === "credit") {
          expectedCredit.set(o.id, (expectedCredit.get(o.id) ?? 0) + o.delta);
          box.control(FrameType.WindowUpdate, 0, o.id, o.delta);
          writes++;
        } else {
          expectedControls.push(`${o.id}@${dataBytes}`);
          box.control(FrameType.WindowUpdate, Flag.ACK, o.id, 7);
          writes++;
        }
      }
      box.close();
      sink.flushAll();

      const got = new Map<number, Buffer[]>();
      const credit = new Map<number, number>();
      const controls: string[] = [];
      let seen = 0;
      let frames = 0;
      for (const message of sink.wire) {
        const creditsHere = new Set<number>();
        for (const frame of decodeFrames(new Decoder({ maxDataLength: 1 << 20 }), message)) {
          frames++;
          if (frame.type === FrameType.Data) {
            got.set(frame.streamID, [...(got.get(frame.streamID) ?? []), Buffer.from(frame.body)]);
            seen += frame.body.length;
          } else if (frame.flags === 0) {
            assert.ok(!creditsHere.has(frame.streamID), "one credit frame per stream per message");
            creditsHere.add(frame.streamID);
            credit.set(frame.streamID, (credit.get(frame.streamID) ?? 0) + frame.length);
          } else {
            controls.push(`${frame.streamID}@${seen}`);
          }
        }
      }
      for (const [id, bodies] of expected) {
        assert.equal(Buffer.compare(Buffer.concat(got.get(id) ?? []), Buffer.concat(bodies)), 0, `stream ${id} carried its bytes in order`);
      }
      assert.deepEqual(credit, expectedCredit, "credit per stream adds up");
      assert.deepEqual(controls, expectedControls);
      assert.ok(frames <= writes, "joining never adds a frame");
    }),
    { numRuns: 150 },
  );
});

test(`outbox: a burst of many streams' Data frames leaves every ${CUT_AFTER_DATA_FRAMES} frames, not at the end of the turn`, async () => {
  const { sink, box } = outbox({ slab: 1 << 20 });
  // Answers to many calls in one turn: the peer gets the first ones while later ones are still written.
  for (let id = 1; id < 2 * CUT_AFTER_DATA_FRAMES; id += 2) {
    box.data(id, randomBytes(1000, id));
    box.control(FrameType.WindowUpdate, 0, id, 100); // credit does not count
  }
  assert.equal(sink.queued.length, 1, "the first frames left before the turn ended");
  // A stream's consecutive writes join into one frame and count once; then other streams' frames.
  for (let i = 0; i < 3 * CUT_AFTER_DATA_FRAMES; i++) box.data(101, randomBytes(100, i));
  for (let id = 201; id < 201 + 2 * (CUT_AFTER_DATA_FRAMES - 2); id += 2) box.data(id, randomBytes(10, id));
  assert.equal(sink.queued.length, 1, "joined writes counted once: the second message is one frame short");
  box.data(999, randomBytes(10, 999));
  assert.equal(sink.queued.length, 2);
  box.data(1001, randomBytes(10, 1001));
  await turns();
  sink.flushAll();
  const perMessage = sink.wire.map((m) => decodeFrames(new Decoder(), m).map((f) => [f.type, f.streamID, f.length]));
  assert.deepEqual(perMessage.map((m) => m.filter(([type]) => type === FrameType.Data).length), [CUT_AFTER_DATA_FRAMES, CUT_AFTER_DATA_FRAMES, 1]);
  const last = 2 * CUT_AFTER_DATA_FRAMES - 1;
  assert.equal(perMessage[0]!.length, last, "the message left right after its last Data frame");
  assert.deepEqual(perMessage[1]!.slice(0, 2), [
    [FrameType.WindowUpdate, last, 100], // that stream's credit opens the next message
    [FrameType.Data, 101, 300 * CUT_AFTER_DATA_FRAMES], // stream 101's writes are one frame
  ]);
  box.close();
});

test("outbox: at most MAX_MESSAGE_FRAMES frames per message", async () => {
  const { sink, box } = outbox({ slab: 1 << 20 });
  for (let i = 0; i < MAX_MESSAGE_FRAMES + 10; i++) box.control(FrameType.WindowUpdate, Flag.ACK, 2 * i + 1, 0);
  await turns();
  sink.flushAll();
  const counts = sink.wire.map((m) => decodeFrames(new Decoder(), m).length);
  assert.deepEqual(counts, [MAX_MESSAGE_FRAMES, 10]);
  box.close();
});

test("outbox: while the transport is full, messages wait, pings get one pong for the latest id, refusals are budgeted", async () => {
  const { sink, box, drains } = outbox({ maxPendingReplies: 3 });
  sink.accept = false;
  box.data(1, randomBytes(100));
  await turns();
  assert.equal(sink.queued.length, 1, "the first message went: the transport said it is full only then");
  for (let id = 1; id <= 1000; id++) box.pong(id);
  assert.equal(box.refuse(3), true);
  assert.equal(box.refuse(5), true);
  assert.equal(box.refuse(7), true);
  await turns();
  assert.equal(sink.queued.length, 1, "nothing more goes to a full transport");
  assert.equal(box.queuedBytes, 36, "three RSTs wait; the pong waits as a number, not as a frame");
  assert.equal(box.refuse(9), false, "a fourth refusal is over the budget");
  sink.accept = true;
  sink.flushAll();
  box.drain();
  assert.equal(drains(), 1, "writers were told");
  sink.flushAll();
  const { frames } = readWire(sink.wire);
  assert.deepEqual(frames.slice(1), [
    [FrameType.WindowUpdate, Flag.RST, 3, 0],
    [FrameType.WindowUpdate, Flag.RST, 5, 0],
    [FrameType.WindowUpdate, Flag.RST, 7, 0],
    [FrameType.WindowUpdate, Flag.RST, 9, 0],
    [FrameType.Ping, Flag.ACK, 0, 1000],
  ]);
  assert.equal(box.refuse(11), true, "the budget counts refusals still waiting, not all of them");
  box.close();
});

test("buffer pool: reused while busy, let go after a whole idle second (injected clock, no sleeping)", async () => {
  const clock = new FakeClock();
  let allocations = 0;
  const { sink, box } = outbox({ clock, allocate: (size) => (allocations++, new Uint8Array(size)) });
  const burst = async () => {
    box.data(1, randomBytes(1000));
    await turns();
    sink.flushAll(); // written out: the connection is idle again
  };
  await burst();
  assert.equal(allocations, 1);
  await burst();
  await burst();
  assert.equal(allocations, 1, "a busy connection reuses its buffer");
  for (let i = 0; i < 5; i++) {
    clock.advance(300);
    await burst();
  }
  assert.equal(allocations, 1, "pauses shorter than a second, 1.5 s in all: the buffer is kept");
  clock.advance(2100);
  await burst();
  assert.equal(allocations, 2, "after a whole second idle the buffer was let go, so a new one was needed");
  box.close();
  assert.equal(clock.pending, 0, "closing stops the pool's timer");
});

/** A WebSocket stand-in whose sends complete when the test says so. */
class SlowSocket implements WebSocketLike {
  binaryType = "";
  bufferedAmount = 0;
  readyState = 1;
  protocol = "";
  readonly queued: { data: Uint8Array; callback?: () => void }[] = [];
  closedWith: [number | undefined, string | undefined] | undefined;
  send(data: Uint8Array, callback?: () => void): void {
    this.queued.push({ data, callback });
  }
  close(code?: number, reason?: string): void {
    this.closedWith = [code, reason];
  }
  addEventListener(): void {}
  removeEventListener(): void {}
}

test("webSocketTransport: backpressure from send callbacks, bytes reusable only after them, the close code it is given", () => {
  const ws = new SlowSocket();
  const transport = webSocketTransport(ws, { sendCallbacks: true, highWaterMark: 1000, lowWaterMark: 500, closeCode: closeCodeFor });
  let drains = 0;
  transport.start({ data() {}, drain: () => drains++, close() {} });
  let sent = 0;
  assert.equal(transport.send(new Uint8Array(600), () => sent++), true);
  assert.equal(transport.send(new Uint8Array(600), () => sent++), false, "above the high watermark");
  assert.equal(sent, 0, "the buffers are still the socket's");
  ws.queued.shift()!.callback!();
  assert.equal(sent, 1);
  assert.equal(drains, 0, "600 bytes still unsent: above the low watermark");
  ws.queued.shift()!.callback!();
  assert.equal(drains, 1);
  transport.close(new ProtocolError("test"));
  assert.deepEqual(ws.closedWith, [CloseCode.ProtocolError, "yamux protocol error"]);
});

/**
 * A WebSocket stand-in that writes out `rate` bytes per turn of the event loop, in order, and runs a
 * message's send callback once all of it is written, as `ws` over a socket the peer drains at a finite
 * speed. Messages to this end are handed in with `deliver`.
 */
class PacedSocket implements WebSocketLike {
  binaryType = "";
  bufferedAmount = 0;
  readyState = 1;
  protocol = "";
  written = 0;
  readonly #queue: { data: Uint8Array; left: number; callback?: () => void }[] = [];
  readonly #listeners = new Map<string, ((event: any) => void)[]>();
  #pumping = false;
  constructor(readonly rate: number) {}
  send(data: Uint8Array, callback?: () => void): void {
    this.#queue.push({ data, left: data.length, callback });
    if (!this.#pumping) {
      this.#pumping = true;
      setImmediate(() => this.#pump());
    }
  }
  #pump(): void {
    let budget = this.rate;
    while (budget > 0 && this.#queue.length > 0) {
      const head = this.#queue[0]!;
      const n = Math.min(budget, head.left);
      head.left -= n;
      budget -= n;
      this.written += n;
      if (head.left > 0) break;
      this.#queue.shift();
      head.callback?.();
    }
    if (this.#queue.length > 0) setImmediate(() => this.#pump());
    else this.#pumping = false;
  }
  deliver(data: Uint8Array): void {
    for (const listener of this.#listeners.get("message") ?? []) listener({ data });
  }
  close(): void {}
  addEventListener(type: string, listener: (event: any) => void): void {
    this.#listeners.set(type, [...(this.#listeners.get(type) ?? []), listener]);
  }
  removeEventListener(type: string, listener: (event: any) => void): void {
    this.#listeners.set(type, (this.#listeners.get(type) ?? []).filter((l) => l !== listener));
  }
}

test("a bulk writer over a transport with send callbacks reuses its message buffers (issue 10: one 1 MiB buffer per 2 MiB sent)", async () => {
  // Node's transport: a message buffer is the socket's until its send callback, up to the high
  // watermark (1 MiB) of them, while the outbox fills the next one. The pool must keep that many: with
  // one too few, every drain cycle dropped a buffer and the next allocated one, ~180 per 384 MiB, and
  // those long-lived 1 MiB buffers drove the sending process into a full GC every few MB.
  const ws = new PacedSocket(256 * 1024);
  let allocations = 0;
  const transport = webSocketTransport(ws, { sendCallbacks: true, allocate: (size) => (allocations++, new Uint8Array(size)) });
  const session = new Session(transport, { role: "client", keepAliveInterval: 0, maxStreamWindow: 256 * 1024, timers: new FakeClock() });
  const stream = await session.open();
  const total = 32 * 1024 * 1024;
  // The peer grants the whole transfer up front: only the transport paces the writer.
  ws.deliver(encodeHeader(FrameType.WindowUpdate, Flag.ACK, stream.streamID, total));
  const writer = stream.writable.getWriter();
  const chunk = new Uint8Array(64 * 1024);
  for (let sent = 0; sent < total; sent += chunk.length) {
    await writer.ready;
    void writer.write(chunk);
  }
  await writer.ready;
  await within(
    (async () => {
      while (ws.written < total) await turns();
    })(),
    10_000,
    "everything written out",
  );
  assert.ok(allocations <= 3, `${allocations} message buffers allocated for 32 MiB`);
  session.close();
});

/**
 * A browser-like WebSocket (no send callbacks) on a fake clock: it sends `rate` bytes per ms of what is
 * buffered, and keeps count of the time it sat empty.
 */
class DrainingSocket implements WebSocketLike {
  binaryType = "";
  readyState = 1;
  protocol = "";
  #buffered = 0;
  #at = 0;
  dry = 0;
  peak = 0;
  constructor(
    readonly clock: FakeClock,
    readonly rate: number,
  ) {}
  get bufferedAmount(): number {
    const now = this.clock.now();
    const left = this.#buffered - (now - this.#at) * this.rate;
    if (left < 0) this.dry += -left / this.rate;
    this.#buffered = Math.max(0, left);
    this.#at = now;
    return this.#buffered;
  }
  send(data: Uint8Array): void {
    this.#buffered = this.bufferedAmount + data.length;
    this.peak = Math.max(this.peak, this.#buffered);
  }
  close(): void {}
  addEventListener(): void {}
  removeEventListener(): void {}
}

/** A writer with no end of 64 KiB messages on a polled transport over `ws`, for `ms` of fake time. */
function upload(ws: DrainingSocket, ms: number): void {
  const transport = webSocketTransport(ws, { clock: ws.clock });
  const message = new Uint8Array(64 * 1024);
  const write = () => {
    for (let i = 0; i < 1000 && transport.send(message, () => {}); i++) {}
  };
  transport.start({ data() {}, drain: write, close() {} });
  write();
  for (let t = 0; t < ms; t++) ws.clock.advance(1);
  void ws.bufferedAmount; // counts the dry time up to the end
  transport.close();
}

test("webSocketTransport, polled (browsers): a fast socket never runs dry between looks; a slow one queues little more than the high watermark", () => {
  // 512 KiB per ms, twice the low watermark per 4 ms poll: with fixed marks it sat empty half the time.
  const fast = new DrainingSocket(new FakeClock(), 512 * 1024);
  upload(fast, 1000);
  assert.ok(fast.dry < 20, `the socket sat empty ${fast.dry.toFixed(1)} ms of 1000 (the first looks measure its rate)`);
  assert.ok(fast.peak <= 5 * 1024 * 1024 + 64 * 1024, `at most 4 x the high watermark more is queued (peak ${fast.peak})`);
  // 10 KiB per ms (about 10 MB/s): the marks rise by twice what it sends in a 4 ms interval, 80 KiB.
  const slow = new DrainingSocket(new FakeClock(), 10 * 1024);
  upload(slow, 1000);
  assert.ok(slow.peak <= 1024 * 1024 + 80 * 1024 + 64 * 1024 + 1, `a slow socket queues about its high watermark (peak ${slow.peak})`);
  assert.equal(slow.dry, 0);
});

test("webSocketTransport, polled (browsers): messages of at most 64 KiB, so Chromium sends each as one WebSocket frame; the bytes arrive intact", async () => {
  // Chromium frames what it finds in a 64 KiB pipe: a 1 MiB message reached the server in up to 41
  // frames, which `ws` then joined into a new buffer (the server's core 70-88% busy at ~100 MB/s).
  class RecordingSocket extends PacedSocket {
    readonly messages: Uint8Array[] = [];
    override send(data: Uint8Array, callback?: () => void): void {
      this.messages.push(data.slice()); // a browser copies on send
      super.send(data, callback);
    }
  }
  const polled = new RecordingSocket(1 << 30);
  const transport = webSocketTransport(polled, { clock: new FakeClock() });
  assert.equal(transport.maxMessageBytes, 64 * 1024);
  assert.equal(webSocketTransport(new PacedSocket(1), { sendCallbacks: true }).maxMessageBytes, undefined, "Node's ws: 1 MiB messages");
  const session = new Session(transport, { role: "client", keepAliveInterval: 0, timers: new FakeClock() });
  assert.equal(session.maxFrameSize, 64 * 1024 - 12);
  const stream = await session.open();
  const total = 4 * 1024 * 1024;
  polled.deliver(encodeHeader(FrameType.WindowUpdate, Flag.ACK, stream.streamID, total));
  const sent = randomBytes(total);
  const writer = stream.writable.getWriter();
  for (let at = 0; at < total; at += 64 * 1024) {
    await writer.ready;
    void writer.write(sent.subarray(at, at + 64 * 1024));
  }
  await writer.ready;
  await until(() => readWire(polled.messages).bytes.get(stream.streamID)?.length === total, 10_000, "everything sent");
  const largest = Math.max(...polled.messages.map((message) => message.length));
  assert.ok(largest <= 64 * 1024, `largest message ${largest} bytes`);
  assert.ok(polled.messages.length >= total / (64 * 1024), `${polled.messages.length} messages`);
  assert.deepEqual(readWire(polled.messages).bytes.get(stream.streamID), Buffer.from(sent));
  session.close();
  // A transport's own figure is checked (a custom Transport may give any), and bounded by 1 MiB.
  const sized = (maxMessageBytes: number) => new Session(webSocketTransport(new PacedSocket(1), { maxMessageBytes }), { role: "client", keepAliveInterval: 0, timers: new FakeClock() });
  for (const bad of [Number.NaN, 1000.5, 100]) assert.throws(() => sized(bad), /maxMessageBytes must be an integer of at least 4096/);
  const large = sized(4 * 1024 * 1024);
  assert.equal(large.maxFrameSize, 1024 * 1024 - 12);
  large.close();
});

test("over real ws: a server with maxStreamWindow 256 KiB and a Node device writing on 4 streams (no 1009)", async () => {
  const size = 4 * 1024 * 1024;
  let resolve!: (value: Uint8Array[]) => void;
  let reject!: (error: unknown) => void;
  const done = { promise: new Promise<Uint8Array[]>((res, rej) => ((resolve = res), (reject = rej))), resolve, reject };
  const { server, url } = await startServer(
    async (dialer) => {
      try {
        const conns = await Promise.all(Array.from({ length: 4 }, () => dialer.dial()));
        resolve(await Promise.all(conns.map((conn) => readAll(conn.readable))));
      } catch (error) {
        reject(error);
      }
    },
    { session: { maxStreamWindow: 256 * 1024 } },
  );
  const lis = await dialAndListen(url, { params: { deviceId: "writer" }, reconnect: false });
  try {
    void (async () => {
      for await (const conn of lis) {
        const writer = conn.writable.getWriter();
        void writer.write(randomBytes(size, conn.streamID)).then(() => writer.close(), () => {});
      }
    })();
    const got = await within(done.promise, 20_000, "four 4 MiB streams");
    for (const [i, bytes] of got.entries()) {
      assert.equal(Buffer.compare(bytes, randomBytes(size, 2 * i + 1)), 0, `stream ${2 * i + 1} carried its bytes`);
    }
    assert.equal(server.devices.size, 1, "the connection lived");
  } finally {
    await lis.close();
    await server.close();
  }
});

test("browsers: the outbox's flush and reverse HTTP's look-ahead defer on one MessageChannel (one postMessage per task, not one each)", async () => {
  const { browserPlatform } = await import("../src/index.js");
  assert.equal(browserPlatform.clock?.defer, messageChannelDefer(), "the browser entry's clock defers on the shared channel");
  assert.equal(messageChannelDefer(), messageChannelDefer(), "every caller gets the same channel");
});

test("Node server: a socket is read at most READ_BYTES_PER_TURN (plus one read) per turn, so one 1 MiB message is read over several turns", async () => {
  const wslis = new Server(() => {}, { logger: { warn() {}, error() {} } });
  const http = createServer();
  /** Most bytes the device's socket delivered in one turn of the event loop (a setImmediate ends it). */
  let most = 0;
  let received = 0;
  http.on("upgrade", (request, socket, head) => {
    let turn = 0;
    let queued = false;
    // Listening before `ws` does: every chunk read from the kernel is seen here.
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      turn += chunk.length;
      most = Math.max(most, turn);
      if (!queued) {
        queued = true;
        setImmediate(() => {
          queued = false;
          turn = 0;
        });
      }
    });
    wslis.handleUpgrade(request, socket, head);
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  const { port } = http.address() as AddressInfo;
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  try {
    // One Data frame for a stream the server does not know (passed over): a message as large as wslis sends.
    const message = new Uint8Array(1_000_012);
    message.set(encodeHeader(FrameType.Data, 0, 3, 1_000_000));
    ws.send(message);
    await until(() => received > 1_000_012, 5000, "the message read by the server");
    assert.ok(most <= READ_BYTES_PER_TURN + 64 * 1024, `${most} bytes read in one turn`);
  } finally {
    ws.terminate();
    await wslis.close();
    http.close();
  }
});

test("over real ws: a device whose messages come in fragments with pings between them is served (the Node server reads frames off the socket)", async () => {
  let fragmented = 0;
  /** A `ws` WebSocket that sends each message as three fragments, with a ping after the first. */
  class Fragmenting extends WebSocket {
    override send(data: Uint8Array, ...rest: unknown[]): void {
      fragmented++;
      const callback = rest.find((arg) => typeof arg === "function") as ((error?: Error) => void) | undefined;
      const third = Math.ceil(data.length / 3);
      super.send(data.subarray(0, third), { fin: false });
      this.ping(Buffer.from("between"));
      super.send(data.subarray(third, 2 * third), { fin: false });
      super.send(data.subarray(2 * third), { fin: true }, callback);
    }
  }
  const size = 3 * 1024 * 1024;
  const sent = randomBytes(size, 21);
  let resolve!: (value: Uint8Array) => void;
  let reject!: (error: unknown) => void;
  const echoed = new Promise<Uint8Array>((res, rej) => ((resolve = res), (reject = rej)));
  const { server, url } = await startServer(async (dialer) => {
    try {
      const conn = await dialer.dial();
      const writer = conn.writable.getWriter();
      void writer.write(sent).then(() => writer.close());
      resolve(await readAll(conn.readable));
    } catch (error) {
      reject(error);
    }
  });
  const lis = await dialAndListen(url, { params: { deviceId: "fragments" }, reconnect: false, WebSocket: Fragmenting as never });
  try {
    void (async () => {
      for await (const conn of lis) void conn.readable.pipeTo(conn.writable).catch(() => {});
    })();
    const got = await within(echoed, 20_000, "3 MiB echoed in fragments");
    assert.equal(Buffer.compare(got, sent), 0, "the bytes came back intact");
    assert.ok(fragmented >= 3, `the device sent ${fragmented} messages in fragments`);
    assert.equal(server.devices.size, 1, "the connection lived");
  } finally {
    await lis.close();
    await server.close();
  }
});
