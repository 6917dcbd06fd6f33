import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AbusivePeerError, ProtocolError, WslisError } from "../src/errors.js";
import { Flag, FrameType, GoAwayCode, HEADER_SIZE, INITIAL_WINDOW, encodeHeader, readHeader } from "../src/yamux/frame.js";
import { concat } from "../src/http/reader.js";
import { FRAMES_PER_TURN, HELLO_PING, STREAM_FAILS_PER_TURN, STREAMS_PER_TURN, Session, SessionState } from "../src/yamux/session.js";
import { MAX_MESSAGE_BYTES, maxIncomingMessageBytes } from "../src/yamux/outbox.js";
import { WindowTuner } from "../src/yamux/tuner.js";
import type { Conn } from "../src/yamux/stream.js";
import { FakeClock } from "./helpers/clock.js";
import { collectGarbage, memoryPair, quiet, randomBytes, readAll, seeded, sessionPair, type MemoryEnd } from "./helpers/memory.js";
import { hasCode, sha256Hex, turns, until, within } from "./helpers/assert.js";

const text = (s: string) => new TextEncoder().encode(s);

/** Frames one end wrote, decoded from its raw bytes (each write is one frame in the memory pair). */
function framesWritten(end: MemoryEnd) {
  return end.written.map((bytes) => ({ ...readHeader(bytes, 0), bodyLength: bytes.length - HEADER_SIZE }));
}

async function write(stream: Conn, bytes: Uint8Array, close = true): Promise<void> {
  const writer = stream.writable.getWriter();
  await writer.write(bytes);
  if (close) await writer.close();
  writer.releaseLock();
}

function echo(stream: Conn): Promise<void> {
  return stream.readable.pipeTo(stream.writable);
}

describe("session pair in memory", () => {
  test("open/accept both ways, echo", async () => {
    const { client, server } = sessionPair();
    const [toServer, fromClient] = await Promise.all([client.open(), server.accept()]);
    assert.equal(toServer.streamID, 1);
    assert.equal(fromClient.streamID, 1);
    const [toClient, fromServer] = await Promise.all([server.open(), client.accept()]);
    assert.equal(toClient.streamID, 2);
    assert.equal(fromServer.streamID, 2);

    void echo(fromClient);
    void echo(fromServer);
    await write(toServer, text("hola"));
    await write(toClient, text("chau"));
    assert.equal(new TextDecoder().decode(await readAll(toServer.readable)), "hola");
    assert.equal(new TextDecoder().decode(await readAll(toClient.readable)), "chau");
    await within(Promise.all([toServer.closed, fromClient.closed, toClient.closed, fromServer.closed]), 1000);
    assert.equal(client.numStreams, 0);
    assert.equal(server.numStreams, 0);
    client.close();
  });

  test("an accepted stream is ACKed at once, before accept() and before any data", async () => {
    const { client, serverEnd } = sessionPair();
    await client.open();
    const onStream1 = () => framesWritten(serverEnd).filter((f) => f.streamID === 1);
    await until(() => onStream1().length > 0, 1000, "ACK");
    const [ack] = onStream1();
    assert.equal(ack!.type, FrameType.WindowUpdate);
    assert.equal(ack!.flags, Flag.ACK);
    client.close();
  });

  test("echo survives any re-chunking of the byte stream (20 seeds, 300 KiB each)", async () => {
    for (let seed = 0; seed < 20; seed++) {
      const { client, server } = sessionPair({ pair: { rechunk: true, random: seeded(seed) } });
      const payload = randomBytes(300 * 1024, seed);
      void server.accept().then(echo);
      const stream = await client.open();
      const [, back] = await Promise.all([write(stream, payload), readAll(stream.readable)]);
      assert.equal(sha256Hex(back), sha256Hex(payload), `seed ${seed}`);
      client.close();
    }
  });

  test("1,000 concurrent streams, each with its own payload", async () => {
    const { client, server } = sessionPair();
    void (async () => {
      for (;;) void echo(await server.accept());
    })().catch(() => {});
    const results = await within(
      Promise.all(
        Array.from({ length: 1000 }, async (_, i) => {
          const stream = await client.open();
          const payload = randomBytes(1000 + i, i);
          const [, back] = await Promise.all([write(stream, payload), readAll(stream.readable)]);
          return sha256Hex(back) === sha256Hex(payload);
        }),
      ),
      20_000,
    );
    assert.equal(results.filter(Boolean).length, 1000);
    await until(() => client.numStreams === 0 && server.numStreams === 0, 2000, "streams to close");
    client.close();
  });

  test("data larger than the window is split and arrives whole", async () => {
    const { client, server, clientEnd } = sessionPair();
    const payload = randomBytes(3 * 1024 * 1024, 5);
    const accepted = server.accept();
    const stream = await client.open();
    const [, back] = await Promise.all([write(stream, payload), accepted.then((s) => readAll(s.readable))]);
    assert.equal(sha256Hex(back), sha256Hex(payload));
    const data = framesWritten(clientEnd).filter((f) => f.type === FrameType.Data);
    assert.ok(data.every((f) => f.length <= client.maxFrameSize), "no frame beyond maxFrameSize");
    client.close();
  });

  describe("half-close", () => {
    test("the opener closes first; the other direction stays usable", async () => {
      const { client, server } = sessionPair();
      const accepted = server.accept();
      const stream = await client.open();
      await write(stream, text("question"));
      const peer = await accepted;
      assert.equal(new TextDecoder().decode(await readAll(peer.readable)), "question");
      await write(peer, text("answer after the FIN"));
      assert.equal(new TextDecoder().decode(await readAll(stream.readable)), "answer after the FIN");
      await within(Promise.all([stream.closed, peer.closed]), 1000);
      client.close();
    });

    test("the acceptor closes first; the opener can still write", async () => {
      const { client, server } = sessionPair();
      const accepted = server.accept();
      const stream = await client.open();
      await write(stream, text("x"), false);
      const peer = await accepted;
      await write(peer, text("early answer"));
      assert.equal(new TextDecoder().decode(await readAll(stream.readable)), "early answer");
      await write(stream, text("late data"));
      assert.equal(new TextDecoder().decode(await readAll(peer.readable)), "xlate data");
      await within(Promise.all([stream.closed, peer.closed]), 1000);
      client.close();
    });

    test("Conn.close() sends FIN after the write in progress, even with a locked writable", async () => {
      const { client, server } = sessionPair();
      const accepted = server.accept();
      const stream = await client.open();
      const writer = stream.writable.getWriter();
      const big = randomBytes(600 * 1024, 2); // beyond the window: the write waits for credit
      const writing = writer.write(big);
      const closing = stream.close();
      const peer = await accepted;
      const got = await readAll(peer.readable);
      await Promise.all([writing, closing]);
      assert.equal(sha256Hex(got), sha256Hex(big));
      await assert.rejects(writer.write(text("more")), hasCode("ERR_STREAM_CLOSED"));
      client.close();
    });
  });

  test("RST: the peer's reader and pending writer fail at once with ERR_STREAM_RESET", async () => {
    const { client, server } = sessionPair();
    const accepted = server.accept();
    const stream = await client.open();
    await write(stream, text("hi"), false);
    const peer = await accepted;
    const reader = peer.readable.getReader();
    assert.equal(new TextDecoder().decode((await reader.read()).value), "hi");
    const pendingRead = reader.read();
    // A writer stuck on a full window (nobody reads the other way).
    const writer = peer.writable.getWriter();
    const pendingWrite = writer.write(randomBytes(INITIAL_WINDOW + 1));
    stream.reset();
    await within(assert.rejects(pendingRead, (e: any) => hasCode("ERR_STREAM_RESET")(e) && e.remote === true), 1000);
    await within(assert.rejects(pendingWrite, hasCode("ERR_STREAM_RESET")), 1000);
    await within(assert.rejects(peer.closed, hasCode("ERR_STREAM_RESET")), 1000);
    await assert.rejects(stream.closed, (e: any) => e.remote === false);
    assert.equal(server.numStreams, 0);
    client.close();
  });

  test("aborting the writable resets the stream", async () => {
    const { client, server } = sessionPair();
    const accepted = server.accept();
    const stream = await client.open();
    await stream.writable.abort(new Error("changed my mind"));
    const peer = await accepted;
    await within(assert.rejects(readAll(peer.readable), hasCode("ERR_STREAM_RESET")), 1000);
    client.close();
  });

  test("GoAway: open() on the other side rejects, live streams go on, new SYNs get RST", async () => {
    const { client, server } = sessionPair();
    const accepted = server.accept();
    const live = await client.open();
    const peer = await accepted;
    server.goAway();
    await until(() => client.remoteGoAway, 1000, "GoAway to arrive");
    await assert.rejects(client.open(), hasCode("ERR_REMOTE_GOAWAY"));
    void echo(peer);
    await write(live, text("still here"));
    assert.equal(new TextDecoder().decode(await readAll(live.readable)), "still here");
    client.close();
  });

  test("a SYN after our GoAway is answered with RST", async () => {
    const { server, serverEnd } = sessionPair();
    server.goAway();
    await until(() => framesWritten(serverEnd).some((f) => f.type === FrameType.GoAway), 1000, "the GoAway");
    serverEnd.written.length = 0;
    serverEnd.inject(encodeHeader(FrameType.WindowUpdate, Flag.SYN, 1, 0));
    await until(() => serverEnd.written.length > 0, 1000, "the answer");
    const frames = framesWritten(serverEnd).filter((f) => f.type !== FrameType.Ping); // the first pings cross in any order
    assert.deepEqual(
      frames.map((f) => [f.type, f.flags, f.streamID]),
      [[FrameType.WindowUpdate, Flag.RST, 1]],
    );
    server.close();
  });

  test("backlog overflow: SYNs beyond the accept backlog get RST", async () => {
    const { client, server, clientEnd, serverEnd } = sessionPair({ acceptBacklog: 4, timers: new FakeClock() });
    const streams = await Promise.all(Array.from({ length: 6 }, () => client.open()));
    // The refused ones are reset; the 4 in the backlog stay open (their `closed` does not settle).
    const resets: (boolean | undefined)[] = streams.map(() => undefined);
    streams.forEach((s, i) => s.closed.then(() => (resets[i] = false), () => (resets[i] = true)));
    await quiet([clientEnd, serverEnd]);
    assert.deepEqual(resets, [undefined, undefined, undefined, undefined, true, true]);
    for (let i = 0; i < 4; i++) assert.equal((await server.accept()).streamID, 2 * i + 1);
    client.close();
  });

  test("a reader that never reads: the sender stops at the 256 KiB window, receiver memory bounded", async () => {
    const { client, server, clientEnd, serverEnd } = sessionPair({ timers: new FakeClock() });
    const accepted = server.accept();
    const stream = await client.open();
    const writer = stream.writable.getWriter();
    let finished = false;
    void writer.write(randomBytes(4 * 1024 * 1024)).then(() => (finished = true), () => {});
    await accepted;
    await quiet([clientEnd, serverEnd]);
    const sent = framesWritten(clientEnd)
      .filter((f) => f.type === FrameType.Data)
      .reduce((n, f) => n + f.bodyLength, 0);
    assert.equal(sent, INITIAL_WINDOW, "exactly one window of data is in flight");
    assert.equal(finished, false);
    client.close();
  });

  test("auto-tuning: a reader that keeps up gets a larger window; turned off, the window stays put", async () => {
    /** Moves `mib` MiB through a fresh pair with a fast reader, then stops reading: how much more fits? */
    async function inFlightAfterWarmUp(options: Parameters<typeof sessionPair>[0]): Promise<number> {
      // On a clock that stands still, every window is read "at once": growth does not hang on load.
      const { client, server, clientEnd, serverEnd } = sessionPair({ ...options, timers: new FakeClock() });
      await client.ping(); // the window grows against a measured round trip
      const accepted = server.accept();
      const stream = await client.open();
      const writer = stream.writable.getWriter();
      const peer = await accepted;
      const reader = peer.readable.getReader();
      const warmUp = 8 * 1024 * 1024;
      void writer.write(randomBytes(warmUp)).catch(() => {});
      for (let got = 0; got < warmUp; ) got += (await within(reader.read(), 2000, "warm-up read")).value!.length;
      await quiet([clientEnd, serverEnd]);
      const before = clientEnd.written.length;
      void writer.write(randomBytes(32 * 1024 * 1024)).catch(() => {}); // nobody reads this any more
      await quiet([clientEnd, serverEnd]);
      const sent = clientEnd.written
        .slice(before)
        .map((bytes) => readHeader(bytes, 0))
        .filter((f) => f.type === FrameType.Data)
        .reduce((n, f) => n + f.length, 0);
      client.close();
      return sent;
    }
    const tuned = await inFlightAfterWarmUp({});
    const fixed = await inFlightAfterWarmUp({ maxStreamWindow: INITIAL_WINDOW });
    assert.ok(tuned > INITIAL_WINDOW, `the window grew: ${tuned} bytes in flight`);
    assert.ok(tuned <= 16 * 1024 * 1024, "never past maxStreamWindow");
    assert.ok(fixed <= INITIAL_WINDOW, `without auto-tuning at most one window: ${fixed}`);
  });

  test("auto-tuning: a later stream whose reader proves fast goes straight to the window an earlier one reached", async () => {
    /** On `client`: a stream whose reader takes one window, then stops; how much data did the writer get out? */
    async function sentAfterOneWindow(client: Session, server: Session, clientEnd: MemoryEnd, serverEnd: MemoryEnd): Promise<number> {
      const data = randomBytes(32 * 1024 * 1024);
      const accepted = server.accept();
      const stream = await client.open();
      const writer = stream.writable.getWriter();
      const peer = await accepted;
      const reader = peer.readable.getReader();
      void writer.write(data).catch(() => {});
      for (let got = 0; got < INITIAL_WINDOW; ) got += (await within(reader.read(), 2000, "first window")).value!.length;
      await quiet([clientEnd, serverEnd]); // nobody reads any more: the window bounds what follows
      const sent = clientEnd.written
        .map((bytes) => readHeader(bytes, 0))
        .filter((f) => f.type === FrameType.Data && f.streamID === stream.streamID)
        .reduce((n, f) => n + f.length, 0);
      stream.reset();
      return sent;
    }
    // On clocks that stand still, every window is read "at once": growth does not hang on load.
    const fresh = sessionPair({ timers: new FakeClock() });
    await fresh.client.ping();
    const first = await sentAfterOneWindow(fresh.client, fresh.server, fresh.clientEnd, fresh.serverEnd);
    fresh.client.close();

    const warm = sessionPair({ timers: new FakeClock() });
    await warm.client.ping();
    const accepted = warm.server.accept();
    const bulk = await warm.client.open();
    const peer = await accepted;
    const writing = write(bulk, randomBytes(8 * 1024 * 1024));
    await readAll(peer.readable); // a fast reader: its window climbs
    await writing;
    const later = await sentAfterOneWindow(warm.client, warm.server, warm.clientEnd, warm.serverEnd);
    warm.client.close();

    // The window read, then at most a doubled window: 256 KiB + 512 KiB.
    assert.ok(first <= 3 * INITIAL_WINDOW, `a first stream grows one step at a time: ${first} bytes sent`);
    assert.ok(later > 2 * first, `a later stream starts from the tuned window: ${later} bytes sent against ${first}`);
    assert.ok(later <= INITIAL_WINDOW + 16 * 1024 * 1024, "never past maxStreamWindow");
  });

  test("auto-tuning: the window a later stream goes straight to halves for every 10 s no stream needed it (fake clock)", async () => {
    // The clock stands still unless advanced: the ping measures 0 ms (counted as 2) and every window is
    // read in 0 ms, fast enough to grow.
    const clock = new FakeClock();
    const { client, server, serverEnd } = sessionPair({ timers: clock });
    await server.ping();
    /** A stream whose writer sends `bytes` and whose reader reads them all: the credit its reader's side granted. */
    async function creditAfterReading(bytes: number): Promise<number> {
      const accepted = server.accept();
      const stream = await client.open();
      void stream.writable.getWriter().write(new Uint8Array(bytes)).catch(() => {});
      const reader = (await accepted).readable.getReader();
      for (let got = 0; got < bytes; ) got += (await within(reader.read(), 2000, "read")).value!.length;
      const credit = () =>
        framesWritten(serverEnd)
          .filter((f) => f.type === FrameType.WindowUpdate && f.flags === 0 && f.streamID === stream.streamID)
          .reduce((n, f) => n + f.length, 0);
      // Reading one whole window ends its epoch: the credit granted then is everything read plus the growth.
      await until(() => credit() >= Math.min(bytes, INITIAL_WINDOW), 2000, "the epoch's credit");
      return credit();
    }
    const MiB = 1024 * 1024;
    await creditAfterReading(32 * MiB); // 256 KiB, 512 KiB ... 16 MiB: the session reached the maximum
    assert.equal(await creditAfterReading(INITIAL_WINDOW), 16 * MiB, "a later stream goes straight to 16 MiB");
    clock.advance(30_000);
    assert.equal(await creditAfterReading(INITIAL_WINDOW), 2 * MiB, "30 s without a stream needing it: an eighth");
    clock.advance(9_999);
    assert.equal(await creditAfterReading(INITIAL_WINDOW), 2 * MiB, "needed again 30 s in: kept");
    clock.advance(120_000);
    assert.equal(await creditAfterReading(INITIAL_WINDOW), 2 * INITIAL_WINDOW, "after long idle, one doubling from the first window");
    client.close();
  });

  test("credit is granted as the consumer reads, and a slow reader gets everything without stalls", async () => {
    const { client, server } = sessionPair();
    const accepted = server.accept();
    const stream = await client.open();
    const payload = randomBytes(2 * 1024 * 1024, 8);
    const writing = write(stream, payload);
    const peer = await accepted;
    const reader = peer.readable.getReader();
    const chunks: Uint8Array[] = [];
    let reads = 0;
    for (;;) {
      const { value, done } = await within(reader.read(), 2000, "read");
      if (done) break;
      chunks.push(value);
      if (++reads % 4 === 0) await new Promise((r) => setTimeout(r, 2)); // a slow consumer
    }
    await writing;
    assert.equal(sha256Hex(Buffer.concat(chunks)), sha256Hex(payload));
    client.close();
  });

  test("a SYN's window delta is honoured: a larger window lets the peer send more before waiting", async () => {
    const { client, server, clientEnd, serverEnd } = sessionPair({ streamWindow: 1024 * 1024, timers: new FakeClock() });
    const stream = await client.open(); // SYN carries delta 768 KiB
    const peer = await server.accept();
    const writer = peer.writable.getWriter();
    void writer.write(randomBytes(2 * 1024 * 1024)).catch(() => {});
    await quiet([clientEnd, serverEnd]);
    const sent = framesWritten(serverEnd)
      .filter((f) => f.type === FrameType.Data)
      .reduce((n, f) => n + f.bodyLength, 0);
    assert.equal(sent, 1024 * 1024);
    assert.ok(stream);
    client.close();
  });

  test("ping measures a round trip both ways", async () => {
    const { client, server } = sessionPair();
    const rtts: number[] = [];
    client.addEventListener("rtt", (e) => rtts.push((e as CustomEvent<number>).detail));
    const rtt = await client.ping();
    assert.ok(rtt >= 0 && rtt < 1000);
    assert.ok(rtts.includes(rtt), "the rtt event reports the same round trip");
    assert.equal(client.rtt > 0 || rtt === 0, true);
    assert.ok((await server.ping()) >= 0);
    client.close();
  });

  test("keepalive: a frozen peer is detected; the session and every stream fail with ERR_KEEPALIVE_TIMEOUT", async () => {
    const clock = new FakeClock();
    const { client, server, serverEnd } = sessionPair({ keepAliveInterval: 50, keepAliveTimeout: 100, timers: clock });
    const accepted = server.accept();
    const stream = await client.open();
    await accepted;
    serverEnd.freeze(); // the device stops answering without closing anything
    clock.advance(50); // the keepalive ping goes out
    clock.advance(99);
    assert.equal(client.closeReason, undefined, "not before the keepalive timeout");
    clock.advance(1);
    const reason = await within(client.closed, 1000);
    assert.equal((reason as WslisError).code, "ERR_KEEPALIVE_TIMEOUT");
    await assert.rejects(stream.closed, hasCode("ERR_KEEPALIVE_TIMEOUT"));
    await assert.rejects(client.open(), hasCode("ERR_KEEPALIVE_TIMEOUT"));
    server.close();
  });

  test("session end: pending accept, open, read, write and ping reject at once with the reason", async () => {
    const { client, server } = sessionPair();
    const accepted = server.accept();
    const stream = await client.open();
    const peer = await accepted;
    const pendingAccept = server.accept();
    const pendingRead = stream.readable.getReader().read();
    const pendingWrite = peer.writable.getWriter().write(randomBytes(INITIAL_WINDOW + 10));
    const pendingPing = client.ping({ timeout: 5000 });
    const before = Date.now();
    client.close();
    await assert.rejects(pendingRead, hasCode("ERR_SESSION_CLOSED"));
    await assert.rejects(pendingPing, hasCode("ERR_SESSION_CLOSED"));
    await within(assert.rejects(pendingAccept, hasCode("ERR_CONNECTION_LOST")), 1000);
    await within(assert.rejects(pendingWrite, hasCode("ERR_CONNECTION_LOST")), 1000);
    assert.ok(Date.now() - before < 500);
    // The peer saw our GoAway and then the connection close.
    assert.equal(server.remoteGoAway, true);
  });

  test("stream-ID exhaustion: open() rejects with ERR_STREAMS_EXHAUSTED", async () => {
    const [end] = memoryPair();
    const client = new Session(end, { role: "client", keepAliveInterval: 0, firstStreamID: 0xffff_fffd });
    assert.equal((await client.open()).streamID, 0xffff_fffd);
    assert.equal((await client.open()).streamID, 0xffff_ffff);
    await assert.rejects(client.open(), hasCode("ERR_STREAMS_EXHAUSTED"));
    client.close();
  });

  test("maxStreams: open() beyond it rejects with ERR_TOO_MANY_STREAMS", async () => {
    const { client } = sessionPair({ maxStreams: 2 });
    await client.open();
    await client.open();
    await assert.rejects(client.open(), hasCode("ERR_TOO_MANY_STREAMS"));
    client.close();
  });

  test("open() waits for a slot when too many opens are unacknowledged, and honours its signal", async () => {
    const { client, serverEnd } = sessionPair({ maxUnackedOpens: 2 });
    serverEnd.freeze(); // no ACK comes back
    await client.open();
    await client.open();
    const controller = new AbortController();
    const third = client.open({ signal: controller.signal });
    controller.abort();
    await assert.rejects(third, { name: "AbortError" });
    client.close();
  });

  test("writes reject non-binary chunks with a TypeError", async () => {
    const { client } = sessionPair();
    const stream = await client.open();
    await assert.rejects(stream.writable.getWriter().write("text" as unknown as Uint8Array), TypeError);
    client.close();
  });

  test("readable, writable and closed built late still tell the stream's end: FIN, reset, both ways closed", async () => {
    const { client, server } = sessionPair();
    const accepted = server.accept();
    const finished = await client.open();
    const peer = await accepted;
    // Both sides finish before anyone touched their web streams or `closed`.
    await peer.close();
    await finished.close();
    await until(() => finished.state === "closed" && peer.state === "closed", 1000, "both ways closed");
    await within(finished.closed, 1000);
    assert.deepEqual(await readAll(finished.readable), new Uint8Array(0));
    await assert.rejects(finished.writable.getWriter().write(text("late")), hasCode("ERR_STREAM_CLOSED"));

    const reset = await client.open();
    reset.reset();
    await assert.rejects(reset.closed, hasCode("ERR_STREAM_RESET"));
    await assert.rejects(reset.readable.getReader().read(), hasCode("ERR_STREAM_RESET"));
    await assert.rejects(reset.writable.getWriter().write(text("x")), hasCode("ERR_STREAM_RESET"));
    client.close();
  });

  test("data that arrived before the readable was built is read from it, and credit goes back as it is", async () => {
    const { client, server, clientEnd, serverEnd } = sessionPair();
    const accepted = server.accept();
    const stream = await client.open();
    const bytes = randomBytes(INITIAL_WINDOW + 100_000, 7); // beyond one window: the rest waits for credit
    const writing = write(stream, bytes);
    const peer = await accepted;
    await quiet([clientEnd, serverEnd]); // a window's worth is queued; the writer waits for credit
    assert.equal(sha256Hex(await readAll(peer.readable)), sha256Hex(bytes));
    await within(writing, 1000);
    client.close();
  });

  test("options are validated eagerly", () => {
    const [end] = memoryPair();
    assert.throws(() => new Session(end, { role: "peer" as "client" }), TypeError);
    assert.throws(() => new Session(end, { role: "client", streamWindow: 1000 }), RangeError);
    assert.throws(() => new Session(end, { role: "client", acceptBacklog: -1 }), RangeError);
    assert.throws(() => new Session(end, { role: "client", maxFrameSize: 1024 * 1024 }), RangeError);
    assert.throws(() => new Session(end, { role: "client", maxFramesPerMessage: 0 }), RangeError);
    assert.throws(() => new Session(end, { role: "client", firstStreamID: 2 }), RangeError);
  });
});

describe("protocol violations close the session with GoAway(protocol error)", () => {
  const cases: [string, Uint8Array][] = [
    ["bad version", new Uint8Array([1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])],
    ["unknown type", encodeHeader(7 as FrameType, 0, 1, 0)],
    ["wrong ID parity (the peer opens an even stream on a server)", encodeHeader(FrameType.WindowUpdate, Flag.SYN, 2, 0)],
    ["stream frame on stream 0", encodeHeader(FrameType.Data, 0, 0, 0)],
  ];
  for (const [name, bytes] of cases) {
    test(name, async () => {
      const [end, other] = memoryPair();
      const session = new Session(end, { role: "server", keepAliveInterval: 0 });
      end.inject(bytes);
      const reason = await within(session.closed, 1000);
      assert.equal((reason as WslisError).code, "ERR_PROTOCOL");
      const goAway = framesWritten(end).find((f) => f.type === FrameType.GoAway);
      assert.equal(goAway?.length, GoAwayCode.ProtocolError);
      assert.ok(other);
    });
  }

  test("duplicate SYN", async () => {
    const [end] = memoryPair();
    const session = new Session(end, { role: "server", keepAliveInterval: 0 });
    end.inject(encodeHeader(FrameType.WindowUpdate, Flag.SYN, 1, 0));
    end.inject(encodeHeader(FrameType.WindowUpdate, Flag.SYN, 1, 0));
    assert.match((await within(session.closed, 1000)).message, /duplicate SYN/);
  });

  test("data beyond the receive window", async () => {
    const [end] = memoryPair();
    const session = new Session(end, { role: "server", keepAliveInterval: 0 });
    end.inject(encodeHeader(FrameType.WindowUpdate, Flag.SYN, 1, 0));
    const body = new Uint8Array(INITIAL_WINDOW);
    const frame = new Uint8Array(HEADER_SIZE + body.length);
    frame.set(encodeHeader(FrameType.Data, 0, 1, body.length));
    end.inject(frame); // exactly the window: fine
    end.inject(encodeHeader(FrameType.Data, 0, 1, 1));
    end.inject(new Uint8Array(1)); // one byte more: a violation
    const reason = await within(session.closed, 1000);
    assert.match(reason.message, /window/);
    const stream = await session.accept().catch((e) => e);
    assert.ok(stream instanceof Error || stream.streamID === 1);
  });

  test("GoAway(protocol error) from the peer ends the session", async () => {
    const [end] = memoryPair();
    const session = new Session(end, { role: "server", keepAliveInterval: 0 });
    end.inject(encodeHeader(FrameType.GoAway, 0, 0, GoAwayCode.ProtocolError));
    const reason = await within(session.closed, 1000);
    assert.equal((reason as WslisError).code, "ERR_CONNECTION_LOST");
    assert.match(reason.message, /protocol error/);
  });

  test("frames for unknown streams are dropped, not fatal", async () => {
    const { client, clientEnd } = sessionPair();
    clientEnd.inject(encodeHeader(FrameType.WindowUpdate, 0, 99, 1000));
    clientEnd.inject(encodeHeader(FrameType.WindowUpdate, Flag.RST, 97, 0));
    assert.equal(client.closeReason, undefined);
    assert.ok((await client.ping()) >= 0);
    client.close();
  });
});

describe("hostile peers: floods, budgets, limits", () => {
  /** One message of `count` copies of a frame (a header, and `body` bytes for Data). */
  function message(count: number, frame: (i: number) => Uint8Array): Uint8Array {
    return concat(...Array.from({ length: count }, (_, i) => frame(i)));
  }
  const header = (type: FrameType, flags: number, id: number, length: number) => () => encodeHeader(type, flags, id, length);

  /** A device-side session (yamux server) with one stream the peer opened, for frames aimed at a stream. */
  async function target(options: Parameters<typeof sessionPair>[0] = {}) {
    const pair = sessionPair({ ...options, pair: { highWaterMark: 64 * 1024 } });
    const accepted = pair.server.accept();
    await pair.client.open();
    await accepted;
    await until(() => pair.serverEnd.written.length > 0, 1000, "the ACK");
    return pair;
  }

  const kinds: [string, (i: number) => Uint8Array][] = [
    ["Ping(SYN)", (i) => encodeHeader(FrameType.Ping, Flag.SYN, 0, i)],
    ["Ping(ACK)", (i) => encodeHeader(FrameType.Ping, Flag.ACK, 0, i)],
    ["WindowUpdate", header(FrameType.WindowUpdate, 0, 1, 1)],
    ["zero-length Data", header(FrameType.Data, 0, 1, 0)],
    ["GoAway(normal)", header(FrameType.GoAway, 0, 0, GoAwayCode.Normal)],
    ["SYN (refused, backlog full)", (i) => encodeHeader(FrameType.WindowUpdate, Flag.SYN, 2 * i + 3, 0)], // the first fills the backlog of 1
  ];

  for (const [name, frame] of kinds) {
    test(`${name}: a message over maxFramesPerMessage closes the session as abusive with GoAway(protocol error)`, async () => {
      const { server, serverEnd, client } = await target({ acceptBacklog: 1 });
      serverEnd.written.length = 0;
      serverEnd.inject(message(5000, frame));
      const reason = await within(server.closed, 1000);
      assert.equal((reason as WslisError).code, "ERR_ABUSIVE_PEER");
      assert.ok(reason instanceof AbusivePeerError && reason instanceof ProtocolError);
      // The message is handled FRAMES_PER_TURN frames per turn: what the turns before the one that
      // crossed the budget answered (one pong each, for pings) has left; what was queued since is dropped.
      const frames = framesWritten(serverEnd).map((f) => [f.type, f.length]);
      assert.deepEqual(frames.at(-1), [FrameType.GoAway, GoAwayCode.ProtocolError], "the GoAway comes last");
      const earlier = frames.slice(0, -1);
      if (name === "Ping(SYN)") {
        assert.ok(earlier.length <= Math.ceil(5000 / FRAMES_PER_TURN), `one pong per turn at most: ${earlier.length}`);
        assert.ok(earlier.every(([type]) => type === FrameType.Ping));
      } else if (name.startsWith("SYN")) {
        // The refusals (RST) of the turns before; never more than the frames handled before the budget.
        assert.ok(earlier.length < 4096, `${earlier.length} refusals`);
        assert.ok(earlier.every(([type]) => type === FrameType.WindowUpdate));
      } else {
        assert.deepEqual(earlier, [], "what was queued for the peer is dropped: it gets the GoAway alone");
      }
      client.close();
    });

    for (const reading of [true, false]) {
      test(`${name}: messages under the budget, peer ${reading ? "reading" : "not reading"}: replies stay bounded`, async () => {
        const { server, serverEnd, clientEnd, client } = await target({ acceptBacklog: 1 });
        if (!reading) serverEnd.freeze(); // nothing the server sends is delivered: its transport fills up
        const before = serverEnd.written.length;
        let sent = 0;
        let bursts = 1;
        for (let m = 0; m < 200; m++) {
          serverEnd.inject(message(1000, (i) => frame(m * 1000 + i)));
          sent += 1000;
          if (reading || m % 10 === 9) {
            await turns(); // a reading peer: one message per turn, as one socket read
            bursts++;
          }
          if (server.closeReason) break;
        }
        await turns();
        const replies = serverEnd.written.slice(before).length;
        if (name.startsWith("SYN") && !reading) {
          // Refusals wait for a peer that does not read: past maxPendingReplies the session gives up on it.
          assert.equal((server.closeReason as WslisError | undefined)?.code, "ERR_ABUSIVE_PEER");
        } else if (name.startsWith("SYN")) {
          assert.equal(server.closeReason, undefined, "a reading peer gets its refusals");
          assert.equal(replies, sent, "one RST per refused SYN");
        } else if (name === "Ping(SYN)") {
          assert.equal(server.closeReason, undefined);
          // One pong per turn that handled pings: per burst, and per FRAMES_PER_TURN pings of a burst.
          const most = bursts + Math.ceil(sent / FRAMES_PER_TURN);
          assert.ok(replies <= most, `one pong per turn of pings: ${replies} frames for ${sent} pings in ${bursts} bursts`);
        } else {
          assert.equal(server.closeReason, undefined);
          assert.equal(replies, 0, "nothing to answer");
        }
        assert.ok(serverEnd.inFlight <= 64 * 1024 + 1024 * 1024, `bytes queued towards the peer: ${serverEnd.inFlight}`);
        assert.ok(clientEnd);
        client.close();
        server.close();
      });
    }
  }

  test("acceptBacklog 0: every SYN is refused at once with RST, none is kept", async () => {
    const { client, server } = sessionPair({ acceptBacklog: 0 });
    const streams = await Promise.all(Array.from({ length: 3 }, () => client.open()));
    for (const stream of streams) await within(assert.rejects(stream.closed, hasCode("ERR_STREAM_RESET")), 1000);
    assert.equal(server.numStreams, 0);
    const controller = new AbortController();
    const accepting = server.accept({ signal: controller.signal });
    controller.abort();
    await assert.rejects(accepting, { name: "AbortError" });
    client.close();
  });

  test("a Data header announcing more than the stream's window is refused from the header, before its body", async () => {
    const [end] = memoryPair();
    const session = new Session(end, { role: "server", keepAliveInterval: 0 });
    end.inject(encodeHeader(FrameType.WindowUpdate, Flag.SYN, 1, 0));
    // 16 MiB announced (within the largest window the session could grant, not within this stream's); no body follows.
    end.inject(encodeHeader(FrameType.Data, 0, 1, 16 * 1024 * 1024));
    const reason = await within(session.closed, 1000, "the session to close on the header alone");
    assert.equal((reason as WslisError).code, "ERR_PROTOCOL");
    assert.match(reason.message, /window/);
  });

  test("a SYN carrying more data than the initial window is refused from its header", async () => {
    const [end] = memoryPair();
    const session = new Session(end, { role: "server", keepAliveInterval: 0 });
    end.inject(encodeHeader(FrameType.Data, Flag.SYN, 1, INITIAL_WINDOW + 1));
    assert.equal(((await within(session.closed, 1000)) as WslisError).code, "ERR_PROTOCOL");
  });

  test("tiny frames cannot pin whole messages: a queued stream keeps at most about its bytes", async () => {
    const { server, serverEnd } = await target();
    // 1,000 messages of 64 KiB, each carrying one byte for stream 1 (never read) and padding for nobody.
    for (let m = 0; m < 1000; m++) {
      const bytes = new Uint8Array(64 * 1024);
      bytes.set(encodeHeader(FrameType.Data, 0, 1, 1), 0);
      bytes.set(encodeHeader(FrameType.Data, 0, 99, bytes.length - 25), 13); // a stream we do not know: passed over
      // As a socket does: no more is read while the session has paused it (its budget per turn is spent).
      while (serverEnd.paused) await turns();
      serverEnd.inject(bytes);
    }
    assert.equal(server.closeReason, undefined);
    // Collected first: what the test allocated and dropped is garbage, not what the session holds.
    collectGarbage();
    const used = process.memoryUsage().arrayBuffers;
    assert.ok(used < 40 * 1024 * 1024, `array buffers held: ${used} bytes (64 MB were sent)`);
    server.close();
  });

  test("a stream that got one small body before anyone read it holds about that body, not a 16 KiB packing buffer", async () => {
    const { client, server, clientEnd, serverEnd } = sessionPair({ maxStreams: 4000, acceptBacklog: 4000 });
    collectGarbage();
    const before = process.memoryUsage().arrayBuffers;
    const streams: Conn[] = [];
    for (let i = 0; i < 2000; i++) {
      const stream = await client.open();
      streams.push(stream);
      void stream.writable.getWriter().write(new Uint8Array([i & 0xff])); // 1 byte each, never read
    }
    await quiet([clientEnd, serverEnd]);
    assert.equal(server.numStreams, 2000);
    collectGarbage();
    const perStream = (process.memoryUsage().arrayBuffers - before) / 2000;
    assert.ok(perStream < 2048, `array buffers held per stream: ${Math.round(perStream)} bytes`);
    client.close();
  });

  test("open() waiters: one woken by an ACK that fails with ERR_TOO_MANY_STREAMS passes the wake-up on", async () => {
    const { client, server } = sessionPair({ maxStreams: 2, maxUnackedOpens: 1 });
    void (async () => {
      for (;;) await server.accept();
    })().catch(() => {});
    const results = await within(
      Promise.allSettled(Array.from({ length: 1000 }, () => client.open())),
      2000,
      "1,000 opens to settle",
    );
    const opened = results.filter((r) => r.status === "fulfilled").length;
    const refused = results.filter((r) => r.status === "rejected" && hasCode("ERR_TOO_MANY_STREAMS")(r.reason)).length;
    assert.equal(opened, 2);
    assert.equal(refused, 998);
    client.close();
  });

  test("a write that fails resets the stream, so the peer's read does not hang", async () => {
    const { client, server } = sessionPair();
    const accepted = server.accept();
    const stream = await client.open();
    const peer = await accepted;
    const reading = readAll(peer.readable);
    await assert.rejects(stream.writable.getWriter().write("text" as unknown as Uint8Array), TypeError);
    await within(assert.rejects(reading, hasCode("ERR_STREAM_RESET")), 1000, "the peer's read");
    client.close();
  });

  test("keepalive ping ids are unpredictable", async () => {
    const { client, clientEnd } = sessionPair();
    for (let i = 0; i < 5; i++) await client.ping();
    const ids = framesWritten(clientEnd)
      .filter((f) => f.type === FrameType.Ping && f.flags === Flag.SYN)
      .map((f) => f.length);
    assert.ok(ids.length >= 5);
    const sequential = ids.every((id, i) => i === 0 || id === ids[i - 1]! + 1);
    assert.equal(sequential, false, `ids ${ids.join(", ")}`);
    client.close();
  });
});

describe("WindowTuner (pure: times are arguments)", () => {
  const KiB = 1024;
  test("no round trip measured yet: no growth", () => {
    const tuner = new WindowTuner({ maxWindow: 16 * 1024 * KiB });
    assert.equal(tuner.next(256 * KiB, 0, 0), 256 * KiB);
  });

  test("a window read within four round trips doubles, up to the maximum; slower, it stays", () => {
    const tuner = new WindowTuner({ maxWindow: 1024 * KiB });
    tuner.observeRtt(10);
    assert.equal(tuner.next(256 * KiB, 39, 0), 512 * KiB);
    assert.equal(tuner.next(512 * KiB, 40, 0), 512 * KiB, "four round trips: not faster than the window allows");
    assert.equal(tuner.next(512 * KiB, 5, 0), 1024 * KiB);
    assert.equal(tuner.next(1024 * KiB, 1, 0), 1024 * KiB, "never past the maximum");
  });

  test("a later stream that proves fast goes straight to the largest window reached", () => {
    const tuner = new WindowTuner({ maxWindow: 16 * 1024 * KiB });
    tuner.observeRtt(10);
    let window = 256 * KiB;
    for (let i = 0; i < 4; i++) window = tuner.next(window, 1, 0);
    assert.equal(window, 4096 * KiB);
    assert.equal(tuner.next(256 * KiB, 1, 0), 4096 * KiB);
    assert.equal(tuner.reached(0), 4096 * KiB);
  });

  test("the round trip is the minimum of recent samples (an inflated ping does not ease growth), floored at 2 ms", () => {
    const tuner = new WindowTuner({ maxWindow: 16 * 1024 * KiB, samples: 3 });
    tuner.observeRtt(10);
    tuner.observeRtt(500); // a ping stuck behind a full send buffer
    assert.equal(tuner.rtt, 10);
    assert.equal(tuner.next(256 * KiB, 100, 0), 256 * KiB, "100 ms is ten round trips, not a fifth of one");
    tuner.observeRtt(0.1);
    assert.equal(tuner.rtt, 2, "loopback: an idle ping understates a busy event-loop turn");
    tuner.observeRtt(50);
    tuner.observeRtt(60);
    tuner.observeRtt(70);
    assert.equal(tuner.rtt, 50, "old samples are forgotten");
  });
  test("the window on offer to later streams halves for every decayTime no stream needed it", () => {
    const tuner = new WindowTuner({ maxWindow: 16 * 1024 * KiB, decayTime: 10_000 });
    tuner.observeRtt(10);
    let window = 256 * KiB;
    for (let i = 0; i < 6; i++) window = tuner.next(window, 1, 0);
    assert.equal(window, 16 * 1024 * KiB);
    assert.equal(tuner.reached(9_999), 16 * 1024 * KiB, "not yet a whole decayTime");
    assert.equal(tuner.next(256 * KiB, 1, 9_999), 16 * 1024 * KiB, "a fast stream needs it: the clock starts again");
    assert.equal(tuner.reached(19_998), 16 * 1024 * KiB);
    assert.equal(tuner.reached(19_999), 8 * 1024 * KiB);
    assert.equal(tuner.next(256 * KiB, 1, 39_999), 2 * 1024 * KiB, "three periods: an eighth");
    assert.equal(tuner.next(256 * KiB, 1, 200_000), 512 * KiB, "long idle: a later stream climbs from its own window");
  });

  test("slow reads do not keep the window on offer; a stream at the maximum that reads fast does", () => {
    const tuner = new WindowTuner({ maxWindow: 1024 * KiB, decayTime: 1000 });
    tuner.observeRtt(10);
    assert.equal(tuner.next(512 * KiB, 1, 0), 1024 * KiB);
    for (let t = 500; t <= 5000; t += 500) assert.equal(tuner.next(1024 * KiB, 1, t), 1024 * KiB);
    assert.equal(tuner.reached(5999), 1024 * KiB, "kept while the stream at the maximum reads fast");
    for (let t = 6000; t <= 9000; t += 500) assert.equal(tuner.next(1024 * KiB, 100, t), 1024 * KiB, "a stream keeps its own window");
    assert.equal(tuner.reached(9000), 64 * KiB, "slow reads (100 ms, ten round trips) did not need it: 4 periods, a sixteenth");
  });
});

describe("session states", () => {
  test("Open -> GoingAway -> Closed; a lost connection closes without a GoAway", async () => {
    const { client, server, clientEnd } = sessionPair();
    assert.equal(client.state, SessionState.Open);
    client.goAway();
    assert.equal(client.state, SessionState.GoingAway);
    client.close();
    assert.equal(client.state, SessionState.Closed);
    await within(server.closed, 1000);
    assert.equal(server.state, SessionState.Closed);
    const goAways = framesWritten(clientEnd).filter((f) => f.type === FrameType.GoAway);
    assert.equal(goAways.length, 1, "one GoAway, from goAway(); close() did not send another");

    const lost = sessionPair();
    lost.clientEnd.fail(new Error("network down"));
    await within(lost.client.closed, 1000);
    assert.equal(lost.client.state, SessionState.Closed);
    assert.equal(framesWritten(lost.clientEnd).filter((f) => f.type === FrameType.GoAway).length, 0, "nothing said to a gone peer");
  });
});

describe("receive budget per turn", () => {
  /**
   * A device-side session on a fake clock whose `defer` waits for `step()`: each step is one later turn
   * (the end-of-turn work queued so far runs; what it queues waits for the next step).
   */
  function budgeted(options: Partial<Parameters<typeof sessionPair>[0]> = {}) {
    const clock = new FakeClock();
    const deferred: (() => void)[] = [];
    const timers = {
      setTimeout: (fn: () => void, ms: number) => clock.setTimeout(fn, ms),
      clearTimeout: (handle: unknown) => clock.clearTimeout(handle),
      now: () => clock.now(),
      defer: (fn: () => void) => void deferred.push(fn),
    };
    const [end] = memoryPair();
    const session = new Session(end, { role: "server", keepAliveInterval: 0, maxStreamWindow: INITIAL_WINDOW, timers, ...options });
    const step = () => {
      for (const fn of deferred.splice(0)) fn();
    };
    return { session, end, step, deferred };
  }
  /** One message of `count` frames made by `frame(i)`. */
  const message = (count: number, frame: (i: number) => Uint8Array) => concat(...Array.from({ length: count }, (_, i) => frame(i)));
  /** A one-byte Data frame for stream 1 carrying `i & 0xff`. */
  const byte = (i: number) => concat(encodeHeader(FrameType.Data, 0, 1, 1), new Uint8Array([i & 0xff]));

  /** Accepts stream 1 (opened by the peer) and collects what it reads into `got`. */
  async function reading(session: Session, end: MemoryEnd, step: () => void) {
    end.inject(encodeHeader(FrameType.WindowUpdate, Flag.SYN, 1, 0));
    step();
    const stream = await session.accept();
    const got: number[] = [];
    void (async () => {
      const reader = stream.readable.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        got.push(...value);
      }
    })().catch(() => {});
    return got;
  }

  test("an ending session fails its streams a batch per turn, every one of them in the end", async () => {
    const { session, end, step } = budgeted({ acceptBacklog: 2048, maxStreams: 4096 });
    const count = 1000;
    end.inject(message(count, (i) => encodeHeader(FrameType.WindowUpdate, Flag.SYN, 2 * i + 1, 0)));
    for (let i = 0; i < 2 * Math.ceil(count / STREAMS_PER_TURN) && session.numStreams < count; i++) step();
    assert.equal(session.numStreams, count);
    const streams = await Promise.all(Array.from({ length: count }, () => session.accept()));
    const failed = () => streams.filter((stream) => stream.state === "reset").length;
    const reason = new WslisError("ERR_SESSION_CLOSED", "closed by the test");
    session.close(reason);
    assert.equal(session.state, SessionState.Closed);
    assert.equal(failed(), STREAM_FAILS_PER_TURN, "one batch in the turn the session ended");
    step();
    assert.equal(failed(), 2 * STREAM_FAILS_PER_TURN, "the next batch in the next turn");
    for (let i = 0; i < Math.ceil(count / STREAM_FAILS_PER_TURN); i++) step();
    assert.equal(failed(), count);
    await Promise.all(streams.map((stream) => assert.rejects(stream.closed, (error) => error === reason)));
  });

  test("frames beyond the budget wait for later turns, in order, with the transport paused meanwhile", async () => {
    const { session, end, step } = budgeted();
    const got = await reading(session, end, step);
    const total = 3000;
    // Three messages in one turn, as one socket read delivers them.
    for (let m = 0; m < 3; m++) end.inject(message(1000, (i) => byte(m * 1000 + i)));
    await turns(3);
    assert.equal(got.length, FRAMES_PER_TURN, "one turn handles the budget");
    assert.ok(end.paused, "the transport is paused while bytes are kept");
    // The first continuation waits one more turn (in Node: the next loop iteration, not this one's check phase).
    step();
    await turns(3);
    assert.equal(got.length, FRAMES_PER_TURN, "nothing more in the turn right after the transport's");
    let steps = 0;
    while (got.length < total && steps < 10) {
      step();
      steps++;
      await turns(3);
      assert.ok(got.length <= Math.min(total, (steps + 1) * FRAMES_PER_TURN), `turn ${steps}: ${got.length} frames`);
    }
    assert.equal(steps, Math.ceil(total / FRAMES_PER_TURN) - 1);
    assert.deepEqual(got, Array.from({ length: total }, (_, i) => i & 0xff), "every byte, in order");
    step();
    assert.equal(end.paused, false, "reading again once nothing is kept");
    assert.equal(end.pauses, 1);
    session.close();
  });

  test("a message the peer sends while work is kept goes after it, and a frame split across the kept bytes survives", async () => {
    const { session, end, step } = budgeted();
    const got = await reading(session, end, step);
    const first = message(FRAMES_PER_TURN + 10, byte);
    // The last frame's header is in this message and its body in the next one.
    end.inject(concat(first, encodeHeader(FrameType.Data, 0, 1, 2)));
    end.inject(new Uint8Array([0xaa, 0xbb]));
    await turns(3);
    assert.equal(got.length, FRAMES_PER_TURN);
    step();
    step();
    await turns(3);
    assert.deepEqual(got.slice(FRAMES_PER_TURN), [...Array.from({ length: 10 }, (_, i) => (FRAMES_PER_TURN + i) & 0xff), 0xaa, 0xbb]);
    session.close();
  });

  test(`the peer opens at most ${STREAMS_PER_TURN} streams per turn; the rest follow in order`, async () => {
    const { session, end, step } = budgeted();
    end.inject(message(200, (i) => encodeHeader(FrameType.WindowUpdate, Flag.SYN, 2 * i + 1, 0)));
    assert.equal(session.numStreams, STREAMS_PER_TURN);
    step();
    assert.equal(session.numStreams, STREAMS_PER_TURN);
    step();
    assert.equal(session.numStreams, 2 * STREAMS_PER_TURN);
    for (let i = 0; i < 5; i++) step();
    assert.equal(session.numStreams, 200);
    const ids: number[] = [];
    for (let i = 0; i < 200; i++) ids.push((await session.accept()).streamID);
    assert.deepEqual(ids, Array.from({ length: 200 }, (_, i) => 2 * i + 1));
    session.close();
  });

  test("maxFramesPerMessage still counts each message whole, across turns", async () => {
    const { session, end, step } = budgeted({ maxFramesPerMessage: 2 * FRAMES_PER_TURN });
    const ping = (i: number) => encodeHeader(FrameType.Ping, Flag.ACK, 0, i);
    // Two messages at the limit: each is counted from its own first frame.
    end.inject(message(2 * FRAMES_PER_TURN, ping));
    end.inject(message(2 * FRAMES_PER_TURN, ping));
    for (let i = 0; i < 5; i++) step();
    assert.equal(session.closeReason, undefined);
    assert.equal(end.paused, false);
    // One over it, cut across turns: abusive once its frame past the limit is reached.
    end.inject(message(2 * FRAMES_PER_TURN + 1, ping));
    assert.equal(session.closeReason, undefined);
    step();
    step();
    assert.equal(session.closeReason, undefined);
    step();
    assert.equal((session.closeReason as WslisError | undefined)?.code, "ERR_ABUSIVE_PEER");
  });

  test("a message handed over in parts (more) is counted whole for maxFramesPerMessage", async () => {
    const { session, end, step } = budgeted({ maxFramesPerMessage: 100 });
    const ping = (i: number) => encodeHeader(FrameType.Ping, Flag.ACK, 0, i);
    // 60 and 60 frames as two messages: each within the limit.
    end.inject(message(60, ping));
    end.inject(message(60, ping));
    step();
    assert.equal(session.closeReason, undefined);
    // 60 and 60 as two parts of one message: 120 frames in it.
    end.inject(message(60, ping), true);
    step();
    assert.equal(session.closeReason, undefined);
    end.inject(message(60, ping));
    step();
    assert.equal((session.closeReason as WslisError | undefined)?.code, "ERR_ABUSIVE_PEER");
  });

  test("a Data body handed over in parts reaches the reader as views of them, and its credit goes back", async () => {
    const { session, end, step } = budgeted();
    end.inject(encodeHeader(FrameType.WindowUpdate, Flag.SYN, 1, 0));
    step();
    const stream = await session.accept();
    const reader = stream.readable.getReader();
    const body = randomBytes(INITIAL_WINDOW, 12);
    const bytes = concat(encodeHeader(FrameType.Data, 0, 1, body.length), body);
    // As a frame reader hands over one WebSocket message read in 64 KiB socket chunks.
    const parts: Uint8Array[] = [];
    for (let offset = 0; offset < bytes.length; offset += 64 * 1024) parts.push(bytes.slice(offset, offset + 64 * 1024));
    parts.forEach((part, i) => end.inject(part, i < parts.length - 1));
    step();
    const chunks: Uint8Array[] = [];
    for (let got = 0; got < body.length; ) {
      const { value } = await reader.read();
      chunks.push(value!);
      got += value!.length;
    }
    assert.equal(Buffer.compare(concat(...chunks), body), 0);
    assert.equal(chunks.length, parts.length, "one chunk per part");
    // The last part holds 12 bytes: a small view is copied when queued (it would pin its buffer).
    chunks.slice(0, -1).forEach((chunk, i) => assert.ok(chunk.buffer === parts[i]!.buffer, `chunk ${i} is a view of its part`));
    step();
    const credit = framesWritten(end).filter((f) => f.type === FrameType.WindowUpdate && f.streamID === 1 && f.flags === 0);
    // Credit goes back a quarter window at a time: all but the last 12 bytes read.
    assert.equal(credit.reduce((sum, f) => sum + f.length, 0), INITIAL_WINDOW - 12, "the credit went back as it was read");
    session.close();
  });

  test("a session closed while work is kept drops it", async () => {
    const { session, end, step, deferred } = budgeted();
    const got = await reading(session, end, step);
    end.inject(message(3 * FRAMES_PER_TURN, byte));
    await turns(3);
    assert.equal(got.length, FRAMES_PER_TURN);
    const written = end.written.length;
    session.close();
    for (let i = 0; i < 4; i++) step();
    await turns(3);
    assert.equal(got.length, FRAMES_PER_TURN, "nothing more handled");
    assert.equal(deferred.length, 0, "no further turn queued");
    assert.deepEqual(framesWritten(end).slice(written).map((f) => f.type), [FrameType.GoAway], "nothing sent but the GoAway");
    assert.equal(end.resumes, 0);
  });
});

describe("windows and the peer's frame size", () => {
  /**
   * A device-side session facing a raw peer that behaves as hashicorp/yamux does: it answers pings and
   * sends each write as one Data frame as large as its send window (one WebSocket message). Returns the
   * largest Data frame the session let it send, after `rounds` windows read at once.
   */
  async function largestFrame(hello: boolean, rounds = 12): Promise<number> {
    const clock = new FakeClock();
    const [end] = memoryPair();
    const session = new Session(end, { role: "server", keepAliveInterval: 0, timers: clock });
    await turns(2);
    const pings = framesWritten(end).filter((f) => f.type === FrameType.Ping && f.flags === Flag.SYN);
    assert.equal(pings.length, 1, "one ping at start");
    end.inject(encodeHeader(FrameType.Ping, Flag.ACK, 0, pings[0]!.length));
    if (hello) end.inject(encodeHeader(FrameType.Ping, Flag.SYN, 0, HELLO_PING));
    end.inject(encodeHeader(FrameType.WindowUpdate, Flag.SYN, 1, 0));
    const stream = await session.accept();
    void readAll(stream.readable).catch(() => {});
    let credit = INITIAL_WINDOW;
    let seen = 0;
    let largest = 0;
    for (let round = 0; round < rounds; round++) {
      largest = Math.max(largest, credit);
      end.inject(concat(encodeHeader(FrameType.Data, 0, 1, credit), new Uint8Array(credit)));
      credit = 0;
      await turns(4);
      const updates = framesWritten(end).filter((f) => f.type === FrameType.WindowUpdate && f.streamID === 1);
      for (const update of updates.slice(seen)) credit += update.length;
      seen = updates.length;
      if (credit === 0) break;
    }
    session.close();
    return largest;
  }

  test("a peer that did not say it caps its frames (Go) is granted at most 1 MiB: each of its messages fits maxPayload", async () => {
    const largest = await largestFrame(false);
    assert.ok(largest > INITIAL_WINDOW, `the window grew (${largest})`);
    assert.ok(largest <= MAX_MESSAGE_BYTES, `a frame of ${largest} bytes was allowed`);
    assert.equal(maxIncomingMessageBytes(INITIAL_WINDOW), MAX_MESSAGE_BYTES + HEADER_SIZE);
  });

  test("a wslis peer (its first ping carries HELLO_PING) gets windows beyond 1 MiB", async () => {
    assert.ok((await largestFrame(true)) > MAX_MESSAGE_BYTES);
  });
});
