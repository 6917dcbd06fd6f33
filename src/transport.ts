/**
 * A WebSocket as a yamux {@link Transport}: the browser's native `WebSocket`, or anything with its API
 * (the `ws` package's client and server sockets).
 *
 * The WebSocket is a byte stream here: a message may carry part of a frame, a frame, or several (Go
 * sends a frame's header and body as two messages); the session's decoder sorts that out. We send each
 * frame as one binary message, header and body joined (the one copy the message boundary forces).
 *
 * Outbound backpressure comes from `bufferedAmount`: above the high watermark a write returns false, and
 * `drain` fires once it falls below the low watermark. Browsers have no event for that, so the adapter
 * polls `bufferedAmount`, and only while above the watermark.
 */

import { SessionClosedError, WslisError } from "./errors.js";
import { FrameType, HEADER_SIZE, writeUint32 } from "./yamux/frame.js";
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
}

/** A WebSocket constructor, as `globalThis.WebSocket` or `ws`'s `WebSocket`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: any) => WebSocketLike;

/**
 * WebSocket close codes wslis sends, beyond the standard 1000 (normal) and 1001 (going away: server
 * shutdown). The 44xx codes mean "do not reconnect".
 */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  /** A newer connection with the same device id replaced this one. */
  Replaced: 4000,
  /** The server refused the device's credentials. */
  Unauthorized: 4401,
  /** The server refused this device. */
  Forbidden: 4403,
} as const;

export interface WebSocketTransportOptions {
  /** Outbound bytes buffered in the WebSocket above which writers wait. Default 1 MiB. */
  highWaterMark?: number;
  /** Buffered bytes below which waiting writers resume. Default 256 KiB. */
  lowWaterMark?: number;
  /** How often to look at `bufferedAmount` while above the high watermark, in ms. Default 4. */
  pollInterval?: number;
  /**
   * The socket calls `send`'s callback once the data left for the network (Node's `ws` does; browsers
   * do not): then backpressure is counted from those callbacks instead of polling `bufferedAmount`.
   * Default false.
   */
  sendCallbacks?: boolean;
  /** `binaryType` to ask for: "arraybuffer" (default, every runtime) or "nodebuffer" (`ws`: no copy). */
  binaryType?: string;
  /** Allocates a message buffer (header + body). Default `new Uint8Array(size)`; Node passes `Buffer.allocUnsafe`. */
  allocate?: (size: number) => Uint8Array;
  /** What the other end is, to read its close codes: "server" (default, on devices) or "device" (on the server). */
  peer?: "server" | "device";
  /**
   * With `sendCallbacks`: Data frames written in one turn of the event loop leave as one message (the
   * WebSocket is a byte stream to yamux), copied into reused buffers of `bytes`; `defer` runs the flush at
   * the end of the turn (Node: `setImmediate`). Control frames flush at once.
   */
  coalesce?: { bytes: number; defer(flush: () => void): void };
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
  const allocate = options.allocate ?? ((size: number) => new Uint8Array(size));
  let sink: TransportSink | undefined;
  /** With send callbacks: bytes handed to the socket and not yet written out; `waiting`: a writer waits. */
  let unsent = 0;
  let waiting = false;
  const sent = (size: number) => () => {
    unsent -= size;
    if (waiting && unsent <= lowWaterMark && !closed) {
      waiting = false;
      sink?.drain();
    }
  };
  /** What arrived before start(): chunks, then possibly the close. */
  const early: Uint8Array[] = [];
  let earlyClose: { error: Error | undefined } | undefined;
  let polling: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const onMessage = (event: { data: unknown }) => {
    const { data } = event;
    let chunk: Uint8Array;
    if (data instanceof ArrayBuffer) chunk = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) chunk = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else {
      // yamux travels in binary messages only; a text (or Blob) message means a peer that is not one.
      finish(new SessionClosedError("ERR_CONNECTION_LOST", "received a non-binary WebSocket message"));
      ws.close(1003, "binary messages only");
      return;
    }
    if (sink) sink.data(chunk);
    else early.push(chunk);
    // Hidden pages run timers at most once a second, but messages (WindowUpdates among them) arrive
    // unthrottled: look at the buffer here too, so a waiting writer does not wait for the next poll.
    if (polling !== undefined && ws.bufferedAmount <= lowWaterMark) {
      clearTimeout(polling);
      poll();
    }
  };
  const onClose = (event: { code: number; reason: string }) =>
    finish(closeError(event.code, event.reason, options.peer));

  function finish(error: Error | undefined): void {
    if (closed) return;
    closed = true;
    clearTimeout(polling);
    batcher?.dispose();
    ws.removeEventListener("message", onMessage);
    ws.removeEventListener("close", onClose);
    if (sink) sink.close(error);
    else earlyClose = { error };
  }

  function poll(): void {
    polling = undefined;
    if (closed) return;
    if (ws.bufferedAmount > lowWaterMark) {
      polling = setTimeout(poll, pollInterval);
      return;
    }
    sink?.drain();
  }

  const batcher = options.sendCallbacks && options.coalesce ? new Batcher(options.coalesce, allocate, ws, sent, highWaterMark) : undefined;

  ws.binaryType = options.binaryType ?? "arraybuffer";
  // The close event that follows an error says all we need; but `ws` (Node) throws an error event
  // nobody listens to, so listen, for good.
  ws.addEventListener("error", ignore);
  ws.addEventListener("message", onMessage);
  ws.addEventListener("close", onClose);
  if (ws.readyState !== OPEN) finish(new SessionClosedError("ERR_CONNECTION_LOST", "the WebSocket is not open"));

  return {
    start(s) {
      sink = s;
      for (const chunk of early.splice(0)) s.data(chunk);
      if (earlyClose) s.close(earlyClose.error);
    },
    write(header, body) {
      if (closed || ws.readyState !== OPEN) return true;
      if (batcher) {
        unsent += batcher.append(header, body);
        if (unsent <= highWaterMark) return true;
        waiting = true;
        return false;
      }
      let message = header;
      if (body !== undefined && body.length > 0) {
        message = allocate(HEADER_SIZE + body.length);
        message.set(header, 0);
        message.set(body, HEADER_SIZE);
      }
      if (options.sendCallbacks) {
        unsent += message.length;
        ws.send(message, sent(message.length));
        if (unsent <= highWaterMark) return true;
        waiting = true;
        return false;
      }
      ws.send(message);
      if (ws.bufferedAmount <= highWaterMark) return true;
      if (polling === undefined) polling = setTimeout(poll, pollInterval);
      return false;
    },
    close(reason) {
      if (closed) return;
      batcher?.flush(); // the GoAway, and any data before it, go out before the close frame
      finish(undefined);
      ws.close(...closeCodeFor(reason));
    },
  };
}

function ignore(): void {}

/**
 * Copies frames into slabs and sends what one turn wrote as one message. A slab is reused once every
 * message cut from it has left for the socket (send callbacks), so steady traffic allocates nothing; once
 * everything has left and nothing waits, the slabs are let go, so an idle connection holds no buffer
 * (a server may hold many thousands of them).
 */
class Batcher {
  readonly #bytes: number;
  readonly #defer: (flush: () => void) => void;
  readonly #allocate: (size: number) => Uint8Array;
  readonly #ws: WebSocketLike;
  readonly #sent: (size: number) => () => void;
  readonly #free: Slab[] = [];
  /** Free slabs kept for reuse: enough to hold what may be in flight below the high watermark. */
  readonly #keep: number;
  /** Slabs with messages in flight. */
  #busy = 0;
  #slab: Slab | undefined;
  /** Where the message being filled starts in the slab, and where it ends now. */
  #start = 0;
  #end = 0;
  /**
   * Where the header of the last frame appended sits in the slab when that frame is a plain Data frame
   * (no flags) still unsent, so the next one of the same stream can extend it; -1 otherwise.
   */
  #openData = -1;
  #scheduled = false;
  #releaseTimer: ReturnType<typeof setTimeout> | undefined;
  /** Frames were appended since the release timer was armed. */
  #used = false;

  constructor(
    options: { bytes: number; defer(flush: () => void): void },
    allocate: (size: number) => Uint8Array,
    ws: WebSocketLike,
    sent: (size: number) => () => void,
    highWaterMark: number,
  ) {
    this.#keep = Math.ceil(highWaterMark / options.bytes) + 1;
    this.#bytes = options.bytes;
    this.#defer = options.defer;
    this.#allocate = allocate;
    this.#ws = ws;
    this.#sent = sent;
  }

  /** Appends a frame; returns how many bytes that added to what will be sent. */
  append(header: Uint8Array, body: Uint8Array | undefined): number {
    this.#used = true;
    const size = HEADER_SIZE + (body?.length ?? 0);
    if (size > this.#bytes) {
      // Larger than a slab: a message of its own, after what is pending.
      this.flush();
      const message = this.#allocate(size);
      message.set(header, 0);
      if (body) message.set(body, HEADER_SIZE);
      this.#ws.send(message, this.#sent(size));
      return size;
    }
    const slab = this.#slab?.bytes;
    if (body !== undefined && this.#openData >= 0 && this.#end + body.length <= slab!.length && continuesData(slab!, this.#openData, header)) {
      // The same stream's next Data frame, right behind its previous one in an unsent message: one frame
      // of the two bodies' length carries the same bytes. The peer's window admits it: both were sent
      // within credit granted before the peer could have seen either.
      slab!.set(body, this.#end);
      this.#end += body.length;
      writeUint32(slab!, this.#openData + 8, this.#end - this.#openData - HEADER_SIZE);
      return body.length;
    }
    if (slab === undefined || this.#end + size > slab.length) this.#nextSlab();
    const target = this.#slab!.bytes;
    target.set(header, this.#end);
    if (body) target.set(body, this.#end + HEADER_SIZE);
    this.#openData = body !== undefined && isPlainData(header) ? this.#end : -1;
    this.#end += size;
    if (body === undefined) {
      // A control frame (SYN, ACK, FIN, RST, window credit, ping, GoAway) does not wait for the turn to
      // end: it leaves now, with the data written before it.
      this.flush();
    } else if (!this.#scheduled) {
      this.#scheduled = true;
      this.#defer(() => this.flush());
    }
    return size;
  }

  /** Sends what was appended since the last flush. */
  flush(): void {
    this.#scheduled = false;
    this.#openData = -1;
    const slab = this.#slab;
    if (slab === undefined || this.#end === this.#start) return;
    const message = slab.bytes.subarray(this.#start, this.#end);
    this.#start = this.#end;
    if (slab.inFlight++ === 0) this.#busy++;
    const done = this.#sent(message.length);
    this.#ws.send(message, () => {
      if (--slab.inFlight === 0) {
        this.#busy--;
        if (this.#busy === 0 && this.#start === this.#end) this.#releaseWhenIdle();
        else if (slab !== this.#slab && this.#free.length < this.#keep) this.#free.push(slab);
      }
      done();
    });
  }

  /**
   * Lets the slabs go if the connection is still idle a second from now: not at once, or a stream that
   * pauses between writes would allocate a slab per burst.
   */
  #releaseWhenIdle(): void {
    if (this.#releaseTimer !== undefined) return;
    this.#used = false;
    this.#releaseTimer = setTimeout(() => {
      this.#releaseTimer = undefined;
      if (this.#busy > 0 || this.#start !== this.#end) return; // busy: the next idle moment looks again
      if (this.#used) {
        // Idle now, but not for the whole second: a transfer pausing between writes keeps its slabs.
        this.#releaseWhenIdle();
        return;
      }
      this.#slab = undefined;
      this.#free.length = 0;
    }, 1000);
    // Node: this timer alone must not keep the process alive.
    (this.#releaseTimer as { unref?: () => void }).unref?.();
  }

  /** Stops the idle timer (the socket is closing). */
  dispose(): void {
    clearTimeout(this.#releaseTimer);
    this.#releaseTimer = undefined;
  }

  #nextSlab(): void {
    this.flush();
    const previous = this.#slab;
    if (previous !== undefined && previous.inFlight === 0 && this.#free.length < this.#keep) this.#free.push(previous);
    this.#slab = this.#free.pop() ?? { bytes: this.#allocate(this.#bytes), inFlight: 0 };
    this.#start = 0;
    this.#end = 0;
  }
}

/** A buffer frames are copied into, and how many messages cut from it are still on their way out. */
interface Slab {
  readonly bytes: Uint8Array;
  inFlight: number;
}

/** A Data frame header without flags (byte 1 is the type, bytes 2–3 the flags). */
function isPlainData(header: Uint8Array): boolean {
  return header[1] === FrameType.Data && header[2] === 0 && header[3] === 0;
}

/** True when `header` is a plain Data frame of the same stream as the plain Data frame at `at` in `slab`. */
function continuesData(slab: Uint8Array, at: number, header: Uint8Array): boolean {
  return (
    isPlainData(header) &&
    slab[at + 4] === header[4] &&
    slab[at + 5] === header[5] &&
    slab[at + 6] === header[6] &&
    slab[at + 7] === header[7]
  );
}

/** The WebSocket close code and reason for a session that ended with `reason`. */
export function closeCodeFor(reason: Error | undefined): [number, string] {
  const code = reason instanceof WslisError ? reason.code : undefined;
  switch (code) {
    case "ERR_SERVER_SHUTDOWN":
      return [CloseCode.GoingAway, "server shutdown"];
    case "ERR_REPLACED":
      return [CloseCode.Replaced, "replaced by a newer connection"];
    case "ERR_UNAUTHORIZED":
      return [CloseCode.Unauthorized, "unauthorized"];
    case "ERR_PROTOCOL":
      return [1002, "yamux protocol error"];
    default:
      return [CloseCode.Normal, ""];
  }
}

/**
 * The error a session ends with when its WebSocket closed with `code`. The wslis close codes mean
 * something only when the server sent them; from a device, 1001 is just a page closed or navigated away.
 */
export function closeError(code: number, reason: string, peer: "server" | "device" = "server"): WslisError {
  const detail = `the WebSocket closed (code ${code}${reason ? `: ${reason}` : ""})`;
  if (peer === "device") {
    const why = code === CloseCode.GoingAway ? "the device went away (page closed or navigated)" : "the device disconnected";
    return new SessionClosedError("ERR_CONNECTION_LOST", `${why}; ${detail}`);
  }
  switch (code) {
    case CloseCode.GoingAway:
      return new SessionClosedError("ERR_SERVER_SHUTDOWN", `the server is shutting down; ${detail}`);
    case CloseCode.Replaced:
      return new SessionClosedError("ERR_REPLACED", `a newer connection with the same device id replaced this one; ${detail}`);
    case CloseCode.Unauthorized:
    case CloseCode.Forbidden:
      return new WslisError("ERR_UNAUTHORIZED", `the server refused this device; ${detail}`);
    default:
      return new SessionClosedError("ERR_CONNECTION_LOST", detail);
  }
}
