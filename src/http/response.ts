/**
 * Writes a fetch `Response` as an HTTP/1.1 response (RFC 9112 §6): status line, headers, then the body
 * delimited by Content-Length when its length is known, else chunked (or, for an HTTP/1.0 client, by
 * closing the connection).
 *
 * The length is known when the handler set Content-Length, or when the whole body is already there:
 * bodies built from a string, bytes or URLSearchParams settle their reads within a couple of microtask
 * turns (measured in Node 20 and Chromium), so we look ahead that far, and no further, before choosing.
 * A body still being produced is never waited for: its head goes out with what is ready.
 */

import { HOP_BY_HOP, encodeLatin1, encodeResponseHead, parseLength, reasonPhrase, statusHasBody } from "./head.js";
import { concat } from "./reader.js";

/** Where response bytes go: the connection's writer; each write resolves once the bytes are sent. */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<void>;
}

export interface ResponseContext {
  /** The request was HEAD: headers only. */
  head: boolean;
  /** The client speaks HTTP/1.0: no chunked encoding. */
  http10: boolean;
  /** The connection closes after this response: say so with `Connection: close`. */
  close: boolean;
  /** Called just before the head is encoded, to settle `close` as late as possible. */
  beforeHead?: () => void;
  /** Set as the status line is about to be written: `100 Continue` may no longer be sent. */
  started: boolean;
}

/** How far ahead, in microtask turns, to look for the end of a body before choosing its framing. */
const LOOKAHEAD_TURNS = 8;
/** Most bytes gathered while looking ahead, so a fast large body still streams. */
const LOOKAHEAD_BYTES = 64 * 1024;
const CRLF = encodeLatin1("\r\n");
const LAST_CHUNK = encodeLatin1("0\r\n\r\n");

/**
 * Writes `response`. Rejects when the response cannot be written: before `context.started` turns true
 * (a bad Content-Length, a body that is locked or fails at once) the caller may still answer 500; after
 * it, the message is cut and the connection must be reset. Resolves with true when the connection must
 * close after it (a close-delimited body).
 */
export async function writeResponse(sink: ByteSink, response: Response, context: ResponseContext): Promise<boolean> {
  const fields: [string, string][] = [];
  let declared: number | undefined;
  let hasDate = false;
  for (const [name, value] of response.headers) {
    if (HOP_BY_HOP.has(name)) continue;
    if (name === "content-length") {
      declared = parseLength(value);
      if (declared === undefined) throw new TypeError(`the response has an invalid Content-Length: ${value}`);
      continue;
    }
    if (name === "date") hasDate = true;
    fields.push([name, value]);
  }
  // RFC 9110 §6.6.1: an origin server with a clock sends Date.
  if (!hasDate) fields.push(["date", httpDate()]);
  const status = response.status;
  const head = (extra: [string, string][]) => {
    context.beforeHead?.();
    const connection: [string, string][] = context.close ? [["connection", "close"]] : [];
    return encodeResponseHead(status, response.statusText, [...fields, ...connection, ...extra]);
  };

  if (!statusHasBody(status) || context.head) {
    await response.body?.cancel().catch(() => {});
    // HEAD and 304 may tell the length a GET would have had; 204 must not (RFC 9110 §8.6).
    const length: [string, string][] = declared !== undefined && status !== 204 ? [["content-length", String(declared)]] : [];
    await start(sink, context, head(length));
    return false;
  }

  const body = response.body;
  if (body === null) {
    if (declared !== undefined && declared !== 0) throw new TypeError(`the response has no body but Content-Length ${declared}`);
    await start(sink, context, head([["content-length", "0"]]));
    return false;
  }
  const reader = body.getReader();
  try {
    if (declared !== undefined) {
      await start(sink, context, head([["content-length", String(declared)]]));
      await writeExactly(sink, reader, declared);
      return false;
    }
    return await writeUnknownLength(sink, reader, context, head);
  } catch (error) {
    reader.cancel(error).catch(() => {});
    throw error;
  } finally {
    reader.releaseLock();
  }
}

let dateSecond = -1;
let dateText = "";

/** The current time as an IMF-fixdate, formatted once per second (it has a resolution of one second). */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

/** A plain-text response for statuses the device answers by itself (400, 413, 431, 500...). */
export function statusResponse(status: number): Response {
  return new Response(`${status} ${reasonPhrase(status)}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

async function start(sink: ByteSink, context: ResponseContext, bytes: Uint8Array): Promise<void> {
  context.started = true;
  await sink.write(bytes);
}

/** A Content-Length body: exactly `length` bytes, or the message is cut (the caller resets). */
async function writeExactly(sink: ByteSink, reader: ReadableStreamDefaultReader<Uint8Array>, length: number): Promise<void> {
  let written = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const bytes = asBytes(value);
    written += bytes.length;
    if (written > length) throw new TypeError(`the response body is longer than its Content-Length ${length}`);
    if (bytes.length > 0) await sink.write(bytes);
  }
  if (written < length) throw new TypeError(`the response body is shorter (${written}) than its Content-Length ${length}`);
}

async function writeUnknownLength(
  sink: ByteSink,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  context: ResponseContext,
  head: (extra: [string, string][]) => Uint8Array,
): Promise<boolean> {
  const ready: Uint8Array[] = [];
  let size = 0;
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  // Past LOOKAHEAD_BYTES, one more read still tells a body that is all there (one big chunk) from a stream.
  for (let over = false; !over; ) {
    over = size >= LOOKAHEAD_BYTES;
    const read = reader.read();
    const result = await settledSoon(read);
    if (result === undefined) {
      pending = read;
      break;
    }
    if (result.done) {
      await start(sink, context, concat(head([["content-length", String(size)]]), ...ready));
      return false;
    }
    const bytes = asBytes(result.value);
    ready.push(bytes);
    size += bytes.length;
  }

  // Length unknown: chunked for HTTP/1.1, close-delimited for HTTP/1.0 (which has no chunked coding).
  const frame = context.http10 ? (bytes: Uint8Array) => bytes : chunk;
  if (context.http10) context.close = true;
  const extra: [string, string][] = context.http10 ? [] : [["transfer-encoding", "chunked"]];
  await start(sink, context, concat(head(extra), ...ready.filter((b) => b.length > 0).map(frame)));
  for (;;) {
    const { done, value } = await (pending ?? reader.read());
    pending = undefined;
    if (done) break;
    const bytes = asBytes(value);
    if (bytes.length > 0) await sink.write(frame(bytes));
  }
  if (!context.http10) await sink.write(LAST_CHUNK);
  return context.http10;
}

/** One chunk of the chunked coding: `size-in-hex CRLF data CRLF`, in one array so it is one yamux frame. */
function chunk(bytes: Uint8Array): Uint8Array {
  return concat(encodeLatin1(`${bytes.length.toString(16)}\r\n`), bytes, CRLF);
}

/** The promise's outcome if it settles within LOOKAHEAD_TURNS microtask turns, else undefined. */
async function settledSoon<T>(promise: Promise<T>): Promise<T | undefined> {
  let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  promise.then(
    (value) => (outcome = { ok: true, value }),
    (error: unknown) => (outcome = { ok: false, error }),
  );
  for (let turn = 0; turn < LOOKAHEAD_TURNS && outcome === undefined; turn++) await undefined;
  if (outcome === undefined) return undefined;
  if (!outcome.ok) throw outcome.error;
  return outcome.value;
}

/** Response bodies must yield Uint8Array chunks (as fetch requires of a body stream). */
function asBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  throw new TypeError(`a response body chunk must be a Uint8Array, not ${typeof value}`);
}
