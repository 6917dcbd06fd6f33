/**
 * One connected device, as the server sees it: open streams to it (`dial`), ping it, close it.
 */

import type { Agent as HttpAgent, IncomingMessage } from "node:http";
import { SessionClosedError, abortReason } from "../src/errors.js";
import type { Session } from "../src/yamux/session.js";
import type { Conn } from "../src/yamux/stream.js";
import { DeviceHttp, type DeviceHttpOptions, type FetchInit } from "./http.js";

export type { Conn };

export interface DialOptions {
  signal?: AbortSignal;
  /** How long to wait for a free slot among unacknowledged opens, in ms. Default: the server's `dialTimeout`. */
  timeout?: number;
}

/** A connected device. The handler of `listenAndServe` gets one per connection; the server makes them. */
export interface Dialer {
  /** The device id: from `authorize`'s `{ id }` answer, else from `identify` (see `ServerOptions`). */
  readonly id: string;
  /** Headers of the upgrade request. */
  readonly header: Headers;
  /** URL of the upgrade request, with its query. */
  readonly url: URL;
  /** The device's address as the server sees it (behind a proxy: the proxy's). */
  readonly remoteAddress: string | undefined;
  /** The subprotocol the server chose, or "". */
  readonly protocol: string;
  /** When the connection was established (ms since the epoch). */
  readonly connectedAt: number;
  /** What `authorize` said about the credential (`data` of its `{ id, data }` answer); else undefined. */
  readonly auth: unknown;
  /** The yamux session under this device. */
  readonly session: Session;
  /** Resolves with the reason once the device is gone (closed, lost, replaced, shut down). Never rejects. */
  readonly closed: Promise<Error>;
  /** Why the device is gone, or undefined while it is connected. */
  readonly closeReason: Error | undefined;
  /** Opens a stream to the device. Rejects at once if the device is gone or draining. */
  dial(options?: DialOptions): Promise<Conn>;
  /**
   * Reverse HTTP: the standard fetch, answered by the device (`serveHttp`, or Go's `http.Serve`). Any
   * host name; connections are streams, reused.
   */
  fetch(input: string | URL | Request, init?: FetchInit): Promise<Response>;
  /** An `http.Agent` whose connections are streams to the device, for `node:http` requests. */
  readonly agent: HttpAgent;
  /** Pings the device; resolves with the round-trip time in ms. */
  ping(options?: { signal?: AbortSignal; timeout?: number }): Promise<number>;
  /** Disconnects the device (GoAway, then the WebSocket closes). Pending operations fail with `reason`. */
  close(reason?: Error): void;
}

/** The {@link Dialer} the server makes per connection; not exported from the package. */
export class DeviceDialer implements Dialer {
  /** The device id, from the server's `identify` option (default: `deviceId` query param, else `DeviceId` header). */
  readonly id: string;
  /** Headers of the upgrade request. */
  readonly header: Headers;
  /** URL of the upgrade request, with its query. */
  readonly url: URL;
  /** The device's address as the server sees it (behind a proxy: the proxy's). */
  readonly remoteAddress: string | undefined;
  /** The subprotocol the server chose, or "". */
  readonly protocol: string;
  /** When the connection was established (ms since the epoch). */
  readonly connectedAt = Date.now();
  /** What `authorize` said about the credential (`data` of its `{ id, data }` answer); else undefined. */
  readonly auth: unknown;
  /** The yamux session under this device. */
  readonly session: Session;
  /** Resolves with the reason once the device is gone (closed, lost, replaced, shut down). Never rejects. */
  readonly closed: Promise<Error>;
  readonly #dialTimeout: number;
  readonly #httpOptions: DeviceHttpOptions;

  constructor(
    session: Session,
    request: IncomingMessage,
    id: string,
    protocol: string,
    options: { dialTimeout: number; http?: DeviceHttpOptions; auth?: unknown },
  ) {
    this.session = session;
    this.auth = options.auth;
    this.id = id;
    this.protocol = protocol;
    this.#dialTimeout = options.dialTimeout;
    this.#httpOptions = options.http ?? {};
    this.header = new Headers();
    for (const [name, value] of Object.entries(request.headers)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) this.header.append(name, v);
    }
    this.url = new URL(request.url ?? "/", `http://${request.headers.host ?? "localhost"}`);
    this.remoteAddress = request.socket.remoteAddress;
    this.closed = session.closed;
  }

  /** Why the device is gone, or undefined while it is connected. */
  get closeReason(): Error | undefined {
    return this.session.closeReason;
  }

  /** Opens a stream to the device. Rejects at once if the device is gone or draining. */
  async dial(options: DialOptions = {}): Promise<Conn> {
    if (options.signal?.aborted) throw abortReason(options.signal);
    // The timeout bounds only a wait for a free slot (maxUnackedOpens): most dials open at once.
    return this.session.open({ signal: options.signal, timeout: options.timeout ?? this.#dialTimeout });
  }

  #http: DeviceHttp | undefined;

  /**
   * Reverse HTTP: the standard fetch, answered by the device (`serveHttp`, or Go's `http.Serve`). Any
   * host name; connections are streams, reused. See {@link DeviceHttp.fetch} for timeouts and errors.
   */
  fetch(input: string | URL | Request, init?: FetchInit): Promise<Response> {
    return this.#httpClient().fetch(input, init);
  }

  /** An `http.Agent` whose connections are streams to the device, for `node:http` requests. */
  get agent(): HttpAgent {
    return this.#httpClient().agent;
  }

  /** Made on first use; it closes itself when the session does. */
  #httpClient(): DeviceHttp {
    return (this.#http ??= new DeviceHttp(this, this.#httpOptions));
  }

  /**
   * The server is shutting down: GoAway (the device opens nothing new), and the reverse-HTTP connections
   * kept idle for reuse are closed, so the session is idle once the calls in flight are done; new ones
   * are refused with `reason`. Not part of {@link Dialer}: the server calls it.
   */
  drain(reason: Error): void {
    this.session.goAway();
    void this.#http?.close(reason);
  }

  /** Pings the device; resolves with the round-trip time in ms. */
  ping(options: { signal?: AbortSignal; timeout?: number } = {}): Promise<number> {
    return this.session.ping(options);
  }

  /** Disconnects the device (GoAway, then the WebSocket closes). Pending operations fail with `reason`. */
  close(reason: Error = new SessionClosedError("ERR_SESSION_CLOSED", "the server closed this device's session")): void {
    this.session.close(reason);
  }
}
