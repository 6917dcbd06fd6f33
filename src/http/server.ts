/**
 * Reverse HTTP, device side: each stream the server opens carries HTTP/1.1 requests (Go's `http.Client`
 * and undici both speak it over any byte stream), and the device answers them with a fetch-style handler,
 * `(request: Request) => Response`. The counterpart of Go's `http.Serve(listener, handler)`.
 *
 * One connection = one stream, serving requests one after the other (persistent connections, RFC 9112
 * §9.3; pipelined requests wait their turn in the reader). A connection ends when the client closes its
 * side, asks for `Connection: close`, or sends something we cannot frame (answered 400/413/431/417/501/505,
 * then closed). A handler that throws is answered 500 and reported to `onError`; nothing it does can
 * crash the listener.
 */

import { ListenerClosedError, ProtocolError, SessionClosedError } from "../errors.js";
import { integerOption } from "../options.js";
import type { Conn } from "../yamux/stream.js";
import { BodySource } from "./body.js";
import {
  BadRequestError,
  decodeLatin1,
  encodeLatin1,
  parseFieldLine,
  parseRequestLine,
  requestInfo,
  type RequestHead,
  type RequestInfo,
} from "./head.js";
import { ByteReader, connIO } from "./reader.js";
import { prepareResponse, statusResponse, writeResponse, type ByteSink, type PreparedResponse, type ResponseDecision, type ResponseTarget } from "./response.js";

/** Answers one request. Its `request.signal` aborts if the server resets the stream or the session dies. */
export type HttpHandler = (request: Request) => Response | Promise<Response>;

/** What {@link serveHttp} needs of a connection: a wslis `Conn` (yamux stream) or anything shaped like it. */
export type HttpConn = Pick<Conn, "readable" | "writable" | "closed" | "reset">;

/** Where {@link serveHttp} gets connections: a wslis `Listener`, a `Session`, or anything with `accept()`. */
export interface HttpConnSource {
  accept(options?: { signal?: AbortSignal }): Promise<HttpConn>;
}

export interface ServeHttpOptions {
  /**
   * Largest request head (request line, header lines and their line ends), in bytes. A larger head is
   * answered 431 and the connection closed. Also bounds chunk-size lines and trailers. Default 65 536.
   */
  maxHeadSize?: number;
  /**
   * Largest request body, in bytes. A larger Content-Length is answered 413 before the handler runs; a
   * chunked body crossing it fails `request.body` and is answered 413 if no response was sent yet.
   * Default Infinity.
   */
  maxBodySize?: number;
  /**
   * Receives what goes wrong in a handler: the error it threw (or a TypeError for a non-Response it
   * returned), answered 500 without details; or the failure of a response body mid-stream, after which
   * the stream is reset. `request` is the request being served. Default: `console.error`.
   */
  onError?: (error: unknown, request: Request | undefined) => void;
  /**
   * Connections accepted and still waiting for their first request head, at most. Beyond it `serveHttp`
   * accepts no more until one of them got its head or ended: the next streams wait in the session's
   * accept backlog (`acceptBacklog`, default 256), and the session refuses those beyond it with RST. A
   * server writes the request head right behind the stream it opens, so an honest one keeps few here at
   * a time; what this bounds is a peer that opens streams and sends nothing, which could otherwise make
   * the device hold `maxStreams` (4096) of them. Connections idle between two requests do not count.
   * Default 256.
   */
  maxPendingConns?: number;
  /** Aborting it stops accepting connections; open ones finish their current exchange, then close. */
  signal?: AbortSignal;
}

interface Settings {
  maxHeadSize: number;
  maxBodySize: number;
  maxPendingConns: number;
  onError: (error: unknown, request: Request | undefined) => void;
  signal: AbortSignal | undefined;
}

/**
 * Serves HTTP/1.1 on every connection `listener` accepts, calling `handler` for each request. Resolves
 * when the listener closes (or the session, or `options.signal` aborts); connections in flight go on.
 * Rejects only if `accept()` fails for another reason.
 */
export async function serveHttp(listener: HttpConnSource, handler: HttpHandler, options: ServeHttpOptions = {}): Promise<void> {
  const settings = validate(handler, options);
  const { signal } = settings;
  /** Connections waiting for their first request head (maxPendingConns), and the loop waiting for one to get it. */
  let pending = 0;
  let slot: (() => void) | undefined;
  const wake = () => {
    const resolve = slot;
    slot = undefined;
    resolve?.();
  };
  signal?.addEventListener("abort", wake);
  try {
    for (;;) {
      let conn: HttpConn;
      try {
        if (signal?.aborted) return;
        if (pending >= settings.maxPendingConns) {
          // Every pending connection ends one way or another (its head, its reset, the session's end).
          await new Promise<void>((resolve) => (slot = resolve));
          continue;
        }
        conn = await listener.accept(signal ? { signal } : {});
      } catch (error) {
        if (signal?.aborted || error instanceof ListenerClosedError || error instanceof SessionClosedError || error instanceof ProtocolError) return;
        throw error;
      }
      pending++;
      void serveConn(conn, handler, settings, () => {
        pending--;
        wake();
      });
    }
  } finally {
    signal?.removeEventListener("abort", wake);
  }
}

/**
 * Serves HTTP/1.1 on one connection until it ends. Never rejects: a broken connection is reset.
 * @internal Exported for tests and for callers that sort streams themselves.
 */
export async function serveHttpConn(conn: HttpConn, handler: HttpHandler, options: ServeHttpOptions = {}): Promise<void> {
  await serveConn(conn, handler, validate(handler, options));
}

function validate(handler: HttpHandler, options: ServeHttpOptions): Settings {
  if (typeof handler !== "function") throw new TypeError("wslis: the HTTP handler must be a function");
  const maxHeadSize = options.maxHeadSize ?? 65_536;
  const maxBodySize = options.maxBodySize ?? Infinity;
  integerOption("maxHeadSize", maxHeadSize, 64);
  if (maxBodySize !== Infinity) integerOption("maxBodySize", maxBodySize, 0);
  const maxPendingConns = integerOption("maxPendingConns", options.maxPendingConns ?? 256);
  return { maxHeadSize, maxBodySize, maxPendingConns, onError: options.onError ?? reportToConsole, signal: options.signal };
}

function reportToConsole(error: unknown): void {
  globalThis.console?.error("wslis: HTTP handler failed:", error);
}

/** A request body left unread by the handler is read and dropped up to this many bytes to keep the connection. */
const MAX_DISCARD = 256 * 1024;

/**
 * Serves one connection; `headed` is called once, when its first request head was read or the connection
 * ended without one (serveHttp's count of pending connections).
 */
async function serveConn(conn: HttpConn, handler: HttpHandler, settings: Settings, headed = () => {}): Promise<void> {
  const io = connIO(conn);
  let reader: ByteReader | undefined;
  // The stream's `closed` rejects on RST or session death: that is what aborts `request.signal`.
  let lost: { reason: unknown } | undefined;
  let serving: AbortController | undefined;
  try {
    // Until its first bytes a connection holds nothing but its stream and this one read: a peer may open
    // thousands of streams and send nothing. Measured in Node: a stream waiting here costs the device
    // 2.7 KB of heap, where the reader, the watch on `closed` and the chain of awaits down to the read
    // (readRequest, readHead, readLine) cost 5.9 KB.
    let first: Uint8Array | null = null;
    if (!settings.signal?.aborted) {
      const read = io.read();
      first = read instanceof Promise ? await read : read;
    }
    reader = new ByteReader(io, first);
    conn.closed.catch((reason: unknown) => {
      lost = { reason };
      serving?.abort(reason);
    });
    // The signal was looked at before the first bytes were awaited: the request they start is served.
    for (let exchanges = 0; ; exchanges++) {
      if (exchanges > 0 && settings.signal?.aborted) break;
      const next = await readRequest(reader, settings);
      headed();
      headed = () => {};
      if (next === null) break; // the client closed its side between requests
      if (next instanceof BadRequestError) {
        await answerAndClose(io, next, { head: false, http10: false });
        break;
      }
      serving = new AbortController();
      if (lost) serving.abort(lost.reason);
      const exchange = new Exchange(next.head, next.info, reader, io, settings, serving);
      const again = await exchange.run(handler);
      // A loss after the response is not this request's: its signal stays as it is.
      serving = undefined;
      if (!again) break;
    }
    reader.cancel();
    await io.close();
  } catch {
    // The stream was reset, the session died, or a response was cut mid-body: nothing more can be said.
    if (reader) reader.cancel();
    else io.cancel();
    conn.reset();
  } finally {
    headed();
  }
}

/** The next request's head and what it asks of the connection; null at a clean end; a 4xx/5xx to answer. */
async function readRequest(reader: ByteReader, settings: Settings): Promise<{ head: RequestHead; info: RequestInfo } | BadRequestError | null> {
  try {
    const head = await readHead(reader, settings.maxHeadSize);
    if (head === null) return null;
    const info = requestInfo(head);
    if (info.framing.kind === "length" && info.framing.length > settings.maxBodySize) {
      throw new BadRequestError(413, `the request body is larger than ${settings.maxBodySize} bytes`);
    }
    return { head, info };
  } catch (error) {
    if (error instanceof BadRequestError) return error;
    throw error;
  }
}

/** Answers a request the device refuses by itself, with `Connection: close`. */
async function answerAndClose(writer: ByteSink, error: BadRequestError, target: ResponseTarget): Promise<void> {
  await writeResponse(writer, await prepareResponse(statusResponse(error.status), target), true);
}

/** Reads a request head; null when the stream ends cleanly before one starts. Throws {@link BadRequestError}. */
async function readHead(reader: ByteReader, maxHeadSize: number): Promise<RequestHead | null> {
  let budget = maxHeadSize;
  const tooLarge = () => new BadRequestError(431, `the request head is larger than ${maxHeadSize} bytes`);
  const truncated = () => new BadRequestError(400, "the request head ended early");
  let requestLine: string | undefined;
  const fields: RequestHead["fields"] = [];
  for (;;) {
    // Lines already buffered are taken without a promise each; only a head split across chunks waits.
    const bytes = reader.bufferedLine(budget, tooLarge) ?? (await reader.readLine(budget, tooLarge, truncated));
    if (bytes === null) {
      if (requestLine === undefined) return null;
      throw truncated();
    }
    budget -= bytes.length + 2;
    if (budget < 0) throw tooLarge();
    const line = decodeLatin1(bytes);
    if (requestLine === undefined) {
      // RFC 9112 §2.2: a server should ignore empty lines before the request line (some clients send CRLF after a body).
      if (line !== "") requestLine = line;
      continue;
    }
    if (line === "") break;
    if (/^[ \t]/.test(line)) throw new BadRequestError(400, "obsolete line folding");
    fields.push(parseFieldLine(line));
  }
  return { ...parseRequestLine(requestLine), fields };
}

const CONTINUE = encodeLatin1("HTTP/1.1 100 Continue\r\n\r\n");

/**
 * One request and its response on a connection. Its state moves one way:
 *
 *     reading (handler runs, may read the body; 100 Continue allowed)
 *       -> responding (the head is going out; 100 Continue no longer allowed)
 *
 * `run` resolves true when the connection can carry another request; it rejects when the connection is
 * broken (the caller resets it).
 */
class Exchange {
  readonly #info: RequestInfo;
  readonly #writer: ByteSink;
  readonly #settings: Settings;
  /** Aborts the request's signal if the connection is lost while it is served. */
  readonly #lost: AbortController;
  readonly #body: BodySource;
  readonly #target: ResponseTarget;
  readonly #head: RequestHead;
  #responding = false;
  #continueSent = false;
  #request: Request | undefined;

  constructor(
    head: RequestHead,
    info: RequestInfo,
    reader: ByteReader,
    writer: ByteSink,
    settings: Settings,
    lost: AbortController,
  ) {
    this.#head = head;
    this.#info = info;
    this.#writer = writer;
    this.#settings = settings;
    this.#lost = lost;
    this.#target = { head: head.method === "HEAD", http10: head.minor === 0 };
    this.#body = new BodySource(
      reader,
      info.framing,
      { maxBodySize: settings.maxBodySize, maxLineSize: settings.maxHeadSize },
      info.expectContinue ? () => this.#sendContinue() : undefined,
    );
  }

  async run(handler: HttpHandler): Promise<boolean> {
    try {
      this.#request = buildRequest(this.#head, this.#info, this.#body, this.#lost);
    } catch (error) {
      if (!(error instanceof BadRequestError)) throw error;
      await answerAndClose(this.#writer, error, this.#target);
      return false;
    }
    let response: Response;
    try {
      response = await callHandler(handler, this.#request);
    } catch (error) {
      response = this.#failure(error);
    }
    return await this.#respond(response);
  }

  /** RFC 9110 §10.1.1: the client holds the body back until told to go on; we say so when it is first read. */
  async #sendContinue(): Promise<void> {
    if (this.#responding) return;
    this.#continueSent = true;
    await this.#writer.write(CONTINUE);
  }

  /**
   * The status for a failure before the response started: a body the client framed wrongly or made too
   * large is its fault (400/413, not reported); anything else is the handler's (500, reported).
   */
  #failure(error: unknown): Response {
    const bodyError = this.#body.error;
    if (bodyError instanceof BadRequestError) return statusResponse(bodyError.status);
    if (!this.#lost.signal.aborted) this.#settings.onError(error, this.#request);
    return statusResponse(500);
  }

  async #respond(response: Response): Promise<boolean> {
    let prepared: PreparedResponse;
    try {
      prepared = await prepareResponse(response, this.#target);
    } catch (error) {
      prepared = await prepareResponse(this.#failure(error), this.#target);
      this.#responding = true;
      await writeResponse(this.#writer, prepared, true);
      return false;
    }
    this.#responding = true;
    // Decided as the head goes out (an echo has begun reading the body by then).
    const close = this.#mustClose();
    let decision: ResponseDecision;
    try {
      decision = await writeResponse(this.#writer, prepared, close);
    } catch (error) {
      // The head may be out and the body cut: the client must see the message fail, not end short.
      if (!this.#lost.signal.aborted && !(this.#body.error instanceof BadRequestError)) this.#settings.onError(error, this.#request);
      throw error;
    }
    if (decision.close) return false;
    // Still unread (the handler stopped reading midway): drop a bounded rest, else close without notice,
    // which a client must expect of any persistent connection (RFC 9112 §9.3).
    return this.#body.complete || (await this.#body.discard(MAX_DISCARD));
  }

  /**
   * Whether the connection ends after this response. A body the handler never read is dropped afterwards
   * if small; a large or unknown one, or one the client holds back for a 100 Continue never sent, makes us
   * close. Go's net/http decides the same way.
   */
  #mustClose(): boolean {
    if (!this.#info.keepAlive) return true;
    const body = this.#body;
    if (body.complete) return false;
    const left = body.remainingLength;
    const unread = !body.started && (left === undefined || left > MAX_DISCARD);
    return body.error !== undefined || unread || (this.#info.expectContinue && !this.#continueSent);
  }
}

async function callHandler(handler: HttpHandler, request: Request): Promise<Response> {
  const response: unknown = await handler(request);
  if (!(response instanceof Response)) {
    throw new TypeError(`the HTTP handler must return a Response, not ${response === null ? "null" : typeof response}`);
  }
  return response;
}

/**
 * Whether this runtime's `Request` drops header fields a client sent: browsers filter the "forbidden"
 * request headers (Host, Cookie, Content-Length, Origin, Sec-*...) from a Request a script constructs;
 * Node's does not. Probed once, lazily.
 */
let dropsForbiddenHeaders: boolean | undefined;

function runtimeDropsHeaders(): boolean {
  dropsForbiddenHeaders ??= !new Request("http://probe/", { headers: [["host", "probe"]] }).headers.has("host");
  return dropsForbiddenHeaders;
}

type ReceivedRequestClass = new (url: string, init: RequestInit, headers: Headers | undefined, aborter: AbortController) => Request;

/**
 * The `Request` a handler gets: a real one (body, `instanceof`, `clone()`), whose `signal` is its
 * aborter's (aborted if the connection is lost while the request is served), and whose `headers` are every field the client sent also in runtimes
 * whose `Request` constructor filters some (browsers drop Host, Cookie...: the handler still deserves to
 * see them). `clone()` keeps both; `new Request(request)` copies only what the runtime allows, and its
 * signal does not follow the connection. The signal is not given to the `Request` constructor: a
 * `Request` given one registers a listener and a finalizer on it, and in Node an `AbortController` makes
 * its `AbortSignal` (several µs) only when asked for it, which most handlers never do.
 *
 * The class is made on first use, not when this module loads: in Node, naming the global `Request` loads
 * its fetch implementation (undici, megabytes of heap), and importing wslis must not do that. A Node
 * device that loaded it at import ran 23 to 38 full (mark-compact) garbage collections per 6 × 64 MiB
 * received instead of 1 to 6, and fell from 1× to 0.4–0.7× of raw ws in the two-process benchmark
 * (issue 10; test/startup.test.ts keeps it out).
 */
let receivedRequest: ReceivedRequestClass | undefined;

function receivedRequestClass(): ReceivedRequestClass {
  return (receivedRequest ??= class ReceivedRequest extends Request {
    readonly #headers: Headers | undefined;
    readonly #aborter: AbortController;

    constructor(url: string, init: RequestInit, headers: Headers | undefined, aborter: AbortController) {
      super(url, init);
      this.#headers = headers;
      this.#aborter = aborter;
    }

    override get headers(): Headers {
      return this.#headers ?? super.headers;
    }

    override get signal(): AbortSignal {
      return this.#aborter.signal;
    }

    override clone(): Request {
      const copy = super.clone();
      const init = {
        method: copy.method,
        headers: copy.headers,
        ...(copy.body ? { body: copy.body, duplex: "half" } : {}),
      } as RequestInit;
      return new ReceivedRequest(copy.url, init, this.#headers && new Headers(this.#headers), this.#aborter);
    }
  });
}

/**
 * The fetch `Request` for a head. GET and HEAD cannot carry a body in fetch; theirs (rare, meaningless
 * per RFC 9110 §9.3.1) is left unread and dropped by the connection loop.
 */
function buildRequest(head: RequestHead, info: RequestInfo, body: BodySource, aborter: AbortController): Request {
  const method = head.method;
  const hasBody = !body.complete && method !== "GET" && method !== "HEAD";
  const init = {
    method,
    headers: head.fields,
    ...(hasBody ? { body: body.stream(), duplex: "half" } : {}),
  } as RequestInit;
  try {
    return new (receivedRequestClass())(info.url, init, runtimeDropsHeaders() ? new Headers(head.fields) : undefined, aborter);
  } catch {
    throw new BadRequestError(400, "the request cannot be represented as a fetch Request");
  }
}
