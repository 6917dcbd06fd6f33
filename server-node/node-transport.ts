/**
 * How Node wraps a `ws` socket, the same for the Node device and the server: binary frames read off the
 * socket as they arrive (no message joined, no copy), send callbacks for backpressure (a message's
 * buffer is reused once `ws` wrote it out), the outbox flushed once per event-loop turn, and the socket
 * read at most {@link READ_BYTES_PER_TURN} per turn.
 */

import type { Duplex } from "node:stream";
import type { WebSocketTransportOptions } from "../src/transport.js";
import { systemClock, type Clock } from "../src/yamux/clock.js";
import { readBinaryFrames } from "./frames.js";

export const nodeTransportOptions: WebSocketTransportOptions = {
  binaryType: "nodebuffer",
  sendCallbacks: true,
  // Binary messages read off the socket as they arrive, not joined by `ws` first (see frames.ts).
  receive: readBinaryFrames,
  // Unzeroed: every byte of a message buffer is written before it is sent.
  allocate: (size) => Buffer.allocUnsafe(size),
};

/**
 * The runtime's timers, with `setImmediate` as the outbox's flush: frames written in one turn leave as
 * one message. Measured in the one-process benchmark, one message per turn instead of per frame took
 * wslis from 0.52× to 1× of its throughput.
 */
export const nodeClock: Clock = { ...systemClock, defer: (fn) => void setImmediate(fn) };

/**
 * Bytes read from one socket per turn of the event loop, after which it is paused until the next turn
 * (plus the one read already under way: Node reads 64 KiB at a time). libuv reads a readable socket up to
 * 32 times in one go, so a 1 MiB message used to be read whole in one turn: measured on a fresh server,
 * 15 reads of 64 KiB at 0.2-0.3 ms each (mostly the kernel's first touch of fresh buffer pages), 4 ms
 * of the 9-12 ms one honest 1 MiB message cost that turn; `ws` joins and unmasks the message in the turn
 * its last bytes arrive, whatever this budget.
 */
export const READ_BYTES_PER_TURN = 256 * 1024;

/** The part of a `ws` WebSocket the read budget needs: whether the session paused it. */
interface Pausable {
  readonly isPaused: boolean;
}

/**
 * Reads `socket` (under `ws`) at most {@link READ_BYTES_PER_TURN} per turn of the event loop: once a
 * turn's reads reach it, the socket is paused, and resumed at the end of the turn (`defer`, Node's
 * `setImmediate`) unless `ws` was paused meanwhile (the session keeps a backlog: it resumes `ws` itself).
 */
export function budgetReads(socket: Duplex, ws: Pausable, defer: (fn: () => void) => void = setImmediate): void {
  let read = 0;
  let turnQueued = false;
  let paused = false;
  const endTurn = () => {
    turnQueued = false;
    read = 0;
    if (!paused) return;
    paused = false;
    if (!ws.isPaused && !socket.destroyed) socket.resume();
  };
  socket.on("data", (chunk: Buffer) => {
    read += chunk.length;
    if (!turnQueued) {
      turnQueued = true;
      defer(endTurn);
    }
    if (read >= READ_BYTES_PER_TURN && !paused && !socket.isPaused()) {
      paused = true;
      socket.pause();
    }
  });
}
