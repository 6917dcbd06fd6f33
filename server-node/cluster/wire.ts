/**
 * Node-to-node wire format. A forwarded fetch is one HTTP/1.1 POST whose body is a head and then the
 * device request's body; its answer is a head and then the device response's body. A head is a 4-byte
 * big-endian length and that many bytes of JSON, so no header of the device's request or response is
 * touched by the hop (hop-by-hop headers, size limits of the node's HTTP server). A forwarded dial is an
 * HTTP/1.1 upgrade; after the 101 the TCP connection carries the stream's bytes, TCP half-close carries
 * FIN and a TCP reset carries RST.
 */

import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { createHash, timingSafeEqual } from "node:crypto";
import {
  ClusterUnavailableError,
  DeviceNotFoundError,
  HttpError,
  SessionClosedError,
  StreamResetError,
  TimeoutError,
  WslisError,
  type ErrorCode,
} from "../../src/errors.js";
import type { FleetConn } from "./fleet.js";

/** Largest head a node accepts, in bytes: a request line and headers, JSON-encoded. */
export const MAX_HEAD_BYTES = 1024 * 1024;

/** The Upgrade token of a forwarded dial. */
export const UPGRADE_TOKEN = "wslis-stream";

export interface RequestHead {
  id: string;
  generation: number;
  method: string;
  url: string;
  headers: [string, string][];
  /** ms until the response head; 0: none. */
  timeout: number;
  body: boolean;
}

export type ResponseHead =
  | { status: number; statusText: string; headers: [string, string][] }
  | { error: WireError };

export interface WireError {
  code: string;
  message: string;
}

export function encodeHead(head: unknown): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(head));
  const out = new Uint8Array(4 + json.length);
  new DataView(out.buffer).setUint32(0, json.length);
  out.set(json, 4);
  return out;
}

/**
 * Reads a head off `reader`; returns it and the rest of the stream as a ReadableStream (the bytes read
 * past the head first). Throws HttpError on a malformed or oversized head, or a stream that ends early.
 */
export async function readHead<T>(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<{ head: T; rest: ReadableStream<Uint8Array> }> {
  let buffered = new Uint8Array(0);
  let need = 4;
  let length = -1;
  for (;;) {
    if (buffered.length >= need) {
      if (length < 0) {
        length = new DataView(buffered.buffer, buffered.byteOffset, 4).getUint32(0);
        if (length > MAX_HEAD_BYTES) throw new HttpError(`node-to-node head of ${length} bytes exceeds ${MAX_HEAD_BYTES}`);
        need = 4 + length;
        continue;
      }
      let head: T;
      try {
        head = JSON.parse(new TextDecoder().decode(buffered.subarray(4, need))) as T;
      } catch (error) {
        throw new HttpError("malformed node-to-node head", { cause: error });
      }
      const leftover = buffered.subarray(need);
      return { head, rest: restOf(reader, leftover) };
    }
    const { done, value } = await reader.read();
    if (done) throw new HttpError("the node-to-node message ended inside its head");
    const joined = new Uint8Array(buffered.length + value.length);
    joined.set(buffered);
    joined.set(value, buffered.length);
    buffered = joined;
  }
}

function restOf(reader: ReadableStreamDefaultReader<Uint8Array>, leftover: Uint8Array): ReadableStream<Uint8Array> {
  let first: Uint8Array | undefined = leftover.length > 0 ? leftover : undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (first) {
          controller.enqueue(first);
          first = undefined;
          return;
        }
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * Reads a stream to its end, dropping the bytes. Cancelling the rest of an HTTP message would close its
 * connection; reading it keeps the connection reusable.
 */
export async function discard(stream: ReadableStream<Uint8Array>): Promise<void> {
  const reader = stream.getReader();
  try {
    while (!(await reader.read()).done);
  } catch {
    // the connection broke: nothing to keep
  }
}

/** The error a node answers with, as it travels. */
export function toWire(error: unknown): WireError {
  if (error instanceof WslisError) return { code: error.code, message: error.message };
  const e = error instanceof Error ? error : new Error(String(error));
  return { code: e.name === "AbortError" ? "ABORT" : "ERR_HTTP", message: e.message };
}

/** The error a node answered with, as the caller's own kind (`instanceof` and `code` work across nodes). */
export function fromWire(error: WireError, id: string): Error {
  const { code, message } = error;
  switch (code) {
    case "ERR_DEVICE_NOT_FOUND":
      return new DeviceNotFoundError(id, message);
    case "ERR_CLUSTER_UNAVAILABLE":
      return new ClusterUnavailableError(message);
    case "ERR_SESSION_CLOSED":
    case "ERR_CONNECTION_LOST":
    case "ERR_KEEPALIVE_TIMEOUT":
    case "ERR_REPLACED":
    case "ERR_SERVER_SHUTDOWN":
      return new SessionClosedError(code, message);
    case "ERR_TIMEOUT":
      return Object.assign(new TimeoutError("request", 0), { message });
    case "ABORT":
      return new DOMException(message, "AbortError");
    case "ERR_HTTP":
      return new HttpError(message);
    default:
      return /^ERR_[A-Z_]+$/.test(code) ? new WslisError(code as ErrorCode, message) : new HttpError(message);
  }
}

/** Compares a presented secret with the expected one in constant time. */
export function secretMatches(presented: string | undefined, expected: string): boolean {
  if (presented === undefined) return false;
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(presented), digest(expected));
}

/** The Authorization header value carrying the cluster secret. */
export function bearer(secret: string): string {
  return `Bearer ${secret}`;
}

/** The secret in an Authorization header, if any. */
export function bearerSecret(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer (.+)$/.exec(header);
  return match?.[1];
}

/**
 * A stream over a TCP (or TLS) connection in half-open mode: a FleetConn. The peer's FIN ends
 * `readable`; closing `writable` (or `close()`) sends FIN; `reset()` and aborting `writable` send a TCP
 * reset, which the other end reads as the stream's reset.
 */
export function socketConn(socket: Duplex, streamID: number, head?: Uint8Array): FleetConn {
  let readEnded = false;
  let writeEnded = false;
  let failure: Error | undefined;
  let resolveClosed!: () => void;
  let rejectClosed!: (error: Error) => void;
  const closed = new Promise<void>((resolve, reject) => {
    resolveClosed = resolve;
    rejectClosed = reject;
  });
  closed.catch(() => {});
  let readController!: ReadableStreamDefaultController<Uint8Array>;
  const settle = () => {
    if (readEnded && writeEnded && !failure) {
      resolveClosed();
      socket.destroy();
    }
  };
  const fail = (error: Error) => {
    if (failure || (readEnded && writeEnded)) return;
    failure = error;
    try {
      readController.error(error);
    } catch {
      // already ended
    }
    rejectClosed(error);
  };
  const reset = () => {
    if (socket.destroyed) return;
    const s = socket as Partial<Socket>;
    if (typeof s.resetAndDestroy === "function") s.resetAndDestroy();
    else socket.destroy();
  };

  const readable = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        readController = controller;
        if (head && head.length > 0) controller.enqueue(head);
        socket.on("data", (chunk: Buffer) => {
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
          if ((controller.desiredSize ?? 0) <= 0) socket.pause();
        });
        socket.on("end", () => {
          if (failure) return;
          readEnded = true;
          controller.close();
          settle();
        });
        socket.on("error", () => fail(new StreamResetError(streamID, true)));
        socket.on("close", () => {
          if (!(readEnded && writeEnded)) fail(new StreamResetError(streamID, true));
        });
      },
      pull() {
        socket.resume();
      },
      cancel() {
        // The reader gave up: nothing more is wanted from the peer.
        reset();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: 256 * 1024 }),
  );

  let writing: Promise<void> = Promise.resolve();
  const end = () =>
    new Promise<void>((resolve) => {
      if (writeEnded || failure) return resolve();
      socket.end(() => {
        writeEnded = true;
        settle();
        resolve();
      });
    });
  const writable = new WritableStream<Uint8Array>(
    {
      write(chunk) {
        if (failure) throw failure;
        writing = new Promise<void>((resolve, reject) => {
          const onClose = () => reject(failure ?? new StreamResetError(streamID, true));
          socket.once("close", onClose);
          const ok = socket.write(chunk, (error) => {
            if (error) reject(failure ?? new StreamResetError(streamID, true));
          });
          const done = () => {
            socket.off("close", onClose);
            resolve();
          };
          if (ok) done();
          else socket.once("drain", done);
        });
        return writing;
      },
      close: end,
      abort() {
        fail(new StreamResetError(streamID, false));
        reset();
      },
    },
    { highWaterMark: 1 },
  );

  return {
    streamID,
    readable,
    writable,
    closed,
    async close() {
      if (writeEnded || failure) return;
      if (!writable.locked) {
        await writable.close().catch(() => {});
        return;
      }
      await writing.catch(() => {});
      await end();
    },
    reset() {
      fail(new StreamResetError(streamID, false));
      reset();
    },
  };
}
