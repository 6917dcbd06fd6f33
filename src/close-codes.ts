/**
 * WebSocket close codes: what a session's end means on the wire, and back. The client and the server
 * layers hand these to the transport; the transport itself only closes with the code it is given.
 */

import { AbusivePeerError, SessionClosedError, WslisError } from "./errors.js";

/**
 * WebSocket close codes wslis sends, beyond the standard 1000 (normal) and 1001 (going away: server
 * shutdown). The 44xx codes mean "do not reconnect".
 */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  /** The peer broke yamux. */
  ProtocolError: 1002,
  /** A text message: yamux travels in binary messages only. */
  UnsupportedData: 1003,
  /** The peer flooded the session (`ERR_ABUSIVE_PEER`). */
  PolicyViolation: 1008,
  /** A message larger than the receiver's limit (sent by `ws`). */
  MessageTooBig: 1009,
  /** The server failed setting the connection up. */
  InternalError: 1011,
  /** A newer connection with the same device id replaced this one. */
  Replaced: 4000,
  /** The server refused the device's credentials. */
  Unauthorized: 4401,
  /** The server refused this device. */
  Forbidden: 4403,
} as const;

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
      return [CloseCode.ProtocolError, "yamux protocol error"];
    case "ERR_ABUSIVE_PEER":
      return [CloseCode.PolicyViolation, "too many frames"];
    default:
      return [CloseCode.Normal, ""];
  }
}

/**
 * The error a session ends with when its WebSocket closed with `code`. The wslis close codes mean
 * something only when the server sent them (`peer` "server", on devices); from a device, 1001 is just a
 * page closed or navigated away.
 */
export function closeError(code: number, reason: string, peer: "server" | "device" = "server", error?: unknown): WslisError {
  const detail = `the WebSocket closed (code ${code}${reason ? `: ${reason}` : ""})`;
  // `ws` refused a message over maxPayload (from its header, before buffering it; it closes with 1009):
  // no wslis or Go peer sends one (see HELLO_PING), so the peer is abusive.
  if ((error as { code?: unknown } | undefined)?.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH") {
    return new AbusivePeerError("the peer sent a WebSocket message larger than this side accepts (maxPayload); closing with 1009");
  }
  if (error instanceof Error) return new SessionClosedError("ERR_CONNECTION_LOST", `the WebSocket failed: ${error.message}`, { cause: error });
  if (code === CloseCode.MessageTooBig) {
    return new SessionClosedError("ERR_CONNECTION_LOST", `the peer refused a message of ours as too big; ${detail}`);
  }
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
