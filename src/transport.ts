/**
 * A WebSocket as a yamux {@link Transport}: the browser's native `WebSocket`, or anything with its API
 * (the `ws` package's client and server sockets).
 *
 * It knows no frames: whole messages go out as the session's outbox made them (`send`), what arrives is
 * handed up as bytes (the session's decoder sorts out frames split across or packed into messages), and
 * it closes with the code it is given. What close codes mean is the client's and server's business
 * (`close-codes.ts`), passed in as `closeCode` and `closeError`.
 *
 * Outbound backpressure: with send callbacks (Node's `ws`) bytes are counted until their callback runs;
 * otherwise `bufferedAmount` is read, and polled while above the high watermark (browsers have no event
 * for it). Above the high watermark `send` returns false; `drain` fires below the low watermark.
 *
 * A polled socket keeps enough buffered to go on sending until the next look: a socket that drains faster
 * than the low watermark per poll interval would otherwise run dry at every wait (measured in Chromium on
 * 127.0.0.1: 40% of upload messages found the buffer empty, 0.8x raw ws). Both marks are raised by twice
 * what it sent between its last two looks, so a slow link still queues little.
 */

import { CloseCode } from "./close-codes.js";
import { SessionClosedError, type WslisError } from "./errors.js";
import { systemClock, type Clock } from "./yamux/clock.js";
import type { Transport, TransportSink } from "./yamux/session.js";

/** The part of the WebSocket API wslis uses; the browser's `WebSocket` and `ws`'s both have it. */
export interface WebSocketLike {
  binaryType: string;
  readonly bufferedAmount: number;
  readonly readyState: number;
  readonly protocol: string;
  /** Browsers take one argument; `ws` also takes a callback run once the data left for the socket. */
  send(data: Uint8Array, callback?: (error?: Error) => void): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: string, listener: (event: any) => void): void;
  removeEventListener(type: string, listener: (event: any) => void): void;
  /** Drops the connection without a close handshake (Node's `ws`). */
  terminate?(): void;
  /** Stops and restarts reading from the network: Node's `ws` has them, browsers' WebSocket does not. */
  pause?(): void;
  resume?(): void;
}

/** A WebSocket constructor, as `globalThis.WebSocket` or `ws`'s `WebSocket`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: any) => WebSocketLike;

export interface WebSocketTransportOptions {
  /**
   * Outbound bytes buffered in the WebSocket above which writers wait. Default 1 MiB. A polled socket
   * (no send callbacks) raises both marks by twice what it sent between its last two looks at
   * `bufferedAmount`, at most 4 × this.
   */
  highWaterMark?: number;
  /** Buffered bytes below which waiting writers resume. Default 256 KiB. */
  lowWaterMark?: number;
  /** How often to look at `bufferedAmount` while above the high watermark, in ms. Default 4. */
  pollInterval?: number;
  /**
   * The socket calls `send`'s callback once the data left for the network (Node's `ws` does; browsers
   * do not): then backpressure is counted from those callbacks instead of polling `bufferedAmount`, and
   * a message's buffer is reused only after its callback. Default false (the socket copies on `send`).
   */
  sendCallbacks?: boolean;
  /**
   * Largest message handed to the socket, in bytes (the session's frames fit it). Default 1 MiB with send
   * callbacks; 64 KiB without (a browser). Chromium passes a message to its network process through a
   * 64 KiB pipe and frames whatever it finds there: a larger message arrives in several WebSocket frames
   * (a 1 MiB one in up to 41), which the receiver must join into a new buffer. Measured, 100 MiB uploaded
   * from a page in 64 KiB writes to a Node server: messages of up to 1 MiB used 70-88% of the server's
   * core at 92-115 MB/s; messages of 64 KiB arrived as one frame each, 22-28% at 125-157 MB/s.
   */
  maxMessageBytes?: number;
  /** `binaryType` to ask for: "arraybuffer" (default, every runtime) or "nodebuffer" (`ws`: no copy). */
  binaryType?: string;
  /** The close code and reason to close with when the session ended with `reason`. Default 1000. */
  closeCode?: (reason: Error | undefined) => [number, string];
  /**
   * The error the session ends with when the WebSocket closed with `code`; `error` is the socket's own
   * error event before it, if any (`ws` reports a message over `maxPayload` so, then closes with 1009).
   * Default `ERR_CONNECTION_LOST`.
   */
  closeError?: (code: number, reason: string, error?: unknown) => WslisError;
  /**
   * Reads the socket's binary messages itself instead of taking them from `message` events, handing each
   * over as its bytes arrive (`more`: the message goes on in the next call). Returns false when it cannot
   * for this socket (then message events are used). Node passes one that reads `ws`'s frames straight
   * from the TCP socket: no message is joined into a buffer of its own.
   */
  receive?: (ws: WebSocketLike, deliver: (chunk: Uint8Array, more: boolean) => void) => boolean;
  /** Allocates the session's message buffers. Default `new Uint8Array(size)`; Node passes `Buffer.allocUnsafe`. */
  allocate?: (size: number) => Uint8Array;
  /** Timers for polling `bufferedAmount`. Default the runtime's. */
  clock?: Clock;
}

const OPEN = 1;

/**
 * Wraps an open WebSocket as a yamux transport. Call it as soon as the socket opens: it listens from
 * then on and holds what arrives until `start()` (Node's `ws` may deliver the first messages in the same
 * tick as `open`).
 */
export function webSocketTransport(ws: WebSocketLike, options: WebSocketTransportOptions = {}): Transport {
  const highWaterMark = options.highWaterMark ?? 1024 * 1024;
  const lowWaterMark = options.lowWaterMark ?? 256 * 1024;
  const pollInterval = options.pollInterval ?? 4;
  const clock = options.clock ?? systemClock;
  const closeError =
    options.closeError ?? ((code: number, reason: string) => new SessionClosedError("ERR_CONNECTION_LOST", `the WebSocket closed (code ${code}${reason ? `: ${reason}` : ""})`));
  let sink: TransportSink | undefined;
  /** With send callbacks: bytes handed to the socket and not yet written out; `waiting`: a writer waits. */
  let unsent = 0;
  let waiting = false;
  /** What arrived before start(): chunks (each with whether its message goes on), then possibly the close. */
  const early: Array<[Uint8Array, boolean]> = [];
  let earlyClose: { error: Error | undefined } | undefined;
  let polling: unknown;
  /**
   * Polled sockets: the last look at `bufferedAmount` while writers wait (when, how much), and the bytes
   * both marks are raised by: twice what the socket sent between two looks.
   */
  let lookedAt = 0;
  let lookedBuffered = 0;
  let lead = 0;
  let closed = false;

  const onMessage = (event: { data: unknown }) => {
    const { data } = event;
    let chunk: Uint8Array;
    if (data instanceof ArrayBuffer) chunk = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) chunk = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else {
      // yamux travels in binary messages only; a text (or Blob) message means a peer that is not one.
      finish(new SessionClosedError("ERR_CONNECTION_LOST", "received a non-binary WebSocket message"));
      ws.close(CloseCode.UnsupportedData, "binary messages only");
      return;
    }
    deliver(chunk, false);
  };
  const deliver = (chunk: Uint8Array, more: boolean) => {
    if (sink) sink.data(chunk, more);
    else early.push([chunk, more]);
    // Hidden pages run timers at most once a second, but messages (WindowUpdates among them) arrive
    // unthrottled: look at the buffer here too, so a waiting writer does not wait for the next poll.
    if (polling !== undefined && ws.bufferedAmount <= lowWaterMark + lead) {
      clock.clearTimeout(polling);
      poll();
    }
  };
  /** The socket's last error event (`ws`: why it is closing on its own, e.g. a message over maxPayload). */
  let socketError: unknown;
  const onError = (event: { error?: unknown }) => {
    socketError = event.error;
    // `ws` failed reading (a message over maxPayload, a malformed frame): it closes the socket itself,
    // after a close handshake a peer that does not read never completes. The session ends now.
    if (typeof (socketError as { code?: unknown } | undefined)?.code === "string") {
      finish(closeError(1006, "", socketError));
      // ws sent its close frame (1009 for a message over maxPayload) and resumes the socket on the next
      // tick to read the peer's: a hostile peer sends the rest of its refused message first (12 MB cost
      // 5-8 ms of CPU in one turn just to be read and thrown away). Reading stops after that tick, and
      // the connection is dropped once the close frame had a second to reach the peer (dropped at once,
      // the unread bytes make the kernel answer with RST, and the peer may never see why).
      queueMicrotask(() => ws.pause?.());
      if (ws.terminate) clock.setTimeout(() => ws.terminate!(), 1000);
    }
  };
  const onClose = (event: { code: number; reason: string }) => finish(closeError(event.code, event.reason, socketError));

  function finish(error: Error | undefined): void {
    if (closed) return;
    closed = true;
    if (polling !== undefined) clock.clearTimeout(polling);
    polling = undefined;
    ws.removeEventListener("message", onMessage);
    ws.removeEventListener("close", onClose);
    if (sink) sink.close(error);
    else earlyClose = { error };
  }

  function poll(): void {
    polling = undefined;
    if (closed) return;
    const buffered = ws.bufferedAmount;
    // Over a whole interval at least (a message may bring us here sooner). Nothing was sent meanwhile
    // (writers wait), so the buffer fell by what the socket sent; an empty one only says it sent at least
    // that much. Twice that covers two intervals as they really are: timers fire late under load, and
    // hidden pages look once a second.
    if (clock.now() - lookedAt >= pollInterval) {
      const twice = 2 * (lookedBuffered - buffered);
      if (buffered > 0 || twice > lead) lead = Math.min(twice, 4 * highWaterMark);
      lookedAt = clock.now();
      lookedBuffered = buffered;
    }
    if (buffered > lowWaterMark + lead) {
      polling = clock.setTimeout(poll, pollInterval);
      return;
    }
    sink?.drain();
  }

  function sentCallback(size: number, onSent: () => void): () => void {
    return () => {
      unsent -= size;
      onSent();
      if (waiting && unsent <= lowWaterMark && !closed) {
        waiting = false;
        sink?.drain();
      }
    };
  }

  ws.binaryType = options.binaryType ?? "arraybuffer";
  // The close event that follows an error says all we need; but `ws` (Node) throws an error event
  // nobody listens to, so listen, for good.
  ws.addEventListener("error", onError);
  ws.addEventListener("message", onMessage);
  ws.addEventListener("close", onClose);
  // Binary messages then arrive through `deliver`; anything the reader leaves to the socket (text, or
  // what follows a frame it refused) still comes as message events.
  options.receive?.(ws, (chunk, more) => {
    if (!closed) deliver(chunk, more);
  });
  if (ws.readyState !== OPEN) finish(new SessionClosedError("ERR_CONNECTION_LOST", "the WebSocket is not open"));

  return {
    allocate: options.allocate,
    highWaterMark,
    maxMessageBytes: options.maxMessageBytes ?? (options.sendCallbacks ? undefined : 64 * 1024),
    start(s) {
      sink = s;
      for (const [chunk, more] of early.splice(0)) s.data(chunk, more);
      if (earlyClose) s.close(earlyClose.error);
    },
    send(message, onSent) {
      if (closed || ws.readyState !== OPEN) {
        onSent();
        return true;
      }
      if (options.sendCallbacks) {
        unsent += message.length;
        ws.send(message, sentCallback(message.length, onSent));
        if (unsent <= highWaterMark) return true;
        waiting = true;
        return false;
      }
      ws.send(message); // browsers copy the bytes here: the buffer is free again at once
      onSent();
      if (ws.bufferedAmount <= highWaterMark + lead) return true;
      if (polling === undefined) {
        lookedAt = clock.now();
        lookedBuffered = ws.bufferedAmount;
        polling = clock.setTimeout(poll, pollInterval);
      }
      return false;
    },
    // Only where the socket can: a browser's WebSocket reads on regardless.
    pause: typeof ws.pause === "function" ? () => ws.pause!() : undefined,
    resume: typeof ws.resume === "function" ? () => ws.resume!() : undefined,
    close(reason) {
      if (closed) return;
      finish(undefined);
      ws.close(...(options.closeCode?.(reason) ?? [CloseCode.Normal, ""]));
    },
  };
}

