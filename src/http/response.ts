/**
 * Writes a fetch `Response` as an HTTP/1.1 response (RFC 9112 §6) in two steps, so the connection loop
 * holds no shared mutable state with the writer:
 *
 * 1. {@link prepareResponse} decides the framing from what the handler gave, writing nothing: no body
 *    or a status without one; a Content-Length the handler set; else the body is read ahead until it
 *    ends (its length is then known: Content-Length), until {@link LOOKAHEAD_BYTES} are gathered, or until
 *    the body has to wait for its producer past the current task (a stream: chunked, or close-delimited
 *    for an HTTP/1.0 client). A body built from a string, bytes or URLSearchParams is all there within the
 *    task that returned it, however many promise turns a runtime takes to hand it over; a body that waits
 *    on I/O or a timer is a stream, and its head is never held back for it.
 * 2. {@link writeResponse} sends the head (with `Connection: close` when the caller asks) and the body, and
 *    returns the decision it carried out.
 */

import { HOP_BY_HOP, encodeLatin1, encodeResponseHead, parseLength, reasonPhrase, statusHasBody } from "./head.js";
import { messageChannelDefer } from "../yamux/clock.js";
import { concat } from "./reader.js";

/** Where response bytes go: the connection; a write returns a promise when the caller must wait for it. */
export interface ByteSink {
  write(bytes: Uint8Array): Promise<void> | undefined;
}

/** How a response body is delimited on the wire. */
export type ResponseFraming =
  /** HEAD, 1xx, 204, 304: a head alone (it may still tell a Content-Length, RFC 9110 §8.6). */
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  /** HTTP/1.0 and a length not known in advance: the body ends with the connection. */
  | { kind: "close" };

/** What {@link writeResponse} did: the framing, and whether the connection must close after it. */
export interface ResponseDecision {
  framing: ResponseFraming;
  close: boolean;
}

/** What the request says about how the response may be sent. */
export interface ResponseTarget {
  /** The request was HEAD: headers only. */
  head: boolean;
  /** The client speaks HTTP/1.0: no chunked coding. */
  http10: boolean;
}

/** A response whose framing is decided, nothing of it written yet. */
export interface PreparedResponse {
  readonly status: number;
  readonly statusText: string;
  /** Header fields to send, hop-by-hop and Content-Length removed (the framing writes its own). */
  readonly fields: [string, string][];
  readonly framing: ResponseFraming;
  /** A Content-Length the handler set on a response without body (HEAD, 304) is told as is. */
  readonly headLength: number | undefined;
  /** Body bytes read ahead, in order. */
  readonly ready: Uint8Array[];
  /** The rest of the body (streams only), with the read already asked for, if any. */
  readonly rest: { reader: ReadableStreamDefaultReader<Uint8Array>; pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined } | undefined;
}

/** Most bytes gathered while reading ahead, so a fast large body still streams. */
export const LOOKAHEAD_BYTES = 64 * 1024;
const CRLF = encodeLatin1("\r\n");
const LAST_CHUNK = encodeLatin1("0\r\n\r\n");

/**
 * Decides how `response` goes out; writes nothing. Rejects when it cannot be sent (a bad Content-Length,
 * a body that is locked or fails before the decision): the caller may still answer 500.
 */
export async function prepareResponse(response: Response, target: ResponseTarget): Promise<PreparedResponse> {
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
  const { status, statusText } = response;
  const prepared = (framing: ResponseFraming, ready: Uint8Array[] = [], rest?: PreparedResponse["rest"]): PreparedResponse => ({
    status,
    statusText,
    fields,
    framing,
    // HEAD and 304 may tell the length a GET would have had; 204 must not (RFC 9110 §8.6).
    headLength: framing.kind === "none" && status !== 204 ? declared : undefined,
    ready,
    rest,
  });

  const body = response.body;
  if (!statusHasBody(status) || target.head) {
    await body?.cancel().catch(() => {});
    return prepared({ kind: "none" });
  }
  if (body === null) {
    if (declared !== undefined && declared !== 0) throw new TypeError(`the response has no body but Content-Length ${declared}`);
    return prepared({ kind: "length", length: 0 });
  }
  const reader = body.getReader();
  if (declared !== undefined) return prepared({ kind: "length", length: declared }, [], { reader, pending: undefined });

  const ready: Uint8Array[] = [];
  let size = 0;
  let pending: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  const taskEnd = nextTask();
  try {
    // Past LOOKAHEAD_BYTES, one more read still tells a body that is all there (one big chunk) from a stream.
    for (let over = false; !over; ) {
      over = size >= LOOKAHEAD_BYTES;
      const read = reader.read();
      const result = await Promise.race([read, taskEnd]);
      if (result === STILL_PRODUCING) {
        pending = read;
        break;
      }
      // Done: the lock stays (releasing it makes a TypeError with its stack for the reader's `closed`).
      if (result.done) return prepared({ kind: "length", length: size }, ready);
      const bytes = asBytes(result.value);
      if (bytes.length > 0) ready.push(bytes);
      size += bytes.length;
    }
  } catch (error) {
    reader.cancel(error).catch(() => {});
    reader.releaseLock();
    throw error;
  }
  return prepared(target.http10 ? { kind: "close" } : { kind: "chunked" }, ready, { reader, pending });
}

/**
 * Writes a prepared response; `close` adds `Connection: close`. Rejects when the body fails or breaks its
 * framing after the head went out: the message is cut, and the connection must be reset.
 */
export async function writeResponse(sink: ByteSink, prepared: PreparedResponse, close: boolean): Promise<ResponseDecision> {
  const { framing } = prepared;
  // The framing's own fields, after the handler's.
  let own = close ? "connection: close\r\n" : "";
  if (framing.kind === "length") own += `content-length: ${framing.length}\r\n`;
  else if (framing.kind === "chunked") own += "transfer-encoding: chunked\r\n";
  else if (framing.kind === "none" && prepared.headLength !== undefined) own += `content-length: ${prepared.headLength}\r\n`;
  const head = encodeResponseHead(prepared.status, prepared.statusText, prepared.fields, own);
  const decision: ResponseDecision = { framing, close: close || framing.kind === "close" };

  const rest = prepared.rest;
  if (rest === undefined) {
    await sink.write(prepared.ready.length > 0 ? concat(head, ...prepared.ready) : head);
    return decision;
  }
  const { reader } = rest;
  try {
    if (framing.kind === "length") {
      await sink.write(head);
      await writeExactly(sink, reader, framing.length);
    } else {
      const frame = framing.kind === "chunked" ? chunk : (bytes: Uint8Array) => bytes;
      await sink.write(concat(head, ...prepared.ready.map(frame)));
      let pending = rest.pending;
      for (;;) {
        const { done, value } = await (pending ?? reader.read());
        pending = undefined;
        if (done) break;
        const bytes = asBytes(value);
        if (bytes.length > 0) await sink.write(frame(bytes));
      }
      if (framing.kind === "chunked") await sink.write(LAST_CHUNK);
    }
    return decision;
  } catch (error) {
    reader.cancel(error).catch(() => {});
    throw error;
  }
}

/** Gives up a prepared response that will not be written: its body is cancelled. */
export function discardResponse(prepared: PreparedResponse): void {
  const rest = prepared.rest;
  if (!rest) return;
  rest.reader.cancel().catch(() => {});
  rest.reader.releaseLock();
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

/** One chunk of the chunked coding: `size-in-hex CRLF data CRLF`, in one array so it is one yamux frame. */
function chunk(bytes: Uint8Array): Uint8Array {
  return concat(encodeLatin1(`${bytes.length.toString(16)}\r\n`), bytes, CRLF);
}

/** Response bodies must yield Uint8Array chunks (as fetch requires of a body stream). */
function asBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  throw new TypeError(`a response body chunk must be a Uint8Array, not ${typeof value}`);
}

const STILL_PRODUCING = Symbol("still producing");
let defer: ((fn: () => void) => void) | undefined;

/**
 * Resolves in the next task of the event loop, after every promise job of the current one:
 * `setImmediate` where there is one (in Node a `MessageChannel` message costs several times more), else
 * a `MessageChannel` task, never `setTimeout(0)` (Node waits at least 1 ms, browsers clamp nested timers to
 * 4 ms and throttle hidden tabs).
 */
function nextTask(): Promise<typeof STILL_PRODUCING> {
  defer ??= (globalThis as { setImmediate?: (fn: () => void) => void }).setImmediate ?? messageChannelDefer();
  return new Promise((resolve) => defer!(() => resolve(STILL_PRODUCING)));
}
