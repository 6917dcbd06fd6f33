/**
 * Every error wslis throws or rejects with. Each has a stable `code` (documented in the README) and a
 * `name` equal to its class name; test them with `instanceof` or by `code`.
 *
 * Errors are thrown where they are detected (the codec, a stream, the session) and caught once, where the
 * session takes in the bytes its transport delivered (`Session`'s receive loop): there a protocol error
 * becomes a GoAway frame and a closed session.
 */

import { GoAwayCode } from "./yamux/frame.js";

/** Codes of {@link WslisError}. Stable: match on these, not on messages. */
export type ErrorCode =
  | "ERR_PROTOCOL"
  | "ERR_ABUSIVE_PEER"
  | "ERR_STREAM_RESET"
  | "ERR_STREAM_CLOSED"
  | "ERR_SESSION_CLOSED"
  | "ERR_CONNECTION_LOST"
  | "ERR_KEEPALIVE_TIMEOUT"
  | "ERR_REMOTE_GOAWAY"
  | "ERR_REPLACED"
  | "ERR_SERVER_SHUTDOWN"
  | "ERR_STREAMS_EXHAUSTED"
  | "ERR_TOO_MANY_STREAMS"
  | "ERR_TIMEOUT"
  | "ERR_HANDSHAKE"
  | "ERR_UNAUTHORIZED"
  | "ERR_LISTENER_CLOSED"
  | "ERR_HTTP"
  | "ERR_DEVICE_NOT_FOUND"
  | "ERR_CLUSTER_UNAVAILABLE";

/** Base class of every wslis error. */
export class WslisError extends Error {
  // Each class spells its name out: minifiers (ours, and the bundlers of apps that embed the SDK) rename
  // classes, so `new.target.name` would read "l" in a bundle.
  override name = "WslisError";
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * The peer broke the yamux protocol (bad version, unknown frame type, data beyond the window, duplicate
 * SYN, wrong stream-ID parity...). The session answers it with a GoAway carrying {@link goAwayCode}.
 */
export class ProtocolError extends WslisError {
  override name = "ProtocolError";
  readonly goAwayCode: GoAwayCode;
  constructor(
    message: string,
    goAwayCode: GoAwayCode = GoAwayCode.ProtocolError,
    code: "ERR_PROTOCOL" | "ERR_ABUSIVE_PEER" = "ERR_PROTOCOL",
  ) {
    super(code, `yamux protocol error: ${message}`);
    this.goAwayCode = goAwayCode;
  }
}

/**
 * The peer sent more than a well-behaved peer ever does: more frames in one WebSocket message than
 * `maxFramesPerMessage`, or more refused streams than `maxPendingReplies` while not reading our answers.
 * Code `ERR_ABUSIVE_PEER`; the session answers with GoAway(protocol error) and closes (WebSocket 1008).
 */
export class AbusivePeerError extends ProtocolError {
  override name = "AbusivePeerError";
  constructor(message: string) {
    super(message, GoAwayCode.ProtocolError, "ERR_ABUSIVE_PEER");
  }
}

/** The stream was reset (RST), by the peer or locally; both directions are dead. */
export class StreamResetError extends WslisError {
  override name = "StreamResetError";
  /** True when the peer sent the RST, false when this side called `reset()`. */
  readonly remote: boolean;
  constructor(streamID: number, remote: boolean) {
    super("ERR_STREAM_RESET", `stream ${streamID} was reset ${remote ? "by the peer" : "locally"}`);
    this.remote = remote;
  }
}

/** A write was attempted after the local side of the stream was closed (FIN sent). */
export class StreamClosedError extends WslisError {
  override name = "StreamClosedError";
  constructor(streamID: number) {
    super("ERR_STREAM_CLOSED", `stream ${streamID} is closed for writing`);
  }
}

/**
 * The session (the whole WebSocket connection) is gone; every stream and pending operation on it fails
 * with this error. `code` says why:
 * - `ERR_SESSION_CLOSED`: closed on this side (`close()`).
 * - `ERR_CONNECTION_LOST`: the WebSocket closed or failed underneath.
 * - `ERR_KEEPALIVE_TIMEOUT`: the peer stopped answering pings.
 * - `ERR_REPLACED`: a newer connection with the same device id took over (server side).
 * - `ERR_SERVER_SHUTDOWN`: the server is shutting down.
 * - `ERR_PROTOCOL`: see {@link ProtocolError} (the session closes with that error itself).
 */
export class SessionClosedError extends WslisError {
  override name = "SessionClosedError";
  constructor(
    code: "ERR_SESSION_CLOSED" | "ERR_CONNECTION_LOST" | "ERR_KEEPALIVE_TIMEOUT" | "ERR_REPLACED" | "ERR_SERVER_SHUTDOWN",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** The peer sent GoAway: it accepts no new streams on this session. */
export class RemoteGoAwayError extends WslisError {
  override name = "RemoteGoAwayError";
  constructor() {
    super("ERR_REMOTE_GOAWAY", "the peer sent GoAway and accepts no new streams on this session");
  }
}

/** A limit on streams was reached: `ERR_STREAMS_EXHAUSTED` (stream IDs used up) or `ERR_TOO_MANY_STREAMS`. */
export class StreamLimitError extends WslisError {
  override name = "StreamLimitError";
  constructor(code: "ERR_STREAMS_EXHAUSTED" | "ERR_TOO_MANY_STREAMS", message: string) {
    super(code, message);
  }
}

/** An operation took longer than its timeout (ping, handshake, dial, fetch). */
export class TimeoutError extends WslisError {
  override name = "TimeoutError";
  constructor(what: string, ms: number) {
    super("ERR_TIMEOUT", `${what} timed out after ${ms} ms`);
  }
}

/**
 * The WebSocket handshake failed. `status` is the HTTP status of the refusal when the runtime exposes it
 * (Node does; browsers do not). Code `ERR_UNAUTHORIZED` for 401/403: reconnecting will not help.
 */
export class HandshakeError extends WslisError {
  override name = "HandshakeError";
  readonly status: number | undefined;
  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(status === 401 || status === 403 ? "ERR_UNAUTHORIZED" : "ERR_HANDSHAKE", message, options);
    this.status = status;
  }
}

/** `accept()` was called on, or was waiting on, a closed Listener. */
export class ListenerClosedError extends WslisError {
  override name = "ListenerClosedError";
  constructor(options?: { cause?: unknown }) {
    super("ERR_LISTENER_CLOSED", "the listener is closed", options);
  }
}

/** Reverse HTTP failed: the device's answer was not valid HTTP/1.1, or the exchange broke off. */
export class HttpError extends WslisError {
  override name = "HttpError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_HTTP", message, options);
  }
}

/**
 * `server.fetch`/`dial`/`lookup` for a device id that no node of the fleet has (or whose node's lease
 * expired). Raised at once, never after a timeout.
 */
export class DeviceNotFoundError extends WslisError {
  override name = "DeviceNotFoundError";
  /** The device id asked for. */
  readonly deviceId: string;
  constructor(deviceId: string, message = `device ${JSON.stringify(deviceId)} is not connected to any node`) {
    super("ERR_DEVICE_NOT_FOUND", message);
    this.deviceId = deviceId;
  }
}

/**
 * A call that needs the cluster could not be routed: the directory (Redis) is unreachable, or the node
 * holding the device did not answer. Devices connected to the calling node are still served.
 */
export class ClusterUnavailableError extends WslisError {
  override name = "ClusterUnavailableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_CLUSTER_UNAVAILABLE", message, options);
  }
}

/** The reason an aborted signal carries, as an Error (AbortSignal.reason may be anything). */
export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new DOMException(reason === undefined ? "This operation was aborted" : String(reason), "AbortError");
}
