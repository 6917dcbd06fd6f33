/**
 * Buffered reading of a byte stream for HTTP/1.1 framing: lines (heads, chunk sizes, trailers) and raw
 * runs of body bytes, whatever the chunk boundaries of the stream underneath. Bytes past the current
 * message stay buffered for the next one (pipelined requests).
 */

import { streamIO, type StreamIO } from "../yamux/stream.js";

const EMPTY = new Uint8Array(0);
const LF = 0x0a;
const CR = 0x0d;

/**
 * The bytes of `conn`: straight from the yamux stream when it is a wslis stream nobody touched (no web
 * stream reader, writer or promise per chunk), else through its web streams (a wrapped or foreign conn).
 */
export function connIO(conn: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> }): StreamIO {
  const io = streamIO(conn);
  if (io !== undefined) return io;
  const reader = conn.readable.getReader();
  const writer = conn.writable.getWriter();
  return {
    read: async () => (await reader.read()).value ?? null, // undefined when done
    write: (bytes) => writer.write(bytes),
    cancel: () => void reader.cancel().catch(() => {}),
    close: () => writer.close(),
  };
}

export class ByteReader {
  readonly #source: StreamIO;
  /** Unread bytes. */
  #buffer: Uint8Array = EMPTY;
  /** How far #buffer was searched for LF without finding one, so lines spanning chunks cost O(n). */
  #scanned = 0;
  #ended = false;

  /** `first`: bytes already read from `source` (null: it had ended), to be read before the rest. */
  constructor(source: StreamIO, first?: Uint8Array | null) {
    this.#source = source;
    if (first === null) this.#ended = true;
    else if (first !== undefined) this.#buffer = first;
  }

  /** True when no byte is buffered and the stream has ended. */
  get ended(): boolean {
    return this.#ended && this.#buffer.length === 0;
  }

  /** Bytes received and not yet consumed. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /**
   * Reads one line, without its LF and the CR before it. Resolves with null at the end of the stream
   * when no byte of a line was read; throws `tooLong()` once a line exceeds `limit` bytes and `truncated()`
   * when the stream ends mid-line.
   */
  async readLine(limit: number, tooLong: () => Error, truncated: () => Error): Promise<Uint8Array | null> {
    for (;;) {
      const line = this.bufferedLine(limit, tooLong);
      if (line !== undefined) return line;
      if (!(await this.#fill())) {
        if (this.#buffer.length === 0) return null;
        throw truncated();
      }
    }
  }

  /**
   * The next line when it is buffered whole, else undefined, without waiting: a head that came in one
   * chunk is parsed without a promise per line. `readLine(...)` when this gives undefined. Throws
   * `tooLong()` as `readLine` does.
   */
  bufferedLine(limit: number, tooLong: () => Error): Uint8Array | undefined {
    const lf = this.#buffer.indexOf(LF, this.#scanned);
    if (lf < 0) {
      this.#scanned = this.#buffer.length;
      if (this.#buffer.length > limit) throw tooLong();
      return undefined;
    }
    const end = lf > 0 && this.#buffer[lf - 1] === CR ? lf - 1 : lf;
    if (end > limit) throw tooLong();
    const line = this.#buffer.subarray(0, end);
    this.#consume(lf + 1);
    return line;
  }

  /** Reads up to `max` bytes (at least 1): buffered ones first, else the next chunk. Null at the end. */
  async read(max: number): Promise<Uint8Array | null> {
    if (this.#buffer.length === 0 && !(await this.#fill())) return null;
    const n = Math.min(max, this.#buffer.length);
    const bytes = this.#buffer.subarray(0, n);
    this.#consume(n);
    return bytes;
  }

  /** Stops reading: the rest of the stream is discarded (its window credit goes back to the peer). */
  cancel(): void {
    this.#buffer = EMPTY;
    this.#ended = true;
    this.#source.cancel();
  }

  /** Appends the next chunk to the buffer; false at the end of the stream. Rejects if the stream errors. */
  async #fill(): Promise<boolean> {
    if (this.#ended) return false;
    for (;;) {
      let value = this.#source.read();
      if (value instanceof Promise) value = await value;
      if (value === null) {
        this.#ended = true;
        return false;
      }
      if (value.length === 0) continue;
      this.#buffer = this.#buffer.length === 0 ? value : concat(this.#buffer, value);
      return true;
    }
  }

  #consume(n: number): void {
    this.#buffer = n === this.#buffer.length ? EMPTY : this.#buffer.subarray(n);
    this.#scanned = 0;
  }
}

/** One array holding `parts` in order. */
export function concat(...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
