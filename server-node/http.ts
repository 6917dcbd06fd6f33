/**
 * Reverse HTTP, server side: HTTP/1.1 requests to a device, each connection a yamux stream dialed to it
 * (the device answers with `serveHttp`, or Go's `http.Serve(listener)`). Like Go wslis's `rhttp`, where
 * the transport's DialContext opens a stream.
 *
 * `fetch` is Node's fetch with an undici `Agent` whose `connect` dials a stream instead of a TCP socket,
 * so framing, keep-alive and pooling are undici's, and what comes back is the global `Response`. `agent`
 * gives the same to `node:http` users. Both stop at once when the device goes: every request in flight
 * fails with the session's close reason (`ERR_CONNECTION_LOST`, `ERR_REPLACED`...).
 */

import { Agent as HttpAgent, type AgentOptions as HttpAgentOptions } from "node:http";
import { setMaxListeners } from "node:events";
import { Duplex } from "node:stream";
import { Agent } from "undici";
import { HttpError, TimeoutError, WslisError } from "../src/errors.js";
import type { Session } from "../src/yamux/session.js";
import type { Stream } from "../src/yamux/stream.js";

/** `fetch` options: the standard ones plus a timeout. */
export interface FetchInit extends RequestInit {
  /**
   * How long to wait for the response headers, in ms; past it the fetch rejects with a `TimeoutError`
   * (`ERR_TIMEOUT`) and the stream is reset. The body is not bounded by it. 0 disables it. Default: the
   * client's `timeout` (30 000).
   */
  timeout?: number;
  /**
   * Longest wait for the next piece of the response body while it is being read, in ms; past it the body
   * fails with a `TimeoutError` (`ERR_TIMEOUT`) and the stream is reset. Time the caller spends not
   * reading does not count. 0 disables it. Default: the client's `bodyTimeout` (30 000).
   */
  bodyTimeout?: number;
}

export interface DeviceHttpOptions {
  /** Default of {@link FetchInit.timeout}, in ms: time until the response headers. 0 disables it. Default 30 000. */
  timeout?: number;
  /** Default of {@link FetchInit.bodyTimeout}, in ms: longest wait for the next body bytes. 0 disables it. Default 30 000. */
  bodyTimeout?: number;
  /** How long an idle connection (stream) is kept for reuse, in ms. Default 10 000. */
  keepAliveTimeout?: number;
  /** Most connections (streams) at once per origin; further requests queue. Default: no limit. */
  connections?: number;
}

/** What the client needs of a device: its session (to see it go) and a way to open streams. */
export interface StreamDialer {
  readonly session: Session;
  dial(options?: { signal?: AbortSignal }): Promise<Stream>;
}

/**
 * HTTP to one device. `dialer.fetch` and `dialer.agent` use one made with the defaults; make your own for
 * other defaults: `new DeviceHttp(dialer, { timeout: 5000 }).fetch(url)`.
 */
export class DeviceHttp {
  readonly #dialer: StreamDialer;
  readonly #timeout: number;
  readonly #bodyTimeout: number;
  readonly #dispatcher: Agent;
  /** Aborts with the session's close reason when the device goes: fails every fetch in flight at once. */
  readonly #gone = new AbortController();
  #agent: HttpAgent | undefined;

  constructor(dialer: StreamDialer, options: DeviceHttpOptions = {}) {
    this.#dialer = dialer;
    // Every dial and fetch in flight listens on it: as many listeners as concurrent requests, none leaked.
    setMaxListeners(0, this.#gone.signal);
    this.#timeout = nonNegative("timeout", options.timeout ?? 30_000);
    this.#bodyTimeout = nonNegative("bodyTimeout", options.bodyTimeout ?? 30_000);
    const keepAliveTimeout = nonNegative("keepAliveTimeout", options.keepAliveTimeout ?? 10_000);
    if (options.connections !== undefined && !(Number.isInteger(options.connections) && options.connections > 0)) {
      throw new RangeError("wslis: connections must be a positive integer");
    }
    this.#dispatcher = new Agent({
      keepAliveTimeout,
      keepAliveMaxTimeout: Math.max(keepAliveTimeout, 1),
      connections: options.connections ?? null,
      // Bounded by our own timeout instead (undici's default is 300 s).
      headersTimeout: 0,
      bodyTimeout: 0,
      connect: (_options, callback) => {
        this.#dial().then(
          (socket) => callback(null, socket as never),
          (error: Error) => callback(error, null),
        );
      },
    });
    void dialer.session.closed.then((reason) => {
      this.#gone.abort(reason);
      this.#dispatcher.destroy(reason).catch(() => {});
      this.#agent?.destroy();
    });
  }

  /**
   * The standard fetch, through the device: any URL (its host only fills the Host header), streaming
   * request and response bodies, `init.signal`. Rejects with the session's close reason when the device
   * goes (also later, as the body's error), a `TimeoutError` past `init.timeout`, the signal's reason on
   * abort, and an `HttpError` (`ERR_HTTP`, the undici error as `cause`) when the device's answer is not
   * valid HTTP/1.1 or the stream breaks off.
   */
  async fetch(input: string | URL | Request, init: FetchInit = {}): Promise<Response> {
    const gone = this.#dialer.session.closeReason;
    if (gone) throw gone;
    const { timeout = this.#timeout, bodyTimeout = this.#bodyTimeout, signal, ...rest } = init;
    nonNegative("timeout", timeout);
    nonNegative("bodyTimeout", bodyTimeout);
    const deadline = new AbortController();
    const timer = timeout > 0 ? setTimeout(() => deadline.abort(new TimeoutError("fetch", timeout)), timeout) : undefined;
    // fetch() uses init.signal in place of the Request's own; keep the Request's when the caller gave none.
    const callerSignal = signal ?? (input instanceof Request ? input.signal : undefined);
    const signals = [this.#gone.signal, deadline.signal, ...(callerSignal ? [callerSignal] : [])];
    let response: Response;
    try {
      response = await fetch(input, { ...rest, signal: AbortSignal.any(signals), dispatcher: this.#dispatcher } as RequestInit);
    } catch (error) {
      for (const s of signals) if (s.aborted) throw s.reason;
      if (error instanceof TypeError && error.message === "fetch failed") {
        const cause = error.cause instanceof Error ? error.cause : error;
        throw new HttpError(`reverse HTTP request to the device failed: ${cause.message}`, { cause });
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
    if (response.body === null) return response;
    const body = guardBody(response.body, bodyTimeout, signals);
    return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
  }

  /**
   * An `http.Agent` whose connections are streams to the device, for `node:http` users:
   * `http.request("http://device/x", { agent })`. Keep-alive is on. When the device goes, requests in
   * flight emit `error` with the session's close reason.
   */
  get agent(): HttpAgent {
    if (!this.#agent) {
      const dial = () => this.#dial();
      this.#agent = new (class extends HttpAgent {
        override createConnection(_options: unknown, callback: (error: Error | null, socket?: Duplex) => void): undefined {
          dial().then(
            (socket) => callback(null, socket),
            (error: Error) => callback(error),
          );
          return undefined;
        }
      })({ keepAlive: true } satisfies HttpAgentOptions);
      if (this.#dialer.session.closeReason) this.#agent.destroy();
    }
    return this.#agent;
  }

  /** Closes idle connections and stops new requests; requests in flight finish. */
  async close(): Promise<void> {
    this.#agent?.destroy();
    await this.#dispatcher.close();
  }

  async #dial(): Promise<StreamSocket> {
    return new StreamSocket(await this.#dialer.dial({ signal: this.#gone.signal }));
  }
}

/**
 * A yamux stream as a Node `Duplex`, the socket undici and `node:http` expect. `end()` sends FIN;
 * `destroy()` before both sides finished sends RST, so the device's `request.signal` aborts.
 */
export class StreamSocket extends Duplex {
  readonly #stream: Stream;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #reading = false;
  #idleTimeout = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(stream: Stream) {
    super({ allowHalfOpen: true });
    this.#stream = stream;
    this.#reader = stream.readable.getReader();
    this.#writer = stream.writable.getWriter();
  }

  /** The yamux stream ID. */
  get streamID(): number {
    return this.#stream.streamID;
  }

  override _read(): void {
    if (this.#reading) return;
    this.#reading = true;
    void this.#pump();
  }

  /** Moves chunks from the stream while Node wants more (push() returning false means stop). */
  async #pump(): Promise<void> {
    try {
      for (;;) {
        const { done, value } = await this.#reader.read();
        this.#touch();
        if (done) {
          this.push(null);
          return;
        }
        if (!this.push(value)) break;
      }
    } catch (error) {
      this.destroy(error as Error);
    } finally {
      this.#reading = false;
    }
  }

  override _write(chunk: Uint8Array, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#touch();
    this.#writer.write(chunk).then(() => callback(), callback);
  }

  /** undici corks a head and its body together: one write, so one yamux frame. */
  override _writev(chunks: { chunk: Uint8Array }[], callback: (error?: Error | null) => void): void {
    this.#touch();
    this.#writer.write(Buffer.concat(chunks.map((c) => c.chunk))).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#writer.close().then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.#idleTimer);
    // A stream that did not finish both ways is abandoned mid-exchange: RST tells the device at once.
    if (this.#stream.state !== "closed") this.#stream.reset();
    this.#reader.cancel().catch(() => {});
    callback(error);
  }

  // What node:http asks of a net.Socket.

  /** Emits `timeout` after `ms` without traffic (0 disables), as `net.Socket` does; node:http's agent uses it. */
  setTimeout(ms: number, callback?: () => void): this {
    this.#idleTimeout = ms;
    if (callback) this.once("timeout", callback);
    this.#touch();
    return this;
  }

  setKeepAlive(): this {
    return this; // yamux keepalive pings cover the whole session
  }

  setNoDelay(): this {
    return this; // every write is sent as its own frame already
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  #touch(): void {
    clearTimeout(this.#idleTimer);
    if (this.#idleTimeout > 0 && !this.destroyed) {
      this.#idleTimer = setTimeout(() => this.emit("timeout"), this.#idleTimeout);
      this.#idleTimer.unref();
    }
  }
}

/**
 * The response body as the caller sees it: a failure while reading it is the device's (`HttpError`,
 * `ERR_HTTP`, the transport's error as `cause`), or the reason of the signal that stopped it (the device
 * left, the caller aborted); a read waiting longer than `idleTimeout` ms fails with a `TimeoutError` and
 * cancels the source, which resets the stream.
 */
function guardBody(source: ReadableStream<Uint8Array>, idleTimeout: number, signals: AbortSignal[]): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  const failure = (error: unknown): unknown => {
    for (const s of signals) if (s.aborted) return s.reason;
    if (error instanceof WslisError) return error;
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
    const detail = cause instanceof Error ? cause.message : String(cause);
    return new HttpError(`reverse HTTP response body from the device failed: ${detail}`, { cause });
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const stalled =
          idleTimeout > 0
            ? new Promise<never>((_, reject) => {
                timer = setTimeout(() => reject(new TimeoutError("response body", idleTimeout)), idleTimeout);
              })
            : undefined;
        try {
          const { done, value } = await (stalled ? Promise.race([reader.read(), stalled]) : reader.read());
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (error) {
          const reason = failure(error);
          reader.cancel(reason).catch(() => {});
          throw reason;
        } finally {
          clearTimeout(timer);
        }
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`wslis: ${name} must be a non-negative number of ms`);
  return value;
}
