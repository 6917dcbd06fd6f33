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
import type { Stream } from "../yamux/stream.js";
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
import { ByteReader } from "./reader.js";
import { statusResponse, writeResponse, type ResponseContext } from "./response.js";

/** Answers one request. Its `request.signal` aborts if the server resets the stream or the session dies. */
export type HttpHandler = (request: Request) => Response | Promise<Response>;

/** What {@link serveHttp} needs of a connection: a wslis `Conn` (yamux stream) or anything shaped like it. */
export type HttpConn = Pick<Stream, "readable" | "writable" | "closed" | "reset">;

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
  /** Aborting it stops accepting connections; open ones finish their current exchange, then close. */
  signal?: AbortSignal;
}

interface Settings {
  maxHeadSize: number;
  maxBodySize: number;
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
  for (;;) {
    let conn: HttpConn;
    try {
      if (signal?.aborted) return;
      conn = await listener.accept(signal ? { signal } : {});
    } catch (error) {
      if (signal?.aborted || error instanceof ListenerClosedError || error instanceof SessionClosedError || error instanceof ProtocolError) return;
      throw error;
    }
    void serveConn(conn, handler, settings);
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
  if (!Number.isInteger(maxHeadSize) || maxHeadSize < 64) throw new RangeError("wslis: maxHeadSize must be an integer of at least 64 bytes");
  if (!(maxBodySize === Infinity || (Number.isInteger(maxBodySize) && maxBodySize >= 0))) {
    throw new RangeError("wslis: maxBodySize must be a non-negative integer or Infinity");
  }
  return { maxHeadSize, maxBodySize, onError: options.onError ?? reportToConsole, signal: options.signal };
}

function reportToConsole(error: unknown): void {
  globalThis.console?.error("wslis: HTTP handler failed:", error);
}

/** A request body left unread by the handler is read and dropped up to this many bytes to keep the connection. */
const MAX_DISCARD = 256 * 1024;

async function serveConn(conn: HttpConn, handler: HttpHandler, settings: Settings): Promise<void> {
  const reader = new ByteReader(conn.readable);
  const writer = conn.writable.getWriter();
  // The stream's `closed` rejects on RST or session death: that is what aborts `request.signal`.
  const lost = new AbortController();
  conn.closed.catch((error: unknown) => lost.abort(error));
  try {
    for (;;) {
      if (settings.signal?.aborted) break;
      let head: RequestHead | null;
      let info: RequestInfo;
      try {
        head = await readHead(reader, settings.maxHeadSize);
        if (head === null) break; // the client closed its side between requests
        info = requestInfo(head);
        if (info.framing.kind === "length" && info.framing.length > settings.maxBodySize) {
          throw new BadRequestError(413, `the request body is larger than ${settings.maxBodySize} bytes`);
        }
      } catch (error) {
        if (!(error instanceof BadRequestError)) throw error;
        await writeResponse(writer, statusResponse(error.status), { head: false, http10: false, close: true, started: false });
        break;
      }
      if (!(await exchange(reader, writer, head, info, handler, settings, lost.signal))) break;
    }
    reader.cancel();
    await writer.close();
  } catch {
    // The stream was reset, the session died, or a response was cut mid-body: nothing more can be said.
    reader.cancel();
    conn.reset();
  }
}

/** Reads a request head; null when the stream ends cleanly before one starts. Throws {@link BadRequestError}. */
async function readHead(reader: ByteReader, maxHeadSize: number): Promise<RequestHead | null> {
  let budget = maxHeadSize;
  const tooLarge = () => new BadRequestError(431, `the request head is larger than ${maxHeadSize} bytes`);
  const truncated = () => new BadRequestError(400, "the request head ended early");
  const line = async (): Promise<string | null> => {
    const bytes = await reader.readLine(budget, tooLarge, truncated);
    if (bytes === null) return null;
    budget -= bytes.length + 2;
    if (budget < 0) throw tooLarge();
    return decodeLatin1(bytes);
  };

  // RFC 9112 §2.2: a server should ignore empty lines before the request line (some clients send CRLF after a body).
  let requestLine = await line();
  while (requestLine === "") requestLine = await line();
  if (requestLine === null) return null;
  const fields: RequestHead["fields"] = [];
  for (;;) {
    const fieldLine = await line();
    if (fieldLine === null) throw truncated();
    if (fieldLine === "") break;
    if (fieldLine.startsWith(" ") || fieldLine.startsWith("\t")) throw new BadRequestError(400, "obsolete line folding");
    fields.push(parseFieldLine(fieldLine));
  }
  return { ...parseRequestLine(requestLine), fields };
}

/**
 * One request and its response. Resolves true when the connection can carry another request; rejects
 * when it is broken (the caller resets it).
 */
async function exchange(
  reader: ByteReader,
  writer: WritableStreamDefaultWriter<Uint8Array>,
  head: RequestHead,
  info: RequestInfo,
  handler: HttpHandler,
  settings: Settings,
  lost: AbortSignal,
): Promise<boolean> {
  const context: ResponseContext = { head: head.method === "HEAD", http10: head.minor === 0, close: !info.keepAlive, started: false };
  let continueSent = false;
  const body = new BodySource(
    reader,
    info.framing,
    { maxBodySize: settings.maxBodySize, maxLineSize: settings.maxHeadSize },
    // RFC 9110 §10.1.1: the client holds the body back until told to go on; we say so when it is first read.
    info.expectContinue
      ? async () => {
          if (context.started) return;
          continueSent = true;
          await writer.write(CONTINUE);
        }
      : undefined,
  );

  const aborter = new AbortController();
  const onLost = () => aborter.abort(lost.reason);
  if (lost.aborted) onLost();
  else lost.addEventListener("abort", onLost, { once: true });
  try {
    let request: Request;
    try {
      request = buildRequest(head, info, body, aborter.signal);
    } catch (error) {
      if (!(error instanceof BadRequestError)) throw error;
      await writeResponse(writer, statusResponse(error.status), { ...context, close: true });
      return false;
    }
    // The status for a failure before the response started: a body the client framed wrongly or made too
    // large is its fault (400/413, not reported); anything else is the handler's (500, reported).
    const failure = (error: unknown): Response => {
      if (body.error instanceof BadRequestError) return statusResponse(body.error.status);
      if (!lost.aborted) settings.onError(error, request);
      return statusResponse(500);
    };

    let response: Response;
    try {
      response = await callHandler(handler, request);
    } catch (error) {
      response = failure(error);
    }
    // Settled as the head goes out (an echo has begun reading the body by then). A body the handler never
    // read is dropped afterwards if small; a large or unknown one, or one the client holds back for a
    // 100 Continue never sent, makes us close. Go's net/http decides the same way.
    context.beforeHead = () => {
      if (body.complete) return;
      const left = body.remainingLength;
      const unread = !body.started && (left === undefined || left > MAX_DISCARD);
      if (body.error || unread || (info.expectContinue && !continueSent)) context.close = true;
    };
    try {
      if (await writeResponse(writer, response, context)) return false;
    } catch (error) {
      if (context.started) {
        // The head is out and the body cut: the client must see the message fail, not end short.
        if (!lost.aborted && !(body.error instanceof BadRequestError)) settings.onError(error, request);
        throw error;
      }
      await writeResponse(writer, failure(error), { ...context, close: true });
      return false;
    }
    if (context.close) return false;
    // Still unread (the handler stopped reading midway): drop a bounded rest, else close without notice,
    // which a client must expect of any persistent connection (RFC 9112 §9.3).
    return body.complete || (await body.discard(MAX_DISCARD));
  } finally {
    lost.removeEventListener("abort", onLost);
  }
}

const CONTINUE = encodeLatin1("HTTP/1.1 100 Continue\r\n\r\n");

async function callHandler(handler: HttpHandler, request: Request): Promise<Response> {
  const response: unknown = await handler(request);
  if (!(response instanceof Response)) {
    throw new TypeError(`the HTTP handler must return a Response, not ${response === null ? "null" : typeof response}`);
  }
  return response;
}

/**
 * The fetch `Request` for a head. GET and HEAD cannot carry a body in fetch; theirs (rare, meaningless
 * per RFC 9110 §9.3.1) is left unread and dropped by the connection loop.
 */
function buildRequest(head: RequestHead, info: RequestInfo, body: BodySource, signal: AbortSignal): Request {
  const method = head.method;
  const hasBody = !body.complete && method !== "GET" && method !== "HEAD";
  let request: Request;
  try {
    request = new Request(info.url, {
      method,
      headers: head.fields,
      signal,
      ...(hasBody ? { body: body.stream(), duplex: "half" } : {}),
    } as RequestInit);
  } catch {
    throw new BadRequestError(400, "the request cannot be represented as a fetch Request");
  }
  // Browsers drop "forbidden" headers (Host, Cookie, Content-Length, Origin, Sec-*...) from a Request they
  // construct; the handler still deserves to see what the client sent, so it gets the full set.
  if (head.fields.some(([name]) => !request.headers.has(name))) {
    Object.defineProperty(request, "headers", { value: new Headers(head.fields), enumerable: true });
  }
  return request;
}
