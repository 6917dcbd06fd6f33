/**
 * Node-to-node wire format. A forwarded fetch is one HTTP/1.1 POST whose body is a head and then the
 * device request's body; its answer is a head and then the device response's body. A head is a 4-byte
 * big-endian length and that many bytes of JSON, so no header of the device's request or response is
 * touched by the hop (hop-by-hop headers, size limits of the node's HTTP server); a device body that fails
 * part way ends the answer with the error in a trailer (`ERROR_TRAILER`). A forwarded dial is an HTTP/1.1
 * upgrade; after the 101 the connection carries the stream in frames (tunnel.ts).
 */

import { hash, timingSafeEqual } from "node:crypto";
import {
  AbusivePeerError,
  ClusterUnavailableError,
  DeviceNotFoundError,
  HttpError,
  ProtocolError,
  RemoteGoAwayError,
  SessionClosedError,
  StreamLimitError,
  StreamResetError,
  TimeoutError,
  WslisError,
  type ErrorCode,
} from "../../src/errors.js";

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
  /** ms of waiting for the next response body bytes; 0: none. Absent: the owning node's default. */
  bodyTimeout?: number;
  /** Whether the device request has a body (it follows the head). */
  body: boolean;
}

export type ResponseHead =
  | { status: number; statusText: string; headers: [string, string][] }
  | { error: WireError };

export interface WireError {
  code: string;
  message: string;
}

export function encodeHead(head: unknown): Buffer {
  // Straight into one buffer (a TextEncoder made per head, its output then copied, cost 4x as much).
  const json = JSON.stringify(head);
  const length = Buffer.byteLength(json);
  const out = Buffer.allocUnsafe(4 + length);
  out.writeUInt32BE(length, 0);
  out.write(json, 4);
  return out;
}

/**
 * Reads a head off a node-to-node message as its chunks arrive (whatever their split): `push` each chunk;
 * it returns the head and the bytes after it once the head is whole, undefined before. Throws HttpError
 * on a malformed or oversized head.
 */
export class HeadReader<T> {
  #buffered: Buffer | undefined;

  push(chunk: Buffer): { head: T; rest: Buffer } | undefined {
    const buffered = this.#buffered ? Buffer.concat([this.#buffered, chunk]) : chunk;
    if (buffered.length < 4) {
      this.#buffered = buffered;
      return undefined;
    }
    const length = buffered.readUInt32BE(0);
    if (length > MAX_HEAD_BYTES) throw new HttpError(`node-to-node head of ${length} bytes exceeds ${MAX_HEAD_BYTES}`);
    if (buffered.length < 4 + length) {
      this.#buffered = buffered;
      return undefined;
    }
    this.#buffered = undefined;
    let head: T;
    try {
      head = JSON.parse(buffered.toString("utf8", 4, 4 + length)) as T;
    } catch (error) {
      throw new HttpError("malformed node-to-node head", { cause: error });
    }
    return { head, rest: buffered.subarray(4 + length) };
  }

  /** Bytes of an unfinished head are held. */
  get pending(): boolean {
    return this.#buffered !== undefined;
  }
}

/**
 * The trailer of a forwarded fetch's answer that carries the error of a device response body that failed
 * part way (a `WireError` as JSON), so the calling node fails the body with the same error a local fetch
 * would give. A body that simply ends has no such trailer; one cut off by the connection was cut by the
 * node or the network.
 */
export const ERROR_TRAILER = "x-wslis-error";

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
    case "ERR_STREAM_RESET":
      return Object.assign(new StreamResetError(0, true), { message });
    case "ERR_STREAMS_EXHAUSTED":
    case "ERR_TOO_MANY_STREAMS":
      return new StreamLimitError(code, message);
    case "ERR_REMOTE_GOAWAY":
      return Object.assign(new RemoteGoAwayError(), { message });
    case "ERR_PROTOCOL":
      return Object.assign(new ProtocolError(""), { message });
    case "ERR_ABUSIVE_PEER":
      return Object.assign(new AbusivePeerError(""), { message });
    case "ABORT":
      return new DOMException(message, "AbortError");
    case "ERR_HTTP":
      return new HttpError(message);
    default:
      return /^ERR_[A-Z_]+$/.test(code) ? new WslisError(code as ErrorCode, message) : new HttpError(message);
  }
}

/** What a node keeps of the cluster secret to check presented ones against. */
export function secretDigest(secret: string): Buffer {
  // One-shot: no Hash object per node-to-node request.
  return hash("sha256", secret, "buffer");
}

/** Compares a presented secret with the expected one (its digest) in constant time. */
export function secretMatches(presented: string | undefined, expected: Buffer): boolean {
  if (presented === undefined) return false;
  return timingSafeEqual(secretDigest(presented), expected);
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
