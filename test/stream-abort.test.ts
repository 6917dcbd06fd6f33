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
