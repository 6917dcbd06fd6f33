/**
 * Node-to-node wire format. A forwarded dial is an HTTP/1.1 upgrade naming the device and its fencing
 * generation; after the 101 the connection carries the stream in frames (tunnel.ts), whose Reset carries
 * an error as JSON (`WireError`). A forwarded fetch is HTTP/1.1 on such streams, exactly as the device
 * gets it from a local fetch: the hop never touches a header of the device's request or response.
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

/** Largest error a node accepts in a Reset, in bytes (JSON). */
export const MAX_ERROR_BYTES = 64 * 1024;

/** The Upgrade token of a forwarded dial. */
export const UPGRADE_TOKEN = "wslis-stream";

export interface WireError {
  code: string;
  message: string;
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
