/**
 * How Node wraps a `ws` socket, the same for the Node device and the server: Buffers in (no ArrayBuffer
 * copy), send callbacks for backpressure (a message's buffer is reused once `ws` wrote it out), and the
 * outbox flushed once per event-loop turn.
 */

import type { WebSocketTransportOptions } from "../src/transport.js";
import { systemClock, type Clock } from "../src/yamux/clock.js";

export const nodeTransportOptions: WebSocketTransportOptions = {
  binaryType: "nodebuffer",
  sendCallbacks: true,
  // Unzeroed: every byte of a message buffer is written before it is sent.
  allocate: (size) => Buffer.allocUnsafe(size),
};

/**
 * The runtime's timers, with `setImmediate` as the outbox's flush: frames written in one turn leave as
 * one message. Measured in the one-process benchmark, one message per turn instead of per frame took
 * wslis from 0.52× to 1× of its throughput.
 */
export const nodeClock: Clock = { ...systemClock, defer: (fn) => void setImmediate(fn) };
