/**
 * A writer stuck on a peer that does not read can always get out: aborting the writable (or its writer)
 * resets the stream at once, also while a write waits for credit, so neither side waits forever
 * (the shape of hashicorp/yamux GHSA-29qp-crvh-w22m, where a timed-out write left the stream open). The
 * WHATWG algorithm calls a sink's abort only after the write in flight settles; the write gives up on
 * the controller's signal instead.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import { StreamState } from "../src/yamux/stream.js";
import { STREAM_FAILS_PER_TURN } from "../src/yamux/session.js";
import { readAll, sessionPair } from "./helpers/memory.js";
import { hasCode, within } from "./helpers/assert.js";

const MiB = 1024 * 1024;

async function stuckWriter() {
  const pair = sessionPair();
  const accepted = pair.server.accept();
  const stream = await pair.client.open();
  const peer = await accepted;
  const writer = stream.writable.getWriter();
  // Four times the window: the peer reads nothing, so this write waits for credit that never comes.
  const writing = writer.write(new Uint8Array(4 * MiB));
  writing.catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 50));
  return { ...pair, stream, peer, writer, writing };
}

test("aborting a writer whose write waits for credit resets the stream at once, on both sides", async () => {
  const { client, stream, peer, writer, writing } = await stuckWriter();
  const peerReading = readAll(peer.readable);
  await within(writer.abort(new Error("gave up")), 1000, "the abort");
  await within(assert.rejects(writing), 1000, "the write in flight");
  assert.equal(stream.state, StreamState.Reset);
  await within(assert.rejects(peerReading, hasCode("ERR_STREAM_RESET")), 1000, "the peer's read");
  await within(assert.rejects(peer.closed, hasCode("ERR_STREAM_RESET")), 1000, "the peer's closed");
  client.close();
});

test("a deadline on a stuck write: AbortSignal.timeout aborting the writer resets the stream", async () => {
  const { client, stream, peer, writer, writing } = await stuckWriter();
  const signal = AbortSignal.timeout(100);
  signal.addEventListener("abort", () => void writer.abort(signal.reason).catch(() => {}));
  await within(assert.rejects(writing), 2000, "the write, after its deadline");
  assert.equal(stream.state, StreamState.Reset);
  await within(assert.rejects(peer.closed, hasCode("ERR_STREAM_RESET")), 1000, "the peer's closed");
  client.close();
});

test("aborting a writer whose write waits for a full transport to drain resets the stream at once", async () => {
  // The peer's window is large enough; what stops the write is the connection: nothing is delivered.
  const pair = sessionPair({ streamWindow: 16 * MiB, pair: { highWaterMark: 64 * 1024 } });
  const accepted = pair.server.accept();
  const stream = await pair.client.open();
  await accepted;
  await new Promise((resolve) => setTimeout(resolve, 20)); // the peer's larger window arrives
  pair.clientEnd.freeze();
  const writer = stream.writable.getWriter();
  const writing = writer.write(new Uint8Array(4 * MiB));
  writing.catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(stream.state, StreamState.Open, "the write waits, the stream is open");
  await within(writer.abort(new Error("gave up")), 1000, "the abort");
  await within(assert.rejects(writing), 1000, "the write in flight");
  assert.equal(stream.state, StreamState.Reset);
  pair.client.close();
});

test("a writer whose writes never waited: abort still resets the stream", async () => {
  const pair = sessionPair();
  const accepted = pair.server.accept();
  const stream = await pair.client.open();
  const peer = await accepted;
  const writer = stream.writable.getWriter();
  await writer.write(new Uint8Array(1024)); // well within the window: it never waits
  await within(writer.abort(new Error("gave up")), 1000, "the abort");
  assert.equal(stream.state, StreamState.Reset);
  await within(assert.rejects(peer.closed, hasCode("ERR_STREAM_RESET")), 1000, "the peer's closed");
  pair.client.close();
});

test("the connection lost while writes wait for it to drain: every write fails with the reason, no unhandled rejection", async () => {
  // STREAM_FAILS_PER_TURN streams are failed at once and the rest in later turns: with more streams than
  // that, some writes learn of the end from the session's drain waiters first.
  const pair = sessionPair({ streamWindow: 16 * MiB, pair: { highWaterMark: 64 * 1024 } });
  const count = 300;
  const accepted = Array.from({ length: count }, () => pair.server.accept());
  const streams = await Promise.all(Array.from({ length: count }, () => pair.client.open()));
  await Promise.all(accepted);
  await new Promise((resolve) => setTimeout(resolve, 20));
  pair.clientEnd.freeze();
  const settled = new Set<number>();
  const writes = streams.map((stream, i) => {
    const write = stream.writable.getWriter().write(new Uint8Array(256 * 1024));
    write.then(() => settled.add(i), () => settled.add(i));
    return write;
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  // The first writes went into the transport's buffer; the rest wait for it to drain.
  const waiting = writes.filter((_, i) => !settled.has(i));
  assert.ok(waiting.length > STREAM_FAILS_PER_TURN, `${waiting.length} writes wait`);
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  try {
    pair.clientEnd.fail(new Error("network down"));
    const results = await within(Promise.allSettled(waiting), 2000, "the writes");
    assert.ok(results.every((result) => result.status === "rejected"), "no waiting write reports success for bytes that never left");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off("unhandledRejection", onUnhandled);
  }
});
