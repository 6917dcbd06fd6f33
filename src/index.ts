/**
 * wslis device SDK, browser entry: the device dials the server over the native WebSocket and accepts the
 * streams the server opens. Node gets the same API from its own entry, with `ws` as the WebSocket.
 */

import { messageChannelDefer, systemClock } from "./yamux/clock.js";
import { dialAndListen as dial, listen as listenOn, type LockManagerLike, type Listener, type DialOptions, type Platform } from "./client.js";

export const browserPlatform: Platform = {
  WebSocket: globalThis.WebSocket as Platform["WebSocket"],
  canSendHeaders: false,
  open: (WebSocket, url, protocols) => new WebSocket(url, protocols),
  // The outbox flushes in a task of its own: not throttled in hidden tabs, unlike timers.
  clock: { ...systemClock, defer: messageChannelDefer() },
  onOnline(wake) {
    globalThis.addEventListener?.("online", wake);
    return () => globalThis.removeEventListener?.("online", wake);
  },
  baseUrl: () => globalThis.location?.href,
  locks: (globalThis.navigator as { locks?: LockManagerLike } | undefined)?.locks,
};

/**
 * Dials the wslis server at `url` (ws:, wss:, or http(s): mapped to ws(s):) and resolves with a
 * {@link Listener} of the streams it opens. See {@link DialOptions}.
 */
export function dialAndListen(url: string | URL, options: DialOptions = {}): Promise<Listener> {
  return dial(url, options, browserPlatform);
}

/**
 * Returns a {@link Listener} at once and dials in the background (same options as {@link dialAndListen});
 * `listener.ready` resolves when the first connection is up. For pages that show connection state from
 * the first attempt.
 */
export function listen(url: string | URL, options: DialOptions = {}): Listener {
  return listenOn(url, options, browserPlatform);
}

export type { LockManagerLike, ListenerState, Listener, Conn, DialOptions, ReconnectOptions, Provider, ListenerEventMap, Platform } from "./client.js";
export * from "./errors.js";
export { CloseCode } from "./close-codes.js";
export { webSocketTransport } from "./transport.js";
export type { WebSocketLike, WebSocketConstructor, WebSocketTransportOptions } from "./transport.js";
export { Session, SessionState } from "./yamux/session.js";
export type { SessionOptions, SessionInit, Transport, TransportSink, Timers, Logger } from "./yamux/session.js";
export type { Clock } from "./yamux/clock.js";
export type { TypedEventTarget } from "./events.js";
export { StreamState } from "./yamux/stream.js";
export { Flag, FrameType, GoAwayCode, INITIAL_WINDOW } from "./yamux/frame.js";
export { serveHttp } from "./http/server.js";
export type { HttpHandler, HttpConn, HttpConnSource, ServeHttpOptions } from "./http/server.js";
