/**
 * A forwarded dial's stream between two nodes. After the HTTP upgrade the TCP (or TLS) connection
 * carries frames, so that what a local Conn tells its user crosses the hop unchanged: the half-close, a
 * reset by either end, the error a device's stream ended with (`ERR_CONNECTION_LOST`, `ERR_REPLACED`...),
 * and a node that went away or stopped answering.
 *
 *     type (1 byte) | length (4 bytes, big-endian) | payload
 *     0 Data    the stream's bytes, at most the credit the receiver granted
 *     1 Fin     the sender's direction ended (half-close); no payload
 *     2 Reset   the stream failed: the error as JSON { code, message }; nothing follows
 *     3 Credit  the receiver read this many more bytes (4-byte count): the sender may send them
 *     4 Ping    are you there? (no payload)
 *     5 Pong    the answer
 *
 * Flow control is yamux's, by credit, not by pausing the socket: each side may have at most WINDOW
 * unread bytes at the other, so a receiver always reads the connection and control frames never wait
 * behind data its user has not read (a Ping is answered however slow the reader). Each side pings after
 * `keepAliveInterval` ms without hearing from the other, and a peer silent for `keepAliveTimeout` more
 * is gone: a frozen node is found as a frozen device is.
 *
 * The connection ends after a Fin each way, or a Reset. Ending otherwise (EOF, an error) means the other
 * node or the network went away: the stream fails with `ERR_CLUSTER_UNAVAILABLE`.
 *
 *       open ──Fin sent──▶ (write side ended) ─┐
 *        │ └──Fin received──▶ (read side ended)─┴─▶ closed (both)
 *        └── reset(), Reset received, EOF, silence ──▶ failed
 */

import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { ClusterUnavailableError, StreamClosedError, StreamResetError, WslisError } from "../../src/errors.js";
import type { StreamIO, StreamState } from "../../src/yamux/stream.js";
import type { FleetConn } from "./fleet.js";
import { fromWire, MAX_ERROR_BYTES, toWire, type WireError } from "./wire.js";

export const TunnelFrame = { Data: 0, Fin: 1, Reset: 2, Credit: 3, Ping: 4, Pong: 5 } as const;

/** Unread bytes a sender may have at its receiver (the receiver's buffer bound), as yamux's initial window. */
export const WINDOW = 256 * 1024;
/** Largest Data frame sent, in bytes. */
const MAX_DATA = 64 * 1024;
const HEADER = 5;

export interface TunnelOptions {
  /** The device's yamux stream ID, as the owning node reported it. */
  streamID: number;
  /** The device id (errors that name it). */
  id: string;
  /** Who is at the other end, for messages: "node b (http://10.0.0.6:8080)". */
  peer: string;
  /** Bytes that came with the upgrade's head. */
  head?: Uint8Array;
  /** Ping after this long without a frame from the peer, in ms; 0: never. */
  keepAliveInterval: number;
  /** Told first, before readers and writers see it, when the stream fails (with why). */
  onFail?: (error: Error) => void;
  /** Silence after a ping that means the peer is gone, in ms. */
  keepAliveTimeout: number;
}

/** Frames a stream over `socket` (in half-open mode); see the file's comment. */
export function tunnel(socket: Duplex, options: TunnelOptions): FleetConn {
  return new Tunnel(socket, options);
}

/**
 * The bytes of a tunnel without its web streams (see {@link StreamIO}), for a user that owns it from its
 * first byte (the HTTP client, the owning node's relay), or undefined for any other conn. Use one or the
 * other on a tunnel, not both.
 */
export let tunnelIO: (conn: object) => StreamIO | undefined;

/** Fails a tunnel with `reason`, which the other node gets in the Reset when it is a wslis error. */
export let abortTunnel: (conn: object, reason: unknown) => void;

/** Fails a tunnel with `error` here, and with the same error at the other node (a Reset carrying it). */
export let failTunnel: (conn: object, error: Error) => void;

class Tunnel implements FleetConn {
  static {
    tunnelIO = (conn) =>
      #socket in conn
        ? {
            read: () => conn.#read(),
            write: (bytes) => (conn.#writing = conn.#write(bytes)),
            cancel: () => conn.#cancelRead(),
            close: async () => {
              await conn.#writing.catch(() => {});
              conn.#sendFin();
            },
          }
        : undefined;
    abortTunnel = (conn, reason) => {
      if (#socket in conn) conn.#abort(reason);
    };
    failTunnel = (conn, error) => {
      if (#socket in conn) conn.#fail(error, toWire(error));
    };
  }

  readonly streamID: number;
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  readonly closed: Promise<void>;

  readonly #socket: Duplex;
  readonly #options: TunnelOptions;
  #readEnded = false;
  #writeEnded = false;
  #readCancelled = false;
  #failure: Error | undefined;
  #resolveClosed!: () => void;
  #rejectClosed!: (error: Error) => void;
  #readController!: ReadableStreamDefaultController<Uint8Array>;
  #writeController!: WritableStreamDefaultController;
  /** Data received and not yet handed to the reader; bounded by WINDOW (the sender's credit). */
  readonly #queue: Uint8Array[] = [];
  #wakeReader: (() => void) | undefined;
  /** A read of the web-stream-less path (tunnelIO) waiting for data, its end, or the failure. */
  #ioWaiter: { resolve: (chunk: Uint8Array | null) => void; reject: (error: Error) => void } | undefined;
  /** Bytes the peer may still send before it needs credit. */
  #recvWindow = WINDOW;
  /** Bytes read by the user, not yet returned to the sender as credit. */
  #consumed = 0;
  /** Bytes the peer may still be sent. */
  #sendWindow = WINDOW;
  #wakeWriter: (() => void) | undefined;
  #writing: Promise<void> = Promise.resolve();
  // Frame parsing: the header being read, then the payload left of the frame.
  readonly #header = Buffer.alloc(HEADER);
  #headerFill = 0;
  #type = -1;
  #remaining = 0;
  /** The payload of a Reset or Credit frame, as it comes. */
  #control: Buffer[] = [];
  // Keepalive.
  #heard = 0;
  #pingSent = 0;
  #keepAliveTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(socket: Duplex, options: TunnelOptions) {
    this.#socket = socket;
    this.#options = options;
    this.streamID = options.streamID;
    this.closed = new Promise<void>((resolve, reject) => {
      this.#resolveClosed = resolve;
      this.#rejectClosed = reject;
    });
    this.closed.catch(() => {});
    this.readable = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#readController = controller;
        },
        pull: (controller) => this.#pull(controller),
        cancel: () => this.#cancelRead(),
      },
      { highWaterMark: 0 },
    );
    this.writable = new WritableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#writeController = controller;
        },
        write: (chunk) => {
          this.#writing = this.#write(toBytes(chunk));
          return this.#writing;
        },
        close: () => this.#sendFin(),
        abort: (reason: unknown) => this.#abort(reason),
      },
      { highWaterMark: 1 },
    );
    (socket as Partial<Socket>).setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.#handleChunk(chunk));
    socket.on("end", () => this.#gone());
    socket.on("error", (error) => this.#gone(error));
    socket.on("close", () => this.#gone());
    this.#heard = performance.now();
    this.#scheduleKeepAlive();
    if (options.head && options.head.length > 0) this.#handleChunk(Buffer.from(options.head.buffer, options.head.byteOffset, options.head.length));
  }

  /** Where the stream is, in a local stream's terms. */
  get state(): StreamState {
    if (this.#failure) return "reset";
    if (this.#readEnded) return this.#writeEnded ? "closed" : "remoteClose";
    return this.#writeEnded ? "localClose" : "open";
  }

  /** Half-closes: Fin once the write in progress is done. Reading goes on until the peer's Fin. */
  async close(): Promise<void> {
    if (this.#writeEnded || this.#failure) return;
    if (!this.writable.locked) {
      await this.writable.close().catch(() => {});
      return;
    }
    await this.#writing.catch(() => {});
    this.#sendFin();
  }

  /** Resets the stream: both directions fail at once, here (locally) and at the device. */
  reset(): void {
    this.#fail(new StreamResetError(this.streamID, false), { code: "ERR_STREAM_RESET", message: `stream ${this.streamID} was reset by the peer` });
  }

  // Receive side.

  #handleChunk(chunk: Buffer): void {
    if (this.#failure) return;
    this.#heard = performance.now();
    let offset = 0;
    while (offset < chunk.length && !this.#failure) {
      if (this.#type < 0) {
        const n = Math.min(HEADER - this.#headerFill, chunk.length - offset);
        chunk.copy(this.#header, this.#headerFill, offset, offset + n);
        this.#headerFill += n;
        offset += n;
        if (this.#headerFill < HEADER) return;
        this.#headerFill = 0;
        this.#type = this.#header[0]!;
        this.#remaining = this.#header.readUInt32BE(1);
        if (!this.#admit(this.#type, this.#remaining)) return;
        if (this.#remaining === 0) this.#frameDone();
        continue;
      }
      const n = Math.min(this.#remaining, chunk.length - offset);
      const payload = chunk.subarray(offset, offset + n);
      offset += n;
      this.#remaining -= n;
      if (this.#type === TunnelFrame.Data) this.#handleData(payload);
      else this.#control.push(payload);
      if (this.#remaining === 0) this.#frameDone();
    }
  }

  /** Checks a frame header; a peer that breaks the format is as good as gone. */
  #admit(type: number, length: number): boolean {
    const broken = (why: string) => {
      this.#fail(new ClusterUnavailableError(`${this.#options.peer} broke the stream's framing: ${why}`), { code: "ERR_CLUSTER_UNAVAILABLE", message: why });
      return false;
    };
    switch (type) {
      case TunnelFrame.Data:
        if (this.#readEnded) return broken("data after its Fin");
        if (length > this.#recvWindow) return broken(`${length} bytes of data beyond the ${this.#recvWindow} granted`);
        this.#recvWindow -= length;
        return true;
      case TunnelFrame.Reset:
        return length <= MAX_ERROR_BYTES || broken(`a Reset of ${length} bytes`);
      case TunnelFrame.Credit:
        return length === 4 || broken("a Credit frame must hold 4 bytes");
      case TunnelFrame.Fin:
      case TunnelFrame.Ping:
      case TunnelFrame.Pong:
        return length === 0 || broken("a control frame with a payload");
      default:
        return broken(`unknown frame type ${type}`);
    }
  }

  #frameDone(): void {
    const type = this.#type;
    this.#type = -1;
    switch (type) {
      case TunnelFrame.Fin:
        this.#handleFin();
        return;
      case TunnelFrame.Reset: {
        const payload = Buffer.concat(this.#control);
        this.#control = [];
        let wire: WireError;
        try {
          wire = JSON.parse(payload.toString("utf8")) as WireError;
        } catch {
          wire = { code: "ERR_STREAM_RESET", message: `stream ${this.streamID} was reset by the peer` };
        }
        this.#fail(fromWire(wire, this.#options.id));
        return;
      }
      case TunnelFrame.Credit: {
        const payload = Buffer.concat(this.#control);
        this.#control = [];
        this.#sendWindow += payload.readUInt32BE(0);
        this.#wake("writer");
        return;
      }
      case TunnelFrame.Ping:
        this.#send(TunnelFrame.Pong);
        return;
      default:
        return; // Pong, Data: nothing more
    }
  }

  #handleData(payload: Buffer): void {
    if (payload.length === 0) return;
    if (this.#readCancelled) {
      // Nobody reads: the bytes are dropped, and their credit goes back so the sender is not stuck.
      this.#grant(payload.length);
      return;
    }
    // A view of a socket chunk that the rest of the chunk shares: fine, chunks are not reused.
    const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.length);
    const waiter = this.#ioWaiter;
    if (waiter) {
      this.#ioWaiter = undefined;
      this.#grant(bytes.length);
      waiter.resolve(bytes);
    } else if (this.#wakeReader) {
      this.#readController.enqueue(bytes);
      this.#grant(bytes.length);
      this.#wake("reader");
    } else this.#queue.push(bytes);
  }

  #pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> | undefined {
    if (this.#failure) throw this.#failure;
    const chunk = this.#queue.shift();
    if (chunk !== undefined) {
      controller.enqueue(chunk);
      this.#grant(chunk.length);
    } else if (this.#readEnded) controller.close();
    else return new Promise<void>((resolve) => (this.#wakeReader = resolve));
    return undefined;
  }

  #read(): Uint8Array | null | Promise<Uint8Array | null> {
    if (this.#failure) throw this.#failure;
    const chunk = this.#queue.shift();
    if (chunk !== undefined) {
      this.#grant(chunk.length);
      return chunk;
    }
    if (this.#readEnded || this.#readCancelled) return null;
    return new Promise((resolve, reject) => (this.#ioWaiter = { resolve, reject }));
  }

  /** Returns read bytes to the sender as credit, a quarter window at a time. */
  #grant(n: number): void {
    this.#consumed += n;
    if (this.#consumed < WINDOW / 4 || this.#readEnded || this.#failure) return;
    const credit = Buffer.alloc(4);
    credit.writeUInt32BE(this.#consumed);
    this.#recvWindow += this.#consumed;
    this.#consumed = 0;
    this.#send(TunnelFrame.Credit, credit);
  }

  #cancelRead(): void {
    this.#readCancelled = true;
    let dropped = 0;
    for (const chunk of this.#queue.splice(0)) dropped += chunk.length;
    if (dropped > 0) this.#grant(dropped);
    this.#wake("reader");
    this.#settleRead(null);
  }

  #handleFin(): void {
    if (this.#readEnded) return;
    this.#readEnded = true;
    if (this.#wakeReader) {
      this.#readController.close();
      this.#wake("reader");
    }
    this.#settleRead(null);
    this.#settle();
  }

  // Send side.

  async #write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      if (this.#failure) throw this.#failure;
      if (this.#writeEnded) throw new StreamClosedError(this.streamID);
      if (this.#sendWindow === 0) {
        await new Promise<void>((resolve) => (this.#wakeWriter = resolve));
        continue;
      }
      const n = Math.min(bytes.length - offset, this.#sendWindow, MAX_DATA);
      this.#sendWindow -= n;
      const flushed = this.#send(TunnelFrame.Data, bytes.subarray(offset, offset + n));
      offset += n;
      if (!flushed) await this.#drained();
    }
  }

  /** Writes one frame; false when the socket's buffer is full (wait for `drain`). */
  #send(type: number, payload?: Uint8Array): boolean {
    if (this.#socket.destroyed || this.#socket.writableEnded) return true;
    const header = Buffer.allocUnsafe(HEADER);
    header[0] = type;
    header.writeUInt32BE(payload?.length ?? 0, 1);
    const socket = this.#socket as Partial<Socket> & Duplex;
    socket.cork();
    let ok = socket.write(header);
    if (payload && payload.length > 0) ok = socket.write(payload);
    socket.uncork();
    return ok;
  }

  #drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#socket.off("drain", done);
        this.#socket.off("close", done);
        resolve();
      };
      this.#socket.on("drain", done);
      this.#socket.on("close", done);
    });
  }

  #sendFin(): void {
    if (this.#writeEnded || this.#failure) return;
    this.#writeEnded = true;
    this.#send(TunnelFrame.Fin);
    this.#settle();
  }

  /** The writable was aborted with `reason`: a reset, which tells the peer the reason if it is ours. */
  #abort(reason: unknown): void {
    const wire: WireError =
      reason instanceof WslisError && reason.code !== "ERR_STREAM_RESET"
        ? toWire(reason)
        : { code: "ERR_STREAM_RESET", message: `stream ${this.streamID} was reset by the peer` };
    this.#fail(new StreamResetError(this.streamID, false), wire);
  }

  // Both sides.

  #settle(): void {
    if (!this.#readEnded || !this.#writeEnded || this.#failure) return;
    this.#stopKeepAlive();
    this.#resolveClosed();
    // Both Fins went: nothing more to say. The peer ends its side too.
    this.#socket.end();
  }

  /**
   * The stream fails with `error`: readers and writers are released, `closed` rejects. With `tell`, the
   * peer gets a Reset carrying it first; without, the connection is dropped.
   */
  #fail(error: Error, tell?: WireError): void {
    if (this.#failure || (this.#readEnded && this.#writeEnded)) return;
    this.#failure = error;
    this.#options.onFail?.(error);
    this.#stopKeepAlive();
    this.#queue.length = 0;
    try {
      this.#readController.error(error);
    } catch {
      // the readable already ended
    }
    this.#writeController.error(error);
    this.#wake("reader");
    this.#wake("writer");
    this.#settleRead(error);
    this.#rejectClosed(error);
    if (tell && !this.#socket.destroyed) {
      this.#send(TunnelFrame.Reset, Buffer.from(JSON.stringify(tell)));
      this.#socket.end();
      // The peer closes on the Reset; if it does not within the keepalive bound, the connection goes anyway.
      setTimeout(() => this.#socket.destroy(), Math.max(1000, this.#options.keepAliveTimeout)).unref();
    } else this.#socket.destroy();
  }

  /** The connection ended or broke: fine after both Fins or a Reset, otherwise the peer went away. */
  #gone(error?: Error): void {
    if (this.#failure || (this.#readEnded && this.#writeEnded)) {
      if (!this.#socket.destroyed && this.#socket.readableEnded) this.#socket.destroy();
      return;
    }
    const detail = error ? `: ${error.message}` : "";
    this.#fail(new ClusterUnavailableError(`${this.#options.peer} went away in the middle of the stream${detail}`, { cause: error }));
  }

  #scheduleKeepAlive(): void {
    const { keepAliveInterval } = this.#options;
    if (keepAliveInterval === 0) return;
    this.#keepAliveTimer = setTimeout(() => this.#keepAlive(), keepAliveInterval);
    this.#keepAliveTimer.unref();
  }

  #keepAlive(): void {
    if (this.#failure || (this.#readEnded && this.#writeEnded)) return;
    const { keepAliveInterval, keepAliveTimeout } = this.#options;
    const now = performance.now();
    if (this.#pingSent > 0 && this.#heard < this.#pingSent && now - this.#pingSent >= keepAliveTimeout) {
      this.#fail(
        new ClusterUnavailableError(`${this.#options.peer} did not answer a ping within ${keepAliveTimeout} ms`),
        { code: "ERR_CLUSTER_UNAVAILABLE", message: "the stream's keepalive timed out" },
      );
      return;
    }
    const quiet = now - this.#heard;
    if (this.#pingSent === 0 || this.#heard >= this.#pingSent) {
      if (quiet >= keepAliveInterval) {
        this.#pingSent = now;
        this.#send(TunnelFrame.Ping);
        this.#keepAliveTimer = setTimeout(() => this.#keepAlive(), keepAliveTimeout);
      } else {
        this.#pingSent = 0;
        this.#keepAliveTimer = setTimeout(() => this.#keepAlive(), keepAliveInterval - quiet);
      }
    } else this.#keepAliveTimer = setTimeout(() => this.#keepAlive(), keepAliveTimeout - (now - this.#pingSent));
    this.#keepAliveTimer.unref();
  }

  #stopKeepAlive(): void {
    clearTimeout(this.#keepAliveTimer);
  }

  /** Ends a waiting tunnelIO read: with nothing more (null), or with the failure. */
  #settleRead(outcome: null | Error): void {
    const waiter = this.#ioWaiter;
    this.#ioWaiter = undefined;
    if (!waiter) return;
    if (outcome === null) waiter.resolve(null);
    else waiter.reject(outcome);
  }

  #wake(which: "reader" | "writer"): void {
    const wake = which === "reader" ? this.#wakeReader : this.#wakeWriter;
    if (which === "reader") this.#wakeReader = undefined;
    else this.#wakeWriter = undefined;
    wake?.();
  }
}

/** Accepts any binary chunk a writer may hand us, as a local Conn does. */
function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  throw new TypeError(`wslis: a stream accepts Uint8Array, ArrayBuffer or ArrayBufferView chunks, not ${typeof chunk}`);
}
