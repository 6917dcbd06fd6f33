/**
 * Reverse HTTP, server side: HTTP/1.1 requests to a device, each connection a yamux stream dialed to it
 * (the device answers with `serveHttp`, or Go's `http.Serve(listener)`). Like Go wslis's `rhttp`, where
 * the transport's DialContext opens a stream.
 *
 * `fetch` speaks HTTP/1.1 itself, with the codec the device side uses (src/http: heads, body framing,
 * buffered reading) turned around: it writes request heads and reads response heads, straight on the
 * stream's web streams, and returns the global `Response`. Measured against undici's fetch on a stream
 * adapter (the earlier design) and against undici's `Client`, this skips per request what those cost: a
 * Node-stream <-> web-stream adapter, `AbortSignal.any`, a deadline controller, undici's fetch objects.
 * Connections (streams) are pooled and reused; a reused one the device closed meanwhile is retried once
 * on a new stream when the request can be sent again. `agent` gives `node:http` users the same streams
 * through {@link StreamSocket}. Both stop at once when the device goes: every request in flight fails
 * with the session's close reason (`ERR_CONNECTION_LOST`, `ERR_REPLACED`...).
 */

import { Agent as HttpAgent, type AgentOptions as HttpAgentOptions } from "node:http";
import { Duplex } from "node:stream";
import { HttpError, TimeoutError, WslisError } from "../src/errors.js";
import { BodySource } from "../src/http/body.js";
import {
  decodeLatin1,
  encodeLatin1,
  parseFieldLine,
  parseStatusLine,
  responseFraming,
  responseKeepsAlive,
  type ResponseHead,
} from "../src/http/head.js";
import { ByteReader, concat, connIO } from "../src/http/reader.js";
import { integerOption, msOption } from "../src/options.js";
import type { Session } from "../src/yamux/session.js";
import type { Conn, StreamIO } from "../src/yamux/stream.js";

/** `fetch` options: the standard ones plus timeouts. */
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
  /** How long an idle connection (stream) is kept for reuse, in ms; 0 closes it after each response. Default 10 000. */
  keepAliveTimeout?: number;
  /** Most connections (streams) at once; further requests queue. Default: no limit. */
  connections?: number;
  /**
   * Largest response head (status line, header lines, their line ends, and any 1xx heads before it), in
   * bytes; a larger one fails the fetch with `ERR_HTTP` and resets the stream. Also bounds chunk-size
   * lines and trailers. Default 65 536.
   */
  maxHeadSize?: number;
}

/**
 * What the client needs of a device: its session (to see it go) and a way to open streams. A yamux
 * `Session` is such a session; so is a device reached through another node.
 */
export interface StreamDialer {
  readonly session: Pick<Session, "closeReason" | "closed">;
  dial(options?: { signal?: AbortSignal }): Promise<Conn>;
  /** @internal The bytes of a conn it dialed without web streams, when it has such a path (a wslis stream needs none). */
  io?(conn: Conn): StreamIO | undefined;
}

interface Settings {
  timeout: number;
  bodyTimeout: number;
  keepAliveTimeout: number;
  connections: number;
  maxHeadSize: number;
}

/**
 * HTTP to one device. `dialer.fetch` and `dialer.agent` use one made with the defaults; make your own for
 * other defaults: `new DeviceHttp(dialer, { timeout: 5000 }).fetch(url)`.
 */
export class DeviceHttp {
  readonly #dialer: StreamDialer;
  readonly #settings: Settings;
  readonly #pool: Pool;
  /** Every fetch not finished (head awaited or body being read): failed at once when the device goes. */
  readonly #calls = new Set<Call>();
  /** Why new requests are refused, once closed. */
  #closed: Error | undefined;
  #agent: HttpAgent | undefined;

  constructor(dialer: StreamDialer, options: DeviceHttpOptions = {}) {
    this.#dialer = dialer;
    const maxHeadSize = options.maxHeadSize ?? 65_536;
    integerOption("maxHeadSize", maxHeadSize, 64);
    if (options.connections !== undefined) integerOption("connections", options.connections);
    this.#settings = {
      timeout: msOption("timeout", options.timeout ?? 30_000, 0),
      bodyTimeout: msOption("bodyTimeout", options.bodyTimeout ?? 30_000, 0),
      keepAliveTimeout: msOption("keepAliveTimeout", options.keepAliveTimeout ?? 10_000, 0),
      connections: options.connections ?? Infinity,
      maxHeadSize,
    };
    this.#pool = new Pool(dialer, this.#settings);
    void dialer.session.closed.then((reason) => {
      for (const call of this.#calls) call.fail(reason);
      this.#pool.destroy(reason);
      this.#agent?.destroy();
    });
  }

  /**
   * The standard fetch, through the device: any URL (its host only fills the Host header), streaming
   * request and response bodies, `init.signal`. Rejects with the session's close reason when the device
   * goes (also later, as the body's error), a `TimeoutError` past `init.timeout` (or, while the body is
   * read, `init.bodyTimeout`), the signal's reason on abort, and an `HttpError` (`ERR_HTTP`, the cause
   * attached) when the device's answer is not valid HTTP/1.1 or the stream breaks off. Bodies arrive as
   * the device sent them (no content decoding: none is asked for); `response.url` is empty.
   */
  fetch(input: string | URL | Request, init: FetchInit = {}): Promise<Response> {
    const gone = this.#dialer.session.closeReason;
    if (gone) return Promise.reject(gone);
    if (this.#closed) return Promise.reject(this.#closed);
    let request: Outgoing;
    let timeout: number;
    let bodyTimeout: number;
    try {
      timeout = init.timeout === undefined ? this.#settings.timeout : msOption("timeout", init.timeout, 0);
      bodyTimeout = init.bodyTimeout === undefined ? this.#settings.bodyTimeout : msOption("bodyTimeout", init.bodyTimeout, 0);
      request = outgoing(input, init);
    } catch (error) {
      return Promise.reject(error);
    }
    if (request.signal?.aborted) return Promise.reject(request.signal.reason);
    return new Call(this.#dialer.session, this.#pool, this.#calls, request, timeout, bodyTimeout, this.#settings.maxHeadSize).start();
  }

  /**
   * An `http.Agent` whose connections are streams to the device, for `node:http` users:
   * `http.request("http://device/x", { agent })`. Keep-alive is on. When the device goes, requests in
   * flight emit `error` with the session's close reason.
   */
  get agent(): HttpAgent {
    if (!this.#agent) {
      const dial = async () => new StreamSocket(await this.#dialer.dial());
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

  /**
   * Closes idle connections and refuses new requests (with `reason`, default an `ERR_HTTP` error saying
   * so); requests in flight finish.
   */
  async close(reason: Error = new HttpError("this DeviceHttp is closed")): Promise<void> {
    this.#closed ??= reason;
    this.#pool.close(this.#closed);
    const agent = this.#agent;
    if (!agent) return;
    // node:http's Agent closes a socket it gets back instead of keeping it once keepAlive is off; those
    // waiting for reuse go now (destroy() would also break the requests in flight).
    (agent as HttpAgent & { keepAlive: boolean }).keepAlive = false;
    for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
  }
}

/** A request as it goes on the wire. */
interface Outgoing {
  method: string;
  /** origin-form request-target: path and query. */
  target: string;
  host: string;
  /** Caller's header fields, names lower-cased, without the ones the framing writes. */
  fields: Iterable<[string, string]> | undefined;
  /** Bytes (length known), a stream (chunked unless `length` is set), or none. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
  length: number | undefined;
  signal: AbortSignal | undefined;
}

const encoder = new TextEncoder();
/** Header fields the client writes itself, or that describe the connection, not the message. */
const OWN_FIELDS = new Set(["host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade"]);
const METHOD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Methods fetch upper-cases whatever their case (WHATWG Fetch "normalize"). */
const NORMALIZED = new Set(["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"]);
/** Methods fetch refuses. */
const FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

/**
 * The request's parts from fetch's arguments, checked as fetch checks them (TypeError). Common bodies
 * (none, a string, bytes, URLSearchParams, a stream) are taken as they are; anything else (Blob, FormData,
 * a Request) goes through a `Request`, which encodes it.
 */
function outgoing(input: string | URL | Request, init: FetchInit): Outgoing {
  const signal = init.signal ?? (input instanceof Request ? input.signal : undefined) ?? undefined;
  let method: string;
  let url: URL;
  let headers: HeadersInit | undefined;
  let body: unknown;
  let contentType: string | undefined;
  const simple = !(input instanceof Request) && isSimpleBody(init.body);
  if (simple) {
    url = input instanceof URL ? input : new URL(input);
    method = normalizeMethod(init.method ?? "GET");
    headers = init.headers;
    ({ body, contentType } = encodeSimpleBody(init.body ?? null, method));
  } else {
    const { timeout: _t, bodyTimeout: _b, signal: _s, ...rest } = init;
    const request = new Request(input, rest);
    url = new URL(request.url);
    method = request.method;
    headers = request.headers;
    body = request.body;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`fetch: URL scheme "${url.protocol.slice(0, -1)}" is not supported`);
  if (url.username || url.password) throw new TypeError("fetch: a URL with credentials is not allowed");

  let fields: [string, string][] | undefined;
  let length: number | undefined = body instanceof Uint8Array ? body.length : undefined;
  if (headers !== undefined || contentType !== undefined) {
    const all = headers instanceof Headers ? headers : new Headers(headers);
    fields = [];
    for (const [name, value] of all) {
      if (name === "content-length" && body instanceof ReadableStream) {
        const n = /^\d{1,15}$/.test(value) ? Number(value) : undefined;
        if (n === undefined) throw new TypeError(`fetch: invalid Content-Length ${value}`);
        length = n;
      }
      if (!OWN_FIELDS.has(name)) fields.push([name, value]);
    }
    if (contentType !== undefined && !all.has("content-type")) fields.push(["content-type", contentType]);
  }
  return {
    method,
    target: `${url.pathname}${url.search}`,
    host: url.host,
    fields,
    body: body as Outgoing["body"],
    length,
    signal,
  };
}

/** A body fetch would take as it is (none, a string, bytes, URLSearchParams, a stream): no `Request` needed to encode it. */
function isSimpleBody(body: unknown): boolean {
  return (
    body === undefined ||
    body === null ||
    typeof body === "string" ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    body instanceof URLSearchParams ||
    body instanceof ReadableStream
  );
}

/**
 * A simple body (see {@link isSimpleBody}) as fetch sends it: bytes (a stream stays a stream), with the
 * Content-Type fetch gives a string or URLSearchParams. A body with GET or HEAD is a TypeError.
 */
function encodeSimpleBody(body: unknown, method: string): { body: unknown; contentType: string | undefined } {
  let contentType: string | undefined;
  if (typeof body === "string") {
    contentType = "text/plain;charset=UTF-8";
    body = encoder.encode(body);
  } else if (body instanceof URLSearchParams) {
    contentType = "application/x-www-form-urlencoded;charset=UTF-8";
    body = encoder.encode(body.toString());
  } else if (body instanceof ArrayBuffer) {
    body = new Uint8Array(body);
  } else if (ArrayBuffer.isView(body)) {
    body = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  }
  if (body !== null && (method === "GET" || method === "HEAD")) throw new TypeError("Request with GET/HEAD method cannot have body.");
  return { body, contentType };
}

/** A fetch method checked and normalized as fetch does (TypeError for an invalid or forbidden one). */
function normalizeMethod(method: string): string {
  if (!METHOD.test(method)) throw new TypeError(`fetch: "${method}" is not a valid HTTP method`);
  const upper = method.toUpperCase();
  if (FORBIDDEN_METHODS.has(upper)) throw new TypeError(`fetch: the ${upper} method is not allowed`);
  return NORMALIZED.has(upper) ? upper : method;
}

/** The request head: request line, Host, the caller's fields, the framing's. */
function encodeRequestHead(request: Outgoing): Uint8Array {
  let text = `${request.method} ${request.target} HTTP/1.1\r\nhost: ${request.host}\r\n`;
  if (request.fields) for (const [name, value] of request.fields) text += `${name}: ${value}\r\n`;
  const body = request.body;
  if (body === null) {
    // RFC 9110 §8.6: a user agent should send Content-Length: 0 when a method defines a body and there is none.
    if (request.method === "POST" || request.method === "PUT" || request.method === "PATCH") text += "content-length: 0\r\n";
  } else if (request.length !== undefined) {
    text += `content-length: ${request.length}\r\n`;
  } else {
    text += "transfer-encoding: chunked\r\n";
  }
  return encodeLatin1(`${text}\r\n`);
}

/** Bodies up to this size go out in the same write as the head: one yamux frame. */
const COALESCE_BYTES = 64 * 1024;
const CRLF = encodeLatin1("\r\n");
const LAST_CHUNK = encodeLatin1("0\r\n\r\n");

/** One stream used as an HTTP/1.1 connection, one exchange at a time. */
class Connection {
  readonly stream: Conn;
  readonly reader: ByteReader;
  /** Where request bytes go: the stream itself (no web streams), each write awaited before the next. */
  readonly writer: StreamIO;
  /** Exchanges completed on it. */
  uses = 0;
  idle = false;
  idleTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(stream: Conn, io: StreamIO | undefined) {
    this.stream = stream;
    this.writer = io ?? connIO(stream);
    this.reader = new ByteReader(this.writer);
  }

  /** Still open both ways with nothing unread: fit for another request. */
  get reusable(): boolean {
    return this.stream.state === "open" && this.reader.buffered === 0 && !this.reader.ended;
  }

  /** Ends it cleanly (FIN) when it finished its exchanges, else abandons it (RST: the device's request.signal aborts). */
  end(clean: boolean): void {
    clearTimeout(this.idleTimer);
    this.reader.cancel();
    if (clean) this.writer.close().catch(() => {});
    else this.stream.reset();
  }
}

/** Connections to one device: idle ones reused most recent first, at most `connections` open, waiters served in order. */
class Pool {
  readonly #dialer: StreamDialer;
  readonly #settings: Settings;
  readonly #idle: Connection[] = [];
  readonly #waiters: { resolve: (conn: Connection) => void; reject: (error: unknown) => void }[] = [];
  /** Connections open or being dialed. */
  #open = 0;
  #closed: Error | undefined;

  constructor(dialer: StreamDialer, settings: Settings) {
    this.#dialer = dialer;
    this.#settings = settings;
  }

  /** An idle connection, a new one, or (at the limit) the next one released. `fresh` skips idle ones. */
  acquire(fresh = false): Promise<Connection> {
    if (this.#closed) return Promise.reject(this.#closed);
    while (!fresh && this.#idle.length > 0) {
      const conn = this.#idle.pop()!;
      conn.idle = false;
      if (conn.reusable) return Promise.resolve(conn);
      this.#drop(conn, false);
    }
    if (this.#open >= this.#settings.connections) {
      return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
    }
    return this.#dial();
  }

  /** Takes back a connection after an exchange; `reusable` false ends it. */
  release(conn: Connection, reusable: boolean): void {
    if (!reusable || this.#closed || this.#settings.keepAliveTimeout === 0 || !conn.reusable) {
      this.#drop(conn, reusable);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) {
      waiter.resolve(conn);
      return;
    }
    conn.idle = true;
    this.#idle.push(conn);
    // One timer per connection, re-armed (not re-made) each time it goes idle.
    if (conn.idleTimer) conn.idleTimer.refresh();
    else {
      conn.idleTimer = setTimeout(() => this.#expire(conn), this.#settings.keepAliveTimeout);
      conn.idleTimer.unref();
    }
  }

  /** Ends the idle connections; later acquires fail with `reason` (default: closed). */
  close(reason: Error): void {
    this.#closed ??= reason;
    for (const conn of this.#idle.splice(0)) this.#drop(conn, true);
  }

  /** The device is gone: ends everything, fails every waiter. */
  destroy(reason: Error): void {
    this.#closed = reason;
    for (const conn of this.#idle.splice(0)) this.#drop(conn, false);
    for (const waiter of this.#waiters.splice(0)) waiter.reject(reason);
  }

  #expire(conn: Connection): void {
    if (!conn.idle) return; // busy again: the timer is re-armed when it next goes idle
    const at = this.#idle.indexOf(conn);
    if (at >= 0) this.#idle.splice(at, 1);
    conn.idle = false;
    this.#drop(conn, true);
  }

  #drop(conn: Connection, clean: boolean): void {
    conn.end(clean);
    this.#open--;
    const waiter = this.#waiters.shift();
    if (waiter) this.#dial().then(waiter.resolve, waiter.reject);
  }

  async #dial(): Promise<Connection> {
    this.#open++;
    try {
      const conn = await this.#dialer.dial();
      return new Connection(conn, this.#dialer.io?.(conn));
    } catch (error) {
      this.#open--;
      throw error;
    }
  }
}

/** A connection that ended before any byte of the answer: the request may be sent again on a new one. */
class StaleConnection extends Error {}

/**
 * One fetch, from its request to the end of its response body. It ends one of three ways: the body is
 * read to its end (the connection goes back to the pool when both sides allow), it fails (the stream is
 * reset), or the caller cancels the body (reset).
 *
 *     waiting for the head --(head)--> reading the body --(end)--> done
 *             |                              |
 *             +--------(fail: abort, timeout, device gone, bad HTTP)--> failed
 */
class Call {
  readonly #session: StreamDialer["session"];
  readonly #pool: Pool;
  readonly #calls: Set<Call>;
  readonly #request: Outgoing;
  readonly #timeout: number;
  readonly #bodyTimeout: number;
  readonly #maxHeadSize: number;
  #state: "head" | "body" | "done" | "failed" = "head";
  #conn: Connection | undefined;
  #resolve!: (response: Response) => void;
  #reject!: (error: unknown) => void;
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** True while a body read waits: what the body timer bounds. */
  #bodyWaiting = false;
  #uploadDone = false;
  #uploadReader: ReadableStreamDefaultReader<Uint8Array> | undefined;

  constructor(session: StreamDialer["session"], pool: Pool, calls: Set<Call>, request: Outgoing, timeout: number, bodyTimeout: number, maxHeadSize: number) {
    this.#session = session;
    this.#pool = pool;
    this.#calls = calls;
    this.#request = request;
    this.#timeout = timeout;
    this.#bodyTimeout = bodyTimeout;
    this.#maxHeadSize = maxHeadSize;
  }

  start(): Promise<Response> {
    const promise = new Promise<Response>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#calls.add(this);
    if (this.#timeout > 0) {
      this.#timer = setTimeout(() => {
        if (this.#state === "head") this.fail(new TimeoutError("fetch", this.#timeout));
        else if (this.#state === "body" && this.#bodyWaiting) this.fail(new TimeoutError("response body", this.#bodyTimeout));
      }, this.#timeout);
    }
    const signal = this.#request.signal;
    if (signal) {
      this.#onAbort = () => this.fail(signal.reason);
      signal.addEventListener("abort", this.#onAbort);
    }
    void this.#run();
    return promise;
  }

  /** Stops the call with `reason`: the fetch rejects, or the body errors; the stream is reset. */
  fail(reason: unknown): void {
    if (this.#state === "done" || this.#state === "failed") return;
    const state = this.#state;
    this.#state = "failed";
    this.#cleanUp();
    if (state === "head") this.#reject(reason);
    else this.#controller?.error(reason);
    this.#uploadReader?.cancel(reason).catch(() => {});
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn) this.#pool.release(conn, false);
  }

  /** Made only for a request with a signal (most have none). */
  #onAbort: (() => void) | undefined;

  #cleanUp(): void {
    clearTimeout(this.#timer);
    this.#calls.delete(this);
    if (this.#onAbort) this.#request.signal!.removeEventListener("abort", this.#onAbort);
  }

  async #run(): Promise<void> {
    try {
      for (let attempt = 0; ; attempt++) {
        const conn = await this.#pool.acquire(attempt > 0);
        if (this.#state !== "head") {
          this.#pool.release(conn, conn.reusable);
          return;
        }
        this.#conn = conn;
        try {
          await this.#exchange(conn);
          return;
        } catch (error) {
          // A reused connection the device closed in the meantime: once more on a new stream, if the body can be sent again.
          if (!(error instanceof StaleConnection) || attempt > 0 || this.#request.body instanceof ReadableStream || this.#state !== "head") throw error;
          this.#conn = undefined;
          this.#pool.release(conn, false);
        }
      }
    } catch (error) {
      this.fail(this.#failure(error));
    }
  }

  /** What a failure is to the caller: the session's reason if the device is gone, else ERR_HTTP. */
  #failure(error: unknown): unknown {
    const gone = this.#session.closeReason;
    if (gone) return gone;
    if (error instanceof HttpError && error.cause !== undefined) return error;
    const detail = error instanceof Error ? error.message : String(error);
    const what = this.#state === "body" ? "response body from the device failed" : "request to the device failed";
    return new HttpError(`reverse HTTP ${what}: ${detail}`, { cause: error });
  }

  async #exchange(conn: Connection): Promise<void> {
    const request = this.#request;
    const head = encodeRequestHead(request);
    const body = request.body;
    // Undefined when the whole request went out at once (the usual case).
    let upload: Promise<void> | undefined;
    if (body === null) upload = conn.writer.write(head);
    else if (body instanceof Uint8Array) {
      upload = body.length <= COALESCE_BYTES ? conn.writer.write(concat(head, body)) : sendBoth(conn.writer, head, body);
    } else upload = this.#sendStream(conn, head, body);
    // The device may answer before it has read the whole body (an error, or an echo): read while sending.
    if (upload === undefined) this.#uploadDone = true;
    else {
      upload.then(
        () => (this.#uploadDone = true),
        (error: unknown) => {
          // The caller's body failed (or broke its Content-Length): the request cannot be completed. A
          // transport failure is left to the reading side, which sees it too, after any early answer.
          if (!(error instanceof WslisError) && this.#state === "head") this.fail(this.#failure(error));
        },
      );
    }

    const response = await this.#readHead(conn, upload);
    if (this.#state !== "head") return;
    conn.uses++;
    const framing = responseFraming(response, request.method);
    const keepAlive = responseKeepsAlive(response) && framing.kind !== "close";
    const empty = framing.kind === "length" && framing.length === 0;
    const nullBody = response.status === 204 || response.status === 205 || response.status === 304 || request.method === "HEAD";
    // The fields as they are: the Response builds its Headers from them (a Headers of ours would be copied).
    const init = { status: response.status, statusText: response.reason, headers: response.fields };
    // A body that is all here already (a small answer comes in the frame of its head) is handed over
    // whole: no pulls, no timer, and the connection is free for the next request at once.
    let whole: Uint8Array | undefined = empty ? EMPTY : undefined;
    if (framing.kind === "length" && !empty && conn.reader.buffered >= framing.length) {
      whole = (await conn.reader.read(framing.length)) ?? undefined; // buffered: no wait for the peer
      if (this.#state !== "head") return;
    }
    if (whole !== undefined) {
      this.#state = "done";
      this.#cleanUp();
      this.#conn = undefined;
      this.#resolve(new Response(nullBody ? null : wholeBody(whole), init));
      this.#pool.release(conn, keepAlive && this.#uploadDone);
      return;
    }
    const source = new BodySource(conn.reader, framing, { maxBodySize: Infinity, maxLineSize: this.#maxHeadSize, message: "response" });
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.#controller = controller;
        },
        pull: (controller) => this.#pull(controller, source, keepAlive),
        cancel: () => this.fail(undefined),
      },
      { highWaterMark: 0 },
    );
    this.#state = "body";
    // From here the timer bounds body reads: re-armed for each one.
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#resolve(new Response(stream, init));
  }

  async #pull(controller: ReadableStreamDefaultController<Uint8Array>, source: BodySource, keepAlive: boolean): Promise<void> {
    if (this.#state !== "body") return;
    if (this.#bodyTimeout > 0) {
      if (this.#timer) this.#timer.refresh();
      else {
        this.#timer = setTimeout(() => {
          if (this.#state === "body" && this.#bodyWaiting) this.fail(new TimeoutError("response body", this.#bodyTimeout));
        }, this.#bodyTimeout);
        this.#timer.unref();
      }
    }
    this.#bodyWaiting = true;
    let chunk: Uint8Array | null;
    try {
      chunk = await source.next();
    } catch (error) {
      if (this.#state === "body") this.fail(this.#failure(error));
      return;
    } finally {
      this.#bodyWaiting = false;
    }
    if (this.#state !== "body") return;
    if (chunk !== null) {
      controller.enqueue(chunk);
      return;
    }
    this.#state = "done";
    this.#cleanUp();
    controller.close();
    const conn = this.#conn!;
    this.#conn = undefined;
    // Reused only when the whole request went out too (an early answer leaves the upload cut short).
    this.#pool.release(conn, keepAlive && this.#uploadDone);
  }

  /** Reads the final response head, skipping 1xx interim ones. */
  async #readHead(conn: Connection, upload: Promise<void> | undefined): Promise<ResponseHead> {
    let budget = this.#maxHeadSize;
    const tooLarge = () => new HttpError(`the response head is larger than ${this.#maxHeadSize} bytes`);
    const truncated = () => new HttpError("the response head ended early");
    const reader = conn.reader;
    let first = true;
    let status: Omit<ResponseHead, "fields"> | undefined;
    let fields: ResponseHead["fields"] = [];
    for (;;) {
      // Lines already buffered are taken without a promise each; only a head split across chunks waits.
      const bytes = reader.bufferedLine(budget, tooLarge) ?? (await reader.readLine(budget, tooLarge, truncated));
      if (bytes === null) {
        if (first && conn.uses > 0) throw new StaleConnection();
        if (first) {
          // Nothing at all: the upload's failure, if any, says more than the end of the stream.
          await upload;
          throw new HttpError("the device closed the connection without an answer");
        }
        throw truncated();
      }
      first = false;
      budget -= bytes.length + 2;
      if (budget < 0) throw tooLarge();
      const line = decodeLatin1(bytes);
      if (status === undefined) {
        status = parseStatusLine(line);
        continue;
      }
      if (line !== "") {
        if (/^[ \t]/.test(line)) throw new HttpError("obsolete line folding in the response");
        fields.push(parseFieldLine(line));
        continue;
      }
      if (status.status >= 200) return { ...status, fields };
      if (status.status === 101) throw new HttpError("the device switched protocols, which fetch cannot follow");
      // A 1xx interim head: the final one follows.
      status = undefined;
      fields = [];
    }
  }

  /** Sends the head, then the stream's chunks (chunked, or exactly `length` bytes). */
  async #sendStream(conn: Connection, head: Uint8Array, body: ReadableStream<Uint8Array>): Promise<void> {
    const length = this.#request.length;
    const reader = body.getReader();
    this.#uploadReader = reader;
    await conn.writer.write(head);
    let sent = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!(value instanceof Uint8Array)) throw new TypeError("a request body chunk must be a Uint8Array");
      if (value.length === 0) continue;
      sent += value.length;
      if (length !== undefined && sent > length) throw new TypeError(`the request body is longer than its Content-Length ${length}`);
      await conn.writer.write(length === undefined ? concat(encodeLatin1(value.length.toString(16)), CRLF, value, CRLF) : value);
    }
    if (length !== undefined && sent < length) throw new TypeError(`the request body is shorter (${sent}) than its Content-Length ${length}`);
    if (length === undefined) await conn.writer.write(LAST_CHUNK);
  }
}

const EMPTY = new Uint8Array(0);

/**
 * A body stream holding `bytes`, ended. A stream, not the bytes themselves: undici copies a byte body and
 * builds a byte stream for it, which reading costs about a third more (measured in Node 20). A view of
 * less than half its buffer is copied, so a kept body does not pin the whole message it came in.
 */
function wholeBody(bytes: Uint8Array): ReadableStream<Uint8Array> {
  const chunk = bytes.length * 2 >= bytes.buffer.byteLength ? bytes : bytes.slice();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (chunk.length > 0) controller.enqueue(chunk);
      controller.close();
    },
  });
}

/** Writes `head`, then `body` (too large to join in one frame). */
async function sendBoth(writer: StreamIO, head: Uint8Array, body: Uint8Array): Promise<void> {
  await writer.write(head);
  await writer.write(body);
}

/**
 * A yamux stream as a Node `Duplex`, the socket undici and `node:http` expect. `end()` sends FIN;
 * `destroy()` before both sides finished sends RST, so the device's `request.signal` aborts.
 */
export class StreamSocket extends Duplex {
  readonly #stream: Conn;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #reading = false;
  #idleTimeout = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(stream: Conn) {
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
