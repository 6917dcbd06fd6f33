/**
 * The device side: dial the server's WebSocket, become the yamux server (even stream IDs), and accept
 * the streams the wslis server opens. The {@link Listener} outlives connections: when the link drops it
 * redials with full-jitter exponential backoff and goes on yielding streams of the new session.
 */

import {
  HandshakeError,
  ListenerClosedError,
  RemoteGoAwayError,
  SessionClosedError,
  WslisError,
  abortReason,
} from "./errors.js";
import { CloseCode, closeCodeFor, closeError } from "./close-codes.js";
import { deadline } from "./deadline.js";
import { msOption, numberOption } from "./options.js";
import {
  webSocketTransport,
  type WebSocketConstructor,
  type WebSocketLike,
  type WebSocketTransportOptions,
} from "./transport.js";
import { systemClock, type Clock } from "./yamux/clock.js";
import { maxIncomingMessageBytes } from "./yamux/outbox.js";
import type { TypedEventTarget } from "./events.js";
import { Session, interruptAccepts, sessionSettings, type SessionOptions, type Transport } from "./yamux/session.js";
import type { Conn } from "./yamux/stream.js";
import { enqueue, rejectAll, type Waiter } from "./waiters.js";

export type { Conn };

/** A value, or a function giving it (sync or async), evaluated on every (re)connect so tokens refresh. */
export type Provider<T> = T | (() => T | Promise<T>);

export interface ReconnectOptions {
  /** First delay before redialing, in ms. Default 500. */
  initialDelay?: number;
  /** Largest delay, in ms. Default 30 000. */
  maxDelay?: number;
  /** Growth of the delay ceiling per failed attempt. Default 2. */
  multiplier?: number;
  /** Attempts after which the listener gives up and closes; default Infinity (never). */
  maxRetries?: number;
  /** How long a link must stay up, in ms, before the backoff starts again from `initialDelay`. Default 10 000. */
  stableAfter?: number;
}

export interface DialOptions {
  /** Query parameters added to the URL on every (re)connect. Works in every runtime: use it for device ids and tokens. */
  params?: Provider<Record<string, string> | URLSearchParams>;
  /**
   * HTTP headers of the upgrade request. Node only: browsers cannot set WebSocket headers, and the browser
   * build throws a TypeError that points to `params` and `protocols`. Anything `new Headers()` takes
   * (spelled this way rather than `HeadersInit`, which Node's types do not declare globally).
   */
  headers?: Provider<ConstructorParameters<typeof Headers>[0]>;
  /** WebSocket subprotocols; the server must echo one. A place for a token in browsers. */
  protocols?: Provider<string | string[]>;
  /** How long the WebSocket handshake may take, in ms. Default 10 000. */
  handshakeTimeout?: number;
  /** Redial when the link drops. Default on (see {@link ReconnectOptions}); `false` turns it off. */
  reconnect?: boolean | ReconnectOptions;
  /** Aborting it stops dialing and closes the listener. */
  signal?: AbortSignal;
  /** The WebSocket constructor. Default: `globalThis.WebSocket` in browsers, `ws` in Node. */
  WebSocket?: WebSocketConstructor;
  /** yamux settings (keepalive, windows, limits); the role is always "server". */
  session?: SessionOptions;
  /** Random numbers in [0, 1) for backoff jitter. Default Math.random. */
  random?: () => number;
  /**
   * One connection per kiosk across tabs (browsers with `navigator.locks`): before its first dial the
   * listener takes a Web Lock named after the URL (without its query) and the `deviceId` parameter, and
   * holds it until it closes. A second tab of the same kiosk waits (its `ready` pending, no events) and
   * takes over when the first closes, instead of replacing it. A string is the lock's name (use it when
   * the device id travels elsewhere, e.g. in a token). `false` turns it off. Default: on where the
   * runtime has Web Locks (browsers), off elsewhere (Node).
   */
  lock?: boolean | string;
}

/** How a runtime opens a WebSocket; the entry point (browser or Node) provides it. */
export interface Platform {
  WebSocket: WebSocketConstructor | undefined;
  /**
   * Opens a WebSocket. `headers` is only given on platforms that can send them. `refused` is called
   * with the HTTP status when the server answered the upgrade with a non-101 status and the runtime
   * tells it; the caller then closes the socket.
   */
  open(
    WebSocket: WebSocketConstructor,
    url: string,
    protocols: string[],
    headers: Headers | undefined,
    refused: (status: number) => void,
    /** `maxPayload`: the largest message the session accepts, in bytes, for runtimes that can enforce it. */
    limits: { maxPayload: number },
  ): WebSocketLike;
  /** False in browsers: they cannot send WebSocket headers. */
  canSendHeaders: boolean;
  /** How this runtime's sockets are best wrapped (binary type, allocation, backpressure). */
  transportOptions?: WebSocketTransportOptions;
  /** This runtime's timers and end-of-turn flush, for sessions and transports (`session.timers` wins). */
  clock?: Clock;
  /**
   * Calls `wake` when the network comes back (browsers: the `online` event), so a listener backing off
   * retries at once; returns a function that stops calling it. Absent where the runtime has no such event.
   */
  onOnline?(wake: () => void): () => void;
  /** The base against which a relative URL is resolved (browsers: the page's `location.href`). */
  baseUrl?(): string | undefined;
  /** The Web Locks API (`navigator.locks`) where the runtime has one: one connection per kiosk across tabs. */
  locks?: LockManagerLike;
}

/** What wslis uses of the Web Locks API's `LockManager`. */
export interface LockManagerLike {
  request(name: string, options: { signal?: AbortSignal }, callback: (lock: unknown) => Promise<void>): Promise<unknown>;
}

/**
 * What a {@link Listener} is doing. Every transition happens in one place (`#enter`):
 *
 * ```
 *                 dial ok                 GoAway, reconnect off
 *   connecting ───────────▶ connected ─────────────────────────▶ draining
 *     ▲     │ dial failed      │ lost, or GoAway                    │ session ended
 *     │     ▼                  ▼ (reconnect on)                     ▼
 *     └─── backing-off ◀───────┘                                  closed
 *   timer or `online`     │ final error, retries used up
 *                         ▼
 *                       closed ◀── close(), signal (from any state)
 * ```
 * A GoAway'd session goes on draining its streams while the next one is dialed.
 */
export type ListenerState = "connecting" | "connected" | "draining" | "backing-off" | "closed";

const transitions: Record<ListenerState, readonly ListenerState[]> = {
  connecting: ["connected", "backing-off", "closed"],
  connected: ["backing-off", "draining", "closed"],
  draining: ["closed"],
  "backing-off": ["connecting", "closed"],
  closed: [],
};

/** Events of a {@link Listener}. */
export interface ListenerEventMap {
  /** A session is up. `detail.attempt` is 0 for the first connection. */
  connect: CustomEvent<{ attempt: number }>;
  /** A session ended or a dial failed; `detail.retryIn` is the delay before the next attempt in ms (undefined: no retry). */
  disconnect: CustomEvent<{ error: Error; retryIn: number | undefined }>;
}

const browserPlatformHint =
  "browsers cannot send WebSocket headers; pass credentials in `params` (URL query) or `protocols` instead";

/**
 * Accepts the streams the server opens, across reconnects: `accept()` or `for await`. Made by
 * `dialAndListen` or `listen`. Events: `connect`, `disconnect` (typed, see {@link ListenerEventMap}).
 */
export interface Listener extends TypedEventTarget<ListenerEventMap>, AsyncIterable<Conn> {
  /** Waits for the next stream the server opens. Rejects with `ERR_LISTENER_CLOSED` once closed. */
  accept(options?: { signal?: AbortSignal }): Promise<Conn>;
  /** Stops accepting and closes the current session (GoAway, then the WebSocket). Idempotent. */
  close(): Promise<void>;
  /** Resolves when the listener is closed for good (by `close()`, the signal, or giving up), with why. */
  readonly closed: Promise<Error>;
  /**
   * Resolves once the first connection is up; rejects (and the listener is closed) when the server
   * refuses the device, retries run out, or the signal aborts.
   */
  readonly ready: Promise<void>;
  /** The current session, while connected. */
  readonly session: Session | undefined;
  /** Pings the server over the current session; resolves with the round-trip time in ms. */
  ping(options?: { signal?: AbortSignal; timeout?: number }): Promise<number>;
  /** What the listener is doing now (see {@link ListenerState}). */
  readonly state: ListenerState;
}

/** The {@link Listener}: one per `dialAndListen`/`listen`; not exported from the package. */
class DeviceListener extends EventTarget implements Listener {
  /** Resolves when the listener is closed for good (by `close()`, the signal, or giving up), with why. */
  readonly closed: Promise<Error>;

  readonly #url: URL;
  readonly #options: DialOptions;
  readonly #platform: Platform;
  readonly #reconnect: Required<ReconnectOptions> | undefined;
  #session: Session | undefined;
  readonly #sessionWaiters: Waiter<Session>[] = [];
  #closeReason: Error | undefined;
  #resolveClosed!: (reason: Error) => void;
  #attempt = 0;
  #retryTimer: unknown;
  readonly #clock: Clock;
  #state: ListenerState = "connecting";
  #dialing: AbortController | undefined;

  constructor(url: string | URL, options: DialOptions, platform: Platform) {
    super();
    this.#url = parseUrl(url, platform.baseUrl?.());
    this.#clock = options.session?.timers ?? platform.clock ?? systemClock;
    this.#options = options;
    this.#platform = platform;
    this.#reconnect = reconnectOptions(options.reconnect);
    if (options.handshakeTimeout !== undefined) msOption("handshakeTimeout", options.handshakeTimeout);
    sessionSettings({ ...options.session, role: "server" });
    if (options.headers !== undefined && !platform.canSendHeaders) {
      throw new TypeError(`wslis: the headers option is not supported here: ${browserPlatformHint}`);
    }
    if (!(options.WebSocket ?? platform.WebSocket)) {
      throw new TypeError("wslis: no WebSocket constructor in this runtime; pass one as the WebSocket option");
    }
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    const signal = options.signal;
    signal?.addEventListener("abort", () => this.#shutdown(abortReason(signal)), { once: true });
    // An already-aborted signal never fires "abort": refuse before any byte reaches the server.
    if (signal?.aborted) this.#shutdown(abortReason(signal));
    this.ready = this.#dial();
    this.ready.catch(() => {}); // also reported through `closed` and the `disconnect` events
  }

  /** The current session, while connected. */
  get session(): Session | undefined {
    return this.#session;
  }

  /** Pings the server over the current session; resolves with the round-trip time in ms. */
  async ping(options: { signal?: AbortSignal; timeout?: number } = {}): Promise<number> {
    if (this.#closeReason) throw new ListenerClosedError({ cause: this.#closeReason });
    const session = this.#session;
    if (!session) throw new SessionClosedError("ERR_CONNECTION_LOST", "not connected (reconnecting)");
    return session.ping(options);
  }

  /** Waits for the next stream the server opens. Rejects with `ERR_LISTENER_CLOSED` once closed. */
  async accept(options: { signal?: AbortSignal } = {}): Promise<Conn> {
    const { signal } = options;
    for (;;) {
      signal?.throwIfAborted();
      if (this.#closeReason) throw new ListenerClosedError({ cause: this.#closeReason });
      const session = this.#session ?? (await enqueue(this.#sessionWaiters, signal));
      // Lost while this call waited for it: the next one.
      if (session !== this.#session) continue;
      try {
        // When the session is lost (GoAway), #lost fails the accepts waiting on it (interruptAccepts).
        return await session.accept(signal ? { signal } : {});
      } catch (error) {
        if (signal?.aborted) throw error;
        if (this.#closeReason) throw new ListenerClosedError({ cause: this.#closeReason });
        // The session died or is draining: wait for the next one.
        if (this.#session === session && session.closeReason === undefined) throw error;
      }
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Conn> {
    for (;;) {
      try {
        yield await this.accept();
      } catch (error) {
        if (error instanceof ListenerClosedError) return;
        throw error;
      }
    }
  }

  /** Stops accepting and closes the current session (GoAway, then the WebSocket). Idempotent. */
  async close(): Promise<void> {
    this.#shutdown(new ListenerClosedError());
    await this.closed;
  }

  readonly ready: Promise<void>;

  get state(): ListenerState {
    return this.#state;
  }

  /** The one place the state changes; a transition the diagram does not allow is a bug here. */
  #enter(next: ListenerState): void {
    if (next === this.#state) return;
    if (!transitions[this.#state].includes(next)) {
      throw new Error(`wslis: internal error: listener state ${this.#state} -> ${next}`);
    }
    this.#state = next;
  }

  async #dial(): Promise<void> {
    for (;;) {
      if (this.#closeReason) throw this.#closeReason;
      this.#enter("connecting");
      try {
        const session = await this.#connect();
        this.#adopt(session);
        return;
      } catch (error) {
        const reason = error instanceof Error ? error : new Error(String(error));
        if (this.#closeReason) throw this.#closeReason;
        const retryIn = this.#retryDelay(reason);
        if (retryIn !== undefined) this.#enter("backing-off");
        this.#emit("disconnect", { error: reason, retryIn });
        if (retryIn === undefined) {
          this.#shutdown(reason);
          throw reason;
        }
        await this.#sleep(retryIn);
      }
    }
  }

  /** Set once this listener holds its Web Lock (or needs none); released when the listener closes. */
  #locked = false;
  #lockRequest: AbortController | undefined;

  /**
   * Waits for this kiosk's Web Lock, the first time only; held until `closed` resolves (the browser
   * also releases it when the page goes away, which is how a waiting tab takes over).
   */
  async #lock(url: URL): Promise<void> {
    if (this.#locked) return;
    const locks = this.#platform.locks;
    const option = this.#options.lock ?? true;
    if (!locks || option === false) {
      this.#locked = true;
      return;
    }
    const name =
      typeof option === "string"
        ? option
        : `wslis ${url.protocol}//${url.host}${url.pathname} deviceId=${url.searchParams.get("deviceId") ?? ""}`;
    const request = new AbortController();
    this.#lockRequest = request;
    await new Promise<void>((acquired, failed) => {
      locks
        .request(name, { signal: request.signal }, async () => {
          acquired();
          await this.closed;
        })
        .catch(failed);
    });
    this.#lockRequest = undefined;
    this.#locked = true;
    if (this.#closeReason) throw this.#closeReason;
  }

  async #connect(): Promise<Session> {
    const url = new URL(this.#url);
    const params = await resolve(this.#options.params);
    if (params) for (const [key, value] of new URLSearchParams(params)) url.searchParams.set(key, value);
    const protocolValue = await resolve(this.#options.protocols);
    const protocols = protocolValue === undefined ? [] : typeof protocolValue === "string" ? [protocolValue] : protocolValue;
    const headerValue = await resolve(this.#options.headers);
    const headers = headerValue === undefined ? undefined : new Headers(headerValue);
    if (this.#closeReason) throw this.#closeReason;
    await this.#lock(url);

    const dialing = new AbortController();
    this.#dialing = dialing;
    try {
      const transport = await openWebSocket(this.#platform, this.#clock, this.#options, url.href, protocols, headers, dialing.signal);
      return new Session(transport, { timers: this.#platform.clock, ...this.#options.session, role: "server" });
    } finally {
      this.#dialing = undefined;
    }
  }

  #adopt(session: Session): void {
    if (this.#closeReason) {
      session.close();
      return;
    }
    const connectedAt = this.#clock.now();
    this.#enter("connected");
    this.#session = session;
    for (const waiter of this.#sessionWaiters.splice(0)) waiter.resolve(session);
    this.#emit("connect", { attempt: this.#attempt });
    // A server that drains sends GoAway: dial a new session now, let this one finish its streams.
    session.addEventListener("goaway", () => this.#lost(session, connectedAt, "goaway"), { once: true });
    void session.closed.then(() => this.#lost(session, connectedAt, "closed"));
  }

  /**
   * The session ended, or announced it will (GoAway). With reconnection on, a new session is dialed at
   * once while a GoAway'd one finishes its streams; without it, a GoAway'd session is left to drain.
   */
  #lost(session: Session, connectedAt: number, how: "goaway" | "closed"): void {
    if (this.#session !== session) return;
    if (how === "goaway" && !this.#reconnect) {
      if (!this.#closeReason) this.#enter("draining");
      return;
    }
    this.#session = undefined;
    // A GoAway comes before the close: the server is draining this session (shutdown, or closing us).
    const reason = session.closeReason ?? new RemoteGoAwayError();
    interruptAccepts(session, reason);
    if (this.#closeReason) return;
    if (this.#reconnect && this.#clock.now() - connectedAt >= this.#reconnect.stableAfter) this.#attempt = 0;
    const retryIn = this.#retryDelay(reason);
    if (retryIn !== undefined) this.#enter("backing-off");
    this.#emit("disconnect", { error: reason, retryIn });
    if (retryIn === undefined) {
      this.#shutdown(reason);
      return;
    }
    // On failure #dial has shut the listener down with the reason; accept() callers see it.
    this.#sleep(retryIn)
      .then(() => this.#dial())
      .catch(() => {});
  }

  /** Delay before the next attempt (full jitter), or undefined to give up. */
  #retryDelay(reason: Error): number | undefined {
    const policy = this.#reconnect;
    if (!policy || isFinal(reason) || this.#attempt >= policy.maxRetries) return undefined;
    const ceiling = Math.min(policy.maxDelay, policy.initialDelay * policy.multiplier ** this.#attempt);
    this.#attempt++;
    return Math.round((this.#options.random ?? Math.random)() * ceiling);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#closeReason) return reject(this.#closeReason);
      const wake = () => {
        stopWatchingOnline?.();
        this.#clock.clearTimeout(this.#retryTimer);
        this.#retryTimer = undefined;
        this.#wakeRetry = undefined;
        if (this.#closeReason) reject(this.#closeReason);
        else resolve();
      };
      this.#wakeRetry = wake;
      this.#retryTimer = this.#clock.setTimeout(wake, ms);
      // Browsers: a network that comes back is worth trying at once.
      const stopWatchingOnline = this.#platform.onOnline?.(wake);
    });
  }

  #wakeRetry: (() => void) | undefined;

  #shutdown(reason: Error): void {
    if (this.#closeReason) return;
    this.#closeReason = reason;
    this.#state = "closed"; // from any state (see the diagram)
    this.#clock.clearTimeout(this.#retryTimer);
    this.#wakeRetry?.();
    this.#dialing?.abort(reason);
    this.#lockRequest?.abort(reason);
    rejectAll(this.#sessionWaiters, new ListenerClosedError({ cause: reason }));
    const session = this.#session;
    this.#session = undefined;
    session?.close(reason instanceof SessionClosedError ? reason : undefined);
    this.#resolveClosed(reason);
  }

  #emit<K extends keyof ListenerEventMap>(type: K, detail: ListenerEventMap[K]["detail"]): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Dials `url` and listens for the streams the server opens. Resolves once the first connection is up
 * (retrying failures per the reconnect policy); rejects when the server refuses the device (401/403),
 * retries run out, or `signal` aborts.
 */
export async function dialAndListen(url: string | URL, options: DialOptions, platform: Platform): Promise<Listener> {
  const listener = listen(url, options, platform);
  await listener.ready;
  return listener;
}

/**
 * Like {@link dialAndListen}, but returns the Listener at once, before the first connection, so a page
 * can show `connect`/`disconnect` events (and the count-down to the next attempt) from the start.
 * `listener.ready` says when the first connection is up.
 */
export function listen(url: string | URL, options: DialOptions, platform: Platform): Listener {
  return new DeviceListener(url, options, platform);
}

/**
 * Opens a WebSocket and waits for its handshake, bounded by the timeout and the signal. Resolves with
 * the transport, made in the `open` event itself so no early message is missed.
 */
function openWebSocket(
  platform: Platform,
  clock: Clock,
  options: DialOptions,
  url: string,
  protocols: string[],
  headers: Headers | undefined,
  signal: AbortSignal,
): Promise<Transport> {
  const timeout = options.handshakeTimeout ?? 10_000;
  const Ctor = (options.WebSocket ?? platform.WebSocket)!;
  return new Promise<Transport>((resolve, reject) => {
    const maxPayload = maxIncomingMessageBytes(sessionSettings({ ...options.session, role: "server" }).streamWindow);
    const ws = platform.open(Ctor, url, protocols, headers, (status) => fail(refusal(url, status)), { maxPayload });
    let tick: unknown;
    const cancel = deadline(`WebSocket handshake with ${redact(url)}`, timeout, signal, fail, clock);
    const onOpen = () => {
      cleanup();
      resolve(
        webSocketTransport(ws, {
          clock: options.session?.timers ?? platform.clock,
          ...platform.transportOptions,
          closeCode: closeCodeFor,
          closeError: (code, reason, error) => closeError(code, reason, "server", error),
        }),
      );
    };
    const onError = () => {
      // The close event that follows may say more; wait a tick for it.
      tick ??= clock.setTimeout(() => fail(refusal(url, undefined)), 0);
    };
    const onClose = (event: { code: number; reason: string }) => {
      if (event.code === CloseCode.Unauthorized || event.code === CloseCode.Forbidden) {
        const status = event.code === CloseCode.Unauthorized ? 401 : 403;
        fail(new HandshakeError(`the server refused this device: ${event.reason || event.code}`, status));
      } else fail(refusal(url, undefined, event.code));
    };
    function cleanup() {
      cancel();
      clock.clearTimeout(tick);
      ws.removeEventListener("open", onOpen);
      ws.removeEventListener("error", onError);
      ws.removeEventListener("close", onClose);
    }
    let failed = false;
    function fail(error: Error) {
      if (failed) return;
      failed = true;
      cleanup();
      // Closing a connecting socket makes `ws` (Node) emit one more error; with no listener it would throw.
      ws.addEventListener("error", () => {});
      try {
        ws.close();
      } catch {
        // Closing a socket that never opened may throw in some runtimes; it is gone either way.
      }
      reject(error);
    }
    ws.addEventListener("open", onOpen);
    ws.addEventListener("error", onError);
    ws.addEventListener("close", onClose);
  });
}

function refusal(url: string, status: number | undefined, code?: number): HandshakeError {
  const why = status !== undefined ? `HTTP ${status}` : code !== undefined ? `close code ${code}` : "connection failed";
  return new HandshakeError(`WebSocket handshake with ${redact(url)} failed (${why})`, status);
}

/** The URL without its query, which may hold tokens. */
function redact(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}

/**
 * Errors after which redialing cannot help: the server refused this device, or a newer connection with
 * the same device id replaced it (redialing would replace that one in turn, forever).
 */
function isFinal(error: Error): boolean {
  return error instanceof WslisError && (error.code === "ERR_UNAUTHORIZED" || error.code === "ERR_REPLACED");
}

async function resolve<T>(provider: Provider<T> | undefined): Promise<T | undefined> {
  return typeof provider === "function" ? await (provider as () => T | Promise<T>)() : provider;
}

function parseUrl(url: string | URL, base: string | undefined): URL {
  let parsed: URL;
  try {
    parsed = new URL(url, base);
  } catch {
    throw new TypeError(`wslis: invalid URL ${String(url)}`);
  }
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(`wslis: the URL must be ws:, wss:, http: or https:, not ${parsed.protocol}`);
  }
  return parsed;
}

function reconnectOptions(option: boolean | ReconnectOptions | undefined): Required<ReconnectOptions> | undefined {
  if (option === false) return undefined;
  const o = option === true || option === undefined ? {} : option;
  const policy = {
    initialDelay: o.initialDelay ?? 500,
    maxDelay: o.maxDelay ?? 30_000,
    multiplier: o.multiplier ?? 2,
    maxRetries: o.maxRetries ?? Infinity,
    stableAfter: o.stableAfter ?? 10_000,
  };
  for (const [key, value] of Object.entries(policy)) numberOption(`reconnect.${key}`, value, key === "multiplier" ? 1 : 0);
  return policy;
}
